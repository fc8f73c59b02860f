//! `client status`: what Blackboard holds for her (protocol version 3,
//! intent status; PROTOCOL.md V3.6), asked on the same authenticated
//! exchange as an upload, then checked against the receipts she saved:
//! a receipt of hers that Blackboard no longer lists is the loud case
//! (nothing of hers may vanish); a submission listed without a receipt
//! here is loud too: handed in from another machine, or its receipt lost,
//! or handed in by someone else with her key, which only she can tell.

use std::path::PathBuf;

use openssl::pkey::{PKey, Private};

use crate::crypto::{self, CHUNK_MAX, STATUS_IV};
use crate::message::{Intent, Message, StatusBody, SubmissionStatus, MAX_STATUS_BODY};
use crate::receipt::ReceiptContent;

use super::submission::BlackboardTrust;
use super::transport::FramedStream;
use super::upload::open_v3;
use super::{unexpected, ClientError};

/// Most pieces an answer of [`MAX_STATUS_BODY`] bytes takes.
const MAX_PIECES: u64 = MAX_STATUS_BODY.div_ceil(CHUNK_MAX) as u64;

/// Asks Blackboard, on an open connection, what it holds for her: her
/// certificate and the signed offer as for an upload, her MAC'd request,
/// then the answer's pieces, each checked (number, MAC, size) before it
/// is decrypted; at most [`MAX_STATUS_BODY`] bytes in all.
pub fn ask_status(
    conn: &mut FramedStream,
    sid: &str,
    cert_der: &[u8],
    key: &PKey<Private>,
    trust: &BlackboardTrust,
    progress: &mut dyn FnMut(&str),
) -> Result<StatusBody, ClientError> {
    let (keys, th) = open_v3(conn, sid, cert_der, key, trust, Intent::Status)?;
    progress("Blackboard proved itself and sent a session key (version 3, status)");
    let mac = keys.status_request_mac_v3(&th)?;
    conn.send(&Message::StatusRequest { mac })?;
    let mut stream = keys.file_cipher(&STATUS_IV)?;
    let mut plain = Vec::new();
    for want in 0..MAX_PIECES {
        let (seq, last, ciphertext, mac) = match conn.recv()? {
            Message::StatusPart {
                seq,
                last,
                ciphertext,
                mac,
            } => (seq, last, ciphertext, mac),
            other => return Err(unexpected("StatusPart", &other)),
        };
        if seq != want {
            return Err(ClientError::Protocol(format!(
                "status piece {seq} came where piece {want} was due"
            )));
        }
        let expected = keys.status_part_mac_v3(&th, seq, last, &ciphertext)?;
        if !crypto::ct_eq(&expected, &mac) {
            return Err(ClientError::Protocol(format!(
                "status piece {seq}: the MAC does not verify (altered, or not this session's)"
            )));
        }
        if ciphertext.is_empty()
            || ciphertext.len() > CHUNK_MAX
            || (!last && ciphertext.len() != CHUNK_MAX)
        {
            return Err(ClientError::Protocol(format!(
                "status piece {seq} holds {} bytes: every piece but the last holds {CHUNK_MAX}",
                ciphertext.len()
            )));
        }
        plain.extend_from_slice(&stream.apply(&ciphertext)?);
        if last {
            return StatusBody::decode(&plain).map_err(ClientError::Decode);
        }
    }
    Err(ClientError::Protocol(format!(
        "the status answer goes on past {MAX_STATUS_BODY} bytes: refused"
    )))
}

/// A receipt she holds, as checked.
#[derive(Debug, Clone)]
pub struct HeldReceipt {
    /// Where it is saved.
    pub path: PathBuf,
    /// What it says (its signature verified).
    pub content: ReceiptContent,
}

/// Her receipts set against Blackboard's answer.
#[derive(Debug, Clone, Default)]
pub struct StatusCheck {
    /// Receipt ids listed by Blackboard that she holds a matching receipt of.
    pub matched: Vec<u64>,
    /// Receipts she holds that Blackboard does not list: the loud case.
    pub missing: Vec<HeldReceipt>,
    /// Receipts she holds that Blackboard lists differently (assignment
    /// or hash), with what differs.
    pub differ: Vec<(HeldReceipt, String)>,
    /// Submissions Blackboard lists without a receipt in her folder: she
    /// may have handed it in from another machine or lost its receipt,
    /// or someone else handed it in with her key.
    pub unreceipted: Vec<u64>,
    /// Files in her receipts folder that are not receipts of hers (do not
    /// verify, or name another SID), with why.
    pub unreadable: Vec<(PathBuf, String)>,
}

impl StatusCheck {
    /// Whether anything needs her attention (exit status 1). A submission
    /// without a receipt here counts: only she can tell whether it is hers
    /// (and a script checking her standing must not take it for "all
    /// well").
    pub fn trouble(&self) -> bool {
        !self.missing.is_empty()
            || !self.differ.is_empty()
            || !self.unreadable.is_empty()
            || !self.unreceipted.is_empty()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What differs between a receipt and Blackboard's listing of it.
fn difference(held: &ReceiptContent, listed: &SubmissionStatus) -> Option<String> {
    let assignment = held
        .assignment
        .as_deref()
        .unwrap_or(crate::store::DEFAULT_ASSIGNMENT);
    if assignment != listed.assignment {
        return Some(format!(
            "the receipt says assignment {assignment}, Blackboard lists {}",
            listed.assignment
        ));
    }
    let listed_hash = hex(&listed.sha256);
    if held.report_sha256 != listed_hash {
        return Some(format!(
            "the receipt says SHA-256 {}, Blackboard lists {listed_hash}",
            held.report_sha256
        ));
    }
    if let Some(f) = &held.file {
        if f.size != listed.size || f.file_name != listed.file_name {
            return Some(format!(
                "the receipt says {:?} ({} bytes), Blackboard lists {:?} ({} bytes)",
                f.file_name, f.size, listed.file_name, listed.size
            ));
        }
    }
    None
}

/// Sets `held` (her receipts, checked) against `body`.
pub fn compare(
    sid: &str,
    body: &StatusBody,
    held: Vec<HeldReceipt>,
    unreadable: Vec<(PathBuf, String)>,
) -> StatusCheck {
    let mut check = StatusCheck {
        unreadable,
        ..StatusCheck::default()
    };
    let mut seen = std::collections::HashSet::new();
    for h in held {
        if h.content.sid != sid {
            let why = format!("a receipt of SID {}, not {sid}", h.content.sid);
            check.unreadable.push((h.path, why));
            continue;
        }
        let id = h.content.receipt.parse::<u64>().ok();
        match id.and_then(|id| body.submissions.iter().find(|s| s.receipt_id == id)) {
            None => check.missing.push(h),
            Some(listed) => {
                seen.insert(listed.receipt_id);
                match difference(&h.content, listed) {
                    None => check.matched.push(listed.receipt_id),
                    Some(why) => check.differ.push((h, why)),
                }
            }
        }
    }
    check.unreceipted = body
        .submissions
        .iter()
        .map(|s| s.receipt_id)
        .filter(|id| !seen.contains(id))
        .collect();
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::SubmissionKind;

    fn listed(id: u64, sha: u8) -> SubmissionStatus {
        SubmissionStatus {
            assignment: "lab".into(),
            receipt_id: id,
            kind: SubmissionKind::Report,
            received_at: 0,
            late_seconds: None,
            file_name: String::new(),
            size: 3,
            sha256: [sha; 32],
        }
    }

    fn held(id: u64, sha: u8, sid: &str) -> HeldReceipt {
        HeldReceipt {
            path: PathBuf::from(format!("{id}.p7m")),
            content: ReceiptContent {
                sid: sid.into(),
                serial: "01".into(),
                receipt: id.to_string(),
                received_at: "2026-01-01T00:00:00Z".into(),
                report_sha256: hex(&[sha; 32]),
                transcript_sha256: String::new(),
                version: 2,
                assignment: Some("lab".into()),
                late: Some(false),
                late_seconds: None,
                log_index: None,
                log_proof: None,
                file: None,
            },
        }
    }

    #[test]
    fn a_receipt_blackboard_does_not_list_is_missing() {
        let body = StatusBody {
            zone: "UTC".into(),
            now: 0,
            assignments: Vec::new(),
            submissions: vec![listed(1, 1), listed(2, 2), listed(4, 4)],
        };
        let check = compare(
            "s1",
            &body,
            vec![
                held(1, 1, "s1"),
                held(2, 9, "s1"),
                held(3, 3, "s1"),
                held(5, 5, "s2"),
            ],
            Vec::new(),
        );
        assert_eq!(check.matched, vec![1]);
        assert_eq!(check.differ.len(), 1);
        assert!(check.differ[0].1.contains("SHA-256"), "{:?}", check.differ);
        let missing: Vec<_> = check.missing.iter().map(|h| &h.content.receipt).collect();
        assert_eq!(missing, vec!["3"]);
        assert_eq!(check.unreceipted, vec![4]);
        assert_eq!(check.unreadable.len(), 1);
        assert!(check.trouble());
        // Listed without a receipt here: trouble too.
        let unheld = compare("s1", &body, vec![held(1, 1, "s1")], Vec::new());
        assert!(unheld.trouble());
        assert_eq!(unheld.unreceipted, vec![2, 4]);
        let fine = compare(
            "s1",
            &body,
            vec![held(1, 1, "s1"), held(2, 2, "s1"), held(4, 4, "s1")],
            Vec::new(),
        );
        assert!(!fine.trouble(), "{fine:?}");
        assert_eq!(fine.matched, vec![1, 2, 4]);
    }
}
