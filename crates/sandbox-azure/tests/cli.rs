//! The foreground entry point (`edgetrain-sandbox azure`): the endpoint file scripts wait for,
//! `sandbox.json`, `upload` into a running simulator, the blob proxy, and the inventory served
//! over HTTP.

mod common;

use std::time::Duration;

use common::*;
use edgetrain_sandbox_azure::{
    AzureArgs, ENDPOINT_FILE, ExampleDataArgs, SandboxInfo, Secret, UploadArgs, churn_csv,
    sign_account_sas, upload, write_example_data,
};
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

/// Waits for `<state-dir>/endpoint` (written after `sandbox.json`).
async fn wait_endpoint(state_dir: &std::path::Path) -> String {
    for _ in 0..600 {
        if let Ok(text) = std::fs::read_to_string(state_dir.join(ENDPOINT_FILE))
            && text.ends_with('\n')
        {
            return text.trim_end().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no endpoint file in {}", state_dir.display());
}

/// What the demo does with a running simulator: read `sandbox.json`, upload the example data
/// with the account key, and reach the account by its host-style name through the blob proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_json_upload_and_the_blob_proxy_work_against_a_running_simulator() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let config_file = dir.path().join("sim.toml");
    std::fs::write(
        &config_file,
        format!("azurite = true\n[storage]\nstack_hub_account = \"churndata\"\nstack_hub_key = \"{key}\"\n"),
    )
    .unwrap();
    let task = tokio::spawn(edgetrain_sandbox_azure::run(AzureArgs {
        listen: "127.0.0.1:0".into(),
        state_dir: state_dir.clone(),
        config: Some(config_file),
        faults: None,
    }));
    let url = wait_endpoint(&state_dir).await;

    let info = SandboxInfo::read(&state_dir).unwrap();
    assert_eq!(info.base_url, url);
    assert!(info.registry.is_none(), "registry not enabled");
    let storage = info.storage.clone().expect("azurite");
    assert_eq!(storage.stack_hub_account, "churndata");
    assert!(storage.ca_pem_path.exists());
    let text = std::fs::read_to_string(state_dir.join("sandbox.json")).unwrap();
    assert!(!text.contains(&key), "sandbox.json holds no key");

    let files = write_example_data(&ExampleDataArgs {
        dir: dir.path().join("data"),
        files: 2,
        rows: 50,
    })
    .unwrap();
    let args = UploadArgs {
        state_dir: state_dir.clone(),
        account: None,
        container: "telemetry".into(),
        prefix: "churn/2026-11/".into(),
        files,
    };
    let wrong = base64::engine::general_purpose::STANDARD.encode([8u8; 64]);
    assert!(
        upload(&args, &Secret::new(wrong)).await.is_err(),
        "a wrong key is refused"
    );
    let done = upload(&args, &Secret::new(key.clone())).await.unwrap();
    assert_eq!(
        done,
        vec![
            (
                "churn/2026-11/part-1.csv".to_string(),
                churn_csv(1, 50).len()
            ),
            (
                "churn/2026-11/part-2.csv".to_string(),
                churn_csv(2, 50).len()
            ),
        ]
    );

    // Read back by the host-style name, through the proxy (the way a separate controller
    // process reaches Azure ML's `{account}.blob.localhost` URLs).
    let sas =
        sign_account_sas("churndata", "rl", "2099-01-01T00:00:00Z", &Secret::new(key)).unwrap();
    let port = storage.path_style.rsplit(':').next().unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&storage.ca_pem_path).unwrap()).unwrap();
    let proxy = info.blob_proxy.expect("blob proxy");
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .proxy(reqwest::Proxy::all(format!("http://{proxy}")).unwrap())
        .build()
        .unwrap();
    let got = client
        .get(format!(
            "https://churndata.blob.localhost:{port}/telemetry/churn/2026-11/part-2.csv?{}",
            sas.expose()
        ))
        .header("x-ms-version", "2019-07-07")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().to_vec(), churn_csv(2, 50));
    // Any other name is refused by the proxy.
    let other = client
        .get(format!("https://example.com:{port}/"))
        .send()
        .await;
    assert!(other.is_err(), "{other:?}");
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
