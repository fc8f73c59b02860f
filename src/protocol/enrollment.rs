//! The CA's session in our protocol.
//!
//! Version 2 (PROTOCOL.md): `CaHello` in, `CaChallenge` (the course's
//! policy and a fresh nonce) out; then any number of `CertRequest`s, each
//! bound to the latest nonce and authorised by the course's rules
//! ([`crate::course`]): open enrollment without a roster, the student's
//! enrollment code (an HMAC over the nonce, SID and CSR), or a renewal
//! proving possession of her current certificate's key. Each answer
//! (`CertIssued`, with the next nonce) leaves once its record, and the
//! code it consumes, are committed.
//!
//! A code is a guess until it is checked: the request is first counted
//! in the store ([`Record::Guess`], committed only within the bounds per
//! source and per SID and source, atomically across connections and
//! hosts), and its MAC is checked only once that commit is durable
//! ([`Enrollment::on_committed`]). So no more guesses are ever evaluated
//! than the bounds allow, however many arrive at once.
//!
//! Version 3 (PROTOCOL.md V3.7) differs in three messages: `CaHello3`
//! carries her fresh nonce and the size of the latest log checkpoint she
//! holds; `CaChallenge3` carries the root and the log's key, signed with
//! the root key over her nonce, so she checks her pin before any code's
//! MAC leaves; `CertIssued3` is made only once the certificate's record
//! is durable, with its log entry, its inclusion proof and the
//! consistency proof from her checkpoint. A `LogConsistencyRequest` is
//! answered whenever a hello or a request is awaited.
//!
//! Version 1's bare `EnrollRequest` is no longer served: it is refused
//! with code 10 before it reaches this module (`ProtocolError::Version1`).

use std::net::IpAddr;
use std::sync::Arc;

use log::info;
use openssl::hash::MessageDigest;

use crate::ca::{CaError, CertificateAuthority, Serial};
use crate::course::{self, code, Grant, Refusal, RenewalError};
use crate::crypto;
use crate::message::{
    EnrollAuth, Message, MAC_LEN, NONCE_LEN, PROTOCOL_VERSION, PROTOCOL_VERSION_3,
};
use crate::store::{Authorisation, EnrollView, Guess, Origin, Record, StoreError};
use crate::time::{now_unix, time_text, unix_time};
use crate::verify::{CertError, Verifier, X509_V_ERR_CERT_HAS_EXPIRED};

use super::error::{Internal, ProtocolError};
use super::{cert_record, other_message, After, Expired, Output, Shared, State, Step};

/// Where a CA connection is.
#[derive(Debug)]
pub(super) enum Enrollment {
    /// Waiting for the first message, `CaHello`.
    AwaitHello,
    /// Challenge sent; a request bound to `nonce` is owed.
    Challenged {
        /// The nonce the next request binds.
        nonce: [u8; NONCE_LEN],
        /// Version 3: the log size she holds (`None`: version 2).
        log_size: Option<u64>,
    },
    /// A certificate issued; the client may send another request bound
    /// to `nonce` (the `next_nonce` sent), or close.
    Issued {
        /// The nonce the next request binds.
        nonce: [u8; NONCE_LEN],
        /// Version 3: the log size she holds now (`None`: version 2).
        log_size: Option<u64>,
    },
    /// Version 3: a certificate issued, its `CertIssued3` (with its log
    /// proof) made once its record is durable.
    Recording(Box<Recording>),
    /// A code request counted as a guess, its MAC checked once the count
    /// is durable.
    Guessed(Box<Counted>),
}

/// A code request waiting for its guess to be counted.
#[derive(Debug)]
pub(super) struct Counted {
    ca: Arc<CertificateAuthority>,
    nonce: [u8; NONCE_LEN],
    sid: String,
    csr_der: Vec<u8>,
    mac: [u8; MAC_LEN],
    /// The roster and code as read before the count (a code spent or
    /// reissued meanwhile is caught when the certificate commits).
    view: EnrollView,
    /// Version 3: the log size she holds.
    log_size: Option<u64>,
}

/// A version 3 certificate waiting for its record.
#[derive(Debug)]
pub(super) struct Recording {
    cert_der: Vec<u8>,
    serial: String,
    next_nonce: [u8; NONCE_LEN],
    log_size: u64,
}

impl Enrollment {
    /// A new CA connection, waiting for `CaHello`.
    pub(super) fn new() -> Enrollment {
        Enrollment::AwaitHello
    }

    /// Whether a request is owed now (the challenge is out). Not after a
    /// certificate (`Issued`): the next request comes only once the
    /// client has it, that is after the commit that is to be held.
    pub(super) fn awaits_record(&self) -> bool {
        matches!(self, Enrollment::Challenged { .. })
    }

    /// Whether no frame has come yet (only then may a legacy command).
    pub(super) fn is_fresh(&self) -> bool {
        matches!(self, Enrollment::AwaitHello)
    }

    /// Takes the message this state is waiting for: `CaHello` first, then
    /// `CertRequest`s, each bound to the latest nonce sent.
    /// `source`: the peer's address, which its code guesses are counted
    /// under (`None` for a session without one: tests, fuzzing).
    pub(super) fn handle(
        self,
        msg: Message,
        shared: &mut Shared,
        peer: &str,
        source: Option<IpAddr>,
    ) -> Step {
        match (self, msg) {
            (Enrollment::AwaitHello, Message::CaHello { version }) => hello(version, shared),
            (
                Enrollment::AwaitHello,
                hello @ Message::CaHello3 {
                    version, log_size, ..
                },
            ) => hello3(version, &hello.encode(), log_size, shared),
            (
                Enrollment::Challenged { nonce, log_size } | Enrollment::Issued { nonce, log_size },
                Message::CertRequest { csr_der, auth },
            ) => request(nonce, log_size, csr_der, &auth, shared, peer, source),
            (
                state @ (Enrollment::AwaitHello
                | Enrollment::Challenged { .. }
                | Enrollment::Issued { .. }),
                Message::LogConsistencyRequest { old_size, new_size },
            ) => {
                let proof = super::logproof::consistency(&mut *shared.store, old_size, new_size)?;
                Ok((
                    State::Enrollment(state),
                    Output::reply(Message::LogConsistency { proof }),
                ))
            }
            (state, msg) => other_message(msg, state.expecting(), peer),
        }
    }

    fn expecting(&self) -> &'static str {
        match self {
            Enrollment::AwaitHello => "waiting for an enrollment request (CaHello)",
            Enrollment::Challenged { .. } | Enrollment::Issued { .. } => {
                "waiting for an enrollment request (CertRequest)"
            }
            Enrollment::Guessed(_) => "checking an enrollment code",
            Enrollment::Recording(_) => "recording a certificate",
        }
    }

    /// The last record is durable: a counted guess is checked now, and
    /// answered (a certificate, held for its own record, or a refusal).
    pub(super) fn on_committed(
        self,
        shared: &mut Shared,
        peer: &str,
        logged: Option<crate::store::tlog::Logged>,
    ) -> Step {
        match self {
            Enrollment::Guessed(counted) => check_counted(*counted, peer),
            Enrollment::Recording(r) => Ok(issued_v3(*r, shared, peer, logged)),
            state @ (Enrollment::AwaitHello
            | Enrollment::Challenged { .. }
            | Enrollment::Issued { .. }) => Ok((State::Enrollment(state), Output::default())),
        }
    }

    /// A time limit reached: quiet once every request has had its
    /// certificate, a refusal while one is owed.
    pub(super) fn on_expiry(&self, expired: Expired) -> Option<ProtocolError> {
        match self {
            Enrollment::Issued { .. } => None,
            Enrollment::AwaitHello
            | Enrollment::Challenged { .. }
            | Enrollment::Guessed(_)
            | Enrollment::Recording(_) => Some(ProtocolError::Expired(expired)),
        }
    }
}

fn internal(
    what: &'static str,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> ProtocolError {
    ProtocolError::Internal(Internal::new(what, e))
}

fn store_failed(e: StoreError) -> ProtocolError {
    ProtocolError::store("reading the roster", e)
}

fn the_ca(shared: &Shared) -> Result<Arc<CertificateAuthority>, ProtocolError> {
    shared
        .ca
        .as_ref()
        .map(Arc::clone)
        .ok_or(ProtocolError::NotACa)
}

/// Answers `CaHello` with the policy (read from the store now) and a
/// fresh nonce.
pub(super) fn hello(version: u16, shared: &mut Shared) -> Step {
    the_ca(shared)?;
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::UnsupportedVersion { got: version });
    }
    // The empty SID is on no roster: this reads only whether one exists.
    let roster_on = shared
        .store
        .enrollment_view("")
        .map_err(store_failed)?
        .roster_on;
    let nonce = crypto::random::<NONCE_LEN>().map_err(|e| internal("nonce", e))?;
    let reply = Message::CaChallenge {
        version: PROTOCOL_VERSION,
        policy: course::policy(roster_on),
        nonce,
    };
    Ok((
        State::Enrollment(Enrollment::Challenged {
            nonce,
            log_size: None,
        }),
        Output::reply(reply),
    ))
}

/// Answers `CaHello3` (`hello`: its payload) with the policy, a fresh
/// nonce, the root and the log's key, all signed with the root key over
/// her hello: she checks the root against her pin before any secret
/// leaves (PROTOCOL.md V3.7).
fn hello3(version: u16, hello: &[u8], log_size: u64, shared: &mut Shared) -> Step {
    let ca = the_ca(shared)?;
    if version != PROTOCOL_VERSION_3 {
        return Err(ProtocolError::UnsupportedVersion { got: version });
    }
    let roster_on = shared
        .store
        .enrollment_view("")
        .map_err(store_failed)?
        .roster_on;
    let policy = course::policy(roster_on);
    let nonce = crypto::random::<NONCE_LEN>().map_err(|e| internal("nonce", e))?;
    let log_key = shared
        .log
        .as_ref()
        .map(|l| l.key().verifier_key())
        .unwrap_or_default();
    let transcript =
        crypto::ca_challenge_transcript(hello, policy as u8, &nonce, ca.cert_der(), &log_key);
    let signature = openssl::sign::Signer::new(MessageDigest::sha256(), ca.key())
        .and_then(|mut s| {
            s.update(&transcript)?;
            s.sign_to_vec()
        })
        .map_err(|e| internal("signing the challenge", e))?;
    let reply = Message::CaChallenge3 {
        version: PROTOCOL_VERSION_3,
        policy,
        nonce,
        ca_cert_der: ca.cert_der().to_vec(),
        log_key,
        signature,
    };
    Ok((
        State::Enrollment(Enrollment::Challenged {
            nonce,
            log_size: Some(log_size),
        }),
        Output::reply(reply),
    ))
}

/// A version 3 certificate now durable: its `CertIssued3`, with the log
/// proofs when this host holds the log key (without them, logged, rather
/// than no certificate at all: it is issued and recorded).
fn issued_v3(
    r: Recording,
    shared: &mut Shared,
    peer: &str,
    logged: Option<crate::store::tlog::Logged>,
) -> (State, Output) {
    let record = crate::store::tlog::cert_record_key(&r.serial);
    let proven = match &shared.log {
        Some(signer) => {
            let signer = Arc::clone(signer);
            match super::logproof::prove_record(
                &mut *shared.store,
                &signer,
                &record,
                logged,
                r.log_size,
            ) {
                Ok(p) => p,
                Err(e) => {
                    log::warn!(
                        "{peer}: certificate serial {} goes out without its log proof: {e}",
                        r.serial
                    );
                    None
                }
            }
        }
        None => None,
    };
    let log_size = proven.as_ref().map_or(r.log_size, |p| p.size);
    let (log_entry, log_proof, consistency) = match proven {
        Some(p) => (p.entry, p.proof, p.consistency),
        None => (Vec::new(), String::new(), Vec::new()),
    };
    info!(
        "{peer}: certificate serial {} recorded and sent{}",
        r.serial,
        if log_proof.is_empty() {
            ""
        } else {
            " with its log proof"
        }
    );
    (
        State::Enrollment(Enrollment::Issued {
            nonce: r.next_nonce,
            log_size: Some(log_size),
        }),
        Output::reply(Message::CertIssued3 {
            cert_der: r.cert_der,
            next_nonce: r.next_nonce,
            log_entry,
            log_proof,
            consistency,
        }),
    )
}

/// One `CertRequest`, bound to `nonce`.
#[allow(clippy::too_many_arguments)] // ok: the request's parts and the connection's
pub(super) fn request(
    nonce: [u8; NONCE_LEN],
    log_size: Option<u64>,
    csr_der: Vec<u8>,
    auth: &EnrollAuth,
    shared: &mut Shared,
    peer: &str,
    source: Option<IpAddr>,
) -> Step {
    let ca = the_ca(shared)?;
    let checked = ca.check_csr(&csr_der).map_err(ProtocolError::enrollment)?;
    // Said at enrollment, not at the first renewal or submission: a
    // certificate Blackboard can never use is not issued (PROTOCOL.md).
    // Before any guess is counted: the key is the caller's own, and says
    // nothing about the roster.
    if !checked.key_is_rsa() {
        return Err(ProtocolError::Enrollment(CaError::UnsupportedKey(
            "an EC key: Blackboard sends the session key with RSA-OAEP, so a student key \
             must be RSA of 2048 to 4096 bits"
                .into(),
        )));
    }
    let sid = checked.sid().to_string();
    let view = shared.store.enrollment_view(&sid).map_err(store_failed)?;
    let refused = |source: Refusal| ProtocolError::Course {
        sid: sid.clone(),
        source,
    };
    match auth {
        EnrollAuth::Renewal {
            cert_der,
            signature,
        } => {
            // The proof first: only a holder of a certificate for the SID
            // learns whether it is still on the roster, or unvouched.
            let renewal = RenewalProof {
                nonce: &nonce,
                cert_der,
                signature,
                csr_der: &csr_der,
            };
            let (renews, vouched) = check_renewal(shared, &ca, &sid, &renewal)?
                .map_err(|e| refused(Refusal::Renewal(e)))?;
            course::admits_renewal(&view).map_err(refused)?;
            if view.roster_on && !vouched {
                return Err(refused(Refusal::Renewal(RenewalError::Unvouched {
                    serial: renews,
                })));
            }
            issue(
                &ca,
                &checked,
                Authorisation::Renewal { renews, vouched },
                "renewed by proof of possession of the current key, which it supersedes",
                peer,
                log_size,
            )
        }
        EnrollAuth::Code { mac } if course::is_guess(&view, auth) => {
            // Her right code is never held back by the guess bounds, so a
            // classmate at her address who spends them cannot keep her out
            // (its record consumes the code in the certificate's own
            // transaction: two racing requests still issue once). Anything
            // else is a guess, counted before it is answered: only a right
            // code ever learns more than a counted refusal.
            if let Ok(Grant::Code(key)) = course::authorise(&view, &sid, &nonce, &csr_der, auth)
                .map_err(|e| internal("enrollment code MAC", e))?
            {
                return issue(
                    &ca,
                    &checked,
                    Authorisation::Code(key),
                    "enrollment code verified; consumed once recorded, superseding the SID's \
                     other certificates",
                    peer,
                    log_size,
                );
            }
            let guess = Record::Guess(Guess {
                sid: sid.clone(),
                source: source.map_or_else(|| "unknown".to_string(), course::guess_source),
                at: now_unix(),
                limits: shared.guess_limits,
            });
            let counted = Counted {
                ca: Arc::clone(&ca),
                nonce,
                sid,
                csr_der,
                mac: *mac,
                view,
                log_size,
            };
            Ok((
                State::Enrollment(Enrollment::Guessed(Box::new(counted))),
                Output {
                    then: After::Persist(guess),
                    ..Output::default()
                },
            ))
        }
        _ => match course::authorise(&view, &sid, &nonce, &csr_der, auth)
            .map_err(|e| internal("enrollment code MAC", e))?
        {
            Ok(Grant::Open) => issue(
                &ca,
                &checked,
                Authorisation::Open,
                "open enrollment (no roster)",
                peer,
                log_size,
            ),
            // Never without a roster, and a code with a roster is a guess.
            Ok(Grant::Code(_)) => Err(internal(
                "enrollment code",
                "a code was granted without being counted",
            )),
            Err(r) => Err(refused(r)),
        },
    }
}

/// A counted guess, checked: the certificate if the code is right.
fn check_counted(c: Counted, peer: &str) -> Step {
    let auth = EnrollAuth::Code { mac: c.mac };
    let refused = |source: Refusal| ProtocolError::Course {
        sid: c.sid.clone(),
        source,
    };
    match course::authorise(&c.view, &c.sid, &c.nonce, &c.csr_der, &auth)
        .map_err(|e| internal("enrollment code MAC", e))?
    {
        Ok(Grant::Code(key)) => {
            let checked =
                c.ca.check_csr(&c.csr_der)
                    .map_err(ProtocolError::enrollment)?;
            issue(
                &c.ca,
                &checked,
                Authorisation::Code(key),
                "enrollment code verified; consumed once recorded, superseding the SID's \
                 other certificates",
                peer,
                c.log_size,
            )
        }
        Ok(Grant::Open) => Err(internal(
            "enrollment code",
            "open enrollment granted to a code",
        )),
        Err(r) => Err(refused(r)),
    }
}

/// Issues the certificate, held until its record (and the code it
/// consumes, and the certificates it supersedes) is committed.
fn issue(
    ca: &CertificateAuthority,
    checked: &crate::ca::CheckedCsr<'_>,
    authorised: Authorisation,
    how: &str,
    peer: &str,
    log_size: Option<u64>,
) -> Step {
    let issued = ca
        .issue_checked(checked)
        .map_err(ProtocolError::enrollment)?;
    let next_nonce = crypto::random::<NONCE_LEN>().map_err(|e| internal("nonce", e))?;
    info!(
        "{peer}: signed certificate serial {} for SID {} (valid until {}): {how}; sent once recorded",
        issued.serial,
        issued.sid,
        time_text(issued.not_after)
    );
    if let Some(log_size) = log_size {
        let recording = Recording {
            cert_der: issued.der.clone(),
            serial: issued.serial.to_string(),
            next_nonce,
            log_size,
        };
        let record = cert_record(issued, Origin::Certboard, authorised);
        return Ok((
            State::Enrollment(Enrollment::Recording(Box::new(recording))),
            Output {
                then: After::Persist(record),
                ..Output::default()
            },
        ));
    }
    let reply = Message::CertIssued {
        cert_der: issued.der.clone(),
        ca_cert_der: ca.cert_der().to_vec(),
        next_nonce,
    };
    let record = cert_record(issued, Origin::Certboard, authorised);
    let out = Output {
        then: After::Persist(record),
        ..Output::reply(reply)
    };
    Ok((
        State::Enrollment(Enrollment::Issued {
            nonce: next_nonce,
            log_size: None,
        }),
        out,
    ))
}

/// What a renewal request carries besides the CSR's key.
struct RenewalProof<'a> {
    nonce: &'a [u8; NONCE_LEN],
    cert_der: &'a [u8],
    signature: &'a [u8],
    csr_der: &'a [u8],
}

/// A renewal's proof: her current certificate is ours (path, clientAuth,
/// the CSR's SID; valid now, or expired within the renewal grace and valid
/// in every other respect when it expired), recorded and not revoked, and
/// her signature over the nonce, that certificate and the new CSR verifies
/// with its key. Returns its serial and whether a code vouches for it. The
/// outer `Err` is the server's failure.
fn check_renewal(
    shared: &mut Shared,
    ca: &CertificateAuthority,
    sid: &str,
    proof: &RenewalProof<'_>,
) -> Result<Result<(Serial, bool), RenewalError>, ProtocolError> {
    let own;
    let verifier = match &shared.verifier {
        Some(v) => v.as_ref(),
        // A CA-only process has no Blackboard verifier: the same check on
        // the same root, made for this rare request.
        None => {
            own = Verifier::new(ca.cert()).map_err(|e| internal("verifier", e))?;
            &own
        }
    };
    let student = match verifier.verify(sid, proof.cert_der, &[]) {
        Ok(s) => s,
        Err(CertError::Path { code, .. }) if code == X509_V_ERR_CERT_HAS_EXPIRED => {
            match within_grace(verifier, sid, proof.cert_der, shared.renewal_grace_days)? {
                Ok(s) => s,
                Err(e) => return Ok(Err(e)),
            }
        }
        Err(CertError::Internal(e)) => return Err(internal("certificate check", e.0)),
        Err(e) => return Ok(Err(RenewalError::Certificate(e))),
    };
    let status = shared
        .store
        .cert_status(&student.serial)
        .map_err(|e| internal("certificate status", e))?;
    let vouched = match status {
        crate::store::CertStatus::Good { vouched, .. } => vouched,
        crate::store::CertStatus::Unknown => {
            return Ok(Err(RenewalError::Certificate(CertError::NotIssued(
                student.serial,
            ))))
        }
        crate::store::CertStatus::Revoked { reason, .. } => {
            return Ok(Err(RenewalError::Certificate(CertError::Revoked {
                serial: student.serial,
                reason,
            })))
        }
    };
    let message = code::renewal_message(proof.nonce, proof.cert_der, proof.csr_der);
    let verified = openssl::sign::Verifier::new(MessageDigest::sha256(), &student.key)
        .and_then(|mut v| {
            v.update(&message)?;
            v.verify(proof.signature)
        })
        // A signature OpenSSL cannot even parse is a bad proof, not our fault.
        .unwrap_or(false);
    Ok(if verified {
        Ok((student.serial, vouched))
    } else {
        Err(RenewalError::BadSignature)
    })
}

/// An expired certificate's check for the renewal grace: it expired no
/// more than `grace_days` ago, and held up in every other respect at its
/// last valid second (the root's validity included). The outer `Err` is the server's failure.
fn within_grace(
    verifier: &Verifier,
    sid: &str,
    cert_der: &[u8],
    grace_days: u32,
) -> Result<Result<crate::verify::Student, RenewalError>, ProtocolError> {
    let cert = openssl::x509::X509::from_der(cert_der)
        .map_err(|e| internal("reading an expired certificate", e))?;
    let expired_at =
        unix_time(cert.not_after()).map_err(|e| internal("reading an expiry time", e))?;
    let serial =
        Serial::from_asn1(cert.serial_number()).map_err(|e| internal("reading a serial", e))?;
    if now_unix() - expired_at > i64::from(grace_days) * 86_400 {
        return Ok(Err(RenewalError::ExpiredBeyondGrace {
            serial,
            expired_at,
            grace_days,
        }));
    }
    // OpenSSL counts notAfter's own second as expired: the second before.
    match verifier.verify_at(sid, cert_der, &[], expired_at - 1) {
        Ok(s) => Ok(Ok(s)),
        Err(CertError::Internal(e)) => Err(internal("certificate check", e.0)),
        Err(e) => Ok(Err(RenewalError::Certificate(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{After, ServiceKind};
    use super::*;
    use crate::client::{make_csr, make_key, KeyType};
    use crate::message::ErrorCode;

    fn request(sid: &str) -> Vec<u8> {
        let key = make_key(KeyType::Rsa2048).unwrap();
        Message::CertRequest {
            csr_der: make_csr(sid, &key).unwrap(),
            auth: EnrollAuth::Open,
        }
        .encode()
    }

    /// A request needs the nonce of a challenge: before `CaHello` it is
    /// out of turn, and says what is awaited.
    #[test]
    fn a_request_before_the_hello_is_out_of_turn() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), None);
        let run = drive(start(ServiceKind::Ca, &mut sh), &[request(SID)], &mut sh);
        let (code, reason) = refusal(&run);
        assert_eq!(code, ErrorCode::UnexpectedMessage);
        assert!(reason.contains("(CaHello)"), "{reason}");
        assert!(sh.store.certs().unwrap().is_empty());
    }

    /// After the challenge, any number of requests, each answered once its
    /// record is committed; a second hello is out of turn.
    #[test]
    fn requests_follow_one_another_and_a_second_hello_is_out_of_turn() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), None);
        let run = drive(
            start(ServiceKind::Ca, &mut sh),
            &[ca_hello(), request("alice"), request("bob")],
            &mut sh,
        );
        assert!(!run.closed);
        assert!(matches!(
            run.replies[..],
            [
                Message::CaChallenge { .. },
                Message::CertIssued { .. },
                Message::CertIssued { .. }
            ]
        ));
        assert_eq!(sh.store.certs().unwrap().len(), 2);
        let run = drive(run.session, &[ca_hello()], &mut sh);
        let (code, reason) = refusal(&run);
        assert_eq!(code, ErrorCode::UnexpectedMessage);
        assert!(reason.contains("(CertRequest)"), "{reason}");
    }

    /// The certificate's frame waits for its record: the step hands both
    /// to the reactor at once, the record to commit first.
    #[test]
    fn an_issued_certificate_is_held_for_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), None);
        let run = drive(start(ServiceKind::Ca, &mut sh), &[ca_hello()], &mut sh);
        let (_, out) = run.session.on_frame(&request(SID), &mut sh, "p");
        assert_eq!(out.send.len(), 1);
        assert!(!out.close && out.refusal.is_none());
        let After::Persist(crate::store::Record::Cert(cert)) = out.then else {
            panic!("expected a certificate record, got {:?}", out.then);
        };
        assert_eq!(cert.sid, SID);
        assert!(sh.store.certs().unwrap().is_empty(), "not committed here");
    }

    /// Blackboard sends the session key with RSA-OAEP: an EC key is
    /// refused at enrollment, saying so (code 3), and nothing is issued.
    #[test]
    fn an_ec_key_is_refused_at_enrollment() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), None);
        let ec = crate::testing::p256_key().unwrap();
        let request = Message::CertRequest {
            csr_der: make_csr(SID, &ec).unwrap(),
            auth: EnrollAuth::Open,
        }
        .encode();
        let run = drive(
            start(ServiceKind::Ca, &mut sh),
            &[ca_hello(), request],
            &mut sh,
        );
        assert!(matches!(run.replies[0], Message::CaChallenge { .. }));
        let Message::Error { code, reason } = &run.replies[1] else {
            panic!("expected a refusal, got {:?}", run.replies);
        };
        assert_eq!(*code, ErrorCode::BadRequest);
        assert!(
            reason.contains("EC key") && reason.contains("RSA-OAEP"),
            "{reason}"
        );
        assert!(sh.store.certs().unwrap().is_empty());
    }

    /// A certificate made by the test CA with chosen validity, recorded as
    /// `authorised`; returns it (DER) with its key and serial.
    fn recorded(
        sh: &mut Shared,
        params: &crate::testing::CertParams,
        authorised: Authorisation,
    ) -> (Vec<u8>, openssl::pkey::PKey<openssl::pkey::Private>, Serial) {
        let key = make_key(KeyType::Rsa2048).unwrap();
        let ca = sh.ca.clone().unwrap();
        let cert = params
            .signed_by(&key, crate::testing::Issuer::ca(&ca))
            .unwrap();
        let serial = Serial::from_asn1(cert.serial_number()).unwrap();
        let der = cert.to_der().unwrap();
        sh.store
            .commit(&[Record::Cert(crate::store::CertRecord {
                serial: serial.clone(),
                sid: SID.into(),
                not_before: params.not_before,
                not_after: params.not_after,
                der: der.clone(),
                origin: Origin::Certboard,
                authorised,
            })])
            .unwrap();
        (der, key, serial)
    }

    /// One renewal on a fresh connection: hello, then the request signed
    /// with `key` for `cert_der`.
    fn renew(
        sh: &mut Shared,
        cert_der: &[u8],
        key: &openssl::pkey::PKey<openssl::pkey::Private>,
    ) -> Vec<Message> {
        let run = drive(start(ServiceKind::Ca, sh), &[ca_hello()], sh);
        let Message::CaChallenge { nonce, .. } = run.replies[0] else {
            panic!("expected a challenge, got {:?}", run.replies);
        };
        let new_key = make_key(KeyType::Rsa2048).unwrap();
        let csr = make_csr(SID, &new_key).unwrap();
        let auth = crate::client::renewal_auth(key, cert_der, &nonce, &csr).unwrap();
        let request = Message::CertRequest { csr_der: csr, auth }.encode();
        drive(run.session, &[request], sh).replies
    }

    fn refused(replies: &[Message]) -> (ErrorCode, String) {
        match replies {
            [Message::Error { code, reason }] => (*code, reason.clone()),
            other => panic!("expected one Error, got {other:?}"),
        }
    }

    fn status(sh: &mut Shared, serial: &Serial) -> crate::store::CertStatus {
        sh.store.cert_status(serial).unwrap()
    }

    /// Issue 22 item 17: a certificate expired within the grace renews by
    /// its key (and is superseded); beyond the grace, or revoked, it does
    /// not, and the student is told to ask for a new code.
    #[test]
    fn an_expired_certificate_renews_within_the_grace_only() {
        use crate::store::CertStatus;
        use crate::testing::CertParams;
        let dir = tempfile::tempdir().unwrap();
        let mut sh = crate::testing::TestPki::create(
            &dir.path().join("keys"),
            &crate::testing::CaParams::default(),
        )
        .unwrap()
        .shared()
        .renewal_grace_days(14)
        .build()
        .unwrap();
        let now = crate::time::now_unix();
        // Just expired (within the root's own validity, which began when
        // the test made it): renewed, and the old one superseded.
        let yesterday = CertParams {
            not_before: now - 200,
            not_after: now - 2,
            ..CertParams::student(SID)
        };
        let (der, key, serial) = recorded(&mut sh, &yesterday, Authorisation::Open);
        let replies = renew(&mut sh, &der, &key);
        assert!(
            matches!(replies[..], [Message::CertIssued { .. }]),
            "{replies:?}"
        );
        assert!(matches!(
            status(&mut sh, &serial),
            CertStatus::Revoked {
                reason: Some(crate::ca::RevocationReason::Superseded),
                ..
            }
        ));
        // The same certificate again: revoked (superseded), refused.
        let (code, reason) = refused(&renew(&mut sh, &der, &key));
        assert_eq!(code, ErrorCode::RenewalRefused);
        assert!(reason.contains("revoked (superseded)"), "{reason}");
        // Expired 20 days ago: beyond the grace.
        let long_ago = CertParams {
            not_before: now - 60 * 86_400,
            not_after: now - 20 * 86_400,
            ..CertParams::student(SID)
        };
        let (der, key, serial) = recorded(&mut sh, &long_ago, Authorisation::Open);
        let (code, reason) = refused(&renew(&mut sh, &der, &key));
        assert_eq!(code, ErrorCode::RenewalRefused);
        assert!(
            reason.contains("14-day renewal grace") && reason.contains("new enrollment code"),
            "{reason}"
        );
        assert!(matches!(status(&mut sh, &serial), CertStatus::Good { .. }));
        // Within the grace but revoked by the instructor: refused.
        let (der, key, serial) = recorded(&mut sh, &yesterday, Authorisation::Open);
        sh.store
            .revoke_serial(&serial, crate::ca::RevocationReason::KeyCompromise, now)
            .unwrap();
        let (code, reason) = refused(&renew(&mut sh, &der, &key));
        assert_eq!(code, ErrorCode::RenewalRefused);
        assert!(reason.contains("keyCompromise"), "{reason}");
        // Grace 0: expired is expired.
        sh.renewal_grace_days = 0;
        let (der, key, _) = recorded(&mut sh, &yesterday, Authorisation::Open);
        let (code, reason) = refused(&renew(&mut sh, &der, &key));
        assert_eq!(code, ErrorCode::RenewalRefused);
        assert!(
            reason.contains("renews only certificates still valid"),
            "{reason}"
        );
    }

    /// Issue 22 item 3: once a roster is in force, a certificate no code
    /// vouches for does not renew (code 18); one a code vouches for does,
    /// and its successor is vouched for too.
    #[test]
    fn with_a_roster_only_a_vouched_certificate_renews() {
        use crate::store::{CertStatus, Student};
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), None);
        let valid = crate::testing::CertParams::student(SID);
        let (open_der, open_key, _) = recorded(&mut sh, &valid, Authorisation::Open);
        // No roster: open certificates renew, as before.
        assert!(matches!(
            renew(&mut sh, &open_der, &open_key)[..],
            [Message::CertIssued { .. }]
        ));
        sh.store
            .import_roster(&[Student {
                sid: SID.into(),
                name: "A".into(),
                email: None,
            }])
            .unwrap();
        let (der, key, _) = recorded(&mut sh, &valid, Authorisation::Open);
        let (code, reason) = refused(&renew(&mut sh, &der, &key));
        assert_eq!(code, ErrorCode::Unvouched);
        assert!(reason.contains("not vouched for"), "{reason}");
        sh.store
            .store_codes(&[(SID.into(), [1; 32])], 1, false)
            .unwrap();
        let (der, key, serial) = recorded(&mut sh, &valid, Authorisation::Code([1; 32]));
        let replies = renew(&mut sh, &der, &key);
        let [Message::CertIssued { cert_der, .. }] = &replies[..] else {
            panic!("expected a certificate, got {replies:?}");
        };
        let new = openssl::x509::X509::from_der(cert_der).unwrap();
        let new_serial = Serial::from_asn1(new.serial_number()).unwrap();
        assert!(matches!(
            status(&mut sh, &new_serial),
            CertStatus::Good { vouched: true, .. }
        ));
        assert!(matches!(
            status(&mut sh, &serial),
            CertStatus::Revoked { .. }
        ));
    }
}
