//! Fault injection: 429 with Retry-After (exact attempt counts), 5xx, dropped connections,
//! latency, and per-subscription budgets with remaining-quota headers.

mod common;

use std::time::{Duration, Instant};

use common::*;
use edgetrain_sandbox_azure::{AzureSim, BucketConfig, BudgetConfig, FaultConfig, FaultRule};
use serde_json::json;

async fn start_with(faults: FaultConfig) -> (AzureSim, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), false);
    cfg.faults = faults;
    (AzureSim::start(cfg).await.unwrap(), dir)
}

fn pip_path(name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Network/publicIPAddresses/{name}?api-version={NETWORK_API}",
        rg()
    )
}

/// A minimal retry policy like the operator's: retry 429/503 after Retry-After, at most 5 attempts.
async fn put_with_retries(arm: &Arm, path: &str) -> (u16, u32, Vec<String>) {
    let body = json!({"location": "local", "properties": {"publicIPAllocationMethod": "Static"}});
    let mut attempts = 0;
    let mut retry_afters = Vec::new();
    loop {
        attempts += 1;
        let a = arm.put(path, &body).await;
        if (a.status == 429 || a.status == 503) && attempts < 5 {
            let wait = a.header("retry-after").expect("Retry-After on 429/503");
            retry_afters.push(wait.clone());
            tokio::time::sleep(Duration::from_secs(wait.parse().unwrap())).await;
            continue;
        }
        return (a.status, attempts, retry_afters);
    }
}

#[tokio::test]
async fn throttled_calls_succeed_after_exactly_the_injected_retries() {
    let (sim, _dir) = start_with(FaultConfig {
        methods: vec!["PUT".into()],
        throttle: Some(FaultRule {
            every_nth: 1,
            max: Some(2),
            retry_after_secs: 1,
            ..FaultRule::default()
        }),
        ..FaultConfig::default()
    })
    .await;
    let arm = Arm::stack_hub(&sim).await;
    let (status, attempts, waits) = put_with_retries(&arm, &pip_path("p1")).await;
    assert_eq!(status, 201);
    assert_eq!(attempts, 3);
    assert_eq!(waits, vec!["1", "1"]);
    assert_eq!(sim.counters().get("PUT", "Microsoft.Network"), 3);
    assert_eq!(sim.faults_injected().get("throttle"), Some(&2));
    // After `max` injections the rule is spent: the next PUT goes straight through.
    let (status, attempts, _) = put_with_retries(&arm, &pip_path("p2")).await;
    assert_eq!((status, attempts), (201, 1));
}

#[tokio::test]
async fn throttle_body_is_an_arm_error_envelope() {
    let (sim, _dir) = start_with(FaultConfig {
        throttle: Some(FaultRule {
            every_nth: 1,
            retry_after_secs: 7,
            ..FaultRule::default()
        }),
        ..FaultConfig::default()
    })
    .await;
    let arm = Arm::stack_hub(&sim).await;
    let a = arm.get(&pip_path("p1")).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.header("retry-after").as_deref(), Some("7"));
    assert_eq!(a.code(), "TooManyRequests");
    // Token and metadata endpoints are not subject to ARM faults.
    assert_eq!(sim.counters().get("POST", "token"), 1);
}

#[tokio::test]
async fn probabilistic_faults_repeat_for_the_same_seed() {
    async fn statuses(seed: u64) -> Vec<u16> {
        let (sim, _dir) = start_with(FaultConfig {
            seed,
            server_error: Some(FaultRule {
                probability: 0.4,
                status: Some(503),
                retry_after_secs: 2,
                ..FaultRule::default()
            }),
            ..FaultConfig::default()
        })
        .await;
        let arm = Arm::stack_hub(&sim).await;
        let mut out = Vec::new();
        for _ in 0..20 {
            out.push(arm.get(&pip_path("none")).await.status);
        }
        out
    }
    let a = statuses(99).await;
    assert_eq!(a, statuses(99).await);
    assert!(a.contains(&503) && a.contains(&404), "{a:?}");
}

#[tokio::test]
async fn dropped_connections_and_latency() {
    let (sim, _dir) = start_with(FaultConfig {
        latency_ms: 150,
        drop_connection: Some(FaultRule {
            every_nth: 2,
            max: Some(1),
            ..FaultRule::default()
        }),
        ..FaultConfig::default()
    })
    .await;
    let token = token(&sim, &sim.config().stack_hub_audience.clone()).await;
    let url = format!("{}{}", sim.base_url(), pip_path("x"));
    // A fresh connection per request, so the drop cannot hide behind a pooled one.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let started = Instant::now();
    let first = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(first.status(), 404);
    assert!(started.elapsed() >= Duration::from_millis(150));
    let second = client.get(&url).bearer_auth(&token).send().await;
    assert!(
        second.is_err(),
        "the second request's connection should be dropped"
    );
    let third = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(third.status(), 404);
    assert_eq!(sim.faults_injected().get("drop"), Some(&1));
}

#[tokio::test]
async fn subscription_budget_like_arm() {
    let (sim, _dir) = start_with(FaultConfig {
        budget: Some(BudgetConfig {
            reads: BucketConfig {
                capacity: 3,
                refill_per_sec: 0.0,
            },
            ..BudgetConfig::default()
        }),
        ..FaultConfig::default()
    })
    .await;
    let arm = Arm::stack_hub(&sim).await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let a = arm.get(&pip_path("x")).await;
        assert_eq!(a.status, 404);
        remaining.push(
            a.header("x-ms-ratelimit-remaining-subscription-reads")
                .unwrap(),
        );
    }
    assert_eq!(remaining, vec!["2", "1", "0"]);
    let over = arm.get(&pip_path("x")).await;
    assert_eq!(over.status, 429);
    assert_eq!(over.code(), "SubscriptionRequestsThrottled");
    assert!(over.header("retry-after").is_some());
    // Writes have their own bucket; other subscriptions their own budget.
    let (status, attempts, _) = put_with_retries(&arm, &pip_path("p1")).await;
    assert_eq!((status, attempts), (201, 1));
    let other = format!(
        "/subscriptions/00000000-0000-0000-0000-0000000000bb/resourceGroups/rg/providers/Microsoft.Network/publicIPAddresses/x?api-version={NETWORK_API}"
    );
    assert_eq!(arm.get(&other).await.status, 404);
    assert_eq!(sim.faults_injected().get("budget"), Some(&1));
}
