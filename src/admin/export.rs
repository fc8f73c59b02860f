//! `reports` and `certs` in the instructor's formats: the table for a
//! terminal, `key=value` lines for grep, CSV and JSON for a spreadsheet or
//! a script. Dates are RFC 3339, UTC, in every format.
//!
//! Whatever reaches the terminal (table and lines) passes through
//! [`escaped`]: a SID, a name or a report line holding an escape sequence
//! or a bidi override is shown, not run. CSV cells are made inert to a
//! spreadsheet by the one CSV writer ([`csv::record`]).

use std::io::Write;

use serde_json::json;

use crate::escape::{escaped, escaped_keep_tab};
use crate::store::{CertRow, ReportRecord, RevocationReason, Storage};
use crate::time::{now_unix, rfc3339};

use super::csv;
use super::{list_certs, list_reports_of, AdminError};

/// How a listing is printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    #[default]
    Table,
    /// One `key=value` line per record, for grep (the default of
    /// `reports` and `certs`, as before the table).
    Lines,
    /// RFC 4180 CSV with a header line.
    Csv,
    /// One JSON array of objects.
    Json,
}

/// The formats of an export meant for another program (`gradebook`): no
/// table for a terminal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DataFormat {
    /// RFC 4180 CSV with a header line.
    #[default]
    Csv,
    /// One JSON array of objects.
    Json,
}

impl From<DataFormat> for Format {
    fn from(f: DataFormat) -> Format {
        match f {
            DataFormat::Csv => Format::Csv,
            DataFormat::Json => Format::Json,
        }
    }
}

/// Which reports `reports` lists.
#[derive(Debug, Clone, Default)]
pub struct ReportFilter {
    /// Only this SID's.
    pub sid: Option<String>,
    /// Only each SID's newest.
    pub latest: bool,
    /// The whole text in the table (CSV and JSON always carry it).
    pub full: bool,
}

/// The reports `filter` selects, oldest first.
pub fn select_reports(
    store: &mut dyn Storage,
    filter: &ReportFilter,
) -> Result<Vec<ReportRecord>, AdminError> {
    let mut all: Vec<ReportRecord> = store
        .reports()?
        .into_iter()
        .filter(|r| filter.sid.as_ref().is_none_or(|s| &r.sid == s))
        .collect();
    if filter.latest {
        // Oldest first: a later report of the same SID replaces an earlier.
        let mut newest = std::collections::HashMap::new();
        for (i, r) in all.iter().enumerate() {
            newest.insert(r.sid.clone(), i);
        }
        let keep: std::collections::HashSet<usize> = newest.into_values().collect();
        all = all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, r)| r)
            .collect();
    }
    Ok(all)
}

/// `server reports`.
pub fn reports(
    store: &mut dyn Storage,
    filter: &ReportFilter,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let rows = select_reports(store, filter)?;
    match format {
        Format::Json => {
            let list: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({
                        "sid": r.sid,
                        "receipt": r.receipt_id.to_string(),
                        "serial": r.serial.to_string(),
                        "received_at": rfc3339(r.received_at),
                        "origin": r.origin.as_str(),
                        "report_sha256": r.sha256_hex(),
                        "text": r.text,
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::Value::Array(list))?;
        }
        Format::Csv => {
            let head = [
                "sid",
                "receipt",
                "serial",
                "received_at",
                "origin",
                "report_sha256",
                "text",
            ];
            out.write_all(csv::record(&head).as_bytes())?;
            for r in &rows {
                let line = csv::record(&[
                    &r.sid,
                    &r.receipt_id.to_string(),
                    &r.serial.to_string(),
                    &rfc3339(r.received_at),
                    r.origin.as_str(),
                    &r.sha256_hex(),
                    &r.text,
                ]);
                out.write_all(line.as_bytes())?;
            }
        }
        Format::Lines => list_reports_of(&rows, filter.full, out)?,
        Format::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.receipt_id.to_string(),
                        escaped(&r.sid).to_string(),
                        r.serial.to_string(),
                        rfc3339(r.received_at),
                        r.origin.as_str().to_string(),
                        r.text.lines().count().to_string(),
                        if filter.full {
                            String::new()
                        } else {
                            escaped(r.text.lines().next().unwrap_or("")).to_string()
                        },
                    ]
                })
                .collect();
            let head = [
                "receipt",
                "sid",
                "serial",
                "received_at",
                "origin",
                "lines",
                if filter.full { "" } else { "first_line" },
            ];
            let widths = column_widths(&head, &cells);
            write_row(out, &widths, &head.map(String::from))?;
            for (r, row) in rows.iter().zip(&cells) {
                write_row(out, &widths, row)?;
                if filter.full {
                    // A tab aligns a report's own columns and forges
                    // nothing; everything else that moves the cursor is
                    // escaped.
                    for l in r.text.lines() {
                        writeln!(out, "    {}", escaped_keep_tab(l))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// `server certs`.
pub fn certs(
    store: &mut dyn Storage,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    if format == Format::Lines {
        return list_certs(store, out);
    }
    let now = now_unix();
    let rows = store.certs()?;
    let status = |c: &CertRow| match &c.revoked {
        Some(_) => "revoked",
        None if c.not_after < now => "expired",
        None => "good",
    };
    if format == Format::Table {
        let head = [
            "serial",
            "sid",
            "not_before",
            "not_after",
            "origin",
            "status",
            "revoked_at",
            "revoke_reason",
        ];
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|c| {
                let (at, why) = c
                    .revoked
                    .as_ref()
                    .map(|(at, why)| (rfc3339(*at), reason_text(*why).to_string()))
                    .unwrap_or_else(|| ("-".into(), "-".into()));
                vec![
                    c.serial.to_string(),
                    escaped(&c.sid).to_string(),
                    rfc3339(c.not_before),
                    rfc3339(c.not_after),
                    c.origin.as_str().to_string(),
                    status(c).to_string(),
                    at,
                    why,
                ]
            })
            .collect();
        let widths = column_widths(&head, &cells);
        write_row(out, &widths, &head.map(String::from))?;
        for row in &cells {
            write_row(out, &widths, row)?;
        }
        return Ok(());
    }
    if format == Format::Json {
        let list: Vec<_> = rows
            .iter()
            .map(|c| {
                json!({
                    "serial": c.serial.to_string(),
                    "sid": c.sid,
                    "not_before": rfc3339(c.not_before),
                    "not_after": rfc3339(c.not_after),
                    "origin": c.origin.as_str(),
                    "authorised": c.authorised.as_str(),
                    "vouched": c.vouched,
                    "status": status(c),
                    "revoked_at": c.revoked.as_ref().map(|(at, _)| rfc3339(*at)),
                    "revoke_reason": c.revoked.as_ref().map(|(_, why)| reason_text(*why)),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(list))?;
        return Ok(());
    }
    let head = [
        "serial",
        "sid",
        "not_before",
        "not_after",
        "origin",
        "status",
        "revoked_at",
        "revoke_reason",
    ];
    out.write_all(csv::record(&head).as_bytes())?;
    for c in &rows {
        let (at, why) = c
            .revoked
            .as_ref()
            .map(|(at, why)| (rfc3339(*at), reason_text(*why).to_string()))
            .unwrap_or_default();
        let line = csv::record(&[
            &c.serial.to_string(),
            &c.sid,
            &rfc3339(c.not_before),
            &rfc3339(c.not_after),
            c.origin.as_str(),
            status(c),
            &at,
            &why,
        ]);
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// Each column's width in characters: its widest cell or heading.
fn column_widths(head: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    widths
}

/// One row of a table, cells (already escaped) padded to `widths`, the
/// last one not padded so no line ends in blanks.
fn write_row(out: &mut dyn Write, widths: &[usize], cells: &[String]) -> std::io::Result<()> {
    let mut line = String::new();
    for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
        if i + 1 == cells.len() {
            line.push_str(cell);
        } else {
            line.push_str(&format!("{cell:<w$}  "));
        }
    }
    writeln!(out, "{}", line.trim_end())
}

/// A revocation's reason as the listings write it: its RFC 5280 name, or
/// nothing when the store names none.
fn reason_text(reason: Option<RevocationReason>) -> &'static str {
    reason.map_or("", RevocationReason::name)
}
