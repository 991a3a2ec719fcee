//! `edgetrain-bench`: the figures of issue 15, each ours beside a peer (or the physical bound)
//! on the same input in the same run, merged into `target/bench/results.json` (see
//! BENCHMARKS.md). Not a test: nothing here fails on a time.

mod cpu;
mod ect;
mod error;
mod figure;
mod fingerprint;
mod measure;
mod reconcile;
mod rss;
mod scale;
mod world;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use crate::error::{Error, Result};
use crate::figure::Figure;

#[derive(Debug, Parser)]
#[command(name = "edgetrain-bench")]
struct Cli {
    /// The results file; figures of the same name are replaced, others kept.
    #[arg(long, global = true, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// Small inputs (the whole run in under 5 minutes).
    #[arg(long, global = true)]
    quick: bool,
    /// TrainingRuns cached for `scale-rss` (default: 10,000, the figure; 1,000 with
    /// --quick).
    #[arg(long, global = true)]
    cached: Option<usize>,
    /// TrainingRuns applied at once for `scale-submit` (default: 1,000, the figure;
    /// 100 with --quick).
    #[arg(long, global = true)]
    runs: Option<usize>,
    /// The controller binary `scale-rss` runs (default: `edgetrain-controller` next to this
    /// binary; `make bench` passes the `dist` build, the one the image ships).
    #[arg(long, global = true)]
    controller: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Every figure group below, then the table of everything in the results file.
    All,
    /// `ect-requests`.
    EctRequests,
    /// `steady-writes`, `steady-reads`.
    Steady,
    /// `fingerprint`, `fingerprint-rss`, `fingerprint-bound`.
    Fingerprint,
    /// `reconcile-cpu`, `submit-latency-p50`, `submit-latency-p99`.
    Reconcile,
    /// `scale-submit`, `scale-rss`, `scale-reads-N`.
    Scale,
    /// `scale-submit` alone (`--runs N`: runs applied at once, default 1,000).
    ScaleSubmit,
    /// `scale-rss` alone.
    ScaleRss,
    /// `scale-reads-N` alone.
    ScaleReads,
    /// Print the results file as a Markdown table.
    Table,
    /// The measured child of `fingerprint`: list + fingerprint one container (account key in
    /// BENCH_ACCOUNT_KEY), print `{"sha256", "blobs"}`.
    #[command(hide = true)]
    FingerprintList {
        account_url: String,
        container: String,
        ca: PathBuf,
    },
    /// The measured child of `scale-rss`'s peer: a no-op kube-rs controller over every
    /// TrainingRun (KUBECONFIG names the server); prints `ready` after `expect` reconciles.
    #[command(hide = true)]
    NoopController {
        #[arg(long)]
        expect: u64,
    },
}

fn steady_cycles(quick: bool) -> u32 {
    if quick { 10 } else { 60 }
}

/// Ready targets and the seconds their reconciles are counted over.
fn reconcile_input(quick: bool) -> (usize, std::time::Duration) {
    if quick {
        (3, std::time::Duration::from_secs(10))
    } else {
        (10, std::time::Duration::from_secs(30))
    }
}

/// Runs applied one at a time for the submit latency.
fn latency_runs(quick: bool) -> usize {
    if quick { 10 } else { 50 }
}

/// Runs applied at once; runs cached for the peak RSS; running jobs the reads are counted
/// with; the whole job listing intervals they are counted over.
fn scale_input(quick: bool) -> (usize, usize, &'static [usize], usize) {
    if quick {
        (100, 1000, &[10, 100], 1)
    } else {
        (1000, 10_000, &[10, 100, 1000], 2)
    }
}

async fn reconcile_figures(quick: bool) -> Result<Vec<Figure>> {
    let (targets, window) = reconcile_input(quick);
    let mut out = reconcile::reconcile_cpu(targets, window).await?;
    out.extend(scale::submit_latency(latency_runs(quick)).await?);
    Ok(out)
}

fn fingerprint_blobs(quick: bool) -> usize {
    if quick { 10_000 } else { 100_000 }
}

/// A group of figures measured together (one sandbox or one data set).
#[derive(Debug, Clone, Copy)]
enum Group {
    EctRequests,
    Steady,
    Fingerprint,
    Reconcile,
    ScaleSubmit,
    ScaleRss,
    ScaleReads,
}

const SCALE: [Group; 3] = [Group::ScaleSubmit, Group::ScaleRss, Group::ScaleReads];

fn groups(cmd: &Cmd) -> Vec<Group> {
    match cmd {
        Cmd::All => [
            Group::EctRequests,
            Group::Steady,
            Group::Fingerprint,
            Group::Reconcile,
        ]
        .into_iter()
        .chain(SCALE)
        .collect(),
        Cmd::EctRequests => vec![Group::EctRequests],
        Cmd::Steady => vec![Group::Steady],
        Cmd::Fingerprint => vec![Group::Fingerprint],
        Cmd::Reconcile => vec![Group::Reconcile],
        Cmd::Scale => SCALE.to_vec(),
        Cmd::ScaleSubmit => vec![Group::ScaleSubmit],
        Cmd::ScaleRss => vec![Group::ScaleRss],
        Cmd::ScaleReads => vec![Group::ScaleReads],
        Cmd::Table | Cmd::FingerprintList { .. } | Cmd::NoopController { .. } => vec![],
    }
}

/// The sizes (and the controller binary) a command line can override.
#[derive(Debug, Clone)]
struct Sizes {
    cached: Option<usize>,
    runs: Option<usize>,
    controller: Option<PathBuf>,
}

async fn measure(group: Group, quick: bool, sizes: &Sizes) -> Result<Vec<Figure>> {
    match group {
        Group::EctRequests => ect::ect_requests().await,
        Group::Steady => ect::steady(steady_cycles(quick)).await,
        Group::Fingerprint => fingerprint::figures(fingerprint_blobs(quick)).await,
        Group::Reconcile => reconcile_figures(quick).await,
        Group::ScaleSubmit => scale::scale_submit(sizes.runs.unwrap_or(scale_input(quick).0)).await,
        Group::ScaleRss => {
            let cached = sizes.cached.unwrap_or(scale_input(quick).1);
            rss::scale_rss(cached, sizes.controller.as_deref()).await
        }
        Group::ScaleReads => {
            let (_, _, sizes, intervals) = scale_input(quick);
            scale::scale_reads(sizes, intervals).await
        }
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // The in-process controller's logs, only when asked for (e.g.
    // `RUST_LOG=edgetrain_azure=debug` shows every Azure call), on stderr.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    if let Cmd::FingerprintList {
        account_url,
        container,
        ca,
    } = &cli.command
    {
        if let Err(e) = fingerprint::list_child(account_url, container, ca).await {
            eprintln!("edgetrain-bench fingerprint-list: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Cmd::NoopController { expect } = &cli.command {
        if let Err(e) = rss::noop_child(*expect).await {
            eprintln!("edgetrain-bench noop-controller: {e}");
            std::process::exit(1);
        }
        return;
    }
    let run = async {
        // Saved group by group: a group failing (or the run stopped) keeps the other figures;
        // the run still fails at the end.
        let mut failed = Vec::new();
        for group in groups(&cli.command) {
            let sizes = Sizes {
                cached: cli.cached,
                runs: cli.runs,
                controller: cli.controller.clone(),
            };
            match measure(group, cli.quick, &sizes).await {
                Ok(figures) => {
                    figure::save(&cli.out, figures)?;
                }
                Err(e) => {
                    eprintln!("edgetrain-bench: {group:?}: {e}");
                    failed.push(group);
                }
            }
        }
        let all = figure::load(&cli.out)?;
        println!("{}", figure::table(&all));
        if !failed.is_empty() {
            return Err(Error::Child {
                what: "edgetrain-bench".into(),
                detail: format!("{} figure group(s) failed: {failed:?}", failed.len()),
            });
        }
        Ok::<_, Error>(())
    };
    if let Err(e) = run.await {
        eprintln!("edgetrain-bench: {e}");
        std::process::exit(1);
    }
}
