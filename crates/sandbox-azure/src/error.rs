//! The crate's single error type.

use std::path::PathBuf;

/// Errors of the simulator itself (not the ARM errors it answers with, see [`crate::arm_error`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration file {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("spec file {path} is not valid JSON")]
    SpecJson {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("spec {path}: {message}")]
    Spec { path: String, message: String },
    #[error("cannot bind {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "Azurite not found: set EDGETRAIN_AZURITE_BLOB to the azurite-blob executable or put `azurite-blob` on PATH (npm install -g azurite)"
    )]
    AzuriteNotFound,
    #[error("cannot start Azurite ({program})")]
    AzuriteSpawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Azurite did not become ready: {0}")]
    AzuriteNotReady(String),
    #[error("certificate generation failed")]
    Certificate(#[source] rcgen::Error),
    #[error("HTTP client setup failed")]
    HttpClient(#[source] reqwest::Error),
    #[error("blob request {what} failed")]
    Blob {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("blob request {what} answered {status}: {body}")]
    BlobStatus {
        what: String,
        status: u16,
        body: String,
    },
    #[error("job {job}: {message}")]
    Job { job: String, message: String },
    #[error("I/O error: {context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox registry: {0}")]
    RegistryNotReady(String),
    #[error("signal handling failed")]
    Signal(#[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
