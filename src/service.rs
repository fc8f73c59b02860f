//! The per-connection state machines of the two services, CA and
//! Blackboard, above the framing and below nothing: a frame payload goes in,
//! an [`Output`] (frames to send, a record to make durable first, whether to
//! close) comes out. No sockets here; the reactor does the I/O.
//!
//! Each state holds only its own data, and a transition consumes the old
//! state and returns the next (rustls' handshake style).

use std::fmt;
use std::sync::Arc;

use log::{info, warn};

use crate::ca::{CaError, CertificateAuthority, Issued};
use crate::crypto::{self, SessionKeys, SESSION_KEY_LEN};
use crate::legacy::{self, LegacySession};
use crate::message::{ErrorCode, Message, NONCE_LEN};
use crate::sid;
use crate::store::{CertRecord, CertStatus, Origin, Record, ReportRecord, Storage};
use crate::time::now_unix;
use crate::verify::{CertError, Verifier, MAX_CHAIN};

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
}

impl Output {
    fn reply(msg: Message) -> Output {
        Output {
            send: vec![msg.encode()],
            ..Output::default()
        }
    }

    /// One frame, then close.
    pub fn final_frame(payload: Vec<u8>) -> Output {
        Output {
            send: vec![payload],
            close: true,
            ..Output::default()
        }
    }

    /// A refusal: an error frame, then close.
    pub fn refuse(code: ErrorCode, reason: impl Into<String>) -> Output {
        Output::final_frame(Message::error(code, reason).encode())
    }
}

/// A connection's protocol state.
#[derive(Debug)]
pub enum Session {
    /// Waiting for the admission response.
    Admission {
        /// The challenge we sent.
        challenge: [u8; NONCE_LEN],
        /// The service to run once admitted.
        service: ServiceKind,
    },
    /// CA: waiting for the enrollment request.
    CaAwaitRequest,
    /// CA: an enrollment answered; the client may send another on the same
    /// connection (or close).
    CaAwaitNext,
    /// Blackboard: waiting for the student's hello.
    BbAwaitHello,
    /// Blackboard: session key sent, waiting for the report.
    BbAwaitReport(Box<PendingReport>),
    /// Serving the original lab client.
    Legacy(LegacySession),
    /// Finished: anything more is refused.
    Done,
}

/// Blackboard's state between the session key and the report.
pub struct PendingReport {
    sid: String,
    serial_hex: String,
    nonce: [u8; NONCE_LEN],
    keys: SessionKeys,
}

impl fmt::Debug for PendingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingReport")
            .field("sid", &self.sid)
            .field("serial", &self.serial_hex)
            .finish_non_exhaustive()
    }
}

fn internal(peer: &str, what: &str, e: impl fmt::Display) -> Output {
    warn!("{peer}: {what}: {e}");
    Output::refuse(ErrorCode::Internal, format!("internal error: {what}"))
}

impl Session {
    /// The state of a new connection, and what to send at once.
    pub fn start(service: ServiceKind, shared: &Shared) -> (Session, Output) {
        let Some(_) = shared.admission_secret else {
            return (Self::first_state(service), Output::default());
        };
        match crypto::random::<NONCE_LEN>() {
            Ok(challenge) => (
                Session::Admission { challenge, service },
                Output::reply(Message::AdmissionChallenge { challenge }),
            ),
            Err(e) => (Session::Done, internal("-", "random challenge", e)),
        }
    }

    fn first_state(service: ServiceKind) -> Session {
        match service {
            ServiceKind::Ca => Session::CaAwaitRequest,
            ServiceKind::Blackboard => Session::BbAwaitHello,
        }
    }

    /// Whether the connection has finished its exchange; an idle connection
    /// in this state is closed quietly.
    pub fn is_done(&self) -> bool {
        match self {
            Session::Done | Session::CaAwaitNext => true,
            // Between two legacy commands every answer has been given.
            Session::Legacy(l) => l.is_between_commands(),
            _ => false,
        }
    }

    /// Feeds one frame payload to the state machine.
    pub fn on_frame(self, payload: &[u8], shared: &mut Shared, peer: &str) -> (Session, Output) {
        match self {
            Session::Legacy(l) => {
                let (next, out) = l.on_frame(payload, shared, peer);
                (next.map_or(Session::Done, Session::Legacy), out)
            }
            Session::CaAwaitRequest | Session::BbAwaitHello if legacy::is_command(payload) => {
                let service = match self {
                    Session::CaAwaitRequest => ServiceKind::Ca,
                    _ => ServiceKind::Blackboard,
                };
                if !shared.legacy {
                    warn!(
                        "{peer}: first frame {:?} is a legacy lab-client command; \
                         legacy mode is off (start the server with --legacy to serve the original client)",
                        String::from_utf8_lossy(payload)
                    );
                    return (
                        Session::Done,
                        Output::refuse(
                            ErrorCode::LegacyDisabled,
                            "this server does not speak the legacy lab protocol (legacy mode is off)",
                        ),
                    );
                }
                let (next, out) = LegacySession::start(service).on_frame(payload, shared, peer);
                (next.map_or(Session::Done, Session::Legacy), out)
            }
            state => {
                let msg = match Message::decode(payload) {
                    Ok(m) => m,
                    Err(e) => {
                        warn!("{peer}: malformed message: {e}");
                        return (
                            Session::Done,
                            Output::refuse(ErrorCode::Malformed, format!("malformed message: {e}")),
                        );
                    }
                };
                state.on_message(msg, shared, peer)
            }
        }
    }

    fn on_message(self, msg: Message, shared: &mut Shared, peer: &str) -> (Session, Output) {
        match (self, msg) {
            (Session::Admission { challenge, service }, Message::AdmissionResponse { mac }) => {
                admit(challenge, service, &mac, shared, peer)
            }
            (
                Session::CaAwaitRequest | Session::CaAwaitNext,
                Message::EnrollRequest { csr_der },
            ) => enroll(&csr_der, shared, peer),
            (
                Session::BbAwaitHello,
                Message::SubmitHello {
                    sid,
                    cert_der,
                    chain,
                },
            ) => hello(&sid, &cert_der, &chain, shared, peer),
            (
                Session::BbAwaitReport(p),
                Message::Report {
                    cipher,
                    iv,
                    ciphertext,
                    mac,
                },
            ) => (
                Session::Done,
                report(*p, cipher, &iv, &ciphertext, &mac, peer),
            ),
            // Anything but the answer, before admission, is a client without
            // the secret: say so, rather than "unexpected message".
            (Session::Admission { .. }, msg) => {
                warn!(
                    "{peer}: admission refused: {} instead of the answer to the challenge",
                    msg.name()
                );
                (
                    Session::Done,
                    Output::refuse(
                        ErrorCode::AdmissionRefused,
                        format!(
                            "admission refused: this server requires the answer to its admission \
                             challenge first (got {}); give the client the shared secret \
                             (--admission-secret-file)",
                            msg.name()
                        ),
                    ),
                )
            }
            (state, Message::Error { code, reason }) => {
                info!("{peer}: client reported error {code:?}: {reason}");
                drop(state);
                (
                    Session::Done,
                    Output {
                        close: true,
                        ..Output::default()
                    },
                )
            }
            (state, msg) => {
                let expected = state.expecting();
                warn!("{peer}: unexpected {} while {expected}", msg.name());
                (
                    Session::Done,
                    Output::refuse(
                        ErrorCode::UnexpectedMessage,
                        format!(
                            "unexpected {} message: this connection is {expected}",
                            msg.name()
                        ),
                    ),
                )
            }
        }
    }

    fn expecting(&self) -> &'static str {
        match self {
            Session::Admission { .. } => "waiting for the admission response",
            Session::CaAwaitRequest | Session::CaAwaitNext => "waiting for an enrollment request",
            Session::BbAwaitHello => "waiting for a submission hello",
            Session::BbAwaitReport(_) => "waiting for the report",
            Session::Legacy(_) => "serving the legacy protocol",
            Session::Done => "finished",
        }
    }
}

fn admit(
    challenge: [u8; NONCE_LEN],
    service: ServiceKind,
    mac: &[u8],
    shared: &Shared,
    peer: &str,
) -> (Session, Output) {
    let Some(secret) = &shared.admission_secret else {
        return (Session::Done, internal(peer, "admission", "no secret"));
    };
    match crypto::hmac_sha256(secret, &challenge) {
        Ok(expected) if crypto::ct_eq(&expected, mac) => {
            info!("{peer}: admitted");
            (Session::first_state(service), Output::default())
        }
        Ok(_) => {
            warn!("{peer}: admission refused: wrong response to the challenge");
            (
                Session::Done,
                Output::refuse(
                    ErrorCode::AdmissionRefused,
                    "admission refused: wrong response",
                ),
            )
        }
        Err(e) => (Session::Done, internal(peer, "admission HMAC", e)),
    }
}

/// Issues for one CSR. A connection may carry several enrollments in turn
/// (a client enrolling many students saves a TCP handshake each); a refusal
/// ends it.
fn enroll(csr_der: &[u8], shared: &mut Shared, peer: &str) -> (Session, Output) {
    let Some(ca) = &shared.ca else {
        return (
            Session::Done,
            Output::refuse(ErrorCode::UnexpectedMessage, "this listener is not a CA"),
        );
    };
    match ca.issue(csr_der) {
        Ok(issued) => {
            info!(
                "{peer}: signed certificate serial {} for SID {} (valid until {}); sent once recorded",
                issued.serial_hex,
                issued.sid,
                crate::time::time_text(issued.not_after)
            );
            let reply = Message::EnrollResponse {
                cert_der: issued.der.clone(),
                ca_cert_der: ca.cert_der().to_vec(),
            };
            let out = Output {
                send: vec![reply.encode()],
                persist: Some(cert_record(issued, Origin::Certboard)),
                close: false,
            };
            (Session::CaAwaitNext, out)
        }
        Err(CaError::Crypto(e)) => (Session::Done, internal(peer, "issuance", e)),
        Err(e) => {
            warn!("{peer}: enrollment refused: {e}");
            let out = Output::refuse(ErrorCode::BadRequest, format!("enrollment refused: {e}"));
            (Session::Done, out)
        }
    }
}

/// The store's record of a certificate the CA has just issued; shared by
/// our protocol and legacy mode.
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

/// Checks a certificate for a SID against the root and the store; shared by
/// our protocol and legacy mode. A submission by the legacy protocol
/// (`by = Origin::Legacy`) proves no key, only that the submitter holds the
/// certificate, which is public: so it is accepted only for certificates
/// issued to legacy clients, never for a certboard student's.
pub fn check_certificate(
    shared: &mut Shared,
    sid: &str,
    cert_der: &[u8],
    chain: &[Vec<u8>],
    by: Origin,
) -> Result<crate::verify::Student, CertCheckError> {
    sid::validate(sid).map_err(|e| CertCheckError::Refused(format!("bad SID: {e}")))?;
    if chain.len() > MAX_CHAIN {
        return Err(CertCheckError::Refused(format!(
            "too many chain certificates ({}; at most {MAX_CHAIN})",
            chain.len()
        )));
    }
    let verifier = shared
        .verifier
        .as_ref()
        .ok_or_else(|| CertCheckError::Internal("this listener is not Blackboard".into()))?;
    let student = verifier
        .verify(sid, cert_der, chain)
        .map_err(|e| CertCheckError::Refused(e.to_string()))?;
    match shared.store.cert_status(&student.serial_hex) {
        Ok(CertStatus::Good { origin }) if by == Origin::Legacy && origin != Origin::Legacy => {
            Err(CertCheckError::Refused(format!(
                "certificate serial {} was issued to a certboard client, which must submit with \
                 its own key; the legacy protocol is only for certificates issued by legacy mode",
                student.serial_hex
            )))
        }
        Ok(CertStatus::Good { .. }) => Ok(student),
        Ok(CertStatus::Unknown) => Err(CertCheckError::Refused(
            CertError::NotIssued(student.serial_hex).to_string(),
        )),
        Ok(CertStatus::Revoked { reason, .. }) => Err(CertCheckError::Refused(
            CertError::Revoked {
                serial: student.serial_hex,
                reason,
            }
            .to_string(),
        )),
        Err(e) => Err(CertCheckError::Internal(format!("store: {e}"))),
    }
}

/// Why [`check_certificate`] did not accept.
#[derive(Debug)]
pub enum CertCheckError {
    /// The certificate is refused, with the reason for the student.
    Refused(String),
    /// The server could not decide.
    Internal(String),
}

fn hello(
    sid: &str,
    cert_der: &[u8],
    chain: &[Vec<u8>],
    shared: &mut Shared,
    peer: &str,
) -> (Session, Output) {
    let student = match check_certificate(shared, sid, cert_der, chain, Origin::Certboard) {
        Ok(s) => s,
        Err(CertCheckError::Refused(reason)) => {
            warn!("{peer}: certificate refused for SID {sid:?}: {reason}");
            return (
                Session::Done,
                Output::refuse(ErrorCode::BadCertificate, reason),
            );
        }
        Err(CertCheckError::Internal(e)) => {
            return (Session::Done, internal(peer, "certificate check", e))
        }
    };
    let setup = (|| {
        let session_key = crypto::random::<SESSION_KEY_LEN>()?;
        let nonce = crypto::random::<NONCE_LEN>()?;
        let wrapped_key = crypto::wrap_key(&student.key, &session_key)?;
        let keys = SessionKeys::derive(&session_key, &nonce)?;
        Ok::<_, openssl::error::ErrorStack>((nonce, wrapped_key, keys))
    })();
    match setup {
        Ok((nonce, wrapped_key, keys)) => {
            info!(
                "{peer}: certificate serial {} verified for SID {}; session key sent",
                student.serial_hex, student.sid
            );
            (
                Session::BbAwaitReport(Box::new(PendingReport {
                    sid: student.sid,
                    serial_hex: student.serial_hex,
                    nonce,
                    keys,
                })),
                Output::reply(Message::SessionKey { nonce, wrapped_key }),
            )
        }
        Err(e) => (Session::Done, internal(peer, "session key", e)),
    }
}

/// Largest report accepted, in bytes.
pub const MAX_REPORT: usize = 64 * 1024;

/// Checks a report's text before it is stored and printed: at most
/// [`MAX_REPORT`] bytes and no control characters but newline and tab (the
/// text is shown on the operator's terminal). Shared with legacy mode.
pub fn check_report_text(text: &str) -> Result<(), String> {
    if text.len() > MAX_REPORT {
        return Err(format!("the report is over {MAX_REPORT} bytes"));
    }
    match text
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        Some(c) => Err(format!("it contains the control character {c:?}")),
        None => Ok(()),
    }
}

fn report(
    p: PendingReport,
    cipher: crate::message::CipherId,
    iv: &[u8; crate::message::IV_LEN],
    ciphertext: &[u8],
    mac: &[u8],
    peer: &str,
) -> Output {
    let expected = match p.keys.report_mac(&p.nonce, &p.sid, cipher, iv, ciphertext) {
        Ok(m) => m,
        Err(e) => return internal(peer, "MAC", e),
    };
    // The MAC is checked, in constant time, before anything is decrypted.
    if !crypto::ct_eq(&expected, mac) {
        warn!(
            "{peer}: report from SID {} refused: MAC does not verify",
            p.sid
        );
        return Output::refuse(
            ErrorCode::BadMac,
            "report refused: the MAC does not verify (the report was altered or the key is wrong)",
        );
    }
    if ciphertext.len() > MAX_REPORT {
        return Output::refuse(ErrorCode::Limit, format!("report over {MAX_REPORT} bytes"));
    }
    let plain = match p.keys.apply_cipher(cipher, iv, ciphertext) {
        Ok(b) => b,
        Err(e) => return internal(peer, "decryption", e),
    };
    let text = match String::from_utf8(plain) {
        Ok(t) => t,
        Err(_) => {
            return Output::refuse(ErrorCode::BadRequest, "report refused: not UTF-8 text");
        }
    };
    if let Err(reason) = check_report_text(&text) {
        return Output::refuse(ErrorCode::BadRequest, format!("report refused: {reason}"));
    }
    let receipt_id = match crypto::random::<8>() {
        Ok(b) => u64::from_le_bytes(b) >> 1,
        Err(e) => return internal(peer, "receipt id", e),
    };
    info!(
        "{peer}: report from SID {} accepted ({} bytes, {}), receipt {receipt_id}; acknowledged once recorded",
        p.sid,
        text.len(),
        cipher.name()
    );
    let reply = Message::Receipt {
        receipt_id,
        serial_hex: p.serial_hex.clone(),
    };
    Output {
        send: vec![reply.encode()],
        persist: Some(Record::Report(ReportRecord {
            receipt_id,
            sid: p.sid,
            serial_hex: p.serial_hex,
            received_at: now_unix(),
            text,
            origin: Origin::Certboard,
        })),
        close: true,
    }
}

/// Prints accepted reports once they are durable: the operator's view of
/// Blackboard, on stdout, each report's lines as they came.
pub fn announce(batch: &[Record]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for record in batch {
        if let Record::Report(r) = record {
            let origin = match r.origin {
                Origin::Legacy => " (legacy)",
                Origin::Certboard => "",
            };
            let _ = writeln!(
                out,
                "report SID{} serial {} receipt {}{origin}:",
                r.sid, r.serial_hex, r.receipt_id
            );
            let _ = out.write_all(r.text.as_bytes());
            if !r.text.ends_with('\n') {
                let _ = writeln!(out);
            }
        }
    }
    let _ = out.flush();
}
