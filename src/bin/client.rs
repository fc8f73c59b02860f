//! The student client: `cargo run --bin client -- <SID>...`
//!
//! For each SID in turn: make her key pair and CSR, get it certified by the
//! CA, then submit her report to Blackboard under that certificate.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use openssl::x509::X509;

use certboard::client::{self, Cipher, ClientOptions, KeyType};
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
#[derive(Debug, Parser)]
#[command(name = "client", version)]
struct Cli {
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
    /// Without it, the root the CA sends is trusted on first use.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
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

fn main() -> ExitCode {
    certboard::logging::init("warn");
    let cli = Cli::parse();
    let ca_cert = match &cli.ca_cert {
        None => None,
        Some(path) => {
            match std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|pem| X509::from_pem(&pem).map_err(|_| "not a PEM certificate".into()))
            {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("client: --ca-cert {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
        }
    };
    let admission_secret = match cli
        .admission_secret_file
        .as_deref()
        .map(config::read_admission_secret)
    {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            eprintln!("client: --admission-secret-file: {e}");
            return ExitCode::from(2);
        }
    };
    // Every SID and code is checked before any work is done for the first.
    for sid in &cli.sids {
        if let Err(e) = certboard::sid::validate(sid) {
            eprintln!("client: SID {sid:?}: {e}");
            return ExitCode::from(2);
        }
    }
    let mut codes = HashMap::new();
    if let Some(text) = &cli.enroll_code {
        if cli.sids.len() != 1 {
            eprintln!("client: --enroll-code is for one SID; give --codes-file FILE (sid,code lines) for several");
            return ExitCode::from(2);
        }
        match EnrollCode::parse(text) {
            Ok(c) => {
                codes.insert(cli.sids[0].clone(), c);
            }
            Err(e) => {
                eprintln!("client: --enroll-code: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(path) = &cli.codes_file {
        let read = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| client::read_codes(&t).map_err(|e| e.to_string()));
        match read {
            Ok(c) => codes = c,
            Err(e) => {
                eprintln!("client: --codes-file {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    let opts = ClientOptions {
        ca: cli.ca,
        blackboard: cli.blackboard,
        out_dir: cli.out_dir,
        key_type: cli.key_type,
        cipher: cli.cipher.into(),
        ca_cert,
        renew: cli.renew,
        codes,
        admission_secret,
        timeout: Duration::from_secs(cli.timeout.max(1)),
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
