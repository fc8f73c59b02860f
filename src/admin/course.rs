//! The instructor's course commands: import the roster, hand out
//! enrollment codes, and see who has enrolled and submitted.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::course::code::EnrollCode;
use crate::escape::{escaped, needs_escape};
use crate::fsutil;
use crate::store::{CertRow, Storage, Student};
use crate::time::{now_unix, rfc3339};

use super::csv;

/// The longest roster name taken, in characters.
const MAX_NAME_CHARS: usize = 200;
use super::{AdminError, Format};

/// What `roster import` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Students in the file.
    pub students: usize,
    /// What changed in the store.
    pub change: crate::store::RosterChange,
    /// Certificates no code vouches for, still unrevoked after the import
    /// (kept, or the roster was already in force).
    pub unverified: Vec<CertRow>,
    /// How many of them `--revoke-unverified` revoked.
    pub revoked: usize,
}

/// What to do with the certificates of open enrollment when a roster
/// comes into force over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unverified {
    /// Refuse the import, listing them (when the roster is not yet in force).
    #[default]
    Ask,
    /// Revoke them ([`UNVERIFIED_REASON`]).
    Revoke,
    /// Keep them unrevoked (they neither renew nor submit under a roster).
    Keep,
}

/// The reason `--revoke-unverified` gives: RFC 5280's privilegeWithdrawn
/// ("the privilege granted by the certificate has been withdrawn"). The
/// key is not known to be compromised, the student did not leave the
/// course (affiliationChanged), and no new certificate replaces it
/// (superseded): the open enrollment that granted it is what ended.
pub const UNVERIFIED_REASON: crate::store::RevocationReason =
    crate::store::RevocationReason::PrivilegeWithdrawn;

/// The certificates no enrollment code vouches for that still count:
/// unrevoked and unexpired.
fn unverified_certs(store: &mut dyn Storage) -> Result<Vec<CertRow>, AdminError> {
    let now = now_unix();
    Ok(store
        .certs()?
        .into_iter()
        .filter(|c| !c.vouched && c.revoked.is_none() && c.not_after > now)
        .collect())
}

/// Reads a roster CSV (a header with `sid` and `name`; other columns
/// ignored) and imports it in one transaction: every bad row is reported by
/// line number and then nothing is imported.
///
/// A roster coming into force over certificates of open enrollment (which
/// anyone could have requested for any SID) needs the instructor's
/// decision, `unverified`: without one the import is refused with the list
/// ([`AdminError::Unverified`]). Revoking happens after the import, so a
/// certificate issued by open enrollment meanwhile is revoked too.
pub fn import_roster(
    store: &mut dyn Storage,
    path: &Path,
    unverified: Unverified,
) -> Result<Imported, AdminError> {
    let text = std::fs::read_to_string(path).map_err(|source| AdminError::File {
        path: path.to_path_buf(),
        source,
    })?;
    import_roster_text(store, &text, path, unverified)
}

/// [`import_roster`] of a roster already read (the staff interface's
/// upload); `path` names it in errors.
pub fn import_roster_text(
    store: &mut dyn Storage,
    text: &str,
    path: &Path,
    unverified: Unverified,
) -> Result<Imported, AdminError> {
    let students = parse_roster(text).map_err(|problems| AdminError::BadRoster {
        path: path.to_path_buf(),
        problems,
    })?;
    let roster_was_on = store.enrollment_view("")?.roster_on;
    if !roster_was_on && unverified == Unverified::Ask {
        let certs = unverified_certs(store)?;
        if !certs.is_empty() {
            return Err(AdminError::Unverified { certs });
        }
    }
    let change = store.import_roster(&students)?;
    let mut left = unverified_certs(store)?;
    let mut revoked = 0;
    if unverified == Unverified::Revoke {
        let now = now_unix();
        for c in &left {
            revoked += store.revoke_serial(&c.serial, UNVERIFIED_REASON, now)?;
        }
        left = unverified_certs(store)?;
    }
    Ok(Imported {
        students: students.len(),
        change,
        unverified: left,
        revoked,
    })
}

/// The students of a roster CSV, or every problem found, by line.
pub fn parse_roster(text: &str) -> Result<Vec<Student>, Vec<(usize, String)>> {
    let records = csv::parse(text).map_err(|e| vec![(e.line, e.why.to_string())])?;
    let Some(((_, header), rows)) = records.split_first() else {
        return Err(vec![(
            1,
            "the file is empty (expected a header `sid,name`)".into(),
        )]);
    };
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    // A column named twice: which one is meant cannot be guessed.
    for key in ["sid", "name", "email"] {
        let n = header
            .iter()
            .filter(|h| h.trim().eq_ignore_ascii_case(key))
            .count();
        if n > 1 {
            return Err(vec![(
                1,
                format!("the header names the column `{key}` {n} times: keep one"),
            )]);
        }
    }
    let (Some(sid_col), Some(name_col)) = (column("sid"), column("name")) else {
        return Err(vec![(
            1,
            format!("the header must name columns `sid` and `name` (found {header:?})"),
        )]);
    };
    // Optional: codes are then written with it (`roster codes`, `--eml`).
    let email_col = column("email");
    let mut problems = Vec::new();
    let mut students = Vec::new();
    let mut seen = HashSet::new();
    for (line, row) in rows {
        let sid = row.get(sid_col).map(|s| s.trim()).unwrap_or("");
        let name = row.get(name_col).map(|s| s.trim()).unwrap_or("");
        if let Err(e) = crate::sid::validate(sid) {
            problems.push((*line, format!("SID {sid:?}: {e}")));
            continue;
        }
        if name.is_empty() {
            problems.push((*line, format!("SID {sid}: no name")));
            continue;
        }
        // A name is shown in the instructor's terminal and exported: a
        // control or bidi-override character in one is never a real name,
        // only a way to rewrite her screen (the listings escape it anyway,
        // for names already stored).
        if let Some(c) = name.chars().find(|c| needs_escape(*c)) {
            problems.push((
                *line,
                format!(
                    "SID {sid}: the name {} holds a control or bidi character (U+{:04X}); \
                     remove it",
                    escaped(format_args!("{name:?}")),
                    u32::from(c)
                ),
            ));
            continue;
        }
        // Shown on pages, in exports and in a message's header and first
        // line (RFC 5322 lines end before 998 bytes): a real name is far
        // shorter.
        if name.chars().count() > MAX_NAME_CHARS {
            problems.push((
                *line,
                format!(
                    "SID {sid}: the name is {} characters long; at most {MAX_NAME_CHARS}",
                    name.chars().count()
                ),
            ));
            continue;
        }
        if !seen.insert(sid.to_string()) {
            problems.push((*line, format!("SID {sid} appears twice")));
            continue;
        }
        let email = match email_col.map(|c| row.get(c).map(|s| s.trim()).unwrap_or("")) {
            None | Some("") => None,
            Some(e) => match super::email::check_address(e) {
                Ok(()) => Some(e.to_string()),
                Err(why) => {
                    problems.push((*line, format!("SID {sid}: {why}")));
                    continue;
                }
            },
        };
        students.push(Student {
            sid: sid.to_string(),
            name: name.to_string(),
            email,
        });
    }
    if problems.is_empty() {
        Ok(students)
    } else {
        Err(problems)
    }
}

/// Which students `roster codes` gives a code.
#[derive(Debug, Clone, Default)]
pub struct CodeRequest {
    /// Only this SID (which may have used its code: a revoked student
    /// needs a new one).
    pub sid: Option<String>,
    /// Replace unused codes too (and clear the wrong-code lock).
    pub reissue: bool,
}

/// Makes a code for every roster student who needs one (see
/// [`CodeRequest`]; without `--sid`, those never given one), stores only
/// their keys, and writes `sid,code` to `out`, created new and 0600. The
/// codes exist only in that file. Returns how many were written.
pub fn issue_codes(
    store: &mut dyn Storage,
    out: &Path,
    req: &CodeRequest,
) -> Result<usize, AdminError> {
    let roster = store.roster()?;
    let wanted: Vec<&str> = match &req.sid {
        Some(sid) => {
            let entry = roster
                .iter()
                .find(|e| &e.sid == sid && e.dropped_at.is_none())
                .ok_or_else(|| AdminError::NotFound(format!("SID {sid} is not on the roster")))?;
            if entry.code.as_ref().is_some_and(|c| c.used_at.is_none()) && !req.reissue {
                return Err(AdminError::Refused(format!(
                    "SID {sid} already has an unused code; give --reissue to replace it (the \
                     old one stops working)"
                )));
            }
            vec![sid.as_str()]
        }
        None => roster
            .iter()
            .filter(|e| e.dropped_at.is_none())
            .filter(|e| match &e.code {
                None => true,
                Some(c) => req.reissue && c.used_at.is_none(),
            })
            .map(|e| e.sid.as_str())
            .collect(),
    };
    if wanted.is_empty() {
        return Ok(0);
    }
    let mut codes = Vec::with_capacity(wanted.len());
    let mut keys = Vec::with_capacity(wanted.len());
    for sid in &wanted {
        let code = EnrollCode::generate()?;
        keys.push((sid.to_string(), code.key(sid)?));
        codes.push((sid.to_string(), code));
    }
    // The file first: codes stored but never written down would be lost.
    let file_err = |source| AdminError::File {
        path: out.to_path_buf(),
        source,
    };
    let mut file = fsutil::create_private(out).map_err(file_err)?;
    let stored = match store.store_codes(&keys, now_unix(), req.reissue) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(out);
            return Err(e.into());
        }
    };
    let stored: HashSet<String> = stored.into_iter().collect();
    let with_email = roster.iter().any(|e| e.email.is_some());
    let mut text = if with_email {
        csv::record(&["sid", "name", "email", "code"])
    } else {
        csv::record(&["sid", "code"])
    };
    for (sid, code) in codes.iter().filter(|(sid, _)| stored.contains(sid)) {
        if with_email {
            let entry = roster.iter().find(|e| &e.sid == sid);
            let name = entry.map_or("", |e| e.name.as_str());
            let email = entry.and_then(|e| e.email.as_deref()).unwrap_or("");
            text.push_str(&csv::record(&[sid, name, email, &code.grouped()]));
        } else {
            text.push_str(&csv::record(&[sid, &code.grouped()]));
        }
    }
    file.write_all(text.as_bytes()).map_err(file_err)?;
    file.sync_all().map_err(file_err)?;
    Ok(stored.len())
}

/// `roster codes --sid SID --reissue` for the staff interface: her new
/// code is returned (to be shown once) instead of written to a file; the
/// store keeps only its key, as for the command.
pub fn reissue_code(store: &mut dyn Storage, sid: &str) -> Result<String, AdminError> {
    let roster = store.roster()?;
    if !roster
        .iter()
        .any(|e| e.sid == sid && e.dropped_at.is_none())
    {
        return Err(AdminError::NotFound(format!(
            "SID {sid} is not on the roster"
        )));
    }
    let code = EnrollCode::generate()?;
    let key = code.key(sid)?;
    let stored = store.store_codes(&[(sid.to_string(), key)], now_unix(), true)?;
    if stored.iter().any(|s| s == sid) {
        Ok(code.grouped())
    } else {
        Err(AdminError::Refused(format!(
            "no code was stored for SID {sid}"
        )))
    }
}

/// One student's line of `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    /// The SID.
    pub sid: String,
    /// Her name (empty without a roster).
    pub name: String,
    /// Her current certificate: the newest unrevoked one a code vouches
    /// for, else (no such one) the newest unrevoked, else the newest.
    pub cert: Option<CertRow>,
    /// A roster is in force and no code vouches for `cert` (open
    /// enrollment before the roster): not hers until she enrolls with her
    /// code; it neither renews nor submits.
    pub unvouched: bool,
    /// Reports accepted.
    pub reports: usize,
    /// When her last report came.
    pub last_report: Option<i64>,
    /// Her code: none, unused or used (nothing locks a code: guessing is
    /// bounded per address instead).
    pub code: &'static str,
    /// Code guesses for her SID in the last 24 hours, from any address,
    /// right or wrong (each is counted before it is checked).
    pub guesses: u64,
}

/// The course at a glance: one row per roster student (per SID seen,
/// without a roster).
pub fn status_rows(store: &mut dyn Storage) -> Result<Vec<StatusRow>, AdminError> {
    let mut roster = store.roster()?;
    // A student removed from the roster (`roster remove`) no longer counts.
    let removed = roster.iter().any(|e| e.dropped_at.is_some());
    roster.retain(|e| e.dropped_at.is_none());
    let mut certs: BTreeMap<String, Vec<CertRow>> = BTreeMap::new();
    for c in store.certs()? {
        certs.entry(c.sid.clone()).or_default().push(c);
    }
    let mut reports: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    for r in store.reports()? {
        let e = reports.entry(r.sid.clone()).or_insert((0, r.received_at));
        e.0 += 1;
        e.1 = e.1.max(r.received_at);
    }
    // The lab handed in by version 3 (the lab run under `--min-protocol 3`)
    // is a file to the default assignment: it counts as her lab report.
    for u in store.uploads()? {
        if u.assignment == crate::store::DEFAULT_ASSIGNMENT {
            let e = reports.entry(u.sid.clone()).or_insert((0, u.received_at));
            e.0 += 1;
            e.1 = e.1.max(u.received_at);
        }
    }
    let mut who: Vec<(String, String, &'static str, u64)> = roster
        .iter()
        .map(|e| {
            let code = match &e.code {
                None => "none",
                Some(c) if c.used_at.is_some() => "used",
                Some(_) => "unused",
            };
            (e.sid.clone(), e.name.clone(), code, e.recent_guesses)
        })
        .collect();
    // The roster stays in force while it lists anyone, removed or not (as
    // the store's enrollment view sees it).
    let roster_on = !roster.is_empty() || removed;
    if !roster_on {
        let seen: std::collections::BTreeSet<&String> =
            certs.keys().chain(reports.keys()).collect();
        who = seen
            .into_iter()
            .map(|s| (s.clone(), String::new(), "none", 0))
            .collect();
    }
    Ok(who
        .into_iter()
        .map(|(sid, name, code, guesses)| {
            // Oldest first in the store: the last unrevoked one a code
            // vouches for is current; an impostor's certificate from open
            // enrollment is never shown as hers once there is a roster.
            let mine = certs.remove(&sid).unwrap_or_default();
            let live = || mine.iter().rev().filter(|c| c.revoked.is_none());
            let cert = live()
                .find(|c| c.vouched)
                .or_else(|| live().next())
                .or(mine.last())
                .cloned();
            let unvouched = roster_on
                && cert
                    .as_ref()
                    .is_some_and(|c| c.revoked.is_none() && !c.vouched);
            let (n, last) = reports
                .get(&sid)
                .copied()
                .map_or((0, None), |(n, t)| (n, Some(t)));
            StatusRow {
                sid,
                name,
                cert,
                unvouched,
                reports: n,
                last_report: last,
                code,
                guesses,
            }
        })
        .collect())
}

/// `server status`: the rows in `format`, the table ending with totals and
/// the submission window last recorded by the server.
pub fn status(
    store: &mut dyn Storage,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let rows = status_rows(store)?;
    let (open, close) = store.recorded_window()?;
    let window = crate::course::Window { open, close };
    let now = now_unix();
    let fields = |r: &StatusRow| {
        let serial = r
            .cert
            .as_ref()
            .map(|c| c.serial.to_string())
            .unwrap_or_default();
        let until = r
            .cert
            .as_ref()
            .map(|c| rfc3339(c.not_after))
            .unwrap_or_default();
        let revoked = r.cert.as_ref().is_some_and(|c| c.revoked.is_some());
        let last = r.last_report.map(rfc3339).unwrap_or_default();
        (serial, until, revoked, last)
    };
    // Whether a code vouches for the certificate shown: "no" only while a
    // roster is in force and none does (it neither renews nor submits).
    let vouched = |r: &StatusRow| if r.unvouched { "no" } else { "yes" };
    match format {
        Format::Json => {
            let list: Vec<_> = rows
                .iter()
                .map(|r| {
                    let (serial, until, revoked, _) = fields(r);
                    json!({
                        "sid": r.sid,
                        "name": r.name,
                        "certificate": if serial.is_empty() { None } else { Some(serial) },
                        "valid_until": if until.is_empty() { None } else { Some(until) },
                        "revoked": revoked,
                        "vouched": !r.unvouched,
                        "reports": r.reports,
                        "last_report": r.last_report.map(rfc3339),
                        "code": r.code,
                        "code_guesses_24h": r.guesses,
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::Value::Array(list))?;
        }
        Format::Csv => {
            out.write_all(
                csv::record(&[
                    "sid",
                    "name",
                    "certificate",
                    "valid_until",
                    "revoked",
                    "reports",
                    "last_report",
                    "code",
                    "vouched",
                ])
                .as_bytes(),
            )?;
            for r in &rows {
                let (serial, until, revoked, last) = fields(r);
                let line = csv::record(&[
                    &r.sid,
                    &r.name,
                    &serial,
                    &until,
                    if revoked { "yes" } else { "no" },
                    &r.reports.to_string(),
                    &last,
                    r.code,
                    vouched(r),
                ]);
                out.write_all(line.as_bytes())?;
            }
        }
        Format::Lines => {
            for r in &rows {
                let (serial, until, revoked, last) = fields(r);
                let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
                writeln!(
                    out,
                    "sid={} name={} certificate={} valid_until={} revoked={} reports={} \
                     last_report={} code={} vouched={}",
                    escaped(&r.sid),
                    escaped(format_args!("{:?}", r.name)),
                    escaped(dash(serial)),
                    dash(until),
                    if revoked { "yes" } else { "no" },
                    r.reports,
                    dash(last),
                    r.code,
                    vouched(r)
                )?;
            }
        }
        Format::Table => {
            writeln!(
                out,
                "{:<12} {:<24} {:<34} {:<21} {:<8} {:>7} {:<21} {:<8} vouched",
                "sid",
                "name",
                "certificate",
                "valid_until",
                "revoked",
                "reports",
                "last_report",
                "code"
            )?;
            for r in &rows {
                let (serial, until, revoked, last) = fields(r);
                let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
                writeln!(
                    out,
                    "{:<12} {:<24} {:<34} {:<21} {:<8} {:>7} {:<21} {:<8} {}",
                    // Escaped before padding: `Escaped` ignores widths.
                    escaped(&r.sid).to_string(),
                    if r.name.is_empty() {
                        "-".to_string()
                    } else {
                        escaped(&r.name).to_string()
                    },
                    escaped(dash(serial)).to_string(),
                    dash(until),
                    if revoked { "yes" } else { "no" },
                    r.reports,
                    dash(last),
                    r.code,
                    vouched(r)
                )?;
            }
            let enrolled = rows
                .iter()
                .filter(|r| {
                    !r.unvouched
                        && r.cert
                            .as_ref()
                            .is_some_and(|c| c.revoked.is_none() && c.not_after > now)
                })
                .count();
            let unvouched = rows.iter().filter(|r| r.unvouched).count();
            let submitted = rows.iter().filter(|r| r.reports > 0).count();
            let missing: Vec<&str> = rows
                .iter()
                .filter(|r| r.reports == 0)
                .map(|r| r.sid.as_str())
                .collect();
            let guessed: Vec<String> = rows
                .iter()
                .filter(|r| r.guesses > 0 && r.code != "used")
                .map(|r| format!("{} {}", r.sid, r.guesses))
                .collect();
            writeln!(
                out,
                "total {}: enrolled {enrolled}, submitted {submitted}, missing {}{}{}{}",
                rows.len(),
                missing.len(),
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", escaped(missing.join(" ")))
                },
                if unvouched > 0 {
                    format!(
                        ", unvouched {unvouched} (open-enrollment certificates: they neither \
                         renew nor submit)"
                    )
                } else {
                    String::new()
                },
                // Guesses at codes not yet used: someone trying (or a
                // student mistyping). Nothing is locked by them.
                if guessed.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; code guesses in 24 h at unused codes: {}",
                        escaped(guessed.join(", "))
                    )
                }
            )?;
            writeln!(out, "submissions: {}", window.describe())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_roster_header_naming_a_column_twice_is_refused() {
        let refused = parse_roster("sid,name,Name\r\n1155000001,Chan,Wong\r\n");
        let said = format!("{refused:?}");
        assert!(said.contains("the column `name` 2 times"), "{said}");
        assert!(parse_roster("sid,name,email,email\r\n1,A,a@b.c,d@e.f\r\n").is_err());
        let ok = parse_roster("\u{feff}sid,name,email\r\n1155000001,Chan Tai Man,\r\n");
        assert!(ok.is_ok_and(|s| s.len() == 1 && s[0].email.is_none()));
    }
}
