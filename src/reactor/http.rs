//! The protocol part of a connection to the HTTP listener (issue 14): the
//! operations endpoints (OCSP, CRL, health, metrics) on the same loop as
//! the CA and Blackboard. Bytes go through the sans-I/O codec
//! ([`crate::ops::http`]) and each request is answered by [`Ops`]; no protocol
//! session is involved. The transport (reads, writes, limits, timeouts)
//! is every connection's.
//!
//! Keep-alive and pipelining are served: requests are answered in order,
//! one per turn of the loop, and a client that sends faster than it reads
//! stops being answered (its input waits, unparsed) until it reads.

use std::io::{Read, Write};

use log::{debug, info, warn};

use std::net::IpAddr;
use std::sync::Arc;

use super::connection::{Refused, Work};
use super::offload::OffJob;
use super::transport::Transport;
use crate::ops::http::{self, Method, RequestDecoder, Response};
use crate::ops::metrics::Metrics;
use crate::ops::Ops;
use crate::protocol::{ConnectionError, Expiry};
use crate::staff::{BodyJob, BodyStream, StaffApp, StaffError, StaffJob, BODY_LOW_WATER};
use crate::store::Storage;

/// Limits of the HTTP listener's connections, beside the reactor's
/// [`super::Limits`] (connections per listener, bytes per connection,
/// buffered bytes, idle timeout and deadline apply here too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConnLimits {
    /// Head, header count and body of one request.
    pub request: http::HttpLimits,
    /// Most requests one connection may make; the last is answered with
    /// `Connection: close`.
    pub max_requests: u32,
}

impl Default for HttpConnLimits {
    fn default() -> Self {
        HttpConnLimits {
            request: http::HttpLimits::default(),
            max_requests: 100,
        }
    }
}

/// An HTTP connection's protocol part.
#[derive(Debug)]
pub(super) struct Http {
    decoder: RequestDecoder,
    max_requests: u32,
    /// `100 Continue` was sent for the request now arriving.
    continue_sent: bool,
    /// Requests answered so far.
    requests: u32,
}

impl Http {
    pub(super) fn new(limits: HttpConnLimits) -> Http {
        Http {
            decoder: RequestDecoder::new(limits.request),
            max_requests: limits.max_requests,
            continue_sent: false,
            requests: 0,
        }
    }

    /// Answers the next whole request, if one is buffered.
    pub(super) fn next<S: Read + Write>(
        &mut self,
        t: &mut Transport<S>,
        ops: &mut Ops,
        store: &mut dyn Storage,
        metrics: &Metrics,
        peer: &str,
    ) -> Work {
        match self.decoder.decode(&mut t.inbuf) {
            Ok(Some(req)) => {
                // Each request of a kept-alive connection is an exchange
                // of its own: the deadline counts from it.
                t.touch();
                t.progress(std::time::Instant::now());
                self.requests = self.requests.saturating_add(1);
                self.continue_sent = false;
                let mut resp = ops.handle(&req, store);
                if !req.keep_alive || self.requests >= self.max_requests {
                    resp = resp.close();
                }
                debug!(
                    "{peer}: {} {} -> {}",
                    req.method.as_str(),
                    req.path(),
                    resp.status
                );
                resp.encode(req.method, &mut t.outbuf);
                if resp.close {
                    Work::Finish
                } else {
                    Work::Done
                }
            }
            Ok(None) => not_yet(&self.decoder, &mut self.continue_sent, t),
            Err(e) => bad_request(&e, t, metrics, peer),
        }
    }

    /// The response for `e`.
    pub(super) fn refusal(&self, e: &ConnectionError) -> Refused {
        Http::refusal_of(e)
    }

    /// The response for `e`, for a connection whose handler has no state
    /// to add (the staff listener's).
    pub(super) fn refusal_of(e: &ConnectionError) -> Refused {
        refused_with(e.http_status(), e.to_string(), e.retry_after())
    }

    /// The response for `e` to a connection refused at accept.
    pub(super) fn refusal_at_accept(e: &ConnectionError) -> Vec<u8> {
        Http::refusal_of(e).bytes
    }

    /// A 408 when part of a request had arrived; else close quietly.
    pub(super) fn on_expiry<S>(&self, expiry: Expiry, t: &Transport<S>) -> Option<Refused> {
        timed_out(expiry, t, self.continue_sent)
    }
}

/// A staff connection's protocol part: requests decoded here, each
/// answered whole on the worker pool ([`crate::staff`]), one at a time.
#[derive(Debug)]
pub(super) struct Staff {
    decoder: RequestDecoder,
    max_requests: u32,
    continue_sent: bool,
    requests: u32,
    app: Arc<StaffApp>,
    source: IpAddr,
    /// The request being answered closes the connection.
    close_after: bool,
    /// A download whose head is queued and whose body is not all read
    /// yet: no further request is handled until it is.
    streaming: Option<BodyStream>,
}

impl Staff {
    pub(super) fn new(limits: HttpConnLimits, app: Arc<StaffApp>, source: IpAddr) -> Staff {
        let request = http::HttpLimits {
            max_body: crate::staff::MAX_BODY,
            ..limits.request
        };
        Staff {
            decoder: RequestDecoder::new(request),
            max_requests: limits.max_requests,
            continue_sent: false,
            requests: 0,
            app,
            source,
            close_after: false,
            streaming: None,
        }
    }

    /// The next whole request, as a job for the pool.
    pub(super) fn next<S: Read + Write>(
        &mut self,
        t: &mut Transport<S>,
        metrics: &Metrics,
        peer: &str,
    ) -> Work {
        if let Some(stream) = self.streaming.take() {
            // Whether the client has taken what is queued decides, so look
            // after writing what the socket takes now; a write error shows
            // on the reactor's own flush.
            let _ = t.flush();
            if t.outbuf.len() >= BODY_LOW_WATER {
                // The socket is full: its writable event brings us back.
                self.streaming = Some(stream);
                return Work::Idle;
            }
            return Work::Offload(OffJob::StaffBody(BodyJob::new(
                Arc::clone(&self.app),
                stream,
            )));
        }
        match self.decoder.decode(&mut t.inbuf) {
            Ok(Some(req)) => {
                // Each request of a kept-alive connection is an exchange
                // of its own: the deadline counts from it.
                t.touch();
                t.progress(std::time::Instant::now());
                self.requests = self.requests.saturating_add(1);
                self.continue_sent = false;
                self.close_after = !req.keep_alive || self.requests >= self.max_requests;
                debug!("{peer}: {} {}", req.method.as_str(), req.path());
                Work::Offload(OffJob::Staff(StaffJob::new(
                    Arc::clone(&self.app),
                    req,
                    self.source,
                )))
            }
            Ok(None) => not_yet(&self.decoder, &mut self.continue_sent, t),
            Err(e) => bad_request(&e, t, metrics, peer),
        }
    }

    /// The answer has come back from the pool: queued; `true` when the
    /// connection closes after it.
    pub(super) fn answer<S>(
        &mut self,
        method: Method,
        resp: Response,
        stream: Option<BodyStream>,
        t: &mut Transport<S>,
    ) -> bool {
        let resp = if self.close_after { resp.close() } else { resp };
        match stream {
            Some(stream) => {
                resp.encode_head(stream.size(), &mut t.outbuf);
                if method == Method::Head || stream.finished() {
                    return resp.close;
                }
                // The body follows piece by piece (`next`); the connection
                // closes, if it does, after the last one.
                self.streaming = Some(stream);
                false
            }
            None => {
                resp.encode(method, &mut t.outbuf);
                resp.close
            }
        }
    }

    /// A piece of the download came back from the pool: queued; `true`
    /// when the connection closes now (the last piece of a closing
    /// exchange, or the store failed mid-body: the head announced a
    /// length, so closing early is the only way to tell the client).
    pub(super) fn piece<S: Read + Write>(
        &mut self,
        stream: BodyStream,
        piece: Result<Vec<u8>, StaffError>,
        t: &mut Transport<S>,
        peer: &str,
    ) -> bool {
        match piece {
            Ok(bytes) => {
                t.outbuf.extend_from_slice(&bytes);
                // A long download to a slow reader is progress, not a
                // stuck exchange: the deadline and idle timer restart.
                t.progress(std::time::Instant::now());
                t.touch();
                if stream.finished() {
                    self.close_after
                } else {
                    self.streaming = Some(stream);
                    false
                }
            }
            Err(e) => {
                warn!("{peer}: download cut off: {e}");
                true
            }
        }
    }

    /// A 408 when part of a request had arrived; else close quietly.
    pub(super) fn on_expiry<S>(&self, expiry: Expiry, t: &Transport<S>) -> Option<Refused> {
        timed_out(expiry, t, self.continue_sent)
    }
}

/// No whole request is buffered yet: a client that announced a body with
/// `Expect: 100-continue` is told, once, to send it.
fn not_yet<S>(decoder: &RequestDecoder, continue_sent: &mut bool, t: &mut Transport<S>) -> Work {
    if decoder.awaiting_continue() && !*continue_sent {
        t.outbuf.extend_from_slice(http::CONTINUE);
        *continue_sent = true;
    }
    Work::Idle
}

/// The buffered bytes are not a request this listener takes: its refusal
/// is queued, counted, and the connection finishes.
fn bad_request<S>(
    e: &http::HttpError,
    t: &mut Transport<S>,
    metrics: &Metrics,
    peer: &str,
) -> Work {
    info!("{peer}: refused: {e}");
    metrics.refused(refusal_label(e.status()));
    e.response().encode(Method::Get, &mut t.outbuf);
    Work::Finish
}

/// A 408 when part of a request had arrived (or its body was invited by
/// `100 Continue`); else nothing, and the connection closes quietly.
fn timed_out<S>(expiry: Expiry, t: &Transport<S>, continue_sent: bool) -> Option<Refused> {
    let mid_request = !t.inbuf.is_empty() || continue_sent;
    mid_request.then(|| {
        refused(
            408,
            format!("{expiry} reached before the request was complete"),
        )
    })
}

fn refused(status: u16, reason: String) -> Refused {
    refused_with(status, reason, None)
}

/// A refusal that closes the connection; `retry_after` (seconds) for one
/// that passes by itself.
fn refused_with(status: u16, reason: String, retry_after: Option<u64>) -> Refused {
    let mut bytes = Vec::new();
    let mut resp = Response::refusal(status, &reason);
    if let Some(secs) = retry_after {
        resp = resp.header("Retry-After", secs.to_string());
    }
    resp.encode(Method::Get, &mut bytes);
    Refused {
        bytes,
        label: refusal_label(status),
        reason,
    }
}

/// The refusal reason of an HTTP status, for the metrics.
fn refusal_label(status: u16) -> &'static str {
    match status {
        408 => "http_timeout",
        411 | 413 | 414 | 431 => "http_too_large",
        503 => "http_busy",
        _ => "http_bad_request",
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::net::Ipv4Addr;

    use super::*;
    use crate::staff::{StaffConfig, PIECE};
    use crate::store::{ChunkRecord, Record, SqliteStore, UploadRecord};

    /// A client socket that takes at most `cap` bytes per write (0: it is
    /// not reading, every write would block).
    #[derive(Debug, Default)]
    struct Client {
        cap: usize,
        got: Vec<u8>,
    }

    impl Read for Client {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    impl Write for Client {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.cap == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.cap);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Runs the handler as the reactor would, pieces done on the spot,
    /// until it has nothing to do; how many pieces were read.
    fn pump(staff: &mut Staff, t: &mut Transport<Client>) -> usize {
        let metrics = Metrics::new();
        let mut pieces = 0;
        for _ in 0..10_000 {
            match staff.next(t, &metrics, "test") {
                Work::Offload(OffJob::StaffBody(job)) => {
                    let (stream, piece) = job.run();
                    assert!(piece.is_ok(), "{piece:?}");
                    pieces += 1;
                    assert!(!staff.piece(stream, piece, t, "test"));
                }
                Work::Idle => return pieces,
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("never idle");
    }

    /// A commit refused because the store is unreachable is answered
    /// 503 with `Retry-After`, as a busy server is, not 500.
    #[test]
    fn a_store_unavailable_commit_is_503_with_retry_after() {
        let e = ConnectionError::Commit(crate::store::StoreError::Unavailable(
            crate::store::Unavailable {
                target: "test@db".into(),
                outcome_unknown: false,
                retry_in: std::time::Duration::from_millis(2500),
                source: None,
            },
        ));
        let r = Http::refusal_of(&e);
        let text = String::from_utf8_lossy(&r.bytes).into_owned();
        assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
        assert!(text.contains("\r\nRetry-After: 3\r\n"), "{text}");
        assert!(text.contains("nothing was recorded"), "{text}");
        assert_eq!(r.label, "http_busy");
        // A server failure is still 500, with no promise of a retry.
        let r = Http::refusal_of(&ConnectionError::WriterLost);
        let text = String::from_utf8_lossy(&r.bytes).into_owned();
        assert!(text.starts_with("HTTP/1.1 500 "), "{text}");
        assert!(!text.contains("Retry-After"), "{text}");
    }

    #[test]
    fn a_download_is_read_only_as_fast_as_the_client_takes_it(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut store = SqliteStore::open(dir.path())?;
        // 5 MiB in 80 stored chunks, not a multiple of the piece size.
        let data: Vec<u8> = (0..5 * 1024 * 1024 + 123)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut batch: Vec<Record> = data
            .chunks(65_536)
            .enumerate()
            .map(|(seq, c)| {
                Record::Chunk(ChunkRecord {
                    upload_id: 9,
                    seq: seq as u64,
                    data: c.to_vec(),
                })
            })
            .collect();
        let chunks = batch.len() as u64;
        batch.push(Record::Upload(UploadRecord {
            receipt_id: 1,
            upload_id: 9,
            sid: "1155000001".into(),
            serial: crate::ca::Serial::parse_hex("0A")?,
            received_at: 1_700_000_000,
            assignment: "lab".into(),
            file_name: "big.bin".into(),
            size: data.len() as u64,
            sha256: [0; 32],
            chunks,
            late_seconds: 0,
        }));
        crate::store::Storage::commit(&mut store, &batch)?;
        let app = StaffApp::new(StaffConfig::default(), Box::new(store));
        let mut staff = Staff::new(HttpConnLimits::default(), app, Ipv4Addr::LOCALHOST.into());
        let mut t = Transport::new(Client::default(), std::time::Instant::now());

        let stream = BodyStream::new(9, chunks, data.len() as u64);
        let resp = Response::new(200, Vec::new()).content_type("application/octet-stream");
        assert!(!staff.answer(Method::Get, resp, Some(stream), &mut t));
        let head_len = t.outbuf.len();
        // A client that reads nothing: a piece or two is queued, no more.
        let pieces = pump(&mut staff, &mut t);
        assert!((1..=2).contains(&pieces), "{pieces} pieces");
        assert!(
            t.outbuf.len() <= head_len + BODY_LOW_WATER + PIECE,
            "{} bytes queued for a client reading nothing",
            t.outbuf.len()
        );
        assert!(staff.streaming.is_some());
        // It reads 10 KiB at a time: still bounded, and it gets it all.
        t.stream_mut().cap = 10 * 1024;
        let mut rounds = 0;
        while staff.streaming.is_some() || !t.outbuf.is_empty() {
            pump(&mut staff, &mut t);
            assert!(t.outbuf.len() <= head_len + BODY_LOW_WATER + PIECE);
            t.flush()?;
            rounds += 1;
            assert!(rounds < 100_000, "never finished");
        }
        let got = std::mem::take(&mut t.stream_mut().got);
        let head = String::from_utf8_lossy(&got[..head_len]).into_owned();
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", data.len())),
            "{head}"
        );
        assert!(got[head_len..] == data[..], "the body differs");
        Ok(())
    }
}
