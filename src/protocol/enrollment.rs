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
//! Version 1's bare `EnrollRequest` is no longer served: it is refused
//! with code 10 before it reaches this module (`ProtocolError::Version1`).

use std::sync::Arc;

use log::info;
use openssl::hash::MessageDigest;

use crate::ca::CertificateAuthority;
use crate::course::{self, code, Grant, Refusal, RenewalError};
use crate::crypto;
use crate::message::{EnrollAuth, Message, NONCE_LEN, PROTOCOL_VERSION};
use crate::store::{Origin, Record, StoreError};
use crate::time::time_text;
use crate::verify::{CertError, Verifier};

use super::error::{Internal, ProtocolError};
use super::{cert_record, Output, Shared, State, Step};

/// Where a CA connection is.
#[derive(Debug)]
pub(super) enum Enrollment {
    /// Waiting for the first message, `CaHello`.
    AwaitRequest,
    /// Challenge sent; a request bound to `nonce` is owed.
    Challenged {
        /// The nonce the next request binds.
        nonce: [u8; NONCE_LEN],
    },
    /// A certificate issued; the client may send another request bound
    /// to `nonce` (the `next_nonce` sent), or close.
    Issued {
        /// The nonce the next request binds.
        nonce: [u8; NONCE_LEN],
    },
}

impl Enrollment {
    /// Whether every answer asked for has been given (a quiet close then).
    pub(super) fn all_answered(&self) -> bool {
        matches!(self, Enrollment::Issued { .. })
    }

    /// The nonce a `CertRequest` must bind, when one may come now.
    pub(super) fn nonce(&self) -> Option<[u8; NONCE_LEN]> {
        match self {
            Enrollment::Challenged { nonce } | Enrollment::Issued { nonce } => Some(*nonce),
            _ => None,
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
        State::Enrollment(Enrollment::Challenged { nonce }),
        Output::reply(reply),
    ))
}

/// One `CertRequest`, bound to `nonce`.
pub(super) fn request(
    nonce: [u8; NONCE_LEN],
    csr_der: &[u8],
    auth: &EnrollAuth,
    shared: &mut Shared,
    peer: &str,
) -> Step {
    let ca = the_ca(shared)?;
    let checked = ca.check_csr(csr_der).map_err(ProtocolError::enrollment)?;
    let sid = checked.sid().to_string();
    let view = shared.store.enrollment_view(&sid).map_err(store_failed)?;
    let refused = |source: Refusal| ProtocolError::Course {
        sid: sid.clone(),
        source,
    };
    let (consumes, how, renewal) = match auth {
        EnrollAuth::Renewal {
            cert_der,
            signature,
        } => {
            course::admits_renewal(&view).map_err(refused)?;
            check_renewal(shared, &ca, &sid, &nonce, cert_der, signature, csr_der)?
                .map_err(|e| refused(Refusal::Renewal(e)))?;
            (
                None,
                "renewed by proof of possession of the current key",
                true,
            )
        }
        _ => match course::authorise(&view, &sid, &nonce, csr_der, auth)
            .map_err(|e| internal("enrollment code MAC", e))?
        {
            Ok(Grant::Open) => (None, "open enrollment (no roster)", false),
            Ok(Grant::Code(key)) => (
                Some(key),
                "enrollment code verified; consumed once recorded",
                false,
            ),
            Err(Refusal::WrongCode { key, left }) => {
                // The refusal leaves only once the count is recorded: no
                // more guesses than the lock allows, even on many
                // connections at once.
                let record = Record::WrongCode {
                    sid: sid.clone(),
                    code_key: key,
                };
                let e = refused(Refusal::WrongCode { key, left });
                return Ok((State::Done, e.refusal_recorded(peer, record)));
            }
            Err(r) => return Err(refused(r)),
        },
    };
    let issued = ca
        .issue_checked(&checked)
        .map_err(ProtocolError::enrollment)?;
    let next_nonce = crypto::random::<NONCE_LEN>().map_err(|e| internal("nonce", e))?;
    info!(
        "{peer}: signed certificate serial {} for SID {} (valid until {}): {how}; sent once recorded",
        issued.serial_hex,
        issued.sid,
        time_text(issued.not_after)
    );
    let reply = Message::CertIssued {
        cert_der: issued.der.clone(),
        ca_cert_der: ca.cert_der().to_vec(),
        next_nonce,
    };
    let mut record = cert_record(issued, Origin::Certboard, consumes);
    if let Record::Cert(cert) = &mut record {
        cert.renewal = renewal;
    }
    let out = Output {
        send: vec![reply.encode()],
        persist: Some(record),
        ..Output::default()
    };
    Ok((
        State::Enrollment(Enrollment::Issued { nonce: next_nonce }),
        out,
    ))
}

/// A renewal's proof: her current certificate is ours (path, clientAuth,
/// not expired, the CSR's SID), recorded and not revoked, and her
/// signature over the nonce, that certificate and the new CSR verifies
/// with its key. The outer `Err` is the server's failure.
fn check_renewal(
    shared: &mut Shared,
    ca: &CertificateAuthority,
    sid: &str,
    nonce: &[u8; NONCE_LEN],
    cert_der: &[u8],
    signature: &[u8],
    csr_der: &[u8],
) -> Result<Result<(), RenewalError>, ProtocolError> {
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
    let student = match verifier.verify(sid, cert_der, &[]) {
        Ok(s) => s,
        Err(CertError::Internal(e)) => return Err(internal("certificate check", e.0)),
        Err(e) => return Ok(Err(RenewalError::Certificate(e))),
    };
    let status = shared
        .store
        .cert_status(&student.serial_hex)
        .map_err(|e| internal("certificate status", e))?;
    match status {
        crate::store::CertStatus::Good { .. } => {}
        crate::store::CertStatus::Unknown => {
            return Ok(Err(RenewalError::Certificate(CertError::NotIssued(
                student.serial_hex,
            ))))
        }
        crate::store::CertStatus::Revoked { reason, .. } => {
            return Ok(Err(RenewalError::Certificate(CertError::Revoked {
                serial: student.serial_hex,
                reason,
            })))
        }
    }
    let message = code::renewal_message(nonce, cert_der, csr_der);
    let verified = openssl::sign::Verifier::new(MessageDigest::sha256(), &student.key)
        .and_then(|mut v| {
            v.update(&message)?;
            v.verify(signature)
        })
        // A signature OpenSSL cannot even parse is a bad proof, not our fault.
        .unwrap_or(false);
    Ok(if verified {
        Ok(())
    } else {
        Err(RenewalError::BadSignature)
    })
}
