//! `ect-requests`: Azure requests to bring one EdgeComputeTarget to Ready against the minimum
//! the simulator's configuration allows; `steady-writes` / `steady-reads`: ARM requests per
//! resource-hour once everything has settled (a Ready target and a finished TrainingRun),
//! counted over an accelerated hour.

use std::time::Duration;

use edgetrain_api::TrainingRunPhase;
use edgetrain_sandbox_azure::{Counters, LroConfig};

use crate::{
    Result,
    figure::Figure,
    world::{World, eventually},
};

/// The controller's default resync (`--resync-seconds`): what one real hour of settled
/// operation is made of.
const DEFAULT_RESYNC_SECS: f64 = 300.0;

/// Azure Service Operator re-PUTs every resource once per sync period (`AZURE_SYNC_PERIOD`,
/// 1 h by default): its documented steady state.
const ASO: &str = "Azure Service Operator (1 PUT per resource per 1 h sync period)";

fn is_arm(provider: &str) -> bool {
    provider.starts_with("Microsoft.")
}

/// ARM requests by verb (tokens and Stack Hub metadata left out).
pub fn arm_by_verb(c: &Counters) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for ((method, provider), n) in &c.0 {
        if is_arm(provider) {
            *out.entry(method.clone()).or_insert(0) += n;
        }
    }
    out
}

/// `after - before`, key by key.
pub fn delta(before: &Counters, after: &Counters) -> Counters {
    Counters(
        after
            .0
            .iter()
            .map(|(k, n)| (k.clone(), n - before.0.get(k).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect(),
    )
}

/// The least a client can send: one PUT per resource, and for each long-running operation the
/// status reads its `Retry-After` asks for until the operation's duration has passed
/// (`ceil(duration / retry_after)`) plus one GET of the final resource.
pub fn minimum_requests(resources: u64, operations: u64, lro: &LroConfig) -> u64 {
    let retry_ms = (lro.retry_after_secs * 1000).max(1);
    let polls = lro.duration_ms.div_ceil(retry_ms).max(1);
    resources + operations * (polls + 1)
}

/// Requests per resource-hour from a count over `cycles` resync periods: one real hour is
/// `3600 / DEFAULT_RESYNC_SECS` of them.
pub fn per_resource_hour(count: u64, resources: u64, cycles: f64) -> f64 {
    count as f64 / cycles * (3600.0 / DEFAULT_RESYNC_SECS) / resources.max(1) as f64
}

fn verbs(m: &std::collections::BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(v, n)| format!("{n} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resources a client must PUT: what the simulator holds beyond what it was seeded with
/// (`seeded`, e.g. the workspace and its datastores), except what Azure creates inside another
/// resource's PUT (subnets and security rules declared in their parent's body, a VM's OS disk).
fn declared(w: &World, seeded: u64) -> u64 {
    let implicit = w
        .sim
        .inventory()
        .iter()
        .filter(|i| {
            [
                "Microsoft.Network/virtualNetworks/subnets",
                "Microsoft.Network/networkSecurityGroups/securityRules",
                "Microsoft.Compute/disks",
            ]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&i.resource_type))
        })
        .count();
    (w.sim.inventory().len() - implicit) as u64 - seeded
}

fn seeded(w: &World) -> u64 {
    w.sim.inventory().len() as u64
}

pub async fn ect_requests() -> Result<Vec<Figure>> {
    let lro = LroConfig::default();
    let w = World::start(lro.clone(), |_| {}).await?;
    let ops_before = w.sim.operations_started() as u64;
    let seeded = seeded(&w);
    let ctl = w.controller(Duration::from_secs(300))?;
    w.create_ect("edge").await?;
    w.wait_ect_ready("edge", 120).await?;
    ctl.abort();
    let counters = w.sim.counters();
    let by_verb = arm_by_verb(&counters);
    let ours: u64 = by_verb.values().sum();
    let resources = declared(&w, seeded);
    let operations = w.sim.operations_started() as u64 - ops_before;
    let min = minimum_requests(resources, operations, &lro);
    let tokens = counters.get("POST", "token");
    let metadata = counters.get("GET", "metadata");
    w.shutdown().await;
    let input = format!(
        "one EdgeComputeTarget to Ready: {resources} resources, {operations} long-running operations \
         ({} ms each, Retry-After {} s); ours by verb: {}; plus {tokens} token and {metadata} \
         metadata requests (not counted)",
        lro.duration_ms,
        lro.retry_after_secs,
        verbs(&by_verb)
    );
    eprintln!("ect-requests: {ours} ARM requests vs minimum {min} ({input})");
    Ok(vec![Figure::new(
        "ect-requests",
        ours as f64,
        min as f64,
        "minimum: 1 PUT per resource + the polls Retry-After asks for + 1 final GET per operation",
        "requests",
        &input,
    )])
}

pub async fn steady(cycles: u32) -> Result<Vec<Figure>> {
    let resync = Duration::from_secs(1);
    // Operations finish quickly: the settling is not what is measured here.
    let lro = LroConfig {
        duration_ms: 200,
        ..LroConfig::default()
    };
    let w = World::start(lro, |c| c.azurite = true).await?;
    let seeded = seeded(&w);
    let ctl = w.controller(resync)?;
    w.create_ect("edge").await?;
    w.wait_ect_ready("edge", 120).await?;
    let endpoint = w.training_inputs().await?;
    w.create_run("done", "edge", &endpoint, "true").await?;
    let finished = [TrainingRunPhase::Succeeded, TrainingRunPhase::Failed];
    eventually(240, "the TrainingRun finished", || async {
        (w.runs_in(&finished).await.ok()? == 1).then_some(())
    })
    .await?;
    let resources = declared(&w, seeded);
    // Let the last status writes and their follow-up reads pass before counting.
    tokio::time::sleep(resync * 2).await;
    let before = w.sim.counters();
    tokio::time::sleep(resync * cycles).await;
    let d = delta(&before, &w.sim.counters());
    ctl.abort();
    w.shutdown().await;
    let by_verb = arm_by_verb(&d);
    let reads: u64 =
        by_verb.get("GET").copied().unwrap_or(0) + by_verb.get("HEAD").copied().unwrap_or(0);
    let writes: u64 = by_verb.values().sum::<u64>() - reads;
    let input = format!(
        "a Ready EdgeComputeTarget and a finished TrainingRun ({resources} Azure resources), \
         {cycles} resyncs of 1 s counted and scaled to one hour at the default 300 s resync; \
         ARM requests seen: {}",
        if by_verb.is_empty() {
            "none".into()
        } else {
            verbs(&by_verb)
        }
    );
    let c = f64::from(cycles);
    let w_rh = per_resource_hour(writes, resources, c);
    let r_rh = per_resource_hour(reads, resources, c);
    eprintln!("steady: {w_rh:.3} writes, {r_rh:.3} reads per resource-hour ({input})");
    Ok(vec![
        Figure::new(
            "steady-writes",
            w_rh,
            1.0,
            ASO,
            "writes/resource-hour",
            &input,
        ),
        // ASO reads at least the result of each PUT (its LRO poll): one read per resource-hour
        // is its floor, not a measurement of ASO.
        Figure::new(
            "steady-reads",
            r_rh,
            1.0,
            "Azure Service Operator, at least 1 read (the PUT's result) per resource per 1 h sync",
            "reads/resource-hour",
            &input,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_polls_follow_retry_after_and_duration() {
        let lro = LroConfig {
            duration_ms: 2000,
            retry_after_secs: 1,
            ..Default::default()
        };
        // 6 PUTs; 5 operations × (2 polls + 1 final GET).
        assert_eq!(minimum_requests(6, 5, &lro), 6 + 15);
        let slow = LroConfig {
            duration_ms: 2500,
            retry_after_secs: 1,
            ..Default::default()
        };
        assert_eq!(minimum_requests(1, 1, &slow), 1 + 4);
    }

    #[test]
    fn resource_hours_scale_cycles_to_the_default_resync() {
        // 12 resyncs make an hour at 300 s: 12 reads over 12 cycles for 1 resource = 12/h.
        assert_eq!(per_resource_hour(12, 1, 12.0), 12.0);
        assert_eq!(per_resource_hour(0, 6, 30.0), 0.0);
        assert_eq!(per_resource_hour(6, 6, 12.0), 1.0);
    }

    #[test]
    fn deltas_and_verbs_leave_out_tokens_and_unchanged_keys() {
        let k = |m: &str, p: &str| (m.to_string(), p.to_string());
        let before = Counters([(k("GET", "Microsoft.Compute"), 3)].into());
        let after = Counters(
            [
                (k("GET", "Microsoft.Compute"), 5),
                (k("POST", "token"), 2),
                (k("PUT", "Microsoft.Network"), 1),
            ]
            .into(),
        );
        let d = delta(&before, &after);
        let v = arm_by_verb(&d);
        assert_eq!(v.get("GET"), Some(&2));
        assert_eq!(v.get("PUT"), Some(&1));
        assert_eq!(v.get("POST"), None, "tokens are not ARM");
    }
}
