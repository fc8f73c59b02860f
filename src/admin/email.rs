//! Roster e-mail addresses and the ready-to-send RFC 5322 messages of
//! `roster codes --eml DIR`: one file per student with her code, the CA
//! root's SHA-256 fingerprint and the client command to run.
//!
//! Header injection is impossible by construction: an address is checked
//! at import (ASCII, no white space, no CR/LF, none of the characters that
//! end or group an address), a name holds no control character (refused
//! at import too) and is written as a quoted-string or RFC 2047
//! encoded-words whenever it is not plain ASCII words, and the addresses
//! in the client command are checked as HOST:PORT, so nothing a roster or
//! the command line says can start a header line. The body's command names
//! the addresses students dial (`--ca-address`, `--blackboard-address`).

use std::fmt;
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

/// Why an address students dial (`--ca-address`, `--blackboard-address`)
/// is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadDialAddress(&'static str);

impl fmt::Display for BadDialAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected HOST:PORT: {}", self.0)
    }
}

impl std::error::Error for BadDialAddress {}

/// An address a student's client dials, `HOST:PORT`, written into each
/// message's client command: HOST a DNS name (letters, digits, `-`, dots
/// between labels), an IPv4 address or a bracketed IPv6 one, never the
/// unspecified address (0.0.0.0, `[::]`: a listen address, not one to
/// dial); PORT 1-65535. So nothing but these characters reaches the
/// message or her shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialAddress(String);

impl DialAddress {
    /// As written in the command: a bracketed IPv6 address quoted, so
    /// her shell does not take `[...]` for a pattern.
    fn for_shell(&self) -> String {
        if self.0.starts_with('[') {
            format!("'{}'", self.0)
        } else {
            self.0.clone()
        }
    }
}

impl fmt::Display for DialAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A DNS name: labels of 1-63 ASCII letters, digits and `-` (not at
/// either end), at most 253 characters, the last label not all digits (so
/// that `1.2.3.999` is no name).
fn dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && host
            .rsplit('.')
            .next()
            .is_some_and(|l| !l.chars().all(|c| c.is_ascii_digit()))
}

impl std::str::FromStr for DialAddress {
    type Err = BadDialAddress;

    fn from_str(a: &str) -> Result<Self, BadDialAddress> {
        if a.chars().any(|c| !c.is_ascii_graphic()) {
            return Err(BadDialAddress(
                "it holds white space, a control or a non-ASCII character",
            ));
        }
        let Some((host, port)) = a.rsplit_once(':') else {
            return Err(BadDialAddress("no :PORT"));
        };
        if port.is_empty()
            || !port.chars().all(|c| c.is_ascii_digit())
            || port.parse::<u16>().map_or(true, |p| p == 0)
        {
            return Err(BadDialAddress("the port is not a number from 1 to 65535"));
        }
        let unspecified = if let Some(v6) = host.strip_prefix('[') {
            match v6.strip_suffix(']').map(str::parse::<std::net::Ipv6Addr>) {
                Some(Ok(ip)) => ip.is_unspecified(),
                _ => return Err(BadDialAddress("[...] does not hold an IPv6 address")),
            }
        } else if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
            ip.is_unspecified()
        } else if dns_name(host) {
            false
        } else {
            return Err(BadDialAddress(
                "the host is no DNS name, IPv4 address nor [IPv6] address",
            ));
        };
        if unspecified {
            return Err(BadDialAddress(
                "the unspecified address (0.0.0.0, [::]) is one to listen on, not to dial",
            ));
        }
        Ok(DialAddress(a.to_string()))
    }
}

/// The name Blackboard's certificate carries, as her client checks it
/// (`--blackboard-name`): a DNS name as the server takes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialName(String);

impl std::str::FromStr for DialName {
    type Err = crate::ca::CaError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        crate::ca::check_blackboard_name(name)?;
        Ok(DialName(name.to_string()))
    }
}

impl DialName {
    /// The name of `blackboard-cert.pem` in `keys_dir`, when there is one
    /// and it is not the client's default (which the command then need
    /// not say): the name this host's Blackboard serves under.
    pub fn of_blackboard_cert(keys_dir: &Path) -> Result<Option<DialName>, AdminError> {
        let path = keys_dir.join(crate::ca::BLACKBOARD_CERT_FILE);
        let pem = match std::fs::read(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(AdminError::File { path, source }),
        };
        let cert = openssl::x509::X509::from_pem(&pem)?;
        let name = cert
            .subject_alt_names()
            .and_then(|names| names.iter().find_map(|n| n.dnsname().map(str::to_string)));
        // A name the client's flag could not carry is said, never left out
        // (every student's client would then refuse Blackboard).
        name.filter(|n| n != crate::ca::DEFAULT_BLACKBOARD_NAME)
            .map(|n| {
                n.parse().map_err(|e| {
                    AdminError::Refused(format!(
                        "{}: Blackboard's name {n:?} cannot go into the students' command ({e}); \
                         give --blackboard-name",
                        path.display()
                    ))
                })
            })
            .transpose()
    }
}

/// The addresses students dial, both needed for `--eml`.
#[derive(Debug, Clone)]
pub struct Dial {
    /// The CA's (the client's `--ca`).
    pub ca: DialAddress,
    /// Blackboard's (the client's `--blackboard`).
    pub blackboard: DialAddress,
}

/// `--eml` without an address students can dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingDialAddress(pub &'static str);

impl fmt::Display for MissingDialAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--eml needs {} HOST:PORT: the address students' clients dial, written into \
             each message's client command. The server's listen address is not it (0.0.0.0 \
             or 127.0.0.1 reach nothing from a student's machine), nor is the client's \
             default (127.0.0.1); nothing was made",
            self.0
        )
    }
}

impl std::error::Error for MissingDialAddress {}

impl Dial {
    /// Both addresses, or which flag is missing.
    pub fn required(
        ca: Option<DialAddress>,
        blackboard: Option<DialAddress>,
    ) -> Result<Dial, MissingDialAddress> {
        match (ca, blackboard) {
            (Some(ca), Some(blackboard)) => Ok(Dial { ca, blackboard }),
            (None, _) => Err(MissingDialAddress("--ca-address")),
            (_, None) => Err(MissingDialAddress("--blackboard-address")),
        }
    }
}

/// Longest name written as it is or as a quoted-string: a longer one goes
/// as encoded-words, which fold, so no header line grows past 78.
const MAX_UNFOLDED_NAME: usize = 60;

/// A display name for a header (RFC 5322 `phrase`): as it is when it is
/// words of ASCII letters, digits, `'` and `-` (all `atext`) one space
/// apart; else a quoted-string (`"` and `\` escaped) when it is printable
/// ASCII, e.g. "T. M. Chan": `.` is not `atext`, and an unquoted one is
/// the obsolete phrase syntax that RFC 5322 section 4 forbids generating;
/// else RFC 2047 `B` encoded-words of UTF-8 (each under 76 characters,
/// folded). A name holding `=?` is encoded too, as a reader could take it
/// for an encoded-word of its own. No byte of the name can end the phrase.
fn display_name(name: &str) -> String {
    let short = !name.is_empty() && name.len() <= MAX_UNFOLDED_NAME && !name.contains("=?");
    if short && name.split(' ').all(plain_word) {
        return name.to_string();
    }
    if short && name.chars().all(|c| (' '..='~').contains(&c)) {
        let mut q = String::with_capacity(name.len() + 2);
        q.push('"');
        for c in name.chars() {
            if c == '"' || c == '\\' {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        return q;
    }
    encoded_phrase(name)
}

/// Whether a word of a name goes into a phrase as it is (an atom).
fn plain_word(w: &str) -> bool {
    !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '\'' || c == '-')
}

/// A phrase of RFC 2047 `B` encoded-words of UTF-8 (each under 76
/// characters), with the name's plain words between them as atoms. Runs
/// of other words go in one encoded-word where they fit: readers differ
/// on the space between two adjacent encoded-words (RFC 2047 drops it,
/// Python's address parser keeps one), never on the space between an
/// encoded-word and an atom, so only a run longer than one encoded-word
/// holds is split. A name with runs of spaces is encoded whole.
fn encoded_phrase(name: &str) -> String {
    fn encode(run: &str, tokens: &mut Vec<String>) {
        let mut chunk = String::new();
        for c in run.chars() {
            // 45 bytes of UTF-8 make 60 of base64: 72 with the =?UTF-8?B??=.
            if chunk.len() + c.len_utf8() > 45 {
                tokens.push(format!("=?UTF-8?B?{}?=", encode_block(chunk.as_bytes())));
                chunk.clear();
            }
            chunk.push(c);
        }
        if !chunk.is_empty() {
            tokens.push(format!("=?UTF-8?B?{}?=", encode_block(chunk.as_bytes())));
        }
    }
    let mut tokens = Vec::new();
    if name.split(' ').any(str::is_empty) {
        encode(name, &mut tokens);
        return tokens.join("\r\n ");
    }
    let mut run = String::new();
    for w in name.split(' ') {
        if plain_word(w) {
            encode(&run, &mut tokens);
            run.clear();
            tokens.push(w.to_string());
        } else {
            if !run.is_empty() {
                run.push(' ');
            }
            run.push_str(w);
        }
    }
    encode(&run, &mut tokens);
    tokens.join("\r\n ")
}

/// The body's first line. A name stored before the roster's length limit
/// could make it longer than RFC 5322's 998 bytes: then no name.
fn greeting(name: &str) -> String {
    let line = format!("Dear {name},");
    if line.len() <= 998 {
        line
    } else {
        "Dear student,".to_string()
    }
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
    /// Where her client dials.
    pub dial: Dial,
    /// Blackboard's certificate name, when not the client's default.
    pub blackboard_name: Option<DialName>,
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
    // A SID may start with `-`: after `--` her client takes it as one.
    let end_of_options = if sid.starts_with('-') { "-- " } else { "" };
    let name = letter
        .blackboard_name
        .as_ref()
        .map_or(String::new(), |n| format!(" --blackboard-name {}", n.0));
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
        greeting(&entry.name),
        String::new(),
        format!("your enrollment code for student id {sid} is:"),
        String::new(),
        format!("    {code}"),
        String::new(),
        "It is good for one enrollment. Save it in a file only you can read".into(),
        "(e.g. code.txt, chmod 600) and run:".into(),
        String::new(),
        format!(
            "    client --ca {} --blackboard {}{name} --ca-fingerprint {fp} --code-file code.txt {end_of_options}{sid}",
            letter.dial.ca.for_shell(),
            letter.dial.blackboard.for_shell()
        ),
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
        // A reissued code replaces the message holding the old one (a
        // message left with a spent code would be sent by mistake); the
        // new one arrives whole or not at all, never through a link.
        let path = dir.join(format!("{sid}.eml"));
        fsutil::write_atomic(&path, text.as_bytes(), 0o600).map_err(|e| AdminError::File {
            path: path.clone(),
            source: e.into(),
        })?;
        written += 1;
    }
    Ok((written, without))
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

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
    fn dial_addresses_are_host_and_port_and_nothing_else() {
        for good in [
            "ca.example.edu:8011",
            "bb-1.cse.cuhk.edu.hk:443",
            "localhost:8002",
            "137.189.1.2:8011",
            "[2001:db8::1]:8002",
            "127.0.0.1:1",
        ] {
            assert_eq!(
                good.parse::<DialAddress>().map(|a| a.to_string()),
                Ok(good.to_string())
            );
        }
        for bad in [
            "",
            "ca.example.edu",
            "ca.example.edu:",
            "ca.example.edu:0",
            "ca.example.edu:65536",
            "ca.example.edu:+80",
            ":8011",
            "0.0.0.0:8011",
            "[::]:8011",
            "[::1:8011",
            "::1:8011",
            "1.2.3.999:80",
            "-ca.example.edu:80",
            "ca..example.edu:80",
            "ca_x.example.edu:80",
            "ca.example.edu :80",
            "ca.example.edu:80\r\nBcc: x@evil.com",
            "ca.example.edu:80;rm",
            "ca.exämple.edu:80",
            "$(id).example.edu:80",
        ] {
            assert!(bad.parse::<DialAddress>().is_err(), "{bad:?}");
        }
        let missing = Dial::required(None, "b.example.edu:1".parse().ok());
        let why = missing.map(|_| ()).map_err(|e| e.to_string());
        assert!(
            why.as_ref()
                .is_err_and(|w| w.contains("--ca-address") && w.contains("0.0.0.0")),
            "{why:?}"
        );
        let missing = Dial::required("c.example.edu:1".parse().ok(), None);
        assert_eq!(
            missing.map(|_| ()),
            Err(MissingDialAddress("--blackboard-address"))
        );
    }

    #[test]
    fn the_greeting_never_makes_a_line_over_998_bytes() {
        assert_eq!(greeting("Chan Tai Man"), "Dear Chan Tai Man,");
        let at_limit = "é".repeat(496); // "Dear " + 992 bytes + "," = 998
        assert_eq!(greeting(&at_limit).len(), 998);
        assert_eq!(greeting(&format!("{at_limit}x")), "Dear student,");
    }

    #[test]
    fn names_are_plain_words_quoted_strings_or_encoded_words() {
        assert_eq!(display_name("Chan Tai Man"), "Chan Tai Man");
        assert_eq!(display_name("O'Neil Mary-Ann"), "O'Neil Mary-Ann");
        // `.` is no atext: an unquoted one would be the obsolete syntax.
        assert_eq!(display_name("T. M. Chan"), "\"T. M. Chan\"");
        assert_eq!(display_name(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(display_name("two  spaces"), "\"two  spaces\"");
        let enc = display_name("陳大文");
        assert_eq!(
            enc,
            format!("=?UTF-8?B?{}?=", encode_block("陳大文".as_bytes()))
        );
        assert!(display_name("=?UTF-8?B?QQ==?=").starts_with("=?UTF-8?B?PT9"));
        assert!(display_name(&"a.".repeat(40)).starts_with("=?UTF-8?B?"));
        let long = display_name(&"é".repeat(60));
        assert!(long.lines().all(|l| l.trim_end().len() <= 76), "{long}");
        assert_eq!(long.lines().count(), 3, "{long}");
        // Plain words stay atoms between the encoded runs.
        assert_eq!(
            display_name("Zoë de la Cruz, Jr."),
            format!(
                "=?UTF-8?B?{}?=\r\n de\r\n la\r\n =?UTF-8?B?{}?=",
                encode_block("Zoë".as_bytes()),
                encode_block("Cruz, Jr.".as_bytes())
            )
        );
    }

    fn letter() -> Result<Letter, BadDialAddress> {
        Ok(Letter {
            fingerprint: "AB:CD".into(),
            from: "instructor@example.edu".into(),
            date: 1_764_597_600,
            dial: Dial {
                ca: "ca.example.edu:8011".parse()?,
                blackboard: "[2001:db8::2]:8002".parse()?,
            },
            blackboard_name: None,
        })
    }

    fn entry(sid: &str, name: &str, email: &str) -> RosterEntry {
        RosterEntry {
            sid: sid.into(),
            name: name.into(),
            code: None,
            email: Some(email.into()),
            dropped_at: None,
            recent_guesses: 0,
        }
    }

    #[test]
    fn a_message_has_the_headers_the_code_and_the_fingerprint() -> TestResult {
        let m = message(
            &entry("1155000001", "陳大文", "tm@example.edu"),
            "tm@example.edu",
            "7KQ2M-9XW4T",
            &Letter {
                blackboard_name: Some("bb.cse.example.edu".parse()?),
                ..letter()?
            },
        )?;
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
            body.contains(
                "client --ca ca.example.edu:8011 --blackboard '[2001:db8::2]:8002' \
                 --blackboard-name bb.cse.example.edu --ca-fingerprint AB:CD \
                 --code-file code.txt 1155000001\r\n"
            ),
            "{body}"
        );
        Ok(())
    }

    /// Parses each message with Python's `email` package (an RFC 5322
    /// parser that is not ours) and prints, per file, its defects (the
    /// message's and every header's: an obsolete phrase is one) and the
    /// fields as it reads them.
    const PARSE: &str = r#"
import json, sys
from email import policy
from email.parser import BytesParser
out = []
for path in sys.argv[1:]:
    raw = open(path, "rb").read()
    BytesParser(policy=policy.strict).parsebytes(raw)
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    defects = [repr(d) for d in msg.defects]
    for name, value in msg.items():
        defects += ["%s: %r" % (name, d) for d in value.defects]
    long = [l for l in raw.split(b"\r\n") if len(l) > 998]
    to = msg["To"].addresses
    out.append({
        "defects": defects,
        "bare_lf": b"\n" in raw.replace(b"\r\n", b""),
        "long_lines": len(long),
        "to": [[a.display_name, a.addr_spec] for a in to],
        "from": [a.addr_spec for a in msg["From"].addresses],
        "subject": str(msg["Subject"]),
        "date": msg["Date"].datetime.isoformat(),
        "message_id": str(msg["Message-ID"]),
        "body": msg.get_content(),
    })
print(json.dumps(out))
"#;

    #[test]
    fn every_message_parses_as_rfc_5322_with_python() -> TestResult {
        let names = [
            ("1155000001", "陳大文", "a@example.edu"),
            ("1155000002", "T. M. Chan", "b.chan@example.edu"),
            ("1155000003", r#"Lee "KY" Ka\Yan"#, "c@example.edu"),
            ("1155000004", "Chan Tai Man", "d@example.edu"),
            ("1155000005", "Zoë O'Brien-Ng, Jr.", "e@example.edu"),
            ("1155000006", "=?UTF-8?B?QQ==?=", "f@example.edu"),
            (
                "-1155000007",
                "María José Fernández de la Concepción García-López y Ma.Ma.Ma.Ma.",
                "g@example.edu",
            ),
            ("1155000008", "Wong, Siu-Ming ‘Sam’ Ng", "h@example.edu"),
        ];
        let roster: Vec<RosterEntry> = names
            .iter()
            .map(|(sid, name, email)| entry(sid, name, email))
            .collect();
        let mut codes = String::from("sid,name,email,code\r\n");
        for (sid, _, email) in &names {
            let quoted = if sid.starts_with('-') {
                format!("'{sid}")
            } else {
                sid.to_string()
            };
            codes.push_str(&format!("{quoted},x,{email},CODE-{sid}\r\n"));
        }
        let dir = tempfile::tempdir()?;
        let mail = dir.path().join("mail");
        let letter = letter()?;
        let (written, without) = write_messages(&roster, &codes, &mail, &letter)?;
        assert_eq!((written, without.len()), (names.len(), 0));
        let files: Vec<std::path::PathBuf> = names
            .iter()
            .map(|(sid, _, _)| mail.join(format!("{sid}.eml")))
            .collect();
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(PARSE)
            .args(&files)
            .output()?;
        assert!(
            out.status.success(),
            "python3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let parsed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
        assert_eq!(parsed.len(), names.len());
        let mut ids = std::collections::HashSet::new();
        for ((sid, name, email), p) in names.iter().zip(&parsed) {
            assert_eq!(p["defects"], serde_json::json!([]), "{sid}: {p}");
            assert_eq!(p["bare_lf"], false, "{sid}");
            assert_eq!(p["long_lines"], 0, "{sid}");
            assert_eq!(p["to"], serde_json::json!([[name, email]]), "{sid}");
            assert_eq!(p["from"], serde_json::json!(["instructor@example.edu"]));
            assert_eq!(
                p["subject"],
                format!("Your course enrollment code ({sid})").as_str()
            );
            assert_eq!(p["date"], "2025-12-01T14:00:00+00:00");
            let id = p["message_id"].as_str().unwrap_or_default();
            assert!(
                id.starts_with('<') && id.ends_with("@example.edu>") && id.len() > 20,
                "{id}"
            );
            assert!(ids.insert(id.to_string()), "Message-ID {id} twice");
            // Python keeps the body's CRLF line ends as they are.
            let body = p["body"].as_str().unwrap_or_default().replace("\r\n", "\n");
            for want in [
                format!("    CODE-{sid}\n"),
                format!("Dear {name},\n"),
                format!(
                    "    client --ca ca.example.edu:8011 --blackboard '[2001:db8::2]:8002' \
                     --ca-fingerprint AB:CD --code-file code.txt {}{sid}\n",
                    if sid.starts_with('-') { "-- " } else { "" }
                ),
            ] {
                assert!(body.contains(&want), "{sid}: {want:?} not in {body}");
            }
        }
        Ok(())
    }

    #[test]
    fn a_reissued_code_replaces_the_old_message_and_never_follows_a_link() -> TestResult {
        let roster = vec![entry("1155000001", "Chan Tai Man", "tm@example.edu")];
        let dir = tempfile::tempdir()?;
        let mail = dir.path().join("mail");
        let letter = letter()?;
        let codes =
            |code: &str| format!("sid,name,email,code\r\n1155000001,x,tm@example.edu,{code}\r\n");
        write_messages(&roster, &codes("OLD-CODE"), &mail, &letter)?;
        let path = mail.join("1155000001.eml");
        assert!(std::fs::read_to_string(&path)?.contains("OLD-CODE"));
        let (written, _) = write_messages(&roster, &codes("NEW-CODE"), &mail, &letter)?;
        assert_eq!(written, 1);
        let text = std::fs::read_to_string(&path)?;
        assert!(text.contains("NEW-CODE") && !text.contains("OLD-CODE"));
        // A link planted where the message goes is replaced, its target
        // left alone.
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "untouched")?;
        std::fs::remove_file(&path)?;
        std::os::unix::fs::symlink(&target, &path)?;
        write_messages(&roster, &codes("THIRD-CODE"), &mail, &letter)?;
        assert_eq!(std::fs::read_to_string(&target)?, "untouched");
        assert!(!std::fs::symlink_metadata(&path)?.file_type().is_symlink());
        assert!(std::fs::read_to_string(&path)?.contains("THIRD-CODE"));
        Ok(())
    }
}
