//! Client-side token buckets per ARM endpoint, subscription, security principal and operation
//! kind (how ARM counts), so the operator stays inside the budget instead of discovering it
//! through 429s.

use std::{
    collections::HashMap,
    str::FromStr,
    sync::Mutex,
    time::{Duration, Instant},
};

use http::Method;
use url::Url;

use crate::Error;

/// ARM's three buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationKind {
    Read,
    Write,
    Delete,
}

impl OperationKind {
    /// GET/HEAD read, DELETE deletes, everything else writes (ARM counts POST actions as writes).
    pub fn of(method: &Method) -> Self {
        match *method {
            Method::GET | Method::HEAD => OperationKind::Read,
            Method::DELETE => OperationKind::Delete,
            _ => OperationKind::Write,
        }
    }
}

/// Capacity and refill rate of one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketSpec {
    pub capacity: f64,
    pub refill_per_sec: f64,
}

/// Bucket sizes per operation kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    pub reads: BucketSpec,
    pub writes: BucketSpec,
    pub deletes: BucketSpec,
}

/// The hourly per-subscription limits ARM quotes for older clouds, which is what a Stack Hub
/// stamp's ARM is: reads, writes, deletes per hour.
pub const STACK_HUB_HOURLY: (f64, f64, f64) = (12_000.0, 1_200.0, 15_000.0);

impl Default for RateLimits {
    /// Sized for a Stack Hub stamp: over any hour, a burst of 5 % of the hourly limit plus a
    /// refill of 90 % of it stays within 95 % of [`STACK_HUB_HOURLY`] (room for other clients
    /// of the subscription is the operator's to configure). Reads 600 + 3/s, writes 60 +
    /// 0.3/s, deletes 750 + 3.75/s.
    fn default() -> Self {
        let (reads, writes, deletes) = STACK_HUB_HOURLY;
        let spec = |per_hour: f64| BucketSpec {
            capacity: per_hour * 0.05,
            refill_per_sec: per_hour * 0.9 / 3600.0,
        };
        Self {
            reads: spec(reads),
            writes: spec(writes),
            deletes: spec(deletes),
        }
    }
}

impl RateLimits {
    /// Public Azure's published per-subscription, per-principal token buckets: reads 250 /
    /// 25 per s, writes 200 / 10 per s, deletes 200 / 10 per s.
    pub fn public_azure() -> Self {
        Self {
            reads: BucketSpec {
                capacity: 250.0,
                refill_per_sec: 25.0,
            },
            writes: BucketSpec {
                capacity: 200.0,
                refill_per_sec: 10.0,
            },
            deletes: BucketSpec {
                capacity: 200.0,
                refill_per_sec: 10.0,
            },
        }
    }

    fn spec(&self, kind: OperationKind) -> BucketSpec {
        match kind {
            OperationKind::Read => self.reads,
            OperationKind::Write => self.writes,
            OperationKind::Delete => self.deletes,
        }
    }
}

/// `reads=600/3,writes=60/0.3,deletes=750/3.75`: capacity/refill per second for the kinds
/// named; the others keep [`RateLimits::default`]. For a flag or chart value.
impl FromStr for RateLimits {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidInput(format!("rate limits {s:?}: {why}"));
        let mut limits = Self::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, spec) = part
                .split_once('=')
                .ok_or_else(|| bad("expected kind=capacity/refillPerSecond"))?;
            let (capacity, refill) = spec
                .split_once('/')
                .ok_or_else(|| bad("expected capacity/refillPerSecond"))?;
            let number = |v: &str| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n > 0.0)
                    .ok_or_else(|| bad(&format!("{v:?} is not a positive number")))
            };
            let spec = BucketSpec {
                capacity: number(capacity)?.max(1.0),
                refill_per_sec: number(refill)?,
            };
            match kind.trim() {
                "reads" => limits.reads = spec,
                "writes" => limits.writes = spec,
                "deletes" => limits.deletes = spec,
                other => {
                    return Err(bad(&format!(
                        "unknown kind {other:?} (reads, writes, deletes)"
                    )));
                }
            }
        }
        Ok(limits)
    }
}

/// Whose budget a request spends: ARM counts per endpoint, subscription and principal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketKey {
    /// Scheme, host and port of the ARM endpoint.
    pub endpoint: String,
    /// Lower-cased subscription id; empty for tenant-level requests (metadata, providers).
    pub subscription: String,
    /// The security principal the requests authenticate as (its client id).
    pub principal: String,
}

impl BucketKey {
    /// The key of a request to `url` made as `principal`.
    pub fn of(url: &Url, principal: &str) -> Self {
        let mut segments = url.path_segments().into_iter().flatten();
        let subscription = segments
            .by_ref()
            .find(|s| s.eq_ignore_ascii_case("subscriptions"))
            .and_then(|_| segments.next())
            .unwrap_or_default()
            .to_ascii_lowercase();
        Self {
            endpoint: url.origin().ascii_serialization(),
            subscription,
            principal: principal.to_string(),
        }
    }
}

/// A token bucket driven by explicit instants (pure, so it is tested without sleeping).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    spec: BucketSpec,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(spec: BucketSpec, now: Instant) -> Self {
        Self {
            spec,
            tokens: spec.capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.spec.refill_per_sec).min(self.spec.capacity);
        self.last = self.last.max(now);
    }

    /// Take one token, or say how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if self.spec.refill_per_sec <= 0.0 {
            Err(Duration::MAX)
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.spec.refill_per_sec,
            ))
        }
    }
}

/// Buckets per (endpoint, subscription, principal, operation kind), shared by every client of
/// one process.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<(BucketKey, OperationKind), TokenBucket>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Non-blocking attempt; `Err(wait)` says how long until a token is free.
    pub fn try_acquire(
        &self,
        key: &BucketKey,
        kind: OperationKind,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        b.entry((key.clone(), kind))
            .or_insert_with(|| TokenBucket::new(self.limits.spec(kind), now))
            .try_take(now)
    }

    /// Wait until a token is available, then take it.
    pub async fn acquire(&self, key: &BucketKey, kind: OperationKind) {
        loop {
            match self.try_acquire(key, kind, Instant::now()) {
                Ok(()) => return,
                Err(wait) => {
                    tracing::debug!(endpoint = %key.endpoint, subscription = %key.subscription, ?kind, ?wait, "client-side ARM rate limit");
                    tokio::time::sleep(wait.min(Duration::from_secs(60))).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_drains_then_refills_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            BucketSpec {
                capacity: 3.0,
                refill_per_sec: 2.0,
            },
            t0,
        );
        for _ in 0..3 {
            assert!(b.try_take(t0).is_ok());
        }
        let wait = b.try_take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(b.try_take(t0 + Duration::from_millis(499)).is_err());
        assert!(b.try_take(t0 + Duration::from_millis(500)).is_ok());
        // Refill never exceeds capacity.
        let later = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            assert!(b.try_take(later).is_ok());
        }
        assert!(b.try_take(later).is_err());
    }

    fn key(url: &str, principal: &str) -> BucketKey {
        BucketKey::of(&Url::parse(url).unwrap(), principal)
    }

    #[test]
    fn limiter_keeps_endpoints_subscriptions_principals_and_kinds_apart() {
        let limits = RateLimits {
            reads: BucketSpec {
                capacity: 1.0,
                refill_per_sec: 1.0,
            },
            ..RateLimits::default()
        };
        let l = RateLimiter::new(limits);
        let t = Instant::now();
        let a = key("https://arm.a/subscriptions/S1/resourceGroups/rg?x=1", "p1");
        assert!(l.try_acquire(&a, OperationKind::Read, t).is_ok());
        // Another resource of the same subscription, same principal: same bucket.
        let same = key("https://arm.a/subscriptions/s1/providers/x", "p1");
        assert_eq!(same, a);
        assert!(l.try_acquire(&same, OperationKind::Read, t).is_err());
        for other in [
            key("https://arm.b/subscriptions/s1/x", "p1"),
            key("https://arm.a:8443/subscriptions/s1/x", "p1"),
            key("https://arm.a/subscriptions/s2/x", "p1"),
            key("https://arm.a/subscriptions/s1/x", "p2"),
        ] {
            assert!(
                l.try_acquire(&other, OperationKind::Read, t).is_ok(),
                "{other:?}"
            );
        }
        assert!(l.try_acquire(&a, OperationKind::Write, t).is_ok());
        assert_eq!(
            key("https://arm.a/metadata/endpoints", "p").subscription,
            ""
        );
    }

    #[test]
    fn defaults_fit_a_stack_hub_stamps_hourly_limits() {
        let d = RateLimits::default();
        let (reads, writes, deletes) = STACK_HUB_HOURLY;
        for (spec, per_hour) in [(d.reads, reads), (d.writes, writes), (d.deletes, deletes)] {
            // The most one hour can see: a full bucket plus an hour of refill.
            let most = spec.capacity + spec.refill_per_sec * 3600.0;
            assert!(
                most <= per_hour * 0.95 + 1e-6,
                "{spec:?}: {most} > {per_hour}"
            );
            assert!(most >= per_hour * 0.9, "{spec:?} wastes the budget");
        }
        assert_eq!((d.writes.capacity, d.writes.refill_per_sec), (60.0, 0.3));
        let p = RateLimits::public_azure();
        assert_eq!((p.reads.capacity, p.reads.refill_per_sec), (250.0, 25.0));
        assert_eq!((p.writes.capacity, p.writes.refill_per_sec), (200.0, 10.0));
        assert_eq!(OperationKind::of(&Method::POST), OperationKind::Write);
        assert_eq!(OperationKind::of(&Method::DELETE), OperationKind::Delete);
        assert_eq!(OperationKind::of(&Method::GET), OperationKind::Read);
    }

    #[test]
    fn limits_parse_from_a_flag_value() {
        let l: RateLimits = "writes=10/0.5, reads=100/2".parse().unwrap();
        assert_eq!((l.writes.capacity, l.writes.refill_per_sec), (10.0, 0.5));
        assert_eq!((l.reads.capacity, l.reads.refill_per_sec), (100.0, 2.0));
        assert_eq!(l.deletes, RateLimits::default().deletes);
        assert_eq!("".parse::<RateLimits>().unwrap(), RateLimits::default());
        for bad in [
            "writes",
            "writes=1",
            "writes=x/1",
            "writes=1/0",
            "puts=1/1",
            "reads=1/-1",
        ] {
            let err = bad.parse::<RateLimits>().unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
