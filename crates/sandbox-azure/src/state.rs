//! In-memory world: resources keyed by ARM id (case-insensitive), long-running operations,
//! request counters.

use std::{
    collections::{BTreeMap, HashMap},
    time::Instant,
};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::ids;

/// VM power state as shown in `PowerState/...` instance-view codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    Starting,
    Running,
    Stopping,
    Stopped,
    Deallocating,
    Deallocated,
}

impl PowerState {
    pub fn code(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Deallocating => "deallocating",
            Self::Deallocated => "deallocated",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Self::Starting => "VM starting",
            Self::Running => "VM running",
            Self::Stopping => "VM stopping",
            Self::Stopped => "VM stopped",
            Self::Deallocating => "VM deallocating",
            Self::Deallocated => "VM deallocated",
        }
    }
}

/// A stored resource. Debug leaves out `secrets`.
#[derive(Clone)]
pub struct Resource {
    pub id: String,
    /// What GET returns (secrets already removed).
    pub body: Value,
    pub seq: u64,
    pub power: Option<PowerState>,
    /// Secrets kept out of `body` (compute admin account, datastore credentials).
    pub secrets: Option<Value>,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("id", &self.id)
            .field("power", &self.power)
            .field("secrets", &self.secrets.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// What finishing an operation does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// provisioningState → Succeeded (VM: power → running when `power_on`).
    Provision { power_on: bool },
    /// Remove the resource (and what it owns).
    Delete,
    /// VM power transition to this final state.
    Power(PowerState),
    /// Done when the job reaches a terminal status.
    CancelJob,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpStatus {
    InProgress,
    Succeeded,
    Failed { code: String, message: String },
}

impl OpStatus {
    pub fn name(&self) -> &'static str {
        match self {
            Self::InProgress => "InProgress",
            Self::Succeeded => "Succeeded",
            Self::Failed { .. } => "Failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub id: String,
    pub resource_id: String,
    pub effect: Effect,
    pub status: OpStatus,
    pub started: DateTime<Utc>,
    pub ended: Option<DateTime<Utc>>,
    pub due: Instant,
    pub fail: bool,
    /// The Location URL answers with the resource on success (PUT) or nothing (DELETE, actions).
    pub returns_resource: bool,
}

/// One entry of [`State::inventory`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryItem {
    pub id: String,
    pub resource_type: String,
    pub provisioning_state: Option<String>,
}

/// Requests by (method, provider), e.g. ("PUT", "Microsoft.Compute"), ("POST", "token").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters(pub BTreeMap<(String, String), u64>);

impl Counters {
    pub fn get(&self, method: &str, provider: &str) -> u64 {
        self.0
            .iter()
            .filter(|((m, p), _)| {
                m.eq_ignore_ascii_case(method) && p.eq_ignore_ascii_case(provider)
            })
            .map(|(_, n)| n)
            .sum()
    }

    /// Totals by method, the grand `total`, and `by_kind` (method → provider → count), as
    /// served at [`crate::server::REQUESTS_PATH`].
    pub fn summary(&self) -> serde_json::Value {
        let mut by_verb = BTreeMap::<String, u64>::new();
        let mut by_kind = BTreeMap::<String, BTreeMap<String, u64>>::new();
        for ((method, provider), n) in &self.0 {
            *by_verb.entry(method.clone()).or_default() += n;
            by_kind
                .entry(method.clone())
                .or_default()
                .insert(provider.clone(), *n);
        }
        let total: u64 = by_verb.values().sum();
        let mut out = serde_json::Map::new();
        for (method, n) in by_verb {
            out.insert(method, n.into());
        }
        out.insert("total".into(), total.into());
        out.insert("by_kind".into(), serde_json::json!(by_kind));
        out.into()
    }

    /// PUT + PATCH + POST + DELETE to a provider.
    pub fn writes(&self, provider: &str) -> u64 {
        ["PUT", "PATCH", "POST", "DELETE"]
            .iter()
            .map(|m| self.get(m, provider))
            .sum()
    }
}

#[derive(Default)]
pub struct State {
    resources: HashMap<String, Resource>,
    pub operations: HashMap<String, Operation>,
    pub counters: Counters,
    /// Faults injected, by kind ("throttle", "server_error", "drop", "budget").
    pub faults_injected: BTreeMap<String, u64>,
    /// Metrics each finished job wrote to `outputs/metrics.json`, by job id key.
    pub job_metrics: HashMap<String, BTreeMap<String, f64>>,
    /// MLflow experiments and runs of every workspace.
    pub mlflow: crate::mlflow::Store,
    seq: u64,
}

/// Debug shows sizes only: resources carry secrets (compute keys, datastore keys).
impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("resources", &self.resources.len())
            .field("operations", &self.operations.len())
            .field("counters", &self.counters)
            .finish()
    }
}

impl State {
    pub fn count(&mut self, method: &str, provider: &str) {
        *self
            .counters
            .0
            .entry((method.to_ascii_uppercase(), provider.to_owned()))
            .or_default() += 1;
    }

    pub fn get(&self, id: &str) -> Option<&Resource> {
        self.resources.get(&ids::key(id))
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Resource> {
        self.resources.get_mut(&ids::key(id))
    }

    /// Insert or replace, keeping the creation order of an existing resource.
    pub fn put(&mut self, id: &str, body: Value) -> &mut Resource {
        let key = ids::key(id);
        self.seq += 1;
        let seq = self.seq;
        let entry = self.resources.entry(key).or_insert_with(|| Resource {
            id: id.trim_end_matches('/').to_owned(),
            body: Value::Null,
            seq,
            power: None,
            secrets: None,
        });
        entry.body = body;
        entry
    }

    pub fn remove(&mut self, id: &str) -> Option<Resource> {
        self.resources.remove(&ids::key(id))
    }

    /// Remove a resource and every resource below it.
    pub fn remove_tree(&mut self, id: &str) {
        let key = ids::key(id);
        let prefix = format!("{key}/");
        self.resources
            .retain(|k, _| *k != key && !k.starts_with(&prefix));
    }

    /// Resources whose parent is `parent` and whose last type segment is `child_type`, oldest first.
    pub fn children(&self, parent: &str, child_type: &str) -> Vec<&Resource> {
        let prefix = format!("{}/{}/", ids::key(parent), child_type.to_ascii_lowercase());
        let mut out: Vec<&Resource> = self
            .resources
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
            .map(|(_, r)| r)
            .collect();
        out.sort_by_key(|r| r.seq);
        out
    }

    /// All resources of a type (e.g. `microsoft.compute/virtualmachines`) in a subscription.
    pub fn of_type_in_subscription(
        &self,
        subscription: &str,
        resource_type: &str,
    ) -> Vec<&Resource> {
        let prefix = format!("/subscriptions/{}/", subscription.to_ascii_lowercase());
        let mut out: Vec<&Resource> = self
            .resources
            .iter()
            .filter(|(k, r)| {
                k.starts_with(&prefix)
                    && ids::ArmPath::parse(&r.id)
                        .is_some_and(|p| p.resource_type().eq_ignore_ascii_case(resource_type))
            })
            .map(|(_, r)| r)
            .collect();
        out.sort_by_key(|r| r.seq);
        out
    }

    pub fn all(&self) -> impl Iterator<Item = &Resource> {
        self.resources.values()
    }

    pub fn all_mut(&mut self) -> impl Iterator<Item = &mut Resource> {
        self.resources.values_mut()
    }

    pub fn inventory(&self) -> Vec<InventoryItem> {
        let mut items: Vec<&Resource> = self.resources.values().collect();
        items.sort_by_key(|r| r.seq);
        items
            .into_iter()
            .map(|r| InventoryItem {
                id: r.id.clone(),
                resource_type: ids::ArmPath::parse(&r.id)
                    .map(|p| p.resource_type())
                    .unwrap_or_default(),
                provisioning_state: r.body["properties"]["provisioningState"]
                    .as_str()
                    .map(str::to_owned),
            })
            .collect()
    }

    /// Finish every operation whose time has come.
    pub fn advance(&mut self, now: Instant) {
        let due: Vec<String> = self
            .operations
            .values()
            .filter(|op| op.status == OpStatus::InProgress && op.due <= now)
            .map(|op| op.id.clone())
            .collect();
        for id in due {
            let Some(op) = self.operations.get(&id).cloned() else {
                continue;
            };
            let status = self.finish(&op);
            if let Some(status) = status
                && let Some(stored) = self.operations.get_mut(&id)
            {
                stored.status = status;
                stored.ended = Some(Utc::now());
            }
        }
    }

    fn finish(&mut self, op: &Operation) -> Option<OpStatus> {
        let failed = OpStatus::Failed {
            code: "OperationFailed".into(),
            message: format!(
                "The operation on '{}' failed (configured to fail in the simulator).",
                op.resource_id
            ),
        };
        match &op.effect {
            Effect::Provision { power_on } => {
                let res = self.get_mut(&op.resource_id)?;
                let state = if op.fail { "Failed" } else { "Succeeded" };
                set_provisioning(&mut res.body, state);
                if *power_on && !op.fail {
                    res.power = Some(PowerState::Running);
                }
            }
            Effect::Delete => {
                if op.fail {
                    if let Some(res) = self.get_mut(&op.resource_id) {
                        set_provisioning(&mut res.body, "Failed");
                    }
                } else {
                    self.remove_tree(&op.resource_id);
                    self.detach_references(&op.resource_id);
                }
            }
            Effect::Power(target) => {
                let res = self.get_mut(&op.resource_id)?;
                set_provisioning(&mut res.body, if op.fail { "Failed" } else { "Succeeded" });
                if !op.fail {
                    res.power = Some(*target);
                }
            }
            Effect::CancelJob => {
                let status = self
                    .get(&op.resource_id)
                    .and_then(|r| r.body["properties"]["status"].as_str())
                    .map(str::to_owned);
                match status.as_deref() {
                    Some("Canceled" | "Completed" | "Failed") | None => {}
                    Some(_) => return None,
                }
            }
        }
        Some(if op.fail { failed } else { OpStatus::Succeeded })
    }

    /// A deleted VM no longer owns its NICs, nor its OS disk (which stays, unattached).
    fn detach_references(&mut self, deleted_id: &str) {
        let deleted = ids::key(deleted_id);
        for res in self.resources.values_mut() {
            if res.body["managedBy"]
                .as_str()
                .is_some_and(|v| ids::key(v) == deleted)
                && let Some(disk) = res.body.as_object_mut()
            {
                disk.remove("managedBy");
                res.body["properties"]["diskState"] = Value::String("Unattached".into());
            }
            let vm = &res.body["properties"]["virtualMachine"]["id"];
            if vm.as_str().is_some_and(|v| ids::key(v) == deleted)
                && let Some(props) = res.body["properties"].as_object_mut()
            {
                props.remove("virtualMachine");
            }
        }
    }
}

pub fn set_provisioning(body: &mut Value, state: &str) {
    if !body["properties"].is_object() {
        body["properties"] = Value::Object(Default::default());
    }
    body["properties"]["provisioningState"] = Value::String(state.to_owned());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    const VM: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1";

    #[test]
    fn keys_are_case_insensitive_and_ops_finish_on_time() {
        let mut st = State::default();
        st.put(VM, json!({"properties": {"provisioningState": "Creating"}}));
        assert!(st.get(&VM.to_uppercase()).is_some());
        let t0 = Instant::now();
        st.operations.insert(
            "op".into(),
            Operation {
                id: "op".into(),
                resource_id: VM.into(),
                effect: Effect::Provision { power_on: true },
                status: OpStatus::InProgress,
                started: Utc::now(),
                ended: None,
                due: t0 + Duration::from_secs(5),
                fail: false,
                returns_resource: true,
            },
        );
        st.advance(t0);
        assert_eq!(st.operations["op"].status, OpStatus::InProgress);
        st.advance(t0 + Duration::from_secs(5));
        assert_eq!(st.operations["op"].status, OpStatus::Succeeded);
        let vm = st.get(VM).unwrap();
        assert_eq!(vm.body["properties"]["provisioningState"], "Succeeded");
        assert_eq!(vm.power, Some(PowerState::Running));
        assert_eq!(st.inventory().len(), 1);
    }

    #[test]
    fn summary_totals_by_verb_and_kind() {
        let mut st = State::default();
        st.count("get", "Microsoft.Compute");
        st.count("GET", "metadata");
        st.count("PUT", "Microsoft.Compute");
        st.count("GET", "Microsoft.Compute");
        assert_eq!(
            st.counters.summary(),
            json!({
                "GET": 3, "PUT": 1, "total": 4,
                "by_kind": {
                    "GET": {"Microsoft.Compute": 2, "metadata": 1},
                    "PUT": {"Microsoft.Compute": 1}
                }
            })
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut st = State::default();
        st.put(VM, json!({})).secrets = Some(json!({"key": "topsecret"}));
        let shown = format!("{st:?} {:?}", st.get(VM).unwrap());
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn children_lists_only_direct_children() {
        let mut st = State::default();
        let vnet =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v";
        st.put(vnet, json!({}));
        st.put(&format!("{vnet}/subnets/a"), json!({}));
        st.put(&format!("{vnet}/subnets/b"), json!({}));
        assert_eq!(st.children(vnet, "subnets").len(), 2);
        assert_eq!(
            st.of_type_in_subscription("S", "Microsoft.Network/virtualNetworks")
                .len(),
            1
        );
        st.remove_tree(vnet);
        assert_eq!(st.inventory().len(), 0);
    }
}
