//! Resize, an unavailable size, and leader election against the sandbox.

mod common;

use std::time::Duration;

use common::*;
use edgetrain_api::EdgeComputeTarget;
use edgetrain_controller::metrics::Metrics;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

const COMPUTE: &str = "Microsoft.Compute";

async fn set_size(w: &World, name: &str, size: &str) {
    let api: Api<EdgeComputeTarget> = Api::namespaced(w.client.clone(), &w.ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"vm": {"size": size}}})),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_change_deallocates_resizes_and_starts() {
    let w = world(200).await;
    let ctl = spawn(config(&w, Duration::from_secs(300), Metrics::default()));
    create(&w, ect_json(&w, "resize", json!({}))).await;
    wait_ready(&w, "resize", 60).await;
    let (puts, posts) = (count(&w, "PUT", COMPUTE), count(&w, "POST", COMPUTE));

    set_size(&w, "resize", "Standard_DS3_v2").await;
    let e = eventually(60, "Ready at generation 2", || async {
        let e = get(&w, "resize").await?;
        let s = e.status.as_ref()?;
        edgetrain_api::conditions::is_true_for(&s.conditions, "Ready", Some(2)).then_some(e)
    })
    .await;
    let s = e.status.unwrap();
    assert_eq!(s.vm_size.as_deref(), Some("Standard_DS3_v2"));
    assert_eq!(
        s.power_state,
        Some(edgetrain_api::edge_compute_target::PowerState::Running)
    );
    // VirtualMachines_Update with the size alone: never a PUT restating the VM.
    assert_eq!(count(&w, "PATCH", COMPUTE), 1, "one resize PATCH");
    assert_eq!(count(&w, "PUT", COMPUTE), puts, "no VM PUT");
    assert_eq!(
        count(&w, "POST", COMPUTE),
        posts + 2,
        "deallocate, then start"
    );
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_size_is_a_clear_condition() {
    let w = world(200).await;
    let ctl = spawn(config(&w, Duration::from_secs(300), Metrics::default()));
    create(&w, ect_json(&w, "nosku", json!({}))).await;
    wait_ready(&w, "nosku", 60).await;
    set_size(&w, "nosku", "Standard_F72s_v2").await;
    let (_, reason, message) = eventually(60, "Stalled SkuNotAvailable", || async {
        let e = get(&w, "nosku").await?;
        let c = condition(&e, "Stalled")?;
        (c.0 == "True").then_some(c)
    })
    .await;
    assert_eq!(reason, "SkuNotAvailable");
    assert!(message.contains("Standard_F72s_v2"), "{message}");
    // Back to an offered size: the VM is started again and the target is Ready.
    set_size(&w, "nosku", "Standard_DS2_v2").await;
    wait_ready(&w, "nosku", 60).await;
    ctl.abort();
}

async fn holder(w: &World) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(w.client.clone(), "default");
    api.get_opt("edgetrain-controller")
        .await
        .unwrap()
        .and_then(|l| l.spec?.holder_identity)
}

fn reconciles(m: &Metrics) -> u64 {
    m.reconciles
        .get_or_create(&Metrics::kind("EdgeComputeTarget"))
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_reconciles_and_a_follower_takes_over() {
    let w = world(200).await;
    let (ma, mb) = (Metrics::default(), Metrics::default());
    let mut ca = config(&w, Duration::from_secs(300), ma.clone());
    ca.leader = Some(leader("replica-a"));
    ca.instance = "replica-a".into();
    let mut cb = config(&w, Duration::from_secs(300), mb.clone());
    cb.leader = Some(leader("replica-b"));
    cb.instance = "replica-b".into();
    let a = spawn(ca);
    let b = spawn(cb);
    let first = eventually(30, "a Lease holder", || holder(&w)).await;
    create(&w, ect_json(&w, "led", json!({}))).await;
    wait_ready(&w, "led", 60).await;
    let (leader_m, follower_m, leader_task, follower_task) = if first == "replica-a" {
        (&ma, &mb, a, b)
    } else {
        (&mb, &ma, b, a)
    };
    assert!(reconciles(leader_m) > 0);
    assert_eq!(reconciles(follower_m), 0, "the follower never reconciles");
    assert_eq!(holder(&w).await.as_deref(), Some(first.as_str()));

    // The leader dies without releasing; after the Lease expires the follower takes over.
    leader_task.abort();
    let second = eventually(60, "a new Lease holder", || async {
        holder(&w).await.filter(|h| *h != first)
    })
    .await;
    assert_ne!(second, first);
    create(&w, ect_json(&w, "led2", json!({}))).await;
    wait_ready(&w, "led2", 60).await;
    assert!(reconciles(follower_m) > 0, "the new leader reconciles");
    follower_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holder_with_a_skewed_clock_keeps_the_lease() {
    let w = world(200).await;
    let leases: Api<Lease> = Api::namespaced(w.client.clone(), "default");
    let lease_seconds = i32::try_from(leader("x").lease_duration.as_secs()).unwrap();
    // Another replica whose clock runs an hour behind: every renewTime it writes is an hour
    // old by our clock, but it keeps renewing.
    let skewed = || {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(1),
        )
    };
    // Renews as a real holder does: read, check it still holds, write with the read version.
    let renew = |n: i32| {
        let leases = leases.clone();
        async move {
            let mut lease = leases
                .get_opt("edgetrain-controller")
                .await
                .unwrap()
                .unwrap_or_default();
            let spec = lease.spec.get_or_insert_with(Default::default);
            if n > 0 {
                assert_eq!(
                    spec.holder_identity.as_deref(),
                    Some("skewed-replica"),
                    "taken over from a live holder after {n} renewals"
                );
            }
            spec.holder_identity = Some("skewed-replica".into());
            spec.lease_duration_seconds = Some(lease_seconds);
            spec.renew_time = Some(skewed());
            let written = if n == 0 {
                lease.metadata.name = Some("edgetrain-controller".into());
                leases.create(&Default::default(), &lease).await
            } else {
                leases
                    .replace("edgetrain-controller", &Default::default(), &lease)
                    .await
            };
            if let Err(e) = written {
                panic!("renewal {n} lost a race to a takeover: {e}");
            }
        }
    };
    renew(0).await;
    let mut cfg = config(&w, Duration::from_secs(300), Metrics::default());
    cfg.leader = Some(leader("replica-a"));
    let a = spawn(cfg);
    // Renew for twice the lease duration, once a second: the holder is alive throughout.
    for n in 1..=2 * lease_seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        renew(n).await;
    }
    // Once it stops renewing, the record stops changing and replica-a takes over.
    eventually(60, "replica-a to take over", || async {
        (holder(&w).await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    a.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_target_is_deallocated_and_a_training_run_starts_it() {
    use edgetrain_api::edge_compute_target::PowerState;
    let w = world(200).await;
    let clock = std::sync::Arc::new(TestClock(Default::default()));
    let mut cfg = config(&w, Duration::from_millis(200), Metrics::default());
    cfg.clock = Some(clock.clone());
    let ctl = spawn(cfg);
    create(&w, ect_json(&w, "sleepy", json!({"idleTimeout": "5m"}))).await;
    let ready = wait_ready(&w, "sleepy", 60).await;
    assert!(ready.status.unwrap().last_active_time.is_some());
    let posts = count(&w, "POST", COMPUTE);

    // Six minutes pass without a TrainingRun.
    clock.0.store(360, std::sync::atomic::Ordering::SeqCst);
    let idle = eventually(60, "deallocated while idle", || async {
        let e = get(&w, "sleepy").await?;
        let s = e.status.clone()?;
        (s.power_state == Some(PowerState::Deallocated)).then_some(e)
    })
    .await;
    let (status, reason, _) = condition(&idle, "Ready").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Idle"));
    assert_eq!(count(&w, "POST", COMPUTE), posts + 1, "one deallocate");

    // A TrainingRun on the target (no status yet = Pending = active) wakes it.
    create_run(&w, "wake-up", "sleepy").await;
    let awake = wait_ready(&w, "sleepy", 60).await;
    let s = awake.status.unwrap();
    assert_eq!(s.power_state, Some(PowerState::Running));
    assert_eq!(count(&w, "POST", COMPUTE), posts + 2, "then one start");
    ctl.abort();
}
