//! Blackboard's session in our protocol: the student's certificate in, a
//! fresh session key out (RSA-OAEP to her key), then her encrypted and
//! MAC'd report in, and a receipt out once the report is recorded. The
//! checks any submission goes through are in `submission`.

use log::info;

use crate::crypto::{self, SessionKeys, SESSION_KEY_LEN};
use crate::message::{CipherId, Message, IV_LEN, NONCE_LEN};
use crate::store::{Origin, Record};

use super::error::{Internal, ProtocolError};
use super::submission::{check_certificate, check_mac, check_report_text, PendingReport};
use super::submission::{ReportError, MAX_REPORT};
use super::{Output, Shared, State, Step};

/// Where a Blackboard connection is.
#[derive(Debug)]
pub(super) enum Blackboard {
    /// Waiting for the student's hello.
    AwaitHello,
    /// Session key sent, waiting for the report.
    AwaitReport(Box<PendingReport<ReportKeys>>),
}

/// The keys of one submission: the nonce sent and the keys derived.
pub(super) struct ReportKeys {
    nonce: [u8; NONCE_LEN],
    keys: SessionKeys,
}

fn internal(what: &'static str, e: openssl::error::ErrorStack) -> ProtocolError {
    ProtocolError::Internal(Internal::new(what, e))
}

/// Checks the certificate and sends the session key.
pub(super) fn hello(
    sid: &str,
    cert_der: &[u8],
    chain: &[Vec<u8>],
    shared: &mut Shared,
    peer: &str,
) -> Step {
    let student = check_certificate(shared, sid, cert_der, chain, Origin::Certboard)
        .map_err(|e| ProtocolError::certificate(sid, e))?;
    let setup = (|| {
        let session_key = crypto::random::<SESSION_KEY_LEN>()?;
        let nonce = crypto::random::<NONCE_LEN>()?;
        let wrapped_key = crypto::wrap_key(&student.key, &session_key)?;
        let keys = SessionKeys::derive(&session_key, &nonce)?;
        Ok::<_, openssl::error::ErrorStack>((nonce, wrapped_key, keys))
    })();
    let (nonce, wrapped_key, keys) = setup.map_err(|e| internal("session key", e))?;
    info!(
        "{peer}: certificate serial {} verified for SID {}; session key sent",
        student.serial_hex, student.sid
    );
    Ok((
        State::Blackboard(Blackboard::AwaitReport(Box::new(PendingReport::new(
            student,
            ReportKeys { nonce, keys },
        )))),
        Output::reply(Message::SessionKey { nonce, wrapped_key }),
    ))
}

/// Checks the report (MAC first, before anything is decrypted) and, if it
/// holds, answers with a receipt once it is recorded.
pub(super) fn report(
    p: PendingReport<ReportKeys>,
    cipher: CipherId,
    iv: &[u8; IV_LEN],
    ciphertext: &[u8],
    mac: &[u8],
    peer: &str,
) -> Step {
    let refused = |source| ProtocolError::Report {
        sid: p.sid.clone(),
        source,
    };
    let k = &p.keys;
    let expected = k
        .keys
        .report_mac(&k.nonce, &p.sid, cipher, iv, ciphertext)
        .map_err(|e| internal("MAC", e))?;
    check_mac(&expected, mac).map_err(refused)?;
    if ciphertext.len() > MAX_REPORT {
        return Err(refused(ReportError::TooLarge));
    }
    let plain = k
        .keys
        .apply_cipher(cipher, iv, ciphertext)
        .map_err(|e| internal("decryption", e))?;
    let text = String::from_utf8(plain).map_err(|_| refused(ReportError::NotUtf8))?;
    check_report_text(&text).map_err(|e| refused(ReportError::Text(e)))?;
    let record = p
        .accept(text, Origin::Certboard)
        .map_err(|e| internal("receipt id", e))?;
    info!(
        "{peer}: report from SID {} accepted ({} bytes, {}), receipt {}; acknowledged once recorded",
        record.sid,
        record.text.len(),
        cipher.name(),
        record.receipt_id
    );
    let reply = Message::Receipt {
        receipt_id: record.receipt_id,
        serial_hex: record.serial_hex.clone(),
    };
    Ok((
        State::Done,
        Output {
            send: vec![reply.encode()],
            persist: Some(Record::Report(record)),
            close: true,
            ..Output::default()
        },
    ))
}
