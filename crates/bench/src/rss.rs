//! `scale-rss`: peak RSS of the controller process (the `edgetrain-controller` binary; `make
//! bench` runs the `dist` build the image ships) once it has cached and reconciled N
//! TrainingRuns, beside a process running a kube-rs `Controller` with a no-op reconcile over
//! the same objects (the framework's own cost of caching them). Both read from `/proc/PID/status` (VmHWM) of the child, never estimated.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use edgetrain_api::TrainingRun;
use edgetrain_sandbox_azure::LroConfig;
use futures::{StreamExt, TryStreamExt};

use crate::{
    Error, Result,
    figure::Figure,
    reconcile::noop_controller,
    world::{World, eventually_every},
};

/// A data endpoint nothing listens on: runs on a missing target never reach it.
const NOWHERE: &str = "https://data.blob.local.azurestack.external";

/// VmHWM of a live process, in MiB.
pub fn peak_rss_mib(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone().into(),
        source,
    })?;
    vm_hwm_kib(&text)
        .map(|kib| kib / 1024.0)
        .ok_or_else(|| Error::Child {
            what: path,
            detail: "no VmHWM line".into(),
        })
}

fn vm_hwm_kib(status: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Kills the child when dropped (a failing figure must not leave it running).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command) -> Result<Reaped> {
    cmd.spawn().map(Reaped).map_err(|e| Error::Child {
        what: format!("{:?}", cmd.get_program()),
        detail: e.to_string(),
    })
}

/// The measured child of the peer: a no-op kube-rs controller over every TrainingRun that
/// prints `ready` once it has reconciled `expect` of them (KUBECONFIG names the server).
pub async fn noop_child(expect: u64) -> Result<()> {
    let client = kube::Client::try_default().await?;
    let count = Arc::new(AtomicU64::new(0));
    let watch = count.clone();
    tokio::spawn(async move {
        while watch.load(Ordering::Relaxed) < expect {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("ready");
    });
    noop_controller::<TrainingRun>(client, Duration::from_secs(3600), count).await;
    Ok(())
}

/// `controller`: the binary measured (default: `edgetrain-controller` next to this one).
pub async fn scale_rss(runs: usize, controller: Option<&Path>) -> Result<Vec<Figure>> {
    let w = World::start(LroConfig::default(), |_| {}).await?;
    futures::stream::iter(0..runs)
        .map(|i| {
            let w = &w;
            async move {
                w.create_run(&format!("cached-{i}"), "absent", NOWHERE, "true")
                    .await
            }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await?;
    let dir = tempfile::tempdir().map_err(|source| Error::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let kubeconfig = dir.path().join("kubeconfig");
    w.kube.write_kubeconfig(&kubeconfig)?;
    let me = std::env::current_exe().map_err(|source| Error::Io {
        path: "current executable".into(),
        source,
    })?;
    let controller_bin = controller
        .map(Path::to_owned)
        .unwrap_or_else(|| me.with_file_name("edgetrain-controller"));

    let ours = ours_rss(&w, &controller_bin, &kubeconfig, runs).await?;
    let peer = peer_rss(&me, &kubeconfig, runs).await?;
    w.shutdown().await;
    let input = format!(
        "{runs} TrainingRuns (on a target that does not exist, so every one is reconciled to a stalled status \
         without Azure calls) cached by the controller process; VmHWM once each has its status"
    );
    eprintln!("scale-rss: ours {ours:.1} MiB, no-op kube-rs controller {peer:.1} MiB ({input})");
    Ok(vec![Figure::new(
        "scale-rss",
        ours,
        peer,
        "a kube-rs Controller process with a no-op reconcile over the same TrainingRuns",
        "MiB",
        &input,
    )])
}

async fn ours_rss(w: &World, bin: &Path, kubeconfig: &Path, runs: usize) -> Result<f64> {
    let child = spawn(
        Command::new(bin)
            .args(["--no-leader-election", "--metrics-addr", "127.0.0.1:0"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    eventually_every(
        Duration::from_secs(2),
        1800,
        "every cached TrainingRun reconciled",
        || async {
            let phases = w.run_phases().await.ok()?;
            (phases.iter().filter(|p| p.is_some()).count() == runs).then_some(())
        },
    )
    .await?;
    // The last status writes' watch events reach the cache too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    peak_rss_mib(child.0.id())
}

async fn peer_rss(me: &Path, kubeconfig: &Path, runs: usize) -> Result<f64> {
    let mut child = spawn(
        Command::new(me)
            .args(["noop-controller", "--expect", &runs.to_string()])
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )?;
    let stdout = child.0.stdout.take().ok_or_else(|| Error::Child {
        what: "noop-controller".into(),
        detail: "no stdout".into(),
    })?;
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| Error::Sandbox(e.to_string()))?
    .map_err(|source| Error::Io {
        path: "noop-controller stdout".into(),
        source,
    })?;
    if line.trim() != "ready" {
        return Err(Error::Child {
            what: "noop-controller".into(),
            detail: format!("ended before reconciling {runs} runs ({line:?})"),
        });
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    peak_rss_mib(child.0.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_in_kib() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(2048.0));
        assert_eq!(vm_hwm_kib("Name:\tx\n"), None);
        assert!(peak_rss_mib(std::process::id()).unwrap() > 0.0);
    }
}
