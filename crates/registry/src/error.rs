//! The crate's one error type. Every registry-facing variant names the registry and the
//! repository, and no variant ever carries a credential or a token.

use std::path::PathBuf;

/// Where an operation was aimed: printed in every registry error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub registry: String,
    pub repository: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "registry {}, repository {}",
            self.registry, self.repository
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request never got an HTTP answer (connect, TLS, reset). The URL has no query: upload
    /// locations carry server state we do not echo.
    #[error("{target}: {method} {url}: {source}")]
    Transport {
        target: Target,
        method: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The credential was refused (wrong password, unknown or expired AAD token).
    #[error("{target}: authentication failed: {detail}")]
    Unauthorized { target: Target, detail: String },
    /// Authenticated, but the token does not grant what the operation needs (e.g. push).
    #[error("{target}: access denied: the credential is not granted {scope}: {detail}")]
    Denied {
        target: Target,
        scope: String,
        detail: String,
    },
    /// The repository, manifest or blob does not exist.
    #[error("{target}: not found: {what}: {detail}")]
    NotFound {
        target: Target,
        what: String,
        detail: String,
    },
    /// Any other unexpected answer.
    #[error("{target}: {operation} answered HTTP {status}: {detail}")]
    Status {
        target: Target,
        operation: String,
        status: u16,
        detail: String,
    },
    /// The registry's answer is not what the distribution spec says it should be.
    #[error("{target}: {operation}: unexpected answer: {detail}")]
    Protocol {
        target: Target,
        operation: String,
        detail: String,
    },
    /// The token service refused or answered garbage.
    #[error("{target}: token service {realm}: {detail}")]
    TokenService {
        target: Target,
        realm: String,
        detail: String,
    },
    /// Obtaining the Azure AD token failed (the AAD credential's own error, without secrets).
    #[error("{target}: Azure AD token: {detail}")]
    AzureAd { target: Target, detail: String },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A blob's content could not be read from its sources (a file, a datastore blob): the
    /// message names the source. Worth retrying: a source that changed is listed again.
    #[error("reading content: {source}")]
    Read {
        #[source]
        source: std::io::Error,
    },
    /// Bad input to an assembly function or a reference that does not parse.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A chunked upload kept failing after resumes and restarts.
    #[error("{target}: upload of {digest} failed after {attempts} attempts: {last}")]
    UploadFailed {
        target: Target,
        digest: String,
        attempts: u32,
        last: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Short stable label for metrics and events.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Transport { .. } => "transport",
            Error::Unauthorized { .. } => "unauthorized",
            Error::Denied { .. } => "denied",
            Error::NotFound { .. } => "not_found",
            Error::Status { .. } => "status",
            Error::Protocol { .. } => "protocol",
            Error::TokenService { .. } => "token_service",
            Error::AzureAd { .. } => "azure_ad",
            Error::Io { .. } => "io",
            Error::Read { .. } => "read",
            Error::Invalid(_) => "invalid",
            Error::UploadFailed { .. } => "upload_failed",
        }
    }

    /// Worth retrying later (network trouble, 5xx); auth and input errors are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::UploadFailed { .. } | Error::Read { .. } => true,
            Error::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}
