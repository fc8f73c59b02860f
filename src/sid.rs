//! Student ids: the one piece of identity that flows from a CSR's CN into a
//! certificate, a file name on the client and every log line, so it is kept
//! to a small, safe alphabet.

use std::fmt;

/// Longest SID accepted.
pub const MAX_SID_LEN: usize = 32;

/// Why a string is not a valid SID.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SidError {
    /// The SID is empty.
    Empty,
    /// The SID is longer than [`MAX_SID_LEN`] bytes.
    TooLong(usize),
    /// The SID holds a character outside `[A-Za-z0-9_-]`.
    BadChar(char),
}

impl fmt::Display for SidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SidError::Empty => write!(f, "the SID is empty"),
            SidError::TooLong(n) => {
                write!(
                    f,
                    "the SID is {n} bytes long; at most {MAX_SID_LEN} are allowed"
                )
            }
            SidError::BadChar(c) => write!(
                f,
                "the SID contains {c:?}; only letters, digits, '_' and '-' are allowed"
            ),
        }
    }
}

impl std::error::Error for SidError {}

/// Checks that `sid` is 1–32 characters of `[A-Za-z0-9_-]`.
pub fn validate(sid: &str) -> Result<&str, SidError> {
    if sid.is_empty() {
        return Err(SidError::Empty);
    }
    if let Some(c) = sid
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(SidError::BadChar(c));
    }
    if sid.len() > MAX_SID_LEN {
        return Err(SidError::TooLong(sid.len()));
    }
    Ok(sid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_alphabet() {
        for ok in ["1155000001", "a", "A-b_9", &"x".repeat(32)] {
            assert_eq!(validate(ok), Ok(ok));
        }
    }

    #[test]
    fn refuses_with_reason() {
        assert_eq!(validate(""), Err(SidError::Empty));
        assert_eq!(validate(&"x".repeat(33)), Err(SidError::TooLong(33)));
        assert_eq!(validate("a b"), Err(SidError::BadChar(' ')));
        assert_eq!(validate("../etc"), Err(SidError::BadChar('.')));
        assert_eq!(validate("é"), Err(SidError::BadChar('é')));
        assert_eq!(validate("a\nb"), Err(SidError::BadChar('\n')));
    }
}
