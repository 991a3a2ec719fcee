//! The crate's single error type, and how each error is handled: stall until a change, or
//! requeue with backoff.

use std::time::Duration;

use crate::runtime::{
    classify::{self, Fault},
    status::Reason,
};

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

    /// The object cannot progress until its spec or a referenced object changes (a run that
    /// may not be released, a version conflict); `reason` is the condition reason.
    #[error("{message}")]
    Blocked {
        reason: &'static str,
        message: String,
    },

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

    /// An Azure call failed; the message carries Azure's code and message, or the network
    /// cause.
    #[error("{context} failed: {}", classify::describe(source))]
    Azure {
        context: String,
        #[source]
        source: Box<edgetrain_azure::Error>,
    },

    /// A container registry operation failed (the message names registry and repository,
    /// never a credential).
    #[error("{context} failed: {source}")]
    Registry {
        context: String,
        #[source]
        source: Box<edgetrain_registry::Error>,
    },

    /// A Kubernetes API call failed.
    #[error("Kubernetes API request failed during {context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: Box<kube::Error>,
    },

    /// Deletion is under way in Azure; the finalizer stays until every resource reads 404.
    /// `retry_after`: the running delete operation's `Retry-After`, when one was started.
    #[error("waiting for Azure to confirm deletion of {what}")]
    CleanupPending {
        what: String,
        retry_after: Option<Duration>,
    },

    /// The finalizer helper failed (wraps apply/cleanup errors and finalizer patches).
    #[error(transparent)]
    Finalizer(#[from] Box<kube::runtime::finalizer::Error<Error>>),

    /// A bounded wait ran out (an Azure read that got no complete answer in time); retried.
    #[error("{what} got no answer within {after:?}")]
    TimedOut { what: String, after: Duration },

    /// SSH key generation or encoding failed.
    #[error("SSH key handling failed: {0}")]
    SshKey(String),

    /// A fault of the operator itself (a value it wrote cannot be read back, a serialiser
    /// failed): never the user's spec.
    #[error("internal error: {0}")]
    Internal(String),

    /// Startup: a CRD is not installed, or the metrics address cannot be bound.
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
    /// Not a failure: something expected is under way (deletion); look again after this long.
    Poll(Duration),
}

/// How often a deletion in progress is looked at.
const CLEANUP_POLL: Duration = Duration::from_secs(2);

impl Error {
    /// Deletion under way without an operation to follow: looked at again after a short poll.
    pub fn cleanup_pending(what: impl Into<String>) -> Self {
        Self::CleanupPending {
            what: what.into(),
            retry_after: None,
        }
    }

    pub fn azure(context: impl Into<String>, source: edgetrain_azure::Error) -> Self {
        Self::Azure {
            context: context.into(),
            source: Box::new(source),
        }
    }

    pub fn registry(context: impl Into<String>, source: edgetrain_registry::Error) -> Self {
        Self::Registry {
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
        match self.inner() {
            Error::SecretNotFound { .. } => "secret_not_found",
            Error::SecretInvalid { .. } => "secret_invalid",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::SkuNotAvailable { .. } => "sku_not_available",
            Error::WorkspaceNotFound { .. } => "workspace_not_found",
            Error::Blocked { .. } => "blocked",
            Error::OperationFailed { .. } => "operation_failed",
            Error::Azure { source, .. } => match source.metric_label() {
                "arm" => "azure_arm",
                "token" => "azure_token",
                "transport" => "azure_transport",
                _ => "azure_other",
            },
            Error::Registry { .. } => "registry",
            Error::Kube { .. } => "kube",
            Error::CleanupPending { .. } => "cleanup_pending",
            Error::Finalizer(_) => "finalizer",
            Error::TimedOut { .. } => "timeout",
            Error::SshKey(_) => "ssh_key",
            Error::Internal(_) => "internal",
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
            | Error::WorkspaceNotFound { .. }
            | Error::Blocked { .. } => Handling::AwaitChange,
            Error::Azure { source, .. } => match classify::classify(source) {
                Fault::Permanent { .. } => Handling::AwaitChange,
                Fault::Transient { retry_after, .. } => Handling::Retry(retry_after),
            },
            Error::Registry { source, .. } if !source.is_transient() => Handling::AwaitChange,
            Error::CleanupPending { retry_after, .. } => {
                Handling::Poll(edgetrain_azure::arm::poll_delay(*retry_after, CLEANUP_POLL))
            }
            _ => Handling::Retry(None),
        }
    }

    /// True when the error is a user-facing "stalled" condition rather than a hiccup.
    pub fn is_stalled(&self) -> bool {
        self.handling() == Handling::AwaitChange
    }

    /// PascalCase reason for conditions and events.
    pub fn reason(&self) -> Reason {
        match self.inner() {
            Error::SecretNotFound { .. } => Reason::new("SecretNotFound"),
            Error::SecretInvalid { .. } => Reason::new("SecretInvalid"),
            Error::InvalidSpec(_) => Reason::new("InvalidSpec"),
            Error::SkuNotAvailable { .. } => Reason::new("SkuNotAvailable"),
            Error::WorkspaceNotFound { .. } => Reason::new("WorkspaceNotFound"),
            Error::Blocked { reason, .. } => Reason::new(reason),
            Error::OperationFailed { .. } => Reason::new("AzureOperationFailed"),
            Error::Azure { source, .. } => match classify::classify(source) {
                Fault::Permanent { reason } | Fault::Transient { reason, .. } => reason,
            },
            Error::Registry { source, .. } => Reason::new(match source.as_ref() {
                edgetrain_registry::Error::Unauthorized { .. }
                | edgetrain_registry::Error::TokenService { .. }
                | edgetrain_registry::Error::AzureAd { .. } => "RegistryUnauthorized",
                edgetrain_registry::Error::Denied { .. } => "RegistryPushDenied",
                edgetrain_registry::Error::NotFound { .. } => "RegistryNotFound",
                // The model files (the datastore), not the registry, could not be read.
                edgetrain_registry::Error::Read { .. } => "ModelFilesUnreadable",
                e if e.is_transient() => "RegistryUnavailable",
                _ => "RegistryRefused",
            }),
            Error::Kube { .. } => Reason::new("KubernetesError"),
            Error::CleanupPending { .. } => Reason::new("DeletionInProgress"),
            Error::Internal(_) => Reason::new("InternalError"),
            Error::TimedOut { .. } => Reason::new("AzureTimeout"),
            _ => Reason::new("ReconcileError"),
        }
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
    fn unreadable_model_files_are_retried_under_their_own_reason() {
        let e = Error::registry(
            "digesting the model",
            edgetrain_registry::Error::Read {
                source: std::io::Error::other("datastore blob c/model/w.onnx: HTTP 412"),
            },
        );
        assert_eq!(e.handling(), Handling::Retry(None));
        assert_eq!(e.reason(), "ModelFilesUnreadable");
        assert!(e.to_string().contains("model/w.onnx"), "{e}");
    }

    fn arm(status: u16, code: &str) -> edgetrain_azure::Error {
        edgetrain_azure::Error::Arm(Box::new(edgetrain_azure::arm::ArmError::from_response(
            http::StatusCode::from_u16(status).unwrap(),
            &http::HeaderMap::new(),
            format!(r#"{{"error":{{"code":"{code}","message":"the quota for cores is 8"}}}}"#)
                .as_bytes(),
        )))
    }

    #[test]
    fn azure_errors_show_their_source_and_are_classified() {
        let e = Error::azure("PUT VM /subscriptions/s/vm", arm(409, "QuotaExceeded"));
        let text = e.to_string();
        assert!(text.contains("PUT VM /subscriptions/s/vm"), "{text}");
        assert!(
            text.contains("QuotaExceeded: the quota for cores is 8"),
            "{text}"
        );
        assert_eq!(e.handling(), Handling::AwaitChange);
        assert_eq!(e.reason(), "QuotaExceeded");
        let busy = Error::azure("GET VM", arm(503, "ServiceUnavailable"));
        assert_eq!(busy.handling(), Handling::Retry(None));
        assert_eq!(busy.reason(), "AzureServerError");
    }

    #[test]
    fn deletion_in_progress_is_polled_not_counted_as_failure() {
        assert_eq!(
            Error::cleanup_pending("VM").handling(),
            Handling::Poll(CLEANUP_POLL)
        );
        // A running delete operation is looked at when its Retry-After says, however long.
        let after = Duration::from_secs(30);
        assert_eq!(
            Error::CleanupPending {
                what: "VM".into(),
                retry_after: Some(after)
            }
            .handling(),
            Handling::Poll(after)
        );
        assert!(matches!(
            Error::Internal("x".into()).handling(),
            Handling::Retry(None)
        ));
        assert_eq!(Error::Internal("x".into()).reason(), "InternalError");
    }
}
