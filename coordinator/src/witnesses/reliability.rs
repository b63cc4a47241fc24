//! Per-witness reliability over a sliding window: how often it answered with a valid vote,
//! how fast (p50/p99 of the answers that came), and how often its verdict disagreed with the
//! round's majority. Kept in memory per witness client; an operator sees the flaky witness
//! in the API and `/metrics` before it matters.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How far back the window looks.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// At most this many samples of each kind are kept (the oldest go first).
pub const MAX_SAMPLES: usize = 4096;

/// Every witness's window by name, for the whole process: a witness client made again by a
/// reload keeps its history, and the API reads the windows from here.
#[derive(Clone, Debug, Default)]
pub struct Registry(Arc<Mutex<BTreeMap<String, Arc<Mutex<Window>>>>>);

impl Registry {
    /// The window of `witness`, made on first use.
    pub fn window(&self, witness: &str) -> Arc<Mutex<Window>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(witness.to_string())
            .or_default()
            .clone()
    }

    /// `witness`'s summary now (an empty one for a witness never asked).
    pub fn summary(&self, witness: &str, now: Instant) -> Summary {
        let w = self.window(witness);
        let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
        w.summary(now)
    }
}

#[derive(Debug, Default)]
pub struct Window {
    /// (when, valid vote?, latency).
    answers: VecDeque<(Instant, bool, Duration)>,
    /// (when, agreed with the majority?).
    agreements: VecDeque<(Instant, bool)>,
    published: Option<Instant>,
}

/// The window in numbers. Ratios are `None` while there is nothing to divide by.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Requests asked in the window.
    pub asked: usize,
    /// Share of them answered with a valid vote.
    pub answer_rate: Option<f64>,
    /// Latency of the valid answers, milliseconds.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Valid votes in rounds that had a majority, and the share that disagreed with it.
    pub compared: usize,
    pub disagreement_rate: Option<f64>,
    pub window_s: u64,
}

fn trim<T>(q: &mut VecDeque<(Instant, T)>, now: Instant)
where
    T: Copy,
{
    while q.len() > MAX_SAMPLES
        || q.front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
    {
        q.pop_front();
    }
}

impl Window {
    pub fn note_answer(&mut self, now: Instant, valid: bool, latency: Duration) {
        self.answers.push_back((now, valid, latency));
        while self.answers.len() > MAX_SAMPLES
            || self
                .answers
                .front()
                .is_some_and(|(t, _, _)| now.duration_since(*t) > WINDOW)
        {
            self.answers.pop_front();
        }
    }

    /// Whether a summary is due for publishing (at most once per `every`); marks it done.
    pub fn due(&mut self, now: Instant, every: Duration) -> bool {
        if self
            .published
            .is_some_and(|t| now.duration_since(t) < every)
        {
            return false;
        }
        self.published = Some(now);
        true
    }

    pub fn note_agreement(&mut self, now: Instant, agreed: bool) {
        self.agreements.push_back((now, agreed));
        trim(&mut self.agreements, now);
    }

    pub fn summary(&mut self, now: Instant) -> Summary {
        trim(&mut self.agreements, now);
        while self
            .answers
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) > WINDOW)
        {
            self.answers.pop_front();
        }
        let asked = self.answers.len();
        let mut lat: Vec<f64> = self
            .answers
            .iter()
            .filter(|(_, ok, _)| *ok)
            .map(|(_, _, l)| l.as_secs_f64() * 1000.0)
            .collect();
        lat.sort_by(f64::total_cmp);
        let ratio = |n: usize, d: usize| (d > 0).then(|| n as f64 / d as f64);
        let compared = self.agreements.len();
        let disagreed = self.agreements.iter().filter(|(_, a)| !a).count();
        Summary {
            asked,
            answer_rate: ratio(lat.len(), asked),
            latency_p50_ms: percentile(&lat, 0.50),
            latency_p99_ms: percentile(&lat, 0.99),
            compared,
            disagreement_rate: ratio(disagreed, compared),
            window_s: WINDOW.as_secs(),
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_percentiles_over_the_window() {
        let t0 = Instant::now();
        let mut w = Window::default();
        for i in 1..=100u64 {
            w.note_answer(t0, i % 10 != 0, Duration::from_millis(i));
        }
        for i in 0..20 {
            w.note_agreement(t0, i % 4 != 0);
        }
        let s = w.summary(t0);
        assert_eq!(s.asked, 100);
        assert_eq!(s.answer_rate, Some(0.9));
        // 90 valid answers, latencies 1..=99 without the multiples of 10: the 45th is 49.
        assert_eq!(s.latency_p50_ms, Some(49.0));
        assert_eq!(s.latency_p99_ms, Some(99.0));
        assert_eq!(s.compared, 20);
        assert_eq!(s.disagreement_rate, Some(0.25));
    }

    #[test]
    fn old_samples_leave_the_window_and_the_count_is_bounded() {
        let t0 = Instant::now();
        let mut w = Window::default();
        w.note_answer(t0, false, Duration::from_millis(5));
        let later = t0 + WINDOW + Duration::from_secs(1);
        w.note_answer(later, true, Duration::from_millis(7));
        let s = w.summary(later);
        assert_eq!((s.asked, s.answer_rate), (1, Some(1.0)));
        for _ in 0..MAX_SAMPLES + 10 {
            w.note_answer(later, true, Duration::from_millis(1));
        }
        assert_eq!(w.summary(later).asked, MAX_SAMPLES);
        assert_eq!(Window::default().summary(t0).answer_rate, None);
    }
}
