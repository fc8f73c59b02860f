//! Writing a file so that a crash never leaves half of it, and so that no
//! one else with access to the directory can make the write land in a file
//! of their choosing: the key and certificate files of the CA and of the
//! student client.
//!
//! The temporary file is created exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`)
//! under a random name beside the target, so a symlink planted at any name
//! (the old fixed `key.tmp`, or a guess) makes the write fail instead of
//! being followed. The rename then replaces the target's directory entry:
//! a symlink planted at the target itself is replaced by the new regular
//! file, never written through.
//!
//! What is checked is the directory the file is written in; its ancestors
//! are the operator's (a user who can rename `keys/` itself can swap it).

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a file or directory is not fit to hold a private key.
#[derive(Debug)]
#[non_exhaustive]
pub enum PermError {
    /// Its metadata could not be read.
    Inspect {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// It belongs to another user (neither us nor root), who could replace it.
    NotOwned {
        /// The file or directory.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
    },
    /// Group or others may write to it (a directory with the sticky bit is
    /// fine: others cannot rename or delete our entries in it).
    Writable {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file that is not a regular file (a symbolic link, a FIFO...).
    NotRegular(PathBuf),
    /// A key's directory that is not a directory.
    NotDirectory(PathBuf),
}

impl fmt::Display for PermError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PermError::Inspect { path, source } => write!(f, "{}: {source}", path.display()),
            PermError::NotOwned { path, owner } => write!(
                f,
                "{} belongs to uid {owner}, not to us: its owner could replace what we keep there",
                path.display()
            ),
            PermError::Writable { path, mode } => write!(
                f,
                "{} is writable by group or others (mode {:04o}): another user could replace \
                 what it holds; run `chmod go-w {}`",
                path.display(),
                mode & 0o7777,
                path.display()
            ),
            PermError::NotRegular(p) => write!(
                f,
                "{} is not a regular file (a symbolic link?): refusing to trust it with a key",
                p.display()
            ),
            PermError::NotDirectory(p) => write!(f, "{} is not a directory", p.display()),
        }
    }
}

impl std::error::Error for PermError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PermError::Inspect { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why an atomic write failed. Nothing was written to the target then, and
/// no temporary file is left behind.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum WriteError {
    /// The target's directory is not safe for a private file.
    Unsafe(PermError),
    /// The target path has no file name (`/`, `..`).
    NoFileName(PathBuf),
    /// No random temporary name could be drawn.
    Random(openssl::error::ErrorStack),
    /// Creating, writing, syncing or renaming failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Unsafe(e) => write!(f, "unsafe directory: {e}"),
            WriteError::NoFileName(p) => write!(f, "{} names no file", p.display()),
            WriteError::Random(e) => write!(f, "drawing a temporary name: {e}"),
            WriteError::Io { what, path, source } => {
                write!(f, "{what} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WriteError::Unsafe(e) => Some(e),
            WriteError::Random(e) => Some(e),
            WriteError::Io { source, .. } => Some(source),
            WriteError::NoFileName(_) => None,
        }
    }
}

/// For callers whose errors carry an `io::Error`: the typed error stays
/// inside (`get_ref()` and downcast), with a kind that fits.
impl From<WriteError> for io::Error {
    fn from(e: WriteError) -> io::Error {
        let kind = match &e {
            WriteError::Io { source, .. } => source.kind(),
            WriteError::Unsafe(_) => io::ErrorKind::PermissionDenied,
            WriteError::NoFileName(_) => io::ErrorKind::InvalidInput,
            WriteError::Random(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Writes `data` to `path` through an exclusively created temporary file
/// beside it (created with `mode`, fsync'd, renamed over `path`, then the
/// directory fsync'd), so `path` holds either its old content or all of the
/// new, and a planted symlink never receives the data.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), WriteError> {
    let tmp = temp_path(path)?;
    write_via(&tmp, path, data, mode)
}

/// [`write_atomic`] for a private key and the files kept beside it: first
/// refuses a directory that another user owns or may write to.
pub(crate) fn write_private_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), WriteError> {
    check_private_dir(dir_of(path)).map_err(WriteError::Unsafe)?;
    write_atomic(path, data, mode)
}

/// Checks that a private key file may be trusted: a regular file (not a
/// symlink), owned by us or root, that neither group nor others may write,
/// in a directory that passes [`check_private_dir`]. The CA's root loader
/// calls this before reading its key.
pub(crate) fn check_private_file_perms(path: &Path) -> Result<(), PermError> {
    check_private_dir(dir_of(path))?;
    let meta = fs::symlink_metadata(path).map_err(|source| PermError::Inspect {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(PermError::NotRegular(path.to_path_buf()));
    }
    judge(path, meta.mode(), meta.uid(), my_uid(), false)
}

/// Checks that a directory may hold a private file: owned by us or root,
/// and not writable by group or others unless sticky.
pub(crate) fn check_private_dir(dir: &Path) -> Result<(), PermError> {
    let meta = fs::metadata(dir).map_err(|source| PermError::Inspect {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(PermError::NotDirectory(dir.to_path_buf()));
    }
    judge(dir, meta.mode(), meta.uid(), my_uid(), true)
}

/// Creates `dir` and its missing parents readable by us alone (0700
/// before the umask), so that the directory check of
/// [`write_private_atomic`] passes whatever the umask (002 is common).
/// Existing directories are left as they are.
pub(crate) fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn my_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The verdict on one file or directory's owner and mode, apart from the
/// system calls so that every case can be tested without root.
fn judge(path: &Path, mode: u32, owner: u32, me: u32, is_dir: bool) -> Result<(), PermError> {
    // Root owns system directories (`/tmp`) and cannot be defended against.
    if owner != me && owner != 0 {
        return Err(PermError::NotOwned {
            path: path.to_path_buf(),
            owner,
        });
    }
    let sticky = is_dir && mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        return Err(PermError::Writable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// The directory `path` is in (`.` for a bare name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A fresh, unguessable temporary name beside `path`: a dot file (hidden
/// from listings) with 128 random bits.
fn temp_path(path: &Path) -> Result<PathBuf, WriteError> {
    let name = path
        .file_name()
        .ok_or_else(|| WriteError::NoFileName(path.to_path_buf()))?;
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes).map_err(WriteError::Random)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(dir_of(path).join(format!(".{}.{hex}.tmp", name.to_string_lossy())))
}

/// `O_NOFOLLOW` for `OpenOptionsExt::custom_flags`. `O_EXCL` alone already
/// refuses an existing symlink; this keeps the refusal should the flags
/// ever change.
fn no_follow() -> i32 {
    // O_NOFOLLOW is a small positive flag on every platform (0x20000 on
    // x86-64); were it not, 0 would only drop this second guard.
    i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(0)
}

fn write_via(tmp: &Path, path: &Path, data: &[u8], mode: u32) -> Result<(), WriteError> {
    let io_err = |what: &'static str, p: &Path| {
        let path = p.to_path_buf();
        move |source| WriteError::Io { what, path, source }
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(no_follow())
        .open(tmp)
        .map_err(io_err("creating", tmp))?;
    let written = f
        .write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io_err("writing", tmp))
        .and_then(|()| fs::rename(tmp, path).map_err(io_err("renaming over", path)));
    drop(f);
    if let Err(e) = written {
        // Ours alone (created exclusively), so removing it is safe.
        let _ = fs::remove_file(tmp);
        return Err(e);
    }
    // The rename is durable only once the directory entry is.
    let dir = dir_of(path);
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing", dir))
}

/// Creates `path` for the server's user only (0600), refusing to replace
/// anything there: a file of secrets (enrollment codes, a backup of every
/// report) is never written over another file, nor readable by others
/// even for a moment.
pub(crate) fn create_private(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn names(dir: &Path) -> io::Result<Vec<String>> {
        let mut v: Vec<String> = fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<_>>()?;
        v.sort();
        Ok(v)
    }

    #[test]
    fn writes_whole_files_with_the_mode() -> TestResult {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("key.pem");
        write_atomic(&p, b"one", 0o600)?;
        write_atomic(&p, b"two", 0o600)?;
        assert_eq!(fs::read(&p)?, b"two");
        assert_eq!(fs::metadata(&p)?.permissions().mode() & 0o777, 0o600);
        assert_eq!(names(dir.path())?, ["key.pem"], "no temporary file left");
        Ok(())
    }

    /// The old code opened `key.tmp` with create+truncate and wrote the key
    /// through a symlink planted there.
    #[test]
    fn a_symlink_at_the_old_fixed_tmp_name_is_not_followed() -> TestResult {
        let dir = tempfile::tempdir()?;
        let victim = dir.path().join("attacker-owned");
        fs::write(&victim, b"attacker's file")?;
        symlink(&victim, dir.path().join("key.tmp"))?;
        let p = dir.path().join("key.pem");
        write_private_atomic(&p, b"SECRET KEY", 0o600)?;
        assert_eq!(fs::read(&victim)?, b"attacker's file");
        assert_eq!(fs::read(&p)?, b"SECRET KEY");
        assert!(fs::symlink_metadata(&p)?.file_type().is_file());
        assert!(fs::symlink_metadata(dir.path().join("key.tmp"))?
            .file_type()
            .is_symlink());
        Ok(())
    }

    /// Should an attacker guess the random name, the exclusive create
    /// fails: the link neither receives the data nor is replaced.
    #[test]
    fn a_symlink_at_the_temporary_name_itself_makes_the_write_fail() -> TestResult {
        let dir = tempfile::tempdir()?;
        let victim = dir.path().join("attacker-owned");
        fs::write(&victim, b"attacker's file")?;
        let p = dir.path().join("key.pem");
        let tmp = temp_path(&p)?;
        symlink(&victim, &tmp)?;
        let err = write_via(&tmp, &p, b"SECRET KEY", 0o600);
        assert!(
            matches!(&err, Err(WriteError::Io { what: "creating", source, .. })
                if source.kind() == io::ErrorKind::AlreadyExists),
            "{err:?}"
        );
        assert_eq!(fs::read(&victim)?, b"attacker's file");
        assert!(fs::symlink_metadata(&tmp)?.file_type().is_symlink());
        assert!(!p.exists());
        // A dangling link is refused the same way (O_EXCL does not follow it).
        let dangling = temp_path(&p)?;
        symlink(dir.path().join("would-be-created"), &dangling)?;
        assert!(write_via(&dangling, &p, b"SECRET KEY", 0o600).is_err());
        assert!(!dir.path().join("would-be-created").exists());
        Ok(())
    }

    #[test]
    fn temporary_names_are_random_hidden_and_beside_the_target() -> TestResult {
        let p = Path::new("/some/dir/key.pem");
        let (a, b) = (temp_path(p)?, temp_path(p)?);
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("/some/dir")));
        let name = a.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        assert!(
            name.starts_with(".key.pem.") && name.ends_with(".tmp"),
            "{name}"
        );
        assert_eq!(name.len(), ".key.pem.".len() + 32 + ".tmp".len());
        assert_eq!(
            temp_path(Path::new("key.pem"))?.parent(),
            Some(Path::new("."))
        );
        Ok(())
    }

    /// `rename` replaces the link, it does not write through it.
    #[test]
    fn a_symlink_at_the_target_is_replaced_by_a_regular_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let victim = dir.path().join("attacker-owned");
        fs::write(&victim, b"attacker's file")?;
        let p = dir.path().join("key.pem");
        symlink(&victim, &p)?;
        write_private_atomic(&p, b"SECRET KEY", 0o600)?;
        assert!(fs::symlink_metadata(&p)?.file_type().is_file());
        assert_eq!(fs::read(&p)?, b"SECRET KEY");
        assert_eq!(fs::read(&victim)?, b"attacker's file");
        Ok(())
    }

    #[test]
    fn no_temporary_file_is_left_when_the_rename_fails() -> TestResult {
        let dir = tempfile::tempdir()?;
        // A directory at the target: renaming a file over it fails.
        let p = dir.path().join("key.pem");
        fs::create_dir(&p)?;
        let err = write_atomic(&p, b"data", 0o600);
        assert!(
            matches!(
                err,
                Err(WriteError::Io {
                    what: "renaming over",
                    ..
                })
            ),
            "{err:?}"
        );
        assert_eq!(names(dir.path())?, ["key.pem"]);
        Ok(())
    }

    #[test]
    fn a_directory_others_may_write_to_is_refused_for_private_files() -> TestResult {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("key.pem");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777))?;
        let err = write_private_atomic(&p, b"SECRET KEY", 0o600);
        assert!(
            matches!(&err, Err(WriteError::Unsafe(PermError::Writable { mode, .. })) if mode & 0o777 == 0o777),
            "{err:?}"
        );
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("writable by group or others (mode 0777)"),
            "{msg}"
        );
        assert!(!p.exists());
        assert!(names(dir.path())?.is_empty());
        // Group-writable is refused too; with the sticky bit (as /tmp) it
        // is fine: others cannot rename or remove our entries.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o770))?;
        assert!(write_private_atomic(&p, b"k", 0o600).is_err());
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777))?;
        write_private_atomic(&p, b"k", 0o600)?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        write_private_atomic(&p, b"k2", 0o600)?;
        assert_eq!(fs::read(&p)?, b"k2");
        Ok(())
    }

    #[test]
    fn judging_owners_and_modes() {
        let p = Path::new("d");
        assert!(judge(p, 0o40700, 1000, 1000, true).is_ok());
        assert!(judge(p, 0o40755, 0, 1000, true).is_ok(), "root's directory");
        assert!(matches!(
            judge(p, 0o40700, 1001, 1000, true),
            Err(PermError::NotOwned { owner: 1001, .. })
        ));
        assert!(judge(p, 0o40775, 1000, 1000, true).is_err());
        assert!(judge(p, 0o40757, 1000, 1000, true).is_err());
        assert!(judge(p, 0o41777, 0, 1000, true).is_ok(), "/tmp");
        // A file's sticky bit means nothing.
        assert!(judge(p, 0o101666, 1000, 1000, false).is_err());
        assert!(judge(p, 0o100644, 1000, 1000, false).is_ok());
    }

    #[test]
    fn private_key_files_are_checked_with_their_directory() -> TestResult {
        let dir = tempfile::tempdir()?;
        let key = dir.path().join("ca-key.pem");
        fs::write(&key, b"k")?;
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600))?;
        check_private_file_perms(&key)?;
        fs::set_permissions(&key, fs::Permissions::from_mode(0o666))?;
        assert!(matches!(
            check_private_file_perms(&key),
            Err(PermError::Writable { .. })
        ));
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600))?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777))?;
        assert!(matches!(
            check_private_file_perms(&key),
            Err(PermError::Writable { path, .. }) if path == dir.path()
        ));
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))?;
        let link = dir.path().join("link.pem");
        symlink(&key, &link)?;
        assert!(matches!(
            check_private_file_perms(&link),
            Err(PermError::NotRegular(_))
        ));
        assert!(matches!(
            check_private_file_perms(&dir.path().join("missing")),
            Err(PermError::Inspect { .. })
        ));
        Ok(())
    }

    #[test]
    fn typed_errors_survive_the_io_error_wrapping() {
        let e: io::Error = WriteError::Unsafe(PermError::NotDirectory("x".into())).into();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<WriteError>())
            .is_some());
        assert_eq!(e.to_string(), "unsafe directory: x is not a directory");
    }
    #[test]
    fn private_files_are_new_and_0600() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("codes.csv");
        create_private(&p)?.write_all(b"sid,code\n")?;
        assert_eq!(fs::metadata(&p)?.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            create_private(&p).err().map(|e| e.kind()),
            Some(io::ErrorKind::AlreadyExists)
        );
        Ok(())
    }
}
