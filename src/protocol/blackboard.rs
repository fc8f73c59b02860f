//! Blackboard's session in our protocol (version 2): the student's
//! certificate and nonce in (`SubmitOpen`); a fresh session key out
//! (RSA-OAEP to her key) in a `SessionOffer` with Blackboard's certificate
//! and its signature over the transcript, the keys coming from the
//! transcript's hash; then her encrypted and MAC'd report in, and a CMS
//! SignedData receipt out, made only once the report is durable
//! ([`receipt_after_commit`]). The checks any submission goes through are
//! in `submission`. Version 1's `SubmitHello` is refused with code 10
//! before it reaches this module.

use std::sync::Arc;

use log::{info, warn};

use crate::ca::BlackboardIdentity;
use crate::crypto::{self, SessionKeys, DIGEST_LEN, SESSION_KEY_LEN};
use crate::message::{CipherId, ErrorCode, Message, IV_LEN, NONCE_LEN};
use crate::receipt::{ReceiptContent, RECEIPT_VERSION};
use crate::store::{Origin, Record, ReportRecord};
use crate::time::{now_unix, rfc3339};

use super::error::{Internal, ProtocolError};
use super::submission::{
    check_certificate, check_mac, check_report_text, check_still_good, CertCheckError,
    PendingReport,
};
use super::submission::{ReportError, MAX_REPORT};
use super::{Output, Shared, State, Step};

/// Where a Blackboard connection is.
#[derive(Debug)]
pub(super) enum Blackboard {
    /// Waiting for the student's hello.
    AwaitHello,
    /// Signed offer sent, waiting for the report.
    AwaitReport(Box<PendingReport<OfferKeys>>),
    /// The report is on its way to the store; the signed receipt is made
    /// once it is durable.
    Recording(Box<ReceiptToSign>),
}

/// The keys of one submission, and the identity that signed its
/// transcript (the receipt is signed with the same one, even if the
/// certificate is renewed meanwhile).
pub(super) struct OfferKeys {
    th: [u8; DIGEST_LEN],
    keys: SessionKeys,
    identity: Arc<BlackboardIdentity>,
}

/// A recorded report's receipt, to sign once the record is durable.
#[derive(Debug)]
pub(super) struct ReceiptToSign {
    content: ReceiptContent,
    receipt_id: u64,
    serial_hex: String,
    identity: Arc<BlackboardIdentity>,
}

fn internal(what: &'static str, e: openssl::error::ErrorStack) -> ProtocolError {
    ProtocolError::Internal(Internal::new(what, e))
}

/// Checks the certificate, then sends the session key with Blackboard's certificate and its signature over the
/// transcript. `hello` is the SubmitOpen payload as received.
pub(super) fn open(
    hello: &[u8],
    sid: &str,
    cert_der: &[u8],
    chain: &[Vec<u8>],
    shared: &mut Shared,
    peer: &str,
) -> Step {
    let student = check_certificate(shared, sid, cert_der, chain, Origin::Certboard)
        .map_err(|e| ProtocolError::certificate(sid, e))?;
    // Outside the submission window nothing is sent back but the refusal.
    shared
        .window
        .check(now_unix())
        .map_err(ProtocolError::Closed)?;
    let identity = shared
        .blackboard
        .as_ref()
        .map(|keys| keys.current(shared.ca.as_deref()))
        .ok_or_else(|| ProtocolError::certificate(sid, CertCheckError::NotBlackboard))?;
    let setup = (|| {
        let session_key = crypto::random::<SESSION_KEY_LEN>()?;
        let server_nonce = crypto::random::<NONCE_LEN>()?;
        let wrapped_key = crypto::wrap_key(&student.key, &session_key)?;
        let t = crypto::transcript(hello, &server_nonce, &wrapped_key, identity.cert_der());
        let th = openssl::sha::sha256(&t);
        // The transcript's hash is already there: signed as it is.
        let signature = identity.sign_digest(&th)?;
        let keys = SessionKeys::derive_v2(&session_key, &th)?;
        Ok::<_, openssl::error::ErrorStack>((server_nonce, wrapped_key, th, signature, keys))
    })();
    let (server_nonce, wrapped_key, th, signature, keys) =
        setup.map_err(|e| internal("session offer", e))?;
    info!(
        "{peer}: certificate serial {} verified for SID {}; signed session offer sent",
        student.serial_hex, student.sid
    );
    let reply = Message::SessionOffer {
        server_nonce,
        wrapped_key,
        bb_chain: vec![identity.cert_der().to_vec()],
        signature,
    };
    Ok((
        State::Blackboard(Blackboard::AwaitReport(Box::new(PendingReport::new(
            student,
            OfferKeys { th, keys, identity },
        )))),
        Output::reply(reply),
    ))
}

/// Decrypts a report whose MAC has been checked, and checks its text.
fn open_report(
    keys: &SessionKeys,
    cipher: CipherId,
    iv: &[u8; IV_LEN],
    ciphertext: &[u8],
) -> Result<String, Result<ReportError, ProtocolError>> {
    if ciphertext.len() > MAX_REPORT {
        return Err(Ok(ReportError::TooLarge));
    }
    let plain = keys
        .apply_cipher(cipher, iv, ciphertext)
        .map_err(|e| Err(internal("decryption", e)))?;
    let text = String::from_utf8(plain).map_err(|_| Ok(ReportError::NotUtf8))?;
    check_report_text(&text).map_err(|e| Ok(ReportError::Text(e)))?;
    Ok(text)
}

/// Checks the report (MAC first, in constant time, before
/// anything is decrypted), re-checks that her certificate is not revoked
/// meanwhile, and hands the record to the store; the signed receipt
/// follows once it is durable ([`receipt_after_commit`]).
pub(super) fn report(
    p: PendingReport<OfferKeys>,
    cipher: CipherId,
    iv: &[u8; IV_LEN],
    ciphertext: &[u8],
    mac: &[u8],
    shared: &mut Shared,
    peer: &str,
) -> Step {
    let refused = |source| ProtocolError::Report {
        sid: p.sid.clone(),
        source,
    };
    let k = &p.keys;
    let expected = k
        .keys
        .report_mac_v2(&k.th, cipher, iv, ciphertext)
        .map_err(|e| internal("MAC", e))?;
    check_mac(&expected, mac).map_err(refused)?;
    // Revoked while she was typing (one store lookup), or the window closed
    // since the hello: refused before anything is decrypted or recorded.
    check_still_good(shared, &p).map_err(|e| ProtocolError::certificate(&p.sid, e))?;
    shared
        .window
        .check(now_unix())
        .map_err(ProtocolError::Closed)?;
    let text = open_report(&k.keys, cipher, iv, ciphertext).map_err(|e| match e {
        Ok(source) => refused(source),
        Err(e) => e,
    })?;
    let th = p.keys.th;
    let identity = Arc::clone(&p.keys.identity);
    let record = p
        .accept(text, Origin::Certboard)
        .map_err(|e| internal("receipt id", e))?;
    info!(
        "{peer}: report from SID {} accepted ({} bytes, {}), receipt {}; signed receipt once recorded",
        record.sid,
        record.text.len(),
        cipher.name(),
        record.receipt_id
    );
    let to_sign = ReceiptToSign {
        content: receipt_content(&record, &th),
        receipt_id: record.receipt_id,
        serial_hex: record.serial_hex.clone(),
        identity,
    };
    Ok((
        State::Blackboard(Blackboard::Recording(Box::new(to_sign))),
        Output {
            persist: Some(Record::Report(record)),
            ..Output::default()
        },
    ))
}

/// The receipt's JSON fields for a record.
fn receipt_content(record: &ReportRecord, th: &[u8; DIGEST_LEN]) -> ReceiptContent {
    ReceiptContent {
        sid: record.sid.clone(),
        serial: record.serial_hex.clone(),
        receipt: record.receipt_id.to_string(),
        received_at: rfc3339(record.received_at),
        report_sha256: record.sha256_hex(),
        transcript_sha256: th.iter().map(|b| format!("{b:02x}")).collect(),
        version: RECEIPT_VERSION,
    }
}

/// Signs the receipt of a report now durable, and ends the exchange.
pub(super) fn receipt_after_commit(r: ReceiptToSign, peer: &str) -> Output {
    match r.identity.sign_receipt(&r.content.to_json()) {
        Ok(signed_receipt) => {
            info!("{peer}: receipt {} signed and sent", r.receipt_id);
            Output::final_frame(
                Message::SignedReceipt {
                    receipt_id: r.receipt_id,
                    serial_hex: r.serial_hex,
                    signed_receipt,
                }
                .encode(),
            )
        }
        Err(e) => {
            warn!("{peer}: signing receipt {}: {e}", r.receipt_id);
            let reason = format!(
                "internal error: the report is recorded under receipt {}, but the signed receipt \
                 could not be made",
                r.receipt_id
            );
            Output::final_frame(Message::error(ErrorCode::Internal, reason).encode())
        }
    }
}
