//! Output datastores opened once per workspace, datastore and credentials version, for every
//! run verified with them. Opening one is a datastore GET and a `listSecrets` POST, which ARM
//! counts against the subscription's *write* budget — the same budget the job submissions
//! need, so one per finished run competes with every run still to submit. The key holds the
//! credentials Secret's namespace, name and resource version: only runs acting with those
//! very credentials share what they would each have read themselves, and a new version of
//! the Secret reads again. Entries expire (a rotated storage key or a SAS that ends is read
//! anew) and a verification that fails forgets its workspace's entries.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use edgetrain_azure::{blob::BlobClient, ml::MlApi};

use crate::{Error, Result};

/// How long an opened datastore is reused.
pub const MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// Entries kept at most (a few per workspace); past it, expired ones go first, then all.
const MAX_OPEN: usize = 256;

/// Who opens the datastores: the credentials (Secret `namespace/name` at `version`) and the
/// workspace (ARM endpoint and id). Together, the key prefix of its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opener {
    pub credentials: String,
    pub workspace: String,
}

impl Opener {
    fn key(&self, datastore: &str) -> String {
        format!("{}|{}|{datastore}", self.credentials, self.workspace)
    }

    fn prefix(&self) -> String {
        format!("{}|{}|", self.credentials, self.workspace)
    }
}

struct Opened {
    at: Instant,
    client: BlobClient,
    container: String,
}

/// Opened output datastores (see the module).
#[derive(Default)]
pub struct Datastores {
    open: Mutex<HashMap<String, Opened>>,
}

impl Datastores {
    /// The blob client and container of `datastore`, opened by `opener` less than
    /// [`MAX_AGE`] ago, else opened now.
    pub async fn open(
        &self,
        opener: &Opener,
        ml: &dyn MlApi,
        http: reqwest::Client,
        datastore: &str,
    ) -> Result<(BlobClient, String)> {
        let key = opener.key(datastore);
        if let Some(opened) = self.cached(&key) {
            return Ok(opened);
        }
        let (client, container) = edgetrain_azure::ml::open_datastore(ml, http, datastore)
            .await
            .map_err(|e| Error::azure(format!("opening datastore {datastore}"), e))?;
        self.remember(key, &client, &container, Instant::now());
        Ok((client, container))
    }

    fn cached(&self, key: &str) -> Option<(BlobClient, String)> {
        self.open
            .lock()
            .expect("lock")
            .get(key)
            .filter(|o| o.at.elapsed() < MAX_AGE)
            .map(|o| (o.client.clone(), o.container.clone()))
    }

    fn remember(&self, key: String, client: &BlobClient, container: &str, at: Instant) {
        let mut open = self.open.lock().expect("lock");
        if open.len() >= MAX_OPEN {
            open.retain(|_, o| o.at.elapsed() < MAX_AGE);
            if open.len() >= MAX_OPEN {
                open.clear();
            }
        }
        open.insert(
            key,
            Opened {
                at,
                client: client.clone(),
                container: container.to_owned(),
            },
        );
    }

    /// Forgets what `opener` opened (its verification failed: a key may have changed).
    pub fn forget(&self, opener: &Opener) {
        let prefix = opener.prefix();
        self.open
            .lock()
            .expect("lock")
            .retain(|k, _| !k.starts_with(&prefix));
    }
}

#[cfg(test)]
mod tests {
    use edgetrain_azure::blob::{AccountKey, BlobAuth, BlobEndpoint};

    use super::*;

    // Azurite's well-known development key.
    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn client() -> BlobClient {
        edgetrain_azure::transport::install_crypto_provider();
        BlobClient::new(
            reqwest::Client::new(),
            BlobEndpoint::parse("https://acct.blob.core.windows.net").unwrap(),
            BlobAuth::SharedKey(AccountKey::from_base64(KEY).unwrap()),
        )
    }

    fn opener(credentials: &str, workspace: &str) -> Opener {
        Opener {
            credentials: credentials.into(),
            workspace: workspace.into(),
        }
    }

    #[test]
    fn only_the_same_credentials_version_and_workspace_reuse_an_opened_datastore() {
        let stores = Datastores::default();
        let a = opener("ns/azure-ml@7", "https://arm|/ws1");
        stores.remember(a.key("blobstore"), &client(), "c1", Instant::now());
        assert_eq!(stores.cached(&a.key("blobstore")).unwrap().1, "c1");
        for other in [
            opener("ns/azure-ml@8", "https://arm|/ws1"),
            opener("other/azure-ml@7", "https://arm|/ws1"),
            opener("ns/azure-ml@7", "https://arm|/ws2"),
        ] {
            assert!(
                stores.cached(&other.key("blobstore")).is_none(),
                "{other:?}"
            );
        }
        assert!(stores.cached(&a.key("other-store")).is_none());
        // A failed verification forgets the opener's entries, not others'.
        let b = opener("ns/azure-ml@7", "https://arm|/ws2");
        stores.remember(b.key("blobstore"), &client(), "c2", Instant::now());
        stores.forget(&a);
        assert!(stores.cached(&a.key("blobstore")).is_none());
        assert_eq!(stores.cached(&b.key("blobstore")).unwrap().1, "c2");
    }

    #[test]
    fn an_entry_expires_and_the_map_stays_bounded() {
        let stores = Datastores::default();
        let a = opener("ns/s@1", "ws");
        let old = Instant::now()
            .checked_sub(MAX_AGE)
            .expect("the monotonic clock runs longer than MAX_AGE");
        stores.remember(a.key("expired"), &client(), "c", old);
        assert!(stores.cached(&a.key("expired")).is_none());
        for i in 0..(MAX_OPEN * 2) {
            stores.remember(a.key(&format!("d{i}")), &client(), "c", Instant::now());
        }
        assert!(stores.open.lock().unwrap().len() <= MAX_OPEN);
        assert!(
            stores
                .cached(&a.key(&format!("d{}", MAX_OPEN * 2 - 1)))
                .is_some()
        );
    }
}
