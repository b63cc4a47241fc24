//! The coordinator's side of the witness protocol: one HTTPS client per witness (keep-alive,
//! TLS pinned when configured, a per-request timeout), asked in parallel; answers are read
//! with a size bound and checked with `shared::protocol::open_vote` before they count.

use std::time::{Duration, Instant};

use bytes::Bytes;
use shared::protocol::{Envelope, Expected, MAX_ENVELOPE_BYTES, RequestHash, Vote};

use crate::config::WitnessConfig;

pub mod reliability;
use crate::store::VoteRecord;

/// One configured witness and its connection pool.
pub struct WitnessClient {
    pub config: WitnessConfig,
    http: reqwest::Client,
    vote_url: String,
    reliability: std::sync::Arc<std::sync::Mutex<reliability::Window>>,
}

impl std::fmt::Debug for WitnessClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitnessClient")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

/// The HTTPS client for a witness could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("witness {witness}: cannot build HTTPS client: {source}")]
pub struct ClientError {
    pub witness: String,
    #[source]
    pub source: reqwest::Error,
}

/// Why a witness gave no vote that counts, sorted by what the operator can do about it
/// (readiness turns each into a reason with a fix). Its `Display` is what the vote's history
/// records (`no answer: …`, `invalid: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// No TCP connection (refused, unreachable) or no answer in time.
    #[error("{0}")]
    Unreachable(String),
    /// The TLS handshake failed: a certificate pin that does not match, or not TLS at all.
    #[error("{0}")]
    Tls(String),
    /// Any other transport failure (connection reset mid-answer, HTTP framing).
    #[error("{0}")]
    Request(String),
    #[error("answer larger than {MAX_ENVELOPE_BYTES} bytes")]
    TooLarge,
    /// The witness answered with a refusal: its stable `code` (`unknown_coordinator`,
    /// `target_not_allowed`, `stale`, …) and reason, and for `stale` the request's skew
    /// against the witness's clock.
    #[error("witness refused the request: HTTP {status}: {code}: {reason}")]
    Refused {
        status: u16,
        code: String,
        reason: String,
        skew_ms: Option<i64>,
    },
    /// An answer came, but it is not a valid vote for this request: the protocol's stable
    /// code (`bad_signature`, `wrong_witness`, …) and message.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
}

impl Failure {
    /// A transport failure: no answer was read at all.
    pub fn is_silence(&self) -> bool {
        matches!(
            self,
            Failure::Unreachable(_) | Failure::Tls(_) | Failure::Request(_) | Failure::TooLarge
        )
    }
}

/// What asking one witness produced, already verified.
#[derive(Debug, Clone)]
pub struct Answer {
    pub witness: String,
    /// The stable code of why the answer is invalid (`ProtocolError::code`), for metrics.
    pub invalid_code: Option<&'static str>,
    pub vote: Option<Vote>,
    /// Why there is no vote that counts (`None` exactly when `vote` is `Some`).
    pub failure: Option<Failure>,
    pub record: VoteRecord,
    pub latency: Duration,
    /// When the answer arrived (Unix ms, the coordinator's clock): with the vote's
    /// `probed_at_ms` it estimates the witness's clock skew.
    pub received_at_ms: u64,
}

impl Answer {
    /// The witness's clock minus the coordinator's, as far as this answer tells (± the round
    /// trip): from the vote's timestamp, or from a `stale` refusal.
    pub fn skew_ms(&self) -> Option<i64> {
        if let Some(v) = &self.vote {
            return Some(v.probed_at_ms as i64 - self.received_at_ms as i64);
        }
        match &self.failure {
            // skew_ms there is issued_at (ours) minus the witness's now.
            Some(Failure::Refused {
                skew_ms: Some(s), ..
            }) => Some(-s),
            _ => None,
        }
    }
}

/// A witness's refusal body: `{"error": code, "reason": text, "skew_ms"?: n}`.
#[derive(serde::Deserialize)]
struct RefusalBody {
    error: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    skew_ms: Option<i64>,
}

/// What `GET /v1/identity` says about a witness.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct Identity {
    pub protocol_version: u32,
    pub key_id: String,
    pub public_key: String,
    pub cert_sha256: String,
    /// The witness's clock when it answered (absent from witnesses older than readiness).
    #[serde(default)]
    pub time_ms: Option<u64>,
}

/// How often a witness's reliability gauges are recomputed.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(5);

/// The largest identity answer read.
const MAX_IDENTITY_BYTES: usize = 4096;

impl WitnessClient {
    /// A client whose reliability window lives in `registry` (kept across reloads).
    pub fn sharing(
        config: WitnessConfig,
        registry: &reliability::Registry,
    ) -> Result<WitnessClient, ClientError> {
        let window = registry.window(&config.name);
        let mut c = WitnessClient::new(config)?;
        c.reliability = window;
        Ok(c)
    }

    pub fn new(config: WitnessConfig) -> Result<WitnessClient, ClientError> {
        let tls = shared::tls::pinned_client_config(config.cert_sha256);
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(8)
            .tcp_nodelay(true)
            // A witness answers on /v1/vote or not at all: never follow it elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| ClientError {
                witness: config.name.clone(),
                source,
            })?;
        Ok(WitnessClient {
            vote_url: format!("{}/v1/vote", config.url),
            config,
            http,
            reliability: Default::default(),
        })
    }

    /// Reads an answer's body up to `limit` bytes.
    async fn body(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, Failure> {
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify_reqwest(&e))? {
            if buf.len() + chunk.len() > limit {
                return Err(Failure::TooLarge);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    }

    /// Sends the signed request; returns the raw answer bytes (bounded) or why there are none.
    async fn post(&self, body: Bytes) -> Result<Vec<u8>, Failure> {
        let resp = self
            .http
            .post(&self.vote_url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| classify_reqwest(&e))?;
        let status = resp.status();
        let buf = Self::body(resp, MAX_ENVELOPE_BYTES).await?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<RefusalBody>(&buf) {
                Ok(b) => Failure::Refused {
                    status: status.as_u16(),
                    code: b.error.chars().take(64).collect(),
                    reason: b.reason.chars().take(300).collect(),
                    skew_ms: b.skew_ms,
                },
                Err(_) => Failure::Refused {
                    status: status.as_u16(),
                    code: "unknown".into(),
                    reason: String::from_utf8_lossy(&buf[..buf.len().min(300)]).into_owned(),
                    skew_ms: None,
                },
            });
        }
        Ok(buf)
    }

    /// `GET /v1/identity` over the same pinned TLS: the witness's key, certificate
    /// fingerprint and clock. Harmless; costs the witness no probe.
    pub async fn identity(&self) -> Result<Identity, Failure> {
        let resp = self
            .http
            .get(format!("{}/v1/identity", self.config.url))
            .send()
            .await
            .map_err(|e| classify_reqwest(&e))?;
        let status = resp.status();
        let buf = Self::body(resp, MAX_IDENTITY_BYTES).await?;
        if !status.is_success() {
            return Err(Failure::Request(format!(
                "/v1/identity answered HTTP {status}"
            )));
        }
        shared::protocol::from_json_object(&buf).map_err(|e| Failure::Invalid {
            code: "malformed",
            message: format!("/v1/identity: {e}"),
        })
    }

    /// This witness's reliability over the sliding window.
    pub fn reliability(&self, now: Instant) -> reliability::Summary {
        self.reliability
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .summary(now)
    }

    /// Sets this witness's reliability gauges, at most once per [`PUBLISH_EVERY`]: many
    /// services ask the same witness, and the window is worth summarising once.
    pub fn publish_reliability(&self, m: &crate::metrics::Metrics) {
        let now = Instant::now();
        let mut w = self.reliability.lock().unwrap_or_else(|e| e.into_inner());
        if !w.due(now, PUBLISH_EVERY) {
            return;
        }
        let s = w.summary(now);
        drop(w);
        let l = crate::metrics::WitnessLabel {
            witness: self.config.name.clone(),
        };
        // A ratio without samples is left as it was rather than shown as 0.
        let set = |family: &prometheus_client::metrics::family::Family<
            crate::metrics::WitnessLabel,
            crate::metrics::FloatGauge,
        >,
                   v: Option<f64>| {
            if let Some(v) = v {
                family.get_or_create(&l).set(v);
            }
        };
        set(&m.witness_answer_ratio, s.answer_rate);
        set(&m.witness_latency_p50, s.latency_p50_ms.map(|v| v / 1000.0));
        set(&m.witness_latency_p99, s.latency_p99_ms.map(|v| v / 1000.0));
        set(&m.witness_disagreement_ratio, s.disagreement_rate);
    }

    /// Notes whether this witness's valid vote agreed with the round's majority.
    pub fn note_agreement(&self, agreed: bool) {
        self.reliability
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .note_agreement(Instant::now(), agreed);
    }

    /// Asks this witness and verifies the answer against the request it answers.
    pub async fn ask(
        &self,
        request_json: &str,
        body: Bytes,
        hash: &RequestHash,
        service: &str,
        round: u64,
    ) -> Answer {
        let start = Instant::now();
        let result = self.post(body).await;
        let latency = start.elapsed();
        let mut record = VoteRecord {
            witness: self.config.name.clone(),
            witness_key_id: self.config.key_id.to_string(),
            request_envelope: request_json.to_string(),
            vote_envelope: None,
            valid: false,
            verdict: None,
            error: None,
            latency_ms: Some(latency.as_secs_f64() * 1000.0),
        };
        let mut invalid_code = None;
        let mut failure = None;
        let vote = match result {
            Err(e) => {
                record.error = Some(format!("no answer: {e}"));
                failure = Some(e);
                None
            }
            Ok(raw) => {
                let checked = open_raw_vote(&raw, &self.config, hash, service, round);
                record.vote_envelope = Some(raw);
                match checked {
                    Ok(v) => {
                        record.valid = true;
                        record.verdict = Some(v.verdict.to_string());
                        Some(v)
                    }
                    Err(e) => {
                        invalid_code = Some(e.code());
                        record.error = Some(format!("invalid: {e}"));
                        failure = Some(Failure::Invalid {
                            code: e.code(),
                            message: e.to_string(),
                        });
                        None
                    }
                }
            }
        };
        self.reliability
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .note_answer(Instant::now(), vote.is_some(), latency);
        Answer {
            witness: self.config.name.clone(),
            invalid_code,
            vote,
            failure,
            record,
            latency,
            received_at_ms: shared::unix_ms(std::time::SystemTime::now()),
        }
    }
}

/// A vote request signed once and sent to every witness asked.
#[derive(Clone, Debug)]
pub struct SignedRequest {
    pub body: Bytes,
    /// The envelope as text, as the history keeps it.
    pub json: String,
    pub hash: RequestHash,
    pub round: u64,
}

fn random_nonce() -> String {
    let mut n = [0u8; shared::protocol::NONCE_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut n)
        .expect("the OS random source is available");
    hex::encode(n)
}

/// Signs "can you reach `target`?" for `service`'s `round`, issued `now_ms`.
pub fn sign_request(
    key: &ed25519_dalek::SigningKey,
    key_id: &shared::protocol::KeyId,
    service: &str,
    round: u64,
    now_ms: u64,
    target: &shared::probe::ProbeSpec,
) -> SignedRequest {
    let request = shared::protocol::VoteRequest {
        version: shared::protocol::PROTOCOL_VERSION,
        coordinator: key_id.clone(),
        service: service.to_string(),
        round,
        nonce: random_nonce(),
        issued_at_ms: now_ms,
        target: target.clone(),
    };
    let (envelope, hash) = request.sign(key);
    let body = Bytes::from(envelope.to_json());
    SignedRequest {
        json: String::from_utf8_lossy(&body).into_owned(),
        body,
        hash,
        round,
    }
}

/// Asks every witness of `clients` at once; answers in the same order.
pub async fn ask_all<'a>(
    clients: impl Iterator<Item = &'a std::sync::Arc<WitnessClient>>,
    req: &SignedRequest,
    service: &str,
) -> Vec<Answer> {
    let asks = clients.map(|w| w.ask(&req.json, req.body.clone(), &req.hash, service, req.round));
    futures::future::join_all(asks).await
}

/// Checks raw answer bytes: envelope shape, signature by the pinned key, bound to `hash`.
/// Also what `verify-history` runs on stored votes.
pub fn open_raw_vote(
    raw: &[u8],
    witness: &WitnessConfig,
    hash: &RequestHash,
    service: &str,
    round: u64,
) -> Result<Vote, shared::protocol::ProtocolError> {
    let env = Envelope::from_json(raw)?;
    shared::protocol::open_vote(
        &env,
        &Expected {
            witness_key: &witness.key,
            request_hash: hash,
            service,
            round,
        },
    )
}

/// Sorts a transport error: a TLS failure (a certificate pin that does not match, a server
/// that does not speak TLS) is told apart from silence, since its fix differs.
fn classify_reqwest(e: &reqwest::Error) -> Failure {
    let mut text = describe_reqwest(e);
    // rustls shows a verifier's own error wrapped (`Other(OtherError(…))`): keep our words.
    if let Some(at) = text.find("certificate pin mismatch") {
        let kind = text
            .split(':')
            .next()
            .unwrap_or("cannot connect")
            .to_string();
        text = format!("{kind}: {}", text[at..].trim_end_matches(')'));
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
        || lower.contains("invalidcontenttype")
        || lower.contains("corrupt message")
    {
        Failure::Tls(text)
    } else if e.is_timeout() || e.is_connect() {
        Failure::Unreachable(text)
    } else {
        Failure::Request(text)
    }
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut src = e.source();
    // The innermost cause is the useful one ("connection refused", "certificate …").
    let mut last = None;
    while let Some(s) = src {
        last = Some(s.to_string());
        src = s.source();
    }
    if let Some(l) = last {
        msg.push_str(": ");
        msg.push_str(&l);
    }
    msg
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The parsing path of a vote against the committed protocol vectors: the vote is
    //! accepted, every vote refusal vector (an array where the protocol says object) is
    //! `malformed` and so never counts.

    use super::*;

    macro_rules! vector {
        ($name:literal) => {
            include_str!(concat!("../../../tests/data/protocol-v1/", $name))
        };
    }

    fn vector_witness() -> WitnessConfig {
        let seed: [u8; 32] = hex::decode(vector!("witness.seed.hex").trim())
            .unwrap()
            .try_into()
            .unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        WitnessConfig {
            name: "w1".into(),
            url: "https://127.0.0.1:1".into(),
            key,
            key_id: shared::protocol::KeyId::of(&key),
            cert_sha256: None,
            timeout: Duration::from_secs(1),
            retired: Vec::new(),
        }
    }

    fn open(raw: &str) -> Result<Vote, shared::protocol::ProtocolError> {
        let hash: [u8; 32] = hex::decode(vector!("request.hash.hex").trim())
            .unwrap()
            .try_into()
            .unwrap();
        open_raw_vote(
            raw.as_bytes(),
            &vector_witness(),
            &RequestHash(hash),
            "www",
            7,
        )
    }

    #[test]
    fn the_vote_vector_opens_and_every_vote_refusal_vector_is_malformed() {
        open(vector!("vote.envelope.json")).unwrap();
        for raw in [
            vector!("refused/vote-envelope-array.envelope.json"),
            vector!("refused/vote-payload-array.envelope.json"),
            vector!("refused/vote-evidence-array.envelope.json"),
        ] {
            let e = open(raw).unwrap_err();
            assert_eq!(e.code(), "malformed", "{e}");
            assert!(
                e.to_string()
                    .contains("must be a JSON object, got an array"),
                "{e}"
            );
        }
    }
}
