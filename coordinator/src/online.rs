//! `check --online`: everything `check` does, then every dependency proven with real,
//! harmless traffic, one verdict line per witness, per service and per DNS server, each with
//! the reason and the fix; the command exits non-zero on any failure. It runs the same
//! classification as the running coordinator's readiness (`crate::readiness`), once.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{Config, ServiceConfig};
use crate::dns::BuiltBackend;
use crate::failover::Side;
use crate::readiness::checks::{self, AuthoritySettings};
use crate::readiness::{self, Asked, Reason};
use crate::witnesses::{self, Failure, WitnessClient};

/// How a line came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Ok,
    /// Works, but something is not proven or not as it should be for long.
    Warn,
    Fail,
}

/// One verdict line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub mark: Mark,
    /// `witness w1`, `service www`, `dns server 127.0.0.1:53`, `coordinator`.
    pub subject: String,
    pub text: String,
    pub fix: Option<String>,
}

impl Line {
    fn ok(subject: impl Into<String>, text: impl Into<String>) -> Line {
        Line {
            mark: Mark::Ok,
            subject: subject.into(),
            text: text.into(),
            fix: None,
        }
    }

    fn fail(subject: impl Into<String>, reasons: &[Reason]) -> Line {
        Line {
            mark: Mark::Fail,
            subject: subject.into(),
            text: reasons
                .iter()
                .map(|r| r.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
            fix: Some(
                reasons
                    .iter()
                    .map(|r| r.fix.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.mark {
            Mark::Ok => "ok  ",
            Mark::Warn => "WARN",
            Mark::Fail => "FAIL",
        };
        write!(f, "{mark} {}: {}", self.subject, self.text)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n     fix: {fix}")?;
        }
        Ok(())
    }
}

/// Renders the lines and says whether all passed (warnings pass).
pub fn render(lines: &[Line]) -> (String, bool) {
    let mut out = String::new();
    for l in lines {
        out.push_str(&l.to_string());
        out.push('\n');
    }
    let failed = lines.iter().filter(|l| l.mark == Mark::Fail).count();
    out.push_str(&if failed == 0 {
        "online check passed: a failover would work as configured\n".to_string()
    } else {
        format!("online check FAILED: {failed} problem(s) above\n")
    });
    (out, failed == 0)
}

fn now_ms() -> u64 {
    shared::unix_ms(std::time::SystemTime::now())
}

/// The side whose records DNS should serve now: the stored state's, else the primary.
fn persisted_sides(config: &Config) -> Vec<(String, Side)> {
    let states = crate::store::Store::open_read_only(&config.database)
        .ok()
        .and_then(|s| s.all_states().ok())
        .unwrap_or_default();
    config
        .services
        .iter()
        .map(|svc| {
            let side = states
                .iter()
                .find(|(n, _, _)| n == &svc.name)
                .map(|(_, s, _)| s.active)
                .unwrap_or(Side::Primary);
            (svc.name.clone(), side)
        })
        .collect()
}

/// Runs every online check.
pub async fn check(config: &Config) -> Vec<Line> {
    let mut lines = vec![Line::ok(
        "coordinator",
        format!(
            "key id {} (witnesses trust {})",
            config.key_id,
            shared::keys::format_public_key(&config.signing_key.verifying_key())
        ),
    )];
    if let Some(pid) = crate::lock::lock_holder(&config.database) {
        // A warning, not a failure: on a live system the holder is normally this config's
        // own daemon. A second coordinator on the file is refused at start either way.
        lines.push(Line {
            mark: Mark::Warn,
            subject: "history".into(),
            text: format!(
                "{} is in use by a running coordinator (pid {pid}): if that is not this config's own daemon, a coordinator started with this config would be refused",
                config.database.display()
            ),
            fix: Some(
                "if pid {pid} is another coordinator, stop it or give this one its own `database`"
                    .replace("{pid}", &pid.to_string()),
            ),
        });
    }
    lines.extend(api_cert_line(
        config.api_tls.as_ref(),
        std::time::SystemTime::now(),
    ));
    let sides = persisted_sides(config);
    lines.extend(check_witnesses(config).await);
    lines.extend(check_dns(config, &sides).await);
    lines
}

/// An API certificate this close to its end is a warning: time to renew it.
pub const CERT_WARN_BEFORE: std::time::Duration = std::time::Duration::from_secs(14 * 86_400);

/// The API's certificate (`[api] tls_cert_file`) at `now`: a failure once it has expired (the
/// CLI and browsers refuse it), a warning within [`CERT_WARN_BEFORE`] of its end, else ok.
/// `None` without TLS. Pure: `now` is an argument.
pub fn api_cert_line(
    tls: Option<&crate::config::ApiTls>,
    now: std::time::SystemTime,
) -> Option<Line> {
    let tls = tls?;
    let subject = format!("api certificate {}", tls.cert_file.display());
    let Some(end) = tls.not_after else {
        return Some(Line {
            mark: Mark::Warn,
            subject,
            text: "its expiry date (notAfter) could not be read".into(),
            fix: None,
        });
    };
    let until = humantime::format_rfc3339_seconds(end);
    let renew = "renew it (or run `quorate-coordinator init` into a new folder for a new self-signed one), then restart the coordinator: a reload does not change the certificate".to_string();
    Some(match end.duration_since(now) {
        Err(_) => Line {
            mark: Mark::Fail,
            subject,
            text: format!("expired at {until}"),
            fix: Some(renew),
        },
        Ok(left) if left < CERT_WARN_BEFORE => Line {
            mark: Mark::Warn,
            subject,
            text: format!("expires at {until}, in {} day(s)", left.as_secs() / 86_400),
            fix: Some(renew),
        },
        Ok(_) => Line::ok(subject, format!("valid until {until}")),
    })
}

/// Per witness: identity (key, TLS pin, clock), then a real signed vote about each of its
/// services' primary and backup.
async fn check_witnesses(config: &Config) -> Vec<Line> {
    let mut out = Vec::new();
    let mut stale_all = Vec::new();
    let mut answered = 0usize;
    for (wi, wc) in config.witnesses.iter().enumerate() {
        let subject = format!("witness {} ({})", wc.name, wc.url);
        let client = match WitnessClient::new(wc.clone()) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                out.push(Line {
                    mark: Mark::Fail,
                    subject,
                    text: e.to_string(),
                    fix: None,
                });
                continue;
            }
        };
        let mut reasons = Vec::new();
        let mut notes = Vec::new();
        let sent = now_ms();
        let t0 = Instant::now();
        match client.identity().await {
            Ok(id) => {
                let rtt = t0.elapsed().as_millis() as u64;
                let want = shared::keys::format_public_key(&wc.key);
                if id.public_key != want {
                    reasons.push(Reason::new(
                        "witness-wrong-key",
                        &subject,
                        format!(
                            "the witness's /v1/identity key is {}, the config pins {want}",
                            id.public_key
                        ),
                        format!(
                            "if the witness's key was replaced on purpose, set public_key = \"{}\" in its [[witness]] table",
                            id.public_key
                        ),
                    ));
                } else {
                    notes.push("key matches".to_string());
                }
                notes.push(if wc.cert_sha256.is_some() {
                    "TLS pin matches".to_string()
                } else {
                    format!("TLS not pinned (cert_sha256 = \"{}\")", id.cert_sha256)
                });
                if let Some(t) = id.time_ms {
                    let skew = t as i64 - (sent + rtt / 2) as i64;
                    notes.push(format!("clock skew {skew:+} ms (±{} ms)", rtt / 2 + 1));
                }
            }
            Err(f) => {
                reasons.push(readiness::witness_reason(wc, Asked::Primary("-"), &f));
            }
        }
        if reasons.is_empty() {
            for svc in config.services.iter().filter(|s| s.witnesses.contains(&wi)) {
                let (r, n, stale) = vote_about(config, &client, svc).await;
                if let Some(skew) = stale {
                    stale_all.push((subject.clone(), skew));
                } else {
                    answered += 1;
                }
                reasons.extend(r);
                notes.extend(n);
            }
        }
        out.push(if reasons.is_empty() {
            Line::ok(subject, notes.join(", "))
        } else {
            Line::fail(subject, &reasons)
        });
    }
    // Every witness that answered refused us as stale, the same way: our clock.
    if stale_all.len() >= 2
        && answered == 0
        && stale_all
            .iter()
            .all(|(_, s)| s.signum() == stale_all[0].1.signum())
    {
        // skew_ms is our issued_at minus the witness's now: our clock minus theirs.
        let off = stale_all[0].1;
        out.push(Line {
            mark: Mark::Fail,
            subject: "coordinator clock".into(),
            text: format!(
                "every witness refuses this coordinator's requests as stale: this clock is {} s {} theirs",
                (off.abs() + 500) / 1000,
                if off > 0 { "ahead of" } else { "behind" }
            ),
            fix: Some(
                "run NTP (chrony or systemd-timesyncd) on this host; `timedatectl` shows whether it is synchronised".into(),
            ),
        });
    }
    out
}

/// A signed test vote about the service's primary, and one about its backup. Returns the
/// reasons, what went right, and the witness's clock skew when it refused as stale.
async fn vote_about(
    config: &Config,
    client: &Arc<WitnessClient>,
    svc: &ServiceConfig,
) -> (Vec<Reason>, Vec<String>, Option<i64>) {
    let mut reasons = Vec::new();
    let mut notes = Vec::new();
    let mut stale = None;
    for (what, probe) in [
        ("primary", &svc.primary_probe),
        ("backup", &svc.backup_probe),
    ] {
        let now = now_ms();
        let req = witnesses::sign_request(
            &config.signing_key,
            &config.key_id,
            &svc.name,
            now,
            now,
            probe,
        );
        let answers = witnesses::ask_all(std::iter::once(client), &req, &svc.name).await;
        let Some(a) = answers.into_iter().next() else {
            continue;
        };
        let addr = probe.address().ip().to_string();
        let asked = if what == "primary" {
            Asked::Primary(&addr)
        } else {
            Asked::Backup(&addr)
        };
        match (&a.vote, &a.failure) {
            (Some(v), _) => {
                notes.push(format!(
                    "{}: {what} {} ({} ms)",
                    svc.name,
                    v.verdict,
                    a.latency.as_millis()
                ));
                if what == "backup" && v.verdict == shared::protocol::Verdict::Down {
                    reasons.push(Reason::new(
                        "backup-unreachable",
                        format!("service {}", svc.name),
                        format!(
                            "the witness cannot reach the backup {addr}: {}",
                            v.evidence.detail.clone().unwrap_or_default()
                        ),
                        "check the backup's firewall, its service and its uplink",
                    ));
                }
            }
            (None, Some(f)) => {
                if let Failure::Refused {
                    code,
                    skew_ms: Some(s),
                    ..
                } = f
                    && code == "stale"
                {
                    stale = Some(*s);
                }
                reasons.push(readiness::witness_reason(&client.config, asked, f));
                // The backup vote would fail the same way.
                if what == "primary" {
                    break;
                }
            }
            (None, None) => {}
        }
    }
    (reasons, notes, stale)
}

/// The line for a backend's readiness proof: `unproven:` and `warning:` proofs are warnings
/// (they pass, but say what could go wrong), others pass, a failure fails.
fn proof_line(subject: String, side: Side, proof: &Result<String, Reason>) -> Line {
    match proof {
        Ok(p) if p.starts_with(crate::dns::UNPROVEN) => Line {
            mark: Mark::Warn,
            subject,
            text: p.clone(),
            fix: Some("give the exec backend a `check_command`".into()),
        },
        Ok(p) if p.starts_with(crate::dns::WARNING) => Line {
            mark: Mark::Warn,
            subject,
            text: p.clone(),
            fix: None,
        },
        Ok(p) => Line::ok(
            subject,
            format!("{p}; the {} side is expected", side.as_str()),
        ),
        Err(r) => Line::fail(subject, std::slice::from_ref(r)),
    }
}

/// Per service: the backend's harmless operation for its zone; per authoritative server:
/// does it serve the persisted side.
async fn check_dns(config: &Config, sides: &[(String, Side)]) -> Vec<Line> {
    let mut out = Vec::new();
    for b in &config.dns.backends {
        if let BuiltBackend::Builtin(_) = &b.built {
            out.push(Line::ok(
                format!("dns {}", b.label()),
                "the built-in server answers from the coordinator's own memory: nothing to prove before it runs",
            ));
        }
    }
    for svc in &config.services {
        let Some(b) = config.dns.of(svc) else {
            continue;
        };
        let BuiltBackend::Ready(backend) = &b.built else {
            continue;
        };
        let authorities = AuthoritySettings::of(b);
        let side = sides
            .iter()
            .find(|(n, _)| n == &svc.name)
            .map(|(_, s)| *s)
            .unwrap_or(Side::Primary);
        let expected = svc.records_for(side);
        let subject = format!("service {} (dns {} {})", svc.name, b.label(), svc.zone);
        let dns =
            checks::dns_side(backend.as_ref(), &svc.zone, &expected, &authorities, false).await;
        out.push(proof_line(subject, side, &dns.proof));
        for s in &dns.servers {
            let subject = format!("dns server {}", s.server);
            out.push(if s.agrees {
                Line::ok(subject, format!("serves {} ({} side)", s.serves, side.as_str()))
            } else {
                Line {
                    mark: Mark::Fail,
                    subject,
                    text: format!(
                        "serves {}; the persisted {} side is {}",
                        s.serves,
                        side.as_str(),
                        crate::dns::describe_sets(&expected)
                    ),
                    fix: Some(
                        "put the records back as Quorate has them (a hand edit, or a secondary that stopped transferring), or change the service's addresses in the config and reload".into(),
                    ),
                }
            });
        }
        for r in &dns.discovery {
            out.push(Line::fail(r.subject.clone(), std::slice::from_ref(r)));
        }
        // Drift the server lines do not show (they all agree): say it anyway.
        if dns.servers.iter().all(|s| s.agrees) {
            for r in &dns.drift {
                out.push(Line::fail(r.subject.clone(), std::slice::from_ref(r)));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn render_marks_each_line_and_fails_only_on_fail() {
        let ok = Line::ok("witness w1 (https://w1:8443)", "key matches");
        let warn = Line {
            mark: Mark::Warn,
            subject: "service www (dns exec example.test.)".into(),
            text: "unproven: no check_command".into(),
            fix: Some("give the exec backend a `check_command`".into()),
        };
        let (text, passed) = render(&[ok.clone(), warn.clone()]);
        assert!(passed);
        assert_eq!(
            text,
            "ok   witness w1 (https://w1:8443): key matches\n\
             WARN service www (dns exec example.test.): unproven: no check_command\n     fix: give the exec backend a `check_command`\n\
             online check passed: a failover would work as configured\n"
        );
        let fail = Line::fail(
            "witness w2",
            &[Reason::new(
                "witness-untrusted",
                "witness w2",
                "does not trust",
                "add the key",
            )],
        );
        let (text, passed) = render(&[ok, fail]);
        assert!(!passed);
        assert!(
            text.contains("FAIL witness w2: does not trust\n     fix: add the key\n"),
            "{text}"
        );
        assert!(
            text.ends_with("online check FAILED: 1 problem(s) above\n"),
            "{text}"
        );
    }

    #[test]
    fn an_api_certificate_near_its_end_warns_and_an_expired_one_fails() {
        use std::time::{Duration, UNIX_EPOCH};
        let dir = tempfile::tempdir().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (crt, k) = (dir.path().join("api.crt"), dir.path().join("api.key"));
        std::fs::write(&crt, cert.pem()).unwrap();
        shared::keys::write_private_file(&k, key.serialize_pem().as_bytes()).unwrap();
        let tls = crate::config::api_tls_for_tests(&crt, &k).unwrap();
        let end = UNIX_EPOCH + Duration::from_secs(1_893_456_000); // 2030-01-01T00:00:00Z
        assert_eq!(tls.not_after, Some(end));
        let day = Duration::from_secs(86_400);
        // (now, mark, text)
        let table = [
            (
                end - 100 * day,
                Mark::Ok,
                "valid until 2030-01-01T00:00:00Z",
            ),
            (end - 15 * day, Mark::Ok, "valid until 2030-01-01T00:00:00Z"),
            (
                end - 13 * day,
                Mark::Warn,
                "expires at 2030-01-01T00:00:00Z, in 13 day(s)",
            ),
            (
                end - Duration::from_secs(1),
                Mark::Warn,
                "expires at 2030-01-01T00:00:00Z, in 0 day(s)",
            ),
            (
                end + Duration::from_secs(1),
                Mark::Fail,
                "expired at 2030-01-01T00:00:00Z",
            ),
        ];
        for (now, mark, text) in table {
            let line = api_cert_line(Some(&tls), now).unwrap();
            assert_eq!((line.mark, line.text.as_str()), (mark, text));
            assert!(line.subject.ends_with("api.crt"), "{}", line.subject);
        }
        assert!(api_cert_line(None, end).is_none());
    }

    #[test]
    fn a_warning_proof_is_a_warning_line() {
        let line = proof_line(
            "service www (dns desec example.test.)".into(),
            Side::Primary,
            &Ok("warning: TTL 60 s is under deSEC's minimum of 3600 s".into()),
        );
        assert_eq!(line.mark, Mark::Warn);
        let line = proof_line(
            "s".into(),
            Side::Backup,
            &Ok("desec: token accepted".into()),
        );
        assert_eq!(line.mark, Mark::Ok);
        assert!(
            line.text.ends_with("the backup side is expected"),
            "{}",
            line.text
        );
        let line = proof_line("s".into(), Side::Primary, &Ok("unproven: no check".into()));
        assert_eq!(line.mark, Mark::Warn);
    }
}
