//! `crdgen [DIR ...]`: writes every CRD into each DIR (default `crds/`), or to stdout with `-`.

use std::{io::Write, path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let mut targets: Vec<String> = std::env::args().skip(1).collect();
    if targets.is_empty() {
        targets.push("crds".to_string());
    }
    for (file, crd) in edgetrain_api::crdgen::all() {
        let text = match edgetrain_api::crdgen::render(&crd) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("crdgen: {e}");
                return ExitCode::FAILURE;
            }
        };
        for target in &targets {
            let written = if target == "-" {
                std::io::stdout().write_all(text.as_bytes())
            } else {
                std::fs::write(PathBuf::from(target).join(file), &text)
            };
            if let Err(e) = written {
                eprintln!("crdgen: writing {file} to {target}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
