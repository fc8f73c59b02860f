//! Blackboard's session in our protocol (version 2): the student's
//! certificate and nonce in (`SubmitOpen`); a fresh session key out
//! (RSA-OAEP to her key) in a `SessionOffer` with Blackboard's certificate
//! and its signature over the transcript, the keys coming from the
//! transcript's hash; then her encrypted and MAC'd report in, and a CMS
//! SignedData receipt out, made only once the report is durable
//! ([`Blackboard::on_committed`]). The checks any submission goes through are
//! in `submission`. Version 1's `SubmitHello` is refused with code 10
//! before it reaches this module.

use std::sync::Arc;

use log::info;

mod status;
mod upload;

pub use upload::{
    UploadError, UploadPolicy, UploadsInProgress, DEFAULT_MAX_SUBMISSION, MAX_UPLOADS_PER_SID,
};

use crate::assignment::{AdmitError, Refused, Timing};
use crate::ca::{BlackboardIdentity, Serial};
use crate::crypto::{self, SessionKeys, DIGEST_LEN, SESSION_KEY_LEN};
use crate::message::{CipherId, Message, IV_LEN, NONCE_LEN};
use crate::receipt::{ReceiptContent, RECEIPT_VERSION};
use crate::store::tlog::Logged;
use crate::store::{Origin, Record, ReportRecord, DEFAULT_ASSIGNMENT};
use crate::time::{now_unix, rfc3339};

use super::error::{Internal, ProtocolError};
use super::submission::{
    check_certificate, check_mac, check_report_text, check_still_good, CertCheckError,
    PendingReport,
};
use super::submission::{ReportError, MAX_REPORT};
use super::{other_message, After, Expired, Output, Shared, State, Step};

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
    /// Version 3: signed offer sent, waiting for the file's announcement.
    AwaitAnnounce(Box<PendingReport<OfferKeys>>),
    /// Version 3: waiting for the next chunk or the end. A chunk on its
    /// way to the store does not hold the next: nothing is answered for
    /// it, and the file is recorded only once every chunk before its end
    /// is written (the reactor's window of chunks, and its batches in
    /// order).
    Receiving(Box<upload::Receiving>),
    /// Version 3, intent status: signed offer sent, waiting for her
    /// `StatusRequest`.
    AwaitStatusRequest(Box<PendingReport<OfferKeys>>),
}

impl Blackboard {
    /// A new Blackboard connection, waiting for `SubmitOpen`.
    pub(super) fn new() -> Blackboard {
        Blackboard::AwaitHello
    }

    /// Whether the report is owed now (the offer is out).
    pub(super) fn awaits_record(&self) -> bool {
        matches!(self, Blackboard::AwaitReport(_))
    }

    /// Whether no frame has come yet (only then may a legacy command).
    pub(super) fn is_fresh(&self) -> bool {
        matches!(self, Blackboard::AwaitHello)
    }

    /// Takes the message this state is waiting for: `SubmitOpen` first
    /// (`payload` is its bytes as received, which the offer signs), then
    /// the `Report`.
    pub(super) fn handle(
        self,
        msg: Message,
        payload: &[u8],
        shared: &mut Shared,
        peer: &str,
    ) -> Step {
        match (self, msg) {
            (
                Blackboard::AwaitHello,
                Message::SubmitOpen {
                    sid,
                    cert_der,
                    chain,
                    ..
                },
            ) => {
                upload::refuse_v2(shared, &sid)?;
                open(payload, &sid, &cert_der, &chain, shared, peer)
            }
            (
                Blackboard::AwaitHello,
                Message::SubmitOpen3 {
                    version,
                    sid,
                    cert_der,
                    chain,
                    intent,
                    ..
                },
            ) => upload::open(
                payload, version, &sid, &cert_der, &chain, intent, shared, peer,
            ),
            (Blackboard::AwaitAnnounce(p), msg @ Message::FileAnnounce { .. }) => {
                upload::announce(*p, msg, payload, shared, peer)
            }
            (
                Blackboard::Receiving(r),
                Message::Chunk {
                    seq,
                    ciphertext,
                    mac,
                },
            ) => upload::chunk(*r, seq, ciphertext, &mac, peer),
            (Blackboard::Receiving(r), Message::UploadDone { chunks, mac }) => {
                upload::done(*r, chunks, &mac, shared, peer)
            }
            (Blackboard::AwaitStatusRequest(p), Message::StatusRequest { mac }) => {
                status::request(*p, &mac, shared, peer)
            }
            (
                Blackboard::AwaitReport(p),
                Message::Report {
                    cipher,
                    iv,
                    ciphertext,
                    mac,
                },
            ) => report(*p, cipher, &iv, &ciphertext, &mac, shared, peer),
            (state, msg) => other_message(msg, state.expecting(), peer),
        }
    }

    fn expecting(&self) -> &'static str {
        match self {
            Blackboard::AwaitHello => "waiting for a submission hello",
            Blackboard::AwaitReport(_) => "waiting for the report",
            Blackboard::Recording(_) => "recording the report",
            Blackboard::AwaitAnnounce(_) => "waiting for the file's announcement",
            Blackboard::Receiving(_) => "waiting for the next chunk or the upload's end",
            Blackboard::AwaitStatusRequest(_) => "waiting for the status request",
        }
    }

    /// The upload whose chunks may be staged, while one is under way.
    pub(super) fn staged_upload(&self) -> Option<i64> {
        match self {
            Blackboard::Receiving(r) => Some(r.upload_id()),
            _ => None,
        }
    }

    /// Bytes and frames an upload under way may take beyond the ordinary
    /// per-connection limits.
    pub(super) fn upload_allowance(&self) -> Option<(u64, u32)> {
        match self {
            Blackboard::Receiving(r) => Some(r.allowance()),
            _ => None,
        }
    }

    /// The report is durable: its receipt is signed now, and the exchange
    /// ends. Nothing for a state that recorded nothing.
    pub(super) fn on_committed(
        self,
        shared: &mut Shared,
        peer: &str,
        logged: Option<Logged>,
    ) -> (State, Output) {
        match self {
            Blackboard::Recording(r) => {
                (State::Done, receipt_after_commit(*r, shared, peer, logged))
            }
            state @ (Blackboard::AwaitHello
            | Blackboard::AwaitReport(_)
            | Blackboard::AwaitAnnounce(_)
            | Blackboard::AwaitStatusRequest(_)
            | Blackboard::Receiving(_)) => (State::Blackboard(state), Output::default()),
        }
    }

    /// A time limit reached: every state owes the student an answer.
    pub(super) fn on_expiry(&self, expired: Expired) -> Option<ProtocolError> {
        Some(ProtocolError::Expired(expired))
    }
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
    /// The log's name of the record (`report:` or `upload:`), to find its
    /// entry for the receipt's proof.
    log_key: String,
    serial: Serial,
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
    // Outside the assignment's times nothing is sent back but the refusal.
    admit(shared, &student.sid)?;
    let (reply, keys) = signed_offer(shared, hello, &student, OfferVersion::V2)?;
    info!(
        "{peer}: certificate serial {} verified for SID {}; signed session offer sent",
        student.serial, student.sid
    );
    Ok((
        State::Blackboard(Blackboard::AwaitReport(Box::new(PendingReport::new(
            student, keys,
        )))),
        Output::reply(reply),
    ))
}

/// Which version's transcript label and key derivation an offer uses.
#[derive(Debug, Clone, Copy)]
pub(super) enum OfferVersion {
    V2,
    V3,
}

/// The signed `SessionOffer` for `student` (her `hello` as received) and
/// the keys it sets up: a fresh session key wrapped to her key, a fresh
/// nonce, Blackboard's signature over the transcript's hash. One place for
/// both versions, which differ only in their labels.
pub(super) fn signed_offer(
    shared: &Shared,
    hello: &[u8],
    student: &crate::verify::Student,
    version: OfferVersion,
) -> Result<(Message, OfferKeys), ProtocolError> {
    let identity = shared
        .blackboard
        .as_ref()
        .map(|keys| keys.current(shared.ca.as_deref()))
        .ok_or_else(|| ProtocolError::certificate(&student.sid, CertCheckError::NotBlackboard))?;
    let setup = (|| {
        let session_key = crypto::random::<SESSION_KEY_LEN>()?;
        let server_nonce = crypto::random::<NONCE_LEN>()?;
        let wrapped_key = crypto::wrap_key(&student.key, &session_key)?;
        let bb_cert = identity.cert_der();
        let t = match version {
            OfferVersion::V2 => crypto::transcript(hello, &server_nonce, &wrapped_key, bb_cert),
            OfferVersion::V3 => crypto::transcript_v3(hello, &server_nonce, &wrapped_key, bb_cert),
        };
        let th = openssl::sha::sha256(&t);
        // The transcript's hash is already there: signed as it is.
        let signature = identity.sign_digest(&th)?;
        let keys = match version {
            OfferVersion::V2 => SessionKeys::derive_v2(&session_key, &th)?,
            OfferVersion::V3 => SessionKeys::derive_v3(&session_key, &th)?,
        };
        Ok::<_, openssl::error::ErrorStack>((server_nonce, wrapped_key, th, signature, keys))
    })();
    let (server_nonce, wrapped_key, th, signature, keys) =
        setup.map_err(|e| internal("session offer", e))?;
    let reply = Message::SessionOffer {
        server_nonce,
        wrapped_key,
        bb_chain: vec![identity.cert_der().to_vec()],
        signature,
    };
    Ok((reply, OfferKeys { th, keys, identity }))
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
/// follows once it is durable ([`Blackboard::on_committed`]).
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
    // Read again: the due time may have moved (or passed) since the hello.
    let timing = admit(shared, &p.sid)?;
    let text = open_report(&k.keys, cipher, iv, ciphertext).map_err(|e| match e {
        Ok(source) => refused(source),
        Err(e) => e,
    })?;
    let th = p.keys.th;
    let identity = Arc::clone(&p.keys.identity);
    let mut record = p
        .accept(text, Origin::Certboard)
        .map_err(|e| internal("receipt id", e))?;
    record.late_by = timing.late_by();
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
        log_key: crate::store::tlog::report_record_key(record.receipt_id),
        serial: record.serial.clone(),
        identity,
    };
    Ok((
        State::Blackboard(Blackboard::Recording(Box::new(to_sign))),
        Output {
            then: After::Persist(Record::Report(record)),
            ..Output::default()
        },
    ))
}

/// The receipt's JSON fields for a record.
fn receipt_content(record: &ReportRecord, th: &[u8; DIGEST_LEN]) -> ReceiptContent {
    ReceiptContent {
        sid: record.sid.clone(),
        serial: record.serial.to_string(),
        receipt: record.receipt_id.to_string(),
        received_at: rfc3339(record.received_at),
        report_sha256: record.sha256_hex(),
        transcript_sha256: crypto::hex_lower(th),
        version: RECEIPT_VERSION,
        assignment: Some(record.assignment.clone()),
        late: Some(record.late_by.is_some()),
        late_seconds: record.late_by,
        log_index: None,
        log_proof: None,
        file: None,
    }
}

/// Decides a version 2 submission by `sid` now: it goes to the default
/// assignment, whose times (and her extension) are read from the store
/// per submission, so an `assignment edit` holds without a restart.
fn admit(shared: &mut Shared, sid: &str) -> Result<Timing, ProtocolError> {
    super::submission::check_on_roster(shared, sid)?;
    match crate::assignment::admit(
        &mut *shared.store,
        &shared.window,
        sid,
        DEFAULT_ASSIGNMENT,
        now_unix(),
    ) {
        Ok(t) => Ok(t),
        Err(AdmitError::Refused(Refused::Window(e))) => Err(ProtocolError::Closed(e)),
        Err(AdmitError::Refused(e)) => Err(ProtocolError::Deadline(e)),
        Err(AdmitError::Store(e)) => Err(ProtocolError::store("reading the assignment", e)),
    }
}

/// The proof that the record logged under `key` (a report's or an
/// upload's, [`ReceiptToSign::log_key`]) is in the log, against a
/// checkpoint that already holds it; `None` (logged) when this process
/// does not hold the log key or the store does not answer: the receipt
/// goes out without it rather than not at all. Where the entry is and the
/// tree its commit left come from the commit (`logged`) when it said: the
/// proof then reads only its hashes, in one read transaction.
fn log_proof(
    shared: &mut Shared,
    key: &str,
    receipt_id: u64,
    peer: &str,
    logged: Option<Logged>,
) -> Option<(u64, String)> {
    use crate::tlog::signer::ProofError;
    let signer = shared.log.clone()?;
    let store = &mut shared.store;
    let made = (|| -> Result<Option<(u64, String)>, ProofError<crate::store::StoreError>> {
        let (index, head) = match logged {
            Some(Logged {
                index,
                head,
                path: Some(path),
            }) => {
                // Made by the commit: nothing to read back.
                let proof = signer
                    .prove_path(index, head.size, head.root, path)
                    .map_err(ProofError::Sign)?;
                return Ok(Some((index, proof.encode())));
            }
            Some(l) => (l.index, l.head),
            None => {
                let Some(index) = store.log_index_of(key).map_err(ProofError::Read)? else {
                    return Ok(None);
                };
                (index, store.log_head().map_err(ProofError::Read)?)
            }
        };
        let proof = signer.prove(
            index,
            head.size,
            head.root,
            |ids: &[crate::tlog::NodeId]| store.log_nodes(ids),
        )?;
        Ok(Some((index, proof.encode())))
    })();
    match made {
        Ok(p) => p,
        Err(e) => {
            log::warn!("{peer}: receipt {receipt_id} goes out without its log proof: {e}");
            None
        }
    }
}

/// Signs the receipt of a report now durable, and ends the exchange.
fn receipt_after_commit(
    mut r: ReceiptToSign,
    shared: &mut Shared,
    peer: &str,
    logged: Option<Logged>,
) -> Output {
    if let Some((index, proof)) = log_proof(shared, &r.log_key, r.receipt_id, peer, logged) {
        r.content.log_index = Some(index);
        r.content.log_proof = Some(proof);
    }
    match r.identity.sign_receipt(&r.content.to_json()) {
        Ok(signed_receipt) => {
            info!("{peer}: receipt {} signed and sent", r.receipt_id);
            Output::final_frame(
                Message::SignedReceipt {
                    receipt_id: r.receipt_id,
                    serial_hex: r.serial.to_string(),
                    signed_receipt,
                }
                .encode(),
            )
        }
        Err(source) => ProtocolError::ReceiptNotSigned {
            receipt_id: r.receipt_id,
            source,
        }
        .refusal(peer),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{After, ServiceKind, Shared, MAX_CERT_DER};
    use crate::client::{make_key, KeyType};
    use crate::message::{ErrorCode, Message};

    /// A certificate over the cap is refused by its size alone: these bytes
    /// are not DER, yet the reason is the size, not the parse.
    #[test]
    fn an_oversized_certificate_is_refused_by_size_before_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), None);
        let bb = |sh: &mut Shared| start(ServiceKind::Blackboard, sh);
        let run = drive(
            bb(&mut sh),
            &[hello(SID, &[0xff; MAX_CERT_DER + 1])],
            &mut sh,
        );
        let (code, reason) = refusal(&run);
        assert_eq!(code, ErrorCode::Limit);
        assert!(reason.contains("8193 bytes; at most 8192"), "{reason}");
        // At the cap, the certificate is parsed (and this one is not DER).
        let run = drive(bb(&mut sh), &[hello(SID, &[0xff; MAX_CERT_DER])], &mut sh);
        let (code, reason) = refusal(&run);
        assert_eq!(code, ErrorCode::BadCertificate);
        assert!(reason.contains("not valid DER"), "{reason}");
        // A chain certificate over the cap, too.
        let chained = Message::SubmitOpen {
            sid: SID.into(),
            cert_der: vec![0xff; 10],
            chain: vec![vec![0; MAX_CERT_DER + 7]],
            client_nonce: [0; 32],
        };
        let run = drive(bb(&mut sh), &[chained.encode()], &mut sh);
        let (code, reason) = refusal(&run);
        assert_eq!(code, ErrorCode::Limit);
        assert!(reason.contains("8199 bytes"), "{reason}");
        // A chain entry that is not DER, beside a good certificate: code 4,
        // "not valid DER" (PROTOCOL.md 4.3.1, issue 20 gap 15).
        let good = crate::testing::Student::enroll(sh.ca.as_deref().unwrap(), SID)
            .unwrap()
            .issued
            .der;
        let junk_chain = Message::SubmitOpen {
            sid: SID.into(),
            cert_der: good,
            chain: vec![vec![0x30, 0x03, 0x02, 0x01]],
            client_nonce: [0; 32],
        };
        let run = drive(bb(&mut sh), &[junk_chain.encode()], &mut sh);
        let (code, reason) = refusal(&run);
        assert_eq!(code, ErrorCode::BadCertificate);
        assert!(reason.contains("not valid DER"), "{reason}");
    }

    #[test]
    fn version_2_signs_the_exchange_and_the_receipt_after_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), None);
        let key = make_key(KeyType::Rsa2048).unwrap();
        let cert = enroll(SID, &key, &mut sh);
        let hello = open_frame(SID, &cert, [1; 32]);
        let run = drive(
            start(ServiceKind::Blackboard, &mut sh),
            std::slice::from_ref(&hello),
            &mut sh,
        );
        assert!(!run.closed);
        let text = "This is submission from SID1155000001.\n";
        let (frame, th) = report_frame_v2(&hello, &key, &run.replies[0], text, &sh).unwrap();

        // The report's step sends nothing: the receipt is signed only once
        // the record is durable.
        let (next, out) = run.session.on_frame(&frame, &mut sh, "p");
        assert!(out.send.is_empty() && !out.close, "{out:?}");
        let After::Persist(record) = out.then else {
            panic!("a record to commit");
        };
        assert!(sh.store.reports().unwrap().is_empty());
        sh.store.commit(&[record]).unwrap();
        let (_, after) = next.on_committed(&mut sh, "p");
        assert!(after.close);
        let [frame] = &after.send[..] else {
            panic!("expected one frame, got {after:?}");
        };
        let Ok(Message::SignedReceipt {
            receipt_id,
            serial_hex,
            signed_receipt,
        }) = Message::decode(frame)
        else {
            panic!("expected SignedReceipt");
        };
        let want = crate::client::Expected {
            sid: SID,
            serial: &serial_hex,
            receipt: Some(receipt_id),
            report: Some(text.as_bytes()),
            transcript: Some(&th),
        };
        let content = crate::client::check_receipt(&signed_receipt, &trust(&sh), &want).unwrap();
        let reports = sh.store.reports().unwrap();
        assert_eq!(reports[0].receipt_id, receipt_id);
        assert_eq!(content.report_sha256, reports[0].sha256_hex());
        // Another text does not match the receipt.
        let other = crate::client::Expected {
            report: Some(b"something else"),
            ..want
        };
        assert!(crate::client::check_receipt(&signed_receipt, &trust(&sh), &other).is_err());
    }

    #[test]
    fn version_2_offers_do_not_transfer_between_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), None);
        let key = make_key(KeyType::Rsa2048).unwrap();
        let cert = enroll(SID, &key, &mut sh);
        let bb = |sh: &mut Shared| start(ServiceKind::Blackboard, sh);
        let hello_a = open_frame(SID, &cert, [1; 32]);
        let hello_b = open_frame(SID, &cert, [2; 32]);
        let a = drive(bb(&mut sh), &[hello_a], &mut sh);
        // A's genuine offer spliced into B's exchange: refused before use.
        let err = report_frame_v2(&hello_b, &key, &a.replies[0], "x", &sh).unwrap_err();
        assert!(
            matches!(err, crate::client::ClientError::BadOfferSignature),
            "{err}"
        );
        // A MAC that is not this session's does not pass.
        let b = drive(bb(&mut sh), std::slice::from_ref(&hello_b), &mut sh);
        let (good, _) = report_frame_v2(&hello_b, &key, &b.replies[0], "x", &sh).unwrap();
        let Ok(Message::Report {
            cipher,
            iv,
            ciphertext,
            ..
        }) = Message::decode(&good)
        else {
            panic!()
        };
        let forged = Message::Report {
            cipher,
            iv,
            ciphertext,
            mac: [0; 32],
        };
        let run = drive(b.session, &[forged.encode()], &mut sh);
        assert_eq!(refusal(&run).0, ErrorCode::BadMac);
    }

    /// The `lab` assignment is read from the store at the hello and again
    /// at the report: a report after the due time is recorded late, and a
    /// close made between the hello and the report refuses it.
    #[test]
    fn the_lab_assignment_is_read_at_the_hello_and_again_at_the_report() {
        use crate::store::{Assignment, Record};
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), None);
        let key = make_key(KeyType::Rsa2048).unwrap();
        let cert = enroll(SID, &key, &mut sh);
        let now = crate::time::now_unix();
        let lab = |due: i64, late_until: i64| Assignment {
            id: "lab".into(),
            title: "Lab".into(),
            opens: None,
            due: Some(due),
            late_until: Some(late_until),
            closed_at: None,
        };
        let bb = |sh: &mut Shared| start(ServiceKind::Blackboard, sh);
        sh.store
            .put_assignment(&lab(now - 3600, now + 3600))
            .unwrap();
        let hello = open_frame(SID, &cert, [5; 32]);
        let run = drive(bb(&mut sh), std::slice::from_ref(&hello), &mut sh);
        let (frame, _) = report_frame_v2(&hello, &key, &run.replies[0], "text", &sh).unwrap();
        let (_, out) = run.session.on_frame(&frame, &mut sh, "p");
        let After::Persist(Record::Report(r)) = out.then else {
            panic!("a report to record: {out:?}");
        };
        assert_eq!(r.assignment, "lab");
        assert!(r.late_by.is_some_and(|s| s >= 3600), "{r:?}");

        let hello = open_frame(SID, &cert, [6; 32]);
        let run = drive(bb(&mut sh), std::slice::from_ref(&hello), &mut sh);
        assert!(!run.closed);
        sh.store.put_assignment(&lab(now - 3600, now - 1)).unwrap();
        let (frame, _) = report_frame_v2(&hello, &key, &run.replies[0], "text", &sh).unwrap();
        let run = drive(run.session, &[frame], &mut sh);
        let (code, reason) = refusal(&run);
        assert_eq!(code, ErrorCode::SubmissionsClosed);
        assert!(
            reason.contains("assignment lab: submissions closed at"),
            "{reason}"
        );
        // A new hello is refused before any offer.
        let run = drive(bb(&mut sh), &[open_frame(SID, &cert, [7; 32])], &mut sh);
        assert_eq!(refusal(&run).0, ErrorCode::SubmissionsClosed);
    }

    #[test]
    fn version_2_rechecks_revocation_when_the_report_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let mut sh = shared(dir.path(), None);
        let key = make_key(KeyType::Rsa2048).unwrap();
        let cert = enroll(SID, &key, &mut sh);
        let hello = open_frame(SID, &cert, [3; 32]);
        let run = drive(
            start(ServiceKind::Blackboard, &mut sh),
            std::slice::from_ref(&hello),
            &mut sh,
        );
        let (frame, _) = report_frame_v2(&hello, &key, &run.replies[0], "late", &sh).unwrap();
        let serial = sh.store.certs().unwrap()[0].serial.clone();
        let revoked = sh
            .store
            .revoke_serial(&serial, crate::ca::RevocationReason::KeyCompromise, 0)
            .unwrap();
        assert_eq!(revoked, 1);
        let run = drive(run.session, &[frame], &mut sh);
        let (code, reason) = refusal(&run);
        assert_eq!(code, ErrorCode::BadCertificate);
        assert!(reason.contains("revoked"), "{reason}");
        assert!(sh.store.reports().unwrap().is_empty());
    }
}
