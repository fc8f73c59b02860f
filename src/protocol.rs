//! The per-connection protocol: a frame payload goes in, an [`Output`]
//! (frames to send, whether to close, and [`After`]: a record to make
//! durable first or work to do off the loop first) comes out. No sockets
//! here; the reactor does the I/O and only asks a [`Session`] questions,
//! never which state it is in.
//!
//! This module owns what its children share; each child is one part of the
//! exchange:
//!
//! - `admission`: the optional HMAC challenge in front of either service;
//! - `enrollment`: the CA's session (our protocol);
//! - `blackboard`: Blackboard's session (our protocol);
//! - [`legacy`]: the original lab client's protocol (`--legacy`);
//! - `submission`: the checks every submission goes through, whichever
//!   protocol it came by: the certificate, the MAC comparison, the report
//!   text, the receipt and the record;
//! - `error`: every refusal as a typed error, and the one place where
//!   errors become wire codes ([`ErrorCode`]) and are found to be the
//!   server's fault or the peer's ([`ServerFault`]).
//!
//! The parent only routes: each child handles its own messages (`handle`)
//! and returns the next state, holding only that state's data; a
//! transition consumes the old state (rustls' `server/hs.rs`). What every
//! child shares is here: decoding a frame, the turn to legacy mode on a
//! first frame, and the answer to a message out of turn.

mod admission;
mod blackboard;
mod enrollment;
mod error;
pub mod legacy;
mod logproof;
mod submission;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};

use crate::ca::{BlackboardKeys, CertificateAuthority, Issued};
use crate::course::{GuessLimits, Window};
use crate::message::{DecodeError, ErrorCode, Message};
use crate::store::{Authorisation, CertRecord, Origin, Record, Storage};
use crate::verify::Verifier;

pub use admission::AdmissionError;
pub use blackboard::{
    UploadError, UploadPolicy, UploadsInProgress, DEFAULT_MAX_SUBMISSION, MAX_UPLOADS_PER_SID,
};
pub use error::{
    commit_refusal, refusal_label, CommitRefusal, ConnectionError, Internal, ProtocolError,
    ServerFault,
};
pub use submission::{
    check_certificate, check_report_text, CertCheckError, ReportError, ReportTextError,
    MAX_CERT_DER, MAX_REPORT,
};

/// The largest frame payload an honest peer sends, in bytes, and so the
/// default of `--max-frame` ([`crate::framing::DEFAULT_MAX_FRAME`]): a
/// `Report` whose ciphertext is a [`MAX_REPORT`]-byte report (type 1,
/// cipher 1, IV 16, length 4, ciphertext 65,536, MAC 32: 65,590 bytes).
/// Every other frame is smaller: a `SubmitOpen` with a [`MAX_CERT_DER`]
/// certificate and a 32-byte SID is 8,264 bytes; a CSR is under 2 KiB; a
/// peer's `Error` is at most 65,540 (a `u16` of text); the legacy report
/// frame `<msg>_<mac>` is at most 65,577 and the legacy certificate text
/// `legacy::MAX_CERT_TEXT`, 12,288.
pub const MAX_FRAME_NEEDED: usize =
    1 + 1 + crate::message::IV_LEN + 4 + MAX_REPORT + crate::message::MAC_LEN;

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// The CA ("CUHK").
    Ca,
    /// The course site.
    Blackboard,
}

impl ServiceKind {
    /// Lower-case name for logs and the `listening` lines.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Ca => "ca",
            ServiceKind::Blackboard => "blackboard",
        }
    }
}

/// What the services share, owned by one reactor.
pub struct Shared {
    /// The CA, when this process serves the CA role (and for legacy mode).
    pub ca: Option<Arc<CertificateAuthority>>,
    /// The pinned-root verifier, when this process serves Blackboard.
    pub verifier: Option<Arc<Verifier>>,
    /// Blackboard's own key and certificate (protocol version 2), when
    /// this process serves Blackboard.
    pub blackboard: Option<Arc<BlackboardKeys>>,
    /// The durable store (one connection per reactor).
    pub store: Box<dyn Storage + Send>,
    /// Admission-control secret; `None` turns admission control off.
    pub admission_secret: Option<Arc<Vec<u8>>>,
    /// Whether the original lab client is served too.
    pub legacy: bool,
    /// When Blackboard takes reports.
    pub window: Window,
    /// What Blackboard accepts of protocol version 3.
    pub upload: UploadPolicy,
    /// The uploads in progress per SID, shared by every reactor.
    pub uploads: UploadsInProgress,
    /// How many days after expiry a certificate still renews by proof of
    /// possession of its key (0: only while valid).
    pub renewal_grace_days: u32,
    /// How many enrollment code guesses the CA takes per source.
    pub guess_limits: GuessLimits,
    /// The transparency log's key, when this process holds it: receipts
    /// then carry the proof that their report is logged.
    pub log: Option<Arc<crate::tlog::CheckpointSigner>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("ca", &self.ca.is_some())
            .field("blackboard", &self.verifier.is_some())
            .field("blackboard_cert", &self.blackboard.is_some())
            .field("admission", &self.admission_secret.is_some())
            .field("legacy", &self.legacy)
            .field("window", &self.window)
            .field("renewal_grace_days", &self.renewal_grace_days)
            .field("guess_limits", &self.guess_limits)
            .finish()
    }
}

/// What a step of a state machine asks the reactor to do.
#[derive(Debug, Default)]
pub struct Output {
    /// Frame payloads to send, in order.
    pub send: Vec<Vec<u8>>,
    /// Close once `send` is flushed (and, after [`After::Persist`], once
    /// the record is durable).
    pub close: bool,
    /// When this output refuses the peer: the refusal's metrics label
    /// ([`refusal_label`]), for the reactor to count.
    pub refusal: Option<&'static str>,
    /// What has to happen before this session goes on, besides sending.
    pub then: After,
}

/// What a step asks for besides sending: nothing, a record made durable
/// first, or work done off the event loop first. One enum, so that no step
/// can ask for both a record and a job.
#[derive(Debug, Default)]
pub enum After {
    /// Nothing: `send` leaves at once.
    #[default]
    Nothing,
    /// A record to commit before any of `send` leaves (group commit). Once
    /// it is durable the reactor sends the held frames and asks
    /// [`Session::on_committed`] what follows; if it cannot be committed,
    /// the peer is told [`commit_refusal`] instead.
    Persist(Record),
    /// Work to do off the event loop before this session can go on: `send`
    /// leaves now, the reactor hands the job to the worker pool and feeds
    /// the result back through [`Session::on_offloaded`], reading no frame
    /// meanwhile. The session goes on after the work, so `close` is not
    /// read.
    Offload(Job),
}

/// Work a session asks to have done off the event loop, because it costs
/// more than the loop may spend on one message (an RSA key for a legacy
/// student: tens of milliseconds). What it is stays the protocol's
/// business: the reactor only runs it on a worker and hands back the
/// [`Done`].
#[derive(Debug)]
pub struct Job(legacy::KeyJob);

impl Job {
    /// Does the work; on a worker thread, never on the loop.
    pub fn run(self) -> Done {
        Done(self.0.run())
    }
}

/// The result of a [`Job`], for [`Session::on_offloaded`].
#[derive(Debug)]
pub struct Done(legacy::KeyDone);

impl Output {
    fn reply(msg: Message) -> Output {
        Output {
            send: vec![msg.encode()],
            ..Output::default()
        }
    }

    /// One frame, then close.
    fn final_frame(payload: Vec<u8>) -> Output {
        Output {
            send: vec![payload],
            close: true,
            ..Output::default()
        }
    }

    /// Close without a word.
    fn close() -> Output {
        Output {
            close: true,
            ..Output::default()
        }
    }
}

/// The record of a certificate just issued, whichever protocol asked (also
/// how the benches and the session fuzz target seed a store);
/// `authorised`: what authorised it (a code it spends, a certificate it
/// renews), which decides what it supersedes.
pub fn cert_record(issued: Issued, origin: Origin, authorised: Authorisation) -> Record {
    Record::Cert(CertRecord {
        serial: issued.serial,
        sid: issued.sid,
        not_before: issued.not_before,
        not_after: issued.not_after,
        der: issued.der,
        origin,
        authorised,
    })
}

/// Which time limit a connection reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Too long without a whole frame.
    Idle,
    /// Too long since the connection opened.
    Deadline,
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expiry::Idle => "idle timeout",
            Expiry::Deadline => "exchange deadline",
        })
    }
}

/// A time limit reached, with its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// Which limit.
    pub expiry: Expiry,
    /// How long it is.
    pub limit: Duration,
}

impl fmt::Display for Expired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} s reached",
            self.expiry,
            self.limit.as_secs_f32()
        )
    }
}

/// A connection's protocol state. The reactor only asks it questions
/// ([`Session::on_frame`], [`Session::on_committed`],
/// [`Session::on_offloaded`], [`Session::on_expiry`],
/// [`Session::error_frame`]).
#[derive(Debug, Default)]
pub struct Session {
    state: State,
    /// The peer's address: code guesses are counted under it.
    source: Option<IpAddr>,
}

/// Which child has the connection. The parent only routes: each child
/// handles its own input and returns the next state.
#[derive(Debug, Default)]
enum State {
    /// Waiting for the admission response.
    Admission(admission::Challenged),
    /// The CA's exchange.
    Enrollment(enrollment::Enrollment),
    /// Blackboard's exchange.
    Blackboard(blackboard::Blackboard),
    /// Serving the original lab client.
    Legacy(legacy::LegacySession),
    /// Finished: anything more is refused.
    #[default]
    Done,
}

/// A step's result: the next state and what to do, or a refusal.
type Step = Result<(State, Output), ProtocolError>;

impl Session {
    /// The state of a new connection from an unknown address (tests,
    /// fuzzing): its code guesses are all counted under one source,
    /// "unknown". The reactor uses [`Session::start_from`].
    pub fn start(service: ServiceKind, shared: &Shared) -> (Session, Output) {
        Session::start_at(service, shared, None)
    }

    /// The state of a new connection from `source`, and what to send at
    /// once.
    pub fn start_from(service: ServiceKind, shared: &Shared, source: IpAddr) -> (Session, Output) {
        Session::start_at(service, shared, Some(source))
    }

    fn start_at(
        service: ServiceKind,
        shared: &Shared,
        source: Option<IpAddr>,
    ) -> (Session, Output) {
        let (state, out) = match shared.admission_secret {
            None => (State::first(service), Output::default()),
            Some(_) => match admission::start(service) {
                Ok(x) => x,
                Err(e) => (State::Done, e.refusal("-")),
            },
        };
        (Session { state, source }, out)
    }

    /// Feeds one frame payload to the state machine.
    pub fn on_frame(self, payload: &[u8], shared: &mut Shared, peer: &str) -> (Session, Output) {
        let source = self.source;
        let (state, out) = match self.state.on_frame(payload, shared, peer, source) {
            Ok(x) => x,
            Err(e) => (State::Done, e.refusal(peer)),
        };
        (Session { state, source }, out)
    }

    /// Feeds back the result of the [`Job`] this session asked for.
    pub fn on_offloaded(self, done: Done, peer: &str) -> (Session, Output) {
        let source = self.source;
        let (state, out) = match self.state {
            State::Legacy(l) => legacy::step(l.on_offloaded(done.0, peer)),
            State::Admission(_) | State::Enrollment(_) | State::Blackboard(_) | State::Done => (
                State::Done,
                ProtocolError::Internal(Internal::new(
                    "off-loop work",
                    "a result came for a session that asked for none",
                ))
                .refusal(peer),
            ),
        };
        (Session { state, source }, out)
    }

    /// What to send once the record of the last [`After::Persist`] is
    /// durable, beyond the frames held for it: a version 2 receipt is
    /// signed only now, and a counted code guess is checked only now.
    /// Nothing for every other exchange.
    pub fn on_committed(self, shared: &mut Shared, peer: &str) -> (Session, Output) {
        self.on_committed_logged(shared, peer, None)
    }

    /// [`Session::on_committed`], told where the record's log entry went
    /// and the tree head its commit left (the commit thread knows both), so
    /// that a proof reads neither back from the store; `None`: they are
    /// looked up.
    pub fn on_committed_logged(
        self,
        shared: &mut Shared,
        peer: &str,
        logged: Option<crate::store::tlog::Logged>,
    ) -> (Session, Output) {
        let source = self.source;
        let (state, out) = match self.state {
            State::Blackboard(b) => b.on_committed(shared, peer, logged),
            State::Enrollment(e) => match e.on_committed(shared, peer, logged) {
                Ok(x) => x,
                Err(e) => (State::Done, e.refusal(peer)),
            },
            state @ (State::Admission(_) | State::Legacy(_) | State::Done) => {
                (state, Output::default())
            }
        };
        (Session { state, source }, out)
    }

    /// What to do when a time limit is reached: `None` when every answer
    /// asked for has been given (close quietly), else the refusal to send.
    pub fn on_expiry(&self, expiry: Expiry, limit: Duration) -> Option<ProtocolError> {
        let expired = Expired { expiry, limit };
        match &self.state {
            State::Admission(a) => a.on_expiry(expired),
            State::Enrollment(e) => e.on_expiry(expired),
            State::Blackboard(b) => b.on_expiry(expired),
            State::Legacy(l) => l.on_expiry(expired),
            State::Done => None,
        }
    }

    /// The id of the upload whose chunks this connection may have staged,
    /// while one is under way: if the connection ends now, they go.
    pub fn staged_upload(&self) -> Option<i64> {
        match &self.state {
            State::Blackboard(b) => b.staged_upload(),
            _ => None,
        }
    }

    /// Whether the peer's next message, owed now, makes a record to
    /// commit: a Blackboard report after the signed offer, an enrollment's
    /// request after the challenge. The reactor holds a small commit batch
    /// back a moment for such exchanges (`server --commit-delay`).
    pub fn awaits_record(&self) -> bool {
        match &self.state {
            State::Blackboard(b) => b.awaits_record(),
            State::Enrollment(e) => e.awaits_record(),
            State::Admission(_) | State::Legacy(_) | State::Done => false,
        }
    }

    /// Bytes and frames an upload under way may take beyond the
    /// per-connection limits (`--max-conn-bytes`, `--max-messages`).
    pub fn upload_allowance(&self) -> Option<(u64, u32)> {
        match &self.state {
            State::Blackboard(b) => b.upload_allowance(),
            _ => None,
        }
    }

    /// An error frame's payload in the form this connection's peer reads:
    /// our `Error` message, or a UTF-8 text line for the original lab
    /// client.
    pub fn error_frame(&self, code: ErrorCode, reason: &str) -> Vec<u8> {
        match self.state {
            State::Legacy(_) => legacy::error_text(reason),
            State::Admission(_) | State::Enrollment(_) | State::Blackboard(_) | State::Done => {
                Message::error(code, reason).encode()
            }
        }
    }
}

impl State {
    fn first(service: ServiceKind) -> State {
        match service {
            ServiceKind::Ca => State::Enrollment(enrollment::Enrollment::new()),
            ServiceKind::Blackboard => State::Blackboard(blackboard::Blackboard::new()),
        }
    }

    /// Routes a frame to the child that has the connection. The one thing
    /// decided here: a service's very first frame may be a command of the
    /// original lab client, which turns the connection over to legacy mode.
    fn on_frame(
        self,
        payload: &[u8],
        shared: &mut Shared,
        peer: &str,
        source: Option<IpAddr>,
    ) -> Step {
        match self {
            State::Legacy(l) => Ok(legacy::step(l.on_frame(payload, shared, peer))),
            State::Enrollment(e) if e.is_fresh() && legacy::is_command(payload) => {
                turn_legacy(ServiceKind::Ca, payload, shared, peer)
            }
            State::Blackboard(b) if b.is_fresh() && legacy::is_command(payload) => {
                turn_legacy(ServiceKind::Blackboard, payload, shared, peer)
            }
            // Anything but the answer, before admission, is refused there.
            State::Admission(a) => a.handle(decode(payload)?, shared, peer),
            State::Enrollment(e) => e.handle(decode(payload)?, shared, peer, source),
            // `payload` is the message as received: Blackboard signs the
            // hello's bytes.
            State::Blackboard(b) => b.handle(decode(payload)?, payload, shared, peer),
            State::Done => other_message(decode(payload)?, "finished", peer),
        }
    }
}

/// A frame as one of our messages; a version 1 message is refused as such,
/// whenever it comes.
fn decode(payload: &[u8]) -> Result<Message, ProtocolError> {
    Message::decode(payload).map_err(|e| match e {
        DecodeError::Version1(got) => ProtocolError::Version1 { got },
        e => ProtocolError::Malformed(e),
    })
}

/// A first frame that is a command of the original lab client: legacy
/// mode serves it, when it is on.
fn turn_legacy(service: ServiceKind, payload: &[u8], shared: &mut Shared, peer: &str) -> Step {
    if !shared.legacy {
        return Err(ProtocolError::LegacyDisabled {
            first: String::from_utf8_lossy(payload).into_owned(),
        });
    }
    let session = legacy::LegacySession::start(service);
    Ok(legacy::step(session.on_frame(payload, shared, peer)))
}

/// What every state of our protocol does with a message it does not take:
/// the peer's own `Error` ends the exchange quietly; anything else is
/// refused as out of turn, saying what the connection is `expecting`.
fn other_message(msg: Message, expecting: &'static str, peer: &str) -> Step {
    match msg {
        Message::Error { code, reason } => {
            info!("{peer}: client reported error {code:?}: {reason}");
            Ok((State::Done, Output::close()))
        }
        msg => Err(ProtocolError::Unexpected {
            got: msg.name(),
            expecting,
        }),
    }
}

impl ProtocolError {
    /// Logs the refusal with the peer and turns it into the error frame
    /// that ends the connection.
    fn refusal(&self, peer: &str) -> Output {
        self.log(peer);
        let code = ErrorCode::from(self);
        Output {
            refusal: Some(refusal_label(code)),
            ..Output::final_frame(Message::error(code, self.to_string()).encode())
        }
    }

    fn log(&self, peer: &str) {
        match self {
            ProtocolError::Unexpected { got, expecting } => {
                warn!("{peer}: unexpected {got} while {expecting}")
            }
            ProtocolError::LegacyDisabled { first } => warn!(
                "{peer}: first frame {first:?} is a legacy lab-client command; \
                 legacy mode is off (start the server with --legacy to serve the original client)"
            ),
            ProtocolError::Admission(e) => warn!("{peer}: {}", e.logged()),
            ProtocolError::Certificate { sid, source } => {
                warn!("{peer}: certificate refused for SID {sid:?}: {source}")
            }
            ProtocolError::Report { sid, source } => {
                warn!("{peer}: report from SID {sid} refused: {}", source.logged())
            }
            ProtocolError::Internal(e) => warn!("{peer}: {}", e.logged()),
            ProtocolError::StoreUnavailable(e) => {
                warn!("{peer}: refused, try later: {}", e.logged())
            }
            ProtocolError::Upload {
                sid,
                source: UploadError::Upgrade,
            } => {
                warn!("{peer}: version 2 exchange of SID {sid:?} refused (--min-protocol 3)")
            }
            ProtocolError::Upload { sid, source } => {
                warn!("{peer}: version 3 exchange of SID {sid:?} refused: {source}")
            }
            ProtocolError::Course { sid, source } => {
                warn!("{peer}: enrollment for SID {sid} refused: {source}")
            }
            ProtocolError::Version1 { got } => {
                warn!("{peer}: protocol version 1 {got} refused: version 1 is no longer served")
            }
            ProtocolError::ReceiptNotSigned { receipt_id, source } => {
                warn!("{peer}: signing receipt {receipt_id}: {source}")
            }
            other @ (ProtocolError::Malformed(_)
            | ProtocolError::NotACa
            | ProtocolError::Enrollment(_)
            | ProtocolError::Expired(_)
            | ProtocolError::UnsupportedVersion { .. }
            | ProtocolError::LogRange { .. }
            | ProtocolError::Closed(_)
            | ProtocolError::Dropped { .. }
            | ProtocolError::Deadline(_)) => warn!("{peer}: {other}"),
        }
    }
}

/// What the children's tests share: a CA, Blackboard and store in a
/// temporary directory, and the client's side of each exchange, driven the
/// way the reactor drives a session.
#[cfg(test)]
mod testing {
    use super::*;
    use crate::client::make_csr;
    use crate::crypto::SessionKeys;
    use crate::message::{CipherId, IV_LEN};
    pub(super) use crate::testing::{CaParams, TestPki};
    use openssl::pkey::{PKey, Private};

    pub(super) const SID: &str = "1155000001";

    /// A CA in `dir/keys`, its verifier, Blackboard's keys and an
    /// in-memory store (the engine the session fuzz target uses too).
    pub(super) fn shared(dir: &std::path::Path, admission: Option<&[u8]>) -> Shared {
        TestPki::create(&dir.join("keys"), &CaParams::default())
            .unwrap()
            .shared()
            .admission(admission)
            .build()
            .unwrap()
    }

    /// What a run of frames did.
    pub(super) struct Run {
        pub(super) session: Session,
        pub(super) replies: Vec<Message>,
        pub(super) closed: bool,
    }

    /// Feeds frames in order, as the reactor does: a record is committed
    /// before the next frame; no frame follows a close.
    pub(super) fn drive(mut session: Session, frames: &[Vec<u8>], shared: &mut Shared) -> Run {
        let mut replies = Vec::new();
        let mut closed = false;
        for (i, f) in frames.iter().enumerate() {
            assert!(!closed, "frame {i} after close");
            let (mut next, out) = session.on_frame(f, shared, "test-peer");
            replies.extend(out.send.iter().map(|p| Message::decode(p).unwrap()));
            closed = out.close;
            if let After::Persist(r) = out.then {
                shared.store.commit(&[r]).unwrap();
                let (after_commit, more) = next.on_committed(shared, "test-peer");
                replies.extend(more.send.iter().map(|p| Message::decode(p).unwrap()));
                closed |= more.close;
                next = after_commit;
            }
            session = next;
        }
        Run {
            session,
            replies,
            closed,
        }
    }

    pub(super) fn start(kind: ServiceKind, shared: &mut Shared) -> Session {
        let (session, out) = Session::start(kind, shared);
        assert!(out.send.is_empty() && !out.close);
        session
    }

    pub(super) fn refusal(run: &Run) -> (ErrorCode, String) {
        assert!(run.closed, "a refusal closes");
        match run.replies.as_slice() {
            [Message::Error { code, reason }] => (*code, reason.clone()),
            other => panic!("expected one Error, got {other:?}"),
        }
    }

    /// Enrolls by version 2 (open enrollment): `CaHello`, then one
    /// `CertRequest`.
    pub(super) fn enroll(sid: &str, key: &PKey<Private>, shared: &mut Shared) -> Vec<u8> {
        let request = Message::CertRequest {
            csr_der: make_csr(sid, key).unwrap(),
            auth: crate::message::EnrollAuth::Open,
        };
        let run = drive(
            start(ServiceKind::Ca, shared),
            &[ca_hello(), request.encode()],
            shared,
        );
        assert!(!run.closed, "another enrollment may follow");
        match run.replies.as_slice() {
            [Message::CaChallenge { .. }, Message::CertIssued { cert_der, .. }] => cert_der.clone(),
            other => panic!("expected CaChallenge and CertIssued, got {other:?}"),
        }
    }

    pub(super) fn ca_hello() -> Vec<u8> {
        Message::CaHello {
            version: crate::message::PROTOCOL_VERSION,
        }
        .encode()
    }

    /// A version 2 hello (`SubmitOpen`) with a fixed client nonce.
    pub(super) fn hello(sid: &str, cert_der: &[u8]) -> Vec<u8> {
        open_frame(sid, cert_der, [5; 32])
    }

    pub(super) fn open_frame(sid: &str, cert_der: &[u8], client_nonce: [u8; 32]) -> Vec<u8> {
        Message::SubmitOpen {
            sid: sid.into(),
            cert_der: cert_der.to_vec(),
            chain: vec![],
            client_nonce,
        }
        .encode()
    }

    pub(super) fn trust(sh: &Shared) -> crate::client::BlackboardTrust {
        crate::client::BlackboardTrust {
            root: sh.ca.as_ref().unwrap().cert().clone(),
            name: crate::ca::DEFAULT_BLACKBOARD_NAME.into(),
        }
    }

    /// The student's side of a version 2 report: the offer verified
    /// first, as the client does. Returns the frame and the transcript hash.
    pub(super) fn report_frame_v2(
        hello: &[u8],
        key: &PKey<Private>,
        offer: &Message,
        text: &str,
        sh: &Shared,
    ) -> Result<(Vec<u8>, [u8; 32]), crate::client::ClientError> {
        let (wrapped_key, th) = crate::client::checked_offer(hello, offer.clone(), &trust(sh))?;
        let raw = crate::client::session_key(key, &wrapped_key)?;
        let keys = SessionKeys::derive_v2(&raw, &th).unwrap();
        let cipher = CipherId::Aes256Ctr;
        let iv = [7u8; IV_LEN];
        let ciphertext = keys.apply_cipher(cipher, &iv, text.as_bytes()).unwrap();
        let mac = keys.report_mac_v2(&th, cipher, &iv, &ciphertext).unwrap();
        let frame = Message::Report {
            cipher,
            iv,
            ciphertext,
            mac,
        }
        .encode();
        Ok((frame, th))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::client::{make_csr, make_key, KeyType};
    use crate::message::{CipherId, IV_LEN};

    /// Version 1's `EnrollRequest` (type 0x10, `bytes csr`), as an old
    /// client sends it.
    fn v1_enroll_request(csr_der: &[u8]) -> Vec<u8> {
        let mut out = vec![0x10];
        out.extend_from_slice(&u32::try_from(csr_der.len()).unwrap().to_le_bytes());
        out.extend_from_slice(csr_der);
        out
    }

    /// Version 1's `SubmitHello` (type 0x20, `text sid`, `bytes cert`,
    /// `list chain`), as an old client sends it.
    fn v1_submit_hello(sid: &str, cert_der: &[u8]) -> Vec<u8> {
        let mut out = vec![0x20];
        out.extend_from_slice(&u16::try_from(sid.len()).unwrap().to_le_bytes());
        out.extend_from_slice(sid.as_bytes());
        out.extend_from_slice(&u32::try_from(cert_der.len()).unwrap().to_le_bytes());
        out.extend_from_slice(cert_der);
        out.push(0);
        out
    }

    #[test]
    fn honest_enrollment_then_submission() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), None);
        let key = make_key(KeyType::Rsa2048).unwrap();
        let cert = enroll(SID, &key, &mut sh);
        assert_eq!(sh.store.certs().unwrap().len(), 1);

        let hello = hello(SID, &cert);
        let run = drive(
            start(ServiceKind::Blackboard, &mut sh),
            std::slice::from_ref(&hello),
            &mut sh,
        );
        assert!(!run.closed);
        let text = "This is submission from SID1155000001.\n";
        let (frame, _) = report_frame_v2(&hello, &key, &run.replies[0], text, &sh).unwrap();
        let run = drive(run.session, &[frame], &mut sh);
        assert!(run.closed);
        let Some(Message::SignedReceipt { receipt_id, .. }) = run.replies.first() else {
            panic!("expected a receipt, got {:?}", run.replies);
        };
        let reports = sh.store.reports().unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].receipt_id, *receipt_id);
        assert_eq!(reports[0].text, text);
        assert_eq!(reports[0].origin, Origin::Certboard);
    }

    /// Version 1 is refused with code 10, a reason saying what to do, and
    /// a close, whenever its message comes: as the first frame or in the
    /// middle of a version 2 exchange. Nothing is recorded.
    #[test]
    fn version_1_is_refused_with_code_10_whenever_it_comes() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), None);
        let key = make_key(KeyType::Rsa2048).unwrap();
        let csr = make_csr(SID, &key).unwrap();
        let want = "protocol version 1 is no longer served: this server speaks version 2 \
                    (PROTOCOL.md); upgrade the client";
        // First frames.
        let run = drive(
            start(ServiceKind::Ca, &mut sh),
            &[v1_enroll_request(&csr)],
            &mut sh,
        );
        assert_eq!(refusal(&run), (ErrorCode::UnsupportedVersion, want.into()));
        assert!(sh.store.certs().unwrap().is_empty());
        let cert = enroll(SID, &key, &mut sh);
        let run = drive(
            start(ServiceKind::Blackboard, &mut sh),
            &[v1_submit_hello(SID, &cert)],
            &mut sh,
        );
        assert_eq!(refusal(&run), (ErrorCode::UnsupportedVersion, want.into()));
        // On the other service too: the version, not the turn, is refused.
        let run = drive(
            start(ServiceKind::Ca, &mut sh),
            &[v1_submit_hello(SID, &cert)],
            &mut sh,
        );
        assert_eq!(refusal(&run).0, ErrorCode::UnsupportedVersion);
        // Later: after a CaHello was answered, and after a SessionOffer.
        let ca = drive(start(ServiceKind::Ca, &mut sh), &[ca_hello()], &mut sh);
        assert!(matches!(ca.replies[..], [Message::CaChallenge { .. }]));
        let run = drive(ca.session, &[v1_enroll_request(&csr)], &mut sh);
        assert_eq!(refusal(&run), (ErrorCode::UnsupportedVersion, want.into()));
        let bb = drive(
            start(ServiceKind::Blackboard, &mut sh),
            &[hello(SID, &cert)],
            &mut sh,
        );
        assert!(matches!(bb.replies[..], [Message::SessionOffer { .. }]));
        let run = drive(bb.session, &[v1_submit_hello(SID, &cert)], &mut sh);
        assert_eq!(refusal(&run), (ErrorCode::UnsupportedVersion, want.into()));
        // Only the one certificate enrolled by version 2; no report.
        assert_eq!(sh.store.certs().unwrap().len(), 1);
        assert!(sh.store.reports().unwrap().is_empty());
    }

    /// `--max-frame`'s default is exactly what the largest honest frame
    /// needs: a maximal report fills it, every other message fits.
    #[test]
    fn the_default_max_frame_is_the_largest_honest_frame() {
        assert_eq!(crate::framing::DEFAULT_MAX_FRAME, MAX_FRAME_NEEDED);
        let report = Message::Report {
            cipher: CipherId::Aes256Ctr,
            iv: [0; IV_LEN],
            ciphertext: vec![0; MAX_REPORT],
            mac: [0; crate::message::MAC_LEN],
        };
        assert_eq!(report.encode().len(), MAX_FRAME_NEEDED);
        let big_hello = hello(&"9".repeat(crate::sid::MAX_SID_LEN), &[0; MAX_CERT_DER]);
        assert_eq!(big_hello.len(), 8_264);
        let error = Message::error(ErrorCode::Internal, "x".repeat(usize::from(u16::MAX)));
        assert!(error.encode().len() <= MAX_FRAME_NEEDED);
        const {
            assert!(MAX_REPORT + 1 + legacy::MAC_HEX_LEN <= MAX_FRAME_NEEDED);
            assert!(legacy::MAX_CERT_TEXT <= MAX_FRAME_NEEDED);
        }
    }

    #[test]
    fn refusals_carry_the_right_code() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), None);
        let key = make_key(KeyType::Rsa2048).unwrap();
        let cert = enroll(SID, &key, &mut sh);
        let bb = |sh: &mut Shared| start(ServiceKind::Blackboard, sh);

        // A bad SID.
        let run = drive(bb(&mut sh), &[hello("a b", &cert)], &mut sh);
        let (code, reason) = refusal(&run);
        assert_eq!(code, ErrorCode::BadCertificate);
        assert!(reason.starts_with("bad SID"), "{reason}");
        // A bad CSR.
        let garbage = Message::CertRequest {
            csr_der: b"not a CSR".to_vec(),
            auth: crate::message::EnrollAuth::Open,
        };
        let challenged = drive(start(ServiceKind::Ca, &mut sh), &[ca_hello()], &mut sh);
        let run = drive(challenged.session, &[garbage.encode()], &mut sh);
        assert_eq!(refusal(&run).0, ErrorCode::BadRequest);
        // A certificate from another root.
        let other = CaParams::default()
            .create(&dir.path().join("other-keys"))
            .unwrap();
        let foreign = other.issue(&make_csr(SID, &key).unwrap()).unwrap();
        let run = drive(bb(&mut sh), &[hello(SID, &foreign.der)], &mut sh);
        let (code, reason) = refusal(&run);
        assert_eq!(code, ErrorCode::BadCertificate);
        assert!(reason.contains("does not chain"), "{reason}");
        // A MAC under the wrong key: the report of another session.
        let first = drive(bb(&mut sh), &[hello(SID, &cert)], &mut sh);
        let (frame, _) =
            report_frame_v2(&hello(SID, &cert), &key, &first.replies[0], "first", &sh).unwrap();
        let second = drive(bb(&mut sh), &[hello(SID, &cert)], &mut sh);
        let run = drive(second.session, std::slice::from_ref(&frame), &mut sh);
        assert_eq!(refusal(&run).0, ErrorCode::BadMac);
        // The report itself, accepted once, then replayed on a new session.
        let run = drive(first.session, std::slice::from_ref(&frame), &mut sh);
        assert!(matches!(run.replies[..], [Message::SignedReceipt { .. }]));
        let replay = drive(bb(&mut sh), &[hello(SID, &cert), frame], &mut sh);
        assert!(matches!(replay.replies[0], Message::SessionOffer { .. }));
        assert_eq!(replay.replies.len(), 2);
        let Message::Error { code, .. } = &replay.replies[1] else {
            panic!("replay accepted: {:?}", replay.replies);
        };
        assert_eq!(*code, ErrorCode::BadMac);
        assert_eq!(sh.store.reports().unwrap().len(), 1);
        // A message out of turn.
        let run = drive(bb(&mut sh), &[ca_hello()], &mut sh);
        assert_eq!(refusal(&run).0, ErrorCode::UnexpectedMessage);
        // A legacy command, legacy mode off.
        let run = drive(bb(&mut sh), &[b"2".to_vec()], &mut sh);
        assert_eq!(refusal(&run).0, ErrorCode::LegacyDisabled);
        // Not a message at all.
        let run = drive(bb(&mut sh), &[vec![0xEE]], &mut sh);
        assert_eq!(refusal(&run).0, ErrorCode::Malformed);
    }

    #[test]
    fn expiry_refuses_only_an_unfinished_exchange() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), None);
        let limit = Duration::from_secs(30);
        let waiting = start(ServiceKind::Blackboard, &mut sh);
        let err = waiting.on_expiry(Expiry::Deadline, limit).unwrap();
        assert_eq!(ErrorCode::from(&err), ErrorCode::Limit);
        assert_eq!(err.to_string(), "exchange deadline of 30 s reached");
        // After an enrollment, an idle connection has had its answer.
        let key = make_key(KeyType::Rsa2048).unwrap();
        let request = Message::CertRequest {
            csr_der: make_csr(SID, &key).unwrap(),
            auth: crate::message::EnrollAuth::Open,
        };
        let run = drive(start(ServiceKind::Ca, &mut sh), &[ca_hello()], &mut sh);
        // A challenge is owed its request.
        assert!(run.session.on_expiry(Expiry::Idle, limit).is_some());
        let run = drive(run.session, &[request.encode()], &mut sh);
        assert!(run.session.on_expiry(Expiry::Idle, limit).is_none());
        // The deadline between enrollments closes quietly too (PROTOCOL.md
        // section 7, issue 20 gap 8).
        assert!(run.session.on_expiry(Expiry::Deadline, limit).is_none());
    }

    /// During admission the framing and decoding rules come first: an
    /// empty or malformed frame is code 1, a version 1 message code 10;
    /// only a well-formed message of ours that is not the answer gets code
    /// 7 (PROTOCOL.md 4.0, issue 20 gap 3).
    #[test]
    fn during_admission_decoding_refusals_come_before_code_7() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), Some(b"an admission secret of 16+ bytes"));
        for (frame, want) in [
            (Vec::new(), ErrorCode::Malformed),
            (vec![0xee, 1, 2], ErrorCode::Malformed),
            (v1_enroll_request(b"csr"), ErrorCode::UnsupportedVersion),
            (ca_hello(), ErrorCode::AdmissionRefused),
        ] {
            // The challenge goes out at once; then the frame.
            let (session, out) = Session::start(ServiceKind::Ca, &sh);
            assert_eq!(out.send.len(), 1);
            let run = drive(session, std::slice::from_ref(&frame), &mut sh);
            assert_eq!(refusal(&run).0, want, "{frame:?}");
            assert!(run.closed);
        }
    }

    #[test]
    fn error_frames_take_the_peers_form() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), None);
        sh.legacy = true;
        let ours = start(ServiceKind::Ca, &mut sh);
        let frame = ours.error_frame(ErrorCode::Limit, "too much");
        assert_eq!(
            Message::decode(&frame).unwrap(),
            Message::error(ErrorCode::Limit, "too much")
        );
        // A connection that turned legacy reads text.
        let (legacy, out) = start(ServiceKind::Ca, &mut sh).on_frame(b"1", &mut sh, "p");
        assert_eq!(out.send, [legacy::PROMPT.as_bytes()]);
        assert_eq!(
            legacy.error_frame(ErrorCode::Limit, "too much"),
            b"error: too much"
        );
    }
}
