//! The sockets: UDP and TCP loops around [`respond`], with every bound explicit (request
//! size, TCP connection count, idle timeout, queries per connection) and response counters.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::Builtin;
use super::answer::{MAX_REQUEST_LEN, Reply, Transport, respond};

/// Bounds on the work one client can cause.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent TCP connections; further ones are accepted and closed at once.
    pub max_tcp_connections: usize,
    /// A TCP connection that sends nothing for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Queries answered on one TCP connection before it is closed.
    pub max_queries_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tcp_connections: 64,
            tcp_idle_timeout: Duration::from_secs(10),
            max_queries_per_connection: 100,
        }
    }
}

/// Response counters, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Responses sent, by rcode (0 NOERROR, 1 FORMERR, 3 NXDOMAIN, 4 NOTIMP, 5 REFUSED, 16
    /// BADVERS, …); see [`rcode_label`].
    pub responses: BTreeMap<u16, u64>,
    /// Responses sent with TC set.
    pub truncated: u64,
    /// Requests dropped without a reply (responses, shorter than a header, bad TCP framing).
    pub dropped: u64,
    /// TCP connections closed at once because the connection limit was reached.
    pub tcp_rejected: u64,
}

/// Metric-friendly rcode name: `NOERROR`, `NXDOMAIN`, …, `RCODE<n>` for the rest.
pub fn rcode_label(code: u16) -> String {
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        16 => "BADVERS".into(),
        other => format!("RCODE{other}"),
    }
}

const RCODE_SLOTS: usize = 24;

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) by_rcode: [AtomicU64; RCODE_SLOTS],
    pub(super) other_rcode: AtomicU64,
    pub(super) truncated: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) tcp_rejected: AtomicU64,
}

impl Counters {
    pub(super) fn record(&self, reply: Option<&Reply>) {
        let Some(reply) = reply else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match self.by_rcode.get(usize::from(u16::from(reply.rcode))) {
            Some(slot) => slot.fetch_add(1, Ordering::Relaxed),
            None => self.other_rcode.fetch_add(1, Ordering::Relaxed),
        };
        if reply.truncated {
            self.truncated.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Builtin {
    /// Answers on every socket until `shutdown`, then waits for open connections to finish
    /// their current query.
    pub async fn serve(
        self: Arc<Self>,
        udp: Vec<UdpSocket>,
        tcp: Vec<TcpListener>,
        shutdown: CancellationToken,
    ) {
        let tracker = TaskTracker::new();
        for socket in udp {
            tracker.spawn(self.clone().udp_loop(socket, shutdown.clone()));
        }
        let permits = Arc::new(Semaphore::new(self.limits.max_tcp_connections));
        for listener in tcp {
            tracker.spawn(self.clone().tcp_accept_loop(
                listener,
                permits.clone(),
                shutdown.clone(),
                tracker.clone(),
            ));
        }
        tracker.close();
        tracker.wait().await;
    }

    /// [`respond`] on the current snapshot. The parser is third-party code fed attacker
    /// bytes: should it ever panic, that request is dropped and the loop keeps serving.
    fn respond_guarded(&self, request: &[u8], transport: Transport) -> Option<Reply> {
        let zone = self.snapshot();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            respond(request, &zone, transport)
        }))
        .unwrap_or_else(|_| {
            warn!(
                len = request.len(),
                "dns request handling panicked; request dropped"
            );
            None
        })
    }

    async fn udp_loop(self: Arc<Self>, socket: UdpSocket, shutdown: CancellationToken) {
        // One datagram can be up to 64 KiB; read it whole so an oversized one is seen as such.
        let mut buf = vec![0u8; usize::from(u16::MAX)];
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                received = socket.recv_from(&mut buf) => received,
            };
            let (len, peer) = match received {
                Ok(received) => received,
                Err(error) => {
                    debug!(%error, "udp receive failed");
                    // Back off briefly so a persistent socket error cannot spin a core.
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(10)) => continue,
                    }
                }
            };
            let request = buf.get(..len).unwrap_or_default();
            let reply = self.respond_guarded(request, Transport::Udp);
            self.counters.record(reply.as_ref());
            if let Some(reply) = reply
                && let Err(error) = socket.send_to(&reply.bytes, peer).await
            {
                debug!(%error, %peer, "udp send failed");
            }
        }
    }

    async fn tcp_accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        permits: Arc<Semaphore>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(%error, "tcp accept failed");
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    }
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                self.counters.tcp_rejected.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, "tcp connection limit reached, closing");
                drop(stream);
                continue;
            };
            let server = self.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                server.tcp_connection(stream, shutdown).await;
                drop(permit);
            });
        }
    }

    async fn tcp_connection(&self, mut stream: TcpStream, shutdown: CancellationToken) {
        let idle = self.limits.tcp_idle_timeout;
        let mut buf = vec![0u8; MAX_REQUEST_LEN];
        for _ in 0..self.limits.max_queries_per_connection {
            let mut len = [0u8; 2];
            let read = tokio::select! {
                _ = shutdown.cancelled() => return,
                read = tokio::time::timeout(idle, stream.read_exact(&mut len)) => read,
            };
            if !matches!(read, Ok(Ok(_))) {
                return;
            }
            let len = usize::from(u16::from_be_bytes(len));
            if len == 0 || len > MAX_REQUEST_LEN {
                self.counters.record(None);
                return;
            }
            let Some(request) = buf.get_mut(..len) else {
                return;
            };
            let read = tokio::select! {
                _ = shutdown.cancelled() => return,
                read = tokio::time::timeout(idle, stream.read_exact(request)) => read,
            };
            if !matches!(read, Ok(Ok(_))) {
                return;
            }
            let reply = self.respond_guarded(request, Transport::Tcp);
            self.counters.record(reply.as_ref());
            let Some(reply) = reply else {
                return;
            };
            let Ok(reply_len) = u16::try_from(reply.bytes.len()) else {
                return;
            };
            let mut framed = Vec::with_capacity(reply.bytes.len() + 2);
            framed.extend_from_slice(&reply_len.to_be_bytes());
            framed.extend_from_slice(&reply.bytes);
            match tokio::time::timeout(idle, stream.write_all(&framed)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }
}

/// Binds UDP and TCP on every address; errors name the address.
pub async fn bind(addrs: &[SocketAddr]) -> io::Result<(Vec<UdpSocket>, Vec<TcpListener>)> {
    let mut udp = Vec::with_capacity(addrs.len());
    let mut tcp = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind udp {addr}: {e}")))?;
        // Port 0: let TCP take the port UDP got, so both answer on the same address.
        let tcp_addr = socket.local_addr()?;
        let listener = TcpListener::bind(tcp_addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind tcp {tcp_addr}: {e}")))?;
        udp.push(socket);
        tcp.push(listener);
    }
    Ok((udp, tcp))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dns::builtin::fixtures::*;
    use hickory_proto::rr::RecordType as WireType;

    #[test]
    fn stats_count_by_rcode() {
        let server = server();
        let zone = server.snapshot();
        for name in ["www.example.test.", "nope.example.test.", "x.other.test."] {
            let reply = respond(
                &query(name, WireType::A).to_vec().unwrap(),
                &zone,
                Transport::Udp,
            );
            server.counters.record(reply.as_ref());
        }
        server.counters.record(None);
        let stats = server.stats();
        assert_eq!(stats.responses, BTreeMap::from([(0, 1), (3, 1), (5, 1)]));
        assert_eq!(stats.dropped, 1);
        assert_eq!(rcode_label(3), "NXDOMAIN");
    }
}
