//! A channel's quiet window (`quiet = "10m"`), as a pure function of a monotonic clock in
//! milliseconds: the first notice of an event for a service goes out at once and opens the
//! window; repeats of the same event for the same service inside it are held back and counted;
//! when the window ends with some held back, the latest of them goes out carrying the count
//! (`suppressed`), and opens the next window. So a flapping service costs one notice per window
//! and event, and the latest word (a resolution, say) always arrives, at most one window late.
//!
//! Failover and failback are never held back: they go out at once, every time (flap damping in
//! the decision, `max_flips`, is what bounds them).

use std::collections::BTreeMap;

use super::event::{Event, Notice};

#[derive(Debug)]
struct Slot {
    /// When the window ends.
    until: u64,
    held: u32,
    last: Option<Notice>,
}

/// The windows of one channel.
#[derive(Debug)]
pub struct Quiet {
    window_ms: u64,
    slots: BTreeMap<(String, Event), Slot>,
}

impl Quiet {
    /// `window_ms = 0`: no window, everything goes out at once.
    pub fn new(window_ms: u64) -> Quiet {
        Quiet {
            window_ms,
            slots: BTreeMap::new(),
        }
    }

    /// A notice arrives at `now`: what to send now (`None`: held back and counted).
    pub fn offer(&mut self, n: Notice, now: u64) -> Option<Notice> {
        if self.window_ms == 0 || n.event.is_transition() {
            return Some(n);
        }
        let key = (n.service.clone(), n.event);
        match self.slots.get_mut(&key) {
            Some(slot) if now < slot.until => {
                slot.held += 1;
                slot.last = Some(n);
                None
            }
            _ => {
                self.slots.insert(
                    key,
                    Slot {
                        until: now + self.window_ms,
                        held: 0,
                        last: None,
                    },
                );
                Some(n)
            }
        }
    }

    /// The summaries whose window ended by `now` (each the latest notice held back, with the
    /// count); forgets windows that ended with nothing held.
    pub fn due(&mut self, now: u64) -> Vec<Notice> {
        let mut out = Vec::new();
        let window = self.window_ms;
        self.slots.retain(|_, slot| {
            if now < slot.until {
                return true;
            }
            match slot.last.take() {
                Some(mut n) => {
                    n.suppressed = slot.held.saturating_sub(1);
                    out.push(n);
                    // The summary opens the next window.
                    slot.until = now + window;
                    slot.held = 0;
                    true
                }
                None => false,
            }
        });
        out
    }

    /// When the next summary is due, if one is waiting.
    pub fn next_due(&self) -> Option<u64> {
        self.slots
            .values()
            .filter(|s| s.last.is_some())
            .map(|s| s.until)
            .min()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn n(service: &str, event: Event, msg: &str) -> Notice {
        Notice::new(service, event, msg, 0)
    }

    /// Feeds `(time, notice)` in order, calling `due` before each and at `end`; renders what
    /// went out as `time service event message (+suppressed)`.
    fn run(window: u64, input: &[(u64, Notice)], end: u64) -> Vec<String> {
        let mut q = Quiet::new(window);
        let mut out = Vec::new();
        let show = |t: u64, n: &Notice| {
            format!(
                "{t} {} {}{} {}{}",
                n.service,
                n.event.as_str(),
                if n.resolved { " resolved" } else { "" },
                n.message,
                if n.suppressed > 0 {
                    format!(" (+{} held back)", n.suppressed)
                } else {
                    String::new()
                }
            )
        };
        let flush = |q: &mut Quiet, t: u64, out: &mut Vec<String>| {
            while let Some(d) = q.next_due().filter(|d| *d <= t) {
                for s in q.due(d) {
                    out.push(show(d, &s));
                }
            }
        };
        for (t, notice) in input {
            flush(&mut q, *t, &mut out);
            if let Some(s) = q.offer(notice.clone(), *t) {
                out.push(show(*t, &s));
            }
        }
        flush(&mut q, end, &mut out);
        out
    }

    #[test]
    fn repeats_inside_the_window_are_counted_and_the_latest_arrives_when_it_ends() {
        let got = run(
            600,
            &[
                (0, n("www", Event::BothDown, "1")),
                (100, n("www", Event::BothDown, "2").resolved()),
                (200, n("www", Event::BothDown, "3")),
                (300, n("www", Event::BothDown, "4").resolved()),
                // Another service and another event have windows of their own.
                (310, n("api", Event::BothDown, "a")),
                (320, n("www", Event::NotReady, "b")),
                // Failover and failback always go out at once.
                (400, n("www", Event::Failover, "f1")),
                (450, n("www", Event::Failback, "f2")),
                (460, n("www", Event::Failover, "f3")),
            ],
            10_000,
        );
        assert_eq!(
            got,
            [
                "0 www both-down 1",
                "310 api both-down a",
                "320 www not-ready b",
                "400 www failover f1",
                "450 www failback f2",
                "460 www failover f3",
                // The window ended at 600: the latest (a resolution) with the count of the
                // others held back.
                "600 www both-down resolved 4 (+2 held back)",
            ]
        );
    }

    #[test]
    fn a_summary_opens_the_next_window_and_a_quiet_spell_closes_it() {
        let got = run(
            100,
            &[
                (0, n("www", Event::DnsLagging, "1")),
                (50, n("www", Event::DnsLagging, "2")),
                // After the summary at 100, this falls into the window it opened.
                (150, n("www", Event::DnsLagging, "3")),
                // The window of the summary ended at 200 with one held back (3); then quiet
                // until 500: a fresh notice goes out at once.
                (500, n("www", Event::DnsLagging, "4")),
            ],
            1000,
        );
        assert_eq!(
            got,
            [
                "0 www dns-lagging 1",
                "100 www dns-lagging 2",
                "200 www dns-lagging 3",
                "500 www dns-lagging 4",
            ]
        );
    }

    #[test]
    fn no_window_sends_everything() {
        let got = run(
            0,
            &[
                (0, n("www", Event::BothDown, "1")),
                (1, n("www", Event::BothDown, "2")),
            ],
            10,
        );
        assert_eq!(got, ["0 www both-down 1", "1 www both-down 2"]);
    }
}
