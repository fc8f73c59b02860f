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
    // Off the roster: the same answer as on it (no roster leak).
    let out = server.client(&["--ca-cert", root, "--out-dir", "impostor", "1155000009"])?;
    failed_with(&out, "enrollment code required");

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
    // Taken, since it is given again at every start, but not silently.
    assert!(
        server.wait_log("--submissions-close is in the past", 10),
        "{}",
        server.log()
    );
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

/// A connection to the CA from `source` (Linux answers for all of
/// 127.0.0.0/8 on loopback): a second address for the tests.
fn connect_from(ca: std::net::SocketAddr, source: &str) -> Result<FramedStream, BoxError> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let from: std::net::SocketAddr = format!("{source}:0").parse()?;
    sock.bind(&from.into())?;
    sock.connect_timeout(&ca.into(), NET_TIMEOUT)?;
    Ok(FramedStream::over(
        sock.into(),
        &ca.to_string(),
        NET_TIMEOUT,
    )?)
}

type BoxError = Box<dyn std::error::Error>;

/// One enrollment by code on a connection of its own, from `source`.
fn attempt_from(
    server: &TestServer,
    source: &str,
    sid: &str,
    code: &EnrollCode,
) -> Result<Result<(), ClientError>, BoxError> {
    let key = client::make_key(client::KeyType::Rsa2048)?;
    let csr = client::make_csr(sid, &key)?;
    let mut conn = connect_from(server.ca, source)?;
    let mut ca = CaSession::open(&mut conn)?;
    let auth = client::code_auth(code, sid, ca.nonce(), &csr)?;
    Ok(ca.request(&mut conn, csr, auth).map(|_| ()))
}

fn refused_code(r: &Result<(), ClientError>) -> Option<ErrorCode> {
    match r {
        Err(ClientError::Refused { code, .. }) => Some(*code),
        _ => None,
    }
}

/// Issue 22, items 1 and 2: 40 wrong guesses at once from one address,
/// on 40 connections, are each counted before they are checked, so at
/// most the bound (5 per SID per address) is evaluated and the rest are
/// told when to try again; nothing locks the SID, so the student with her
/// right code, from another address, enrolls at once.
#[test]
fn guesses_are_bounded_per_address_and_never_lock_the_student_out() -> TestResult {
    let server = TestServer::start(&["--guesses-per-sid", "5", "--guesses-per-address", "30"])?;
    import_roster(&server)?;
    let codes = make_codes(&server, "codes.csv", &[])?;
    let wrong = EnrollCode::generate()?;
    const N: usize = 40;
    let barrier = Arc::new(Barrier::new(N));
    let results: Vec<Result<(), ClientError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..N)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let wrong = wrong.clone();
                let ca_addr = server.ca;
                s.spawn(move || -> Result<Result<(), ClientError>, ClientError> {
                    let key = client::make_key(client::KeyType::Rsa2048)
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
                    let csr = client::make_csr("1155000001", &key)
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
                    let mut conn = connect_from(ca_addr, "127.0.0.1")
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
                    let mut ca = CaSession::open(&mut conn)
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
                    let auth = client::code_auth(&wrong, "1155000001", ca.nonce(), &csr)
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
                    barrier.wait();
                    Ok(ca.request(&mut conn, csr, auth).map(|_| ()))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| match w.join() {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ClientError::Protocol("panicked".into())),
            })
            .collect()
    });
    let count = |c: ErrorCode| {
        results
            .iter()
            .filter(|r| refused_code(r) == Some(c))
            .count()
    };
    assert_eq!(
        (
            count(ErrorCode::WrongCode),
            count(ErrorCode::TooManyGuesses)
        ),
        (5, N - 5),
        "{results:?}"
    );
    let rate = results
        .iter()
        .find_map(|r| match r {
            Err(ClientError::Refused {
                code: ErrorCode::TooManyGuesses,
                reason,
            }) => Some(reason.clone()),
            _ => None,
        })
        .ok_or("no rate refusal")?;
    assert!(
        rate.contains("too many enrollment code guesses for this SID from this address")
            && rate.contains("try again in "),
        "{rate}"
    );
    // Her right code from the attacker's own address (a classmate at the
    // same lab machine), whose bound for her SID is spent: issued, not
    // held back. Only what is not her code counts against the bounds.
    let right = EnrollCode::parse(&codes["1155000001"])?;
    attempt_from(&server, "127.0.0.1", "1155000001", &right)??;
    // Even from the attacker's address, the right code works once the
    // bound for that SID allows again; another SID's bound is its own, but
    // the address's own total (30) holds across SIDs.
    let other = EnrollCode::parse(&codes["1155000002"])?;
    attempt_from(&server, "127.0.0.1", "1155000002", &other)??;
    // What was counted: the 5 wrong guesses for 1155000001 (her right
    // code is not a guess); status says so and calls nothing locked.
    let out = server.admin(&["status", "--format", "json"])?;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let guesses = |sid: &str| {
        rows.as_array()
            .and_then(|a| a.iter().find(|r| r["sid"] == sid))
            .map(|r| r["code_guesses_24h"].clone())
    };
    assert_eq!(guesses("1155000001"), Some(serde_json::json!(5)), "{rows}");
    assert_eq!(guesses("1155000003"), Some(serde_json::json!(0)), "{rows}");
    let out = server.admin(&["status", "--format", "csv"])?;
    assert!(!stdout(&out).contains("locked"), "{}", text(&out));
    Ok(())
}

/// Issue 22, item 1: an unauthenticated caller cannot tell a SID on the
/// roster from one off it: no code (12) and a wrong code (13) are
/// answered alike, word for word but the SID, and guesses at either are
/// counted alike (the third is refused with 15 for both). A student removed
/// from the roster is one off it, even with her own code.
#[test]
fn the_roster_does_not_leak_to_a_caller_without_a_code() -> TestResult {
    let server = TestServer::start(&["--guesses-per-sid", "2"])?;
    import_roster(&server)?;
    make_codes(&server, "codes.csv", &[])?;
    let wrong = EnrollCode::generate()?;
    let key = client::make_key(client::KeyType::Rsa2048)?;
    let answers = |sid: &str| -> Result<Vec<(Option<ErrorCode>, String)>, BoxError> {
        let mut seen = Vec::new();
        let csr = client::make_csr(sid, &key)?;
        let mut conn = connect(&server)?;
        let mut ca = CaSession::open(&mut conn)?;
        let r = ca.request(&mut conn, csr, EnrollAuth::Open).map(|_| ());
        seen.push(r);
        for _ in 0..3 {
            seen.push(attempt_from(&server, "127.0.0.1", sid, &wrong)?);
        }
        Ok(seen
            .iter()
            .map(|r| {
                let reason = match r {
                    Err(ClientError::Refused { reason, .. }) => reason.replace(sid, "SID"),
                    other => format!("{other:?}"),
                };
                // The retry time differs by the second it was asked at.
                let reason = reason.split(" in ").next().unwrap_or("").to_string();
                (refused_code(r), reason)
            })
            .collect())
    };
    let on = answers("1155000003")?;
    let off = answers("1155000009")?;
    assert_eq!(on, off);
    // A student removed from the roster is off it: her own unspent code is
    // answered as a wrong one, and the rest as for any SID off the roster.
    let out = server.admin(&["roster", "remove", "1155000002"])?;
    assert!(out.status.success(), "{}", text(&out));
    let codes = client::read_codes(&std::fs::read_to_string(server.path().join("codes.csv"))?)?;
    let hers = codes.get("1155000002").ok_or("no code for 1155000002")?;
    let r = attempt_from(&server, "127.0.0.2", "1155000002", hers)?;
    assert_eq!(refused_code(&r), Some(ErrorCode::WrongCode), "{r:?}");
    assert_eq!(answers("1155000002")?, off);
    let codes: Vec<Option<ErrorCode>> = on.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        codes,
        [
            Some(ErrorCode::CodeRequired),
            Some(ErrorCode::WrongCode),
            Some(ErrorCode::WrongCode),
            Some(ErrorCode::TooManyGuesses)
        ]
    );
    assert!(
        on[0]
            .1
            .contains("with a current certificate, renew instead"),
        "{on:?}"
    );
    Ok(())
}

/// Version 1 and out-of-turn requests are refused with a roster.
#[test]
fn v1_is_refused_with_a_roster() -> TestResult {
    let server = TestServer::start(&[])?;
    import_roster(&server)?;
    let key = client::make_key(client::KeyType::Rsa2048)?;
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
    let out = common::run_example("course.sh")?;
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

fn refusal_of<T: std::fmt::Debug>(r: Result<T, ClientError>) -> Option<ErrorCode> {
    match r {
        Err(ClientError::Refused { code, .. }) => Some(code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A renewal of `cert` (held with `key`) on a fresh CA connection.
fn renew(
    server: &TestServer,
    sid: &str,
    cert: &[u8],
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
) -> Result<Vec<u8>, ClientError> {
    let new_key = client::make_key(client::KeyType::Rsa2048)?;
    let csr = client::make_csr(sid, &new_key)?;
    let mut conn = connect(server)?;
    let mut ca = CaSession::open(&mut conn)?;
    let auth = client::renewal_auth(key, cert, ca.nonce(), &csr)?;
    Ok(ca.request(&mut conn, csr, auth)?.cert_der)
}

fn serial_of(der: &[u8]) -> Result<String, Box<dyn std::error::Error>> {
    let cert = openssl::x509::X509::from_der(der)?;
    Ok(certboard::ca::Serial::from_asn1(cert.serial_number())?.to_string())
}

/// The certificate rows of `server certs --format json`, by serial.
fn cert_rows(
    server: &TestServer,
) -> Result<HashMap<String, serde_json::Value>, Box<dyn std::error::Error>> {
    let out = server.admin(&["certs", "--format", "json"])?;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(rows
        .as_array()
        .ok_or("not an array")?
        .iter()
        .map(|r| {
            (
                r["serial"].as_str().unwrap_or_default().to_string(),
                r.clone(),
            )
        })
        .collect())
}

/// Issue 22 item 3: an impostor enrolls a SID while there is no roster.
/// The roster import lists his certificate and needs a decision; kept, it
/// neither submits nor renews (code 18) and `status` does not show it as
/// hers; her code enrollment still succeeds and supersedes it.
#[test]
fn an_open_enrollment_from_before_the_roster_is_cut_off() -> TestResult {
    let server = TestServer::start(&[])?;
    let trust = server.trust()?;
    let sid = "1155000001";
    let imp_key = client::make_key(client::KeyType::Rsa2048)?;
    let imp_cert = common::enroll_key(server.ca, sid, &imp_key)?;
    common::submit_report(server.blackboard, &trust, sid, &imp_cert, &imp_key)?;
    let imp_serial = serial_of(&imp_cert)?;

    std::fs::write(server.path().join("roster.csv"), ROSTER)?;
    let out = server.admin(&["roster", "import", "roster.csv"])?;
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    for needle in [
        "1 certificate(s) were issued by open enrollment",
        &imp_serial,
        "--revoke-unverified",
        "--keep-unverified",
        "Nothing imported",
    ] {
        assert!(said.contains(needle), "{needle:?}: {said}");
    }
    let out = server.admin(&["status", "--format", "json"])?;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(rows[0]["name"], "", "no roster imported: {rows}");

    let out = server.admin(&["roster", "import", "roster.csv", "--keep-unverified"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("kept, unvouched"), "{}", text(&out));

    // With the roster in force he neither submits nor renews.
    let refused = common::submit_report(server.blackboard, &trust, sid, &imp_cert, &imp_key);
    assert_eq!(refusal_of(refused), Some(ErrorCode::Unvouched));
    assert_eq!(
        refusal_of(renew(&server, sid, &imp_cert, &imp_key)),
        Some(ErrorCode::Unvouched)
    );
    let out = server.admin(&["status", "--format", "json"])?;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(rows[0]["sid"], sid);
    assert_eq!(rows[0]["vouched"], false, "{rows}");
    let out = server.admin(&["status"])?;
    assert!(stdout(&out).contains("enrolled 0,"), "{}", text(&out));
    assert!(stdout(&out).contains("unvouched 1"), "{}", text(&out));

    // The real student enrolls with her code, and submits.
    let codes = make_codes(&server, "codes.csv", &["--sid", sid])?;
    let code = EnrollCode::parse(&codes[sid])?;
    let key = client::make_key(client::KeyType::Rsa2048)?;
    let csr = client::make_csr(sid, &key)?;
    let mut conn = connect(&server)?;
    let mut ca = CaSession::open(&mut conn)?;
    let auth = client::code_auth(&code, sid, ca.nonce(), &csr)?;
    let cert = ca.request(&mut conn, csr, auth)?.cert_der;
    common::submit_report(server.blackboard, &trust, sid, &cert, &key)?;
    // Hers supersedes his; she is current in status, and renews.
    let certs = cert_rows(&server)?;
    let his = &certs[&imp_serial];
    assert_eq!(his["status"], "revoked", "{his}");
    assert_eq!(his["revoke_reason"], "superseded", "{his}");
    assert_eq!(his["authorised"], "open", "{his}");
    let mine = &certs[&serial_of(&cert)?];
    assert_eq!(
        (&mine["authorised"], &mine["vouched"]),
        (&"code".into(), &true.into())
    );
    let out = server.admin(&["status", "--format", "json"])?;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(rows[0]["certificate"], serial_of(&cert)?.as_str());
    assert_eq!(rows[0]["vouched"], true);
    let renewed = renew(&server, sid, &cert, &key)?;
    assert_eq!(cert_rows(&server)?[&serial_of(&renewed)?]["vouched"], true);
    let refused = common::submit_report(server.blackboard, &trust, sid, &imp_cert, &imp_key);
    assert_eq!(refusal_of(refused), Some(ErrorCode::BadCertificate));
    Ok(())
}

/// `--revoke-unverified` revokes what open enrollment issued
/// (privilegeWithdrawn), which then no longer submits.
#[test]
fn revoke_unverified_revokes_open_enrollment_certificates() -> TestResult {
    let server = TestServer::start(&[])?;
    let trust = server.trust()?;
    let sid = "1155000002";
    let key = client::make_key(client::KeyType::Rsa2048)?;
    let cert = common::enroll_key(server.ca, sid, &key)?;
    std::fs::write(server.path().join("roster.csv"), ROSTER)?;
    let out = server.admin(&["roster", "import", "roster.csv", "--revoke-unverified"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("revoked 1 certificate(s) of open enrollment (privilegeWithdrawn)"),
        "{}",
        text(&out)
    );
    let row = &cert_rows(&server)?[&serial_of(&cert)?];
    assert_eq!(row["revoke_reason"], "privilegeWithdrawn", "{row}");
    let refused = common::submit_report(server.blackboard, &trust, sid, &cert, &key);
    assert_eq!(refusal_of(refused), Some(ErrorCode::BadCertificate));
    Ok(())
}
