//! Dashboard sessions: a login turns one of the API's tokens into a random session id kept
//! in memory (never the token itself), with the role the token grants, a CSRF token for the
//! session's forms, and an expiry. A restart logs everybody out.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom as _, SystemRandom};

use crate::api::Role;

/// Sessions held at once. A login past it first drops the expired ones, then the one that
/// expires soonest: the table never grows past this, whatever a client sends.
pub const MAX_SESSIONS: usize = 1024;

/// The cookie's name.
pub const COOKIE: &str = "quorate_session";

/// One logged-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    pub role: Role,
    /// Sent back in every form of the session; a state-changing POST without it is refused.
    pub csrf: String,
    pub expires: Instant,
}

#[derive(Debug)]
pub struct Sessions {
    table: Mutex<HashMap<String, Session>>,
    ttl: Duration,
    rng: SystemRandom,
}

/// The system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct NoRandom;

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            table: Mutex::new(HashMap::new()),
            ttl,
            rng: SystemRandom::new(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// 32 random bytes, hex: a session id or a CSRF token.
    fn random(&self) -> Result<String, NoRandom> {
        let mut b = [0u8; 32];
        self.rng.fill(&mut b).map_err(|_| NoRandom)?;
        Ok(hex::encode(b))
    }

    /// A new session for `role`: its id (the cookie's value) and the session.
    pub fn create(&self, role: Role, now: Instant) -> Result<(String, Session), NoRandom> {
        let id = self.random()?;
        let session = Session {
            role,
            csrf: self.random()?,
            expires: now + self.ttl,
        };
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if t.len() >= MAX_SESSIONS {
            t.retain(|_, s| s.expires > now);
        }
        if t.len() >= MAX_SESSIONS {
            let soonest = t
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone());
            if let Some(k) = soonest {
                t.remove(&k);
            }
        }
        t.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// The live session with this id; an expired one is removed and is `None`.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        match t.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                t.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The value of cookie `name` in a `Cookie` header, if present.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_session_expires_and_is_then_forgotten() {
        let s = Sessions::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let (id, sess) = s.create(Role::Read, t0).unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, sess.csrf);
        assert!(s.get(&id, t0 + Duration::from_secs(9)).is_some());
        assert!(s.get(&id, t0 + Duration::from_secs(10)).is_none());
        assert_eq!(s.len(), 0);
        assert!(s.get("nope", t0).is_none());
    }

    #[test]
    fn the_table_is_bounded() {
        let s = Sessions::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..(MAX_SESSIONS + 10) {
            s.create(Role::Admin, t0 + Duration::from_millis(i as u64))
                .unwrap();
        }
        assert_eq!(s.len(), MAX_SESSIONS);
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let h = "a=1; quorate_session=abc; quorate_session_x=zzz";
        assert_eq!(cookie(h, COOKIE), Some("abc"));
        assert_eq!(cookie("quorate_session_x=zzz", COOKIE), None);
    }
}
