//! Identity against the simulator: metadata discovery and service-principal tokens for an
//! Azure AD stamp and an AD FS stamp, through the real client.

mod common;

use std::{sync::Arc, time::Duration};

use azure_core::time::OffsetDateTime;
use common::sim::{self, CLIENT_SECRET, Options};
use edgetrain_azure::{
    Error,
    arm::ArmClient,
    identity::{self, ClientSecretCredential, IdentityProvider, TokenCache},
    stackhub::StackHubApi,
};
use edgetrain_sandbox_azure::IdentitySystem;

async fn discovery_and_token(identity: IdentitySystem) {
    let sim = sim::start(Options {
        identity,
        ..Options::default()
    })
    .await;
    let http = sim::http(&sim);
    let arm = sim::arm_url(&sim);

    let md = identity::discover(&http, &arm).await.unwrap();
    let (login_suffix, provider, tenant) = match identity {
        IdentitySystem::Aad => ("/", IdentityProvider::AzureAd, sim::TENANT),
        IdentitySystem::Adfs => ("/adfs/", IdentityProvider::Adfs, "adfs"),
    };
    assert_eq!(
        md.login_endpoint.as_str(),
        format!("{}{login_suffix}", sim.base_url())
    );
    assert_eq!(identity::identity_provider(&md.login_endpoint), provider);
    assert_eq!(md.arm_audience(), sim.config().stack_hub_audience);

    let cache = Arc::new(TokenCache::new(Duration::from_secs(60)));
    let (cred, audience) = ClientSecretCredential::discover(
        http.clone(),
        &arm,
        sim::principal(identity, CLIENT_SECRET),
        cache.clone(),
    )
    .await
    .unwrap();
    assert_eq!(cred.authority().provider(), provider);
    assert_eq!(cred.authority().tenant(), tenant);
    let token = cred.token_for_resource(&audience).await.unwrap();
    assert!(!token.token.secret().is_empty());
    let lifetime = token.expires_on - OffsetDateTime::now_utc();
    let configured = sim.config().token_lifetime_secs as i64;
    assert!(
        lifetime.whole_seconds() > configured - 120 && lifetime.whole_seconds() <= configured,
        "token lifetime {lifetime} should match the endpoint's expires_in {configured}"
    );
    // Cached: a second request for the same key does not reach the token endpoint.
    let again = cred.token_for_resource(&audience).await.unwrap();
    assert_eq!(again.token.secret(), token.token.secret());
    assert_eq!(sim.counters().get("POST", "token"), 1);

    // The token is good for Stack Hub ARM: a read of a missing VM is a clean "absent".
    let hub = edgetrain_azure::stackhub::StackHubClient::new(
        ArmClient::new(http, arm, Arc::new(cred), &audience),
        edgetrain_azure::arm::ApiProfile::default(),
    );
    let vm = sim::stack_hub_rg().vm_id("nothing-here").unwrap();
    assert!(hub.get_vm(&vm, false).await.unwrap().is_none());
    assert_eq!(sim.counters().get("GET", "Microsoft.Compute"), 1);
}

#[tokio::test]
async fn azure_ad_stamp_discovery_and_service_principal_token() {
    discovery_and_token(IdentitySystem::Aad).await;
}

#[tokio::test]
async fn adfs_stamp_discovery_and_service_principal_token() {
    discovery_and_token(IdentitySystem::Adfs).await;
}

#[tokio::test]
async fn wrong_secret_is_a_typed_token_error_on_both_stamps() {
    for identity in [IdentitySystem::Aad, IdentitySystem::Adfs] {
        let sim = sim::start(Options {
            identity,
            ..Options::default()
        })
        .await;
        let http = sim::http(&sim);
        let arm = sim::arm_url(&sim);
        let (cred, audience) = ClientSecretCredential::discover(
            http.clone(),
            &arm,
            sim::principal(identity, "not-the-secret"),
            Arc::new(TokenCache::new(Duration::from_secs(60))),
        )
        .await
        .unwrap();
        match cred.token_for_resource(&audience).await {
            Err(Error::Token { status, code, .. }) => {
                assert_eq!(status, 401, "{identity:?}");
                assert_eq!(code, "invalid_client", "{identity:?}");
            }
            other => panic!("{identity:?}: expected Error::Token, got {other:?}"),
        }
        // Through an ARM client the same failure is a credential error, and ARM is never called.
        let hub = edgetrain_azure::stackhub::StackHubClient::new(
            ArmClient::new(http, arm, Arc::new(cred), &audience),
            edgetrain_azure::arm::ApiProfile::default(),
        );
        let vm = sim::stack_hub_rg().vm_id("vm").unwrap();
        let err = hub.get_vm(&vm, false).await.unwrap_err();
        assert!(matches!(err, Error::Credential { .. }), "{err:?}");
        assert_eq!(sim.counters().get("GET", "Microsoft.Compute"), 0);
    }
}

/// The borrowed-token case (issue 9): a second credential with the same tenant and client id but
/// a wrong secret, sharing the process's token cache, must not be served the first one's token.
#[tokio::test]
async fn a_shared_cache_serves_no_token_to_a_wrong_secret() {
    let sim = sim::start(Options::default()).await;
    let http = sim::http(&sim);
    let arm = sim::arm_url(&sim);
    let cache = Arc::new(TokenCache::new(Duration::from_secs(60)));
    let discover = |secret: &'static str| {
        ClientSecretCredential::discover(
            http.clone(),
            &arm,
            sim::principal(IdentitySystem::Aad, secret),
            cache.clone(),
        )
    };
    let (good, audience) = discover(CLIENT_SECRET).await.unwrap();
    good.token_for_resource(&audience).await.unwrap();
    assert_eq!(sim.counters().get("POST", "token"), 1);

    let (borrower, _) = discover("not-the-secret").await.unwrap();
    let err = borrower.token_for_resource(&audience).await.unwrap_err();
    assert!(
        matches!(&err, Error::Token { code, .. } if code == "invalid_client"),
        "{err:?}"
    );
    // The borrower asked the token endpoint itself (and was refused) instead of a cache hit.
    assert_eq!(sim.counters().get("POST", "token"), 2);
    let hub = edgetrain_azure::stackhub::StackHubClient::new(
        ArmClient::new(http.clone(), arm.clone(), Arc::new(borrower), &audience),
        edgetrain_azure::arm::ApiProfile::default(),
    );
    let vm = sim::stack_hub_rg().vm_id("borrowed").unwrap();
    assert!(matches!(
        hub.get_vm(&vm, false).await.unwrap_err(),
        Error::Credential { .. }
    ));
    assert_eq!(sim.counters().get("GET", "Microsoft.Compute"), 0);

    // The rightful owner still uses its cached token.
    let asked = sim.counters().get("POST", "token");
    good.token_for_resource(&audience).await.unwrap();
    assert_eq!(sim.counters().get("POST", "token"), asked);
}
