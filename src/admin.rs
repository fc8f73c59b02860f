//! The operator's commands that run beside the server on the same files:
//! revoke, list certificates and reports, and print a CRL. They go through
//! the store's own interface, so SQLite's locking makes them safe while the
//! server runs.

mod course;
mod coursework;
pub(crate) mod csv;
mod email;
mod export;
pub mod extract;
pub mod log;

use std::fmt;
use std::io::Write;
use std::path::PathBuf;

pub use course::{
    import_roster, import_roster_text, issue_codes, parse_roster, reissue_code, status,
    status_rows, CodeRequest, Imported, StatusRow, Unverified, UNVERIFIED_REASON,
};
pub use coursework::{
    add_assignment, assignment_status, close_assignment, edit_assignment, extend, gradebook,
    list_assignments, remove_student, set_timezone, timezone, AssignmentSpec, Edited, Standing,
    Submitted,
};
pub use email::{check_address, write_messages, Dial, DialAddress, DialName, Letter};
pub use export::{certs, reports, select_reports, DataFormat, Format, ReportFilter};

use crate::ca::{CertificateAuthority, Serial};
use crate::escape::escaped;
use crate::sid::SidError;
use crate::store::ReportRecord;
use crate::store::{Storage, StoreError};
use crate::time::{now_unix, rfc3339};

/// The reasons an operator may give: the pki's one type, which clap
/// parses `--reason` into.
pub use crate::ca::RevocationReason as RevokeReason;

/// Why an admin command failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum AdminError {
    /// The store failed.
    Store(StoreError),
    /// The serial given is not hexadecimal.
    BadSerial(String),
    /// The SID given is not a valid SID.
    BadSid {
        /// The SID as given.
        sid: String,
        /// Why it is not valid.
        source: SidError,
    },
    /// Nothing matched.
    NotFound(String),
    /// OpenSSL failed.
    Crypto(openssl::error::ErrorStack),
    /// The CA failed.
    Ca(crate::ca::CaError),
    /// Output could not be written.
    Io(std::io::Error),
    /// A file named on the command line could not be read or written.
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The roster file has bad rows (nothing was imported).
    BadRoster {
        /// The file.
        path: PathBuf,
        /// Line number and problem, for every bad row.
        problems: Vec<(usize, String)>,
    },
    /// The command would undo something on purpose kept (it says how to
    /// ask for it).
    Refused(String),
    /// A roster import would come into force over certificates that no
    /// enrollment code vouches for (open enrollment, legacy mode): the
    /// instructor decides first (nothing was imported).
    Unverified {
        /// Those certificates (unrevoked, unexpired).
        certs: Vec<crate::store::CertRow>,
    },
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Store(e) => write!(f, "store: {e}"),
            AdminError::BadSerial(hex) => write!(f, "{hex:?} is not a hexadecimal serial"),
            AdminError::BadSid { sid, source } => write!(f, "--sid {sid:?}: {source}"),
            AdminError::NotFound(m) => write!(f, "{m}"),
            AdminError::Crypto(e) => write!(f, "OpenSSL: {e}"),
            AdminError::Ca(e) => write!(f, "CA: {e}"),
            AdminError::Io(e) => write!(f, "{e}"),
            AdminError::File { path, source } => write!(f, "{}: {source}", path.display()),
            AdminError::BadRoster { path, problems } => {
                write!(
                    f,
                    "{}: {} bad row(s), nothing imported:",
                    path.display(),
                    problems.len()
                )?;
                for (line, why) in problems {
                    write!(f, "\n  line {line}: {why}")?;
                }
                Ok(())
            }
            AdminError::Refused(why) => write!(f, "{why}"),
            AdminError::Unverified { certs } => {
                write!(
                    f,
                    "{} certificate(s) were issued by open enrollment, with no enrollment code: \
                     whoever enrolled them never proved to be the student. Nothing imported; \
                     decide first:\n  --revoke-unverified  revoke them (reason {}); each \
                     student enrolls with her code\n  --keep-unverified    keep them \
                     unrevoked, but with the roster in force they neither renew nor submit \
                     (a code enrollment of the SID revokes them as superseded)",
                    certs.len(),
                    course::UNVERIFIED_REASON.name()
                )?;
                for c in certs {
                    write!(
                        f,
                        "\n  SID {}  serial {}  issued {}  ({})",
                        escaped(&c.sid),
                        c.serial,
                        rfc3339(c.not_before),
                        c.origin.as_str()
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for AdminError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AdminError::Store(e) => Some(e),
            AdminError::BadSid { source, .. } => Some(source),
            AdminError::Crypto(e) => Some(e),
            AdminError::Ca(e) => Some(e),
            AdminError::Io(e) => Some(e),
            AdminError::File { source, .. } => Some(source),
            AdminError::BadSerial(_)
            | AdminError::NotFound(_)
            | AdminError::BadRoster { .. }
            | AdminError::Unverified { .. }
            | AdminError::Refused(_) => None,
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Store(e)
    }
}
impl From<openssl::error::ErrorStack> for AdminError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        AdminError::Crypto(e)
    }
}
impl From<crate::ca::CaError> for AdminError {
    fn from(e: crate::ca::CaError) -> Self {
        AdminError::Ca(e)
    }
}
impl From<crate::ops::OpsError> for AdminError {
    fn from(e: crate::ops::OpsError) -> Self {
        match e {
            crate::ops::OpsError::Store(e) => AdminError::Store(e),
            crate::ops::OpsError::Ca(e) => AdminError::Ca(e),
        }
    }
}
impl From<std::io::Error> for AdminError {
    fn from(e: std::io::Error) -> Self {
        AdminError::Io(e)
    }
}

/// What to revoke.
#[derive(Debug, Clone)]
pub enum RevokeTarget {
    /// One certificate by serial (hex, any case, leading zeros allowed).
    Serial(String),
    /// Every certificate of a SID.
    Sid(String),
}

/// Normalises a hex serial to the store's form (upper case, no leading zeros).
pub fn normalise_serial(hex: &str) -> Result<String, AdminError> {
    parse_serial(hex).map(|serial| serial.to_string())
}

/// The serial an operator typed, in any form [`normalise_serial`] takes.
pub fn parse_serial(hex: &str) -> Result<Serial, AdminError> {
    let hex = hex.trim().trim_start_matches("0x");
    Serial::parse_hex(hex).map_err(|_| AdminError::BadSerial(hex.to_string()))
}

/// Revokes; returns how many certificates were newly revoked.
pub fn revoke(
    store: &mut dyn Storage,
    target: &RevokeTarget,
    reason: RevokeReason,
) -> Result<usize, AdminError> {
    let now = now_unix();
    let n = match target {
        RevokeTarget::Serial(s) => {
            let serial = parse_serial(s)?;
            let n = store.revoke_serial(&serial, reason, now)?;
            if n == 0 && !store.certs()?.iter().any(|c| c.serial == serial) {
                return Err(AdminError::NotFound(format!(
                    "no certificate with serial {serial}"
                )));
            }
            n
        }
        RevokeTarget::Sid(sid) => {
            crate::sid::validate(sid).map_err(|source| AdminError::BadSid {
                sid: sid.clone(),
                source,
            })?;
            let n = store.revoke_sid(sid, reason, now)?;
            if n == 0 && !store.certs()?.iter().any(|c| &c.sid == sid) {
                return Err(AdminError::NotFound(format!(
                    "no certificate for SID {sid}"
                )));
            }
            n
        }
    };
    Ok(n)
}

/// Lists certificates, one `key=value` line each (times RFC 3339, text
/// from the store escaped).
pub fn list_certs(store: &mut dyn Storage, out: &mut dyn Write) -> Result<(), AdminError> {
    for c in store.certs()? {
        let status = match &c.revoked {
            None if c.not_after < now_unix() => "expired".to_string(),
            None => "good".to_string(),
            Some((at, reason)) => format!(
                "revoked {} ({})",
                rfc3339(*at),
                reason.map_or("", RevokeReason::name)
            ),
        };
        writeln!(
            out,
            "serial={} sid={} not_after=\"{}\" origin={} status={status}",
            c.serial,
            escaped(&c.sid),
            rfc3339(c.not_after),
            c.origin.as_str()
        )?;
    }
    Ok(())
}

/// Lists reports, one line each (the text's first line only).
pub fn list_reports(store: &mut dyn Storage, out: &mut dyn Write) -> Result<(), AdminError> {
    list_reports_of(&store.reports()?, false, out)
}

/// [`list_reports`] of the reports given: `key=value`, times RFC 3339, the
/// first line quoted and escaped (a quote in it as `\"`); with `full`,
/// each followed by its whole text, indented, every line escaped.
fn list_reports_of(
    reports: &[ReportRecord],
    full: bool,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    for r in reports {
        let lines = r.text.lines().count();
        let first = r.text.lines().next().unwrap_or("");
        if full {
            writeln!(
                out,
                "receipt={} sid={} serial={} received=\"{}\" origin={} lines={lines}:",
                r.receipt_id,
                escaped(&r.sid),
                r.serial,
                rfc3339(r.received_at),
                r.origin.as_str(),
            )?;
            for l in r.text.lines() {
                // A tab aligns a report's own columns and forges nothing.
                writeln!(out, "    {}", crate::escape::escaped_keep_tab(l))?;
            }
            continue;
        }
        writeln!(
            out,
            "receipt={} sid={} serial={} received=\"{}\" origin={} lines={lines} first={}",
            r.receipt_id,
            escaped(&r.sid),
            r.serial,
            rfc3339(r.received_at),
            r.origin.as_str(),
            // Debug quotes it and escapes quotes; `escaped` whatever
            // Debug leaves printable that a terminal would still obey.
            escaped(format_args!("{first:?}"))
        )?;
    }
    Ok(())
}

/// A fresh CRL of every revoked certificate, as PEM or DER: the same
/// CRL the HTTP listener serves on `GET /crl`.
pub fn crl(
    store: &mut dyn Storage,
    ca: &CertificateAuthority,
    der: bool,
) -> Result<Vec<u8>, AdminError> {
    let crl = crate::ops::fresh_crl(store, ca)?;
    Ok(if der {
        crl.der
    } else {
        openssl::x509::X509Crl::from_der(&crl.der)?.to_pem()?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Origin, Record, ReportRecord, SqliteStore};
    use crate::testing::{issue, rsa_key, CaParams};

    /// A store holding one certificate for each SID, and one report.
    fn store_with(dir: &std::path::Path, sids: &[&str]) -> (SqliteStore, Vec<String>) {
        let ca = CaParams::default().create(&dir.join("keys")).unwrap();
        let mut store = SqliteStore::open(&dir.join("data")).unwrap();
        let key = rsa_key().unwrap();
        let mut serials = Vec::new();
        for sid in sids {
            let issued = issue(&ca, sid, &key).unwrap();
            serials.push(issued.serial.to_string());
            store
                .commit(&[crate::protocol::cert_record(
                    issued,
                    Origin::Certboard,
                    crate::store::Authorisation::Open,
                )])
                .unwrap();
        }
        store
            .commit(&[Record::Report(ReportRecord {
                receipt_id: 42,
                sid: sids[0].into(),
                serial: Serial::parse_hex(&serials[0]).unwrap(),
                received_at: now_unix(),
                text: "first line\nsecond line\n".into(),
                origin: Origin::Certboard,
                assignment: "lab".into(),
                late_by: None,
            })])
            .unwrap();
        (store, serials)
    }

    fn text(f: impl FnOnce(&mut dyn Write) -> Result<(), AdminError>) -> String {
        let mut out = Vec::new();
        f(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn revoke_by_serial_in_any_form_then_list() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, serials) = store_with(dir.path(), &["alice", "bob"]);
        let listed = text(|out| list_certs(&mut store, out));
        assert_eq!(listed.lines().count(), 2, "{listed}");
        assert_eq!(listed.matches("status=good").count(), 2, "{listed}");

        // Lower case, a 0x prefix and leading zeros name the same serial.
        let given = format!("0x00{}", serials[0].to_lowercase());
        let target = RevokeTarget::Serial(given);
        assert_eq!(
            revoke(&mut store, &target, RevokeReason::KeyCompromise).unwrap(),
            1
        );
        assert_eq!(
            revoke(&mut store, &target, RevokeReason::KeyCompromise).unwrap(),
            0
        );
        let listed = text(|out| list_certs(&mut store, out));
        let alice = listed.lines().find(|l| l.contains("sid=alice")).unwrap();
        assert!(alice.contains("(keyCompromise)"), "{alice}");
        assert!(listed
            .lines()
            .any(|l| l.contains("sid=bob") && l.contains("status=good")));
    }

    #[test]
    fn revoke_by_sid_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = store_with(dir.path(), &["alice"]);
        let sid = |s: &str| RevokeTarget::Sid(s.into());
        let reason = RevokeReason::Superseded;
        assert_eq!(revoke(&mut store, &sid("alice"), reason).unwrap(), 1);
        assert!(matches!(
            revoke(&mut store, &sid("nobody"), reason),
            Err(AdminError::NotFound(_))
        ));
        assert!(matches!(
            revoke(&mut store, &sid("a b"), reason),
            Err(AdminError::BadSid { .. })
        ));
        let serial = |s: &str| RevokeTarget::Serial(s.into());
        assert!(matches!(
            revoke(&mut store, &serial("xyz"), reason),
            Err(AdminError::BadSerial(_))
        ));
        assert!(matches!(
            revoke(&mut store, &serial("ABCDEF"), reason),
            Err(AdminError::NotFound(_))
        ));
    }

    #[test]
    fn reports_are_listed_by_their_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, serials) = store_with(dir.path(), &["alice"]);
        let listed = text(|out| list_reports(&mut store, out));
        assert!(listed.starts_with("receipt=42 sid=alice "), "{listed}");
        assert!(
            listed.contains(&format!("serial={}", serials[0])),
            "{listed}"
        );
        assert!(listed.contains("lines=2 first=\"first line\""), "{listed}");
    }
}
