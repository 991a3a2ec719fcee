//! The foreground entry point (`edgetrain-sandbox azure`): the endpoint file scripts wait for,
//! and the inventory served over HTTP.

mod common;

use std::time::Duration;

use common::*;
use edgetrain_sandbox_azure::{AzureArgs, ENDPOINT_FILE};
use serde_json::Value;

#[tokio::test]
async fn run_replaces_a_stale_endpoint_file_with_the_address_it_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let endpoint_file = state_dir.join(ENDPOINT_FILE);
    std::fs::write(&endpoint_file, "http://127.0.0.1:1\n").unwrap();
    let config_file = dir.path().join("sim.toml");
    std::fs::write(
        &config_file,
        r#"
azurite = false
[[workspaces]]
subscription_id = "00000000-0000-0000-0000-0000000000aa"
resource_group = "rg1"
name = "ws1"
"#,
    )
    .unwrap();
    let task = tokio::spawn(edgetrain_sandbox_azure::run(AzureArgs {
        listen: "127.0.0.1:0".into(),
        state_dir: state_dir.clone(),
        config: Some(config_file),
        faults: None,
    }));

    let mut url = String::new();
    for _ in 0..200 {
        let text = std::fs::read_to_string(&endpoint_file).unwrap_or_default();
        if text.ends_with('\n') && text != "http://127.0.0.1:1\n" {
            url = text.trim_end().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "endpoint file: {url:?}"
    );
    assert!(!state_dir.join("endpoint.tmp").exists());

    let resp = http()
        .get(format!("{url}/_sandbox/inventory"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let items: Vec<Value> = resp.json().await.unwrap();
    assert!(
        items.iter().any(|i| i["id"]
            .as_str()
            .is_some_and(|id| id.ends_with("/workspaces/ws1"))),
        "{items:?}"
    );
    task.abort();
}

#[tokio::test]
async fn inventory_over_http_matches_the_in_process_inventory() {
    let (sim, _dir) = start(false).await;
    let arm = Arm::stack_hub(&sim).await;
    let vnet = format!(
        "{}/providers/Microsoft.Network/virtualNetworks/vnet1?api-version={NETWORK_API}",
        rg()
    );
    let put = arm
        .put(
            &vnet,
            &serde_json::json!({
                "location": "local",
                "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/24"]}}
            }),
        )
        .await;
    assert!(put.status == 200 || put.status == 201, "{}", put.body);

    let resp = http()
        .get(format!("{}/_sandbox/inventory", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let over_http: Value = resp.json().await.unwrap();
    assert_eq!(over_http, serde_json::to_value(sim.inventory()).unwrap());
    assert!(
        over_http
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["resource_type"] == "Microsoft.Network/virtualNetworks"),
        "{over_http}"
    );
}
