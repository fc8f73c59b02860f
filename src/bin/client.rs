//! The student client: `cargo run --bin client -- <SID>...`
//!
//! For each SID in turn: make her key pair and CSR, get it certified by the
//! CA, then submit her report to Blackboard under that certificate.
//! `client verify-receipt FILE [--report FILE]` checks a saved receipt.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use openssl::x509::X509;

use certboard::ca::DEFAULT_BLACKBOARD_NAME;
use certboard::client::{self, BlackboardTrust, Cipher, ClientOptions, KeyType, RootPin};
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
#[command(
    name = "client",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a saved receipt: Blackboard's signature, its certificate from
    /// the root, and (with --report) the hash of the report text. Prints
    /// what it says; exits 0 only if it holds.
    VerifyReceipt {
        /// The receipt (.p7m, CMS SignedData in DER).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The report text that was sent; its SHA-256 must match.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// The CUHK root (default: ca.pem of the student the receipt is
        /// saved under, FILE/../../ca.pem).
        #[arg(long, value_name = "FILE")]
        ca_cert: Option<PathBuf>,
        /// The name Blackboard's certificate must carry.
        #[arg(long, value_name = "NAME", default_value = DEFAULT_BLACKBOARD_NAME)]
        blackboard_name: String,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Student ids (1-32 characters of A-Z a-z 0-9 _ -).
    #[arg(required = true, value_name = "SID")]
    sids: Vec<String>,
    /// Address of the CA.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8011")]
    ca: String,
    /// Address of Blackboard.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8002")]
    blackboard: String,
    /// Where students' keys and certificates are kept.
    #[arg(long, value_name = "DIR", default_value = "students")]
    out_dir: PathBuf,
    /// Key type for new student keys.
    #[arg(long, value_enum, default_value_t = KeyType::Rsa2048)]
    key_type: KeyType,
    /// Cipher for the report (rc4 only for the lab's sake).
    #[arg(long, value_enum, default_value_t = Cipher::Aes256Ctr)]
    cipher: Cipher,
    /// Pin the CA root: refuse a CA whose root differs from this PEM file.
    /// Without it (or --ca-fingerprint), the root the CA sends is pinned on
    /// first use in OUT_DIR/root-fingerprint.
    #[arg(long, value_name = "FILE", conflicts_with = "ca_fingerprint")]
    ca_cert: Option<PathBuf>,
    /// Pin the CA root by its SHA-256 fingerprint (64 hex digits, `:`
    /// optional), as the instructor published it.
    #[arg(long, value_name = "HEX")]
    ca_fingerprint: Option<String>,
    /// The name Blackboard's certificate must carry (subjectAltName).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_BLACKBOARD_NAME)]
    blackboard_name: String,
    /// Make a new key and enroll again even if a valid certificate is saved:
    /// with a saved certificate still good, by proving possession of its
    /// key (no enrollment code needed).
    #[arg(long)]
    renew: bool,
    /// Her enrollment code (from the instructor), for a first enrollment
    /// with a course roster; for one SID (--codes-file for several).
    #[arg(long, value_name = "CODE", conflicts_with = "codes_file")]
    enroll_code: Option<String>,
    /// A file of `sid,code` lines (as `server roster codes` writes), for
    /// the first enrollment of several SIDs.
    #[arg(long, value_name = "FILE")]
    codes_file: Option<PathBuf>,
    /// Shared secret for the servers' admission challenge (when they use one).
    #[arg(long, value_name = "FILE")]
    admission_secret_file: Option<PathBuf>,
    /// Seconds to wait for any network step.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
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
    /// A SID is not valid.
    Sid {
        /// The SID as given.
        sid: String,
        /// Why.
        source: certboard::sid::SidError,
    },
    /// `--enroll-code` with several SIDs.
    CodeForSeveral,
    /// An enrollment code is not one.
    Code(certboard::course::code::CodeError),
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
            UsageError::Sid { sid, source } => write!(f, "SID {sid:?}: {source}"),
            UsageError::CodeForSeveral => write!(
                f,
                "--enroll-code is for one SID; give --codes-file FILE (sid,code lines) for several"
            ),
            UsageError::Code(e) => write!(f, "--enroll-code: {e}"),
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
            UsageError::Sid { source, .. } => Some(source),
            UsageError::Code(e) => Some(e),
            UsageError::CodesFile { source, .. } => Some(source),
            UsageError::BadFingerprint(_) | UsageError::CodeForSeveral => None,
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

fn verify_receipt(
    file: PathBuf,
    report: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
    blackboard_name: String,
) -> ExitCode {
    let root_path = ca_cert.unwrap_or_else(|| {
        let student = file.parent().and_then(|p| p.parent());
        student.unwrap_or(Path::new(".")).join("ca.pem")
    });
    let root = match read_cert(&root_path) {
        Ok(r) => r,
        Err(e) => {
            complain(&format!("root: {e} (give it with --ca-cert)"));
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
            say(&format!("{}: INVALID: {e}", file.display()));
            ExitCode::FAILURE
        }
        Ok(v) => {
            let c = v.content;
            if let Some(text) = text {
                let got = certboard::crypto::sha256_hex(&text);
                if got != c.report_sha256 {
                    say(&format!(
                        "{}: INVALID: the report's SHA-256 is {got}, the receipt says {}",
                        file.display(),
                        c.report_sha256
                    ));
                    return ExitCode::FAILURE;
                }
            }
            say(&format!(
                "{}: valid receipt {} signed by Blackboard {:?}: SID {} (certificate serial {}) \
                 submitted a report with SHA-256 {} at {}{}",
                file.display(),
                c.receipt,
                trust.name,
                c.sid,
                c.serial,
                c.report_sha256,
                c.received_at,
                if report.is_some() {
                    " (matches --report)"
                } else {
                    ""
                }
            ));
            ExitCode::SUCCESS
        }
    }
}

/// The options of a run, every flag and file checked before any work is
/// done for the first SID.
fn options(cli: &RunArgs) -> Result<ClientOptions, UsageError> {
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
    for sid in &cli.sids {
        certboard::sid::validate(sid).map_err(|source| UsageError::Sid {
            sid: sid.clone(),
            source,
        })?;
    }
    let mut codes = HashMap::new();
    if let Some(text) = &cli.enroll_code {
        let [sid] = cli.sids.as_slice() else {
            return Err(UsageError::CodeForSeveral);
        };
        codes.insert(
            sid.clone(),
            EnrollCode::parse(text).map_err(UsageError::Code)?,
        );
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
        cipher: cli.cipher.into(),
        root_pin,
        blackboard_name: cli.blackboard_name.clone(),
        renew: cli.renew,
        codes,
        admission_secret,
        timeout: Duration::from_secs(cli.timeout.max(1)),
    })
}

fn main() -> ExitCode {
    certboard::logging::init("warn");
    let cli = Cli::parse();
    if let Some(Command::VerifyReceipt {
        file,
        report,
        ca_cert,
        blackboard_name,
    }) = cli.command
    {
        return verify_receipt(file, report, ca_cert, blackboard_name);
    }
    let cli = cli.run;
    let opts = match options(&cli) {
        Ok(o) => o,
        Err(e) => {
            complain(&e.to_string());
            return ExitCode::from(2);
        }
    };
    let mut failed = Vec::new();
    for sid in &cli.sids {
        say(&format!("== student {sid} =="));
        let mut progress = |msg: &str| say(&escaped(msg).to_string());
        match client::run_student(&opts, sid, &mut progress) {
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
