//! `server reports --assignment ID --extract DIR [--all]`: what students
//! handed in, written as `DIR/<assignment>/<SID>/<file name>` byte for byte
//! (each student's latest, or with `--all` every version as
//! `<receipt id>-<file name>`). A version 2 report is `report.txt`.
//!
//! Nothing is followed or created outside DIR: every path component is
//! an id the server checked (assignment, SID) or a file name made to pass
//! the upload rule (no separator, no `.`/`..`, no control character; a
//! stored name that does not is sanitised as the client does), each
//! directory on the way is created or must already be a real directory
//! (a symbolic link is refused), and each file is created new (an existing
//! one is never written over). A file's bytes are checked against its
//! recorded SHA-256 as they are written; a mismatch removes the file.
//!
//! Checking a path and then using it would leave a window in which a
//! directory checked as real is swapped for a link (DIR may be shared with
//! others): so each directory is opened (`O_DIRECTORY | O_NOFOLLOW`) and
//! the next component made and opened relative to that descriptor
//! (`mkdirat`, `openat`), as is the file itself (`O_CREAT | O_EXCL |
//! O_NOFOLLOW`). What a descriptor names cannot be swapped; a link put in
//! place of a component before it is opened is refused by `O_NOFOLLOW`.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::AdminError;
use crate::store::Storage;

/// What was written.
#[derive(Debug, Default)]
pub struct Extracted {
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// One thing handed in, wherever it is stored.
enum Source {
    Report(String),
    Upload {
        upload_id: i64,
        chunks: u64,
        sha256: [u8; 32],
    },
}

struct Item {
    sid: String,
    receipt_id: u64,
    received_at: i64,
    name: String,
    source: Source,
}

fn file_error(path: &Path, e: std::io::Error) -> AdminError {
    AdminError::File {
        path: path.to_path_buf(),
        source: e,
    }
}

/// A directory opened for `*at` calls, never through a link.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A directory held open, with its path for messages.
struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

fn not_a_dir(path: &Path) -> AdminError {
    file_error(
        path,
        std::io::Error::other("exists and is not a directory (a link is never followed)"),
    )
}

/// Opens `errno` of an open with `O_DIRECTORY | O_NOFOLLOW`: a link
/// (`ELOOP`) or another kind of file (`ENOTDIR`) is said as such.
fn open_error(path: &Path, errno: Errno) -> AdminError {
    if errno == Errno::LOOP || errno == Errno::NOTDIR {
        not_a_dir(path)
    } else {
        file_error(path, errno.into())
    }
}

/// A folder found under DIR must be the server user's: another user who
/// owns one could not read the files written into it (0600), but could
/// move or delete them.
fn ours(path: &Path, owner: u32, me: u32) -> Result<(), AdminError> {
    if owner == me {
        Ok(())
    } else {
        Err(file_error(
            path,
            std::io::Error::other(format!(
                "belongs to another user (uid {owner}): nothing is written into it"
            )),
        ))
    }
}

impl Dir {
    /// DIR itself, made (with its parents) if absent. Only its last
    /// component is refused as a link: the path above it is the operator's.
    fn base(dir: &Path) -> Result<Dir, AdminError> {
        if let Err(e) = fs::symlink_metadata(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(file_error(dir, e));
            }
            // Students' files: the folders made here are the server
            // user's alone (0700), like the files in them (0600).
            crate::fsutil::create_private_dir_all(dir).map_err(|e| file_error(dir, e))?;
        }
        let fd = rustix::fs::open(dir, DIR_FLAGS, Mode::empty()).map_err(|e| open_error(dir, e))?;
        Ok(Dir {
            fd,
            path: dir.to_path_buf(),
        })
    }

    /// `name` in this directory as a real directory: made if absent,
    /// refused if a link or anything but a directory.
    fn sub(&self, name: &str) -> Result<Dir, AdminError> {
        let path = self.path.join(name);
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(e) if e == Errno::EXIST => {}
            Err(e) => return Err(file_error(&path, e.into())),
        }
        let fd = rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty())
            .map_err(|e| open_error(&path, e))?;
        let owner = rustix::fs::fstat(&fd)
            .map_err(|e| file_error(&path, e.into()))?
            .st_uid;
        ours(&path, owner, rustix::process::geteuid().as_raw())?;
        Ok(Dir { fd, path })
    }

    /// `name` here, created new for the server's user only (0600).
    fn create(&self, name: &str) -> Result<fs::File, AdminError> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(0o600))
            .map(fs::File::from)
            .map_err(|e| {
                let path = self.path.join(name);
                if e == Errno::EXIST {
                    file_error(
                        &path,
                        std::io::Error::other(
                            "already exists: nothing is written over; extract into a new or \
                             empty directory",
                        ),
                    )
                } else {
                    file_error(&path, e.into())
                }
            })
    }

    /// Removes `name` (a file this run created).
    fn remove(&self, name: &str) {
        let _ = rustix::fs::unlinkat(&self.fd, name, AtFlags::empty());
    }
}

/// The file name to write: the stored one made to pass the upload rule
/// (a record from before the rule, or an altered one, is sanitised as the
/// client sanitises), after `prefix`, the whole cut to
/// [`crate::filename::MAX_FILE_NAME`] bytes at a character boundary.
fn file_name(stored: &str, prefix: &str) -> String {
    let name = crate::filename::sanitise_file_name(stored);
    let mut end = crate::filename::MAX_FILE_NAME
        .saturating_sub(prefix.len())
        .min(name.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{prefix}{}", &name[..end])
}

/// Writes what `sid`s handed in for `assignment` under `dir`.
pub fn extract(
    store: &mut dyn Storage,
    assignment: &str,
    dir: &Path,
    all: bool,
) -> Result<Extracted, AdminError> {
    crate::assignment::validate_id(assignment)
        .map_err(|e| AdminError::NotFound(format!("--assignment {assignment:?}: {e}")))?;
    let mut items: Vec<Item> = Vec::new();
    for r in store.reports().map_err(AdminError::Store)? {
        if r.assignment == assignment {
            items.push(Item {
                sid: r.sid,
                receipt_id: r.receipt_id,
                received_at: r.received_at,
                name: "report.txt".to_string(),
                source: Source::Report(r.text),
            });
        }
    }
    for u in store.uploads().map_err(AdminError::Store)? {
        if u.assignment == assignment {
            items.push(Item {
                sid: u.sid,
                receipt_id: u.receipt_id,
                received_at: u.received_at,
                name: u.file_name,
                source: Source::Upload {
                    upload_id: u.upload_id,
                    chunks: u.chunks,
                    sha256: u.sha256,
                },
            });
        }
    }
    // A mistyped id is said, not answered with an empty folder.
    if items.is_empty()
        && !store
            .assignments()
            .map_err(AdminError::Store)?
            .iter()
            .any(|a| a.id == assignment)
    {
        return Err(AdminError::NotFound(format!(
            "no assignment {assignment:?} (see `server assignment list`); nothing extracted"
        )));
    }
    if !all {
        // Each SID's latest: the newest, the later receipt on a tie.
        let mut latest: HashMap<String, Item> = HashMap::new();
        for item in items {
            let newer = latest.get(&item.sid).is_none_or(|l| {
                (item.received_at, item.receipt_id) > (l.received_at, l.receipt_id)
            });
            if newer {
                latest.insert(item.sid.clone(), item);
            }
        }
        items = latest.into_values().collect();
    }
    items.sort_by(|a, b| {
        (&a.sid, a.received_at, a.receipt_id).cmp(&(&b.sid, b.received_at, b.receipt_id))
    });
    let top = Dir::base(dir)?.sub(assignment)?;
    let mut done = Extracted::default();
    for item in items {
        if crate::sid::validate(&item.sid).is_err() {
            return Err(AdminError::NotFound(format!(
                "a record names SID {:?}, which is not a valid SID: not extracted",
                item.sid
            )));
        }
        let prefix = if all {
            format!("{}-", item.receipt_id)
        } else {
            String::new()
        };
        let file_name = file_name(&item.name, &prefix);
        let sid_dir = top.sub(&item.sid)?;
        let path = sid_dir.path.join(&file_name);
        let mut f = sid_dir.create(&file_name)?;
        let written = match &item.source {
            Source::Report(text) => f
                .write_all(text.as_bytes())
                .map(|_| text.len() as u64)
                .map_err(|e| file_error(&path, e)),
            Source::Upload {
                upload_id,
                chunks,
                sha256,
            } => copy_upload(store, *upload_id, *chunks, sha256, &mut f, &path),
        };
        match written.and_then(|n| f.sync_all().map(|_| n).map_err(|e| file_error(&path, e))) {
            Ok(n) => {
                done.files += 1;
                done.bytes += n;
            }
            Err(e) => {
                drop(f);
                sid_dir.remove(&file_name);
                return Err(e);
            }
        }
    }
    Ok(done)
}

/// Streams an upload's chunks into `f`, checking its SHA-256.
fn copy_upload(
    store: &mut dyn Storage,
    upload_id: i64,
    chunks: u64,
    sha256: &[u8; 32],
    f: &mut fs::File,
    path: &Path,
) -> Result<u64, AdminError> {
    let mut hasher = openssl::sha::Sha256::new();
    let mut n = 0u64;
    for seq in 0..chunks {
        let chunk = store
            .upload_chunk(upload_id, seq)
            .map_err(AdminError::Store)?
            .ok_or_else(|| {
                AdminError::NotFound(format!("chunk {seq} of upload {upload_id} is missing"))
            })?;
        hasher.update(&chunk);
        f.write_all(&chunk).map_err(|e| file_error(path, e))?;
        n += chunk.len() as u64;
    }
    if &hasher.finish() != sha256 {
        return Err(AdminError::NotFound(format!(
            "upload {upload_id}'s bytes do not match its recorded SHA-256: not extracted"
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::Serial;
    use crate::store::{ChunkRecord, Record, SqliteStore, UploadRecord};
    use std::os::unix::fs::symlink;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const SID: &str = "1155000001";

    /// A store holding, for `hw1`, one upload per name (receipt ids from
    /// 1, each file's bytes its own name, or `x` for an empty one).
    fn store_with(names: &[String]) -> Result<SqliteStore, Box<dyn std::error::Error>> {
        let mut store = SqliteStore::in_memory()?;
        for (i, name) in names.iter().enumerate() {
            let id = i64::try_from(i)? + 1;
            let data = if name.is_empty() {
                b"x".to_vec()
            } else {
                name.as_bytes().to_vec()
            };
            store.commit(&[
                Record::Chunk(ChunkRecord {
                    upload_id: id,
                    seq: 0,
                    data: data.clone(),
                }),
                Record::Upload(UploadRecord {
                    receipt_id: u64::try_from(id)?,
                    upload_id: id,
                    sid: SID.into(),
                    serial: Serial::parse_hex("0A")?,
                    received_at: 1_700_000_000 + id,
                    assignment: "hw1".into(),
                    file_name: name.clone(),
                    size: data.len() as u64,
                    sha256: openssl::sha::sha256(&data),
                    chunks: 1,
                    late_seconds: 0,
                }),
            ])?;
        }
        Ok(store)
    }

    /// Every path under `dir`, relative, with `/` for a directory, and
    /// whether any is a link.
    fn tree(dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d)? {
                let e = e?;
                let rel = e.path().strip_prefix(dir)?.to_string_lossy().into_owned();
                let t = e.file_type()?;
                if t.is_symlink() {
                    out.push(format!("{rel}@"));
                } else if t.is_dir() {
                    out.push(format!("{rel}/"));
                    todo.push(e.path());
                } else {
                    out.push(rel);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    #[test]
    fn a_folder_of_another_user_under_dir_is_refused() -> TestResult {
        let work = tempfile::tempdir()?;
        assert!(ours(work.path(), 1000, 1000).is_ok());
        let e = ours(work.path(), 1001, 1000).err().ok_or("taken")?;
        assert!(
            e.to_string().contains("belongs to another user (uid 1001)"),
            "{e}"
        );
        // For real, where this runs as root (CI): a student's folder handed
        // to nobody (65534) is refused, nothing is written.
        if rustix::process::geteuid().is_root() {
            let mut store = store_with(&["a.txt".to_string()])?;
            let dir = work.path().join("out");
            let theirs = dir.join("hw1").join(SID);
            fs::create_dir_all(&theirs)?;
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534))?;
            let e = extract(&mut store, "hw1", &dir, false)
                .err()
                .ok_or("wrote into another user's folder")?;
            assert!(e.to_string().contains("belongs to another user"), "{e}");
            assert_eq!(fs::read_dir(&theirs)?.count(), 0);
        }
        Ok(())
    }

    #[test]
    fn hostile_stored_names_land_sanitised_inside_dir() -> TestResult {
        let long = format!("{}.pdf", "é".repeat(200));
        let names: Vec<String> = [
            "../../escape.txt",
            "/etc/passwd",
            "a\\b",
            "..",
            ".",
            "",
            "...",
            "bell\u{7}\r\nname",
            "evil\u{202E}fdp.exe",
            &long,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let work = tempfile::tempdir()?;
        let dir = work.path().join("out");
        let mut store = store_with(&names)?;
        let done = extract(&mut store, "hw1", &dir, true)?;
        assert_eq!(done.files, names.len());
        let mut want: Vec<String> = vec!["hw1/".into(), format!("hw1/{SID}/")];
        let expected = [
            ".._.._escape.txt".to_string(),
            "_etc_passwd".into(),
            "a_b".into(),
            "file".into(),
            "file".into(),
            "file".into(),
            "...".into(),
            "bell___name".into(),
            "evil_fdp.exe".into(),
        ];
        for (i, name) in expected.iter().enumerate() {
            want.push(format!("hw1/{SID}/{}-{name}", i + 1));
        }
        // The long name cut to 255 bytes with its prefix, at a character.
        let cut = file_name(&long, "10-");
        assert_eq!(cut.len(), 255, "{cut}");
        assert!(cut.starts_with("10-éé"));
        want.push(format!("hw1/{SID}/{cut}"));
        want.sort();
        assert_eq!(tree(&dir)?, want);
        assert_eq!(
            tree(work.path())?.len(),
            want.len() + 1,
            "nothing beside DIR"
        );
        // Each file holds what was stored under its name.
        assert_eq!(
            fs::read(dir.join(format!("hw1/{SID}/1-.._.._escape.txt")))?,
            b"../../escape.txt"
        );
        assert_eq!(fs::read(dir.join(format!("hw1/{SID}/6-file")))?, b"x");
        // Students' files are the server user's alone, folders included.
        use std::os::unix::fs::PermissionsExt;
        for made in [dir.clone(), dir.join("hw1"), dir.join(format!("hw1/{SID}"))] {
            let mode = fs::metadata(&made)?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", made.display());
        }
        let file = dir.join(format!("hw1/{SID}/7-..."));
        assert_eq!(fs::metadata(file)?.permissions().mode() & 0o777, 0o600);
        // The latest only: the long one, cut to 255 bytes (127 é).
        let latest = work.path().join("latest");
        extract(&mut store, "hw1", &latest, false)?;
        assert_eq!(
            tree(&latest)?,
            [
                "hw1/".to_string(),
                format!("hw1/{SID}/"),
                format!("hw1/{SID}/{}", "é".repeat(127))
            ]
        );
        Ok(())
    }

    #[test]
    fn nothing_is_written_through_a_link_at_the_assignment_or_the_sid() -> TestResult {
        let names = vec!["essay.pdf".to_string()];
        let mut store = store_with(&names)?;
        let work = tempfile::tempdir()?;
        let outside = work.path().join("outside");
        fs::create_dir(&outside)?;
        // DIR/<assignment> a link to a directory outside.
        let dir = work.path().join("a");
        fs::create_dir(&dir)?;
        symlink(&outside, dir.join("hw1"))?;
        let e = extract(&mut store, "hw1", &dir, false).map(|_| ());
        assert!(
            matches!(&e, Err(AdminError::File { path, .. }) if path.ends_with("a/hw1")),
            "{e:?}"
        );
        assert!(e.is_err_and(|e| e.to_string().contains("never followed")));
        // DIR/<assignment>/<SID> a link.
        let dir = work.path().join("b");
        fs::create_dir_all(dir.join("hw1"))?;
        symlink(&outside, dir.join("hw1").join(SID))?;
        assert!(extract(&mut store, "hw1", &dir, false).is_err());
        // DIR itself a link, and the file's own name a dangling link.
        symlink(&outside, work.path().join("c"))?;
        assert!(extract(&mut store, "hw1", &work.path().join("c"), false).is_err());
        let dir = work.path().join("d");
        fs::create_dir_all(dir.join("hw1").join(SID))?;
        symlink(
            outside.join("planted"),
            dir.join("hw1").join(SID).join("essay.pdf"),
        )?;
        assert!(extract(&mut store, "hw1", &dir, false).is_err());
        // An assignment that is a file, not a directory.
        let dir = work.path().join("e");
        fs::create_dir(&dir)?;
        fs::write(dir.join("hw1"), b"")?;
        assert!(extract(&mut store, "hw1", &dir, false).is_err());
        assert_eq!(tree(&outside)?, Vec::<String>::new());
        // And the real thing still works.
        let dir = work.path().join("f");
        extract(&mut store, "hw1", &dir, false)?;
        assert_eq!(
            fs::read(dir.join("hw1").join(SID).join("essay.pdf"))?,
            b"essay.pdf"
        );
        Ok(())
    }

    /// The race the descriptors close: the SID folder checked and opened,
    /// then swapped for a link to elsewhere before the file is made. The
    /// file still lands in the folder that was opened, not through the link.
    #[test]
    fn a_folder_swapped_for_a_link_after_it_is_opened_is_not_followed() -> TestResult {
        let work = tempfile::tempdir()?;
        let outside = work.path().join("outside");
        fs::create_dir(&outside)?;
        let top = Dir::base(&work.path().join("out"))?.sub("hw1")?;
        let sid_dir = top.sub(SID)?;
        let moved = work.path().join("moved");
        fs::rename(&sid_dir.path, &moved)?;
        symlink(&outside, &sid_dir.path)?;
        sid_dir.create("essay.pdf")?.write_all(b"hers")?;
        assert_eq!(fs::read(moved.join("essay.pdf"))?, b"hers");
        assert_eq!(tree(&outside)?, Vec::<String>::new());
        // Opened again by name, the link is refused.
        assert!(top.sub(SID).is_err());
        Ok(())
    }
}
