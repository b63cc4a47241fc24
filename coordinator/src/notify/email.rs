//! The email channel: SMTP through lettre over rustls with ring (STARTTLS, implicit TLS, or
//! plain to a relay on this machine), optional authentication, a plain-text body, and one
//! thread per incident ([`Threads`]): the first notice of an incident is a new message, the
//! following ones answer it (`In-Reply-To`, `References`, `Re: ` subject).

use std::collections::{BTreeMap, BTreeSet};

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};

use super::channel::{DELIVERY_TIMEOUT, EmailConfig};
use super::event::{Event, Notice};
use super::render::{self, Context};

/// How the connection to the SMTP server is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only to a relay on a loopback address.
    None,
}

impl SmtpTls {
    pub fn parse(s: &str) -> Option<SmtpTls> {
        match s {
            "starttls" => Some(SmtpTls::StartTls),
            "tls" => Some(SmtpTls::Tls),
            "none" => Some(SmtpTls::None),
            _ => None,
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

/// The incidents of one channel, per service. An incident opens with the first notice about
/// a service while none is open; it stays open while the service is failed over, while any
/// alert that has a resolution is unresolved, and after a failback until its DNS change is
/// applied or failed. The notice that leaves none of these open is the incident's last.
#[derive(Debug, Default)]
pub struct Threads {
    open: BTreeMap<String, Thread>,
}

#[derive(Debug)]
struct Thread {
    subject: String,
    /// Message ids of the thread, first first, at most [`REFERENCES_KEPT`].
    ids: Vec<String>,
    failed_over: bool,
    failback_landing: bool,
    alerts: BTreeSet<Event>,
}

/// Ids listed in `References`: the first message and the latest ones (RFC 5322 allows
/// trimming the middle); bounds the header of a long incident.
const REFERENCES_KEPT: usize = 20;

/// How a message sits in its thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub subject: String,
    /// `None` for the first message of an incident.
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
}

impl Threads {
    /// Where a message about `n` goes.
    pub fn place(&self, n: &Notice) -> Placement {
        match self.open.get(&n.service) {
            None => Placement {
                subject: render::subject(n),
                in_reply_to: None,
                references: Vec::new(),
            },
            Some(t) => Placement {
                subject: format!("Re: {}", t.subject),
                in_reply_to: t.ids.last().cloned(),
                references: t.ids.clone(),
            },
        }
    }

    /// Records that the message `id` about `n` went out (or was tried).
    pub fn sent(&mut self, n: &Notice, id: String) {
        let t = self
            .open
            .entry(n.service.clone())
            .or_insert_with(|| Thread {
                subject: render::subject(n),
                ids: Vec::new(),
                failed_over: false,
                failback_landing: false,
                alerts: BTreeSet::new(),
            });
        if t.ids.len() >= REFERENCES_KEPT {
            t.ids.remove(1);
        }
        t.ids.push(id);
        match n.event {
            Event::Failover => t.failed_over = true,
            Event::Failback => {
                t.failed_over = false;
                t.failback_landing = true;
            }
            Event::DnsApplied | Event::DnsFailed => t.failback_landing = false,
            e if has_resolution(e) => {
                if n.resolved {
                    t.alerts.remove(&e);
                } else {
                    t.alerts.insert(e);
                }
            }
            _ => {}
        }
        if !t.failed_over && !t.failback_landing && t.alerts.is_empty() {
            self.open.remove(&n.service);
        }
    }
}

/// Events that stay open until a notice of the same event with `resolved`.
fn has_resolution(e: Event) -> bool {
    matches!(
        e,
        Event::BackupDown
            | Event::BothDown
            | Event::Damped
            | Event::SwitchBlocked
            | Event::FailbackAwaitingOperator
            | Event::NotReady
            | Event::WitnessAlert
            | Event::DisputedAlert
            | Event::GateFailing
            | Event::DnsPending
    )
}

/// A composed message and its id.
pub struct Composed {
    pub message: Message,
    pub id: String,
}

/// One email channel: its transport (connections pooled) and its threads.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// The right-hand side of message ids: the sender's domain.
    domain: String,
    threads: Threads,
    rng: ring::rand::SystemRandom,
}

impl Mailer {
    pub fn new(c: &EmailConfig) -> Result<Mailer, String> {
        shared::install_crypto_provider();
        let from: Mailbox = c.from.parse().map_err(|e| {
            format!("from: expected an address like \"Quorate <quorate@example.com>\" ({e})")
        })?;
        let to =
            c.to.iter()
                .map(|t| {
                    t.parse::<Mailbox>()
                        .map_err(|e| format!("to: {t:?} is not an address ({e})"))
                })
                .collect::<Result<Vec<_>, _>>()?;
        let domain = from.email.domain().to_string();
        let tls = match c.tls {
            SmtpTls::None => Tls::None,
            mode => {
                let mut p = TlsParameters::builder(c.server.clone());
                if let Some(pem) = &c.ca_pem {
                    let cert = Certificate::from_pem(pem)
                        .map_err(|e| format!("ca_file: expected PEM certificates ({e})"))?;
                    p = p.add_root_certificate(cert);
                }
                let p = p
                    .build_rustls()
                    .map_err(|e| format!("cannot set up TLS ({e})"))?;
                if mode == SmtpTls::Tls {
                    Tls::Wrapper(p)
                } else {
                    Tls::Required(p)
                }
            }
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(c.server.clone())
            .port(c.port)
            .tls(tls)
            .timeout(Some(DELIVERY_TIMEOUT));
        if let (Some(user), Some(pass)) = (&c.username, &c.password) {
            b = b.credentials(Credentials::new(user.clone(), pass.expose().to_string()));
        }
        Ok(Mailer {
            transport: b.build(),
            from,
            to,
            domain,
            threads: Threads::default(),
            rng: ring::rand::SystemRandom::new(),
        })
    }

    /// The transport (a cheap handle on the shared pool).
    pub fn transport(&self) -> AsyncSmtpTransport<Tokio1Executor> {
        self.transport.clone()
    }

    /// The message for `n`, placed in its incident's thread.
    pub fn compose(&mut self, n: &Notice, ctx: &Context) -> Result<Composed, String> {
        let mut r = [0u8; 12];
        ring::rand::SecureRandom::fill(&self.rng, &mut r)
            .map_err(|_| "no randomness for a message id".to_string())?;
        let id = format!("<{}.{}@{}>", hex::encode(r), n.at_ms, self.domain);
        let place = self.threads.place(n);
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(place.subject)
            .message_id(Some(id.clone()))
            .date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(n.at_ms))
            .user_agent("quorate-coordinator".into())
            .header(ContentType::TEXT_PLAIN);
        for t in &self.to {
            b = b.to(t.clone());
        }
        if let Some(parent) = place.in_reply_to {
            b = b.in_reply_to(parent);
        }
        if !place.references.is_empty() {
            b = b.references(place.references.join(" "));
        }
        let message = b
            .body(render::email_body(n, ctx))
            .map_err(|e| format!("cannot build the message ({e})"))?;
        Ok(Composed { message, id })
    }

    /// Sends; the server's reply (`250 ...`) or the error.
    pub async fn send(
        transport: &AsyncSmtpTransport<Tokio1Executor>,
        m: Message,
    ) -> Result<String, String> {
        match transport.send(m).await {
            Ok(r) => Ok(format!(
                "SMTP {} {}",
                r.code(),
                r.message().collect::<Vec<_>>().join(" ")
            )),
            Err(e) => Err(format!("SMTP: {e}")),
        }
    }

    /// Notes the message in its thread (a failed one too: the next tries to answer it, and
    /// mail clients thread on `References` even when a message is missing).
    pub fn sent(&mut self, n: &Notice, id: String, _delivered: bool) {
        self.threads.sent(n, id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn n(service: &str, e: Event) -> Notice {
        Notice::new(service, e, "m", 0)
    }

    /// Feeds notices, renders each as `event: new` or `event: re <n-th message>`.
    fn thread(input: &[Notice]) -> Vec<String> {
        let mut t = Threads::default();
        let mut out = Vec::new();
        for (i, notice) in input.iter().enumerate() {
            let p = t.place(notice);
            let id = format!("m{i}");
            out.push(match p.in_reply_to {
                None => format!("{} {}: new", notice.service, notice.title_event()),
                Some(parent) => format!(
                    "{} {}: re {parent} (refs {})",
                    notice.service,
                    notice.title_event(),
                    p.references.join(",")
                ),
            });
            t.sent(notice, id);
        }
        out
    }

    #[test]
    fn an_incident_is_one_thread_from_failover_to_the_failback_landing() {
        let got = thread(&[
            n("www", Event::Failover),
            n("www", Event::DnsApplied),
            n("api", Event::DnsLagging),
            n("www", Event::BackupDown),
            n("www", Event::BackupDown).resolved(),
            n("www", Event::Failback),
            n("www", Event::DnsApplied),
            // The incident is over: the next notice starts a new one.
            n("www", Event::NotReady),
            n("www", Event::NotReady).resolved(),
            n("www", Event::Test),
        ]);
        assert_eq!(
            got,
            [
                "www failover: new",
                "www dns-applied: re m0 (refs m0)",
                "api dns-lagging: new",
                "www backup-down: re m1 (refs m0,m1)",
                "www backup-down resolved: re m3 (refs m0,m1,m3)",
                "www failback: re m4 (refs m0,m1,m3,m4)",
                "www dns-applied: re m5 (refs m0,m1,m3,m4,m5)",
                "www not-ready: new",
                "www not-ready resolved: re m7 (refs m7)",
                "www test: new",
            ]
        );
    }

    #[test]
    fn references_stay_bounded_and_keep_the_first() {
        let mut t = Threads::default();
        t.sent(&n("www", Event::Failover), "first".into());
        for i in 0..100 {
            t.sent(&n("www", Event::DnsLagging), format!("x{i}"));
        }
        let p = t.place(&n("www", Event::DnsLagging));
        assert_eq!(p.references.len(), REFERENCES_KEPT);
        assert_eq!(p.references[0], "first");
        assert_eq!(p.in_reply_to.as_deref(), Some("x99"));
        assert_eq!(p.subject, "Re: [quorate] www: failover");
    }
}
