//! Injected 429s with `Retry-After` at the simulator, seen through the real clients: within the
//! retry budget the call succeeds after exactly the attempts the policy allows; past it the
//! caller gets a typed throttling error carrying the server's `Retry-After`.

mod common;

use std::time::Duration;

use common::sim::{self, Options};
use edgetrain_azure::{
    Error,
    arm::{LroStatus, RetryPolicy},
    stackhub::{self, StackHubApi, StackHubClient},
};
use edgetrain_sandbox_azure::{FaultConfig, FaultRule, IdentitySystem};

/// 429 + `Retry-After: 1` on every matching request, at most `max` times.
fn throttle(method: &str, path: &str, max: Option<u64>) -> FaultConfig {
    FaultConfig {
        methods: vec![method.into()],
        path_contains: vec![path.into()],
        throttle: Some(FaultRule {
            every_nth: 1,
            max,
            retry_after_secs: 1,
            ..FaultRule::default()
        }),
        ..FaultConfig::default()
    }
}

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        ..RetryPolicy::default()
    }
}

async fn client(sim: &sim::Sim, retry: RetryPolicy) -> StackHubClient {
    let hub = sim::stack_hub(sim, IdentitySystem::Aad).await;
    StackHubClient::new(
        hub.arm().clone().with_retry(retry),
        edgetrain_azure::arm::ApiProfile::default(),
    )
}

#[tokio::test]
async fn throttled_write_succeeds_after_exactly_the_allowed_attempts() {
    let retry = policy(4);
    let sim = sim::start(Options {
        faults: throttle("PUT", "networkSecurityGroups/throttled-nsg", Some(3)),
        ..Options::default()
    })
    .await;
    let hub = client(&sim, retry.clone()).await;
    let id = sim::stack_hub_rg().nsg_id("throttled-nsg").unwrap();
    let body =
        stackhub::ssh_nsg_body("local", &["10.0.0.0/8".into()], 22, &Default::default()).unwrap();
    let started = hub.put_nsg(&id, &body).await.unwrap();
    let status = sim::complete(started, |t| {
        let hub = &hub;
        async move { hub.poll(&t).await }
    })
    .await;
    assert_eq!(status, LroStatus::Succeeded);
    // Three 429s and the accepted fourth attempt: all the policy allows, nothing more.
    assert_eq!(
        sim.counters().get("PUT", "Microsoft.Network"),
        u64::from(retry.max_attempts)
    );
    assert_eq!(sim.faults_injected().get("throttle"), Some(&3));
    assert!(hub.get_nsg(&id).await.unwrap().is_some());
}

#[tokio::test]
async fn throttled_read_past_the_budget_is_a_typed_throttling_error() {
    let retry = policy(3);
    let sim = sim::start(Options {
        faults: throttle("GET", "virtualMachines/busy-vm", None),
        ..Options::default()
    })
    .await;
    let hub = client(&sim, retry.clone()).await;
    let id = sim::stack_hub_rg().vm_id("busy-vm").unwrap();
    let err = hub.get_vm(&id, false).await.unwrap_err();
    let Error::Arm(arm) = &err else {
        panic!("expected an ARM error, got {err:?}");
    };
    assert!(arm.is_throttled(), "{arm:?}");
    assert_eq!(arm.status, 429);
    assert_eq!(arm.code(), "TooManyRequests");
    assert_eq!(
        arm.throttled_retry_after(),
        Some(Some(Duration::from_secs(1)))
    );
    assert!(err.is_transient());
    assert_eq!(
        sim.counters().get("GET", "Microsoft.Compute"),
        u64::from(retry.max_attempts)
    );
    assert_eq!(
        sim.faults_injected().get("throttle"),
        Some(&u64::from(retry.max_attempts))
    );
}

/// A server whose `Retry-After` exceeds what the client may sleep gets no second attempt: the
/// hint goes back to the caller (a controller requeues instead of holding a worker).
#[tokio::test]
async fn long_retry_after_is_returned_to_the_caller_without_retrying() {
    let retry = RetryPolicy {
        max_retry_after: Duration::from_millis(500),
        ..policy(4)
    };
    let sim = sim::start(Options {
        faults: throttle("GET", "virtualMachines/busy-vm", None),
        ..Options::default()
    })
    .await;
    let hub = client(&sim, retry).await;
    let id = sim::stack_hub_rg().vm_id("busy-vm").unwrap();
    let err = hub.get_vm(&id, false).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)), "{err:?}");
    assert_eq!(sim.counters().get("GET", "Microsoft.Compute"), 1);
}
