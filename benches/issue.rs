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
//! (`{"bench":"issue","ca":"p256","us_per_issue":…}`) for scripts. Under
//! valgrind (`valgrind --tool=callgrind target/release/deps/issue-*  0.2`) it
//! shows where an issuance spends its instructions.

use std::time::{Duration, Instant};

use certboard::ca::{CaKeyType, CertificateAuthority};
use certboard::client::{make_csr, make_key, KeyType};

type BoxError = Box<dyn std::error::Error>;

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
        let (ca, _) = CertificateAuthority::open(dir.path(), b"bench passphrase", kind, 30)?;
        let end = Instant::now() + Duration::from_secs_f64(seconds);
        let start = Instant::now();
        let mut n = 0usize;
        while Instant::now() < end {
            for csr in &csrs {
                ca.issue(csr)?;
            }
            n += csrs.len();
        }
        let us = start.elapsed().as_secs_f64() / n as f64 * 1e6;
        println!(
            "issue with a {name} CA: {us:.1} µs per certificate ({:.0}/s, one thread)",
            1e6 / us
        );
        println!("{{\"bench\":\"issue\",\"ca\":\"{name}\",\"us_per_issue\":{us:.2}}}");
    }
    Ok(())
}
