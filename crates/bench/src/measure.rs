//! Children measured from outside: wall time, and peak RSS as the kernel accounted it
//! (`getrusage` of the waited-for child, read through GNU time's `%M`), never an estimate.

use std::{process::Command, time::Instant};

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub secs: f64,
    pub rss_mib: f64,
    pub stdout: String,
}

const MARK: &str = "__EDGETRAIN_BENCH_RSS_KIB__ ";

/// Runs `cmd` under `/usr/bin/time`; a failing child is an error carrying its stderr.
pub fn measured(cmd: &Command) -> Result<Measured> {
    let what = format!("{:?}", cmd.get_program());
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg(format!("{MARK}%M"))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let start = Instant::now();
    let out = timed.output().map_err(|e| Error::Child {
        what: what.clone(),
        detail: format!("/usr/bin/time: {e}"),
    })?;
    let secs = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(Error::Child {
            what,
            detail: stderr.into_owned(),
        });
    }
    let kib = peak_kib(&stderr).ok_or_else(|| Error::Child {
        what,
        detail: format!("no peak RSS in GNU time's output: {stderr}"),
    })?;
    Ok(Measured {
        secs,
        rss_mib: kib / 1024.0,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    })
}

/// The last `MARK <kib>` line (the child may print its own lines first).
fn peak_kib(stderr: &str) -> Option<f64> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(MARK))
        .next_back()
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_is_read_from_the_last_mark() {
        let s = format!("noise\n{MARK}100\nmore\n{MARK}2048\n");
        assert_eq!(peak_kib(&s), Some(2048.0));
        assert_eq!(peak_kib("no mark"), None);
    }

    #[test]
    fn a_child_is_measured_and_a_failing_one_is_an_error() {
        let m = measured(Command::new("sh").args(["-c", "echo hi"])).unwrap();
        assert_eq!(m.stdout.trim(), "hi");
        assert!(m.rss_mib > 0.0);
        let err = measured(Command::new("sh").args(["-c", "echo bad >&2; exit 3"])).unwrap_err();
        assert!(err.to_string().contains("bad"), "{err}");
    }
}
