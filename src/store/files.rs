//! The SQLite engine's uploaded files: each upload's bytes in a file of
//! its own beside the database (`DATA/uploads/`), not in SQLite's pages.
//!
//! A BLOB row costs every byte several copies (the WAL, the checkpoint, the
//! page cache) and a transaction per chunk; a file takes each chunk once,
//! appended in order (BENCHMARKS.md, "Uploads (issue 20)"). The contract
//! with the rest of the store does not change:
//!
//! - A chunk is appended to `uploads/ID.part` (created 0600, `O_EXCL`,
//!   never through a link) by the commit thread, off the loops: a write to
//!   the page cache can block. It is not synced: nothing is acknowledged
//!   for it but the reading of the next chunk.
//! - Completion: the file is fsync'd, renamed to `uploads/ID` (never over
//!   an existing name) and the directory fsync'd, all BEFORE the `uploads`
//!   row naming `ID` (with its size and SHA-256) commits. A crash leaves
//!   no row, or a row and its whole durable file. A failed transaction
//!   puts the file back under its `.part` name.
//! - A discard (the connection cut, the upload refused) removes the
//!   `.part`; at start-up orphans (`.part` files, and whole files no row
//!   names) older than the cut are removed.
//!
//! Chunks are whole [`MAX_CHUNK_ROW`]s but the last, so chunk `seq` of a
//! file is at `seq * MAX_CHUNK_ROW`: the file needs no index.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{ChunkRecord, StoreError, UploadRecord, MAX_CHUNK_ROW};

/// The directory inside the data dir.
pub(crate) const UPLOADS_DIR: &str = "uploads";

/// What the page quota of the tests (`CERTBOARD_SQLITE_MAX_PAGES`) allows
/// the files, in bytes per page: the same disk, as SQLite counts it.
const QUOTA_PAGE: u64 = 4096;

/// An upload being written.
#[derive(Debug)]
struct Part {
    file: File,
    /// Bytes appended.
    len: u64,
}

/// What a batch did to the files, undone if its transaction fails.
#[derive(Debug, Default)]
pub(crate) struct Undo {
    /// (upload, length before), in the order appended.
    appended: Vec<(i64, u64)>,
    /// Uploads renamed to their final name.
    finished: Vec<i64>,
}

/// A file found in the directory: (upload id, path, its chunks if a
/// `.part`, its mtime).
type Found = (i64, PathBuf, Option<u64>, i64);

/// The uploads directory of one store.
#[derive(Debug)]
pub(crate) struct UploadFiles {
    dir: PathBuf,
    open: HashMap<i64, Part>,
    /// The tests' quota in bytes, and the bytes the files hold (counted
    /// once, then kept).
    quota: Option<(u64, Option<u64>)>,
}

fn io_error(path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// Chunks in a file of `len` bytes.
fn chunks_of(len: u64) -> u64 {
    len.div_ceil(MAX_CHUNK_ROW as u64)
}

/// An upload id from a file name: `ID` (whole) or `ID.part`.
fn parse_name(name: &str) -> Option<(i64, bool)> {
    let (id, part) = match name.strip_suffix(".part") {
        Some(id) => (id, true),
        None => (name, false),
    };
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((id.parse().ok()?, part))
}

impl UploadFiles {
    /// The files of the store in `data_dir`.
    pub(crate) fn new(data_dir: &Path, quota_pages: Option<u64>) -> UploadFiles {
        UploadFiles {
            dir: data_dir.join(UPLOADS_DIR),
            open: HashMap::new(),
            quota: quota_pages.map(|p| (p.saturating_mul(QUOTA_PAGE), None)),
        }
    }

    fn part_path(&self, id: i64) -> PathBuf {
        self.dir.join(format!("{id}.part"))
    }

    /// The whole file of a recorded upload.
    pub(crate) fn final_path(&self, id: i64) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// Creates the directory (0700) if missing, durably; refuses anything
    /// there that is not a directory (a link included).
    fn ensure_dir(&self) -> Result<(), StoreError> {
        match fs::symlink_metadata(&self.dir) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(io_error(
                &self.dir,
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "not a directory (a link or a file is there): uploads are not written through it",
                ),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&self.dir)
                    .map_err(|e| io_error(&self.dir, e))?;
                self.sync_dir_of(&self.dir)
            }
            Err(e) => Err(io_error(&self.dir, e)),
        }
    }

    /// Makes the entries of `path`'s directory durable.
    fn sync_dir_of(&self, path: &Path) -> Result<(), StoreError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(dir, e))
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(&self.dir, e))
    }

    /// Bytes the files hold, when a quota is set.
    fn used(&mut self) -> Option<(u64, u64)> {
        let (quota, used) = self.quota?;
        let used = match used {
            Some(u) => u,
            None => {
                let u = fs::read_dir(&self.dir)
                    .map(|rd| {
                        rd.filter_map(Result::ok)
                            .filter_map(|e| e.metadata().ok())
                            .map(|m| m.len())
                            .sum()
                    })
                    .unwrap_or(0);
                self.quota = Some((quota, Some(u)));
                u
            }
        };
        Some((quota, used))
    }

    fn count_used(&mut self, add: u64, remove: u64) {
        if let Some((quota, Some(used))) = self.quota {
            self.quota = Some((quota, Some(used.saturating_add(add).saturating_sub(remove))));
        }
    }

    /// The upload's open part: created with chunk 0, reopened (never
    /// through a link) if another handle of the store began it.
    fn part(&mut self, c: &ChunkRecord) -> Result<&mut Part, StoreError> {
        if !self.open.contains_key(&c.upload_id) {
            self.ensure_dir()?;
            let path = self.part_path(c.upload_id);
            let mut how = fs::OpenOptions::new();
            how.append(true).mode(0o600).custom_flags(nofollow());
            if c.seq == 0 {
                how.create_new(true);
            }
            let file = how.open(&path).map_err(|e| io_error(&path, e))?;
            let m = file.metadata().map_err(|e| io_error(&path, e))?;
            if !m.is_file() {
                return Err(io_error(
                    &path,
                    io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
                ));
            }
            self.open.insert(c.upload_id, Part { file, len: m.len() });
        }
        self.open
            .get_mut(&c.upload_id)
            .ok_or_else(|| StoreError::Incompatible(format!("upload {}: no file", c.upload_id)))
    }

    /// Appends a chunk: the next in sequence, and only after whole ones.
    pub(crate) fn append(&mut self, c: &ChunkRecord, undo: &mut Undo) -> Result<(), StoreError> {
        if c.data.is_empty() || c.data.len() > MAX_CHUNK_ROW {
            return Err(StoreError::Incompatible(format!(
                "upload {} chunk {}: {} bytes (1 to {MAX_CHUNK_ROW})",
                c.upload_id,
                c.seq,
                c.data.len()
            )));
        }
        let at = c.seq.saturating_mul(MAX_CHUNK_ROW as u64);
        let quota = self.used();
        let path = self.part_path(c.upload_id);
        let part = self.part(c)?;
        if part.len != at {
            return Err(if part.len > at {
                StoreError::Duplicate(format!("upload {} chunk {}", c.upload_id, c.seq))
            } else {
                StoreError::Incompatible(format!(
                    "upload {} chunk {}: {} bytes staged before it, not {at} (chunks are whole \
                     but the last, and in order)",
                    c.upload_id, c.seq, part.len
                ))
            });
        }
        if let Some((quota, used)) = quota {
            if used.saturating_add(c.data.len() as u64) > quota {
                return Err(io_error(
                    &path,
                    io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
                ));
            }
        }
        let before = part.len;
        if let Err(e) = part.file.write_all(&c.data) {
            // A short write (a full disk) leaves nothing behind.
            let _ = part.file.set_len(before);
            return Err(io_error(&path, e));
        }
        part.len += c.data.len() as u64;
        undo.appended.push((c.upload_id, before));
        self.count_used(c.data.len() as u64, 0);
        Ok(())
    }

    /// Makes a complete upload's file durable under its final name,
    /// checking it holds exactly what the record counts.
    pub(crate) fn finish(&mut self, u: &UploadRecord, undo: &mut Undo) -> Result<(), StoreError> {
        let part_path = self.part_path(u.upload_id);
        if !self.open.contains_key(&u.upload_id) && u.chunks == 0 && u.size == 0 {
            // An empty file has no chunk to have created it.
            self.ensure_dir()?;
            let file = fs::OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nofollow())
                .open(&part_path)
                .map_err(|e| io_error(&part_path, e))?;
            self.open.insert(u.upload_id, Part { file, len: 0 });
        }
        let (count, bytes) = match self.open.get(&u.upload_id) {
            Some(p) => (chunks_of(p.len), p.len),
            None => (0, 0),
        };
        super::staged_match(u, count as i64, bytes as i64)?;
        let part = self
            .open
            .get(&u.upload_id)
            .ok_or_else(|| StoreError::Incompatible(format!("upload {}: no file", u.upload_id)))?;
        part.file.sync_all().map_err(|e| io_error(&part_path, e))?;
        let final_path = self.final_path(u.upload_id);
        rename_new(&part_path, &final_path).map_err(|e| io_error(&final_path, e))?;
        undo.finished.push(u.upload_id);
        self.sync_dir()
    }

    /// Takes back what a batch did: its files under their `.part` names
    /// again, its chunks cut off.
    pub(crate) fn undo(&mut self, undo: Undo) {
        for id in undo.finished.iter().rev() {
            let (from, to) = (self.final_path(*id), self.part_path(*id));
            if let Err(e) = rename_new(&from, &to) {
                log::warn!(
                    "could not rename {} back after a failed commit ({e}); it goes at the next start",
                    from.display()
                );
            }
        }
        for (id, before) in undo.appended.iter().rev() {
            let Some(part) = self.open.get_mut(id) else {
                continue;
            };
            let cut = part.len.saturating_sub(*before);
            if part.file.set_len(*before).is_ok() {
                part.len = *before;
                self.count_used(0, cut);
            } else {
                // A file that cannot be cut cannot take the chunk again:
                // the upload fails and its discard removes it.
                self.open.remove(id);
            }
        }
    }

    /// After the batch committed: the files recorded are closed.
    pub(crate) fn settle(&mut self, finished: &[i64]) {
        for id in finished {
            self.open.remove(id);
        }
    }

    /// Removes an abandoned upload's `.part` (a recorded one has none).
    pub(crate) fn discard(&mut self, id: i64) {
        self.open.remove(&id);
        let path = self.part_path(id);
        let len = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => self.count_used(0, len),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("could not remove {}: {e}", path.display()),
        }
    }

    /// Chunk `seq` of a recorded upload; `None` if it has no file here
    /// (its chunks may be rows of an older store) or no such chunk.
    pub(crate) fn read_chunk(&self, id: i64, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.final_path(id);
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(nofollow())
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path, e)),
        };
        let len = file.metadata().map_err(|e| io_error(&path, e))?.len();
        let at = seq.saturating_mul(MAX_CHUNK_ROW as u64);
        if at >= len {
            return Ok(None);
        }
        let n = (len - at).min(MAX_CHUNK_ROW as u64) as usize;
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, at)
            .map_err(|e| io_error(&path, e))?;
        Ok(Some(buf))
    }

    /// Whether a recorded upload's bytes are a file here.
    pub(crate) fn has_file(&self, id: i64) -> bool {
        fs::symlink_metadata(self.final_path(id)).is_ok_and(|m| m.is_file())
    }

    /// Files here, by upload.
    fn parts(&self) -> Result<Vec<Found>, StoreError> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&self.dir, e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| io_error(&self.dir, e))?;
            let name = entry.file_name();
            let Some((id, part)) = name.to_str().and_then(parse_name) else {
                continue;
            };
            let Ok(m) = entry.metadata() else { continue };
            use std::os::unix::fs::MetadataExt;
            let chunks = part.then(|| chunks_of(m.len()));
            out.push((id, entry.path(), chunks, m.mtime()));
        }
        Ok(out)
    }

    /// Chunks staged in `.part` files.
    pub(crate) fn staged_chunks(&self) -> Result<u64, StoreError> {
        Ok(self.parts()?.iter().filter_map(|p| p.2).sum())
    }

    /// Removes `.part` files last written before `before`, and whole files
    /// no row names (a crash between their rename and their row's commit)
    /// as old; returns the chunks of the parts removed.
    pub(crate) fn remove_orphans(
        &mut self,
        before: i64,
        recorded: &dyn Fn(i64) -> Result<bool, StoreError>,
    ) -> Result<u64, StoreError> {
        let (mut files, mut chunks) = (0u64, 0u64);
        for (id, path, n, mtime) in self.parts()? {
            if mtime >= before {
                continue;
            }
            // Never a recorded upload's bytes, whatever the name.
            if recorded(id)? {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    self.open.remove(&id);
                    files += 1;
                    chunks += n.unwrap_or(0);
                }
                Err(e) => log::warn!("could not remove {}: {e}", path.display()),
            }
        }
        if files > 0 {
            self.quota = self.quota.map(|(q, _)| (q, None));
            log::info!(
                "removed {files} file(s) in {} of uploads never recorded (cut off by a crash or a stop)",
                self.dir.display()
            );
        }
        Ok(chunks)
    }
}

/// Renames `from` to `to` unless `to` exists (`RENAME_NOREPLACE`; a hard
/// link and an unlink where the file system lacks it).
fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn chunk(upload_id: i64, seq: u64, data: &[u8]) -> ChunkRecord {
        ChunkRecord {
            upload_id,
            seq,
            data: data.to_vec(),
        }
    }

    fn record(upload_id: i64, chunks: u64, size: u64) -> UploadRecord {
        UploadRecord {
            receipt_id: 1,
            upload_id,
            sid: "1155000001".into(),
            serial: crate::ca::Serial::from_der_integer(&[1]),
            received_at: 0,
            assignment: "lab".into(),
            file_name: "a.bin".into(),
            size,
            sha256: [0; 32],
            chunks,
            late_seconds: 0,
        }
    }

    #[test]
    fn a_part_is_private_and_becomes_the_whole_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut f = UploadFiles::new(dir.path(), None);
        let mut undo = Undo::default();
        let full = vec![3u8; MAX_CHUNK_ROW];
        f.append(&chunk(5, 0, &full), &mut undo)?;
        f.append(&chunk(5, 1, b"end"), &mut undo)?;
        let part = dir.path().join("uploads/5.part");
        assert_eq!(fs::metadata(&part)?.permissions().mode() & 0o777, 0o600);
        assert_eq!(f.staged_chunks()?, 2);
        f.finish(&record(5, 2, MAX_CHUNK_ROW as u64 + 3), &mut undo)?;
        assert!(!part.exists());
        assert_eq!(f.staged_chunks()?, 0);
        assert_eq!(f.read_chunk(5, 0)?, Some(full));
        assert_eq!(f.read_chunk(5, 1)?.as_deref(), Some(&b"end"[..]));
        assert_eq!(f.read_chunk(5, 2)?, None);
        // Undone: the part again, without the chunks of the batch.
        f.undo(undo);
        assert_eq!(fs::metadata(&part)?.len(), 0);
        assert_eq!(f.read_chunk(5, 0)?, None);
        Ok(())
    }

    #[test]
    fn a_link_where_the_part_goes_is_never_followed() -> TestResult {
        let dir = tempfile::tempdir()?;
        fs::create_dir(dir.path().join("uploads"))?;
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep")?;
        symlink(&victim, dir.path().join("uploads/7.part"))?;
        let mut f = UploadFiles::new(dir.path(), None);
        assert!(f.append(&chunk(7, 0, b"x"), &mut Undo::default()).is_err());
        // Nor for a later chunk (another handle began the upload).
        assert!(f.append(&chunk(7, 1, b"x"), &mut Undo::default()).is_err());
        assert_eq!(fs::read(&victim)?, b"keep");
        // Nor a link at the final name, when read.
        symlink(&victim, dir.path().join("uploads/8"))?;
        assert!(f.read_chunk(8, 0).is_err());
        Ok(())
    }

    #[test]
    fn an_existing_final_name_is_never_overwritten() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut f = UploadFiles::new(dir.path(), None);
        let mut undo = Undo::default();
        f.append(&chunk(9, 0, b"new"), &mut undo)?;
        fs::write(dir.path().join("uploads/9"), b"old")?;
        assert!(f.finish(&record(9, 1, 3), &mut undo).is_err());
        assert_eq!(fs::read(dir.path().join("uploads/9"))?, b"old");
        Ok(())
    }

    #[test]
    fn a_directory_that_is_a_link_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let elsewhere = tempfile::tempdir()?;
        symlink(elsewhere.path(), dir.path().join("uploads"))?;
        let mut f = UploadFiles::new(dir.path(), None);
        assert!(f.append(&chunk(1, 0, b"x"), &mut Undo::default()).is_err());
        assert_eq!(fs::read_dir(elsewhere.path())?.count(), 0);
        Ok(())
    }

    #[test]
    fn chunks_out_of_order_or_after_a_short_one_are_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut f = UploadFiles::new(dir.path(), None);
        let mut undo = Undo::default();
        f.append(&chunk(1, 0, b"short"), &mut undo)?;
        assert!(matches!(
            f.append(&chunk(1, 0, b"again"), &mut undo),
            Err(StoreError::Duplicate(_))
        ));
        assert!(f
            .append(&chunk(1, 1, b"after a short one"), &mut undo)
            .is_err());
        assert!(f.append(&chunk(2, 1, b"no chunk 0"), &mut undo).is_err());
        assert!(f.append(&chunk(3, 0, b""), &mut undo).is_err());
        Ok(())
    }

    #[test]
    fn the_quota_refuses_as_a_full_disk_and_keeps_nothing_of_the_chunk() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut f = UploadFiles::new(dir.path(), Some(1));
        let mut undo = Undo::default();
        f.append(&chunk(1, 0, &[1u8; 4000]), &mut undo)?;
        match f.append(&chunk(2, 0, &[1u8; 200]), &mut undo) {
            Err(e) => assert!(super::super::is_storage_full(&e), "{e}"),
            Ok(()) => panic!("over the quota"),
        }
        f.discard(1);
        f.append(&chunk(2, 0, &[1u8; 200]), &mut undo)?;
        Ok(())
    }

    #[test]
    fn orphans_older_than_the_cut_go_and_recorded_files_stay() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut f = UploadFiles::new(dir.path(), None);
        let mut undo = Undo::default();
        f.append(&chunk(1, 0, b"recorded"), &mut undo)?;
        f.finish(&record(1, 1, 8), &mut undo)?;
        f.settle(&[1]);
        f.append(&chunk(2, 0, b"cut off"), &mut undo)?;
        f.append(&chunk(3, 0, b"renamed, never recorded"), &mut undo)?;
        f.finish(&record(3, 1, 23), &mut undo)?;
        fs::write(dir.path().join("uploads/notes.txt"), b"not ours")?;
        let recorded = |id: i64| Ok(id == 1);
        assert_eq!(f.remove_orphans(0, &recorded)?, 0);
        assert_eq!(f.staged_chunks()?, 1);
        assert_eq!(f.remove_orphans(i64::MAX, &recorded)?, 1);
        assert_eq!(f.staged_chunks()?, 0);
        assert!(f.has_file(1));
        assert!(!f.has_file(3));
        assert!(dir.path().join("uploads/notes.txt").exists());
        Ok(())
    }
}
