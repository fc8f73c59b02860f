//! Test fixtures shared by the unit tests, the integration tests, the
//! benches, the examples and the fuzz targets (as rustls' hidden
//! `testing` module): one place for how a test CA is made, how the
//! protocol's [`Shared`] state is put together, how test certificates
//! are built and how a store is faked ([`FakeStore`]), so a change to any
//! of them (a new [`Storage`] method among them) is made once.
//!
//! Not part of the library's surface: production code never uses it (the
//! module is `#[doc(hidden)]`). It pulls in no test-only dependency, so it
//! takes directories as parameters instead of making temporary ones.
//!
//! The certificate builder follows rcgen: a plain parameter struct with
//! defaults ([`CertParams::student`], [`CertParams::authority`]) that a
//! test changes one field of, and verbs that read as English
//! ([`CertParams::signed_by`], [`CertParams::self_signed`]).

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssl::asn1::{Asn1Integer, Asn1Object, Asn1OctetString, Asn1Time};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Extension, X509Name, X509Ref, X509};

use crate::ca::{
    random_serial, BlackboardKeys, CaError, CaKeyType, CertificateAuthority, Issued, RootOrigin,
    DEFAULT_BLACKBOARD_NAME,
};
use crate::client::{make_csr, make_key, KeyType};
use crate::course::{GuessLimits, Window};
use crate::protocol::Shared;
use crate::store::{
    Assignment, Census, CertRow, CertStatus, CodeKey, Counts, EnrollView, Extension, Record,
    ReportRecord, Revocation, RevocationMark, RevocationReason, RosterChange, RosterEntry, Serial,
    SqliteStore, Storage, StoreError, SubmissionView, Unavailable, UploadRecord,
};
use crate::verify::Verifier;

/// The passphrase of every test CA unless a test says otherwise; the
/// end-to-end tests give it to the server binary too, so a test can open
/// the running server's root with [`CaParams::default`].
pub const PASSPHRASE: &str = "test passphrase for certboard";

/// Why a fixture could not be made. A fixture failing is a broken test
/// set-up, never the behaviour under test.
#[derive(Debug)]
#[non_exhaustive]
pub enum FixtureError {
    /// The CA could not be opened or created, refused to issue, or could
    /// not issue Blackboard's certificate.
    Ca(CaError),
    /// OpenSSL failed to make a key, a request or a certificate.
    Openssl(ErrorStack),
    /// The store could not be made.
    Store(StoreError),
}

impl fmt::Display for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FixtureError::Ca(_) => f.write_str("test fixture: the CA failed"),
            FixtureError::Openssl(_) => f.write_str("test fixture: OpenSSL failed"),
            FixtureError::Store(_) => f.write_str("test fixture: the store failed"),
        }
    }
}

impl std::error::Error for FixtureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FixtureError::Ca(e) => Some(e),
            FixtureError::Openssl(e) => Some(e),
            FixtureError::Store(e) => Some(e),
        }
    }
}

impl From<CaError> for FixtureError {
    fn from(e: CaError) -> Self {
        FixtureError::Ca(e)
    }
}

impl From<ErrorStack> for FixtureError {
    fn from(e: ErrorStack) -> Self {
        FixtureError::Openssl(e)
    }
}

impl From<StoreError> for FixtureError {
    fn from(e: StoreError) -> Self {
        FixtureError::Store(e)
    }
}

// ---------------------------------------------------------------------------
// The CA.

/// How a test CA is opened: key type, validity of what it issues and the
/// passphrase of its key. The default is what most tests want (P-256, 30
/// days, [`PASSPHRASE`]); a test changes one field:
/// `CaParams { kind: CaKeyType::Rsa2048, ..Default::default() }`.
#[derive(Debug, Clone, Copy)]
pub struct CaParams<'a> {
    /// The root key's type.
    pub kind: CaKeyType,
    /// Validity of the certificates it issues, in days.
    pub days: u32,
    /// The passphrase the root key is stored under.
    pub passphrase: &'a [u8],
}

impl Default for CaParams<'_> {
    fn default() -> Self {
        CaParams {
            kind: CaKeyType::P256,
            days: 30,
            passphrase: PASSPHRASE.as_bytes(),
        }
    }
}

impl CaParams<'_> {
    /// Opens the root in `keys_dir`, or creates it there, saying which.
    pub fn open(&self, keys_dir: &Path) -> Result<(CertificateAuthority, RootOrigin), CaError> {
        CertificateAuthority::open(keys_dir, self.passphrase, self.kind, self.days)
    }

    /// The CA whose root is in `keys_dir`, created there when missing.
    pub fn create(&self, keys_dir: &Path) -> Result<CertificateAuthority, CaError> {
        Ok(self.open(keys_dir)?.0)
    }
}

/// A CA with what the services build on it: the pinned-root verifier and
/// Blackboard's key and certificate (issued by the CA, in the same keys
/// dir).
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA.
    pub ca: Arc<CertificateAuthority>,
    /// A verifier pinned to the CA's root.
    pub verifier: Arc<Verifier>,
    /// Blackboard's key and certificate, under the default name.
    pub blackboard: Arc<BlackboardKeys>,
}

impl TestPki {
    /// Opens (or creates) the CA in `keys_dir` as `params` say, and
    /// Blackboard's keys beside it.
    pub fn create(keys_dir: &Path, params: &CaParams<'_>) -> Result<TestPki, FixtureError> {
        let ca = params.create(keys_dir)?;
        let verifier = Verifier::new(ca.cert())?;
        let (blackboard, _) =
            BlackboardKeys::open(keys_dir, DEFAULT_BLACKBOARD_NAME, Some(&ca), ca.cert())?;
        Ok(TestPki {
            ca: Arc::new(ca),
            verifier: Arc::new(verifier),
            blackboard: Arc::new(blackboard),
        })
    }

    /// A [`Shared`] serving both roles with this PKI (change it with the
    /// builder's setters).
    pub fn shared(&self) -> SharedBuilder {
        SharedBuilder {
            ca: Some(self.ca.clone()),
            verifier: Some(self.verifier.clone()),
            blackboard: Some(self.blackboard.clone()),
            ..SharedBuilder::new()
        }
    }
}

// ---------------------------------------------------------------------------
// The protocol's shared state.

/// Builds the protocol's [`Shared`] state. Defaults: no services, a fresh
/// in-memory SQLite store, admission control and legacy mode off, an
/// always-open window. Start from [`TestPki::shared`] for both services.
pub struct SharedBuilder {
    ca: Option<Arc<CertificateAuthority>>,
    verifier: Option<Arc<Verifier>>,
    blackboard: Option<Arc<BlackboardKeys>>,
    store: Option<Box<dyn Storage + Send>>,
    admission_secret: Option<Arc<Vec<u8>>>,
    legacy: bool,
    window: Window,
    renewal_grace_days: u32,
    guess_limits: GuessLimits,
    log: Option<Arc<crate::tlog::CheckpointSigner>>,
    upload: crate::protocol::UploadPolicy,
}

impl fmt::Debug for SharedBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBuilder")
            .field("ca", &self.ca.is_some())
            .field("verifier", &self.verifier.is_some())
            .field("blackboard", &self.blackboard.is_some())
            .field("store", &self.store.is_some())
            .field("admission", &self.admission_secret.is_some())
            .field("legacy", &self.legacy)
            .field("window", &self.window)
            .finish()
    }
}

impl Default for SharedBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedBuilder {
    /// Nothing served yet; see the type's defaults.
    pub fn new() -> SharedBuilder {
        SharedBuilder {
            ca: None,
            verifier: None,
            blackboard: None,
            store: None,
            admission_secret: None,
            legacy: false,
            window: Window::default(),
            renewal_grace_days: crate::course::DEFAULT_RENEWAL_GRACE_DAYS,
            guess_limits: GuessLimits::default(),
            log: None,
            upload: crate::protocol::UploadPolicy::default(),
        }
    }

    /// What Blackboard accepts of protocol version 3.
    pub fn upload(mut self, upload: crate::protocol::UploadPolicy) -> Self {
        self.upload = upload;
        self
    }

    /// Signs checkpoints (and puts log proofs in receipts) with `log`.
    pub fn log(mut self, log: Option<Arc<crate::tlog::CheckpointSigner>>) -> Self {
        self.log = log;
        self
    }

    /// Serves the CA role with `ca` (or not, with `None`).
    pub fn ca(mut self, ca: Option<Arc<CertificateAuthority>>) -> Self {
        self.ca = ca;
        self
    }

    /// Checks students' certificates with `verifier` (or not).
    pub fn verifier(mut self, verifier: Option<Arc<Verifier>>) -> Self {
        self.verifier = verifier;
        self
    }

    /// Signs Blackboard's offers and receipts with `blackboard` (or not).
    pub fn blackboard(mut self, blackboard: Option<Arc<BlackboardKeys>>) -> Self {
        self.blackboard = blackboard;
        self
    }

    /// Keeps records in `store` rather than a fresh in-memory one.
    pub fn store(mut self, store: impl Storage + Send + 'static) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// Turns admission control on with `secret` (or off, with `None`).
    pub fn admission(mut self, secret: Option<&[u8]>) -> Self {
        self.admission_secret = secret.map(|s| Arc::new(s.to_vec()));
        self
    }

    /// Serves the original lab client too.
    pub fn legacy(mut self, legacy: bool) -> Self {
        self.legacy = legacy;
        self
    }

    /// Renews certificates up to `days` after their expiry.
    pub fn renewal_grace_days(mut self, days: u32) -> Self {
        self.renewal_grace_days = days;
        self
    }

    /// Takes reports only within `window`.
    pub fn window(mut self, window: Window) -> Self {
        self.window = window;
        self
    }

    /// Bounds enrollment code guesses by `limits`.
    pub fn guess_limits(mut self, limits: GuessLimits) -> Self {
        self.guess_limits = limits;
        self
    }

    /// The state, with an in-memory store unless one was given.
    pub fn build(self) -> Result<Shared, FixtureError> {
        let store: Box<dyn Storage + Send> = match self.store {
            Some(s) => s,
            None => Box::new(SqliteStore::in_memory()?),
        };
        Ok(Shared {
            ca: self.ca,
            verifier: self.verifier,
            blackboard: self.blackboard,
            store,
            admission_secret: self.admission_secret,
            legacy: self.legacy,
            window: self.window,
            renewal_grace_days: self.renewal_grace_days,
            guess_limits: self.guess_limits,
            log: self.log,
            upload: self.upload,
            uploads: crate::protocol::UploadsInProgress::default(),
        })
    }
}

// ---------------------------------------------------------------------------
// Keys, requests and students.

/// A new RSA-2048 key (what the client makes).
pub fn rsa_key() -> Result<PKey<Private>, ErrorStack> {
    make_key(KeyType::Rsa2048)
}

/// A new P-256 key.
pub fn p256_key() -> Result<PKey<Private>, ErrorStack> {
    let group = openssl::ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(openssl::ec::EcKey::generate(&group)?)
}

/// What `ca` issues, through the real path (the client's CSR, `issue`), for
/// `sid` over `key`.
pub fn issue(
    ca: &CertificateAuthority,
    sid: &str,
    key: &PKey<Private>,
) -> Result<Issued, FixtureError> {
    Ok(ca.issue(&make_csr(sid, key)?)?)
}

/// A student enrolled through the real path: key, CSR and certificate.
#[derive(Debug)]
pub struct Student {
    /// The student's private key.
    pub key: PKey<Private>,
    /// The client's CSR, DER.
    pub csr_der: Vec<u8>,
    /// What the CA issued.
    pub issued: Issued,
}

impl Student {
    /// A new RSA-2048 key for `sid`, certified by `ca`.
    pub fn enroll(ca: &CertificateAuthority, sid: &str) -> Result<Student, FixtureError> {
        Student::enroll_with(ca, sid, rsa_key()?)
    }

    /// `key` for `sid`, certified by `ca`.
    pub fn enroll_with(
        ca: &CertificateAuthority,
        sid: &str,
        key: PKey<Private>,
    ) -> Result<Student, FixtureError> {
        let csr_der = make_csr(sid, &key)?;
        let issued = ca.issue(&csr_der)?;
        Ok(Student {
            key,
            csr_der,
            issued,
        })
    }
}

// ---------------------------------------------------------------------------
// Certificates built by hand: what the CA would never issue.

/// The basicConstraints a hand-built certificate carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraints {
    /// No basicConstraints extension at all.
    Absent,
    /// Critical `CA:FALSE` (certboard's leaf profile).
    Leaf,
    /// `CA:TRUE`, with an optional path length.
    Ca {
        /// Whether the extension is marked critical.
        critical: bool,
        /// The pathLenConstraint, when given.
        pathlen: Option<u32>,
    },
}

/// The extendedKeyUsage a hand-built certificate carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eku {
    /// TLS client authentication (what a student's certificate needs).
    ClientAuth,
    /// TLS server authentication only.
    ServerAuth,
}

/// Who signs a certificate: a CA's certificate (its name and key
/// identifier go into the new one) and key.
#[derive(Clone, Copy)]
pub struct Issuer<'a> {
    /// The issuer's certificate.
    pub cert: &'a X509Ref,
    /// The issuer's private key.
    pub key: &'a PKeyRef<Private>,
}

impl fmt::Debug for Issuer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("cert", &crate::ca::name_text(self.cert.subject_name()))
            .finish_non_exhaustive()
    }
}

impl<'a> Issuer<'a> {
    /// A test CA as the issuer: its root and root key.
    pub fn ca(ca: &'a CertificateAuthority) -> Issuer<'a> {
        Issuer {
            cert: ca.cert(),
            key: ca.key(),
        }
    }
}

/// What goes into a hand-built certificate. [`CertParams::student`] is a
/// good student certificate in certboard's profile, so each test changes
/// one thing (`CertParams { eku: None, ..CertParams::student("sid") }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertParams {
    /// The subject's common name.
    pub cn: String,
    /// An organization entry before the CN (to copy a root's subject).
    pub org: Option<String>,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// basicConstraints.
    pub constraints: Constraints,
    /// keyCertSign and cRLSign in keyUsage (beside digitalSignature, which
    /// is always there): a CA's.
    pub cert_sign: bool,
    /// keyEncipherment in keyUsage; certboard's profile has it for RSA
    /// keys.
    pub key_encipherment: bool,
    /// extendedKeyUsage, if any.
    pub eku: Option<Eku>,
}

impl CertParams {
    /// A good student certificate for `cn`: valid from a minute ago for 30
    /// days, critical CA:FALSE, digitalSignature and keyEncipherment,
    /// clientAuth.
    pub fn student(cn: &str) -> CertParams {
        let now = crate::time::now_unix();
        CertParams {
            cn: cn.to_string(),
            org: None,
            not_before: now - 60,
            not_after: now + 30 * 86_400,
            constraints: Constraints::Leaf,
            cert_sign: false,
            key_encipherment: true,
            eku: Some(Eku::ClientAuth),
        }
    }

    /// A CA certificate for `cn`: critical CA:TRUE, keyCertSign, cRLSign
    /// and digitalSignature, no extendedKeyUsage.
    pub fn authority(cn: &str) -> CertParams {
        CertParams {
            constraints: Constraints::Ca {
                critical: true,
                pathlen: None,
            },
            cert_sign: true,
            key_encipherment: false,
            eku: None,
            ..CertParams::student(cn)
        }
    }

    /// Like [`CertParams::student`], but expired yesterday.
    pub fn expired(cn: &str) -> CertParams {
        let now = crate::time::now_unix();
        CertParams {
            not_before: now - 10 * 86_400,
            not_after: now - 86_400,
            ..CertParams::student(cn)
        }
    }

    /// The certificate over `key`, signed by itself.
    pub fn self_signed(&self, key: &PKeyRef<Private>) -> Result<X509, ErrorStack> {
        self.build(key, None, key)
    }

    /// The certificate over `key`, issued and signed by `issuer`.
    pub fn signed_by(
        &self,
        key: &PKeyRef<Private>,
        issuer: Issuer<'_>,
    ) -> Result<X509, ErrorStack> {
        self.build(key, Some(issuer.cert), issuer.key)
    }

    fn build(
        &self,
        key: &PKeyRef<Private>,
        issuer: Option<&X509Ref>,
        signer: &PKeyRef<Private>,
    ) -> Result<X509, ErrorStack> {
        let mut subject = X509Name::builder()?;
        if let Some(o) = &self.org {
            subject.append_entry_by_nid(Nid::ORGANIZATIONNAME, o)?;
        }
        subject.append_entry_by_nid(Nid::COMMONNAME, &self.cn)?;
        let subject = subject.build();
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let serial = random_serial()?;
        b.set_serial_number(Asn1Integer::from_bn(&serial)?.as_ref())?;
        b.set_subject_name(&subject)?;
        match issuer {
            Some(cert) => b.set_issuer_name(cert.subject_name())?,
            None => b.set_issuer_name(&subject)?,
        }
        b.set_pubkey(key)?;
        b.set_not_before(Asn1Time::from_unix(self.not_before)?.as_ref())?;
        b.set_not_after(Asn1Time::from_unix(self.not_after)?.as_ref())?;
        match self.constraints {
            Constraints::Absent => {}
            Constraints::Leaf => b.append_extension(BasicConstraints::new().critical().build()?)?,
            Constraints::Ca { critical, pathlen } => {
                let mut bc = BasicConstraints::new();
                bc.ca();
                if critical {
                    bc.critical();
                }
                if let Some(p) = pathlen {
                    bc.pathlen(p);
                }
                b.append_extension(bc.build()?)?;
            }
        }
        let mut ku = KeyUsage::new();
        ku.critical().digital_signature();
        if self.cert_sign {
            ku.key_cert_sign().crl_sign();
        }
        if self.key_encipherment {
            ku.key_encipherment();
        }
        b.append_extension(ku.build()?)?;
        match self.eku {
            Some(Eku::ClientAuth) => {
                b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?
            }
            Some(Eku::ServerAuth) => {
                b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?
            }
            None => {}
        }
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(issuer, None))?;
        b.append_extension(ski)?;
        if let Some(cert) = issuer {
            let aki = AuthorityKeyIdentifier::new()
                .keyid(true)
                .build(&b.x509v3_context(Some(cert), None))?;
            b.append_extension(aki)?;
        }
        b.sign(signer, MessageDigest::sha256())?;
        Ok(b.build())
    }
}

/// `n` small private extensions (OIDs under 1.3.6.1.4.1.55555) of about
/// 18 bytes of DER each: what makes a certificate or a request costly to
/// parse per byte.
pub fn private_extensions(n: usize) -> Result<Vec<X509Extension>, ErrorStack> {
    (0..n)
        .map(|i| {
            let oid = Asn1Object::from_str(&format!("1.3.6.1.4.1.55555.{i}"))?;
            let value = Asn1OctetString::new_from_bytes(&[5, 0])?;
            X509Extension::new_from_der(&oid, false, &value)
        })
        .collect()
}

/// A self-signed certificate for `cn` over `key` carrying about `bytes`
/// bytes of [`private_extensions`] and nothing else: the shape whose
/// parsing costs most per byte. DER.
pub fn bloated_certificate(
    cn: &str,
    key: &PKeyRef<Private>,
    bytes: usize,
) -> Result<Vec<u8>, ErrorStack> {
    let mut name = X509Name::builder()?;
    name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    b.set_not_after(Asn1Time::days_from_now(1)?.as_ref())?;
    b.set_pubkey(key)?;
    for e in private_extensions(bytes / 18)? {
        b.append_extension(e)?;
    }
    b.sign(key, MessageDigest::sha256())?;
    b.build().to_der()
}

// ---------------------------------------------------------------------------
// A fake store.

/// A [`Storage`] with nothing in it, for tests of what drives or wraps a
/// store (the commit thread, [`crate::store::Bounded`]) rather than of an
/// engine: every read answers empty, and a commit only records its batch.
/// A test sets the fields for what it needs (a store that is down, slow,
/// refuses one record or fails its reads) and keeps a clone to look at
/// what was committed after the store is boxed: clones share the record of
/// commits.
#[derive(Debug, Clone, Default)]
pub struct FakeStore {
    /// `Some(outcome_unknown)`: every commit fails as
    /// [`StoreError::Unavailable`] with this `outcome_unknown`.
    pub down: Option<bool>,
    /// A transaction holding a report with this receipt id fails as
    /// [`StoreError::Duplicate`] (a bad record among good ones).
    pub refuse_receipt: Option<u64>,
    /// How long each commit takes before it answers (a database slow to
    /// answer).
    pub commit_delay: Duration,
    /// Every read fails as [`StoreError::Duplicate`] (an error of the store
    /// itself, for tests that it comes through a wrapper unchanged).
    pub failing_reads: bool,
    /// What was committed, shared by the clones (read it with
    /// [`FakeStore::committed_receipts`] and [`FakeStore::commits`]).
    pub log: CommitLog,
}

/// A plain HTTP/1.1 `GET target` with no body, cookie or forwarding
/// header: a test sets the fields it needs on the result.
pub fn get_request(target: &str) -> crate::ops::http::Request {
    use crate::ops::http::{Method, Request, Version};
    Request {
        method: Method::Get,
        target: target.into(),
        version: Version::Http11,
        content_type: None,
        expects_continue: false,
        body: Vec::new(),
        keep_alive: true,
        cookie: None,
        forwarded_for: None,
        real_ip: None,
    }
}

/// An upload's records as a session stages them: its chunks of
/// [`crate::store::MAX_CHUNK_ROW`] bytes, then its row.
pub fn upload_file_records(receipt_id: u64, upload_id: i64, data: &[u8]) -> Vec<Record> {
    let mut v: Vec<Record> = data
        .chunks(crate::store::MAX_CHUNK_ROW)
        .enumerate()
        .map(|(i, c)| {
            Record::Chunk(crate::store::ChunkRecord {
                upload_id,
                seq: i as u64,
                data: c.to_vec(),
            })
        })
        .collect();
    v.push(Record::Upload(crate::store::UploadRecord {
        receipt_id,
        upload_id,
        sid: "1155000001".into(),
        serial: Serial::from_der_integer(&[0x0a]),
        received_at: 1_700_000_000,
        assignment: "lab".into(),
        file_name: "a.bin".into(),
        size: data.len() as u64,
        sha256: openssl::sha::sha256(data),
        chunks: data.len().div_ceil(crate::store::MAX_CHUNK_ROW) as u64,
        late_seconds: 0,
    }));
    v
}

/// A lab report record with this receipt id, for tests that only need some
/// record to commit (the commit thread's, the batch rule's).
pub fn report_record(receipt_id: u64) -> Record {
    Record::Report(ReportRecord {
        receipt_id,
        sid: "1155000001".into(),
        serial: Serial::from_der_integer(&[1]),
        received_at: 0,
        text: "r".into(),
        origin: crate::store::Origin::Certboard,
        assignment: "lab".into(),
        late_by: None,
    })
}

/// What a [`FakeStore`] and its clones were asked to commit.
#[derive(Debug, Clone, Default)]
pub struct CommitLog {
    /// Each committed batch, in order.
    committed: Arc<Mutex<Vec<Vec<Record>>>>,
    /// How many commits were tried, failed ones too.
    tried: Arc<AtomicUsize>,
}

impl FakeStore {
    /// The receipt ids of the reports of each committed batch, in order.
    pub fn committed_receipts(&self) -> Vec<Vec<u64>> {
        let committed = self
            .log
            .committed
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        committed
            .iter()
            .map(|batch| {
                batch
                    .iter()
                    .filter_map(|r| match r {
                        Record::Report(r) => Some(r.receipt_id),
                        _ => None,
                    })
                    .collect()
            })
            .collect()
    }

    /// How many commits were tried, failed ones too.
    pub fn commits(&self) -> usize {
        self.log.tried.load(Ordering::SeqCst)
    }

    /// `answer`, unless reads fail.
    fn read<T>(&self, answer: T) -> Result<T, StoreError> {
        if self.failing_reads {
            return Err(StoreError::Duplicate("fake store: reads fail".into()));
        }
        Ok(answer)
    }
}

impl Storage for FakeStore {
    fn commit(&mut self, batch: &[Record]) -> Result<(), StoreError> {
        self.log.tried.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.commit_delay);
        if let Some(outcome_unknown) = self.down {
            return Err(StoreError::Unavailable(Unavailable {
                target: "fake@db".into(),
                outcome_unknown,
                retry_in: Duration::ZERO,
                source: None,
            }));
        }
        let refused = batch.iter().any(|r| {
            matches!((r, self.refuse_receipt), (Record::Report(r), Some(id)) if r.receipt_id == id)
        });
        if refused {
            return Err(StoreError::Duplicate("fake store: refused receipt".into()));
        }
        self.log
            .committed
            .lock()
            .map_err(|_| StoreError::Duplicate("fake store: poisoned".into()))?
            .push(batch.to_vec());
        Ok(())
    }
    fn cert_status(&mut self, _: &Serial) -> Result<CertStatus, StoreError> {
        self.read(CertStatus::Unknown)
    }
    fn revoke_serial(
        &mut self,
        _: &Serial,
        _: RevocationReason,
        _: i64,
    ) -> Result<usize, StoreError> {
        Ok(0)
    }
    fn revoke_sid(&mut self, _: &str, _: RevocationReason, _: i64) -> Result<usize, StoreError> {
        Ok(0)
    }
    fn certs(&mut self) -> Result<Vec<CertRow>, StoreError> {
        self.read(Vec::new())
    }
    fn reports(&mut self) -> Result<Vec<ReportRecord>, StoreError> {
        self.read(Vec::new())
    }
    fn next_crl_number(&mut self) -> Result<u64, StoreError> {
        Ok(1)
    }
    fn import_roster(&mut self, _: &[crate::store::Student]) -> Result<RosterChange, StoreError> {
        Ok(RosterChange::default())
    }
    fn roster(&mut self) -> Result<Vec<RosterEntry>, StoreError> {
        self.read(Vec::new())
    }
    fn enrollment_view(&mut self, _: &str) -> Result<EnrollView, StoreError> {
        self.read(EnrollView {
            roster_on: false,
            on_roster: false,
            code: None,
        })
    }
    fn store_codes(
        &mut self,
        _: &[(String, CodeKey)],
        _: i64,
        _: bool,
    ) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
    fn counts(&mut self) -> Result<Counts, StoreError> {
        self.read(Counts::default())
    }
    fn record_window(&mut self, _: Option<i64>, _: Option<i64>) -> Result<(), StoreError> {
        Ok(())
    }
    fn recorded_window(&mut self) -> Result<(Option<i64>, Option<i64>), StoreError> {
        self.read((None, None))
    }
    fn census(&mut self, _: i64) -> Result<Census, StoreError> {
        self.read(Census::default())
    }
    fn revocations(&mut self) -> Result<Vec<Revocation>, StoreError> {
        self.read(Vec::new())
    }
    fn revocation_mark(&mut self) -> Result<RevocationMark, StoreError> {
        self.read(RevocationMark::default())
    }
    fn uploads(&mut self) -> Result<Vec<UploadRecord>, StoreError> {
        self.read(Vec::new())
    }
    fn upload_chunk(&mut self, _: i64, _: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(None)
    }
    fn staged_chunks(&mut self) -> Result<u64, StoreError> {
        self.read(0)
    }
    fn discard_orphan_chunks(&mut self, _: i64) -> Result<u64, StoreError> {
        Ok(0)
    }
    fn check(&mut self) -> Result<(), StoreError> {
        self.read(())
    }
    fn put_assignment(&mut self, _: &Assignment) -> Result<(), StoreError> {
        Ok(())
    }
    fn assignments(&mut self) -> Result<Vec<Assignment>, StoreError> {
        self.read(Vec::new())
    }
    fn submission_view(&mut self, _: &str, _: &str) -> Result<SubmissionView, StoreError> {
        self.read(SubmissionView::default())
    }
    fn extend(&mut self, _: &str, _: &str, _: i64, _: i64) -> Result<(), StoreError> {
        Ok(())
    }
    fn extensions(&mut self) -> Result<Vec<Extension>, StoreError> {
        self.read(Vec::new())
    }
    fn drop_student(&mut self, _: &str, _: i64) -> Result<bool, StoreError> {
        Ok(false)
    }
    fn set_course_setting(&mut self, _: &str, _: Option<&str>) -> Result<(), StoreError> {
        Ok(())
    }
    fn course_setting(&mut self, _: &str) -> Result<Option<String>, StoreError> {
        self.read(None)
    }
    fn log_head(&mut self) -> Result<crate::store::tlog::Head, StoreError> {
        self.read(crate::store::tlog::Head {
            size: 0,
            root: crate::tlog::merkle::empty_root(),
        })
    }
    fn log_nodes(
        &mut self,
        ids: &[crate::tlog::NodeId],
    ) -> Result<Vec<crate::tlog::Hash>, StoreError> {
        // The empty tree has no nodes.
        match ids.first() {
            Some(id) => Err(StoreError::Log(crate::tlog::TreeError::MissingNode(*id))),
            None => self.read(Vec::new()),
        }
    }
    fn log_entries(&mut self, _: u64, _: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(Vec::new())
    }
    fn log_index_of(&mut self, _: &str) -> Result<Option<u64>, StoreError> {
        self.read(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_student_certificate_built_here_verifies_and_an_expired_one_does_not(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let ca = CaParams::default().create(dir.path())?;
        let key = rsa_key()?;
        let verifier = Verifier::new(ca.cert())?;
        let good = CertParams::student("alice").signed_by(&key, Issuer::ca(&ca))?;
        assert_eq!(verifier.verify("alice", &good.to_der()?, &[]).err(), None);
        let expired = CertParams::expired("alice").signed_by(&key, Issuer::ca(&ca))?;
        assert!(verifier.verify("alice", &expired.to_der()?, &[]).is_err());
        let selfie = CertParams::student("alice").self_signed(&key)?;
        assert!(verifier.verify("alice", &selfie.to_der()?, &[]).is_err());
        Ok(())
    }
}
