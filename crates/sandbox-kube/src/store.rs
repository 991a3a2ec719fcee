//! In-memory object storage with one global resourceVersion and a bounded event history.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::{
    api_error::{ApiError, ApiResult},
    resources::{self, ResourceType},
    selector::{FieldSelector, LabelSelector, labels_of},
};

/// `(group, plural)`: storage is shared by every version of a resource.
pub type StorageKey = (String, String);
/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub type ObjectKey = (String, String);

/// One change, as watchers see it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub storage: StorageKey,
    pub namespace: String,
    pub type_: &'static str,
    pub object: Value,
    /// The object before a MODIFIED change, so selector watches can turn it into ADDED/DELETED.
    pub previous: Option<Value>,
}

/// Everything the server stores; guarded by one mutex so each write is atomic.
#[derive(Debug)]
pub struct State {
    pub(crate) rv: u64,
    pub(crate) types: Vec<ResourceType>,
    pub(crate) objects: BTreeMap<StorageKey, BTreeMap<ObjectKey, Value>>,
    history: VecDeque<Arc<Event>>,
    history_len: usize,
    /// Events at or below this resourceVersion may have been dropped from history.
    compacted: u64,
    pub(crate) tx: broadcast::Sender<Arc<Event>>,
}

/// Events to replay, then a receiver for live ones.
pub type WatchStart = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// A list query.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_after: Option<ObjectKey>,
}

/// A page of list results.
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: usize,
}

pub fn encode_continue(key: &ObjectKey) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!([key.0, key.1]).to_string())
}

pub fn decode_continue(token: &str) -> Option<ObjectKey> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let v: (String, String) = serde_json::from_slice(&raw).ok()?;
    Some(v)
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl State {
    pub fn new(history_len: usize) -> Self {
        let (tx, _) = broadcast::channel(8192);
        let mut s = Self {
            rv: 0,
            types: resources::builtins(),
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_len: history_len.max(1),
            compacted: 0,
            tx,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let ns_type = s
                .find_type("", "v1", "namespaces")
                .expect("namespaces is built in");
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            s.create(&ns_type, None, obj, &crate::write::WriteCtx::system())
                .expect("creating a built-in namespace in an empty store");
        }
        s
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    pub fn is_namespaced(&self, group: &str, version: &str, plural: &str) -> bool {
        self.find_type(group, version, plural)
            .is_some_and(|t| t.namespaced)
    }

    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    pub(crate) fn bucket(&self, rt: &ResourceType) -> Option<&BTreeMap<ObjectKey, Value>> {
        self.objects.get(&rt.storage_key())
    }

    pub(crate) fn lookup(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<&Value> {
        self.bucket(rt)?.get(&(ns.to_string(), name.to_string()))
    }

    pub fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        self.lookup(rt, ns.unwrap_or(""), name)
            .map(|o| present(rt, o))
            .ok_or_else(|| ApiError::not_found(&rt.plural, &rt.group, name))
    }

    pub fn list(&self, rt: &ResourceType, q: &ListQuery) -> ListPage {
        let mut items = Vec::new();
        let mut continue_token = None;
        let mut remaining = 0;
        if let Some(bucket) = self.bucket(rt) {
            let matching = bucket.iter().filter(|((ns, _), obj)| {
                q.namespace.as_deref().is_none_or(|want| want == ns)
                    && q.labels.matches(&labels_of(obj))
                    && q.fields.matches(obj)
            });
            let after = q.continue_after.clone();
            for (key, obj) in matching.filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a)) {
                if q.limit.is_some_and(|l| items.len() >= l) {
                    remaining += 1;
                    continue;
                }
                items.push((key.clone(), present(rt, obj)));
            }
            if remaining > 0 {
                continue_token = items.last().map(|(k, _)| encode_continue(k));
            }
        }
        ListPage {
            items: items.into_iter().map(|(_, v)| v).collect(),
            resource_version: self.rv,
            continue_token,
            remaining,
        }
    }

    pub(crate) fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub(crate) fn record(
        &mut self,
        storage: StorageKey,
        namespace: String,
        type_: &'static str,
        object: Value,
        previous: Option<Value>,
    ) {
        let ev = Arc::new(Event {
            rv: self.rv,
            storage,
            namespace,
            type_,
            object,
            previous,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_len {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(ev);
    }

    /// Events after `from_rv` plus a live receiver, or 410 Gone when history no longer reaches back.
    pub fn watch_from(&self, from_rv: u64) -> ApiResult<WatchStart> {
        if from_rv < self.compacted {
            return Err(ApiError::gone(format!(
                "too old resource version: {from_rv} ({})",
                self.compacted + 1
            )));
        }
        let backlog = self
            .history
            .iter()
            .filter(|e| e.rv > from_rv)
            .cloned()
            .collect();
        Ok((backlog, self.tx.subscribe()))
    }

    /// Every stored object, for the state dump.
    pub fn dump(&self) -> Value {
        let objects: Vec<&Value> = self.objects.values().flat_map(|b| b.values()).collect();
        json!({"resourceVersion": self.rv.to_string(), "objects": objects})
    }
}

/// The stored object as served at `rt`'s version (no conversion beyond apiVersion: the
/// sandbox stores one schema for all versions).
pub fn present(rt: &ResourceType, obj: &Value) -> Value {
    let mut o = if rt.is_events_v1() {
        crate::convert::core_to_events(obj)
    } else {
        obj.clone()
    };
    o["apiVersion"] = json!(rt.api_version());
    o["kind"] = json!(rt.kind);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let k = ("ns".to_string(), "a/b".to_string());
        assert_eq!(decode_continue(&encode_continue(&k)), Some(k));
        assert_eq!(decode_continue("!!"), None);
    }

    #[test]
    fn short_history_answers_gone_for_old_versions() {
        let mut s = State::new(2);
        let start = s.resource_version();
        for i in 0..5 {
            let rt = s.find_type("", "v1", "configmaps").unwrap();
            let obj = json!({"metadata": {"name": format!("c{i}"), "namespace": "default"}});
            s.create(&rt, Some("default"), obj, &crate::write::WriteCtx::system())
                .unwrap();
        }
        assert_eq!(s.watch_from(start).unwrap_err().code, 410);
        let (backlog, _) = s.watch_from(s.resource_version() - 1).unwrap();
        assert_eq!(backlog.len(), 1);
    }

    #[test]
    fn list_pages_with_limit_and_continue() {
        let mut s = State::new(100);
        let rt = s.find_type("", "v1", "configmaps").unwrap();
        for i in 0..3 {
            let obj =
                json!({"metadata": {"name": format!("c{i}"), "labels": {"n": i.to_string()}}});
            s.create(&rt, Some("default"), obj, &crate::write::WriteCtx::system())
                .unwrap();
        }
        let page = s.list(
            &rt,
            &ListQuery {
                limit: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.remaining, 1);
        let after = decode_continue(page.continue_token.as_deref().unwrap());
        let page2 = s.list(
            &rt,
            &ListQuery {
                continue_after: after,
                ..Default::default()
            },
        );
        assert_eq!(page2.items.len(), 1);
        assert_eq!(page2.items[0]["metadata"]["name"], "c2");
        let q = ListQuery {
            labels: LabelSelector::parse("n in (0,2)").unwrap(),
            ..Default::default()
        };
        assert_eq!(s.list(&rt, &q).items.len(), 2);
    }
}
