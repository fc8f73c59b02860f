//! Text from a peer or from the store, made safe to show an operator.
//!
//! A client's error reason, a SID, a report line: printed raw, an escape
//! sequence in them moves the operator's cursor, erases lines or retitles
//! the window, a newline forges a log line of its own, and a bidi override
//! makes a line read differently from what it holds. [`Escaped`] writes
//! every such character as a visible escape instead: C0 controls and DEL
//! as `\xNN` (`\n`, `\r`, `\t` by name), C1 controls, the line and paragraph
//! separators U+2028/U+2029 and the bidi controls (U+061C, U+200E/200F,
//! U+202A–202E, U+2066–2069) as `\u{NNNN}`. Every other character, all of
//! printable Unicode, is left as it is.
//!
//! A backslash is not escaped, so escaping twice changes nothing; the
//! printed form is for reading. The database holds the exact text. Quoted
//! (`{:?}`), a backslash and a double quote of the text are escaped too,
//! so that the quotes around it are the only bare ones.

use std::fmt::{self, Display, Write};

/// Shows `value` with its control characters escaped (see the module).
/// `{:?}` shows the same between double quotes, as a message quotes what a
/// person typed, with the text's own `"` and `\` escaped.
#[derive(Clone, Copy)]
pub struct Escaped<T> {
    value: T,
    keep_tab: bool,
}

/// `value` with every control character escaped, tab included: for a log
/// line or a one-line listing field.
pub fn escaped<T: Display>(value: T) -> Escaped<T> {
    Escaped {
        value,
        keep_tab: false,
    }
}

/// As [`escaped`] but a tab is kept: for one line of a text printed line by
/// line, where a tab cannot forge anything and aligns columns.
pub fn escaped_keep_tab<T: Display>(value: T) -> Escaped<T> {
    Escaped {
        value,
        keep_tab: true,
    }
}

/// Whether `c` is shown as an escape rather than itself.
pub fn needs_escape(c: char) -> bool {
    // `is_control` is Unicode's Cc: C0, DEL and C1.
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

impl<T: Display> Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Escaping as the value is written, so `Arguments` and `&str` alike
        // pass through without an intermediate `String`.
        write!(
            EscapingWriter {
                out: f,
                keep_tab: self.keep_tab,
                quoted: false,
            },
            "{}",
            self.value
        )
    }
}

impl<T: Display> fmt::Debug for Escaped<T> {
    /// Between double quotes, with a `"` or `\` of the text escaped too:
    /// a name holding `x" sid="1` must not read as a quoted field that
    /// ended, followed by another.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        write!(
            EscapingWriter {
                out: f,
                keep_tab: self.keep_tab,
                quoted: true,
            },
            "{}",
            self.value
        )?;
        f.write_char('"')
    }
}

struct EscapingWriter<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    keep_tab: bool,
    /// Inside double quotes: `"` and `\` are escaped as well.
    quoted: bool,
}

impl Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            let quote = self.quoted && matches!(c, '"' | '\\');
            if !quote && (!needs_escape(c) || (self.keep_tab && c == '\t')) {
                continue;
            }
            self.out.write_str(&s[plain..i])?;
            match c {
                '"' | '\\' => {
                    self.out.write_char('\\')?;
                    self.out.write_char(c)?;
                }
                '\n' => self.out.write_str("\\n")?,
                '\r' => self.out.write_str("\\r")?,
                '\t' => self.out.write_str("\\t")?,
                c if u32::from(c) < 0x80 => write!(self.out, "\\x{:02x}", u32::from(c))?,
                c => write!(self.out, "\\u{{{:04x}}}", u32::from(c))?,
            }
            plain = i + c.len_utf8();
        }
        self.out.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        escaped(s).to_string()
    }

    #[test]
    fn ordinary_text_and_printable_unicode_are_left_alone() {
        for s in [
            "",
            "plain ASCII text",
            "naïve café 学生 🎓",
            "a\\x1b b",
            "\"quoted\"",
        ] {
            assert_eq!(esc(s), s);
        }
    }

    #[test]
    fn debug_quotes_the_escaped_text_and_shows_no_internals() {
        assert_eq!(format!("{:?}", escaped("Mars/Phobos")), "\"Mars/Phobos\"");
        assert_eq!(format!("{:?}", escaped("a\x1bb")), "\"a\\x1bb\"");
        assert_eq!(format!("{:?}", escaped_keep_tab("a\tb")), "\"a\tb\"");
    }

    #[test]
    fn debug_escapes_quotes_and_backslashes_so_the_quoted_text_cannot_end_early() {
        assert_eq!(
            format!("{:?}", escaped("lab\" sid=\"1")),
            r#""lab\" sid=\"1""#
        );
        assert_eq!(format!("{:?}", escaped("a\\\"b")), r#""a\\\"b""#);
        // Display is unchanged: quotes and backslashes are text there.
        assert_eq!(escaped("a\\\"b").to_string(), "a\\\"b");
    }

    #[test]
    fn terminal_escape_sequences_are_shown_not_run() {
        // Erase line, cursor up, OSC window title ended by BEL and by ST.
        assert_eq!(esc("\x1b[2K\x1b[1A"), "\\x1b[2K\\x1b[1A");
        assert_eq!(esc("\x1b]0;owned\x07"), "\\x1b]0;owned\\x07");
        assert_eq!(esc("\x1b]0;owned\x1b\\"), "\\x1b]0;owned\\x1b\\");
        assert_eq!(esc("a\u{9b}2Kb"), "a\\u{009b}2Kb", "C1 CSI");
        assert!(!esc("\x1b[2K\u{9b}\u{9d}").chars().any(needs_escape));
    }

    #[test]
    fn every_c0_c1_and_del_is_escaped() {
        let all: String = (0u32..0x20)
            .chain(0x7f..0xa0)
            .filter_map(char::from_u32)
            .collect();
        let out = esc(&all);
        assert!(!out.chars().any(|c| c.is_control()), "{out}");
        assert!(out.starts_with("\\x00\\x01"));
        assert!(out.contains("\\x7f\\u{0080}"));
        assert!(out.ends_with("\\u{009f}"));
    }

    #[test]
    fn line_breaks_cannot_start_a_new_line() {
        assert_eq!(esc("a\nb\r\nc"), "a\\nb\\r\\nc");
        assert_eq!(
            esc("a\u{2028}b\u{2029}c\u{85}d"),
            "a\\u{2028}b\\u{2029}c\\u{0085}d"
        );
        assert_eq!(esc("\x0b\x0c"), "\\x0b\\x0c");
    }

    #[test]
    fn bidi_controls_are_escaped() {
        assert_eq!(
            esc("x\u{202e}gnp.exe\u{202c}"),
            "x\\u{202e}gnp.exe\\u{202c}"
        );
        for c in [
            '\u{061c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{2066}', '\u{2069}',
        ] {
            assert!(esc(&c.to_string()).starts_with("\\u{"), "{c:?}");
        }
        // Neighbours of the ranges are ordinary characters.
        for c in ['\u{2027}', '\u{202f}', '\u{2065}', '\u{206a}', '\u{200d}'] {
            assert_eq!(esc(&c.to_string()), c.to_string(), "{c:?}");
        }
    }

    #[test]
    fn tab_is_kept_only_when_asked() {
        assert_eq!(esc("a\tb"), "a\\tb");
        assert_eq!(escaped_keep_tab("a\tb\x1b").to_string(), "a\tb\\x1b");
    }

    #[test]
    fn escaping_twice_changes_nothing_more() {
        let once = esc("\x1b[31mred\n\u{202e}");
        assert_eq!(esc(&once), once);
    }

    #[test]
    fn format_arguments_are_escaped_as_they_are_written() {
        let reason = "bad\x1b[2K";
        let line = escaped(format_args!("peer said {reason} ({})", 7)).to_string();
        assert_eq!(line, "peer said bad\\x1b[2K (7)");
    }
}
