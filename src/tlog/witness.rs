//! A minimal C2SP `tlog-witness`: `add-checkpoint` checks a log's signed
//! checkpoint against the latest one this witness cosigned for that log
//! (same size and root, or a valid RFC 6962 consistency proof from it),
//! records the new one durably, and only then cosigns it
//! ([`super::cosignature`]). It never cosigns a smaller tree than one it
//! cosigned, nor two roots of one size: once a log has shown it a tree,
//! every later cosignature is of a tree that extends it.
//!
//! The request is parsed and judged here, sans I/O; [`Outcome::answer`] is
//! the one place outcomes become HTTP statuses, so the witness's HTTP
//! front ([`crate::server`]'s `server witness run`) only moves bytes.
//!
//! State is one small text file, `<origin> <size> <base64 root>` a line,
//! rewritten whole (temporary file, fsync, rename, directory fsync) before
//! a cosignature leaves; the check and the write happen under one lock,
//! so two requests racing cannot roll the log back (the race the spec
//! warns of).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use openssl::base64;

use super::checkpoint::{parse_decimal, parse_hash, Checkpoint};
use super::cosignature::Cosigner;
use super::merkle::{empty_root, verify_consistency, Hash};
use super::note::{NoteVerifier, SignedNote};

/// A client must not send more consistency proof lines than this.
pub const MAX_PROOF_LINES: usize = 63;
/// The largest request body taken (a checkpoint with a few dozen
/// signatures and a full proof is well under 16 KiB).
pub const MAX_BODY: usize = 16 * 1024;
/// The path an `add-checkpoint` request is posted to, under the prefix.
pub const ADD_CHECKPOINT: &str = "/add-checkpoint";
/// The media type of a 409's body (the witness's latest size).
pub const SIZE_MEDIA_TYPE: &str = "text/x.tlog.size";

/// What became of one `add-checkpoint` request.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Recorded and cosigned: the cosignature line(s).
    Cosigned(String),
    /// The body breaks the request format, or the old size exceeds the
    /// checkpoint's (400); says what.
    Malformed(&'static str),
    /// No log with this origin is trusted here (404).
    UnknownOrigin(String),
    /// No signature by a trusted key of the log verifies (403).
    NotSigned(String),
    /// The client's old size is not the size this witness last cosigned
    /// (409, the body names that size so the client can retry from it).
    Conflict {
        /// The latest size cosigned for the origin.
        size: u64,
    },
    /// The same size as the latest cosigned, with another root: a fork
    /// (409; never cosigned).
    Fork {
        /// The size both trees claim.
        size: u64,
    },
    /// The consistency proof does not show the checkpoint extends the one
    /// cosigned last (422).
    Inconsistent {
        /// The latest size cosigned.
        old: u64,
        /// The checkpoint's size.
        new: u64,
    },
    /// The new state could not be made durable, or signing failed (500):
    /// nothing was cosigned.
    Failed(String),
}

/// An HTTP answer, without the transport.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Outcome {
    /// The HTTP answer the spec gives this outcome.
    pub fn answer(&self) -> Answer {
        let text = |status, body: String| Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into_bytes(),
        };
        match self {
            Outcome::Cosigned(lines) => text(200, lines.clone()),
            Outcome::Malformed(why) => text(400, format!("bad add-checkpoint request: {why}\n")),
            Outcome::UnknownOrigin(o) => text(404, format!("no log {o:?} is known here\n")),
            Outcome::NotSigned(o) => text(
                403,
                format!("the checkpoint carries no valid signature by a key of log {o:?}\n"),
            ),
            Outcome::Conflict { size } | Outcome::Fork { size } => Answer {
                status: 409,
                content_type: SIZE_MEDIA_TYPE,
                body: format!("{size}\n").into_bytes(),
            },
            Outcome::Inconsistent { old, new } => text(
                422,
                format!("the consistency proof from size {old} to {new} does not verify\n"),
            ),
            Outcome::Failed(why) => text(500, format!("the witness failed: {why}\n")),
        }
    }
}

/// Why a witness could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum WitnessError {
    /// Reading the state file failed.
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line of the state file is not `<origin> <size> <root>`.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The line number (1-based).
        line: usize,
    },
    /// No log key was given: the witness would refuse everything.
    NoLogs,
    /// Another running witness holds this state (its lock file): two
    /// witnesses on one state could each cosign another tree.
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Why it could not be taken (`EWOULDBLOCK`: held).
        source: std::io::Error,
    },
}

impl fmt::Display for WitnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WitnessError::Read { path, source } => {
                write!(f, "reading the witness state {}: {source}", path.display())
            }
            WitnessError::Corrupt { path, line } => write!(
                f,
                "the witness state {} is damaged at line {line} (expected <origin> <size> \
                 <base64 root>); refusing to start rather than forget what was cosigned",
                path.display()
            ),
            WitnessError::NoLogs => write!(f, "a witness needs at least one log key (--log-key)"),
            WitnessError::Locked { path, source }
                if source.kind() == std::io::ErrorKind::WouldBlock =>
            {
                write!(
                    f,
                    "another witness is running on this state ({} is locked): two on one state \
                     could each cosign a different tree",
                    path.display()
                )
            }
            WitnessError::Locked { path, source } => {
                write!(
                    f,
                    "cannot lock the witness state {}: {source}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for WitnessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WitnessError::Read { source, .. } | WitnessError::Locked { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A parsed `add-checkpoint` body.
#[derive(Debug)]
struct Request<'b> {
    old: u64,
    proof: Vec<Hash>,
    note: &'b str,
}

fn parse_request(body: &[u8]) -> Result<Request<'_>, &'static str> {
    let body = std::str::from_utf8(body).map_err(|_| "not UTF-8")?;
    let (first, mut rest) = body.split_once('\n').ok_or("no old size line")?;
    let old = first
        .strip_prefix("old ")
        .and_then(parse_decimal)
        .ok_or("the first line is not `old <size>`")?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = rest
            .split_once('\n')
            .ok_or("no blank line before the checkpoint")?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err("more than 63 consistency proof lines");
        }
        proof.push(parse_hash(line).ok_or("a proof line is not a base64 SHA-256 hash")?);
    }
    Ok(Request {
        old,
        proof,
        note: rest,
    })
}

/// The latest tree cosigned per origin.
type Heads = BTreeMap<String, (u64, Hash)>;

fn load(path: &Path) -> Result<Heads, WitnessError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Heads::new()),
        Err(source) => {
            return Err(WitnessError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut heads = Heads::new();
    for (i, line) in text.lines().enumerate() {
        let corrupt = || WitnessError::Corrupt {
            path: path.to_path_buf(),
            line: i + 1,
        };
        let mut parts = line.split(' ');
        let (Some(origin), Some(size), Some(root), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(corrupt());
        };
        let size = parse_decimal(size).ok_or_else(corrupt)?;
        let root = parse_hash(root).ok_or_else(corrupt)?;
        heads.insert(origin.to_string(), (size, root));
    }
    Ok(heads)
}

/// Takes the exclusive lock beside the state file `<state>.lock`, and
/// then (no other witness writing) removes temporary files a killed one
/// left (`.<state>.<random>.tmp`, from the atomic write).
fn lock_state(state: &Path) -> Result<fs::File, WitnessError> {
    let mut name = state.as_os_str().to_os_string();
    name.push(".lock");
    let path = PathBuf::from(name);
    let locked = |source| WitnessError::Locked {
        path: path.clone(),
        source,
    };
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(locked)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|e| locked(e.into()))?;
    if let (Some(dir), Some(base)) = (state.parent(), state.file_name()) {
        let prefix = format!(".{}.", base.to_string_lossy());
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let n = entry.file_name();
            let n = n.to_string_lossy();
            if n.starts_with(&prefix) && n.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    Ok(file)
}

fn render(heads: &Heads) -> String {
    heads
        .iter()
        .map(|(o, (s, r))| format!("{o} {s} {}\n", base64::encode_block(r)))
        .collect()
}

/// A witness: its key, the logs it trusts (by origin), and what it last
/// cosigned of each.
#[derive(Debug)]
pub struct Witness {
    cosigner: Cosigner,
    logs: BTreeMap<String, Vec<NoteVerifier>>,
    state: Option<PathBuf>,
    heads: Mutex<Heads>,
    /// The state's lock file, held (flock) for the witness's life.
    _lock: Option<fs::File>,
}

impl Witness {
    /// A witness cosigning with `cosigner` the checkpoints of `logs` (each
    /// trusted for the origin its key is named after, as certboard's logs
    /// sign), keeping its state in `state` (`None`: in memory only, for
    /// tests).
    pub fn new(
        cosigner: Cosigner,
        logs: Vec<NoteVerifier>,
        state: Option<PathBuf>,
    ) -> Result<Witness, WitnessError> {
        if logs.is_empty() {
            return Err(WitnessError::NoLogs);
        }
        let lock = state.as_deref().map(lock_state).transpose()?;
        let heads = match &state {
            Some(p) => load(p)?,
            None => Heads::new(),
        };
        let mut by_origin: BTreeMap<String, Vec<NoteVerifier>> = BTreeMap::new();
        for v in logs {
            by_origin.entry(v.name().to_string()).or_default().push(v);
        }
        Ok(Witness {
            cosigner,
            logs: by_origin,
            state,
            heads: Mutex::new(heads),
            _lock: lock,
        })
    }

    /// The witness's key.
    pub fn cosigner(&self) -> &Cosigner {
        &self.cosigner
    }

    /// The latest size and root cosigned for `origin`.
    pub fn latest(&self, origin: &str) -> Option<(u64, Hash)> {
        self.heads.lock().ok()?.get(origin).copied()
    }

    /// Judges one `add-checkpoint` body, cosigning at `now` (POSIX
    /// seconds) when every check passes.
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Outcome {
        let req = match parse_request(body) {
            Ok(r) => r,
            Err(why) => return Outcome::Malformed(why),
        };
        let Ok(parsed) = SignedNote::parse(req.note) else {
            return Outcome::Malformed("the checkpoint is not a signed note");
        };
        let Ok(cp) = Checkpoint::parse_text(parsed.text) else {
            return Outcome::Malformed("the note is not a checkpoint");
        };
        let Some(keys) = self.logs.get(&cp.origin) else {
            return Outcome::UnknownOrigin(cp.origin);
        };
        if !keys.iter().any(|k| k.open(req.note).is_ok()) {
            return Outcome::NotSigned(cp.origin);
        }
        if req.old > cp.size {
            return Outcome::Malformed("the old size exceeds the checkpoint's size");
        }
        // From here to the reply the state is held: check and record are
        // one step for any two requests.
        let Ok(mut heads) = self.heads.lock() else {
            return Outcome::Failed("the witness state lock was poisoned".into());
        };
        let (size, root) = heads.get(&cp.origin).copied().unwrap_or((0, empty_root()));
        if req.old != size {
            return Outcome::Conflict { size };
        }
        // The spec's 409 for a root other than the one recorded at this
        // size; with nothing recorded that is the empty tree's root, so a
        // size-0 checkpoint with any other root is refused the same way.
        if cp.size == size && cp.root != root {
            return Outcome::Fork { size };
        }
        if !verify_consistency(size, &root, cp.size, &cp.root, &req.proof) {
            return Outcome::Inconsistent {
                old: size,
                new: cp.size,
            };
        }
        if heads.get(&cp.origin) != Some(&(cp.size, cp.root)) {
            let mut next = heads.clone();
            next.insert(cp.origin.clone(), (cp.size, cp.root));
            if let Some(path) = &self.state {
                if let Err(e) = crate::fsutil::write_atomic(path, render(&next).as_bytes(), 0o600) {
                    log::error!("witness: recording {} failed: {e}", path.display());
                    return Outcome::Failed(format!("recording the new checkpoint: {e}"));
                }
            }
            *heads = next;
        }
        match self.cosigner.cosign(parsed.text, now) {
            Ok(line) => Outcome::Cosigned(line),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

/// The `add-checkpoint` body asking for `checkpoint` to be cosigned, from
/// the witness's `old` size with `proof` from it.
pub fn request_body(old: u64, proof: &[Hash], checkpoint: &str) -> String {
    let mut s = format!("old {old}\n");
    for h in proof {
        s.push_str(&base64::encode_block(h));
        s.push('\n');
    }
    s.push('\n');
    s.push_str(checkpoint);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::{consistency_proof, leaf_hash, NodeId, TreeError};
    use crate::tlog::NoteSigner;
    use openssl::pkey::PKey;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const ORIGIN: &str = "test.example/log";

    /// A tree kept as all its leaves' hashes (the tests' trees are small).
    struct Tree(Vec<Hash>);

    impl Tree {
        fn of(leaves: &[&str]) -> Tree {
            Tree(leaves.iter().map(|l| leaf_hash(l.as_bytes())).collect())
        }

        fn node(&self, id: NodeId) -> Hash {
            let width = 1u64 << id.level;
            let start = (id.index * width) as usize;
            range_root(&self.0[start..start + width as usize])
        }

        fn root(&self, size: u64) -> Hash {
            range_root(&self.0[..size as usize])
        }

        fn consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, TreeError> {
            consistency_proof(old, new, |ids: &[NodeId]| {
                Ok::<_, TreeError>(ids.iter().map(|&id| self.node(id)).collect())
            })
        }
    }

    fn range_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = (n as u64 - 1).ilog2();
                let split = 1usize << k;
                crate::tlog::merkle::node_hash(
                    &range_root(&leaves[..split]),
                    &range_root(&leaves[split..]),
                )
            }
        }
    }

    struct Setup {
        log: NoteSigner,
        witness: Witness,
    }

    fn setup(state: Option<PathBuf>) -> Result<Setup, Box<dyn std::error::Error>> {
        let log = NoteSigner::new(ORIGIN, PKey::generate_ed25519()?)?;
        let cosigner = Cosigner::new("witness.test", PKey::generate_ed25519()?)?;
        let witness = Witness::new(cosigner, vec![log.verifier()?], state)?;
        Ok(Setup { log, witness })
    }

    fn checkpoint(
        log: &NoteSigner,
        size: u64,
        root: Hash,
    ) -> Result<String, crate::tlog::NoteError> {
        log.sign(
            &Checkpoint {
                origin: log.name().to_string(),
                size,
                root,
            }
            .text(),
        )
    }

    #[test]
    fn cosigns_a_growing_log_and_the_cosignature_verifies() -> TestResult {
        let s = setup(None)?;
        let tree = Tree::of(&["a", "b", "c", "d", "e"]);
        let cp3 = checkpoint(&s.log, 3, tree.root(3))?;
        let Outcome::Cosigned(line) = s
            .witness
            .add_checkpoint(request_body(0, &[], &cp3).as_bytes(), 7)
        else {
            return Err("size 3 not cosigned".into());
        };
        let note = format!("{cp3}{line}");
        assert_eq!(s.witness.cosigner().verifier()?.verify(&note)?, 7);
        assert_eq!(
            s.log.verifier()?.open(&note)?.text.lines().nth(1),
            Some("3")
        );
        let cp5 = checkpoint(&s.log, 5, tree.root(5))?;
        let body = request_body(3, &tree.consistency(3, 5)?, &cp5);
        assert!(matches!(
            s.witness.add_checkpoint(body.as_bytes(), 8),
            Outcome::Cosigned(_)
        ));
        assert_eq!(s.witness.latest(ORIGIN), Some((5, tree.root(5))));
        // The same checkpoint again is cosigned again (nothing changes).
        let again = request_body(5, &[], &cp5);
        assert!(matches!(
            s.witness.add_checkpoint(again.as_bytes(), 9),
            Outcome::Cosigned(_)
        ));
        Ok(())
    }

    /// c2sp.org/tlog-witness's example request body, byte for byte.
    const SPEC_REQUEST: &str = "old 20852014\n\
        PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\
        jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
        5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n\
        /6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\
        \n\
        example.com/behind-the-sofa\n\
        20852163\n\
        CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
        \n\
        \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
        \u{2014} example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n";

    #[test]
    fn the_specs_example_request_parses() -> TestResult {
        let req = parse_request(SPEC_REQUEST.as_bytes()).map_err(|e| e.to_string())?;
        assert_eq!((req.old, req.proof.len()), (20_852_014, 4));
        assert!(req
            .note
            .starts_with("example.com/behind-the-sofa\n20852163\n"));
        // Well formed, so judged on its origin: unknown here (404), not 400.
        let s = setup(None)?;
        let a = s
            .witness
            .add_checkpoint(SPEC_REQUEST.as_bytes(), 1)
            .answer();
        assert_eq!(a.status, 404, "{}", String::from_utf8_lossy(&a.body));
        Ok(())
    }

    #[test]
    fn every_refusal_has_its_status() -> TestResult {
        let s = setup(None)?;
        let tree = Tree::of(&["a", "b", "c", "d"]);
        let cp2 = checkpoint(&s.log, 2, tree.root(2))?;
        let status = |body: &str| s.witness.add_checkpoint(body.as_bytes(), 1).answer().status;
        // Malformed bodies: 400.
        for bad in [
            String::new(),
            "old 01\n\n".to_string() + &cp2,
            "old 0\n".to_string() + &cp2,
            "old 0\nnot-a-hash\n\n".to_string() + &cp2,
            "old 0\n\nnot a note\n".to_string(),
            request_body(0, &[], "text\n\n\u{2014} x AAAAAAA=\n"),
            request_body(0, &vec![[0u8; 32]; 64], &cp2),
            request_body(3, &[], &cp2),
        ] {
            assert_eq!(status(&bad), 400, "{bad:?}");
        }
        // An unknown origin: 404.
        let stranger = NoteSigner::new("other.example/log", PKey::generate_ed25519()?)?;
        assert_eq!(
            status(&request_body(
                0,
                &[],
                &checkpoint(&stranger, 2, tree.root(2))?
            )),
            404
        );
        // The right origin signed by another key: 403.
        let impostor = NoteSigner::new(ORIGIN, PKey::generate_ed25519()?)?;
        assert_eq!(
            status(&request_body(
                0,
                &[],
                &checkpoint(&impostor, 2, tree.root(2))?
            )),
            403
        );
        // A proof when old is 0: it cannot verify (422).
        assert_eq!(status(&request_body(0, &[[1u8; 32]], &cp2)), 422);
        assert_eq!(status(&request_body(0, &[], &cp2)), 200);
        // A stale old size: 409 naming the witness's size.
        let cp4 = checkpoint(&s.log, 4, tree.root(4))?;
        let stale = s
            .witness
            .add_checkpoint(request_body(0, &[], &cp4).as_bytes(), 1);
        assert_eq!(stale, Outcome::Conflict { size: 2 });
        let a = stale.answer();
        assert_eq!(
            (a.status, a.content_type, a.body.as_slice()),
            (409, SIZE_MEDIA_TYPE, &b"2\n"[..])
        );
        // A proof that does not verify: 422.
        let wrong = tree.consistency(1, 4)?;
        assert_eq!(status(&request_body(2, &wrong, &cp4)), 422);
        // Nothing was recorded by the refusals.
        assert_eq!(s.witness.latest(ORIGIN), Some((2, tree.root(2))));
        Ok(())
    }

    #[test]
    fn a_proof_with_a_line_too_many_or_too_few_is_refused() -> TestResult {
        let leaves: Vec<String> = (0..20).map(|i| format!("leaf {i}")).collect();
        let tree = Tree::of(&leaves.iter().map(String::as_str).collect::<Vec<_>>());
        for (old, new) in [
            (1, 2),
            (2, 3),
            (3, 7),
            (4, 8),
            (4, 13),
            (5, 16),
            (8, 20),
            (13, 20),
        ] {
            let s = setup(None)?;
            let cp_old = checkpoint(&s.log, old, tree.root(old))?;
            let first = s
                .witness
                .add_checkpoint(request_body(0, &[], &cp_old).as_bytes(), 1);
            assert!(matches!(first, Outcome::Cosigned(_)), "{old}: {first:?}");
            let cp_new = checkpoint(&s.log, new, tree.root(new))?;
            let proof = tree.consistency(old, new)?;
            let mut longer = proof.clone();
            longer.push(tree.root(1));
            let mut doubled = vec![proof[0]];
            doubled.extend_from_slice(&proof);
            let shorter = &proof[..proof.len() - 1];
            for bad in [&longer[..], &doubled[..], shorter, &[][..]] {
                let a = s
                    .witness
                    .add_checkpoint(request_body(old, bad, &cp_new).as_bytes(), 2)
                    .answer();
                assert_eq!(a.status, 422, "{old}->{new} with {} lines", bad.len());
            }
            assert_eq!(s.witness.latest(ORIGIN), Some((old, tree.root(old))));
            let good = s
                .witness
                .add_checkpoint(request_body(old, &proof, &cp_new).as_bytes(), 3);
            assert!(
                matches!(good, Outcome::Cosigned(_)),
                "{old}->{new}: {good:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_fork_or_a_smaller_tree_is_never_cosigned() -> TestResult {
        let s = setup(None)?;
        let honest = Tree::of(&["a", "b", "c", "d"]);
        let forked = Tree::of(&["a", "b", "X", "d"]);
        let cp3 = checkpoint(&s.log, 3, honest.root(3))?;
        assert!(matches!(
            s.witness
                .add_checkpoint(request_body(0, &[], &cp3).as_bytes(), 1),
            Outcome::Cosigned(_)
        ));
        // Same size, other root (the log key signed both): refused.
        let fork3 = checkpoint(&s.log, 3, forked.root(3))?;
        assert_eq!(
            s.witness
                .add_checkpoint(request_body(3, &[], &fork3).as_bytes(), 2),
            Outcome::Fork { size: 3 }
        );
        // A larger forked tree: its proof cannot lead from the cosigned root.
        let fork4 = checkpoint(&s.log, 4, forked.root(4))?;
        let body = request_body(3, &forked.consistency(3, 4)?, &fork4);
        assert_eq!(
            s.witness.add_checkpoint(body.as_bytes(), 2).answer().status,
            422
        );
        // A size-0 checkpoint whose root is not the empty tree's: the
        // spec's 409 for another root at the recorded size.
        let fresh = setup(None)?;
        let bogus0 = checkpoint(&fresh.log, 0, [9u8; 32])?;
        let a = fresh
            .witness
            .add_checkpoint(request_body(0, &[], &bogus0).as_bytes(), 2)
            .answer();
        assert_eq!((a.status, a.body.as_slice()), (409, &b"0\n"[..]));
        assert_eq!(fresh.witness.latest(ORIGIN), None);
        // A smaller tree, whatever old size is claimed.
        let cp2 = checkpoint(&s.log, 2, honest.root(2))?;
        assert_eq!(
            s.witness
                .add_checkpoint(request_body(2, &[], &cp2).as_bytes(), 2),
            Outcome::Conflict { size: 3 }
        );
        assert_eq!(
            s.witness
                .add_checkpoint(request_body(3, &[], &cp2).as_bytes(), 2),
            Outcome::Malformed("the old size exceeds the checkpoint's size")
        );
        assert_eq!(s.witness.latest(ORIGIN), Some((3, honest.root(3))));
        Ok(())
    }

    #[test]
    fn two_racing_requests_from_one_size_never_both_win() -> TestResult {
        let s = setup(None)?;
        let tree = Tree::of(&["a", "b", "c", "d"]);
        let cp2 = checkpoint(&s.log, 2, tree.root(2))?;
        assert!(matches!(
            s.witness
                .add_checkpoint(request_body(0, &[], &cp2).as_bytes(), 1),
            Outcome::Cosigned(_)
        ));
        let to3 = request_body(
            2,
            &tree.consistency(2, 3)?,
            &checkpoint(&s.log, 3, tree.root(3))?,
        );
        let to4 = request_body(
            2,
            &tree.consistency(2, 4)?,
            &checkpoint(&s.log, 4, tree.root(4))?,
        );
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| s.witness.add_checkpoint(to3.as_bytes(), 2));
            let b = scope.spawn(|| s.witness.add_checkpoint(to4.as_bytes(), 2));
            (a.join(), b.join())
        });
        let (a, b) = (a.map_err(|_| "panicked")?, b.map_err(|_| "panicked")?);
        // One is cosigned; the other learns the new size. The state is the
        // winner's, never rolled back to the loser's.
        match (&a, &b) {
            (Outcome::Cosigned(_), Outcome::Conflict { size: 3 }) => {
                assert_eq!(s.witness.latest(ORIGIN), Some((3, tree.root(3))))
            }
            (Outcome::Conflict { size: 4 }, Outcome::Cosigned(_)) => {
                assert_eq!(s.witness.latest(ORIGIN), Some((4, tree.root(4))))
            }
            other => return Err(format!("both or neither won: {other:?}").into()),
        }
        Ok(())
    }

    #[test]
    fn the_state_survives_a_restart_and_damage_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("witness-state");
        let Setup { log, witness } = setup(Some(path.clone()))?;
        // The outer Result: building the keys; the inner: the witness's.
        type Reopened = Result<Result<Witness, WitnessError>, Box<dyn std::error::Error>>;
        let reopen = || -> Reopened {
            let cosigner = Cosigner::new("witness.test", PKey::generate_ed25519()?)?;
            Ok(Witness::new(
                cosigner,
                vec![log.verifier()?],
                Some(path.clone()),
            ))
        };
        let tree = Tree::of(&["a", "b", "c"]);
        let cp3 = checkpoint(&log, 3, tree.root(3))?;
        assert!(matches!(
            witness.add_checkpoint(request_body(0, &[], &cp3).as_bytes(), 1),
            Outcome::Cosigned(_)
        ));
        // A second witness on the same state is refused while one runs.
        let second = reopen()?;
        assert!(
            matches!(second, Err(WitnessError::Locked { .. })),
            "{second:?}"
        );
        drop(witness);
        // A killed witness's leftover temporary file is removed at start.
        let leftover = dir.path().join(".witness-state.0123abcd.tmp");
        fs::write(&leftover, "half a state")?;
        let again = reopen()??;
        assert!(!leftover.exists());
        assert_eq!(again.latest(ORIGIN), Some((3, tree.root(3))));
        // Restarted, it still refuses to go back to 0.
        assert_eq!(
            again.add_checkpoint(request_body(0, &[], &cp3).as_bytes(), 2),
            Outcome::Conflict { size: 3 }
        );
        drop(again);
        fs::write(&path, "test.example/log three AAAA\n")?;
        assert!(matches!(
            reopen()?,
            Err(WitnessError::Corrupt { line: 1, .. })
        ));
        Ok(())
    }
}
