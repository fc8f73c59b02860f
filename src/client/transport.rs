//! The connection to a service: connect with a timeout, one frame at a
//! time over a blocking socket, and the admission challenge. Blocking is
//! right here: a client does one thing at a time.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::crypto;
use crate::framing::{self, Decoder};
use crate::message::{ErrorCode, Message};

use super::{io_ctx, ClientError};

pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn net_ctx(what: impl Into<String>) -> impl FnOnce(io::Error) -> ClientError {
    let what = what.into();
    move |source| ClientError::Network { what, source }
}

/// A network error in words a student can act on: what happened, then
/// what to check. The system's own text ("Connection refused (os error
/// 111)") names the symptom, not the remedy.
pub(super) fn explain(e: &io::Error) -> String {
    use io::ErrorKind as K;
    let hint = match e.kind() {
        K::ConnectionRefused => {
            "nothing listens there: is the server running, and is this its host and port \
             (--ca ADDR for the CA, --blackboard ADDR for Blackboard)?"
        }
        K::UnexpectedEof => {
            "the server closed the connection without an answer: its log says why (a limit, \
             a refusal it could not send, a restart); run again, and if it happens again ask \
             whoever runs the server"
        }
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
            "the server dropped the connection: its log says why (a limit, a restart); run \
             again, and if it happens again ask whoever runs the server"
        }
        K::HostUnreachable | K::NetworkUnreachable | K::NetworkDown => {
            "no route to that host: check the address and your network connection"
        }
        K::AddrNotAvailable | K::InvalidInput => {
            "not an address this machine can connect to: check the host and port"
        }
        K::NotFound => "no such host: check the host name (--ca ADDR, --blackboard ADDR)",
        _ => "check that the server is running and reachable at that address",
    };
    // The kind's own words are lowercase and free of OS numbers; any other
    // error keeps its own text (a host lookup's says what failed).
    let what = match e.kind() {
        kind @ (K::ConnectionRefused
        | K::UnexpectedEof
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::BrokenPipe
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::AddrNotAvailable) => kind.to_string(),
        _ => e.to_string(),
    };
    format!("{what}: {hint}")
}

/// A blocking, framed connection to one of the services.
#[derive(Debug)]
pub struct FramedStream {
    stream: TcpStream,
    decoder: Decoder,
    buf: Vec<u8>,
    peer: String,
    timeout: Duration,
    /// Whether a whole certboard frame has come yet (before it, bytes that
    /// do not frame mean the peer is something else).
    heard: bool,
}

impl FramedStream {
    /// Connects, with `timeout` for the connection and for every read and
    /// write after it.
    pub fn connect(addr: &str, timeout: Duration) -> Result<FramedStream, ClientError> {
        let what = format!("connecting to {addr}");
        // A failed lookup is "no such host" whatever kind the resolver gave.
        let not_found = |e: io::Error| io::Error::new(io::ErrorKind::NotFound, e.to_string());
        let sock = addr
            .to_socket_addrs()
            .map_err(not_found)
            .and_then(|mut found| {
                found
                    .next()
                    .ok_or_else(|| not_found(io::Error::other("the host has no address")))
            })
            .map_err(net_ctx(what.clone()))?;
        let stream = TcpStream::connect_timeout(&sock, timeout).map_err(|e| {
            if is_timeout(&e) {
                ClientError::Timeout {
                    what: what.clone(),
                    after: timeout,
                }
            } else {
                ClientError::Network {
                    what: what.clone(),
                    source: e,
                }
            }
        })?;
        FramedStream::over(stream, addr, timeout)
    }

    /// Frames over a stream the caller connected (from a chosen source
    /// address, say), to `addr` as it is to be shown, with `timeout` for
    /// every read and write.
    pub fn over(
        stream: TcpStream,
        addr: &str,
        timeout: Duration,
    ) -> Result<FramedStream, ClientError> {
        let what = format!("connecting to {addr}");
        stream
            .set_read_timeout(Some(timeout))
            .map_err(io_ctx(what.clone()))?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(io_ctx(what))?;
        let _ = stream.set_nodelay(true);
        Ok(FramedStream {
            stream,
            decoder: Decoder::new(framing::DEFAULT_MAX_FRAME),
            buf: Vec::new(),
            peer: addr.to_string(),
            timeout,
            heard: false,
        })
    }

    /// The address connected to.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Sends one frame.
    pub fn send_frame(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        let peer = self.peer.clone();
        self.stream
            .write_all(&framing::frame(payload))
            .map_err(net_ctx(format!("sending to {peer}")))
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &Message) -> Result<(), ClientError> {
        self.send_frame(&msg.encode())
    }

    /// Tells the peer nothing more is coming (a TCP half-close); answers
    /// can still be received.
    pub fn finish_sending(&mut self) -> Result<(), ClientError> {
        let peer = self.peer.clone();
        self.stream
            .shutdown(std::net::Shutdown::Write)
            .map_err(net_ctx(format!("closing the way to {peer}")))
    }

    /// Receives one frame.
    pub fn recv_frame(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(f)) => {
                    self.heard = true;
                    return Ok(f);
                }
                Ok(None) => {}
                Err(e) if !self.heard => {
                    let start = &self.buf[..self.buf.len().min(8)];
                    return Err(ClientError::NotCertboard {
                        peer: self.peer.clone(),
                        why: format!(
                            "its first bytes {:?} are not a certboard frame: {e}",
                            String::from_utf8_lossy(start)
                        ),
                    });
                }
                Err(e) => return Err(ClientError::Frame(e)),
            }
            let what = format!("waiting for an answer from {}", self.peer);
            let n = match self.stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if is_timeout(&e) => {
                    return Err(ClientError::Timeout {
                        what,
                        after: self.timeout,
                    })
                }
                Err(e) => return Err(ClientError::Network { what, source: e }),
            };
            if n == 0 {
                return Err(ClientError::Network {
                    what: format!("reading from {}", self.peer),
                    source: io::ErrorKind::UnexpectedEof.into(),
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Receives one message; a server error becomes [`ClientError::Refused`].
    pub fn recv(&mut self) -> Result<Message, ClientError> {
        let first = !self.heard;
        let frame = self.recv_frame()?;
        match Message::decode(&frame) {
            Ok(Message::Error { code, reason }) => Err(ClientError::Refused { code, reason }),
            Ok(m) => Ok(m),
            Err(e) if first => Err(ClientError::NotCertboard {
                peer: self.peer.clone(),
                why: format!("its first frame is not a certboard message: {e}"),
            }),
            Err(e) => Err(ClientError::Decode(e)),
        }
    }

    /// Answers the admission challenge when a secret is configured.
    pub fn admit(&mut self, secret: Option<&[u8]>) -> Result<(), ClientError> {
        let Some(secret) = secret else {
            return Ok(());
        };
        let first = match self.recv() {
            Ok(m) => m,
            // A server without admission control waits for our request and
            // eventually refuses the silence.
            Err(ClientError::Refused { reason, .. }) => {
                return Err(ClientError::Protocol(format!(
                    "no admission challenge came (the server said: {reason}); if the server \
                     does not use admission control, drop --admission-secret-file"
                )))
            }
            Err(e) => return Err(e),
        };
        match first {
            Message::AdmissionChallenge { challenge } => {
                let mac = crypto::hmac_sha256(secret, &challenge)?;
                self.send(&Message::AdmissionResponse { mac })
            }
            other => Err(ClientError::Protocol(format!(
                "expected an admission challenge, got {}",
                other.name()
            ))),
        }
    }
}

/// A refusal from the CA where Blackboard was dialled (its ports swapped on
/// the command line): the CA's own reason, and what to change.
pub(crate) fn at_the_ca_port(e: ClientError, blackboard: &str) -> ClientError {
    match e {
        ClientError::Refused {
            code: ErrorCode::UnexpectedMessage,
            reason,
        } if reason.contains("CaHello") => ClientError::Refused {
            code: ErrorCode::UnexpectedMessage,
            reason: format!(
                "{reason} ({blackboard} is the CA, not Blackboard: the ports look swapped; \
                 --blackboard is Blackboard's address)"
            ),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_errors_say_what_to_check_without_os_numbers() {
        let refused = explain(&io::Error::from_raw_os_error(111));
        assert!(refused.starts_with("connection refused: "), "{refused}");
        assert!(refused.contains("is the server running"), "{refused}");
        assert!(!refused.contains("os error"), "{refused}");
        let eof = explain(&io::ErrorKind::UnexpectedEof.into());
        assert!(eof.contains("its log says why"), "{eof}");
        let lookup = explain(&io::Error::new(io::ErrorKind::NotFound, "lookup failed"));
        assert!(
            lookup.starts_with("lookup failed: no such host"),
            "{lookup}"
        );
    }
}
