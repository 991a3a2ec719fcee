//! The crate's single error type, and how each error is handled: stall until a change, or
//! requeue with backoff.

use std::time::Duration;

/// Everything that can fail in the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A referenced Secret does not exist.
    #[error("Secret {namespace}/{name} not found")]
    SecretNotFound { namespace: String, name: String },

    /// A referenced Secret exists but lacks a key or holds non-UTF-8 data.
    #[error("Secret {namespace}/{name} is malformed: {reason}")]
    SecretInvalid {
        namespace: String,
        name: String,
        reason: String,
    },

    /// The spec cannot be acted on (bad duration, bad CIDR, annotation value...).
    #[error("invalid spec: {0}")]
    InvalidSpec(String),

    /// The requested VM size is not offered by the stamp.
    #[error("VM size {size} is not available: {message}")]
    SkuNotAvailable { size: String, message: String },

    /// The Azure ML workspace of the spec does not exist (Workspaces_Get answered 404).
    #[error("Azure ML workspace {workspace} not found in resource group {resource_group}")]
    WorkspaceNotFound {
        workspace: String,
        resource_group: String,
    },

    /// A long-running Azure operation ended in failure.
    #[error("Azure operation {action} on {resource_id} failed: {message}")]
    OperationFailed {
        action: String,
        resource_id: String,
        message: String,
    },

    /// An Azure call failed.
    #[error("Azure request failed during {context}")]
    Azure {
        context: String,
        #[source]
        source: Box<edgetrain_azure::Error>,
    },

    /// A Kubernetes API call failed.
    #[error("Kubernetes API request failed during {context}")]
    Kube {
        context: String,
        #[source]
        source: Box<kube::Error>,
    },

    /// Deletion is under way in Azure; the finalizer stays until every resource reads 404.
    #[error("waiting for Azure to confirm deletion of {0}")]
    CleanupPending(String),

    /// The finalizer helper failed (wraps apply/cleanup errors and finalizer patches).
    #[error(transparent)]
    Finalizer(#[from] Box<kube::runtime::finalizer::Error<Error>>),

    /// SSH key generation or encoding failed.
    #[error("SSH key handling failed: {0}")]
    SshKey(String),

    /// Startup: the CRD is not installed, or the metrics address cannot be bound.
    #[error("startup failed: {0}")]
    Startup(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the controller does after a failed reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Nothing will change until the spec or a watched Secret changes.
    AwaitChange,
    /// Try again after at least this long (server's Retry-After, or a backoff).
    Retry(Option<Duration>),
}

impl Error {
    pub fn azure(context: impl Into<String>, source: edgetrain_azure::Error) -> Self {
        Self::Azure {
            context: context.into(),
            source: Box::new(source),
        }
    }

    pub fn kube(context: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            context: context.into(),
            source: Box::new(source),
        }
    }

    /// Short, stable label for metrics (`edgetrain_reconcile_errors_total{reason=...}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::SecretNotFound { .. } => "secret_not_found",
            Error::SecretInvalid { .. } => "secret_invalid",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::SkuNotAvailable { .. } => "sku_not_available",
            Error::WorkspaceNotFound { .. } => "workspace_not_found",
            Error::OperationFailed { .. } => "operation_failed",
            Error::Azure { source, .. } => match source.metric_label() {
                "arm" => "azure_arm",
                "token" => "azure_token",
                "transport" => "azure_transport",
                _ => "azure_other",
            },
            Error::Kube { .. } => "kube",
            Error::CleanupPending(_) => "cleanup_pending",
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
            Error::SshKey(_) => "ssh_key",
            Error::Startup(_) => "startup",
        }
    }

    /// The error that actually happened, seen through the finalizer wrapper.
    pub fn inner(&self) -> &Error {
        match self {
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.inner(),
                _ => self,
            },
            other => other,
        }
    }

    /// Stalled errors wait for a change; the rest are retried.
    pub fn handling(&self) -> Handling {
        match self.inner() {
            Error::SecretNotFound { .. }
            | Error::SecretInvalid { .. }
            | Error::InvalidSpec(_)
            | Error::SkuNotAvailable { .. }
            | Error::WorkspaceNotFound { .. } => Handling::AwaitChange,
            Error::Azure { source, .. } if !source.is_transient() => {
                // A permanent ARM answer (4xx other than 408/429) will not change by itself; a
                // slow retry still picks up an Azure-side fix.
                Handling::Retry(Some(Duration::from_secs(300)))
            }
            Error::Azure { source, .. } => Handling::Retry(source.retry_after()),
            Error::CleanupPending(_) => Handling::Retry(Some(Duration::from_secs(2))),
            _ => Handling::Retry(None),
        }
    }

    /// True when the error is a user-facing "stalled" condition rather than a hiccup.
    pub fn is_stalled(&self) -> bool {
        self.handling() == Handling::AwaitChange
    }

    /// PascalCase reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        match self.inner() {
            Error::SecretNotFound { .. } => "SecretNotFound",
            Error::SecretInvalid { .. } => "SecretInvalid",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::SkuNotAvailable { .. } => "SkuNotAvailable",
            Error::WorkspaceNotFound { .. } => "WorkspaceNotFound",
            Error::OperationFailed { .. } => "AzureOperationFailed",
            Error::Azure { .. } => "AzureError",
            Error::Kube { .. } => "KubernetesError",
            Error::CleanupPending(_) => "DeletionInProgress",
            _ => "ReconcileError",
        }
    }
}

/// Exponential backoff with full jitter, for transient errors without a Retry-After.
/// `failures` counts consecutive failures of one object (1 for the first).
pub fn backoff(failures: u32, base: Duration, cap: Duration) -> Duration {
    let policy = edgetrain_azure::arm::RetryPolicy {
        base_delay: base,
        max_delay: cap,
        ..Default::default()
    };
    policy.jittered_backoff(failures, fastrand::f64())
}

/// The requeue delay for a retryable error: the server's Retry-After if it gave one (never
/// earlier), else the backoff.
pub fn retry_delay(retry_after: Option<Duration>, failures: u32) -> Duration {
    let b = backoff(failures, Duration::from_secs(1), Duration::from_secs(300));
    match retry_after {
        Some(ra) => ra.max(Duration::from_millis(100)),
        None => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_secret_waits_for_a_change() {
        let e = Error::SecretNotFound {
            namespace: "ns".into(),
            name: "sp".into(),
        };
        assert_eq!(e.handling(), Handling::AwaitChange);
        assert_eq!(e.metric_label(), "secret_not_found");
        assert!(e.to_string().contains("ns/sp"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cap = Duration::from_secs(10);
        for _ in 0..50 {
            let d1 = backoff(1, Duration::from_secs(1), cap);
            assert!(d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1));
            let d10 = backoff(10, Duration::from_secs(1), cap);
            assert!(d10 >= Duration::from_secs(5) && d10 <= cap, "{d10:?}");
        }
    }

    #[test]
    fn retry_after_wins_over_backoff() {
        assert_eq!(
            retry_delay(Some(Duration::from_secs(7)), 1),
            Duration::from_secs(7)
        );
        assert!(retry_delay(None, 1) <= Duration::from_secs(1));
    }
}
