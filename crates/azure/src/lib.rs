//! Azure clients for edgetrain: identity (Azure AD / AD FS), ARM core, Stack Hub compute and
//! network, blob storage, and Azure ML. Every endpoint comes from configuration, so plain
//! `http://127.0.0.1:PORT` URLs work as well as the real clouds.

pub mod arm;
pub mod blob;
mod error;
pub mod identity;
pub mod ml;
pub mod stackhub;
pub mod transport;

pub use error::{Error, Result};
