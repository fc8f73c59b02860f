//! Blackboard's answer to a student's status request (protocol version 3,
//! intent status; PROTOCOL.md V3.6): after the same signed offer as an
//! upload, her `StatusRequest` proves she unwrapped the session key; the
//! answer (the course's assignments as they stand for her and every
//! submission of hers the store holds) goes back encrypted and MAC'd in
//! pieces, and the connection closes. Nothing is recorded.

use log::info;

use crate::assignment::her_deadlines;
use crate::crypto::{self, CHUNK_MAX, STATUS_IV};
use crate::message::{
    AssignmentStatus, Message, StatusBody, SubmissionKind, SubmissionStatus, MAX_STATUS_BODY,
};
use crate::store::{Storage, StoreError, TIMEZONE_SETTING};
use crate::time::now_unix;

use super::super::error::{Internal, ProtocolError};
use super::super::submission::{check_mac, check_still_good, PendingReport};
use super::super::{Output, Shared, State, Step};
use super::upload::UploadError;
use super::OfferKeys;

/// What the store holds for `sid` at `now`, as the status answer says it.
pub(in crate::protocol) fn status_body(
    store: &mut dyn Storage,
    sid: &str,
    now: i64,
) -> Result<StatusBody, StoreError> {
    let zone = store
        .course_setting(TIMEZONE_SETTING)?
        .unwrap_or_else(|| "UTC".to_string());
    let extensions = store.extensions()?;
    let assignments = store
        .assignments()?
        .into_iter()
        .map(|a| {
            let extension = extensions
                .iter()
                .find(|e| e.sid == sid && e.assignment == a.id)
                .map(|e| e.until);
            let her_due = extension.and_then(|_| her_deadlines(&a, extension).0);
            AssignmentStatus {
                her_due,
                opens: a.opens,
                due: a.due,
                late_until: a.late_until,
                closed_at: a.closed_at,
                id: a.id,
                title: a.title,
            }
        })
        .collect();
    let (reports, uploads) = store.submissions_of(sid)?;
    let mut submissions: Vec<SubmissionStatus> = reports
        .into_iter()
        .map(|r| SubmissionStatus {
            receipt_id: r.receipt_id,
            kind: SubmissionKind::Report,
            received_at: r.received_at,
            late_seconds: r.late_by,
            file_name: String::new(),
            size: r.text.len() as u64,
            sha256: openssl::sha::sha256(r.text.as_bytes()),
            assignment: r.assignment,
        })
        .chain(uploads.into_iter().map(|u| SubmissionStatus {
            receipt_id: u.receipt_id,
            kind: SubmissionKind::File,
            received_at: u.received_at,
            // Stored as 0 when on time.
            late_seconds: (u.late_seconds > 0).then_some(u.late_seconds),
            file_name: u.file_name,
            size: u.size,
            sha256: u.sha256,
            assignment: u.assignment,
        }))
        .collect();
    submissions.sort_by_key(|s| (s.received_at, s.receipt_id));
    Ok(StatusBody {
        zone,
        now,
        assignments,
        submissions,
    })
}

/// The answer's frames: `body` encrypted on one AES-256-CTR stream from
/// [`STATUS_IV`], cut into pieces of [`CHUNK_MAX`] bytes, each MAC'd with
/// its number and whether it is the last.
pub(in crate::protocol) fn status_frames(
    keys: &crypto::SessionKeys,
    th: &[u8; crypto::DIGEST_LEN],
    body: &[u8],
) -> Result<Vec<Vec<u8>>, openssl::error::ErrorStack> {
    let mut stream = keys.file_cipher(&STATUS_IV)?;
    let pieces = body.chunks(CHUNK_MAX).count();
    let mut frames = Vec::with_capacity(pieces);
    for (seq, piece) in body.chunks(CHUNK_MAX).enumerate() {
        let seq = seq as u64;
        let last = seq + 1 == pieces as u64;
        let ciphertext = stream.apply(piece)?;
        let mac = keys.status_part_mac_v3(th, seq, last, &ciphertext)?;
        frames.push(
            Message::StatusPart {
                seq,
                last,
                ciphertext,
                mac,
            }
            .encode(),
        );
    }
    Ok(frames)
}

/// Her `StatusRequest`: its MAC (code 5), her certificate still good
/// (code 4), then the answer in pieces, and close.
pub(super) fn request(
    p: PendingReport<OfferKeys>,
    mac: &[u8],
    shared: &mut Shared,
    peer: &str,
) -> Step {
    let sid = p.sid.clone();
    let internal = |what, e| ProtocolError::Internal(Internal::new(what, e));
    let expected = p
        .keys
        .keys
        .status_request_mac_v3(&p.keys.th)
        .map_err(|e| internal("MAC", e))?;
    check_mac(&expected, mac).map_err(|_| ProtocolError::Upload {
        sid: sid.clone(),
        source: UploadError::BadMac("status request"),
    })?;
    check_still_good(shared, &p).map_err(|e| ProtocolError::certificate(&sid, e))?;
    let body = status_body(&mut *shared.store, &sid, now_unix())
        .map_err(|e| ProtocolError::store("reading her status", e))?;
    let plain = body.encode();
    if plain.len() > MAX_STATUS_BODY {
        return Err(ProtocolError::Upload {
            sid,
            source: UploadError::StatusTooLarge { len: plain.len() },
        });
    }
    let frames =
        status_frames(&p.keys.keys, &p.keys.th, &plain).map_err(|e| internal("status", e))?;
    info!(
        "{peer}: status of SID {sid} sent: {} assignment(s), {} submission(s), {} bytes in {} \
         piece(s)",
        body.assignments.len(),
        body.submissions.len(),
        plain.len(),
        frames.len()
    );
    Ok((
        State::Done,
        Output {
            send: frames,
            close: true,
            ..Output::default()
        },
    ))
}
