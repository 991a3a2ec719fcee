//! The EdgeComputeTarget controller: pure `desired`/`decide`, thin `observe`/`apply`, and the
//! finalizer-first `reconcile`.

pub mod apply;
pub mod attach;
pub mod decide;
pub mod desired;
pub mod observe;
pub mod reconcile;
pub mod rotation;

#[cfg(test)]
mod tests;
