//! Azure ML (public ARM, api-version 2025-12-01): computes, code/environment/model versions,
//! Command jobs and datastores, behind the [`MlApi`] trait.

mod build;
mod client;
mod code;
mod types;
mod workspace;

pub use build::*;
pub use client::{Job, MlApi, MlClient};
pub use code::{upload_code, upload_prefix};
pub use types::*;
pub use workspace::{Workspace, WorkspaceResource};
