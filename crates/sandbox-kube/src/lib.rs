//! An in-process Kubernetes API server for development and tests: discovery, CRDs,
//! CRUD with real object semantics, patches (merge, JSON, strategic, server-side apply),
//! finalizers, owner-reference GC and watches. Not part of the operator.
//! Deviations from the real API server are listed in the crate README.

mod api_error;
mod apply;
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

pub use cli::{KubeApiArgs, run};
pub use error::{Error, Result};
pub use server::{Options, SandboxKube};
