//! The coordinator's side of the witness protocol: one HTTPS client per witness (keep-alive,
//! TLS pinned when configured, a per-request timeout), asked in parallel; answers are read
//! with a size bound and checked with `shared::protocol::open_vote` before they count.

use std::time::{Duration, Instant};

use bytes::Bytes;
use shared::protocol::{Envelope, Expected, MAX_ENVELOPE_BYTES, RequestHash, Vote};

use crate::config::WitnessConfig;
use crate::store::VoteRecord;

/// One configured witness and its connection pool.
pub struct WitnessClient {
    pub config: WitnessConfig,
    http: reqwest::Client,
    vote_url: String,
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

/// Why a witness gave no answer to look at (recorded in the vote's history as `no answer: …`).
#[derive(Debug, thiserror::Error)]
enum NoAnswer {
    /// Timeout, no connection, TLS refused: what [`describe_reqwest`] says.
    #[error("{0}")]
    Request(String),
    #[error("answer larger than {MAX_ENVELOPE_BYTES} bytes")]
    TooLarge,
    #[error("witness refused the request: HTTP {status}: {text}")]
    Refused {
        status: reqwest::StatusCode,
        text: String,
    },
}

/// What asking one witness produced, already verified.
#[derive(Debug, Clone)]
pub struct Answer {
    pub witness: String,
    /// The stable code of why the answer is invalid (`ProtocolError::code`), for metrics.
    pub invalid_code: Option<&'static str>,
    pub vote: Option<Vote>,
    pub record: VoteRecord,
    pub latency: Duration,
}

impl WitnessClient {
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
        })
    }

    /// Sends the signed request; returns the raw answer bytes (bounded) or why there are none.
    async fn post(&self, body: Bytes) -> Result<Vec<u8>, NoAnswer> {
        let mut resp = self
            .http
            .post(&self.vote_url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| NoAnswer::Request(describe_reqwest(&e)))?;
        let status = resp.status();
        let mut buf = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| NoAnswer::Request(describe_reqwest(&e)))?
        {
            if buf.len() + chunk.len() > MAX_ENVELOPE_BYTES {
                return Err(NoAnswer::TooLarge);
            }
            buf.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&buf[..buf.len().min(300)]).into_owned();
            return Err(NoAnswer::Refused { status, text });
        }
        Ok(buf)
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
        let vote = match result {
            Err(e) => {
                record.error = Some(format!("no answer: {e}"));
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
                        None
                    }
                }
            }
        };
        Answer {
            witness: self.config.name.clone(),
            invalid_code,
            vote,
            record,
            latency,
        }
    }
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
            include_str!(concat!("../../tests/data/protocol-v1/", $name))
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
