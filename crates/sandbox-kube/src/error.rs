//! The crate's error type (for the embedding API; HTTP-level failures are `ApiError`s).

use std::path::PathBuf;

/// Errors from starting, stopping or configuring the sandbox API server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot bind {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read or write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {path} as YAML")]
    Yaml {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("cannot serialise state")]
    Json(#[source] serde_json::Error),
    #[error("cannot build a kube client for {url}")]
    Client {
        url: String,
        #[source]
        source: kube::Error,
    },
    #[error("registering {path} was rejected: {message}")]
    Rejected { path: PathBuf, message: String },
    #[error("the server task failed")]
    Join(#[source] tokio::task::JoinError),
    #[error("the server is not running")]
    NotRunning,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
