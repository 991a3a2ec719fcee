//! `reconcile-cpu`: controller CPU per reconcile of an unchanged object (Ready
//! EdgeComputeTargets re-read on a 1 s resync), beside the floor of the framework itself: a
//! kube-rs `Controller` whose reconcile only requeues, over the same objects at the same rate.
//! Both run on runtimes of their own whose threads are named, and only those threads' CPU is
//! counted (the sandbox shares the process).

use std::{
    convert::Infallible,
    fmt::Debug,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use edgetrain_api::EdgeComputeTarget;
use edgetrain_azure::arm::{BucketSpec, RateLimits};
use edgetrain_controller::metrics::Metrics;
use edgetrain_sandbox_azure::LroConfig;
use futures::StreamExt;
use kube::{
    Api, Client, Resource,
    runtime::{Controller, controller::Action, watcher},
};
use serde::de::DeserializeOwned;

use crate::{
    Error, Result,
    cpu::{cpu_ns, named_runtime},
    figure::Figure,
    world::World,
};

const RESYNC: Duration = Duration::from_secs(1);

/// A kube-rs controller over every `K` whose reconcile counts itself and requeues after
/// `resync`: what any kube-rs operator pays before doing anything.
pub async fn noop_controller<K>(client: Client, resync: Duration, count: Arc<AtomicU64>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    Controller::new(Api::<K>::all(client), watcher::Config::default())
        .run(
            |_obj, ctx: Arc<(Arc<AtomicU64>, Duration)>| async move {
                ctx.0.fetch_add(1, Ordering::Relaxed);
                Ok::<_, Infallible>(Action::requeue(ctx.1))
            },
            |_obj, _err: &Infallible, _ctx| Action::await_change(),
            Arc::new((count, resync)),
        )
        .for_each(|_| async {})
        .await;
}

fn ect_reconciles(metrics: &Metrics) -> u64 {
    metrics
        .reconciles
        .get_or_create(&Metrics::kind("EdgeComputeTarget"))
        .get()
}

/// CPU nanoseconds and reconciles over `window`, after a settling pause.
async fn sample(thread: &str, window: Duration, count: impl Fn() -> u64) -> (u64, u64) {
    tokio::time::sleep(2 * RESYNC).await;
    let (c0, n0) = (cpu_ns(thread), count());
    tokio::time::sleep(window).await;
    (cpu_ns(thread) - c0, count() - n0)
}

fn io(e: std::io::Error) -> Error {
    Error::Io {
        path: "tokio runtime".into(),
        source: e,
    }
}

pub async fn reconcile_cpu(targets: usize, window: Duration) -> Result<Vec<Figure>> {
    let w = World::start(
        LroConfig {
            duration_ms: 200,
            ..LroConfig::default()
        },
        |_| {},
    )
    .await?;
    let ours_rt = named_runtime("bench-ours", 1).map_err(io)?;
    // Clients built inside the runtime spawn their connection tasks there, so that is where
    // their CPU is counted.
    let mut cfg = {
        let _in = ours_rt.enter();
        w.controller_config(RESYNC)?
    };
    // The client's Stack Hub read budget (3/s after a burst) would otherwise set the reconcile
    // rate; the CPU of one reconcile is what is measured here.
    let unlimited = BucketSpec {
        capacity: 1e9,
        refill_per_sec: 1e9,
    };
    cfg.stack_hub_rate_limits = RateLimits {
        reads: unlimited,
        writes: unlimited,
        deletes: unlimited,
    };
    let metrics = cfg.metrics.clone();
    let ctl = ours_rt.spawn(edgetrain_controller::run(cfg));
    for i in 0..targets {
        w.create_ect(&format!("edge{i}")).await?;
    }
    for i in 0..targets {
        w.wait_ect_ready(&format!("edge{i}"), 180).await?;
    }
    let (ours_ns, ours_n) = sample("bench-ours", window, || ect_reconciles(&metrics)).await;
    ctl.abort();
    ours_rt.shutdown_background();

    let count = Arc::new(AtomicU64::new(0));
    let peer_rt = named_runtime("bench-peer", 1).map_err(io)?;
    let client = {
        let _in = peer_rt.enter();
        w.kube.client()?
    };
    let peer = peer_rt.spawn(noop_controller::<EdgeComputeTarget>(
        client,
        RESYNC,
        count.clone(),
    ));
    let (peer_ns, peer_n) = sample("bench-peer", window, || count.load(Ordering::Relaxed)).await;
    peer.abort();
    peer_rt.shutdown_background();
    w.shutdown().await;

    let per = |ns: u64, n: u64| ns as f64 / 1e6 / n.max(1) as f64;
    let (ours, floor) = (per(ours_ns, ours_n), per(peer_ns, peer_n));
    let input = format!(
        "{targets} Ready EdgeComputeTargets re-read on a 1 s resync for {} s (ours: {ours_n} reconciles, \
         each reading the target's Azure resources, client ARM budget lifted; no-op: {peer_n}); CPU of the \
         controller's own runtime threads",
        window.as_secs()
    );
    eprintln!("reconcile-cpu: ours {ours:.3} ms, no-op kube-rs controller {floor:.3} ms ({input})");
    Ok(vec![Figure::new(
        "reconcile-cpu",
        ours,
        floor,
        "kube-rs Controller with a reconcile that only requeues (framework floor)",
        "CPU ms/reconcile",
        &input,
    )])
}
