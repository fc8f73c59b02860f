//! End-to-end: the man in the middle (`examples/adversary.rs`) between the
//! real client and the real server, in every mode. Through `pass` the
//! student succeeds; every tampering is refused by Blackboard, which says
//! why (to the student and in its log), and nothing tampered is recorded.
//! Every answer in Blackboard's place (impostor key, look-alike root,
//! spliced offer) is refused by the student before her report leaves.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

type Error = Box<dyn std::error::Error>;

/// The adversary example's binary, built (or found up to date) by cargo:
/// `cargo test --test adversary` alone does not build examples, and a stale
/// one would test old code.
fn adversary_exe() -> Result<PathBuf, Error> {
    type Built = Result<PathBuf, Box<dyn std::error::Error + Send + Sync>>;
    static BUILT: std::sync::OnceLock<Built> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_server"))
            .parent()
            .ok_or("no target dir")?
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--example", "adversary"]);
        if bin_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .map_err(|e| format!("running cargo: {e}"))?;
        if !status.success() {
            return Err("cannot build the adversary example".into());
        }
        Ok(bin_dir.join("examples").join("adversary"))
    });
    match built {
        Ok(path) => Ok(path.clone()),
        Err(e) => Err(format!("building the adversary example: {e}").into()),
    }
}

/// A running adversary, killed when dropped; its stdout lines collected.
struct Adversary {
    child: Child,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Adversary {
    fn start(upstream: SocketAddr, mode: &str) -> Result<Adversary, Error> {
        Self::start_with(upstream, mode, &[])
    }

    fn start_with(upstream: SocketAddr, mode: &str, extra: &[&str]) -> Result<Adversary, Error> {
        let mut child = Command::new(adversary_exe()?)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                &upstream.to_string(),
            ])
            .args(["--mode", mode])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening ") {
                    let _ = tx.send(addr.to_string());
                }
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a.parse()?,
            Err(_) => {
                let _ = child.kill();
                return Err("the adversary did not start listening".into());
            }
        };
        Ok(Adversary { child, addr, lines })
    }

    fn output(&self) -> String {
        self.lines.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Waits until the adversary printed a line containing `needle`.
    fn wait_for(&self, needle: &str, secs: u64) -> Option<String> {
        let until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < until {
            if let Ok(l) = self.lines.lock() {
                if let Some(line) = l.iter().find(|l| l.contains(needle)) {
                    return Some(line.clone());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Adversary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real client, enrolling directly with the CA and submitting through
/// the adversary.
fn client_through(
    server: &TestServer,
    adversary: &Adversary,
    sid: &str,
) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_client"))
        .current_dir(server.path())
        .args(["--ca", &server.ca.to_string()])
        .args(["--blackboard", &adversary.addr.to_string()])
        .args(["--timeout", "20", sid])
        .stdin(Stdio::null())
        .output()
}

fn reports_for(server: &TestServer, sid: &str) -> Result<usize, Error> {
    let out = server.admin(&["reports"])?;
    assert!(out.status.success(), "{}", text(&out));
    let needle = format!(" sid={sid} ");
    Ok(stdout(&out).lines().filter(|l| l.contains(&needle)).count())
}

/// Runs one tampering mode: the student fails with `to_student`, the server
/// logs `logged`, the adversary says it tampered, nothing is recorded.
fn refused_mode(
    server: &TestServer,
    mode: &str,
    sid: &str,
    tampered: &str,
    to_student: &str,
    logged: &str,
) -> TestResult {
    let adversary = Adversary::start(server.blackboard, mode)?;
    let out = client_through(server, &adversary, sid)?;
    let context = format!(
        "mode {mode}\n{}\n--- adversary\n{}",
        text(&out),
        adversary.output()
    );
    assert!(!out.status.success(), "{context}");
    assert!(stdout(&out).contains(to_student), "{context}");
    assert!(
        adversary
            .wait_for(&format!("tampered: {tampered}"), 10)
            .is_some(),
        "{context}"
    );
    assert!(
        adversary.wait_for("Blackboard refused", 10).is_some(),
        "{context}"
    );
    assert!(
        server.wait_log(logged, 10),
        "{mode}: {logged:?} not in the server log:\n{}",
        server.log()
    );
    assert_eq!(reports_for(server, sid)?, 0, "{context}");
    Ok(())
}

#[test]
fn pass_relays_an_honest_submission() -> TestResult {
    let server = TestServer::start(&[])?;
    let adversary = Adversary::start(server.blackboard, "pass")?;
    let out = client_through(&server, &adversary, "passer")?;
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        adversary.output()
    );
    assert!(adversary
        .wait_for("Blackboard sent SignedReceipt", 10)
        .is_some());
    assert!(!adversary.output().contains("tampered"));
    assert_eq!(reports_for(&server, "passer")?, 1);
    Ok(())
}

#[test]
fn flip_truncate_and_drop_mac_are_refused_and_nothing_is_recorded() -> TestResult {
    let server = TestServer::start(&[])?;
    refused_mode(
        &server,
        "flip",
        "flipped",
        "flipped the low bit of report ciphertext byte",
        "report refused: the MAC does not verify",
        "report from SID flipped refused: MAC does not verify",
    )?;
    refused_mode(
        &server,
        "truncate",
        "truncated",
        "cut the report ciphertext from",
        "report refused: the MAC does not verify",
        "report from SID truncated refused: MAC does not verify",
    )?;
    refused_mode(
        &server,
        "drop-mac",
        "macless",
        "removed the 32-byte MAC",
        "malformed message: message truncated in field `mac`",
        "malformed message: message truncated in field `mac`",
    )?;
    Ok(())
}

#[test]
fn a_swapped_certificate_is_refused_and_nothing_is_recorded() -> TestResult {
    let server = TestServer::start(&[])?;
    refused_mode(
        &server,
        "swap-cert",
        "swapped",
        "replaced SID swapped's certificate",
        "the certificate does not chain to the CUHK root",
        "certificate refused for SID \"swapped\": the certificate does not chain to the CUHK root",
    )
}

/// Runs one mode that answers in Blackboard's place: the student refuses
/// with `to_student` before anything else is sent, and nothing is recorded.
fn impostor_refused(server: &TestServer, mode: &str, sid: &str, to_student: &str) -> TestResult {
    let adversary = Adversary::start(server.blackboard, mode)?;
    let out = client_through(server, &adversary, sid)?;
    let context = format!(
        "mode {mode}\n{}\n--- adversary\n{}",
        text(&out),
        adversary.output()
    );
    assert!(!out.status.success(), "{context}");
    let said = stdout(&out);
    assert!(said.contains(to_student), "{context}");
    assert!(said.contains("nothing was sent"), "{context}");
    assert!(!said.contains("step 5"), "nothing decrypted: {context}");
    assert!(!said.contains("step 6"), "no report sent: {context}");
    assert!(
        adversary
            .wait_for("answered in Blackboard's place", 10)
            .is_some(),
        "{context}"
    );
    // Her client closed: the adversary saw no report come.
    assert!(adversary.wait_for(": closed", 10).is_some(), "{context}");
    assert!(!adversary.output().contains("SENT her report"), "{context}");
    assert_eq!(reports_for(server, sid)?, 0, "{context}");
    Ok(())
}

#[test]
fn an_impostor_blackboard_is_refused_before_the_report_leaves() -> TestResult {
    let server = TestServer::start(&[])?;
    // Blackboard's genuine certificate, the adversary's signature.
    impostor_refused(
        &server,
        "impersonate",
        "impostor",
        "Blackboard's signature over this exchange does not verify",
    )?;
    // A certificate of its own, from a root with CUHK's name.
    impostor_refused(
        &server,
        "impersonate-lookalike",
        "lookalike",
        "Blackboard's certificate does not chain to the pinned CUHK root",
    )?;
    // A genuine signed offer, from another session.
    impostor_refused(
        &server,
        "splice",
        "spliced",
        "Blackboard's signature over this exchange does not verify",
    )
}

#[test]
fn a_replayed_submission_is_refused_and_recorded_only_once() -> TestResult {
    let server = TestServer::start(&[])?;
    let adversary = Adversary::start(server.blackboard, "replay")?;
    // The student's own submission goes through untouched.
    let out = client_through(&server, &adversary, "replayed")?;
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        adversary.output()
    );
    // Then the adversary plays it back on a new connection.
    let verdict = adversary
        .wait_for("replay verdict:", 30)
        .ok_or_else(|| format!("no replay verdict:\n{}", adversary.output()))?;
    assert!(
        verdict.contains("Blackboard refused the replay")
            && verdict.contains("the MAC does not verify"),
        "{verdict}\n{}",
        adversary.output()
    );
    assert!(server.wait_log("report from SID replayed refused: MAC does not verify", 10));
    assert_eq!(
        reports_for(&server, "replayed")?,
        1,
        "only the student's own submission is recorded"
    );
    Ok(())
}

#[test]
fn the_script_shows_every_mode_to_a_person() -> TestResult {
    let exe = adversary_exe()?;
    let bin_dir = exe.parent().and_then(|p| p.parent()).ok_or("no bin dir")?;
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/adversary.sh"
        ))
        .env("CERTBOARD_BIN_DIR", bin_dir)
        .stdin(Stdio::null())
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    let s = stdout(&out);
    for mode in [
        "pass",
        "flip",
        "truncate",
        "drop-mac",
        "swap-cert",
        "replay",
        "impersonate",
        "impersonate-lookalike",
        "splice",
    ] {
        assert!(
            s.contains(&format!("mode {mode} (student sid-{mode})")),
            "{s}"
        );
    }
    assert_eq!(s.matches("-- outcome: student SUCCEEDED").count(), 2, "{s}");
    assert_eq!(s.matches("-- outcome: student FAILED").count(), 7, "{s}");
    // Each impostor mode's refusal, on the client's stdout and stderr.
    assert_eq!(s.matches(": FAILED: refusing to submit").count(), 3, "{s}");
    assert!(
        s.contains("replay verdict: Blackboard refused the replay"),
        "{s}"
    );
    let recorded: Vec<&str> = s.lines().filter(|l| l.starts_with("receipt=")).collect();
    assert_eq!(recorded.len(), 2, "{s}");
    assert!(recorded.iter().any(|l| l.contains(" sid=sid-pass ")), "{s}");
    assert!(
        recorded.iter().any(|l| l.contains(" sid=sid-replay ")),
        "{s}"
    );
    Ok(())
}

// Against enrollment codes: the adversary in front of the CA of a course
// with a roster.

const ROSTER: &str = "sid,name\n1155000001,Chan Tai Man\n1155000002,Lee Ka Yan\n";

/// A server with a roster of two, and their codes (grouped form).
fn course_server() -> Result<(TestServer, std::collections::HashMap<String, String>), Error> {
    let server = TestServer::start(&[])?;
    std::fs::write(server.path().join("roster.csv"), ROSTER)?;
    let out = server.admin(&["roster", "import", "roster.csv"])?;
    assert!(out.status.success(), "{}", text(&out));
    let out = server.admin(&["roster", "codes", "--out", "codes.csv"])?;
    assert!(out.status.success(), "{}", text(&out));
    let codes =
        certboard::client::read_codes(&std::fs::read_to_string(server.path().join("codes.csv"))?)?
            .into_iter()
            .map(|(sid, code)| (sid, code.grouped()))
            .collect();
    Ok((server, codes))
}

/// The real client, enrolling through the adversary with `code`, then
/// submitting to Blackboard directly.
fn enroll_through(
    server: &TestServer,
    adversary: &Adversary,
    code: &str,
    sid: &str,
) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_client"))
        .current_dir(server.path())
        .args(["--ca", &adversary.addr.to_string()])
        .args(["--blackboard", &server.blackboard.to_string()])
        .args(["--ca-cert", "keys/ca-cert.pem"])
        .args(["--timeout", "20", sid])
        .env("CERTBOARD_ENROLL_CODE", code)
        .stdin(Stdio::null())
        .output()
}

/// The serials of the certificates recorded for `sid` (lowercase hex).
fn serials_of(server: &TestServer, sid: &str) -> Result<Vec<String>, Error> {
    let out = server.admin(&["certs", "--format", "json"])?;
    assert!(out.status.success(), "{}", text(&out));
    let certs: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(certs
        .as_array()
        .ok_or("not an array")?
        .iter()
        .filter(|c| c["sid"] == sid)
        .filter_map(|c| c["serial"].as_str().map(str::to_lowercase))
        .collect())
}

/// The serial of the certificate the student saved (lowercase hex).
fn saved_serial(server: &TestServer, sid: &str) -> Result<String, Error> {
    let pem = std::fs::read(server.path().join("students").join(sid).join("cert.pem"))?;
    let cert = openssl::x509::X509::from_pem(&pem)?;
    Ok(cert
        .serial_number()
        .to_bn()?
        .to_hex_str()?
        .to_string()
        .to_lowercase())
}

/// Only the student's own certificate is recorded for `sid`.
fn only_hers(server: &TestServer, sid: &str, context: &str) -> TestResult {
    let serials = serials_of(server, sid)?;
    let hers = saved_serial(server, sid)?;
    assert_eq!(serials.len(), 1, "{serials:?}\n{context}");
    assert_eq!(
        serials[0].trim_start_matches('0'),
        hers.trim_start_matches('0'),
        "{context}"
    );
    Ok(())
}

#[test]
fn a_replayed_enrollment_is_refused_because_the_nonce_differs() -> TestResult {
    let (server, codes) = course_server()?;
    let sid = "1155000001";
    let adversary = Adversary::start(server.ca, "replay-enrollment")?;
    let out = enroll_through(&server, &adversary, &codes[sid], sid)?;
    let context = format!("{}\n--- adversary\n{}", text(&out), adversary.output());
    let verdict = adversary
        .wait_for("replay verdict:", 30)
        .ok_or_else(|| format!("no verdict\n{context}"))?;
    // Replayed while her code was still unused: refused only because the
    // MAC binds the CA's nonce of the student's own connection.
    assert!(
        verdict.contains("the CA refused: Error WrongCode: ")
            && verdict.contains("wrong enrollment code"),
        "{verdict}\n{context}"
    );
    assert!(
        server.wait_log(
            &format!("enrollment for SID {sid} refused: wrong enrollment code"),
            10
        ),
        "{}",
        server.log()
    );
    // The student's own request, let through after it, still enrolls her.
    assert!(out.status.success(), "{context}");
    only_hers(&server, sid, &context)?;
    Ok(())
}

#[test]
fn a_csr_swapped_under_a_valid_code_mac_is_refused_as_a_wrong_code() -> TestResult {
    let (server, codes) = course_server()?;
    let sid = "1155000002";
    let adversary = Adversary::start(server.ca, "swap-csr")?;
    let out = enroll_through(&server, &adversary, &codes[sid], sid)?;
    let context = format!("{}\n--- adversary\n{}", text(&out), adversary.output());
    assert!(
        adversary
            .wait_for("tampered: replaced SID 1155000002's CSR", 10)
            .is_some(),
        "{context}"
    );
    assert!(
        adversary
            .wait_for("the CA refused: Error WrongCode: ", 10)
            .is_some(),
        "{context}"
    );
    assert!(!out.status.success(), "{context}");
    assert!(stdout(&out).contains("wrong enrollment code"), "{context}");
    assert!(
        serials_of(&server, sid)?.is_empty(),
        "nothing issued\n{context}"
    );
    // Her code is not consumed by the attempt: she enrolls directly with it.
    let code_file = server.path().join(format!("code-{sid}.txt"));
    std::fs::write(&code_file, &codes[sid])?;
    let out = server.client(&[
        "--ca-cert",
        "keys/ca-cert.pem",
        "--code-file",
        &code_file.to_string_lossy(),
        sid,
    ])?;
    assert!(out.status.success(), "{}", text(&out));
    only_hers(&server, sid, &context)?;
    Ok(())
}

#[test]
fn a_consumed_code_reused_with_a_correct_mac_is_refused_as_already_used() -> TestResult {
    let (server, codes) = course_server()?;
    let sid = "1155000001";
    let code = &codes[sid];
    let adversary = Adversary::start_with(server.ca, "reuse-code", &["--enroll-code", code])?;
    let out = enroll_through(&server, &adversary, code, sid)?;
    let context = format!("{}\n--- adversary\n{}", text(&out), adversary.output());
    assert!(out.status.success(), "{context}");
    let verdict = adversary
        .wait_for("reuse verdict:", 30)
        .ok_or_else(|| format!("no verdict\n{context}"))?;
    assert!(
        verdict.contains("the CA refused: Error CodeUsed: ")
            && verdict.contains("enrollment code already used"),
        "{verdict}\n{context}"
    );
    assert!(
        server.wait_log(
            &format!("enrollment for SID {sid} refused: enrollment code already used"),
            10
        ),
        "{}",
        server.log()
    );
    only_hers(&server, sid, &context)?;
    Ok(())
}
