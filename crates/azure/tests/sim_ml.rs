//! Azure ML through the real clients against the simulator: attach the Stack Hub VM as a
//! `VirtualMachine` compute, upload code through the pending-upload flow, create an environment,
//! run a Command job that reads on-premises data through a SAS the client signed, and read the
//! job's output back from the default datastore; list jobs page by page; cancel.

mod common;

use std::{collections::BTreeMap, time::Duration};

use azure_core::credentials::Secret;
use bytes::Bytes;
use chrono::Utc;
use common::sim::{self, Options, PATIENCE};
use edgetrain_azure::{
    arm::LroStatus,
    blob::{
        AccountKey, BlobApi, BlobAuth, BlobClient, BlobEndpoint, SasPermissions, SasProtocol,
        SasResource, ServiceSas,
    },
    ml::{self, JobStatus, MlApi, MlClient},
    stackhub::{self, StackHubApi},
};
use edgetrain_sandbox_azure::{IdentitySystem, TEST_SSH_PRIVATE_KEY_PEM, TEST_SSH_PUBLIC_KEY};
use futures::TryStreamExt;

const TRAIN_PY: &str = r#"
import json, os, sys, urllib.request
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
with urllib.request.urlopen(args["--data-url"]) as r:
    rows = [l.split(",") for l in r.read().decode().strip().splitlines()[1:]]
ys = [float(y) for _, y in rows]
os.makedirs(args["--out"], exist_ok=True)
with open(os.path.join(args["--out"], "model.txt"), "w") as f:
    f.write("rows=%d sum_y=%g run=%s\n" % (len(ys), sum(ys), os.environ["EDGETRAIN_RUN"]))
os.makedirs("outputs", exist_ok=True)
with open("outputs/metrics.json", "w") as f:
    json.dump({"rows": len(ys), "mean_y": sum(ys) / len(ys)}, f)
print("trained on", len(ys), "rows")
"#;

/// Poll the job with the client until it ends.
async fn wait_job(ml: &MlClient, name: &str) -> ml::Job {
    let work = async {
        loop {
            let job = ml.get_job(name).await.unwrap().expect("job exists");
            if job
                .properties
                .status
                .as_ref()
                .is_some_and(JobStatus::is_terminal)
            {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::time::timeout(PATIENCE, work)
        .await
        .expect("job did not finish")
}

async fn read_all(blob: &BlobClient, container: &str, name: &str) -> String {
    let chunks: Vec<Bytes> = blob
        .read(container, name)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    String::from_utf8(chunks.concat()).unwrap()
}

/// The default datastore, opened with the blob client (datastore + listSecrets via ML).
async fn datastore(ml: &MlClient, http: reqwest::Client) -> (BlobClient, String) {
    let ds = ml
        .default_datastore()
        .await
        .unwrap()
        .expect("default datastore");
    let name = ds.name.clone().expect("datastore name");
    let props = ds.properties;
    let secrets = ml.datastore_secrets(&name).await.unwrap();
    let ml::DatastoreSecrets::AccountKey { key: Some(key) } = secrets else {
        panic!("expected an account key");
    };
    let endpoint = BlobEndpoint::parse(&format!(
        "{}://{}.blob.{}",
        props.protocol.as_deref().unwrap_or("https"),
        props.account_name.as_deref().unwrap(),
        props.endpoint.as_deref().unwrap()
    ))
    .unwrap();
    let client = BlobClient::new(
        http,
        endpoint,
        BlobAuth::SharedKey(AccountKey::from_base64(key.secret()).unwrap()),
    );
    (client, props.container_name.unwrap())
}

/// The job's log (stdout + stderr) from the datastore, for failure messages.
async fn job_log(ml: &MlClient, http: reqwest::Client, job: &str) -> String {
    let (out, container) = datastore(ml, http).await;
    read_all(
        &out,
        &container,
        &format!("azureml/{job}/artifacts/user_logs/std_log.txt"),
    )
    .await
}

fn command_job(
    ml: &MlClient,
    command: &str,
    code_id: Option<String>,
    inputs: BTreeMap<String, ml::JobInput>,
    outputs: BTreeMap<String, ml::JobOutput>,
) -> ml::Job {
    let ws = ml.workspace();
    ml::command_job_body(&ml::CommandJobSpec {
        command: command.into(),
        code_id,
        environment_id: ws.environment_version_id("train-env", "1").unwrap(),
        compute_id: ws.compute_id("edge-vm").unwrap(),
        inputs,
        outputs,
        environment_variables: BTreeMap::from([("EDGETRAIN_RUN".into(), "contract".into())]),
        timeout: Some(Duration::from_secs(600)),
        experiment_name: "edgetrain".into(),
        display_name: Some("contract test".into()),
        tags: BTreeMap::from([("edgetrain.dev/owner".into(), "ns.run".into())]),
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test]
async fn command_job_reads_on_premises_data_through_a_client_signed_sas() {
    let sim = sim::start(Options {
        azurite: true,
        ..Options::default()
    })
    .await;
    let storage = sim.storage_endpoints().unwrap();
    sim.seed_blob(
        &storage.stack_hub_account,
        "training",
        "data/train.csv",
        b"x,y\n1,2\n3,4\n5,6\n".to_vec(),
    )
    .await
    .unwrap();
    let http = sim::http(&sim);

    // The VM's public address, from the simulated Stack Hub.
    let hub = sim::stack_hub(&sim, IdentitySystem::Aad).await;
    let pip_id = sim::stack_hub_rg().public_ip_id("train1-pip").unwrap();
    let pip = stackhub::public_ip_body("local", None, &BTreeMap::new()).unwrap();
    let started = hub.put_public_ip(&pip_id, &pip).await.unwrap();
    let status = sim::complete(started, |t| {
        let hub = &hub;
        async move { hub.poll(&t).await }
    })
    .await;
    assert_eq!(status, LroStatus::Succeeded);
    let vm_ip = hub
        .get_public_ip(&pip_id)
        .await
        .unwrap()
        .unwrap()
        .resource
        .properties
        .ip_address
        .expect("public IP has an address");

    // Attach it to the workspace.
    let ml = sim::ml(&sim).await;
    let attach = ml::vm_attach_body(&ml::VmAttachSpec {
        location: "westeurope".into(),
        address: vm_ip.clone(),
        ssh_port: 22,
        username: "azureuser".into(),
        private_key_pem: Secret::new(TEST_SSH_PRIVATE_KEY_PEM),
        public_key: TEST_SSH_PUBLIC_KEY.into(),
        description: Some("Stack Hub training VM".into()),
        vm_size: None,
    })
    .unwrap();
    let started = ml.attach_compute("edge-vm", &attach).await.unwrap();
    let status = sim::complete(started, |t| {
        let ml = &ml;
        async move { ml.poll(&t).await }
    })
    .await;
    assert_eq!(status, LroStatus::Succeeded);
    let compute = ml.get_compute("edge-vm").await.unwrap().unwrap();
    // Workspaces_Get: where the compute had to be created.
    let workspace = ml.get_workspace().await.unwrap().unwrap();
    assert_eq!(workspace.location, "westeurope");
    assert_eq!(
        compute.properties.provisioning_state.as_deref(),
        Some("Succeeded")
    );

    // Code, content-addressed, through the pending-upload flow; a second upload is a no-op.
    let files = [ml::CodeFile {
        path: "train.py".into(),
        content: Bytes::from_static(TRAIN_PY.as_bytes()),
    }];
    let code_id = ml::upload_code(&ml, ml.workspace(), http.clone(), &files)
        .await
        .unwrap();
    let ml_posts = sim
        .counters()
        .get("POST", "Microsoft.MachineLearningServices");
    let again = ml::upload_code(&ml, ml.workspace(), http.clone(), &files)
        .await
        .unwrap();
    assert_eq!(again, code_id);
    assert_eq!(
        sim.counters()
            .get("POST", "Microsoft.MachineLearningServices"),
        ml_posts,
        "no second startPendingUpload"
    );

    let env = ml::Resource::new(ml::EnvironmentVersion {
        image: Some("python:3.12-slim".into()),
        ..Default::default()
    });
    ml.put_environment_version("train-env", "1", &env)
        .await
        .unwrap();

    // The input SAS, signed by the client: read+list, https only, bound to the VM's address.
    let sas = ServiceSas {
        account: storage.stack_hub_account.clone(),
        resource: SasResource::Container {
            container: "training".into(),
        },
        permissions: SasPermissions::read_list(),
        start: None,
        expiry: Utc::now() + chrono::Duration::hours(1),
        ip: Some(vm_ip.clone()),
        protocol: SasProtocol::HttpsOnly,
    }
    .sign(&AccountKey::from_base64(storage.stack_hub_key.expose()).unwrap())
    .unwrap();
    let fields: BTreeMap<String, String> = url::form_urlencoded::parse(sas.secret().as_bytes())
        .into_owned()
        .collect();
    assert_eq!(fields["sp"], "rl");
    assert_eq!(fields["spr"], "https");
    assert_eq!(fields["sip"], vm_ip);
    let data_endpoint = BlobEndpoint::path_style(
        url::Url::parse(&storage.path_style).unwrap(),
        &storage.stack_hub_account,
    )
    .unwrap();
    let data_url = format!(
        "{}?{}",
        data_endpoint
            .blob_url("training", "data/train.csv")
            .unwrap(),
        sas.secret()
    );

    let job = command_job(
        &ml,
        "python3 train.py --data-url \"${{inputs.data_url}}\" --out ${{outputs.model}}",
        Some(code_id),
        BTreeMap::from([(
            "data_url".into(),
            ml::JobInput::Literal {
                value: data_url,
                description: None,
            },
        )]),
        BTreeMap::from([(
            "model".into(),
            ml::JobOutput::UriFolder(ml::AssetJobOutput {
                uri: None,
                mode: Some("Upload".into()),
                description: None,
            }),
        )]),
    );
    let created = ml.create_job("edgetrain-contract-1", &job).await.unwrap();
    assert!(
        !created
            .properties
            .status
            .as_ref()
            .is_some_and(JobStatus::is_terminal)
    );
    let done = wait_job(&ml, "edgetrain-contract-1").await;
    assert_eq!(done.properties.status, Some(JobStatus::Completed));
    let metrics = sim
        .job_metrics(&ml.workspace().job_id("edgetrain-contract-1").unwrap())
        .expect("metrics recorded");
    assert_eq!(
        metrics,
        BTreeMap::from([("mean_y".into(), 4.0), ("rows".into(), 3.0)])
    );

    // The output, read back from the default datastore with the blob client.
    let (out, container) = datastore(&ml, http.clone()).await;
    let model = read_all(
        &out,
        &container,
        "azureml/edgetrain-contract-1/model/model.txt",
    )
    .await;
    assert_eq!(model, "rows=3 sum_y=12 run=contract\n");
    let metrics_json = read_all(
        &out,
        &container,
        "azureml/edgetrain-contract-1/artifacts/outputs/metrics.json",
    )
    .await;
    let parsed: serde_json::Value = serde_json::from_str(&metrics_json).unwrap();
    assert_eq!(parsed["rows"], 3);
    let listed: Vec<String> = out
        .list(&container, "azureml/edgetrain-contract-1/")
        .map_ok(|b| b.name)
        .try_collect()
        .await
        .unwrap();
    assert!(
        listed.contains(&"azureml/edgetrain-contract-1/artifacts/user_logs/std_log.txt".into()),
        "{listed:?}"
    );
    let log = read_all(
        &out,
        &container,
        "azureml/edgetrain-contract-1/artifacts/user_logs/std_log.txt",
    )
    .await;
    assert!(log.contains("trained on 3 rows"), "{log}");
    assert!(!log.contains("sig="), "the SAS must not reach the log");
}

#[tokio::test]
async fn jobs_list_page_by_page_and_cancel() {
    let sim = sim::start(Options {
        azurite: true,
        ..Options::default()
    })
    .await;
    let ml = sim::ml(&sim).await;
    let attach = ml::vm_attach_body(&ml::VmAttachSpec {
        location: "westeurope".into(),
        address: sim.config().public_ip.to_string(),
        ssh_port: 22,
        username: "azureuser".into(),
        private_key_pem: Secret::new(TEST_SSH_PRIVATE_KEY_PEM),
        public_key: TEST_SSH_PUBLIC_KEY.into(),
        description: None,
        vm_size: None,
    })
    .unwrap();
    let started = ml.attach_compute("edge-vm", &attach).await.unwrap();
    let status = sim::complete(started, |t| {
        let ml = &ml;
        async move { ml.poll(&t).await }
    })
    .await;
    assert_eq!(status, LroStatus::Succeeded);
    let env = ml::Resource::new(ml::EnvironmentVersion {
        image: Some("python:3.12-slim".into()),
        ..Default::default()
    });
    ml.put_environment_version("train-env", "1", &env)
        .await
        .unwrap();

    // No output at all: an empty log must not fail the job.
    let quick = command_job(&ml, "true", None, BTreeMap::new(), BTreeMap::new());
    ml.create_job("quick-1", &quick).await.unwrap();
    let status = wait_job(&ml, "quick-1").await.properties.status;
    if status != Some(JobStatus::Completed) {
        let log = job_log(&ml, sim::http(&sim), "quick-1").await;
        panic!("quick-1 ended {status:?}:\n{log}");
    }
    let slow = command_job(&ml, "sleep 300", None, BTreeMap::new(), BTreeMap::new());
    let long_running = ["slow-1", "slow-2", "slow-3"];
    for name in long_running {
        ml.create_job(name, &slow).await.unwrap();
    }

    // Every page comes from its own request; the list page size is 2.
    let mut names = Vec::new();
    let mut pages = 0;
    let mut next: Option<String> = None;
    loop {
        let page = ml
            .list_jobs_page(next.as_deref(), Some(ml::ListViewType::ActiveOnly))
            .await
            .unwrap();
        pages += 1;
        assert!(page.value.len() <= 2, "{}", page.value.len());
        names.extend(page.value.into_iter().filter_map(|j| j.name));
        match page.next_link {
            Some(link) => next = Some(link),
            None => break,
        }
    }
    names.sort();
    // `ActiveOnly` excludes archived jobs, not finished ones (the spec's ListViewType).
    assert_eq!(
        names,
        ["quick-1", "slow-1", "slow-2", "slow-3"],
        "each job once"
    );
    assert_eq!(pages, 2);

    // Cancel one: the operation completes and the job ends Canceled; the others keep running.
    let started = ml.cancel_job("slow-2").await.unwrap();
    let status = sim::complete(started, |t| {
        let ml = &ml;
        async move { ml.poll(&t).await }
    })
    .await;
    assert_eq!(status, LroStatus::Succeeded);
    let canceled = wait_job(&ml, "slow-2").await;
    assert_eq!(canceled.properties.status, Some(JobStatus::Canceled));
    let other = ml.get_job("slow-1").await.unwrap().unwrap();
    assert!(
        !other
            .properties
            .status
            .as_ref()
            .is_some_and(JobStatus::is_terminal),
        "{:?}",
        other.properties.status
    );
    sim.sim.shutdown().await;
}
