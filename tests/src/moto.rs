//! moto's server (PyPI `moto[server]`, a third party's model of the AWS APIs) on a free
//! loopback port, with IAM signature checking on: the Route 53 backend's SigV4 signing and its
//! wire format are tested against it, the change-batch rules against `tests::route53` (moto
//! does not enforce them: a stale DELETE and a CREATE over an existing set both pass there).
//!
//! moto checks signatures once `INITIAL_NO_AUTH_ACTION_COUNT` requests have been served; the
//! harness spends exactly that many on the set-up (an IAM user with a Route 53 policy, its
//! access key, the hosted zone and its first records), so every request after it, the
//! backend's included, must be signed by that user's key. The server is killed and reaped on
//! drop; its output is kept in a temporary folder and printed when it does not start.
//!
//! Two faults of moto 5.2.1 shape this harness (both seen with boto3 alone, no Quorate code):
//! - with signature checking on, it rebuilds a Route 53 GET request's body from the wrong
//!   fields and refuses every GET (`SignatureDoesNotMatch`) unless the payload hash is sent as
//!   a signed `x-amz-content-sha256` header, which the backend does;
//! - it refuses a `CREATE` identical to one already in the zone's change journal when the set
//!   exists before the batch's own `DELETE` ("but it already exists"), a check real Route 53
//!   does not make. The set-up therefore seeds the records with `UPSERT`, so switching to the
//!   backup and back is two batches moto has not seen; a third switch to the backup would trip
//!   it.
//!
//! The command is `$MOTO_SERVER` if set (e.g. a virtualenv's `bin/moto_server`; `tests/run.sh`
//! installs one when `moto` is not importable), else `moto_server` on the `PATH`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::net::free_port;

/// Requests the set-up makes before signatures are checked: CreateUser, PutUserPolicy,
/// CreateAccessKey, CreateHostedZone, ChangeResourceRecordSets.
const SETUP_REQUESTS: u32 = 5;
/// How long moto may take to listen (it imports every AWS model: ~1–2 s here).
const START_DEADLINE: Duration = Duration::from_secs(30);
/// Bytes of moto's own output printed when it fails.
const LOG_KEEP: usize = 4096;

/// A running moto server with one IAM user allowed `route53:*`, and one hosted zone.
pub struct Moto {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    /// The IAM user's access key, created by moto.
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The hosted zone's bare id (`Z…`).
    pub zone_id: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An A or AAAA record set to create at set-up: `(name, type, ttl, values)`.
pub type Seed<'a> = (&'a str, &'a str, u32, &'a [&'a str]);

impl Moto {
    /// Starts moto and sets up `zone` (with the trailing dot) holding `records`.
    pub async fn start(zone: &str, records: &[Seed<'_>]) -> Moto {
        let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let dir = tempfile::tempdir().expect("a temporary folder");
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("moto's log file");
        let port = free_port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", SETUP_REQUESTS.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("moto's log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {program}: {e}; install it with pip install 'moto[server]' (tests/run.sh does), or set MOTO_SERVER")
            });
        let mut moto = Moto {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            access_key_id: String::new(),
            secret_access_key: String::new(),
            zone_id: String::new(),
        };
        moto.wait_ready().await;
        moto.set_up(zone, records).await;
        moto
    }

    /// `http://127.0.0.1:<port>`, for the backend's `endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// moto's output so far (the end of it).
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default();
        let cut = text.len().saturating_sub(LOG_KEEP);
        let cut = (cut..=text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[cut..].to_string()
    }

    /// Polls a TCP connect until moto listens (a connect is not a request: it does not count
    /// against `INITIAL_NO_AUTH_ACTION_COUNT`), or fails with its output.
    async fn wait_ready(&mut self) {
        let start = Instant::now();
        while start.elapsed() < START_DEADLINE {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "moto_server exited ({status}) before listening:\n{}",
                    self.log()
                );
            }
            let connect = tokio::net::TcpStream::connect(self.addr);
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), connect).await {
                return;
            }
            // Polling with a deadline: the interval between two connects.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "moto_server did not listen on {} within {START_DEADLINE:?}:\n{}",
            self.addr,
            self.log()
        );
    }

    /// The set-up, exactly [`SETUP_REQUESTS`] requests (signed with a placeholder key: moto
    /// routes a request to a service by its credential scope).
    async fn set_up(&mut self, zone: &str, records: &[Seed<'_>]) {
        let iam = |action: &str, extra: &str| {
            format!("Action={action}&Version=2010-05-08&UserName=quorate{extra}")
        };
        self.call("iam", "POST", "/", &iam("CreateUser", "")).await;
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"route53:*","Resource":"*"}]}"#;
        let policy: String = url_encode(policy);
        self.call(
            "iam",
            "POST",
            "/",
            &iam(
                "PutUserPolicy",
                &format!("&PolicyName=quorate-route53&PolicyDocument={policy}"),
            ),
        )
        .await;
        let key = self
            .call("iam", "POST", "/", &iam("CreateAccessKey", ""))
            .await;
        self.access_key_id = between(&key, "AccessKeyId");
        self.secret_access_key = between(&key, "SecretAccessKey");
        let zone_xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><CreateHostedZoneRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Name>{zone}</Name><CallerReference>quorate-test</CallerReference></CreateHostedZoneRequest>"#
        );
        let created = self
            .call("route53", "POST", "/2013-04-01/hostedzone", &zone_xml)
            .await;
        self.zone_id = between(&created, "Id")
            .trim_start_matches("/hostedzone/")
            .to_string();
        let changes: String = records
            .iter()
            .map(|(name, rtype, ttl, values)| {
                let values: String = values
                    .iter()
                    .map(|v| format!("<ResourceRecord><Value>{v}</Value></ResourceRecord>"))
                    .collect();
                format!("<Change><Action>UPSERT</Action><ResourceRecordSet><Name>{name}</Name><Type>{rtype}</Type><TTL>{ttl}</TTL><ResourceRecords>{values}</ResourceRecords></ResourceRecordSet></Change>")
            })
            .collect();
        let batch = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><ChangeResourceRecordSetsRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeBatch><Changes>{changes}</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"#
        );
        let path = format!("/2013-04-01/hostedzone/{}/rrset", self.zone_id);
        self.call("route53", "POST", &path, &batch).await;
    }

    /// One set-up request; its answer's body, or a panic with moto's answer and output.
    async fn call(&self, service: &str, method: &str, path: &str, body: &str) -> String {
        let url = format!("{}{path}", self.endpoint());
        let content_type = if service == "iam" {
            "application/x-www-form-urlencoded"
        } else {
            "text/xml"
        };
        let headers = sign(service, method, &url, content_type, body.as_bytes());
        shared::install_crypto_provider();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut req = client
            .request(method, &url)
            .header("content-type", content_type)
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let answer = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("moto set-up {service} {path}: {e}\n{}", self.log()));
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "moto set-up {service} {path}: HTTP {status}: {text}\n{}",
            self.log()
        );
        text
    }
}

/// SigV4 headers for a set-up request, with a placeholder key (not checked yet).
fn sign(
    service: &str,
    method: &str,
    url: &str,
    content_type: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let identity =
        aws_credential_types::Credentials::new("AKIAPLACEHOLDER", "placeholder", None, None, "t")
            .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .expect("signing parameters")
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        [("content-type", content_type)].into_iter(),
        SignableBody::Bytes(body),
    )
    .expect("a signable request");
    let (instructions, _) = sign(signable, &params).expect("a signature").into_parts();
    instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The text of the first `<tag>…</tag>` in `xml` (set-up answers; a missing tag is a bug).
fn between(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map(|(v, _)| v.to_string())
        .unwrap_or_else(|| panic!("no <{tag}> in moto's answer: {xml}"))
}

/// Form encoding of a value (RFC 3986 unreserved characters kept).
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
