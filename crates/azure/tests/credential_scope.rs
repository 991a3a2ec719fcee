//! Issue 9 at the client level, against request-recording fakes: a client secret never goes to
//! a login endpoint the operator does not trust, a shared token cache never serves a token to a
//! secret that did not earn it, and ids cannot move a request out of its resource group.

mod common;

use std::sync::Arc;

use azure_core::credentials::Secret;
use common::fake::{Fake, Reply, StaticCredential};
use edgetrain_azure::{
    Error,
    arm::{ApiProfile, ArmClient},
    identity::{ClientSecretCredential, EndpointPolicy, ServicePrincipal, TokenCache},
    ml::{MlApi, MlClient, Workspace},
    stackhub::{ResourceGroup, StackHubApi, StackHubClient},
    transport::HttpConfig,
};
use serde_json::json;

fn principal(secret: &str) -> ServicePrincipal {
    ServicePrincipal {
        tenant: "my-tenant".into(),
        client_id: "app-1".into(),
        client_secret: Secret::new(secret.to_owned()),
    }
}

/// An "ARM endpoint" whose metadata names `login` (a closure of its own address) as the login
/// endpoint and that would happily issue tokens: it records whatever it is sent.
async fn rogue(login: impl Fn(&str) -> String + Send + Sync + 'static) -> Fake {
    Fake::start(move |req, _| {
        let host = req.headers.get("host").unwrap().to_str().unwrap();
        if req.path == "/metadata/endpoints" {
            return Reply::json(
                200,
                json!({"authentication": {"loginEndpoint": login(host), "audiences": ["https://management.azure.com/"]}}),
            );
        }
        Reply::json(
            200,
            json!({"access_token": "harvested", "expires_in": "3600"}),
        )
    })
    .await
}

fn secrets_seen(fake: &Fake) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.body.contains("client_secret"))
        .count()
}

#[tokio::test]
async fn a_rogue_metadata_endpoint_naming_itself_receives_no_secret_when_not_allowed() {
    let http = HttpConfig::default().build().unwrap();
    let fake = rogue(|host| format!("http://{host}/")).await;
    // The operator trusts only its real authority; the rogue is on loopback, so https is not
    // what stops it.
    let policy =
        EndpointPolicy::new(&[] as &[&str], &["https://login.microsoftonline.com"]).unwrap();
    let err = ClientSecretCredential::discover_within(
        http.clone(),
        &fake.base,
        principal("the-real-secret"),
        Arc::new(TokenCache::default()),
        &policy,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::UntrustedEndpoint { what, .. } if what == "login endpoint"),
        "{err:?}"
    );
    assert_eq!(secrets_seen(&fake), 0);
    // Only the metadata was read; nothing was posted anywhere.
    assert!(fake.requests().iter().all(|r| r.method == "GET"));

    // ARM endpoints are checked before metadata is even fetched.
    let arm_only = EndpointPolicy::new(&["https://management.azure.com"], &[] as &[&str]).unwrap();
    let before = fake.requests().len();
    let err = ClientSecretCredential::discover_within(
        http,
        &fake.base,
        principal("the-real-secret"),
        Arc::new(TokenCache::default()),
        &arm_only,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::UntrustedEndpoint { what, .. } if what == "ARM endpoint"),
        "{err:?}"
    );
    assert_eq!(fake.requests().len(), before);
}

#[tokio::test]
async fn a_metadata_endpoint_naming_a_plain_http_host_receives_no_secret_even_without_allow_lists()
{
    let http = HttpConfig::default().build().unwrap();
    // 192.0.2.1 (TEST-NET-1) is never contacted: the scheme check fails first.
    let fake = rogue(|_| "http://192.0.2.1/".to_string()).await;
    let err = ClientSecretCredential::discover(
        http,
        &fake.base,
        principal("the-real-secret"),
        Arc::new(TokenCache::default()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::UntrustedEndpoint { .. }), "{err:?}");
    assert!(!err.to_string().contains("the-real-secret"));
    assert_eq!(secrets_seen(&fake), 0);
}

#[tokio::test]
async fn the_allowed_authority_still_gets_its_token_request() {
    let http = HttpConfig::default().build().unwrap();
    let fake = rogue(|host| format!("http://{host}/")).await;
    let origin = fake.base.as_str().trim_end_matches('/').to_string();
    let policy = EndpointPolicy::new(&[origin.as_str()], &[origin.as_str()]).unwrap();
    let (cred, audience) = ClientSecretCredential::discover_within(
        http,
        &fake.base,
        principal("s3cret"),
        Arc::new(TokenCache::default()),
        &policy,
    )
    .await
    .unwrap();
    cred.token_for_resource(&audience).await.unwrap();
    assert_eq!(secrets_seen(&fake), 1);
}

/// Token endpoint that knows one secret.
async fn strict_cloud() -> Fake {
    Fake::start(|req, earlier| {
        let host = req.headers.get("host").unwrap().to_str().unwrap();
        if req.path == "/metadata/endpoints" {
            return Reply::json(
                200,
                json!({"authentication": {"loginEndpoint": format!("http://{host}/"), "audiences": ["https://arm/"]}}),
            );
        }
        if !req.body.contains("client_secret=s3cret") {
            return Reply::json(401, json!({"error": "invalid_client", "error_description": "AADSTS7000215"}));
        }
        let n = earlier.iter().filter(|r| r.method == "POST").count();
        Reply::json(200, json!({"access_token": format!("tok-{n}"), "expires_in": "3600"}))
    })
    .await
}

#[tokio::test]
async fn a_shared_token_cache_is_keyed_by_the_secret() {
    let fake = strict_cloud().await;
    let http = HttpConfig::default().build().unwrap();
    let cache = Arc::new(TokenCache::default());
    let cred = |secret: &str| {
        ClientSecretCredential::discover(http.clone(), &fake.base, principal(secret), cache.clone())
    };
    let (owner, aud) = cred("s3cret").await.unwrap();
    assert_eq!(
        owner.token_for_resource(&aud).await.unwrap().token.secret(),
        "tok-0"
    );
    let (borrower, _) = cred("guessed").await.unwrap();
    let err = borrower.token_for_resource(&aud).await.unwrap_err();
    assert!(matches!(&err, Error::Token { status: 401, .. }), "{err:?}");
    // A changed secret is a new key too: the new secret has to earn its own token.
    let (rotated, _) = cred("s3cret").await.unwrap();
    assert_eq!(
        rotated
            .token_for_resource(&aud)
            .await
            .unwrap()
            .token
            .secret(),
        "tok-0"
    );
    let posts = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(
        posts, 2,
        "owner once, borrower refused, same secret served from cache"
    );
}

#[tokio::test]
async fn dot_dot_ids_never_reach_the_wire() {
    let fake = Fake::start(|_, _| Reply::json(200, json!({}))).await;
    let arm = ArmClient::new(
        HttpConfig::default().build().unwrap(),
        fake.base.clone(),
        Arc::new(StaticCredential),
        "https://arm/",
    );
    let hub = StackHubClient::new(arm.clone(), ApiProfile::default());
    let escaped = ResourceGroup {
        subscription_id: "sub".into(),
        resource_group: "..".into(),
    };
    assert!(matches!(escaped.vm_id("vm"), Err(Error::InvalidInput(_))));
    // Raw ids (e.g. read back from status) are checked again when the URL is built.
    let raw = "/subscriptions/sub/resourceGroups/../providers/Microsoft.Compute/virtualMachines/vm";
    assert!(matches!(
        hub.get_vm(raw, false).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(hub.delete(raw).await, Err(Error::InvalidInput(_))));
    let ml = MlClient::new(
        arm,
        Workspace {
            subscription_id: "sub".into(),
            resource_group: "..".into(),
            name: "ws".into(),
        },
    );
    assert!(ml.get_compute("c1").await.is_err());
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[tokio::test]
async fn bearer_tokens_never_go_to_plain_http_off_loopback() {
    // Nothing listens there; the check fails before any connection is tried.
    let arm = ArmClient::new(
        HttpConfig::default().build().unwrap(),
        url::Url::parse("http://192.0.2.1/").unwrap(),
        Arc::new(StaticCredential),
        "https://arm/",
    );
    let url = arm.url("/subscriptions/s", "2020-01-01", &[]).unwrap();
    let err = arm.execute(http::Method::GET, url, None).await.unwrap_err();
    assert!(matches!(err, Error::UntrustedEndpoint { .. }), "{err:?}");
}
