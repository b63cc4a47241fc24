//! The one connection-limited HTTP(S) accept loop both daemons serve on: a global cap and a
//! per-source-address cap on open connections (refused at accept, before TLS), a TLS
//! handshake timeout, a header-read timeout on every request of a kept-alive connection, an
//! idle timeout between requests, a limit on requests per connection, and descriptor
//! exhaustion (EMFILE/ENFILE) handled by backing off instead of spinning.
//!
//! Why these bounds (issue 13): a few thousand idle keep-alive connections from one host
//! used to take every file descriptor of a witness, so a signed vote request went
//! unanswered. Connections are anonymous until TLS, HTTP and a signature have been checked,
//! so the headroom for trusted coordinators is made of two parts:
//!
//! - a per-address cap well below the global cap: one source address (one IPv6 /64) never
//!   holds more than [`Limits::max_connections_per_address`] connections, so it takes at
//!   most its share and everyone else is still answered;
//! - a reserve of [`Limits::reserved`] connections of the global cap that only *vouched*
//!   addresses may use: an address vouches for itself when one of its requests to the
//!   vouch path (the witness's `/v1/vote`) was answered 2xx, i.e. it sent a valid signed
//!   request, within the last [`VOUCH_TTL`]. Many attacking addresses together can fill the
//!   unreserved part, never the reserve.
//!
//! A refused connection is accepted and closed at once: no TLS, no buffer, one descriptor
//! for a few microseconds.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use hyper_util::service::TowerToHyperService;

/// How long a successful request to the vouch path lets its address use the reserve.
pub const VOUCH_TTL: Duration = Duration::from_secs(600);
/// The most vouched addresses remembered (a bound on memory; honest deployments have a
/// handful of coordinators).
const MAX_VOUCHED: usize = 1024;
/// Backoff after EMFILE/ENFILE: starts here, doubles, never above [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// At most one warning about refused connections per this long (the count is kept).
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Streams a peer may reset before the server accepted them, per HTTP/2 connection. h2's
/// default (20) trips when a coordinator that timed out requests to a paused witness resets
/// them all and the witness reads the backlog at once after resuming (issue 13); each reset
/// stream costs a few hundred bytes, and the connection caps above bound the total.
pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 1024;
/// Concurrent HTTP/2 streams per connection (hyper's default is 200).
const MAX_CONCURRENT_STREAMS: u32 = 64;

/// The connection bounds of one listener. Defaults suit a witness or a coordinator's API
/// under a unit's `LimitNOFILE=4096`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at once, all addresses together (default 1024, well below the
    /// descriptor limit so the daemon keeps descriptors for probes and files).
    pub max_connections: usize,
    /// Open connections at once from one source address, or one IPv6 /64 (default 32).
    pub max_connections_per_address: usize,
    /// Connections of `max_connections` only vouched addresses may use (default 64).
    pub reserved: usize,
    /// Time for the TLS handshake (default 10s).
    pub handshake_timeout: Duration,
    /// Time for a request's head, on every request of a connection, not only the first
    /// (default 10s).
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request in flight (default 30s).
    pub idle_timeout: Duration,
    /// Requests served on one connection before it is closed gracefully (default 1000).
    pub max_requests_per_connection: u32,
}

/// Default [`Limits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default [`Limits::max_connections_per_address`].
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 32;
/// Default [`Limits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`Limits::max_requests_per_connection`].
pub const DEFAULT_MAX_REQUESTS_PER_CONNECTION: u32 = 1000;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            reserved: reserve_for(DEFAULT_MAX_CONNECTIONS),
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_requests_per_connection: DEFAULT_MAX_REQUESTS_PER_CONNECTION,
        }
    }
}

/// The reserve for vouched addresses that goes with a global cap: one sixteenth, at least 1.
pub fn reserve_for(max_connections: usize) -> usize {
    (max_connections / 16).max(1).min(max_connections)
}

/// What the listener saw, for metrics and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections refused by the global cap, since start.
    pub refused_global: AtomicU64,
    /// Connections refused by the per-address cap, since start.
    pub refused_per_address: AtomicU64,
    /// Accept errors that ran out of descriptors (EMFILE, ENFILE), since start.
    pub descriptor_exhausted: AtomicU64,
}

/// A listener, its TLS config (None: plain HTTP), its bounds and the vouch path.
pub struct Server {
    pub listener: tokio::net::TcpListener,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub limits: Limits,
    /// A 2xx answer to a request for this path vouches for the peer's address.
    pub vouch_path: Option<&'static str>,
    /// How long connections may finish after `shutdown` is cancelled.
    pub grace: Duration,
    pub stats: Arc<Stats>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Who holds how many connections, and who vouched recently. One lock, held for a map
/// lookup at accept and at close.
#[derive(Default)]
struct Table {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
    vouched: HashMap<IpAddr, Instant>,
}

enum Refusal {
    Global,
    PerAddress,
}

struct Shared {
    limits: Limits,
    table: Mutex<Table>,
    stats: Arc<Stats>,
    builder: auto::Builder<TokioExecutor>,
    vouch_path: Option<&'static str>,
}

/// The key a connection is counted under: the address, IPv4-mapped IPv6 as IPv4, IPv6 by
/// its /64 (one host usually holds a whole /64).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
        v4 => v4,
    }
}

impl Shared {
    fn admit(&self, key: IpAddr, now: Instant) -> Result<(), Refusal> {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mine = t.per_address.get(&key).copied().unwrap_or(0);
        if mine >= self.limits.max_connections_per_address {
            return Err(Refusal::PerAddress);
        }
        let vouched = t
            .vouched
            .get(&key)
            .is_some_and(|at| now.saturating_duration_since(*at) < VOUCH_TTL);
        let cap = if vouched {
            self.limits.max_connections
        } else {
            self.limits
                .max_connections
                .saturating_sub(self.limits.reserved)
        };
        if t.total >= cap {
            return Err(Refusal::Global);
        }
        t.total += 1;
        *t.per_address.entry(key).or_insert(0) += 1;
        self.stats.open.store(t.total, Ordering::Relaxed);
        Ok(())
    }

    fn release(&self, key: IpAddr) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.total = t.total.saturating_sub(1);
        if let Some(n) = t.per_address.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                t.per_address.remove(&key);
            }
        }
        self.stats.open.store(t.total, Ordering::Relaxed);
    }

    fn vouch(&self, key: IpAddr) {
        let now = Instant::now();
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.vouched.len() >= MAX_VOUCHED && !t.vouched.contains_key(&key) {
            t.vouched
                .retain(|_, at| now.saturating_duration_since(*at) < VOUCH_TTL);
            if t.vouched.len() >= MAX_VOUCHED {
                return;
            }
        }
        t.vouched.insert(key, now);
    }
}

/// Releases a connection's place in the table however its task ends.
struct Slot {
    shared: Arc<Shared>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.release(self.key);
    }
}

/// Where a request came from, in every request's extensions: the peer's address and whether
/// the connection is TLS (the dashboard marks its cookie `Secure` then, and rate-limits logins
/// per address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// One connection's request bookkeeping, shared by its service and its watchdog.
#[derive(Default)]
struct ConnState {
    in_flight: AtomicUsize,
    served: AtomicU32,
    spent: AtomicBool,
    activity: Notify,
}

/// Counts requests around the real service, notes activity for the idle timer, and vouches
/// for the peer when the vouch path answers 2xx.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    conn: Arc<ConnState>,
    shared: Arc<Shared>,
    key: IpAddr,
    peer: Peer,
}

/// Marks a request finished when its response future ends, however it ends.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.activity.notify_waiters();
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, S::Error>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.peer);
        let served = self.conn.served.fetch_add(1, Ordering::AcqRel) + 1;
        if served >= self.shared.limits.max_requests_per_connection {
            self.conn.spent.store(true, Ordering::Release);
        }
        self.conn.in_flight.fetch_add(1, Ordering::AcqRel);
        self.conn.activity.notify_waiters();
        let guard = InFlight(self.conn.clone());
        let vouches = self
            .shared
            .vouch_path
            .is_some_and(|p| req.uri().path() == p);
        let fut = self.inner.call(req);
        let shared = self.shared.clone();
        let key = self.key;
        Box::pin(async move {
            let _guard = guard;
            let resp = fut.await?;
            if vouches && resp.status().is_success() {
                shared.vouch(key);
            }
            Ok(resp)
        })
    }
}

/// Resolves once the connection should close: idle for `idle` with nothing in flight, or its
/// request allowance spent.
async fn idle_or_spent(conn: &ConnState, idle: Duration) {
    loop {
        let notified = conn.activity.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if conn.spent.load(Ordering::Acquire) {
            return;
        }
        if conn.in_flight.load(Ordering::Acquire) == 0 {
            if tokio::time::timeout(idle, notified).await.is_err()
                && conn.in_flight.load(Ordering::Acquire) == 0
            {
                return;
            }
        } else {
            notified.await;
        }
    }
}

fn is_descriptor_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE (24), ENFILE (23), ENOBUFS (105), ENOMEM (12): out of descriptors or buffers;
    // retrying at once would spin.
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}

/// Rate-limits a warning: true at most once per [`WARN_EVERY`].
struct Throttle(Option<Instant>);

impl Throttle {
    fn ready(&mut self, now: Instant) -> bool {
        match self.0 {
            Some(at) if now.saturating_duration_since(at) < WARN_EVERY => false,
            _ => {
                self.0 = Some(now);
                true
            }
        }
    }
}

/// The soft limit on open descriptors of this process, from `/proc/self/limits` (Linux).
pub fn descriptor_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

impl Server {
    /// A server on `listener` with default stats.
    pub fn new(
        listener: tokio::net::TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: Limits,
        grace: Duration,
    ) -> Server {
        Server {
            listener,
            tls,
            limits,
            vouch_path: None,
            grace,
            stats: Arc::new(Stats::default()),
        }
    }

    /// Serves `service` until `shutdown` is cancelled, then lets open connections finish
    /// their requests for at most `grace`. Errors only if the listener itself fails.
    pub async fn serve<S, B>(self, service: S, shutdown: CancellationToken) -> std::io::Result<()>
    where
        S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Server {
            listener,
            tls,
            limits,
            vouch_path,
            grace,
            stats,
        } = self;
        if let Some(nofile) = descriptor_limit()
            && (limits.max_connections as u64).saturating_add(64) > nofile
        {
            tracing::warn!(
                max_connections = limits.max_connections,
                nofile,
                "the descriptor limit is below max_connections + 64: raise LimitNOFILE or lower max_connections"
            );
        }
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .keep_alive_interval(limits.idle_timeout)
            .keep_alive_timeout(limits.header_read_timeout);
        let shared = Arc::new(Shared {
            limits,
            table: Mutex::new(Table::default()),
            stats,
            builder,
            vouch_path,
        });
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let tasks = TaskTracker::new();
        let mut backoff = MIN_ACCEPT_BACKOFF;
        let mut refused_warn = Throttle(None);
        let mut exhausted_warn = Throttle(None);
        let result = loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = shutdown.cancelled() => break Ok(()),
            };
            let (stream, peer) = match accepted {
                Ok(a) => {
                    backoff = MIN_ACCEPT_BACKOFF;
                    a
                }
                Err(e) if is_descriptor_exhaustion(&e) => {
                    shared
                        .stats
                        .descriptor_exhausted
                        .fetch_add(1, Ordering::Relaxed);
                    if exhausted_warn.ready(Instant::now()) {
                        tracing::warn!(error = %e, backoff = ?backoff, "out of descriptors: accepting again after a pause");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => break Ok(()),
                    }
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                    continue;
                }
                Err(e) if is_transient_accept_error(&e) => {
                    tracing::debug!(error = %e, "accept failed; the peer went away");
                    continue;
                }
                Err(e) => break Err(e),
            };
            let key = source_key(peer.ip());
            if let Err(why) = shared.admit(key, Instant::now()) {
                let (counter, which) = match why {
                    Refusal::Global => (&shared.stats.refused_global, "max_connections"),
                    Refusal::PerAddress => (
                        &shared.stats.refused_per_address,
                        "max_connections_per_address",
                    ),
                };
                let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                if refused_warn.ready(Instant::now()) {
                    tracing::warn!(%peer, limit = which, refused_so_far = n, "connection refused: limit reached");
                }
                drop(stream);
                continue;
            }
            let slot = Slot {
                shared: shared.clone(),
                key,
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let service = service.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let shared = slot.shared.clone();
                let conn = Arc::new(ConnState::default());
                let tracked = Tracked {
                    inner: service,
                    conn: conn.clone(),
                    shared: shared.clone(),
                    key,
                    peer: Peer {
                        addr: peer,
                        tls: acceptor.is_some(),
                    },
                };
                match acceptor {
                    None => drive(&shared, stream, tracked, &conn, &shutdown, peer).await,
                    Some(acceptor) => {
                        let tls = tokio::select! {
                            r = tokio::time::timeout(shared.limits.handshake_timeout, acceptor.accept(stream)) => r,
                            () = shutdown.cancelled() => return,
                        };
                        match tls {
                            Ok(Ok(io)) => drive(&shared, io, tracked, &conn, &shutdown, peer).await,
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                            Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                        }
                    }
                }
                drop(slot);
            });
        };
        drop(listener);
        tasks.close();
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!(grace = ?grace, "some connections did not finish within the grace period");
        }
        result
    }
}

fn is_transient_accept_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    ) || matches!(e.raw_os_error(), Some(71 | 92 | 93 | 95 | 101 | 110 | 113))
}

/// Serves one connection until it ends, closing it gracefully when idle, spent or shutting
/// down.
async fn drive<I, S, B>(
    shared: &Shared,
    io: I,
    service: Tracked<S>,
    conn: &ConnState,
    shutdown: &CancellationToken,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = shared.builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = idle_or_spent(conn, shared.limits.idle_timeout), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = shutdown.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn shared(limits: Limits) -> Shared {
        Shared {
            limits,
            table: Mutex::new(Table::default()),
            stats: Arc::new(Stats::default()),
            builder: auto::Builder::new(TokioExecutor::new()),
            vouch_path: None,
        }
    }

    #[test]
    fn one_address_gets_its_share_and_the_reserve_is_for_vouched_addresses() {
        let s = shared(Limits {
            max_connections: 10,
            max_connections_per_address: 4,
            reserved: 2,
            ..Limits::default()
        });
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        let trusted: IpAddr = "192.0.2.9".parse().unwrap();
        for _ in 0..4 {
            assert!(s.admit(a, now).is_ok());
        }
        assert!(matches!(s.admit(a, now), Err(Refusal::PerAddress)));
        for _ in 0..4 {
            assert!(s.admit(b, now).is_ok());
        }
        // 8 of 10 open: the last 2 are the reserve, refused to anyone not vouched.
        assert!(matches!(s.admit(c, now), Err(Refusal::Global)));
        assert!(matches!(s.admit(trusted, now), Err(Refusal::Global)));
        s.vouch(trusted);
        assert!(s.admit(trusted, now).is_ok());
        assert!(s.admit(trusted, now).is_ok());
        assert!(matches!(s.admit(trusted, now), Err(Refusal::Global)));
        s.release(a);
        assert!(matches!(s.admit(c, now), Err(Refusal::Global)));
        s.release(a);
        s.release(a);
        assert!(s.admit(c, now).is_ok());
    }

    #[test]
    fn ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let a = source_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = source_key("2001:db8:1:2:bbbb::2".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(
            source_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn descriptor_exhaustion_is_recognised() {
        assert!(is_descriptor_exhaustion(
            &std::io::Error::from_raw_os_error(24)
        ));
        assert!(is_descriptor_exhaustion(
            &std::io::Error::from_raw_os_error(23)
        ));
        assert!(!is_descriptor_exhaustion(
            &std::io::Error::from_raw_os_error(104)
        ));
    }

    /// Reads one small response (ending in its 2-byte body `ok`); None once the server closed.
    async fn response(s: &mut tokio::net::TcpStream) -> Option<String> {
        use tokio::io::AsyncReadExt as _;
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !got.ends_with(b"ok") {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("an answer or a close within 5 s")
                .ok()?;
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
        }
        Some(String::from_utf8_lossy(&got).into_owned())
    }

    #[tokio::test]
    async fn a_connection_is_closed_after_its_requests_or_when_idle() {
        use tokio::io::AsyncWriteExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            max_requests_per_connection: 2,
            idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let server = Server::new(listener, None, limits, Duration::from_secs(1));
        let stats = server.stats.clone();
        let stop = CancellationToken::new();
        let svc = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"ok"),
            )))
        });
        let task = tokio::spawn(server.serve(svc, stop.clone()));
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        for i in 0..2 {
            s.write_all(req).await.unwrap();
            let r = response(&mut s).await;
            assert!(
                r.as_deref().is_some_and(|r| r.starts_with("HTTP/1.1 200")),
                "request {i}: {r:?}"
            );
        }
        let _ = s.write_all(req).await;
        assert_eq!(response(&mut s).await, None, "a third request was served");

        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(req).await.unwrap();
        assert!(response(&mut s).await.is_some());
        let idle = std::time::Instant::now();
        assert_eq!(response(&mut s).await, None);
        let waited = idle.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(4),
            "closed after {waited:?} idle"
        );
        stop.cancel();
        task.await.unwrap().unwrap();
        assert_eq!(stats.open.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_after_the_idle_timeout_but_not_while_busy() {
        let conn = Arc::new(ConnState::default());
        conn.in_flight.store(1, Ordering::Release);
        let c = conn.clone();
        let watch = tokio::spawn(async move {
            idle_or_spent(&c, Duration::from_secs(30)).await;
            tokio::time::Instant::now()
        });
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(!watch.is_finished(), "closed while a request was in flight");
        let start = tokio::time::Instant::now();
        drop(InFlight(conn.clone()));
        let closed_at = watch.await.unwrap();
        assert_eq!(closed_at - start, Duration::from_secs(30));
    }
}
