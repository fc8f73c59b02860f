//! Set-up shared by the fuzz targets that need a CA: the library's test
//! fixtures (`certboard::testing`) in a throwaway directory.

#![allow(dead_code)]

use std::path::PathBuf;

use certboard::ca::{CertificateAuthority, Issued};
use certboard::testing::{CaParams, Student, TestPki};

/// A fresh directory for `tag` in the system temp dir; `tag` keeps targets
/// running side by side apart.
fn throwaway_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("certboard-fuzz-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A throwaway P-256 CA, made once per process in the temp dir (its files
/// are removed at once; the CA lives on in memory).
pub fn throwaway_ca(tag: &str) -> CertificateAuthority {
    let dir = throwaway_dir(tag);
    let ca = CaParams::default().create(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    ca.expect("test CA")
}

/// A throwaway P-256 CA with its verifier and Blackboard's keys, made as
/// [`throwaway_ca`] is.
pub fn throwaway_pki(tag: &str) -> TestPki {
    let dir = throwaway_dir(tag);
    let pki = TestPki::create(&dir, &CaParams::default());
    let _ = std::fs::remove_dir_all(&dir);
    pki.expect("test CA and Blackboard's keys")
}

/// A certificate honestly issued by `ca` for SID `fuzz` over a new RSA key.
pub fn honest_certificate(ca: &CertificateAuthority) -> Issued {
    Student::enroll(ca, "fuzz")
        .expect("honest certificate")
        .issued
}
