//! Witnesses end to end (issue 21's stretch): `server witness run` on its
//! own port cosigns the checkpoints a running log server sends it
//! (`--witness`), `/log/checkpoint` then carries the cosignature, a forked
//! checkpoint signed with the real log key is refused by the witness, and
//! a witness that is down holds up nothing. A commit waits (bounded,
//! `--witness-wait`) for the witness, so a fresh receipt and certificate
//! proof carry its cosignature; one that is down is not waited for. Two
//! hosts on one PostgreSQL database ask the same witness, which ends up
//! with the one log's tree, and each host's receipts carry its
//! cosignature.

mod common;
mod pg;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use certboard::tlog::cosignature::CosignatureVerifier;
use certboard::tlog::witness::request_body;
use certboard::tlog::{Checkpoint, NoteVerifier};
use common::{text, TestServer, PASSPHRASE};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WITNESS_NAME: &str = "witness.test/w1";

fn server_in(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_server"));
    c.current_dir(dir)
        .args(["--keys-dir", "keys", "--data-dir", "data"])
        .env("CERTBOARD_CA_PASSPHRASE", PASSPHRASE)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    c
}

/// A witness process, killed when dropped.
struct WitnessProcess {
    child: Child,
    addr: SocketAddr,
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_witness(dir: &Path, log_vkey: &str) -> Result<WitnessProcess, Box<dyn std::error::Error>> {
    start_witness_on(dir, log_vkey, "127.0.0.1:0")
}

fn start_witness_on(
    dir: &Path,
    log_vkey: &str,
    listen: &str,
) -> Result<WitnessProcess, Box<dyn std::error::Error>> {
    let mut child = server_in(dir)
        .args(["witness", "run", "--listen", listen, "--log-key", log_vkey])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(out).lines();
    let mut addr = None;
    for line in lines.by_ref().take(4) {
        if let Some(a) = line?.strip_prefix("listening witness ") {
            addr = Some(a.trim().parse()?);
            break;
        }
    }
    let Some(addr) = addr else {
        let _ = child.kill();
        return Err("the witness did not say where it listens".into());
    };
    Ok(WitnessProcess { child, addr })
}

fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut all = String::new();
    s.read_to_string(&mut all)?;
    let status = all.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = all
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// `/log/checkpoint` once it carries the witness's cosignature (the
/// witness thread asks right after the commit; bounded wait).
fn cosigned_checkpoint(log_http: SocketAddr) -> Result<String, Box<dyn std::error::Error>> {
    let mut note = String::new();
    for _ in 0..200 {
        let (status, body) = http(log_http, "GET", "/log/checkpoint", "")?;
        assert_eq!(status, 200, "{body}");
        note = body;
        if note.contains(WITNESS_NAME) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(note)
}

#[test]
fn a_witness_cosigns_the_log_refuses_a_fork_and_being_down_stops_nothing() -> TestResult {
    // The log server's first start makes the log key; one student.
    let server = TestServer::start(&[])?;
    let out = server.client(&["1155000001"])?;
    assert!(out.status.success(), "{}", text(&out));
    let log_vkey = server.admin_ok(&["log", "key"])?.trim().to_string();
    let dir = server.crash()?;

    // The witness, on its own dirs.
    let wdir = tempfile::tempdir()?;
    let wkey = init_witness(wdir.path())?;
    let key = server_in(wdir.path()).args(["witness", "key"]).output()?;
    assert_eq!(String::from_utf8(key.stdout)?.trim(), wkey);
    let witness = start_witness(wdir.path(), &log_vkey)?;

    // The log server again, now asking the witness.
    let url = format!("http://{}", witness.addr);
    // With --witness-wait 0, as before receipts carried cosignatures:
    // commits do not wait, the served checkpoint is cosigned moments later.
    let server = TestServer::start_in(
        dir,
        &[
            "--http-listen",
            "127.0.0.1:0",
            "--witness",
            &url,
            "--witness-key",
            &wkey,
            "--witness-wait",
            "0",
        ],
    )?;
    let log_http = server.http_addr()?;
    let out = server.client(&["1155000002"])?;
    assert!(out.status.success(), "{}", text(&out));

    // The served checkpoint comes to carry the witness's cosignature of
    // the whole tree (two certificates, two reports).
    let cosigner = CosignatureVerifier::from_key(&wkey)?;
    let log = NoteVerifier::from_key(&log_vkey)?;
    let origin = log.name().to_string();
    let note = cosigned_checkpoint(log_http)?;
    assert!(
        cosigner.verify(&note).is_ok(),
        "not cosigned: {note}\n{}",
        server.log()
    );
    let head = Checkpoint::open(&note, &log, &origin)?;
    assert_eq!(head.size, 4);
    let (_, metrics) = http(log_http, "GET", "/metrics", "")?;
    assert!(
        metrics.contains(
            "certboard_witness_requests_total{witness=\"witness.test/w1\",outcome=\"cosigned\"}"
        ),
        "{metrics}"
    );

    // Her client, trusting the witness: a receipt's checkpoint is said to
    // be cosigned or not (with --witness-wait 0 it is signed as the report
    // commits, before the witness answers); given the log's URL, it then
    // fetches the log's checkpoint until the witness has cosigned it, and
    // keeps it once proved to extend hers ...
    let log_url = format!("http://{log_http}/log");
    let out = server.client(&["1155000004", "--witness-key", &wkey, "--log-url", &log_url])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        common::stdout(&out).contains("carries no cosignature by witness witness.test/w1"),
        "{}",
        text(&out)
    );
    assert!(
        common::stdout(&out).contains(
            "the log's checkpoint cosigned by witness witness.test/w1 extends the one her proof \
             led to"
        ),
        "{}",
        text(&out)
    );
    let kept = std::fs::read_to_string(server.path().join("students/log-checkpoint"))?;
    assert!(cosigner.verify(&kept).is_ok(), "{kept}");
    assert!(kept.starts_with(&format!("{origin}\n6\n")), "{kept}");
    // ... and her audit requires the served checkpoint be cosigned by each
    // witness she names.
    let size6 = cosigned_checkpoint(log_http)?;
    assert!(size6.starts_with(&format!("{origin}\n6\n")), "{size6}");
    let audit = |keys: &[&str]| {
        let mut args = vec![
            "audit",
            "1155000004",
            "--log-url",
            &log_url,
            "--log-key",
            &log_vkey,
        ];
        for k in keys {
            args.extend(["--witness-key", k]);
        }
        server.client(&args)
    };
    let ok = audit(&[&wkey])?;
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        common::stdout(&ok).contains("checkpoint cosigned by witness witness.test/w1"),
        "{}",
        text(&ok)
    );
    let other = certboard::tlog::cosignature::Cosigner::new(
        "witness.test/absent",
        openssl::pkey::PKey::generate_ed25519()?,
    )?
    .verifier_key();
    let missing = audit(&[&wkey, &other])?;
    assert!(!missing.status.success(), "{}", text(&missing));
    assert!(
        common::stdout(&missing).contains("no cosignature by witness witness.test/absent"),
        "{}",
        text(&missing)
    );

    // A fork: the real log key signs another tree of the same size. The
    // witness, which cosigned size 6 already, refuses it (409), and a
    // larger forked tree cannot prove it extends what it cosigned (422).
    let signer = certboard::tlog::key::open_log_key(
        &server.path().join("keys"),
        PASSPHRASE.as_bytes(),
        &origin,
    )?;
    let forked = |size: u64| {
        signer.sign(
            &Checkpoint {
                origin: origin.clone(),
                size,
                root: [7u8; 32],
            }
            .text(),
        )
    };
    let (status, body) = http(
        witness.addr,
        "POST",
        "/add-checkpoint",
        &request_body(6, &[], &forked(6)?),
    )?;
    assert_eq!((status, body.as_str()), (409, "6\n"));
    let (status, _) = http(
        witness.addr,
        "POST",
        "/add-checkpoint",
        &request_body(6, &[[1u8; 32], [2u8; 32]], &forked(8)?),
    )?;
    assert_eq!(status, 422);

    // The witness goes away (SIGKILL): students still enroll and submit.
    let witness_addr = witness.addr;
    drop(witness);
    let out = server.client(&["1155000005"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        server.wait_log("witness witness.test/w1: no cosignature", 30),
        "{}",
        server.log()
    );
    let (_, metrics) = http(log_http, "GET", "/metrics", "")?;
    assert!(
        metrics.contains(
            "certboard_witness_requests_total{witness=\"witness.test/w1\",outcome=\"failed\"}"
        ),
        "{metrics}"
    );

    // Back on its address after the kill: it still holds size 6 (a fresh
    // client learns it from a 409, the fork is still refused) and the log
    // server's thread has the grown tree cosigned from there.
    let witness = start_witness_on(wdir.path(), &log_vkey, &witness_addr.to_string())?;
    let (status, body) = http(
        witness.addr,
        "POST",
        "/add-checkpoint",
        &request_body(0, &[], &forked(6)?),
    )?;
    assert_eq!((status, body.as_str()), (409, "6\n"));
    let mut grown = String::new();
    for _ in 0..20 {
        grown = cosigned_checkpoint(log_http)?;
        if grown.starts_with(&format!("{origin}\n8\n")) && cosigner.verify(&grown).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        grown.starts_with(&format!("{origin}\n8\n")) && cosigner.verify(&grown).is_ok(),
        "{grown}\n{}",
        server.log()
    );
    Ok(())
}

fn verifier(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/tlog/c2sp_verify.py"
        ))
        .args(args)
        .output()
}

/// A log server's directory after its first start made its keys, and a
/// witness for its log on its own port.
struct LogAndWitness {
    dir: tempfile::TempDir,
    log_vkey: String,
    witness: WitnessProcess,
    wkey: String,
    /// The witness's own directories.
    _wdir: tempfile::TempDir,
}

/// `server witness init` in `dir`: the witness's verifier key.
fn init_witness(dir: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let init = server_in(dir)
        .args(["witness", "init", "--name", WITNESS_NAME])
        .output()?;
    assert!(init.status.success(), "{}", text(&init));
    Ok(String::from_utf8(init.stdout)?.trim().to_string())
}

fn log_and_witness() -> Result<LogAndWitness, Box<dyn std::error::Error>> {
    let server = TestServer::start(&[])?;
    let log_vkey = server.admin_ok(&["log", "key"])?.trim().to_string();
    let dir = server.crash()?;
    let wdir = tempfile::tempdir()?;
    let wkey = init_witness(wdir.path())?;
    let witness = start_witness(wdir.path(), &log_vkey)?;
    Ok(LogAndWitness {
        dir,
        log_vkey,
        witness,
        wkey,
        _wdir: wdir,
    })
}

const COSIGNED: &str = "the log's checkpoint is cosigned by witness witness.test/w1";
const NOT_COSIGNED: &str = "carries no cosignature by witness witness.test/w1";
/// Both ways a witness stops being waited for (it failed; it did not
/// answer within the wait) say this.
const NOT_WAITED: &str = "commits no longer wait for it";

/// What a receipt carries now: each commit waits (bounded) for the
/// witness to cosign its tree, so a fresh enrollment's certificate proof
/// and her receipt carry its cosignature, checked by her client and by
/// the independent verifier. With the witness down, students still enroll
/// and submit, their proofs carry none of it (her client says so), and the
/// commits stop waiting for it: said once in the log, not per commit.
#[test]
fn a_fresh_receipt_carries_the_cosignature_and_a_down_witness_is_not_waited_for() -> TestResult {
    let LogAndWitness {
        dir,
        log_vkey,
        witness,
        wkey,
        _wdir,
    } = log_and_witness()?;
    let url = format!("http://{}", witness.addr);
    let server = TestServer::start_in(dir, &["--witness", &url, "--witness-key", &wkey])?;
    let out = server.client(&["1155000002", "--witness-key", &wkey])?;
    let said = common::stdout(&out);
    assert!(out.status.success(), "{}", text(&out));
    // Her certificate's proof and her receipt's: both cosigned.
    assert_eq!(
        said.matches(COSIGNED).count(),
        2,
        "{}\n{}",
        text(&out),
        server.log()
    );
    assert!(!said.contains(NOT_COSIGNED), "{said}");
    // The checkpoint she kept is her receipt's (the newest proof): the
    // tree of her certificate and her report, its cosignature checked
    // from the C2SP specifications alone.
    let kept = server.path().join("students/log-checkpoint");
    let note = std::fs::read_to_string(&kept)?;
    let origin = NoteVerifier::from_key(&log_vkey)?.name().to_string();
    assert!(note.starts_with(&format!("{origin}\n2\n")), "{note}");
    CosignatureVerifier::from_key(&wkey)?.verify(&note)?;
    let kept_arg = kept.to_string_lossy().into_owned();
    let v = verifier(&[
        "cosig",
        "--vkey",
        &log_vkey,
        "--origin",
        &origin,
        "--witness",
        &wkey,
        "--note",
        &kept_arg,
    ])?;
    assert!(v.status.success(), "{}", text(&v));
    assert!(
        common::stdout(&v).contains(&format!(
            "OK {origin}: checkpoint of 2 entries cosigned by {WITNESS_NAME}"
        )),
        "{}",
        text(&v)
    );

    // The witness goes away: enrollments and submissions go on, without
    // its cosignature, and the commits stop waiting for it once.
    drop(witness);
    for sid in ["1155000003", "1155000004", "1155000005"] {
        let out = server.client(&[sid, "--witness-key", &wkey])?;
        assert!(out.status.success(), "{}", text(&out));
        let said = common::stdout(&out);
        assert_eq!(said.matches(NOT_COSIGNED).count(), 2, "{}", text(&out));
        assert!(!said.contains(COSIGNED), "{said}");
    }
    let log = server.log();
    assert_eq!(
        log.matches(NOT_WAITED).count(),
        1,
        "said once, not per commit:\n{log}"
    );
    Ok(())
}

/// examples/witness.sh: her receipt's own checkpoint and the served one
/// cosigned, checked by her client and by the independent verifier, the
/// forked checkpoint refused, and a submission with the witness down whose
/// receipt carries no cosignature (said by her client).
#[test]
fn the_witness_example_runs() -> TestResult {
    let out = common::run_example("witness.sh")?;
    let s = text(&out);
    assert!(out.status.success(), "{s}");
    assert!(
        s.contains("checkpoint cosigned by witness witness.example/w1"),
        "{s}"
    );
    // Her receipt's own checkpoint and the served one: both cosigned.
    assert_eq!(
        s.matches("OK CUHK/certboard-log: checkpoint of 2 entries cosigned by witness.example/w1")
            .count(),
        2,
        "{s}"
    );
    assert!(
        s.contains("the log's checkpoint is cosigned by witness witness.example/w1"),
        "{s}"
    );
    assert!(
        s.contains("carries no cosignature by witness witness.example/w1"),
        "{s}"
    );
    assert!(s.contains("commits no longer wait for it"), "{s}");
    assert!(s.contains("witness answered 409"), "{s}");
    assert!(s.contains("== submitted without the witness"), "{s}");
    Ok(())
}

fn copy_keys(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let keys = to.join("keys");
    std::fs::create_dir(&keys)?;
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700))?;
    for f in ["ca-key.pem", "ca-cert.pem", "log-key.pem"] {
        std::fs::copy(from.join("keys").join(f), keys.join(f))?;
    }
    for f in ["ca-key.pem", "log-key.pem"] {
        std::fs::set_permissions(keys.join(f), std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Two hosts on one PostgreSQL database, both asking one witness: each
/// thread starts from old size 0, learns the witness's size from a 409,
/// and the witness ends up holding the one log's whole tree, cosigned;
/// each host's receipts carry the cosignature of their own commit's tree.
#[test]
fn two_hosts_on_postgresql_have_one_log_witnessed() -> TestResult {
    let cluster = pg::Cluster::shared().map_err(|e| e as Box<dyn std::error::Error>)?;
    let url = cluster
        .fresh_db("witnessed")
        .map_err(|e| e as Box<dyn std::error::Error>)?;
    let first = TestServer::start(&["--database", &url])?;
    let log_vkey = first
        .admin_ok(&["log", "key", "--database", &url])?
        .trim()
        .to_string();
    let wdir = tempfile::tempdir()?;
    let wkey = init_witness(wdir.path())?;
    let witness = start_witness(wdir.path(), &log_vkey)?;
    let witness_url = format!("http://{}", witness.addr);
    let flags = [
        "--database",
        url.as_str(),
        "--http-listen",
        "127.0.0.1:0",
        "--witness",
        witness_url.as_str(),
        "--witness-key",
        wkey.as_str(),
    ];
    let bdir = tempfile::tempdir()?;
    copy_keys(first.path(), bdir.path())?;
    let a = TestServer::start_in(first.crash()?, &flags)?;
    let b = TestServer::start_in(bdir, &flags)?;
    let a_http = a.http_addr()?;
    // Each host's commits wait for the witness: on either host, her
    // certificate's proof and her receipt carry its cosignature, though
    // the other host's thread moved the witness on meanwhile.
    for (i, host) in [&a, &b, &a, &b].into_iter().enumerate() {
        let sid = format!("115500002{i}");
        let out = host.client(&[sid.as_str(), "--witness-key", wkey.as_str()])?;
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            common::stdout(&out).matches(COSIGNED).count(),
            2,
            "{}\n{}\n{}",
            text(&out),
            a.log(),
            b.log()
        );
    }
    // Eight entries, one log; its checkpoint cosigned and the witness's
    // record is that tree.
    let cosigner = CosignatureVerifier::from_key(&wkey)?;
    let log = NoteVerifier::from_key(&log_vkey)?;
    let mut head = None;
    for _ in 0..200 {
        let (_, note) = http(a_http, "GET", "/log/checkpoint", "")?;
        let cp = Checkpoint::open(&note, &log, log.name())?;
        if cp.size == 8 && cosigner.verify(&note).is_ok() {
            head = Some(cp);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let head = head.ok_or_else(|| format!("never cosigned at size 8\n{}\n{}", a.log(), b.log()))?;
    let state = std::fs::read_to_string(wdir.path().join("data/witness-state"))?;
    assert_eq!(
        state,
        format!(
            "{} 8 {}\n",
            log.name(),
            openssl::base64::encode_block(&head.root)
        )
    );
    Ok(())
}

/// An operator's mistakes with `server witness ...` are each said plainly,
/// and none starts a witness that could not work.
#[test]
fn the_witness_commands_say_what_is_wrong() -> TestResult {
    let wdir = tempfile::tempdir()?;
    let fails_with = |args: &[&str], pass: &str, said: &str| -> TestResult {
        let out = server_in(wdir.path())
            .env("CERTBOARD_CA_PASSPHRASE", pass)
            .args(args)
            .output()?;
        let t = text(&out);
        assert!(!out.status.success(), "{args:?} succeeded: {t}");
        assert!(t.contains(said), "{args:?}: expected {said:?} in: {t}");
        Ok(())
    };
    fails_with(
        &["witness", "key"],
        PASSPHRASE,
        "server witness init --name",
    )?;
    let wkey = init_witness(wdir.path())?;
    // Not "the CA key": a witness's host has none.
    fails_with(
        &["witness", "key"],
        "not the passphrase it was made with",
        "cannot decrypt the witness key",
    )?;
    // The witness's own key where the log's belongs.
    fails_with(
        &[
            "witness",
            "run",
            "--listen",
            "127.0.0.1:0",
            "--log-key",
            &wkey,
        ],
        PASSPHRASE,
        "is a witness's key (type 0x04), not a log's",
    )?;
    let log = certboard::tlog::NoteSigner::new(
        "test.example/log",
        openssl::pkey::PKey::generate_ed25519()?,
    )?;
    let log_vkey = log.verifier_key();
    // A timeout that rounds to nothing would close every connection at once.
    for bad in ["0", "1e-10", "NaN", "inf", "86401"] {
        fails_with(
            &[
                "witness",
                "run",
                "--listen",
                "127.0.0.1:0",
                "--log-key",
                &log_vkey,
                "--request-timeout",
                bad,
            ],
            PASSPHRASE,
            "--request-timeout must be at least 0.001 and at most 86400 seconds",
        )?;
    }
    // The log server's wait for witnesses: 0 turns it off, and is said to.
    for bad in ["-1", "1e-10", "NaN", "86401"] {
        let out = Command::new(env!("CARGO_BIN_EXE_server"))
            .current_dir(wdir.path())
            .args(["--keys-dir", "keys", "--data-dir", "data"])
            .env("CERTBOARD_CA_PASSPHRASE", PASSPHRASE)
            .arg(format!("--witness-wait={bad}"))
            .stdin(Stdio::null())
            .output()?;
        let t = text(&out);
        assert!(!out.status.success(), "--witness-wait {bad} started: {t}");
        assert!(
            t.contains(
                "--witness-wait must be 0 (off) or at least 0.001 and at most 86400 seconds"
            ),
            "{t}"
        );
    }
    Ok(())
}
