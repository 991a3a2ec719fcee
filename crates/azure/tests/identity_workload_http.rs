//! Workload identity against a request-recording fake token endpoint.

mod common;

use azure_core::credentials::TokenCredential;
use common::fake::{Fake, Reply};
use edgetrain_azure::identity::{Authority, WorkloadIdentityCredential};
use serde_json::json;

const SCOPE: &str = "https://management.azure.com/.default";

/// A token endpoint answering 60 s tokens (inside the credential's 300 s refresh margin, so
/// every call asks again).
async fn token_endpoint() -> Fake {
    Fake::start(|_, _| {
        Reply::json(
            200,
            json!({"token_type": "Bearer", "expires_in": 60, "access_token": "tok"}),
        )
    })
    .await
}

fn form(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

#[tokio::test]
async fn exchanges_the_projected_token_read_afresh_each_time() {
    edgetrain_azure::transport::install_crypto_provider();
    let fake = token_endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "sa-token-1\n").unwrap();
    let cred = WorkloadIdentityCredential::new(
        reqwest::Client::new(),
        Authority::new(fake.base.clone(), "tenant-a").unwrap(),
        "app-1",
        file.clone(),
    )
    .unwrap();
    let t = cred.get_token(&[SCOPE], None).await.unwrap();
    assert_eq!(t.token.secret(), "tok");
    // The kubelet rotates the file; the next exchange uses the new token.
    std::fs::write(&file, "sa-token-2").unwrap();
    cred.get_token(&[SCOPE], None).await.unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/tenant-a/oauth2/v2.0/token");
    let first = form(&reqs[0].body);
    for (k, v) in [
        ("grant_type", "client_credentials"),
        ("client_id", "app-1"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", "sa-token-1"),
        ("scope", SCOPE),
    ] {
        assert!(
            first.contains(&(k.to_string(), v.to_string())),
            "{k}={v} missing from {first:?}"
        );
    }
    assert!(
        form(&reqs[1].body).contains(&("client_assertion".into(), "sa-token-2".into())),
        "rotated token not used"
    );
}

#[tokio::test]
async fn adfs_has_no_workload_identity() {
    edgetrain_azure::transport::install_crypto_provider();
    let adfs = Authority::new(
        url::Url::parse("https://adfs.local.azurestack.external/adfs/").unwrap(),
        "x",
    )
    .unwrap();
    let e = WorkloadIdentityCredential::new(reqwest::Client::new(), adfs, "app", "/none".into())
        .unwrap_err();
    assert!(e.to_string().contains("AD FS"), "{e}");
}
