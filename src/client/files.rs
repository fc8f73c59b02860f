//! Where a student's files live under the out-dir, and how they are
//! written: atomically, with the mode given, in a directory only she can
//! write to.

use std::io;
use std::path::{Path, PathBuf};

use super::{io_ctx, ClientError};

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
}

pub(super) fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), ClientError> {
    crate::fsutil::write_private_atomic(path, data, mode)
        .map_err(io::Error::from)
        .map_err(io_ctx(format!("writing {}", path.display())))
}
