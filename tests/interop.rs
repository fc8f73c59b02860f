//! Interop: what certboard issues, checked by implementations that share no
//! code with it. Every object is issued fresh at run time by the library
//! (`CertificateAuthority::open` in a temp dir, the client's `make_key` and
//! `make_csr`, `CertificateAuthority::crl`), under both root types.
//!
//! - pkilint (RFC 5280 linter): root, students, Blackboard, CRL — no error or warning,
//!   and no notice/info that docs/conformance.md does not list.
//! - OpenSSL CLI: `verify -x509_strict -purpose sslclient`, `req -verify`,
//!   `crl -verify`, `verify -crl_check`.
//! - GnuTLS certtool: `--verify-chain`, `--verify`, `--verify-crl`.
//! - rustls-webpki: client-auth path validation, with and without our CRL.
//! - A real mutual-TLS handshake: `openssl s_server` / `openssl s_client`.
//!
//! Deliberately broken certificates (one flaw each, otherwise our profile,
//! signed by our real root key unless the flaw is the signer) must be
//! refused, for the right reason, by each verifier that checks that flaw; a
//! flawless control built by the same code must be accepted by all.
//!
//! Run: `bash scripts/install-test-tools.sh && cargo test --test interop`.
//! A missing tool fails its test with a message saying how to install it.

use std::error::Error;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use certboard::ca::{CaKeyType, CertificateAuthority};
use certboard::client::{make_csr, make_key, KeyType};
use certboard::testing::{p256_key, CaParams, CertParams, Constraints, Eku, Issuer};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKeyRef, Private};
use openssl::x509::extension::AuthorityKeyIdentifier;
use openssl::x509::{
    CrlNumber, X509Builder, X509Crl, X509CrlBuilder, X509Ref, X509RevokedBuilder, X509,
};
use rustls_pki_types::{CertificateDer, UnixTime};

type TestResult = Result<(), Box<dyn Error>>;
type Res<T> = Result<T, Box<dyn Error>>;

/// Longest any one tool invocation may take (pkilint starts Python; CI is a
/// shared 2-core machine running debug builds).
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `openssl s_server` may take to start listening.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// pkilint findings we accept on purpose. Each is explained in
// docs/conformance.md (a test checks the doc names every one).

/// (finding code, why we accept it).
const ACCEPTED_PKILINT: &[(&str, &str)] = &[(
    "pkix.subject_key_identifier_method_1_identified",
    "INFO: the SKI is the SHA-1 of the subject public key (RFC 5280 section 4.2.1.2 method 1)",
)];

// ---------------------------------------------------------------------------
// Running the tools: located on PATH, bounded in time, killed on every path.

/// `name` on PATH, or an error telling how to install it.
fn tool(name: &str) -> Res<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if let Ok(meta) = fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    let what = match name {
        "certtool" => "GnuTLS certtool (Debian package gnutls-bin)",
        "openssl" => "the OpenSSL command-line tool (Debian package openssl)",
        n if n.starts_with("lint_") => "pkilint (PyPI package pkilint)",
        _ => "it",
    };
    Err(format!(
        "`{name}` not found on PATH: this interop check needs {what}. \
         Install the test tools with `bash scripts/install-test-tools.sh` (as root), then re-run."
    )
    .into())
}

/// A child process that is killed (by its own pid) and reaped however the
/// test leaves the scope.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// What a finished tool run left.
struct Ran {
    what: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn ok(&self) -> bool {
        self.status.success()
    }

    /// Both streams, for matching and for failure messages.
    fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout\n{}--- stderr\n{}",
            self.what, self.status, self.stdout, self.stderr
        )
    }
}

fn drain<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `program args…` with `stdin` as its standard input, killing it if it
/// outlives `limit`.
fn run_with(program: &str, args: &[&str], stdin: &[u8], limit: Duration) -> Res<Ran> {
    let path = tool(program)?;
    let what = format!("{program} {}", args.join(" "));
    let child = Command::new(path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{what}`: {e}"))?;
    let mut child = Reaper(child);
    let out = drain(child.0.stdout.take().ok_or("no stdout pipe")?);
    let err = drain(child.0.stderr.take().ok_or("no stderr pipe")?);
    if let Some(mut pipe) = child.0.stdin.take() {
        let input = stdin.to_vec();
        // A tool that never reads its input must not block us: write from a
        // thread, and let a broken pipe pass.
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.0.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            return Err(format!("`{what}` did not finish within {limit:?}; killed").into());
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = out.join().map_err(|_| "stdout reader panicked")?;
    let stderr = err.join().map_err(|_| "stderr reader panicked")?;
    Ok(Ran {
        what,
        status,
        stdout,
        stderr,
    })
}

fn run(program: &str, args: &[&str]) -> Res<Ran> {
    run_with(program, args, b"", TOOL_TIMEOUT)
}

fn p(path: &Path) -> &str {
    // Temp dirs are ASCII; a non-UTF-8 path would be a broken test setup.
    path.to_str().unwrap_or("<non-utf8 path>")
}

// ---------------------------------------------------------------------------
// Fixtures: one root with what it issued, written out as files.

/// A certificate and its key, as files for the command-line tools.
struct Cert {
    name: String,
    x509: X509,
    /// The certificate, PEM.
    pem: PathBuf,
    /// Its private key, unencrypted PKCS#8 PEM.
    key_pem: PathBuf,
    /// The certificate followed by the root it claims, for
    /// `certtool --verify-chain`.
    chain_pem: PathBuf,
}

impl Cert {
    fn write(
        dir: &Path,
        name: &str,
        x509: X509,
        key: &PKeyRef<Private>,
        root: &X509Ref,
    ) -> Res<Cert> {
        let pem = dir.join(format!("{name}.pem"));
        fs::write(&pem, x509.to_pem()?)?;
        let key_pem = dir.join(format!("{name}-key.pem"));
        fs::write(&key_pem, key.private_key_to_pem_pkcs8()?)?;
        let chain_pem = dir.join(format!("{name}-chain.pem"));
        let mut chain = x509.to_pem()?;
        chain.extend_from_slice(&root.to_pem()?);
        fs::write(&chain_pem, chain)?;
        Ok(Cert {
            name: name.to_string(),
            x509,
            pem,
            key_pem,
            chain_pem,
        })
    }

    fn der(&self) -> Res<Vec<u8>> {
        Ok(self.x509.to_der()?)
    }
}

/// The one thing wrong with a deliberately broken leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    /// extendedKeyUsage is serverAuth only (no clientAuth).
    ServerAuthOnly,
    /// basicConstraints says CA:TRUE on a certificate used as a leaf.
    CaTrueLeaf,
    /// Validity ended yesterday.
    Expired,
    /// Issued by an unrelated CA (its own name and key).
    ForeignIssuer,
    /// Names our root as its issuer (name and authority key identifier) but
    /// is signed by another key of the same type: only the signature tells.
    ForgedSignature,
}

const FLAWS: [Flaw; 5] = [
    Flaw::ServerAuthOnly,
    Flaw::CaTrueLeaf,
    Flaw::Expired,
    Flaw::ForeignIssuer,
    Flaw::ForgedSignature,
];

/// A CA root of one key type and everything the tests check against it.
struct Pki {
    kind: CaKeyType,
    dir: tempfile::TempDir,
    ca: CertificateAuthority,
    /// Our root certificate, PEM.
    root_pem: PathBuf,
    /// Students issued through the real path (client CSR → `ca.issue`):
    /// an RSA-2048 key and a P-256 key. Not revoked.
    students: Vec<Cert>,
    /// The client's CSRs for those students, DER.
    csrs: Vec<(String, PathBuf)>,
    /// A student issued through the real path and revoked in `crl_pem`.
    revoked: Cert,
    /// Our CRL (PEM) listing `revoked`.
    crl_pem: PathBuf,
    crl_der: Vec<u8>,
    /// A CRL naming our root (name, AKI) but signed by the forger's key.
    forged_crl_pem: PathBuf,
    /// Our profile rebuilt by the test's own builder, with no flaw: proves
    /// the refusals below come from the flaw, not from the builder.
    control: Cert,
    broken: Vec<(Flaw, Cert)>,
}

fn now_unix() -> Res<i64> {
    Ok(i64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
    )?)
}

/// A leaf in certboard's profile (CN=sid; critical CA:FALSE; critical
/// digitalSignature [+ keyEncipherment for RSA]; clientAuth; SKI; AKI),
/// naming `issuer` (issuer name and AKI), with `flaw` applied when given,
/// signed with `signer`.
fn mk_leaf(
    flaw: Option<Flaw>,
    sid: &str,
    key: &PKeyRef<Private>,
    issuer: &X509Ref,
    signer: &PKeyRef<Private>,
) -> Res<X509> {
    let base = match flaw {
        Some(Flaw::Expired) => CertParams::expired(sid),
        _ => CertParams::student(sid),
    };
    let mut params = CertParams {
        key_encipherment: key.id() == Id::RSA,
        ..base
    };
    match flaw {
        Some(Flaw::CaTrueLeaf) => {
            params.constraints = Constraints::Ca {
                critical: true,
                pathlen: None,
            }
        }
        Some(Flaw::ServerAuthOnly) => params.eku = Some(Eku::ServerAuth),
        _ => {}
    }
    let issuer = Issuer {
        cert: issuer,
        key: signer,
    };
    Ok(params.signed_by(key, issuer)?)
}

/// A CRL naming `issuer` (name, AKI) revoking `serial`, signed with `signer`.
fn mk_crl(issuer: &X509Ref, signer: &PKeyRef<Private>, serial: &BigNum) -> Res<Vec<u8>> {
    let mut b = X509CrlBuilder::new()?;
    b.set_issuer_name(issuer.subject_name())?;
    b.set_last_update(Asn1Time::days_from_now(0)?.as_ref())?;
    b.set_next_update(Asn1Time::days_from_now(7)?.as_ref())?;
    let dummy = X509Builder::new()?;
    let ctx = dummy.x509v3_context(Some(issuer), None);
    b.append_extension(AuthorityKeyIdentifier::new().keyid(true).build(&ctx)?)?;
    b.append_extension(CrlNumber::new(BigNum::from_u32(1)?)?.build()?)?;
    let mut r = X509RevokedBuilder::new()?;
    r.set_serial_number(serial.to_asn1_integer()?.as_ref())?;
    r.set_revocation_date(Asn1Time::days_from_now(0)?.as_ref())?;
    b.add_revoked(r.build())?;
    b.sign(signer, MessageDigest::sha256())?;
    Ok(b.build()?.to_pem()?)
}

impl Pki {
    fn new(kind: CaKeyType) -> Res<Pki> {
        let dir = tempfile::tempdir()?;
        let d = dir.path().to_path_buf();
        let params = CaParams {
            kind,
            ..CaParams::default()
        };
        let ca = params.create(&d.join("keys"))?;
        let root = ca.cert().clone();
        let root_pem = d.join("root.pem");
        fs::write(&root_pem, root.to_pem()?)?;

        // The real issuance path: the client's key and CSR, the CA's issue().
        let rsa_key = make_key(KeyType::Rsa2048)?;
        let ec_key = p256_key()?;
        let mut students = Vec::new();
        let mut csrs = Vec::new();
        for (name, sid, key) in [
            ("student-rsa", "1155000001", &rsa_key),
            ("student-ec", "1155000002", &ec_key),
        ] {
            let csr = make_csr(sid, key)?;
            let csr_path = d.join(format!("{name}.csr.der"));
            fs::write(&csr_path, &csr)?;
            csrs.push((name.to_string(), csr_path));
            let issued = ca.issue(&csr)?;
            students.push(Cert::write(
                &d,
                name,
                X509::from_der(&issued.der)?,
                key,
                &root,
            )?);
        }
        // The other form of the profile (`--public-url`): a CRL
        // distribution point and an OCSP responder named in the certificate.
        {
            let mut with_urls = params.create(&d.join("keys"))?;
            with_urls.set_public_url("http://ca.example.edu:8080")?;
            let issued = with_urls.issue(&make_csr("1155000005", &rsa_key)?)?;
            students.push(Cert::write(
                &d,
                "student-urls",
                X509::from_der(&issued.der)?,
                &rsa_key,
                &root,
            )?);
        }
        let issued = ca.issue(&make_csr("1155000003", &rsa_key)?)?;
        let revoked = Cert::write(
            &d,
            "student-revoked",
            X509::from_der(&issued.der)?,
            &rsa_key,
            &root,
        )?;
        let revoked_at = now_unix()? - 60;
        let entry = certboard::ca::RevokedEntry {
            serial: issued.serial.clone(),
            at: revoked_at,
            reason: Some(certboard::ca::RevocationReason::KeyCompromise),
        };
        let crl_der = ca.crl(&[entry], 1)?.der;
        let crl_pem = d.join("crl.pem");
        fs::write(&crl_pem, X509Crl::from_der(&crl_der)?.to_pem()?)?;

        // The forger: a key of the same type as our root's that signs
        // objects naming our root (issuer name, AKI), so only the signature
        // tells them apart.
        let forger_key = match kind {
            CaKeyType::Rsa2048 => make_key(KeyType::Rsa2048)?,
            CaKeyType::P256 => p256_key()?,
        };
        let forged_crl_pem = d.join("forged-crl.pem");
        let serial = BigNum::from_hex_str(&issued.serial.to_string())?;
        fs::write(&forged_crl_pem, mk_crl(&root, &forger_key, &serial)?)?;
        // An unrelated CA, under its own name.
        let other_key = p256_key()?;
        let other_root = CertParams {
            org: Some("Elsewhere".into()),
            ..CertParams::authority("Elsewhere Root CA")
        }
        .self_signed(&other_key)?;

        let control = mk_leaf(None, "1155000004", &rsa_key, &root, ca.key())?;
        let control = Cert::write(&d, "control", control, &rsa_key, &root)?;
        let mut broken = Vec::new();
        for flaw in FLAWS {
            let (issuer, signer) = match flaw {
                Flaw::ForeignIssuer => (&other_root, other_key.as_ref()),
                Flaw::ForgedSignature => (&root, forger_key.as_ref()),
                _ => (&root, ca.key()),
            };
            let x509 = mk_leaf(Some(flaw), "1155000005", &rsa_key, issuer, signer)?;
            let name = format!("{flaw:?}");
            broken.push((flaw, Cert::write(&d, &name, x509, &rsa_key, &root)?));
        }
        Ok(Pki {
            kind,
            dir,
            ca,
            root_pem,
            students,
            csrs,
            revoked,
            crl_pem,
            crl_der,
            forged_crl_pem,
            control,
            broken,
        })
    }

    /// Every certificate that must be accepted: the real students and the
    /// control.
    fn good(&self) -> impl Iterator<Item = &Cert> {
        self.students.iter().chain(std::iter::once(&self.control))
    }
}

const KINDS: [CaKeyType; 2] = [CaKeyType::Rsa2048, CaKeyType::P256];

// ---------------------------------------------------------------------------
// pkilint

/// One pkilint finding.
#[derive(Debug)]
struct Finding {
    code: String,
    severity: String,
    line: String,
}

/// Runs a pkilint CLI at threshold INFO and parses its findings. The exit
/// code is the number of findings, which cross-checks the parse (a document
/// pkilint cannot load exits 1 with no finding line: an error here).
fn pkilint(program: &str, args: &[&str]) -> Res<Vec<Finding>> {
    let mut all = vec!["lint", "-s", "INFO", "-f", "TEXT"];
    all.extend_from_slice(args);
    let ran = run(program, &all)?;
    let findings: Vec<Finding> = ran
        .stdout
        .lines()
        .filter(|l| l.starts_with(' '))
        .map(|l| {
            let l = l.trim();
            let (code, rest) = l.split_once(" (").unwrap_or((l, ""));
            let severity = rest.split_once(')').map(|(s, _)| s).unwrap_or("?");
            Finding {
                code: code.to_string(),
                severity: severity.to_string(),
                line: l.to_string(),
            }
        })
        .collect();
    let code = ran.status.code().ok_or_else(|| format!("killed: {ran}"))?;
    if usize::try_from(code)? != findings.len().min(255) {
        return Err(format!(
            "pkilint's exit code does not match the {} findings parsed:\n{ran}",
            findings.len()
        )
        .into());
    }
    Ok(findings)
}

/// Errors for findings that are errors/warnings or unlisted notices.
fn judge(object: &str, findings: &[Finding], problems: &mut Vec<String>) {
    for f in findings {
        let accepted = ACCEPTED_PKILINT.iter().any(|(code, _)| *code == f.code);
        match f.severity.as_str() {
            "NOTICE" | "INFO" if accepted => {}
            "NOTICE" | "INFO" => problems.push(format!(
                "{object}: {} — not listed in docs/conformance.md (ACCEPTED_PKILINT)",
                f.line
            )),
            _ => problems.push(format!("{object}: {}", f.line)),
        }
    }
}

fn pkilint_check(kind: CaKeyType) -> TestResult {
    let pki = Pki::new(kind)?;
    let mut problems = Vec::new();
    let root = p(&pki.root_pem);
    let f = pkilint("lint_pkix_cert", &[root])?;
    judge(&format!("{kind:?} root"), &f, &mut problems);
    // (The revoked student has the RSA student's profile: not linted twice.)
    for s in &pki.students {
        let object = format!("{kind:?} {}", s.name);
        let f = pkilint("lint_pkix_cert", &[p(&s.pem)])?;
        judge(&object, &f, &mut problems);
        // Issuer/subject consistency (names, AKI/SKI, signature algorithm).
        let f = pkilint("lint_pkix_signer_signee_cert_chain", &[root, p(&s.pem)])?;
        judge(&format!("{object} chain"), &f, &mut problems);
    }
    // Blackboard's own certificate (the server profile).
    let bb = pki
        .ca
        .issue_blackboard(certboard::ca::DEFAULT_BLACKBOARD_NAME)?;
    let bb_pem = pki.dir.path().join("blackboard-cert.pem");
    fs::write(&bb_pem, bb.cert().to_pem()?)?;
    let object = format!("{kind:?} Blackboard certificate");
    let f = pkilint("lint_pkix_cert", &[p(&bb_pem)])?;
    judge(&object, &f, &mut problems);
    let f = pkilint("lint_pkix_signer_signee_cert_chain", &[root, p(&bb_pem)])?;
    judge(&format!("{object} chain"), &f, &mut problems);
    let f = pkilint("lint_crl", &["-t", "CRL", "-p", "PKIX", p(&pki.crl_pem)])?;
    judge(&format!("{kind:?} CRL"), &f, &mut problems);
    assert!(
        problems.is_empty(),
        "pkilint findings on what certboard issues:\n{}",
        problems.join("\n")
    );
    Ok(())
}

#[test]
fn pkilint_rsa_root_students_and_crl() -> TestResult {
    pkilint_check(CaKeyType::Rsa2048)
}

#[test]
fn pkilint_p256_root_students_and_crl() -> TestResult {
    pkilint_check(CaKeyType::P256)
}

#[test]
fn pkilint_finds_flaws_when_there_are_some() -> TestResult {
    // The linter must not pass everything: a CA:TRUE leaf without
    // keyCertSign is an RFC 5280 error it reports.
    let pki = Pki::new(CaKeyType::P256)?;
    let (_, bad) = pki
        .broken
        .iter()
        .find(|(f, _)| *f == Flaw::CaTrueLeaf)
        .ok_or("no CA:TRUE leaf")?;
    let findings = pkilint("lint_pkix_cert", &[p(&bad.pem)])?;
    assert!(
        findings
            .iter()
            .any(|f| f.severity == "ERROR" || f.severity == "WARNING"),
        "pkilint accepted a CA:TRUE leaf: {findings:?}"
    );
    Ok(())
}

#[test]
fn every_accepted_pkilint_finding_is_documented() {
    let doc = include_str!("../docs/conformance.md");
    for (code, why) in ACCEPTED_PKILINT {
        assert!(
            doc.contains(code),
            "docs/conformance.md must list the accepted pkilint finding {code} ({why})"
        );
    }
}

// ---------------------------------------------------------------------------
// OpenSSL CLI

fn openssl_verify(pki: &Pki, cert: &Cert, extra: &[&str]) -> Res<Ran> {
    let mut args = vec!["verify", "-x509_strict", "-purpose", "sslclient"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-CAfile", p(&pki.root_pem), p(&cert.pem)]);
    run("openssl", &args)
}

/// What `openssl verify` must say when it refuses each flaw; `None` for a
/// flaw it does not check.
fn openssl_refusal(flaw: Flaw) -> Option<&'static [&'static str]> {
    match flaw {
        Flaw::ServerAuthOnly => Some(&[
            "unsuitable certificate purpose",
            "unsupported certificate purpose",
        ]),
        Flaw::Expired => Some(&["certificate has expired"]),
        Flaw::ForeignIssuer => Some(&["unable to get local issuer certificate"]),
        Flaw::ForgedSignature => Some(&["certificate signature failure"]),
        // OpenSSL's sslclient purpose does not look at basicConstraints on
        // the leaf, and RFC 5280 does not forbid a CA certificate as an end
        // entity: see docs/conformance.md.
        Flaw::CaTrueLeaf => None,
    }
}

fn openssl_verify_check(kind: CaKeyType) -> TestResult {
    let pki = Pki::new(kind)?;
    for cert in pki.good() {
        let ran = openssl_verify(&pki, cert, &[])?;
        assert!(
            ran.ok() && ran.stdout.contains(": OK"),
            "{kind:?} {}: {ran}",
            cert.name
        );
    }
    for (flaw, cert) in &pki.broken {
        let Some(reasons) = openssl_refusal(*flaw) else {
            continue;
        };
        let ran = openssl_verify(&pki, cert, &[])?;
        let out = ran.output();
        assert!(!ran.ok(), "{kind:?}: openssl accepted {flaw:?}: {ran}");
        assert!(
            reasons.iter().any(|r| out.contains(r)),
            "{kind:?} {flaw:?}: refused, but not for {reasons:?}: {ran}"
        );
    }
    Ok(())
}

#[test]
fn openssl_verify_rsa_root() -> TestResult {
    openssl_verify_check(CaKeyType::Rsa2048)
}

#[test]
fn openssl_verify_p256_root() -> TestResult {
    openssl_verify_check(CaKeyType::P256)
}

#[test]
fn openssl_req_verifies_the_clients_csr() -> TestResult {
    let pki = Pki::new(CaKeyType::P256)?;
    for (name, csr) in &pki.csrs {
        let ran = run(
            "openssl",
            &["req", "-verify", "-noout", "-inform", "DER", "-in", p(csr)],
        )?;
        assert!(
            ran.ok() && ran.output().contains("verify OK"),
            "{name}: {ran}"
        );
        // The check bites: a CSR whose signature no longer matches is refused.
        let mut der = fs::read(csr)?;
        let last = der.len() - 3;
        der[last] ^= 0x01;
        let tampered = pki.dir.path().join(format!("{name}-tampered.csr.der"));
        fs::write(&tampered, der)?;
        let ran = run(
            "openssl",
            &[
                "req",
                "-verify",
                "-noout",
                "-inform",
                "DER",
                "-in",
                p(&tampered),
            ],
        )?;
        // OpenSSL 3.0's `req -verify` exits 0 even when the signature
        // fails, so its words are the verdict.
        let out = ran.output();
        assert!(
            out.contains("verify failure") && !out.contains("verify OK"),
            "{name}: tampered CSR accepted: {ran}"
        );
    }
    Ok(())
}

fn openssl_crl_check(kind: CaKeyType) -> TestResult {
    let pki = Pki::new(kind)?;
    let root = p(&pki.root_pem);
    let ran = run(
        "openssl",
        &[
            "crl",
            "-verify",
            "-noout",
            "-CAfile",
            root,
            "-in",
            p(&pki.crl_pem),
        ],
    )?;
    assert!(
        ran.ok() && ran.output().contains("verify OK"),
        "{kind:?}: {ran}"
    );
    // It lists the revoked serial.
    let ran = run(
        "openssl",
        &["crl", "-text", "-noout", "-in", p(&pki.crl_pem)],
    )?;
    let serial = pki
        .revoked
        .x509
        .serial_number()
        .to_bn()?
        .to_hex_str()?
        .to_string();
    assert!(
        ran.ok() && ran.stdout.to_uppercase().contains(&serial),
        "{kind:?}: serial {serial} not in the CRL: {ran}"
    );
    // A CRL naming our root but signed by another key is refused.
    let ran = run(
        "openssl",
        &[
            "crl",
            "-verify",
            "-noout",
            "-CAfile",
            root,
            "-in",
            p(&pki.forged_crl_pem),
        ],
    )?;
    // (OpenSSL 3.0 exits 0 here too: its words are the verdict.)
    let out = ran.output();
    assert!(
        out.contains("verify failure") && !out.contains("verify OK"),
        "{kind:?}: forged CRL accepted: {ran}"
    );
    // Path validation with our CRL: the revoked student is refused, the
    // others pass.
    let crl_args = ["-crl_check", "-CRLfile", p(&pki.crl_pem)];
    let ran = openssl_verify(&pki, &pki.revoked, &crl_args)?;
    assert!(
        !ran.ok() && ran.output().contains("certificate revoked"),
        "{kind:?}: revoked student accepted: {ran}"
    );
    for s in &pki.students {
        let ran = openssl_verify(&pki, s, &crl_args)?;
        assert!(ran.ok(), "{kind:?} {} with CRL: {ran}", s.name);
    }
    Ok(())
}

#[test]
fn openssl_crl_rsa_root() -> TestResult {
    openssl_crl_check(CaKeyType::Rsa2048)
}

#[test]
fn openssl_crl_p256_root() -> TestResult {
    openssl_crl_check(CaKeyType::P256)
}

// ---------------------------------------------------------------------------
// GnuTLS certtool

const CLIENT_AUTH_OID: &str = "1.3.6.1.5.5.7.3.2";

/// Both ways certtool validates: the chain file on its own (its last,
/// self-signed certificate is the anchor) and the leaf against a trusted CA
/// file. Ok(true) when both accept, Ok(false) when both refuse.
fn certtool_verdict(pki: &Pki, cert: &Cert) -> Res<(bool, String)> {
    let purpose = format!("--verify-purpose={CLIENT_AUTH_OID}");
    // medium: at least 112-bit security (RSA >= 2048, EC >= 224), rather
    // than certtool's lax default.
    let profile = "--verify-profile=medium";
    let chain = run(
        "certtool",
        &[
            "--verify-chain",
            &purpose,
            profile,
            "--infile",
            p(&cert.chain_pem),
        ],
    )?;
    let ca = format!("--load-ca-certificate={}", p(&pki.root_pem));
    let trusted = run(
        "certtool",
        &["--verify", &ca, &purpose, profile, "--infile", p(&cert.pem)],
    )?;
    let text = format!("{chain}\n{trusted}");
    if chain.ok() != trusted.ok() {
        return Err(format!("certtool's two modes disagree on {}:\n{text}", cert.name).into());
    }
    Ok((chain.ok(), text))
}

/// What certtool must say when it refuses each flaw; `None` for a flaw it
/// does not check (see docs/conformance.md).
fn certtool_refusal(flaw: Flaw) -> Option<&'static str> {
    match flaw {
        Flaw::ServerAuthOnly => Some("does not match the intended purpose"),
        Flaw::Expired => Some("expired certificate"),
        Flaw::ForeignIssuer => Some("issuer is unknown"),
        Flaw::ForgedSignature => Some("signature in the certificate is invalid"),
        Flaw::CaTrueLeaf => None,
    }
}

fn certtool_check(kind: CaKeyType) -> TestResult {
    let pki = Pki::new(kind)?;
    for cert in pki.good() {
        let (ok, text) = certtool_verdict(&pki, cert)?;
        assert!(ok, "{kind:?} {}: {text}", cert.name);
    }
    for (flaw, cert) in &pki.broken {
        let Some(reason) = certtool_refusal(*flaw) else {
            continue;
        };
        let (ok, text) = certtool_verdict(&pki, cert)?;
        assert!(!ok, "{kind:?}: certtool accepted {flaw:?}: {text}");
        assert!(
            text.contains(reason),
            "{kind:?} {flaw:?}: refused, but not for {reason:?}: {text}"
        );
    }
    let ca = format!("--load-ca-certificate={}", p(&pki.root_pem));
    let ran = run(
        "certtool",
        &["--verify-crl", &ca, "--infile", p(&pki.crl_pem)],
    )?;
    assert!(ran.ok(), "{kind:?} CRL: {ran}");
    let ran = run(
        "certtool",
        &["--verify-crl", &ca, "--infile", p(&pki.forged_crl_pem)],
    )?;
    assert!(!ran.ok(), "{kind:?}: forged CRL accepted: {ran}");
    Ok(())
}

#[test]
fn gnutls_certtool_rsa_root() -> TestResult {
    certtool_check(CaKeyType::Rsa2048)
}

#[test]
fn gnutls_certtool_p256_root() -> TestResult {
    certtool_check(CaKeyType::P256)
}

// ---------------------------------------------------------------------------
// rustls-webpki: what a Rust TLS server (rustls' WebPkiClientVerifier) does
// with a client certificate.

fn webpki_verify(pki: &Pki, cert: &Cert, crl: Option<&[u8]>) -> Res<Result<(), webpki::Error>> {
    let root_der = CertificateDer::from(pki.ca.cert_der().to_vec());
    let anchors = [webpki::anchor_from_trusted_cert(&root_der)?.to_owned()];
    let leaf_der = CertificateDer::from(cert.der()?);
    let leaf = webpki::EndEntityCert::try_from(&leaf_der)?;
    let crls = match crl {
        Some(der) => vec![webpki::CertRevocationList::from(
            webpki::OwnedCertRevocationList::from_der(der)?,
        )],
        None => Vec::new(),
    };
    let crl_refs: Vec<&webpki::CertRevocationList<'_>> = crls.iter().collect();
    let revocation = if crl_refs.is_empty() {
        None
    } else {
        Some(
            webpki::RevocationOptionsBuilder::new(&crl_refs)
                .map_err(|e| format!("{e:?}"))?
                .build(),
        )
    };
    Ok(leaf
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &[],
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            revocation,
            None,
        )
        .map(|_| ()))
}

fn webpki_refusal(flaw: Flaw, e: &webpki::Error) -> bool {
    use webpki::Error as E;
    match flaw {
        Flaw::ServerAuthOnly => matches!(e, E::RequiredEkuNotFoundContext(_)),
        Flaw::CaTrueLeaf => matches!(e, E::CaUsedAsEndEntity),
        Flaw::Expired => matches!(e, E::CertExpired { .. }),
        Flaw::ForeignIssuer => matches!(e, E::UnknownIssuer),
        Flaw::ForgedSignature => matches!(e, E::InvalidSignatureForPublicKey),
    }
}

fn webpki_check(kind: CaKeyType) -> TestResult {
    let pki = Pki::new(kind)?;
    for cert in pki.good() {
        let verdict = webpki_verify(&pki, cert, None)?;
        assert!(verdict.is_ok(), "{kind:?} {}: {verdict:?}", cert.name);
    }
    for (flaw, cert) in &pki.broken {
        match webpki_verify(&pki, cert, None)? {
            Ok(()) => panic!("{kind:?}: webpki accepted {flaw:?}"),
            Err(e) => assert!(
                webpki_refusal(*flaw, &e),
                "{kind:?} {flaw:?}: refused for another reason: {e:?}"
            ),
        }
    }
    // Our CRL parses and is honoured.
    let verdict = webpki_verify(&pki, &pki.revoked, Some(&pki.crl_der))?;
    assert!(
        matches!(verdict, Err(webpki::Error::CertRevoked)),
        "{kind:?}: revoked student: {verdict:?}"
    );
    for s in &pki.students {
        let verdict = webpki_verify(&pki, s, Some(&pki.crl_der))?;
        assert!(verdict.is_ok(), "{kind:?} {} with CRL: {verdict:?}", s.name);
    }
    Ok(())
}

#[test]
fn rustls_webpki_rsa_root() -> TestResult {
    webpki_check(CaKeyType::Rsa2048)
}

#[test]
fn rustls_webpki_p256_root() -> TestResult {
    webpki_check(CaKeyType::P256)
}

// ---------------------------------------------------------------------------
// A real mutual-TLS handshake: openssl s_server requiring a client
// certificate from our root, openssl s_client presenting a student's.

/// A running `openssl s_server`, killed when dropped (by its `Reaper`).
struct TlsServer {
    _child: Reaper,
    port: u16,
    /// Lines the server prints after ACCEPT (drained so it never blocks).
    _lines: mpsc::Receiver<String>,
}

fn forward_lines(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl TlsServer {
    /// Starts `s_server` requiring a client certificate that chains to
    /// `ca_file`, serving `-www` status pages.
    fn start(dir: &Path, server: &Cert, ca_file: &Path) -> Res<TlsServer> {
        // Port 0: s_server binds an ephemeral port itself and reports it as
        // `ACCEPT 127.0.0.1:PORT`, so no other process can take the port
        // between a probe and the bind (no race to retry).
        let child = Command::new(tool("openssl")?)
            .current_dir(dir)
            .args(["s_server", "-accept", "127.0.0.1:0"])
            .args(["-cert", p(&server.pem), "-key", p(&server.key_pem)])
            // -Verify: a client certificate is required;
            // -verify_return_error: a bad one ends the handshake (without
            // it s_server only logs the error and carries on).
            .args(["-Verify", "1", "-verify_return_error"])
            .args(["-CAfile", p(ca_file), "-www"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut child = Reaper(child);
        let lines = forward_lines(child.0.stdout.take().ok_or("no stdout pipe")?);
        let stderr = drain(child.0.stderr.take().ok_or("no stderr pipe")?);
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        loop {
            match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) if line.starts_with("ACCEPT") => {
                    let port = line
                        .rsplit_once(':')
                        .and_then(|(_, port)| port.trim().parse::<u16>().ok())
                        .filter(|port| *port != 0)
                        .ok_or_else(|| format!("s_server did not report its port: {line:?}"))?;
                    return Ok(TlsServer {
                        _child: child,
                        port,
                        _lines: lines,
                    });
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(
                        format!("s_server did not listen within {SERVER_START_TIMEOUT:?}").into(),
                    );
                }
                // stdout closed: it exited.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    drop(child);
                    let why = stderr.join().unwrap_or_default();
                    return Err(format!("s_server failed to start:\n{why}").into());
                }
            }
        }
    }

    /// Connects with `openssl s_client` presenting `client`, asks for the
    /// status page, and returns the client's run.
    fn connect(&self, client: &Cert, extra: &[&str]) -> Res<Ran> {
        let connect = format!("127.0.0.1:{}", self.port);
        let mut args = vec!["s_client", "-connect", &connect];
        args.extend_from_slice(&["-cert", p(&client.pem), "-key", p(&client.key_pem)]);
        // -ign_eof: send the request, then wait for the server's answer (or
        // alert) instead of hanging up at the end of our input.
        args.push("-ign_eof");
        args.extend_from_slice(extra);
        run_with(
            "openssl",
            &args,
            b"GET / HTTP/1.0\r\n\r\n",
            Duration::from_secs(30),
        )
    }
}

/// A throwaway CA and a server certificate from it, for s_server (the
/// clients do not verify it: this test is about the client certificate).
fn server_identity(dir: &Path) -> Res<Cert> {
    let ca_key = p256_key()?;
    let ca = CertParams::authority("interop throwaway server CA").self_signed(&ca_key)?;
    let key = p256_key()?;
    let server = CertParams {
        eku: Some(Eku::ServerAuth),
        key_encipherment: false,
        ..CertParams::student("localhost")
    }
    .signed_by(
        &key,
        Issuer {
            cert: &ca,
            key: &ca_key,
        },
    )?;
    Cert::write(dir, "tls-server", server, &key, &ca)
}

fn handshake_check(kind: CaKeyType) -> TestResult {
    let pki = Pki::new(kind)?;
    let server_cert = server_identity(pki.dir.path())?;
    let server = TlsServer::start(pki.dir.path(), &server_cert, &pki.root_pem)?;
    let sid = |c: &Cert| -> Res<String> {
        let cn = c
            .x509
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .ok_or("no CN")?;
        Ok(cn.data().to_string()?)
    };
    // TLS 1.3 (the default) for every student; TLS 1.2 too for the RSA one.
    let mut accepted: Vec<(&Cert, &[&str])> = pki.students.iter().map(|s| (s, &[][..])).collect();
    accepted.push((&pki.students[0], &["-tls1_2"]));
    for (student, extra) in accepted {
        let ran = server.connect(student, extra)?;
        let page = ran.output();
        assert!(
            ran.ok() && page.contains("HTTP/1.0 200 ok"),
            "{kind:?} {} {extra:?}: handshake refused: {ran}",
            student.name
        );
        // The server saw and accepted exactly this client certificate.
        let cn = sid(student)?;
        assert!(
            page.contains("Client certificate") && page.contains(&cn),
            "{kind:?} {}: the status page does not show client CN {cn}: {ran}",
            student.name
        );
    }
    // Refused, with the alert that names the reason, in TLS 1.3 and 1.2.
    for (flaw, cert) in &pki.broken {
        let Some(alert) = handshake_refusal(*flaw) else {
            continue;
        };
        for extra in [&[][..], &["-tls1_2"][..]] {
            let ran = server.connect(cert, extra)?;
            let out = ran.output();
            assert!(
                !ran.ok() && !out.contains("HTTP/1.0 200 ok"),
                "{kind:?}: s_server accepted {flaw:?} {extra:?}: {ran}"
            );
            assert!(
                out.contains(alert),
                "{kind:?} {flaw:?} {extra:?}: no {alert:?} from the server: {ran}"
            );
        }
    }
    Ok(())
}

/// The alert s_server must answer each flaw with; `None` for the one
/// OpenSSL does not check (as in [`openssl_refusal`]).
fn handshake_refusal(flaw: Flaw) -> Option<&'static str> {
    match flaw {
        Flaw::ServerAuthOnly => Some("alert unsupported certificate"),
        Flaw::Expired => Some("alert certificate expired"),
        Flaw::ForeignIssuer => Some("alert unknown ca"),
        // OpenSSL maps a certificate signature failure to decrypt_error.
        Flaw::ForgedSignature => Some("alert decrypt error"),
        Flaw::CaTrueLeaf => None,
    }
}

#[test]
fn tls_handshake_rsa_root() -> TestResult {
    handshake_check(CaKeyType::Rsa2048)
}

#[test]
fn tls_handshake_p256_root() -> TestResult {
    handshake_check(CaKeyType::P256)
}

#[test]
fn a_missing_tool_fails_with_install_advice() {
    let err = match tool("certboard-no-such-tool") {
        Ok(path) => panic!("found {}", path.display()),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("scripts/install-test-tools.sh"), "{err}");
}

#[test]
fn fixtures_cover_both_roots() -> TestResult {
    // Cheap guard that the fixtures issue what the checks above assume.
    for kind in KINDS {
        let pki = Pki::new(kind)?;
        assert_eq!(pki.kind, kind);
        let ids: Vec<Id> = pki
            .students
            .iter()
            .map(|s| s.x509.public_key().map(|k| k.id()))
            .collect::<Result<_, _>>()?;
        assert_eq!(ids, [Id::RSA, Id::EC, Id::RSA]);
        let urls = pki.students[2].x509.to_text()?;
        let urls = String::from_utf8_lossy(&urls);
        assert!(
            urls.contains("URI:http://ca.example.edu:8080/crl"),
            "{urls}"
        );
        assert!(
            urls.contains("OCSP - URI:http://ca.example.edu:8080/ocsp"),
            "{urls}"
        );
        let root_key = pki.ca.cert().public_key()?.id();
        let want = match kind {
            CaKeyType::Rsa2048 => Id::RSA,
            CaKeyType::P256 => Id::EC,
        };
        assert_eq!(root_key, want);
    }
    Ok(())
}

#[test]
fn a_hung_tool_is_killed_at_its_time_limit() -> TestResult {
    // s_server waiting for a client that never comes stands in for any tool
    // that hangs.
    let started = Instant::now();
    let args = [
        "s_server",
        "-nocert",
        "-accept",
        "127.0.0.1:0",
        "-naccept",
        "1",
    ];
    let err = match run_with("openssl", &args, b"", Duration::from_millis(500)) {
        Ok(ran) => return Err(format!("a hung s_server finished: {ran}").into()),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("killed"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    Ok(())
}
