//! Azure ML (public ARM, api-version 2025-12-01): computes, code/environment/model versions,
//! Command jobs and datastores, behind the [`MlApi`] trait.

mod build;
mod client;
mod code;
mod mlflow;
mod outputs;
mod types;
mod workspace;

pub use build::*;
pub use client::{Job, MlApi, MlClient};
pub use code::{upload_code, upload_prefix};
pub use mlflow::{
    MlflowApi, MlflowClient, MlflowMetric, MlflowRun, MlflowRunData, MlflowRunInfo, tracking_base,
};
pub use outputs::{OutputFile, open_datastore, output_files, parse_datastore_uri};
pub use types::*;
pub use workspace::Workspace;
