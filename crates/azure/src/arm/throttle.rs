//! Client-side token buckets per ARM endpoint host and operation kind, so the operator stays
//! inside ARM's per-subscription budget instead of discovering it through 429s.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use http::Method;

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

impl Default for RateLimits {
    /// ARM's published per-subscription, per-principal numbers: reads 250 / 25 per s,
    /// writes 200 / 10 per s, deletes 200 / 10 per s.
    fn default() -> Self {
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
}

impl RateLimits {
    fn spec(&self, kind: OperationKind) -> BucketSpec {
        match kind {
            OperationKind::Read => self.reads,
            OperationKind::Write => self.writes,
            OperationKind::Delete => self.deletes,
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

/// Buckets per (endpoint host, operation kind), shared by every client of one process.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<(String, OperationKind), TokenBucket>>,
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
        host: &str,
        kind: OperationKind,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        b.entry((host.to_string(), kind))
            .or_insert_with(|| TokenBucket::new(self.limits.spec(kind), now))
            .try_take(now)
    }

    /// Wait until a token is available, then take it.
    pub async fn acquire(&self, host: &str, kind: OperationKind) {
        loop {
            match self.try_acquire(host, kind, Instant::now()) {
                Ok(()) => return,
                Err(wait) => {
                    tracing::debug!(host, ?kind, ?wait, "client-side ARM rate limit");
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

    #[test]
    fn limiter_keeps_hosts_and_kinds_apart() {
        let limits = RateLimits {
            reads: BucketSpec {
                capacity: 1.0,
                refill_per_sec: 1.0,
            },
            ..RateLimits::default()
        };
        let l = RateLimiter::new(limits);
        let t = Instant::now();
        assert!(l.try_acquire("a", OperationKind::Read, t).is_ok());
        assert!(l.try_acquire("a", OperationKind::Read, t).is_err());
        assert!(l.try_acquire("b", OperationKind::Read, t).is_ok());
        assert!(l.try_acquire("a", OperationKind::Write, t).is_ok());
    }

    #[test]
    fn defaults_are_arms_published_numbers() {
        let d = RateLimits::default();
        assert_eq!((d.reads.capacity, d.reads.refill_per_sec), (250.0, 25.0));
        assert_eq!((d.writes.capacity, d.writes.refill_per_sec), (200.0, 10.0));
        assert_eq!(
            (d.deletes.capacity, d.deletes.refill_per_sec),
            (200.0, 10.0)
        );
        assert_eq!(OperationKind::of(&Method::POST), OperationKind::Write);
        assert_eq!(OperationKind::of(&Method::DELETE), OperationKind::Delete);
        assert_eq!(OperationKind::of(&Method::GET), OperationKind::Read);
    }
}
