//! Trusting the CA's root: exactly a given certificate, a published
//! fingerprint, or the root seen on first contact, kept in a pin file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use openssl::x509::X509;

use crate::crypto::{self, DIGEST_LEN};

use super::files::{self, write_file};
use super::{io_ctx, ClientError};

/// The file beside the students' directories that keeps the root's
/// fingerprint pinned on first use.
pub const ROOT_FINGERPRINT_FILE: &str = "root-fingerprint";

/// How the CA root is trusted.
#[derive(Debug, Clone)]
pub enum RootPin {
    /// --ca-cert: exactly this root.
    Cert(X509),
    /// --ca-fingerprint: a root with this SHA-256.
    Fingerprint([u8; DIGEST_LEN]),
    /// Trust on first use: the fingerprint is kept in this file.
    FirstUse(PathBuf),
}

/// Checks a root presented by the CA (or saved earlier) against the pin,
/// pinning it on first use (printing its fingerprint through `progress`
/// for the student to compare with the one her instructor published).
pub fn pin_root(
    root_der: &[u8],
    pin: &RootPin,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ClientError> {
    let presented = openssl::sha::sha256(root_der);
    let changed = |pinned: &[u8], file: Option<PathBuf>| ClientError::RootChanged {
        pinned: crypto::fingerprint_of_digest(pinned),
        presented: crypto::fingerprint_of_digest(&presented),
        file,
    };
    match pin {
        RootPin::Cert(c) => {
            if c.to_der()? != root_der {
                return Err(ClientError::BadCertificate(
                    "the CA sent a root that differs from the pinned --ca-cert".into(),
                ));
            }
            Ok(())
        }
        RootPin::Fingerprint(want) if crypto::ct_eq(want, &presented) => Ok(()),
        RootPin::Fingerprint(want) => Err(changed(want, None)),
        RootPin::FirstUse(path) => match read_pin(path)? {
            Some(want) if want == presented => Ok(()),
            Some(want) => Err(changed(&want, Some(path.clone()))),
            None => {
                let fp = crypto::fingerprint(root_der);
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    files::private_dir(dir)?;
                }
                write_file(path, format!("{fp}\n").as_bytes(), 0o644)?;
                // Only here, where the pin is made: a pin found in place
                // was made by an earlier run (and has passed the checks).
                progress(&format!(
                    "first contact with this CA: its root's SHA-256 fingerprint is\n  {fp}\n\
                     compare it with the fingerprint your instructor published; it is pinned in {} \
                     and a different root will be refused",
                    path.display()
                ));
                Ok(())
            }
        },
    }
}

/// Checks a root the CA presents against the pin, before anything secret
/// is sent to it (a version 3 challenge): like [`pin_root`], but a first
/// use pins nothing yet (the root is pinned once the certificate it
/// issued holds up).
pub(super) fn check_pin(root_der: &[u8], pin: &RootPin) -> Result<(), ClientError> {
    match pin {
        RootPin::FirstUse(path) if read_pin(path)?.is_none() => Ok(()),
        _ => pin_root(root_der, pin, &mut |_| {}),
    }
}

/// Reads a pin file kept by [`pin_root`]: `None` when there is none. It
/// is held to the checks of a private key's file (a regular file, hers or
/// root's, writable by no one else, in a directory no one else may write
/// to): a fingerprint another user could have planted or changed decides
/// whom she trusts, so one that fails them is refused, never used.
pub fn read_pin(path: &Path) -> Result<Option<[u8; DIGEST_LEN]>, ClientError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_ctx(format!("reading {}", path.display()))(e)),
        Ok(_) => {}
    }
    crate::fsutil::check_private_file_perms(path).map_err(ClientError::PinUntrusted)?;
    let text = fs::read_to_string(path).map_err(io_ctx(format!("reading {}", path.display())))?;
    match crypto::parse_fingerprint(text.trim()) {
        Some(fp) => Ok(Some(fp)),
        None => Err(ClientError::Protocol(format!(
            "{} does not hold a SHA-256 fingerprint; delete it to pin the root again",
            path.display()
        ))),
    }
}
