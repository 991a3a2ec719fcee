//! What every request handler shares.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use tokio::sync::watch;

use crate::{
    auth::TokenAuthority, azurite::Azurite, config::Config, faults::FaultEngine, secret::Secret,
    specs::Specs, state::State,
};

/// Azurite plus the default datastore's account.
#[derive(Debug)]
pub struct Storage {
    pub azurite: Azurite,
    pub datastore_account: String,
    pub datastore_key: Secret,
    pub datastore_container: String,
}

#[derive(Debug)]
pub struct Shared {
    pub specs: Specs,
    pub config: Config,
    pub base_url: String,
    pub state: Mutex<State>,
    pub tokens: Mutex<TokenAuthority>,
    pub faults: Mutex<FaultEngine>,
    pub storage: Option<Storage>,
    pub http: reqwest::Client,
    /// ACR token service state, when the sandbox registry is enabled.
    pub acr: Option<crate::acr::Acr>,
    /// Cancel signals of running jobs, by job id key.
    pub job_cancel: Mutex<HashMap<String, watch::Sender<bool>>>,
}

/// Lock a mutex, recovering from poisoning (a panicked handler must not wedge the simulator).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Login endpoint the metadata document reports (AD FS adds `/adfs/`).
    pub fn login_endpoint(&self) -> String {
        match self.config.identity {
            crate::config::IdentitySystem::Aad => format!("{}/", self.base_url),
            crate::config::IdentitySystem::Adfs => format!("{}/adfs/", self.base_url),
        }
    }
}
