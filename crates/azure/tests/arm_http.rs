//! ARM core, Stack Hub and Azure ML clients against a request-recording fake.

mod common;

use std::sync::Arc;

use common::fake::{Fake, Recorded, Reply, StaticCredential};
use edgetrain_azure::{
    arm::{ApiProfile, ArmClient, LroKind, LroStatus, LroToken, RetryPolicy, Started},
    ml::{self, MlApi, MlClient, Workspace},
    stackhub::{self, ResourceGroup, StackHubApi, StackHubClient, VmAction},
    transport::HttpConfig,
};
use serde_json::json;

fn arm(fake: &Fake) -> ArmClient {
    ArmClient::new(
        HttpConfig::default().build().unwrap(),
        fake.base.clone(),
        Arc::new(StaticCredential),
        "https://management.adfs.azurestack.local/4de1",
    )
    .with_retry(RetryPolicy {
        max_attempts: 4,
        ..RetryPolicy::default()
    })
}

const RG: &str = "/subscriptions/sub/resourceGroups/rg";

fn rg() -> ResourceGroup {
    ResourceGroup {
        subscription_id: "sub".into(),
        resource_group: "rg".into(),
    }
}

#[tokio::test]
async fn throttled_calls_succeed_after_retry_after_with_counted_attempts() {
    let fake = Fake::start(|_, earlier| {
        if earlier.len() < 2 {
            Reply::json(
                429,
                json!({"error": {"code": "TooManyRequests", "message": "slow"}}),
            )
            .header("retry-after", "0")
        } else {
            Reply::json(
                200,
                json!({"location": "local", "properties": {"provisioningState": "Succeeded"}}),
            )
        }
    })
    .await;
    let client = arm(&fake);
    let sh = StackHubClient::new(client.clone(), ApiProfile::default());
    let vm = sh
        .get_vm(&rg().vm_id("vm1").unwrap(), false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        vm.properties.provisioning_state.as_deref(),
        Some("Succeeded")
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3, "2 throttled + 1 success");
    assert!(
        reqs.iter()
            .all(|r| r.headers["authorization"] == "Bearer test-token")
    );
    let host = fake.base.host_str().unwrap();
    assert_eq!(client.metrics().get(host, "GET", "429"), 2);
    assert_eq!(client.metrics().get(host, "GET", "2xx"), 1);
}

#[tokio::test]
async fn throttling_past_the_attempt_budget_surfaces_a_typed_error() {
    let fake = Fake::start(|_, _| {
        Reply::json(
            429,
            json!({"error": {"code": "TooManyRequests", "message": "slow"}}),
        )
        .header("retry-after", "0")
        .header("x-ms-request-id", "rid-9")
    })
    .await;
    let client = arm(&fake).with_retry(RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    });
    let sh = StackHubClient::new(client, ApiProfile::default());
    let err = sh.get_nic(&rg().nic_id("nic").unwrap()).await.unwrap_err();
    let arm_err = err.as_arm().expect("ARM error");
    assert!(arm_err.is_throttled());
    assert_eq!(arm_err.request_id.as_deref(), Some("rid-9"));
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn server_errors_are_retried_but_client_errors_are_not() {
    let fake = Fake::start(|req, earlier| {
        if req.path.ends_with("/vm-a") {
            if earlier.iter().filter(|r| r.path.ends_with("/vm-a")).count() == 0 {
                Reply::empty(503)
            } else {
                Reply::json(200, json!({"location": "l", "properties": {}}))
            }
        } else {
            Reply::json(
                400,
                json!({"error": {"code": "InvalidParameter", "message": "no", "target": "vmSize"}}),
            )
        }
    })
    .await;
    let sh = StackHubClient::new(
        arm(&fake).with_retry(RetryPolicy {
            base_delay: std::time::Duration::from_millis(1),
            ..RetryPolicy::default()
        }),
        ApiProfile::default(),
    );
    assert!(
        sh.get_vm(&rg().vm_id("vm-a").unwrap(), false)
            .await
            .unwrap()
            .is_some()
    );
    let err = sh
        .get_vm(&rg().vm_id("vm-b").unwrap(), false)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_arm().unwrap().error.target.as_deref(),
        Some("vmSize")
    );
    let reqs = fake.requests();
    assert_eq!(reqs.iter().filter(|r| r.path.ends_with("/vm-a")).count(), 2);
    assert_eq!(reqs.iter().filter(|r| r.path.ends_with("/vm-b")).count(), 1);
}

fn vm_spec() -> stackhub::VmSpec {
    stackhub::VmSpec {
        location: "local".into(),
        computer_name: "vm1".into(),
        size: "Standard_DS2_v2".into(),
        image: stackhub::ImageReference {
            publisher: Some("Canonical".into()),
            offer: Some("UbuntuServer".into()),
            sku: Some("18.04-LTS".into()),
            version: Some("latest".into()),
        },
        os_disk_size_gb: None,
        os_disk_storage_type: None,
        admin_username: "azureuser".into(),
        ssh_public_key: "ssh-rsa AAAA".into(),
        cloud_init: None,
        nic_id: rg().nic_id("nic").unwrap(),
        tags: Default::default(),
    }
}

#[tokio::test]
async fn vm_create_is_resumable_from_a_stored_token() {
    let fake = Fake::start(|req, earlier| {
        let polls = earlier.iter().filter(|r| r.path == "/ops/op-1").count();
        match (req.method.as_str(), req.path.as_str()) {
            ("PUT", _) => {
                let host = req.headers["host"].to_str().unwrap();
                Reply::json(
                    201,
                    json!({"location": "local", "properties": {"provisioningState": "Creating"}}),
                )
                .header(
                    "azure-asyncoperation",
                    &format!("http://{host}/ops/op-1?api-version=2020-06-01"),
                )
                .header("retry-after", "3")
            }
            ("GET", "/ops/op-1") if polls == 0 => {
                Reply::json(200, json!({"status": "InProgress"})).header("retry-after", "5")
            }
            ("GET", "/ops/op-1") => Reply::json(200, json!({"status": "Succeeded"})),
            _ => Reply::empty(500),
        }
    })
    .await;
    let id = rg().vm_id("vm1").unwrap();
    let body = stackhub::vm_body(&vm_spec()).unwrap();
    let token = {
        let sh = StackHubClient::new(arm(&fake), ApiProfile::default());
        match sh.put_vm(&id, &body).await.unwrap() {
            Started::Pending { token, retry_after } => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(3)));
                token
            }
            other => panic!("expected an LRO, got {other:?}"),
        }
    };
    assert_eq!(token.kind, LroKind::AsyncOperation);
    assert_eq!(token.resource_id, id);
    // The controller stores the token in status; a new process resumes from the JSON.
    let stored = serde_json::to_string(&token).unwrap();
    let resumed: LroToken = serde_json::from_str(&stored).unwrap();
    let sh = StackHubClient::new(arm(&fake), ApiProfile::default());
    assert_eq!(
        sh.poll(&resumed).await.unwrap(),
        LroStatus::InProgress {
            retry_after: Some(std::time::Duration::from_secs(5))
        }
    );
    assert_eq!(sh.poll(&resumed).await.unwrap(), LroStatus::Succeeded);

    let reqs = fake.requests();
    let puts: Vec<&Recorded> = reqs.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 1, "no second create");
    assert_eq!(
        puts[0].path,
        format!("{RG}/providers/Microsoft.Compute/virtualMachines/vm1")
    );
    assert_eq!(
        puts[0].query_value("api-version").as_deref(),
        Some("2020-06-01")
    );
    assert_eq!(puts[0].json(), serde_json::to_value(&body).unwrap());
    assert_eq!(puts[0].headers["content-type"], "application/json");
}

#[tokio::test]
async fn stack_hub_requests_use_profile_versions_and_exact_paths() {
    let fake = Fake::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("POST", p) if p.ends_with("/deallocate") => {
            let host = req.headers["host"].to_str().unwrap();
            Reply::empty(202).header("location", &format!("http://{host}/loc/1"))
        }
        ("GET", p) if p.ends_with("/vm1") => Reply::json(200, json!({"location": "local", "properties": {
            "provisioningState": "Succeeded",
            "instanceView": {"statuses": [{"code": "ProvisioningState/succeeded"}, {"code": "PowerState/running"}]}}})),
        ("PUT", _) => Reply::json(200, json!({"location": "local", "properties": {"provisioningState": "Succeeded"}})),
        ("DELETE", _) => Reply::json(404, json!({"error": {"code": "ResourceNotFound", "message": "gone"}})),
        _ => Reply::empty(500),
    })
    .await;
    let sh = StackHubClient::new(arm(&fake), ApiProfile::default());
    let vm_id = rg().vm_id("vm1").unwrap();
    let vm = sh.get_vm(&vm_id, true).await.unwrap().unwrap();
    let iv = vm.properties.instance_view.unwrap();
    assert_eq!(
        stackhub::PowerState::from_instance_view(&iv),
        stackhub::PowerState::Running
    );
    let Started::Pending { token: t, .. } =
        sh.vm_action(&vm_id, VmAction::Deallocate).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(t.kind, LroKind::Location);
    let nsg =
        stackhub::ssh_nsg_body("local", &["10.0.0.0/8".into()], 22, &Default::default()).unwrap();
    let nsg_id = rg().nsg_id("nsg").unwrap();
    assert!(matches!(
        sh.put_nsg(&nsg_id, &nsg).await.unwrap(),
        Started::Done { status: 200, .. }
    ));
    assert!(matches!(
        sh.delete(&rg().public_ip_id("pip").unwrap()).await.unwrap(),
        Started::Done { status: 404, .. }
    ));

    let reqs = fake.requests();
    assert_eq!(
        reqs[0].query_value("$expand").as_deref(),
        Some("instanceView")
    );
    assert_eq!(
        reqs[1].path,
        format!("{RG}/providers/Microsoft.Compute/virtualMachines/vm1/deallocate")
    );
    assert_eq!(
        reqs[1].query_value("api-version").as_deref(),
        Some("2020-06-01")
    );
    assert_eq!(
        reqs[2].path,
        format!("{RG}/providers/Microsoft.Network/networkSecurityGroups/nsg")
    );
    assert_eq!(
        reqs[2].query_value("api-version").as_deref(),
        Some("2018-11-01")
    );
    assert_eq!(reqs[2].json(), serde_json::to_value(&nsg).unwrap());
    assert_eq!(reqs[3].method, "DELETE");
    assert_eq!(
        reqs[3].path,
        format!("{RG}/providers/Microsoft.Network/publicIPAddresses/pip")
    );
}

fn ws() -> Workspace {
    Workspace {
        subscription_id: "sub".into(),
        resource_group: "rg".into(),
        name: "ws".into(),
    }
}

const WS: &str = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws";

#[tokio::test]
async fn ml_jobs_list_pages_through_next_link() {
    let fake = Fake::start(|req, _| {
        let host = req.headers["host"].to_str().unwrap();
        let job = |n: &str, s: &str| json!({"id": format!("{WS}/jobs/{n}"), "name": n, "properties": {"jobType": "Command", "command": "c", "environmentId": "e", "status": s}});
        if req.query.contains("%24skip=page2") || req.query.contains("$skip=page2") {
            Reply::json(200, json!({"value": [job("j3", "Queued")]}))
        } else {
            Reply::json(200, json!({"value": [job("j1", "Running"), job("j2", "Completed")],
                "nextLink": format!("http://{host}{WS}/jobs?api-version=2025-12-01&listViewType=ActiveOnly&$skip=page2")}))
        }
    })
    .await;
    let ml = MlClient::new(arm(&fake), ws());
    let mut names = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = ml
            .list_jobs_page(next.as_deref(), Some(ml::ListViewType::ActiveOnly))
            .await
            .unwrap();
        names.extend(page.value.iter().map(|j| j.name.clone().unwrap()));
        match page.next_link {
            Some(n) => next = Some(n),
            None => break,
        }
    }
    assert_eq!(names, ["j1", "j2", "j3"]);
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, format!("{WS}/jobs"));
    assert_eq!(
        reqs[0].query_value("api-version").as_deref(),
        Some("2025-12-01")
    );
    assert_eq!(
        reqs[0].query_value("listViewType").as_deref(),
        Some("ActiveOnly")
    );
    assert_eq!(reqs[1].query_value("$skip").as_deref(), Some("page2"));
}

#[tokio::test]
async fn ml_requests_have_exact_shapes() {
    let fake = Fake::start(|req, _| {
        let host = req.headers["host"].to_str().unwrap();
        match (req.method.as_str(), req.path.rsplit('/').next().unwrap()) {
            ("PUT", "edge") => Reply::json(201, json!({"properties": {"computeType": "VirtualMachine", "provisioningState": "Creating"}}))
                .header("azure-asyncoperation", &format!("http://{host}/ops/attach")),
            ("DELETE", "edge") => Reply::empty(202)
                .header("azure-asyncoperation", &format!("http://{host}/ops/detach"))
                .header("location", &format!("http://{host}/loc/detach")),
            ("PUT", "run-1") => Reply::json(201, {
                let mut b = req.json();
                b["properties"]["status"] = json!("NotStarted");
                b
            }),
            ("POST", "cancel") => Reply::empty(202).header("location", &format!("http://{host}/loc/cancel")),
            ("GET", "datastores") => Reply::json(200, json!({"value": [{"name": "workspaceblobstore", "properties": {
                "datastoreType": "AzureBlob", "accountName": "acct", "containerName": "c", "isDefault": true,
                "credentials": {"credentialsType": "AccountKey"}}}]})),
            ("POST", "listSecrets") => Reply::json(200, json!({"secretsType": "AccountKey", "key": "a2V5"})),
            ("PUT", "3") => Reply::json(200, req.json()),
            _ => Reply::empty(500),
        }
    })
    .await;
    let ml = MlClient::new(arm(&fake), ws());
    let attach = ml::vm_attach_body(&ml::VmAttachSpec {
        location: "westeurope".into(),
        address: "203.0.113.7".into(),
        ssh_port: 22,
        username: "azureuser".into(),
        private_key_pem: azure_core::credentials::Secret::new("PRIVATE"),
        public_key: "ssh-ed25519 AAAA".into(),
        description: None,
        vm_size: None,
    })
    .unwrap();
    assert!(matches!(
        ml.attach_compute("edge", &attach).await.unwrap(),
        Started::Pending {
            token: LroToken {
                kind: LroKind::AsyncOperation,
                ..
            },
            ..
        }
    ));
    let Started::Pending { token: detach, .. } = ml.detach_compute("edge").await.unwrap() else {
        panic!()
    };
    assert!(
        detach.url.ends_with("/ops/detach"),
        "async-operation wins: {}",
        detach.url
    );

    let job = ml::command_job_body(&ml::CommandJobSpec {
        command: "python train.py".into(),
        environment_id: format!("{WS}/environments/env/versions/1"),
        compute_id: format!("{WS}/computes/edge"),
        experiment_name: "edgetrain".into(),
        ..Default::default()
    })
    .unwrap();
    let created = ml.create_job("run-1", &job).await.unwrap();
    assert_eq!(created.properties.status, Some(ml::JobStatus::NotStarted));
    let Started::Pending { token: cancel, .. } = ml.cancel_job("run-1").await.unwrap() else {
        panic!()
    };
    assert_eq!(cancel.kind, LroKind::Location);
    let ds = ml.default_datastore().await.unwrap().unwrap();
    assert_eq!(ds.properties.container_name.as_deref(), Some("c"));
    let ml::DatastoreSecrets::AccountKey { key: Some(k) } =
        ml.datastore_secrets("workspaceblobstore").await.unwrap()
    else {
        panic!()
    };
    assert_eq!(k.secret(), "a2V5");
    let model = ml::Resource::new(ml::ModelVersion {
        model_uri: Some("azureml://jobs/run-1/outputs/model/paths/".into()),
        model_type: Some("custom_model".into()),
        job_name: Some("run-1".into()),
        tags: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    });
    ml.put_model_version("m", "3", &model).await.unwrap();

    let reqs = fake.requests();
    let r = |i: usize| &reqs[i];
    assert_eq!(
        (r(0).method.as_str(), r(0).path.clone()),
        ("PUT", format!("{WS}/computes/edge"))
    );
    assert_eq!(
        r(0).json()["properties"]["properties"]["administratorAccount"]["privateKeyData"],
        "PRIVATE"
    );
    assert_eq!(
        r(1).query_value("underlyingResourceAction").as_deref(),
        Some("Detach")
    );
    assert_eq!(r(2).json()["properties"]["jobType"], "Command");
    assert_eq!(r(3).path, format!("{WS}/jobs/run-1/cancel"));
    assert_eq!(r(4).query_value("isDefault").as_deref(), Some("true"));
    assert_eq!(
        r(5).path,
        format!("{WS}/datastores/workspaceblobstore/listSecrets")
    );
    assert_eq!(r(6).path, format!("{WS}/models/m/versions/3"));
    assert_eq!(
        r(6).json(),
        json!({"properties": {"modelUri": "azureml://jobs/run-1/outputs/model/paths/",
        "modelType": "custom_model", "jobName": "run-1", "tags": {"k": "v"}}})
    );
    assert!(
        reqs.iter()
            .all(|r| r.query_value("api-version").as_deref() == Some("2025-12-01"))
    );
}

#[tokio::test]
async fn poll_urls_on_other_hosts_are_refused() {
    let fake = Fake::start(|_, _| Reply::empty(200)).await;
    let client = arm(&fake);
    let token = LroToken {
        kind: LroKind::AsyncOperation,
        url: "http://192.0.2.1:1/ops/1".into(),
        resource_id: "/x".into(),
        method: "PUT".into(),
        started_at: chrono::Utc::now(),
    };
    let err = client.poll(&token).await.unwrap_err();
    assert!(
        matches!(err, edgetrain_azure::Error::ForeignPollUrl { .. }),
        "{err:?}"
    );
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn every_attempt_takes_a_token_from_the_shared_per_host_bucket() {
    use edgetrain_azure::arm::{BucketKey, BucketSpec, OperationKind, RateLimiter, RateLimits};
    let fake = Fake::start(|req, earlier| {
        if req.method == "GET" && earlier.is_empty() {
            Reply::empty(503).header("retry-after", "0")
        } else {
            Reply::json(200, json!({"location": "l", "properties": {}}))
        }
    })
    .await;
    let slow = BucketSpec {
        capacity: 3.0,
        refill_per_sec: 0.0001,
    };
    let limiter = Arc::new(RateLimiter::new(RateLimits {
        reads: slow,
        writes: slow,
        deletes: slow,
    }));
    let sh = StackHubClient::new(
        arm(&fake).with_limiter(limiter.clone(), "operator-sp"),
        ApiProfile::default(),
    );
    sh.get_vm(&rg().vm_id("a").unwrap(), false).await.unwrap();
    sh.get_vm(&rg().vm_id("b").unwrap(), false).await.unwrap();
    let url = rg().vm_id("c").unwrap();
    let key = |principal: &str| BucketKey::of(&fake.base.join(&url).unwrap(), principal);
    let now = std::time::Instant::now();
    // 3 read attempts (one retried) used the whole read bucket of this endpoint, subscription
    // and principal; writes are a separate bucket, and so is another principal.
    assert!(
        limiter
            .try_acquire(&key("operator-sp"), OperationKind::Read, now)
            .is_err()
    );
    assert!(
        limiter
            .try_acquire(&key("operator-sp"), OperationKind::Write, now)
            .is_ok()
    );
    assert!(
        limiter
            .try_acquire(&key("other-sp"), OperationKind::Read, now)
            .is_ok()
    );
}
