//! The student's side: make her key and CSR, enroll with the CA, then submit
//! the report to Blackboard. Blocking sockets are right here: a client does
//! one thing at a time. The pieces are public so that tests, the load
//! generator and the adversary can drive single steps.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509Name, X509ReqBuilder, X509};

use std::collections::HashMap;

use openssl::sign::Signer;

use crate::course::code::{self, EnrollCode};
use crate::crypto::{self, SessionKeys, DIGEST_LEN, SESSION_KEY_LEN};
use crate::framing::{self, Decoder, FrameError};
use crate::message::{
    CipherId, DecodeError, EnrollAuth, EnrollPolicy, ErrorCode, Message, IV_LEN, NONCE_LEN,
    PROTOCOL_VERSION,
};
use crate::receipt::{self, ReceiptContent, ReceiptError};
use crate::sid::SidError;
use crate::verify::{verify_blackboard, BlackboardCertError, CertError, Verifier};

/// The student's key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    /// RSA, 2048-bit modulus (the default).
    Rsa2048,
    /// RSA, 3072-bit modulus.
    Rsa3072,
}

impl KeyType {
    fn bits(self) -> u32 {
        match self {
            KeyType::Rsa2048 => 2048,
            KeyType::Rsa3072 => 3072,
        }
    }
}

/// The report cipher, as chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Cipher {
    /// AES-256 in counter mode (the default).
    #[value(name = "aes-256-ctr")]
    Aes256Ctr,
    /// RC4 (the lab's cipher; weak, kept for the lab).
    Rc4,
}

impl From<Cipher> for CipherId {
    fn from(c: Cipher) -> CipherId {
        match c {
            Cipher::Aes256Ctr => CipherId::Aes256Ctr,
            Cipher::Rc4 => CipherId::Rc4,
        }
    }
}

/// Why a student's run failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// The server refused, with its reason.
    Refused {
        /// The server's code.
        code: ErrorCode,
        /// The server's reason.
        reason: String,
    },
    /// The server's bytes are not a frame.
    Frame(FrameError),
    /// The server's frame is not a message.
    Decode(DecodeError),
    /// The server sent something the protocol does not allow here.
    Protocol(String),
    /// What the CA returned does not hold up.
    BadCertificate(String),
    /// The certificate the CA returned fails the check Blackboard will make.
    Certificate(CertError),
    /// A SID given to the client is not a valid SID.
    BadSid {
        /// The SID as given.
        sid: String,
        /// Why it is not valid.
        source: SidError,
    },
    /// What answered as Blackboard did not prove it is Blackboard: its
    /// certificate is refused. Nothing was decrypted or sent after it.
    NotBlackboard(BlackboardCertError),
    /// Blackboard's signature over this exchange does not verify (an
    /// impostor, or a signature replayed from another session). Nothing
    /// was decrypted or sent after it.
    BadOfferSignature,
    /// The signed receipt does not hold up.
    Receipt(ReceiptError),
    /// The CA presented a root other than the one pinned on first use (or
    /// by --ca-fingerprint).
    RootChanged {
        /// The fingerprint pinned.
        pinned: String,
        /// The fingerprint presented.
        presented: String,
        /// Where the pin is kept (none for --ca-fingerprint).
        file: Option<PathBuf>,
    },
    /// OpenSSL failed.
    Crypto(ErrorStack),
    /// A network step got no answer in time.
    Timeout {
        /// What was being done.
        what: String,
        /// How long it waited.
        after: Duration,
    },
    /// The peer's bytes are not certboard's protocol at all.
    NotCertboard {
        /// The address.
        peer: String,
        /// What was wrong with its first bytes.
        why: String,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io { what, source } => write!(f, "{what}: {source}"),
            ClientError::Refused { reason, .. } => {
                write!(
                    f,
                    "refused by the server: {}",
                    crate::escape::escaped(reason)
                )
            }
            ClientError::Frame(e) => write!(f, "protocol error: {e}"),
            ClientError::Decode(e) => write!(f, "protocol error: {e}"),
            ClientError::Protocol(m) => write!(f, "protocol error: {m}"),
            ClientError::BadCertificate(m) => write!(f, "bad certificate from the CA: {m}"),
            ClientError::Certificate(e) => write!(f, "bad certificate from the CA: {e}"),
            ClientError::BadSid { sid, source } => write!(f, "SID {sid:?}: {source}"),
            ClientError::NotBlackboard(e) => write!(
                f,
                "refusing to submit: the server did not prove it is Blackboard: {e}; nothing was sent"
            ),
            ClientError::BadOfferSignature => write!(
                f,
                "refusing to submit: Blackboard's signature over this exchange does not verify \
                 (an impostor, or a signature replayed from another session); nothing was sent"
            ),
            ClientError::Receipt(e) => write!(f, "bad receipt: {e}"),
            ClientError::RootChanged {
                pinned,
                presented,
                file,
            } => {
                write!(
                    f,
                    "the CA presented a different root (SHA-256 {presented}) from the one pinned \
                     (SHA-256 {pinned}); someone may be impersonating the CA. Compare both with \
                     the fingerprint your instructor published"
                )?;
                match file {
                    Some(p) => write!(
                        f,
                        "; only if the course really changed its root, delete {} and run again",
                        p.display()
                    ),
                    None => write!(f, " (--ca-fingerprint)"),
                }
            }
            ClientError::Crypto(e) => write!(f, "OpenSSL error: {e}"),
            ClientError::Timeout { what, after } => write!(
                f,
                "{what}: timed out after {} s without an answer (--timeout SECS to wait longer)",
                after.as_secs()
            ),
            ClientError::NotCertboard { peer, why } => write!(
                f,
                "{peer} does not speak the certboard protocol ({why}): check the address and port"
            ),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io { source, .. } => Some(source),
            ClientError::Frame(e) => Some(e),
            ClientError::Decode(e) => Some(e),
            ClientError::Certificate(e) => Some(e),
            ClientError::BadSid { source, .. } => Some(source),
            ClientError::Crypto(e) => Some(e),
            ClientError::NotBlackboard(e) => Some(e),
            ClientError::Receipt(e) => Some(e),
            ClientError::Refused { .. }
            | ClientError::Protocol(_)
            | ClientError::BadCertificate(_)
            | ClientError::Timeout { .. }
            | ClientError::NotCertboard { .. }
            | ClientError::BadOfferSignature
            | ClientError::RootChanged { .. } => None,
        }
    }
}

impl From<ErrorStack> for ClientError {
    fn from(e: ErrorStack) -> Self {
        ClientError::Crypto(e)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn io_ctx(what: impl Into<String>) -> impl FnOnce(io::Error) -> ClientError {
    let what = what.into();
    move |source| ClientError::Io { what, source }
}

/// A blocking, framed connection to one of the services.
#[derive(Debug)]
pub struct FramedStream {
    stream: TcpStream,
    decoder: Decoder,
    buf: Vec<u8>,
    peer: String,
    timeout: Duration,
    /// Whether a whole certboard frame has come yet (before it, bytes that
    /// do not frame mean the peer is something else).
    heard: bool,
}

impl FramedStream {
    /// Connects, with `timeout` for the connection and for every read and
    /// write after it.
    pub fn connect(addr: &str, timeout: Duration) -> Result<FramedStream, ClientError> {
        let what = format!("connecting to {addr}");
        let sock = addr
            .to_socket_addrs()
            .map_err(io_ctx(what.clone()))?
            .next()
            .ok_or_else(|| ClientError::Io {
                what: what.clone(),
                source: io::Error::new(io::ErrorKind::NotFound, "no address"),
            })?;
        let stream = TcpStream::connect_timeout(&sock, timeout).map_err(|e| {
            if is_timeout(&e) {
                ClientError::Timeout {
                    what: what.clone(),
                    after: timeout,
                }
            } else {
                ClientError::Io {
                    what: what.clone(),
                    source: e,
                }
            }
        })?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(io_ctx(what.clone()))?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(io_ctx(what))?;
        let _ = stream.set_nodelay(true);
        Ok(FramedStream {
            stream,
            decoder: Decoder::new(framing::DEFAULT_MAX_FRAME),
            buf: Vec::new(),
            peer: addr.to_string(),
            timeout,
            heard: false,
        })
    }

    /// The address connected to.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Sends one frame.
    pub fn send_frame(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        let peer = self.peer.clone();
        self.stream
            .write_all(&framing::frame(payload))
            .map_err(io_ctx(format!("sending to {peer}")))
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &Message) -> Result<(), ClientError> {
        self.send_frame(&msg.encode())
    }

    /// Receives one frame.
    pub fn recv_frame(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(f)) => {
                    self.heard = true;
                    return Ok(f);
                }
                Ok(None) => {}
                Err(e) if !self.heard => {
                    let start = &self.buf[..self.buf.len().min(8)];
                    return Err(ClientError::NotCertboard {
                        peer: self.peer.clone(),
                        why: format!(
                            "its first bytes {:?} are not a certboard frame: {e}",
                            String::from_utf8_lossy(start)
                        ),
                    });
                }
                Err(e) => return Err(ClientError::Frame(e)),
            }
            let what = format!("waiting for an answer from {}", self.peer);
            let n = match self.stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if is_timeout(&e) => {
                    return Err(ClientError::Timeout {
                        what,
                        after: self.timeout,
                    })
                }
                Err(e) => return Err(ClientError::Io { what, source: e }),
            };
            if n == 0 {
                return Err(ClientError::Io {
                    what: format!("reading from {}", self.peer),
                    source: io::ErrorKind::UnexpectedEof.into(),
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Receives one message; a server error becomes [`ClientError::Refused`].
    pub fn recv(&mut self) -> Result<Message, ClientError> {
        let first = !self.heard;
        let frame = self.recv_frame()?;
        match Message::decode(&frame) {
            Ok(Message::Error { code, reason }) => Err(ClientError::Refused { code, reason }),
            Ok(m) => Ok(m),
            Err(e) if first => Err(ClientError::NotCertboard {
                peer: self.peer.clone(),
                why: format!("its first frame is not a certboard message: {e}"),
            }),
            Err(e) => Err(ClientError::Decode(e)),
        }
    }

    /// Answers the admission challenge when a secret is configured.
    pub fn admit(&mut self, secret: Option<&[u8]>) -> Result<(), ClientError> {
        let Some(secret) = secret else {
            return Ok(());
        };
        let first = match self.recv() {
            Ok(m) => m,
            // A server without admission control waits for our request and
            // eventually refuses the silence.
            Err(ClientError::Refused { reason, .. }) => {
                return Err(ClientError::Protocol(format!(
                    "no admission challenge came (the server said: {reason}); if the server \
                     does not use admission control, drop --admission-secret-file"
                )))
            }
            Err(e) => return Err(e),
        };
        match first {
            Message::AdmissionChallenge { challenge } => {
                let mac = crypto::hmac_sha256(secret, &challenge)?;
                self.send(&Message::AdmissionResponse { mac })
            }
            other => Err(ClientError::Protocol(format!(
                "expected an admission challenge, got {}",
                other.name()
            ))),
        }
    }
}

/// The error for a message that does not belong at this step; a challenge
/// means the server wants an admission secret we were not given.
fn unexpected(expected: &str, got: &Message) -> ClientError {
    match got {
        Message::AdmissionChallenge { .. } => ClientError::Protocol(
            "the server requires admission control: give the shared secret with --admission-secret-file".into(),
        ),
        other => ClientError::Protocol(format!("expected {expected}, got {}", other.name())),
    }
}

/// Generates the student's key pair.
pub fn make_key(kind: KeyType) -> Result<PKey<Private>, ErrorStack> {
    PKey::from_rsa(Rsa::generate(kind.bits())?)
}

/// A CSR for CN=`sid`, signed with her key (proof of possession).
pub fn make_csr(sid: &str, key: &PKey<Private>) -> Result<Vec<u8>, ErrorStack> {
    let mut name = X509Name::builder()?;
    name.append_entry_by_nid(Nid::COMMONNAME, sid)?;
    let mut b = X509ReqBuilder::new()?;
    b.set_subject_name(&name.build())?;
    b.set_pubkey(key)?;
    b.sign(key, MessageDigest::sha256())?;
    b.build().to_der()
}

/// The CA side of protocol version 2 on one connection: `CaHello` answered
/// by the course's policy and a nonce; then any number of requests, each
/// bound to the latest nonce.
#[derive(Debug)]
pub struct CaSession {
    /// What a first enrollment needs here.
    pub policy: EnrollPolicy,
    nonce: [u8; NONCE_LEN],
}

/// What the CA issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertAnswer {
    /// Her certificate, DER.
    pub cert_der: Vec<u8>,
    /// The CA root, DER.
    pub ca_cert_der: Vec<u8>,
}

/// Adds what a person can act on to a refusal of the first CA message:
/// a v1 server does not know `CaHello`; Blackboard does not expect it.
fn hello_refused(e: ClientError, peer: &str) -> ClientError {
    match e {
        ClientError::Refused {
            code: ErrorCode::Malformed,
            reason,
        } => ClientError::Refused {
            code: ErrorCode::Malformed,
            reason: format!("{reason} (the server speaks an older protocol version)"),
        },
        ClientError::Refused {
            code: ErrorCode::UnexpectedMessage,
            reason,
        } if reason.contains("submission hello") => ClientError::Refused {
            code: ErrorCode::UnexpectedMessage,
            reason: format!(
                "{reason} ({peer} is Blackboard, not the CA: the ports look swapped; --ca is \
                 the CA's address)"
            ),
        },
        other => other,
    }
}

impl CaSession {
    /// Sends `CaHello` and reads the challenge.
    pub fn open(conn: &mut FramedStream) -> Result<CaSession, ClientError> {
        let peer = conn.peer().to_string();
        conn.send(&Message::CaHello {
            version: PROTOCOL_VERSION,
        })?;
        match conn.recv().map_err(|e| hello_refused(e, &peer))? {
            Message::CaChallenge {
                version: PROTOCOL_VERSION,
                policy,
                nonce,
            } => Ok(CaSession { policy, nonce }),
            Message::CaChallenge { version, .. } => Err(ClientError::Protocol(format!(
                "the CA answered with protocol version {version}; this client speaks {PROTOCOL_VERSION}"
            ))),
            other => Err(unexpected("CaChallenge", &other)),
        }
    }

    /// The nonce the next request must bind.
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// Sends one request and reads the certificate; the next nonce is kept.
    pub fn request(
        &mut self,
        conn: &mut FramedStream,
        csr_der: Vec<u8>,
        auth: EnrollAuth,
    ) -> Result<CertAnswer, ClientError> {
        conn.send(&Message::CertRequest { csr_der, auth })?;
        match conn.recv()? {
            Message::CertIssued {
                cert_der,
                ca_cert_der,
                next_nonce,
            } => {
                self.nonce = next_nonce;
                Ok(CertAnswer {
                    cert_der,
                    ca_cert_der,
                })
            }
            other => Err(unexpected("CertIssued", &other)),
        }
    }
}

/// `auth` = code: the HMAC of the code's key over the nonce, SID and CSR.
pub fn code_auth(
    code: &EnrollCode,
    sid: &str,
    nonce: &[u8; NONCE_LEN],
    csr_der: &[u8],
) -> Result<EnrollAuth, ErrorStack> {
    let key = code.key(sid)?;
    Ok(EnrollAuth::Code {
        mac: code::enroll_mac(&key, nonce, sid, csr_der)?,
    })
}

/// `auth` = renewal: her current certificate and her signature with its
/// key over the nonce, that certificate and the new CSR.
pub fn renewal_auth(
    current_key: &PKey<Private>,
    cert_der: &[u8],
    nonce: &[u8; NONCE_LEN],
    csr_der: &[u8],
) -> Result<EnrollAuth, ErrorStack> {
    let mut signer = Signer::new(MessageDigest::sha256(), current_key)?;
    signer.update(&code::renewal_message(nonce, cert_der, csr_der))?;
    Ok(EnrollAuth::Renewal {
        cert_der: cert_der.to_vec(),
        signature: signer.sign_to_vec()?,
    })
}

/// Why a codes file cannot be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum CodesFileError {
    /// A line is not `sid,code`.
    Line {
        /// 1-based.
        line: usize,
        /// Why.
        why: String,
    },
}

impl fmt::Display for CodesFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodesFileError::Line { line, why } => write!(f, "line {line}: {why}"),
        }
    }
}

impl std::error::Error for CodesFileError {}

/// Reads `sid,code` lines (the file `server roster codes` writes; a
/// header line `sid,code` and blank lines are skipped).
pub fn read_codes(text: &str) -> Result<HashMap<String, EnrollCode>, CodesFileError> {
    let mut codes = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.eq_ignore_ascii_case("sid,code")) {
            continue;
        }
        let bad = |why: String| CodesFileError::Line { line: i + 1, why };
        let (sid, code) = line
            .split_once(',')
            .ok_or_else(|| bad("expected `sid,code`".into()))?;
        let sid = sid.trim();
        crate::sid::validate(sid).map_err(|e| bad(format!("SID {sid:?}: {e}")))?;
        let code = EnrollCode::parse(code).map_err(|e| bad(format!("SID {sid}: {e}")))?;
        codes.insert(sid.to_string(), code);
    }
    Ok(codes)
}

/// Checks that `cert` chains to `root`, is hers (her key, her SID) and is a
/// client certificate.
pub fn check_certificate(
    sid: &str,
    cert_der: &[u8],
    root: &X509,
    key: &PKey<Private>,
) -> Result<X509, ClientError> {
    let verifier = Verifier::new(root)?;
    verifier
        .verify(sid, cert_der, &[])
        .map_err(ClientError::Certificate)?;
    let cert = X509::from_der(cert_der)?;
    if !cert.public_key()?.public_eq(key) {
        return Err(ClientError::BadCertificate(
            "the certificate does not certify her own public key".into(),
        ));
    }
    Ok(cert)
}

/// What Blackboard said at the end of a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The receipt id.
    pub receipt_id: u64,
    /// The certificate serial it was accepted under.
    pub serial_hex: String,
    /// The CMS SignedData, DER, as Blackboard sent it (the `.p7m` file).
    pub signed_receipt: Vec<u8>,
    /// What it says, its signature verified.
    pub content: ReceiptContent,
}

/// What the student trusts Blackboard by: her pinned root and the name
/// Blackboard's certificate must carry.
#[derive(Debug, Clone)]
pub struct BlackboardTrust {
    /// The CUHK root, pinned (--ca-cert, --ca-fingerprint or first use).
    pub root: X509,
    /// The name in Blackboard's subjectAltName (--blackboard-name).
    pub name: String,
}

/// Checks a SessionOffer before anything in it is used: Blackboard's
/// certificate chains to her root, is valid now, is a server certificate
/// for `trust.name`, and its key signed the transcript of this very
/// exchange. Returns the transcript's hash.
pub fn verify_offer(
    hello: &[u8],
    server_nonce: &[u8; NONCE_LEN],
    wrapped_key: &[u8],
    bb_chain: &[Vec<u8>],
    signature: &[u8],
    trust: &BlackboardTrust,
) -> Result<[u8; DIGEST_LEN], ClientError> {
    let cert = verify_blackboard(&trust.root, bb_chain, Some(&trust.name), None)
        .map_err(ClientError::NotBlackboard)?;
    let bb_cert = bb_chain
        .first()
        .ok_or(ClientError::NotBlackboard(BlackboardCertError::Malformed))?;
    let t = crypto::transcript(hello, server_nonce, wrapped_key, bb_cert);
    let key = cert.public_key()?;
    let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), &key)?;
    // A malformed signature is as false as a wrong one.
    if !v.verify_oneshot(signature, &t).unwrap_or(false) {
        return Err(ClientError::BadOfferSignature);
    }
    Ok(openssl::sha::sha256(&t))
}

/// Steps 3–6 on an open Blackboard connection (protocol version 2): her
/// hello with a fresh nonce; Blackboard's signed offer, verified before
/// anything is decrypted or sent; her report; the signed receipt,
/// verified against what she sent.
#[allow(clippy::too_many_arguments)]
pub fn submit(
    conn: &mut FramedStream,
    sid: &str,
    cert_der: &[u8],
    key: &PKey<Private>,
    cipher: CipherId,
    report: &str,
    trust: &BlackboardTrust,
    progress: &mut dyn FnMut(&str),
) -> Result<Receipt, ClientError> {
    let hello = Message::SubmitOpen {
        sid: sid.to_string(),
        cert_der: cert_der.to_vec(),
        chain: Vec::new(),
        client_nonce: crypto::random::<NONCE_LEN>()?,
    }
    .encode();
    conn.send_frame(&hello)?;
    progress("step 3: sent SID, certificate and a fresh nonce to Blackboard");
    let offer = conn.recv().map_err(|e| match e {
        // An older server's SessionKey, recognised by its type byte.
        ClientError::Decode(DecodeError::Version1(_)) => ClientError::Protocol(
            "Blackboard answered in protocol version 1, which proves nothing about who \
             answered; refusing to submit (the server must be upgraded)"
                .into(),
        ),
        e => e,
    })?;
    let (server_nonce, wrapped_key, bb_chain, signature) = match offer {
        Message::SessionOffer {
            server_nonce,
            wrapped_key,
            bb_chain,
            signature,
        } => (server_nonce, wrapped_key, bb_chain, signature),
        other => return Err(unexpected("SessionOffer", &other)),
    };
    let th = verify_offer(
        &hello,
        &server_nonce,
        &wrapped_key,
        &bb_chain,
        &signature,
        trust,
    )?;
    progress(&format!(
        "step 4: Blackboard proved itself ({:?}, certificate from the pinned root, signature \
         over this exchange) and sent a session key (RSA-OAEP)",
        trust.name
    ));
    let session = crypto::unwrap_key(key, &wrapped_key)?;
    let session: [u8; SESSION_KEY_LEN] = session
        .try_into()
        .map_err(|_| ClientError::Protocol("session key is not 32 bytes".into()))?;
    let keys = SessionKeys::derive_v2(&session, &th)?;
    progress("step 5: session key decrypted with her private key");
    let iv = crypto::random::<IV_LEN>()?;
    let ciphertext = keys.apply_cipher(cipher, &iv, report.as_bytes())?;
    let mac = keys.report_mac_v2(&th, cipher, &iv, &ciphertext)?;
    conn.send(&Message::Report {
        cipher,
        iv,
        ciphertext,
        mac,
    })?;
    progress(&format!(
        "step 6: report sent ({} + HMAC-SHA256, {} bytes)",
        cipher.name(),
        report.len()
    ));
    let (receipt_id, serial_hex, signed_receipt) = match conn.recv()? {
        Message::SignedReceipt {
            receipt_id,
            serial_hex,
            signed_receipt,
        } => (receipt_id, serial_hex, signed_receipt),
        other => return Err(unexpected("SignedReceipt", &other)),
    };
    let content = check_receipt(
        &signed_receipt,
        trust,
        &Expected {
            sid,
            serial: &serial_hex,
            receipt: Some(receipt_id),
            report: Some(report.as_bytes()),
            transcript: Some(&th),
        },
    )?;
    Ok(Receipt {
        receipt_id,
        serial_hex,
        signed_receipt,
        content,
    })
}

/// What a receipt must say.
#[derive(Debug)]
pub struct Expected<'a> {
    /// Her SID.
    pub sid: &'a str,
    /// Her certificate's serial (hex; compared without regard to case).
    pub serial: &'a str,
    /// The receipt id, when known.
    pub receipt: Option<u64>,
    /// The report text's exact bytes, when at hand.
    pub report: Option<&'a [u8]>,
    /// The transcript hash of the session, in the session.
    pub transcript: Option<&'a [u8; DIGEST_LEN]>,
}

/// Verifies a signed receipt (signature, signer a Blackboard certificate
/// for `trust.name` from `trust.root`) and that it says what is expected.
pub fn check_receipt(
    der: &[u8],
    trust: &BlackboardTrust,
    want: &Expected<'_>,
) -> Result<ReceiptContent, ClientError> {
    let v = receipt::verify_receipt(der, &trust.root, Some(&trust.name))
        .map_err(ClientError::Receipt)?;
    let c = v.content;
    let check = |field, found: &str, expected: &str| {
        receipt::expect_field(field, found, expected).map_err(ClientError::Receipt)
    };
    check("sid", &c.sid, want.sid)?;
    check("serial", &c.serial, &want.serial.to_ascii_uppercase())?;
    if let Some(id) = want.receipt {
        check("receipt", &c.receipt, &id.to_string())?;
    }
    if let Some(report) = want.report {
        check(
            "report_sha256",
            &c.report_sha256,
            &crypto::sha256_hex(report),
        )?;
    }
    if let Some(th) = want.transcript {
        let hex: String = th.iter().map(|b| format!("{b:02x}")).collect();
        check("transcript_sha256", &c.transcript_sha256, &hex)?;
    }
    Ok(c)
}

/// The file beside the students' directories that keeps the root's
/// fingerprint pinned on first use.
pub const ROOT_FINGERPRINT_FILE: &str = "root-fingerprint";

/// How the CA root is trusted.
#[derive(Debug, Clone)]
pub enum RootPin {
    /// --ca-cert: exactly this root.
    Cert(X509),
    /// --ca-fingerprint: a root with this SHA-256.
    Fingerprint([u8; DIGEST_LEN]),
    /// Trust on first use: the fingerprint is kept in this file.
    FirstUse(PathBuf),
}

/// Checks a root presented by the CA (or saved earlier) against the pin,
/// pinning it on first use (printing its fingerprint through `progress`
/// for the student to compare with the one her instructor published).
pub fn pin_root(
    root_der: &[u8],
    pin: &RootPin,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ClientError> {
    let presented = openssl::sha::sha256(root_der);
    let changed = |pinned: &[u8], file: Option<PathBuf>| ClientError::RootChanged {
        pinned: crypto::fingerprint_of_digest(pinned),
        presented: crypto::fingerprint_of_digest(&presented),
        file,
    };
    match pin {
        RootPin::Cert(c) => {
            if c.to_der()? != root_der {
                return Err(ClientError::BadCertificate(
                    "the CA sent a root that differs from the pinned --ca-cert".into(),
                ));
            }
            Ok(())
        }
        RootPin::Fingerprint(want) if crypto::ct_eq(want, &presented) => Ok(()),
        RootPin::Fingerprint(want) => Err(changed(want, None)),
        RootPin::FirstUse(path) => match fs::read_to_string(path) {
            Ok(text) => match crypto::parse_fingerprint(text.trim()) {
                Some(want) if want == presented => Ok(()),
                Some(want) => Err(changed(&want, Some(path.clone()))),
                None => Err(ClientError::Protocol(format!(
                    "{} does not hold a SHA-256 fingerprint; delete it to pin the root again",
                    path.display()
                ))),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let fp = crypto::fingerprint(root_der);
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir)
                        .map_err(io_ctx(format!("creating {}", dir.display())))?;
                }
                write_file(path, format!("{fp}\n").as_bytes(), 0o644)?;
                progress(&format!(
                    "first contact with this CA: its root's SHA-256 fingerprint is\n  {fp}\n\
                     compare it with the fingerprint your instructor published; it is pinned in {} \
                     and a different root will be refused",
                    path.display()
                ));
                Ok(())
            }
            Err(e) => Err(ClientError::Io {
                what: format!("reading {}", path.display()),
                source: e,
            }),
        },
    }
}

/// Everything a run of the client needs besides the SIDs.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// CA address.
    pub ca: String,
    /// Blackboard address.
    pub blackboard: String,
    /// Where each student's files go.
    pub out_dir: PathBuf,
    /// Her key type.
    pub key_type: KeyType,
    /// The report cipher.
    pub cipher: CipherId,
    /// How the root is pinned: --ca-cert, --ca-fingerprint, or on first
    /// use in `<out_dir>/root-fingerprint`.
    pub root_pin: RootPin,
    /// The name Blackboard's certificate must carry (--blackboard-name).
    pub blackboard_name: String,
    /// Always make a new key and enroll again (by renewal when her saved
    /// certificate is still good).
    pub renew: bool,
    /// Enrollment codes by SID, for first enrollments.
    pub codes: HashMap<String, EnrollCode>,
    /// Admission-control secret.
    pub admission_secret: Option<Vec<u8>>,
    /// Timeout of every network step.
    pub timeout: Duration,
}

/// A student's files.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    fn receipts(&self) -> PathBuf {
        self.dir.join("receipts")
    }
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), ClientError> {
    crate::fsutil::write_private_atomic(path, data, mode)
        .map_err(io::Error::from)
        .map_err(io_ctx(format!("writing {}", path.display())))
}

/// Why saved credentials are not reused.
#[derive(Debug)]
enum SavedError {
    /// A file could not be read.
    Read(PathBuf, io::Error),
    /// The file (named) does not hold what it should.
    NotPem(&'static str),
    /// The certificate has expired or is about to.
    Expiring,
    /// OpenSSL failed.
    Crypto(ErrorStack),
    /// The certificate fails the check Blackboard will make.
    Check(ClientError),
}

impl fmt::Display for SavedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SavedError::Read(path, e) => write!(f, "{}: {e}", path.display()),
            SavedError::NotPem("key.pem") => write!(f, "saved key.pem is not a private key"),
            SavedError::NotPem(file) => write!(f, "saved {file} is not a certificate"),
            SavedError::Expiring => write!(
                f,
                "saved certificate has expired or expires within a minute"
            ),
            SavedError::Crypto(e) => write!(f, "{e}"),
            SavedError::Check(e) => write!(f, "saved certificate: {e}"),
        }
    }
}

impl From<ErrorStack> for SavedError {
    fn from(e: ErrorStack) -> Self {
        SavedError::Crypto(e)
    }
}

/// Loads saved credentials if they are still good; says why not otherwise.
fn load_saved(
    files: &Files,
    sid: &str,
    pinned: Option<&X509>,
) -> Result<(PKey<Private>, Vec<u8>, X509), SavedError> {
    let read = |p: PathBuf| fs::read(&p).map_err(|e| SavedError::Read(p, e));
    let key = PKey::private_key_from_pem(&read(files.key())?)
        .map_err(|_| SavedError::NotPem("key.pem"))?;
    let cert = X509::from_pem(&read(files.cert())?).map_err(|_| SavedError::NotPem("cert.pem"))?;
    let root = match pinned {
        Some(r) => r.clone(),
        None => X509::from_pem(&read(files.ca())?).map_err(|_| SavedError::NotPem("ca.pem"))?,
    };
    let soon = Asn1Time::from_unix(crate::time::now_unix() + 60)?;
    if cert.not_after() <= soon {
        return Err(SavedError::Expiring);
    }
    let der = cert.to_der()?;
    check_certificate(sid, &der, &root, &key).map_err(SavedError::Check)?;
    Ok((key, der, root))
}

/// Steps 1–2: her new key and CSR, certified by the CA (protocol version
/// 2), saved in her directory. `current`: her saved key and certificate,
/// still good, when she renews.
fn enroll_student(
    opts: &ClientOptions,
    sid: &str,
    files: &Files,
    current: Option<(PKey<Private>, Vec<u8>)>,
    progress: &mut dyn FnMut(&str),
) -> Result<(PKey<Private>, Vec<u8>, X509), ClientError> {
    let key = make_key(opts.key_type)?;
    let csr = make_csr(sid, &key)?;
    progress(&format!(
        "step 1: generated her {}-bit RSA key pair and a CSR for CN={sid}",
        key.bits()
    ));
    let mut conn = FramedStream::connect(&opts.ca, opts.timeout)?;
    conn.admit(opts.admission_secret.as_deref())?;
    let mut ca = CaSession::open(&mut conn)?;
    let code = opts.codes.get(sid);
    let auth = match (&current, code, ca.policy) {
        (Some((old_key, old_cert)), _, _) => {
            progress("step 2: renewing: proving possession of her current key (no code needed)");
            renewal_auth(old_key, old_cert, ca.nonce(), &csr)?
        }
        (None, Some(_), EnrollPolicy::Open) => {
            progress(
                "warning: this CA has no roster (open enrollment): her enrollment code is not needed and not sent",
            );
            EnrollAuth::Open
        }
        (None, Some(code), EnrollPolicy::Roster) => code_auth(code, sid, ca.nonce(), &csr)?,
        (None, None, _) => EnrollAuth::Open,
    };
    let answer = ca.request(&mut conn, csr, auth)?;
    // Before anything the CA sent is trusted.
    pin_root(&answer.ca_cert_der, &opts.root_pin, progress)?;
    let root = X509::from_der(&answer.ca_cert_der)
        .map_err(|_| ClientError::BadCertificate("root is not DER".into()))?;
    let cert = check_certificate(sid, &answer.cert_der, &root, &key)?;
    let serial = crate::ca::Serial::from_asn1(cert.serial_number())?;
    progress(&format!(
        "step 2: CA issued certificate serial {serial}, valid until {}; it chains to the root ({})",
        cert.not_after(),
        match opts.root_pin {
            RootPin::Cert(_) => "pinned by --ca-cert",
            RootPin::Fingerprint(_) => "pinned by --ca-fingerprint",
            RootPin::FirstUse(_) => "pinned on first use",
        }
    ));
    write_file(&files.key(), &key.private_key_to_pem_pkcs8()?, 0o600)?;
    write_file(&files.cert(), &cert.to_pem()?, 0o644)?;
    write_file(&files.ca(), &root.to_pem()?, 0o644)?;
    progress(&format!("SID{sid} sign finished"));
    Ok((key, answer.cert_der, root))
}

/// Runs steps 1–6 for one SID, reporting each step through `progress`.
pub fn run_student(
    opts: &ClientOptions,
    sid: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<Receipt, ClientError> {
    crate::sid::validate(sid).map_err(|source| ClientError::BadSid {
        sid: sid.to_string(),
        source,
    })?;
    let files = Files {
        dir: opts.out_dir.join(sid),
    };
    let pinned_cert = match &opts.root_pin {
        RootPin::Cert(c) => Some(c),
        _ => None,
    };
    let saved = match load_saved(&files, sid, pinned_cert) {
        Ok(s) => Some(s),
        Err(why) if files.dir.exists() => {
            progress(&format!("not reusing saved credentials: {why}"));
            None
        }
        Err(_) => None,
    };
    let reused = saved.is_some() && !opts.renew;
    let (key, cert_der, root) = match saved {
        Some((key, der, root)) if !opts.renew => {
            // The saved root must still be the pinned one.
            pin_root(&root.to_der()?, &opts.root_pin, progress)?;
            progress(&format!(
                "steps 1-2: reusing her key and valid certificate from {}",
                files.dir.display()
            ));
            (key, der, root)
        }
        saved => {
            // With --renew, a saved certificate still good is renewed by
            // proving possession of its key.
            let current = saved.map(|(key, der, _)| (key, der));
            // Her directory first: a certificate whose key cannot be saved
            // would be issued for nothing. One made here is removed again
            // if the enrollment fails, so a refusal leaves nothing behind.
            let made_dir = !files.dir.exists();
            crate::fsutil::create_private_dir_all(&files.dir)
                .map_err(io_ctx(format!("creating {}", files.dir.display())))?;
            let enrolled = enroll_student(opts, sid, &files, current, progress);
            if enrolled.is_err() && made_dir {
                let _ = fs::remove_dir(&files.dir);
            }
            enrolled?
        }
    };
    let trust = BlackboardTrust {
        root,
        name: opts.blackboard_name.clone(),
    };
    let mut conn = FramedStream::connect(&opts.blackboard, opts.timeout)?;
    conn.admit(opts.admission_secret.as_deref())?;
    let report = crypto::lab_report(sid);
    let submitted = submit(
        &mut conn,
        sid,
        &cert_der,
        &key,
        opts.cipher,
        &report,
        &trust,
        progress,
    );
    let receipt = match submitted {
        Err(ClientError::Refused {
            code: ErrorCode::BadCertificate,
            reason,
        }) if reused => Err(ClientError::Refused {
            code: ErrorCode::BadCertificate,
            reason: format!("{reason} (it was her saved certificate: --renew enrolls again)"),
        }),
        Err(ClientError::Refused {
            code: ErrorCode::UnexpectedMessage,
            reason,
        }) if reason.contains("CaHello") => Err(ClientError::Refused {
            code: ErrorCode::UnexpectedMessage,
            reason: format!(
                "{reason} ({} is the CA, not Blackboard: the ports look swapped; --blackboard \
                 is Blackboard's address)",
                opts.blackboard
            ),
        }),
        other => other,
    }?;
    let dir = files.receipts();
    fs::create_dir_all(&dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
    let path = dir.join(format!("{}.p7m", receipt.receipt_id));
    write_file(&path, &receipt.signed_receipt, 0o644)?;
    progress(&format!(
        "Blackboard acknowledged: receipt {} (certificate serial {}), signed by Blackboard; \
         report SHA-256 {} matches; saved {}",
        receipt.receipt_id,
        receipt.serial_hex,
        receipt.content.report_sha256,
        path.display()
    ));
    Ok(receipt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CaKeyType, CertificateAuthority};

    fn ca(dir: &Path) -> CertificateAuthority {
        CertificateAuthority::open(dir, b"client tests", CaKeyType::P256, 30)
            .unwrap()
            .0
    }

    #[test]
    fn her_certificate_must_certify_her_key_and_sid() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca(dir.path());
        let key = make_key(KeyType::Rsa2048).unwrap();
        let issued = ca.issue(&make_csr("alice", &key).unwrap()).unwrap();
        assert!(check_certificate("alice", &issued.der, ca.cert(), &key).is_ok());
        let other = make_key(KeyType::Rsa2048).unwrap();
        assert!(matches!(
            check_certificate("alice", &issued.der, ca.cert(), &other),
            Err(ClientError::BadCertificate(_))
        ));
        assert!(matches!(
            check_certificate("bob", &issued.der, ca.cert(), &key),
            Err(ClientError::Certificate(CertError::SidMismatch { .. }))
        ));
    }

    #[test]
    fn saved_credentials_are_reused_only_when_whole() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca(&dir.path().join("keys"));
        let files = Files {
            dir: dir.path().join("alice"),
        };
        assert!(matches!(
            load_saved(&files, "alice", None),
            Err(SavedError::Read(..))
        ));
        fs::create_dir_all(&files.dir).unwrap();
        let key = make_key(KeyType::Rsa2048).unwrap();
        let issued = ca.issue(&make_csr("alice", &key).unwrap()).unwrap();
        let cert = X509::from_der(&issued.der).unwrap();
        fs::write(files.key(), key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        fs::write(files.cert(), b"not PEM").unwrap();
        fs::write(files.ca(), ca.cert().to_pem().unwrap()).unwrap();
        let err = load_saved(&files, "alice", None).unwrap_err();
        assert_eq!(err.to_string(), "saved cert.pem is not a certificate");
        fs::write(files.cert(), cert.to_pem().unwrap()).unwrap();
        let (_, der, _) = load_saved(&files, "alice", None).unwrap();
        assert_eq!(der, issued.der);
        // Saved for someone else: refused by the same check as a new one.
        assert!(matches!(
            load_saved(&files, "bob", None),
            Err(SavedError::Check(_))
        ));
    }

    #[test]
    fn a_bad_sid_is_refused_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ClientOptions {
            ca: "127.0.0.1:1".into(),
            blackboard: "127.0.0.1:1".into(),
            out_dir: dir.path().to_path_buf(),
            key_type: KeyType::Rsa2048,
            cipher: CipherId::Aes256Ctr,
            root_pin: RootPin::FirstUse(dir.path().join(ROOT_FINGERPRINT_FILE)),
            blackboard_name: crate::ca::DEFAULT_BLACKBOARD_NAME.into(),
            renew: false,
            codes: HashMap::new(),
            admission_secret: None,
            timeout: Duration::from_secs(1),
        };
        let err = run_student(&opts, "../x", &mut |_| {}).unwrap_err();
        assert!(matches!(err, ClientError::BadSid { .. }), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_unexpected_challenge_asks_for_the_secret() {
        let challenge = Message::AdmissionChallenge { challenge: [0; 32] };
        let hint = unexpected("SessionOffer", &challenge).to_string();
        assert!(hint.contains("--admission-secret-file"), "{hint}");
        let other = unexpected("SessionOffer", &Message::CaHello { version: 2 });
        assert_eq!(
            other.to_string(),
            "protocol error: expected SessionOffer, got CaHello"
        );
        assert_eq!(CipherId::from(Cipher::Rc4), CipherId::Rc4);
    }
}
