//! Where a student's files live under the out-dir, and how they are
//! written: atomically, in a directory only she can write to, with the
//! modes set here rather than left to the umask (under umask 002 a
//! directory made "0700 before the umask" is fine, but one made by
//! `create_dir_all` is 0775, and the client's own check then refuses it).

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::fsutil::{self, PermError};

use super::{io_ctx, ClientError, Receipt};

/// Her directory and the receipts in it: only she may enter them.
const DIR_MODE: u32 = 0o700;

/// A student's files.
pub(super) struct Files {
    pub(super) dir: PathBuf,
}

impl Files {
    pub(super) fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
    pub(super) fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    pub(super) fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub(super) fn receipts(&self) -> PathBuf {
        self.dir.join("receipts")
    }

    /// The saved receipts (`receipts/*.p7m`), none if there is no folder.
    pub(super) fn receipt_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(self.receipts()) else {
            return Vec::new();
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "p7m"))
            .collect();
        found.sort();
        found
    }
}

/// Writes `data` atomically and leaves it with exactly `mode`: the file is
/// created with `mode` (which the umask can only narrow) and set to it.
pub(super) fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), ClientError> {
    let what = || format!("writing {}", path.display());
    fsutil::write_private_atomic(path, data, mode)
        .map_err(io::Error::from)
        .map_err(io_ctx(what()))?;
    // Just renamed into a directory only we may write to: the name is ours.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_ctx(what()))
}

/// Makes `dir` (and its missing parents) hers alone, mode 0700 whatever
/// the umask, and checks it as a key's directory. A directory of her own
/// that an older client left group-writable is tightened, and the note
/// saying so returned.
pub(super) fn private_dir(dir: &Path) -> Result<Option<String>, ClientError> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    fsutil::create_private_dir_all(dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
    for d in &missing {
        fs::set_permissions(d, fs::Permissions::from_mode(DIR_MODE))
            .map_err(io_ctx(format!("setting the mode of {}", d.display())))?;
    }
    match fsutil::check_private_dir(dir) {
        Ok(()) => Ok(None),
        Err(PermError::Writable { mode, .. }) if owned_by_me(dir) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o7755))
                .map_err(io_ctx(format!("setting the mode of {}", dir.display())))?;
            fsutil::check_private_dir(dir).map_err(ClientError::Unsafe)?;
            Ok(Some(format!(
                "{} was writable by group or others (mode {:04o}, made under a umask such as \
                 002): now {:04o}",
                dir.display(),
                mode & 0o7777,
                mode & 0o7755
            )))
        }
        Err(e) => Err(ClientError::Unsafe(e)),
    }
}

fn owned_by_me(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .is_ok_and(|m| m.uid() == rustix::process::geteuid().as_raw() && m.is_dir())
}

/// Saves a receipt Blackboard has recorded: in `receipts/`, or failing
/// that beside her key, or failing both, given back in the error so that
/// it is printed rather than lost. Returns where it was saved.
pub(super) fn save_receipt(
    files: &Files,
    receipt: &Receipt,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, ClientError> {
    let name = format!("{}.p7m", receipt.receipt_id);
    let mut tried = Vec::new();
    for path in [files.receipts().join(&name), files.dir.join(&name)] {
        match write_file(&path, &receipt.signed_receipt, 0o644) {
            Ok(()) => {
                if !tried.is_empty() {
                    progress(&format!(
                        "could not save the receipt in {}: saved it in {} instead",
                        files.receipts().display(),
                        path.display()
                    ));
                }
                return Ok(path);
            }
            Err(ClientError::Io { source, .. }) => tried.push((path, source)),
            Err(other) => tried.push((path, io::Error::other(other.to_string()))),
        }
    }
    Err(ClientError::ReceiptNotSaved {
        receipt_id: receipt.receipt_id,
        tried,
        base64: openssl::base64::encode_block(&receipt.signed_receipt),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_writable_folder_of_her_own_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let receipts = dir.path().join("alice/receipts");
        assert_eq!(private_dir(&receipts).unwrap(), None);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&receipts), 0o700);
        assert_eq!(mode(&dir.path().join("alice")), 0o700);
        fs::set_permissions(&receipts, fs::Permissions::from_mode(0o775)).unwrap();
        let note = private_dir(&receipts).unwrap().unwrap_or_default();
        assert!(note.contains("0775"), "{note}");
        assert_eq!(mode(&receipts), 0o755);
    }
}
