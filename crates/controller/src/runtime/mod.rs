//! What every kind's controller shares, so that EdgeComputeTarget, TrainingRun and
//! ModelRelease are reconciled the same way and none re-implements it:
//!
//! - [`controller::run`]: one controller for a kind — a primary stream that ignores the
//!   controller's own status writes, the kind's secondary watches, the finalizer-first
//!   [`controller::reconcile`] wrapper (metrics, the stall gate, failures into status and
//!   Warning events) and [`controller::error_policy`] (backoff keyed by kind + namespace +
//!   name, Retry-After, wait for a change when stalled);
//! - [`status`]: the [`status::ObjectStatus`] trait (conditions, observedGeneration) every
//!   status type implements, typed condition values, and the server-side-apply status write;
//! - [`classify`]: which Azure failures are permanent (`Stalled`) and which are retried;
//! - [`operations`]: long-running Azure operations kept in status (record, resume, expire);
//! - [`secrets`]: referenced Secrets and service-principal credentials;
//! - [`spec`]: durations, the reconcile-policy annotation, the deletion policy;
//! - [`stores`]: shared watches and reflector stores of the three kinds and of Secrets'
//!   metadata, so neighbours are read from memory;
//! - [`factory`]: one client-factory trait per Azure service, with the real implementation;
//! - [`events`]: Kubernetes Events for an object.
//!
//! # How to add a kind
//! 1. Implement [`status::ObjectStatus`] for its status type (the `object_status!` list in
//!    `status.rs` already covers the three kinds).
//! 2. Create `src/<kind>/` with `desired.rs`, `decide.rs` (pure), `observe.rs`, `apply.rs`
//!    and a `mod.rs` that implements [`Reconciler`] for the CRD type: `primary` names its
//!    shared watch in [`stores::Wiring`], `watches` adds the triggers it needs (owned objects,
//!    referenced Secrets, neighbours — map them with the [`stores::Stores`], never a LIST),
//!    `referenced_secrets` lists the Secrets whose change lifts a stall, `apply` and
//!    `cleanup` do the work and return the requeue. Return errors from [`crate::Error`]:
//!    the wrapper writes `Stalled`/`Reconciling` with the error's reason, emits the Warning
//!    event, and keeps a stalled object away from Azure until its inputs change.
//! 3. Add `controller::run::<YourKind>(&wiring, ctx.clone())` next to the others in
//!    `lib.rs`, and its settings to [`crate::context::Settings`].

pub mod classify;
pub mod controller;
pub mod events;
pub mod factory;
pub mod failures;
pub mod operations;
pub mod secrets;
pub mod spec;
pub mod status;
pub mod stores;

pub use controller::Reconciler;
