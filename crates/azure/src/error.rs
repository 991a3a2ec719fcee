//! The crate's single error type.

use crate::arm::ArmError;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configured or returned URL could not be parsed or joined.
    #[error("invalid URL {url:?}")]
    Url {
        url: String,
        #[source]
        source: url::ParseError,
    },

    /// Caller input that can never succeed (bad CIDR, empty name, bad endpoint shape...).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The HTTP client could not be built (e.g. unreadable CA bundle).
    #[error("HTTP client setup failed: {0}")]
    ClientSetup(String),

    /// Reading a local file (CA bundle, upload source) failed.
    #[error("reading {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// The request never got an HTTP answer (connect, TLS, reset, timeout).
    #[error("HTTP transport error calling {method} {url}")]
    Transport {
        method: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// Resource Manager (or Azure ML) answered with an error envelope.
    #[error(transparent)]
    Arm(#[from] Box<ArmError>),

    /// The token endpoint refused to issue a token.
    #[error("token request to {token_url} failed with HTTP {status}: {code}: {description}")]
    Token {
        token_url: String,
        status: u16,
        code: String,
        description: String,
    },

    /// The credential could not produce a bearer token.
    #[error("could not get a bearer token for {scope}")]
    Credential {
        scope: String,
        #[source]
        source: azure_core::Error,
    },

    /// Blob storage answered with an error.
    #[error("blob storage returned HTTP {status} ({code}) for {method} {resource}: {message}")]
    Blob {
        method: String,
        resource: String,
        status: u16,
        code: String,
        message: String,
    },

    /// A response body did not have the shape the contract promises.
    #[error("unexpected response from {context}: {reason}")]
    Decode { context: String, reason: String },

    /// An endpoint that must not receive credentials: not https (and not loopback), or not in
    /// the operator's allow-list. Only the origin is shown.
    #[error("refusing to send credentials to {what} {url}: {reason}")]
    UntrustedEndpoint {
        what: String,
        url: String,
        reason: String,
    },

    /// A long-running-operation URL pointed at a host other than the ARM endpoint; following it
    /// would send our bearer token elsewhere.
    #[error("refusing to poll {url}: host differs from ARM endpoint {arm_host}")]
    ForeignPollUrl { url: String, arm_host: String },
}

impl Error {
    /// Short, stable label for metrics and events.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Url { .. } | Error::InvalidInput(_) => "invalid_input",
            Error::ClientSetup(_) | Error::Io { .. } => "setup",
            Error::Transport { .. } => "transport",
            Error::Arm(_) => "arm",
            Error::Token { .. } | Error::Credential { .. } => "token",
            Error::Blob { .. } => "blob",
            Error::Decode { .. } => "decode",
            Error::ForeignPollUrl { .. } => "foreign_poll_url",
            Error::UntrustedEndpoint { .. } => "untrusted_endpoint",
        }
    }

    /// Worth retrying later without a spec change (a controller requeues with backoff).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Credential { .. } => true,
            Error::Arm(e) => e.is_retryable(),
            Error::Token { status, .. } | Error::Blob { status, .. } => {
                *status == 429 || *status == 408 || *status >= 500
            }
            _ => false,
        }
    }

    /// The server's `Retry-After`, when it gave one.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.as_arm().and_then(|e| e.retry_after)
    }

    /// The ARM error, when this is one.
    pub fn as_arm(&self) -> Option<&ArmError> {
        match self {
            Error::Arm(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn decode(context: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Decode {
            context: context.into(),
            reason: reason.to_string(),
        }
    }
}

/// Bad input unless `v` has non-whitespace content.
pub(crate) fn require_non_empty(what: &str, v: &str) -> Result<()> {
    if v.trim().is_empty() {
        return Err(Error::InvalidInput(format!("{what} must not be empty")));
    }
    Ok(())
}

/// Bad input unless `v` can be one segment of an ARM id (`.` and `..` would move the request
/// to another scope once the URL is normalised).
pub(crate) fn require_segment(what: &str, v: &str) -> Result<()> {
    if matches!(v, "" | "." | "..") || v.contains(['/', '\\', '?', '#']) {
        return Err(Error::InvalidInput(format!(
            "{what} {v:?} must be non-empty, not '.' or '..', and contain no '/', '\\', '?' or '#'"
        )));
    }
    Ok(())
}

pub(crate) fn parse_url(s: &str) -> Result<url::Url> {
    url::Url::parse(s).map_err(|source| Error::Url {
        url: s.to_string(),
        source,
    })
}

/// Crate-wide result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_classification() {
        let arm = |status: u16| {
            Error::from(Box::new(ArmError::from_response(
                http::StatusCode::from_u16(status).unwrap(),
                &http::HeaderMap::new(),
                b"{}",
            )))
        };
        assert!(arm(503).is_transient());
        assert!(arm(429).is_transient());
        assert!(!arm(400).is_transient());
        assert!(!Error::InvalidInput("x".into()).is_transient());
        assert!(
            Error::Blob {
                method: "GET".into(),
                resource: "/".into(),
                status: 503,
                code: "ServerBusy".into(),
                message: String::new()
            }
            .is_transient()
        );
        assert_eq!(arm(404).metric_label(), "arm");
        assert_eq!(arm(404).retry_after(), None);
    }
}
