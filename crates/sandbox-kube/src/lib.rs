//! An in-process Kubernetes API server for development and tests: discovery, CRDs,
//! CRUD with real object semantics, patches (merge, JSON, strategic, server-side apply),
//! finalizers, owner-reference GC and watches. Not part of the operator.
//! Deviations from the real API server are listed in the crate README.

mod api_error;
mod apply;
mod audit;
mod cli;
mod convert;
mod discovery;
mod error;
mod http;
mod kubeconfig;
mod openapi;
mod patch;
mod path;
mod protobuf;
mod resources;
mod schema;
mod selector;
mod server;
mod store;
mod table;
mod typed;
mod watch;
mod write;

pub use api_error::Cause;
pub use audit::AuditEvent;
pub use cli::{KubeApiArgs, run};
pub use error::{Error, Result};
pub use server::{Options, SandboxKube};

/// Admission of a custom resource against its CRD's openAPIV3Schema, exactly as the server
/// applies it: prune, default, validate the schema, then evaluate the CEL rules (with `old`
/// for transition rules). Lets other crates test their CRDs without starting a server.
pub fn admit_custom_resource(
    schema: &serde_json::Value,
    obj: &serde_json::Value,
    old: Option<&serde_json::Value>,
) -> std::result::Result<serde_json::Value, Vec<Cause>> {
    schema::admit(schema, obj, old).map(|(admitted, _pruned)| admitted)
}
