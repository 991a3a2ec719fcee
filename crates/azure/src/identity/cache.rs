//! Token cache: one entry per (authority, tenant, client, secret digest, audience), refreshed
//! before expiry.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use azure_core::{credentials::AccessToken, time::OffsetDateTime};

use super::token::{SecretDigest, is_fresh};
use crate::Result;

/// Cache key: one token per (authority, tenant, client, secret digest, audience).
///
/// The digest is part of the key so that a token is only ever handed to the credential that
/// obtained it: another caller with the same ids but a different (wrong, changed or revoked)
/// secret misses the cache and has to convince the token endpoint itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub authority: String,
    pub tenant: String,
    pub client_id: String,
    pub secret: SecretDigest,
    pub audience: String,
}

type Slot = Arc<tokio::sync::Mutex<Option<AccessToken>>>;

/// Token cache shared by credentials. Each key has its own async lock, so concurrent callers
/// for one key wait for a single refresh instead of each asking the token endpoint.
#[derive(Debug)]
pub struct TokenCache {
    skew: Duration,
    slots: Mutex<HashMap<TokenKey, Slot>>,
}

impl TokenCache {
    /// `skew`: refresh this long before expiry.
    pub fn new(skew: Duration) -> Self {
        Self {
            skew,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, key: &TokenKey) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(key.clone()).or_default().clone()
    }

    /// Cached token for `key`, or the result of `fetch` (stored when it succeeds).
    pub async fn get_or_fetch<F, Fut>(&self, key: &TokenKey, fetch: F) -> Result<AccessToken>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<AccessToken>>,
    {
        let slot = self.slot(key);
        let mut guard = slot.lock().await;
        if let Some(t) = guard.as_ref()
            && is_fresh(t, OffsetDateTime::now_utc(), self.skew)
        {
            return Ok(t.clone());
        }
        let t = fetch().await?;
        *guard = Some(t.clone());
        Ok(t)
    }
}

impl Default for TokenCache {
    /// Five minutes of skew, as the Azure SDKs use.
    fn default() -> Self {
        Self::new(Duration::from_secs(300))
    }
}
