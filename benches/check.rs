//! Blackboard's certificate check without the network: how long
//! `Verifier::verify` of a student's certificate takes, and the RSA-OAEP
//! (SHA-256) wrap of a 32-byte session key to the key it returns, for each
//! CA key type, on one thread.
//!
//! ```text
//! cargo bench --bench check               # 2 s per CA key type
//! cargo bench --bench check -- 5          # 5 s per CA key type
//! cargo bench --bench check -- 5 p256     # only the P-256 CA
//! ```
//!
//! The certificates are issued up front (64 distinct ones: distinct SIDs and
//! serials, over 8 distinct student keys) and checked in turn, so every
//! call decodes and validates a certificate it has not just seen; nothing is
//! cached between calls (neither does Blackboard cache).
//!
//! Prints one line per CA key type for people, then a JSON line per type
//! (`{"bench":"check","ca":"p256","n":…,"us_per_verify":…,"us_per_wrap":…}`)
//! for scripts. Under valgrind, count only the measured loop:
//!
//! ```text
//! valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect='*check::measure*' target/release/deps/check-* 0.2 p256
//! ```
//!
//! and divide the instructions by the `n` it prints; `verify_one` and
//! `wrap_one` split them.

use std::time::{Duration, Instant};

use certboard::ca::{CaKeyType, CertificateAuthority};
use certboard::client::{make_csr, make_key, KeyType};
use certboard::crypto::{random, wrap_key, SESSION_KEY_LEN};
use certboard::verify::{Student, Verifier};
use openssl::pkey::{PKey, Private};

type BoxError = Box<dyn std::error::Error>;

/// Distinct certificates checked in turn.
const CERTS: usize = 64;
/// Distinct student keys among them (RSA key generation is slow, above all
/// under valgrind; no key is reused between calls by OpenSSL either way).
const KEYS: usize = 8;

/// One certificate check, as Blackboard's `check_certificate` makes it.
#[inline(never)]
fn verify_one(v: &Verifier, sid: &str, der: &[u8]) -> Result<Student, BoxError> {
    Ok(v.verify(sid, der, &[])?)
}

/// The session key's wrap to the verified key, as Blackboard makes it.
#[inline(never)]
fn wrap_one(student: &Student, session_key: &[u8]) -> Result<Vec<u8>, BoxError> {
    Ok(wrap_key(&student.key, session_key)?)
}

/// Totals of one measured run.
struct Run {
    n: usize,
    verify: Duration,
    wrap: Duration,
}

/// The measured loop: every certificate in turn, in passes over all of
/// them, until `seconds` have passed (at least one pass).
#[inline(never)]
fn measure(v: &Verifier, certs: &[(String, Vec<u8>)], seconds: f64) -> Result<Run, BoxError> {
    let session_key: [u8; SESSION_KEY_LEN] = random()?;
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut run = Run {
        n: 0,
        verify: Duration::ZERO,
        wrap: Duration::ZERO,
    };
    loop {
        for (sid, der) in certs {
            let t0 = Instant::now();
            let student = verify_one(v, sid, der)?;
            let t1 = Instant::now();
            let wrapped = wrap_one(&student, &session_key)?;
            run.wrap += t1.elapsed();
            run.verify += t1 - t0;
            std::hint::black_box(wrapped);
        }
        run.n += certs.len();
        if Instant::now() >= end {
            return Ok(run);
        }
    }
}

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes `--bench`; we take seconds and CA key type names.
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Under `cargo test --all-targets` (no `--bench`), a short smoke run.
    let default = if args.iter().any(|a| a == "--bench") {
        2.0
    } else {
        0.1
    };
    let seconds: f64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(default);
    let only: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| ["rsa2048", "p256"].contains(a))
        .collect();
    let keys: Vec<PKey<Private>> = (0..KEYS)
        .map(|_| make_key(KeyType::Rsa2048))
        .collect::<Result<_, _>>()?;
    println!("OpenSSL: {}", openssl::version::version());
    for (kind, name) in [(CaKeyType::Rsa2048, "rsa2048"), (CaKeyType::P256, "p256")] {
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        let dir = tempfile::tempdir()?;
        let (ca, _) = CertificateAuthority::open(dir.path(), b"bench passphrase", kind, 30)?;
        let certs: Vec<(String, Vec<u8>)> = (0..CERTS)
            .map(|i| -> Result<_, BoxError> {
                let sid = format!("{}", 1_155_000_000 + i);
                let issued = ca.issue(&make_csr(&sid, &keys[i % KEYS])?)?;
                Ok((sid, issued.der))
            })
            .collect::<Result<_, _>>()?;
        let v = Verifier::new(ca.cert())?;
        // One untimed pass first: OpenSSL's one-time set-up (provider
        // algorithm caches, error strings) is no part of a check's cost.
        let session_key: [u8; SESSION_KEY_LEN] = random()?;
        for (sid, der) in &certs {
            wrap_one(&verify_one(&v, sid, der)?, &session_key)?;
        }
        let run = measure(&v, &certs, seconds)?;
        let per = |d: Duration| d.as_secs_f64() / run.n as f64 * 1e6;
        let (verify, wrap) = (per(run.verify), per(run.wrap));
        println!(
            "check with a {name} CA: verify {verify:.1} µs + OAEP wrap {wrap:.1} µs = {:.1} µs per certificate ({:.0}/s, one thread)",
            verify + wrap,
            1e6 / (verify + wrap)
        );
        println!(
            "{{\"bench\":\"check\",\"ca\":\"{name}\",\"n\":{},\"us_per_verify\":{verify:.2},\"us_per_wrap\":{wrap:.2}}}",
            run.n
        );
    }
    Ok(())
}
