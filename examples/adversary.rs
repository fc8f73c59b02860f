//! The adversary of the lab's picture: a man in the middle between the
//! student and Blackboard, which reads the certboard frames going by and
//! tampers with them.
//!
//! ```text
//! cargo run --example adversary -- --listen 127.0.0.1:9002 --upstream 127.0.0.1:8002 --mode flip
//! cargo run --bin client -- --blackboard 127.0.0.1:9002 1155000001
//!
//! cargo run --example adversary -- --listen 127.0.0.1:9001 --upstream 127.0.0.1:8001 \
//!     --mode reuse-code --enroll-code CODE
//! cargo run --bin client -- --ca 127.0.0.1:9001 --code-file CODE_FILE 1155000001
//! ```
//!
//! Modes (what it does to the student's traffic):
//!
//! - `pass`: relays every frame unchanged; the student's submission succeeds.
//! - `flip`: flips one bit of the encrypted report.
//! - `truncate`: cuts the encrypted report to half its length.
//! - `drop-mac`: removes the report's MAC. The 32 MAC bytes are the last
//!   field of the Report message, so they are cut off the payload and the
//!   frame is re-framed with the shorter, correct length: the frame is
//!   well-formed, the message inside is not (Blackboard refuses it as
//!   malformed). A report without a MAC is not a thing the protocol has.
//! - `swap-cert`: replaces the student's certificate with one it made for
//!   the same SID, signed by its own CA, a look-alike with CUHK's name, over
//!   its own key: if Blackboard took it, the session key would be encrypted
//!   to the adversary.
//! - `replay`: relays the first whole submission unchanged, records it, and
//!   once it is over plays the student's side of it back to Blackboard on a
//!   new connection.
//! - `impersonate`: answers the student's hello in Blackboard's place with
//!   a session key of its own, under Blackboard's genuine certificate (got
//!   from Blackboard) but signed with the adversary's own key.
//! - `impersonate-lookalike`: the same, with a Blackboard certificate of
//!   its own, from a look-alike root (same name as CUHK's), whose key
//!   signs the exchange correctly.
//! - `splice`: answers the student's hello with a genuine offer Blackboard
//!   signed for another session (the adversary's own hello, same SID and
//!   certificate, another nonce).
//!
//! In the three answering modes the student's client must refuse before
//! her report leaves: if a Report ever comes, the proxy prints
//! `student SENT her report`.
//!
//! Three more modes sit in front of the CA instead (`--upstream` is the
//! CA's address, the student's `client --ca` points at the proxy), against
//! enrollment codes (protocol version 2, a course with a roster):
//!
//! - `replay-enrollment`: holds the student's code-authorised
//!   `CertRequest`, replays it unchanged on a new connection of its own
//!   first (the CA's nonce there differs, so the code's MAC does not
//!   verify), then lets the student's own through.
//! - `swap-csr`: replaces the CSR inside the student's code-MAC'd
//!   `CertRequest` with one over the adversary's own key, keeping her MAC.
//! - `reuse-code`: relays the student's enrollment, then, knowing her code
//!   (`--enroll-code`, as if it had been read over her shoulder), makes a
//!   fresh, correctly MAC'd request of its own with it: the code is used.
//!
//! Each prints a `verdict:` line with the CA's answer to the adversary's
//! own request (`replay-enrollment`, `reuse-code`); in `swap-csr` the CA's
//! refusal goes back to the student.
//!
//! Everything it sees and does is printed on stdout, one line per event;
//! the first line is `listening ADDR` once bound (so `--listen
//! 127.0.0.1:0` works). It runs until killed. Tooling, not the server:
//! blocking sockets, two threads per connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509NameRef, X509};

use certboard::ca::{BlackboardIdentity, CaKeyType, CertificateAuthority};
use certboard::client;
use certboard::course::code::EnrollCode;
use certboard::crypto;
use certboard::framing::{self, Decoder};
use certboard::message::{EnrollAuth, Message, MAC_LEN, NONCE_LEN, PROTOCOL_VERSION};
use certboard::testing::CaParams;

/// What the adversary does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Relay unchanged.
    Pass,
    /// Flip one bit of the encrypted report.
    Flip,
    /// Record one whole submission, play it back later on a new connection.
    Replay,
    /// Replace the student's certificate with a look-alike CA's.
    SwapCert,
    /// Cut the encrypted report short.
    Truncate,
    /// Remove the report's MAC.
    DropMac,
    /// Answer in Blackboard's place, signing with the adversary's key.
    Impersonate,
    /// Answer in Blackboard's place with a look-alike root's certificate.
    ImpersonateLookalike,
    /// Answer with Blackboard's genuine offer from another session.
    Splice,
    /// (CA) Replay the student's code-authorised request on a new connection.
    ReplayEnrollment,
    /// (CA) Put the adversary's CSR under the student's code MAC.
    SwapCsr,
    /// (CA) Use the student's consumed code again, correctly MAC'd.
    ReuseCode,
}

/// A man-in-the-middle proxy for certboard's Blackboard protocol.
#[derive(Debug, Parser)]
struct Cli {
    /// Where students connect (port 0: any free port).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// The real Blackboard.
    #[arg(long, value_name = "ADDR")]
    upstream: SocketAddr,
    /// What to do to the traffic.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Milliseconds to wait after the recorded submission before replaying it.
    #[arg(long, value_name = "MS", default_value_t = 300)]
    replay_delay: u64,
    /// The student's enrollment code, known to the adversary (`reuse-code`).
    #[arg(long, value_name = "CODE", required_if_eq("mode", "reuse-code"))]
    enroll_code: Option<String>,
}

/// One line on stdout, flushed at once (a test or a person reads it live).
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The look-alike CA and the adversary's own key.
struct Forger {
    /// A CA made exactly as certboard makes its root, so with the same name
    /// ("CUHK certboard Root CA"), but with the adversary's key. Its files
    /// live in a temporary directory for as long as the proxy runs.
    ca: CertificateAuthority,
    _dir: tempfile::TempDir,
    key: PKey<Private>,
    /// A Blackboard certificate for the name `blackboard` from the
    /// look-alike root, with its key.
    blackboard: BlackboardIdentity,
}

impl Forger {
    fn new() -> Result<Forger, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let ca = CaParams {
            kind: CaKeyType::Rsa2048,
            passphrase: b"adversary's passphrase",
            ..CaParams::default()
        }
        .create(dir.path())?;
        let blackboard = ca.issue_blackboard(certboard::ca::DEFAULT_BLACKBOARD_NAME)?;
        Ok(Forger {
            ca,
            _dir: dir,
            key: PKey::from_rsa(Rsa::generate(2048)?)?,
            blackboard,
        })
    }

    /// A student certificate for `sid` in CUHK's exact profile, but from
    /// the look-alike CA and over the adversary's key.
    fn forge(&self, sid: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let public = PKey::public_key_from_der(&self.key.public_key_to_der()?)?;
        Ok(self.ca.issue_for(sid, &public)?.der)
    }
}

fn name_text(name: &X509NameRef) -> String {
    certboard::ca::name_text(name)
}

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Student to Blackboard.
    Up,
    /// Blackboard to student.
    Down,
}

/// A submission as it went by: every frame, in order.
type Transcript = Vec<(Dir, Vec<u8>)>;

struct Proxy {
    mode: Mode,
    upstream: SocketAddr,
    forger: Option<Forger>,
    replay_delay: Duration,
    replayed: AtomicBool,
    next_id: AtomicUsize,
    enroll_code: Option<EnrollCode>,
}

/// The SID (CN) a CSR asks for.
fn csr_sid(csr_der: &[u8]) -> Option<String> {
    let req = openssl::x509::X509Req::from_der(csr_der).ok()?;
    let cn = req
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()?;
    cn.data().to_string().ok()
}

/// Reads one frame; `Ok(None)` when the peer closed.
fn read_frame(
    s: &mut TcpStream,
    d: &mut Decoder,
    buf: &mut Vec<u8>,
) -> io::Result<Option<Vec<u8>>> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match d.decode(buf) {
            Ok(Some(f)) => return Ok(Some(f)),
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn describe(payload: &[u8]) -> String {
    match Message::decode(payload) {
        Ok(Message::Error { code, reason }) => format!("Error {code:?}: {reason}"),
        Ok(m) => m.name().to_string(),
        Err(e) => format!("undecodable frame ({e})"),
    }
}

impl Proxy {
    /// What the adversary does to one frame from the student; `None` lets
    /// it through unchanged.
    fn tamper(&self, payload: &[u8]) -> Option<(Vec<u8>, String)> {
        let msg = Message::decode(payload).ok()?;
        match (self.mode, msg) {
            (
                Mode::Flip,
                Message::Report {
                    cipher,
                    iv,
                    mut ciphertext,
                    mac,
                },
            ) => {
                let at = ciphertext.len() / 2;
                let byte = ciphertext.get_mut(at)?;
                *byte ^= 0x01;
                let out = Message::Report {
                    cipher,
                    iv,
                    ciphertext,
                    mac,
                };
                Some((
                    out.encode(),
                    format!("flipped the low bit of report ciphertext byte {at}"),
                ))
            }
            (
                Mode::Truncate,
                Message::Report {
                    cipher,
                    iv,
                    mut ciphertext,
                    mac,
                },
            ) => {
                let was = ciphertext.len();
                ciphertext.truncate(was / 2);
                let now = ciphertext.len();
                let out = Message::Report {
                    cipher,
                    iv,
                    ciphertext,
                    mac,
                };
                Some((
                    out.encode(),
                    format!("cut the report ciphertext from {was} to {now} bytes"),
                ))
            }
            (Mode::DropMac, Message::Report { .. }) => {
                // The MAC is the last field: drop its bytes, re-frame.
                let keep = payload.len().checked_sub(MAC_LEN)?;
                Some((
                    payload.get(..keep)?.to_vec(),
                    format!("removed the {MAC_LEN}-byte MAC from the report"),
                ))
            }
            (
                Mode::SwapCert,
                Message::SubmitOpen {
                    sid,
                    cert_der,
                    client_nonce,
                    ..
                },
            ) => {
                let forger = self.forger.as_ref()?;
                let forged = forger.forge(&sid).ok()?;
                let out = Message::SubmitOpen {
                    sid: sid.clone(),
                    cert_der: forged,
                    chain: Vec::new(),
                    client_nonce,
                };
                let real_issuer = X509::from_der(&cert_der)
                    .map(|c| name_text(c.issuer_name()))
                    .unwrap_or_else(|_| "?".into());
                Some((
                    out.encode(),
                    format!(
                        "replaced SID {sid}'s certificate (issuer {real_issuer}) with one from a \
                         look-alike CA ({}) over the adversary's key",
                        name_text(forger.ca.cert().subject_name())
                    ),
                ))
            }
            (
                Mode::SwapCsr,
                Message::CertRequest {
                    csr_der,
                    auth: auth @ EnrollAuth::Code { .. },
                },
            ) => {
                let forger = self.forger.as_ref()?;
                let sid = csr_sid(&csr_der)?;
                let own = client::make_csr(&sid, &forger.key).ok()?;
                let out = Message::CertRequest { csr_der: own, auth };
                Some((
                    out.encode(),
                    format!(
                        "replaced SID {sid}'s CSR under her enrollment code's MAC with one over \
                         the adversary's own key"
                    ),
                ))
            }
            _ => None,
        }
    }

    /// What the far end is called in what the proxy prints.
    fn upstream_name(&self) -> &'static str {
        match self.mode {
            Mode::ReplayEnrollment | Mode::SwapCsr | Mode::ReuseCode => "the CA",
            _ => "Blackboard",
        }
    }

    /// One enrollment of the adversary's own on a new connection to the
    /// CA: hello, the CA's nonce, then the request `build` makes for that
    /// nonce. Returns what the CA answered, in words.
    fn ca_attempt(
        &self,
        build: impl FnOnce(&[u8; NONCE_LEN]) -> Result<Vec<u8>, Box<dyn std::error::Error>>,
    ) -> Result<String, Box<dyn std::error::Error>> {
        let mut s = TcpStream::connect(self.upstream)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut d = Decoder::new(framing::DEFAULT_MAX_FRAME);
        let mut buf = Vec::new();
        let hello = Message::CaHello {
            version: PROTOCOL_VERSION,
        };
        s.write_all(&framing::frame(&hello.encode()))?;
        let got = read_frame(&mut s, &mut d, &mut buf)?.ok_or("the CA closed")?;
        let Message::CaChallenge { nonce, .. } = Message::decode(&got)? else {
            return Err(format!("the CA sent {} to the hello", describe(&got)).into());
        };
        let request = build(&nonce)?;
        s.write_all(&framing::frame(&request))?;
        let got = read_frame(&mut s, &mut d, &mut buf)?.ok_or("the CA closed")?;
        Ok(match Message::decode(&got)? {
            Message::Error { code, reason } => {
                format!("the CA refused: Error {code:?}: {reason}")
            }
            Message::CertIssued { cert_der, .. } => {
                let serial = X509::from_der(&cert_der)
                    .ok()
                    .and_then(|c| c.serial_number().to_bn().ok())
                    .and_then(|b| b.to_hex_str().ok().map(|h| h.to_string()))
                    .unwrap_or_else(|| "?".into());
                format!("the CA ISSUED a certificate to the adversary (serial {serial})")
            }
            other => format!("the CA sent {}", other.name()),
        })
    }

    /// `replay-enrollment`: the captured request, unchanged, on a new
    /// connection (so under another nonce).
    fn replay_enrollment(&self, request: &[u8]) {
        let verdict = self.ca_attempt(|_| Ok(request.to_vec()));
        match verdict {
            Ok(v) => say(&format!("replay verdict: {v}")),
            Err(e) => say(&format!("replay verdict: failed: {e}")),
        }
    }

    /// `reuse-code`: a fresh request for `sid` over the adversary's own key,
    /// MAC'd correctly with the code it knows, for the CA's new nonce.
    fn reuse_code(&self, sid: &str) {
        let verdict = (|| {
            let code = self.enroll_code.as_ref().ok_or("no --enroll-code")?;
            let key = &self.forger.as_ref().ok_or("no forger")?.key;
            let csr = client::make_csr(sid, key)?;
            self.ca_attempt(|nonce| {
                let auth = client::code_auth(code, sid, nonce, &csr)?;
                Ok(Message::CertRequest {
                    csr_der: csr.clone(),
                    auth,
                }
                .encode())
            })
        })();
        match verdict {
            Ok(v) => say(&format!("reuse verdict: {v}")),
            Err(e) => say(&format!("reuse verdict: failed: {e}")),
        }
    }

    fn serve(self: Arc<Self>, mut client: TcpStream, peer: SocketAddr) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        say(&format!("conn {id}: student {peer} connected"));
        let upstream_name = self.upstream_name();
        let mut upstream = match TcpStream::connect(self.upstream) {
            Ok(s) => s,
            Err(e) => {
                say(&format!("conn {id}: cannot reach {upstream_name}: {e}"));
                return;
            }
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let transcript = Arc::new(Mutex::new(Transcript::new()));
        let (Ok(mut up_rd), Ok(mut client_wr)) = (upstream.try_clone(), client.try_clone()) else {
            say(&format!("conn {id}: cannot clone sockets"));
            return;
        };
        // Blackboard → student: relayed as it is, and watched.
        let down_log = transcript.clone();
        let down = std::thread::spawn(move || {
            let mut d = Decoder::new(framing::DEFAULT_MAX_FRAME);
            let mut buf = Vec::new();
            while let Ok(Some(f)) = read_frame(&mut up_rd, &mut d, &mut buf) {
                let what = describe(&f);
                match Message::decode(&f) {
                    Ok(Message::Error { .. }) => {
                        say(&format!("conn {id}: {upstream_name} refused: {what}"))
                    }
                    _ => say(&format!("conn {id}: {upstream_name} sent {what}")),
                }
                if let Ok(mut t) = down_log.lock() {
                    t.push((Dir::Down, f.clone()));
                }
                if client_wr.write_all(&framing::frame(&f)).is_err() {
                    break;
                }
            }
            let _ = client_wr.shutdown(Shutdown::Write);
        });
        // Student → Blackboard: where the tampering happens.
        let mut d = Decoder::new(framing::DEFAULT_MAX_FRAME);
        let mut buf = Vec::new();
        // The SID the student asked a certificate for (`reuse-code`).
        let mut enrolled_sid = None;
        loop {
            let f = match read_frame(&mut client, &mut d, &mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    say(&format!("conn {id}: student stream: {e}"));
                    break;
                }
            };
            if matches!(Message::decode(&f), Ok(Message::Report { .. })) && self.answers() {
                say(&format!(
                    "conn {id}: student SENT her report to the impostor (the client was fooled)"
                ));
            }
            if let Ok(Message::SubmitOpen {
                sid,
                cert_der,
                chain,
                ..
            }) = Message::decode(&f)
            {
                if self.answers() {
                    let answer = self.answer(&f, &sid, &cert_der, &chain);
                    match answer {
                        Ok((offer, what)) => {
                            say(&format!(
                                "conn {id}: answered in Blackboard's place: {what}"
                            ));
                            if let Ok(mut w) = client.try_clone() {
                                let _ = w.write_all(&framing::frame(&offer));
                            }
                        }
                        Err(e) => say(&format!("conn {id}: cannot answer: {e}")),
                    }
                    continue;
                }
            }
            if let Ok(Message::CertRequest {
                csr_der,
                auth: EnrollAuth::Code { .. },
            }) = Message::decode(&f)
            {
                enrolled_sid = csr_sid(&csr_der);
                if self.mode == Mode::ReplayEnrollment
                    && !self.replayed.swap(true, Ordering::SeqCst)
                {
                    say(&format!(
                        "conn {id}: captured the student's code-authorised CertRequest; \
                         replaying it first on a new connection"
                    ));
                    self.replay_enrollment(&f);
                }
            }
            let f = match self.tamper(&f) {
                Some((changed, what)) => {
                    say(&format!("conn {id}: tampered: {what}"));
                    changed
                }
                None => {
                    say(&format!("conn {id}: student sent {}", describe(&f)));
                    f
                }
            };
            if let Ok(mut t) = transcript.lock() {
                t.push((Dir::Up, f.clone()));
            }
            if upstream.write_all(&framing::frame(&f)).is_err() {
                break;
            }
        }
        let _ = upstream.shutdown(Shutdown::Write);
        let _ = down.join();
        say(&format!("conn {id}: closed"));
        if self.mode == Mode::ReuseCode {
            if let Some(sid) = enrolled_sid {
                if !self.replayed.swap(true, Ordering::SeqCst) {
                    say(&format!(
                        "conn {id}: the student enrolled SID {sid}; now her code again, with a \
                         fresh request of the adversary's own"
                    ));
                    self.reuse_code(&sid);
                }
            }
        }
        if self.mode == Mode::Replay {
            let recorded = transcript.lock().map(|t| t.clone()).unwrap_or_default();
            let has_report = recorded.iter().any(|(dir, f)| {
                *dir == Dir::Up && matches!(Message::decode(f), Ok(Message::Report { .. }))
            });
            if has_report && !self.replayed.swap(true, Ordering::SeqCst) {
                say(&format!(
                    "conn {id}: recorded a whole submission ({} frames)",
                    recorded.len()
                ));
                std::thread::sleep(self.replay_delay);
                self.replay(&recorded);
            }
        }
    }

    /// Whether this mode answers the student itself instead of relaying.
    fn answers(&self) -> bool {
        matches!(
            self.mode,
            Mode::Impersonate | Mode::ImpersonateLookalike | Mode::Splice
        )
    }

    /// Asks the real Blackboard for an offer to a hello of the adversary's
    /// own (her SID and certificate, another nonce): a genuine offer,
    /// signed for that other exchange.
    fn genuine_offer(
        &self,
        sid: &str,
        cert_der: &[u8],
        chain: &[Vec<u8>],
    ) -> Result<Message, Box<dyn std::error::Error>> {
        let mut s = TcpStream::connect(self.upstream)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let hello = Message::SubmitOpen {
            sid: sid.to_string(),
            cert_der: cert_der.to_vec(),
            chain: chain.to_vec(),
            client_nonce: crypto::random::<32>()?,
        };
        s.write_all(&framing::frame(&hello.encode()))?;
        let mut d = Decoder::new(framing::DEFAULT_MAX_FRAME);
        let mut buf = Vec::new();
        let got = read_frame(&mut s, &mut d, &mut buf)?.ok_or("Blackboard closed")?;
        Ok(Message::decode(&got)?)
    }

    /// The offer the adversary sends in Blackboard's place, and what it did.
    fn answer(
        &self,
        hello: &[u8],
        sid: &str,
        cert_der: &[u8],
        chain: &[Vec<u8>],
    ) -> Result<(Vec<u8>, String), Box<dyn std::error::Error>> {
        if self.mode == Mode::Splice {
            let offer = self.genuine_offer(sid, cert_der, chain)?;
            return Ok((
                offer.encode(),
                "replayed Blackboard's genuine signed offer from another session".into(),
            ));
        }
        // A session key of its own, to her key: if she took it, the
        // adversary could read her report.
        let student = X509::from_der(cert_der)?.public_key()?;
        let session_key = crypto::random::<32>()?;
        let wrapped_key = crypto::wrap_key(&student, &session_key)?;
        let server_nonce = crypto::random::<32>()?;
        let (bb_cert, what) = match self.mode {
            Mode::ImpersonateLookalike => {
                let forger = self.forger.as_ref().ok_or("no forger")?;
                (
                    forger.blackboard.cert_der().to_vec(),
                    format!(
                        "its own session key, a Blackboard certificate from a look-alike root \
                         ({}), and a correct signature with that certificate's key",
                        name_text(forger.ca.cert().subject_name())
                    ),
                )
            }
            _ => {
                let Message::SessionOffer { bb_chain, .. } =
                    self.genuine_offer(sid, cert_der, chain)?
                else {
                    return Err("Blackboard sent no offer".into());
                };
                (
                    bb_chain.first().ok_or("empty chain")?.clone(),
                    "its own session key under Blackboard's genuine certificate, signed with \
                     the adversary's own key"
                        .into(),
                )
            }
        };
        let t = crypto::transcript(hello, &server_nonce, &wrapped_key, &bb_cert);
        let signature = match (self.mode, &self.forger) {
            (Mode::ImpersonateLookalike, Some(f)) => f.blackboard.sign(&t)?,
            _ => {
                let mut signer = openssl::sign::Signer::new(
                    openssl::hash::MessageDigest::sha256(),
                    self.own_key()?,
                )?;
                signer.sign_oneshot_to_vec(&t)?
            }
        };
        let offer = Message::SessionOffer {
            server_nonce,
            wrapped_key,
            bb_chain: vec![bb_cert],
            signature,
        };
        Ok((offer.encode(), what))
    }

    fn own_key(&self) -> Result<&PKey<Private>, Box<dyn std::error::Error>> {
        Ok(&self.forger.as_ref().ok_or("no forger")?.key)
    }

    /// Plays the student's side of a recorded submission to Blackboard on a
    /// new connection, waiting for Blackboard's frame wherever it answered
    /// before.
    fn replay(&self, recorded: &Transcript) {
        let result = (|| -> io::Result<String> {
            let mut s = TcpStream::connect(self.upstream)?;
            s.set_read_timeout(Some(Duration::from_secs(20)))?;
            let mut d = Decoder::new(framing::DEFAULT_MAX_FRAME);
            let mut buf = Vec::new();
            for (dir, f) in recorded {
                match dir {
                    Dir::Up => {
                        say(&format!("replay: sent {}", describe(f)));
                        s.write_all(&framing::frame(f))?;
                    }
                    Dir::Down => match read_frame(&mut s, &mut d, &mut buf)? {
                        None => return Ok("Blackboard closed the connection".into()),
                        Some(got) => match Message::decode(&got) {
                            Ok(Message::Error { code, reason }) => {
                                return Ok(format!("Blackboard refused the replay: Error {code:?}: {reason}"))
                            }
                            Ok(Message::SignedReceipt { receipt_id, .. }) => {
                                return Ok(format!(
                                    "Blackboard ACCEPTED the replayed submission (receipt {receipt_id})"
                                ))
                            }
                            _ => say(&format!("replay: Blackboard sent {}", describe(&got))),
                        },
                    },
                }
            }
            Ok("the recording ended without a verdict".into())
        })();
        match result {
            Ok(verdict) => say(&format!("replay verdict: {verdict}")),
            Err(e) => say(&format!("replay verdict: failed: {e}")),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let forger = match cli.mode {
        Mode::SwapCert
        | Mode::Impersonate
        | Mode::ImpersonateLookalike
        | Mode::SwapCsr
        | Mode::ReuseCode => Some(Forger::new()?),
        _ => None,
    };
    let enroll_code = cli
        .enroll_code
        .as_deref()
        .map(EnrollCode::parse)
        .transpose()?;
    let listener = TcpListener::bind(cli.listen)?;
    say(&format!("listening {}", listener.local_addr()?));
    say(&format!("mode {:?}, upstream {}", cli.mode, cli.upstream));
    let proxy = Arc::new(Proxy {
        mode: cli.mode,
        upstream: cli.upstream,
        forger,
        replay_delay: Duration::from_millis(cli.replay_delay),
        replayed: AtomicBool::new(false),
        next_id: AtomicUsize::new(1),
        enroll_code,
    });
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let peer = stream
                    .peer_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                let p = proxy.clone();
                std::thread::spawn(move || p.serve(stream, peer));
            }
            Err(e) => say(&format!("accept failed: {e}")),
        }
    }
    Ok(())
}
