//! The log's entries, byte by byte (PROTOCOL.md, "The transparency log").
//! One encoding per value: fixed-width little-endian integers and
//! length-prefixed text, as the wire messages; a version byte and a kind
//! byte first, so a future leaf can never be read as today's.

use std::fmt;

use byteorder::{ByteOrder, LittleEndian};

/// The leaf encoding's version.
pub const LEAF_VERSION: u8 = 1;
const KIND_CERT: u8 = 1;
const KIND_SUBMISSION: u8 = 2;

/// How a certificate's issuance was authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorisation {
    /// A one-time enrollment code.
    Code,
    /// Proof of possession of a certificate it renews.
    Renewal,
    /// Open enrollment (no roster).
    Open,
    /// Anything else the server issued (the legacy protocol, admin).
    Other,
}

impl Authorisation {
    fn byte(self) -> u8 {
        match self {
            Authorisation::Code => 1,
            Authorisation::Renewal => 2,
            Authorisation::Open => 3,
            Authorisation::Other => 4,
        }
    }

    fn from_byte(b: u8) -> Option<Authorisation> {
        Some(match b {
            1 => Authorisation::Code,
            2 => Authorisation::Renewal,
            3 => Authorisation::Open,
            4 => Authorisation::Other,
            _ => return None,
        })
    }

    /// Its name in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Authorisation::Code => "code",
            Authorisation::Renewal => "renewal",
            Authorisation::Open => "open",
            Authorisation::Other => "other",
        }
    }
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaf {
    /// A certificate issued.
    Cert {
        /// The SID it certifies.
        sid: String,
        /// Its serial, upper-case hex.
        serial: String,
        /// SHA-256 of its DER.
        cert_sha256: [u8; 32],
        /// When it was issued, Unix seconds.
        issued_at: u64,
        /// How.
        authorisation: Authorisation,
    },
    /// A submission accepted.
    Submission {
        /// The student.
        sid: String,
        /// The assignment.
        assignment: String,
        /// Blackboard's receipt id.
        receipt_id: u64,
        /// SHA-256 of the submitted bytes.
        sha256: [u8; 32],
        /// Their size.
        size: u64,
        /// When Blackboard accepted it, Unix seconds.
        received_at: u64,
        /// Whether it came after the due time.
        late: bool,
        /// The serial of the certificate she submitted with.
        serial: String,
    },
}

/// A leaf that does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafError(pub &'static str);

impl fmt::Display for LeafError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed log entry: {}", self.0)
    }
}

impl std::error::Error for LeafError {}

fn put_text(out: &mut Vec<u8>, s: &str) {
    // Every text field is a SID, serial or assignment id: far below 64 KiB.
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], LeafError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(LeafError(what))?;
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, LeafError> {
        Ok(self.take(1, what)?[0])
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, LeafError> {
        Ok(LittleEndian::read_u64(self.take(8, what)?))
    }
    fn hash(&mut self, what: &'static str) -> Result<[u8; 32], LeafError> {
        self.take(32, what)?.try_into().map_err(|_| LeafError(what))
    }
    fn text(&mut self, what: &'static str) -> Result<String, LeafError> {
        let len = usize::from(LittleEndian::read_u16(self.take(2, what)?));
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| LeafError(what))
    }
}

impl Leaf {
    /// The entry's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![LEAF_VERSION];
        match self {
            Leaf::Cert {
                sid,
                serial,
                cert_sha256,
                issued_at,
                authorisation,
            } => {
                out.push(KIND_CERT);
                put_text(&mut out, sid);
                put_text(&mut out, serial);
                out.extend_from_slice(cert_sha256);
                put_u64(&mut out, *issued_at);
                out.push(authorisation.byte());
            }
            Leaf::Submission {
                sid,
                assignment,
                receipt_id,
                sha256,
                size,
                received_at,
                late,
                serial,
            } => {
                out.push(KIND_SUBMISSION);
                put_text(&mut out, sid);
                put_text(&mut out, assignment);
                put_u64(&mut out, *receipt_id);
                out.extend_from_slice(sha256);
                put_u64(&mut out, *size);
                put_u64(&mut out, *received_at);
                out.push(u8::from(*late));
                put_text(&mut out, serial);
            }
        }
        out
    }

    /// Decodes an entry; strict (nothing left over, known kinds and
    /// values only), so an entry has one meaning.
    pub fn decode(bytes: &[u8]) -> Result<Leaf, LeafError> {
        let mut r = Reader(bytes);
        if r.u8("empty")? != LEAF_VERSION {
            return Err(LeafError("unknown version"));
        }
        let leaf = match r.u8("no kind")? {
            KIND_CERT => Leaf::Cert {
                sid: r.text("sid")?,
                serial: r.text("serial")?,
                cert_sha256: r.hash("certificate hash")?,
                issued_at: r.u64("issued_at")?,
                authorisation: Authorisation::from_byte(r.u8("authorisation")?)
                    .ok_or(LeafError("unknown authorisation"))?,
            },
            KIND_SUBMISSION => Leaf::Submission {
                sid: r.text("sid")?,
                assignment: r.text("assignment")?,
                receipt_id: r.u64("receipt id")?,
                sha256: r.hash("file hash")?,
                size: r.u64("size")?,
                received_at: r.u64("received_at")?,
                late: match r.u8("late")? {
                    0 => false,
                    1 => true,
                    _ => return Err(LeafError("late is not 0 or 1")),
                },
                serial: r.text("serial")?,
            },
            _ => return Err(LeafError("unknown kind")),
        };
        if !r.0.is_empty() {
            return Err(LeafError("bytes after the last field"));
        }
        Ok(leaf)
    }

    /// The SID the entry is about.
    pub fn sid(&self) -> &str {
        match self {
            Leaf::Cert { sid, .. } | Leaf::Submission { sid, .. } => sid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Leaf> {
        vec![
            Leaf::Cert {
                sid: "1155000001".into(),
                serial: "1A2B".into(),
                cert_sha256: [7; 32],
                issued_at: 1_796_000_000,
                authorisation: Authorisation::Code,
            },
            Leaf::Submission {
                sid: "1155000001".into(),
                assignment: "lab".into(),
                receipt_id: 42,
                sha256: [9; 32],
                size: 390,
                received_at: 1_796_000_100,
                late: true,
                serial: "1A2B".into(),
            },
        ]
    }

    #[test]
    fn leaves_round_trip_and_the_encoding_is_pinned() -> Result<(), LeafError> {
        for leaf in samples() {
            assert_eq!(Leaf::decode(&leaf.encode())?, leaf);
        }
        // The worked example of PROTOCOL.md.
        let cert = samples()[0].encode();
        let mut expected = vec![1, 1, 10, 0];
        expected.extend_from_slice(b"1155000001");
        expected.extend_from_slice(&[4, 0]);
        expected.extend_from_slice(b"1A2B");
        expected.extend_from_slice(&[7; 32]);
        expected.extend_from_slice(&[0x00, 0xc9, 0x0c, 0x6b, 0, 0, 0, 0, 1]);
        assert_eq!(cert, expected);
        assert_eq!(cert.len(), 61);
        Ok(())
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        for leaf in samples() {
            let bytes = leaf.encode();
            for cut in 0..bytes.len() {
                assert!(Leaf::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Leaf::decode(&longer).is_err());
        }
        assert!(Leaf::decode(&[2, 1]).is_err());
        assert!(Leaf::decode(&[1, 3]).is_err());
    }
}
