//! TrainingRuns at scale and one at a time: `submit-latency-p50|p99` (apply → Submitted with
//! no added latency), `scale-submit` (N runs applied at once → all Submitted, 20 ms added to
//! every ARM call, beside the critical-path lower bound), `scale-reads-N` (Azure ML reads per
//! minute with N running jobs, which must stay flat).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use edgetrain_api::{TrainingRun, TrainingRunPhase};
use edgetrain_azure::arm::{AZURE_ML_API_VERSION, BucketSpec, RateLimits};
use edgetrain_sandbox_azure::{FaultConfig, LroConfig};
use futures::{StreamExt, TryStreamExt};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::json;

use crate::{
    Error, Result,
    ect::delta,
    figure::Figure,
    world::{ML_PRINCIPAL, NS, SUB, TENANT, World, eventually_every},
};

const ML: &str = "Microsoft.MachineLearningServices";
const LATENCY_MS: u64 = 20;

/// A sandbox with a Ready target and the inputs runs need, its controller running.
struct Bench {
    w: World,
    endpoint: String,
    ctl: tokio::task::JoinHandle<edgetrain_controller::Result<()>>,
}

impl Bench {
    async fn start(latency_ms: u64) -> Result<Self> {
        let lro = LroConfig {
            duration_ms: 200,
            ..LroConfig::default()
        };
        let w = World::start(lro, |c| {
            c.azurite = true;
            c.faults = FaultConfig {
                latency_ms,
                ..FaultConfig::default()
            };
        })
        .await?;
        let ctl = w.controller(Duration::from_secs(300))?;
        w.create_ect("edge").await?;
        w.wait_ect_ready("edge", 180).await?;
        let endpoint = w.training_inputs().await?;
        Ok(Self { w, endpoint, ctl })
    }

    /// Creates runs `from..to` (a few at a time: the API server is not what is measured).
    async fn create(&self, prefix: &str, from: usize, to: usize, command: &str) -> Result<()> {
        futures::stream::iter(from..to)
            .map(|i| async move {
                let name = format!("{prefix}-{i}");
                self.w
                    .create_run(&name, "edge", &self.endpoint, command)
                    .await
            })
            .buffer_unordered(8)
            .try_collect::<()>()
            .await
    }

    /// Runs that have left Pending (Submitted or later).
    async fn past_pending(&self) -> Result<usize> {
        Ok(self
            .w
            .run_phases()
            .await?
            .iter()
            .filter(|p| p.as_ref().is_some_and(|p| *p != TrainingRunPhase::Pending))
            .count())
    }

    async fn stop(self) {
        self.ctl.abort();
        self.w.shutdown().await;
    }
}

/// The `q`-quantile (0..=1) of `xs` by the nearest-rank method.
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied().unwrap_or(0.0)
}

/// Seconds a token bucket needs to let `n` requests through (the burst is free).
pub fn bucket_secs(n: f64, b: &BucketSpec) -> f64 {
    (n - b.capacity).max(0.0) / b.refill_per_sec
}

/// The lower bound on submitting `runs` runs: every run's own calls one after another, each
/// taking the added latency; and no faster than the client's token buckets let the reads and
/// writes of all runs through. Runs are reconciled concurrently (kube-rs' default).
pub fn submit_bound(
    runs: usize,
    reads_per_run: f64,
    writes_per_run: f64,
    latency: Duration,
    limits: &RateLimits,
) -> f64 {
    let path = (reads_per_run + writes_per_run) * latency.as_secs_f64();
    let n = runs as f64;
    path.max(bucket_secs(n * reads_per_run, &limits.reads))
        .max(bucket_secs(n * writes_per_run, &limits.writes))
}

/// Mean time of one authenticated Azure ML read (GET of the workspace) from a plain client:
/// what one ARM request on the submit path costs at least, served by the same simulator.
async fn round_trip(w: &World) -> Result<Duration> {
    const N: u32 = 50;
    let http = reqwest::Client::new();
    let base = w.sim.base_url();
    let fail = |e: reqwest::Error| crate::Error::Sandbox(format!("round trip: {e}"));
    let (client_id, secret) = ML_PRINCIPAL;
    let token: serde_json::Value = http
        .post(format!("{base}/{TENANT}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            (
                "scope",
                &format!(
                    "{}/.default",
                    w.sim.config().public_audience.trim_end_matches('/')
                ),
            ),
        ])
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(fail)?
        .json()
        .await
        .map_err(fail)?;
    let token = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let url = format!(
        "{base}/subscriptions/{SUB}/resourceGroups/rg1/providers/{ML}/workspaces/ws1?api-version={AZURE_ML_API_VERSION}"
    );
    let start = Instant::now();
    for _ in 0..N {
        http.get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(fail)?;
    }
    Ok(start.elapsed() / N)
}

/// Milliseconds from applying each of `runs` runs (one after another) to reading it past
/// Pending, polled every 2 ms (finer than what is measured).
async fn apply_to_submitted(
    w: &World,
    endpoint: &str,
    prefix: &str,
    runs: usize,
) -> Result<Vec<f64>> {
    const LIMIT: Duration = Duration::from_secs(60);
    let api: Api<TrainingRun> = Api::namespaced(w.client.clone(), NS);
    let mut ms = Vec::with_capacity(runs);
    for i in 0..runs {
        let name = format!("{prefix}-{i}");
        let start = Instant::now();
        w.create_run(&name, "edge", endpoint, "true").await?;
        while !api
            .get_status(&name)
            .await?
            .status
            .is_some_and(|s| s.phase != TrainingRunPhase::Pending)
        {
            if start.elapsed() > LIMIT {
                return Err(Error::Timeout {
                    what: format!("{name} Submitted"),
                    secs: LIMIT.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(ms)
}

/// A kube-rs controller that writes `phase: Submitted` into every TrainingRun without a
/// status and does nothing else: the Kubernetes half of the submit floor.
async fn status_writer(client: Client) {
    Controller::new(
        Api::<TrainingRun>::all(client.clone()),
        watcher::Config::default(),
    )
    .run(
        |run: Arc<TrainingRun>, client: Arc<Client>| async move {
            if run.status.is_none() {
                let api: Api<TrainingRun> =
                    Api::namespaced((*client).clone(), &run.namespace().unwrap_or_default());
                api.patch_status(
                    &run.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"phase": "Submitted"}})),
                )
                .await?;
            }
            Ok::<_, kube::Error>(Action::await_change())
        },
        |_run, _err, _client| Action::requeue(Duration::from_millis(100)),
        Arc::new(client),
    )
    .for_each(|_| async {})
    .await;
}

pub async fn submit_latency(runs: usize) -> Result<Vec<Figure>> {
    let b = Bench::start(0).await?;
    let rtt = round_trip(&b.w).await?;
    let before = b.w.sim.counters();
    let ours = apply_to_submitted(&b.w, &b.endpoint, "lat", runs).await?;
    let d = delta(&before, &b.w.sim.counters());
    b.stop().await;
    // The floor in a sandbox of its own: nothing of our controller is left running there.
    let w = World::start(LroConfig::default(), |_| {}).await?;
    let writer = tokio::spawn(status_writer(w.client.clone()));
    let kube_only = apply_to_submitted(
        &w,
        "https://data.blob.local.azurestack.external",
        "floor",
        runs,
    )
    .await;
    writer.abort();
    w.shutdown().await;
    let kube_only = kube_only?;
    let calls = d.0.values().sum::<u64>() as f64 / runs as f64;
    let azure_ms = calls * rtt.as_secs_f64() * 1e3;
    let input = format!(
        "{runs} TrainingRuns applied one after another against a Ready target, no added latency, each read back \
         every 2 ms until past Pending; floor = a controller that only writes the status (same API server, same \
         polling) plus the run's {calls:.1} simulator requests (ARM and tokens) at a plain client's Azure ML GET \
         ({:.2} ms each); the code upload to Azurite is not in the floor",
        rtt.as_secs_f64() * 1e3
    );
    let (p50, p99) = (quantile(&ours, 0.5), quantile(&ours, 0.99));
    let (f50, f99) = (
        quantile(&kube_only, 0.5) + azure_ms,
        quantile(&kube_only, 0.99) + azure_ms,
    );
    eprintln!(
        "submit-latency: p50 {p50:.1} ms (floor {f50:.1}), p99 {p99:.1} ms (floor {f99:.1}) ({input})"
    );
    let floor = "floor: a status-only controller's apply → Submitted plus the run's Azure requests at a plain client's round trip";
    Ok(vec![
        Figure::new("submit-latency-p50", p50, f50, floor, "ms", &input),
        Figure::new("submit-latency-p99", p99, f99, floor, "ms", &input),
    ])
}

pub async fn scale_submit(runs: usize) -> Result<Vec<Figure>> {
    let b = Bench::start(LATENCY_MS).await?;
    let before = b.w.sim.counters();
    let start = Instant::now();
    b.create("many", 0, runs, "true").await?;
    eventually_every(
        Duration::from_millis(500),
        1800,
        "every run Submitted",
        || async { (b.past_pending().await.ok()? == runs).then_some(()) },
    )
    .await?;
    let secs = start.elapsed().as_secs_f64();
    let d = delta(&before, &b.w.sim.counters());
    b.stop().await;
    let reads = d.get("GET", ML) as f64 / runs as f64;
    let writes = (d.get("PUT", ML) + d.get("POST", ML) + d.get("PATCH", ML)) as f64 / runs as f64;
    let limits = RateLimits::public_azure();
    let bound = submit_bound(
        runs,
        reads,
        writes,
        Duration::from_millis(LATENCY_MS),
        &limits,
    );
    let input = format!(
        "{runs} TrainingRuns applied at once against a Ready target, {LATENCY_MS} ms added to every ARM call; \
         per run {reads:.2} Azure ML reads and {writes:.2} writes (measured); client buckets: reads {}+{}/s, \
         writes {}+{}/s; apply of the first → the last Submitted",
        limits.reads.capacity,
        limits.reads.refill_per_sec,
        limits.writes.capacity,
        limits.writes.refill_per_sec
    );
    eprintln!("scale-submit: {secs:.1} s, lower bound {bound:.1} s ({input})");
    Ok(vec![Figure::new(
        "scale-submit",
        secs,
        bound,
        "lower bound: calls on a run's path × latency, or the token buckets' time for all runs' calls",
        "s",
        &input,
    )])
}

/// Where listings start in `(seconds, reads so far)` samples: the first read after at least
/// `quiet` seconds without any, as `(seconds, reads before it)`.
pub fn listing_starts(samples: &[(f64, u64)], quiet: f64) -> Vec<(f64, u64)> {
    let mut starts = Vec::new();
    let mut last_read: Option<f64> = None;
    for w in samples.windows(2) {
        let ((_, before), (t, after)) = (w[0], w[1]);
        if after > before {
            if last_read.is_none_or(|l| t - l >= quiet) {
                starts.push((t, before));
            }
            last_read = Some(t);
        }
    }
    starts
}

/// Reads per minute over whole listing intervals: from the first listing's start to the last
/// one's, so that the count never catches a fraction of an interval. `None` before two
/// listings have started.
pub fn reads_per_minute(samples: &[(f64, u64)], quiet: f64) -> Option<f64> {
    let starts = listing_starts(samples, quiet);
    let (&(t0, c0), &(t1, c1)) = (starts.first()?, starts.last()?);
    (t1 > t0).then(|| (c1 - c0) as f64 * 60.0 / (t1 - t0))
}

pub async fn scale_reads(sizes: &[usize], intervals: usize) -> Result<Vec<Figure>> {
    /// A listing's pages follow one another closely; listings are seconds apart.
    const QUIET_SECS: f64 = 2.0;
    const LIMIT: Duration = Duration::from_secs(900);
    let b = Bench::start(LATENCY_MS).await?;
    let mut out = Vec::new();
    let mut created = 0;
    for &n in sizes {
        b.create("running", created, n, "sleep 3600").await?;
        created = n;
        let running = [TrainingRunPhase::Running];
        eventually_every(
            Duration::from_secs(1),
            1800,
            &format!("{n} runs Running"),
            || async { (b.w.runs_in(&running).await.ok()? == n).then_some(()) },
        )
        .await?;
        // Sampled until `intervals` whole listing intervals have passed.
        let start = Instant::now();
        let mut samples = Vec::new();
        let mut listings;
        let per_min = loop {
            samples.push((
                start.elapsed().as_secs_f64(),
                b.w.sim.counters().get("GET", ML),
            ));
            listings = listing_starts(&samples, QUIET_SECS).len();
            if listings > intervals {
                break reads_per_minute(&samples, QUIET_SECS);
            }
            if start.elapsed() > LIMIT {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let per_min = per_min.ok_or_else(|| Error::Timeout {
            what: format!("{} job listings with {n} running jobs", intervals + 1),
            secs: LIMIT.as_secs(),
        })?;
        let input = format!(
            "{n} running jobs (one Ready target, {LATENCY_MS} ms added to every ARM call), Azure ML GETs over {} \
             whole listing intervals ({:.0} s); list page size {}",
            listings - 1,
            start.elapsed().as_secs_f64(),
            b.w.sim.config().list_page_size
        );
        eprintln!("scale-reads-{n}: {per_min:.1} reads/min ({input})");
        out.push(Figure::new(
            &format!("scale-reads-{n}"),
            per_min,
            n as f64,
            "a per-job poller at 60 s (1 GET per job per minute)",
            "reads/min",
            &input,
        ));
    }
    b.stop().await;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&xs, 0.5), 50.0);
        assert_eq!(quantile(&xs, 0.99), 99.0);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.99), 3.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn reads_are_counted_over_whole_listing_intervals() {
        // Listings of 3 pages at 10 s, 30 s and 50 s (a page every 0.25 s), sampled every 0.25 s.
        let mut samples = Vec::new();
        let mut reads = 0;
        for i in 0..=240 {
            let t = f64::from(i) * 0.25;
            if [10.0, 10.25, 10.5, 30.0, 30.25, 30.5, 50.0, 50.25, 50.5].contains(&t) {
                reads += 1;
            }
            samples.push((t, reads));
        }
        let starts = listing_starts(&samples, 2.0);
        assert_eq!(starts, vec![(10.0, 0), (30.0, 3), (50.0, 6)]);
        // 6 reads over the 40 s between the first and last start: 9 a minute, whatever the
        // window around them.
        assert_eq!(reads_per_minute(&samples, 2.0), Some(9.0));
        assert_eq!(reads_per_minute(&samples[..100], 2.0), None, "one listing");
    }

    #[test]
    fn the_bound_is_the_slower_of_the_path_and_the_buckets() {
        let limits = RateLimits::public_azure();
        // Few runs: the path (4 calls × 20 ms).
        let b = submit_bound(10, 2.0, 2.0, Duration::from_millis(20), &limits);
        assert!((b - 0.08).abs() < 1e-9, "{b}");
        // 1000 runs × 2 writes: (2000 - 200) / 10 per s = 180 s.
        let b = submit_bound(1000, 2.0, 2.0, Duration::from_millis(20), &limits);
        assert!((b - 180.0).abs() < 1e-9, "{b}");
    }
}
