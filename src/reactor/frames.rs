//! The protocol part of a connection that speaks frames: the decoder and
//! the [`Session`], asked one frame at a time. What a session's step asks
//! for ([`Output`]) is carried out by the reactor.

use std::io::{Read, Write};
use std::time::Duration;

use super::connection::{Refused, Work};
use super::transport::Transport;
use super::Limits;
use crate::framing::{self, Decoder};
use crate::message::ErrorCode;
use crate::protocol::{
    refusal_label, ConnectionError, Done, Expiry, Output, ServiceKind, Session, Shared,
};
use crate::store::tlog::Logged;

/// A frame connection's protocol part.
#[derive(Debug)]
pub(super) struct Frames {
    decoder: Decoder,
    session: Session,
    /// Frames received so far.
    messages: u32,
    max_messages: u32,
    /// Frames an upload under way may send beyond `max_messages`.
    extra_messages: u32,
    /// The last upload this connection staged chunks of: if it ends before
    /// the upload is recorded, they are deleted.
    staged: Option<i64>,
}

impl Frames {
    /// A new connection from `source` to a `kind` listener, and what to
    /// send at once.
    pub(super) fn start(
        kind: ServiceKind,
        shared: &Shared,
        limits: &Limits,
        source: std::net::IpAddr,
    ) -> (Frames, Output) {
        let (session, out) = Session::start_from(kind, shared, source);
        let frames = Frames {
            decoder: Decoder::new(limits.max_frame),
            session,
            messages: 0,
            max_messages: limits.max_messages,
            extra_messages: 0,
            staged: None,
        };
        (frames, out)
    }

    /// How much to read now with `buffered` bytes in the buffer
    /// ([`Decoder::wanted`]).
    pub(super) fn wanted(&self, buffered: usize) -> Option<usize> {
        self.decoder.wanted(buffered)
    }

    /// Takes the next whole frame, if one is buffered, to the session.
    pub(super) fn next<S: Read + Write>(
        &mut self,
        t: &mut Transport<S>,
        shared: &mut Shared,
        peer: &str,
    ) -> Work {
        let range = match self.decoder.next_frame(&mut t.inbuf) {
            Ok(Some(r)) => r,
            Ok(None) => return Work::Idle,
            Err(e) => return Work::Refuse(ConnectionError::BadFrame(e)),
        };
        t.touch();
        self.messages = self.messages.saturating_add(1);
        if self.messages > self.max_messages.saturating_add(self.extra_messages) {
            self.decoder.consume(&mut t.inbuf);
            return Work::Refuse(ConnectionError::TooManyMessages {
                limit: self.max_messages,
            });
        }
        let session = std::mem::take(&mut self.session);
        // Read where it lies in the buffer, then taken off: no copy of it.
        let frame = t.inbuf.get(range).unwrap_or_default();
        let (next, out) = session.on_frame(frame, shared, peer);
        self.decoder.consume(&mut t.inbuf);
        self.session = next;
        if let Some((bytes, frames)) = self.session.upload_allowance() {
            // Granted once, at the announcement: the file's own size.
            if self.extra_messages == 0 {
                self.extra_messages = frames.saturating_add(1);
                t.allow_bytes(bytes);
            }
            // The announcement or a chunk taken: the exchange moves.
            t.progress(std::time::Instant::now());
        }
        if let Some(id) = self.session.staged_upload() {
            self.staged = Some(id);
        }
        Work::Output(out)
    }

    /// Whether the peer owes the message that makes a record now.
    pub(super) fn awaits_record(&self) -> bool {
        self.session.awaits_record()
    }

    /// Whether a turn can act on `buf` as it is ([`Decoder::has_next`]).
    pub(super) fn has_next(&self, buf: &[u8]) -> bool {
        self.decoder.has_next(buf)
    }

    /// Whether a whole frame waits in `buf` for its turn.
    pub(super) fn holds_frame(&self, buf: &[u8]) -> bool {
        self.decoder.holds_frame(buf)
    }

    /// The upload whose staged chunks must go when the connection ends
    /// (deleting a recorded upload's chunks deletes nothing).
    pub(super) fn staged_upload(&self) -> Option<i64> {
        self.staged
    }

    /// The record of the last step is durable: what the session sends now.
    pub(super) fn on_committed(
        &mut self,
        shared: &mut Shared,
        peer: &str,
        logged: Option<Logged>,
    ) -> Output {
        let session = std::mem::take(&mut self.session);
        let (next, out) = session.on_committed_logged(shared, peer, logged);
        self.session = next;
        out
    }

    /// The off-loop work the session asked for is done.
    pub(super) fn on_offloaded(&mut self, done: Done, peer: &str) -> Output {
        let session = std::mem::take(&mut self.session);
        let (next, out) = session.on_offloaded(done, peer);
        self.session = next;
        out
    }

    /// The error frame for `e`, in the form the peer reads.
    pub(super) fn refusal(&self, e: &ConnectionError) -> Refused {
        self.refused(ErrorCode::from(e), e.to_string())
    }

    /// What to send when a time limit is reached: nothing when every
    /// answer asked for has been given.
    pub(super) fn on_expiry(&self, expiry: Expiry, limit: Duration) -> Option<Refused> {
        let e = self.session.on_expiry(expiry, limit)?;
        Some(self.refused(ErrorCode::from(&e), e.to_string()))
    }

    fn refused(&self, code: ErrorCode, reason: String) -> Refused {
        let mut bytes = Vec::new();
        framing::encode(&self.session.error_frame(code, &reason), &mut bytes);
        Refused {
            bytes,
            label: refusal_label(code),
            reason,
        }
    }
}
