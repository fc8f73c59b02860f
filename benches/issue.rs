//! Issuance without the network: how long `CertificateAuthority::issue`
//! takes per CSR for each CA key type, on one thread.
//!
//! ```text
//! cargo bench --bench issue               # 2 s per CA key type
//! cargo bench --bench issue -- 5          # 5 s per CA key type
//! cargo bench --bench issue -- 5 p256     # only the P-256 CA
//! ```
//!
//! Prints one line per CA key type for people, then a JSON line per type
//! (`{"bench":"issue","ca":"p256","n":…,"us_per_issue":…}`) for scripts.
//! Under valgrind it shows where an issuance spends its instructions; to
//! count only the measured loop (not the CA's key generation), divide the
//! instructions of
//!
//! ```text
//! valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect='*issue::measure*' target/release/deps/issue-* 0.2 p256
//! ```
//!
//! by the `n` it prints.

use std::time::{Duration, Instant};

use certboard::ca::{CaKeyType, CertificateAuthority};
use certboard::client::{make_csr, make_key, KeyType};
use certboard::testing::CaParams;

type BoxError = Box<dyn std::error::Error>;

/// The measured loop: every CSR in turn, in passes over all of them, until
/// `seconds` have passed (at least one pass); the number issued.
#[inline(never)]
fn measure(ca: &CertificateAuthority, csrs: &[Vec<u8>], seconds: f64) -> Result<usize, BoxError> {
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut n = 0usize;
    loop {
        for csr in csrs {
            ca.issue(csr)?;
        }
        n += csrs.len();
        if Instant::now() >= end {
            return Ok(n);
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
    let key = make_key(KeyType::Rsa2048)?;
    let csrs: Vec<Vec<u8>> = (0..64)
        .map(|i| make_csr(&format!("{}", 1_155_000_000 + i), &key))
        .collect::<Result<_, _>>()?;
    for (kind, name) in [(CaKeyType::Rsa2048, "rsa2048"), (CaKeyType::P256, "p256")] {
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        let dir = tempfile::tempdir()?;
        let ca = CaParams {
            kind,
            ..CaParams::default()
        }
        .create(dir.path())?;
        // One untimed pass first: OpenSSL's one-time set-up (provider
        // algorithm caches, error strings) is no part of an issuance's cost.
        for csr in &csrs {
            ca.issue(csr)?;
        }
        let start = Instant::now();
        let n = measure(&ca, &csrs, seconds)?;
        let us = start.elapsed().as_secs_f64() / n as f64 * 1e6;
        println!(
            "issue with a {name} CA: {us:.1} µs per certificate ({:.0}/s, one thread)",
            1e6 / us
        );
        println!("{{\"bench\":\"issue\",\"ca\":\"{name}\",\"n\":{n},\"us_per_issue\":{us:.2}}}");
    }
    Ok(())
}
