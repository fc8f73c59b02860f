//! End to end: the client's side of issue 22. Each test reproduces one
//! finding against the real binaries: the enrollment code kept off the
//! command line (6), files whose modes do not depend on the umask and a
//! report not recorded twice without asking (7), a planted pin refused (8),
//! `verify-receipt` trusting only a pinned root (5), a revoked student's new
//! code used (11), the first-contact message's line break (12), network
//! errors with a hint (13), and a closed stderr that does not panic (18).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{stdout, text, TestResult, TestServer};

type Error = Box<dyn std::error::Error>;

const ROSTER: &str = "sid,name\n1155000001,Chan Tai Man\n1155000002,Lee Ka Yan\n\
1155000003,Wong Siu Ming\n";

/// The client binary run in the server's folder against its services,
/// through `sh` so that a test can set the umask or close a descriptor
/// first (`prelude`), with `env` and `stdin`.
fn client_with(
    server: &TestServer,
    prelude: &str,
    env: &[(&str, &str)],
    stdin: Option<&str>,
    args: &[&str],
) -> std::io::Result<Output> {
    let mut cmd = Command::new("sh");
    cmd.current_dir(server.path())
        .arg("-c")
        .arg(format!("{prelude} exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_client"))
        .args(["--ca", &server.ca.to_string()])
        .args(["--blackboard", &server.blackboard.to_string()])
        .args(["--timeout", "20"])
        .args(args)
        .env_remove("CERTBOARD_ENROLL_CODE")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn()?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    child.wait_with_output()
}

/// A course with a roster of three and their codes, by SID.
fn course() -> Result<(TestServer, HashMap<String, String>), Error> {
    let server = TestServer::start(&[])?;
    std::fs::write(server.path().join("roster.csv"), ROSTER)?;
    let out = server.admin(&["roster", "import", "roster.csv"])?;
    assert!(out.status.success(), "{}", text(&out));
    let codes = codes_in(
        &server,
        &["roster", "codes", "--out", "codes.csv"],
        "codes.csv",
    )?;
    Ok((server, codes))
}

fn codes_in(
    server: &TestServer,
    args: &[&str],
    file: &str,
) -> Result<HashMap<String, String>, Error> {
    let out = server.admin(args)?;
    assert!(out.status.success(), "{}", text(&out));
    let csv = std::fs::read_to_string(server.path().join(file))?;
    Ok(certboard::client::read_codes(&csv)?
        .into_iter()
        .map(|(sid, code)| (sid, code.grouped()))
        .collect())
}

fn mode(path: &Path) -> std::io::Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o7777)
}

/// How many reports the server recorded.
fn reports(server: &TestServer) -> Result<usize, Error> {
    let out = server.admin(&["reports", "--format", "json"])?;
    assert!(out.status.success(), "{}", text(&out));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(all.as_array().map(Vec::len).unwrap_or_default())
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}", text(out));
    assert!(!text(out).contains("panicked"), "{}", text(out));
}

/// (6) `--enroll-code CODE` is readable by every user in /proc/PID/cmdline:
/// refused before anything is sent, saying what to use; a file, standard
/// input and the environment work.
#[test]
fn the_enrollment_code_is_never_taken_from_the_command_line() -> TestResult {
    let (server, codes) = course()?;
    let sid = "1155000001";
    let out = client_with(&server, "", &[], None, &["--enroll-code", &codes[sid], sid])?;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for hint in ["--code-file", "CERTBOARD_ENROLL_CODE", "/proc"] {
        assert!(err.contains(hint), "{hint}: {}", text(&out));
    }
    assert!(!server.path().join("students").join(sid).exists());

    // The environment.
    let env = [("CERTBOARD_ENROLL_CODE", codes[sid].as_str())];
    ok(&client_with(&server, "", &env, None, &[sid])?);
    // Standard input (not a terminal here, so no prompt).
    let sid = "1155000002";
    let line = format!("{}\n", codes[sid]);
    ok(&client_with(
        &server,
        "",
        &[],
        Some(&line),
        &["--code-file", "-", sid],
    )?);
    // A file.
    let sid = "1155000003";
    let file = server.path().join("my-code.txt");
    std::fs::write(&file, &codes[sid])?;
    ok(&client_with(
        &server,
        "",
        &[],
        None,
        &["--code-file", "my-code.txt", sid],
    )?);
    assert_eq!(reports(&server)?, 3);
    Ok(())
}

/// (7) Under umask 002 the old client made `receipts/` 0775, refused its own
/// folder after Blackboard had recorded the report, and kept no receipt.
/// Any umask now gives the same modes.
#[test]
fn any_umask_gives_the_modes_the_client_expects() -> TestResult {
    let server = TestServer::start(&[])?;
    for (umask, sid) in [
        ("002", "umask002"),
        ("000", "umask000"),
        ("077", "umask077"),
    ] {
        let out = client_with(&server, &format!("umask {umask};"), &[], None, &[sid])?;
        ok(&out);
        let students = server.path().join("students");
        let dir = students.join(sid);
        let receipts: Vec<_> =
            std::fs::read_dir(dir.join("receipts"))?.collect::<Result<_, _>>()?;
        assert_eq!(receipts.len(), 1, "umask {umask}: {}", text(&out));
        assert_eq!(mode(&receipts[0].path())?, 0o644, "umask {umask}");
        assert_eq!(mode(&dir.join("receipts"))?, 0o700, "umask {umask}");
        assert_eq!(mode(&dir)?, 0o700, "umask {umask}");
        assert_eq!(mode(&dir.join("key.pem"))?, 0o600, "umask {umask}");
        assert_eq!(mode(&dir.join("cert.pem"))?, 0o644, "umask {umask}");
        assert_eq!(
            mode(&students.join("root-fingerprint"))?,
            0o644,
            "umask {umask}"
        );
    }
    Ok(())
}

/// (7) A receipts folder an older client left group-writable is tightened
/// and used; one that cannot be used stops the run before the report is
/// sent, so a retry records nothing twice.
#[test]
fn a_receipt_that_cannot_be_kept_stops_the_run_before_anything_is_sent() -> TestResult {
    let server = TestServer::start(&[])?;
    let dir = server.path().join("students/kept");
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    std::fs::create_dir(dir.join("receipts"))?;
    std::fs::set_permissions(dir.join("receipts"), std::fs::Permissions::from_mode(0o775))?;
    let out = server.client(&["kept"])?;
    ok(&out);
    assert!(
        stdout(&out).contains("was writable by group or others"),
        "{}",
        text(&out)
    );
    assert_eq!(mode(&dir.join("receipts"))?, 0o755);

    // `receipts` is not a folder: refused before Blackboard hears anything.
    let out = server.client(&["lost"])?;
    ok(&out);
    let lost = server.path().join("students/lost/receipts");
    std::fs::remove_dir_all(&lost)?;
    std::fs::write(&lost, b"not a folder")?;
    let before = reports(&server)?;
    let out = server.client(&["--resubmit", "lost"])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(
        reports(&server)?,
        before,
        "nothing recorded: {}",
        text(&out)
    );
    Ok(())
}

/// (7) The same bytes again are not recorded a second time without her
/// asking: her saved receipt says they were accepted.
#[test]
fn a_retry_of_the_same_report_is_not_recorded_twice_without_asking() -> TestResult {
    let server = TestServer::start(&[])?;
    ok(&server.client(&["retry"])?);
    assert_eq!(reports(&server)?, 1);
    let out = server.client(&["retry"])?;
    ok(&out);
    assert!(
        stdout(&out).contains("was already accepted: receipt"),
        "{}",
        text(&out)
    );
    assert!(
        stdout(&out).contains("not sent again (--resubmit"),
        "{}",
        text(&out)
    );
    assert_eq!(reports(&server)?, 1, "{}", text(&out));
    let out = server.client(&["--resubmit", "retry"])?;
    ok(&out);
    assert!(
        stdout(&out).contains("recorded once more"),
        "{}",
        text(&out)
    );
    assert_eq!(reports(&server)?, 2);
    Ok(())
}

/// (8) A pin file another user could have written is refused loudly, never
/// used; the first-contact message comes only when the client makes it.
#[test]
fn a_planted_pin_is_refused_and_first_contact_is_said_only_when_pinning() -> TestResult {
    let server = TestServer::start(&[])?;
    let out = server.client(&["first"])?;
    ok(&out);
    assert_eq!(
        stdout(&out).matches("first contact with this CA").count(),
        1
    );
    let pin = server.path().join("students/root-fingerprint");
    let planted = std::fs::read(&pin)?;

    // The right fingerprint, but writable by anyone: refused.
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o666))?;
    let out = server.client(&["second"])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("refusing the pinned root fingerprint"),
        "{}",
        text(&out)
    );
    assert!(!stdout(&out).contains("first contact"), "{}", text(&out));

    // Planted by another user (only root can make one here).
    std::fs::remove_file(&pin)?;
    std::fs::write(&pin, &planted)?;
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o644))?;
    if std::os::unix::fs::chown(&pin, Some(54321), None).is_ok() {
        let out = server.client(&["third"])?;
        assert!(!out.status.success(), "{}", text(&out));
        assert!(
            stdout(&out).contains("belongs to uid 54321"),
            "{}",
            text(&out)
        );
        std::fs::remove_file(&pin)?;
        std::fs::write(&pin, &planted)?;
    }
    // Hers, as she left it: used, and no first-contact message.
    let out = server.client(&["third"])?;
    ok(&out);
    assert!(!stdout(&out).contains("first contact"), "{}", text(&out));
    Ok(())
}

/// (5) A root found beside a receipt is not trusted unless she pins it;
/// the root's fingerprint is always shown.
#[test]
fn verify_receipt_trusts_only_a_pinned_root() -> TestResult {
    let server = TestServer::start(&[])?;
    ok(&server.client(&["alice"])?);
    let receipts = server.path().join("students/alice/receipts");
    let receipt = std::fs::read_dir(&receipts)?
        .next()
        .ok_or("no receipt")??
        .path();
    let pin = std::fs::read_to_string(server.path().join("students/root-fingerprint"))?;
    let pin = pin.trim();
    let verify = |cwd: &Path, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_client"))
            .current_dir(cwd)
            .arg("verify-receipt")
            .arg(&receipt)
            .args(extra)
            .output()
    };
    // From a folder with no pin of hers: the ca.pem beside it is refused.
    let elsewhere = tempfile::tempdir()?;
    let out = verify(elsewhere.path(), &[])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!stdout(&out).contains("valid receipt"), "{}", text(&out));
    assert!(stdout(&out).contains("nobody pinned it"), "{}", text(&out));
    assert!(
        stdout(&out).contains(pin),
        "the fingerprint is shown: {}",
        text(&out)
    );
    // A wrong fingerprint: refused as a look-alike.
    let wrong = "00".repeat(32);
    let out = verify(elsewhere.path(), &["--ca-fingerprint", &wrong])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("look-alike"), "{}", text(&out));
    // Pinned by the published fingerprint, or by her own pin file.
    let out = verify(elsewhere.path(), &["--ca-fingerprint", pin])?;
    ok(&out);
    assert!(stdout(&out).contains("valid receipt"), "{}", text(&out));
    assert!(
        stdout(&out).contains(&format!("root SHA-256 {pin}")),
        "{}",
        text(&out)
    );
    let out = verify(server.path(), &[])?;
    ok(&out);
    assert!(
        stdout(&out).contains(&format!("root SHA-256 {pin}")),
        "{}",
        text(&out)
    );
    Ok(())
}

/// (11) A revoked student given a new code enrolls with it; without one,
/// the hint says to ask for a code, not "--renew enrolls again".
#[test]
fn a_revoked_student_enrolls_again_with_her_new_code() -> TestResult {
    let (server, codes) = course()?;
    let sid = "1155000001";
    std::fs::write(server.path().join("code.txt"), &codes[sid])?;
    ok(&server.client(&["--code-file", "code.txt", sid])?);
    let cert = server.path().join("students").join(sid).join("cert.pem");
    let first = std::fs::read(&cert)?;
    let out = server.admin(&["revoke", "--sid", sid])?;
    assert!(out.status.success(), "{}", text(&out));

    let out = server.client(&["--resubmit", sid])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        !stdout(&out).contains("--renew enrolls again"),
        "{}",
        text(&out)
    );
    assert!(
        stdout(&out).contains("new enrollment code"),
        "{}",
        text(&out)
    );

    let new = codes_in(
        &server,
        &["roster", "codes", "--out", "new.csv", "--sid", sid],
        "new.csv",
    )?;
    std::fs::write(server.path().join("code.txt"), &new[sid])?;
    let out = server.client(&["--code-file", "code.txt", "--resubmit", sid])?;
    ok(&out);
    assert!(stdout(&out).contains("enrolling with it"), "{}", text(&out));
    assert!(
        stdout(&out).contains("Blackboard acknowledged"),
        "{}",
        text(&out)
    );
    assert_ne!(std::fs::read(&cert)?, first);
    Ok(())
}

/// (12) The first-contact message breaks its line, not prints `\n`.
#[test]
fn the_first_contact_message_has_real_line_breaks() -> TestResult {
    let server = TestServer::start(&[])?;
    let out = server.client(&["newline"])?;
    ok(&out);
    let s = stdout(&out);
    assert!(s.contains("root's SHA-256 fingerprint is\n  "), "{s}");
    assert!(!s.contains("\\n"), "{s}");
    Ok(())
}

/// (13) Network errors say what to check, not only the system's words.
#[test]
fn network_errors_come_with_a_hint() -> TestResult {
    let closed = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let dir = tempfile::tempdir()?;
    let run = |addr: std::net::SocketAddr| {
        Command::new(env!("CARGO_BIN_EXE_client"))
            .current_dir(dir.path())
            .args(["--ca", &addr.to_string(), "--blackboard", &addr.to_string()])
            .args(["--timeout", "20", "1155000001"])
            .stdin(Stdio::null())
            .output()
    };
    let out = run(closed)?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("is the server running"),
        "{}",
        text(&out)
    );
    assert!(!stdout(&out).contains("os error"), "{}", text(&out));

    // A server that closes without a word.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let closer = std::thread::spawn(move || {
        if let Ok((s, _)) = listener.accept() {
            drop(s);
        }
    });
    let out = run(addr)?;
    let _ = closer.join();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("closed the connection")
            || stdout(&out).contains("dropped the connection"),
        "{}",
        text(&out)
    );
    assert!(stdout(&out).contains("its log says why"), "{}", text(&out));
    Ok(())
}

/// (18) A closed stderr does not make the client panic.
#[test]
fn a_closed_stderr_does_not_panic() -> TestResult {
    let out = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" \"$@\" 2>&-")
        .arg(env!("CARGO_BIN_EXE_client"))
        .args(["--ca-fingerprint", "not hex", "1155000001"])
        .stdin(Stdio::null())
        .output()?;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    Ok(())
}
