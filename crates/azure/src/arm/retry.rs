//! Retry policy: pure decisions about whether and how long to wait before trying again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};

/// Parse `Retry-After` (delta-seconds or HTTP-date, RFC 9110) or the millisecond variants Azure
/// also sends (`retry-after-ms`, `x-ms-retry-after-ms`). Dates in the past mean "now".
pub fn parse_retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    for ms_header in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = get(ms_header).and_then(|v| v.parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    let v = get("retry-after")?;
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// The shortest wait before looking at an operation again, so that `Retry-After: 0` (or a
/// date in the past) cannot turn polling into a hot loop.
pub const MIN_POLL: Duration = Duration::from_secs(1);

/// When to look at a running operation again: when Azure's `Retry-After` says, however long
/// that is (Azure knows how long its operation takes; polling sooner only spends the
/// subscription's request budget), else `default`; never sooner than [`MIN_POLL`].
pub fn poll_delay(retry_after: Option<Duration>, default: Duration) -> Duration {
    retry_after.unwrap_or(default).max(MIN_POLL)
}

/// What the previous attempt produced, as far as retrying cares.
#[derive(Debug, Clone, Copy)]
pub enum Attempt<'a> {
    /// An HTTP response arrived.
    Response {
        status: StatusCode,
        headers: &'a HeaderMap,
    },
    /// No response: connect failure, reset, timeout.
    Transport,
}

/// Bounded retries: `Retry-After` when the server gives one, else exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first; 1 disables retries.
    pub max_attempts: u32,
    /// Backoff before the second attempt (before jitter).
    pub base_delay: Duration,
    /// Cap on the computed backoff.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not slept inside the client: the error goes back to the
    /// caller (a controller requeues with the hint instead of holding a worker).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(800),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// Statuses worth retrying unchanged.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Exponential backoff for `attempt` (1-based count of attempts made), before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        self.base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay)
    }

    /// Delay before the next attempt, or `None` to stop. `attempt` is how many attempts were
    /// made (1 after the first); `jitter` in [0, 1) scales the backoff into its upper half, so
    /// callers pass `fastrand::f64()` and tests pass fixed values.
    pub fn next_delay_with(
        &self,
        attempt: u32,
        outcome: Attempt<'_>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        if let Attempt::Response { status, headers } = outcome {
            if !is_retryable_status(status) {
                return None;
            }
            if let Some(ra) = parse_retry_after(headers, now) {
                return (ra <= self.max_retry_after).then_some(ra);
            }
        }
        Some(self.jittered_backoff(attempt, jitter))
    }

    /// [`Self::backoff`] scaled into its upper half by `jitter` in [0, 1), so many callers failing
    /// together do not retry in lockstep.
    pub fn jittered_backoff(&self, attempt: u32, jitter: f64) -> Duration {
        self.backoff(attempt)
            .mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// [`Self::next_delay_with`] with the current time and random jitter.
    pub fn next_delay(&self, attempt: u32, outcome: Attempt<'_>) -> Option<Duration> {
        self.next_delay_with(attempt, outcome, Utc::now(), fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(name: &'static str, v: &'static str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(name, HeaderValue::from_static(v));
        m
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn retry_after_seconds_date_and_ms() {
        assert_eq!(
            parse_retry_after(&h("retry-after", "7"), now()),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(&h("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT"), now()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(&h("retry-after", "Wed, 21 Oct 2015 07:00:00 GMT"), now()),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after(&h("x-ms-retry-after-ms", "250"), now()),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_retry_after(&h("retry-after", "soon"), now()), None);
        assert_eq!(parse_retry_after(&HeaderMap::new(), now()), None);
    }

    #[test]
    fn polls_wait_as_long_as_retry_after_says() {
        let default = Duration::from_secs(5);
        assert_eq!(poll_delay(None, default), default);
        assert_eq!(
            poll_delay(Some(Duration::from_secs(120)), default),
            Duration::from_secs(120),
            "not capped"
        );
        assert_eq!(
            poll_delay(Some(Duration::from_secs(2)), default),
            Duration::from_secs(2)
        );
        assert_eq!(poll_delay(Some(Duration::ZERO), default), MIN_POLL);
        // A dated Retry-After an hour ahead is an hour.
        let headers = h("retry-after", "Wed, 21 Oct 2015 08:28:00 GMT");
        assert_eq!(
            poll_delay(parse_retry_after(&headers, now()), default),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn throttled_response_uses_retry_after_exactly() {
        let p = RetryPolicy::default();
        let headers = h("retry-after", "3");
        let d = p.next_delay_with(
            1,
            Attempt::Response {
                status: StatusCode::TOO_MANY_REQUESTS,
                headers: &headers,
            },
            now(),
            0.9,
        );
        assert_eq!(d, Some(Duration::from_secs(3)));
    }

    #[test]
    fn too_long_retry_after_goes_back_to_caller() {
        let p = RetryPolicy::default();
        let headers = h("retry-after", "3600");
        let out = Attempt::Response {
            status: StatusCode::SERVICE_UNAVAILABLE,
            headers: &headers,
        };
        assert_eq!(p.next_delay_with(1, out, now(), 0.0), None);
    }

    #[test]
    fn backoff_is_exponential_jittered_and_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
        };
        let empty = HeaderMap::new();
        let out = Attempt::Response {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            headers: &empty,
        };
        assert_eq!(
            p.next_delay_with(1, out, now(), 0.0),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            p.next_delay_with(1, out, now(), 1.0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            p.next_delay_with(3, out, now(), 1.0),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            p.next_delay_with(6, Attempt::Transport, now(), 1.0),
            Some(Duration::from_secs(5))
        );
        for attempt in 1..9 {
            let d = p.next_delay(attempt, out).unwrap();
            let b = p.backoff(attempt);
            assert!(d >= b / 2 && d <= b, "{d:?} outside [{:?}, {b:?}]", b / 2);
        }
    }

    #[test]
    fn attempts_are_bounded_and_client_errors_not_retried() {
        let p = RetryPolicy::default();
        let empty = HeaderMap::new();
        let busy = Attempt::Response {
            status: StatusCode::SERVICE_UNAVAILABLE,
            headers: &empty,
        };
        assert!(p.next_delay_with(3, busy, now(), 0.5).is_some());
        assert_eq!(p.next_delay_with(4, busy, now(), 0.5), None);
        let bad = Attempt::Response {
            status: StatusCode::BAD_REQUEST,
            headers: &empty,
        };
        assert_eq!(p.next_delay_with(1, bad, now(), 0.5), None);
        assert_eq!(
            RetryPolicy::none().next_delay_with(1, busy, now(), 0.5),
            None
        );
    }
}
