//! Staff page rendering (issue 23): a course of 500 students and 10
//! assignments in a SQLite store, most of them handed in, and the time to
//! answer each page kind on one thread, straight through
//! `StaffApp::handle` (the worker's whole job: session lookup, queries,
//! template), without the network.
//!
//! ```text
//! cargo bench --bench staff              # 50 renders per page kind
//! cargo bench --bench staff -- 200       # 200 renders per page kind
//! ```
//!
//! Prints, per page kind, the median and worst wall time of one render
//! and the CPU time per render over the whole run (from
//! /proc/thread-self/stat, 10 ms ticks: meaningful over many renders),
//! then a JSON line per kind for scripts. Wall time is an upper bound of
//! the CPU time on a loaded host.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use certboard::ops::http::Request;
use certboard::staff::{auth, StaffApp, StaffConfig, COOKIE};
use certboard::store::{
    Assignment, AuditEntry, ChunkRecord, Record, SqliteStore, StaffSession, StaffStorage, Storage,
    Student, UploadRecord,
};

type BoxError = Box<dyn std::error::Error>;

const STUDENTS: usize = 500;
const ASSIGNMENTS: usize = 10;
const TOKEN: &str = "bench-session-token";

fn sid(i: usize) -> String {
    format!("{}", 1_155_000_000 + i)
}

/// The course: roster, assignments (due over the term), an upload by 9 in
/// 10 students for each (some late), a staff session, 200 audit rows.
fn course(store: &mut SqliteStore) -> Result<(), BoxError> {
    let now = certboard::time::now_unix();
    let students: Vec<Student> = (0..STUDENTS)
        .map(|i| Student {
            sid: sid(i),
            name: format!("Student <{i}> \"Chan\""),
            email: Some(format!("s{i}@example.edu")),
        })
        .collect();
    store.import_roster(&students)?;
    let mut receipt = 1u64;
    for a in 0..ASSIGNMENTS {
        let due = now - 86_400 * (ASSIGNMENTS - a) as i64;
        let id = format!("hw{a}");
        store.put_assignment(&Assignment {
            id: id.clone(),
            title: format!("Homework {a}"),
            opens: Some(due - 14 * 86_400),
            due: Some(due),
            late_until: Some(due + 86_400),
            closed_at: None,
        })?;
        let mut batch = Vec::new();
        for i in (0..STUDENTS).filter(|i| i % 10 != a % 10) {
            let upload_id = (a * STUDENTS + i) as i64 + 1;
            let data = format!("{id} by {}", sid(i)).into_bytes();
            let late = if i % 7 == 0 { 3600 } else { 0 };
            batch.push(Record::Chunk(ChunkRecord {
                upload_id,
                seq: 0,
                data: data.clone(),
            }));
            batch.push(Record::Upload(UploadRecord {
                receipt_id: receipt,
                upload_id,
                sid: sid(i),
                serial: certboard::ca::Serial::parse_hex("0A")?,
                received_at: due - 3600 * (i as i64 % 48) + late,
                assignment: id.clone(),
                file_name: format!("report-{i}.pdf"),
                size: data.len() as u64,
                sha256: [7; 32],
                chunks: 1,
                late_seconds: late,
            }));
            receipt += 1;
        }
        store.commit(&batch)?;
    }
    store.add_staff("ta.bench", auth::decoy_hash(), now)?;
    store.start_staff_session(&StaffSession {
        token_hash: auth::token_hash(TOKEN),
        name: "ta.bench".into(),
        csrf: "c".repeat(64),
        created_at: now,
        expires_at: now + 86_400,
    })?;
    for k in 0..200 {
        store.audit(&AuditEntry {
            id: 0,
            at: now - k,
            who: "ta.bench".into(),
            action: "extension".into(),
            target: sid(k as usize),
            detail: "hw1 until tomorrow".into(),
        })?;
    }
    Ok(())
}

fn get(target: &str) -> Request {
    Request {
        cookie: Some(format!("{COOKIE}={TOKEN}")),
        ..certboard::testing::get_request(target)
    }
}

/// This thread's CPU time so far (user + system), from /proc; None where
/// there is no /proc.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let n: usize = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(if bench { 50 } else { 2 });
    let dir = tempfile::tempdir()?;
    let mut store = SqliteStore::open(dir.path())?;
    let built = Instant::now();
    course(&mut store)?;
    eprintln!(
        "course of {STUDENTS} students, {ASSIGNMENTS} assignments built in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    let app = StaffApp::new(StaffConfig::default(), Box::new(store));
    let from = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let pages = [
        ("overview", "/".to_string()),
        (
            "assignment",
            "/assignments/hw3?sort=time&dir=desc".to_string(),
        ),
        ("student", format!("/students/{}", sid(123))),
        ("export_csv", "/assignments/hw3/export.csv".to_string()),
        ("audit", "/audit".to_string()),
        ("roster", "/roster".to_string()),
    ];
    for (kind, target) in &pages {
        let req = get(target);
        // One render first: its status and size, and warm caches.
        let first = app.handle(&req, from);
        if first.status != 200 {
            return Err(format!("{kind}: {target} answered {}", first.status).into());
        }
        let mut times = Vec::with_capacity(n);
        let cpu0 = thread_cpu();
        for _ in 0..n {
            let t = Instant::now();
            let r = app.handle(&req, from);
            times.push(t.elapsed());
            std::hint::black_box(r);
        }
        let cpu = match (cpu0, thread_cpu()) {
            (Some(a), Some(b)) => Some((b - a).as_secs_f64() * 1e3 / n as f64),
            _ => None,
        };
        times.sort();
        let median = times[times.len() / 2].as_secs_f64() * 1e3;
        let worst = times[times.len() - 1].as_secs_f64() * 1e3;
        let cpu_text = cpu.map_or("n/a".to_string(), |c| format!("{c:.2} ms"));
        println!(
            "{kind:<11} {:>8} bytes  median {median:6.2} ms  worst {worst:6.2} ms  cpu/render {cpu_text}  (n={n})",
            first.body.len()
        );
        println!(
            "{{\"bench\":\"staff\",\"page\":\"{kind}\",\"n\":{n},\"bytes\":{},\"median_ms\":{median:.3},\"worst_ms\":{worst:.3},\"cpu_ms\":{}}}",
            first.body.len(),
            cpu.map_or("null".to_string(), |c| format!("{c:.3}"))
        );
    }
    Ok(())
}
