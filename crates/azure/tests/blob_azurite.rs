//! The blob client against a real Azurite.

mod common;

use bytes::Bytes;
use chrono::{Duration, Utc};
use common::azurite::Azurite;
use edgetrain_azure::{
    blob::{
        AccountKey, BlobApi, BlobAuth, BlobClient, BlobEndpoint, SasPermissions, SasProtocol,
        SasResource, ServiceSas,
    },
    transport::HttpConfig,
};
use futures::{StreamExt, TryStreamExt};
use md5::Digest;

const ACCOUNT: &str = "devacct";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

async fn setup() -> (Azurite, BlobClient) {
    let az = Azurite::start(&format!("{ACCOUNT}:{KEY}"), None).await;
    let http = HttpConfig::default().build().unwrap();
    let ep = BlobEndpoint::parse(&format!("http://127.0.0.1:{}/{ACCOUNT}", az.port)).unwrap();
    let client = BlobClient::new(
        http,
        ep,
        BlobAuth::SharedKey(AccountKey::from_base64(KEY).unwrap()),
    );
    (az, client)
}

/// Container creation is not part of the client (the operator never creates containers), so
/// the test does it with a raw Shared Key request.
async fn create_container(az: &Azurite, name: &str) {
    let url = url::Url::parse(&format!(
        "http://127.0.0.1:{}/{ACCOUNT}/{name}?restype=container",
        az.port
    ))
    .unwrap();
    let mut h = http::HeaderMap::new();
    h.insert("x-ms-version", "2019-07-07".parse().unwrap());
    h.insert(
        "x-ms-date",
        edgetrain_azure::blob::rfc1123(Utc::now()).parse().unwrap(),
    );
    let auth = edgetrain_azure::blob::shared_key_authorization(
        ACCOUNT,
        &AccountKey::from_base64(KEY).unwrap(),
        &http::Method::PUT,
        &url,
        &h,
    );
    let resp = HttpConfig::default()
        .build()
        .unwrap()
        .put(url)
        .headers(h)
        .header("authorization", auth)
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
}

#[tokio::test]
async fn put_head_read_and_list_with_shared_key() {
    let (az, c) = setup().await;
    create_container(&az, "train").await;
    let body = Bytes::from_static(b"hello world");
    c.put("train", "data/a b.csv", body.clone(), Some("text/csv"))
        .await
        .unwrap();
    c.put(
        "train",
        "data/b.csv",
        Bytes::from_static(b"x,y\n1,2\n"),
        None,
    )
    .await
    .unwrap();
    c.put("train", "other/c.csv", Bytes::from_static(b"z"), None)
        .await
        .unwrap();

    let props = c
        .properties("train", "data/a b.csv")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(props.size, 11);
    assert_eq!(
        props.content_md5.as_deref(),
        Some("XrY7u+Ae7tCTyyK7j1rNww==")
    );
    assert_eq!(props.content_type.as_deref(), Some("text/csv"));
    assert_eq!(props.blob_type.as_deref(), Some("BlockBlob"));
    assert!(c.properties("train", "missing").await.unwrap().is_none());

    let read: Vec<Bytes> = c
        .read("train", "data/a b.csv")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(read.concat(), body.to_vec());

    let listed: Vec<_> = c.list("train", "data/").try_collect().await.unwrap();
    let names: Vec<_> = listed.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["data/a b.csv", "data/b.csv"]);
    assert_eq!(listed[0].content_md5, props.content_md5);
    assert_eq!(listed[0].etag, props.etag);

    let err = c
        .read("nocontainer", "x")
        .await
        .err()
        .expect("missing container is an error");
    assert!(
        matches!(err, edgetrain_azure::Error::Blob { status: 404, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn listing_pages_through_markers() {
    let (az, c) = setup().await;
    create_container(&az, "many").await;
    for i in 0..23 {
        c.put(
            "many",
            &format!("p/{i:03}"),
            Bytes::from(vec![b'x'; i]),
            None,
        )
        .await
        .unwrap();
    }
    let first = c.list_page("many", "p/", None, Some(10)).await.unwrap();
    assert_eq!(first.items.len(), 10);
    let marker = first.next_marker.clone().expect("more pages");
    let second = c
        .list_page("many", "p/", Some(&marker), Some(10))
        .await
        .unwrap();
    assert_eq!(second.items[0].name, "p/010");
    // The stream yields every blob once, in name order, with sizes intact.
    let all: Vec<_> = c.list("many", "p/").try_collect().await.unwrap();
    assert_eq!(all.len(), 23);
    assert!(all.windows(2).all(|w| w[0].name < w[1].name));
    assert_eq!(all[22].size, 22);
    // Laziness: taking a few items does not need the whole listing.
    let few: Vec<_> = c.list("many", "p/").take(3).collect().await;
    assert_eq!(few.len(), 3);
}

#[tokio::test]
async fn service_sas_grants_exactly_what_it_says() {
    let (az, c) = setup().await;
    create_container(&az, "code").await;
    let key = AccountKey::from_base64(KEY).unwrap();
    let http = HttpConfig::default().build().unwrap();
    let sas_for = |perms: SasPermissions| {
        ServiceSas {
            account: ACCOUNT.into(),
            resource: SasResource::Container {
                container: "code".into(),
            },
            permissions: perms,
            start: Some(Utc::now() - Duration::minutes(5)),
            expiry: Utc::now() + Duration::hours(1),
            ip: None,
            // Azurite here is plain HTTP.
            protocol: SasProtocol::HttpsAndHttp,
        }
        .sign(&key)
        .unwrap()
    };
    let rw = sas_for(SasPermissions {
        read: true,
        create: true,
        write: true,
        list: true,
        ..Default::default()
    });
    let url = format!(
        "http://127.0.0.1:{}/{ACCOUNT}/code?{}",
        az.port,
        rw.secret()
    );
    let (sas_client, container) = BlobClient::from_container_sas_url(http.clone(), &url).unwrap();
    sas_client
        .put(
            &container,
            "src/train.py",
            Bytes::from_static(b"print(1)\n"),
            None,
        )
        .await
        .unwrap();
    let listed: Vec<_> = sas_client.list(&container, "").try_collect().await.unwrap();
    assert_eq!(listed.len(), 1);
    let content = md5::Md5::digest(b"print(1)\n");
    use base64::Engine;
    assert_eq!(
        listed[0].content_md5.as_deref(),
        Some(
            base64::engine::general_purpose::STANDARD
                .encode(content)
                .as_str()
        )
    );
    // Shared-key client sees the SAS upload.
    assert!(
        c.properties("code", "src/train.py")
            .await
            .unwrap()
            .is_some()
    );

    let ro = sas_for(SasPermissions::read_list());
    let url = format!(
        "http://127.0.0.1:{}/{ACCOUNT}/code?{}",
        az.port,
        ro.secret()
    );
    let (ro_client, _) = BlobClient::from_container_sas_url(http.clone(), &url).unwrap();
    let err = ro_client
        .put("code", "x", Bytes::from_static(b"x"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, edgetrain_azure::Error::Blob { status: 403, .. }),
        "{err:?}"
    );
    assert!(
        !err.to_string().contains("sig="),
        "SAS leaked into error: {err}"
    );

    let mut bad_sig = ro.secret().to_string();
    bad_sig.push('x');
    let url = format!("http://127.0.0.1:{}/{ACCOUNT}/code?{bad_sig}", az.port);
    let (bad, _) = BlobClient::from_container_sas_url(http, &url).unwrap();
    assert!(bad.properties("code", "src/train.py").await.is_err());
}

#[tokio::test]
async fn code_upload_goes_through_pending_upload_sas_into_azurite() {
    use common::fake::{Fake, Reply, StaticCredential};
    use edgetrain_azure::{
        arm::ArmClient,
        ml::{self, CodeFile, MlClient, Workspace},
    };
    use serde_json::json;
    use std::sync::Arc;

    let (az, c) = setup().await;
    create_container(&az, "code").await;
    let sas = ServiceSas {
        account: ACCOUNT.into(),
        resource: SasResource::Container {
            container: "code".into(),
        },
        permissions: SasPermissions {
            read: true,
            create: true,
            write: true,
            list: true,
            ..Default::default()
        },
        start: None,
        expiry: Utc::now() + Duration::hours(1),
        ip: None,
        protocol: SasProtocol::HttpsAndHttp,
    }
    .sign(&AccountKey::from_base64(KEY).unwrap())
    .unwrap();
    let container_url = format!("http://127.0.0.1:{}/{ACCOUNT}/code", az.port);
    let sas_uri = format!("{container_url}?{}", sas.secret());
    let fake = Fake::start(move |req, earlier| {
        let uploaded = earlier.iter().any(|r| r.method == "PUT");
        let name = req.path.split("/codes/").nth(1).unwrap_or("").split('/').next().unwrap_or("").to_string();
        match req.method.as_str() {
            "GET" if uploaded => Reply::json(200, json!({"name": "1", "properties": {"codeUri": format!("{container_url}/LocalUpload/{name}")}})),
            "GET" => Reply::json(404, json!({"error": {"code": "UserError.NotFound", "message": "no"}})),
            "POST" => Reply::json(200, json!({"pendingUploadId": "p1", "pendingUploadType": "TemporaryBlobReference",
                "blobReferenceForConsumption": {"blobUri": format!("{container_url}/LocalUpload/{name}"),
                    "credential": {"credentialType": "SAS", "sasUri": sas_uri}}})),
            "PUT" => Reply::json(201, req.json()),
            _ => Reply::empty(500),
        }
    })
    .await;
    let ws = Workspace {
        subscription_id: "s".into(),
        resource_group: "rg".into(),
        name: "ws".into(),
    };
    let arm = ArmClient::new(
        HttpConfig::default().build().unwrap(),
        fake.base.clone(),
        Arc::new(StaticCredential),
        "https://management.azure.com/",
    );
    let mlc = MlClient::new(arm, ws.clone());
    let files = vec![
        CodeFile {
            path: "train.py".into(),
            content: Bytes::from_static(b"print('train')\n"),
        },
        CodeFile {
            path: "lib/util.py".into(),
            content: Bytes::from_static(b"X = 1\n"),
        },
    ];
    let hash = ml::code_content_hash(&files).unwrap();
    let http = HttpConfig::default().build().unwrap();
    let code_id = ml::upload_code(&mlc, &ws, http.clone(), &files)
        .await
        .unwrap();
    assert_eq!(code_id, ws.code_version_id(&hash, "1").unwrap());

    let listed: Vec<_> = c
        .list("code", &format!("LocalUpload/{hash}/"))
        .try_collect()
        .await
        .unwrap();
    let names: Vec<_> = listed.iter().map(|b| b.name.clone()).collect();
    assert_eq!(
        names,
        [
            format!("LocalUpload/{hash}/lib/util.py"),
            format!("LocalUpload/{hash}/train.py")
        ]
    );
    let put = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .unwrap();
    assert_eq!(
        put.json()["properties"]["codeUri"],
        format!(
            "http://127.0.0.1:{}/{ACCOUNT}/code/LocalUpload/{hash}",
            az.port
        )
    );
    assert_eq!(put.json()["properties"]["isAnonymous"], false);

    // Content-addressed: the same files again need no second upload.
    let again = ml::upload_code(&mlc, &ws, http, &files).await.unwrap();
    assert_eq!(again, code_id);
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count(),
        1
    );
}

#[tokio::test]
async fn read_from_an_offset_follows_a_growing_blob() {
    let (az, c) = setup().await;
    create_container(&az, "logs").await;
    assert_eq!(c.read_from("logs", "std_log.txt", 0).await.unwrap(), None);
    c.put("logs", "std_log.txt", Bytes::from_static(b"line 1\n"), None)
        .await
        .unwrap();
    let first = c
        .read_from("logs", "std_log.txt", 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"line 1\n");
    // Nothing past the end: empty, not an error.
    let none = c
        .read_from("logs", "std_log.txt", 7)
        .await
        .unwrap()
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
    // The blob grew (a job uploads its log again): only the new bytes come back.
    c.put(
        "logs",
        "std_log.txt",
        Bytes::from_static(b"line 1\nline 2\n"),
        None,
    )
    .await
    .unwrap();
    let more = c
        .read_from("logs", "std_log.txt", 7)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&more[..], b"line 2\n");
}

#[tokio::test]
async fn read_listed_streams_a_suffix_pinned_to_the_listed_etag() {
    let (az, c) = setup().await;
    create_container(&az, "outputs").await;
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    c.put("outputs", "model/w.onnx", Bytes::from(body.clone()), None)
        .await
        .unwrap();
    let listed: Vec<_> = c.list("outputs", "model/").try_collect().await.unwrap();
    let item = &listed[0];
    assert_eq!(item.size, 100_000);
    for offset in [0u64, 1, 65_537, 99_999] {
        let got: Vec<Bytes> = c
            .read_listed("outputs", item, offset)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(got.concat(), body[offset as usize..], "offset {offset}");
    }
    // Nothing past the end, and no request that Azure would answer 416.
    let end: Vec<Bytes> = c
        .read_listed("outputs", item, 100_000)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(end.is_empty());
    let err = c.read_listed("outputs", item, 100_001).await.err().unwrap();
    assert!(
        matches!(err, edgetrain_azure::Error::InvalidInput(_)),
        "{err:?}"
    );

    // Overwritten with the same size after the listing: the old listing's read is refused.
    let mut changed = body.clone();
    changed[0] ^= 0xff;
    c.put("outputs", "model/w.onnx", Bytes::from(changed), None)
        .await
        .unwrap();
    let err = c.read_listed("outputs", item, 10).await.err().unwrap();
    match &err {
        edgetrain_azure::Error::Blob { status, code, .. } => {
            assert_eq!((*status, code.as_str()), (412, "ConditionNotMet"), "{err}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("changed after it was listed"),
        "{err}"
    );
    // A fresh listing reads the new content.
    let relisted: Vec<_> = c.list("outputs", "model/").try_collect().await.unwrap();
    assert_ne!(relisted[0].etag, item.etag);
    let first = c
        .read_listed("outputs", &relisted[0], 0)
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first[0], body[0] ^ 0xff);
}
