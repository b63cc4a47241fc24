//! The service task's half of mesh-speed detection (the pure half is `failover::mesh`): what
//! the task knows of each witness (its latest answer, its requests in flight, whether it has
//! gone silent), the coordinator's own probe as a shareable future, and the round future that
//! gathers a round's answers and ends as soon as its outcome is settled.
//!
//! Every request and probe runs in its own tokio task and is shared: the task's loop never
//! waits on the network, so its slots keep their schedule whatever a round waits for, and a
//! confirmation round can await a request that was already in flight instead of sending a
//! new one and waiting a second full timeout.

use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use crate::failover::{Observation, Policy, VoteTally, mesh};
use crate::store::VoteRecord;
use crate::witnesses::{Answer, Failure, WitnessClient};

pub(super) type AnswerFut = Shared<BoxFuture<'static, Answer>>;
pub(super) type ProbeFut = Shared<BoxFuture<'static, Probed>>;

/// The coordinator's own probes of one moment.
#[derive(Clone, Copy, Debug)]
pub(super) struct Probed {
    pub primary_up: bool,
    pub backup_up: bool,
    /// How long the probe of the primary took.
    pub primary_took: Duration,
    /// When the probes started.
    pub started: Instant,
}

/// A witness's answer on its way to the service task: the witness (its index in the
/// service's list) and the request's id.
#[derive(Debug)]
pub(super) struct Arrived {
    pub j: usize,
    pub id: u64,
    pub answer: Answer,
}

/// What the forwarding tasks tell the service task.
#[derive(Debug)]
pub(super) enum Heard {
    /// A witness answered (or failed to).
    Answer(Box<Arrived>),
    /// Witness `j`'s request `id` has not answered within its usual time.
    Overdue { j: usize, id: u64 },
    /// Our own slot-0 probes are in.
    Own(Probed),
    /// Our own slot-0 probe of the primary has not answered within its usual time.
    OwnOverdue,
}

/// Recent answer times of a vantage point (ms), for [`mesh::overdue_after`].
#[derive(Default)]
pub(super) struct Recent(std::collections::VecDeque<u64>);

impl Recent {
    pub fn push(&mut self, took: Duration) {
        if self.0.len() == mesh::RECENT {
            self.0.pop_front();
        }
        self.0.push_back(took.as_millis() as u64);
    }

    /// When a probe with this `timeout` is overdue, if it can be.
    pub fn overdue_after(&self, timeout: Duration) -> Option<Duration> {
        let recent: Vec<u64> = self.0.iter().copied().collect();
        mesh::overdue_after(&recent, timeout.as_millis() as u64).map(Duration::from_millis)
    }
}

/// A request to a witness not answered yet.
pub(super) struct InFlight {
    pub id: u64,
    pub sent: Instant,
    /// The signed request as the history keeps it.
    pub json: String,
    pub answer: AnswerFut,
}

/// A witness after this many requests in a row without any answer (no connection, no reply
/// in time) is known silent: a confirmation round does not wait for it.
pub(super) const SILENT_AFTER: u32 = 2;

/// What the task knows of one witness.
#[derive(Default)]
pub(super) struct Vantage {
    /// The newest answer and its request's id.
    latest: Option<(u64, Answer)>,
    /// The newest request id whose answer a round has used.
    used: u64,
    pub inflight: Vec<InFlight>,
    /// Requests in a row that got no answer at all.
    silent: u32,
    /// How long its recent "up" votes took.
    pub recent: Recent,
    /// The last request sent (for the record of a round it has not answered).
    pub last_json: Option<String>,
}

impl Vantage {
    pub fn known_silent(&self) -> bool {
        self.silent >= SILENT_AFTER
    }

    /// Notes an answer (or the failure to get one) to request `id`; returns when that
    /// request was sent.
    pub fn arrived(&mut self, id: u64, answer: Answer) -> Option<Instant> {
        let sent = self.inflight.iter().find(|f| f.id == id).map(|f| f.sent);
        self.inflight.retain(|f| f.id != id);
        if answer.failure.as_ref().is_some_and(Failure::is_silence) {
            self.silent = self.silent.saturating_add(1);
        } else {
            self.silent = 0;
        }
        // The baseline of "usual" is how long a witness takes to find the primary up: a "down"
        // that waited out a probe timeout is not a usual answer time, and counting it would
        // blind the next suspicion.
        if answer
            .vote
            .as_ref()
            .is_some_and(|v| v.verdict == shared::protocol::Verdict::Up)
        {
            self.recent.push(answer.latency);
        }
        if self.latest.as_ref().is_none_or(|(l, _)| *l < id) {
            self.latest = Some((id, answer));
        }
        sent
    }

    /// The request in flight sent after `after` that will answer first: the oldest.
    pub fn inflight_since(&self, after: Instant) -> Option<&InFlight> {
        self.inflight
            .iter()
            .filter(|f| f.sent > after)
            .min_by_key(|f| f.id)
    }

    /// The latest answer, if no round has used it yet; marks it used.
    pub fn take_fresh(&mut self) -> Option<Answer> {
        match &self.latest {
            Some((id, a)) if *id > self.used => {
                self.used = *id;
                Some(a.clone())
            }
            _ => None,
        }
    }

    /// The newest answer (or failure to answer) that came, used by a round or not.
    pub fn latest(&self) -> Option<&Answer> {
        self.latest.as_ref().map(|(_, a)| a)
    }

    /// Marks request `id`'s answer used by a round.
    pub fn mark_used(&mut self, id: u64) {
        self.used = self.used.max(id);
    }
}

/// The record of a witness that has not answered `json` by the time a round is decided.
pub(super) fn unanswered(client: &WitnessClient, json: &str, why: String) -> Answer {
    Answer {
        witness: client.config.name.clone(),
        invalid_code: None,
        vote: None,
        failure: Some(Failure::Unreachable(why.clone())),
        record: VoteRecord {
            witness: client.config.name.clone(),
            witness_key_id: client.config.key_id.to_string(),
            request_envelope: json.to_string(),
            vote_envelope: None,
            valid: false,
            verdict: None,
            error: Some(format!("no answer: {why}")),
            latency_ms: None,
        },
        latency: Duration::ZERO,
        received_at_ms: 0,
    }
}

/// One witness's part in a round: the request it answers (sent for this round, or already in
/// flight), and whether it is known silent.
pub(super) struct Ask {
    pub j: usize,
    pub id: u64,
    pub json: String,
    pub answer: AnswerFut,
    pub silent: bool,
}

/// When a round's gathering ends.
pub(super) enum Settle {
    /// A primary-down confirmation: as soon as [`mesh::settled`].
    Confirm { policy: Policy, decisive: bool },
    /// Every answer (or its timeout): the first round after start-up.
    All,
}

/// A round whose gathering ended: its own probes and, per ask, the answer if it came.
pub(super) struct Gathered {
    pub started: Instant,
    pub probed: Probed,
    pub asks: Vec<Ask>,
    pub answers: Vec<Option<Answer>>,
}

/// Counts one answer into a tally, as the decision counts it.
pub(super) fn count(a: &Answer, t: &mut VoteTally) {
    match (&a.vote, &a.record.vote_envelope) {
        (Some(v), _) => match v.verdict {
            shared::protocol::Verdict::Up => t.up += 1,
            shared::protocol::Verdict::Down => t.down += 1,
        },
        (None, Some(_)) => t.invalid += 1,
        (None, None) => t.missing += 1,
    }
}

/// Waits for the own probe and the witnesses' answers until `settle` says the round is over.
pub(super) async fn gather(own: ProbeFut, asks: Vec<Ask>, settle: Settle) -> Gathered {
    let started = Instant::now();
    let mut answers: Vec<Option<Answer>> = vec![None; asks.len()];
    let mut pending: FuturesUnordered<_> = asks
        .iter()
        .enumerate()
        .map(|(i, a)| a.answer.clone().map(move |ans| (i, ans)))
        .collect();
    let mut own = own;
    let mut probed: Option<Probed> = None;
    loop {
        if let Some(p) = probed
            && decided(&settle, p, &asks, &answers)
        {
            break;
        }
        tokio::select! {
            p = &mut own, if probed.is_none() => probed = Some(p),
            Some((i, a)) = pending.next() => answers[i] = Some(a),
            else => break,
        }
    }
    Gathered {
        started,
        probed: probed.unwrap_or(Probed {
            primary_up: false,
            backup_up: false,
            primary_took: Duration::ZERO,
            started,
        }),
        asks,
        answers,
    }
}

fn decided(settle: &Settle, p: Probed, asks: &[Ask], answers: &[Option<Answer>]) -> bool {
    match settle {
        Settle::All => answers.iter().all(Option::is_some),
        Settle::Confirm { policy, decisive } => {
            let mut votes = VoteTally::default();
            let mut live = 0;
            for (ask, a) in asks.iter().zip(answers) {
                match a {
                    Some(a) => count(a, &mut votes),
                    None => {
                        votes.missing += 1;
                        live += u32::from(!ask.silent);
                    }
                }
            }
            let obs = Observation {
                primary_up: p.primary_up,
                backup_up: p.backup_up,
                votes,
            };
            mesh::settled(policy, &obs, live, *decisive)
        }
    }
}
