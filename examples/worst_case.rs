//! The worst-case loop time a peer can make each message cost, measured in
//! process through certboard's own functions (docs/security.md's table).
//! Not a test: figures depend on the machine and the build profile.
//!
//! ```sh
//! bash bench/worst-case.sh            # release build
//! cargo run --example worst_case      # debug build (Rust-side code slower)
//! ```

use std::time::{Duration, Instant};

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::{X509NameBuilder, X509ReqBuilder};

use certboard::ca::CaKeyType;
use certboard::crypto::{self, SessionKeys};
use certboard::message::{CipherId, Message, IV_LEN};
use certboard::protocol::legacy;
use certboard::testing::{bloated_certificate, private_extensions, CaParams};
use certboard::verify::Verifier;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Median time of `f` over enough runs to fill about half a second.
fn time<T>(what: &str, mut f: impl FnMut() -> T) {
    let mut runs = Vec::new();
    let start = Instant::now();
    while runs.len() < 5 || (start.elapsed() < Duration::from_millis(500) && runs.len() < 10_000) {
        let t = Instant::now();
        std::hint::black_box(f());
        runs.push(t.elapsed());
    }
    runs.sort();
    let median = runs[runs.len() / 2];
    println!("{:>10.1} µs  {what}", median.as_secs_f64() * 1e6);
}

fn rsa(bits: u32) -> Result<PKey<Private>> {
    Ok(PKey::from_rsa(Rsa::generate(bits)?)?)
}

fn csr(sid: &str, key: &PKey<Private>, extra: usize) -> Result<Vec<u8>> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", sid)?;
    let mut b = X509ReqBuilder::new()?;
    b.set_subject_name(&name.build())?;
    b.set_pubkey(key)?;
    if extra > 0 {
        let mut stack = Stack::new()?;
        for e in private_extensions(extra)? {
            stack.push(e)?;
        }
        b.add_extensions(&stack)?;
    }
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build().to_der()?)
}

fn main() -> Result<()> {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("certboard worst-case cost per message ({profile} build), median of many runs");
    let dir = tempfile_dir()?;
    let ca = CaParams {
        kind: CaKeyType::Rsa2048,
        ..CaParams::default()
    }
    .create(&dir)?;
    let verifier = Verifier::new(ca.cert())?;
    let sid = "1155000001";
    let rsa2048 = rsa(2048)?;
    let rsa4096 = rsa(4096)?;

    println!("-- admission");
    let secret = [7u8; 32];
    let challenge = crypto::random::<32>()?;
    time(
        "admission response: HMAC-SHA256 + constant-time compare",
        || crypto::hmac_sha256(&secret, &challenge).map(|m| crypto::ct_eq(&m, &[0; 32])),
    );

    println!("-- CA: CertRequest (RSA-2048 root signs)");
    let csr2048 = csr(sid, &rsa2048, 0)?;
    let csr4096 = csr(sid, &rsa4096, 0)?;
    let big_csr = csr(sid, &rsa2048, 3_400)?;
    time("CSR RSA-2048: parse, proof of possession, sign", || {
        ca.issue(&csr2048)
    });
    time("CSR RSA-4096: parse, proof of possession, sign", || {
        ca.issue(&csr4096)
    });
    time(
        &format!(
            "CSR of {} bytes (3,400 extensions), issued ignoring them",
            big_csr.len()
        ),
        || ca.issue(&big_csr),
    );

    println!("-- Blackboard: SubmitOpen");
    let issued4096 = ca.issue(&csr4096)?;
    time("verify a student certificate (RSA-4096 key)", || {
        verifier.verify(sid, &issued4096.der, &[])
    });
    let session_key = crypto::random::<32>()?;
    time("RSA-OAEP wrap of the session key to a 4096-bit key", || {
        crypto::wrap_key(&rsa4096, &session_key)
    });
    let bb = ca.issue_blackboard(certboard::ca::DEFAULT_BLACKBOARD_NAME)?;
    // The signed offer covers the hello (up to a certificate of 8 KiB).
    let transcript = vec![0x5a; 8 * 1024 + 200];
    time(
        "sign the session offer's transcript (Blackboard, ECDSA P-256)",
        || bb.sign(&transcript),
    );
    let cert8 = bloated_certificate(sid, &rsa2048, 7 * 1024 + 256)?;
    time(
        &format!(
            "refuse a {}-byte certificate of 420 extensions (parsed: under the cap)",
            cert8.len()
        ),
        || verifier.verify(sid, &cert8, &[]),
    );
    let cert60 = bloated_certificate(sid, &rsa2048, 60 * 1024)?;
    time(
        &format!(
            "(before this round) parse a {}-byte certificate, now refused by size",
            cert60.len()
        ),
        || verifier.verify(sid, &cert60, &[]),
    );

    println!("-- Blackboard: after the report's commit");
    let receipt_json = br#"{"sid":"1155000001","serial":"7233497DB8A58377DD868F75F1CEF9DC","receipt":"4878421494818374052","received_at":"2026-12-01T14:00:00Z","report_sha256":"0000000000000000000000000000000000000000000000000000000000000000","transcript_sha256":"0000000000000000000000000000000000000000000000000000000000000000","version":2}"#;
    time(
        "sign the receipt (CMS SignedData, certificate included)",
        || bb.sign_receipt(receipt_json),
    );

    println!("-- Blackboard: Report (64 KiB)");
    let th = crypto::random::<32>()?;
    let keys = SessionKeys::derive_v2(&session_key, &th)?;
    let iv = [0u8; IV_LEN];
    let text = "x".repeat(certboard::protocol::MAX_REPORT);
    let report = keys.apply_cipher(CipherId::Aes256Ctr, &iv, text.as_bytes())?;
    time("decode the largest frame (65,590 bytes)", || {
        Message::decode(
            &Message::Report {
                cipher: CipherId::Aes256Ctr,
                iv,
                ciphertext: report.clone(),
                mac: [0; 32],
            }
            .encode(),
        )
    });
    time("HMAC-SHA256 over a 64 KiB report", || {
        keys.report_mac_v2(&th, CipherId::Aes256Ctr, &iv, &report)
    });
    time("AES-256-CTR decryption of 64 KiB", || {
        keys.apply_cipher(CipherId::Aes256Ctr, &iv, &report)
    });
    time("RC4 decryption of 64 KiB", || {
        keys.apply_cipher(CipherId::Rc4, &iv, &report)
    });
    time("check the text of a 64 KiB report", || {
        certboard::protocol::check_report_text(&text)
    });

    println!("-- legacy");
    time(
        "RSA-2048 key generation (on the worker, not the loop)",
        || rsa(2048),
    );
    let cert8 = bloated_certificate(sid, &rsa2048, 7 * 1024 + 256)?;
    let pem = openssl::x509::X509::from_der(&cert8)?.to_pem()?;
    assert!(pem.len() <= legacy::MAX_CERT_TEXT);
    time(
        &format!("certificate text of {} bytes: PEM, then parse", pem.len()),
        || legacy::parse_cert_text(&pem),
    );
    time(
        "wrap the session key (RC4 under <SID><SID>, base64)",
        || legacy::wrap_session_key(sid, "abcdefghijklmnopqrstuvwxyz012345"),
    );
    time("HMAC-SHA1 of the SID", || {
        legacy::mac_hex("abcdefghijklmnopqrstuvwxyz012345", sid)
    });
    let frame = format!("{text}_{}", "0".repeat(legacy::MAC_HEX_LEN));
    time("split and check a 64 KiB report frame", || {
        legacy::split_msg_mac(&frame).map(|(m, _)| certboard::protocol::check_report_text(m))
    });
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A fresh private directory for the CA's files.
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("certboard-worst-case-{}", std::process::id()));
    std::fs::create_dir(&dir)?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(dir)
}
