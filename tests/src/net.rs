//! Small helpers for harnesses: free loopback ports, random secrets, waiting for a port to
//! accept connections, and a blocking SOA query used as a readiness check for DNS servers.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

/// A loopback port free for both TCP and UDP at the time of the call.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let Ok(tcp) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = tcp.local_addr() else { continue };
        if UdpSocket::bind(addr).is_ok() {
            return addr.port();
        }
    }
    panic!("no free loopback port found in 100 tries");
}

/// `n` random bytes from the OS, base64: a TSIG secret or API key.
pub fn random_secret(n: usize) -> String {
    let mut buf = vec![0u8; n];
    let mut f = std::fs::File::open("/dev/urandom").expect("open /dev/urandom");
    f.read_exact(&mut buf).expect("read /dev/urandom");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Polls a TCP connect until it succeeds or `deadline` passes.
pub fn wait_tcp(addr: SocketAddr, deadline: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if start.elapsed() > deadline {
            return Err(format!(
                "{addr} did not accept TCP connections within {deadline:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One SOA query over TCP; Ok when the server answers NOERROR with an SOA for `zone`.
pub fn soa_over_tcp(addr: SocketAddr, zone: &str, timeout: Duration) -> Result<(), String> {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = false;
    let name = Name::from_ascii(zone).map_err(|e| e.to_string())?;
    msg.add_query(Query::query(name, RecordType::SOA));
    let bytes = msg.to_vec().map_err(|e| e.to_string())?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&bytes);
    s.write_all(&out).map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).map_err(|e| e.to_string())?;
    let answer = Message::from_vec(&buf).map_err(|e| e.to_string())?;
    if answer.metadata.response_code != ResponseCode::NoError || answer.answers.is_empty() {
        return Err(format!(
            "SOA query for {zone} answered {:?} with {} records",
            answer.metadata.response_code,
            answer.answers.len()
        ));
    }
    Ok(())
}

/// Polls [`soa_over_tcp`] until it succeeds or `deadline` passes.
pub fn wait_soa(addr: SocketAddr, zone: &str, deadline: Duration) -> Result<(), String> {
    wait_tcp(addr, deadline)?;
    let start = Instant::now();
    loop {
        match soa_over_tcp(addr, zone, Duration::from_millis(500)) {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() > deadline => {
                return Err(format!(
                    "{addr} does not serve {zone} after {deadline:?}: {e}"
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}
