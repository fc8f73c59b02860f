//! `client audit SID`: everything the transparency log holds about her,
//! read from the log's tiles API (C2SP tlog-tiles) and checked: the signed
//! checkpoint (with the log's key when she has it), the entries recomputing
//! its root, and the checkpoint she kept from her receipts being a prefix
//! of it. Then every certificate and submission logged for her SID, with
//! the ones she cannot account for marked, and any receipt of hers the log
//! does not hold.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use crate::tlog::merkle::{self, Hash};
use crate::tlog::note::SignedNote;
use crate::tlog::tiles::{split_bundle, Tile, TILE_WIDTH};
use crate::tlog::{Checkpoint, Leaf, NoteVerifier};

/// Largest answer read from the log's server (a full entry bundle of
/// 256 entries of at most 64 KiB each, with room).
const MAX_BODY: usize = 20 << 20;

/// Why the audit could not be made, or what it found wrong with the log.
#[derive(Debug)]
#[non_exhaustive]
pub enum AuditError {
    /// The log URL is not `http://host:port/prefix`.
    BadUrl(String),
    /// Fetching a resource failed.
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
    /// The checkpoint or an entry does not hold up (a bad signature, a
    /// root the entries do not give, a malformed entry).
    Log(String),
    /// The checkpoint lacks a valid cosignature by a witness she trusts
    /// (`--witness-key`).
    NotWitnessed(crate::tlog::cosignature::CosignatureError),
    /// SECURITY: the log does not extend the checkpoint she kept.
    Fork {
        /// The size she saw.
        kept: u64,
        /// The size served now.
        now: u64,
    },
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditError::BadUrl(u) => write!(f, "{u:?} is not an http://host:port/... log URL"),
            AuditError::NotWitnessed(e) => write!(
                f,
                "{e}: no witness she trusts vouches that everyone is shown this tree (the \
                 witness may be down, or not asked yet: try again shortly)"
            ),
            AuditError::Fetch { url, why } => write!(f, "fetching {url}: {why}"),
            AuditError::Log(why) => write!(f, "the log does not hold up: {why}"),
            AuditError::Fork { kept, now } => write!(
                f,
                "SECURITY ERROR: the log served now ({now} entries) does not extend the \
                 checkpoint kept from her receipts ({kept} entries): it was forked or rewritten"
            ),
        }
    }
}

impl std::error::Error for AuditError {}

/// One GET over a fresh connection: the body of a 200 answer.
pub(crate) fn get(host: &str, path: &str, timeout: Duration) -> Result<Vec<u8>, AuditError> {
    let url = format!("http://{host}{path}");
    let fail = |why: String| AuditError::Fetch {
        url: url.clone(),
        why,
    };
    let addr = host
        .to_socket_addrs()
        .map_err(|e| fail(e.to_string()))?
        .next()
        .ok_or_else(|| fail("no address".into()))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail(e.to_string()))?;
    s.set_read_timeout(Some(timeout))
        .and_then(|_| s.set_write_timeout(Some(timeout)))
        .map_err(|e| fail(e.to_string()))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| fail(e.to_string()))?;
    let mut all = Vec::new();
    s.take(MAX_BODY as u64 + 16 * 1024)
        .read_to_end(&mut all)
        .map_err(|e| fail(e.to_string()))?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(&all) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Err(fail("not an HTTP answer".into())),
    };
    if resp.code != Some(200) {
        return Err(fail(format!("status {}", resp.code.unwrap_or(0))));
    }
    let len = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let body = &all[head_len..];
    match len {
        Some(n) if n <= body.len() => Ok(body[..n].to_vec()),
        Some(_) => Err(fail("the answer was cut short".into())),
        None => Ok(body.to_vec()),
    }
}

/// `http://host:port/prefix` split into host and path prefix.
pub(crate) fn split_url(url: &str) -> Result<(String, String), AuditError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| AuditError::BadUrl(url.to_string()))?;
    let (host, prefix) = match rest.split_once('/') {
        Some((h, p)) if !p.trim_matches('/').is_empty() => {
            (h, format!("/{}", p.trim_end_matches('/')))
        }
        Some((h, _)) => (h, String::new()),
        None => (rest, String::new()),
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AuditError::BadUrl(url.to_string()));
    }
    Ok((host.to_string(), prefix))
}

/// A certificate logged for her SID.
#[derive(Debug, Clone)]
pub struct LoggedCert {
    /// Entry index.
    pub index: u64,
    /// Serial.
    pub serial: String,
    /// Issued, Unix seconds.
    pub issued_at: u64,
    /// How it was authorised.
    pub authorisation: &'static str,
    /// Whether it is the certificate saved in her folder.
    pub hers_now: bool,
}

/// A submission logged for her SID.
#[derive(Debug, Clone)]
pub struct LoggedSubmission {
    /// Entry index.
    pub index: u64,
    /// The assignment.
    pub assignment: String,
    /// Blackboard's receipt id.
    pub receipt_id: u64,
    /// SHA-256 of what was handed in.
    pub sha256: [u8; 32],
    /// Its size.
    pub size: u64,
    /// When, Unix seconds.
    pub received_at: u64,
    /// Late or not.
    pub late: bool,
    /// Whether a receipt of hers names it.
    pub receipt_held: bool,
}

/// What the audit found.
#[derive(Debug)]
pub struct Audit {
    /// The checkpoint audited (its size and origin).
    pub checkpoint: Checkpoint,
    /// Whether its signature was checked with the log's key.
    pub signature_checked: bool,
    /// The witnesses whose cosignatures of it were checked.
    pub witnessed_by: Vec<String>,
    /// Her certificates in the log.
    pub certs: Vec<LoggedCert>,
    /// Her submissions in the log.
    pub submissions: Vec<LoggedSubmission>,
    /// Receipt ids of hers (saved receipts) the log does not hold.
    pub missing_receipts: Vec<u64>,
}

/// Audits the log at `url` for `sid`, with her folder `dir` (her saved
/// certificate and receipts) and the checkpoint kept in `out_dir`.
pub fn audit(
    url: &str,
    log_key: Option<&NoteVerifier>,
    witnesses: &[crate::tlog::cosignature::CosignatureVerifier],
    sid: &str,
    dir: &Path,
    out_dir: &Path,
    timeout: Duration,
) -> Result<Audit, AuditError> {
    let (host, prefix) = split_url(url)?;
    let note = String::from_utf8(get(&host, &format!("{prefix}/checkpoint"), timeout)?)
        .map_err(|_| AuditError::Log("the checkpoint is not UTF-8".into()))?;
    let (checkpoint, signature_checked) = match log_key {
        Some(v) => (
            Checkpoint::open(&note, v, v.name()).map_err(|e| AuditError::Log(e.to_string()))?,
            true,
        ),
        None => {
            let opened = SignedNote::parse(&note).map_err(|e| AuditError::Log(e.to_string()))?;
            (
                Checkpoint::parse_text(opened.text).map_err(|e| AuditError::Log(e.to_string()))?,
                false,
            )
        }
    };
    // Each witness she trusts must have cosigned this very tree.
    crate::tlog::cosignature::require_all(&note, witnesses).map_err(AuditError::NotWitnessed)?;
    let witnessed_by = witnesses.iter().map(|w| w.name().to_string()).collect();
    let size = checkpoint.size;
    let mut entries: Vec<Vec<u8>> = Vec::with_capacity(size.min(1 << 20) as usize);
    let mut index = 0u64;
    while (index * TILE_WIDTH) < size {
        let width = (size - index * TILE_WIDTH).min(TILE_WIDTH);
        let tile = Tile::Entries { index, width };
        let body = get(&host, &format!("{prefix}/tile/{}", tile.path()), timeout)?;
        let got = split_bundle(&body)
            .ok_or_else(|| AuditError::Log(format!("entry bundle {index} does not parse")))?;
        if got.len() as u64 != width {
            return Err(AuditError::Log(format!(
                "entry bundle {index} holds {} entries, not {width}",
                got.len()
            )));
        }
        entries.extend(got.into_iter().map(<[u8]>::to_vec));
        index += 1;
    }
    let hashes: Vec<Hash> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
    let root_of = |n: u64| -> Result<Hash, AuditError> {
        let made: HashMap<merkle::NodeId, Hash> =
            merkle::append(0, &hashes[..n as usize], |_: &[merkle::NodeId]| {
                Ok::<_, merkle::TreeError>(Vec::new())
            })
            .map_err(|e| AuditError::Log(e.to_string()))?
            .into_iter()
            .collect();
        merkle::root(n, |ids: &[merkle::NodeId]| {
            ids.iter()
                .map(|id| {
                    made.get(id)
                        .copied()
                        .ok_or(merkle::TreeError::MissingNode(*id))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| AuditError::Log(e.to_string()))
    };
    if root_of(size)? != checkpoint.root {
        return Err(AuditError::Log(
            "the entries do not hash to the checkpoint's root".into(),
        ));
    }
    // The checkpoint kept from her receipts must be a prefix of this log.
    if let Ok(kept_note) = std::fs::read_to_string(out_dir.join(super::logcheck::CHECKPOINT_FILE)) {
        if let Some(kept) = SignedNote::parse(&kept_note)
            .ok()
            .and_then(|n| Checkpoint::parse_text(n.text).ok())
            .filter(|k| k.origin == checkpoint.origin)
        {
            if kept.size > size || root_of(kept.size)? != kept.root {
                return Err(AuditError::Fork {
                    kept: kept.size,
                    now: size,
                });
            }
        }
    }
    let saved_cert = std::fs::read(dir.join("cert.pem"))
        .ok()
        .and_then(|pem| openssl::x509::X509::from_pem(&pem).ok())
        .and_then(|c| c.to_der().ok())
        .map(|der| openssl::sha::sha256(&der));
    let held: HashSet<u64> = std::fs::read_dir(dir.join("receipts"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".p7m")?.parse::<u64>().ok()
                })
                .collect()
        })
        .unwrap_or_default();
    let mut certs = Vec::new();
    let mut submissions = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let leaf = Leaf::decode(e).map_err(|e| AuditError::Log(format!("entry {i}: {e}")))?;
        if leaf.sid() != sid {
            continue;
        }
        match leaf {
            Leaf::Cert {
                serial,
                cert_sha256,
                issued_at,
                authorisation,
                ..
            } => certs.push(LoggedCert {
                index: i as u64,
                serial,
                issued_at,
                authorisation: authorisation.as_str(),
                hers_now: saved_cert == Some(cert_sha256),
            }),
            Leaf::Submission {
                assignment,
                receipt_id,
                sha256,
                size,
                received_at,
                late,
                ..
            } => submissions.push(LoggedSubmission {
                index: i as u64,
                assignment,
                receipt_id,
                sha256,
                size,
                received_at,
                late,
                receipt_held: held.contains(&receipt_id),
            }),
        }
    }
    let logged: HashSet<u64> = submissions.iter().map(|s| s.receipt_id).collect();
    let mut missing_receipts: Vec<u64> = held.difference(&logged).copied().collect();
    missing_receipts.sort_unstable();
    Ok(Audit {
        checkpoint,
        signature_checked,
        witnessed_by,
        certs,
        submissions,
        missing_receipts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_urls_are_split_or_refused() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/log").ok(),
            Some(("127.0.0.1:8080".to_string(), "/log".to_string()))
        );
        assert_eq!(
            split_url("http://h:1/").ok(),
            Some(("h:1".to_string(), String::new()))
        );
        assert!(split_url("https://h/log").is_err());
        assert!(split_url("http:///log").is_err());
        assert!(split_url("http://a b/log").is_err());
    }
}
