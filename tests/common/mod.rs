//! Shared helpers for the end-to-end tests: a real server binary on
//! loopback port 0 in a temporary directory, and the real client.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The server's passphrase: the fixtures' own, so that a test opens the
/// running server's root with `CaParams::default()`.
pub const PASSPHRASE: &str = certboard::testing::PASSPHRASE;

/// A server process, killed when dropped.
pub struct TestServer {
    pub child: Child,
    pub ca: SocketAddr,
    pub blackboard: SocketAddr,
    /// The temporary directory holding keys/ and data/ (kept alive here).
    pub dir: tempfile::TempDir,
    /// Lines the server printed on stdout after the listening lines.
    pub stdout: mpsc::Receiver<String>,
    /// The server's stderr (logs), collected in the background.
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// Dropped with the server: lets an unread stdout pipe close.
    _hold_stdout: mpsc::Sender<()>,
}

/// How [`TestServer::launch`] starts the server.
#[derive(Debug, Default)]
pub struct Launch {
    /// A program and its arguments that run the server binary (given as
    /// their last argument, before the server's own), e.g. a shell that
    /// sets a limit first.
    pub wrapper: Vec<String>,
    /// Read stdout only up to the listening lines, then leave the pipe
    /// open and unread, as a stuck pager or log shipper would.
    pub stop_reading_stdout: bool,
    /// The CA's key type (`--ca-key-type`); P-256 when `None`, the
    /// cheapest to make and to sign with.
    pub ca_key_type: Option<&'static str>,
}

impl TestServer {
    /// Starts `server` with port-0 listeners and a fresh temp dir, plus `extra` flags.
    pub fn start(extra: &[&str]) -> Result<TestServer, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        Self::start_in(dir, extra)
    }

    /// Starts `server` in an existing temp dir (keys/ and data/ inside it).
    pub fn start_in(
        dir: tempfile::TempDir,
        extra: &[&str],
    ) -> Result<TestServer, Box<dyn std::error::Error>> {
        Self::launch(dir, extra, &Launch::default())
    }

    /// Starts `server` as [`Launch`] says.
    pub fn launch(
        dir: tempfile::TempDir,
        extra: &[&str],
        how: &Launch,
    ) -> Result<TestServer, Box<dyn std::error::Error>> {
        let mut cmd = match how.wrapper.split_first() {
            None => Command::new(env!("CARGO_BIN_EXE_server")),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_server"));
                c
            }
        };
        cmd.current_dir(dir.path())
            .args([
                "--ca-listen",
                "127.0.0.1:0",
                "--blackboard-listen",
                "127.0.0.1:0",
            ])
            .args(["--keys-dir", "keys", "--data-dir", "data"])
            .args(["--ca-key-type", how.ca_key_type.unwrap_or("p256")])
            .args(extra)
            .env("CERTBOARD_CA_PASSPHRASE", PASSPHRASE)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut stderr_pipe = child.stderr.take().ok_or("no stderr")?;
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        // With --role ca or --role blackboard only one listener comes up;
        // the other address is left unspecified.
        let role = extra
            .windows(2)
            .find(|w| w[0] == "--role")
            .map(|w| w[1])
            .unwrap_or("all");
        let listeners = if role == "all" { 2 } else { 1 };
        let (tx, rx) = mpsc::channel();
        let (hold, held) = mpsc::channel::<()>();
        let read_all = !how.stop_reading_stdout;
        std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut seen = 0;
            while read_all || seen < listeners {
                let mut line = String::new();
                match stdout.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                seen += usize::from(line.starts_with("listening "));
                let line = line.trim_end_matches('\n').to_string();
                if tx.send(line).is_err() {
                    return;
                }
            }
            // Keep the pipe open, unread, until the TestServer goes.
            let _ = held.recv();
            drop(stdout);
        });
        let unused: SocketAddr = "0.0.0.0:0".parse()?;
        let mut ca = (role == "blackboard").then_some(unused);
        let mut blackboard = (role == "ca").then_some(unused);
        while ca.is_none() || blackboard.is_none() {
            let line = match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    let log = stderr.lock().map(|s| s.clone()).unwrap_or_default();
                    return Err(format!("server did not start listening; log:\n{log}").into());
                }
            };
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["listening", "ca", addr] => ca = Some(addr.parse()?),
                ["listening", "blackboard", addr] => blackboard = Some(addr.parse()?),
                _ => {}
            }
        }
        Ok(TestServer {
            child,
            ca: ca.ok_or("no ca")?,
            blackboard: blackboard.ok_or("no blackboard")?,
            dir,
            stdout: rx,
            stderr,
            _hold_stdout: hold,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The running server's CA, opened from its keys dir as the server
    /// opened it (to sign what the CA itself would never issue).
    pub fn open_ca(&self) -> Result<certboard::CertificateAuthority, certboard::CaError> {
        certboard::testing::CaParams::default().create(&self.dir.path().join("keys"))
    }

    pub fn root_pem(&self) -> PathBuf {
        self.dir.path().join("keys").join("ca-cert.pem")
    }

    /// What a student trusts this server's Blackboard by: its root and the
    /// default name.
    pub fn trust(&self) -> Result<certboard::client::BlackboardTrust, Box<dyn std::error::Error>> {
        trust_in(&self.dir.path().join("keys"))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (up to `secs`).
    pub fn wait_log(&self, needle: &str, secs: u64) -> bool {
        let until = std::time::Instant::now() + Duration::from_secs(secs);
        while std::time::Instant::now() < until {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The HTTP listener's address, from the `listening http ADDR` line the
    /// server prints after the others (started with `--http-listen`).
    pub fn http_addr(&self) -> Result<SocketAddr, Box<dyn std::error::Error>> {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < until {
            let line = self.stdout.recv_timeout(Duration::from_secs(30))?;
            if let Some(addr) = line.strip_prefix("listening http ") {
                return Ok(addr.trim().parse()?);
            }
        }
        Err("no `listening http` line".into())
    }

    /// The staff listener's address, from the `listening staff ADDR` line
    /// (started with `--staff-listen`).
    pub fn staff_addr(&self) -> Result<SocketAddr, Box<dyn std::error::Error>> {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < until {
            let line = self.stdout.recv_timeout(Duration::from_secs(30))?;
            if let Some(addr) = line.strip_prefix("listening staff ") {
                return Ok(addr.trim().parse()?);
            }
        }
        Err("no `listening staff` line".into())
    }

    /// Runs the client binary against this server with `args` (SIDs and flags),
    /// students' files under `<tempdir>/students`.
    pub fn client(&self, args: &[&str]) -> std::io::Result<Output> {
        Command::new(env!("CARGO_BIN_EXE_client"))
            .current_dir(self.dir.path())
            .args([
                "--ca",
                &self.ca.to_string(),
                "--blackboard",
                &self.blackboard.to_string(),
            ])
            .args(["--timeout", "20"])
            .args(args)
            .stdin(Stdio::null())
            .output()
    }

    /// Runs an admin subcommand of the server binary on this server's dirs.
    pub fn admin(&self, args: &[&str]) -> std::io::Result<Output> {
        Command::new(env!("CARGO_BIN_EXE_server"))
            .current_dir(self.dir.path())
            .args(args)
            .args(["--keys-dir", "keys", "--data-dir", "data"])
            .env("CERTBOARD_CA_PASSPHRASE", PASSPHRASE)
            .stdin(Stdio::null())
            .output()
    }

    /// [`TestServer::admin`] that must succeed (the test fails with the
    /// command's output otherwise); its standard output.
    pub fn admin_ok(&self, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
        let out = self.admin(args)?;
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        Ok(stdout(&out))
    }

    /// The course in Asia/Hong_Kong with one assignment, `hw1` ("Homework
    /// 1"), whose times (and `--force`) are `times`: `["--due", T, ...]`.
    pub fn course_with_hw1(&self, times: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
        self.admin_ok(&["course", "set", "--timezone", "Asia/Hong_Kong"])?;
        let mut args = vec!["assignment", "add", "hw1", "--title", "Homework 1"];
        args.extend_from_slice(times);
        self.admin_ok(&args)?;
        Ok(())
    }

    /// Kills the server with SIGKILL (a crash) and hands back its directory
    /// so that a new server can be started on the same keys and data.
    pub fn crash(mut self) -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(std::mem::replace(&mut self.dir, tempfile::tempdir()?))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(self) -> Result<std::process::ExitStatus, Box<dyn std::error::Error>> {
        Ok(self.stop_keeping()?.0)
    }

    /// As [`TestServer::stop`], keeping the server's directory to look at.
    #[allow(dead_code)]
    pub fn stop_keeping(
        mut self,
    ) -> Result<(std::process::ExitStatus, tempfile::TempDir), Box<dyn std::error::Error>> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let status = self.child.wait()?;
        Ok((
            status,
            std::mem::replace(&mut self.dir, tempfile::tempdir()?),
        ))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Timeout of the library client's network steps in tests.
pub const NET_TIMEOUT: Duration = Duration::from_secs(20);

/// Enrolls `sid` for `key` with the library's client pieces (protocol
/// version 2, open enrollment); returns the certificate (DER).
pub fn enroll_key(
    ca: SocketAddr,
    sid: &str,
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
) -> Result<Vec<u8>, certboard::client::ClientError> {
    use certboard::client;
    let mut conn = client::FramedStream::connect(&ca.to_string(), NET_TIMEOUT)?;
    Ok(enroll_csr(&mut conn, client::make_csr(sid, key)?)?.0)
}

/// One open enrollment on a fresh CA connection `conn`: `CaHello`, then
/// one `CertRequest` for `csr_der`; returns (certificate, root), DER.
pub fn enroll_csr(
    conn: &mut certboard::client::FramedStream,
    csr_der: Vec<u8>,
) -> Result<(Vec<u8>, Vec<u8>), certboard::client::ClientError> {
    let mut session = certboard::client::CaSession::open(conn)?;
    let answer = session.request(conn, csr_der, certboard::message::EnrollAuth::Open)?;
    Ok((answer.cert_der, answer.ca_cert_der))
}

/// The trust of a student in the Blackboard of the root in `keys_dir`.
pub fn trust_in(
    keys_dir: &Path,
) -> Result<certboard::client::BlackboardTrust, Box<dyn std::error::Error>> {
    let pem = std::fs::read(keys_dir.join("ca-cert.pem"))?;
    Ok(certboard::client::BlackboardTrust {
        root: openssl::x509::X509::from_pem(&pem)?,
        name: certboard::ca::DEFAULT_BLACKBOARD_NAME.into(),
    })
}

/// Submits the lab report for `sid` under `cert` (AES-256-CTR), protocol
/// version 2 (Blackboard verified against `trust`).
pub fn submit_report(
    blackboard: SocketAddr,
    trust: &certboard::client::BlackboardTrust,
    sid: &str,
    cert: &[u8],
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
) -> Result<certboard::client::Receipt, certboard::client::ClientError> {
    use certboard::client;
    let mut conn = client::FramedStream::connect(&blackboard.to_string(), NET_TIMEOUT)?;
    let report = certboard::crypto::lab_report(sid);
    let cipher = certboard::message::CipherId::Aes256Ctr;
    client::submit(
        &mut conn,
        sid,
        cert,
        key,
        cipher,
        &report,
        trust,
        &mut |_| {},
    )
}

/// The hello of a version 3 exchange (`SubmitOpen3`) for `sid` under
/// `cert`, with a fresh nonce.
pub fn hello_v3(
    sid: &str,
    cert: &[u8],
    intent: certboard::message::Intent,
) -> Result<certboard::message::Message, Box<dyn std::error::Error>> {
    Ok(certboard::message::Message::SubmitOpen3 {
        version: certboard::message::PROTOCOL_VERSION_3,
        sid: sid.to_string(),
        cert_der: cert.to_vec(),
        chain: Vec::new(),
        client_nonce: certboard::crypto::random::<32>()?,
        intent,
    })
}

/// A Blackboard connection past its hello, by hand: Blackboard's offer
/// checked as the client checks it.
pub struct Offered {
    pub conn: certboard::client::FramedStream,
    /// The transcript hash the offer's signature covers.
    pub th: [u8; certboard::crypto::DIGEST_LEN],
    /// The session key Blackboard wrapped to her key.
    pub session: [u8; certboard::crypto::SESSION_KEY_LEN],
}

/// Connects to Blackboard, sends `hello` (a `SubmitOpen` or
/// `SubmitOpen3`), checks the `SessionOffer` that answers it against
/// `trust` and unwraps the session key with `key`, as the client does:
/// what a test that goes on by hand (a tampered report, a raw upload, a
/// forged request) needs first.
pub fn offered(
    blackboard: SocketAddr,
    hello: &certboard::message::Message,
    trust: &certboard::client::BlackboardTrust,
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
) -> Result<Offered, Box<dyn std::error::Error>> {
    use certboard::client;
    let mut conn = client::FramedStream::connect(&blackboard.to_string(), NET_TIMEOUT)?;
    let hello = hello.encode();
    conn.send_frame(&hello)?;
    let (wrapped_key, th) = client::checked_offer(&hello, conn.recv()?, trust)?;
    let session = client::session_key(key, &wrapped_key)?;
    Ok(Offered { conn, th, session })
}

/// Runs `examples/SCRIPT` (bash, no input) against this build's binaries,
/// as a person would run it, and returns what it printed.
pub fn run_example(script: &str) -> std::io::Result<Output> {
    let server = Path::new(env!("CARGO_BIN_EXE_server"));
    let bin_dir = server.parent().unwrap_or(Path::new("."));
    Command::new("bash")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples")
                .join(script),
        )
        .env("CERTBOARD_BIN_DIR", bin_dir)
        .stdin(Stdio::null())
        .output()
}

/// Text of a process output, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
