//! Types shared by the three resources.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::{Error, Result};

// Patterns of ids that end up in request paths (ARM or Kubernetes). ASCII classes only: `\w`
// matches non-ASCII letters in Rust's regex (the sandbox API server's) but not in Go's (a real
// one), and a pattern must mean the same everywhere.

/// An Azure subscription id (a GUID).
pub const SUBSCRIPTION_ID_PATTERN: &str =
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// An ARM resource group name: 1 to 90 letters, digits, `_`, `-`, `.`, `(`, `)`, not ending
/// in `.` (which also rules out `.` and `..`, path segments that would leave the group).
pub const RESOURCE_GROUP_PATTERN: &str = r"^[-A-Za-z0-9_.()]{0,89}[-A-Za-z0-9_()]$";

/// A Kubernetes object name (DNS subdomain, RFC 1123): never `.` or `..`.
pub const OBJECT_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A reference to a Secret in the same namespace as the resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret, in the resource's namespace. The operator watches it, so a rotated
    /// credential is used without restarting anything.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
}

/// A reference to another object of a known kind in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Name of the object, in the same namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = OBJECT_NAME_PATTERN))]
    pub name: String,
}

/// What happens to the remote resources when the Kubernetes resource is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum DeletionPolicy {
    /// Leave everything in Azure as it is; only the Kubernetes object goes away.
    #[default]
    Retain,
    /// Delete (or detach) what the operator created, and wait until Azure confirms it is gone.
    Delete,
}

/// Annotation that pauses or limits what the operator does to a resource.
pub const RECONCILE_POLICY_ANNOTATION: &str = "edgetrain.dev/reconcile-policy";

/// How far the operator may act on one resource, from [`RECONCILE_POLICY_ANNOTATION`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReconcilePolicy {
    /// Create, update and delete remote resources to match the spec.
    #[default]
    Manage,
    /// Read-only adoption: fill status from what exists, never write to Azure.
    Observe,
    /// Paused: no reads, no writes. Deletion is still honoured.
    Skip,
}

impl ReconcilePolicy {
    /// Reads the policy from an object's annotations; absent means `manage`.
    pub fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> Result<Self> {
        match annotations.and_then(|a| a.get(RECONCILE_POLICY_ANNOTATION)) {
            None => Ok(Self::Manage),
            Some(v) => match v.as_str() {
                "manage" => Ok(Self::Manage),
                "observe" => Ok(Self::Observe),
                "skip" => Ok(Self::Skip),
                _ => Err(Error::InvalidReconcilePolicy {
                    annotation: RECONCILE_POLICY_ANNOTATION,
                    value: v.clone(),
                }),
            },
        }
    }
}

/// A reference to a long-running Azure operation, kept in status so that the next reconcile
/// (possibly by another replica, after a restart) resumes polling instead of starting it again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingOperation {
    /// Which remote resource the operation acts on (ARM resource id).
    pub resource_id: String,
    /// What was asked: e.g. `create`, `update`, `delete`, `start`, `deallocate`, `attach`.
    pub action: String,
    /// The operation's poller, serialised by the Azure client (monitor URL and how to read it).
    /// It holds no secrets: ARM monitor URLs are authorised by the bearer token, not the URL.
    pub poller: String,
    /// When the operation was started.
    pub started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(v: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(RECONCILE_POLICY_ANNOTATION.to_string(), v.to_string())])
    }

    #[test]
    fn reconcile_policy_defaults_to_manage() {
        assert_eq!(
            ReconcilePolicy::from_annotations(None).unwrap(),
            ReconcilePolicy::Manage
        );
        let other = BTreeMap::from([("a".to_string(), "b".to_string())]);
        assert_eq!(
            ReconcilePolicy::from_annotations(Some(&other)).unwrap(),
            ReconcilePolicy::Manage
        );
    }

    #[test]
    fn reconcile_policy_parses_each_value() {
        for (text, want) in [
            ("manage", ReconcilePolicy::Manage),
            ("observe", ReconcilePolicy::Observe),
            ("skip", ReconcilePolicy::Skip),
        ] {
            assert_eq!(
                ReconcilePolicy::from_annotations(Some(&annotations(text))).unwrap(),
                want
            );
        }
    }

    #[test]
    fn reconcile_policy_rejects_unknown_values_with_the_annotation_name() {
        let err = ReconcilePolicy::from_annotations(Some(&annotations("Observe"))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(RECONCILE_POLICY_ANNOTATION), "{text}");
        assert!(text.contains("\"Observe\""), "{text}");
    }
}
