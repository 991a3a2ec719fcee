//! One figure of `target/bench/results.json`, the merge of a run into the file, and the table.
//!
//! The file is shared with `push-bench` (crates/registry/examples): both write a JSON list of
//! objects `name, ours, peer, peer_name, unit, ratio, input` and replace only the names they
//! measured, so either can run alone.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub name: String,
    pub ours: f64,
    pub peer: f64,
    pub peer_name: String,
    pub unit: String,
    /// How many times better ours is than the peer: > 1 means ours wins.
    pub ratio: f64,
    pub input: String,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Figure {
    /// A figure whose unit is better lower (time, memory, requests; push-bench writes the
    /// throughput figures), so ratio = peer / ours. Ours = 0 (no writes, say) is clamped to the
    /// smallest step shown so the ratio stays finite and JSON-representable; `input` says what
    /// was measured.
    pub fn new(name: &str, ours: f64, peer: f64, peer_name: &str, unit: &str, input: &str) -> Self {
        const FLOOR: f64 = 0.01;
        let ratio = peer / ours.max(FLOOR);
        Self {
            name: name.into(),
            ours: round2(ours),
            peer: round2(peer),
            peer_name: peer_name.into(),
            unit: unit.into(),
            ratio: round2(ratio),
            input: input.into(),
        }
    }
}

/// Reads the figures in `path`; a missing file is an empty list, a malformed one an error (it
/// would otherwise be silently overwritten).
pub fn load(path: &Path) -> Result<Vec<Figure>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Results {
            path: path.to_owned(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(Error::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// `old` with every figure named in `new` replaced (in place, keeping the order of the file)
/// and the remaining new ones appended in their order.
pub fn merge(old: Vec<Figure>, new: Vec<Figure>) -> Vec<Figure> {
    let mut out: Vec<Figure> = old
        .into_iter()
        .map(|f| new.iter().find(|n| n.name == f.name).cloned().unwrap_or(f))
        .collect();
    for n in new {
        if !out.iter().any(|f| f.name == n.name) {
            out.push(n);
        }
    }
    out
}

/// Merges `new` into the file at `path` and returns everything it now holds.
pub fn save(path: &Path, new: Vec<Figure>) -> Result<Vec<Figure>> {
    let all = merge(load(path)?, new);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    let body = serde_json::to_vec_pretty(&all).expect("figures serialise");
    std::fs::write(path, body).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(all)
}

/// A Markdown table (what BENCHMARKS.md carries), one row per figure.
pub fn table(figures: &[Figure]) -> String {
    let mut out = String::from(
        "| Figure | Ours | Peer | Peer is | Ratio | Unit |\n|---|---|---|---|---|---|\n",
    );
    for f in figures {
        let verdict = if f.ratio >= 1.0 { "" } else { " (peer wins)" };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {}{verdict} | {} |\n",
            f.name, f.ours, f.peer, f.peer_name, f.ratio, f.unit
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(name: &str, ours: f64) -> Figure {
        Figure::new(name, ours, 2.0, "p", "s", "in")
    }

    #[test]
    fn ratio_is_above_one_when_ours_is_lower() {
        assert_eq!(fig("t", 1.0).ratio, 2.0);
        assert_eq!(fig("t", 4.0).ratio, 0.5);
        // Zero writes against one: finite, large, ours wins.
        let zero = Figure::new("w", 0.0, 1.0, "p", "n", "in");
        assert_eq!(zero.ratio, 100.0);
        assert!(serde_json::to_string(&zero).is_ok());
    }

    #[test]
    fn merge_replaces_by_name_keeps_order_and_appends_new() {
        let old = vec![fig("push", 1.0), fig("a", 1.0), fig("b", 1.0)];
        let new = vec![fig("c", 4.0), fig("a", 4.0)];
        let merged = merge(old, new);
        let names: Vec<_> = merged.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["push", "a", "b", "c"]);
        assert_eq!(merged[1].ours, 4.0);
        assert_eq!(merged[2].ours, 1.0);
    }

    #[test]
    fn save_round_trips_and_a_malformed_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/results.json");
        save(&path, vec![fig("a", 1.0)]).unwrap();
        let all = save(&path, vec![fig("b", 3.0)]).unwrap();
        assert_eq!(load(&path).unwrap(), all);
        assert_eq!(all.len(), 2);
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(load(&path), Err(Error::Results { .. })));
    }

    #[test]
    fn table_marks_where_the_peer_wins() {
        let t = table(&[fig("fast", 1.0), fig("slow", 4.0)]);
        assert!(t.contains("| `fast` | 1 | 2 | p | 2 | s |"));
        assert!(t.contains("0.5 (peer wins)"));
    }
}
