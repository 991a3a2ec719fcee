//! Leader election between real `edgetrain-controller` processes against the in-process
//! Kubernetes API server: a frozen leader (SIGSTOP) is replaced and writes nothing after the
//! takeover; a gracefully stopped leader (SIGTERM) releases the Lease for its follower.
//! Each replica's kubeconfig names it in the API server's audit log.

mod common;

use std::{
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

const LEASE: &str = "edgetrain-controller";

/// A controller process, killed when dropped.
struct Replica {
    name: String,
    child: Child,
    log: std::path::PathBuf,
}

impl Replica {
    fn start(w: &World, dir: &std::path::Path, name: &str, lease_seconds: u64) -> Self {
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&kubeconfig, w.kube.kubeconfig_as(name)).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_edgetrain-controller"))
            .args(["--metrics-addr", "127.0.0.1:0", "--lease-seconds"])
            .arg(lease_seconds.to_string())
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAMESPACE", "default")
            .env("POD_NAME", name)
            .env("RUST_LOG", "info,edgetrain_controller=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the edgetrain-controller binary runs");
        Self {
            name: name.into(),
            child,
            log,
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.name);
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn exited(&mut self, secs: u64) -> ExitStatus {
        let what = format!("{} to exit", self.name);
        let child = &mut self.child;
        eventually(secs, &what, || {
            let status = child.try_wait().unwrap();
            async move { status }
        })
        .await
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        // SIGCONT first: a stopped process does not act on SIGKILL until it runs.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn holder(w: &World) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(w.client.clone(), "default");
    api.get_opt(LEASE)
        .await
        .unwrap()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

async fn holder_is(w: &World, name: &str, secs: u64) {
    eventually(secs, &format!("{name} to hold the Lease"), || async {
        (holder(w).await.as_deref() == Some(name)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_is_replaced_and_writes_nothing_after_the_takeover() {
    // Slow operations: the leader is in the middle of provisioning when it is frozen.
    let w = world(3000).await;
    let dir = tempfile::tempdir().unwrap();
    // Long enough that a loaded machine does not miss the 6.7 s renew deadline by itself.
    let mut a = Replica::start(&w, dir.path(), "replica-a", 10);
    holder_is(&w, "replica-a", 60).await;
    let b = Replica::start(&w, dir.path(), "replica-b", 10);
    create(&w, ect_json(&w, "frozen", json!({}))).await;
    // The leader is working on it: it wrote the target's status.
    eventually(60, "replica-a to write status", || async {
        w.kube
            .audit()
            .iter()
            .any(|e| e.user == "replica-a" && e.path.ends_with("/frozen/status"))
            .then_some(())
    })
    .await;

    a.signal("-STOP");
    holder_is(&w, "replica-b", 60).await;
    a.signal("-CONT");
    let status = a.exited(60).await;
    assert!(!status.success(), "the old leader stops: {}", a.logs());
    wait_ready(&w, "frozen", 120).await;

    let audit = w.kube.audit();
    let takeover = audit
        .iter()
        .position(|e| e.user == "replica-b" && (200..300).contains(&e.code))
        .expect("replica-b wrote (its takeover)");
    assert!(
        audit[..takeover].iter().any(|e| e.user == "replica-a"),
        "replica-a wrote before the takeover"
    );
    let late: Vec<_> = audit[takeover..]
        .iter()
        .filter(|e| e.user == "replica-a")
        .collect();
    assert!(
        late.is_empty(),
        "writes from the old leader after the takeover: {late:?}\n{}",
        a.logs()
    );
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gracefully_stopped_leader_releases_the_lease() {
    let w = world(200).await;
    let dir = tempfile::tempdir().unwrap();
    // Holders in the order the Lease records them ("" once released).
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let leases: Api<Lease> = Api::namespaced(w.client.clone(), "default");
    let record = seen.clone();
    let watch = tokio::spawn(
        watcher(
            leases,
            watcher::Config::default().fields("metadata.name=edgetrain-controller"),
        )
        .applied_objects()
        .for_each(move |l| {
            if let Ok(l) = l {
                let h = l.spec.and_then(|s| s.holder_identity).unwrap_or_default();
                let mut seen = record.lock().unwrap();
                if seen.last() != Some(&h) {
                    seen.push(h);
                }
            }
            futures::future::ready(())
        }),
    );
    // A long lease: without a release, the follower would wait 30 s of silence.
    let mut a = Replica::start(&w, dir.path(), "replica-a", 30);
    holder_is(&w, "replica-a", 60).await;
    let b = Replica::start(&w, dir.path(), "replica-b", 30);
    create(&w, ect_json(&w, "handover", json!({}))).await;
    wait_ready(&w, "handover", 60).await;

    a.signal("-TERM");
    let status = a.exited(60).await;
    assert!(status.success(), "a graceful stop: {}", a.logs());
    holder_is(&w, "replica-b", 60).await;
    let holders = eventually(10, "the watch to see replica-b", || async {
        let s = seen.lock().unwrap().clone();
        s.contains(&"replica-b".to_string()).then_some(s)
    })
    .await;
    // replica-b took over a released Lease, not an expired one.
    assert_eq!(holders, vec!["replica-a", "", "replica-b"], "{}", a.logs());
    watch.abort();
    drop(b);
}
