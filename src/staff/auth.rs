//! Staff passwords (argon2id PHC strings), session tokens and CSRF tokens.
//!
//! The cookie holds a random 256-bit token; the store keeps only its
//! SHA-256, so a copy of the database opens no session. Each session has
//! its own CSRF token, compared in constant time.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest password taken.
pub const MIN_PASSWORD: usize = 12;
/// Longest password taken (argon2 takes any length; a megabyte of
/// password is an attack on the hasher, not a password).
pub const MAX_PASSWORD: usize = 1024;

/// Why a password or name cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum AuthError {
    /// A name outside `[A-Za-z0-9._-]{1,64}`.
    BadName(String),
    /// Shorter than [`MIN_PASSWORD`] or longer than [`MAX_PASSWORD`].
    PasswordLength(usize),
    /// OpenSSL's random generator failed.
    Random(openssl::error::ErrorStack),
    /// argon2 failed (a bad parameter: not expected).
    Hash(argon2::password_hash::Error),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::BadName(n) => {
                write!(f, "staff name {n:?}: use 1 to 64 of A-Z a-z 0-9 . _ -")
            }
            AuthError::PasswordLength(n) => write!(
                f,
                "the password has {n} characters; it needs {MIN_PASSWORD} to {MAX_PASSWORD}"
            ),
            AuthError::Random(e) => write!(f, "random generator: {e}"),
            AuthError::Hash(e) => write!(f, "argon2id: {e}"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Checks a staff name: 1–64 of `[A-Za-z0-9._-]`.
pub fn check_name(name: &str) -> Result<(), AuthError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadName(name.to_string()))
    }
}

/// The argon2id PHC string of `password` (RustCrypto's defaults: 19 MiB,
/// 2 passes, 1 lane, OWASP's recommendation), with a salt from OpenSSL.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let n = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(AuthError::PasswordLength(n));
    }
    let salt: [u8; 16] = crate::crypto::random().map_err(AuthError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(AuthError::Hash)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(AuthError::Hash)
}

/// Whether `password` matches the PHC string `phc` (constant-time compare
/// inside the argon2 crate). A damaged hash matches nothing.
pub fn verify_password(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD * 4 {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A PHC string of a random password, checked against when the account
/// named does not exist, so a missing account costs the same time as a
/// wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let random: [u8; 16] = crate::crypto::random().unwrap_or([7; 16]); // ok: a decoy; any value serves
        hash_password(&hex(&random)).unwrap_or_default()
    })
}

/// A fresh random token: 256 bits, hex.
pub fn new_token() -> Result<String, AuthError> {
    let bytes: [u8; 32] = crate::crypto::random().map_err(AuthError::Random)?;
    Ok(hex(&bytes))
}

/// What the store keeps of a session token.
pub fn token_hash(token: &str) -> String {
    crate::crypto::sha256_hex(token.as_bytes())
}

/// Whether the form's CSRF token is the session's, compared in constant
/// time (OpenSSL's `CRYPTO_memcmp`).
pub fn csrf_matches(expected: &str, given: Option<&str>) -> bool {
    let Some(given) = given else {
        return false;
    };
    given.len() == expected.len()
        && !expected.is_empty()
        && openssl::memcmp::eq(given.as_bytes(), expected.as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_to_argon2id_and_verify() -> Result<(), AuthError> {
        let phc = hash_password("correct horse battery")?;
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_password("correct horse battery", &phc));
        assert!(!verify_password("correct horse batterY", &phc));
        assert!(!verify_password("x", "not a phc string"));
        // Same password, new salt.
        assert_ne!(phc, hash_password("correct horse battery")?);
        assert!(matches!(
            hash_password("short"),
            Err(AuthError::PasswordLength(5))
        ));
        Ok(())
    }

    #[test]
    fn names_and_csrf_tokens() -> Result<(), AuthError> {
        check_name("ta.one_2-b")?;
        for bad in ["", "a b", "<script>", "é", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let t = new_token()?;
        assert_eq!(t.len(), 64);
        assert!(csrf_matches(&t, Some(&t)));
        assert!(!csrf_matches(&t, Some(&t[1..])));
        assert!(!csrf_matches(&t, Some(&new_token()?)));
        assert!(!csrf_matches(&t, None));
        assert!(!csrf_matches("", Some("")));
        assert_ne!(token_hash(&t), t);
        Ok(())
    }
}
