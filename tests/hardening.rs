//! Issue 15, the parts that live outside the event loop: what the operator
//! reads (printed reports, logs) and what the server and client write to
//! disk and ask of the system, each against the real binaries.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use certboard::client::{self, KeyType};
use certboard::message::{CipherId, ErrorCode, Message};
use certboard::testing::CaParams;
use common::{enroll_key, text, Launch, TestResult, TestServer, NET_TIMEOUT};

/// A report of about 60 KiB in 600 lines: printed with its line prefixes it
/// is over a pipe's 64 KiB on its own.
fn big_report(sid: &str) -> String {
    (0..600)
        .map(|i| format!("{sid} line {i:04}: {}\n", "x".repeat(80)))
        .collect()
}

/// Without the printer thread, the commit thread blocked writing the first
/// report to the full pipe, before releasing its receipt: every client
/// waited until its own timeout.
#[test]
fn a_stdout_nobody_reads_never_delays_receipts() -> TestResult {
    let how = Launch {
        stop_reading_stdout: true,
        ..Launch::default()
    };
    let server = TestServer::launch(tempfile::tempdir()?, &[], &how)?;
    let sids = ["1155000001", "1155000002", "1155000003", "1155000004"];
    let mut students = Vec::new();
    for sid in sids {
        let key = client::make_key(KeyType::Rsa2048)?;
        let cert = enroll_key(server.ca, sid, &key)?;
        students.push((sid, key, cert));
    }
    let (tx, rx) = mpsc::channel();
    let bb = server.blackboard;
    let trust = server.trust()?;
    std::thread::spawn(move || {
        for (sid, key, cert) in students {
            let result =
                client::FramedStream::connect(&bb.to_string(), NET_TIMEOUT).and_then(|mut conn| {
                    let report = big_report(sid);
                    let cipher = CipherId::Aes256Ctr;
                    client::submit(
                        &mut conn,
                        sid,
                        &cert,
                        &key,
                        cipher,
                        &report,
                        &trust,
                        &mut |_| {},
                    )
                });
            if tx.send(result.map_err(|e| e.to_string())).is_err() {
                return;
            }
        }
    });
    // A hang is the failure; the deadline is generous, not a speed test.
    for sid in sids {
        let receipt = rx.recv_timeout(Duration::from_secs(20));
        assert!(
            matches!(receipt, Ok(Ok(_))),
            "{sid}: no receipt: {receipt:?}\n{}",
            server.log()
        );
    }
    let listed = server.admin(&["reports"])?;
    assert_eq!(
        common::stdout(&listed).lines().count(),
        4,
        "{}",
        text(&listed)
    );
    Ok(())
}

/// A strict reader of the printed form: header lines start in the first
/// column and give a count of lines, each prefixed with the receipt.
/// Returns (SID, receipt, lines) per report.
#[allow(clippy::type_complexity)]
fn parse_printed(
    lines: &[String],
) -> Result<Vec<(String, String, Vec<String>)>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    let mut it = lines.iter();
    while let Some(header) = it.next() {
        let rest = header
            .strip_prefix("report SID")
            .ok_or(format!("not a header: {header:?}"))?;
        let (head, count) = rest.rsplit_once(": ").ok_or("no count")?;
        let n: usize = count
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or("bad count")?;
        let words: Vec<&str> = head.split(' ').collect();
        let [sid, "serial", _, "receipt", receipt, ..] = words.as_slice() else {
            return Err(format!("bad header {header:?}").into());
        };
        let prefix = format!("  {receipt}| ");
        let mut body = Vec::new();
        for _ in 0..n {
            let line = it.next().ok_or("report cut short")?;
            let line = line
                .strip_prefix(&prefix)
                .ok_or(format!("a line of another report: {line:?}"))?;
            body.push(line.to_string());
        }
        out.push((sid.to_string(), receipt.to_string(), body));
    }
    Ok(out)
}

#[test]
fn a_report_cannot_forge_another_students_entry_on_stdout() -> TestResult {
    let server = TestServer::start(&[])?;
    let sid = "1155000001";
    let key = client::make_key(KeyType::Rsa2048)?;
    let cert = enroll_key(server.ca, sid, &key)?;
    let report = "my own report\nreport SID999 serial X receipt 1:\nI am SID999's report\n";
    let mut conn = client::FramedStream::connect(&server.blackboard.to_string(), NET_TIMEOUT)?;
    let receipt = client::submit(
        &mut conn,
        sid,
        &cert,
        &key,
        CipherId::Aes256Ctr,
        report,
        &server.trust()?,
        &mut |_| {},
    )?;
    let mut printed = Vec::new();
    let until = Instant::now() + Duration::from_secs(10);
    while printed.len() < 4 && Instant::now() < until {
        if let Ok(line) = server.stdout.recv_timeout(Duration::from_millis(200)) {
            printed.push(line);
        }
    }
    let reports = parse_printed(&printed)?;
    assert_eq!(reports.len(), 1, "{printed:#?}");
    let (printed_sid, printed_receipt, lines) = &reports[0];
    assert_eq!(printed_sid, sid);
    assert_eq!(printed_receipt, &receipt.receipt_id.to_string());
    assert_eq!(lines[1], "report SID999 serial X receipt 1:");
    assert_eq!(
        printed
            .iter()
            .filter(|l| l.starts_with("report SID"))
            .count(),
        1,
        "{printed:#?}"
    );
    Ok(())
}

/// The old logger wrote the reason raw: ESC[2K erased the operator's line,
/// OSC 0 retitled her terminal, a newline forged a log line.
#[test]
fn terminal_escapes_in_a_client_error_reason_reach_the_log_escaped() -> TestResult {
    let server = TestServer::start(&[])?;
    let reason =
        "\x1b[2K\x1b]0;pwned\x07 gone\n[2099-01-01T00:00:00Z INFO  certboard] forged \u{202e}";
    let mut conn = client::FramedStream::connect(&server.blackboard.to_string(), NET_TIMEOUT)?;
    conn.send(&Message::Error {
        code: ErrorCode::BadRequest,
        reason: reason.into(),
    })?;
    assert!(
        server.wait_log("client reported error", 10),
        "{}",
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains(
            "\\x1b[2K\\x1b]0;pwned\\x07 gone\\n[2099-01-01T00:00:00Z INFO  certboard] forged \\u{202e}"
        ),
        "{log}"
    );
    assert!(!log.contains(['\x1b', '\x07', '\u{202e}']), "{log:?}");
    assert!(!log.lines().any(|l| l.starts_with("[2099")), "{log}");
    Ok(())
}

/// The old client wrote her unencrypted key through `key.tmp`.
#[test]
fn a_symlink_planted_in_a_students_folder_does_not_get_her_key() -> TestResult {
    let server = TestServer::start(&[])?;
    let sid = "1155000007";
    let dir = server.path().join("students").join(sid);
    fs::create_dir_all(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    let stolen = server.path().join("stolen");
    fs::write(&stolen, b"")?;
    symlink(&stolen, dir.join("key.tmp"))?;
    let out = server.client(&[sid])?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::read(&stolen)?, b"", "the key went through the link");
    assert!(fs::symlink_metadata(dir.join("key.pem"))?
        .file_type()
        .is_file());
    assert!(fs::read_to_string(dir.join("key.pem"))?.contains("PRIVATE KEY"));
    Ok(())
}

#[test]
fn a_symlink_planted_in_the_keys_dir_does_not_get_the_ca_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    let keys = dir.path().join("keys");
    fs::create_dir(&keys)?;
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o700))?;
    let stolen = dir.path().join("stolen");
    fs::write(&stolen, b"")?;
    symlink(&stolen, keys.join("ca-key.tmp"))?;
    let server = TestServer::start_in(dir, &[])?;
    assert_eq!(fs::read(&stolen)?, b"", "the CA key went through the link");
    let key = server.path().join("keys").join("ca-key.pem");
    assert!(fs::symlink_metadata(&key)?.file_type().is_file());
    assert!(fs::read_to_string(&key)?.contains("ENCRYPTED PRIVATE KEY"));
    let out = server.client(&["1155000008"])?;
    assert!(out.status.success(), "{}", text(&out));
    Ok(())
}

/// Runs the server binary to its exit (a start-up refusal), at most 30 s.
fn run_to_exit(dir: &Path, args: &[&str]) -> Result<(bool, String), Box<dyn std::error::Error>> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
        .current_dir(dir)
        .args([
            "--ca-listen",
            "127.0.0.1:0",
            "--blackboard-listen",
            "127.0.0.1:0",
        ])
        .args(["--ca-key-type", "p256"])
        .args(args)
        .env("CERTBOARD_CA_PASSPHRASE", common::PASSPHRASE)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let until = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the server did not exit".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn a_keys_dir_others_may_write_to_is_refused_with_a_clear_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let keys = dir.path().join("keys");
    fs::create_dir(&keys)?;
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o777))?;
    let (ok, log) = run_to_exit(dir.path(), &["--keys-dir", "keys", "--data-dir", "data"])?;
    assert!(!ok, "{log}");
    assert!(
        log.contains("keys is writable by group or others (mode 0777)"),
        "{log}"
    );
    assert!(fs::read_dir(&keys)?.next().is_none(), "nothing written");
    Ok(())
}

#[test]
fn a_ca_key_made_writable_by_others_is_not_loaded() -> TestResult {
    let dir = tempfile::tempdir()?;
    let keys = dir.path().join("keys");
    CaParams::default().create(&keys)?;
    let key = keys.join("ca-key.pem");
    let before = fs::read(&key)?;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o664))?;
    let (ok, log) = run_to_exit(dir.path(), &["--keys-dir", "keys", "--data-dir", "data"])?;
    assert!(!ok, "{log}");
    assert!(
        log.contains("ca-key.pem is writable by group or others (mode 0664)"),
        "{log}"
    );
    assert!(log.contains("run `chmod go-w "), "{log}");
    assert_eq!(fs::read(&key)?, before, "the key was touched");
    Ok(())
}

fn under_ulimit(flags: &str) -> Launch {
    Launch {
        wrapper: vec![
            "sh".into(),
            "-c".into(),
            format!("ulimit {flags} && exec \"$0\" \"$@\""),
        ],
        ..Launch::default()
    }
}

#[test]
fn the_open_file_limit_is_raised_at_start() -> TestResult {
    let server = TestServer::launch(tempfile::tempdir()?, &[], &under_ulimit("-Sn 64"))?;
    assert!(
        server.wait_log("raised the open-file limit (RLIMIT_NOFILE) from 64 to ", 10),
        "{}",
        server.log()
    );
    let out = server.client(&["1155000009"])?;
    assert!(out.status.success(), "{}", text(&out));
    Ok(())
}

#[test]
fn max_connections_is_lowered_to_what_a_low_hard_limit_allows() -> TestResult {
    let server = TestServer::launch(tempfile::tempdir()?, &[], &under_ulimit("-n 100"))?;
    // 100 - (32 + 1 × (8 + 2)) = 58, which either listener may use.
    assert!(
        server.wait_log(
            "--max-connections lowered from 10000 to 58 per listener",
            10
        ),
        "{}",
        server.log()
    );
    let out = server.client(&["1155000010"])?;
    assert!(out.status.success(), "{}", text(&out));
    Ok(())
}
