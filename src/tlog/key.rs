//! The log's own Ed25519 key, kept like the CA's root key: created once in
//! the keys dir (PKCS#8, encrypted under the operator's passphrase, mode
//! 0600), loaded on every later start, refused when another user could
//! have replaced it. A key of its own, not the root's: checkpoints are
//! signed on every commit batch, and a leaked log key forges tree heads,
//! not certificates.

use std::fs;
use std::path::{Path, PathBuf};

use openssl::pkey::{Id, PKey, Private};
use openssl::symm::Cipher;

use super::note::NoteSigner;
use crate::ca::CaError;

/// File name of the encrypted log key inside the keys dir.
pub const LOG_KEY_FILE: &str = "log-key.pem";

/// File name of a Blackboard-only host's copy of the log key (PKCS#8,
/// unencrypted, mode 0600, like Blackboard's own key beside it): written
/// by `server blackboard-cert --out DIR` where the CA key is, since a host
/// that accepts submissions appends to the log and signs its checkpoints.
pub const HOST_LOG_KEY_FILE: &str = "blackboard-log-key.pem";

/// The course setting that records the log's verifier key: the first host
/// to sign records it, and a host whose key differs is refused at start,
/// so one database never has two logs.
pub const LOG_KEY_SETTING: &str = "log_verifier_key";

/// Writes the log key of `keys_dir` (opened with `passphrase`; it must
/// exist) unencrypted into `out_dir` as [`HOST_LOG_KEY_FILE`], for a
/// Blackboard-only host. Returns the path written.
pub fn export_host_key(
    keys_dir: &Path,
    passphrase: &[u8],
    out_dir: &Path,
) -> Result<PathBuf, CaError> {
    let path = log_key_path(keys_dir);
    crate::fsutil::check_private_file_perms(&path).map_err(CaError::UnsafeKeys)?;
    let pem = fs::read(&path).map_err(|e| CaError::Io {
        path: path.clone(),
        source: e,
    })?;
    let key = PKey::private_key_from_pem_passphrase(&pem, passphrase)
        .map_err(|_| CaError::BadPassphrase(path.clone()))?;
    let out = out_dir.join(HOST_LOG_KEY_FILE);
    crate::fsutil::write_private_atomic(&out, &key.private_key_to_pem_pkcs8()?, 0o600)
        .map_err(crate::ca::write_err(&out))?;
    Ok(out)
}

/// A Blackboard-only host's log key ([`HOST_LOG_KEY_FILE`] in `keys_dir`),
/// signing under `origin`; `None` when there is none.
pub fn open_host_key(keys_dir: &Path, origin: &str) -> Result<Option<NoteSigner>, CaError> {
    let path = keys_dir.join(HOST_LOG_KEY_FILE);
    if !path.exists() {
        return Ok(None);
    }
    crate::fsutil::check_private_file_perms(&path).map_err(CaError::UnsafeKeys)?;
    let pem = fs::read(&path).map_err(|e| CaError::Io {
        path: path.clone(),
        source: e,
    })?;
    let key = PKey::private_key_from_pem(&pem)
        .ok()
        .filter(|k| k.id() == Id::ED25519)
        .ok_or_else(|| {
            CaError::UnsupportedKey(format!("{} is not an Ed25519 key", path.display()))
        })?;
    NoteSigner::new(origin, key).map(Some).map_err(|e| {
        CaError::UnsupportedKey(format!("log origin {origin:?} cannot name a log key: {e}"))
    })
}

/// The log key's path in a keys dir.
pub fn log_key_path(keys_dir: &Path) -> PathBuf {
    keys_dir.join(LOG_KEY_FILE)
}

/// The default origin (and key name) of a CA's log: its name, with what
/// a signed-note key name may not hold (spaces, `+`) made `-`, then
/// `/certboard-log`, e.g. `CUHK/certboard-log`.
pub fn default_origin(ca_name: &str) -> String {
    let cleaned: String = ca_name
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '+' || c.is_control() {
                '-'
            } else {
                c
            }
        })
        .collect();
    let cleaned = if cleaned.is_empty() {
        "certboard".to_string()
    } else {
        cleaned
    };
    format!("{cleaned}/certboard-log")
}

/// Loads the log key from `keys_dir`, or creates it there when absent;
/// signs under `origin`.
pub fn open_log_key(
    keys_dir: &Path,
    passphrase: &[u8],
    origin: &str,
) -> Result<NoteSigner, CaError> {
    let path = log_key_path(keys_dir);
    let io = |e| CaError::Io {
        path: path.clone(),
        source: e,
    };
    let key = if path.exists() {
        crate::fsutil::check_private_file_perms(&path).map_err(CaError::UnsafeKeys)?;
        let pem = fs::read(&path).map_err(io)?;
        let key = PKey::private_key_from_pem_passphrase(&pem, passphrase)
            .map_err(|_| CaError::BadPassphrase(path.clone()))?;
        if key.id() != Id::ED25519 {
            return Err(CaError::UnsupportedKey(format!(
                "{} is not an Ed25519 key",
                path.display()
            )));
        }
        key
    } else {
        let key: PKey<Private> = PKey::generate_ed25519()?;
        let pem = key.private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), passphrase)?;
        crate::fsutil::write_private_atomic(&path, &pem, 0o600)
            .map_err(crate::ca::write_err(&path))?;
        log::info!("created the transparency log key {}", path.display());
        key
    };
    NoteSigner::new(origin, key).map_err(|e| {
        CaError::UnsupportedKey(format!("log origin {origin:?} cannot name a log key: {e}"))
    })
}

/// File name of a witness's encrypted key inside its keys dir.
pub const WITNESS_KEY_FILE: &str = "witness-key.pem";
/// File name of the name a witness cosigns under (one line), beside its
/// key: the name is part of its key id, so it is fixed at `init`.
pub const WITNESS_NAME_FILE: &str = "witness-name";

/// Why a witness key could not be made or opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum WitnessKeyError {
    /// `init` found a key already: a witness keeps its key (logs and
    /// clients pin it).
    Exists(PathBuf),
    /// No key yet: `server witness init` first.
    Missing(PathBuf),
    /// The name cannot name a witness key.
    BadName(super::cosignature::CosignatureError),
    /// The key does not decrypt under the passphrase given.
    BadPassphrase(PathBuf),
    /// Reading, writing, permissions, passphrase, OpenSSL.
    Key(CaError),
}

impl std::fmt::Display for WitnessKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WitnessKeyError::Exists(p) => write!(
                f,
                "{} exists already: a witness keeps its key (logs and students pin it)",
                p.display()
            ),
            WitnessKeyError::Missing(p) => write!(
                f,
                "no witness key {}: make it first with `server witness init --name NAME` \
                 (same --keys-dir)",
                p.display()
            ),
            WitnessKeyError::BadName(e) => write!(f, "witness name: {e}"),
            // Not CaError's wording: a witness's host has no CA key, and
            // its operator chose this passphrase at `witness init`.
            WitnessKeyError::BadPassphrase(p) => write!(
                f,
                "cannot decrypt the witness key {}: not the passphrase it was made with \
                 (`server witness init`), or a damaged file",
                p.display()
            ),
            WitnessKeyError::Key(e) => write!(f, "witness key: {e}"),
        }
    }
}

impl std::error::Error for WitnessKeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WitnessKeyError::BadName(e) => Some(e),
            WitnessKeyError::Key(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CaError> for WitnessKeyError {
    fn from(e: CaError) -> Self {
        WitnessKeyError::Key(e)
    }
}

impl From<openssl::error::ErrorStack> for WitnessKeyError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        WitnessKeyError::Key(CaError::Crypto(e))
    }
}

/// Creates a witness's Ed25519 key in `keys_dir` (encrypted under
/// `passphrase`, mode 0600) cosigning as `name`; refuses to replace one.
pub fn create_witness_key(
    keys_dir: &Path,
    passphrase: &[u8],
    name: &str,
) -> Result<super::cosignature::Cosigner, WitnessKeyError> {
    let path = keys_dir.join(WITNESS_KEY_FILE);
    if path.exists() {
        return Err(WitnessKeyError::Exists(path));
    }
    let key: PKey<Private> = PKey::generate_ed25519()?;
    let cosigner =
        super::cosignature::Cosigner::new(name, key.clone()).map_err(WitnessKeyError::BadName)?;
    let pem = key.private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), passphrase)?;
    crate::fsutil::write_private_atomic(&path, &pem, 0o600).map_err(crate::ca::write_err(&path))?;
    let name_path = keys_dir.join(WITNESS_NAME_FILE);
    crate::fsutil::write_private_atomic(&name_path, format!("{name}\n").as_bytes(), 0o600)
        .map_err(crate::ca::write_err(&name_path))?;
    log::info!("created the witness key {}", path.display());
    Ok(cosigner)
}

/// Loads the witness key and name `create_witness_key` wrote.
pub fn open_witness_key(
    keys_dir: &Path,
    passphrase: &[u8],
) -> Result<super::cosignature::Cosigner, WitnessKeyError> {
    let path = keys_dir.join(WITNESS_KEY_FILE);
    let name_path = keys_dir.join(WITNESS_NAME_FILE);
    if !path.exists() {
        return Err(WitnessKeyError::Missing(path));
    }
    crate::fsutil::check_private_file_perms(&path).map_err(CaError::UnsafeKeys)?;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| CaError::Io { path: p, source: e }
    };
    let pem = fs::read(&path).map_err(io(&path))?;
    let name = fs::read_to_string(&name_path).map_err(io(&name_path))?;
    let key = PKey::private_key_from_pem_passphrase(&pem, passphrase)
        .map_err(|_| WitnessKeyError::BadPassphrase(path.clone()))?;
    super::cosignature::Cosigner::new(name.trim_end_matches('\n'), key)
        .map_err(WitnessKeyError::BadName)
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn created_once_then_loaded_with_the_same_verifier_key() -> TestResult {
        let dir = tempfile::tempdir()?;
        let keys = dir.path().join("keys");
        crate::fsutil::create_private_dir_all(&keys)?;
        let a = open_log_key(&keys, b"passphrase!", "CUHK/certboard-log")?;
        let b = open_log_key(&keys, b"passphrase!", "CUHK/certboard-log")?;
        assert_eq!(a.verifier_key(), b.verifier_key());
        assert!(matches!(
            open_log_key(&keys, b"wrong passphrase", "CUHK/certboard-log"),
            Err(CaError::BadPassphrase(_))
        ));
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(log_key_path(&keys))?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        Ok(())
    }

    #[test]
    fn a_hosts_copy_signs_as_the_log_key() -> TestResult {
        let dir = tempfile::tempdir()?;
        let keys = dir.path().join("keys");
        crate::fsutil::create_private_dir_all(&keys)?;
        assert!(open_host_key(&keys, "CUHK/certboard-log")?.is_none());
        let log = open_log_key(&keys, b"passphrase!", "CUHK/certboard-log")?;
        let out = export_host_key(&keys, b"passphrase!", &keys)?;
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&out)?.permissions().mode() & 0o777, 0o600);
        let copy = open_host_key(&keys, "CUHK/certboard-log")?.ok_or("no copy")?;
        assert_eq!(copy.verifier_key(), log.verifier_key());
        Ok(())
    }

    #[test]
    fn a_witness_key_is_made_once_and_reopened_under_its_name() -> TestResult {
        let dir = tempfile::tempdir()?;
        let keys = dir.path().join("keys");
        crate::fsutil::create_private_dir_all(&keys)?;
        let none = open_witness_key(&keys, b"passphrase!").map(|_| ());
        assert!(
            matches!(&none, Err(WitnessKeyError::Missing(_))),
            "{none:?}"
        );
        assert!(none
            .map_err(|e| e.to_string())
            .is_err_and(|m| m.contains("server witness init")));
        let made = create_witness_key(&keys, b"passphrase!", "witness.example/w1")?;
        let again = open_witness_key(&keys, b"passphrase!")?;
        assert_eq!(again.verifier_key(), made.verifier_key());
        assert_eq!(again.name(), "witness.example/w1");
        let wrong = open_witness_key(&keys, b"wrong passphrase").map(|_| ());
        assert!(
            matches!(&wrong, Err(WitnessKeyError::BadPassphrase(_))),
            "{wrong:?}"
        );
        let said = wrong.map_err(|e| e.to_string()).err().unwrap_or_default();
        assert!(
            said.contains("cannot decrypt the witness key") && !said.contains("CA"),
            "{said}"
        );
        assert!(matches!(
            create_witness_key(&keys, b"passphrase!", "witness.example/w1"),
            Err(WitnessKeyError::Exists(_))
        ));
        Ok(())
    }

    #[test]
    fn default_origins_are_valid_key_names() {
        assert_eq!(default_origin("CUHK"), "CUHK/certboard-log");
        assert_eq!(default_origin("A B+C"), "A-B-C/certboard-log");
        assert_eq!(default_origin(""), "certboard/certboard-log");
    }
}
