//! `run(KubeApiArgs)`: serves until SIGTERM, writes the kubeconfig and the state dump.
//! Its own test binary: it signals this process.

mod common;

use std::time::Duration;

use edgetrain_sandbox_kube::{KubeApiArgs, run};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, api::PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn run_serves_until_sigterm_and_dumps_state() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let dump = dir.path().join("state.json");
    let args = KubeApiArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        kubeconfig: Some(kubeconfig.clone()),
        history: 100,
        dump_state: Some(dump.clone()),
        crds: Some(common::fixtures().join("crds")),
    };
    let server = tokio::spawn(run(args));
    assert!(common::eventually(10, || async { kubeconfig.exists() }).await);

    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "from-cli"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(
        common::widgets(&client, "default")
            .list(&Default::default())
            .await
            .is_ok(),
        "--crds registered the fixture CRD"
    );

    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let res = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    res.unwrap();
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(text.contains("from-cli"));
}
