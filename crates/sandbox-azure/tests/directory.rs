//! What ARM checks about the caller before any resource provider runs: the subscription exists
//! and the token comes from the tenant the subscription trusts.

mod common;

use common::*;
use edgetrain_sandbox_azure::{Secret, ServicePrincipal, SubscriptionConfig};

const OTHER_TENANT: &str = "99999999-8888-7777-6666-555555555555";
const OTHER_SUB: &str = "00000000-0000-0000-0000-0000000000cc";

fn vm_path(sub: &str) -> String {
    format!(
        "/subscriptions/{sub}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1?api-version={COMPUTE_API}"
    )
}

#[tokio::test]
async fn unknown_subscriptions_are_not_found() {
    let (sim, _dir) = start(false).await;
    let arm = Arm::stack_hub(&sim).await;
    let a = arm.get(&vm_path(OTHER_SUB)).await;
    assert_eq!(a.status, 404, "{:?}", a.body);
    assert_eq!(a.code(), "SubscriptionNotFound");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(OTHER_SUB)
    );
    // The configured one answers as a resource provider would.
    let known = arm.get(&vm_path(SUB)).await;
    assert_eq!(known.code(), "ResourceNotFound");
    // Registering makes it known.
    sim.register_subscription(SubscriptionConfig::new(OTHER_SUB));
    assert_eq!(
        arm.get(&vm_path(OTHER_SUB)).await.code(),
        "ResourceNotFound"
    );
}

#[tokio::test]
async fn tokens_from_another_tenant_are_refused() {
    let (sim, _dir) = start(false).await;
    sim.register_service_principal(ServicePrincipal {
        tenant: OTHER_TENANT.into(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
    });
    sim.register_subscription(SubscriptionConfig {
        id: OTHER_SUB.into(),
        tenant: Some(OTHER_TENANT.into()),
    });
    let foreign = Arm {
        base: sim.base_url().to_owned(),
        token: token_in(&sim, OTHER_TENANT, &sim.config().stack_hub_audience).await,
        client: http(),
    };
    let a = foreign.get(&vm_path(SUB)).await;
    assert_eq!(a.status, 401, "{:?}", a.body);
    assert_eq!(a.code(), "InvalidAuthenticationTokenTenant");
    let challenge = a.header("www-authenticate").unwrap();
    assert!(
        challenge.contains(&format!(
            "authorization_uri=\"{}/{TENANT}\"",
            sim.base_url()
        )),
        "{challenge}"
    );
    // The same token is good in the subscription of its own tenant, and vice versa.
    assert_eq!(
        foreign.get(&vm_path(OTHER_SUB)).await.code(),
        "ResourceNotFound"
    );
    let home = Arm::stack_hub(&sim).await;
    assert_eq!(
        home.get(&vm_path(OTHER_SUB)).await.code(),
        "InvalidAuthenticationTokenTenant"
    );
}
