//! Secrets that come from the operator: the CA passphrase and the admission
//! secret. Paths and sources come in from the binaries' flags.

use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// The environment variable that may hold the CA passphrase.
pub const PASSPHRASE_ENV: &str = "CERTBOARD_CA_PASSPHRASE";
/// Shortest admission secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

/// Why a secret could not be had.
#[derive(Debug)]
#[non_exhaustive]
pub enum SecretError {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file or variable is empty.
    Empty(String),
    /// No source gave a passphrase.
    NoPassphrase,
    /// The two prompted entries differ.
    Mismatch,
    /// The admission secret is too short.
    TooShort(PathBuf),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            SecretError::Empty(what) => write!(f, "{what} is empty"),
            SecretError::NoPassphrase => write!(
                f,
                "no CA passphrase: give --ca-passphrase-file FILE, set {PASSPHRASE_ENV}, \
                 or run on a terminal to be asked"
            ),
            SecretError::Mismatch => write!(f, "the two passphrases differ"),
            SecretError::TooShort(p) => write!(
                f,
                "admission secret {} is shorter than {MIN_SECRET_LEN} bytes",
                p.display()
            ),
        }
    }
}

impl std::error::Error for SecretError {}

/// Reads a secret file, dropping one trailing newline (as `echo` writes).
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, SecretError> {
    let mut data = std::fs::read(path).map_err(|source| SecretError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if data.ends_with(b"\n") {
        data.pop();
        if data.ends_with(b"\r") {
            data.pop();
        }
    }
    if data.is_empty() {
        return Err(SecretError::Empty(path.display().to_string()));
    }
    Ok(data)
}

/// Reads the admission secret file.
pub fn read_admission_secret(path: &Path) -> Result<Vec<u8>, SecretError> {
    let s = read_secret_file(path)?;
    if s.len() < MIN_SECRET_LEN {
        return Err(SecretError::TooShort(path.to_path_buf()));
    }
    Ok(s)
}

/// The CA passphrase: from the file, else the environment, else a prompt
/// when stdin is a terminal (asked twice when a new root is being created).
pub fn ca_passphrase(file: Option<&Path>, creating: bool) -> Result<Vec<u8>, SecretError> {
    if let Some(path) = file {
        return read_secret_file(path);
    }
    if let Some(v) = std::env::var_os(PASSPHRASE_ENV) {
        let v = v.into_encoded_bytes();
        if v.is_empty() {
            return Err(SecretError::Empty(PASSPHRASE_ENV.into()));
        }
        return Ok(v);
    }
    if !std::io::stdin().is_terminal() {
        return Err(SecretError::NoPassphrase);
    }
    let io = |source| SecretError::Io {
        path: PathBuf::from("/dev/tty"),
        source,
    };
    let prompt = if creating {
        "New CA passphrase: "
    } else {
        "CA passphrase: "
    };
    let first = rpassword::prompt_password(prompt).map_err(io)?;
    if creating {
        let second = rpassword::prompt_password("Repeat the CA passphrase: ").map_err(io)?;
        if first != second {
            return Err(SecretError::Mismatch);
        }
    }
    if first.is_empty() {
        return Err(SecretError::Empty("the passphrase".into()));
    }
    Ok(first.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_file_drops_one_newline() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("s");
        std::fs::write(&p, "pass word\r\n")?;
        assert_eq!(read_secret_file(&p)?, b"pass word");
        std::fs::write(&p, "\n")?;
        assert!(matches!(read_secret_file(&p), Err(SecretError::Empty(_))));
        std::fs::write(&p, "short\n")?;
        assert!(matches!(
            read_admission_secret(&p),
            Err(SecretError::TooShort(_))
        ));
        assert!(matches!(
            read_secret_file(&dir.path().join("missing")),
            Err(SecretError::Io { .. })
        ));
        Ok(())
    }
}
