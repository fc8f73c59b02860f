//! Secrets that come from the operator: the CA passphrase and the admission
//! secret. Paths and sources come in from the binaries' flags.

use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::ca::MIN_PASSPHRASE_LEN;

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
    /// Every passphrase typed for a new root was too short.
    ShortPassphrase,
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
            SecretError::ShortPassphrase => write!(
                f,
                "the CA passphrase must be at least {MIN_PASSPHRASE_LEN} characters"
            ),
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
    let ask = |prompt: &str| rpassword::prompt_password(prompt);
    let tell = |line: &str| eprintln!("{line}");
    let pass = if creating {
        prompt_new_passphrase(ask, tell).map_err(|e| match e {
            Prompted::Io(e) => io(e),
            Prompted::Gave(e) => e,
        })?
    } else {
        ask("CA passphrase: ").map_err(io)?
    };
    if pass.is_empty() {
        return Err(SecretError::Empty("the passphrase".into()));
    }
    Ok(pass.into_bytes())
}

/// How many times a new passphrase is asked for before giving up.
const PROMPT_TRIES: usize = 3;

/// Why prompting ended without a passphrase.
#[derive(Debug)]
enum Prompted {
    Io(std::io::Error),
    Gave(SecretError),
}

/// Asks for a new passphrase: the prompt states the minimum length, which
/// is checked before the repeat is asked for; a short one or a mismatch is
/// said and asked again, up to [`PROMPT_TRIES`] times.
fn prompt_new_passphrase(
    mut ask: impl FnMut(&str) -> std::io::Result<String>,
    mut tell: impl FnMut(&str),
) -> Result<String, Prompted> {
    let mut last = SecretError::Mismatch;
    for _ in 0..PROMPT_TRIES {
        let first = ask(&format!(
            "New CA passphrase (at least {MIN_PASSPHRASE_LEN} characters): "
        ))
        .map_err(Prompted::Io)?;
        if first.len() < MIN_PASSPHRASE_LEN {
            tell(&format!(
                "too short ({} characters); at least {MIN_PASSPHRASE_LEN}, try again",
                first.len()
            ));
            last = SecretError::ShortPassphrase;
            continue;
        }
        let second = ask("Repeat the CA passphrase: ").map_err(Prompted::Io)?;
        if first == second {
            return Ok(first);
        }
        tell("the two passphrases differ, try again");
        last = SecretError::Mismatch;
    }
    Err(Prompted::Gave(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds typed answers to the prompt; records what was asked and said.
    fn prompted(answers: &[&str]) -> (Result<String, Prompted>, Vec<String>) {
        let mut typed = answers.iter();
        let mut seen = Vec::new();
        let said = std::cell::RefCell::new(Vec::new());
        let r = prompt_new_passphrase(
            |p| {
                seen.push(p.to_string());
                Ok(typed.next().map(|s| s.to_string()).unwrap_or_default())
            },
            |line| said.borrow_mut().push(format!("! {line}")),
        );
        let mut all = seen;
        all.extend(said.into_inner());
        (r, all)
    }

    #[test]
    fn a_new_passphrase_is_checked_before_the_repeat_and_asked_again() {
        let (r, log) = prompted(&[
            "short",
            "long enough",
            "long enuogh",
            "long enough",
            "long enough",
        ]);
        assert_eq!(r.ok().as_deref(), Some("long enough"));
        assert!(log[0].contains("at least 8 characters"), "{log:?}");
        // "short" was refused without asking for its repeat.
        assert!(log[1].starts_with("New CA passphrase"), "{log:?}");
        assert!(
            log.iter().any(|l| l.contains("too short (5 characters)")),
            "{log:?}"
        );
        assert!(
            log.iter().any(|l| l.contains("differ, try again")),
            "{log:?}"
        );
        let (r, _) = prompted(&["a", "b", "c"]);
        assert!(matches!(
            r,
            Err(Prompted::Gave(SecretError::ShortPassphrase))
        ));
    }

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
