//! The Blackboard exchange (protocol version 2): her hello, Blackboard's
//! signed offer checked before anything is used, her encrypted report, and
//! the signed receipt checked against what she sent.

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use crate::crypto::{self, SessionKeys, DIGEST_LEN, SESSION_KEY_LEN};
use crate::message::{CipherId, DecodeError, Message, IV_LEN, NONCE_LEN};
use crate::receipt::{self, ReceiptContent};
use crate::verify::{verify_blackboard, BlackboardCertError};

use std::path::PathBuf;

use super::files::Files;
use super::transport::FramedStream;
use super::{unexpected, ClientError};

/// What Blackboard said at the end of a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The receipt id.
    pub receipt_id: u64,
    /// The certificate serial it was accepted under.
    pub serial_hex: String,
    /// The CMS SignedData, DER, as Blackboard sent it (the `.p7m` file).
    pub signed_receipt: Vec<u8>,
    /// What it says, its signature verified.
    pub content: ReceiptContent,
    /// The signed checkpoint its log proof (checked) leads to, if it
    /// carries one.
    pub log_checkpoint: Option<String>,
}

/// What the student trusts Blackboard by: her pinned root and the name
/// Blackboard's certificate must carry.
#[derive(Debug, Clone)]
pub struct BlackboardTrust {
    /// The CUHK root, pinned (--ca-cert, --ca-fingerprint or first use).
    pub root: X509,
    /// The name in Blackboard's subjectAltName (--blackboard-name).
    pub name: String,
}

/// Checks a SessionOffer before anything in it is used: Blackboard's
/// certificate chains to her root, is valid now, is a server certificate
/// for `trust.name`, and its key signed the transcript of this very
/// exchange. Returns the transcript's hash.
pub fn verify_offer(
    hello: &[u8],
    server_nonce: &[u8; NONCE_LEN],
    wrapped_key: &[u8],
    bb_chain: &[Vec<u8>],
    signature: &[u8],
    trust: &BlackboardTrust,
) -> Result<[u8; DIGEST_LEN], ClientError> {
    let cert = verify_blackboard(&trust.root, bb_chain, Some(&trust.name), None)
        .map_err(ClientError::NotBlackboard)?;
    let bb_cert = bb_chain
        .first()
        .ok_or(ClientError::NotBlackboard(BlackboardCertError::Malformed))?;
    let t = if hello.first() == Some(&0x40) {
        // A version 3 hello (SubmitOpen3): its own transcript label.
        crypto::transcript_v3(hello, server_nonce, wrapped_key, bb_cert)
    } else {
        crypto::transcript(hello, server_nonce, wrapped_key, bb_cert)
    };
    let key = cert.public_key()?;
    let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), &key)?;
    // A malformed signature is as false as a wrong one.
    if !v.verify_oneshot(signature, &t).unwrap_or(false) {
        return Err(ClientError::BadOfferSignature);
    }
    Ok(openssl::sha::sha256(&t))
}

/// Steps 3–6 on an open Blackboard connection (protocol version 2): her
/// hello with a fresh nonce; Blackboard's signed offer, verified before
/// anything is decrypted or sent; her report; the signed receipt,
/// verified against what she sent.
#[allow(clippy::too_many_arguments)]
pub fn submit(
    conn: &mut FramedStream,
    sid: &str,
    cert_der: &[u8],
    key: &PKey<Private>,
    cipher: CipherId,
    report: &str,
    trust: &BlackboardTrust,
    progress: &mut dyn FnMut(&str),
) -> Result<Receipt, ClientError> {
    let mut always = || true;
    let step = Step {
        cipher,
        report,
        trust,
        send_report: &mut always,
    };
    // `always` never holds the report back.
    submit_unless(conn, sid, cert_der, key, step, progress)?
        .ok_or_else(|| ClientError::Protocol("the report was held back".into()))
}

/// What the Blackboard exchange sends and trusts, and whether the report
/// goes once Blackboard has proved itself.
pub(super) struct Step<'a> {
    pub(super) cipher: CipherId,
    pub(super) report: &'a str,
    pub(super) trust: &'a BlackboardTrust,
    /// Asked after Blackboard's offer is verified and before the report
    /// leaves: `false` ends the exchange there, nothing recorded. Asked
    /// that late so that everything Blackboard would refuse at the hello
    /// (her certificate, the window) is still said.
    pub(super) send_report: &'a mut dyn FnMut() -> bool,
}

/// Blackboard's answer to a hello (either version), checked: a
/// `SessionOffer` whose certificate chains to the pinned root and whose
/// signature covers this exchange. Returns the wrapped session key and
/// the transcript hash.
pub fn checked_offer(
    hello: &[u8],
    offer: Message,
    trust: &BlackboardTrust,
) -> Result<(Vec<u8>, [u8; DIGEST_LEN]), ClientError> {
    let Message::SessionOffer {
        server_nonce,
        wrapped_key,
        bb_chain,
        signature,
    } = offer
    else {
        return Err(unexpected("SessionOffer", &offer));
    };
    let th = verify_offer(
        hello,
        &server_nonce,
        &wrapped_key,
        &bb_chain,
        &signature,
        trust,
    )?;
    Ok((wrapped_key, th))
}

/// The session key Blackboard wrapped to her public key (RSA-OAEP).
pub fn session_key(
    key: &PKey<Private>,
    wrapped_key: &[u8],
) -> Result<[u8; SESSION_KEY_LEN], ClientError> {
    crypto::unwrap_key(key, wrapped_key)?
        .try_into()
        .map_err(|_| ClientError::Protocol("session key is not 32 bytes".into()))
}

/// [`submit`], but the report is sent only if `step.send_report` says so;
/// `None` when it was held back.
pub(super) fn submit_unless(
    conn: &mut FramedStream,
    sid: &str,
    cert_der: &[u8],
    key: &PKey<Private>,
    step: Step<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<Receipt>, ClientError> {
    let Step {
        cipher,
        report,
        trust,
        send_report,
    } = step;
    let hello = Message::SubmitOpen {
        sid: sid.to_string(),
        cert_der: cert_der.to_vec(),
        chain: Vec::new(),
        client_nonce: crypto::random::<NONCE_LEN>()?,
    }
    .encode();
    conn.send_frame(&hello)?;
    progress("step 3: sent SID, certificate and a fresh nonce to Blackboard");
    let offer = conn.recv().map_err(|e| match e {
        // An older server's SessionKey, recognised by its type byte.
        ClientError::Decode(DecodeError::Version1(_)) => ClientError::Protocol(
            "Blackboard answered in protocol version 1, which proves nothing about who \
             answered; refusing to submit (the server must be upgraded)"
                .into(),
        ),
        e => e,
    })?;
    let (wrapped_key, th) = checked_offer(&hello, offer, trust)?;
    progress(&format!(
        "step 4: Blackboard proved itself ({:?}, certificate from the pinned root, signature \
         over this exchange) and sent a session key (RSA-OAEP)",
        trust.name
    ));
    if !send_report() {
        return Ok(None);
    }
    let keys = SessionKeys::derive_v2(&session_key(key, &wrapped_key)?, &th)?;
    progress("step 5: session key decrypted with her private key");
    let iv = crypto::random::<IV_LEN>()?;
    let ciphertext = keys.apply_cipher(cipher, &iv, report.as_bytes())?;
    let mac = keys.report_mac_v2(&th, cipher, &iv, &ciphertext)?;
    conn.send(&Message::Report {
        cipher,
        iv,
        ciphertext,
        mac,
    })?;
    progress(&format!(
        "step 6: report sent ({} + HMAC-SHA256, {} bytes)",
        cipher.name(),
        report.len()
    ));
    let (receipt_id, serial_hex, signed_receipt) = match conn.recv()? {
        Message::SignedReceipt {
            receipt_id,
            serial_hex,
            signed_receipt,
        } => (receipt_id, serial_hex, signed_receipt),
        other => return Err(unexpected("SignedReceipt", &other)),
    };
    let content = check_receipt(
        &signed_receipt,
        trust,
        &Expected {
            sid,
            serial: &serial_hex,
            receipt: Some(receipt_id),
            report: Some(report.as_bytes()),
            transcript: Some(&th),
        },
    );
    // Blackboard has recorded the report by now: what it sent is kept
    // even when it does not hold up, and the error says so.
    let content = match content {
        Ok(c) => c,
        Err(ClientError::Receipt(source)) => {
            return Err(ClientError::UnverifiedReceipt {
                receipt_id,
                signed_receipt,
                source,
                saved: None,
            })
        }
        Err(e) => return Err(e),
    };
    let log_checkpoint = super::logcheck::check_inclusion(&content, report.as_bytes())
        .ok()
        .flatten();
    Ok(Some(Receipt {
        receipt_id,
        serial_hex,
        signed_receipt,
        content,
        log_checkpoint,
    }))
}

/// What a receipt must say.
#[derive(Debug)]
pub struct Expected<'a> {
    /// Her SID.
    pub sid: &'a str,
    /// Her certificate's serial (hex; compared without regard to case).
    pub serial: &'a str,
    /// The receipt id, when known.
    pub receipt: Option<u64>,
    /// The report text's exact bytes, when at hand.
    pub report: Option<&'a [u8]>,
    /// The transcript hash of the session, in the session.
    pub transcript: Option<&'a [u8; DIGEST_LEN]>,
}

/// Verifies a signed receipt (signature, signer a Blackboard certificate
/// for `trust.name` from `trust.root`) and that it says what is expected.
pub fn check_receipt(
    der: &[u8],
    trust: &BlackboardTrust,
    want: &Expected<'_>,
) -> Result<ReceiptContent, ClientError> {
    let v = receipt::verify_receipt(der, &trust.root, Some(&trust.name))
        .map_err(ClientError::Receipt)?;
    let c = v.content;
    let check = |field, found: &str, expected: &str| {
        receipt::expect_field(field, found, expected).map_err(ClientError::Receipt)
    };
    check("sid", &c.sid, want.sid)?;
    check("serial", &c.serial, &want.serial.to_ascii_uppercase())?;
    if let Some(id) = want.receipt {
        check("receipt", &c.receipt, &id.to_string())?;
    }
    if let Some(report) = want.report {
        check(
            "report_sha256",
            &c.report_sha256,
            &crypto::sha256_hex(report),
        )?;
    }
    if let Some(th) = want.transcript {
        let hex: String = th.iter().map(|b| format!("{b:02x}")).collect();
        check("transcript_sha256", &c.transcript_sha256, &hex)?;
    }
    if let Some(report) = want.report {
        super::logcheck::check_inclusion(&c, report)
            .map_err(|e| ClientError::Receipt(receipt::ReceiptError::Content(e.to_string())))?;
    }
    Ok(c)
}

/// A receipt she holds, verified under `trust`, that shows Blackboard
/// already accepted exactly `report` from her: its file and content.
/// A receipt that does not verify proves nothing and is passed over.
pub(super) fn accepted_before(
    files: &Files,
    trust: &BlackboardTrust,
    sid: &str,
    report: &[u8],
) -> Option<(PathBuf, ReceiptContent)> {
    let want = crypto::sha256_hex(report);
    files.receipt_files().into_iter().find_map(|path| {
        let der = std::fs::read(&path).ok()?;
        let v = receipt::verify_receipt(&der, &trust.root, Some(&trust.name)).ok()?;
        (v.content.sid == sid && v.content.report_sha256 == want).then_some((path, v.content))
    })
}
