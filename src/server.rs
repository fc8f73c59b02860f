//! Assembles a running server from its configuration: the CA and the
//! verifier, the store, the listeners and one reactor per thread.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};
use openssl::x509::X509;

use crate::ca::{
    self, BlackboardKeys, CaError, CaKeyType, CertificateAuthority, KeysOrigin, RootOrigin,
};
use crate::config::{self, SecretError};
use crate::course::{GuessLimits, Window};
use crate::ops::crl_cache::CrlCache;
use crate::ops::metrics::Metrics;
use crate::ops::store_gauges::{self, StoreGauges};
use crate::ops::Ops;
use crate::protocol::{ServiceKind, Shared};
use crate::reactor::commit::Committer;
pub use crate::reactor::delay::DEFAULT_COMMIT_DELAY_MS;
use crate::reactor::offload::{self, Workers};
use crate::reactor::{self, HttpConnLimits, Limits, Reactor};
use crate::report_log::{self, ReportLog};
use crate::store::{Bounded, Location, Storage, StoreError, DB_FILE, LOOP_STORE_WAIT};
use crate::verify::Verifier;

pub mod witness;
pub mod witnessing;

/// Which services this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Both the CA and Blackboard.
    All,
    /// The CA only.
    Ca,
    /// Blackboard only (needs the root certificate).
    Blackboard,
}

/// Everything the server is started with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// CA listen address.
    pub ca_listen: SocketAddr,
    /// Blackboard listen address.
    pub blackboard_listen: SocketAddr,
    /// Which services to run.
    pub role: Role,
    /// Where the root key and certificate live.
    pub keys_dir: PathBuf,
    /// Where the database lives.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL: the store is there instead of in `data_dir`
    /// (several hosts on one database).
    pub database: Option<String>,
    /// Passphrase file (else the environment, else a prompt).
    pub passphrase_file: Option<PathBuf>,
    /// Key type of a new root.
    pub ca_key_type: CaKeyType,
    /// Root certificate for a Blackboard running alone.
    pub ca_cert: Option<PathBuf>,
    /// The name in Blackboard's certificate (CN and SAN dNSName).
    pub blackboard_name: String,
    /// Validity of student certificates, days.
    pub validity_days: u32,
    /// Days after expiry a certificate still renews (0: none).
    pub renewal_grace_days: u32,
    /// Admission-control secret file.
    pub admission_secret_file: Option<PathBuf>,
    /// Serve the original lab client too.
    pub legacy: bool,
    /// Reactor threads.
    pub reactors: usize,
    /// How long a reactor may hold a commit batch back while other
    /// exchanges owe their records (`--commit-delay`; zero: never).
    pub commit_delay: Duration,
    /// Connection limits.
    pub limits: Limits,
    /// When Blackboard takes reports.
    pub window: Window,
    /// What Blackboard accepts of protocol version 3 (`--min-protocol`,
    /// `--max-submission`).
    pub upload: crate::protocol::UploadPolicy,
    /// How many enrollment code guesses the CA takes per source.
    pub guess_limits: GuessLimits,
    /// Address of the HTTP listener (OCSP, CRL, health, metrics); off
    /// when `None`.
    pub http_listen: Option<SocketAddr>,
    /// Limits of the HTTP listener's requests and connections.
    pub http_limits: HttpConnLimits,
    /// Base URL of the HTTP listener as relying parties reach it: every
    /// certificate issued then names `URL/crl` and `URL/ocsp`.
    pub public_url: Option<String>,
    /// The transparency log's origin line and key name (default: from the
    /// CA's organisation, `<O>/certboard-log`).
    pub log_origin: Option<String>,
    /// Address of the staff web interface's listener; off when `None`.
    pub staff_listen: Option<SocketAddr>,
    /// How the staff interface runs (sessions, cookie, login throttle).
    pub staff: crate::staff::StaffConfig,
    /// Witnesses asked to cosign each checkpoint (`--witness`), off the
    /// loops; none by default.
    pub witnesses: witnessing::Witnesses,
}

/// Why the server could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// The CA could not be opened.
    Ca(CaError),
    /// A secret could not be read.
    Secret(SecretError),
    /// A secret file named by a flag could not be used.
    SecretFile {
        /// The flag, e.g. `--admission-secret-file`.
        flag: &'static str,
        /// Why.
        source: SecretError,
    },
    /// The store could not be opened.
    Store(StoreError),
    /// The root certificate for Blackboard is unusable.
    RootCert {
        /// Where it came from.
        path: PathBuf,
        /// What is wrong with it.
        problem: RootCertError,
    },
    /// A listener could not be bound or the loop failed.
    Io(String, std::io::Error),
    /// An admin command found no CA root in the keys dir.
    NoRoot(PathBuf),
    /// `--reactors 0`.
    NoReactors,
    /// A reactor thread panicked (its number).
    ReactorPanicked(usize),
    /// The keys dir has no root but the database holds certificates: a
    /// new root would orphan them all.
    ForeignDatabase {
        /// Certificates in the database.
        certs: u64,
        /// The keys dir given.
        keys_dir: PathBuf,
        /// The data dir given.
        data_dir: PathBuf,
    },
    /// The OCSP responder could not be set up with the CA's key.
    Ocsp(crate::ops::ocsp::OcspError),
    /// This host would append to the database's transparency log without
    /// its key: receipts without proofs, or a second log.
    LogKeyMissing {
        /// The key file looked for.
        path: PathBuf,
        /// The verifier key the database's log is signed with, if known.
        recorded: Option<String>,
        /// Whether this host is Blackboard alone (no CA key here).
        blackboard_only: bool,
    },
    /// This host's log key is not the one the database's log is signed with.
    LogKeyMismatch {
        /// The database's.
        recorded: String,
        /// This host's.
        here: String,
    },
}

/// What is wrong with a root certificate.
#[derive(Debug)]
#[non_exhaustive]
pub enum RootCertError {
    /// The file could not be read.
    Read(std::io::Error),
    /// The file is not a PEM certificate.
    NotPem,
    /// With `--role all`, a `--ca-cert` that is not the CA's own root.
    NotThisCa,
    /// OpenSSL would not build a trust store from it.
    Unusable(openssl::error::ErrorStack),
}

impl fmt::Display for RootCertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootCertError::Read(e) => write!(f, "{e}"),
            RootCertError::NotPem => write!(f, "not a PEM certificate"),
            RootCertError::NotThisCa => write!(
                f,
                "is not this CA's root; with --role all Blackboard trusts the CA's own root \
                 (drop --ca-cert, or run --role blackboard alone)"
            ),
            RootCertError::Unusable(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RootCertError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RootCertError::Read(e) => Some(e),
            RootCertError::Unusable(e) => Some(e),
            RootCertError::NotPem | RootCertError::NotThisCa => None,
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Ca(e) => write!(f, "CA: {e}"),
            ServerError::LogKeyMissing {
                path,
                recorded,
                blackboard_only,
            } => {
                write!(
                    f,
                    "no transparency log key at {}: every host that accepts submissions or \
                     issues certificates appends to the database's one log and signs its \
                     checkpoints, so it needs the log's key",
                    path.display()
                )?;
                if let Some(vkey) = recorded {
                    write!(f, " (the database's log is signed by {vkey})")?;
                }
                if *blackboard_only {
                    write!(
                        f,
                        ": run `server blackboard-cert --out DIR` where the CA key is (it writes \
                         {} beside Blackboard's key) and copy it into this host's keys dir",
                        crate::tlog::key::HOST_LOG_KEY_FILE
                    )
                } else {
                    write!(
                        f,
                        ": copy keys/{} from the host that made it, beside ca-key.pem",
                        crate::tlog::key::LOG_KEY_FILE
                    )
                }
            }
            ServerError::LogKeyMismatch { recorded, here } => write!(
                f,
                "this host's transparency log key {here} is not the one the database's log is \
                 signed with ({recorded}): two keys would make two logs of one database; copy \
                 the log key from the host that made it"
            ),
            ServerError::Secret(e) => write!(f, "{e}"),
            ServerError::SecretFile { flag, source } => write!(f, "{flag}: {source}"),
            ServerError::Store(e) => write!(f, "store: {e}"),
            ServerError::RootCert { path, problem } => {
                write!(f, "root certificate {}: {problem}", path.display())
            }
            ServerError::Io(what, e) => write!(f, "{what}: {e}"),
            ServerError::NoRoot(dir) => write!(
                f,
                "no CA root in {} (ca-key.pem and ca-cert.pem); check --keys-dir, or start the server once to create it",
                dir.display()
            ),
            ServerError::NoReactors => write!(f, "--reactors must be at least 1"),
            ServerError::ReactorPanicked(i) => write!(f, "reactor thread {i} panicked"),
            ServerError::ForeignDatabase {
                certs,
                keys_dir,
                data_dir,
            } => write!(
                f,
                "the database in {} holds {certs} certificates from another root: wrong \
                 --keys-dir? ({} has no CA root; refusing to create a new one beside them)",
                data_dir.display(),
                keys_dir.display()
            ),
            ServerError::Ocsp(e) => write!(f, "OCSP responder: {e}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Ca(e) => Some(e),
            ServerError::Secret(e) | ServerError::SecretFile { source: e, .. } => Some(e),
            ServerError::Store(e) => Some(e),
            ServerError::RootCert { problem, .. } => Some(problem),
            ServerError::Io(_, e) => Some(e),
            ServerError::Ocsp(e) => Some(e),
            ServerError::NoRoot(_)
            | ServerError::NoReactors
            | ServerError::ReactorPanicked(_)
            | ServerError::ForeignDatabase { .. }
            | ServerError::LogKeyMissing { .. }
            | ServerError::LogKeyMismatch { .. } => None,
        }
    }
}

impl From<CaError> for ServerError {
    fn from(e: CaError) -> Self {
        ServerError::Ca(e)
    }
}
impl From<SecretError> for ServerError {
    fn from(e: SecretError) -> Self {
        ServerError::Secret(e)
    }
}
impl From<StoreError> for ServerError {
    fn from(e: StoreError) -> Self {
        ServerError::Store(e)
    }
}

/// Opens an existing CA root for an admin command, which must never create
/// one (a new root would silently orphan every certificate issued).
pub fn open_existing_ca(
    keys_dir: &std::path::Path,
    passphrase_file: Option<&std::path::Path>,
) -> Result<CertificateAuthority, ServerError> {
    if !ca::root_exists(keys_dir) {
        return Err(ServerError::NoRoot(keys_dir.to_path_buf()));
    }
    // The key type and validity only matter when issuing or creating.
    open_ca(keys_dir, passphrase_file, CaKeyType::Rsa2048, 1)
}

/// Opens the CA from the keys dir, asking for the passphrase as configured.
pub fn open_ca(
    keys_dir: &std::path::Path,
    passphrase_file: Option<&std::path::Path>,
    kind: CaKeyType,
    validity_days: u32,
) -> Result<CertificateAuthority, ServerError> {
    let pass = ca_passphrase(keys_dir, passphrase_file)?;
    open_ca_with(keys_dir, &pass, kind, validity_days)
}

/// The log's origin: the one given, or `<the root's O (or CN)>/certboard-log`.
pub fn log_origin(ca: &CertificateAuthority, given: Option<&str>) -> String {
    log_origin_of(ca.cert(), given)
}

/// [`log_origin`] from the root certificate alone (a Blackboard-only host).
fn log_origin_of(root: &X509, given: Option<&str>) -> String {
    if let Some(o) = given {
        return o.to_string();
    }
    let name = root.subject_name();
    let first = |nid| {
        name.entries_by_nid(nid)
            .next()
            .and_then(|e| e.data().to_string().ok())
    };
    let base = first(openssl::nid::Nid::ORGANIZATIONNAME)
        .or_else(|| first(openssl::nid::Nid::COMMONNAME))
        .unwrap_or_default();
    crate::tlog::key::default_origin(&base)
}

/// Opens (or creates) the log key beside the root, under its passphrase.
fn open_log_with(
    keys_dir: &std::path::Path,
    pass: &[u8],
    ca: &CertificateAuthority,
    origin: Option<&str>,
) -> Result<crate::tlog::NoteSigner, ServerError> {
    Ok(crate::tlog::key::open_log_key(
        keys_dir,
        pass,
        &log_origin(ca, origin),
    )?)
}

/// The log key of an existing CA, for the admin commands (`server log`).
pub fn open_existing_log(
    keys_dir: &std::path::Path,
    passphrase_file: Option<&std::path::Path>,
    origin: Option<&str>,
) -> Result<crate::tlog::NoteSigner, ServerError> {
    if !ca::root_exists(keys_dir) {
        return Err(ServerError::NoRoot(keys_dir.to_path_buf()));
    }
    let pass = ca_passphrase(keys_dir, passphrase_file)?;
    let ca = open_ca_with(keys_dir, &pass, CaKeyType::Rsa2048, 1)?;
    open_log_with(keys_dir, &pass, &ca, origin)
}

/// The CA passphrase as configured, refused here when too short for a new
/// root: read (and judged) before anything durable is made, so a start
/// that fails on it leaves no database or keys behind.
/// The passphrase of an existing CA's keys (the admin commands').
pub fn ca_passphrase_of(
    keys_dir: &std::path::Path,
    passphrase_file: Option<&std::path::Path>,
) -> Result<Vec<u8>, ServerError> {
    ca_passphrase(keys_dir, passphrase_file)
}

fn ca_passphrase(
    keys_dir: &std::path::Path,
    passphrase_file: Option<&std::path::Path>,
) -> Result<Vec<u8>, ServerError> {
    let creating = !ca::root_exists(keys_dir);
    let pass =
        config::ca_passphrase(passphrase_file, creating).map_err(|e| match passphrase_file {
            Some(_) => ServerError::SecretFile {
                flag: "--ca-passphrase-file",
                source: e,
            },
            None => ServerError::Secret(e),
        })?;
    if creating && pass.len() < ca::MIN_PASSPHRASE_LEN {
        return Err(ServerError::Ca(CaError::WeakPassphrase));
    }
    Ok(pass)
}

/// Opens (or creates) the CA root in `keys_dir` under `pass`, logging which.
fn open_ca_with(
    keys_dir: &std::path::Path,
    pass: &[u8],
    kind: CaKeyType,
    validity_days: u32,
) -> Result<CertificateAuthority, ServerError> {
    let (ca, origin) = CertificateAuthority::open(keys_dir, pass, kind, validity_days)?;
    match origin {
        RootOrigin::Created => info!(
            "created a new {} CA root in {} ({})",
            match kind {
                CaKeyType::Rsa2048 => "RSA-2048",
                CaKeyType::P256 => "P-256",
            },
            keys_dir.display(),
            ca::name_text(ca.cert().subject_name())
        ),
        RootOrigin::Loaded => info!(
            "loaded the CA root from {} ({})",
            keys_dir.display(),
            ca::name_text(ca.cert().subject_name())
        ),
    }
    Ok(ca)
}

/// A path made absolute against the working directory, for the log (a
/// relative path says nothing about which directory it meant).
fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn read_root(path: &std::path::Path) -> Result<X509, ServerError> {
    let bad = |problem| ServerError::RootCert {
        path: path.to_path_buf(),
        problem,
    };
    let pem = std::fs::read(path).map_err(|e| bad(RootCertError::Read(e)))?;
    X509::from_pem(&pem).map_err(|_| bad(RootCertError::NotPem))
}

/// The store a reactor reads on its loop. PostgreSQL answers over the
/// network: its calls run on a reader thread of their own and the loop
/// waits for each at most [`LOOP_STORE_WAIT`] ([`Bounded`]), so a database
/// that stops answering refuses what needs it and stalls nothing else.
/// SQLite answers from the local disk and is used as it is.
fn loop_store(location: &Location) -> Result<Box<dyn Storage + Send>, ServerError> {
    let store = location.open()?;
    Ok(match location {
        Location::Sqlite(_) => store,
        Location::Postgres(_) => Box::new(
            Bounded::new(store, location.to_string(), LOOP_STORE_WAIT)
                .map_err(|e| ServerError::Io("starting the store's reader thread".into(), e))?,
        ),
    })
}

/// One reactor's listeners, bound.
struct ReactorListeners {
    frames: Vec<(ServiceKind, std::net::TcpListener)>,
    http: Option<std::net::TcpListener>,
}

/// Binds every listener of every reactor: the first reactor the addresses
/// configured, the others the addresses it obtained (port 0 resolved), with
/// SO_REUSEPORT when there are several. Done before anything durable is
/// made, so that an address in use or not this host's fails a first start
/// with nothing left behind. Also returns the HTTP listener's address.
fn bind_listeners(
    wanted: &[(ServiceKind, SocketAddr)],
    http: Option<SocketAddr>,
    reactors: usize,
) -> Result<(Vec<ReactorListeners>, Option<SocketAddr>), ServerError> {
    let reuse = reactors > 1;
    let mut frames_at: Vec<SocketAddr> = wanted.iter().map(|(_, a)| *a).collect();
    let mut http_at = http;
    let mut all = Vec::with_capacity(reactors);
    for i in 0..reactors {
        let one = |addr: SocketAddr, what: &str| {
            let bound = if reuse && i == 0 {
                reactor::bind_first_shared(addr)
            } else {
                reactor::bind(addr, reuse)
            };
            bound.map_err(|e| ServerError::Io(format!("cannot listen on {addr} for {what}"), e))
        };
        let mut frames = Vec::with_capacity(wanted.len());
        for ((kind, _), addr) in wanted.iter().zip(&frames_at) {
            frames.push((*kind, one(*addr, kind.name())?));
        }
        let http_listener = http_at.map(|a| one(a, "http")).transpose()?;
        if i == 0 {
            let local = |l: &std::net::TcpListener| {
                l.local_addr()
                    .map_err(|e| ServerError::Io("local address".into(), e))
            };
            frames_at = frames
                .iter()
                .map(|(_, l)| local(l))
                .collect::<Result<_, _>>()?;
            http_at = http_listener.as_ref().map(local).transpose()?;
        }
        all.push(ReactorListeners {
            frames,
            http: http_listener,
        });
    }
    Ok((all, http_at))
}

/// What a start made in the keys and data dirs, removed again when the
/// start fails after making it (a backstop: the inputs are checked first).
/// Each dir is remembered as it was: missing (then the outermost missing
/// ancestor this start would create goes), or its entries.
struct Leftovers {
    dirs: Vec<(PathBuf, Before)>,
    keep: bool,
}

enum Before {
    /// The dir did not exist: this is the outermost one of its path that
    /// did not either.
    Missing(PathBuf),
    /// The dir held these entries.
    Held(std::collections::HashSet<std::ffi::OsString>),
}

impl Leftovers {
    fn snapshot(dirs: &[&std::path::Path]) -> Leftovers {
        let dirs = dirs
            .iter()
            .map(|dir| {
                let before = match std::fs::read_dir(dir) {
                    Ok(entries) => Before::Held(
                        entries
                            .filter_map(|e| e.ok().map(|e| e.file_name()))
                            .collect(),
                    ),
                    Err(_) => {
                        let mut top = dir.to_path_buf();
                        while let Some(parent) = top.parent() {
                            if parent.as_os_str().is_empty() || parent.exists() {
                                break;
                            }
                            top = parent.to_path_buf();
                        }
                        Before::Missing(top)
                    }
                };
                (dir.to_path_buf(), before)
            })
            .collect();
        Leftovers { dirs, keep: false }
    }

    /// The start succeeded: what it made stays.
    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let remove = |path: &std::path::Path| {
            let gone = match std::fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
                Ok(_) => std::fs::remove_file(path),
                Err(_) => return,
            };
            match gone {
                Ok(()) => info!(
                    "removed {}: made by this start, which failed",
                    path.display()
                ),
                Err(e) => warn!(
                    "could not remove {} (made by this start, which failed): {e}",
                    path.display()
                ),
            }
        };
        for (dir, before) in &self.dirs {
            match before {
                Before::Missing(top) => remove(top),
                Before::Held(names) => {
                    let Ok(entries) = std::fs::read_dir(dir) else {
                        continue;
                    };
                    for entry in entries.flatten() {
                        if !names.contains(&entry.file_name()) {
                            remove(&entry.path());
                        }
                    }
                }
            }
        }
    }
}

/// A server with its listeners bound, ready to run.
#[derive(Debug)]
pub struct Server {
    reactors: Vec<Reactor>,
    committer: Committer,
    reports: ReportLog,
    addrs: Vec<(ServiceKind, SocketAddr)>,
    root_fingerprint: String,
    http_addr: Option<SocketAddr>,
    staff_addr: Option<SocketAddr>,
    /// Reads the store into `/metrics`' gauges while the server lives.
    _gauges: StoreGauges,
    /// Asks the witnesses to cosign while the server lives.
    _witnessing: Option<witnessing::Witnessing>,
}

impl Server {
    /// Opens everything and binds the listeners; nothing is served yet.
    pub fn bind(cfg: &ServerConfig) -> Result<Server, ServerError> {
        if cfg.reactors == 0 {
            return Err(ServerError::NoReactors);
        }
        let serve_ca = cfg.role != Role::Blackboard;
        let serve_bb = cfg.role != Role::Ca;
        // Every input that can fail is checked, and every listener bound,
        // before anything durable (a database, a root) is made: a failed
        // first start leaves the dirs as it found them (issue 22, 14). What
        // can still fail later is undone by `made` unless the start succeeds.
        let made = Leftovers::snapshot(&[&cfg.keys_dir, &cfg.data_dir]);
        // An existing root is opened (its passphrase tried) now; a new
        // one's passphrase is read and judged now, the root made only after
        // the store's check.
        let mut early_ca = None;
        let mut new_root_pass = None;
        let mut log_pass = None;
        if serve_ca {
            let pass = ca_passphrase(&cfg.keys_dir, cfg.passphrase_file.as_deref())?;
            log_pass = Some(pass.clone());
            if ca::root_exists(&cfg.keys_dir) {
                early_ca = Some(open_ca_with(
                    &cfg.keys_dir,
                    &pass,
                    cfg.ca_key_type,
                    cfg.validity_days,
                )?);
            } else {
                new_root_pass = Some(pass);
            }
        }
        // The root Blackboard trusts: given, or (Blackboard alone) the one
        // in the keys dir; with the CA here, its own.
        let given_root = match (&cfg.ca_cert, serve_ca) {
            (Some(path), _) => Some(read_root(path)?),
            (None, false) => Some(read_root(&ca::root_paths(&cfg.keys_dir).1)?),
            (None, true) => None,
        };
        if let (true, true, Some(path), Some(given)) =
            (serve_ca, serve_bb, &cfg.ca_cert, &given_root)
        {
            // A root about to be made is never the one given.
            let same = early_ca
                .as_ref()
                .is_some_and(|ca| given.to_der().ok().as_deref() == Some(ca.cert_der()));
            if !same {
                return Err(ServerError::RootCert {
                    path: path.clone(),
                    problem: RootCertError::NotThisCa,
                });
            }
        }
        let admission_secret = match &cfg.admission_secret_file {
            Some(p) => Some(Arc::new(config::read_admission_secret(p).map_err(
                |source| ServerError::SecretFile {
                    flag: "--admission-secret-file",
                    source,
                },
            )?)),
            None => None,
        };
        let mut wanted = Vec::new();
        if serve_ca {
            wanted.push((ServiceKind::Ca, cfg.ca_listen));
        }
        if serve_bb {
            wanted.push((ServiceKind::Blackboard, cfg.blackboard_listen));
        }
        let (bound, http_addr) = bind_listeners(&wanted, cfg.http_listen, cfg.reactors)?;
        // The staff listener is the first reactor's only: a few staff
        // members, whose requests all run on the one worker pool anyway.
        let mut staff_listener = cfg
            .staff_listen
            .map(|addr| {
                reactor::bind(addr, false)
                    .map_err(|e| ServerError::Io(format!("cannot listen on {addr} for staff"), e))
            })
            .transpose()?;
        let staff_addr = staff_listener
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()
            .map_err(|e| ServerError::Io("local address".into(), e))?;
        // Then the store: a bad URL, a refused login or a foreign database
        // stops the start before anything (a new CA root) is made.
        let location = Location::from_flags(&cfg.data_dir, cfg.database.as_deref());
        let had_db = match &location {
            Location::Sqlite(dir) => dir.join(DB_FILE).exists(),
            Location::Postgres(_) => true,
        };
        let mut writer = location.open()?;
        info!("store: {location}");
        let keys_dir = absolute(&cfg.keys_dir);
        let data_dir = absolute(&cfg.data_dir);
        // Read what the data dir holds before any root is made: started
        // from the wrong directory, the server must not create a second CA
        // beside someone's certificates.
        let census_at = crate::time::now_unix();
        let census = writer.census(census_at)?;
        if serve_ca && !ca::root_exists(&cfg.keys_dir) && census.certs > 0 {
            return Err(ServerError::ForeignDatabase {
                certs: census.certs,
                keys_dir,
                data_dir,
            });
        }
        info!(
            "keys dir {}; data dir {} ({}): {} certificate(s), {} report(s), {} student(s) on the roster",
            keys_dir.display(),
            data_dir.display(),
            if had_db { "existing database" } else { "new database" },
            census.certs,
            census.reports,
            census.roster
        );
        if serve_ca && census.roster == 0 {
            warn!(
                "no roster: anyone can enroll for any SID (import one with `server roster import \
                 FILE.csv`; the running server follows it)"
            );
        }
        if serve_bb {
            info!("submissions: {}", cfg.window.describe());
            writer.record_window(cfg.window.open, cfg.window.close)?;
            // Uploads a crash cut off. Only those older than one exchange
            // deadline: on PostgreSQL another host may be receiving one now.
            let cut = crate::time::now_unix()
                .saturating_sub(i64::try_from(cfg.limits.exchange_deadline.as_secs()).unwrap_or(0));
            match writer.discard_orphan_chunks(cut) {
                Ok(0) => {}
                Ok(n) => info!("removed {n} staged chunk(s) of uploads cut off before this start"),
                Err(e) => warn!("could not remove abandoned uploads' chunks: {e}"),
            }
            let lab = crate::assignment::lab_at_start(&mut *writer, &cfg.window)?;
            let zone = writer.course_setting(crate::store::TIMEZONE_SETTING)?;
            info!(
                "{} go to {} (server assignment edit lab ... changes it live)",
                if cfg.upload.min_protocol >= 3 {
                    "lab reports (version 2 refused: --min-protocol 3; the lab run hands its \
                     report in as a file)"
                } else {
                    "version 2 reports"
                },
                crate::assignment::describe(&lab, zone.as_deref())
            );
            // A restart flag is given again at every start, so a close time
            // in the past is not refused (the server would no longer start
            // after the deadline), but never taken silently either.
            if cfg.window.close.is_some() {
                let now = crate::time::now_unix();
                if let Err(closed) = crate::assignment::decide(&lab, None, zone.as_deref(), now) {
                    if !matches!(closed, crate::assignment::Refused::NotYetOpen { .. }) {
                        warn!(
                            "--submissions-close is in the past: every report to {} is refused \
                             ({closed}); extensions still apply",
                            lab.id
                        );
                    }
                }
            }
        }
        let opened = match (early_ca, new_root_pass) {
            (Some(ca), _) => Some(ca),
            (None, Some(pass)) => Some(open_ca_with(
                &cfg.keys_dir,
                &pass,
                cfg.ca_key_type,
                cfg.validity_days,
            )?),
            (None, None) => None,
        };
        let ca = if let Some(mut ca) = opened {
            if let Some(url) = &cfg.public_url {
                ca.set_public_url(url)?;
            }
            Some(Arc::new(ca))
        } else {
            None
        };
        let root = match (&ca, given_root) {
            (Some(ca), _) => ca.cert().clone(),
            (None, Some(root)) => root,
            // Not reached: without the CA here the root was read above.
            (None, None) => return Err(ServerError::NoRoot(cfg.keys_dir.clone())),
        };
        // One database, one log, one key: every host appends (certificates
        // or submissions) and signs checkpoints with it. The CA host keeps
        // it beside the root under its passphrase (made on the first start
        // of a database that records none); a Blackboard-only host holds
        // the copy `server blackboard-cert` writes. The key is recorded in
        // the database, and a host with another (or none) is refused.
        let recorded = writer.course_setting(crate::tlog::key::LOG_KEY_SETTING)?;
        let signer = match (&ca, &log_pass) {
            (Some(ca), Some(pass)) => {
                let path = crate::tlog::key::log_key_path(&cfg.keys_dir);
                if recorded.is_some() && !path.exists() {
                    return Err(ServerError::LogKeyMissing {
                        path,
                        recorded,
                        blackboard_only: false,
                    });
                }
                open_log_with(&cfg.keys_dir, pass, ca, cfg.log_origin.as_deref())?
            }
            _ => {
                let origin = log_origin_of(&root, cfg.log_origin.as_deref());
                match crate::tlog::key::open_host_key(&cfg.keys_dir, &origin)? {
                    Some(s) => s,
                    None => {
                        return Err(ServerError::LogKeyMissing {
                            path: cfg.keys_dir.join(crate::tlog::key::HOST_LOG_KEY_FILE),
                            recorded,
                            blackboard_only: true,
                        })
                    }
                }
            }
        };
        match recorded {
            Some(r) if r != signer.verifier_key() => {
                return Err(ServerError::LogKeyMismatch {
                    recorded: r,
                    here: signer.verifier_key(),
                })
            }
            Some(_) => {}
            None => writer.set_course_setting(
                crate::tlog::key::LOG_KEY_SETTING,
                Some(&signer.verifier_key()),
            )?,
        }
        info!(
            "transparency log {}: verifier key {}",
            signer.name(),
            signer.verifier_key()
        );
        let log_api = Some(Arc::new(crate::tlog::CheckpointSigner::new(signer)));
        let root_fingerprint =
            crate::crypto::fingerprint(&root.to_der().map_err(|e| ServerError::RootCert {
                path: PathBuf::from("root"),
                problem: RootCertError::Unusable(e),
            })?);
        let (verifier, blackboard) = if serve_bb {
            let v = Verifier::new(&root).map_err(|e| ServerError::RootCert {
                path: PathBuf::from("root"),
                problem: RootCertError::Unusable(e),
            })?;
            let (keys, origin) =
                BlackboardKeys::open(&cfg.keys_dir, &cfg.blackboard_name, ca.as_deref(), &root)?;
            let until = crate::time::time_text(keys.current(None).not_after());
            match origin {
                KeysOrigin::Loaded => info!(
                    "loaded Blackboard's certificate for {:?} from {} (valid until {until})",
                    cfg.blackboard_name,
                    cfg.keys_dir.display()
                ),
                KeysOrigin::Issued => info!(
                    "issued Blackboard's certificate for {:?} into {} (valid until {until})",
                    cfg.blackboard_name,
                    cfg.keys_dir.display()
                ),
                KeysOrigin::DueWithoutCa => warn!(
                    "Blackboard's certificate in {} expires {until} and this process has no root \
                     key to renew it: run `server blackboard-cert --out DIR` where the root key is",
                    cfg.keys_dir.display()
                ),
            }
            (Some(Arc::new(v)), Some(Arc::new(keys)))
        } else {
            (None, None)
        };
        if cfg.legacy {
            warn!(
                "legacy mode is ON: the original lab client is served on both ports. It gives up, \
                 for legacy connections only: the session key is RC4-encrypted under a key anyone \
                 who knows the SID can compute, the MAC covers only the SID (the report can be \
                 altered undetected), student keys are generated on the server, and the admission \
                 challenge cannot be answered by the original client"
            );
        }
        if cfg.legacy && cfg.admission_secret_file.is_some() {
            warn!("with admission control on, legacy clients (which cannot answer the challenge) are refused");
        }

        let mut limits = cfg.limits.clone();
        limits.max_connections = crate::reactor::fdlimit::fit_max_connections(
            limits.max_connections,
            wanted.len()
                + usize::from(cfg.http_listen.is_some())
                + usize::from(cfg.staff_listen.is_some()),
            cfg.reactors,
        );
        let mut addrs: Vec<(ServiceKind, SocketAddr)> = Vec::new();
        let mut reactors = Vec::new();
        // One writer for every reactor; each reactor keeps its own
        // connection for reads (WAL readers never wait for the writer).
        let reports = ReportLog::stdout()
            .map_err(|e| ServerError::Io("starting the report printer".into(), e))?;
        let printer = reports.sender();
        let metrics = Arc::new(Metrics::new());
        // The store's gauges start from the census just taken; a thread
        // with its own connection keeps them current, off the loops.
        metrics.set_store_state(&store_gauges::state_of(&census, census_at));
        let gauges = StoreGauges::start(
            location.open()?,
            Arc::clone(&metrics),
            store_gauges::REFRESH_EVERY,
        )
        .map_err(|e| ServerError::Io("starting the store gauges' thread".into(), e))?;
        // One CRL for every reactor: one number per revocation state.
        let crls = CrlCache::new();
        // One thread per witness, each with its own store connection; the
        // commit thread waits for them (bounded) so receipts carry their
        // cosignatures.
        let witnessing = match (&log_api, cfg.witnesses.targets.is_empty()) {
            (Some(signer), false) => {
                for t in &cfg.witnesses.targets {
                    info!("checkpoints are sent to witness {} for cosigning", t.name());
                }
                Some(
                    witnessing::Witnessing::start(&cfg.witnesses, signer, &metrics, || {
                        location.open()
                    })
                    .map_err(|e| ServerError::Io("starting the witness threads".into(), e))?,
                )
            }
            _ => None,
        };
        let committer = Committer::start_cosigned(
            writer,
            move |batch: &[_]| printer.announce(batch),
            Arc::clone(&metrics),
            witnessing
                .as_ref()
                .and_then(|w| w.commit_wait(cfg.witnesses.wait)),
        )
        .map_err(|e| ServerError::Io("starting the commit thread".into(), e))?;
        // Legacy enrollments make RSA keys: off the loops, on one pool for
        // all reactors (its threads stay while any reactor holds a handle).
        let workers = match cfg.legacy || staff_listener.is_some() {
            true => Some(
                Workers::start(offload::WORKERS, offload::QUEUE)
                    .map_err(|e| ServerError::Io("starting the worker pool".into(), e))?,
            ),
            false => None,
        };
        // The staff interface's own store connection, used off the loops.
        let staff_app = match &staff_listener {
            Some(_) => Some(crate::staff::StaffApp::new(
                cfg.staff.clone(),
                location.open_staff()?,
            )),
            None => None,
        };
        let uploads = crate::protocol::UploadsInProgress::default();
        for (i, listeners) in bound.into_iter().enumerate() {
            let shared = Shared {
                ca: ca.clone(),
                verifier: verifier.clone(),
                blackboard: blackboard.clone(),
                store: loop_store(&location)?,
                admission_secret: admission_secret.clone(),
                legacy: cfg.legacy,
                window: cfg.window,
                upload: cfg.upload,
                uploads: uploads.clone(),
                renewal_grace_days: cfg.renewal_grace_days,
                guess_limits: cfg.guess_limits,
                // Receipts and certificates carry log proofs: every host
                // that appends signs.
                log: log_api.clone(),
            };
            let ops = Ops::new(shared.ca.clone(), Arc::clone(&metrics), crls.clone())
                .map_err(ServerError::Ocsp)?
                .with_log(log_api.clone().map(crate::ops::transparency::LogApi::new));
            let mut r = Reactor::new(
                i,
                listeners.frames,
                shared,
                limits.clone(),
                &committer,
                workers.as_ref(),
                true,
            )
            .map_err(|e| ServerError::Io(format!("reactor {i}"), e))?;
            r.set_metrics(Arc::clone(&metrics));
            r.set_commit_delay(cfg.commit_delay);
            // The writer may wait for witnesses before answering a batch:
            // that is not a stuck database.
            let cosigning = match witnessing {
                Some(_) => cfg.witnesses.wait,
                None => Duration::ZERO,
            };
            let stuck = match &location {
                Location::Postgres(_) => crate::reactor::BEHIND_STUCK_BATCH,
                Location::Sqlite(_) => crate::reactor::BEHIND_STUCK_LOCAL_BATCH,
            };
            r.set_stuck_after(stuck + cosigning);
            if let Some(l) = listeners.http {
                r.serve_http(l, ops, cfg.http_limits)
                    .map_err(|e| ServerError::Io(format!("reactor {i}: http listener"), e))?;
            }
            if let (Some(l), Some(app)) = (staff_listener.take(), &staff_app) {
                r.serve_staff(l, Arc::clone(app))
                    .map_err(|e| ServerError::Io(format!("reactor {i}: staff listener"), e))?;
            }
            if i == 0 {
                addrs = r
                    .local_addrs()
                    .map_err(|e| ServerError::Io("local address".into(), e))?;
            }
            reactors.push(r);
        }
        made.keep();
        Ok(Server {
            _witnessing: witnessing,
            reactors,
            committer,
            reports,
            addrs,
            root_fingerprint,
            http_addr,
            staff_addr,
            _gauges: gauges,
        })
    }

    /// The root's SHA-256 fingerprint, for the instructor to publish: a
    /// student's client compares it with the root it is given.
    pub fn root_fingerprint(&self) -> &str {
        &self.root_fingerprint
    }

    /// The bound address of the HTTP listener, if one was asked for.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The bound address of the staff listener, if one was asked for.
    pub fn staff_addr(&self) -> Option<SocketAddr> {
        self.staff_addr
    }

    /// The bound addresses.
    pub fn addrs(&self) -> &[(ServiceKind, SocketAddr)] {
        &self.addrs
    }

    /// Serves until SIGINT/SIGTERM.
    pub fn run(self) -> Result<(), ServerError> {
        let n = self.reactors.len();
        let committer = self.committer;
        let reports = self.reports;
        let mut reactors = self.reactors.into_iter();
        let Some(mut first) = reactors.next() else {
            committer.stop();
            reports.stop(report_log::STOP_WAIT);
            return Ok(());
        };
        let mut handles = Vec::new();
        for (i, mut r) in reactors.enumerate() {
            let h = std::thread::Builder::new()
                .name(format!("reactor-{}", i + 1))
                .spawn(move || r.run())
                .map_err(|e| ServerError::Io("spawning a reactor thread".into(), e))?;
            handles.push(h);
        }
        info!(
            "serving with {n} reactor thread(s), {}",
            openssl::version::version()
        );
        // The first reactor runs on the main thread: one reactor, one thread.
        let mut result = first
            .run()
            .map_err(|e| ServerError::Io("event loop".into(), e));
        // Its handle on the writer goes with it (the writer waits for all).
        drop(first);
        for (i, h) in handles.into_iter().enumerate() {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(ServerError::Io("event loop".into(), e)),
                Err(_) => result = Err(ServerError::ReactorPanicked(i + 1)),
            }
        }
        // Every reactor has stopped and dropped its handle: the writer
        // finishes what it was given, then ends.
        committer.stop();
        reports.stop(report_log::STOP_WAIT);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Storage;

    fn config(dir: &std::path::Path) -> ServerConfig {
        let pass = dir.join("pass");
        std::fs::write(&pass, "server tests passphrase\n").unwrap();
        let any = "127.0.0.1:0".parse().unwrap();
        ServerConfig {
            ca_listen: any,
            blackboard_listen: any,
            role: Role::All,
            keys_dir: dir.join("keys"),
            data_dir: dir.join("data"),
            database: None,
            passphrase_file: Some(pass),
            ca_key_type: CaKeyType::P256,
            ca_cert: None,
            blackboard_name: ca::DEFAULT_BLACKBOARD_NAME.into(),
            validity_days: 30,
            renewal_grace_days: crate::course::DEFAULT_RENEWAL_GRACE_DAYS,
            admission_secret_file: None,
            legacy: false,
            reactors: 1,
            commit_delay: Duration::from_millis(DEFAULT_COMMIT_DELAY_MS.into()),
            limits: Limits::default(),
            window: Window::default(),
            upload: crate::protocol::UploadPolicy::default(),
            guess_limits: GuessLimits::default(),
            http_listen: None,
            http_limits: HttpConnLimits::default(),
            public_url: None,
            log_origin: None,
            staff_listen: None,
            staff: crate::staff::StaffConfig::default(),
            witnesses: witnessing::Witnesses::default(),
        }
    }

    #[test]
    fn a_database_of_certificates_without_their_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let ca = open_ca(
            &cfg.keys_dir,
            cfg.passphrase_file.as_deref(),
            CaKeyType::P256,
            30,
        )
        .unwrap();
        let issued = crate::testing::Student::enroll(&ca, "1155000001")
            .unwrap()
            .issued;
        crate::store::SqliteStore::open(&cfg.data_dir)
            .unwrap()
            .commit(&[crate::protocol::cert_record(
                issued,
                crate::store::Origin::Certboard,
                crate::store::Authorisation::Open,
            )])
            .unwrap();
        // Started with another keys dir (another working directory, say).
        let cfg = ServerConfig {
            keys_dir: dir.path().join("elsewhere"),
            ..config(dir.path())
        };
        let err = Server::bind(&cfg).err();
        assert!(
            matches!(err, Some(ServerError::ForeignDatabase { certs: 1, .. })),
            "{err:?}"
        );
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains("holds 1 certificates from another root: wrong --keys-dir?"),
            "{text}"
        );
        assert!(!ca::root_exists(&cfg.keys_dir), "no new root made");
    }

    #[test]
    fn nonsense_configurations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ServerConfig {
            reactors: 0,
            ..config(dir.path())
        };
        assert!(matches!(Server::bind(&cfg), Err(ServerError::NoReactors)));
        // A Blackboard alone needs a root.
        let cfg = ServerConfig {
            role: Role::Blackboard,
            ..config(dir.path())
        };
        assert!(matches!(
            Server::bind(&cfg),
            Err(ServerError::RootCert {
                problem: RootCertError::Read(_),
                ..
            })
        ));
        // An admin command never creates a root.
        let cfg = config(dir.path());
        assert!(matches!(
            open_existing_ca(&cfg.keys_dir, cfg.passphrase_file.as_deref()),
            Err(ServerError::NoRoot(_))
        ));
        assert!(!ca::root_exists(&cfg.keys_dir));
    }

    #[test]
    fn with_role_all_the_root_must_be_the_cas_own() {
        let dir = tempfile::tempdir().unwrap();
        let stranger = crate::testing::CaParams {
            passphrase: b"another passphrase",
            ..Default::default()
        }
        .create(&dir.path().join("other"))
        .unwrap();
        let foreign = dir.path().join("foreign.pem");
        std::fs::write(&foreign, stranger.cert().to_pem().unwrap()).unwrap();
        let cfg = ServerConfig {
            ca_cert: Some(foreign),
            ..config(dir.path())
        };
        assert!(matches!(
            Server::bind(&cfg),
            Err(ServerError::RootCert {
                problem: RootCertError::NotThisCa,
                ..
            })
        ));
        // Refused before anything was made (issue 22, 14): a new root is
        // never the one given.
        assert!(!ca::root_exists(&cfg.keys_dir));
        assert!(!cfg.data_dir.exists());
        // With a root made by a start without --ca-cert, the stranger is
        // still refused, and the CA's own root accepted.
        drop(Server::bind(&config(dir.path())).unwrap());
        assert!(matches!(
            Server::bind(&cfg),
            Err(ServerError::RootCert {
                problem: RootCertError::NotThisCa,
                ..
            })
        ));
        let own = dir.path().join("own.pem");
        std::fs::copy(ca::root_paths(&cfg.keys_dir).1, &own).unwrap();
        let server = Server::bind(&ServerConfig {
            ca_cert: Some(own),
            ..config(dir.path())
        })
        .unwrap();
        let ca = open_existing_ca(&cfg.keys_dir, cfg.passphrase_file.as_deref()).unwrap();
        assert_ne!(ca.cert_der(), stranger.cert_der());
        drop(server);
    }

    #[test]
    fn a_start_that_fails_leaves_the_dirs_as_it_found_them() {
        let dir = tempfile::tempdir().unwrap();
        // A short passphrase for a new root.
        let short = dir.path().join("short");
        std::fs::write(&short, "short\n").unwrap();
        let cfg = ServerConfig {
            passphrase_file: Some(short),
            ..config(dir.path())
        };
        let err = Server::bind(&cfg).err();
        assert!(
            matches!(err, Some(ServerError::Ca(CaError::WeakPassphrase))),
            "{err:?}"
        );
        assert!(!cfg.keys_dir.exists() && !cfg.data_dir.exists());
        // An address this host does not have (TEST-NET-1).
        let cfg = ServerConfig {
            blackboard_listen: "192.0.2.1:0".parse().unwrap(),
            ..config(dir.path())
        };
        let err = Server::bind(&cfg).err();
        assert!(matches!(err, Some(ServerError::Io(..))), "{err:?}");
        assert!(!cfg.keys_dir.exists() && !cfg.data_dir.exists());
        // A failure after the store and the root were made (an unusable
        // public URL) undoes them, and only them.
        std::fs::create_dir(&cfg.data_dir).unwrap();
        std::fs::write(cfg.data_dir.join("notes.txt"), "mine").unwrap();
        let cfg = ServerConfig {
            public_url: Some("not a url\u{0}".into()),
            ..config(dir.path())
        };
        let err = Server::bind(&cfg).err();
        assert!(err.is_some());
        assert!(!cfg.keys_dir.exists(), "{err:?}");
        let left: Vec<_> = std::fs::read_dir(&cfg.data_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("notes.txt")]);
    }
}
