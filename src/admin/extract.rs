//! `server reports --assignment ID --extract DIR [--all]`: what students
//! handed in, written as `DIR/<assignment>/<SID>/<file name>` byte for byte
//! (each student's latest, or with `--all` every version as
//! `<receipt id>-<file name>`). A version 2 report is `report.txt`.
//!
//! Nothing is followed or created outside DIR: every path component is
//! an id the server checked (assignment, SID) or a file name that passes
//! the upload rule (no separator, no `.`/`..`, no control character), each
//! directory on the way is created or must already be a real directory
//! (a symbolic link is refused), and each file is created new (an existing
//! one is never written over). A file's bytes are checked against its
//! recorded SHA-256 as they are written; a mismatch removes the file.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// `parent/name` as a real directory: made if absent, refused if a link
/// or anything but a directory.
fn real_dir(parent: &Path, name: &str) -> Result<PathBuf, AdminError> {
    let path = parent.join(name);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_dir() => Ok(path),
        Ok(_) => Err(file_error(
            &path,
            std::io::Error::other("exists and is not a directory (a link is never followed)"),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir(&path).map_err(|e| file_error(&path, e))?;
            Ok(path)
        }
        Err(e) => Err(file_error(&path, e)),
    }
}

/// A name safe as one path component here, or why not.
fn component(name: &str) -> Option<&str> {
    crate::filename::check_file_name(name).ok().map(|_| name)
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
    let base = match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_dir() => dir.to_path_buf(),
        Ok(_) => {
            return Err(file_error(
                dir,
                std::io::Error::other("is not a directory (a link is never followed)"),
            ))
        }
        Err(_) => {
            fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
            dir.to_path_buf()
        }
    };
    let top = real_dir(&base, assignment)?;
    let mut done = Extracted::default();
    for item in items {
        if crate::sid::validate(&item.sid).is_err() {
            return Err(AdminError::NotFound(format!(
                "a record names SID {:?}, which is not a valid SID: not extracted",
                item.sid
            )));
        }
        let name = component(&item.name).unwrap_or("file");
        let file_name = if all {
            format!("{}-{name}", item.receipt_id)
        } else {
            name.to_string()
        };
        let sid_dir = real_dir(&top, &item.sid)?;
        let path = sid_dir.join(&file_name);
        let mut f = crate::fsutil::create_private(&path).map_err(|e| file_error(&path, e))?;
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
                let _ = fs::remove_file(&path);
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
