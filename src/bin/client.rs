//! The student client: `cargo run --bin client -- <SID>...`
//!
//! For each SID in turn: make her key pair and CSR, get it certified by the
//! CA, then submit her report to Blackboard under that certificate.
//! `client submit --assignment ID --file PATH SID` hands in a file
//! (protocol version 3); `client enroll SID...` only enrolls;
//! `client status SID` asks what Blackboard holds for her;
//! `client verify-receipt FILE [--report FILE]` checks a saved receipt.

use std::collections::HashMap;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use openssl::x509::X509;

use certboard::ca::DEFAULT_BLACKBOARD_NAME;
use certboard::client::{
    self, BlackboardTrust, Cipher, ClientOptions, KeyType, Outcome, RootPin, CODE_ENV,
};
use certboard::config;
use certboard::course::code::EnrollCode;
use certboard::escape::escaped;

/// certboard's student client: enroll with the CUHK CA, then submit the lab
/// report to Blackboard, for each SID given.
///
/// Each student's key (mode 0600), certificate and the CA root are saved
/// under OUT_DIR/SID/. A later run reuses a saved key and certificate that
/// are still valid and goes straight to submission; --renew forces a new key
/// and enrollment. Exits 0 only if every SID went through.
///
/// Blackboard must prove itself (a certificate from the same root for
/// --blackboard-name, and a signature over the exchange) before her report
/// leaves; each receipt is a signed proof, saved as
/// OUT_DIR/SID/receipts/RECEIPT.p7m.
///
/// Without --ca-cert or --ca-fingerprint, the root's SHA-256 fingerprint
/// is printed on first contact and pinned in OUT_DIR/root-fingerprint;
/// compare it with the one your instructor published. A different root
/// later is refused.
#[derive(Debug, Parser)]
#[command(name = "client", version, subcommand_negates_reqs = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Hand in a file for an assignment (protocol version 3): enroll first
    /// if needed (as for the lab), then send the file in encrypted,
    /// authenticated chunks. Its size and SHA-256 are announced first, so
    /// an oversized file is refused before it is sent. Prints what was
    /// handed in (file name, size, SHA-256, receipt id, late or not) and
    /// saves the signed receipt as OUT_DIR/SID/receipts/RECEIPT.p7m.
    Submit {
        /// The assignment's id, as the course names it (e.g. `lab`).
        #[arg(long, value_name = "ID")]
        assignment: String,
        /// The file to hand in (read twice, streaming, never whole in
        /// memory). It is announced under its own name, with `\`, control
        /// and bidi-override characters replaced by `_` and cut to 255
        /// bytes.
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
        /// Her student id.
        #[arg(value_name = "SID")]
        sid: String,
    },
    /// Enroll only: make each student's key and get it certified (or keep a
    /// saved certificate that is still valid; --renew makes a new key).
    /// Nothing is submitted.
    Enroll {
        /// Student ids (1-32 characters of A-Z a-z 0-9 _ -).
        #[arg(required = true, value_name = "SID")]
        sids: Vec<String>,
    },
    /// What the transparency log holds for her: reads the log from the
    /// CA's HTTP listener (`--log-url http://HOST:PORT/log`), checks its
    /// signed checkpoint (with `--log-key`, the key the instructor
    /// published by `server log key`), that its entries give the
    /// checkpoint's root and that it extends the checkpoint kept from her
    /// receipts; then lists every certificate and submission logged for
    /// her SID, marking a certificate that is not the one in her folder and
    /// a saved receipt the log does not hold. Exits 1 if either is found
    /// or the log does not hold up.
    Audit {
        /// The log's verifier key (signed-note form, `server log key`).
        #[arg(long, value_name = "VKEY")]
        log_key: Option<String>,
        /// Her student id.
        #[arg(value_name = "SID")]
        sid: String,
    },
    /// What Blackboard holds for her (protocol version 3): with her saved
    /// certificate (it never enrolls), on an exchange authenticated like a
    /// submission's, lists the course's assignments (her own due time when
    /// she has an extension) and every submission of hers Blackboard
    /// accepted, in the course's time zone; then checks the receipts saved
    /// in OUT_DIR/SID/receipts against the answer. Exits 1, saying which,
    /// if a receipt of hers is not listed (or listed otherwise), or if
    /// Blackboard lists a submission of hers with no receipt in that
    /// folder: handed in from another machine (copy its receipt there),
    /// its receipt lost, or handed in by someone else with her key (then
    /// ask the instructor to revoke it and enroll again).
    Status {
        /// Her student id.
        #[arg(value_name = "SID")]
        sid: String,
    },
    /// Check a saved receipt: Blackboard's signature, its certificate from
    /// the root, its fields (a version 3 receipt's file name, size and
    /// SHA-256, its assignment and lateness), and (with --report or
    /// --file) the hash of what was handed in. Prints what it says; exits
    /// 0 only if it holds.
    ///
    /// The root: --ca-cert is trusted as given. Without it, the ca.pem
    /// saved beside the receipt (FILE/../../ca.pem) is used only if its
    /// fingerprint is pinned: by --ca-fingerprint, or by your own pin in
    /// OUT_DIR/root-fingerprint. A root found beside a receipt alone
    /// proves nothing: anyone can put a look-alike there.
    VerifyReceipt {
        /// The receipt (.p7m, CMS SignedData in DER).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The report text that was sent; its SHA-256 must match.
        #[arg(long, value_name = "FILE", conflicts_with = "handed_in")]
        report: Option<PathBuf>,
        /// The file handed in (a version 3 receipt): its size and SHA-256
        /// must match the receipt's (read streaming; its name may differ).
        #[arg(long = "file", id = "handed_in", value_name = "PATH")]
        handed_in: Option<PathBuf>,
    },
}

/// The lab's run (`client [OPTIONS] SID...`): enroll and submit the lab
/// report by protocol version 2.
#[derive(Debug, Args)]
struct RunArgs {
    /// Student ids (1-32 characters of A-Z a-z 0-9 _ -).
    #[arg(required = true, value_name = "SID")]
    sids: Vec<String>,
    /// Cipher for the report (rc4 only for the lab's sake); aes-256-ctr
    /// when not given. The lab's run only: a file is always sent under
    /// AES-256-CTR.
    #[arg(long, value_enum)]
    cipher: Option<Cipher>,
    /// Send the report even when a saved receipt shows Blackboard already
    /// accepted the very same bytes (it is then recorded once more). The
    /// lab's run only.
    #[arg(long)]
    resubmit: bool,
}

/// Options every command takes, before or after its name.
#[derive(Debug, Args)]
struct CommonArgs {
    /// Address of the CA.
    #[arg(
        long,
        global = true,
        value_name = "ADDR",
        default_value = "127.0.0.1:8011"
    )]
    ca: String,
    /// Address of Blackboard.
    #[arg(
        long,
        global = true,
        value_name = "ADDR",
        default_value = "127.0.0.1:8002"
    )]
    blackboard: String,
    /// Where students' keys, certificates and receipts are kept, and your
    /// pin of the root (OUT_DIR/root-fingerprint).
    #[arg(long, global = true, value_name = "DIR", default_value = "students")]
    out_dir: PathBuf,
    /// Key type for new student keys.
    #[arg(long, global = true, value_enum, default_value_t = KeyType::Rsa2048)]
    key_type: KeyType,
    /// Pin the CA root: refuse a CA whose root differs from this PEM file.
    /// Without it (or --ca-fingerprint), the root the CA sends is pinned on
    /// first use in OUT_DIR/root-fingerprint.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        conflicts_with = "ca_fingerprint"
    )]
    ca_cert: Option<PathBuf>,
    /// Pin the CA root by its SHA-256 fingerprint (64 hex digits, `:`
    /// optional), as the instructor published it.
    #[arg(long, global = true, value_name = "HEX")]
    ca_fingerprint: Option<String>,
    /// The name Blackboard's certificate must carry (subjectAltName).
    #[arg(long, global = true, value_name = "NAME", default_value = DEFAULT_BLACKBOARD_NAME)]
    blackboard_name: String,
    /// Make a new key and enroll again even if a valid certificate is saved:
    /// with a saved certificate still good, by proving possession of its
    /// key (no enrollment code needed).
    #[arg(long, global = true)]
    renew: bool,
    /// Refused: a code on the command line can be read by every user of
    /// the machine (/proc/PID/cmdline). Use --code-file or the environment.
    #[arg(long, global = true, value_name = "CODE", hide = true)]
    enroll_code: Option<String>,
    /// A file holding her enrollment code (from the instructor), for an
    /// enrollment with a course roster; `-` reads it from standard input,
    /// asking for it when that is a terminal. For one SID (--codes-file for
    /// several). Without it, the code is read from the environment
    /// variable CERTBOARD_ENROLL_CODE when set. A code given means a new
    /// enrollment with it, even over a saved certificate (a revoked
    /// student's new code).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        conflicts_with = "codes_file"
    )]
    code_file: Option<PathBuf>,
    /// A file of `sid,code` lines (as `server roster codes` writes), for
    /// the first enrollment of several SIDs.
    #[arg(long, global = true, value_name = "FILE")]
    codes_file: Option<PathBuf>,
    /// Shared secret for the servers' admission challenge (when they use one).
    #[arg(long, global = true, value_name = "FILE")]
    admission_secret_file: Option<PathBuf>,
    /// Seconds to wait for any network step.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    /// A witness she trusts (its verifier key, as `server witness key`
    /// prints it; repeat for several). `client audit` then refuses a
    /// checkpoint without a valid cosignature by each, naming the one
    /// missing; on a receipt's or certificate's checkpoint a bad
    /// cosignature is refused and a missing one is said.
    #[arg(long = "witness-key", global = true, value_name = "VKEY")]
    witness_key: Vec<String>,
    /// The log's base URL on the CA's HTTP listener, e.g.
    /// http://127.0.0.1:8080/log: `client audit` reads the log there; with
    /// --witness-key, after a receipt or certificate her client also
    /// fetches the log's checkpoint there until the witnesses have
    /// cosigned it (up to --timeout) and keeps it once it is proved to
    /// extend her receipt's.
    #[arg(long, global = true, value_name = "URL")]
    log_url: Option<String>,
}

/// Why a certificate file named on the command line is unusable.
#[derive(Debug)]
enum CertFileError {
    /// It could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// It is not a PEM certificate.
    NotPem(PathBuf),
}

impl fmt::Display for CertFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertFileError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            CertFileError::NotPem(path) => write!(f, "{}: not a PEM certificate", path.display()),
        }
    }
}

impl std::error::Error for CertFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CertFileError::Read { source, .. } => Some(source),
            CertFileError::NotPem(_) => None,
        }
    }
}

/// Why the client will not start: a flag or a file it names is wrong.
/// Exit status 2, said on standard error.
#[derive(Debug)]
enum UsageError {
    /// `--ca-cert` is unusable.
    CaCert(CertFileError),
    /// A file named by a flag could not be read.
    ReadFile {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `--ca-fingerprint` is not a SHA-256 fingerprint.
    BadFingerprint(String),
    /// `--blackboard-name` is not a name Blackboard's certificate can carry.
    BlackboardName(certboard::ca::CaError),
    /// The admission secret file is unusable.
    AdmissionSecret(config::SecretError),
    /// A `--witness-key` is not a witness's verifier key.
    WitnessKey(certboard::tlog::cosignature::CosignatureError),
    /// A SID is not valid.
    Sid {
        /// The SID as given.
        sid: String,
        /// Why.
        source: certboard::sid::SidError,
    },
    /// A SID that is an option written after `--`.
    OptionAsSid(String),
    /// A SID that is a command's name written after a SID.
    CommandAsSid(String),
    /// `--enroll-code`: a code on the command line.
    CodeOnCommandLine,
    /// A single code with several SIDs.
    CodeForSeveral(&'static str),
    /// An enrollment code is not one.
    Code {
        /// Where it came from.
        from: &'static str,
        /// Why it is not a code.
        source: certboard::course::code::CodeError,
    },
    /// Reading the code from standard input or the terminal failed.
    ReadCode(std::io::Error),
    /// The codes file does not parse.
    CodesFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: client::CodesFileError,
    },
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::CaCert(e) => write!(f, "--ca-cert {e}"),
            UsageError::ReadFile { flag, path, source } => {
                write!(f, "{flag} {}: {source}", path.display())
            }
            UsageError::BadFingerprint(hex) => write!(
                f,
                "--ca-fingerprint {hex:?}: not a SHA-256 fingerprint (64 hex digits)"
            ),
            UsageError::BlackboardName(e) => write!(f, "--blackboard-name: {e}"),
            UsageError::AdmissionSecret(e) => write!(f, "--admission-secret-file: {e}"),
            UsageError::WitnessKey(e) => write!(f, "--witness-key: {e}"),
            UsageError::Sid { sid, source } => write!(f, "SID {sid:?}: {source}"),
            UsageError::CommandAsSid(cmd) => write!(
                f,
                "{cmd:?} is a command, not a SID: give the command first (`client {cmd} SID`)"
            ),
            UsageError::OptionAsSid(sid) => write!(
                f,
                "{sid:?} is an option, not a SID: after `--` every word is taken as a SID, so \
                 give options before it"
            ),
            UsageError::CodeOnCommandLine => write!(
                f,
                "--enroll-code is refused: a code on the command line can be read by every user \
                 of this machine (/proc/PID/cmdline) and used before you. Give it with \
                 --code-file FILE (a file only you can read), --code-file - (standard input, or \
                 a prompt on a terminal), or the environment variable {CODE_ENV}; if others \
                 share this machine, ask your instructor for a new code"
            ),
            UsageError::CodeForSeveral(from) => write!(
                f,
                "{from} is one code for one SID; give --codes-file FILE (sid,code lines) for \
                 several"
            ),
            UsageError::Code { from, source } => write!(f, "{from}: {source}"),
            UsageError::ReadCode(e) => write!(f, "reading her enrollment code: {e}"),
            UsageError::CodesFile { path, source } => {
                write!(f, "--codes-file {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for UsageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UsageError::CaCert(e) => Some(e),
            UsageError::ReadFile { source, .. } => Some(source),
            UsageError::BlackboardName(e) => Some(e),
            UsageError::AdmissionSecret(e) => Some(e),
            UsageError::WitnessKey(e) => Some(e),
            UsageError::Sid { source, .. } => Some(source),
            UsageError::Code { source, .. } => Some(source),
            UsageError::ReadCode(e) => Some(e),
            UsageError::CodesFile { source, .. } => Some(source),
            UsageError::BadFingerprint(_)
            | UsageError::OptionAsSid(_)
            | UsageError::CommandAsSid(_)
            | UsageError::CodeOnCommandLine
            | UsageError::CodeForSeveral(_) => None,
        }
    }
}

fn read_cert(path: &Path) -> Result<X509, CertFileError> {
    let pem = std::fs::read(path).map_err(|source| CertFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    X509::from_pem(&pem).map_err(|_| CertFileError::NotPem(path.to_path_buf()))
}

/// Why a receipt's root is not trusted.
#[derive(Debug)]
enum RootTrustError {
    /// `--ca-cert` is unusable.
    CaCert(CertFileError),
    /// The ca.pem beside the receipt is unusable.
    Beside(CertFileError),
    /// `--ca-fingerprint` is not a fingerprint.
    Fingerprint(String),
    /// Her own pin file is refused or unreadable.
    Pin(client::ClientError),
    /// OpenSSL failed on the root.
    Crypto(openssl::error::ErrorStack),
    /// The root beside the receipt is not the pinned one.
    LookAlike {
        /// The ca.pem beside the receipt.
        path: PathBuf,
        /// Its fingerprint.
        found: String,
        /// The pinned one.
        pinned: String,
        /// Which pin.
        how: String,
    },
    /// Nothing pins the root beside the receipt.
    Unpinned {
        /// The ca.pem beside the receipt.
        path: PathBuf,
        /// Its fingerprint.
        found: String,
    },
}

impl fmt::Display for RootTrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootTrustError::CaCert(e) => write!(f, "--ca-cert {e}"),
            RootTrustError::Beside(e) => write!(f, "root: {e} (give it with --ca-cert)"),
            RootTrustError::Fingerprint(hex) => write!(
                f,
                "--ca-fingerprint {hex:?}: not a SHA-256 fingerprint (64 hex digits)"
            ),
            RootTrustError::Pin(e) => write!(f, "{e}"),
            RootTrustError::Crypto(e) => write!(f, "root: {e}"),
            RootTrustError::LookAlike {
                path,
                found,
                pinned,
                how,
            } => write!(
                f,
                "{} has SHA-256 fingerprint {found}, not the pinned {pinned} ({how}): a \
                 look-alike root, refused",
                path.display()
            ),
            RootTrustError::Unpinned { path, found } => write!(
                f,
                "{} (SHA-256 fingerprint {found}) was found beside the receipt and nobody \
                 pinned it: anyone can put a look-alike root there. Compare that fingerprint \
                 with the one your instructor published and give it with --ca-fingerprint HEX, \
                 or give the root with --ca-cert FILE",
                path.display()
            ),
        }
    }
}

impl std::error::Error for RootTrustError {}

/// The root a receipt is checked under, and how it came to be trusted.
fn receipt_root(
    file: &Path,
    ca_cert: Option<&Path>,
    ca_fingerprint: Option<&str>,
    out_dir: &Path,
) -> Result<(X509, String), RootTrustError> {
    if let Some(path) = ca_cert {
        let root = read_cert(path).map_err(RootTrustError::CaCert)?;
        return Ok((root, "pinned by --ca-cert".into()));
    }
    let student = file.parent().and_then(|p| p.parent());
    let path = student.unwrap_or(Path::new(".")).join("ca.pem");
    let root = read_cert(&path).map_err(RootTrustError::Beside)?;
    let der = root.to_der().map_err(RootTrustError::Crypto)?;
    let presented = openssl::sha::sha256(&der);
    let found = certboard::crypto::fingerprint(&der);
    let (pin, how) = match ca_fingerprint {
        Some(hex) => (
            Some(
                certboard::crypto::parse_fingerprint(hex)
                    .ok_or_else(|| RootTrustError::Fingerprint(hex.to_string()))?,
            ),
            "pinned by --ca-fingerprint".to_string(),
        ),
        None => {
            let pin_file = out_dir.join(client::ROOT_FINGERPRINT_FILE);
            let pin = client::read_pin(&pin_file).map_err(RootTrustError::Pin)?;
            (pin, format!("pinned by your {}", pin_file.display()))
        }
    };
    match pin {
        Some(want) if certboard::crypto::ct_eq(&want, &presented) => Ok((root, how)),
        Some(want) => Err(RootTrustError::LookAlike {
            path,
            found,
            pinned: certboard::crypto::fingerprint_of_digest(&want),
            how,
        }),
        None => Err(RootTrustError::Unpinned { path, found }),
    }
}

fn verify_receipt(
    file: PathBuf,
    (report, handed_in): (Option<PathBuf>, Option<PathBuf>),
    pins: (Option<PathBuf>, Option<String>, PathBuf),
    blackboard_name: String,
) -> ExitCode {
    let (ca_cert, ca_fingerprint, out_dir) = pins;
    let (root, how) = match receipt_root(
        &file,
        ca_cert.as_deref(),
        ca_fingerprint.as_deref(),
        &out_dir,
    ) {
        Ok(r) => r,
        Err(e) => {
            say(&format!("{}: NOT CHECKED: {}", file.display(), escaped(e)));
            return ExitCode::from(2);
        }
    };
    let root_fp = match root.to_der() {
        Ok(der) => certboard::crypto::fingerprint(&der),
        Err(e) => {
            complain(&format!("root: {e}"));
            return ExitCode::from(2);
        }
    };
    let der = match std::fs::read(&file) {
        Ok(d) => d,
        Err(e) => {
            complain(&format!("{}: {e}", file.display()));
            return ExitCode::from(2);
        }
    };
    let text = match report.as_deref().map(std::fs::read) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            complain(&format!("--report: {e}"));
            return ExitCode::from(2);
        }
    };
    let trust = BlackboardTrust {
        root,
        name: blackboard_name,
    };
    match certboard::receipt::verify_receipt(&der, &trust.root, Some(&trust.name)) {
        Err(e) => {
            say(&format!(
                "{}: INVALID: {e} (root SHA-256 {root_fp}, {how})",
                file.display()
            ));
            ExitCode::FAILURE
        }
        Ok(v) => {
            let c = v.content;
            let fail = |why: String| {
                say(&format!("{}: INVALID: {}", file.display(), escaped(&why)));
                ExitCode::FAILURE
            };
            if let Err(why) = receipt_fields(&c) {
                return fail(why.to_string());
            }
            if let Some(text) = text {
                let got = certboard::crypto::sha256_hex(&text);
                if got != c.report_sha256 {
                    return fail(format!(
                        "the report's SHA-256 is {got}, the receipt says {}",
                        c.report_sha256
                    ));
                }
            }
            let mut matched = if report.is_some() {
                " (matches --report)".to_string()
            } else {
                String::new()
            };
            if let Some(path) = &handed_in {
                let sent = match client::prepare_file(path) {
                    Ok(f) => f,
                    Err(e) => {
                        complain(&format!("--file: {e}"));
                        return ExitCode::from(2);
                    }
                };
                let Some(fr) = &c.file else {
                    return fail(format!(
                        "--file given, but this is a version {} receipt of a report, not of a \
                         file (use --report)",
                        c.version
                    ));
                };
                let hex: String = sent.sha256.iter().map(|b| format!("{b:02x}")).collect();
                if hex != fr.file_sha256 || sent.size != fr.size {
                    return fail(format!(
                        "{} is {} bytes with SHA-256 {hex}; the receipt says {} bytes with \
                         SHA-256 {}",
                        path.display(),
                        sent.size,
                        fr.size,
                        fr.file_sha256
                    ));
                }
                matched = if sent.name == fr.file_name {
                    " (matches --file)".to_string()
                } else {
                    format!(
                        " (matches --file by size and SHA-256; it was handed in as {:?}, it is \
                         {:?} here)",
                        escaped(&fr.file_name).to_string(),
                        escaped(&sent.name).to_string()
                    )
                };
            }
            let what = match &c.file {
                Some(fr) => format!(
                    "the file {:?} ({} bytes, SHA-256 {})",
                    escaped(&fr.file_name).to_string(),
                    fr.size,
                    fr.file_sha256
                ),
                None => format!("a report with SHA-256 {}", c.report_sha256),
            };
            let assignment = c.assignment.as_deref().unwrap_or("lab");
            let timing = match (c.late, c.late_seconds) {
                (Some(true), Some(s)) => {
                    format!(", LATE by {}", certboard::assignment::show_duration(s))
                }
                (Some(true), None) => ", late".to_string(),
                (Some(false), _) => ", on time".to_string(),
                (None, _) => String::new(),
            };
            say(&format!(
                "{}: valid receipt {} (version {}) signed by Blackboard {:?}: SID {} (certificate \
                 serial {}) handed in {what} for {} at {}{timing}{matched}; root SHA-256 \
                 {root_fp} ({how})",
                file.display(),
                escaped(&c.receipt),
                c.version,
                trust.name,
                escaped(&c.sid),
                escaped(&c.serial),
                escaped(assignment),
                escaped(&c.received_at),
            ));
            ExitCode::SUCCESS
        }
    }
}

/// How a receipt's fields disagree with each other.
#[derive(Debug)]
struct FieldsDisagree(String);

impl std::fmt::Display for FieldsDisagree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A receipt's fields against each other: a version 3 receipt names its
/// file, assignment and lateness, its file hash is its report hash, and
/// `late_seconds` comes exactly with `late`.
fn receipt_fields(c: &certboard::receipt::ReceiptContent) -> Result<(), FieldsDisagree> {
    if c.version >= certboard::receipt::RECEIPT_VERSION_3 {
        let Some(fr) = &c.file else {
            return Err(FieldsDisagree(
                "a version 3 receipt without file_name, size and file_sha256".into(),
            ));
        };
        if fr.file_sha256 != c.report_sha256 {
            return Err(FieldsDisagree(format!(
                "file_sha256 {} and report_sha256 {} differ",
                fr.file_sha256, c.report_sha256
            )));
        }
        if c.assignment.is_none() || c.late.is_none() {
            return Err(FieldsDisagree(
                "a version 3 receipt without assignment or late".into(),
            ));
        }
        if let Err(e) = certboard::sid::validate(&c.sid) {
            return Err(FieldsDisagree(format!("sid {:?}: {e}", c.sid)));
        }
    } else if c.file.is_some() {
        return Err(FieldsDisagree(format!(
            "a version {} receipt naming a file (only version 3 receipts do)",
            c.version
        )));
    }
    match (c.late, c.late_seconds) {
        (Some(true), Some(s)) if s >= 0 => Ok(()),
        (Some(false) | None, None) => Ok(()),
        (late, seconds) => Err(FieldsDisagree(format!(
            "late {late:?} and late_seconds {seconds:?} do not agree"
        ))),
    }
}

/// The options of a run, every flag and file checked before any work is
/// done for the first SID.
fn options(
    cli: &CommonArgs,
    sids: &[String],
    cipher: Cipher,
    resubmit: bool,
) -> Result<ClientOptions, UsageError> {
    let root_pin = match (&cli.ca_cert, &cli.ca_fingerprint) {
        (Some(path), _) => RootPin::Cert(read_cert(path).map_err(UsageError::CaCert)?),
        (None, Some(hex)) => RootPin::Fingerprint(
            certboard::crypto::parse_fingerprint(hex)
                .ok_or_else(|| UsageError::BadFingerprint(hex.clone()))?,
        ),
        (None, None) => RootPin::FirstUse(cli.out_dir.join(client::ROOT_FINGERPRINT_FILE)),
    };
    certboard::ca::check_blackboard_name(&cli.blackboard_name)
        .map_err(UsageError::BlackboardName)?;
    let admission_secret = cli
        .admission_secret_file
        .as_deref()
        .map(config::read_admission_secret)
        .transpose()
        .map_err(UsageError::AdmissionSecret)?;
    for sid in sids {
        // `client -- 1155000001 --out-dir x`: after `--` every word is a
        // SID; no student's SID starts with two dashes.
        if sid.starts_with("--") {
            return Err(UsageError::OptionAsSid(sid.clone()));
        }
        // `client 1155000001 status`: a command after a SID is read as a
        // SID by the lab's run; no student's SID is a command's name.
        if <Cli as clap::CommandFactory>::command()
            .get_subcommands()
            .any(|c| c.get_name() == sid.as_str())
        {
            return Err(UsageError::CommandAsSid(sid.clone()));
        }
        certboard::sid::validate(sid).map_err(|source| UsageError::Sid {
            sid: sid.clone(),
            source,
        })?;
    }
    if cli.enroll_code.is_some() {
        return Err(UsageError::CodeOnCommandLine);
    }
    let mut codes = HashMap::new();
    if let Some((from, text)) = one_code(cli, sids)? {
        let [sid] = sids else {
            return Err(UsageError::CodeForSeveral(from));
        };
        let code =
            EnrollCode::parse(text.trim()).map_err(|source| UsageError::Code { from, source })?;
        codes.insert(sid.clone(), code);
    }
    if let Some(path) = &cli.codes_file {
        let text = std::fs::read_to_string(path).map_err(|source| UsageError::ReadFile {
            flag: "--codes-file",
            path: path.clone(),
            source,
        })?;
        codes = client::read_codes(&text).map_err(|source| UsageError::CodesFile {
            path: path.clone(),
            source,
        })?;
    }
    Ok(ClientOptions {
        ca: cli.ca.clone(),
        blackboard: cli.blackboard.clone(),
        out_dir: cli.out_dir.clone(),
        key_type: cli.key_type,
        cipher: cipher.into(),
        root_pin,
        blackboard_name: cli.blackboard_name.clone(),
        renew: cli.renew,
        codes,
        admission_secret,
        timeout: Duration::from_secs(cli.timeout.max(1)),
        resubmit,
        witnesses: witness_keys(cli).map_err(UsageError::WitnessKey)?,
        log_url: cli.log_url.clone(),
    })
}

/// Her one enrollment code and where it came from: --code-file (`-` for
/// standard input, a prompt without echo on a terminal), else the
/// environment when --codes-file is not given. Never the command line.
fn one_code(
    cli: &CommonArgs,
    sids: &[String],
) -> Result<Option<(&'static str, String)>, UsageError> {
    match &cli.code_file {
        Some(path) if path.as_os_str() == "-" => {
            let text = if std::io::stdin().is_terminal() {
                let sid = sids.first().map(String::as_str).unwrap_or_default();
                rpassword::prompt_password(format!("enrollment code for {sid}: "))
            } else {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map(|_| line)
            };
            Ok(Some(("--code-file -", text.map_err(UsageError::ReadCode)?)))
        }
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| UsageError::ReadFile {
                flag: "--code-file",
                path: path.clone(),
                source,
            })?;
            Ok(Some(("--code-file", text)))
        }
        None if cli.codes_file.is_some() => Ok(None),
        None => Ok(std::env::var(CODE_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (CODE_ENV, v))),
    }
}

fn main() -> ExitCode {
    certboard::logging::init("warn");
    let cli = Cli::parse();
    let common = cli.common;
    if cli.command.is_some() && (cli.run.cipher.is_some() || cli.run.resubmit) {
        complain("--cipher and --resubmit belong to the lab's run (client [OPTIONS] SID...), not to a subcommand");
        return ExitCode::from(2);
    }
    match cli.command {
        Some(Command::VerifyReceipt {
            file,
            report,
            handed_in,
        }) => verify_receipt(
            file,
            (report, handed_in),
            (common.ca_cert, common.ca_fingerprint, common.out_dir),
            common.blackboard_name,
        ),
        Some(Command::Submit {
            assignment,
            file,
            sid,
        }) => submit(&common, &sid, &assignment, &file),
        Some(Command::Enroll { sids }) => enroll(&common, &sids),
        Some(Command::Status { sid }) => status(&common, &sid),
        Some(Command::Audit { log_key, sid }) => match common.log_url.as_deref() {
            Some(url) => audit(&common, url, log_key.as_deref(), &sid),
            None => {
                complain("audit needs the log's URL: --log-url http://HOST:PORT/log");
                ExitCode::from(2)
            }
        },
        None => lab(&common, &cli.run),
    }
}

/// For the runs that enroll: a SID with no line in `--codes-file` is said,
/// not refused (a SID already enrolled needs no code).
fn note_codes_missing(common: &CommonArgs, sids: &[String], opts: &ClientOptions) {
    let Some(path) = &common.codes_file else {
        return;
    };
    for sid in sids.iter().filter(|s| !opts.codes.contains_key(*s)) {
        complain(&format!(
            "note: SID {} has no line in {}; she goes on without a code (enough only if she \
             is already enrolled)",
            escaped(sid),
            path.display()
        ));
    }
}

/// Options checked, or the usage error said (exit status 2).
fn checked(
    common: &CommonArgs,
    sids: &[String],
    cipher: Cipher,
    resubmit: bool,
) -> Result<ClientOptions, ExitCode> {
    options(common, sids, cipher, resubmit).map_err(|e| {
        complain(&e.to_string());
        ExitCode::from(2)
    })
}

/// Her progress, line by line: a message's own line breaks are its
/// layout, and what each line holds is escaped.
fn progress_lines(msg: &str) {
    for line in msg.lines() {
        say(&escaped(line).to_string());
    }
}

/// The `--witness-key`s.
fn witness_keys(
    cli: &CommonArgs,
) -> Result<
    Vec<certboard::tlog::cosignature::CosignatureVerifier>,
    certboard::tlog::cosignature::CosignatureError,
> {
    cli.witness_key
        .iter()
        .map(|k| certboard::tlog::cosignature::CosignatureVerifier::from_key(k))
        .collect()
}

/// `client audit`: what the log holds for her, checked.
fn audit(common: &CommonArgs, url: &str, key: Option<&str>, sid: &str) -> ExitCode {
    if let Err(e) = certboard::sid::validate(sid) {
        complain(&format!("{sid:?}: {e}"));
        return ExitCode::from(2);
    }
    let verifier = match key.map(certboard::tlog::NoteVerifier::from_key).transpose() {
        Ok(v) => v,
        Err(e) => {
            complain(&format!("--log-key: {e}"));
            return ExitCode::from(2);
        }
    };
    let witnesses = match witness_keys(common) {
        Ok(w) => w,
        Err(e) => {
            complain(&format!("--witness-key: {e}"));
            return ExitCode::from(2);
        }
    };
    let dir = common.out_dir.join(sid);
    let timeout = Duration::from_secs(common.timeout.max(1));
    let found = match certboard::client::audit::audit(
        url,
        verifier.as_ref(),
        &witnesses,
        sid,
        &dir,
        &common.out_dir,
        timeout,
    ) {
        Ok(a) => a,
        Err(e) => {
            say(&format!("audit of {sid} FAILED: {}", escaped(&e)));
            return ExitCode::FAILURE;
        }
    };
    say(&format!(
        "log {}: {} entries, root checked against the entries{}",
        escaped(&found.checkpoint.origin),
        found.checkpoint.size,
        if found.signature_checked {
            ", checkpoint signed by the log's key"
        } else {
            " (no --log-key: the checkpoint's signature was not checked)"
        }
    ));
    for w in &found.witnessed_by {
        say(&format!("checkpoint cosigned by witness {}", escaped(w)));
    }
    let mut trouble = 0;
    say(&format!(
        "certificates logged for {sid}: {}",
        found.certs.len()
    ));
    for c in &found.certs {
        let mark = if c.hers_now {
            "her current certificate"
        } else {
            trouble += 1;
            "NOT the certificate in her folder: an earlier one of hers, or one she never asked for"
        };
        say(&format!(
            "  entry {}: serial {} issued {} ({}): {mark}",
            c.index,
            c.serial,
            certboard::time::rfc3339(c.issued_at as i64),
            c.authorisation
        ));
    }
    say(&format!(
        "submissions logged for {sid}: {}",
        found.submissions.len()
    ));
    for s in &found.submissions {
        let hex: String = s.sha256.iter().map(|b| format!("{b:02x}")).collect();
        say(&format!(
            "  entry {}: {} receipt {} at {} ({} bytes, SHA-256 {hex}{}){}",
            s.index,
            escaped(&s.assignment),
            s.receipt_id,
            certboard::time::rfc3339(s.received_at as i64),
            s.size,
            if s.late { ", late" } else { "" },
            if s.receipt_held {
                ""
            } else {
                " (no receipt of it in her folder)"
            }
        ));
    }
    for id in &found.missing_receipts {
        trouble += 1;
        say(&format!(
            "  MISSING FROM THE LOG: her receipt {id} (in {}/receipts)",
            dir.display()
        ));
    }
    if trouble == 0 {
        say(&format!(
            "audit of {sid}: everything in the log is accounted for"
        ));
        ExitCode::SUCCESS
    } else {
        say(&format!(
            "audit of {sid}: {trouble} thing(s) to look into (above)"
        ));
        ExitCode::FAILURE
    }
}

/// `client submit`: one file for one assignment.
fn submit(common: &CommonArgs, sid: &str, assignment: &str, path: &Path) -> ExitCode {
    let opts = match checked(common, &[sid.to_string()], Cipher::Aes256Ctr, false) {
        Ok(o) => o,
        Err(code) => return code,
    };
    say(&format!("== student {sid} =="));
    match client::submit_file(&opts, sid, assignment, path, &mut progress_lines) {
        Ok((receipt, file, saved)) => {
            let late = receipt.content.late.unwrap_or(false);
            let late_seconds = receipt.content.late_seconds.unwrap_or(0);
            let lateness = if late {
                format!(
                    "LATE by {}",
                    certboard::assignment::show_duration(late_seconds)
                )
            } else {
                "on time".to_string()
            };
            say(&format!(
                "student {sid}: handed in {:?} for {}: {} bytes, SHA-256 {}; receipt {} ({}), \
                 saved {}",
                escaped(&file.name).to_string(),
                escaped(assignment),
                file.size,
                file.sha256
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
                receipt.receipt_id,
                lateness,
                saved.display()
            ));
            ExitCode::SUCCESS
        }
        Err(e) => {
            say(&format!("student {sid}: FAILED: {}", escaped(&e)));
            ExitCode::FAILURE
        }
    }
}

/// `client status`: Blackboard's answer, shown in the course's zone, and
/// her receipts checked against it.
fn status(common: &CommonArgs, sid: &str) -> ExitCode {
    use certboard::assignment::{show_duration, show_time};
    use certboard::message::SubmissionKind;
    let opts = match checked(common, &[sid.to_string()], Cipher::Aes256Ctr, false) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let (body, check) = match client::status(&opts, sid, &mut progress_lines) {
        Ok(r) => r,
        Err(e) => {
            say(&format!("status of {sid} FAILED: {}", escaped(&e)));
            return ExitCode::FAILURE;
        }
    };
    let zone = Some(body.zone.as_str());
    let t = |t: i64| show_time(t, zone);
    say(&format!(
        "Blackboard's answer for {sid} at {} (times in the course's zone, {}):",
        t(body.now),
        escaped(&body.zone)
    ));
    say(&format!("assignments: {}", body.assignments.len()));
    for a in &body.assignments {
        let mut parts = Vec::new();
        if let Some(o) = a.opens {
            parts.push(format!("opens {}", t(o)));
        }
        parts.push(match a.due {
            Some(d) => format!("due {}", t(d)),
            None => "no due time".to_string(),
        });
        if let Some(l) = a.late_until {
            parts.push(format!("late until {}", t(l)));
        }
        if let Some(h) = a.her_due {
            // Her own late period moves with her due time, as the server
            // decides it (assignment::her_deadlines), not the class's.
            let shape = certboard::store::Assignment {
                id: a.id.clone(),
                title: a.title.clone(),
                opens: a.opens,
                due: a.due,
                late_until: a.late_until,
                closed_at: a.closed_at,
            };
            let (her_due, her_close) = certboard::assignment::her_deadlines(&shape, Some(h));
            match (her_due, her_close) {
                // The class's due time has since moved past it.
                (Some(d), _) if d > h => {
                    parts.push(format!("her extension (to {}) is no longer later", t(h)))
                }
                (_, Some(c)) if c > h => {
                    parts.push(format!("HER EXTENSION: due {}, late until {}", t(h), t(c)))
                }
                (_, Some(c)) if c < h => parts.push(format!(
                    "HER EXTENSION: due {}, but closed at {} (a close ends extensions)",
                    t(h),
                    t(c)
                )),
                _ => parts.push(format!(
                    "HER EXTENSION: due {}, nothing taken late after it",
                    t(h)
                )),
            }
        }
        if let Some(c) = a.closed_at {
            parts.push(format!("closed {}", t(c)));
        }
        say(&format!(
            "  {} {:?}: {}",
            escaped(&a.id),
            escaped(&a.title).to_string(),
            parts.join(", ")
        ));
    }
    say(&format!("submissions of hers: {}", body.submissions.len()));
    for s in &body.submissions {
        let what = match s.kind {
            SubmissionKind::Report => "report".to_string(),
            SubmissionKind::File => format!("file {:?}", escaped(&s.file_name).to_string()),
        };
        let hex: String = s.sha256.iter().map(|b| format!("{b:02x}")).collect();
        let timing = match s.late_seconds {
            Some(l) => format!("LATE by {}", show_duration(l)),
            None => "on time".to_string(),
        };
        let held = if check.unreceipted.contains(&s.receipt_id) {
            " (no receipt of it in her folder)"
        } else {
            ""
        };
        say(&format!(
            "  receipt {} for {}: {what}, {} bytes, SHA-256 {hex}, received {}, {timing}{held}",
            s.receipt_id,
            escaped(&s.assignment),
            s.size,
            t(s.received_at)
        ));
    }
    for h in &check.missing {
        say(&format!(
            "  MISSING FROM BLACKBOARD: her receipt {} ({}): {} with SHA-256 {} received {}; \
             Blackboard no longer lists it. Keep the receipt and show it to the instructor",
            escaped(&h.content.receipt),
            h.path.display(),
            escaped(h.content.assignment.as_deref().unwrap_or("lab")),
            escaped(&h.content.report_sha256),
            escaped(&h.content.received_at)
        ));
    }
    for (h, why) in &check.differ {
        say(&format!(
            "  LISTED OTHERWISE: her receipt {} ({}): {}",
            escaped(&h.content.receipt),
            h.path.display(),
            escaped(why)
        ));
    }
    for (path, why) in &check.unreadable {
        say(&format!(
            "  NOT CHECKED: {}: {}",
            path.display(),
            escaped(why)
        ));
    }
    let receipts_dir = opts.out_dir.join(sid).join("receipts");
    let unreceipted: Vec<_> = body
        .submissions
        .iter()
        .filter(|s| check.unreceipted.contains(&s.receipt_id))
        .collect();
    for s in &unreceipted {
        let what = match s.kind {
            SubmissionKind::Report => "a report".to_string(),
            SubmissionKind::File => format!("the file {:?}", escaped(&s.file_name).to_string()),
        };
        say(&format!(
            "  NO RECEIPT IN HER FOLDER: Blackboard lists receipt {} for {}: {what}, received {}",
            s.receipt_id,
            escaped(&s.assignment),
            t(s.received_at)
        ));
    }
    if !unreceipted.is_empty() {
        say(&format!(
            "{} submission(s) that Blackboard lists as hers have no receipt in {}. If she \
             handed them in from another machine, copy their receipts here; if she lost the \
             receipts, Blackboard still holds the submissions; if she did NOT hand them in, \
             someone else did with her key: ask the instructor to revoke her certificate, \
             and enroll again",
            unreceipted.len(),
            receipts_dir.display()
        ));
    }
    if check.trouble() {
        say(&format!(
            "status of {sid}: {} receipt(s) missing, {} listed otherwise, {} not checked, \
             {} submission(s) without a receipt here (above)",
            check.missing.len(),
            check.differ.len(),
            check.unreadable.len(),
            check.unreceipted.len()
        ));
        ExitCode::FAILURE
    } else {
        say(&format!(
            "status of {sid}: all {} receipt(s) she holds are listed by Blackboard",
            check.matched.len()
        ));
        ExitCode::SUCCESS
    }
}

/// `client enroll`: keys and certificates only.
fn enroll(common: &CommonArgs, sids: &[String]) -> ExitCode {
    let opts = match checked(common, sids, Cipher::Aes256Ctr, false) {
        Ok(o) => o,
        Err(code) => return code,
    };
    note_codes_missing(common, sids, &opts);
    let mut failed = Vec::new();
    for sid in sids {
        say(&format!("== student {sid} =="));
        match client::enroll(&opts, sid, &mut progress_lines) {
            Ok(client::Enrolled::Reused(dir)) => say(&format!(
                "student {sid}: enrolled (her valid certificate in {} kept; --renew makes a new \
                 one)",
                dir.display()
            )),
            Ok(client::Enrolled::New(dir)) => say(&format!(
                "student {sid}: enrolled (new key and certificate saved in {})",
                dir.display()
            )),
            Err(e) => {
                say(&format!("student {sid}: FAILED: {}", escaped(&e)));
                failed.push(sid.as_str());
            }
        }
    }
    if failed.is_empty() {
        say(&format!("all {} student(s) enrolled", sids.len()));
        ExitCode::SUCCESS
    } else {
        say(&format!(
            "{} of {} student(s) failed: {}",
            failed.len(),
            sids.len(),
            failed.join(", ")
        ));
        ExitCode::FAILURE
    }
}

/// The lab's run: enroll and submit the lab report (version 2) per SID.
fn lab(common: &CommonArgs, cli: &RunArgs) -> ExitCode {
    let cipher = cli.cipher.unwrap_or(Cipher::Aes256Ctr);
    let opts = match checked(common, &cli.sids, cipher, cli.resubmit) {
        Ok(o) => o,
        Err(code) => return code,
    };
    note_codes_missing(common, &cli.sids, &opts);
    let mut failed = Vec::new();
    for sid in &cli.sids {
        say(&format!("== student {sid} =="));
        match client::run_student(&opts, sid, &mut progress_lines) {
            Ok(Outcome::AlreadyAccepted { .. }) => say(&format!(
                "student {sid}: done (already accepted, not sent again)"
            )),
            Ok(_) => say(&format!("student {sid}: done")),
            Err(e) => {
                // Said once, in her place in the run.
                say(&format!("student {sid}: FAILED: {}", escaped(&e)));
                failed.push(sid.as_str());
            }
        }
    }
    if failed.is_empty() {
        say(&format!("all {} student(s) submitted", cli.sids.len()));
        ExitCode::SUCCESS
    } else {
        say(&format!(
            "{} of {} student(s) failed: {}",
            failed.len(),
            cli.sids.len(),
            failed.join(", ")
        ));
        ExitCode::FAILURE
    }
}

/// A line on stdout. A reader that has gone (`client ... | head -1`) ends
/// the run quietly, as other command-line tools do, rather than a panic.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(141);
    }
}

/// A line on standard error, for what stops the client before it starts.
/// A closed or broken stderr is no reason to panic (`eprintln!` would):
/// the exit status still says it failed.
fn complain(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "client: {line}").and_then(|()| err.flush());
}
