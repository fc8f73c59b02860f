//! Issue 22, finding 4: the stock OpenSSL command README and PROTOCOL.md
//! give checks a receipt for what it is. It accepts a receipt Blackboard
//! signed, refuses one a student signed with her own certificate from the
//! same root, and still accepts a genuine receipt once Blackboard's 7-day
//! certificate has expired (checked at the receipt's time, `-attime`).
//! Runs the system `openssl`, as a student or an instructor would.

use std::path::Path;
use std::process::Command;

use certboard::receipt::{openssl_verify_command, verify_receipt, ReceiptContent};
use certboard::testing::{p256_key, CaParams, CertParams, Student};
use certboard::time::{now_unix, rfc3339};
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Name, X509};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NAME: &str = "blackboard.invalid";
const DAY: i64 = 86_400;

fn content(sid: &str, at: i64) -> ReceiptContent {
    ReceiptContent {
        sid: sid.into(),
        serial: "0A".into(),
        receipt: "7".into(),
        received_at: rfc3339(at),
        report_sha256: "00".repeat(32),
        transcript_sha256: "11".repeat(32),
        version: 2,
        assignment: None,
        late: None,
        late_seconds: None,
        log_index: None,
        log_proof: None,
        file: None,
    }
}

/// A CMS SignedData as Blackboard makes one, by whatever key and
/// certificate are given.
fn sign(
    cert: &X509,
    key: &PKey<Private>,
    json: &[u8],
) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    CmsContentInfo::sign(
        Some(cert),
        Some(key),
        None,
        Some(json),
        CMSOptions::BINARY | CMSOptions::NOSMIMECAP,
    )?
    .to_der()
}

/// Runs a documented command line (split on blanks: the paths here have
/// none); returns (success, stdout, stderr).
fn run(line: &str) -> Result<(bool, Vec<u8>, String), Box<dyn std::error::Error>> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (program, args) = words.split_first().ok_or("empty command")?;
    let out = Command::new(program).args(args).output()?;
    Ok((
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The command as README shows it, for `file` signed at `at`.
fn documented(file: &Path, root: &Path, at: i64) -> Result<String, Box<dyn std::error::Error>> {
    let file = file.to_str().ok_or("path not UTF-8")?;
    let root = root.to_str().ok_or("path not UTF-8")?;
    Ok(openssl_verify_command(file, root, NAME, at))
}

/// The command README gave before (finding 4): any purpose, no name, now.
fn old_command(file: &Path, root: &Path) -> String {
    format!(
        "openssl cms -verify -inform DER -in {} -CAfile {} -purpose any",
        file.display(),
        root.display()
    )
}

/// Where a receipt and its root are written.
struct Shape {
    dir: tempfile::TempDir,
    root: std::path::PathBuf,
}

struct Fixture {
    dir: tempfile::TempDir,
    ca: certboard::ca::CertificateAuthority,
    root: std::path::PathBuf,
}

fn fixture() -> Result<Fixture, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let ca = CaParams::default().create(&dir.path().join("keys"))?;
    let root = dir.path().join("ca-cert.pem");
    std::fs::write(&root, ca.cert().to_pem()?)?;
    Ok(Fixture { dir, ca, root })
}

#[test]
fn a_genuine_receipt_passes_the_documented_command() -> TestResult {
    let f = fixture()?;
    let bb = f.ca.issue_blackboard(NAME)?;
    let at = now_unix();
    let json = content("1155000001", at).to_json();
    let der = bb.sign_receipt(&json)?;
    let file = f.dir.path().join("genuine.p7m");
    std::fs::write(&file, &der)?;

    let (ok, stdout, stderr) = run(&documented(&file, &f.root, at)?)?;
    assert!(ok, "refused a genuine receipt: {stderr}");
    assert_eq!(stdout, json, "prints the signed content");
    verify_receipt(&der, f.ca.cert(), Some(NAME))?;
    Ok(())
}

#[test]
fn a_receipt_a_student_signed_is_refused() -> TestResult {
    let f = fixture()?;
    let at = now_unix();
    // Her SID in the content, her own key and certificate from the same
    // root: what the old command called "Verification successful".
    let student = Student::enroll(&f.ca, "1155000001")?;
    let cert = X509::from_der(&student.issued.der)?;
    let der = sign(&cert, &student.key, &content("1155000001", at).to_json())?;
    let file = f.dir.path().join("forged.p7m");
    std::fs::write(&file, &der)?;

    let (old_ok, _, _) = run(&old_command(&file, &f.root))?;
    assert!(
        old_ok,
        "the old command accepted it: the finding reproduced"
    );
    let (ok, stdout, stderr) = run(&documented(&file, &f.root, at)?)?;
    assert!(
        !ok,
        "accepted a student-signed receipt: {}",
        String::from_utf8_lossy(&stdout)
    );
    assert!(
        stderr.contains("unsuitable certificate purpose"),
        "{stderr}"
    );
    assert!(verify_receipt(&der, f.ca.cert(), Some(NAME)).is_err());

    // A student whose SID is a name Blackboard could have (no dot, so an
    // instructor might have configured it) is still refused: the purpose
    // check does not depend on the name.
    let student = Student::enroll(&f.ca, "blackboard")?;
    let cert = X509::from_der(&student.issued.der)?;
    let der = sign(&cert, &student.key, &content("blackboard", at).to_json())?;
    std::fs::write(&file, &der)?;
    let cmd = documented(&file, &f.root, at)?.replace(NAME, "blackboard");
    let (ok, _, stderr) = run(&cmd)?;
    assert!(!ok, "accepted a student named like Blackboard: {stderr}");
    Ok(())
}

/// A Blackboard certificate (the server profile: serverAuth, dNSName) that
/// was valid from `not_before` to `not_after`, from the test root.
fn blackboard_cert(
    root: &X509,
    root_key: &PKey<Private>,
    key: &PKey<Private>,
    not_before: i64,
    not_after: i64,
) -> Result<X509, openssl::error::ErrorStack> {
    let mut name = X509Name::builder()?;
    name.append_entry_by_text("CN", NAME)?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    b.set_serial_number(Asn1Integer::from_bn(BigNum::from_u32(0x5eed)?.as_ref())?.as_ref())?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(root.subject_name())?;
    b.set_pubkey(key)?;
    b.set_not_before(Asn1Time::from_unix(not_before)?.as_ref())?;
    b.set_not_after(Asn1Time::from_unix(not_after)?.as_ref())?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let san = SubjectAlternativeName::new()
        .dns(NAME)
        .build(&b.x509v3_context(Some(root), None))?;
    b.append_extension(san)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(root), None))?;
    b.append_extension(ski)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&b.x509v3_context(Some(root), None))?;
    b.append_extension(aki)?;
    b.sign(root_key, MessageDigest::sha256())?;
    Ok(b.build())
}

#[test]
fn a_genuine_receipt_still_passes_after_blackboards_certificate_expired() -> TestResult {
    let dir = tempfile::tempdir()?;
    let now = now_unix();
    // A root of a term begun a month ago (the test CA's is new: nothing
    // it issued can have expired yet), in certboard's root profile.
    let root_key = p256_key()?;
    let root = CertParams {
        not_before: now - 30 * DAY,
        not_after: now + 300 * DAY,
        ..CertParams::authority("certboard test root")
    }
    .self_signed(&root_key)?;
    let root_file = dir.path().join("ca-cert.pem");
    std::fs::write(&root_file, root.to_pem()?)?;
    let f = Shape {
        dir,
        root: root_file,
    };
    // Blackboard's certificate lived its 7 days and ended 3 days ago; the
    // receipt was signed in the middle of them.
    let key = p256_key()?;
    let cert = blackboard_cert(&root, &root_key, &key, now - 10 * DAY, now - 3 * DAY)?;
    let at = now - 5 * DAY;
    let json = content("1155000001", at).to_json();
    let der = sign(&cert, &key, &json)?;
    let file = f.dir.path().join("old.p7m");
    std::fs::write(&file, &der)?;

    let (now_ok, _, stderr) = run(&old_command(&file, &f.root))?;
    assert!(!now_ok, "checked now, the expired certificate fails");
    assert!(stderr.contains("expired"), "{stderr}");
    let (ok, stdout, stderr) = run(&documented(&file, &f.root, at)?)?;
    assert!(
        ok,
        "refused a genuine receipt checked at its time: {stderr}"
    );
    assert_eq!(stdout, json);
    verify_receipt(&der, &root, Some(NAME))?;

    // The time is the receipt's, not any: after the certificate ended,
    // it fails again.
    let (late_ok, _, _) = run(&documented(&file, &f.root, now - 2 * DAY)?)?;
    assert!(!late_ok, "accepted at a time its signer was expired");
    Ok(())
}
