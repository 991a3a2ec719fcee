use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a JSON list of figures: {source}")]
    Results {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{what} failed: {detail}")]
    Child { what: String, detail: String },
    #[error("sandbox: {0}")]
    Sandbox(String),
    #[error("timed out after {secs} s waiting for {what}")]
    Timeout { what: String, secs: u64 },
    #[error("{0}")]
    Azure(#[from] edgetrain_azure::Error),
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<edgetrain_sandbox_azure::Error> for Error {
    fn from(e: edgetrain_sandbox_azure::Error) -> Self {
        Self::Sandbox(e.to_string())
    }
}

impl From<edgetrain_sandbox_kube::Error> for Error {
    fn from(e: edgetrain_sandbox_kube::Error) -> Self {
        Self::Sandbox(e.to_string())
    }
}
