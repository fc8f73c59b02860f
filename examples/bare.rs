//! The four operations a version 2 submission must do, alone, a fixed
//! number of times each, for an instruction count under callgrind (which,
//! unlike CPU time, does not move with the machine's load):
//!
//! ```sh
//! valgrind --tool=callgrind --callgrind-out-file=bare.out \
//!     target/release/examples/bare --count 200
//! callgrind_annotate --inclusive=yes bare.out | grep 'bare::op_'
//! ```
//!
//! Each operation is its own `op_*` function, so its inclusive count
//! divided by `--count` is the instructions per operation, measured as
//! examples/speed.rs times them (one key, one context, a 32-byte digest):
//! the chain verify (an RSA-2048 or a P-256 verification, by the CA's key
//! type), OAEP to her RSA-2048 key, and a P-256 signature (twice per
//! submission: the offer's and the receipt's).

use clap::Parser;
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Rsa;

use certboard::crypto;

#[derive(Parser, Debug)]
struct Cli {
    /// Times each operation runs.
    #[arg(long, default_value_t = 100)]
    count: u32,
}

#[inline(never)]
fn op_rsa2048_verify(
    ctx: &mut PkeyCtx<Private>,
    digest: &[u8],
    sig: &[u8],
) -> Result<(), ErrorStack> {
    // The length checks differ so that the compiler does not fold the two
    // verify functions into one (they would share one callgrind entry).
    if sig.len() == 256 && ctx.verify(digest, sig)? {
        Ok(())
    } else {
        Err(ErrorStack::get())
    }
}

#[inline(never)]
fn op_p256_verify(ctx: &mut PkeyCtx<Private>, digest: &[u8], sig: &[u8]) -> Result<(), ErrorStack> {
    if sig.len() <= 72 && ctx.verify(digest, sig)? {
        Ok(())
    } else {
        Err(ErrorStack::get())
    }
}

#[inline(never)]
fn op_p256_sign(
    ctx: &mut PkeyCtx<Private>,
    digest: &[u8],
    sig: &mut Vec<u8>,
) -> Result<(), ErrorStack> {
    sig.clear();
    ctx.sign_to_vec(digest, sig)?;
    Ok(())
}

#[inline(never)]
fn op_oaep(key: &PKey<Private>, secret: &[u8; 32]) -> Result<(), ErrorStack> {
    crypto::wrap_key(key, secret).map(drop)
}

fn signed(key: &PKey<Private>, digest: &[u8]) -> Result<Vec<u8>, ErrorStack> {
    let mut ctx = PkeyCtx::new(key)?;
    ctx.sign_init()?;
    let mut sig = Vec::new();
    ctx.sign_to_vec(digest, &mut sig)?;
    Ok(sig)
}

fn verifier(key: &PKey<Private>) -> Result<PkeyCtx<Private>, ErrorStack> {
    let mut ctx = PkeyCtx::new(key)?;
    ctx.verify_init()?;
    Ok(ctx)
}

fn run(cli: &Cli) -> Result<(), ErrorStack> {
    let digest = [0x5au8; 32];
    let secret = [0x11u8; 32];
    let rsa = PKey::from_rsa(Rsa::generate(2048)?)?;
    let p256 = certboard::testing::p256_key()?;
    let rsa_sig = signed(&rsa, &digest)?;
    let p256_sig = signed(&p256, &digest)?;
    let mut rsa_verify = verifier(&rsa)?;
    let mut p256_verify = verifier(&p256)?;
    let mut p256_sign = PkeyCtx::new(&p256)?;
    p256_sign.sign_init()?;
    let mut sig = Vec::new();
    for _ in 0..cli.count {
        op_rsa2048_verify(&mut rsa_verify, &digest, &rsa_sig)?;
        op_p256_verify(&mut p256_verify, &digest, &p256_sig)?;
        op_p256_sign(&mut p256_sign, &digest, &mut sig)?;
        op_oaep(&rsa, &secret)?;
    }
    println!("{} of each operation", cli.count);
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(&Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
