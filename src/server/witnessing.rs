//! The log server's side of C2SP `tlog-witness`: one thread per witness
//! (`server --witness URL --witness-key VKEY`) asks it to cosign each new
//! checkpoint, with the consistency proof from the size the witness last
//! cosigned (read from a store connection of the thread's own), retries
//! once from the size a `409 Conflict` names, checks the cosignature
//! against the witness's key and keeps it in the [`CheckpointSigner`], so
//! checkpoints of that tree handed out from then on carry it.
//!
//! `https://` witnesses are reached with OpenSSL, their certificate checked
//! against `--witness-ca FILE` or else OpenSSL's default roots
//! (`SSL_CERT_FILE` / `SSL_CERT_DIR` point it at the system's), and their
//! name (or IP address) checked.
//!
//! Nothing on the event loops waits for this: a loop that signs a new
//! checkpoint only wakes the threads. The commit thread does wait, off the
//! loops (`--witness-wait`, [`Witnessing::commit_wait`]): after a commit
//! that appended leaves it asks every thread to have that very tree
//! cosigned and waits for their answers, so the receipts made from that
//! commit carry the cosignatures. A witness that fails, or does not answer
//! within the wait, is no longer waited for (said once) until it cosigns
//! again: its thread goes on trying in the background, at most
//! `--witness-timeout` per attempt. Issuance and submissions go on, their
//! checkpoints without its cosignature.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslStream};

use crate::store::tlog::Head;
use crate::store::Storage;
use crate::tlog::cosignature::CosignatureVerifier;
use crate::tlog::merkle::{consistency_proof, NodeId};
use crate::tlog::witness::{request_body, ADD_CHECKPOINT, SIZE_MEDIA_TYPE};
use crate::tlog::CheckpointSigner;

/// `--witness-timeout`'s default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// A thread looks at the tree this often even when no new checkpoint was
/// signed here (another host may have grown it).
const LOOK_EVERY: Duration = Duration::from_secs(5);
/// How often a commit waiting for witnesses takes up the batches queued
/// meanwhile.
const GATHER_EVERY: Duration = Duration::from_millis(20);
/// The largest answer read from a witness.
const MAX_ANSWER: u64 = 64 * 1024;

/// One witness the server asks.
#[derive(Debug, Clone)]
pub struct WitnessTarget {
    /// `host:port` to connect to.
    host: String,
    /// The host without its port, for TLS's name check; `None`: plain
    /// http.
    tls_name: Option<String>,
    /// The path of its add-checkpoint endpoint.
    path: String,
    /// Its key.
    key: CosignatureVerifier,
}

/// Why a `--witness` or `--witness-key` was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum WitnessConfigError {
    /// Not `http(s)://host:port[/prefix]`.
    BadUrl(String),
    /// `--witness-ca` could not be used.
    Ca(std::path::PathBuf, openssl::error::ErrorStack),
    /// `--witness-ca` could not be read.
    CaRead(std::path::PathBuf, std::io::Error),
    /// `--witness-ca` holds no PEM certificate.
    CaEmpty(std::path::PathBuf),
    /// `--witness` and `--witness-key` counts differ.
    Unpaired {
        /// URLs given.
        urls: usize,
        /// Keys given.
        keys: usize,
    },
    /// A key that is not a witness's vkey.
    BadKey(String, crate::tlog::cosignature::CosignatureError),
}

impl std::fmt::Display for WitnessConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WitnessConfigError::BadUrl(u) => write!(
                f,
                "--witness {u:?} is not http://HOST:PORT[/PREFIX] or https://HOST:PORT[/PREFIX]"
            ),
            WitnessConfigError::Ca(p, e) => write!(f, "--witness-ca {}: {e}", p.display()),
            WitnessConfigError::CaRead(p, e) => write!(f, "--witness-ca {}: {e}", p.display()),
            WitnessConfigError::CaEmpty(p) => write!(
                f,
                "--witness-ca {}: no PEM certificate in it (expected the root(s) the \
                 witnesses' certificates chain to, -----BEGIN CERTIFICATE-----)",
                p.display()
            ),
            WitnessConfigError::Unpaired { urls, keys } => write!(
                f,
                "{urls} --witness URL(s) but {keys} --witness-key(s): give one key per witness, \
                 in the same order"
            ),
            WitnessConfigError::BadKey(k, e) => write!(f, "--witness-key {k:?}: {e}"),
        }
    }
}

impl std::error::Error for WitnessConfigError {}

impl WitnessTarget {
    /// The witness at `url` (`http://host:port[/prefix]`) with verifier key
    /// `vkey` (as `server witness key` prints it).
    pub fn new(url: &str, vkey: &str) -> Result<WitnessTarget, WitnessConfigError> {
        let bad = || WitnessConfigError::BadUrl(url.to_string());
        let (rest, tls) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(r), _) => (r, false),
            (None, Some(r)) => (r, true),
            (None, None) => return Err(bad()),
        };
        let (host, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if host.is_empty()
            || !host.contains(':')
            || host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '@')
            // A query or fragment would land before `/add-checkpoint`.
            || prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
        {
            return Err(bad());
        }
        let key = CosignatureVerifier::from_key(vkey)
            .map_err(|e| WitnessConfigError::BadKey(vkey.to_string(), e))?;
        let name = match host.rsplit_once(':') {
            Some((n, port)) if !n.is_empty() && port.parse::<u16>().is_ok() => n,
            _ => return Err(bad()),
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        Ok(WitnessTarget {
            host: host.to_string(),
            tls_name: tls.then(|| name.to_string()),
            path: format!("{prefix}{ADD_CHECKPOINT}"),
            key,
        })
    }

    /// Pairs `--witness` URLs with `--witness-key`s, in order.
    pub fn pair(
        urls: &[String],
        keys: &[String],
    ) -> Result<Vec<WitnessTarget>, WitnessConfigError> {
        if urls.len() != keys.len() {
            return Err(WitnessConfigError::Unpaired {
                urls: urls.len(),
                keys: keys.len(),
            });
        }
        urls.iter()
            .zip(keys)
            .map(|(u, k)| WitnessTarget::new(u, k))
            .collect()
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        self.key.name()
    }
}

/// The witnesses to ask and how long each may take.
#[derive(Debug, Clone)]
pub struct Witnesses {
    /// The witnesses.
    pub targets: Vec<WitnessTarget>,
    /// The time one request may take (connect, send, answer).
    pub timeout: Duration,
    /// Roots for `https://` witnesses (`--witness-ca`); `None`: OpenSSL's
    /// default roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// How long a commit that appended leaves waits for the witnesses to
    /// cosign its tree before its records are answered (`--witness-wait`);
    /// zero: not at all (its receipts then carry no cosignature, the
    /// served checkpoint gets them moments later).
    pub wait: Duration,
}

impl Default for Witnesses {
    fn default() -> Self {
        Witnesses {
            targets: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            ca_file: None,
            wait: DEFAULT_TIMEOUT,
        }
    }
}

impl Witnesses {
    /// The TLS client for `https://` witnesses: certificate and name
    /// checked, against `ca_file` when given.
    pub fn tls(&self) -> Result<SslConnector, WitnessConfigError> {
        let err = |e| WitnessConfigError::Ca(self.ca_file.clone().unwrap_or_default(), e);
        let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(err)?;
        if let Some(path) = &self.ca_file {
            // Said plainly before OpenSSL's error stack would be.
            let pem =
                std::fs::read(path).map_err(|e| WitnessConfigError::CaRead(path.clone(), e))?;
            if !openssl::x509::X509::stack_from_pem(&pem).is_ok_and(|s| !s.is_empty()) {
                return Err(WitnessConfigError::CaEmpty(path.clone()));
            }
            b.set_ca_file(path).map_err(err)?;
        }
        Ok(b.build())
    }
}

/// What the commit thread and the witness threads share: the tree the
/// commit thread last asked to have cosigned, and each witness's answer.
#[derive(Debug, Default)]
struct Board {
    state: Mutex<BoardState>,
    answered: Condvar,
    /// `--witness-wait`: a witness not waited for is waited for again
    /// once a round of its thread takes no longer (else a witness slower
    /// than the wait would be waited for, and given up, on every commit).
    wait: Duration,
}

#[derive(Debug, Default)]
struct BoardState {
    /// The requests made so far.
    asked: u64,
    /// The latest request's tree.
    wanted: Option<Head>,
    /// One per witness thread, in `--witness` order.
    slots: Vec<Slot>,
    /// The threads are stopping: nothing is waited for any more.
    closed: bool,
}

/// One witness, as the commit thread sees it.
#[derive(Debug)]
struct Slot {
    name: String,
    /// The request its thread answered last.
    answered: u64,
    /// The tree it had cosigned by that answer.
    cosigned: Option<Head>,
    /// Whether commits wait for it: not after it failed or did not answer
    /// within the wait, until it cosigns again within the wait.
    waited: bool,
}

impl Board {
    fn new(names: impl Iterator<Item = String>, wait: Duration) -> Board {
        Board {
            state: Mutex::new(BoardState {
                slots: names
                    .map(|name| Slot {
                        name,
                        answered: 0,
                        cosigned: None,
                        waited: true,
                    })
                    .collect(),
                ..BoardState::default()
            }),
            answered: Condvar::new(),
            wait,
        }
    }

    /// The latest request and its number, if witness `slot` has not
    /// answered it yet.
    fn wanted(&self, slot: usize) -> Option<(u64, Head)> {
        let st = self.state.lock().ok()?;
        let s = st.slots.get(slot)?;
        match st.wanted {
            Some(head) if s.answered < st.asked => Some((st.asked, head)),
            _ => None,
        }
    }

    /// Witness `slot`'s thread has done a round (for request `request`,
    /// if it was one) in `took`: a failure stops commits waiting for it, a
    /// cosignature within the wait makes them wait again; each change is
    /// logged once.
    fn report(
        &self,
        slot: usize,
        request: Option<u64>,
        outcome: Result<Option<Head>, &AskError>,
        took: Duration,
    ) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let closed = st.closed;
        let Some(s) = st.slots.get_mut(slot) else {
            return;
        };
        if let Some(r) = request {
            s.answered = s.answered.max(r);
            s.cosigned = outcome.ok().flatten();
        }
        match outcome {
            Ok(Some(_)) if !s.waited && !closed && took <= self.wait => {
                s.waited = true;
                log::info!(
                    "witness {}: cosigning again; commits wait for its cosignature again, so \
                     receipts carry it",
                    s.name
                );
            }
            Err(_) if s.waited => {
                s.waited = false;
                log::warn!(
                    "witness {}: commits no longer wait for it, and receipts go out without its \
                     cosignature, until it cosigns again (its thread keeps asking)",
                    s.name
                );
            }
            _ => {}
        }
        self.answered.notify_all();
    }

    /// Asks every witness thread to have `head` cosigned (waking them
    /// through `signer`) and waits up to `wait` for those commits wait for;
    /// one that does not answer in time is waited for no more (said once).
    /// Returns the tree the most witnesses cosigned in answer, `head` on a
    /// tie or when none did. A larger tree comes back only when a witness
    /// had already cosigned past `head` (another host's commit and its
    /// thread): a proof against it holds every entry of `head` too.
    /// `meanwhile` runs at least every [`GATHER_EVERY`] while waiting.
    fn cosigned(
        &self,
        signer: &CheckpointSigner,
        head: Head,
        wait: Duration,
        meanwhile: &mut dyn FnMut(),
    ) -> Head {
        let request = {
            let Ok(mut st) = self.state.lock() else {
                return head;
            };
            st.asked += 1;
            st.wanted = Some(head);
            st.asked
        };
        signer.wake_all();
        let deadline = Instant::now() + wait;
        let Ok(mut st) = self.state.lock() else {
            return head;
        };
        let pending = |s: &Slot| s.waited && s.answered < request;
        while st.slots.iter().any(pending) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                for s in st.slots.iter_mut().filter(|s| pending(s)) {
                    s.waited = false;
                    log::warn!(
                        "witness {}: no cosignature of tree size {} within --witness-wait \
                         ({wait:?}); commits no longer wait for it, and receipts go out without \
                         its cosignature, until it cosigns again (its thread keeps asking)",
                        s.name,
                        head.size
                    );
                }
                break;
            }
            st = match self.answered.wait_timeout(st, left.min(GATHER_EVERY)) {
                Ok((st, _)) => st,
                Err(_) => return head,
            };
            drop(st);
            meanwhile();
            st = match self.state.lock() {
                Ok(st) => st,
                Err(_) => return head,
            };
        }
        let answers: Vec<Head> = st
            .slots
            .iter()
            .filter(|s| s.answered >= request)
            .filter_map(|s| s.cosigned)
            .filter(|h| h.size >= head.size)
            .collect();
        let votes = |h: &Head| answers.iter().filter(|a| *a == h).count();
        answers
            .iter()
            .copied()
            .max_by_key(|h| (votes(h), *h == head))
            .unwrap_or(head)
    }

    /// Nothing more is waited for (the threads are stopping).
    fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.closed = true;
            for s in &mut st.slots {
                s.waited = false;
            }
        }
        self.answered.notify_all();
    }
}

/// The running threads; dropping this stops them (each within one
/// request's timeout).
#[derive(Debug)]
pub struct Witnessing {
    stop: Arc<AtomicBool>,
    signer: Arc<CheckpointSigner>,
    board: Arc<Board>,
}

impl Drop for Witnessing {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.board.close();
        self.signer.wake_all();
    }
}

impl Witnessing {
    /// Starts one thread per witness, each reading the tree through its
    /// own store from `open`.
    pub(crate) fn start(
        witnesses: &Witnesses,
        signer: &Arc<CheckpointSigner>,
        metrics: &Arc<crate::ops::metrics::Metrics>,
        mut open: impl FnMut() -> Result<Box<dyn Storage + Send>, crate::store::StoreError>,
    ) -> Result<Witnessing, std::io::Error> {
        let tls = witnesses.tls().map_err(std::io::Error::other)?;
        let stop = Arc::new(AtomicBool::new(false));
        let board = Arc::new(Board::new(
            witnesses.targets.iter().map(|t| t.name().to_string()),
            witnesses.wait,
        ));
        for (slot, target) in witnesses.targets.iter().enumerate() {
            let store = open().map_err(|e| {
                std::io::Error::other(format!(
                    "a store connection for witness {}: {e}",
                    target.name()
                ))
            })?;
            let mut asker = Asker {
                target: target.clone(),
                timeout: witnesses.timeout,
                signer: Arc::clone(signer),
                store,
                tls: tls.clone(),
                metrics: Arc::clone(metrics),
                known: None,
                done: None,
                failing: false,
                board: Arc::clone(&board),
                slot,
            };
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("witness-{}", target.name()))
                .spawn(move || asker.run(&stop))?;
        }
        Ok(Witnessing {
            stop,
            signer: Arc::clone(signer),
            board,
        })
    }

    /// What the commit thread runs after a commit that appended leaves
    /// (`crate::reactor::commit::CosignWait`): asks the witnesses to cosign
    /// its tree and waits up to `wait` for their cosignatures, which the
    /// signer then holds for the receipts. `None` when `wait` is zero.
    pub(crate) fn commit_wait(&self, wait: Duration) -> Option<crate::reactor::commit::CosignWait> {
        if wait.is_zero() {
            return None;
        }
        let (board, signer) = (Arc::clone(&self.board), Arc::clone(&self.signer));
        Some(Box::new(move |head, meanwhile: &mut dyn FnMut()| {
            board.cosigned(&signer, head, wait, meanwhile)
        }))
    }
}

/// Why a witness did not cosign a tree this round: logged once when it
/// starts failing, and at debug level while it goes on.
#[derive(Debug)]
pub(crate) enum AskError {
    /// Reading the log (its head, or a proof's hashes) failed.
    Store(crate::store::StoreError),
    /// Signing the checkpoint to send failed.
    Sign(crate::tlog::note::NoteError),
    /// It has cosigned a larger tree than this log holds.
    RolledBack { cosigned: u64, holds: u64 },
    /// The witness's host name gave no address.
    NoAddress {
        host: String,
        source: Option<std::io::Error>,
    },
    /// A socket operation failed: `what` was being done with `addr`.
    Io {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    /// The TLS handshake failed.
    Tls {
        name: String,
        addr: String,
        why: String,
    },
    /// No whole answer within `--witness-timeout`.
    TimedOut { addr: String, timeout: Duration },
    /// The answer is not one a witness gives.
    BadAnswer { addr: String, why: BadAnswer },
    /// Its answer holds no cosignature its key verifies.
    NoValidCosignature { name: String },
    /// It holds another tree of `size` entries (a 409 naming the size
    /// sent).
    Fork { size: u64 },
    /// The tree it cosigned at `old` entries is not a prefix of this log's
    /// (422).
    NotPrefix { old: u64, why: String },
    /// Any other refusal.
    Refused { status: u16, why: String },
    /// It named another size after every retry.
    KeepsConflicting,
}

/// How an answer is not a witness's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadAnswer {
    /// Over [`MAX_ANSWER`] bytes.
    TooLarge,
    /// Not an HTTP response.
    NotHttp,
    /// Sent with a Transfer-Encoding.
    TransferEncoding,
    /// Fewer bytes than its Content-Length said.
    CutShort { got: usize, length: usize },
    /// A 409 whose body names no size.
    ConflictWithoutSize,
}

impl std::fmt::Display for AskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AskError::Store(e) => write!(f, "reading the log: {e}"),
            AskError::Sign(e) => write!(f, "signing the checkpoint: {e}"),
            AskError::RolledBack { cosigned, holds } => write!(
                f,
                "it has cosigned a tree of {cosigned} entries and this log holds {holds}: \
                 was the log rolled back or replaced?"
            ),
            AskError::NoAddress {
                host,
                source: Some(e),
            } => write!(f, "{host}: {e}"),
            AskError::NoAddress { host, source: None } => write!(f, "{host}: no address"),
            AskError::Io { what, addr, source } => write!(f, "{what} {addr}: {source}"),
            AskError::Tls { name, addr, why } => write!(f, "TLS with {name} ({addr}): {why}"),
            AskError::TimedOut { addr, timeout } => write!(
                f,
                "no whole answer from {addr} within --witness-timeout ({timeout:?})"
            ),
            AskError::BadAnswer { addr, why } => match why {
                BadAnswer::TooLarge => write!(
                    f,
                    "{addr} sent an answer over {} KiB: not a witness's",
                    MAX_ANSWER / 1024
                ),
                BadAnswer::NotHttp => write!(f, "{addr} did not answer in HTTP"),
                BadAnswer::TransferEncoding => write!(
                    f,
                    "{addr} answered with a Transfer-Encoding; a witness's answer is read by \
                     its Content-Length (or up to the close)"
                ),
                BadAnswer::CutShort { got, length } => write!(
                    f,
                    "{addr}'s answer was cut short ({got} of its {length} bytes)"
                ),
                BadAnswer::ConflictWithoutSize => write!(f, "a 409 from {addr} naming no size"),
            },
            AskError::NoValidCosignature { name } => {
                write!(f, "its answer holds no valid cosignature by {name}")
            }
            AskError::Fork { size } => write!(
                f,
                "it cosigned another tree of {size} entries than this log's: the log's \
                 history differs from what it saw (a fork, or a log restored from another \
                 history); compare with its operator"
            ),
            AskError::NotPrefix { old, why } => write!(
                f,
                "refused with 422 ({why}): the tree it cosigned at {old} entries is not a \
                 prefix of this log's (a fork, or a log restored from another history)"
            ),
            AskError::Refused { status, why } => write!(f, "refused with {status}: {why}"),
            AskError::KeepsConflicting => write!(f, "it keeps naming another size (409)"),
        }
    }
}

impl std::error::Error for AskError {}

/// An answer from a witness.
#[derive(Debug)]
enum Answered {
    Cosigned(String),
    Conflict(u64),
    Refused(u16, String),
}

/// A connection to a witness, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// One witness's thread.
struct Asker {
    target: WitnessTarget,
    timeout: Duration,
    signer: Arc<CheckpointSigner>,
    store: Box<dyn Storage + Send>,
    tls: SslConnector,
    metrics: Arc<crate::ops::metrics::Metrics>,
    /// The size the witness last cosigned, as far as known.
    known: Option<u64>,
    /// The tree it cosigned for this process last.
    done: Option<Head>,
    /// The last attempt failed (warned once, until it works again).
    failing: bool,
    /// Where the commit thread's requests come from and answers go.
    board: Arc<Board>,
    /// This witness's place on the board.
    slot: usize,
}

impl Asker {
    fn run(&mut self, stop: &AtomicBool) {
        let mut seen = self.signer.signed_count();
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let wanted = self.board.wanted(self.slot);
            let started = Instant::now();
            let outcome = self.round_for(wanted.map(|(_, head)| head));
            let took = started.elapsed();
            match &outcome {
                Ok(Some((_, true))) => self.metrics.witness_request(self.target.name(), "cosigned"),
                Ok(_) => {}
                Err(_) => self.metrics.witness_request(self.target.name(), "failed"),
            }
            let answer = outcome.as_ref().map(|o| o.map(|(head, _)| head));
            self.board
                .report(self.slot, wanted.map(|(request, _)| request), answer, took);
            if let Err(why) = outcome {
                if !std::mem::replace(&mut self.failing, true) {
                    log::warn!(
                        "witness {}: no cosignature ({why}); checkpoints go out without it \
                         until it answers",
                        self.target.name()
                    );
                } else {
                    log::debug!("witness {}: still failing: {why}", self.target.name());
                }
            } else if std::mem::replace(&mut self.failing, false) {
                log::info!("witness {}: cosigning again", self.target.name());
            }
            seen = self.signer.wait_signed(seen, LOOK_EVERY);
        }
    }

    /// Has the current tree cosigned, if it is not already; `Ok(true)`
    /// when it was asked and cosigned now. After a failure the size the
    /// witness holds is no longer taken as known: the next round starts
    /// from 0 and learns it again from a 409, so a size named by a broken
    /// or restored witness (or a proxy's garbage) is not believed forever.
    #[cfg(test)]
    fn round(&mut self) -> Result<bool, AskError> {
        self.round_for(None).map(|o| matches!(o, Some((_, true))))
    }

    /// Has `target` cosigned (the commit thread's tree), or else the
    /// current tree; the tree the witness has cosigned then, and whether
    /// it was asked now (not already done). After a failure the size the
    /// witness holds is forgotten, as [`Asker::round`] says.
    fn round_for(&mut self, target: Option<Head>) -> Result<Option<(Head, bool)>, AskError> {
        let outcome = self.try_round(target);
        if outcome.is_err() {
            self.known = None;
        }
        outcome
    }

    fn try_round(&mut self, target: Option<Head>) -> Result<Option<(Head, bool)>, AskError> {
        let mut head = match target {
            Some(head) => head,
            None => self.store.log_head().map_err(AskError::Store)?,
        };
        // Bounded: a retry from the size a 409 names, and a move on to a
        // larger tree when the witness is past this one (another host's).
        for _ in 0..4 {
            if head.size == 0 {
                return Ok(None);
            }
            if self.done == Some(head) {
                return Ok(Some((head, false)));
            }
            let old = self.known.unwrap_or(0);
            if old > head.size {
                // It has cosigned a larger tree: another host may have
                // grown the log since it was read here, or the log lost
                // what the witness saw.
                let now = self.store.log_head().map_err(AskError::Store)?;
                if now.size < old {
                    return Err(AskError::RolledBack {
                        cosigned: old,
                        holds: now.size,
                    });
                }
                if target.is_none() {
                    // The other host's turn, no more this one's.
                    return Ok(None);
                }
                // The commit thread waits: the current tree holds its
                // entries, and the witness can still cosign that.
                head = now;
                continue;
            }
            let note = self
                .signer
                .log_signed(head.size, head.root)
                .map_err(AskError::Sign)?;
            let store = &mut self.store;
            let proof = consistency_proof(old, head.size, |ids: &[NodeId]| store.log_nodes(ids))
                .map_err(AskError::Store)?;
            let body = request_body(old, &proof, &note);
            match self.post(&body)? {
                Answered::Cosigned(lines) => {
                    let mut good = 0;
                    for line in lines.split_inclusive('\n') {
                        let cosigned = format!("{note}{line}");
                        if self.target.key.verify(&cosigned).is_ok() {
                            self.signer.add_cosignature(
                                head.size,
                                head.root,
                                self.target.name(),
                                line.to_string(),
                            );
                            good += 1;
                        }
                    }
                    if good == 0 {
                        return Err(AskError::NoValidCosignature {
                            name: self.target.name().to_string(),
                        });
                    }
                    self.known = Some(head.size);
                    self.done = Some(head);
                    log::debug!(
                        "witness {}: cosigned tree size {}",
                        self.target.name(),
                        head.size
                    );
                    return Ok(Some((head, true)));
                }
                // A 409 naming the very size sent: it holds another root
                // at that size (tlog-witness's same-size conflict).
                Answered::Conflict(size) if size == old && old > 0 => {
                    return Err(AskError::Fork { size })
                }
                Answered::Conflict(size) => self.known = Some(size),
                Answered::Refused(422, why) => {
                    return Err(AskError::NotPrefix {
                        old,
                        why: why.trim_end().to_string(),
                    })
                }
                Answered::Refused(status, why) => {
                    return Err(AskError::Refused {
                        status,
                        why: why.trim_end().to_string(),
                    })
                }
            }
        }
        Err(AskError::KeepsConflicting)
    }

    /// One POST over a fresh connection, bounded by the timeout as a
    /// whole.
    fn post(&self, body: &str) -> Result<Answered, AskError> {
        let deadline = Instant::now() + self.timeout;
        let addr = self
            .target
            .host
            .to_socket_addrs()
            .map_err(|e| AskError::NoAddress {
                host: self.target.host.clone(),
                source: Some(e),
            })?
            .next()
            .ok_or_else(|| AskError::NoAddress {
                host: self.target.host.clone(),
                source: None,
            })?;
        let io = |what: &'static str| {
            move |source: std::io::Error| AskError::Io {
                what,
                addr: addr.to_string(),
                source,
            }
        };
        let tcp = TcpStream::connect_timeout(&addr, self.timeout).map_err(io("connecting to"))?;
        let left = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        };
        // The handshake too is bounded by these.
        tcp.set_write_timeout(Some(left()))
            .and_then(|_| tcp.set_read_timeout(Some(left())))
            .map_err(io("setting the timeouts of"))?;
        let mut s = match &self.target.tls_name {
            None => Conn::Plain(tcp),
            Some(name) => Conn::Tls(Box::new(self.tls.connect(name, tcp).map_err(|e| {
                AskError::Tls {
                    name: name.clone(),
                    addr: addr.to_string(),
                    why: e.to_string(),
                }
            })?)),
        };
        s.tcp()
            .set_write_timeout(Some(left()))
            .map_err(io("setting the timeouts of"))?;
        write!(
            s,
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.target.path,
            self.target.host,
            body.len()
        )
        .map_err(io("sending to"))?;
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        let timed_out = || AskError::TimedOut {
            addr: addr.to_string(),
            timeout: self.timeout,
        };
        let bad = |why: BadAnswer| AskError::BadAnswer {
            addr: addr.to_string(),
            why,
        };
        loop {
            if Instant::now() >= deadline {
                return Err(timed_out());
            }
            s.tcp()
                .set_read_timeout(Some(left()))
                .map_err(io("setting the timeouts of"))?;
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // A TLS peer that closes without close_notify: what came is
                // judged by its Content-Length below.
                Err(_) if matches!(s, Conn::Tls(_)) && !all.is_empty() => break,
                // A socket read timeout is EAGAIN on Linux, not TimedOut.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(timed_out())
                }
                Err(e) => return Err(io("reading from")(e)),
            }
            if all.len() as u64 > MAX_ANSWER {
                return Err(bad(BadAnswer::TooLarge));
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(&all) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => return Err(bad(BadAnswer::NotHttp)),
        };
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(str::trim)
        };
        if header("transfer-encoding").is_some() {
            return Err(bad(BadAnswer::TransferEncoding));
        }
        let mut body = &all[head_len..];
        if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body = body.get(..n).ok_or_else(|| {
                bad(BadAnswer::CutShort {
                    got: all.len() - head_len,
                    length: n,
                })
            })?;
        }
        let text = String::from_utf8_lossy(body).into_owned();
        match resp.code {
            Some(200) => Ok(Answered::Cosigned(text)),
            Some(409) if header("content-type").is_some_and(|t| t.starts_with(SIZE_MEDIA_TYPE)) => {
                text.trim_end()
                    .parse()
                    .map(Answered::Conflict)
                    .map_err(|_| bad(BadAnswer::ConflictWithoutSize))
            }
            Some(code) => Ok(Answered::Refused(code, text)),
            None => Err(bad(BadAnswer::NotHttp)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn witness_urls_and_keys_are_paired_or_refused() -> Result<(), Box<dyn std::error::Error>> {
        let w = crate::tlog::cosignature::Cosigner::new(
            "w.example",
            openssl::pkey::PKey::generate_ed25519()?,
        )?;
        let vkey = w.verifier_key();
        let t = WitnessTarget::new("http://127.0.0.1:9/w/", &vkey)?;
        assert_eq!(
            (t.host.as_str(), t.path.as_str()),
            ("127.0.0.1:9", "/w/add-checkpoint")
        );
        let t = WitnessTarget::new("http://h:1", &vkey)?;
        assert_eq!(t.path, "/add-checkpoint");
        let t = WitnessTarget::new("https://w.example:443/p", &vkey)?;
        assert_eq!(t.tls_name.as_deref(), Some("w.example"));
        for bad in [
            "ftp://h:1",
            "http://h",
            "http://",
            "http://a b:1/",
            "https://h:x",
            "http://h:1/p?x=1",
            "http://h:1/p#f",
        ] {
            assert!(matches!(
                WitnessTarget::new(bad, &vkey),
                Err(WitnessConfigError::BadUrl(_))
            ));
        }
        assert!(matches!(
            WitnessTarget::pair(&["http://h:1".into()], &[]),
            Err(WitnessConfigError::Unpaired { urls: 1, keys: 0 })
        ));
        assert!(matches!(
            WitnessTarget::new("http://h:1", "nonsense"),
            Err(WitnessConfigError::BadKey(..))
        ));
        // A --witness-ca that is missing, or not PEM, is said plainly.
        let dir = tempfile::tempdir()?;
        let missing = Witnesses {
            ca_file: Some(dir.path().join("nope.pem")),
            ..Witnesses::default()
        };
        let e = missing.tls().map(|_| ()).map_err(|e| e.to_string());
        assert!(matches!(&e, Err(m) if m.contains("No such file")), "{e:?}");
        std::fs::write(dir.path().join("junk.pem"), "not a certificate\n")?;
        let junk = Witnesses {
            ca_file: Some(dir.path().join("junk.pem")),
            ..Witnesses::default()
        };
        let e = junk.tls().map(|_| ()).map_err(|e| e.to_string());
        assert!(
            matches!(&e, Err(m) if m.contains("no PEM certificate")),
            "{e:?}"
        );
        Ok(())
    }

    /// A self-signed certificate for 127.0.0.1, and its key.
    fn tls_identity() -> Result<
        (
            openssl::x509::X509,
            openssl::pkey::PKey<openssl::pkey::Private>,
        ),
        openssl::error::ErrorStack,
    > {
        use openssl::asn1::Asn1Time;
        use openssl::x509::extension::SubjectAlternativeName;
        use openssl::x509::{X509Builder, X509Name};
        let key = openssl::pkey::PKey::generate_ed25519()?;
        let mut name = X509Name::builder()?;
        name.append_entry_by_nid(openssl::nid::Nid::COMMONNAME, "witness.test")?;
        let name = name.build();
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(&name)?;
        b.set_pubkey(&key)?;
        b.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
        b.set_not_after(Asn1Time::days_from_now(1)?.as_ref())?;
        let san = SubjectAlternativeName::new()
            .ip("127.0.0.1")
            .build(&b.x509v3_context(None, None))?;
        b.append_extension(san)?;
        b.sign(&key, openssl::hash::MessageDigest::null())?;
        Ok((b.build(), key))
    }

    /// An https witness: one TLS connection at a time, each request judged
    /// by `witness`.
    fn serve_tls(
        witness: crate::tlog::witness::Witness,
    ) -> Result<(std::net::SocketAddr, tempfile::TempDir), Box<dyn std::error::Error>> {
        use crate::ops::http::{HttpLimits, RequestDecoder};
        use openssl::ssl::SslAcceptor;
        let (cert, key) = tls_identity()?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("ca.pem"), cert.to_pem()?)?;
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
        b.set_private_key(&key)?;
        b.set_certificate(&cert)?;
        let acceptor = b.build();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        std::thread::spawn(move || {
            for tcp in listener.incoming().take(4).flatten() {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(mut tls) = acceptor.accept(tcp) else {
                    continue;
                };
                let mut dec = RequestDecoder::new(HttpLimits::default());
                let mut input = Vec::new();
                let mut buf = [0u8; 4096];
                let req = loop {
                    match dec.decode(&mut input) {
                        Ok(Some(r)) => break Some(r),
                        Ok(None) => {}
                        Err(_) => break None,
                    }
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break None,
                        Ok(n) => input.extend_from_slice(&buf[..n]),
                    }
                };
                let Some(req) = req else { continue };
                let a = witness.add_checkpoint(&req.body, 1).answer();
                let _ = write!(
                    tls,
                    "HTTP/1.1 {} x\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
                    a.status,
                    a.content_type,
                    a.body.len()
                );
                let _ = tls.write_all(&a.body);
                let _ = tls.shutdown();
            }
        });
        Ok((addr, dir))
    }

    #[test]
    fn an_https_witness_is_asked_with_its_certificate_checked(
    ) -> Result<(), Box<dyn std::error::Error>> {
        use crate::store::SqliteStore;
        use crate::tlog::cosignature::Cosigner;
        use crate::tlog::NoteSigner;
        let mut store = SqliteStore::in_memory()?;
        for id in 1..=3u64 {
            store.commit(&[crate::testing::report_record(id)])?;
        }
        let log = NoteSigner::new("test/log", openssl::pkey::PKey::generate_ed25519()?)?;
        let log_vkey = log.verifier()?;
        let signer = Arc::new(CheckpointSigner::new(log));
        let cosigner = Cosigner::new("w.example", openssl::pkey::PKey::generate_ed25519()?)?;
        let wkey = cosigner.verifier_key();
        let witness = crate::tlog::witness::Witness::new(cosigner, vec![log_vkey], None)?;
        let (addr, dir) = serve_tls(witness)?;
        let target = WitnessTarget::new(&format!("https://{addr}"), &wkey)?;
        let asker =
            |ca_file: Option<std::path::PathBuf>| -> Result<Asker, Box<dyn std::error::Error>> {
                let witnesses = Witnesses {
                    targets: vec![target.clone()],
                    timeout: Duration::from_secs(10),
                    ca_file,
                    wait: Duration::ZERO,
                };
                Ok(Asker {
                    target: target.clone(),
                    timeout: witnesses.timeout,
                    signer: Arc::clone(&signer),
                    store: Box::new(SqliteStore::in_memory()?),
                    tls: witnesses.tls()?,
                    metrics: Arc::new(crate::ops::metrics::Metrics::new()),
                    known: None,
                    done: None,
                    failing: false,
                    board: Arc::default(),
                    slot: 0,
                })
            };
        // Without its root: refused at the handshake, nothing cosigned.
        let mut stranger = asker(None)?;
        stranger.store = Box::new(store);
        let refused = stranger.round().map_err(|e| e.to_string());
        assert!(
            matches!(&refused, Err(e) if e.contains("TLS")),
            "{refused:?}"
        );
        // With it: cosigned, and the checkpoint of that tree carries it.
        let mut trusting = asker(Some(dir.path().join("ca.pem")))?;
        trusting.store =
            std::mem::replace(&mut stranger.store, Box::new(SqliteStore::in_memory()?));
        assert!(trusting.round()?, "cosigned now");
        let head = trusting.store.log_head()?;
        let note = signer.checkpoint(head.size, head.root)?;
        assert_eq!(head.size, 3);
        assert!(
            CosignatureVerifier::from_key(&wkey)?.verify(&note).is_ok(),
            "{note}"
        );
        Ok(())
    }
}

#[cfg(test)]
mod plain_tests {
    use super::*;
    use crate::store::{Record, SqliteStore};
    use crate::tlog::cosignature::Cosigner;
    use crate::tlog::witness::Witness;
    use crate::tlog::NoteSigner;
    use openssl::pkey::PKey;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn store_of(entries: u64) -> Result<SqliteStore, Box<dyn std::error::Error>> {
        let mut store = SqliteStore::in_memory()?;
        for id in 1..=entries {
            store.commit(&[crate::testing::report_record(id)])?;
        }
        Ok(store)
    }

    /// What `witness` answers to `body` at time `now`, as raw HTTP.
    fn answered_by(witness: &crate::tlog::witness::Witness, body: &[u8], now: u64) -> Vec<u8> {
        let a = witness.add_checkpoint(body, now).answer();
        http(&format!("{} x", a.status), a.content_type, &a.body)
    }

    /// A plain-http peer answering the `i`th connection's request with
    /// `answer(i, body)`'s raw bytes (then closing), for at most 64.
    fn serve(
        mut answer: impl FnMut(usize, &[u8]) -> Vec<u8> + Send + 'static,
    ) -> std::io::Result<std::net::SocketAddr> {
        use crate::ops::http::{HttpLimits, RequestDecoder};
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        std::thread::spawn(move || {
            for (i, mut tcp) in listener.incoming().take(64).flatten().enumerate() {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let mut dec = RequestDecoder::new(HttpLimits::default());
                let mut input = Vec::new();
                let mut buf = [0u8; 4096];
                let body = loop {
                    match dec.decode(&mut input) {
                        Ok(Some(r)) => break r.body,
                        Ok(None) => {}
                        Err(_) => break Vec::new(),
                    }
                    match tcp.read(&mut buf) {
                        Ok(0) | Err(_) => break Vec::new(),
                        Ok(n) => input.extend_from_slice(&buf[..n]),
                    }
                };
                let _ = tcp.write_all(&answer(i, &body));
            }
        });
        Ok(addr)
    }

    struct Setup {
        signer: Arc<CheckpointSigner>,
        witness: Witness,
        wkey: String,
    }

    fn setup() -> Result<Setup, Box<dyn std::error::Error>> {
        let log = NoteSigner::new("test/log", PKey::generate_ed25519()?)?;
        let log_vkey = log.verifier()?;
        let cosigner = Cosigner::new("w.example", PKey::generate_ed25519()?)?;
        let wkey = cosigner.verifier_key();
        Ok(Setup {
            signer: Arc::new(CheckpointSigner::new(log)),
            witness: Witness::new(cosigner, vec![log_vkey], None)?,
            wkey,
        })
    }

    fn asker(
        addr: std::net::SocketAddr,
        wkey: &str,
        signer: &Arc<CheckpointSigner>,
        timeout: Duration,
    ) -> Result<Asker, Box<dyn std::error::Error>> {
        Ok(Asker {
            target: WitnessTarget::new(&format!("http://{addr}"), wkey)?,
            timeout,
            signer: Arc::clone(signer),
            store: Box::new(store_of(3)?),
            tls: Witnesses::default().tls()?,
            metrics: Arc::new(crate::ops::metrics::Metrics::new()),
            known: None,
            done: None,
            failing: false,
            board: Arc::default(),
            slot: 0,
        })
    }

    fn http(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn a_size_named_by_a_broken_witness_is_not_believed_forever() -> TestResult {
        let s = setup()?;
        let witness = s.witness;
        // First a 409 naming a size this log never had (a proxy's garbage,
        // a witness restored from the wrong backup), then the witness
        // itself.
        let addr = serve(move |i, body| {
            if i == 0 {
                return http("409 Conflict", SIZE_MEDIA_TYPE, b"18446744073709551615\n");
            }
            answered_by(&witness, body, 1)
        })?;
        let mut a = asker(addr, &s.wkey, &s.signer, Duration::from_secs(10))?;
        let first = a.round();
        assert!(
            matches!(&first, Err(e) if e.to_string().contains("18446744073709551615")),
            "{first:?}"
        );
        assert!(a.round()?, "cosigned once the witness answers sanely");
        Ok(())
    }

    #[test]
    fn a_witness_that_saw_another_history_is_named_as_a_fork() -> TestResult {
        use crate::tlog::witness::request_body;
        let s = setup()?;
        let (entries, fork_root) = (3u64, [7u8; 32]);
        // Someone showed the witness another tree of the same size, signed
        // with this log's key.
        let forked = s.signer.log_signed(entries, fork_root)?;
        let fed = s
            .witness
            .add_checkpoint(request_body(0, &[], &forked).as_bytes(), 1);
        assert!(
            matches!(fed, crate::tlog::witness::Outcome::Cosigned(_)),
            "{fed:?}"
        );
        let witness = s.witness;
        let addr = serve(move |_, body| answered_by(&witness, body, 2))?;
        let mut a = asker(addr, &s.wkey, &s.signer, Duration::from_secs(10))?;
        let e = a.round().map(|_| ()).map_err(|e| e.to_string());
        assert!(
            matches!(&e, Err(e) if e.contains("cosigned another tree of 3 entries")),
            "{e:?}"
        );
        Ok(())
    }

    #[test]
    fn a_silent_or_flooding_witness_is_named_clearly() -> TestResult {
        let s = setup()?;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let silent = serve(move |_, _| {
            // Holds the connection open, answering nothing, until the
            // test is over.
            let _ = rx.recv_timeout(Duration::from_secs(10));
            Vec::new()
        })?;
        let mut a = asker(silent, &s.wkey, &s.signer, Duration::from_millis(300))?;
        let e = a.round().map(|_| ()).map_err(|e| e.to_string());
        assert!(
            matches!(&e, Err(e) if e.contains("within --witness-timeout")),
            "{e:?}"
        );
        drop(tx);
        let flood = serve(|_, _| {
            let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n".to_vec();
            out.extend(vec![b'a'; 1_000_000]);
            out
        })?;
        let mut a = asker(flood, &s.wkey, &s.signer, Duration::from_secs(10))?;
        let e = a.round().map(|_| ()).map_err(|e| e.to_string());
        assert!(matches!(&e, Err(e) if e.contains("over 64 KiB")), "{e:?}");
        let chunked = serve(|_, _| {
            b"HTTP/1.1 409 Conflict\r\nContent-Type: text/x.tlog.size\r\n\
              Transfer-Encoding: chunked\r\n\r\n2\r\n5\n\r\n0\r\n\r\n"
                .to_vec()
        })?;
        let mut a = asker(chunked, &s.wkey, &s.signer, Duration::from_secs(10))?;
        let e = a.round().map(|_| ()).map_err(|e| e.to_string());
        assert!(
            matches!(&e, Err(e) if e.contains("Transfer-Encoding")),
            "{e:?}"
        );
        Ok(())
    }

    fn report(id: u64) -> Result<Record, Box<dyn std::error::Error>> {
        Ok(crate::testing::report_record(id))
    }

    /// An asker running as its witness thread on slot 0 of its board;
    /// stopped when dropped.
    struct Running {
        stop: Arc<AtomicBool>,
        signer: Arc<CheckpointSigner>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Running {
        fn start(mut a: Asker) -> Running {
            let stop = Arc::new(AtomicBool::new(false));
            let signer = Arc::clone(&a.signer);
            let s = Arc::clone(&stop);
            let thread = std::thread::spawn(move || a.run(&s));
            Running {
                stop,
                signer,
                thread: Some(thread),
            }
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            self.signer.wake_all();
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn waited_for(board: &Board) -> Vec<String> {
        board.state.lock().map_or_else(
            |_| Vec::new(),
            |st| {
                st.slots
                    .iter()
                    .filter(|s| s.waited)
                    .map(|s| s.name.clone())
                    .collect()
            },
        )
    }

    /// The commit thread's side: the tree it asks for is cosigned by the
    /// time its wait returns; once the witness failed it is not waited for
    /// (the tree goes out without its line) until its thread, still asking,
    /// has it cosigning again.
    #[test]
    fn a_commit_gets_its_own_tree_cosigned_but_does_not_wait_for_a_failed_witness() -> TestResult {
        let s = setup()?;
        let witness = s.witness;
        let up = Arc::new(AtomicBool::new(true));
        let answering = Arc::clone(&up);
        let addr = serve(move |_, body| {
            if !answering.load(Ordering::SeqCst) {
                // Down: the connection closes unanswered.
                return Vec::new();
            }
            answered_by(&witness, body, 1)
        })?;
        let dir = tempfile::tempdir()?;
        let mut log = SqliteStore::open(dir.path())?;
        log.commit(&[report(1)?])?;
        let board = Arc::new(Board::new(
            std::iter::once("w.example".to_string()),
            Duration::from_secs(60),
        ));
        let mut a = asker(addr, &s.wkey, &s.signer, Duration::from_secs(10))?;
        a.store = Box::new(SqliteStore::open(dir.path())?);
        a.board = Arc::clone(&board);
        let _thread = Running::start(a);
        let wkey = CosignatureVerifier::from_key(&s.wkey)?;
        let wait = Duration::from_secs(60);
        let mut next = 2;
        let mut commit = |log: &mut SqliteStore| -> Result<Head, Box<dyn std::error::Error>> {
            log.commit(&[report(next)?])?;
            next += 1;
            Ok(log.log_head()?)
        };

        // Up: the commit's own tree comes back cosigned.
        let head = commit(&mut log)?;
        assert_eq!(board.cosigned(&s.signer, head, wait, &mut || {}), head);
        wkey.verify(&s.signer.checkpoint(head.size, head.root)?)?;
        assert_eq!(waited_for(&board), vec!["w.example"]);

        // Down: the failure answers the wait, and later commits no longer
        // wait for it; their trees carry no line of it.
        up.store(false, Ordering::SeqCst);
        for _ in 0..2 {
            let head = commit(&mut log)?;
            assert_eq!(board.cosigned(&s.signer, head, wait, &mut || {}), head);
            assert_eq!(s.signer.cosignatures(head.size, &head.root), "");
            assert!(waited_for(&board).is_empty());
        }

        // Back: its thread, asked on each commit, cosigns again, and
        // commits wait for it again.
        up.store(true, Ordering::SeqCst);
        for _ in 0..200 {
            if !waited_for(&board).is_empty() {
                break;
            }
            let head = commit(&mut log)?;
            board.cosigned(&s.signer, head, wait, &mut || {});
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(waited_for(&board), vec!["w.example"]);
        let head = commit(&mut log)?;
        assert_eq!(board.cosigned(&s.signer, head, wait, &mut || {}), head);
        wkey.verify(&s.signer.checkpoint(head.size, head.root)?)?;
        Ok(())
    }

    /// A witness that does not answer within the wait is waited for no
    /// more: the wait ends, and the next does not count on it.
    #[test]
    fn a_witness_silent_past_the_wait_is_not_waited_for_again() -> TestResult {
        let s = setup()?;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = std::sync::Mutex::new(rx);
        let silent = serve(move |_, _| {
            if let Ok(rx) = rx.lock() {
                let _ = rx.recv_timeout(Duration::from_secs(20));
            }
            Vec::new()
        })?;
        let board = Arc::new(Board::new(
            std::iter::once("w.example".to_string()),
            Duration::from_secs(60),
        ));
        let mut a = asker(silent, &s.wkey, &s.signer, Duration::from_secs(20))?;
        a.board = Arc::clone(&board);
        let head = a.store.log_head()?;
        let running = Running::start(a);
        assert_eq!(
            board.cosigned(&s.signer, head, Duration::from_millis(200), &mut || {}),
            head
        );
        assert!(waited_for(&board).is_empty());
        assert_eq!(s.signer.cosignatures(head.size, &head.root), "");
        drop(tx);
        drop(running);
        Ok(())
    }

    /// Another host's commit and thread had the witness cosign past the
    /// tree asked for: the thread has the current tree cosigned instead,
    /// and that is the tree the commit's records are proved against.
    #[test]
    fn a_witness_ahead_of_the_asked_tree_cosigns_the_current_one() -> TestResult {
        let s = setup()?;
        let dir = tempfile::tempdir()?;
        let mut log = SqliteStore::open(dir.path())?;
        log.commit(&[report(1)?, report(2)?])?;
        let asked = log.log_head()?;
        log.commit(&[report(3)?])?;
        let now = log.log_head()?;
        // The other host's thread: the witness holds the tree of 3.
        let other = s.signer.log_signed(now.size, now.root)?;
        let proof = consistency_proof(0, now.size, |ids: &[NodeId]| log.log_nodes(ids))?;
        let fed = s
            .witness
            .add_checkpoint(request_body(0, &proof, &other).as_bytes(), 1);
        assert!(
            matches!(fed, crate::tlog::witness::Outcome::Cosigned(_)),
            "{fed:?}"
        );
        let witness = s.witness;
        let addr = serve(move |_, body| answered_by(&witness, body, 2))?;
        let board = Arc::new(Board::new(
            std::iter::once("w.example".to_string()),
            Duration::from_secs(60),
        ));
        let mut a = asker(addr, &s.wkey, &s.signer, Duration::from_secs(10))?;
        a.store = Box::new(SqliteStore::open(dir.path())?);
        a.board = Arc::clone(&board);
        // It learns of the larger tree from the witness (409) before the
        // commit thread asks, as the other host's commits went on.
        a.known = Some(now.size);
        let _thread = Running::start(a);
        let used = board.cosigned(&s.signer, asked, Duration::from_secs(60), &mut || {});
        assert_eq!(used, now);
        CosignatureVerifier::from_key(&s.wkey)?
            .verify(&s.signer.checkpoint(now.size, now.root)?)?;
        Ok(())
    }

    /// A witness given up on is waited for again only once a round of its
    /// thread succeeds within the wait: one that cosigns, but slower than
    /// the wait, would otherwise be waited for and given up on (and
    /// logged) at every commit.
    #[test]
    fn a_witness_slower_than_the_wait_is_not_waited_for_again() {
        let board = Board::new(
            std::iter::once("w.example".to_string()),
            Duration::from_millis(500),
        );
        let head = Head {
            size: 3,
            root: [3u8; 32],
        };
        board.report(0, None, Err(&AskError::KeepsConflicting), Duration::ZERO);
        assert!(waited_for(&board).is_empty());
        board.report(0, None, Ok(Some(head)), Duration::from_secs(1));
        assert!(waited_for(&board).is_empty(), "slower than the wait");
        board.report(0, None, Ok(Some(head)), Duration::from_millis(100));
        assert_eq!(waited_for(&board), vec!["w.example"]);
        // Once closed (stopping), nothing is waited for again.
        board.close();
        board.report(0, None, Ok(Some(head)), Duration::ZERO);
        assert!(waited_for(&board).is_empty());
    }
}
