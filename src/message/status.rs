//! The body of Blackboard's status answer (protocol version 3, intent
//! status; PROTOCOL.md V3.6): the course's zone, its assignments with her
//! own due time, and her accepted submissions. It travels encrypted in
//! `StatusPart`s; this is its plaintext, encoded with the same field
//! rules as the messages and decoded as strictly.

use super::{put_text, DecodeError, Reader};

/// Largest status body a client accepts (and a server sends), in bytes:
/// 1 MiB, some 2,500 submissions of the longest file names. A server
/// whose answer would be larger refuses with code 6 instead.
pub const MAX_STATUS_BODY: usize = 1 << 20;

/// What Blackboard holds for one student.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusBody {
    /// The course's IANA time zone, for showing times (`UTC` when the
    /// course set none).
    pub zone: String,
    /// The server's time when it answered, Unix seconds.
    pub now: i64,
    /// Every assignment of the course.
    pub assignments: Vec<AssignmentStatus>,
    /// Every submission of hers Blackboard accepted, oldest first.
    pub submissions: Vec<SubmissionStatus>,
}

/// One assignment, as it stands for her.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentStatus {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// When it opens, Unix seconds.
    pub opens: Option<i64>,
    /// Its due time.
    pub due: Option<i64>,
    /// Her own due time, when she has an extension.
    pub her_due: Option<i64>,
    /// The end of its late period.
    pub late_until: Option<i64>,
    /// When the instructor closed it.
    pub closed_at: Option<i64>,
}

/// How a submission came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmissionKind {
    /// A report's text (version 2 or legacy); it has no file name.
    Report = 1,
    /// A file (version 3).
    File = 2,
}

/// One accepted submission of hers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionStatus {
    /// The assignment it went to.
    pub assignment: String,
    /// Its receipt id.
    pub receipt_id: u64,
    /// Report or file.
    pub kind: SubmissionKind,
    /// When it was received, Unix seconds.
    pub received_at: i64,
    /// Seconds after her due time, when late.
    pub late_seconds: Option<i64>,
    /// The file's name (empty for a report).
    pub file_name: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its bytes.
    pub sha256: [u8; 32],
}

fn put_opt(out: &mut Vec<u8>, t: Option<i64>) {
    match t {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&t.to_le_bytes());
        }
    }
}

impl Reader<'_> {
    /// `u8` 0, or `u8` 1 then an `i64`.
    fn opt_i64(&mut self, field: &'static str) -> Result<Option<i64>, DecodeError> {
        Ok(if self.flag(field)? {
            Some(self.i64(field)?)
        } else {
            None
        })
    }
}

impl StatusBody {
    /// The body's bytes (PROTOCOL.md V3.6).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_text(&mut out, &self.zone);
        out.extend_from_slice(&self.now.to_le_bytes());
        let n = u16::try_from(self.assignments.len()).unwrap_or(u16::MAX); // ok: capped below
        out.extend_from_slice(&n.to_le_bytes());
        for a in self.assignments.iter().take(usize::from(n)) {
            put_text(&mut out, &a.id);
            put_text(&mut out, &a.title);
            for t in [a.opens, a.due, a.her_due, a.late_until, a.closed_at] {
                put_opt(&mut out, t);
            }
        }
        let n = u32::try_from(self.submissions.len()).unwrap_or(u32::MAX); // ok: capped below
        out.extend_from_slice(&n.to_le_bytes());
        for s in self.submissions.iter().take(n as usize) {
            put_text(&mut out, &s.assignment);
            out.extend_from_slice(&s.receipt_id.to_le_bytes());
            out.push(s.kind as u8);
            out.extend_from_slice(&s.received_at.to_le_bytes());
            put_opt(&mut out, s.late_seconds);
            put_text(&mut out, &s.file_name);
            out.extend_from_slice(&s.size.to_le_bytes());
            out.extend_from_slice(&s.sha256);
        }
        out
    }

    /// Reads a body; strict like [`super::Message::decode`], and over
    /// [`MAX_STATUS_BODY`] bytes is refused unread. Counts never reserve
    /// memory: each entry is read from bytes that are there.
    pub fn decode(bytes: &[u8]) -> Result<StatusBody, DecodeError> {
        if bytes.len() > MAX_STATUS_BODY {
            return Err(DecodeError::TrailingBytes(bytes.len() - MAX_STATUS_BODY));
        }
        let mut r = Reader { rest: bytes };
        let zone = r.text("zone")?;
        let now = r.i64("now")?;
        let count = r.u16("assignments")?;
        let mut assignments = Vec::new();
        for _ in 0..count {
            assignments.push(AssignmentStatus {
                id: r.text("id")?,
                title: r.text("title")?,
                opens: r.opt_i64("opens")?,
                due: r.opt_i64("due")?,
                her_due: r.opt_i64("her_due")?,
                late_until: r.opt_i64("late_until")?,
                closed_at: r.opt_i64("closed_at")?,
            });
        }
        let count = r.u32("submissions")?;
        let mut submissions = Vec::new();
        for _ in 0..count {
            submissions.push(SubmissionStatus {
                assignment: r.text("assignment")?,
                receipt_id: r.u64("receipt_id")?,
                kind: match r.u8("kind")? {
                    1 => SubmissionKind::Report,
                    2 => SubmissionKind::File,
                    other => return Err(DecodeError::UnknownValue("kind", other)),
                },
                received_at: r.i64("received_at")?,
                late_seconds: r.opt_i64("late")?,
                file_name: r.text("file_name")?,
                size: r.u64("size")?,
                sha256: r.array("sha256")?,
            });
        }
        r.finish()?;
        Ok(StatusBody {
            zone,
            now,
            assignments,
            submissions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> StatusBody {
        StatusBody {
            zone: "Asia/Hong_Kong".into(),
            now: 1_796_000_000,
            assignments: vec![AssignmentStatus {
                id: "hw1".into(),
                title: "Homework 1".into(),
                opens: None,
                due: Some(1_796_003_600),
                her_due: Some(1_796_090_000),
                late_until: Some(1_796_007_200),
                closed_at: None,
            }],
            submissions: vec![SubmissionStatus {
                assignment: "hw1".into(),
                receipt_id: 7,
                kind: SubmissionKind::File,
                received_at: 1_796_000_100,
                late_seconds: Some(-0x0102),
                file_name: "a.pdf".into(),
                size: 13,
                sha256: [9; 32],
            }],
        }
    }

    /// The layout of PROTOCOL.md V3.6, byte by byte.
    #[test]
    fn a_body_is_laid_out_as_the_spec_says() {
        let wire = body().encode();
        let mut want = Vec::new();
        want.extend_from_slice(&[14, 0]);
        want.extend_from_slice(b"Asia/Hong_Kong");
        want.extend_from_slice(&1_796_000_000i64.to_le_bytes());
        want.extend_from_slice(&[1, 0, 3, 0]);
        want.extend_from_slice(b"hw1");
        want.extend_from_slice(&[10, 0]);
        want.extend_from_slice(b"Homework 1");
        want.push(0);
        want.push(1);
        want.extend_from_slice(&1_796_003_600i64.to_le_bytes());
        want.push(1);
        want.extend_from_slice(&1_796_090_000i64.to_le_bytes());
        want.push(1);
        want.extend_from_slice(&1_796_007_200i64.to_le_bytes());
        want.push(0);
        want.extend_from_slice(&[1, 0, 0, 0, 3, 0]);
        want.extend_from_slice(b"hw1");
        want.extend_from_slice(&7u64.to_le_bytes());
        want.push(2);
        want.extend_from_slice(&1_796_000_100i64.to_le_bytes());
        want.push(1);
        want.extend_from_slice(&(-0x0102i64).to_le_bytes());
        want.extend_from_slice(&[5, 0]);
        want.extend_from_slice(b"a.pdf");
        want.extend_from_slice(&13u64.to_le_bytes());
        want.extend_from_slice(&[9; 32]);
        assert_eq!(wire, want);
        assert_eq!(StatusBody::decode(&wire), Ok(body()));
    }

    #[test]
    fn decoding_is_strict() {
        let wire = body().encode();
        for cut in 0..wire.len() {
            assert!(StatusBody::decode(&wire[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = wire.clone();
        longer.push(0);
        assert_eq!(
            StatusBody::decode(&longer),
            Err(DecodeError::TrailingBytes(1))
        );
        // An unknown kind, and a presence byte that is neither 0 nor 1.
        let kind_at = wire.len() - (32 + 8 + 2 + 5 + 9 + 8 + 1);
        let mut bad = wire.clone();
        bad[kind_at] = 3;
        assert_eq!(
            StatusBody::decode(&bad),
            Err(DecodeError::UnknownValue("kind", 3))
        );
        let mut bad = wire.clone();
        bad[kind_at + 9] = 2;
        assert_eq!(
            StatusBody::decode(&bad),
            Err(DecodeError::UnknownValue("late", 2))
        );
        // A count far beyond the bytes is a truncation, not an allocation.
        let mut huge = Vec::new();
        put_text(&mut huge, "UTC");
        huge.extend_from_slice(&0i64.to_le_bytes());
        huge.extend_from_slice(&0u16.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            StatusBody::decode(&huge),
            Err(DecodeError::Truncated(_))
        ));
        assert!(StatusBody::decode(&vec![0; MAX_STATUS_BODY + 1]).is_err());
    }
}
