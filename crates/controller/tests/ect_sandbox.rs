//! The controller against the sandbox: in-process Kubernetes API server and Azure simulator.

mod common;

use std::time::Duration;

use common::*;
use edgetrain_api::EdgeComputeTarget;
use edgetrain_controller::metrics::Metrics;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;

const NET: &str = "Microsoft.Network";
const COMPUTE: &str = "Microsoft.Compute";
const ML: &str = "Microsoft.MachineLearningServices";

fn writes(w: &World) -> u64 {
    [NET, COMPUTE, ML]
        .iter()
        .map(|p| {
            count(w, "PUT", p) + count(w, "POST", p) + count(w, "DELETE", p) + count(w, "PATCH", p)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_becomes_ready_and_a_spec_change_costs_exactly_one_put() {
    let w = world(300).await;
    let ctl = spawn(config(&w, Duration::from_secs(300), Metrics::default()));
    create(&w, ect_json(&w, "edge1", json!({}))).await;
    let ect = wait_ready(&w, "edge1", 60).await;

    let status = ect.status.clone().unwrap();
    assert_eq!(condition(&ect, "VMReady").unwrap().0, "True");
    assert_eq!(condition(&ect, "ComputeAttached").unwrap().0, "True");
    assert_eq!(
        status.power_state,
        Some(edgetrain_api::edge_compute_target::PowerState::Running)
    );
    assert_eq!(status.public_ip.as_deref(), Some("127.0.0.1"));
    assert!(
        status
            .private_ip
            .as_deref()
            .is_some_and(|ip| ip.starts_with("10.20.0."))
    );
    assert_eq!(
        status.compute_provisioning_state.as_deref(),
        Some("Succeeded")
    );
    assert!(status.pending_operations.is_empty());

    // One PUT per resource, nothing twice.
    assert_eq!(count(&w, "PUT", COMPUTE), 1, "VM PUTs");
    assert_eq!(count(&w, "PUT", NET), 4, "NSG, vnet, public IP, NIC");
    assert_eq!(count(&w, "PUT", ML), 1, "compute attach");

    // The key pair lives in a Secret owned by the target.
    let key_name = status.ssh_key_secret_name.clone().unwrap();
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), &w.ns);
    let key = secrets.get(&key_name).await.unwrap();
    let owner = &key.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.uid, ect.metadata.uid.clone().unwrap());
    let private =
        String::from_utf8(key.data.as_ref().unwrap()["ssh-privatekey"].0.clone()).unwrap();
    // RSA in the formats Stack Hub (ssh-rsa keyData) and Azure ML (PEM) document; the
    // simulator refuses anything else, so reaching Ready proves both were accepted.
    assert!(private.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let public = String::from_utf8(key.data.as_ref().unwrap()["ssh-publickey"].0.clone()).unwrap();
    assert!(public.starts_with("ssh-rsa "), "{public}");
    assert!(
        status
            .ssh_key_fingerprint
            .as_deref()
            .is_some_and(|f| f.starts_with("SHA256:"))
    );

    // A change of allowedSshSources: exactly one NSG PUT, nothing else written.
    let before = (
        count(&w, "PUT", NET),
        count(&w, "PUT", COMPUTE),
        count(&w, "PUT", ML),
    );
    let api: Api<EdgeComputeTarget> = Api::namespaced(w.client.clone(), &w.ns);
    api.patch(
        "edge1",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"vm": {"allowedSshSources": ["203.0.113.0/24", "198.51.100.7/32"]}}}),
        ),
    )
    .await
    .unwrap();
    wait_ready(&w, "edge1", 30).await;
    eventually(30, "status at generation 2", || async {
        let e = get(&w, "edge1").await?;
        (e.status.as_ref()?.observed_generation == Some(2)
            && edgetrain_api::conditions::is_true_for(
                &e.status.as_ref()?.conditions,
                "Ready",
                Some(2),
            ))
        .then_some(())
    })
    .await;
    assert_eq!(count(&w, "PUT", NET), before.0 + 1, "one NSG PUT");
    assert_eq!(count(&w, "PUT", COMPUTE), before.1, "no VM PUT");
    assert_eq!(count(&w, "PUT", ML), before.2, "no attach");

    // Secret values never reach the logs.
    let text = logs().text();
    assert!(
        text.contains("started Azure operations"),
        "logs were captured"
    );
    for secret in [HUB_SECRET, ML_SECRET] {
        assert!(!text.contains(secret), "client secret leaked into logs");
    }
    let body: Vec<&str> = private
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for line in body {
        assert!(
            !text.contains(line),
            "private key material leaked into logs"
        );
    }
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_makes_no_writes_and_bounded_reads() {
    let w = world(200).await;
    let metrics = Metrics::default();
    // A 100 ms resync: 36 resyncs stand in for an hour at the default 300 s... and more.
    let ctl = spawn(config(&w, Duration::from_millis(100), metrics.clone()));
    create(&w, ect_json(&w, "steady", json!({}))).await;
    wait_ready(&w, "steady", 60).await;
    // Let the last transitions settle: a few resyncs after Ready (counted, not timed).
    let at_ready = reconciles(&metrics);
    eventually(120, "three resyncs after Ready", || async {
        (reconciles(&metrics) - at_ready >= 3).then_some(())
    })
    .await;
    let writes_before = writes(&w);
    let gets_before: u64 = [NET, COMPUTE, ML].iter().map(|p| count(&w, "GET", p)).sum();
    let reconciles_before = reconciles(&metrics);
    // A window of resyncs counted, not timed: on a loaded machine it just takes longer.
    eventually(120, "twelve resyncs", || async {
        (reconciles(&metrics) - reconciles_before >= 12).then_some(())
    })
    .await;
    // GETs first: a reconcile counted after them has not read yet, so the bound only loosens.
    let gets: u64 = [NET, COMPUTE, ML]
        .iter()
        .map(|p| count(&w, "GET", p))
        .sum::<u64>()
        - gets_before;
    let reconciles = reconciles(&metrics) - reconciles_before;
    assert_eq!(writes(&w), writes_before, "no ARM writes in steady state");
    // NSG, vnet, public IP, NIC, VM, compute: six reads per reconcile, no more. One reconcile
    // may have been counted just before the window opened and read inside it.
    assert!(
        gets <= (reconciles + 1) * 6,
        "{gets} GETs for {reconciles} reconciles"
    );
    assert!(gets >= reconciles, "reconciles did read Azure");
    ctl.abort();
}

fn reconciles(m: &Metrics) -> u64 {
    m.reconciles
        .get_or_create(&Metrics::kind("EdgeComputeTarget"))
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_during_vm_creation_creates_one_vm() {
    let w = world(3000).await;
    let ctl = spawn(config(&w, Duration::from_secs(300), Metrics::default()));
    create(&w, ect_json(&w, "restart", json!({}))).await;
    // Stop the controller once the VM creation it started is kept in status (stopping it
    // between the PUT and that status write would be a lost response, another test's case).
    eventually(60, "VM creation in status.pendingOperations", || async {
        let e = get(&w, "restart").await?;
        e.status?
            .pending_operations
            .iter()
            .any(|p| p.resource_id.contains("virtualMachines"))
            .then_some(())
    })
    .await;
    ctl.abort();
    let _ = ctl.await;
    assert_eq!(count(&w, "PUT", COMPUTE), 1);
    let ctl = spawn(config(&w, Duration::from_secs(300), Metrics::default()));
    wait_ready(&w, "restart", 90).await;
    assert_eq!(
        count(&w, "PUT", COMPUTE),
        1,
        "one VM PUT across the restart"
    );
    let vms = inventory(&w)
        .into_iter()
        .filter(|(t, _)| t == "Microsoft.Compute/virtualMachines")
        .count();
    assert_eq!(vms, 1);
    ctl.abort();
}

async fn delete_and_wait(w: &World, name: &str) {
    let api: Api<EdgeComputeTarget> = Api::namespaced(w.client.clone(), &w.ns);
    api.delete(name, &DeleteParams::default()).await.unwrap();
    eventually(90, &format!("{name} gone"), || async {
        get(w, name).await.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_with_delete_removes_everything_and_retain_keeps_everything() {
    let w = world(200).await;
    let ctl = spawn(config(&w, Duration::from_secs(300), Metrics::default()));
    create(
        &w,
        ect_json(&w, "gone", json!({"deletionPolicy": "Delete"})),
    )
    .await;
    create(&w, ect_json(&w, "kept", json!({}))).await;
    wait_ready(&w, "gone", 60).await;
    wait_ready(&w, "kept", 60).await;
    let all = inventory(&w);
    let of = |name: &str| -> Vec<(String, String)> {
        let prefix = format!("default-{name}-");
        let compute = format!("/computes/c-{name}");
        all.iter()
            .filter(|(_, id)| id.contains(&prefix) || id.ends_with(&compute))
            .cloned()
            .collect()
    };
    let kept = of("kept");
    assert!(
        kept.len() >= 7,
        "kept target owns VM, OS disk, NIC, pip, NSG, vnet, compute: {kept:?}"
    );
    // The VM's managed OS disk is a resource of its own, which outlives the VM.
    let disk = |items: &[(String, String)]| {
        items
            .iter()
            .any(|(_, id)| id.contains("/providers/Microsoft.Compute/disks/"))
    };
    assert!(disk(&of("gone")) && disk(&kept), "{all:?}");

    delete_and_wait(&w, "gone").await;
    delete_and_wait(&w, "kept").await;
    let after = inventory(&w);
    assert!(
        !after
            .iter()
            .any(|(_, id)| id.contains("default-gone-") || id.ends_with("/computes/c-gone")),
        "Delete left: {after:?}"
    );
    for item in &kept {
        assert!(after.contains(item), "Retain removed {item:?}");
    }
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_is_a_clear_stalled_condition() {
    let w = world(200).await;
    let ctl = spawn(config(&w, Duration::from_secs(300), Metrics::default()));
    let mut body = ect_json(&w, "nosecret", json!({}));
    body["spec"]["stackHub"]["credentialsSecretRef"]["name"] = json!("does-not-exist");
    create(&w, body).await;
    let (status, reason, message) = eventually(30, "Stalled", || async {
        let e = get(&w, "nosecret").await?;
        let c = condition(&e, "Stalled")?;
        (c.0 == "True").then_some(c)
    })
    .await;
    assert_eq!(status, "True");
    assert_eq!(reason, "SecretNotFound");
    assert!(message.contains("default/does-not-exist"), "{message}");
    let e = get(&w, "nosecret").await.unwrap();
    assert_eq!(condition(&e, "Ready").unwrap().0, "False");
    assert_eq!(writes(&w), 0, "nothing written to Azure");
    let warning = wait_event(&w, "nosecret", "SecretNotFound", 30).await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(warning.note.unwrap_or_default().contains("does-not-exist"));

    // Creating the Secret is picked up without touching the target.
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), &w.ns);
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": "does-not-exist"},
        "stringData": {"tenantId": TENANT, "clientId": HUB_CLIENT, "clientSecret": HUB_SECRET}
    }))
    .unwrap();
    secrets.create(&Default::default(), &s).await.unwrap();
    wait_ready(&w, "nosecret", 60).await;
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_policy_fills_status_without_writing() {
    let w = world(200).await;
    let ctl = spawn(config(&w, Duration::from_secs(300), Metrics::default()));
    let mut body = ect_json(&w, "watcher", json!({}));
    body["metadata"]["annotations"] = json!({"edgetrain.dev/reconcile-policy": "observe"});
    create(&w, body).await;
    let reason = eventually(30, "observe status", || async {
        let e = get(&w, "watcher").await?;
        condition(&e, "Ready").map(|c| c.1)
    })
    .await;
    assert_eq!(reason, "ObservedDrift");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(writes(&w), 0, "observe never writes");
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_adds_reattaches_prunes_then_promotes() {
    let w = world(200).await;
    let ctl = spawn(config(&w, Duration::from_secs(300), Metrics::default()));
    create(
        &w,
        ect_json(&w, "rotor", json!({"sshKeyRotation": {"token": "t1"}})),
    )
    .await;
    let first = wait_ready(&w, "rotor", 60).await.status.unwrap();
    assert_eq!(
        first.ssh_key_rotation_token.as_deref(),
        Some("t1"),
        "first key answers t1"
    );
    let secrets: Api<Secret> = Api::namespaced(w.client.clone(), &w.ns);
    let old_private =
        secrets.get("rotor-ssh").await.unwrap().data.unwrap()["ssh-privatekey"].clone();
    let before = (
        count(&w, "PUT", COMPUTE),
        count(&w, "PUT", ML),
        count(&w, "PUT", NET),
    );

    let api: Api<EdgeComputeTarget> = Api::namespaced(w.client.clone(), &w.ns);
    api.patch(
        "rotor",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"sshKeyRotation": {"token": "t2"}}})),
    )
    .await
    .unwrap();
    let rotated = eventually(60, "rotation to t2", || async {
        let e = get(&w, "rotor").await?;
        let s = e.status.clone()?;
        (s.ssh_key_rotation_token.as_deref() == Some("t2")
            && edgetrain_api::conditions::is_true_for(
                &s.conditions,
                "Ready",
                e.metadata.generation,
            ))
        .then_some(s)
    })
    .await;
    assert_ne!(
        rotated.ssh_key_fingerprint, first.ssh_key_fingerprint,
        "a new key is in use"
    );
    let secret = secrets.get("rotor-ssh").await.unwrap();
    let data = secret.data.unwrap();
    assert_ne!(
        data["ssh-privatekey"], old_private,
        "the Secret holds the new key"
    );
    assert!(
        !data.contains_key("ssh-privatekey-next"),
        "no half-rotated key left"
    );
    let annotations = secret.metadata.annotations.unwrap_or_default();
    assert!(!annotations.contains_key("edgetrain.dev/ssh-key-rotation"));
    // Add on the VM, prune on the VM (VMAccess extension), one re-attach; no VM/network PUT.
    assert_eq!(count(&w, "PUT", COMPUTE), before.0 + 2, "two VMAccess PUTs");
    assert_eq!(count(&w, "PUT", ML), before.1 + 1, "one re-attach");
    assert_eq!(count(&w, "PUT", NET), before.2, "network untouched");
    let ext = inventory(&w)
        .into_iter()
        .filter(|(t, _)| t.eq_ignore_ascii_case("Microsoft.Compute/virtualMachines/extensions"))
        .count();
    assert_eq!(ext, 1, "one VMAccess extension");
    let private = String::from_utf8(data["ssh-privatekey"].0.clone()).unwrap();
    let text = logs().text();
    for line in private.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!text.contains(line), "rotated private key leaked into logs");
    }
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_pauses_writes_but_never_blocks_deletion() {
    let w = world(200).await;
    let ctl = spawn(config(&w, Duration::from_millis(200), Metrics::default()));
    create(
        &w,
        ect_json(&w, "paused", json!({"deletionPolicy": "Delete"})),
    )
    .await;
    wait_ready(&w, "paused", 60).await;
    let api: Api<EdgeComputeTarget> = Api::namespaced(w.client.clone(), &w.ns);
    api.patch(
        "paused",
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": {"annotations": {"edgetrain.dev/reconcile-policy": "skip"}},
            "spec": {"vm": {"allowedSshSources": ["192.0.2.0/24"]}}
        })),
    )
    .await
    .unwrap();
    let before = writes(&w);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(writes(&w), before, "a skipped target is not written");

    let kept = inventory(&w);
    delete_and_wait(&w, "paused").await;
    assert_eq!(
        writes(&w),
        before,
        "deletion of a skipped target touches nothing"
    );
    assert_eq!(inventory(&w), kept);
    ctl.abort();
}
