//! A token bucket per coordinator key id: `burst` requests at once, refilled at `rate` per
//! second. Only verified coordinators reach it, so the map holds at most one bucket per
//! trusted key.

use std::collections::HashMap;
use std::sync::Mutex;

use shared::protocol::KeyId;
use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<KeyId, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(rate_per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate_per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; false when the bucket is empty.
    pub fn try_take(&self, key: &KeyId, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_per_key() {
        let rl = RateLimiter::new(10, 3);
        let a = KeyId("a".into());
        let b = KeyId("b".into());
        let t0 = Instant::now();
        assert!(rl.try_take(&a, t0));
        assert!(rl.try_take(&a, t0));
        assert!(rl.try_take(&a, t0));
        assert!(!rl.try_take(&a, t0));
        // Another coordinator has its own bucket.
        assert!(rl.try_take(&b, t0));
        // 100 ms at 10/s refills one token.
        let t1 = t0 + Duration::from_millis(100);
        assert!(rl.try_take(&a, t1));
        assert!(!rl.try_take(&a, t1));
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(rl.try_take(&a, t2));
        }
        assert!(!rl.try_take(&a, t2));
    }
}
