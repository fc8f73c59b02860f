//! End to end: the client's failures say what a person can act on
//! (issue 12): a timeout and how long it waited, a peer that is not
//! certboard, the CA and Blackboard ports swapped, a closed stdout
//! (`client ... | head -1`), no empty student folder after a failed first
//! enrollment, a server whose database is unavailable (code 19); and the
//! server's startup log names the absolute keys and data paths and what
//! the store holds.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{stdout, text, TestResult, TestServer};

type Error = Box<dyn std::error::Error>;

/// A loopback listener that is not certboard: it accepts, optionally
/// answers `answer` once it has heard something, and otherwise never
/// says a word. Stops (closing every connection) when dropped.
struct FakePeer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakePeer {
    fn start(answer: Option<&'static [u8]>) -> Result<FakePeer, Error> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            let until = Instant::now() + Duration::from_secs(120);
            while !stopping.load(Ordering::SeqCst) && Instant::now() < until && held.len() < 16 {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        if let Some(answer) = answer {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                            let mut first = [0u8; 64];
                            let _ = s.read(&mut first);
                            let _ = s.write_all(answer);
                        }
                        held.push(s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(FakePeer {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The client binary in `dir` against `ca` and `bb`, with `args`.
fn client(dir: &Path, ca: SocketAddr, bb: SocketAddr, args: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_client"))
        .current_dir(dir)
        .args(["--ca", &ca.to_string(), "--blackboard", &bb.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
}

/// Failed, saying `needle` exactly once, and without a panic.
/// The client's enrollment of 1155000001 against a fake CA that answers
/// its first frame with `payload` as one frame; her out-dir and what the
/// client said.
fn enroll_against_one_answer(payload: &[u8]) -> Result<(tempfile::TempDir, Output), Error> {
    let mut frame = (payload.len() as i32).to_le_bytes().to_vec();
    frame.extend_from_slice(payload);
    let answer: &'static [u8] = Box::leak(frame.into_boxed_slice());
    let peer = FakePeer::start(Some(answer))?;
    let dir = tempfile::tempdir()?;
    let out = client(
        dir.path(),
        peer.addr,
        peer.addr,
        &["--timeout", "5", "1155000001"],
    )?;
    Ok((dir, out))
}

fn failed_saying(out: &Output, needle: &str) {
    assert!(!out.status.success(), "{}", text(out));
    let s = stdout(out);
    assert_eq!(s.matches(needle).count(), 1, "{needle:?}: {}", text(out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        text(out)
    );
}

#[test]
fn a_peer_that_never_answers_is_a_timeout_that_says_how_long() -> TestResult {
    let peer = FakePeer::start(None)?;
    let dir = tempfile::tempdir()?;
    let out = client(
        dir.path(),
        peer.addr,
        peer.addr,
        &["--timeout", "1", "1155000001"],
    )?;
    failed_saying(
        &out,
        &format!(
            "waiting for an answer from {}: timed out after 1 s without an answer \
             (--timeout SECS to wait longer)",
            peer.addr
        ),
    );
    assert!(
        !dir.path().join("students/1155000001").exists(),
        "a failed first enrollment leaves no student folder"
    );
    Ok(())
}

#[test]
fn a_peer_that_is_not_certboard_is_named_as_such() -> TestResult {
    let peer = FakePeer::start(Some(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nBad Request",
    ))?;
    let dir = tempfile::tempdir()?;
    let out = client(
        dir.path(),
        peer.addr,
        peer.addr,
        &["--timeout", "20", "1155000001"],
    )?;
    failed_saying(
        &out,
        &format!(
            "{} does not speak the certboard protocol (its first bytes \"HTTP/1.1\" are not a \
             certboard frame",
            peer.addr
        ),
    );
    assert!(
        stdout(&out).contains("check the address and port"),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join("students/1155000001").exists());
    Ok(())
}

#[test]
fn swapped_ports_are_named_as_swapped() -> TestResult {
    let server = TestServer::start(&[])?;
    // Both swapped: the CA's hello reaches Blackboard.
    let out = client(
        server.path(),
        server.blackboard,
        server.ca,
        &["--timeout", "20", "1155000001"],
    )?;
    failed_saying(
        &out,
        &format!(
            "({} is Blackboard, not the CA: the ports look swapped; --ca is the CA's address)",
            server.blackboard
        ),
    );
    assert!(!server.path().join("students/1155000001").exists());
    // Enrolled at the right CA, then the submission sent to the CA.
    let out = server.client(&["1155000001"])?;
    assert!(out.status.success(), "{}", text(&out));
    let out = client(
        server.path(),
        server.ca,
        server.ca,
        &["--timeout", "20", "1155000001"],
    )?;
    failed_saying(
        &out,
        &format!(
            "({} is the CA, not Blackboard: the ports look swapped; --blackboard is \
             Blackboard's address)",
            server.ca
        ),
    );
    // The same for version 3's exchanges (her status, a file).
    let out = client(
        server.path(),
        server.ca,
        server.ca,
        &["--timeout", "20", "status", "1155000001"],
    )?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "({} is the CA, not Blackboard: the ports look swapped",
            server.ca
        )),
        "{}",
        text(&out)
    );
    Ok(())
}

#[test]
fn a_closed_stdout_ends_the_client_quietly() -> TestResult {
    let server = TestServer::start(&[])?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_client"))
        .current_dir(server.path())
        .args(["--ca", &server.ca.to_string()])
        .args(["--blackboard", &server.blackboard.to_string()])
        .args(["--timeout", "20", "1155000001", "1155000002"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // `| head -1`: one line read, then the pipe closed while the client
    // still has lines to write.
    let mut first = String::new();
    {
        let pipe = child.stdout.take().ok_or("no stdout")?;
        BufReader::new(pipe).read_line(&mut first)?;
    }
    assert_eq!(first, "== student 1155000001 ==\n");
    let mut err = String::new();
    child
        .stderr
        .take()
        .ok_or("no stderr")?
        .read_to_string(&mut err)?;
    let status = child.wait()?;
    assert!(!err.contains("panicked"), "{status:?}: {err}");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        matches!(status.code(), Some(0) | Some(141)) || status.signal() == Some(13),
        "{status:?}: {err}"
    );
    Ok(())
}

#[test]
fn a_failed_first_enrollment_leaves_no_student_folder() -> TestResult {
    // Nothing listens on the CA's address: the connection is refused.
    let closed = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let dir = tempfile::tempdir()?;
    let out = client(
        dir.path(),
        closed,
        closed,
        &["--timeout", "20", "1155000001"],
    )?;
    failed_saying(&out, &format!("connecting to {closed}: "));
    assert!(
        !dir.path().join("students/1155000001").exists(),
        "{}",
        text(&out)
    );
    Ok(())
}

#[test]
fn the_startup_log_names_absolute_paths_and_counts() -> TestResult {
    // TestServer starts it with the relative `--keys-dir keys --data-dir data`.
    let server = TestServer::start(&[])?;
    let base = server.path().to_path_buf();
    assert!(base.is_absolute());
    let line = |db: &str, certs: u32, reports: u32, roster: u32| {
        format!(
            "keys dir {}; data dir {} ({db}): {certs} certificate(s), {reports} report(s), \
             {roster} student(s) on the roster",
            base.join("keys").display(),
            base.join("data").display()
        )
    };
    let fresh = line("new database", 0, 0, 0);
    assert!(server.wait_log(&fresh, 10), "{fresh:?}\n{}", server.log());
    let out = server.client(&["1155000001"])?;
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(
        base.join("roster.csv"),
        "sid,name\n1155000001,Chan Tai Man\n1155000002,Lee Ka Yan\n",
    )?;
    // Over an open-enrollment certificate: the instructor decides.
    let out = server.admin(&["roster", "import", "roster.csv", "--keep-unverified"])?;
    assert!(out.status.success(), "{}", text(&out));
    let dir = server.crash()?;
    let server = TestServer::start_in(dir, &[])?;
    let again = line("existing database", 1, 1, 2);
    assert!(server.wait_log(&again, 10), "{again:?}\n{}", server.log());
    Ok(())
}

/// Issue 22, item 17: a student whose certificate expired within the
/// renewal grace renews by running the client again, with no code: the
/// client proves possession of the expired certificate's key, the CA
/// renews it and revokes the old one as superseded.
#[test]
fn an_expired_certificate_renews_from_the_client_within_the_grace() -> TestResult {
    use certboard::store::{Authorisation, CertRecord, Record, Storage};
    let server = TestServer::start(&[])?;
    let sid = "1155000071";
    let first = server.client(&[sid])?;
    assert!(first.status.success(), "{}", text(&first));
    // Replace her certificate with one of her key that expired a moment
    // ago (issued by the same CA and recorded, as the server would have).
    let dir = server.path().join("students").join(sid);
    let key = openssl::pkey::PKey::private_key_from_pem(&std::fs::read(dir.join("key.pem"))?)?;
    let ca = server.open_ca()?;
    let now = certboard::time::now_unix();
    let params = certboard::testing::CertParams {
        not_before: now - 200,
        not_after: now - 2,
        ..certboard::testing::CertParams::student(sid)
    };
    let cert = params.signed_by(&key, certboard::testing::Issuer::ca(&ca))?;
    let serial = certboard::ca::Serial::from_asn1(cert.serial_number())?;
    let mut store = certboard::store::SqliteStore::open(&server.path().join("data"))?;
    store.commit(&[Record::Cert(CertRecord {
        serial: serial.clone(),
        sid: sid.into(),
        not_before: params.not_before,
        not_after: params.not_after,
        der: cert.to_der()?,
        origin: certboard::store::Origin::Certboard,
        authorised: Authorisation::Open,
    })])?;
    std::fs::write(dir.join("cert.pem"), cert.to_pem()?)?;
    let again = server.client(&[sid])?;
    let out = text(&again);
    assert!(again.status.success(), "{out}");
    assert!(
        out.contains("her saved certificate has expired: renewing"),
        "{out}"
    );
    // The old one is revoked as superseded.
    let certs = server.admin(&["certs", "--format", "json"])?;
    let listed = stdout(&certs);
    let old = serial.to_string();
    assert!(listed.contains(&old), "{listed}");
    let status = store.cert_status(&serial)?;
    assert!(format!("{status:?}").contains("Superseded"), "{status:?}");
    Ok(())
}

/// Issue 20, gap 10: a CA that answers with another protocol version's
/// `CaChallenge` is refused before anything (a code's MAC, a renewal
/// proof) is sent, and the client says which version it got.
#[test]
fn a_challenge_of_another_version_is_refused_before_anything_is_sent() -> TestResult {
    // The client speaks version 3 first (PROTOCOL.md V3.7).
    let payload = certboard::message::Message::CaChallenge3 {
        version: 4,
        policy: certboard::message::EnrollPolicy::Open,
        nonce: [7; 32],
        ca_cert_der: Vec::new(),
        log_key: String::new(),
        signature: Vec::new(),
    }
    .encode();
    let (_dir, out) = enroll_against_one_answer(&payload)?;
    failed_saying(&out, "the CA answered with protocol version 4");
    Ok(())
}

/// Code 19: a CA whose database is unavailable refuses her first message
/// (it reads the roster's state); the client says whose database, that
/// nothing was recorded and to try again, and leaves no student folder.
#[test]
fn a_store_unavailable_refusal_says_whose_database_and_to_try_again() -> TestResult {
    let payload = certboard::message::Message::error(
        certboard::message::ErrorCode::StoreUnavailable,
        "store unavailable: nothing was acknowledged (the server's database is not answering, \
         so nothing was recorded); try again in a minute",
    )
    .encode();
    let (dir, out) = enroll_against_one_answer(&payload)?;
    failed_saying(
        &out,
        "the CA's database is unavailable; nothing was recorded; try again in a minute",
    );
    assert!(!dir.path().join("students/1155000001").exists());
    Ok(())
}

/// After `--` every word is a SID: an option written there is said to be
/// one, not taken as a student.
#[test]
fn an_option_after_the_double_dash_is_not_taken_for_a_sid() -> TestResult {
    let server = TestServer::start(&[])?;
    let out = server.client(&["--", "1155000001", "--out-dir", "elsewhere"])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("\"--out-dir\" is an option, not a SID"),
        "{}",
        text(&out)
    );
    assert!(!server.path().join("students/1155000001").exists());
    // A command after a SID is not a student either.
    let out = server.client(&["1155000001", "status"])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("\"status\" is a command, not a SID"),
        "{}",
        text(&out)
    );
    assert!(!server.path().join("students/status").exists());
    Ok(())
}
