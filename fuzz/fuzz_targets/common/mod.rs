//! Set-up shared by the fuzz targets that need a CA.

#![allow(dead_code)]

use certboard::ca::{CaKeyType, CertificateAuthority, Issued};
use certboard::client;

/// A throwaway P-256 CA, made once per process in the temp dir (its files
/// are removed at once; the CA lives on in memory). `tag` keeps targets
/// running side by side apart.
pub fn throwaway_ca(tag: &str) -> CertificateAuthority {
    let dir = std::env::temp_dir().join(format!("certboard-fuzz-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ca, _) = CertificateAuthority::open(&dir, b"fuzzing passphrase", CaKeyType::P256, 30)
        .expect("test CA");
    let _ = std::fs::remove_dir_all(&dir);
    ca
}

/// A certificate honestly issued by `ca` for SID `fuzz` over a new RSA key.
pub fn honest_certificate(ca: &CertificateAuthority) -> Issued {
    let key = client::make_key(client::KeyType::Rsa2048).expect("key");
    ca.issue(&client::make_csr("fuzz", &key).expect("csr"))
        .expect("issue")
}
