//! Hand-written schema fragments for fields whose derived schema would be too loose for the
//! API server to enforce what we mean.

use schemars::{Schema, SchemaGenerator, json_schema};

/// `metav1.Condition` list as a map keyed by `type`, so server-side apply merges conditions
/// per type instead of replacing the whole list.
pub fn conditions(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "description": "Current state, as standard Kubernetes conditions: Ready, Reconciling and Stalled (kstatus), plus the kind's own.",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["lastTransitionTime", "message", "reason", "status", "type"],
            "properties": {
                "lastTransitionTime": {
                    "type": "string", "format": "date-time",
                    "description": "When the condition last changed status, reason or message."
                },
                "message": {
                    "type": "string", "maxLength": 32768,
                    "description": "Human-readable detail."
                },
                "observedGeneration": {
                    "type": "integer", "format": "int64", "minimum": 0,
                    "description": "The metadata.generation the condition was computed for."
                },
                "reason": {
                    "type": "string", "minLength": 1, "maxLength": 1024,
                    "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
                    "description": "CamelCase reason for the last transition."
                },
                "status": {
                    "type": "string", "enum": ["True", "False", "Unknown"],
                    "description": "True, False or Unknown."
                },
                "type": {
                    "type": "string", "maxLength": 316,
                    "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
                    "description": "Condition type, e.g. Ready."
                }
            }
        }
    })
}

/// A Go-style duration (`90s`, `30m`, `1h30m`). `format: duration` makes CEL see a duration,
/// so rules can compare it with `duration('5m')`.
pub fn optional_duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "format": "duration",
        "pattern": "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
    })
}

/// A timestamp written by the operator.
pub fn optional_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "date-time" })
}
