//! A whole course, end to end (issue 12): a roster of three, enrollment
//! codes, impostors refused, honest students enroll and submit, one renews
//! without a code, `status` shows who is missing, reports export as JSON
//! and CSV, and a late report is refused and not recorded. Plus the races
//! and the lock, through the library's client pieces.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};

use certboard::client::{self, CaSession, ClientError, FramedStream};
use certboard::course::code::EnrollCode;
use certboard::message::{EnrollAuth, ErrorCode, Message};
use common::{stdout, text, TestResult, TestServer, NET_TIMEOUT};

const ROSTER: &str = "sid,name,email\n\
1155000001,Chan Tai Man,a@example.edu\n\
1155000002,\"Wong, Siu Ming\",b@example.edu\n\
1155000003,Lee Ka Yan,c@example.edu\n";

fn import_roster(server: &TestServer) -> TestResult {
    std::fs::write(server.path().join("roster.csv"), ROSTER)?;
    let out = server.admin(&["roster", "import", "roster.csv"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("3 added"), "{}", text(&out));
    Ok(())
}

fn make_codes(
    server: &TestServer,
    file: &str,
    extra: &[&str],
) -> Result<HashMap<String, String>, Box<dyn std::error::Error>> {
    let mut args = vec!["roster", "codes", "--out", file];
    args.extend_from_slice(extra);
    let out = server.admin(&args)?;
    assert!(out.status.success(), "{}", text(&out));
    let path = server.path().join(file);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path)?.permissions().mode() & 0o777,
        0o600
    );
    Ok(client::read_codes(&std::fs::read_to_string(&path)?)?
        .into_iter()
        .map(|(sid, code)| (sid, code.grouped()))
        .collect())
}

/// Her code in a file of its own for `--code-file` (codes are never given
/// on the command line); returns the file's name in the server's folder.
fn code_file(server: &TestServer, code: &str) -> Result<String, Box<dyn std::error::Error>> {
    let name = format!("code-{code}.txt");
    std::fs::write(server.path().join(&name), format!("{code}\n"))?;
    Ok(name)
}

fn failed_with(out: &std::process::Output, needle: &str) {
    assert!(!out.status.success(), "{}", text(out));
    let err = String::from_utf8_lossy(&out.stdout);
    assert!(err.contains(needle), "expected {needle:?}: {}", text(out));
    // Said once.
    assert_eq!(err.matches(needle).count(), 1, "{}", text(out));
}

#[test]
fn a_whole_course() -> TestResult {
    let server = TestServer::start(&[])?;
    assert!(
        server.wait_log("no roster: anyone can enroll for any SID", 10),
        "{}",
        server.log()
    );
    import_roster(&server)?;
    let codes = make_codes(&server, "codes.csv", &[])?;
    assert_eq!(codes.len(), 3);
    // A second run gives nobody a new code.
    let again = server.admin(&["roster", "codes", "--out", "again.csv"])?;
    assert!(
        stdout(&again).contains("no student needs a code"),
        "{}",
        text(&again)
    );

    // Impostors: no code, another student's code, not on the roster.
    let root = server.root_pem();
    let root = root.to_str().ok_or("path")?;
    let out = server.client(&["--ca-cert", root, "--out-dir", "impostor", "1155000002"])?;
    failed_with(&out, "enrollment code required");
    assert!(
        !server.path().join("impostor/1155000002").exists(),
        "no empty folder left"
    );
    let out = server.client(&[
        "--ca-cert",
        root,
        "--out-dir",
        "impostor",
        "--code-file",
        &code_file(&server, &codes["1155000001"])?,
        "1155000002",
    ])?;
    failed_with(&out, "wrong enrollment code");
    let out = server.client(&["--ca-cert", root, "--out-dir", "impostor", "1155000009"])?;
    failed_with(&out, "not on the roster");

    // The honest students: one by --code-file, one by the codes file.
    let out = server.client(&[
        "--ca-cert",
        root,
        "--code-file",
        &code_file(&server, &codes["1155000001"].to_lowercase())?,
        "1155000001",
    ])?;
    assert!(out.status.success(), "{}", text(&out));
    let out = server.client(&["--ca-cert", root, "--codes-file", "codes.csv", "1155000002"])?;
    assert!(out.status.success(), "{}", text(&out));

    // A used code, even for the right SID, from another folder.
    let out = server.client(&[
        "--ca-cert",
        root,
        "--out-dir",
        "impostor",
        "--code-file",
        &code_file(&server, &codes["1155000001"])?,
        "1155000001",
    ])?;
    failed_with(&out, "enrollment code already used");
    assert!(
        server.wait_log(
            "enrollment for SID 1155000001 refused: enrollment code already used",
            10
        ),
        "{}",
        server.log()
    );

    // She renews without a code, by her current key, and sends her report
    // again (the same bytes: only with --resubmit).
    let out = server.client(&["--ca-cert", root, "--renew", "--resubmit", "1155000001"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("renewing: proving possession"),
        "{}",
        text(&out)
    );
    assert!(
        server.wait_log("renewed by proof of possession", 10),
        "{}",
        server.log()
    );

    // Status: two submitted, 1155000003 missing.
    let out = server.admin(&["status"])?;
    assert!(out.status.success(), "{}", text(&out));
    let table = stdout(&out);
    assert!(
        table.contains("enrolled 2, submitted 2, missing 1 (1155000003)"),
        "{table}"
    );
    assert!(table.contains("Wong, Siu Ming"), "{table}");
    let out = server.admin(&["status", "--format", "json"])?;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let rows = rows.as_array().ok_or("not an array")?;
    assert_eq!(rows.len(), 3);
    let missing: Vec<_> = rows
        .iter()
        .filter(|r| r["reports"] == 0)
        .map(|r| r["sid"].clone())
        .collect();
    assert_eq!(missing, vec![serde_json::json!("1155000003")]);
    assert_eq!(rows[0]["code"], "used");
    assert_eq!(rows[2]["code"], "unused");

    // Full reports as JSON and CSV.
    let out = server.admin(&["reports", "--format", "json"])?;
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let reports = reports.as_array().ok_or("not an array")?;
    assert_eq!(reports.len(), 3, "{reports:?}");
    for r in reports {
        for k in ["sid", "receipt", "serial", "received_at", "origin", "text"] {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
        // The hash a student's signed receipt carries, for comparing.
        let sha: String = openssl::sha::sha256(r["text"].as_str().unwrap_or_default().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(r["report_sha256"].as_str(), Some(sha.as_str()), "{r}");
        let at = r["received_at"].as_str().unwrap_or_default();
        assert!(at.ends_with('Z') && at.len() == 20, "{at}");
        assert_eq!(r["text"].as_str().map(|t| t.lines().count()), Some(10));
    }
    let out = server.admin(&[
        "reports",
        "--latest",
        "--sid",
        "1155000001",
        "--format",
        "csv",
    ])?;
    assert!(out.status.success(), "{}", text(&out));
    let csv_path = server.path().join("reports.csv");
    std::fs::write(&csv_path, &out.stdout)?;
    if let Ok(py) = std::process::Command::new("python3")
        .args([
            "-c",
            "import csv,sys; rows=list(csv.DictReader(open(sys.argv[1], newline=''))); \
             print(len(rows), rows[0]['sid'], rows[0]['text'].count('\\n'))",
        ])
        .arg(&csv_path)
        .output()
    {
        if py.status.success() {
            assert_eq!(stdout(&py).trim(), "1 1155000001 10", "{}", text(&py));
        }
    }

    // After the deadline: refused, nothing recorded; enrolling still works.
    let dir = server.crash()?;
    let server = TestServer::start_in(dir, &["--submissions-close", "2000-01-01T08:00:00+08:00"])?;
    let out = server.client(&["1155000002"])?;
    failed_with(&out, "submissions closed at 2000-01-01T00:00:00Z");
    let out = server.admin(&["reports", "--format", "json"])?;
    let after: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(
        after.as_array().map(Vec::len),
        Some(3),
        "the late report is not recorded"
    );
    let code_3 = code_file(&server, &codes["1155000003"])?;
    let out = server.client(&["--code-file", &code_3, "1155000003"])?;
    failed_with(&out, "submissions closed");
    assert!(
        server.path().join("students/1155000003/cert.pem").exists(),
        "enrollment still works"
    );
    let out = server.admin(&["status"])?;
    assert!(
        stdout(&out).contains("submissions: until 2000-01-01T00:00:00Z"),
        "{}",
        text(&out)
    );
    Ok(())
}

fn connect(server: &TestServer) -> Result<FramedStream, ClientError> {
    FramedStream::connect(&server.ca.to_string(), NET_TIMEOUT)
}

#[test]
fn two_connections_racing_with_one_code_get_one_certificate() -> TestResult {
    let server = TestServer::start(&[])?;
    import_roster(&server)?;
    let codes = make_codes(&server, "codes.csv", &["--sid", "1155000003"])?;
    let code = EnrollCode::parse(&codes["1155000003"])?;
    let barrier = Arc::new(Barrier::new(2));
    let results: Vec<Result<Vec<u8>, ClientError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let code = code.clone();
                let ca_addr = server.ca.to_string();
                s.spawn(move || {
                    let key = client::make_key(client::KeyType::Rsa2048)?;
                    let csr = client::make_csr("1155000003", &key)?;
                    let mut conn = FramedStream::connect(&ca_addr, NET_TIMEOUT)?;
                    let mut ca = CaSession::open(&mut conn)?;
                    let auth = client::code_auth(&code, "1155000003", ca.nonce(), &csr)?;
                    barrier.wait();
                    Ok(ca.request(&mut conn, csr, auth)?.cert_der)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(ClientError::Protocol("panicked".into())))
            })
            .collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results.iter().any(|r| matches!(
            r,
            Err(ClientError::Refused {
                code: ErrorCode::CodeUsed,
                ..
            })
        )),
        "{results:?}"
    );
    let out = server.admin(&["certs", "--format", "json"])?;
    let certs: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(certs.as_array().map(Vec::len), Some(1), "{certs}");
    Ok(())
}

#[test]
fn five_wrong_codes_lock_until_reissued_and_v1_is_refused_with_a_roster() -> TestResult {
    let server = TestServer::start(&[])?;
    import_roster(&server)?;
    make_codes(&server, "codes.csv", &[])?;
    let guess = EnrollCode::generate()?;
    let key = client::make_key(client::KeyType::Rsa2048)?;
    let csr = client::make_csr("1155000001", &key)?;
    let attempt = |code: &EnrollCode| -> Result<(), ClientError> {
        let mut conn = connect(&server)?;
        let mut ca = CaSession::open(&mut conn)?;
        let auth = client::code_auth(code, "1155000001", ca.nonce(), &csr)?;
        ca.request(&mut conn, csr.clone(), auth).map(|_| ())
    };
    let code_of = |r: Result<(), ClientError>| match r {
        Err(ClientError::Refused { code, .. }) => Some(code),
        _ => None,
    };
    for _ in 0..5 {
        assert_eq!(code_of(attempt(&guess)), Some(ErrorCode::WrongCode));
    }
    assert_eq!(code_of(attempt(&guess)), Some(ErrorCode::Locked));
    let out = server.admin(&["status", "--format", "csv"])?;
    assert!(stdout(&out).contains(",locked\r\n"), "{}", text(&out));
    // Reissued: the lock is lifted and the new code works.
    let out = server.admin(&["roster", "codes", "--out", "one.csv", "--sid", "1155000001"])?;
    assert!(
        !out.status.success() && text(&out).contains("--reissue"),
        "{}",
        text(&out)
    );
    let codes = make_codes(&server, "new.csv", &["--sid", "1155000001", "--reissue"])?;
    attempt(&EnrollCode::parse(&codes["1155000001"])?)?;

    // Version 1 (a bare EnrollRequest, type 0x10) is refused, roster or
    // not: code 10.
    let mut conn = connect(&server)?;
    let csr = client::make_csr("1155000002", &key)?;
    let mut v1 = vec![0x10];
    v1.extend_from_slice(&u32::try_from(csr.len())?.to_le_bytes());
    v1.extend_from_slice(&csr);
    conn.send_frame(&v1)?;
    let got = conn.recv();
    assert!(
        matches!(
            &got,
            Err(ClientError::Refused {
                code: ErrorCode::UnsupportedVersion,
                ..
            })
        ),
        "{got:?}"
    );
    // A request with no hello first, and an unknown version.
    let mut conn = connect(&server)?;
    conn.send(&Message::CaHello { version: 3 })?;
    assert!(matches!(
        conn.recv(),
        Err(ClientError::Refused {
            code: ErrorCode::UnsupportedVersion,
            ..
        })
    ));
    let mut conn = connect(&server)?;
    conn.send(&Message::CertRequest {
        csr_der: csr.clone(),
        auth: EnrollAuth::Open,
    })?;
    assert!(matches!(
        conn.recv(),
        Err(ClientError::Refused {
            code: ErrorCode::UnexpectedMessage,
            ..
        })
    ));
    Ok(())
}

#[test]
fn the_course_script_runs_the_whole_course() -> TestResult {
    let server_bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_server"));
    let bin_dir = server_bin.parent().ok_or("bin dir")?;
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/course.sh"))
        .env("CERTBOARD_BIN_DIR", bin_dir)
        .stdin(std::process::Stdio::null())
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    let s = stdout(&out);
    for step in [
        "FAILED: refused by the server: SID 1155000002: enrollment code required",
        "FAILED: refused by the server: SID 1155000002: wrong enrollment code",
        "renewing: proving possession",
        "total 3: enrolled 3, submitted 3, missing 0",
        "total 4: enrolled 3, submitted 3, missing 1 (1155000004)",
        // The flags set the lab assignment's due time (issue 20).
        "FAILED: refused by the server: assignment lab: submissions closed at 2000-01-01T00:00:00Z",
        "submissions: until 2000-01-01T00:00:00Z",
        "== course complete: every expectation held",
    ] {
        assert!(s.contains(step), "{step:?} missing:\n{}", text(&out));
    }
    assert_eq!(s.matches("student(s) submitted").count(), 4, "{s}");
    Ok(())
}
