//! Fault injection: 429 with Retry-After, 500/503, dropped connections, latency, and
//! per-subscription token buckets like ARM's. Deterministic for a given seed and request order.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// When a rule fires: with a probability, on every Nth matching request, or both; at most `max` times.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultRule {
    /// 0.0..=1.0, rolled with the seeded generator.
    pub probability: f64,
    /// Fire on requests N, 2N, 3N... of those this rule sees (0 = off).
    pub every_nth: u64,
    /// Stop after this many injections.
    pub max: Option<u64>,
    /// `Retry-After` seconds (429 and 503).
    pub retry_after_secs: u64,
    /// Status for `server_error`: 500 or 503.
    pub status: Option<u16>,
}

/// One token bucket: `capacity` tokens, refilled continuously at `refill_per_sec`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct BucketConfig {
    pub capacity: u64,
    pub refill_per_sec: f64,
}

/// Per-subscription budgets, defaulting to public ARM's per-principal buckets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BudgetConfig {
    pub reads: BucketConfig,
    pub writes: BucketConfig,
    pub deletes: BucketConfig,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            reads: BucketConfig {
                capacity: 250,
                refill_per_sec: 25.0,
            },
            writes: BucketConfig {
                capacity: 200,
                refill_per_sec: 10.0,
            },
            deletes: BucketConfig {
                capacity: 200,
                refill_per_sec: 10.0,
            },
        }
    }
}

/// Fault configuration. Faults apply to ARM requests (paths under `/subscriptions/`) only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultConfig {
    pub seed: u64,
    /// Only requests whose path contains one of these (case-insensitive); empty = all.
    pub path_contains: Vec<String>,
    /// Only these methods; empty = all.
    pub methods: Vec<String>,
    pub latency_ms: u64,
    pub throttle: Option<FaultRule>,
    pub server_error: Option<FaultRule>,
    pub drop_connection: Option<FaultRule>,
    pub budget: Option<BudgetConfig>,
}

impl FaultConfig {
    pub fn validate(&self) -> Result<()> {
        for (name, rule) in [
            ("throttle", &self.throttle),
            ("server_error", &self.server_error),
            ("drop_connection", &self.drop_connection),
        ] {
            if let Some(rule) = rule
                && !(0.0..=1.0).contains(&rule.probability)
            {
                return Err(Error::InvalidConfig(format!(
                    "faults.{name}.probability must be within 0..=1"
                )));
            }
        }
        if let Some(rule) = &self.server_error
            && !matches!(rule.status, None | Some(500) | Some(503))
        {
            return Err(Error::InvalidConfig(
                "faults.server_error.status must be 500 or 503".into(),
            ));
        }
        Ok(())
    }
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Pass,
    Throttle { retry_after: u64 },
    ServerError { status: u16, retry_after: u64 },
    Drop,
}

/// Kind of ARM request for budgets and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestClass {
    Read,
    Write,
    Delete,
}

impl RequestClass {
    pub fn of(method: &str) -> Self {
        match method {
            "GET" | "HEAD" => Self::Read,
            "DELETE" => Self::Delete,
            _ => Self::Write,
        }
    }

    pub fn header(self) -> &'static str {
        match self {
            Self::Read => "x-ms-ratelimit-remaining-subscription-reads",
            Self::Write => "x-ms-ratelimit-remaining-subscription-writes",
            Self::Delete => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }
}

/// Result of charging a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetOutcome {
    Unlimited,
    Allowed { remaining: u64 },
    Exhausted { retry_after: u64 },
}

#[derive(Debug, Default)]
struct RuleState {
    seen: u64,
    fired: u64,
}

#[derive(Debug)]
pub struct FaultEngine {
    config: FaultConfig,
    rng: fastrand::Rng,
    throttle: RuleState,
    server_error: RuleState,
    drop: RuleState,
    buckets: HashMap<(String, RequestClass), (f64, Instant)>,
}

impl FaultEngine {
    pub fn new(config: FaultConfig) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(config.seed),
            config,
            throttle: RuleState::default(),
            server_error: RuleState::default(),
            drop: RuleState::default(),
            buckets: HashMap::new(),
        }
    }

    /// The delay before one ARM request is handled: `latency_ms` for requests the filters
    /// select, none for others (so a single call can be held in flight).
    pub fn latency(&self, method: &str, path: &str) -> Duration {
        if self.applies(method, path) {
            Duration::from_millis(self.config.latency_ms)
        } else {
            Duration::ZERO
        }
    }

    fn applies(&self, method: &str, path: &str) -> bool {
        let lower = path.to_ascii_lowercase();
        (self.config.methods.is_empty()
            || self
                .config
                .methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(method)))
            && (self.config.path_contains.is_empty()
                || self
                    .config
                    .path_contains
                    .iter()
                    .any(|p| lower.contains(&p.to_ascii_lowercase())))
    }

    /// Decide the fate of one ARM request.
    pub fn decide(&mut self, method: &str, path: &str) -> Decision {
        if !self.applies(method, path) {
            return Decision::Pass;
        }
        let rng = &mut self.rng;
        if let Some(rule) = &self.config.drop_connection
            && fires(rule, &mut self.drop, rng)
        {
            return Decision::Drop;
        }
        if let Some(rule) = &self.config.throttle
            && fires(rule, &mut self.throttle, rng)
        {
            return Decision::Throttle {
                retry_after: rule.retry_after_secs,
            };
        }
        if let Some(rule) = &self.config.server_error
            && fires(rule, &mut self.server_error, rng)
        {
            return Decision::ServerError {
                status: rule.status.unwrap_or(500),
                retry_after: rule.retry_after_secs,
            };
        }
        Decision::Pass
    }

    /// Charge one request to the subscription's bucket for its class.
    pub fn charge(
        &mut self,
        subscription: &str,
        class: RequestClass,
        now: Instant,
    ) -> BudgetOutcome {
        let Some(budget) = &self.config.budget else {
            return BudgetOutcome::Unlimited;
        };
        let bucket = match class {
            RequestClass::Read => budget.reads,
            RequestClass::Write => budget.writes,
            RequestClass::Delete => budget.deletes,
        };
        let entry = self
            .buckets
            .entry((subscription.to_ascii_lowercase(), class))
            .or_insert((bucket.capacity as f64, now));
        let elapsed = now.saturating_duration_since(entry.1).as_secs_f64();
        entry.0 = (entry.0 + elapsed * bucket.refill_per_sec).min(bucket.capacity as f64);
        entry.1 = now;
        if entry.0 >= 1.0 {
            entry.0 -= 1.0;
            BudgetOutcome::Allowed {
                remaining: entry.0.floor() as u64,
            }
        } else {
            let wait = if bucket.refill_per_sec > 0.0 {
                ((1.0 - entry.0) / bucket.refill_per_sec).ceil() as u64
            } else {
                3600
            };
            BudgetOutcome::Exhausted {
                retry_after: wait.max(1),
            }
        }
    }
}

fn fires(rule: &FaultRule, state: &mut RuleState, rng: &mut fastrand::Rng) -> bool {
    state.seen += 1;
    if rule.max.is_some_and(|max| state.fired >= max) {
        return false;
    }
    let nth = rule.every_nth > 0 && state.seen.is_multiple_of(rule.every_nth);
    let roll = rule.probability > 0.0 && rng.f64() < rule.probability;
    if nth || roll {
        state.fired += 1;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(every_nth: u64, probability: f64, max: Option<u64>) -> FaultConfig {
        FaultConfig {
            seed: 42,
            throttle: Some(FaultRule {
                every_nth,
                probability,
                max,
                retry_after_secs: 3,
                ..FaultRule::default()
            }),
            ..FaultConfig::default()
        }
    }

    #[test]
    fn every_nth_with_max() {
        let mut e = FaultEngine::new(throttle(2, 0.0, Some(2)));
        let got: Vec<bool> = (0..8)
            .map(|_| e.decide("GET", "/subscriptions/s") != Decision::Pass)
            .collect();
        assert_eq!(got, [false, true, false, true, false, false, false, false]);
    }

    #[test]
    fn probability_is_deterministic_per_seed() {
        let run = || {
            let mut e = FaultEngine::new(throttle(0, 0.5, None));
            (0..50)
                .map(|_| e.decide("PUT", "/subscriptions/s") != Decision::Pass)
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().any(|x| *x) && a.iter().any(|x| !*x));
    }

    #[test]
    fn filters_by_method_and_path() {
        let mut cfg = throttle(1, 0.0, None);
        cfg.methods = vec!["PUT".into()];
        cfg.path_contains = vec!["virtualMachines".into()];
        let mut e = FaultEngine::new(cfg);
        assert_eq!(
            e.decide("GET", "/subscriptions/s/x/virtualmachines/a"),
            Decision::Pass
        );
        assert_eq!(
            e.decide("PUT", "/subscriptions/s/x/networkInterfaces/a"),
            Decision::Pass
        );
        assert_eq!(
            e.decide("PUT", "/subscriptions/s/x/virtualmachines/a"),
            Decision::Throttle { retry_after: 3 }
        );
    }

    #[test]
    fn latency_honours_the_filters() {
        let e = FaultEngine::new(FaultConfig {
            latency_ms: 250,
            methods: vec!["PUT".into()],
            path_contains: vec!["/models/churn/versions/".into()],
            ..FaultConfig::default()
        });
        let version = "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w/models/churn/versions/1";
        assert_eq!(e.latency("PUT", version), Duration::from_millis(250));
        assert_eq!(e.latency("GET", version), Duration::ZERO);
        assert_eq!(
            e.latency("PUT", "/subscriptions/s/x/models/churn"),
            Duration::ZERO
        );
        // No filters: every request.
        let all = FaultEngine::new(FaultConfig {
            latency_ms: 5,
            ..FaultConfig::default()
        });
        assert_eq!(
            all.latency("GET", "/subscriptions/s"),
            Duration::from_millis(5)
        );
    }

    #[test]
    fn bucket_exhausts_and_refills() {
        let mut cfg = FaultConfig::default();
        let budget = BudgetConfig {
            writes: BucketConfig {
                capacity: 2,
                refill_per_sec: 1.0,
            },
            ..BudgetConfig::default()
        };
        cfg.budget = Some(budget);
        let mut e = FaultEngine::new(cfg);
        let t0 = Instant::now();
        assert_eq!(
            e.charge("s", RequestClass::Write, t0),
            BudgetOutcome::Allowed { remaining: 1 }
        );
        assert_eq!(
            e.charge("s", RequestClass::Write, t0),
            BudgetOutcome::Allowed { remaining: 0 }
        );
        assert_eq!(
            e.charge("s", RequestClass::Write, t0),
            BudgetOutcome::Exhausted { retry_after: 1 }
        );
        // Other subscriptions and classes have their own buckets.
        assert!(matches!(
            e.charge("other", RequestClass::Write, t0),
            BudgetOutcome::Allowed { .. }
        ));
        assert!(matches!(
            e.charge("s", RequestClass::Read, t0),
            BudgetOutcome::Allowed { .. }
        ));
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            e.charge("s", RequestClass::Write, later),
            BudgetOutcome::Allowed { remaining: 0 }
        );
    }
}
