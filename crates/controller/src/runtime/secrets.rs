//! Reading referenced Secrets. Their metadata comes from the watch cache; their data is read
//! with one GET per Secret version (cached by `resourceVersion`, so a rotated Secret is read
//! again at once and an unchanged one is not read on every reconcile).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use azure_core::credentials::Secret as SecretString;
use edgetrain_azure::identity::ServicePrincipal;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use sha2::{Digest, Sha256};

use super::stores::Stores;
use crate::{Error, Result};

/// A service principal read from a Secret with keys `tenantId`, `clientId`, `clientSecret`.
/// `Debug` hides the secret.
#[derive(Clone)]
pub struct Credentials {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .finish()
    }
}

impl Credentials {
    /// Reads a service principal from a Secret's data.
    pub fn from_secret(secret: &Secret) -> Result<Self> {
        Ok(Self {
            tenant: secret_value(secret, "tenantId")?,
            client_id: secret_value(secret, "clientId")?,
            client_secret: SecretString::new(secret_value(secret, "clientSecret")?),
        })
    }

    pub fn principal(&self) -> ServicePrincipal {
        ServicePrincipal {
            tenant: self.tenant.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
        }
    }

    /// Identifies the credential (incl. a digest of the secret, so rotation gives a new key)
    /// without holding the secret itself.
    pub fn cache_key(&self, endpoint: &str, profile: &str) -> String {
        let digest = Sha256::digest(self.client_secret.secret().as_bytes());
        format!(
            "{endpoint}|{profile}|{}|{}|{:x}",
            self.tenant, self.client_id, digest
        )
    }
}

/// How the operator authenticates to Azure ML (public Azure) for one object.
#[derive(Clone, Debug)]
pub enum MlIdentity {
    /// A service principal with a client secret.
    ServicePrincipal(Credentials),
    /// Workload identity: the operator's projected service-account token exchanged for a token
    /// of `client_id` (whose federated credential must trust the operator's service account).
    Workload { tenant: String, client_id: String },
}

impl MlIdentity {
    /// From a Secret: with `clientSecret` a service principal; with only `tenantId` and
    /// `clientId`, workload identity (as Azure Service Operator reads such a Secret).
    pub fn from_secret(secret: &Secret) -> Result<Self> {
        let has_secret = secret
            .data
            .as_ref()
            .is_some_and(|d| d.contains_key("clientSecret"));
        if has_secret {
            return Credentials::from_secret(secret).map(Self::ServicePrincipal);
        }
        Ok(Self::Workload {
            tenant: secret_value(secret, "tenantId")?,
            client_id: secret_value(secret, "clientId")?,
        })
    }

    /// Identifies the identity (a digest of a client secret, never the secret itself).
    pub fn cache_key(&self, endpoint: &str) -> String {
        match self {
            Self::ServicePrincipal(c) => c.cache_key(endpoint, "ml"),
            Self::Workload { tenant, client_id } => {
                format!("{endpoint}|ml-workload|{tenant}|{client_id}")
            }
        }
    }
}

/// The trimmed, non-empty UTF-8 value of `key`.
pub fn secret_value(secret: &Secret, key: &str) -> Result<String> {
    let invalid = |reason: String| Error::SecretInvalid {
        namespace: secret.namespace().unwrap_or_default(),
        name: secret.name_any(),
        reason,
    };
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| invalid(format!("key {key:?} is missing")))?;
    let text = String::from_utf8(bytes.0.clone())
        .map_err(|_| invalid(format!("key {key:?} is not UTF-8")))?;
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(invalid(format!("key {key:?} is empty")));
    }
    Ok(text)
}

/// Referenced Secrets, read once per `resourceVersion`.
#[derive(Default)]
pub struct SecretReader {
    cache: Mutex<HashMap<(String, String), Arc<Secret>>>,
}

impl SecretReader {
    /// The Secret `ns/name`, or `None` when it does not exist. Served from the cache when the
    /// watch cache shows the version already read; read from the API otherwise.
    pub async fn get(
        &self,
        client: &Client,
        stores: &Stores,
        ns: &str,
        name: &str,
    ) -> Result<Option<Arc<Secret>>> {
        let key = (ns.to_string(), name.to_string());
        let watched = stores.secret_version(ns, name);
        if let Some(watched) = &watched {
            let cached = self.cache.lock().expect("lock").get(&key).cloned();
            if let Some(s) = cached
                && s.metadata.resource_version.as_ref() == Some(watched)
            {
                return Ok(Some(s));
            }
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let secret = api
            .get_opt(name)
            .await
            .map_err(|e| Error::kube(format!("reading Secret {ns}/{name}"), e))?;
        let mut cache = self.cache.lock().expect("lock");
        Ok(match secret {
            Some(s) => {
                let s = Arc::new(s);
                cache.insert(key, s.clone());
                Some(s)
            }
            None => {
                cache.remove(&key);
                None
            }
        })
    }

    /// Like [`Self::get`], but a missing Secret is `SecretNotFound`.
    pub async fn require(
        &self,
        client: &Client,
        stores: &Stores,
        ns: &str,
        name: &str,
    ) -> Result<Arc<Secret>> {
        self.get(client, stores, ns, name)
            .await?
            .ok_or_else(|| Error::SecretNotFound {
                namespace: ns.to_string(),
                name: name.to_string(),
            })
    }

    /// Drops a cached Secret (after the controller itself changed it).
    pub fn forget(&self, ns: &str, name: &str) {
        self.cache
            .lock()
            .expect("lock")
            .remove(&(ns.to_string(), name.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(data: &[(&str, &[u8])]) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("sp".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn credentials_need_every_key_non_empty_utf8() {
        let ok = secret(&[
            ("tenantId", b"t"),
            ("clientId", b" c\n"),
            ("clientSecret", b"s"),
        ]);
        let c = Credentials::from_secret(&ok).unwrap();
        assert_eq!(c.client_id, "c");
        for (bad, why) in [
            (secret(&[("tenantId", b"t"), ("clientId", b"c")]), "missing"),
            (
                secret(&[
                    ("tenantId", b"t"),
                    ("clientId", b" "),
                    ("clientSecret", b"s"),
                ]),
                "empty",
            ),
            (
                secret(&[
                    ("tenantId", &[0xff]),
                    ("clientId", b"c"),
                    ("clientSecret", b"s"),
                ]),
                "UTF-8",
            ),
        ] {
            let e = Credentials::from_secret(&bad).unwrap_err();
            assert!(matches!(e, Error::SecretInvalid { .. }), "{e}");
            assert!(e.to_string().contains(why), "{e}");
            assert!(e.to_string().contains("ns/sp"), "{e}");
        }
    }

    #[test]
    fn a_secret_without_client_secret_selects_workload_identity() {
        let sp = secret(&[
            ("tenantId", b"t"),
            ("clientId", b"c"),
            ("clientSecret", b"s"),
        ]);
        assert!(matches!(
            MlIdentity::from_secret(&sp).unwrap(),
            MlIdentity::ServicePrincipal(_)
        ));
        let wi = secret(&[("tenantId", b"t"), ("clientId", b"app")]);
        match MlIdentity::from_secret(&wi).unwrap() {
            MlIdentity::Workload { tenant, client_id } => {
                assert_eq!((tenant.as_str(), client_id.as_str()), ("t", "app"));
            }
            other => panic!("{other:?}"),
        }
        // An empty clientSecret is a malformed service principal, not workload identity.
        let empty = secret(&[
            ("tenantId", b"t"),
            ("clientId", b"c"),
            ("clientSecret", b""),
        ]);
        assert!(matches!(
            MlIdentity::from_secret(&empty).unwrap_err(),
            Error::SecretInvalid { .. }
        ));
        assert!(MlIdentity::from_secret(&secret(&[("tenantId", b"t")])).is_err());
    }

    #[test]
    fn debug_hides_the_client_secret() {
        let c = Credentials {
            tenant: "t".into(),
            client_id: "c".into(),
            client_secret: SecretString::new("hunter2"),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
