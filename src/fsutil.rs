//! Writing a file so that a crash never leaves half of it: the key and
//! certificate files of the CA and of the student client.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `data` to `path` through a temporary file beside it (created with
/// `mode`, fsync'd, then renamed over `path`), so `path` holds either its
/// old content or all of the new.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
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
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_whole_files_with_the_mode() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("key.pem");
        write_atomic(&p, b"one", 0o600)?;
        write_atomic(&p, b"two", 0o600)?;
        assert_eq!(fs::read(&p)?, b"two");
        assert_eq!(fs::metadata(&p)?.permissions().mode() & 0o777, 0o600);
        assert!(!dir.path().join("key.tmp").exists());
        Ok(())
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
