//! The login form's rate limit: per client address, at most [`MAX_FAILURES`] failed logins in
//! [`WINDOW`]; past that every login from the address is answered 429 with `Retry-After`
//! until its window ends, without looking at the token. A successful login clears the
//! address's count. IPv6 clients are counted per /64 (one host usually holds the whole /64).
//!
//! Bounded memory: at most [`MAX_ADDRESSES`] addresses are remembered. When the table is full
//! the expired windows go first, then the oldest window; an attacker with many addresses can
//! so push an address out early, which costs them more addresses than guessing from it would.
//! The clock is an argument (`now`), so the table test needs no sleep.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failed logins an address may make per window.
pub const MAX_FAILURES: u32 = 5;
/// The window: from an address's first failure, one minute.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at once (each entry is a few dozen bytes: well under 1 MB).
pub const MAX_ADDRESSES: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    failures: u32,
}

/// The failed-login counts, per client address.
#[derive(Debug)]
pub struct LoginLimit {
    table: Mutex<HashMap<IpAddr, Window>>,
    max_failures: u32,
    window: Duration,
    capacity: usize,
}

impl Default for LoginLimit {
    fn default() -> Self {
        LoginLimit::new(MAX_FAILURES, WINDOW, MAX_ADDRESSES)
    }
}

/// What an address is counted as: itself for IPv4, its /64 for IPv6.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

impl LoginLimit {
    pub fn new(max_failures: u32, window: Duration, capacity: usize) -> LoginLimit {
        LoginLimit {
            table: Mutex::new(HashMap::new()),
            max_failures,
            window,
            capacity: capacity.max(1),
        }
    }

    /// `Err(retry_after)` if `ip` has used up its failures and must wait that long; `Ok(())`
    /// if a login may be tried.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let key = bucket(ip);
        match t.get(&key).copied() {
            Some(w) if now.saturating_duration_since(w.start) >= self.window => {
                t.remove(&key);
                Ok(())
            }
            Some(w) if w.failures >= self.max_failures => {
                Err(self.window - now.saturating_duration_since(w.start))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let key = bucket(ip);
        let window = self.window;
        if !t.contains_key(&key) && t.len() >= self.capacity {
            t.retain(|_, w| now.saturating_duration_since(w.start) < window);
            if t.len() >= self.capacity {
                let oldest = t.iter().min_by_key(|(_, w)| w.start).map(|(k, _)| *k);
                if let Some(k) = oldest {
                    t.remove(&k);
                }
            }
        }
        let w = t.entry(key).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now.saturating_duration_since(w.start) >= window {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    /// A successful login from `ip`: its count starts again.
    pub fn succeeded(&self, ip: IpAddr) {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&bucket(ip));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug)]
    enum Step {
        /// A login attempt at t seconds from `ip`: is it allowed (`None`) or refused with
        /// this Retry-After in seconds; if allowed, did the token match?
        Try(u64, &'static str, Option<u64>, bool),
    }
    use Step::Try;

    const A: &str = "192.0.2.1";
    const B: &str = "192.0.2.2";
    const V6A: &str = "2001:db8:1:2::1";
    const V6B: &str = "2001:db8:1:2:ffff::9";
    const V6C: &str = "2001:db8:1:3::1";

    fn run(steps: &[Step]) {
        let limit = LoginLimit::default();
        let t0 = Instant::now();
        for (i, Try(at, ip, refused, ok)) in steps.iter().copied().enumerate() {
            let now = t0 + Duration::from_secs(at);
            let ip: IpAddr = ip.parse().unwrap();
            let got = limit.check(ip, now).err().map(|d| d.as_secs());
            assert_eq!(got, refused, "step {i}: {:?}", steps[i]);
            if got.is_none() {
                if ok {
                    limit.succeeded(ip);
                } else {
                    limit.failed(ip, now);
                }
            }
        }
    }

    #[test]
    fn five_failures_a_minute_then_429_until_the_window_ends() {
        run(&[
            Try(0, A, None, false),
            Try(1, A, None, false),
            Try(2, A, None, false),
            Try(3, A, None, false),
            Try(4, A, None, false),
            // The sixth try is refused without looking at the token, even the right one.
            Try(5, A, Some(55), true),
            Try(59, A, Some(1), false),
            // Another address is not affected.
            Try(10, B, None, false),
            // The window (from the first failure) is over: A may try again.
            Try(60, A, None, false),
            Try(61, A, None, true),
        ]);
    }

    #[test]
    fn a_success_clears_the_count() {
        run(&[
            Try(0, A, None, false),
            Try(1, A, None, false),
            Try(2, A, None, false),
            Try(3, A, None, false),
            Try(4, A, None, true),
            Try(5, A, None, false),
            Try(6, A, None, false),
            Try(7, A, None, false),
            Try(8, A, None, false),
            Try(9, A, None, false),
            Try(10, A, Some(55), false),
        ]);
    }

    #[test]
    fn ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4() {
        run(&[
            Try(0, V6A, None, false),
            Try(0, V6B, None, false),
            Try(0, V6A, None, false),
            Try(0, V6B, None, false),
            Try(0, V6A, None, false),
            Try(1, V6B, Some(59), false),
            Try(1, V6C, None, false),
            Try(2, "::ffff:192.0.2.1", None, false),
            Try(2, A, None, false),
            Try(2, A, None, false),
            Try(2, A, None, false),
            Try(2, A, None, false),
            Try(3, "::ffff:192.0.2.1", Some(59), false),
        ]);
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_oldest_first() {
        let limit = LoginLimit::new(2, WINDOW, 3);
        let t0 = Instant::now();
        let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
        for n in 1..=3 {
            limit.failed(ip(n), t0 + Duration::from_secs(u64::from(n)));
            limit.failed(ip(n), t0 + Duration::from_secs(u64::from(n)));
        }
        assert_eq!(limit.len(), 3);
        assert!(limit.check(ip(1), t0 + Duration::from_secs(5)).is_err());
        // A fourth address pushes out the oldest window (address 1) only.
        limit.failed(ip(4), t0 + Duration::from_secs(5));
        assert_eq!(limit.len(), 3);
        assert!(limit.check(ip(1), t0 + Duration::from_secs(5)).is_ok());
        assert!(limit.check(ip(2), t0 + Duration::from_secs(5)).is_err());
        // Expired windows go before any live one.
        let later = t0 + Duration::from_secs(63);
        limit.failed(ip(5), later);
        assert_eq!(limit.len(), 2, "windows of 2 and 3 are over at t=63");
        assert!(limit.check(ip(4), later).is_ok());
        for n in 10..200 {
            limit.failed(ip(n), later);
        }
        assert_eq!(limit.len(), 3);
    }
}
