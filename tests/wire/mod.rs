//! Raw-socket helpers for the hostile-client tests: talk to a live server
//! byte by byte, with every wait bounded.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use certboard::framing::{self, Decoder};
use certboard::message::{ErrorCode, Message};

/// The longest any single test waits for the server to answer or close.
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// What the helpers here fail with.
pub(crate) type WireError = Box<dyn std::error::Error>;

/// A plain blocking connection with a read timeout.
pub(crate) fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, WAIT)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    s.set_write_timeout(Some(WAIT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Everything the server sends until it closes (or resets), waiting at most
/// `limit`. `None` if the connection was still open at the end.
pub(crate) fn read_to_close(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let until = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        match s.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset after the server's last frame is still a close.
            Err(_) => return Some(out),
        }
    }
    None
}

/// Splits a byte stream into the messages it holds (undecodable frames are
/// skipped; the server only sends well-formed ones).
pub(crate) fn messages(bytes: &[u8]) -> Vec<Message> {
    let mut d = Decoder::new(framing::DEFAULT_MAX_FRAME);
    let mut buf = bytes.to_vec();
    let mut out = Vec::new();
    while let Ok(Some(f)) = d.decode(&mut buf) {
        if let Ok(m) = Message::decode(&f) {
            out.push(m);
        }
    }
    out
}

/// The one error frame a refused connection got, or a description of what
/// came instead.
pub(crate) fn refusal(bytes: &[u8]) -> Result<(ErrorCode, String), WireError> {
    let msgs = messages(bytes);
    match msgs.last() {
        Some(Message::Error { code, reason }) => Ok((*code, reason.clone())),
        _ => Err(format!("no error frame; got {msgs:?} ({} bytes)", bytes.len()).into()),
    }
}

/// Sends `bytes` on a fresh connection, then reads until the server closes;
/// returns the refusal it sent.
pub(crate) fn send_and_refusal(
    addr: SocketAddr,
    bytes: &[u8],
) -> Result<(ErrorCode, String), WireError> {
    let mut s = connect(addr)?;
    s.write_all(bytes)?;
    let got = read_to_close(&mut s, WAIT).ok_or("the server did not close the connection")?;
    refusal(&got)
}

/// A frame holding `msg`.
pub(crate) fn frame(msg: &Message) -> Vec<u8> {
    framing::frame(&msg.encode())
}

/// A frame of protocol version 1's `EnrollRequest` (type 0x10, `bytes
/// csr`), as an old client sends it: the library no longer encodes it.
pub(crate) fn v1_enroll_request(csr_der: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x10];
    payload.extend_from_slice(&(csr_der.len() as u32).to_le_bytes());
    payload.extend_from_slice(csr_der);
    framing::frame(&payload)
}

/// A frame of protocol version 1's `SubmitHello` (type 0x20, `text sid`,
/// `bytes cert`, `list chain` empty), as an old client sends it.
pub(crate) fn v1_submit_hello(sid: &str, cert_der: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x20];
    payload.extend_from_slice(&(sid.len() as u16).to_le_bytes());
    payload.extend_from_slice(sid.as_bytes());
    payload.extend_from_slice(&(cert_der.len() as u32).to_le_bytes());
    payload.extend_from_slice(cert_der);
    payload.push(0);
    framing::frame(&payload)
}

/// The reason every version 1 message gets, with code 10.
pub(crate) const V1_REFUSED: &str = "protocol version 1 is no longer served: this server speaks \
                                     version 2 (PROTOCOL.md); upgrade the client";

/// A length prefix alone.
pub(crate) fn header(len: i32) -> [u8; 4] {
    len.to_le_bytes()
}

/// Polls `f` until it is true or `limit` passes.
pub(crate) fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
