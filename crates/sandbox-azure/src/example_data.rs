//! The demo's example data set: small, learnable churn CSV files, the same every time, so the
//! demo and the tests train on identical bytes (and get the same data fingerprint).

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Header of every file; `churned` is the label `examples/training/train.py` learns.
const HEADER: &str = "tenure,monthly,support_calls,churned\n";

/// `rows` customers from a 64-bit LCG seeded with `seed`. Churn is a plain rule (short tenure
/// and several support calls), so a linear model learns it well.
pub fn churn_csv(seed: u64, rows: usize) -> Vec<u8> {
    let mut out = String::from(HEADER);
    let mut x = seed;
    for _ in 0..rows {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let tenure = (x >> 33) % 60;
        let monthly = 20 + (x >> 40) % 80;
        let calls = (x >> 50) % 6;
        let churned = u8::from(tenure < 12 && calls >= 2);
        out.push_str(&format!("{tenure},{monthly},{calls},{churned}\n"));
    }
    out.into_bytes()
}

/// `edgetrain-sandbox example-data` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ExampleDataArgs {
    /// Directory to write `part-1.csv`, `part-2.csv`, … into (created when missing).
    pub dir: PathBuf,
    /// Number of files (file N uses seed N).
    #[arg(long, default_value_t = 2)]
    pub files: u64,
    /// Rows per file.
    #[arg(long, default_value_t = 200)]
    pub rows: usize,
}

/// Write the example data set; returns the files written.
pub fn write_example_data(args: &ExampleDataArgs) -> Result<Vec<PathBuf>> {
    if args.files == 0 || args.rows == 0 {
        return Err(Error::InvalidConfig(
            "example data needs at least one file and one row".into(),
        ));
    }
    std::fs::create_dir_all(&args.dir).map_err(|source| Error::WriteFile {
        path: args.dir.clone(),
        source,
    })?;
    (1..=args.files)
        .map(|seed| {
            let path = args.dir.join(format!("part-{seed}.csv"));
            std::fs::write(&path, churn_csv(seed, args.rows)).map_err(|source| {
                Error::WriteFile {
                    path: path.clone(),
                    source,
                }
            })?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_is_deterministic_shaped_and_has_both_classes() {
        let a = String::from_utf8(churn_csv(1, 200)).unwrap();
        assert_eq!(a, String::from_utf8(churn_csv(1, 200)).unwrap());
        assert_ne!(a, String::from_utf8(churn_csv(2, 200)).unwrap());
        let rows: Vec<&str> = a.lines().skip(1).collect();
        assert_eq!(a.lines().next(), Some(HEADER.trim_end()));
        assert_eq!(rows.len(), 200);
        let churned = rows.iter().filter(|r| r.ends_with(",1")).count();
        assert!(
            churned > 0 && churned < rows.len(),
            "{churned} of 200 churned"
        );
        assert!(rows.iter().all(|r| r.split(',').count() == 4));
    }

    #[test]
    fn writes_one_file_per_seed_and_refuses_an_empty_set() {
        let dir = tempfile::tempdir().unwrap();
        let args = ExampleDataArgs {
            dir: dir.path().join("data"),
            files: 2,
            rows: 10,
        };
        let files = write_example_data(&args).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(std::fs::read(&files[1]).unwrap(), churn_csv(2, 10));
        let empty = ExampleDataArgs { files: 0, ..args };
        assert!(write_example_data(&empty).is_err());
    }
}
