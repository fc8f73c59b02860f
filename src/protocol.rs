//! The per-connection protocol: a frame payload goes in, an [`Output`]
//! (frames to send, a record to make durable first, whether to close) comes
//! out. No sockets here; the reactor does the I/O and only asks a
//! [`Session`] questions, never which state it is in.
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
//!   errors become wire codes ([`ErrorCode`]).
//!
//! Each state holds only its own data, and a transition consumes the old
//! state and returns the next (rustls' handshake style).

mod admission;
mod blackboard;
mod enrollment;
mod error;
pub mod legacy;
mod submission;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};

use crate::ca::{CertificateAuthority, Issued};
use crate::message::{ErrorCode, Message};
use crate::store::{CertRecord, Origin, Record, Storage};
use crate::verify::Verifier;

pub use admission::AdmissionError;
pub use error::{refusal_label, Internal, ProtocolError};
pub use submission::{
    announce, check_certificate, check_report_text, CertCheckError, ReportError, ReportTextError,
    MAX_REPORT,
};

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
    /// The durable store (one connection per reactor).
    pub store: Box<dyn Storage + Send>,
    /// Admission-control secret; `None` turns admission control off.
    pub admission_secret: Option<Arc<Vec<u8>>>,
    /// Whether the original lab client is served too.
    pub legacy: bool,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("ca", &self.ca.is_some())
            .field("blackboard", &self.verifier.is_some())
            .field("admission", &self.admission_secret.is_some())
            .field("legacy", &self.legacy)
            .finish()
    }
}

/// What a step of a state machine asks the reactor to do.
#[derive(Debug, Default)]
pub struct Output {
    /// Frame payloads to send, in order.
    pub send: Vec<Vec<u8>>,
    /// A record to commit before any of `send` leaves (group commit).
    pub persist: Option<Record>,
    /// Close once `send` is flushed.
    pub close: bool,
    /// When this output refuses the peer: the refusal's metrics label
    /// ([`refusal_label`]), for the reactor to count.
    pub refusal: Option<&'static str>,
}

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

/// The record of a certificate just issued, whichever protocol asked.
pub(crate) fn cert_record(issued: Issued, origin: Origin) -> Record {
    Record::Cert(CertRecord {
        serial_hex: issued.serial_hex,
        sid: issued.sid,
        not_before: issued.not_before,
        not_after: issued.not_after,
        der: issued.der,
        origin,
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
/// ([`Session::on_frame`], [`Session::on_expiry`], [`Session::error_frame`]).
#[derive(Debug, Default)]
pub struct Session(State);

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
    /// The state of a new connection, and what to send at once.
    pub fn start(service: ServiceKind, shared: &Shared) -> (Session, Output) {
        let (state, out) = match shared.admission_secret {
            None => (State::first(service), Output::default()),
            Some(_) => match admission::start(service) {
                Ok(x) => x,
                Err(e) => (State::Done, e.refusal("-")),
            },
        };
        (Session(state), out)
    }

    /// Feeds one frame payload to the state machine.
    pub fn on_frame(self, payload: &[u8], shared: &mut Shared, peer: &str) -> (Session, Output) {
        let (state, out) = match self.0.on_frame(payload, shared, peer) {
            Ok(x) => x,
            Err(e) => (State::Done, e.refusal(peer)),
        };
        (Session(state), out)
    }

    /// What to do when a time limit is reached: `None` when every answer
    /// asked for has been given (close quietly), else the refusal to send.
    pub fn on_expiry(&self, expiry: Expiry, limit: Duration) -> Option<ProtocolError> {
        let expired = Expired { expiry, limit };
        match &self.0 {
            State::Done | State::Enrollment(enrollment::Enrollment::AwaitNext) => None,
            // Between two legacy commands every answer has been given.
            State::Legacy(l) if l.is_between_commands() => None,
            // Silence after the challenge is a failed admission.
            State::Admission(_) => Some(ProtocolError::Admission(AdmissionError::Silent(expired))),
            _ => Some(ProtocolError::Expired(expired)),
        }
    }

    /// An error frame's payload in the form this connection's peer reads:
    /// our `Error` message, or a UTF-8 text line for the original lab
    /// client.
    pub fn error_frame(&self, code: ErrorCode, reason: &str) -> Vec<u8> {
        match self.0 {
            State::Legacy(_) => legacy::error_text(reason),
            _ => Message::error(code, reason).encode(),
        }
    }
}

impl State {
    fn first(service: ServiceKind) -> State {
        match service {
            ServiceKind::Ca => State::Enrollment(enrollment::Enrollment::AwaitRequest),
            ServiceKind::Blackboard => State::Blackboard(blackboard::Blackboard::AwaitHello),
        }
    }

    /// The service whose first frame this state is waiting for, if any: a
    /// legacy command is recognised only there.
    fn awaiting_first_frame(&self) -> Option<ServiceKind> {
        match self {
            State::Enrollment(enrollment::Enrollment::AwaitRequest) => Some(ServiceKind::Ca),
            State::Blackboard(blackboard::Blackboard::AwaitHello) => Some(ServiceKind::Blackboard),
            _ => None,
        }
    }

    fn on_frame(self, payload: &[u8], shared: &mut Shared, peer: &str) -> Step {
        if let State::Legacy(l) = self {
            return Ok(legacy::step(l.on_frame(payload, shared, peer)));
        }
        match self.awaiting_first_frame() {
            Some(service) if legacy::is_command(payload) => {
                if !shared.legacy {
                    return Err(ProtocolError::LegacyDisabled {
                        first: String::from_utf8_lossy(payload).into_owned(),
                    });
                }
                let session = legacy::LegacySession::start(service);
                Ok(legacy::step(session.on_frame(payload, shared, peer)))
            }
            _ => {
                let msg = Message::decode(payload).map_err(ProtocolError::Malformed)?;
                self.on_message(msg, shared, peer)
            }
        }
    }

    fn on_message(self, msg: Message, shared: &mut Shared, peer: &str) -> Step {
        match (self, msg) {
            // Anything but the answer, before admission, is refused there.
            (State::Admission(c), msg) => c.on_message(msg, shared, peer),
            (State::Enrollment(_), Message::EnrollRequest { csr_der }) => {
                enrollment::enroll(&csr_der, shared, peer)
            }
            (
                State::Blackboard(blackboard::Blackboard::AwaitHello),
                Message::SubmitHello {
                    sid,
                    cert_der,
                    chain,
                },
            ) => blackboard::hello(&sid, &cert_der, &chain, shared, peer),
            (
                State::Blackboard(blackboard::Blackboard::AwaitReport(p)),
                Message::Report {
                    cipher,
                    iv,
                    ciphertext,
                    mac,
                },
            ) => blackboard::report(*p, cipher, &iv, &ciphertext, &mac, peer),
            (_, Message::Error { code, reason }) => {
                info!("{peer}: client reported error {code:?}: {reason}");
                Ok((State::Done, Output::close()))
            }
            (state, msg) => Err(ProtocolError::Unexpected {
                got: msg.name(),
                expecting: state.expecting(),
            }),
        }
    }

    fn expecting(&self) -> &'static str {
        match self {
            State::Admission(_) => "waiting for the admission response",
            State::Enrollment(_) => "waiting for an enrollment request",
            State::Blackboard(blackboard::Blackboard::AwaitHello) => {
                "waiting for a submission hello"
            }
            State::Blackboard(blackboard::Blackboard::AwaitReport(_)) => "waiting for the report",
            State::Legacy(_) => "serving the legacy protocol",
            State::Done => "finished",
        }
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
            other => warn!("{peer}: {other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::CaKeyType;
    use crate::client::{make_csr, make_key, KeyType};
    use crate::crypto::{self, SessionKeys};
    use crate::message::{CipherId, IV_LEN};
    use crate::store::SqliteStore;
    use openssl::pkey::{PKey, Private};

    const SID: &str = "1155000001";

    fn ca(dir: &std::path::Path) -> CertificateAuthority {
        CertificateAuthority::open(dir, b"protocol tests", CaKeyType::P256, 30)
            .unwrap()
            .0
    }

    /// A CA, its verifier and a store in `dir`; shared with legacy's tests.
    pub(super) fn shared(dir: &std::path::Path, admission: Option<&[u8]>) -> Shared {
        let ca = ca(&dir.join("keys"));
        let verifier = Verifier::new(ca.cert()).unwrap();
        Shared {
            ca: Some(Arc::new(ca)),
            verifier: Some(Arc::new(verifier)),
            store: Box::new(SqliteStore::open(&dir.join("data")).unwrap()),
            admission_secret: admission.map(|s| Arc::new(s.to_vec())),
            legacy: false,
        }
    }

    /// What a run of frames did.
    struct Run {
        session: Session,
        replies: Vec<Message>,
        closed: bool,
    }

    /// Feeds frames in order, as the reactor does: a record is committed
    /// before the next frame; no frame follows a close.
    fn drive(mut session: Session, frames: &[Vec<u8>], shared: &mut Shared) -> Run {
        let mut replies = Vec::new();
        let mut closed = false;
        for (i, f) in frames.iter().enumerate() {
            assert!(!closed, "frame {i} after close");
            let (next, out) = session.on_frame(f, shared, "test-peer");
            if let Some(r) = out.persist {
                shared.store.commit(&[r]).unwrap();
            }
            replies.extend(out.send.iter().map(|p| Message::decode(p).unwrap()));
            closed = out.close;
            session = next;
        }
        Run {
            session,
            replies,
            closed,
        }
    }

    fn start(kind: ServiceKind, shared: &mut Shared) -> Session {
        let (session, out) = Session::start(kind, shared);
        assert!(out.send.is_empty() && !out.close);
        session
    }

    fn refusal(run: &Run) -> (ErrorCode, String) {
        assert!(run.closed, "a refusal closes");
        match run.replies.as_slice() {
            [Message::Error { code, reason }] => (*code, reason.clone()),
            other => panic!("expected one Error, got {other:?}"),
        }
    }

    fn enroll(sid: &str, key: &PKey<Private>, shared: &mut Shared) -> Vec<u8> {
        let request = Message::EnrollRequest {
            csr_der: make_csr(sid, key).unwrap(),
        };
        let run = drive(start(ServiceKind::Ca, shared), &[request.encode()], shared);
        assert!(!run.closed, "another enrollment may follow");
        match run.replies.as_slice() {
            [Message::EnrollResponse { cert_der, .. }] => cert_der.clone(),
            other => panic!("expected EnrollResponse, got {other:?}"),
        }
    }

    fn hello(sid: &str, cert_der: &[u8]) -> Vec<u8> {
        Message::SubmitHello {
            sid: sid.into(),
            cert_der: cert_der.to_vec(),
            chain: vec![],
        }
        .encode()
    }

    /// The student's side of a report, under the session key Blackboard sent.
    fn report_frame(sid: &str, key: &PKey<Private>, session_key: &Message, text: &str) -> Vec<u8> {
        let Message::SessionKey { nonce, wrapped_key } = session_key else {
            panic!("expected SessionKey, got {session_key:?}");
        };
        let raw = crypto::unwrap_key(key, wrapped_key).unwrap();
        let keys = SessionKeys::derive(&raw.try_into().unwrap(), nonce).unwrap();
        let cipher = CipherId::Aes256Ctr;
        let iv = [7u8; IV_LEN];
        let ciphertext = keys.apply_cipher(cipher, &iv, text.as_bytes()).unwrap();
        let mac = keys
            .report_mac(nonce, sid, cipher, &iv, &ciphertext)
            .unwrap();
        Message::Report {
            cipher,
            iv,
            ciphertext,
            mac,
        }
        .encode()
    }

    #[test]
    fn honest_enrollment_then_submission() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), None);
        let key = make_key(KeyType::Rsa2048).unwrap();
        let cert = enroll(SID, &key, &mut sh);
        assert_eq!(sh.store.certs().unwrap().len(), 1);

        let run = drive(
            start(ServiceKind::Blackboard, &mut sh),
            &[hello(SID, &cert)],
            &mut sh,
        );
        assert!(!run.closed);
        let text = "This is submission from SID1155000001.\n";
        let frame = report_frame(SID, &key, &run.replies[0], text);
        let run = drive(run.session, &[frame], &mut sh);
        assert!(run.closed);
        let Some(Message::Receipt { receipt_id, .. }) = run.replies.first() else {
            panic!("expected a receipt, got {:?}", run.replies);
        };
        let reports = sh.store.reports().unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].receipt_id, *receipt_id);
        assert_eq!(reports[0].text, text);
        assert_eq!(reports[0].origin, Origin::Certboard);
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
        let garbage = Message::EnrollRequest {
            csr_der: b"not a CSR".to_vec(),
        };
        let run = drive(
            start(ServiceKind::Ca, &mut sh),
            &[garbage.encode()],
            &mut sh,
        );
        assert_eq!(refusal(&run).0, ErrorCode::BadRequest);
        // A certificate from another root.
        let other = ca(&dir.path().join("other-keys"));
        let foreign = other.issue(&make_csr(SID, &key).unwrap()).unwrap();
        let run = drive(bb(&mut sh), &[hello(SID, &foreign.der)], &mut sh);
        let (code, reason) = refusal(&run);
        assert_eq!(code, ErrorCode::BadCertificate);
        assert!(reason.contains("does not chain"), "{reason}");
        // A MAC under the wrong key: the report of another session.
        let first = drive(bb(&mut sh), &[hello(SID, &cert)], &mut sh);
        let frame = report_frame(SID, &key, &first.replies[0], "first");
        let second = drive(bb(&mut sh), &[hello(SID, &cert)], &mut sh);
        let run = drive(second.session, std::slice::from_ref(&frame), &mut sh);
        assert_eq!(refusal(&run).0, ErrorCode::BadMac);
        // The report itself, accepted once, then replayed on a new session.
        let run = drive(first.session, std::slice::from_ref(&frame), &mut sh);
        assert!(matches!(run.replies[..], [Message::Receipt { .. }]));
        let replay = drive(bb(&mut sh), &[hello(SID, &cert), frame], &mut sh);
        assert!(matches!(replay.replies[0], Message::SessionKey { .. }));
        assert_eq!(replay.replies.len(), 2);
        let Message::Error { code, .. } = &replay.replies[1] else {
            panic!("replay accepted: {:?}", replay.replies);
        };
        assert_eq!(*code, ErrorCode::BadMac);
        assert_eq!(sh.store.reports().unwrap().len(), 1);
        // A message out of turn.
        let run = drive(bb(&mut sh), &[garbage.encode()], &mut sh);
        assert_eq!(refusal(&run).0, ErrorCode::UnexpectedMessage);
        // A legacy command, legacy mode off.
        let run = drive(bb(&mut sh), &[b"2".to_vec()], &mut sh);
        assert_eq!(refusal(&run).0, ErrorCode::LegacyDisabled);
        // Not a message at all.
        let run = drive(bb(&mut sh), &[vec![0xEE]], &mut sh);
        assert_eq!(refusal(&run).0, ErrorCode::Malformed);
    }

    fn challenged(sh: &mut Shared) -> (Session, [u8; crate::message::NONCE_LEN]) {
        let (session, out) = Session::start(ServiceKind::Ca, sh);
        assert!(!out.close);
        match out.send.as_slice() {
            [frame] => match Message::decode(frame) {
                Ok(Message::AdmissionChallenge { challenge }) => (session, challenge),
                other => panic!("expected a challenge, got {other:?}"),
            },
            other => panic!("expected one frame, got {other:?}"),
        }
    }

    #[test]
    fn admission_right_and_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let secret = b"sixteen byte secret!";
        let mut sh = shared(dir.path(), Some(secret));
        let key = make_key(KeyType::Rsa2048).unwrap();
        let request = Message::EnrollRequest {
            csr_der: make_csr(SID, &key).unwrap(),
        }
        .encode();

        // The right answer admits: the enrollment that follows is served.
        let (session, challenge) = challenged(&mut sh);
        let mac = crypto::hmac_sha256(secret, &challenge).unwrap();
        let answer = Message::AdmissionResponse { mac }.encode();
        let run = drive(session, &[answer, request.clone()], &mut sh);
        assert!(matches!(run.replies[..], [Message::EnrollResponse { .. }]));

        // A wrong answer, or none, is refused.
        let (session, _) = challenged(&mut sh);
        let wrong = Message::AdmissionResponse { mac: [0; 32] }.encode();
        let (code, reason) = refusal(&drive(session, &[wrong], &mut sh));
        assert_eq!(code, ErrorCode::AdmissionRefused);
        assert_eq!(reason, "admission refused: wrong response");
        let (session, _) = challenged(&mut sh);
        let (code, reason) = refusal(&drive(session, &[request], &mut sh));
        assert_eq!(code, ErrorCode::AdmissionRefused);
        assert!(reason.contains("(got EnrollRequest)"), "{reason}");
        // Silence until a time limit.
        let (session, _) = challenged(&mut sh);
        let err = session
            .on_expiry(Expiry::Idle, Duration::from_secs(10))
            .expect("silence is refused");
        assert_eq!(ErrorCode::from(&err), ErrorCode::AdmissionRefused);
        assert_eq!(
            err.to_string(),
            "admission refused: no answer to the challenge (idle timeout of 10 s reached)"
        );
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
        let request = Message::EnrollRequest {
            csr_der: make_csr(SID, &key).unwrap(),
        };
        let run = drive(
            start(ServiceKind::Ca, &mut sh),
            &[request.encode()],
            &mut sh,
        );
        assert!(run.session.on_expiry(Expiry::Idle, limit).is_none());
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
