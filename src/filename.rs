//! The rule a handed-in file's name obeys (protocol version 3), shared by
//! the client, which sanitises a name before announcing it, and Blackboard,
//! which refuses (never rewrites) a name that breaks it: the name is later
//! a path component of `reports --extract`, and shown on terminals.

use std::fmt;

/// Longest file name, in bytes of UTF-8 (the common file-system limit).
pub const MAX_FILE_NAME: usize = 255;

/// Why a file name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileNameError {
    /// Empty.
    Empty,
    /// Over [`MAX_FILE_NAME`] bytes.
    TooLong(usize),
    /// `.` or `..`.
    Dots,
    /// A character the rule forbids.
    Forbidden(char),
}

impl fmt::Display for FileNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileNameError::Empty => write!(f, "the file name is empty"),
            FileNameError::TooLong(n) => {
                write!(f, "the file name is {n} bytes; at most {MAX_FILE_NAME}")
            }
            FileNameError::Dots => write!(f, "the file name may not be `.` or `..`"),
            FileNameError::Forbidden(c) => {
                write!(f, "the file name holds the forbidden character {c:?}")
            }
        }
    }
}

impl std::error::Error for FileNameError {}

/// Path separators, NUL and controls (category Cc), and the bidirectional
/// controls that make a name display as another (U+202A–U+202E,
/// U+2066–U+2069, U+200E, U+200F, U+061C).
fn forbidden(c: char) -> bool {
    c == '/'
        || c == '\\'
        || c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Checks a file name against the rule: 1–255 bytes of UTF-8, none of the
/// forbidden characters, not `.` or `..`.
pub fn check_file_name(name: &str) -> Result<(), FileNameError> {
    if name.is_empty() {
        return Err(FileNameError::Empty);
    }
    if name.len() > MAX_FILE_NAME {
        return Err(FileNameError::TooLong(name.len()));
    }
    if name == "." || name == ".." {
        return Err(FileNameError::Dots);
    }
    match name.chars().find(|&c| forbidden(c)) {
        Some(c) => Err(FileNameError::Forbidden(c)),
        None => Ok(()),
    }
}

/// The client's rewrite of a local file name into one that passes: each
/// forbidden character becomes `_`, the name is cut to 255 bytes at a
/// character boundary, and an empty, `.` or `..` name becomes `file`.
pub fn sanitise_file_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if forbidden(c) { '_' } else { c })
        .collect();
    let mut end = out.len().min(MAX_FILE_NAME);
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    if out.is_empty() || out == "." || out == ".." {
        out = "file".into();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused_and_sanitised_into_good_ones() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "..\\x",
            "a\0b",
            "line\nbreak",
            "bell\u{7}",
            "c1\u{85}",
            "evil\u{202E}fdp.exe",
            "iso\u{2066}late",
            &"x".repeat(256),
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?} accepted");
            let clean = sanitise_file_name(bad);
            assert_eq!(check_file_name(&clean), Ok(()), "{bad:?} -> {clean:?}");
        }
        for good in ["report.pdf", "Über 1.txt", "..hidden", "a..b", "報告.docx"] {
            assert_eq!(check_file_name(good), Ok(()));
            assert_eq!(sanitise_file_name(good), good);
        }
        assert_eq!(sanitise_file_name("a/b\\c"), "a_b_c");
        assert_eq!(sanitise_file_name(".."), "file");
        let long = "é".repeat(200);
        let cut = sanitise_file_name(&long);
        assert!(cut.len() <= MAX_FILE_NAME && cut.chars().all(|c| c == 'é'));
    }
}
