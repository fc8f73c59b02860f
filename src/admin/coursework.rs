//! The instructor's coursework commands (issue 20): assignments and their
//! deadlines, extensions, the course's time zone, who handed in what for
//! an assignment (`status --assignment`), the gradebook, and removing a
//! student from the roster. Every change is a store write the running
//! server reads at the next submission: no restart.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::json;

use crate::assignment::{check_times, her_deadlines, show_duration, show_time, validate_id};
use crate::escape::escaped;
use crate::store::{Assignment, Storage, TIMEZONE_SETTING};
use crate::time::{now_unix, rfc3339};

use super::csv;
use super::{AdminError, Format};

/// The times and title `assignment add` or `edit` gives (`None`: not
/// given; an edit keeps the stored value).
#[derive(Debug, Clone, Default)]
pub struct AssignmentSpec {
    /// Title.
    pub title: Option<String>,
    /// Opening time, Unix seconds.
    pub opens: Option<i64>,
    /// Due time.
    pub due: Option<i64>,
    /// End of the late period.
    pub late_until: Option<i64>,
    /// Accept a due time in the past.
    pub force: bool,
    /// `edit` only: remove the opening time (open from now on).
    pub no_opens: bool,
    /// `edit` only: remove the late period (the due time closes it).
    pub no_late_until: bool,
}

fn bad(e: impl std::fmt::Display) -> AdminError {
    AdminError::Refused(e.to_string())
}

/// The course's zone, as stored.
pub fn timezone(store: &mut dyn Storage) -> Result<Option<String>, AdminError> {
    Ok(store.course_setting(TIMEZONE_SETTING)?)
}

/// `server course set --timezone ZONE`: how times are shown to people
/// (refusals, listings); `UTC` or an IANA name.
/// `course set --timezone NAME`: returns the name as stored (the tz
/// database's spelling).
pub fn set_timezone(store: &mut dyn Storage, zone: &str) -> Result<String, AdminError> {
    let zone = crate::assignment::canonical_zone(zone).map_err(bad)?;
    store.set_course_setting(TIMEZONE_SETTING, Some(&zone))?;
    Ok(zone)
}

fn find(store: &mut dyn Storage, id: &str) -> Result<Option<Assignment>, AdminError> {
    Ok(store.assignments()?.into_iter().find(|a| a.id == id))
}

fn check_title(title: &str) -> Result<(), AdminError> {
    if title.trim().is_empty() || title.chars().any(crate::escape::needs_escape) {
        return Err(bad(format_args!(
            "--title {:?}: give a title without control or bidi characters",
            escaped(title)
        )));
    }
    Ok(())
}

/// `assignment add ID --title T --due TIME [--opens] [--late-until]`.
pub fn add_assignment(
    store: &mut dyn Storage,
    id: &str,
    spec: &AssignmentSpec,
) -> Result<Assignment, AdminError> {
    if spec.no_opens || spec.no_late_until {
        return Err(bad(
            "--no-opens and --no-late-until clear a time of an existing assignment: give them to \
             `assignment edit`",
        ));
    }
    validate_id(id).map_err(bad)?;
    if find(store, id)?.is_some() {
        return Err(bad(format_args!(
            "assignment {id} already exists (change it with `assignment edit {id}`)"
        )));
    }
    let title = spec.title.clone().ok_or_else(|| bad("give --title TEXT"))?;
    check_title(&title)?;
    let a = Assignment {
        id: id.to_string(),
        title,
        opens: spec.opens,
        due: Some(spec.due.ok_or_else(|| bad("give --due TIME"))?),
        late_until: spec.late_until,
        closed_at: None,
    };
    let zone = timezone(store)?;
    check_times(&a, now_unix(), spec.force, zone.as_deref()).map_err(bad)?;
    store.put_assignment(&a)?;
    Ok(a)
}

/// `assignment edit ID [...]`: the fields given replace the stored ones;
/// the running server uses them from its next submission on.
pub fn edit_assignment(
    store: &mut dyn Storage,
    id: &str,
    spec: &AssignmentSpec,
) -> Result<Edited, AdminError> {
    let mut a =
        find(store, id)?.ok_or_else(|| AdminError::NotFound(format!("no assignment {id:?}")))?;
    if let Some(t) = &spec.title {
        check_title(t)?;
        a.title = t.clone();
    }
    if spec.no_opens && spec.opens.is_some() {
        return Err(bad(
            "--opens and --no-opens contradict each other: give one",
        ));
    }
    if spec.no_late_until && spec.late_until.is_some() {
        return Err(bad(
            "--late-until and --no-late-until contradict each other: give one",
        ));
    }
    a.opens = if spec.no_opens {
        None
    } else {
        spec.opens.or(a.opens)
    };
    a.late_until = if spec.no_late_until {
        None
    } else {
        spec.late_until.or(a.late_until)
    };
    let zone = timezone(store)?;
    let mut reopened = false;
    if let Some(d) = spec.due {
        a.due = Some(d);
        // A due time moved again opens what a `close` shut (said to the
        // caller: `Edited::reopened`).
        reopened = a.closed_at.take().is_some();
        // A late period the new due time would pass is not dropped or
        // moved behind her back: the instructor says which.
        if let Some(l) = a.late_until.filter(|l| *l < d) {
            if spec.late_until.is_none() && !spec.no_late_until {
                return Err(bad(format_args!(
                    "the late period of {id} ends {}, before the new due time {}: give \
                     --late-until TIME (after the due time) or --no-late-until",
                    show_time(l, zone.as_deref()),
                    show_time(d, zone.as_deref())
                )));
            }
        }
    }
    // Only a due time given now must not be past.
    let force = spec.force || spec.due.is_none();
    check_times(&a, now_unix(), force, zone.as_deref()).map_err(bad)?;
    store.put_assignment(&a)?;
    Ok(Edited {
        assignment: a,
        reopened,
    })
}

/// What `assignment edit` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    /// The assignment as stored now.
    pub assignment: Assignment,
    /// A new due time reopened an assignment `close` had shut.
    pub reopened: bool,
}

/// `assignment close ID`: nothing more is taken, from now on, extensions
/// included.
pub fn close_assignment(store: &mut dyn Storage, id: &str) -> Result<Assignment, AdminError> {
    let mut a =
        find(store, id)?.ok_or_else(|| AdminError::NotFound(format!("no assignment {id:?}")))?;
    a.closed_at = Some(now_unix());
    store.put_assignment(&a)?;
    Ok(a)
}

/// `extend --sid SID --assignment ID --until TIME`: her own due time.
pub fn extend(
    store: &mut dyn Storage,
    sid: &str,
    id: &str,
    until: i64,
) -> Result<(Option<i64>, Option<i64>), AdminError> {
    crate::sid::validate(sid).map_err(|source| AdminError::BadSid {
        sid: sid.to_string(),
        source,
    })?;
    let a =
        find(store, id)?.ok_or_else(|| AdminError::NotFound(format!("no assignment {id:?}")))?;
    // With a roster in force, a SID on no roster is a typo, not a student.
    let roster = store.roster()?;
    if !roster.is_empty() {
        match roster.iter().find(|e| e.sid == sid) {
            None => {
                return Err(AdminError::NotFound(format!(
                    "SID {sid} is not on the course roster: no extension given"
                )))
            }
            Some(e) if e.dropped_at.is_some() => {
                return Err(AdminError::NotFound(format!(
                    "SID {sid} was removed from the roster: no extension given"
                )))
            }
            Some(_) => {}
        }
    }
    if a.due.is_none() {
        return Err(bad(format_args!(
            "assignment {id} has no due time, so nothing of it is late: an extension needs one \
             (`server assignment edit {id} --due TIME`)"
        )));
    }
    if a.due.is_some_and(|d| until <= d) {
        return Err(bad(format_args!(
            "--until must be after the assignment's due time {} (an extension moves her due \
             time later)",
            show_time(a.due.unwrap_or_default(), timezone(store)?.as_deref())
        )));
    }
    store.extend(sid, id, until, now_unix())?;
    Ok(her_deadlines(&a, Some(until)))
}

/// `roster remove SID`: she no longer counts (status, gradebook) nor may
/// enroll; her certificates, reports and receipts stay.
pub fn remove_student(store: &mut dyn Storage, sid: &str) -> Result<(), AdminError> {
    if store.drop_student(sid, now_unix())? {
        Ok(())
    } else {
        Err(AdminError::NotFound(format!(
            "SID {sid} is not on the roster (or was already removed)"
        )))
    }
}

fn opt_time(t: Option<i64>, zone: Option<&str>) -> String {
    t.map(|t| show_time(t, zone)).unwrap_or_default()
}

/// `assignment list`.
pub fn list_assignments(
    store: &mut dyn Storage,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let list = store.assignments()?;
    let zone = timezone(store)?;
    let z = zone.as_deref();
    let utc = |t: Option<i64>| t.map(rfc3339).unwrap_or_default();
    match format {
        Format::Json => {
            let v: Vec<_> = list
                .iter()
                .map(|a| {
                    json!({
                        "id": a.id, "title": a.title, "opens": a.opens.map(rfc3339),
                        "due": a.due.map(rfc3339), "late_until": a.late_until.map(rfc3339),
                        "closed_at": a.closed_at.map(rfc3339),
                    })
                })
                .collect();
            writeln!(out, "{}", json!({ "timezone": zone, "assignments": v }))
        }
        Format::Csv => {
            let mut text = csv::record(&["id", "title", "opens", "due", "late_until", "closed_at"]);
            for a in &list {
                text.push_str(&csv::record(&[
                    &a.id,
                    &a.title,
                    &utc(a.opens),
                    &utc(a.due),
                    &utc(a.late_until),
                    &utc(a.closed_at),
                ]));
            }
            out.write_all(text.as_bytes())
        }
        Format::Table | Format::Lines => {
            for a in &list {
                writeln!(
                    out,
                    "{}\t{}\topens={}\tdue={}\tlate_until={}{}",
                    a.id,
                    escaped(&a.title),
                    opt_time(a.opens, z),
                    opt_time(a.due, z),
                    opt_time(a.late_until, z),
                    a.closed_at
                        .map(|c| format!("\tclosed={}", show_time(c, z)))
                        .unwrap_or_default()
                )?;
            }
            writeln!(
                out,
                "times in {}",
                z.unwrap_or("UTC (no course --timezone)")
            )
        }
    }
    .map_err(AdminError::Io)
}

/// One student's standing on one assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The SID.
    pub sid: String,
    /// Her name.
    pub name: String,
    /// Her latest submission to it (a report or a file), if any.
    pub latest: Option<Submitted>,
    /// Her extension (her own due time), if any.
    pub extension: Option<i64>,
}

impl Standing {
    /// `on_time`, `late` or `missing`.
    pub fn status(&self) -> &'static str {
        match &self.latest {
            None => "missing",
            Some(r) if r.late_by.is_some() => "late",
            Some(_) => "on_time",
        }
    }
}

/// One accepted submission, a report's or a file's, as the instructor's
/// views show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Its receipt id.
    pub receipt_id: u64,
    /// When it was received, Unix seconds.
    pub received_at: i64,
    /// Seconds late, if late.
    pub late_by: Option<i64>,
    /// Lower-case hex SHA-256 of the report's text or the file's bytes.
    pub sha256: String,
}

impl Submitted {
    /// Lower-case hex of its SHA-256.
    pub fn sha256_hex(&self) -> String {
        self.sha256.clone()
    }
}

/// For every roster student still on it (every SID seen, without a
/// roster), her standing on each assignment: `(assignments, rows)` with
/// `rows[i][j]` student i on assignment j.
fn standings(store: &mut dyn Storage) -> Result<(Vec<Assignment>, Vec<Vec<Standing>>), AdminError> {
    let assignments = store.assignments()?;
    let roster = store.roster()?;
    let reports = store.reports()?;
    let uploads = store.uploads()?;
    let mut who: Vec<(String, String)> = roster
        .iter()
        .filter(|e| e.dropped_at.is_none())
        .map(|e| (e.sid.clone(), e.name.clone()))
        .collect();
    if roster.is_empty() {
        let seen: std::collections::BTreeSet<&String> = reports
            .iter()
            .map(|r| &r.sid)
            .chain(uploads.iter().map(|u| &u.sid))
            .collect();
        who = seen
            .into_iter()
            .map(|s| (s.clone(), String::new()))
            .collect();
    }
    // Oldest first: the last one kept is her latest.
    // Reports and files together (a version 2 report to `lab` beside a
    // file handed in for it).
    let mut all: Vec<(&str, &str, Submitted)> = reports
        .iter()
        .map(|r| {
            (
                r.sid.as_str(),
                r.assignment.as_str(),
                Submitted {
                    receipt_id: r.receipt_id,
                    received_at: r.received_at,
                    late_by: r.late_by,
                    sha256: r.sha256_hex(),
                },
            )
        })
        .chain(uploads.iter().map(|u| {
            (
                u.sid.as_str(),
                u.assignment.as_str(),
                Submitted {
                    receipt_id: u.receipt_id,
                    received_at: u.received_at,
                    // Stored as 0 when on time.
                    late_by: (u.late_seconds > 0).then_some(u.late_seconds),
                    sha256: u.sha256_hex(),
                },
            )
        }))
        .collect();
    all.sort_by_key(|(_, _, s)| s.received_at);
    let mut latest: BTreeMap<(&str, &str), Submitted> = BTreeMap::new();
    for (sid, assignment, sub) in all {
        latest.insert((sid, assignment), sub);
    }
    let ext: BTreeMap<(String, String), i64> = store
        .extensions()?
        .into_iter()
        .map(|e| ((e.sid, e.assignment), e.until))
        .collect();
    let rows = who
        .iter()
        .map(|(sid, name)| {
            assignments
                .iter()
                .map(|a| Standing {
                    sid: sid.clone(),
                    name: name.clone(),
                    latest: latest.get(&(sid.as_str(), a.id.as_str())).cloned(),
                    extension: ext.get(&(sid.clone(), a.id.clone())).copied(),
                })
                .collect()
        })
        .collect();
    Ok((assignments, rows))
}

/// `status --assignment ID`: per student on time, late (by how much),
/// missing, and her extension; the table ends with the totals.
pub fn assignment_status(
    store: &mut dyn Storage,
    id: &str,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let (assignments, rows) = standings(store)?;
    let j = assignments
        .iter()
        .position(|a| a.id == id)
        .ok_or_else(|| AdminError::NotFound(format!("no assignment {id:?}")))?;
    let zone = timezone(store)?;
    let z = zone.as_deref();
    let col: Vec<&Standing> = rows.iter().map(|r| &r[j]).collect();
    let late_by = |s: &Standing| s.latest.as_ref().and_then(|r| r.late_by);
    match format {
        Format::Json => {
            let v: Vec<_> = col
                .iter()
                .map(|s| {
                    json!({
                        "sid": s.sid, "name": s.name, "status": s.status(),
                        "late_seconds": late_by(s),
                        "received_at": s.latest.as_ref().map(|r| rfc3339(r.received_at)),
                        "receipt": s.latest.as_ref().map(|r| r.receipt_id.to_string()),
                        "extension_until": s.extension.map(rfc3339),
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::Value::Array(v))
        }
        Format::Csv => {
            let mut text = csv::record(&[
                "sid",
                "name",
                "status",
                "late_seconds",
                "received_at",
                "receipt",
                "extension_until",
            ]);
            for s in &col {
                text.push_str(&csv::record(&[
                    &s.sid,
                    &s.name,
                    s.status(),
                    &late_by(s).map(|l| l.to_string()).unwrap_or_default(),
                    &s.latest
                        .as_ref()
                        .map(|r| rfc3339(r.received_at))
                        .unwrap_or_default(),
                    &s.latest
                        .as_ref()
                        .map(|r| r.receipt_id.to_string())
                        .unwrap_or_default(),
                    &s.extension.map(rfc3339).unwrap_or_default(),
                ]));
            }
            out.write_all(text.as_bytes())
        }
        Format::Table | Format::Lines => {
            let a = &assignments[j];
            writeln!(
                out,
                "{} ({}) due {}{}",
                a.id,
                escaped(&a.title),
                opt_time(a.due, z),
                a.late_until
                    .map(|l| format!(", late until {}", show_time(l, z)))
                    .unwrap_or_default()
            )?;
            let (mut on_time, mut late, mut missing, mut extended) = (0, 0, 0, 0);
            for s in &col {
                let what = match (&s.latest, late_by(s)) {
                    (None, _) => {
                        missing += 1;
                        "missing".to_string()
                    }
                    (Some(r), Some(by)) => {
                        late += 1;
                        format!("late by {} ({})", show_duration(by), show_time(r.received_at, z))
                    }
                    (Some(r), None) => {
                        on_time += 1;
                        format!("on time ({})", show_time(r.received_at, z))
                    }
                };
                let ext = match s.extension {
                    Some(u) => {
                        extended += 1;
                        format!("\textension until {}", show_time(u, z))
                    }
                    None => String::new(),
                };
                writeln!(out, "{}\t{}\t{what}{ext}", s.sid, escaped(&s.name))?;
            }
            writeln!(
                out,
                "total {}: {on_time} on time, {late} late, {missing} missing, {extended} extension(s)",
                col.len()
            )
        }
    }
    .map_err(AdminError::Io)
}

/// `gradebook`: one row per roster student; for each assignment its
/// status (`on_time`, `late`, `missing`), the submission time (UTC), the
/// SHA-256 of what she handed in and the receipt id. Every CSV cell goes
/// through [`csv::record`], so no name becomes a formula.
pub fn gradebook(
    store: &mut dyn Storage,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let (assignments, rows) = standings(store)?;
    let email: BTreeMap<String, String> = store
        .roster()?
        .into_iter()
        .filter_map(|e| Some((e.sid, e.email?)))
        .collect();
    match format {
        Format::Json => {
            let v: Vec<_> = rows
                .iter()
                .filter_map(|row| {
                    let first = row.first()?;
                    let per: serde_json::Map<String, serde_json::Value> = row
                        .iter()
                        .zip(&assignments)
                        .map(|(s, a)| {
                            (
                                a.id.clone(),
                                json!({
                                    "status": s.status(),
                                    "late_seconds": s.latest.as_ref().and_then(|r| r.late_by),
                                    "received_at": s.latest.as_ref().map(|r| rfc3339(r.received_at)),
                                    "sha256": s.latest.as_ref().map(Submitted::sha256_hex),
                                    "receipt": s.latest.as_ref().map(|r| r.receipt_id.to_string()),
                                    "extension_until": s.extension.map(rfc3339),
                                }),
                            )
                        })
                        .collect();
                    Some(json!({
                        "sid": first.sid, "name": first.name,
                        "email": email.get(&first.sid), "assignments": per,
                    }))
                })
                .collect();
            writeln!(out, "{}", serde_json::Value::Array(v))
        }
        _ => {
            let mut header = vec!["sid".to_string(), "name".to_string(), "email".to_string()];
            for a in &assignments {
                for f in ["status", "received_at", "sha256", "receipt"] {
                    header.push(format!("{}_{f}", a.id));
                }
            }
            let refs: Vec<&str> = header.iter().map(String::as_str).collect();
            let mut text = csv::record(&refs);
            for row in &rows {
                let Some(first) = row.first() else {
                    continue;
                };
                let mut cells = vec![
                    first.sid.clone(),
                    first.name.clone(),
                    email.get(&first.sid).cloned().unwrap_or_default(),
                ];
                for s in row {
                    cells.push(s.status().to_string());
                    match &s.latest {
                        Some(r) => {
                            cells.push(rfc3339(r.received_at));
                            cells.push(r.sha256_hex());
                            cells.push(r.receipt_id.to_string());
                        }
                        None => cells.extend([String::new(), String::new(), String::new()]),
                    }
                }
                let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
                text.push_str(&csv::record(&refs));
            }
            out.write_all(text.as_bytes())
        }
    }
    .map_err(AdminError::Io)
}
