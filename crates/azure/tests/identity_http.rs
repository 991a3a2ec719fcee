//! Identity against a request-recording fake token endpoint.

mod common;

use std::{sync::Arc, time::Duration};

use azure_core::credentials::{Secret, TokenCredential};
use common::fake::{Fake, Reply};
use edgetrain_azure::{
    identity::{ClientSecretCredential, IdentityProvider, ServicePrincipal, TokenCache},
    transport::HttpConfig,
};
use serde_json::json;

fn principal() -> ServicePrincipal {
    ServicePrincipal {
        tenant: "my-tenant".into(),
        client_id: "app-1".into(),
        client_secret: Secret::new("s3cret"),
    }
}

/// Metadata that points logins at the same fake, under `/adfs/` or `/aad/`.
async fn fake_cloud(adfs: bool, expires_in: u64) -> Fake {
    Fake::start(move |req, earlier| {
        if req.path == "/metadata/endpoints" {
            let host = req.headers.get("host").unwrap().to_str().unwrap().to_string();
            let login = if adfs { format!("http://{host}/adfs/") } else { format!("http://{host}/aad/") };
            return Reply::json(200, json!({"galleryEndpoint": "", "graphEndpoint": "", "portalEndpoint": "",
                "authentication": {"loginEndpoint": login, "audiences": ["https://management.adfs.azurestack.local/4de1"]}}));
        }
        let n = earlier.iter().filter(|r| r.path.ends_with("/oauth2/token")).count();
        Reply::json(200, json!({"access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": expires_in.to_string()}))
    })
    .await
}

#[tokio::test]
async fn adfs_discovery_and_v1_client_credentials() {
    let fake = fake_cloud(true, 3600).await;
    let http = HttpConfig::default().build().unwrap();
    let (cred, audience) = ClientSecretCredential::discover(
        http,
        &fake.base,
        principal(),
        Arc::new(TokenCache::default()),
    )
    .await
    .unwrap();
    assert_eq!(cred.authority().provider(), IdentityProvider::Adfs);
    assert_eq!(audience, "https://management.adfs.azurestack.local/4de1");
    let scope = edgetrain_azure::identity::scope_for_resource(&audience);
    let t = cred.get_token(&[&scope], None).await.unwrap();
    assert_eq!(t.token.secret(), "tok-0");

    let reqs = fake.requests();
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(
        reqs[0].query_value("api-version").as_deref(),
        Some("2015-01-01")
    );
    let token_req = &reqs[1];
    assert_eq!(
        (token_req.method.as_str(), token_req.path.as_str()),
        ("POST", "/adfs/oauth2/token")
    );
    let form: Vec<(String, String)> = url::form_urlencoded::parse(token_req.body.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("grant_type"), Some("client_credentials"));
    assert_eq!(get("client_id"), Some("app-1"));
    assert_eq!(get("client_secret"), Some("s3cret"));
    assert_eq!(
        get("resource"),
        Some("https://management.adfs.azurestack.local/4de1")
    );
    assert!(!format!("{cred:?}").contains("s3cret"));
}

#[tokio::test]
async fn azure_ad_uses_tenant_path_and_concurrent_callers_share_one_refresh() {
    let fake = fake_cloud(false, 3600).await;
    let http = HttpConfig::default().build().unwrap();
    let (cred, audience) = ClientSecretCredential::discover(
        http,
        &fake.base,
        principal(),
        Arc::new(TokenCache::default()),
    )
    .await
    .unwrap();
    let cred = Arc::new(cred);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let c = cred.clone();
        let a = audience.clone();
        tasks.push(tokio::spawn(async move {
            c.token_for_resource(&a)
                .await
                .unwrap()
                .token
                .secret()
                .to_string()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), "tok-0");
    }
    let token_reqs: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(token_reqs.len(), 1, "one refresh for 16 callers");
    assert_eq!(token_reqs[0].path, "/aad/my-tenant/oauth2/token");
    // Another audience is another cache entry.
    cred.token_for_resource("https://other/").await.unwrap();
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count(),
        2
    );
}

#[tokio::test]
async fn tokens_inside_the_skew_are_refreshed() {
    // expires_in 60 s with a 120 s skew: every call must refresh.
    let fake = fake_cloud(false, 60).await;
    let http = HttpConfig::default().build().unwrap();
    let cache = Arc::new(TokenCache::new(Duration::from_secs(120)));
    let (cred, aud) = ClientSecretCredential::discover(http, &fake.base, principal(), cache)
        .await
        .unwrap();
    assert_eq!(
        cred.token_for_resource(&aud).await.unwrap().token.secret(),
        "tok-0"
    );
    assert_eq!(
        cred.token_for_resource(&aud).await.unwrap().token.secret(),
        "tok-1"
    );
}

#[tokio::test]
async fn token_errors_are_typed() {
    let fake = Fake::start(|_, _| {
        Reply::json(
            401,
            json!({"error": "invalid_client", "error_description": "bad secret"}),
        )
    })
    .await;
    let http = HttpConfig::default().build().unwrap();
    let authority =
        edgetrain_azure::identity::Authority::new(fake.base.join("aad/").unwrap(), "t").unwrap();
    let cred = ClientSecretCredential::new(
        http,
        authority,
        principal(),
        vec![],
        Arc::new(TokenCache::default()),
    );
    let err = cred
        .token_for_resource("https://management.azure.com/")
        .await
        .unwrap_err();
    assert!(
        matches!(err, edgetrain_azure::Error::Token { status: 401, ref code, .. } if code == "invalid_client"),
        "{err:?}"
    );
}

#[tokio::test]
async fn arm_client_connects_through_discovery_and_sends_the_bearer() {
    use edgetrain_azure::arm::ArmClient;
    let fake = Fake::start(|req, _| {
        let host = req.headers.get("host").unwrap().to_str().unwrap().to_string();
        match req.path.as_str() {
            "/metadata/endpoints" => Reply::json(200, json!({"authentication": {
                "loginEndpoint": format!("http://{host}/adfs"), "audiences": ["https://management.adfs.local/guid"]}})),
            "/adfs/oauth2/token" => Reply::json(200, json!({"access_token": "adfs-token", "expires_in": 3600})),
            _ => Reply::json(200, json!({"value": []})),
        }
    })
    .await;
    let http = HttpConfig::default().build().unwrap();
    let arm = ArmClient::connect(
        http,
        fake.base.clone(),
        principal(),
        Arc::new(TokenCache::default()),
    )
    .await
    .unwrap();
    let page: edgetrain_azure::arm::Page<serde_json::Value> = arm
        .page(
            arm.url("/subscriptions/s/resourcegroups", "2019-10-01", &[])
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(page.value.is_empty());
    let reqs = fake.requests();
    let last = reqs.last().unwrap();
    assert_eq!(last.path, "/subscriptions/s/resourcegroups");
    assert_eq!(last.headers["authorization"], "Bearer adfs-token");
    let token_req = reqs
        .iter()
        .find(|r| r.path == "/adfs/oauth2/token")
        .unwrap();
    assert!(
        token_req
            .body
            .contains("resource=https%3A%2F%2Fmanagement.adfs.local%2Fguid"),
        "{}",
        token_req.body
    );
}
