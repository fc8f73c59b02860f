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

use log::{debug, info};

use std::net::IpAddr;
use std::sync::Arc;

use super::connection::{Refused, Work};
use super::offload::OffJob;
use super::transport::Transport;
use crate::ops::http::{self, Method, RequestDecoder, Response};
use crate::ops::metrics::Metrics;
use crate::ops::Ops;
use crate::protocol::{ConnectionError, Expiry};
use crate::staff::{StaffApp, StaffJob};
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
                t.touch();
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
            Ok(None) => {
                if self.decoder.awaiting_continue() && !self.continue_sent {
                    t.outbuf.extend_from_slice(http::CONTINUE);
                    self.continue_sent = true;
                }
                Work::Idle
            }
            Err(e) => {
                info!("{peer}: refused: {e}");
                metrics.refused(refusal_label(e.status()));
                e.response().encode(Method::Get, &mut t.outbuf);
                Work::Finish
            }
        }
    }

    /// The response for `e`.
    pub(super) fn refusal(&self, e: &ConnectionError) -> Refused {
        refused(status(e), e.to_string())
    }

    /// The response for `e`, for a connection whose handler has no state
    /// to add (the staff listener's).
    pub(super) fn refusal_of(e: &ConnectionError) -> Refused {
        refused(status(e), e.to_string())
    }

    /// The response for `e` to a connection refused at accept.
    pub(super) fn refusal_at_accept(e: &ConnectionError) -> Vec<u8> {
        refused(status(e), e.to_string()).bytes
    }

    /// A 408 when part of a request had arrived; else close quietly.
    pub(super) fn on_expiry<S>(&self, expiry: Expiry, t: &Transport<S>) -> Option<Refused> {
        let mid_request = !t.inbuf.is_empty() || self.continue_sent;
        mid_request.then(|| {
            refused(
                408,
                format!("{expiry} reached before the request was complete"),
            )
        })
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
        }
    }

    /// The next whole request, as a job for the pool.
    pub(super) fn next<S: Read + Write>(
        &mut self,
        t: &mut Transport<S>,
        metrics: &Metrics,
        peer: &str,
    ) -> Work {
        match self.decoder.decode(&mut t.inbuf) {
            Ok(Some(req)) => {
                t.touch();
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
            Ok(None) => {
                if self.decoder.awaiting_continue() && !self.continue_sent {
                    t.outbuf.extend_from_slice(http::CONTINUE);
                    self.continue_sent = true;
                }
                Work::Idle
            }
            Err(e) => {
                info!("{peer}: refused: {e}");
                metrics.refused(refusal_label(e.status()));
                e.response().encode(Method::Get, &mut t.outbuf);
                Work::Finish
            }
        }
    }

    /// The answer has come back from the pool: queued; `true` when the
    /// connection closes after it.
    pub(super) fn answer<S>(
        &mut self,
        method: Method,
        resp: Response,
        t: &mut Transport<S>,
    ) -> bool {
        let resp = if self.close_after { resp.close() } else { resp };
        resp.encode(method, &mut t.outbuf);
        resp.close
    }

    /// A 408 when part of a request had arrived; else close quietly.
    pub(super) fn on_expiry<S>(&self, expiry: Expiry, t: &Transport<S>) -> Option<Refused> {
        let mid_request = !t.inbuf.is_empty() || self.continue_sent;
        mid_request.then(|| {
            refused(
                408,
                format!("{expiry} reached before the request was complete"),
            )
        })
    }
}

fn refused(status: u16, reason: String) -> Refused {
    let mut bytes = Vec::new();
    Response::new(status, format!("{reason}\n").into_bytes())
        .content_type("text/plain; charset=utf-8")
        .close()
        .encode(Method::Get, &mut bytes);
    Refused {
        bytes,
        label: refusal_label(status),
        reason,
    }
}

/// The HTTP status of a connection-level refusal.
fn status(e: &ConnectionError) -> u16 {
    match e {
        ConnectionError::TooManyBytes { .. } => 413,
        ConnectionError::BadFrame(_) | ConnectionError::TooManyMessages { .. } => 400,
        ConnectionError::Overloaded { .. }
        | ConnectionError::TooManyConnections
        | ConnectionError::OutOfDescriptors
        | ConnectionError::WorkersBusy { .. } => 503,
        ConnectionError::NoWorkers
        | ConnectionError::Commit(_)
        | ConnectionError::CommitOutcomeUnknown
        | ConnectionError::WriterLost => 500,
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
