//! One watch per kind (and one metadata-only watch on Secrets) per watched scope, shared by
//! every controller: the reflector stores answer "which TrainingRuns use this target" from
//! memory, and the controllers subscribe to the same streams instead of opening their own.

use std::{
    collections::HashMap,
    fmt::Debug,
    hash::{BuildHasher, Hash, RandomState},
    sync::Arc,
};

use edgetrain_api::{EdgeComputeTarget, ModelRelease, TrainingRun};
use futures::{Stream, StreamExt, future::BoxFuture};
use k8s_openapi::{NamespaceResourceScope, api::core::v1::Secret};
use kube::{
    Api, Client, Resource,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{self, ReflectHandle, Store, store::Writer},
        watcher,
    },
};
use serde::de::DeserializeOwned;

/// How many events a slow subscriber may lag behind before the watch waits for it.
const BUFFER: usize = 1024;

/// Read access to the watch caches of one scope.
#[derive(Clone)]
pub struct Stores {
    pub edge_compute_targets: Store<EdgeComputeTarget>,
    pub training_runs: Store<TrainingRun>,
    pub model_releases: Store<ModelRelease>,
    /// Secrets' metadata only (never their data).
    pub secrets: Store<PartialObjectMeta<Secret>>,
}

impl Stores {
    /// The `resourceVersion` of Secret `ns/name` as last seen by the watch; `None` when the
    /// Secret does not exist.
    pub fn secret_version(&self, ns: &str, name: &str) -> Option<String> {
        self.secrets
            .get(&reflector::ObjectRef::new(name).within(ns))
            .and_then(|s| s.metadata.resource_version.clone())
    }

    /// Objects of a store in namespace `ns` matching `f`.
    pub fn select<K, F>(store: &Store<K>, ns: &str, f: F) -> Vec<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
        F: Fn(&K) -> bool,
    {
        store
            .state()
            .into_iter()
            .filter(|o| o.meta().namespace.as_deref() == Some(ns) && f(o))
            .collect()
    }

    /// Waits until every store has its initial list.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.edge_compute_targets.wait_until_ready().await?;
        self.training_runs.wait_until_ready().await?;
        self.model_releases.wait_until_ready().await?;
        self.secrets.wait_until_ready().await
    }
}

/// A watch not yet started: controllers subscribe first, then [`Wiring::start`] runs it.
pub struct Shared<K: Resource<DynamicType = ()> + Clone + 'static> {
    writer: Writer<K>,
    store: Store<K>,
}

impl<K> Shared<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn new() -> Self {
        let (store, writer) = reflector::store_shared(BUFFER);
        Self { writer, store }
    }

    /// A stream of every object that changed, from the shared watch.
    pub fn subscribe(&self) -> ReflectHandle<K> {
        self.writer
            .subscribe()
            .expect("a shared store always has a dispatcher")
    }

    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }
}

/// The shared watches of one scope (a namespace, or the whole cluster).
pub struct Wiring {
    pub edge_compute_targets: Shared<EdgeComputeTarget>,
    pub training_runs: Shared<TrainingRun>,
    pub model_releases: Shared<ModelRelease>,
    pub secrets: Shared<PartialObjectMeta<Secret>>,
}

impl Default for Wiring {
    fn default() -> Self {
        Self {
            edge_compute_targets: Shared::new(),
            training_runs: Shared::new(),
            model_releases: Shared::new(),
            secrets: Shared::new(),
        }
    }
}

fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn drive<S, T>(name: &'static str, stream: S) -> BoxFuture<'static, ()>
where
    S: Stream<Item = watcher::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    Box::pin(stream.for_each(move |r| async move {
        if let Err(e) = r {
            tracing::warn!(watch = name, error = %e, "watch failed; retrying");
        }
    }))
}

impl Wiring {
    pub fn stores(&self) -> Stores {
        Stores {
            edge_compute_targets: self.edge_compute_targets.store(),
            training_runs: self.training_runs.store(),
            model_releases: self.model_releases.store(),
            secrets: self.secrets.store(),
        }
    }

    /// The watches of `ns` (all namespaces when `None`), to be polled for as long as the
    /// controllers run. Subscribe before calling this.
    pub fn start(
        self,
        client: &Client,
        ns: Option<&str>,
    ) -> impl Future<Output = ()> + Send + use<> {
        let wc = watcher::Config::default();
        let watches = vec![
            drive(
                "EdgeComputeTarget",
                watcher(api::<EdgeComputeTarget>(client, ns), wc.clone())
                    .default_backoff()
                    .modify(strip_managed_fields)
                    .reflect_shared(self.edge_compute_targets.writer),
            ),
            drive(
                "TrainingRun",
                watcher(api::<TrainingRun>(client, ns), wc.clone())
                    .default_backoff()
                    .modify(strip_managed_fields)
                    .reflect_shared(self.training_runs.writer),
            ),
            drive(
                "ModelRelease",
                watcher(api::<ModelRelease>(client, ns), wc.clone())
                    .default_backoff()
                    .modify(strip_managed_fields)
                    .reflect_shared(self.model_releases.writer),
            ),
            drive(
                "Secret",
                watcher(api::<PartialObjectMeta<Secret>>(client, ns), wc)
                    .default_backoff()
                    .modify(strip_managed_fields)
                    .reflect_shared(self.secrets.writer),
            ),
        ];
        async move {
            futures::future::join_all(watches).await;
        }
    }
}

/// The cache never needs `managedFields` (status is written by server-side apply, which the
/// API server resolves): dropping them keeps each cached object a fraction of its size.
fn strip_managed_fields<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// Passes an object on only when `key(obj)` differs from the last value seen for it, e.g. to
/// ignore status-only updates (the controller's own status writes) on a primary stream.
///
/// Remembers 16 bytes per object (a hash of its namespace/name, a hash of its uid and key),
/// not its name: this map has an entry for every cached object. Hashes are keyed per process,
/// so names cannot be chosen to collide; a collision of names costs one extra reconcile, and
/// only a further collision of the hashed keys (1 in 2^64) could hide a change.
pub fn changed_only<K, S, F, V>(stream: S, key: F) -> impl Stream<Item = Arc<K>> + Send
where
    K: Resource + Send + Sync + 'static,
    S: Stream<Item = Arc<K>> + Send,
    F: Fn(&K) -> V + Send + 'static,
    V: Hash,
{
    let hasher = RandomState::new();
    let mut seen: HashMap<u64, u64> = HashMap::new();
    stream.filter_map(move |obj| {
        let m = obj.meta();
        let id = hasher.hash_one((m.namespace.as_deref(), m.name.as_deref()));
        let h = hasher.hash_one((m.uid.as_deref(), key(&obj)));
        let fresh = seen.insert(id, h) != Some(h);
        futures::future::ready(fresh.then_some(obj))
    })
}

/// What a reconcile of a primary object depends on in its own metadata: spec (generation),
/// annotations (reconcile policy), finalizers (the finalizer helper's first step) and deletion.
pub fn spec_or_metadata<K: Resource>(obj: &K) -> impl Hash + use<K> {
    let m = obj.meta();
    (
        m.generation,
        m.annotations.clone(),
        m.finalizers.clone(),
        m.deletion_timestamp.as_ref().map(|t| t.0.as_second()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;

    fn cm(name: &str, generation: i64, rv: &str) -> Arc<k8s_openapi::api::core::v1::ConfigMap> {
        Arc::new(k8s_openapi::api::core::v1::ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                generation: Some(generation),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn a_watch_nobody_subscribed_to_never_blocks() {
        // ModelReleases are watched (for the stores) before their controller exists.
        let (store, writer) = reflector::store_shared::<k8s_openapi::api::core::v1::ConfigMap>(4);
        let events = (0..100).map(|i| {
            Ok(watcher::Event::Apply(
                (*cm(&format!("c{i}"), 1, "1")).clone(),
            ))
        });
        let reflected = reflector::reflector(writer, futures::stream::iter(events)).count();
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), reflected)
            .await
            .expect("the writer must not wait for a subscriber");
        assert_eq!(n, 100);
        assert_eq!(store.state().len(), 100);
    }

    #[tokio::test]
    async fn only_changes_of_the_key_pass() {
        let input = futures::stream::iter(vec![
            cm("a", 1, "1"),
            // A status write: new resourceVersion, same generation.
            cm("a", 1, "2"),
            cm("b", 1, "3"),
            cm("a", 2, "4"),
            cm("a", 2, "5"),
        ]);
        let out: Vec<_> = changed_only(input, spec_or_metadata)
            .map(|o| (o.name_any(), o.metadata.resource_version.clone().unwrap()))
            .collect()
            .await;
        assert_eq!(
            out,
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".into(), "3".into()),
                ("a".into(), "4".into())
            ]
        );
    }
}
