//! Token buckets shared by every worker: `rate_limit.take(key, rate, burst)`.
//!
//! The call takes one token from the bucket named `key` (refilled at `rate`
//! tokens per second up to `burst`) and returns
//! `{"allowed": bool, "remaining": int, "retry_after_seconds": int, "limit": int}`.
//!
//! Memory is bounded: at most `max_keys` buckets are kept (least-used evicted
//! first), and a bucket idle for longer than it takes to refill completely is
//! dropped, since a new full bucket is then indistinguishable from it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use parking_lot::Mutex;
use regorus::Value;

use super::{BuiltinError, arg_f64, arg_str};

pub(crate) const BUILTINS: &[(&str, usize)] = &[("rate_limit.take", 3)];

/// Limits of the bucket store.
#[derive(Debug, Clone, Copy)]
pub struct RateLimiterConfig {
    /// Most buckets kept at once; beyond it the least used are evicted.
    pub max_keys: u64,
    /// Longest time an idle bucket is kept, whatever its refill time.
    pub max_idle: Duration,
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        Self {
            max_keys: 100_000,
            max_idle: Duration::from_secs(3600),
        }
    }
}

struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

struct Cell {
    /// Time to refill from empty; the bucket may be dropped after this idle.
    idle: Duration,
    state: Mutex<Bucket>,
}

struct IdleExpiry;

impl moka::Expiry<String, Arc<Cell>> for IdleExpiry {
    fn expire_after_create(&self, _: &String, v: &Arc<Cell>, _: Instant) -> Option<Duration> {
        Some(v.idle)
    }
    fn expire_after_read(
        &self,
        _: &String,
        v: &Arc<Cell>,
        _: Instant,
        _: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        Some(v.idle)
    }
}

/// Result of taking one token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Take {
    pub allowed: bool,
    pub remaining: u64,
    pub retry_after_seconds: u64,
    pub limit: u64,
}

/// Token buckets keyed by string, shared across threads.
pub struct RateLimiter {
    buckets: Cache<String, Arc<Cell>>,
    max_idle: Duration,
}

impl RateLimiter {
    /// An empty store with the given limits.
    pub fn new(config: RateLimiterConfig) -> Self {
        Self {
            buckets: Cache::builder()
                .max_capacity(config.max_keys)
                .expire_after(IdleExpiry)
                .build(),
            max_idle: config.max_idle,
        }
    }

    /// Number of buckets currently kept (approximate, for metrics).
    pub fn len(&self) -> u64 {
        self.buckets.entry_count()
    }

    /// Whether no bucket is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a token from `key` at time `now`.
    pub fn take_at(&self, key: &str, rate: f64, burst: f64, now: Instant) -> Take {
        let idle = Duration::from_secs_f64((burst / rate).clamp(1.0, self.max_idle.as_secs_f64()));
        let cell = self.buckets.get_with_by_ref(key, || {
            Arc::new(Cell {
                idle,
                state: Mutex::new(Bucket {
                    rate,
                    burst,
                    tokens: burst,
                    last: now,
                }),
            })
        });
        let mut b = cell.state.lock();
        // A reloaded configuration changes the bucket's shape in place.
        if b.rate != rate || b.burst != burst {
            b.rate = rate;
            b.burst = burst;
            b.tokens = b.tokens.min(burst);
        }
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        let limit = burst as u64;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Take {
                allowed: true,
                remaining: b.tokens.floor() as u64,
                retry_after_seconds: 0,
                limit,
            }
        } else {
            let wait = ((1.0 - b.tokens) / rate).ceil().max(1.0);
            Take {
                allowed: false,
                remaining: 0,
                retry_after_seconds: wait as u64,
                limit,
            }
        }
    }
}

pub(crate) fn call(
    limiter: &RateLimiter,
    name: &str,
    args: &[Value],
) -> Result<Value, BuiltinError> {
    const NAME: &str = "rate_limit.take";
    if name != NAME {
        return Err(BuiltinError::Unknown(name.to_string()));
    }
    let key = arg_str(NAME, args, 0)?;
    let rate = arg_f64(NAME, args, 1)?;
    let burst = arg_f64(NAME, args, 2)?;
    if !(rate.is_finite() && rate > 0.0) {
        return Err(BuiltinError::Invalid {
            name: NAME,
            reason: format!("rate must be a positive number, got `{rate}`"),
        });
    }
    if !(burst.is_finite() && burst >= 1.0) {
        return Err(BuiltinError::Invalid {
            name: NAME,
            reason: format!("burst must be at least 1, got `{burst}`"),
        });
    }
    let t = limiter.take_at(key, rate, burst.floor(), Instant::now());
    Ok(Value::object_from_entries(vec![
        (Value::from("allowed"), Value::from(t.allowed)),
        (Value::from("limit"), Value::from(t.limit)),
        (Value::from("remaining"), Value::from(t.remaining)),
        (
            Value::from("retry_after_seconds"),
            Value::from(t.retry_after_seconds),
        ),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> RateLimiter {
        RateLimiter::new(RateLimiterConfig::default())
    }

    #[test]
    fn burst_then_deny_then_refill() {
        let l = limiter();
        let t0 = Instant::now();
        for i in 0..3 {
            let t = l.take_at("k", 1.0, 3.0, t0);
            assert!(t.allowed, "take {i} should pass");
            assert_eq!(t.remaining, 2 - i);
        }
        let denied = l.take_at("k", 1.0, 3.0, t0);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after_seconds, 1);
        let later = l.take_at("k", 1.0, 3.0, t0 + Duration::from_millis(1000));
        assert!(later.allowed);
    }

    #[test]
    fn keys_are_independent() {
        let l = limiter();
        let t0 = Instant::now();
        assert!(l.take_at("a", 1.0, 1.0, t0).allowed);
        assert!(!l.take_at("a", 1.0, 1.0, t0).allowed);
        assert!(l.take_at("b", 1.0, 1.0, t0).allowed);
    }

    #[test]
    fn retry_after_reflects_slow_rate() {
        let l = limiter();
        let t0 = Instant::now();
        assert!(l.take_at("slow", 0.1, 1.0, t0).allowed);
        let t = l.take_at("slow", 0.1, 1.0, t0);
        assert!(!t.allowed);
        assert_eq!(t.retry_after_seconds, 10);
    }

    #[test]
    fn memory_is_bounded_by_max_keys() {
        let l = RateLimiter::new(RateLimiterConfig {
            max_keys: 100,
            max_idle: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        for i in 0..5_000 {
            l.take_at(&format!("key-{i}"), 1.0, 1.0, t0);
        }
        l.buckets.run_pending_tasks();
        assert!(l.len() <= 100, "kept {} buckets", l.len());
    }

    #[test]
    fn bad_arguments_are_errors() {
        let l = limiter();
        let err = call(
            &l,
            NAME_FOR_TEST,
            &[Value::from("k"), Value::from(0.0), Value::from(1.0)],
        );
        assert!(matches!(err, Err(BuiltinError::Invalid { .. })));
        let err = call(
            &l,
            NAME_FOR_TEST,
            &[Value::from(1), Value::from(1.0), Value::from(1.0)],
        );
        assert!(matches!(
            err,
            Err(BuiltinError::Operand { position: 1, .. })
        ));
    }

    const NAME_FOR_TEST: &str = "rate_limit.take";
}
