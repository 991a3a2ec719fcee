//! Host-style blob endpoint over HTTPS with an enterprise CA, against real Azurite (TLS).

mod common;

use bytes::Bytes;
use common::azurite::Azurite;
use edgetrain_azure::{
    blob::{AccountKey, BlobApi, BlobAuth, BlobClient, BlobEndpoint},
    transport::HttpConfig,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

const ACCOUNT: &str = "devacct";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const HOST: &str = "devacct.blob.local.azurestack.external";

#[tokio::test]
async fn https_host_style_with_extra_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![HOST.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let (ca_pem, cert_pem, key_pem) = (
        dir.path().join("ca.pem"),
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
    );
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert_pem, leaf.pem()).unwrap();
    std::fs::write(&key_pem, leaf_key.serialize_pem()).unwrap();

    let az = Azurite::start(&format!("{ACCOUNT}:{KEY}"), Some((&cert_pem, &key_pem))).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], az.port));
    let endpoint = BlobEndpoint::parse(&format!("https://{HOST}:{}", az.port)).unwrap();
    assert_eq!(endpoint.account(), ACCOUNT);
    let key = || BlobAuth::SharedKey(AccountKey::from_base64(KEY).unwrap());

    // Test-only DNS override: the host-style name resolves to the loopback Azurite.
    let trusted = HttpConfig {
        extra_ca_bundle: Some(ca_pem),
        ..HttpConfig::default()
    }
    .builder()
    .unwrap()
    .resolve(HOST, addr)
    .build()
    .unwrap();
    let client = BlobClient::new(trusted, endpoint.clone(), key());
    let err = client.properties("nope", "x").await;
    // A 404 proves TLS and Shared Key both worked (the container does not exist).
    assert!(
        matches!(
            err,
            Ok(None) | Err(edgetrain_azure::Error::Blob { status: 404, .. })
        ),
        "{err:?}"
    );
    let put = client
        .put("nope", "x", Bytes::from_static(b"x"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(put, edgetrain_azure::Error::Blob { status: 404, ref code, .. } if code == "ContainerNotFound"),
        "{put:?}"
    );

    let untrusted = HttpConfig::default()
        .builder()
        .unwrap()
        .resolve(HOST, addr)
        .build()
        .unwrap();
    let client = BlobClient::new(untrusted, endpoint, key())
        .with_retry(edgetrain_azure::arm::RetryPolicy::none());
    let err = client.properties("nope", "x").await.unwrap_err();
    assert!(
        matches!(err, edgetrain_azure::Error::Transport { .. }),
        "without the CA the TLS handshake must fail: {err:?}"
    );
}
