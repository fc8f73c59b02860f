//! The bare cost of the cryptography certboard does, measured through the
//! OpenSSL certboard itself links (the vendored 3.5 by default), the way
//! `openssl speed` measures it: one key loaded once, the primitive alone on
//! a 32-byte digest, no hashing, no parsing.
//!
//! bench/compare.sh divides the server's CPU time per operation by these,
//! so the ratio is certboard's own overhead, not the difference between two
//! OpenSSL builds (`openssl speed` on the command line is the system's).
//!
//! ```sh
//! cargo run --release --example speed -- --seconds 3
//! ```
//!
//! Last line: one JSON object, microseconds per operation.

use std::time::{Duration, Instant};

use clap::Parser;
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Rsa;

use certboard::crypto;

/// Times RSA-2048 and P-256 signatures and verifications, and RSA-OAEP-SHA256
/// encryption of 32 bytes, with the OpenSSL certboard is built with.
#[derive(Parser, Debug)]
struct Cli {
    /// Seconds per operation.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
}

type BoxError = Box<dyn std::error::Error>;

/// This thread's CPU time so far, from the scheduler's own account
/// (nanoseconds): like `openssl speed`, which counts CPU time, the figures
/// are then not inflated by other processes sharing the core.
fn cpu_now() -> Result<Duration, ErrorStack> {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
    // Without schedstat (not Linux), wall time is the best there is.
    Ok(ns.map_or_else(|| START.with(|t| t.elapsed()), Duration::from_nanos))
}

thread_local! {
    static START: Instant = Instant::now();
}

/// Runs `op` for about `secs` seconds of CPU; microseconds of CPU per call.
fn time(secs: f64, mut op: impl FnMut() -> Result<(), ErrorStack>) -> Result<f64, BoxError> {
    let budget = Duration::from_secs_f64(secs);
    let wall = Instant::now();
    let start = cpu_now()?;
    let mut n = 0u64;
    // Bounded in wall time too, should the machine be starved.
    while cpu_now()? - start < budget && wall.elapsed() < budget * 4 {
        for _ in 0..16 {
            op()?;
        }
        n += 16;
    }
    let used = cpu_now()? - start;
    if used.is_zero() {
        // A kernel without scheduler statistics reads 0: no figure at all
        // is better than a zero that every ratio would divide by.
        return Err("this thread's CPU time does not advance (/proc/thread-self/schedstat)".into());
    }
    Ok(used.as_secs_f64() * 1e6 / n as f64)
}

fn sign_verify(key: &PKey<Private>, secs: f64) -> Result<(f64, f64), BoxError> {
    // As `openssl speed` does: one context, the primitive in the loop.
    let digest = [0x5au8; 32];
    let mut sig = Vec::new();
    let mut ctx = PkeyCtx::new(key)?;
    ctx.sign_init()?;
    let sign = time(secs, || {
        sig.clear();
        ctx.sign_to_vec(&digest, &mut sig)?;
        Ok(())
    })?;
    let mut ctx = PkeyCtx::new(key)?;
    ctx.verify_init()?;
    let verify = time(secs, || {
        // A wrong answer would make every figure meaningless: stop.
        if !ctx.verify(&digest, &sig)? {
            return Err(ErrorStack::get());
        }
        Ok(())
    })?;
    Ok((sign, verify))
}

fn run(cli: &Cli) -> Result<(), BoxError> {
    if !(cli.seconds.is_finite() && cli.seconds > 0.0 && cli.seconds <= 60.0) {
        return Err(format!("--seconds must be in (0, 60], got {}", cli.seconds).into());
    }
    let rsa = PKey::from_rsa(Rsa::generate(2048)?)?;
    let p256 = certboard::testing::p256_key()?;
    let (rsa_sign, rsa_verify) = sign_verify(&rsa, cli.seconds)?;
    let (p256_sign, p256_verify) = sign_verify(&p256, cli.seconds)?;
    // OAEP through Blackboard's own code (`openssl speed` 3.0 has no OAEP).
    let secret = [0x11u8; 32];
    let oaep = time(cli.seconds, || crypto::wrap_key(&rsa, &secret).map(drop))?;
    println!("{}", openssl::version::version());
    println!("RSA-2048 sign {rsa_sign:.2} us, verify {rsa_verify:.2} us; P-256 sign {p256_sign:.2} us, verify {p256_verify:.2} us; RSA-2048 OAEP-SHA256 encrypt {oaep:.2} us");
    println!(
        "{{\"openssl\":\"{}\",\"rsa2048_sign_us\":{rsa_sign:.2},\"rsa2048_verify_us\":{rsa_verify:.2},\"p256_sign_us\":{p256_sign:.2},\"p256_verify_us\":{p256_verify:.2},\"oaep_us\":{oaep:.2}}}",
        openssl::version::version()
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("speed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
