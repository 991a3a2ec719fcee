//! Startup: probes and metrics are served; a missing CRD stops the controller with a hint.

mod common;

use std::time::Duration;

use common::*;
use edgetrain_controller::metrics::Metrics;
use edgetrain_sandbox_kube::{Options, SandboxKube};

fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_health_readiness_and_metrics() {
    let w = world(200).await;
    let addr = free_port();
    let mut cfg = config(&w, Duration::from_secs(300), Metrics::default());
    cfg.metrics_addr = addr;
    let ctl = spawn(cfg);
    create(&w, ect_json(&w, "probed", serde_json::json!({}))).await;
    wait_ready(&w, "probed", 60).await;
    edgetrain_azure::transport::install_crypto_provider();
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let http = http.clone();
        let url = format!("http://{addr}{path}");
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);
    let (status, text) = get("/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "edgetrain_reconciles_total{kind=\"EdgeComputeTarget\"}",
        "edgetrain_reconcile_duration_seconds_bucket",
        "edgetrain_time_to_ready_seconds_count",
        "edgetrain_azure_requests_total{host=\"127.0.0.1\",verb=\"PUT\",status_class=\"2xx\"}",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    ctl.abort();
}

fn bare_config(kube: &SandboxKube) -> edgetrain_controller::Config {
    edgetrain_controller::Config {
        client: kube.client().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        default_deletion_policy: edgetrain_api::DeletionPolicy::Retain,
        watch_namespaces: vec![],
        resync: Duration::from_secs(300),
        max_concurrent_reconciles: edgetrain_controller::DEFAULT_MAX_CONCURRENT_RECONCILES,
        azure_ml_list_pages_per_minute:
            edgetrain_controller::training_run::listing::DEFAULT_PAGES_PER_MINUTE,
        leader: None,
        instance: "test".into(),
        metrics: Metrics::default(),
        factories: None,
        workload_identity: None,
        endpoint_policy: Default::default(),
        stack_hub_rate_limits: Default::default(),
        clock: None,
    }
}

async fn startup_error(kube: &SandboxKube) -> String {
    tokio::time::timeout(
        Duration::from_secs(30),
        edgetrain_controller::run(bare_config(kube)),
    )
    .await
    .expect("run returns")
    .unwrap_err()
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_crd_stops_with_a_hint() {
    let kube = SandboxKube::start(Options::default()).await.unwrap();
    let err = startup_error(&kube).await;
    assert!(err.contains("kubectl apply -f crds/"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_needs_its_crd() {
    // Only the EdgeComputeTarget CRD installed: the TrainingRun one is named as missing.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        crds_dir().join("edgecomputetargets.yaml"),
        dir.path().join("edgecomputetargets.yaml"),
    )
    .unwrap();
    let kube = SandboxKube::start(Options::default()).await.unwrap();
    kube.register_crds(dir.path()).unwrap();
    let err = startup_error(&kube).await;
    assert!(err.contains("TrainingRun CRD is not installed"), "{err}");
}
