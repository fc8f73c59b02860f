//! End-to-end: certificates and CSRs that must be refused, each with its
//! own reason, which must reach both the client (as `BadCertificate` or
//! `BadRequest` with the reason) and the server's log. Every certificate is
//! built here at run time with OpenSSL; those "from CUHK" are signed with
//! the running server's own root key, opened from its keys dir.

mod common;
mod wire;

use certboard::ca::CertificateAuthority;
use certboard::client::{self, ClientError, FramedStream};
use certboard::crypto;
use certboard::message::{CipherId, ErrorCode, Message};
use certboard::testing::{p256_key, rsa_key, CertParams, Constraints, Eku, Issuer};
use certboard::time::now_unix;
use common::*;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKeyRef, Private};
use openssl::stack::Stack;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509Extension, X509Name, X509NameRef, X509ReqBuilder, X509};
use wire::WAIT;

type Error = Box<dyn std::error::Error>;

fn name(org: Option<&str>, cn: &str) -> Result<openssl::x509::X509Name, Error> {
    let mut n = X509Name::builder()?;
    if let Some(o) = org {
        n.append_entry_by_nid(Nid::ORGANIZATIONNAME, o)?;
    }
    n.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    Ok(n.build())
}

/// A running server and its root, opened as the CA itself would.
struct Fixture {
    server: TestServer,
    ca: CertificateAuthority,
}

impl Fixture {
    fn start() -> Result<Fixture, Error> {
        let server = TestServer::start(&[])?;
        let ca = server.open_ca()?;
        Ok(Fixture { server, ca })
    }

    fn root(&self) -> Issuer<'_> {
        Issuer::ca(&self.ca)
    }

    fn root_subject(&self) -> &X509NameRef {
        self.ca.cert().subject_name()
    }

    /// Presents `cert_der` (and `chain`) for `sid`; returns Blackboard's
    /// refusal, checking that it is a `BadCertificate` and that the server
    /// logged the same reason.
    fn refused(&self, sid: &str, cert_der: &[u8], chain: Vec<Vec<u8>>) -> Result<String, Error> {
        let mut conn = FramedStream::connect(&self.server.blackboard.to_string(), WAIT)?;
        conn.send(&Message::SubmitOpen {
            sid: sid.to_string(),
            cert_der: cert_der.to_vec(),
            chain,
            client_nonce: [0; 32],
        })?;
        match conn.recv() {
            Err(ClientError::Refused { code, reason }) => {
                assert_eq!(code, ErrorCode::BadCertificate, "{reason}");
                let logged = format!("certificate refused for SID {sid:?}: {reason}");
                assert!(
                    self.server.wait_log(&logged, 5),
                    "not in the log: {logged}\n{}",
                    self.server.log()
                );
                Ok(reason)
            }
            other => Err(format!("SID {sid}: expected a refusal, got {other:?}").into()),
        }
    }

    /// Sends a CSR to the CA; returns its refusal (a `BadRequest`, logged).
    fn csr_refused(&self, csr_der: Vec<u8>) -> Result<String, Error> {
        let mut conn = FramedStream::connect(&self.server.ca.to_string(), WAIT)?;
        match common::enroll_csr(&mut conn, csr_der) {
            Err(ClientError::Refused { code, reason }) => {
                assert_eq!(code, ErrorCode::BadRequest, "{reason}");
                assert!(
                    self.server.wait_log(&reason, 5),
                    "not in the log: {reason}\n{}",
                    self.server.log()
                );
                Ok(reason)
            }
            other => Err(format!("expected a refusal, got {other:?}").into()),
        }
    }

    fn nothing_recorded(&self) -> TestResult {
        let out = self.server.admin(&["reports"])?;
        assert_eq!(stdout(&out), "", "{}", text(&out));
        Ok(())
    }
}

fn assert_reason(reason: &str, want: &str) {
    assert!(reason.contains(want), "reason {reason:?} lacks {want:?}");
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused() -> TestResult {
    let f = Fixture::start()?;
    let key = rsa_key()?;
    let now = now_unix();
    let expired = CertParams {
        not_before: now - 40 * 86_400,
        not_after: now - 86_400,
        ..CertParams::student("expired")
    }
    .signed_by(&key, f.root())?;
    let reason = f.refused("expired", &expired.to_der()?, vec![])?;
    assert_reason(
        &reason,
        "does not chain to the CUHK root: certificate has expired",
    );

    let future = CertParams {
        not_before: now + 86_400,
        not_after: now + 40 * 86_400,
        ..CertParams::student("future")
    }
    .signed_by(&key, f.root())?;
    let reason = f.refused("future", &future.to_der()?, vec![])?;
    assert_reason(&reason, "certificate is not yet valid");
    f.nothing_recorded()
}

#[test]
fn a_different_ca_with_the_same_name_and_a_self_signed_certificate_are_refused() -> TestResult {
    let f = Fixture::start()?;
    // A look-alike root: same subject as CUHK's, its own key.
    let fake_key = rsa_key()?;
    let root_cn = f
        .root_subject()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .ok_or("root has no CN")?
        .data()
        .to_string()?;
    let fake_root = CertParams {
        org: Some("CUHK".into()),
        constraints: Constraints::Ca {
            critical: true,
            pathlen: Some(0),
        },
        ..CertParams::authority(&root_cn)
    }
    .self_signed(&fake_key)?;
    assert_eq!(
        certboard::ca::name_text(fake_root.subject_name()),
        certboard::ca::name_text(f.root_subject()),
        "the look-alike has the same subject"
    );
    let key = rsa_key()?;
    let forged = CertParams::student("lookalike").signed_by(
        &key,
        Issuer {
            cert: &fake_root,
            key: &fake_key,
        },
    )?;
    let reason = f.refused("lookalike", &forged.to_der()?, vec![])?;
    assert_reason(&reason, "unable to get local issuer certificate");
    // Sending the look-alike root along as a chain does not help.
    let reason = f.refused("lookalike", &forged.to_der()?, vec![fake_root.to_der()?])?;
    assert_reason(&reason, "does not chain to the CUHK root");

    let selfsigned = CertParams::student("selfie").self_signed(&key)?;
    let reason = f.refused("selfie", &selfsigned.to_der()?, vec![])?;
    assert_reason(&reason, "self-signed certificate");
    f.nothing_recorded()
}

#[test]
fn a_ca_certificate_and_certificates_without_client_auth_are_refused() -> TestResult {
    let f = Fixture::start()?;
    let key = rsa_key()?;
    // Signed by the real root, marked CA, even with clientAuth.
    let ca_cert = CertParams {
        eku: Some(Eku::ClientAuth),
        ..CertParams::authority("subca")
    }
    .signed_by(&key, f.root())?;
    let reason = f.refused("subca", &ca_cert.to_der()?, vec![])?;
    assert_reason(&reason, "a CA certificate cannot be used as a student's");
    // The same without clientAuth: still refused as a CA first.
    let ca_cert = CertParams::authority("subca2").signed_by(&key, f.root())?;
    let reason = f.refused("subca2", &ca_cert.to_der()?, vec![])?;
    assert_reason(&reason, "a CA certificate cannot be used as a student's");
    // The root itself.
    let reason = f.refused("root", f.ca.cert_der(), vec![])?;
    assert_reason(&reason, "a CA certificate cannot be used as a student's");

    let server_only = CertParams {
        eku: Some(Eku::ServerAuth),
        ..CertParams::student("webserver")
    }
    .signed_by(&key, f.root())?;
    let reason = f.refused("webserver", &server_only.to_der()?, vec![])?;
    assert_reason(&reason, "extendedKeyUsage clientAuth missing");
    let no_eku = CertParams {
        eku: None,
        ..CertParams::student("noeku")
    }
    .signed_by(&key, f.root())?;
    let reason = f.refused("noeku", &no_eku.to_der()?, vec![])?;
    assert_reason(&reason, "extendedKeyUsage clientAuth missing");
    f.nothing_recorded()
}

#[test]
fn a_certificate_for_another_sid_is_refused() -> TestResult {
    let f = Fixture::start()?;
    // Alice's real certificate, issued by the CA over the wire.
    let key = rsa_key()?;
    let mut conn = FramedStream::connect(&f.server.ca.to_string(), WAIT)?;
    let (alice, _) = common::enroll_csr(&mut conn, client::make_csr("alice", &key)?)?;
    let reason = f.refused("bob", &alice, vec![])?;
    assert_reason(
        &reason,
        "the certificate is for \"alice\", not for the claimed SID \"bob\"",
    );
    f.nothing_recorded()
}

#[test]
fn garbage_truncated_and_pem_certificates_are_refused() -> TestResult {
    let f = Fixture::start()?;
    let key = rsa_key()?;
    let mut conn = FramedStream::connect(&f.server.ca.to_string(), WAIT)?;
    let (good, _) = common::enroll_csr(&mut conn, client::make_csr("carol", &key)?)?;
    let pem = X509::from_der(&good)?.to_pem()?;
    let mut random = vec![0u8; 300];
    openssl::rand::rand_bytes(&mut random)?;
    for bad in [
        good[..good.len() / 2].to_vec(),
        good[..good.len() - 1].to_vec(),
        pem,
        random,
        vec![],
        vec![0x30, 0x82, 0xff, 0xff],
    ] {
        let reason = f.refused("carol", &bad, vec![])?;
        assert_eq!(reason, "the certificate is not valid DER");
    }
    // A garbage chain entry beside a good certificate is refused too.
    let reason = f.refused("carol", &good, vec![b"junk".to_vec()])?;
    assert_eq!(reason, "the certificate is not valid DER");
    f.nothing_recorded()
}

#[test]
fn a_chain_longer_than_allowed_is_refused() -> TestResult {
    let f = Fixture::start()?;
    // An intermediate the real root signed: the root has pathlen 0 and
    // Blackboard's depth is 0, so nothing may stand between.
    let int_key = rsa_key()?;
    let intermediate = CertParams::authority("CUHK intermediate").signed_by(&int_key, f.root())?;
    let key = rsa_key()?;
    let leaf = CertParams::student("chained").signed_by(
        &key,
        Issuer {
            cert: &intermediate,
            key: &int_key,
        },
    )?;
    let reason = f.refused("chained", &leaf.to_der()?, vec![intermediate.to_der()?])?;
    assert_reason(&reason, "does not chain to the CUHK root");
    assert!(
        reason.contains("chain too long") || reason.contains("path length constraint exceeded"),
        "{reason}"
    );
    // More chain certificates than the message may carry to the verifier.
    let many = vec![intermediate.to_der()?; 5];
    let reason = f.refused("chained", &leaf.to_der()?, many)?;
    assert_reason(&reason, "too many chain certificates (5; at most 4)");
    f.nothing_recorded()
}

#[test]
fn a_validly_signed_certificate_unknown_to_the_ca_or_revoked_is_refused() -> TestResult {
    let f = Fixture::start()?;
    let key = rsa_key()?;
    // Signed by the root key, but never issued (so never recorded).
    let stray = CertParams::student("stray").signed_by(&key, f.root())?;
    let reason = f.refused("stray", &stray.to_der()?, vec![])?;
    assert_reason(&reason, "is not in the CA's records");

    let mut conn = FramedStream::connect(&f.server.ca.to_string(), WAIT)?;
    let (dave, _) = common::enroll_csr(&mut conn, client::make_csr("dave", &key)?)?;
    let out = f
        .server
        .admin(&["revoke", "--sid", "dave", "--reason", "key-compromise"])?;
    assert!(out.status.success(), "{}", text(&out));
    let reason = f.refused("dave", &dave, vec![])?;
    assert_reason(&reason, "has been revoked");
    f.nothing_recorded()
}

#[test]
fn a_certificate_with_a_non_rsa_key_is_refused() -> TestResult {
    let f = Fixture::start()?;
    let ec = p256_key()?;
    let cert = CertParams::student("elliptic").signed_by(&ec, f.root())?;
    let reason = f.refused("elliptic", &cert.to_der()?, vec![])?;
    assert_reason(&reason, "key is not RSA");
    Ok(())
}

fn csr_with(
    cn: &str,
    pubkey: &PKeyRef<Private>,
    signer: &PKeyRef<Private>,
    exts: Option<Stack<X509Extension>>,
) -> Result<Vec<u8>, Error> {
    let mut b = X509ReqBuilder::new()?;
    let subject = name(None, cn)?;
    b.set_subject_name(&subject)?;
    b.set_pubkey(pubkey)?;
    if let Some(e) = exts {
        b.add_extensions(&e)?;
    }
    b.sign(signer, MessageDigest::sha256())?;
    Ok(b.build().to_der()?)
}

#[test]
fn bad_csrs_are_refused_with_their_reason() -> TestResult {
    let f = Fixture::start()?;
    let key = rsa_key()?;
    let other = rsa_key()?;
    // Her public key, someone else's signature: no proof of possession.
    let reason = f.csr_refused(csr_with("erin", &key, &other, None)?)?;
    assert_reason(&reason, "signature does not verify with its public key");
    // A signature bit flipped.
    let mut der = client::make_csr("erin", &key)?;
    let last = der.len() - 3;
    der[last] ^= 0x40;
    let reason = f.csr_refused(der)?;
    assert_reason(&reason, "signature does not verify");
    // Garbage and truncations.
    let good = client::make_csr("erin", &key)?;
    for bad in [b"junk".to_vec(), good[..good.len() / 2].to_vec(), vec![]] {
        let reason = f.csr_refused(bad)?;
        assert_reason(&reason, "the CSR is not valid PKCS#10 DER");
    }
    // A CN that is not a SID.
    let reason = f.csr_refused(csr_with("../etc/passwd", &key, &key, None)?)?;
    assert_reason(&reason, "not a valid SID");
    let certs = f.server.admin(&["certs"])?;
    assert_eq!(stdout(&certs), "", "nothing issued: {}", text(&certs));
    Ok(())
}

fn ext_text(cert: &X509) -> Result<String, Error> {
    Ok(String::from_utf8(cert.to_text()?)?)
}

#[test]
fn a_csr_asking_to_be_a_ca_gets_an_ordinary_student_certificate() -> TestResult {
    // Decided: the CA copies nothing but the CN and the key from a CSR, so
    // a request for CA:TRUE / keyCertSign is issued without them.
    let f = Fixture::start()?;
    let key = rsa_key()?;
    let mut exts = Stack::new()?;
    exts.push(BasicConstraints::new().critical().ca().build()?)?;
    exts.push(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let csr = csr_with("mallory", &key, &key, Some(exts))?;
    let mut conn = FramedStream::connect(&f.server.ca.to_string(), WAIT)?;
    let (cert_der, _) = common::enroll_csr(&mut conn, csr)?;
    let cert = X509::from_der(&cert_der)?;
    let t = ext_text(&cert)?;
    assert!(t.contains("CA:FALSE"), "{t}");
    assert!(!t.contains("CA:TRUE"), "{t}");
    assert!(!t.contains("Certificate Sign"), "{t}");
    assert!(!t.contains("CRL Sign"), "{t}");
    // The certificate cannot sign others: one "issued" by it is refused.
    let victim_key = rsa_key()?;
    let under_mallory = CertParams::student("victim").signed_by(
        &victim_key,
        Issuer {
            cert: &cert,
            key: &key,
        },
    )?;
    let reason = f.refused("victim", &under_mallory.to_der()?, vec![cert_der.clone()])?;
    assert_reason(&reason, "does not chain to the CUHK root");
    // And it is a good student certificate: Mallory can submit with it.
    let mut conn = FramedStream::connect(&f.server.blackboard.to_string(), WAIT)?;
    let receipt = client::submit(
        &mut conn,
        "mallory",
        &cert_der,
        &key,
        CipherId::Aes256Ctr,
        &crypto::lab_report("mallory"),
        &f.server.trust()?,
        &mut |_| {},
    )?;
    assert!(!receipt.serial_hex.is_empty());
    let reports = f.server.admin(&["reports"])?;
    assert!(
        stdout(&reports).contains("sid=mallory"),
        "{}",
        text(&reports)
    );
    Ok(())
}
