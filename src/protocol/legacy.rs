//! Legacy mode: serving the original lab's Python student client, unmodified
//! (its wire protocol is described in docs/legacy.md).
//!
//! The original client speaks UTF-8 text frames in the same framing as ours.
//! A connection whose first frame is `1`, `2`, `q` or `Q` is routed here by
//! the protocol parent when `server --legacy` is on. What the original protocol
//! cannot protect stays unprotected (docs/legacy.md lists it); everything
//! the server itself decides is done properly:
//!
//! - CA (`1`): the original client cannot make a key pair, so the server
//!   generates an RSA-2048 key for the student, issues a certificate with our
//!   ordinary profile for CN=SID, records it as legacy, and forgets the
//!   private key (it is never stored or sent: the original client never
//!   uses one).
//! - Blackboard (`2`): the certificate text is parsed and checked like any
//!   other ([`super::check_certificate`]: chain, validity, clientAuth, CN,
//!   issued by us, not revoked, vouched for by a code while a roster is in
//!   force), and her SID must be on the roster in force (again when the
//!   report comes); the session key is fresh and random;
//!   the MAC is compared in constant time (`submission::check_mac`).
//!
//! After each answer the connection waits for the client's next command, so
//! the original client can go on to its next student; `q`/`Q` closes it
//! quietly. Every refusal is a UTF-8 text frame starting with `error:`
//! (the original client decodes every frame as strict UTF-8), and is logged
//! with the peer.
//!
//! As in our protocol, each state holds only its own data and a transition
//! consumes the old state. This file is the session; the original
//! client's frames, texts and crypto are in `wire`.

mod wire;

use std::fmt;
use std::sync::Arc;

use log::{info, warn};
use openssl::error::ErrorStack;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::X509;

use crate::assignment::{AdmitError, Refused};
use crate::ca::{CaError, CertificateAuthority, Issued};
use crate::course::Closed;
use crate::store::DEFAULT_ASSIGNMENT;
use crate::store::{Origin, Record};
use crate::time::now_unix;

use super::error::{Internal, ProtocolError, ServerFault};
use super::submission::{
    check_certificate, check_mac, check_report_text, check_still_good, CertCheckError,
    PendingReport, ReportError,
};
use super::{cert_record, After, Expired, Job, Output, ServiceKind, Shared, State};

use wire::parse_sid;
pub use wire::{
    error_text, is_command, mac_hex, new_session_key, parse_cert_text, split_msg_mac,
    wrap_session_key, CertTextError, MsgMacError, SidFrameError, MAC_FAILED, MAC_HEX_LEN,
    MAX_CERT_TEXT, PROMPT, REPORT_ACCEPTED, SESSION_KEY_CHARS,
};

/// A legacy connection's state.
#[derive(Debug)]
pub(super) enum LegacySession {
    /// CA: waiting for a command (`1` enrolls, `q`/`Q` closes).
    CaAwaitCommand,
    /// CA: prompt sent, waiting for the SID.
    CaAwaitSid,
    /// CA: the student's key and certificate are being made off the loop.
    CaAwaitKey {
        /// The SID, already validated.
        sid: String,
    },
    /// Blackboard: waiting for a command (`2` submits, `q`/`Q` closes).
    BbAwaitCommand,
    /// Blackboard: waiting for the SID.
    BbAwaitSid,
    /// Blackboard: waiting for the certificate text of a valid SID.
    BbAwaitCert {
        /// The SID, already validated.
        sid: String,
    },
    /// Blackboard: the SID was refused; the certificate the client sends
    /// right behind it is read first, so that the refusal is its one answer.
    BbRefuseAfterCert {
        /// Why the SID was refused.
        reason: SidFrameError,
    },
    /// Blackboard: the session key was sent; waiting for `<msg>_<mac>`.
    BbAwaitReport(Box<PendingReport<String>>),
}

/// One step's result; `None`: the exchange is over.
type Step = (Option<LegacySession>, Output);

/// A legacy step as a step of the protocol parent.
pub(super) fn step((next, out): Step) -> (State, Output) {
    (next.map_or(State::Done, State::Legacy), out)
}

/// Why a legacy exchange was refused; the `Display` text follows `error: `
/// in the one text frame the client gets.
#[derive(Debug)]
#[non_exhaustive]
pub enum LegacyError {
    /// A command for the other service's port.
    WrongPort {
        /// The port it came to.
        port: ServiceKind,
    },
    /// Not a command at all.
    UnknownCommand {
        /// The port it came to.
        port: ServiceKind,
        /// The frame, short and escaped.
        shown: String,
    },
    /// The SID to enroll is refused.
    EnrollSid(SidFrameError),
    /// The CA refused.
    Enrollment(CaError),
    /// The SID to verify was refused (said after the certificate frame).
    VerifySid(SidFrameError),
    /// The certificate text is not one PEM certificate.
    CertText {
        /// The SID.
        sid: String,
        /// Why.
        source: CertTextError,
    },
    /// The certificate is refused.
    Certificate {
        /// The SID.
        sid: String,
        /// Why.
        source: CertCheckError,
    },
    /// The report frame is not UTF-8.
    ReportNotUtf8,
    /// The report frame is not `<msg>_<mac>`.
    ReportFrame(MsgMacError),
    /// The report is refused.
    Report(ReportError),
    /// A roster is in force and the SID is not on it (`roster remove`):
    /// her certificate no longer submits, as in versions 2 and 3.
    NotOnRoster {
        /// The SID.
        sid: String,
    },
    /// A roster is on: legacy enrollment cannot carry an enrollment code.
    RosterOn {
        /// The SID asked for.
        sid: String,
    },
    /// The report came outside the submission window.
    Closed(Closed),
    /// The `lab` assignment's times refuse the report.
    Deadline(crate::assignment::Refused),
    /// The server failed; the details go to the log only.
    Internal(Internal),
}

impl fmt::Display for LegacyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LegacyError::WrongPort {
                port: ServiceKind::Ca,
            } => write!(
                f,
                "command \"2\" (Blackboard) was sent to the CA port; send it to Blackboard"
            ),
            LegacyError::WrongPort {
                port: ServiceKind::Blackboard,
            } => write!(
                f,
                "command \"1\" (enrollment) was sent to the Blackboard port; send it to the CA"
            ),
            LegacyError::UnknownCommand {
                port: ServiceKind::Ca,
                shown,
            } => write!(
                f,
                "unknown command {shown} on the CA port (expected \"1\" to enroll or \"q\" to quit)"
            ),
            LegacyError::UnknownCommand {
                port: ServiceKind::Blackboard,
                shown,
            } => write!(
                f,
                "unknown command {shown} on the Blackboard port (expected \"2\" to submit or \"q\" to quit)"
            ),
            LegacyError::EnrollSid(e) => write!(f, "enrollment refused: {e}"),
            LegacyError::Enrollment(e) => write!(f, "enrollment refused: {e}"),
            LegacyError::VerifySid(e) => write!(f, "the student has not been verified: {e}"),
            LegacyError::CertText { sid, source } => write!(f, "{sid} has not been verified: {source}"),
            LegacyError::Certificate { sid, source } => {
                write!(f, "{sid} has not been verified: {source}")
            }
            LegacyError::NotOnRoster { sid } => write!(
                f,
                "{sid} has not been verified: SID {sid} is not on the course roster (removed by \
                 the instructor, or never on it): her certificate no longer submits; nothing \
                 was recorded (ask the instructor)"
            ),
            LegacyError::ReportNotUtf8 => write!(f, "the report frame is not UTF-8 text"),
            LegacyError::ReportFrame(e) => write!(f, "report refused: {e}"),
            LegacyError::Report(e) => write!(f, "{e}"),
            LegacyError::RosterOn { sid } => write!(
                f,
                "enrollment refused for {sid}: this course has a roster and enrollment needs an \
                 enrollment code, which the legacy protocol cannot carry; use the certboard client"
            ),
            LegacyError::Closed(e) => write!(f, "report refused: {e}"),
            LegacyError::Deadline(e) => write!(f, "report refused: {e}"),
            LegacyError::Internal(e) => write!(f, "internal server error ({})", e.what()),
        }
    }
}

impl std::error::Error for LegacyError {}

/// Logs a refusal with the peer, then sends it as one UTF-8 text frame and
/// closes.
fn refuse(peer: &str, err: LegacyError) -> Step {
    match &err {
        LegacyError::Internal(e) => warn!("{peer}: legacy: {}", e.logged()),
        other => warn!("{peer}: legacy: {other}"),
    }
    (None, Output::final_frame(error_text(&err.to_string())))
}

/// An internal failure: the details go to the log only.
fn internal(
    peer: &str,
    what: &'static str,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Step {
    refuse(peer, LegacyError::Internal(Internal::new(what, e)))
}

/// Text frames, no record, connection kept open.
fn reply(next: LegacySession, frames: Vec<Vec<u8>>) -> Step {
    (
        Some(next),
        Output {
            send: frames,
            ..Output::default()
        },
    )
}

/// Closes without a word: the client's `q`.
fn quiet_close(peer: &str) -> Step {
    info!("{peer}: legacy client quit");
    (
        None,
        Output {
            close: true,
            ..Output::default()
        },
    )
}

/// A frame as it may appear in a log line: short and escaped.
fn shown(payload: &[u8]) -> String {
    const MAX: usize = 40;
    let text = String::from_utf8_lossy(payload.get(..MAX).unwrap_or(payload)).into_owned();
    if payload.len() > MAX {
        format!("{text:?}… ({} bytes)", payload.len())
    } else {
        format!("{text:?}")
    }
}

impl LegacySession {
    /// A new legacy connection on `service`'s listener, before its first
    /// frame (which is fed to [`LegacySession::on_frame`] next).
    pub(super) fn start(service: ServiceKind) -> LegacySession {
        match service {
            ServiceKind::Ca => LegacySession::CaAwaitCommand,
            ServiceKind::Blackboard => LegacySession::BbAwaitCommand,
        }
    }

    /// Whether the connection is between two exchanges: an idle connection
    /// in this state has had every answer it asked for and may be closed
    /// quietly.
    pub(super) fn is_between_commands(&self) -> bool {
        matches!(
            self,
            LegacySession::CaAwaitCommand | LegacySession::BbAwaitCommand
        )
    }

    /// A time limit reached: quiet between two commands (every answer has
    /// been given), a refusal in the middle of one.
    pub(super) fn on_expiry(&self, expired: Expired) -> Option<ProtocolError> {
        if self.is_between_commands() {
            None
        } else {
            Some(ProtocolError::Expired(expired))
        }
    }

    /// The result of the work off the loop this session asked for.
    pub(super) fn on_offloaded(self, done: KeyDone, peer: &str) -> Step {
        match self {
            LegacySession::CaAwaitKey { sid } => enrolled(sid, done, peer),
            _ => internal(
                peer,
                "enrollment",
                "a key came for a session that asked for none",
            ),
        }
    }

    /// Feeds one frame; `None` means the exchange is over.
    pub(super) fn on_frame(
        self,
        payload: &[u8],
        shared: &mut Shared,
        peer: &str,
    ) -> (Option<LegacySession>, Output) {
        match self {
            LegacySession::CaAwaitCommand => ca_command(payload, peer),
            LegacySession::CaAwaitSid => enroll(payload, shared, peer),
            // The reactor feeds no frame while work is off the loop.
            LegacySession::CaAwaitKey { .. } => internal(
                peer,
                "enrollment",
                "a frame was fed while the key was being made",
            ),
            LegacySession::BbAwaitCommand => bb_command(payload, peer),
            LegacySession::BbAwaitSid => match parse_sid(payload) {
                Ok(sid) => (Some(LegacySession::BbAwaitCert { sid }), Output::default()),
                Err(reason) => (
                    Some(LegacySession::BbRefuseAfterCert { reason }),
                    Output::default(),
                ),
            },
            LegacySession::BbAwaitCert { sid } => verify(sid, payload, shared, peer),
            LegacySession::BbRefuseAfterCert { reason } => {
                refuse(peer, LegacyError::VerifySid(reason))
            }
            LegacySession::BbAwaitReport(p) => report(*p, payload, shared, peer),
        }
    }
}

fn ca_command(payload: &[u8], peer: &str) -> Step {
    match payload {
        b"1" => reply(LegacySession::CaAwaitSid, vec![PROMPT.as_bytes().to_vec()]),
        b"q" | b"Q" => quiet_close(peer),
        b"2" => refuse(
            peer,
            LegacyError::WrongPort {
                port: ServiceKind::Ca,
            },
        ),
        other => refuse(
            peer,
            LegacyError::UnknownCommand {
                port: ServiceKind::Ca,
                shown: shown(other),
            },
        ),
    }
}

fn bb_command(payload: &[u8], peer: &str) -> Step {
    match payload {
        b"2" => (Some(LegacySession::BbAwaitSid), Output::default()),
        b"q" | b"Q" => quiet_close(peer),
        b"1" => refuse(
            peer,
            LegacyError::WrongPort {
                port: ServiceKind::Blackboard,
            },
        ),
        other => refuse(
            peer,
            LegacyError::UnknownCommand {
                port: ServiceKind::Blackboard,
                shown: shown(other),
            },
        ),
    }
}

/// A fresh RSA-2048 key for the student, made and dropped on the server;
/// only its public half leaves this function.
fn student_public_key() -> Result<PKey<openssl::pkey::Public>, ErrorStack> {
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    PKey::public_key_from_der(&key.public_key_to_der()?)
}

/// Checks the SID, then asks for the student's key and certificate to be
/// made off the event loop (an RSA-2048 key takes tens of milliseconds);
/// the answer is sent by [`LegacySession::on_offloaded`].
fn enroll(payload: &[u8], shared: &mut Shared, peer: &str) -> Step {
    let sid = match parse_sid(payload) {
        Ok(s) => s,
        Err(reason) => return refuse(peer, LegacyError::EnrollSid(reason)),
    };
    let Some(ca) = &shared.ca else {
        return internal(peer, "enrollment", "this listener has no CA");
    };
    match shared.store.enrollment_view(&sid) {
        Ok(v) if v.roster_on => return refuse(peer, LegacyError::RosterOn { sid }),
        Ok(_) => {}
        Err(e) => return internal(peer, "reading the roster", e),
    }
    let job = KeyJob {
        sid: sid.clone(),
        ca: Arc::clone(ca),
    };
    (
        Some(LegacySession::CaAwaitKey { sid }),
        Output {
            then: After::Offload(Job(job)),
            ..Output::default()
        },
    )
}

/// A legacy enrollment's work off the loop: the student's key, her
/// certificate and its PEM text.
pub(super) struct KeyJob {
    sid: String,
    ca: Arc<CertificateAuthority>,
}

impl fmt::Debug for KeyJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyJob")
            .field("sid", &self.sid)
            .finish_non_exhaustive()
    }
}

/// What [`KeyJob::run`] made: the certificate and its PEM, or why not.
#[derive(Debug)]
pub(super) struct KeyDone(Result<(Issued, Vec<u8>), LegacyError>);

impl KeyJob {
    /// Runs on a worker thread, never on the event loop.
    pub(super) fn run(self) -> KeyDone {
        fn internal(
            what: &'static str,
            e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
        ) -> LegacyError {
            LegacyError::Internal(Internal::new(what, e))
        }
        let made = (|| {
            let pubkey = student_public_key().map_err(|e| internal("key generation", e))?;
            let issued = self.ca.issue_for(&self.sid, &pubkey).map_err(|e| {
                if e.is_server_fault() {
                    internal("issuance", e)
                } else {
                    LegacyError::Enrollment(e)
                }
            })?;
            // OpenSSL writes PEM with LF line endings, so the text the
            // client reads back is byte-identical.
            let pem = X509::from_der(&issued.der)
                .and_then(|c| c.to_pem())
                .map_err(|e| internal("PEM encoding", e))?;
            Ok((issued, pem))
        })();
        KeyDone(made)
    }
}

/// Back on the loop: the answer to an enrollment whose key was made.
fn enrolled(sid: String, done: KeyDone, peer: &str) -> Step {
    let (issued, pem) = match done.0 {
        Ok(made) => made,
        Err(e) => return refuse(peer, e),
    };
    info!(
        "{peer}: legacy: issued certificate serial {} for SID {} (valid until {}; key made on the server)",
        issued.serial, issued.sid, issued.not_after
    );
    (
        Some(LegacySession::CaAwaitCommand),
        Output {
            send: vec![
                format!("ID{sid} logins successfully").into_bytes(),
                format!("student {sid} sign finished").into_bytes(),
                pem,
            ],
            then: After::Persist(cert_record(
                issued,
                Origin::Legacy,
                crate::store::Authorisation::Open,
            )),
            ..Output::default()
        },
    )
}

fn verify(sid: String, payload: &[u8], shared: &mut Shared, peer: &str) -> Step {
    let der = match parse_cert_text(payload) {
        Ok(d) => d,
        Err(source) => return refuse(peer, LegacyError::CertText { sid, source }),
    };
    let checked = check_certificate(shared, &sid, &der, &[], Origin::Legacy);
    let student = match on_roster(shared, &sid, checked) {
        Ok(s) => s,
        Err(e) => return refuse(peer, e),
    };
    let session_key = match new_session_key() {
        Ok(k) => k,
        Err(e) => return internal(peer, "session key", e),
    };
    let wrapped = match wrap_session_key(&student.sid, &session_key) {
        Ok(w) => w,
        Err(e) => return internal(peer, "session key", e),
    };
    info!(
        "{peer}: legacy: certificate serial {} verified for SID {}; session key sent",
        student.serial, student.sid
    );
    let verified = format!("{} has been verified", student.sid).into_bytes();
    reply(
        LegacySession::BbAwaitReport(Box::new(PendingReport::new(student, session_key))),
        vec![verified, wrapped.into_bytes()],
    )
}

/// A certificate check's outcome for `sid`, then the roster: while one
/// is in force, a SID not on it (`roster remove`) no longer submits, as in
/// versions 2 and 3. Read only for a certificate that is otherwise good or
/// merely unvouched, so a stranger's certificate learns nothing about the
/// roster. A removed student's legacy certificate is always unvouched too
/// (legacy enrollment proves no code): she is told she was removed, the
/// cause, rather than what follows from it.
fn on_roster<T>(
    shared: &mut Shared,
    sid: &str,
    checked: Result<T, CertCheckError>,
) -> Result<T, LegacyError> {
    let refused = |source: CertCheckError| {
        if source.is_server_fault() {
            LegacyError::Internal(Internal::new("certificate check", source))
        } else {
            LegacyError::Certificate {
                sid: sid.to_string(),
                source,
            }
        }
    };
    let checked = match checked {
        Err(e) if !matches!(e, CertCheckError::Unvouched { .. }) => return Err(refused(e)),
        other => other,
    };
    match shared.store.enrollment_view(sid) {
        Ok(v) if v.roster_on && !v.on_roster => Err(LegacyError::NotOnRoster {
            sid: sid.to_string(),
        }),
        Ok(_) => checked.map_err(refused),
        Err(e) => Err(LegacyError::Internal(Internal::new(
            "reading the roster",
            e,
        ))),
    }
}

fn report(p: PendingReport<String>, payload: &[u8], shared: &mut Shared, peer: &str) -> Step {
    // Legacy reports go to the default assignment, like version 2's.
    let timing = match crate::assignment::admit(
        &mut *shared.store,
        &shared.window,
        &p.sid,
        DEFAULT_ASSIGNMENT,
        now_unix(),
    ) {
        Ok(t) => t,
        Err(AdmitError::Refused(Refused::Window(e))) => {
            return refuse(peer, LegacyError::Closed(e))
        }
        Err(AdmitError::Refused(e)) => return refuse(peer, LegacyError::Deadline(e)),
        Err(AdmitError::Store(e)) => return internal(peer, "reading the assignment", e),
    };
    let Ok(text) = std::str::from_utf8(payload) else {
        return refuse(peer, LegacyError::ReportNotUtf8);
    };
    let (msg, mac) = match split_msg_mac(text) {
        Ok(parts) => parts,
        Err(e) => return refuse(peer, LegacyError::ReportFrame(e)),
    };
    let expected = match mac_hex(&p.keys, &p.sid) {
        Ok(m) => m,
        Err(e) => return internal(peer, "MAC", e),
    };
    // `split_msg_mac` has already fixed the length.
    if check_mac(expected.as_bytes(), mac.as_bytes()).is_err() {
        warn!(
            "{peer}: legacy: report from SID {} refused: MAC does not verify",
            p.sid
        );
        return reply(
            LegacySession::BbAwaitCommand,
            vec![MAC_FAILED.as_bytes().to_vec()],
        );
    }
    // A removal from the roster since the session key holds too.
    let checked = check_still_good(shared, &p);
    if let Err(e) = on_roster(shared, &p.sid, checked) {
        return refuse(peer, e);
    }
    if let Err(e) = check_report_text(msg) {
        return refuse(peer, LegacyError::Report(ReportError::Text(e)));
    }
    let mut record = match p.accept(msg.to_string(), Origin::Legacy) {
        Ok(r) => r,
        Err(e) => return internal(peer, "receipt id", e),
    };
    record.late_by = timing.late_by();
    info!(
        "{peer}: legacy: report from SID {} accepted ({} bytes), receipt {}",
        record.sid,
        record.text.len(),
        record.receipt_id
    );
    (
        Some(LegacySession::BbAwaitCommand),
        Output {
            send: vec![REPORT_ACCEPTED.as_bytes().to_vec()],
            then: After::Persist(Record::Report(record)),
            close: false,
            ..Output::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::wire::tests::{client_unwrap, MAC, SID};
    use super::*;
    use crate::testing::{CaParams, TestPki};

    // The state machine, driven in-process the way the reactor drives it:
    // records are committed before the next frame.

    fn shared(dir: &std::path::Path) -> Shared {
        TestPki::create(&dir.join("keys"), &CaParams::default())
            .unwrap()
            .shared()
            .legacy(true)
            .build()
            .unwrap()
    }

    /// Feeds frames in order, committing any record, and returns the final
    /// state and every frame sent, as text.
    fn drive(
        mut state: LegacySession,
        frames: &[&[u8]],
        shared: &mut Shared,
    ) -> (Option<LegacySession>, Vec<String>, bool) {
        let mut sent = Vec::new();
        let mut closed = false;
        for (i, f) in frames.iter().enumerate() {
            assert!(!closed, "frame {i} after close");
            let (next, out) = state.on_frame(f, shared, "test-peer");
            // Work off the loop is done here, in turn, as a worker would.
            let (mut next, mut out) = (next, out);
            if let After::Offload(job) = out.then {
                let waiting = next.expect("a session waiting for its job");
                assert!(matches!(waiting, LegacySession::CaAwaitKey { .. }));
                (next, out) = waiting.on_offloaded(job.run().0, "test-peer");
            }
            if let After::Persist(r) = out.then {
                shared.store.commit(&[r]).unwrap();
            }
            for p in out.send {
                sent.push(String::from_utf8(p).expect("text frames are UTF-8"));
            }
            closed = out.close;
            match next {
                Some(n) => state = n,
                None => {
                    assert!(closed, "a finished session closes");
                    assert_eq!(i + 1, frames.len(), "session ended early");
                    return (None, sent, closed);
                }
            }
        }
        (Some(state), sent, closed)
    }

    fn enroll_in_process(sid: &str, shared: &mut Shared) -> String {
        let (state, sent, closed) = drive(
            LegacySession::start(ServiceKind::Ca),
            &[b"1", sid.as_bytes()],
            shared,
        );
        assert!(!closed);
        assert!(matches!(state, Some(LegacySession::CaAwaitCommand)));
        assert_eq!(sent.len(), 4, "{sent:?}");
        assert_eq!(sent[0], PROMPT);
        assert_eq!(sent[1], format!("ID{sid} logins successfully"));
        assert_eq!(sent[2], format!("student {sid} sign finished"));
        assert!(!sent[3].contains('\r'));
        sent[3].clone()
    }

    #[test]
    fn in_process_enroll_then_submit_then_quit() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path());
        let pem = enroll_in_process(SID, &mut sh);
        assert_eq!(sh.store.certs().unwrap()[0].origin, Origin::Legacy);

        let (state, sent, closed) = drive(
            LegacySession::start(ServiceKind::Blackboard),
            &[b"2", SID.as_bytes(), pem.as_bytes()],
            &mut sh,
        );
        assert!(!closed);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0], format!("{SID} has been verified"));
        let key = client_unwrap(SID, &sent[1]);
        assert_eq!(key.len(), SESSION_KEY_CHARS);
        let msg = "This is submission from SID1155000001\n".repeat(10);
        let frame = format!("{msg}_{}", mac_hex(&key, SID).unwrap());
        let (state, sent, closed) = drive(state.unwrap(), &[frame.as_bytes()], &mut sh);
        assert_eq!(sent, [REPORT_ACCEPTED]);
        assert!(!closed);
        let state = state.unwrap();
        assert!(state.is_between_commands());
        let reports = sh.store.reports().unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].text, msg);
        assert_eq!(reports[0].origin, Origin::Legacy);

        let (state, sent, closed) = drive(state, &[b"q"], &mut sh);
        assert!(state.is_none() && closed && sent.is_empty());
    }

    #[test]
    fn in_process_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path());
        let pem = enroll_in_process("alice", &mut sh);
        let bb = || LegacySession::start(ServiceKind::Blackboard);
        let refused = |sent: &[String], closed: bool, needle: &str| {
            assert!(closed);
            assert_eq!(sent.len(), 1, "{sent:?}");
            assert!(sent[0].starts_with("error: "), "{sent:?}");
            assert!(sent[0].contains(needle), "{sent:?} lacks {needle:?}");
        };

        // A certificate for someone else.
        let (_, sent, closed) = drive(bb(), &[b"2", b"bob", pem.as_bytes()], &mut sh);
        refused(&sent, closed, "not for the claimed SID");
        // A bad SID: the one answer comes after the certificate frame.
        let (_, sent, closed) = drive(bb(), &[b"2", b"a b", pem.as_bytes()], &mut sh);
        refused(&sent, closed, "bad student id");
        // Not PEM at all.
        let (_, sent, closed) = drive(bb(), &[b"2", b"alice", b"hello"], &mut sh);
        refused(&sent, closed, "not exactly one PEM certificate");
        // Revoked.
        let pem2 = enroll_in_process("carol", &mut sh);
        sh.store
            .revoke_sid("carol", crate::ca::RevocationReason::Unspecified, 1)
            .unwrap();
        let (_, sent, closed) = drive(bb(), &[b"2", b"carol", pem2.as_bytes()], &mut sh);
        refused(&sent, closed, "revoked");
        // Signed by our root but never recorded (the commit did not happen).
        let (waiting, out) = LegacySession::CaAwaitSid.on_frame(b"dave", &mut sh, "p");
        assert!(out.send.is_empty() && !matches!(out.then, After::Persist(_)));
        let After::Offload(job) = out.then else {
            panic!("the key is made off the loop");
        };
        let done = job.run().0;
        let (_, out) = waiting.unwrap().on_offloaded(done, "p");
        let unrecorded = String::from_utf8(out.send[2].clone()).unwrap();
        let (_, sent, closed) = drive(bb(), &[b"2", b"dave", unrecorded.as_bytes()], &mut sh);
        refused(&sent, closed, "not in the CA's records");

        // A wrong MAC is answered as the original does, and the connection stays.
        let (state, sent, _) = drive(bb(), &[b"2", b"alice", pem.as_bytes()], &mut sh);
        assert_eq!(sent[0], "alice has been verified");
        let (state, sent, closed) =
            drive(state.unwrap(), &[format!("msg_{MAC}").as_bytes()], &mut sh);
        assert_eq!(sent, [MAC_FAILED]);
        assert!(!closed && state.unwrap().is_between_commands());
        // A report frame with no '_' is a clear error.
        let (state, _, _) = drive(bb(), &[b"2", b"alice", pem.as_bytes()], &mut sh);
        let (_, sent, closed) = drive(state.unwrap(), &[b"no separator"], &mut sh);
        refused(&sent, closed, "no '_' separator");
        assert!(sh.store.reports().unwrap().is_empty());

        // CA side: a bad SID, a command for the other port, an unknown one.
        let (_, sent, closed) = drive(
            LegacySession::start(ServiceKind::Ca),
            &[b"1", b"../x"],
            &mut sh,
        );
        assert_eq!(sent[0], PROMPT);
        refused(&sent[1..], closed, "bad student id");
        let (_, sent, closed) = drive(LegacySession::start(ServiceKind::Ca), &[b"2"], &mut sh);
        refused(&sent, closed, "CA port");
        let (_, sent, closed) = drive(bb(), &[b"1"], &mut sh);
        refused(&sent, closed, "Blackboard port");
        let (state, _, _) = drive(
            LegacySession::start(ServiceKind::Ca),
            &[b"1", b"erin"],
            &mut sh,
        );
        let (_, sent, closed) = drive(state.unwrap(), &[b"\xff"], &mut sh);
        refused(&sent, closed, "unknown command");
    }
}
