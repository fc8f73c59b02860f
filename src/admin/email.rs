//! Roster e-mail addresses and the ready-to-send RFC 5322 messages of
//! `roster codes --eml DIR`: one file per student with her code, the CA
//! root's SHA-256 fingerprint and the client command to run.
//!
//! Header injection is impossible by construction: an address is checked
//! at import (ASCII, no white space, no CR/LF, none of the characters that
//! end or group an address), a name holds no control character (refused
//! at import too) and is written as RFC 2047 encoded-words whenever it is
//! not plain ASCII words, so nothing a roster says can start a header line.

use std::fmt;
use std::io::Write;
use std::path::Path;

use openssl::base64::encode_block;

use crate::fsutil;
use crate::store::RosterEntry;

use super::AdminError;

/// Why an e-mail address is refused at import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadAddress(&'static str);

impl fmt::Display for BadAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e-mail address refused: {}", self.0)
    }
}

impl std::error::Error for BadAddress {}

/// Checks an address as `local@domain` in printable ASCII, at most 254
/// characters, without white space, controls or `<>(),;:"[]\`.
pub fn check_address(a: &str) -> Result<(), BadAddress> {
    if a.len() > 254 {
        return Err(BadAddress("longer than 254 characters"));
    }
    if let Some(c) = a.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(if c.is_control() || c.is_whitespace() {
            BadAddress("it holds white space or a control character (CR, LF, ...)")
        } else {
            BadAddress("it holds a non-ASCII character")
        });
    }
    if a.contains(['<', '>', '(', ')', ',', ';', ':', '"', '[', ']', '\\']) {
        return Err(BadAddress("it holds one of <>(),;:\"[]\\"));
    }
    match a.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !domain.contains('@') =>
        {
            Ok(())
        }
        _ => Err(BadAddress("expected local@domain")),
    }
}

/// A display name for a header: as it is when it is ASCII letters,
/// digits, spaces, `.`, `'` and `-`; else RFC 2047 `B` encoded-words of
/// UTF-8 (each under 76 characters, folded), which no byte of the name
/// can break out of.
fn display_name(name: &str) -> String {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " .'-".contains(c));
    if plain && !name.is_empty() {
        return name.to_string();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in name.chars() {
        // 45 bytes of UTF-8 make 60 of base64: 72 with the =?UTF-8?B??=.
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", encode_block(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", encode_block(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

/// What every message says besides the student's own lines.
#[derive(Debug, Clone)]
pub struct Letter {
    /// The CA root's SHA-256 fingerprint.
    pub fingerprint: String,
    /// The `From` address (checked like a roster address).
    pub from: String,
    /// When the messages are dated, Unix seconds.
    pub date: i64,
}

/// One RFC 5322 message (CRLF line ends) for one student.
pub(super) fn message(
    entry: &RosterEntry,
    email: &str,
    code: &str,
    letter: &Letter,
) -> Result<String, AdminError> {
    check_address(email).map_err(|e| AdminError::Refused(format!("SID {}: {e}", entry.sid)))?;
    let date = jiff::Timestamp::from_second(letter.date)
        .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC))
        .map_err(|e| AdminError::Refused(format!("the date: {e}")))
        .and_then(|z| {
            jiff::fmt::rfc2822::to_string(&z)
                .map_err(|e| AdminError::Refused(format!("the date: {e}")))
        })?;
    let id: String = crate::crypto::random::<16>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let domain = letter
        .from
        .rsplit_once('@')
        .map_or("certboard.invalid", |(_, d)| d);
    let sid = &entry.sid;
    let fp = &letter.fingerprint;
    let mut m = String::new();
    for line in [
        format!("From: {}", letter.from),
        format!("To: {} <{email}>", display_name(&entry.name)),
        format!("Subject: Your course enrollment code ({sid})"),
        format!("Date: {date}"),
        format!("Message-ID: <{id}@{domain}>"),
        "MIME-Version: 1.0".into(),
        "Content-Type: text/plain; charset=utf-8".into(),
        "Content-Transfer-Encoding: 8bit".into(),
        String::new(),
        format!("Dear {},", entry.name),
        String::new(),
        format!("your enrollment code for student id {sid} is:"),
        String::new(),
        format!("    {code}"),
        String::new(),
        "It is good for one enrollment. Save it in a file only you can read".into(),
        "(e.g. code.txt, chmod 600) and run:".into(),
        String::new(),
        format!("    client --ca-fingerprint {fp} --code-file code.txt {sid}"),
        String::new(),
        "The fingerprint is the course CA's root certificate (SHA-256); the".into(),
        "client refuses any other root.".into(),
    ] {
        m.push_str(&line);
        m.push_str("\r\n");
    }
    Ok(m)
}

/// Writes `DIR/<sid>.eml` (0600, DIR made 0700) for every student of the
/// codes file `codes_csv` (as `roster codes` wrote it) who has an e-mail
/// address; returns the SIDs written and those without an address.
pub fn write_messages(
    roster: &[RosterEntry],
    codes_csv: &str,
    dir: &Path,
    letter: &Letter,
) -> Result<(usize, Vec<String>), AdminError> {
    let records = super::csv::parse(codes_csv)
        .map_err(|e| AdminError::Refused(format!("the codes file, line {}: {}", e.line, e.why)))?;
    fsutil::create_private_dir_all(dir).map_err(|source| AdminError::File {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = 0;
    let mut without = Vec::new();
    for (_, row) in records.iter().skip(1) {
        let (Some(sid), Some(code)) = (row.first(), row.last()) else {
            continue;
        };
        // The CSV writer's inert form of a SID starting with `-`.
        let sid = sid
            .strip_prefix('\'')
            .filter(|s| s.starts_with('-'))
            .unwrap_or(sid);
        let Some(entry) = roster.iter().find(|e| e.sid == sid) else {
            continue;
        };
        let Some(email) = entry.email.as_deref() else {
            without.push(sid.to_string());
            continue;
        };
        let text = message(entry, email, code, letter)?;
        let path = dir.join(format!("{sid}.eml"));
        let file_err = |source| AdminError::File {
            path: path.clone(),
            source,
        };
        let mut f = fsutil::create_private(&path).map_err(file_err)?;
        f.write_all(text.as_bytes()).map_err(file_err)?;
        f.sync_all().map_err(file_err)?;
        written += 1;
    }
    Ok((written, without))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_could_inject_a_header_are_refused() {
        assert!(check_address("tm.chan@link.cuhk.edu.hk").is_ok());
        for bad in [
            "a@b.c\r\nBcc: x@evil.com",
            "a@b.c\nX: y",
            "a b@c.d",
            "a@b",
            "<a@b.c>",
            "a,b@c.d",
            "ä@b.c",
            "",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_plain_or_encoded_words() {
        assert_eq!(display_name("Chan Tai Man"), "Chan Tai Man");
        let enc = display_name("陳大文");
        assert_eq!(
            enc,
            format!("=?UTF-8?B?{}?=", encode_block("陳大文".as_bytes()))
        );
        // A comma or quote would end the display name: encoded.
        assert!(display_name("Chan, \"TM\"").starts_with("=?UTF-8?B?"));
        let long = display_name(&"é".repeat(60));
        assert!(long.lines().all(|l| l.trim_end().len() <= 76), "{long}");
    }

    #[test]
    fn a_message_has_the_headers_the_code_and_the_fingerprint() -> Result<(), AdminError> {
        let entry = RosterEntry {
            sid: "1155000001".into(),
            name: "陳大文".into(),
            code: None,
            email: Some("tm@example.edu".into()),
            dropped_at: None,
            recent_guesses: 0,
        };
        let letter = Letter {
            fingerprint: "AB:CD".into(),
            from: "instructor@example.edu".into(),
            date: 1_764_597_600,
        };
        let m = message(&entry, "tm@example.edu", "7KQ2M-9XW4T", &letter)?;
        let (head, body) = m.split_once("\r\n\r\n").unwrap_or_default();
        let names: Vec<&str> = head
            .split("\r\n")
            .filter(|l| !l.starts_with(' '))
            .filter_map(|l| l.split_once(':').map(|(n, _)| n))
            .collect();
        assert_eq!(
            names,
            [
                "From",
                "To",
                "Subject",
                "Date",
                "Message-ID",
                "MIME-Version",
                "Content-Type",
                "Content-Transfer-Encoding"
            ]
        );
        assert!(head.contains("To: =?UTF-8?B?"), "{head}");
        assert!(
            head.contains("Date: Mon, 1 Dec 2025 14:00:00 +0000"),
            "{head}"
        );
        assert!(body.contains("    7KQ2M-9XW4T\r\n"), "{body}");
        assert!(
            body.contains("client --ca-fingerprint AB:CD --code-file code.txt 1155000001"),
            "{body}"
        );
        Ok(())
    }
}
