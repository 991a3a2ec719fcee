//! Azure ML on public ARM with Azurite: code upload through startPendingUpload, compute attach,
//! a Command job that reads Stack Hub data through a SAS bound to 127.0.0.1 over https, writes
//! an output and a metric, and ends Completed with its output in the datastore; cancel,
//! failure, timeout, list paging.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use edgetrain_sandbox_azure::{
    AzureSim, StorageEndpoints, TEST_SSH_PRIVATE_KEY_PEM, sign_account_sas,
};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// Service SAS for a container, signed here (HMAC-SHA256 over the 2018-11-09+ string-to-sign).
fn container_sas(account: &str, container: &str, key_b64: &str, perms: &str, ip: &str) -> String {
    let expiry = (chrono::Utc::now() + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let version = "2019-07-07";
    let string_to_sign = format!(
        "{perms}\n\n{expiry}\n/blob/{account}/{container}\n\n{ip}\nhttps\n{version}\nc\n\n\n\n\n\n"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_b64)
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(string_to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sv", version)
        .append_pair("sr", "c")
        .append_pair("sp", perms)
        .append_pair("se", &expiry)
        .append_pair("sip", ip)
        .append_pair("spr", "https")
        .append_pair("sig", &sig)
        .finish()
}

/// A blob client that trusts the sandbox CA and resolves `*.blob.localhost` (the test's "DNS").
fn blob_client(s: &StorageEndpoints) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    s.resolve_host_style(
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&s.ca_pem).unwrap()),
    )
    .build()
    .unwrap()
}

async fn put_blob(c: &reqwest::Client, url: &str, data: &str) {
    let r = c
        .put(url)
        .header("x-ms-version", "2019-07-07")
        .header("x-ms-blob-type", "BlockBlob")
        .body(data.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

async fn get_blob(c: &reqwest::Client, url: &str) -> (u16, String) {
    let r = c
        .get(url)
        .header("x-ms-version", "2019-07-07")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Stack Hub data: container `training` with `data/train.csv`.
async fn seed_stack_hub_data(s: &StorageEndpoints) {
    let c = blob_client(s);
    let account_sas = sign_account_sas(
        &s.stack_hub_account,
        "rwdlac",
        "2099-01-01T00:00:00Z",
        &s.stack_hub_key,
    )
    .unwrap();
    let base = s.path_style(&s.stack_hub_account);
    let r = c
        .put(format!(
            "{base}/training?restype=container&{}",
            account_sas.expose()
        ))
        .header("x-ms-version", "2019-07-07")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    put_blob(
        &c,
        &format!("{base}/training/data/train.csv?{}", account_sas.expose()),
        "x,y\n1,2\n3,4\n",
    )
    .await;
}

const TRAIN_PY: &str = r#"
import json, os, sys, urllib.request
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
with urllib.request.urlopen(args["--data-url"]) as r:
    rows = r.read().decode().strip().splitlines()[1:]
folder_rows = open(os.path.join(args["--folder"], "train.csv")).read().strip().splitlines()[1:]
os.makedirs(args["--out"], exist_ok=True)
with open(os.path.join(args["--out"], "model.txt"), "w") as f:
    f.write("rows=%d lr=%s env=%s\n" % (len(rows), args["--lr"], os.environ["EDGETRAIN_RUN"]))
os.makedirs("outputs", exist_ok=True)
json.dump({"rows": len(rows), "folder_rows": len(folder_rows), "accuracy": 0.75}, open("outputs/metrics.json", "w"))
print("hello from the job")
"#;

/// Upload the code folder through startPendingUpload and register code version `train:1`.
async fn register_code(arm: &Arm, s: &StorageEndpoints) -> String {
    let version = format!("{}/codes/train/versions/1", ws());
    let pending = arm
        .post(
            &format!("{version}/startPendingUpload?api-version={ML_API}"),
            Some(&json!({"pendingUploadType": "TemporaryBlobReference", "pendingUploadId": null})),
        )
        .await;
    assert_eq!(pending.status, 200, "{}", pending.body);
    let blob_ref = &pending.body["blobReferenceForConsumption"];
    let blob_uri = blob_ref["blobUri"].as_str().unwrap().to_owned();
    assert!(blob_uri.starts_with(&format!("https://{}.blob.localhost:", s.datastore_account)));
    assert_eq!(blob_ref["credential"]["credentialType"], "SAS");
    let sas_uri = blob_ref["credential"]["sasUri"].as_str().unwrap();
    let sas = sas_uri.split_once('?').unwrap().1;
    put_blob(
        &blob_client(s),
        &format!("{blob_uri}/train.py?{sas}"),
        TRAIN_PY,
    )
    .await;
    let code = arm
        .put(
            &format!("{version}?api-version={ML_API}"),
            &json!({"properties": {"codeUri": blob_uri, "isAnonymous": false, "description": "training code"}}),
        )
        .await;
    assert_eq!(code.status, 201, "{}", code.body);
    version
}

async fn attach_compute(arm: &Arm) -> String {
    let compute = format!("{}/computes/edge", ws());
    let a = arm
        .put(
            &format!("{compute}?api-version={ML_API}"),
            &json!({"location": "westeurope", "properties": {"computeType": "VirtualMachine",
                "properties": {"address": "127.0.0.1", "sshPort": 22,
                    "administratorAccount": {"username": "azureuser", "privateKeyData": TEST_SSH_PRIVATE_KEY_PEM}}}}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert!(
        a.body["properties"]["properties"]
            .get("administratorAccount")
            .is_none()
    );
    assert_eq!(
        arm.wait_async(&a.header("azure-asyncoperation").unwrap())
            .await,
        "Succeeded"
    );
    let keys = arm
        .post(&format!("{compute}/listKeys?api-version={ML_API}"), None)
        .await;
    assert_eq!(
        keys.body["administratorAccount"]["privateKeyData"],
        TEST_SSH_PRIVATE_KEY_PEM
    );
    compute
}

async fn environment(arm: &Arm) -> String {
    let env = format!("{}/environments/py/versions/1", ws());
    let a = arm
        .put(
            &format!("{env}?api-version={ML_API}"),
            &json!({"properties": {"image": "python:3.12-slim"}}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    env
}

fn job_body(
    command: &str,
    compute: &str,
    env: &str,
    code: Option<&str>,
    inputs: Value,
    extra: Value,
) -> Value {
    let mut body = json!({"properties": {
        "jobType": "Command", "command": command, "computeId": compute, "environmentId": env,
        "experimentName": "edgetrain", "inputs": inputs,
        "outputs": {"model": {"jobOutputType": "uri_folder", "mode": "Upload"}},
        "environmentVariables": {"EDGETRAIN_RUN": "yes"},
    }});
    if let Some(code) = code {
        body["properties"]["codeId"] = json!(code);
    }
    if let Some(obj) = extra.as_object() {
        for (k, v) in obj {
            body["properties"][k] = v.clone();
        }
    }
    body
}

async fn wait_job(arm: &Arm, job: &str) -> (String, Vec<String>) {
    let mut seen = Vec::new();
    for _ in 0..600 {
        let a = arm.get(&format!("{job}?api-version={ML_API}")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let status = a.body["properties"]["status"].as_str().unwrap().to_owned();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if ["Completed", "Failed", "Canceled"].contains(&status.as_str()) {
            return (status, seen);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {job} did not finish: {seen:?}");
}

async fn start_ml() -> (AzureSim, tempfile::TempDir, Arm, StorageEndpoints) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), true);
    cfg.list_page_size = 2;
    let sim = AzureSim::start(cfg).await.unwrap();
    let arm = Arm::public(&sim).await;
    let storage = sim.storage_endpoints().unwrap();
    (sim, dir, arm, storage)
}

#[tokio::test]
async fn command_job_reads_sas_data_and_uploads_outputs_and_metrics() {
    let (sim, _dir, arm, s) = start_ml().await;
    seed_stack_hub_data(&s).await;
    let code = register_code(&arm, &s).await;
    let compute = attach_compute(&arm).await;
    let env = environment(&arm).await;

    let sas = container_sas(
        &s.stack_hub_account,
        "training",
        s.stack_hub_key.expose(),
        "rl",
        "127.0.0.1",
    );
    let data_url = format!(
        "{}/training/data/train.csv?{sas}",
        s.path_style(&s.stack_hub_account)
    );
    let folder_url = format!("{}/training/data?{sas}", s.path_style(&s.stack_hub_account));
    // The SAS is bound to 127.0.0.1 and https: it works from "the VM" (this machine).
    let (status, _) = get_blob(&blob_client(&s), &data_url).await;
    assert_eq!(status, 200);

    let job = format!("{}/jobs/edgetrain-job-1", ws());
    let body = job_body(
        "python3 train.py --data-url \"${{inputs.data_url}}\" --folder ${{inputs.folder}} --lr ${{inputs.lr}} --out ${{outputs.model}}",
        &compute,
        &env,
        Some(&code),
        json!({
            "data_url": {"jobInputType": "literal", "value": data_url},
            "folder": {"jobInputType": "uri_folder", "uri": folder_url, "mode": "Download"},
            "lr": {"jobInputType": "literal", "value": "0.1"}
        }),
        json!({"limits": {"jobLimitsType": "Command", "timeout": "PT5M"}}),
    );
    let created = arm.put(&format!("{job}?api-version={ML_API}"), &body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["properties"]["status"], "NotStarted");
    let (status, seen) = wait_job(&arm, &job).await;

    let ds = arm
        .get(&format!(
            "{}/datastores/workspaceblobstore?api-version={ML_API}",
            ws()
        ))
        .await;
    assert_eq!(
        ds.body["properties"]["accountName"],
        s.datastore_account.as_str()
    );
    assert_eq!(
        ds.body["properties"]["endpoint"],
        format!("localhost:{}", s.port)
    );
    assert!(
        ds.body["properties"]["credentials"]
            .get("secrets")
            .is_none()
    );
    let secrets = arm
        .post(
            &format!(
                "{}/datastores/workspaceblobstore/listSecrets?api-version={ML_API}",
                ws()
            ),
            None,
        )
        .await;
    assert_eq!(secrets.body["secretsType"], "AccountKey");
    let key = secrets.body["key"].as_str().unwrap().to_owned();
    let read_sas = container_sas(
        &s.datastore_account,
        &s.datastore_container,
        &key,
        "rl",
        "127.0.0.1",
    );
    let out = format!(
        "{}/{}",
        s.host_style(&s.datastore_account),
        s.datastore_container
    );
    let c = blob_client(&s);
    let (_, log) = get_blob(
        &c,
        &format!("{out}/azureml/edgetrain-job-1/artifacts/user_logs/std_log.txt?{read_sas}"),
    )
    .await;
    assert_eq!(status, "Completed", "statuses {seen:?}, log:\n{log}");
    assert!(
        seen.contains(&"Running".to_owned()) || seen.contains(&"Finalizing".to_owned()),
        "{seen:?}"
    );
    assert!(log.contains("hello from the job"), "{log}");

    let (code200, model) = get_blob(
        &c,
        &format!("{out}/azureml/edgetrain-job-1/model/model.txt?{read_sas}"),
    )
    .await;
    assert_eq!(code200, 200);
    assert_eq!(model, "rows=2 lr=0.1 env=yes\n");
    let (_, metrics) = get_blob(
        &c,
        &format!("{out}/azureml/edgetrain-job-1/artifacts/outputs/metrics.json?{read_sas}"),
    )
    .await;
    assert!(metrics.contains("accuracy"));
    let m = sim.job_metrics(&job).unwrap();
    assert_eq!(m["rows"], 2.0);
    assert_eq!(m["folder_rows"], 2.0);

    let done = arm.get(&format!("{job}?api-version={ML_API}")).await;
    assert_eq!(
        done.body["properties"]["outputs"]["model"]["uri"],
        "azureml://datastores/workspaceblobstore/paths/azureml/edgetrain-job-1/model/"
    );
    assert_eq!(
        done.body["properties"]["outputs"]["artifacts"]["uri"],
        "azureml://datastores/workspaceblobstore/paths/azureml/edgetrain-job-1/artifacts/"
    );
    // A repeated PUT is an update of tags, not a second run.
    let mut retag = body.clone();
    retag["properties"]["tags"] = json!({"round": "2"});
    let again = arm
        .put(&format!("{job}?api-version={ML_API}"), &retag)
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["properties"]["status"], "Completed");
    let reread = arm.get(&format!("{job}?api-version={ML_API}")).await;
    assert_eq!(reread.body["properties"]["tags"]["round"], "2");
    // code version, compute, environment, job, job again.
    assert_eq!(
        sim.counters()
            .get("PUT", "Microsoft.MachineLearningServices"),
        5
    );

    // Register the model from the job output.
    let model = arm
        .put(
            &format!("{}/models/edge-model/versions/1?api-version={ML_API}", ws()),
            &json!({"properties": {"modelType": "CustomModel", "jobName": "edgetrain-job-1",
                "modelUri": "azureml://jobs/edgetrain-job-1/outputs/model/paths/", "tags": {"a": "b"}}}),
        )
        .await;
    assert_eq!(model.status, 201, "{}", model.body);
}

/// Azurite checks that `sip` is covered by the signature (a SAS re-pointed at another address is
/// refused) but does not compare it with the caller's address (README, known limits).
#[tokio::test]
async fn tampered_sas_is_refused_and_the_job_fails() {
    let (_sim, _dir, arm, s) = start_ml().await;
    seed_stack_hub_data(&s).await;
    let compute = attach_compute(&arm).await;
    let env = environment(&arm).await;
    let sas = container_sas(
        &s.stack_hub_account,
        "training",
        s.stack_hub_key.expose(),
        "rl",
        "127.0.0.1",
    );
    let tampered = sas.replace("sip=127.0.0.1", "sip=0.0.0.0-255.255.255.255");
    assert_ne!(sas, tampered);
    let url = format!(
        "{}/training/data/train.csv?{tampered}",
        s.path_style(&s.stack_hub_account)
    );
    let (status, _) = get_blob(&blob_client(&s), &url).await;
    assert_eq!(status, 403);
    let job = format!("{}/jobs/tampered", ws());
    let body = job_body(
        "python3 -c \"import urllib.request,sys; urllib.request.urlopen(sys.argv[1])\" \"${{inputs.u}}\"",
        &compute,
        &env,
        None,
        json!({"u": {"jobInputType": "literal", "value": url}}),
        json!({}),
    );
    assert_eq!(
        arm.put(&format!("{job}?api-version={ML_API}"), &body)
            .await
            .status,
        201
    );
    assert_eq!(wait_job(&arm, &job).await.0, "Failed");
}

#[tokio::test]
async fn cancel_timeout_failure_and_list_paging() {
    let (_sim, _dir, arm, _s) = start_ml().await;
    let compute = attach_compute(&arm).await;
    let env = environment(&arm).await;
    let arm_ref = &arm;
    let (compute_ref, env_ref) = (&compute, &env);
    let put = move |name: &str, command: &str, extra: Value| {
        let body = job_body(command, compute_ref, env_ref, None, json!({}), extra);
        let path = format!("{}/jobs/{name}?api-version={ML_API}", ws());
        async move { arm_ref.put(&path, &body).await }
    };
    assert_eq!(put("sleeper", "sleep 60", json!({})).await.status, 201);
    assert_eq!(
        put("failer", "echo boom; exit 3", json!({})).await.status,
        201
    );
    assert_eq!(
        put(
            "slowpoke",
            "sleep 60",
            json!({"limits": {"jobLimitsType": "Command", "timeout": "PT1S"}})
        )
        .await
        .status,
        201
    );
    // Wait until the sleeper runs, then cancel it.
    let sleeper = format!("{}/jobs/sleeper", ws());
    for _ in 0..100 {
        let a = arm.get(&format!("{sleeper}?api-version={ML_API}")).await;
        if a.body["properties"]["status"] == "Running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cancel = arm
        .post(&format!("{sleeper}/cancel?api-version={ML_API}"), None)
        .await;
    assert_eq!(cancel.status, 202);
    let location = cancel.header("location").unwrap();
    assert!(cancel.header("azure-asyncoperation").is_none());
    let mut last = 202;
    for _ in 0..100 {
        last = arm.get(&location).await.status;
        if last != 202 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, 204);
    assert_eq!(wait_job(&arm, &sleeper).await.0, "Canceled");
    assert_eq!(
        wait_job(&arm, &format!("{}/jobs/failer", ws())).await.0,
        "Failed"
    );
    assert_eq!(
        wait_job(&arm, &format!("{}/jobs/slowpoke", ws())).await.0,
        "Canceled"
    );

    // Page size is 2 in this test: three jobs take two pages linked by nextLink.
    let first = arm
        .get(&format!("{}/jobs?api-version={ML_API}", ws()))
        .await;
    assert_eq!(first.body["value"].as_array().unwrap().len(), 2);
    let next = first.body["nextLink"].as_str().unwrap().to_owned();
    let second = arm.get(&next).await;
    assert_eq!(second.body["value"].as_array().unwrap().len(), 1);
    assert!(second.body.get("nextLink").is_none());
    let mut names: Vec<String> = first.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second.body["value"].as_array().unwrap())
        .map(|j| j["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["failer", "sleeper", "slowpoke"]);

    // Detach: an LRO with both headers; the compute is gone afterwards.
    let detach = arm
        .call(
            "DELETE",
            &format!("{compute}?api-version={ML_API}&underlyingResourceAction=Detach"),
            None,
        )
        .await;
    assert_eq!(detach.status, 202, "{}", detach.body);
    assert!(detach.header("location").is_some());
    assert_eq!(
        arm.wait_async(&detach.header("azure-asyncoperation").unwrap())
            .await,
        "Succeeded"
    );
    assert_eq!(
        arm.get(&format!("{compute}?api-version={ML_API}"))
            .await
            .status,
        404
    );

    // Jobs must target an attached compute of the workspace.
    let bad = job_body(
        "true",
        &format!("{}/computes/nope", ws()),
        &env,
        None,
        json!({}),
        json!({}),
    );
    let a = arm
        .put(&format!("{}/jobs/orphan?api-version={ML_API}", ws()), &bad)
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.code(), "UserError");
}

/// A job that prints nothing still completes: its empty log is uploaded like any other blob
/// (a 0-byte Put Blob needs an explicit `Content-Length: 0`).
#[tokio::test]
async fn silent_job_completes_with_an_empty_log() {
    let (_sim, _dir, arm, _s) = start_ml().await;
    let compute = attach_compute(&arm).await;
    let env = environment(&arm).await;
    let body = job_body("true", &compute, &env, None, json!({}), json!({}));
    let job = format!("{}/jobs/silent", ws());
    let created = arm.put(&format!("{job}?api-version={ML_API}"), &body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(wait_job(&arm, &job).await.0, "Completed");
}
