//! The GET pages, rendered by askama templates (`templates/staff/`),
//! which escape every value: a roster name holding `<script>` is shown as
//! text. Each page reads whole tables, one query per table, never one
//! query per student.

use std::collections::HashMap;

use askama::Template;

use super::forms::Form;
use super::{actions, Cx, StaffError};
use crate::assignment::show_time;
use crate::ops::http::Response;
use crate::store::{Assignment, CertRow, StaffSession, UploadRecord};

/// What every logged-in page's header shows.
#[derive(Debug)]
pub(crate) struct Nav {
    who: String,
    csrf: String,
    assignments: Vec<String>,
}

fn nav(cx: &mut Cx<'_>, s: &StaffSession) -> Result<(Nav, Vec<Assignment>), StaffError> {
    let assignments = cx.store.assignments()?;
    Ok((
        Nav {
            who: s.name.clone(),
            csrf: s.csrf.clone(),
            assignments: assignments.iter().map(|a| a.id.clone()).collect(),
        },
        assignments,
    ))
}

/// A nav for pages shown right after an action (no store read needed).
fn bare_nav(s: &StaffSession) -> Nav {
    Nav {
        who: s.name.clone(),
        csrf: s.csrf.clone(),
        assignments: Vec::new(),
    }
}

fn html(status: u16, t: &impl Template) -> Result<Response, StaffError> {
    Ok(Response::new(status, t.render()?.into_bytes()).content_type("text/html; charset=utf-8"))
}

#[derive(Template)]
#[template(path = "staff/login.html")]
struct Login<'a> {
    error: Option<&'a str>,
}

pub(crate) fn login_page(status: u16, error: Option<&str>) -> Result<Response, StaffError> {
    html(status, &Login { error })
}

#[derive(Template)]
#[template(path = "staff/message.html")]
struct Message<'a> {
    title: &'a str,
    text: &'a str,
}

/// An error page (`id="error"`); a plain-text one if even that fails.
pub(crate) fn message_page(status: u16, title: &str, text: &str) -> Response {
    match (Message { title, text }).render() {
        Ok(body) => {
            Response::new(status, body.into_bytes()).content_type("text/html; charset=utf-8")
        }
        Err(_) => Response::new(status, format!("{text}\n").into_bytes())
            .content_type("text/plain; charset=utf-8"),
    }
}

const STAFF_CSS: &str = include_str!("../../static/staff.css");

pub(crate) fn static_file(name: &str) -> Result<Response, StaffError> {
    match name {
        "staff.css" => Ok(Response::new(200, STAFF_CSS.as_bytes().to_vec())
            .content_type("text/css; charset=utf-8")
            .cache_control("max-age=300")),
        _ => Err(StaffError::NotFound(format!("/static/{name}"))),
    }
}

/// A student's standing on an assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    OnTime,
    Late,
    Missing,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::OnTime => "on-time",
            Status::Late => "late",
            Status::Missing => "missing",
        }
    }
}

/// Her latest submission to one assignment, report or file.
#[derive(Debug, Clone)]
struct Latest {
    at: i64,
    late: bool,
    /// A report's SHA-256 (hex); a file's is in `upload`, made hex only
    /// for the rows a page shows.
    report_sha256: Option<String>,
    upload: Option<UploadRecord>,
}

impl Latest {
    fn sha256_hex(&self) -> String {
        match (&self.report_sha256, &self.upload) {
            (Some(hex), _) => hex.clone(),
            (None, Some(u)) => u.sha256_hex(),
            (None, None) => String::new(),
        }
    }
}

/// The course's submissions, read once: latest per (SID, assignment).
struct Course {
    /// Who counts: active roster students (or every SID seen without a
    /// roster), with names.
    who: Vec<(String, String)>,
    /// Per assignment, then per SID: looked up by `&str`, without
    /// allocating, once per roster row and assignment.
    latest: HashMap<String, HashMap<String, Latest>>,
    extensions: HashMap<String, HashMap<String, i64>>,
    /// Every submission time per assignment (for the chart).
    times: HashMap<String, Vec<i64>>,
    zone: Option<String>,
    /// The roster as read for `who` (the overview counts from it too).
    roster: Vec<crate::store::RosterEntry>,
}

fn course(cx: &mut Cx<'_>) -> Result<Course, StaffError> {
    let roster = cx.store.roster()?;
    let reports = cx.store.reports()?;
    let uploads = cx.store.uploads()?;
    let mut extensions: HashMap<String, HashMap<String, i64>> = HashMap::new();
    for e in cx.store.extensions()? {
        extensions
            .entry(e.assignment)
            .or_default()
            .insert(e.sid, e.until);
    }
    let zone = crate::admin::timezone(&mut *cx.store)?;
    let mut latest: HashMap<String, HashMap<String, Latest>> = HashMap::new();
    let mut times: HashMap<String, Vec<i64>> = HashMap::new();
    let mut note = |sid: String, assignment: String, l: Latest| {
        match times.get_mut(&assignment) {
            Some(t) => t.push(l.at),
            None => {
                times.insert(assignment.clone(), vec![l.at]);
            }
        }
        let per = match latest.get_mut(&assignment) {
            Some(per) => per,
            None => latest.entry(assignment).or_default(),
        };
        match per.get_mut(&sid) {
            Some(old) if old.at <= l.at => *old = l,
            Some(_) => {}
            None => {
                per.insert(sid, l);
            }
        }
    };
    for r in reports {
        let l = Latest {
            at: r.received_at,
            late: r.late_by.is_some(),
            report_sha256: Some(r.sha256_hex()),
            upload: None,
        };
        note(r.sid, r.assignment, l);
    }
    for u in uploads {
        let (sid, assignment) = (u.sid.clone(), u.assignment.clone());
        let l = Latest {
            at: u.received_at,
            late: u.late_seconds > 0,
            report_sha256: None,
            upload: Some(u),
        };
        note(sid, assignment, l);
    }
    let mut who: Vec<(String, String)> = roster
        .iter()
        .filter(|e| e.dropped_at.is_none())
        .map(|e| (e.sid.clone(), e.name.clone()))
        .collect();
    if roster.is_empty() {
        let seen: std::collections::BTreeSet<&String> =
            latest.values().flat_map(|per| per.keys()).collect();
        who = seen
            .into_iter()
            .map(|s| (s.clone(), String::new()))
            .collect();
    }
    Ok(Course {
        who,
        roster,
        latest,
        extensions,
        times,
        zone,
    })
}

impl Course {
    fn status(&self, sid: &str, assignment: &str) -> (Status, Option<&Latest>) {
        match self.latest.get(assignment).and_then(|per| per.get(sid)) {
            None => (Status::Missing, None),
            Some(l) if l.late => (Status::Late, Some(l)),
            Some(l) => (Status::OnTime, Some(l)),
        }
    }

    fn time(&self, t: i64) -> String {
        show_time(t, self.zone.as_deref())
    }
}

struct AssignmentRow {
    id: String,
    title: String,
    due: String,
    on_time: usize,
    late: usize,
    missing: usize,
}

struct Line {
    id: String,
    points: String,
    label_y: i64,
}

struct Chart {
    width: i64,
    height: i64,
    base: i64,
    right: i64,
    days: i64,
    max: usize,
    lines: Vec<Line>,
}

/// Cumulative submissions over the `days` days before each due time, one
/// polyline per assignment with a due time; only numbers go into it.
fn chart(assignments: &[Assignment], times: &HashMap<String, Vec<i64>>) -> Chart {
    let (width, height, days) = (640_i64, 240_i64, 7_i64);
    let (left, right, top, base) = (40_i64, width - 80, 10_i64, height - 20);
    let span = days * 86_400;
    let mut series = Vec::new();
    for a in assignments {
        let Some(due) = a.due else { continue };
        let mut ts: Vec<i64> = times
            .get(&a.id)
            .map(|v| v.iter().copied().filter(|t| *t <= due).collect())
            .unwrap_or_default();
        ts.sort_unstable();
        series.push((a.id.clone(), due, ts));
    }
    let max = series
        .iter()
        .map(|(_, _, t)| t.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let y_of = |n: usize| base - (base - top) * i64::try_from(n).unwrap_or(0) / max as i64;
    let x_of = |t: i64, due: i64| {
        let from = due - span;
        left + (right - left) * (t.clamp(from, due) - from) / span
    };
    let lines = series
        .into_iter()
        .map(|(id, due, ts)| {
            let before = ts.iter().filter(|t| **t < due - span).count();
            let mut pts = vec![(left, y_of(before))];
            let mut n = before;
            // One step per pixel column, however many submissions fall in
            // it: the line has at most two points per column, so the page
            // stays small and quick for a large course.
            let mut recent = ts.iter().filter(|t| **t >= due - span).peekable();
            while let Some(t) = recent.next() {
                let x = x_of(*t, due);
                pts.push((x, y_of(n)));
                n += 1;
                while recent.peek().is_some_and(|u| x_of(**u, due) == x) {
                    recent.next();
                    n += 1;
                }
                pts.push((x, y_of(n)));
            }
            pts.push((right, y_of(n)));
            let mut points = String::with_capacity(pts.len() * 8);
            for (i, (x, y)) in pts.iter().enumerate() {
                use std::fmt::Write as _;
                let sep = if i == 0 { "" } else { " " };
                let _ = write!(points, "{sep}{x},{y}"); // ok: writing to a String cannot fail
            }
            Line {
                id,
                points,
                label_y: y_of(n),
            }
        })
        .collect();
    Chart {
        width,
        height,
        base,
        right,
        days,
        max,
        lines,
    }
}

#[derive(Template)]
#[template(path = "staff/overview.html")]
struct Overview {
    nav: Nav,
    enrolled: usize,
    not_enrolled: usize,
    locked: usize,
    assignments: Vec<AssignmentRow>,
    chart: Chart,
}

pub(crate) fn overview(cx: &mut Cx<'_>, s: &StaffSession) -> Result<Response, StaffError> {
    let (nav, assignments) = nav(cx, s)?;
    let c = course(cx)?;
    let certs = cx.store.certs()?;
    let roster = &c.roster;
    let now = cx.now;
    let enrolled_sids: std::collections::HashSet<&str> = certs
        .iter()
        .filter(|c| c.revoked.is_none() && c.not_after > now)
        .map(|c| c.sid.as_str())
        .collect();
    let active: Vec<_> = roster.iter().filter(|e| e.dropped_at.is_none()).collect();
    let enrolled = active
        .iter()
        .filter(|e| enrolled_sids.contains(e.sid.as_str()))
        .count();
    let per_sid = u64::from(crate::store::GuessLimits::default().per_sid_source);
    let locked = active
        .iter()
        .filter(|e| !enrolled_sids.contains(e.sid.as_str()) && e.recent_guesses >= per_sid)
        .count();
    let rows = assignments
        .iter()
        .map(|a| {
            let mut row = AssignmentRow {
                id: a.id.clone(),
                title: a.title.clone(),
                due: a.due.map(|d| c.time(d)).unwrap_or_else(|| "none".into()),
                on_time: 0,
                late: 0,
                missing: 0,
            };
            for (sid, _) in &c.who {
                match c.status(sid, &a.id).0 {
                    Status::OnTime => row.on_time += 1,
                    Status::Late => row.late += 1,
                    Status::Missing => row.missing += 1,
                }
            }
            row
        })
        .collect();
    let chart = chart(&assignments, &c.times);
    html(
        200,
        &Overview {
            nav,
            enrolled,
            not_enrolled: active.len() - enrolled,
            locked,
            assignments: rows,
            chart,
        },
    )
}

struct StudentRow {
    sid: String,
    name: String,
    status: &'static str,
    at: Option<i64>,
    time: String,
    extension: String,
    sha256: String,
    file: Option<String>,
}

#[derive(Template)]
#[template(path = "staff/assignment.html")]
struct AssignmentPage {
    nav: Nav,
    id: String,
    title: String,
    due: String,
    filter: String,
    sort: String,
    dir: String,
    filters: Vec<(&'static str, &'static str)>,
    columns: Vec<(&'static str, &'static str, &'static str)>,
    rows: Vec<StudentRow>,
}

const FILTERS: [(&str, &str); 5] = [
    ("all", "all"),
    ("not-submitted", "not submitted"),
    ("submitted", "submitted"),
    ("late", "late"),
    ("extension", "with an extension"),
];

/// The table of one assignment, filtered and sorted as asked.
fn assignment_rows(
    cx: &mut Cx<'_>,
    a: &Assignment,
    q: &Form,
) -> Result<(Vec<StudentRow>, String, String, String), StaffError> {
    let c = course(cx)?;
    let filter = q.get("filter").unwrap_or("all");
    let filter = FILTERS
        .iter()
        .find(|(f, _)| *f == filter)
        .map_or("all", |(f, _)| f);
    let sort = ["sid", "name", "time", "status"]
        .into_iter()
        .find(|s| q.get("sort") == Some(*s))
        .unwrap_or("sid");
    let dir = if q.get("dir") == Some("desc") {
        "desc"
    } else {
        "asc"
    };
    let mut rows: Vec<(Status, StudentRow)> = c
        .who
        .iter()
        .map(|(sid, name)| {
            let (status, latest) = c.status(sid, &a.id);
            let ext = c
                .extensions
                .get(&a.id)
                .and_then(|per| per.get(sid))
                .copied();
            (
                status,
                StudentRow {
                    sid: sid.clone(),
                    name: name.clone(),
                    status: status.as_str(),
                    at: latest.map(|l| l.at),
                    time: latest.map(|l| c.time(l.at)).unwrap_or_default(),
                    extension: ext.map(|t| c.time(t)).unwrap_or_default(),
                    sha256: latest.map(Latest::sha256_hex).unwrap_or_default(),
                    file: latest
                        .and_then(|l| l.upload.as_ref())
                        .map(|u| u.file_name.clone()),
                },
            )
        })
        .filter(|(st, r)| match filter {
            "not-submitted" => *st == Status::Missing,
            "submitted" => *st != Status::Missing,
            "late" => *st == Status::Late,
            "extension" => !r.extension.is_empty(),
            _ => true,
        })
        .collect();
    rows.sort_by(|(sa, a), (sb, b)| {
        let o = match sort {
            "name" => a.name.cmp(&b.name),
            "time" => a.at.cmp(&b.at),
            "status" => sa.cmp(sb),
            _ => std::cmp::Ordering::Equal,
        };
        o.then_with(|| a.sid.cmp(&b.sid))
    });
    if dir == "desc" {
        rows.reverse();
    }
    Ok((
        rows.into_iter().map(|(_, r)| r).collect(),
        filter.to_string(),
        sort.to_string(),
        dir.to_string(),
    ))
}

pub(crate) fn assignment(
    cx: &mut Cx<'_>,
    s: &StaffSession,
    id: &str,
    q: &Form,
) -> Result<Response, StaffError> {
    let (nav, assignments) = nav(cx, s)?;
    let a = assignments
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| StaffError::NotFound(format!("assignment {id}")))?;
    let (rows, filter, sort, dir) = assignment_rows(cx, &a, q)?;
    let zone = crate::admin::timezone(&mut *cx.store)?;
    let flip = |col: &str| {
        if col == sort && dir == "asc" {
            "desc"
        } else {
            "asc"
        }
    };
    let columns = vec![
        ("sid", "SID", flip("sid")),
        ("name", "Name", flip("name")),
        ("status", "Status", flip("status")),
        ("time", "Time", flip("time")),
    ];
    html(
        200,
        &AssignmentPage {
            nav,
            id: a.id.clone(),
            title: a.title.clone(),
            due: a
                .due
                .map(|d| show_time(d, zone.as_deref()))
                .unwrap_or_else(|| "none".into()),
            filter,
            sort,
            dir,
            filters: FILTERS.to_vec(),
            columns,
            rows,
        },
    )
}

/// `GET /assignments/ID/export.csv`: the table as shown (the page's
/// filter and sort in the query) as CSV, each cell through the formula
/// guard of the admin exports.
pub(crate) fn export_csv(cx: &mut Cx<'_>, id: &str, q: &Form) -> Result<Response, StaffError> {
    let a = cx
        .store
        .assignments()?
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| StaffError::NotFound(format!("assignment {id}")))?;
    let (rows, ..) = assignment_rows(cx, &a, q)?;
    use crate::admin::csv::record;
    let mut out = record(&[
        "sid",
        "name",
        "status",
        "time",
        "extension",
        "sha256",
        "file",
    ]);
    for r in &rows {
        out.push_str(&record(&[
            &r.sid,
            &r.name,
            r.status,
            &r.time,
            &r.extension,
            &r.sha256,
            r.file.as_deref().unwrap_or(""),
        ]));
    }
    Ok(Response::new(200, out.into_bytes())
        .content_type("text/csv; charset=utf-8")
        .header("Content-Disposition", disposition(&format!("{}.csv", a.id))))
}

/// `attachment` with an ASCII `filename` (anything else, quotes and
/// backslashes included, becomes `_`) and the exact name as RFC 5987
/// `filename*`.
pub(crate) fn disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// `GET /assignments/ID/files/SID`: her latest file, sent chunk by chunk
/// from the store as the client reads.
pub(crate) fn download(cx: &mut Cx<'_>, id: &str, sid: &str) -> Result<Response, StaffError> {
    let u = cx
        .store
        .uploads()?
        .into_iter()
        .filter(|u| u.assignment == id && u.sid == sid)
        .max_by_key(|u| (u.received_at, u.receipt_id))
        .ok_or_else(|| StaffError::NotFound(format!("a file of {sid} for {id}")))?;
    // The body is read piece by piece as the client takes it (see
    // `BodyStream`): never the whole file in memory.
    cx.stream = Some(super::BodyStream::new(u.upload_id, u.chunks, u.size));
    Ok(Response::new(200, Vec::new())
        .content_type("application/octet-stream")
        .header("Content-Disposition", disposition(&u.file_name)))
}

struct CertView {
    serial: String,
    not_before: String,
    not_after: String,
    origin: &'static str,
    status: &'static str,
    detail: String,
}

struct Submission {
    assignment: String,
    time: String,
    late: String,
    file: String,
    size: String,
    sha256: String,
    receipt: u64,
}

#[derive(Template)]
#[template(path = "staff/student.html")]
struct StudentPage {
    nav: Nav,
    sid: String,
    name: String,
    code_state: String,
    certs: Vec<CertView>,
    good_serials: Vec<String>,
    reasons: Vec<&'static str>,
    submissions: Vec<Submission>,
    log_entries: Vec<(u64, &'static str, String)>,
}

pub(crate) fn student(
    cx: &mut Cx<'_>,
    s: &StaffSession,
    sid: &str,
) -> Result<Response, StaffError> {
    let (nav, _) = nav(cx, s)?;
    let zone = crate::admin::timezone(&mut *cx.store)?;
    let t = |x: i64| show_time(x, zone.as_deref());
    let roster = cx.store.roster()?;
    let entry = roster.iter().find(|e| e.sid == sid);
    let certs: Vec<CertRow> = cx
        .store
        .certs()?
        .into_iter()
        .filter(|c| c.sid == sid)
        .collect();
    let (reports, uploads) = cx.store.submissions_of(sid)?;
    if entry.is_none() && certs.is_empty() && reports.is_empty() && uploads.is_empty() {
        return Err(StaffError::NotFound(format!("SID {sid}")));
    }
    let now = cx.now;
    let views: Vec<CertView> = certs
        .iter()
        .map(|c| {
            let (status, detail) = match c.revoked {
                Some((at, reason)) => (
                    "revoked",
                    format!("{} ({})", t(at), reason.map_or("unspecified", |r| r.name())),
                ),
                None if c.not_after <= now => ("expired", String::new()),
                None => ("good", String::new()),
            };
            CertView {
                serial: c.serial.to_string(),
                not_before: t(c.not_before),
                not_after: t(c.not_after),
                origin: c.origin.as_str(),
                status,
                detail,
            }
        })
        .collect();
    let good_serials = views
        .iter()
        .filter(|v| v.status == "good")
        .map(|v| v.serial.clone())
        .collect();
    let code_state = match entry {
        None => "not on the roster".to_string(),
        Some(e) if e.dropped_at.is_some() => "dropped from the roster".to_string(),
        Some(e) => match &e.code {
            None => "none issued".to_string(),
            Some(c) => match c.used_at {
                Some(u) => format!("issued {}, used {}", t(c.issued_at), t(u)),
                None => format!(
                    "issued {}, unused ({} guess(es) in the last day)",
                    t(c.issued_at),
                    e.recent_guesses
                ),
            },
        },
    };
    let mut submissions: Vec<(i64, Submission)> = reports
        .iter()
        .map(|r| {
            (
                r.received_at,
                Submission {
                    assignment: r.assignment.clone(),
                    time: t(r.received_at),
                    late: r
                        .late_by
                        .map(crate::assignment::show_duration)
                        .unwrap_or_default(),
                    file: "(report text)".into(),
                    size: r.text.len().to_string(),
                    sha256: r.sha256_hex(),
                    receipt: r.receipt_id,
                },
            )
        })
        .collect();
    submissions.extend(uploads.iter().map(|u| {
        (
            u.received_at,
            Submission {
                assignment: u.assignment.clone(),
                time: t(u.received_at),
                late: if u.late_seconds > 0 {
                    crate::assignment::show_duration(u.late_seconds)
                } else {
                    String::new()
                },
                file: u.file_name.clone(),
                size: u.size.to_string(),
                sha256: u.sha256_hex(),
                receipt: u.receipt_id,
            },
        )
    }));
    submissions.sort_by_key(|(at, _)| *at);
    // Her records' log entries: one lookup per record of hers (a handful),
    // none when the log is empty.
    let mut log_entries = Vec::new();
    if cx.store.log_head()?.size > 0 {
        let keys = certs
            .iter()
            .map(|c| ("certificate", format!("cert:{}", c.serial)))
            .chain(
                reports
                    .iter()
                    .map(|r| ("report", format!("report:{}", r.receipt_id))),
            )
            .chain(
                uploads
                    .iter()
                    .map(|u| ("file", format!("upload:{}", u.receipt_id))),
            );
        for (kind, key) in keys {
            if let Some(i) = cx.store.log_index_of(&key)? {
                log_entries.push((i, kind, key));
            }
        }
        log_entries.sort();
    }
    html(
        200,
        &StudentPage {
            nav,
            sid: sid.to_string(),
            name: entry.map(|e| e.name.clone()).unwrap_or_default(),
            code_state,
            certs: views,
            good_serials,
            reasons: actions::reason_names(),
            submissions: submissions.into_iter().map(|(_, s)| s).collect(),
            log_entries,
        },
    )
}

struct RosterRow {
    sid: String,
    name: String,
    email: String,
    code: &'static str,
    on_roster: &'static str,
}

#[derive(Template)]
#[template(path = "staff/roster.html")]
struct RosterPage {
    nav: Nav,
    rows: Vec<RosterRow>,
}

pub(crate) fn roster(cx: &mut Cx<'_>, s: &StaffSession) -> Result<Response, StaffError> {
    let (nav, _) = nav(cx, s)?;
    let rows = cx
        .store
        .roster()?
        .into_iter()
        .map(|e| RosterRow {
            code: match &e.code {
                None => "none",
                Some(c) if c.used_at.is_some() => "used",
                Some(_) => "unused",
            },
            on_roster: if e.dropped_at.is_some() {
                "dropped"
            } else {
                "yes"
            },
            sid: e.sid,
            name: e.name,
            email: e.email.unwrap_or_default(),
        })
        .collect();
    html(200, &RosterPage { nav, rows })
}

struct AuditRow {
    at: String,
    who: String,
    action: String,
    target: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "staff/audit.html")]
struct AuditPage {
    nav: Nav,
    entries: Vec<AuditRow>,
    /// Older entries than those shown are kept in the store.
    older_kept: bool,
}

/// Most audit entries shown.
const AUDIT_PAGE: u32 = 500;

/// The first `max` of `entries` (read one more than `max`, newest first),
/// and whether any was left out.
fn newest<T>(mut entries: Vec<T>, max: u32) -> (Vec<T>, bool) {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let more = entries.len() > max;
    entries.truncate(max);
    (entries, more)
}

pub(crate) fn audit(cx: &mut Cx<'_>, s: &StaffSession) -> Result<Response, StaffError> {
    let (nav, _) = nav(cx, s)?;
    let zone = crate::admin::timezone(&mut *cx.store)?;
    let (entries, older_kept) = newest(
        cx.store.audit_log(AUDIT_PAGE.saturating_add(1))?,
        AUDIT_PAGE,
    );
    let entries = entries
        .into_iter()
        .map(|e| AuditRow {
            at: show_time(e.at, zone.as_deref()),
            who: e.who,
            action: e.action,
            target: e.target,
            detail: e.detail,
        })
        .collect();
    html(
        200,
        &AuditPage {
            nav,
            entries,
            older_kept,
        },
    )
}

#[derive(Template)]
#[template(path = "staff/confirm.html")]
struct Confirm<'a> {
    nav: Nav,
    sid: &'a str,
    serial: String,
    reason: &'a str,
    not_after: String,
}

pub(crate) fn confirm_revoke(
    s: &StaffSession,
    sid: &str,
    cert: &CertRow,
    reason: &str,
) -> Result<Response, StaffError> {
    html(
        200,
        &Confirm {
            nav: bare_nav(s),
            sid,
            serial: cert.serial.to_string(),
            reason,
            not_after: crate::time::rfc3339(cert.not_after),
        },
    )
}

#[derive(Template)]
#[template(path = "staff/code.html")]
struct NewCode<'a> {
    nav: Nav,
    sid: &'a str,
    code: &'a str,
}

pub(crate) fn new_code(s: &StaffSession, sid: &str, code: &str) -> Result<Response, StaffError> {
    html(
        200,
        &NewCode {
            nav: bare_nav(s),
            sid,
            code,
        },
    )
}

#[derive(Template)]
#[template(path = "staff/imported.html")]
struct Imported<'a> {
    nav: Nav,
    summary: &'a str,
}

pub(crate) fn import_result(s: &StaffSession, summary: &str) -> Result<Response, StaffError> {
    html(
        200,
        &Imported {
            nav: bare_nav(s),
            summary,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_escapes_hostile_text() -> Result<(), StaffError> {
        let page = RosterPage {
            nav: Nav {
                who: "ta".into(),
                csrf: "tok\"en".into(),
                assignments: vec!["hw<1>".into()],
            },
            rows: vec![RosterRow {
                sid: "1155000001".into(),
                name: "<script>alert(1)</script>".into(),
                email: "a\"b@x".into(),
                code: "none",
                on_roster: "yes",
            }],
        }
        .render()?;
        assert!(!page.contains("<script>"), "{page}");
        assert!(
            page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{page}"
        );
        assert!(
            page.contains("tok&#34;en") || page.contains("tok&quot;en"),
            "{page}"
        );
        assert!(page.contains("hw&#60;1&#62;"), "{page}");
        Ok(())
    }

    #[test]
    fn the_audit_page_says_when_older_entries_are_not_shown() -> Result<(), StaffError> {
        let (shown, more) = newest((0..AUDIT_PAGE + 1).collect::<Vec<_>>(), AUDIT_PAGE);
        assert_eq!((shown.len(), more), (AUDIT_PAGE as usize, true));
        assert_eq!(shown.first(), Some(&0), "the newest first, kept");
        let (shown, more) = newest((0..AUDIT_PAGE).collect::<Vec<_>>(), AUDIT_PAGE);
        assert_eq!((shown.len(), more), (AUDIT_PAGE as usize, false));
        let nav = || Nav {
            who: "ta".into(),
            csrf: "t".into(),
            assignments: vec![],
        };
        let page = |older_kept| AuditPage {
            nav: nav(),
            entries: vec![],
            older_kept,
        };
        assert!(page(true).render()?.contains("id=\"audit-older\""));
        assert!(!page(false).render()?.contains("audit-older"));
        Ok(())
    }

    #[test]
    fn dispositions_are_ascii_with_the_exact_name_encoded() {
        let d = disposition("r\u{e9}sum\u{e9} \"x\"\r\n.pdf");
        assert!(d.is_ascii(), "{d}");
        assert!(
            d.starts_with("attachment; filename=\"r_sum_ _x___.pdf\"; "),
            "{d}"
        );
        assert!(
            d.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%20%22x%22%0D%0A%2Epdf"),
            "{d}"
        );
    }
}
