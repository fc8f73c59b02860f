//! End-to-end: `server --legacy` serving the original lab's Python student
//! client. The client's side is played here frame for frame, written from
//! the byte-by-byte description of its protocol (../shared/legacy-protocol.md,
//! docs/legacy.md) and independent of the server's code: its own framing,
//! its own RC4 over characters, its own base64/UTF-8 handling.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509StoreContext, X509};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The transcript's certificate (the original CUHK's self-signed
/// "CUHK.com" certificate): a certificate from elsewhere.
const FOREIGN_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIDNjCCAh6gAwIBAgIUR/P834scGlLMh3rmavcDOEjWg/8wDQYJKoZIhvcNAQEL
BQAwVTELMAkGA1UEBhMCQ04xETAPBgNVBAgMCEhvbmdLT25nMREwDwYDVQQHDAhI
b25nS29uZzENMAsGA1UECgwEQ3VoazERMA8GA1UEAwwIQ1VISy5jb20wHhcNMjYx
MTIzMTg0MjMzWhcNMjYxMjIzMTg0MjMzWjBVMQswCQYDVQQGEwJDTjERMA8GA1UE
CAwISG9uZ0tPbmcxETAPBgNVBAcMCEhvbmdLb25nMQ0wCwYDVQQKDARDdWhrMREw
DwYDVQQDDAhDVUhLLmNvbTCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEB
ALXOMMznopDSnvDA62Prc91CekttY5NyB/yjGtTD33bZSg+AvyFP4QfiKnmJjGWc
KKPtaShsnaD059kJIQnxivdvmtHq3fwNMl6+o/1kaEDCaWgZtwww0ZqrZEjoQ62I
TlUt7V4xl6PU8IcvITSLEIb1VEgVPdrmXXDu3B23UCTJ0RDvZAf1GTR2t70BMMpo
+hbN4hDgkphQ/VJ01WVoOE4A+7kQ2MqsuPzwCeEMRtUAnRWKUwilERuNsVwchwhl
0sM0J5cAFJQ7Qz0WGEJDjInwdrUlbyv9CIqKE3b7kb5ZiIXGYqeLY3ixRnCiJsgw
8Q3Ukd+bOdRhLDkgQKNYTEMCAwEAATANBgkqhkiG9w0BAQsFAAOCAQEAByw/OC7/
PFwZOFlankbHZiubl9o7MxRDM2Bhemt+VORXzZUIS1LBbE3Oy6FR2tBWhJ9QXQO9
0CbB/ZiWvPoHUjzj789T9P9j0+5QuQjFxZlhownExnQ8BrfF1m039Mrn4r3Kjk84
R/EQqlugJToNFMXzBnWFmfQ05bD7CRB2G7Gj0snk2s2yq4coybQh6HeytLOAkVvw
QSxyAEAU7Pa4xx6VUUhGZQawFwTUL1gG6MNIVSwq9ZEOAMfMfNmylvTRycj3i+pD
bxHwSvMNqO0V8atk4J+xhousDU0gq4++EPjvha+mT2jF02cblHYWgVUTbCFXoH3B
ZcKIt6IBF/1GJw==
-----END CERTIFICATE-----
";

// ---- the original client's side, from the spec ----

/// One connection as the original client uses it: a 4-byte little-endian
/// signed length, then the payload; header and payload in two writes.
struct Legacy {
    stream: TcpStream,
}

impl Legacy {
    fn connect(addr: SocketAddr) -> Result<Legacy> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        Ok(Legacy { stream })
    }

    fn send(&mut self, payload: &str) -> Result<()> {
        let len = i32::try_from(payload.len())?;
        self.stream.write_all(&len.to_le_bytes())?;
        self.stream.write_all(payload.as_bytes())?;
        Ok(())
    }

    fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        let mut head = [0u8; 4];
        self.stream.read_exact(&mut head)?;
        let len = i32::from_le_bytes(head);
        let len = usize::try_from(len).map_err(|_| format!("negative frame length {len}"))?;
        if len > 1 << 20 {
            return Err(format!("frame of {len} bytes").into());
        }
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload)?;
        Ok(payload)
    }

    /// A text frame, decoded as strict UTF-8 as the client does.
    fn recv(&mut self) -> Result<String> {
        Ok(String::from_utf8(self.recv_bytes()?)?)
    }

    /// Expects the server to close with nothing more sent.
    fn expect_closed(&mut self) -> Result<()> {
        let mut buf = [0u8; 64];
        match self.stream.read(&mut buf) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!(
                "expected a close, got {:?}",
                String::from_utf8_lossy(&buf[..n])
            )
            .into()),
            // A reset is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
            Err(e) => Err(format!("expected a close: {e}").into()),
        }
    }
}

/// `RC4.py`: RC4 over characters. The key schedule takes each key
/// character's code point mod 256; the stream XORs one key-stream byte into
/// each character's code point.
fn rc4_chars(key: &str, text: &str) -> Result<String> {
    let key: Vec<u32> = key.chars().map(u32::from).collect();
    if key.is_empty() {
        return Err("empty RC4 key".into());
    }
    let mut s: Vec<u32> = (0..256).collect();
    let mut j = 0u32;
    for i in 0..256 {
        j = (j + s[i] + key[i % key.len()]) % 256;
        s.swap(i, j as usize);
    }
    let (mut i, mut j) = (0u32, 0u32);
    let mut out = String::new();
    for c in text.chars() {
        i = (i + 1) % 256;
        j = (j + s[i as usize]) % 256;
        s.swap(i as usize, j as usize);
        let k = s[((s[i as usize] + s[j as usize]) % 256) as usize];
        out.push(char::from_u32(u32::from(c) ^ k).ok_or("not a character")?);
    }
    Ok(out)
}

/// The client's `RC4Decrypt(SID+SID, text)`: base64, strict UTF-8, RC4.
fn decrypt_session_key(sid: &str, wire: &str) -> Result<String> {
    let bytes = openssl::base64::decode_block(wire)?;
    let text = String::from_utf8(bytes)?;
    rc4_chars(&format!("{sid}{sid}"), &text)
}

/// `hmac.new(key.encode(), sid.encode(), sha1).hexdigest()`.
fn hmac_sha1_hex(key: &str, data: &str) -> Result<String> {
    let pkey = PKey::hmac(key.as_bytes())?;
    let mut s = Signer::new(MessageDigest::sha1(), &pkey)?;
    s.update(data.as_bytes())?;
    Ok(s.sign_to_vec()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The client's fixed report: ten lines, LF, no space before the SID.
fn report_text(sid: &str) -> String {
    format!("This is submission from SID{sid}\n").repeat(10)
}

/// Menu choice `1`: the CUHK exchange. Returns the certificate text as the
/// client keeps it (written to a file, read back in text mode).
fn enroll(ca: &mut Legacy, sid: &str) -> Result<String> {
    ca.send("1")?;
    assert_eq!(ca.recv()?, "please input your student_id");
    ca.send(sid)?;
    assert_eq!(ca.recv()?, format!("ID{sid} logins successfully"));
    let second = ca.recv()?;
    assert_eq!(second, format!("student {sid} sign finished"));
    assert!(second.contains("sign finished"));
    let file = ca.recv_bytes()?;
    // Byte-exact round trip through the client's text-mode read: LF only.
    assert!(!file.contains(&b'\r'), "the PEM must have LF line endings");
    let text = String::from_utf8(file)?;
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"), "{text}");
    assert!(text.ends_with("-----END CERTIFICATE-----\n"), "{text}");
    Ok(text)
}

/// Checks an issued certificate independently: OpenSSL path validation to
/// the server's root, CN = SID, clientAuth, RSA-2048.
fn check_issued(server: &TestServer, sid: &str, pem: &str) -> Result<()> {
    let root = X509::from_pem(&std::fs::read(server.root_pem())?)?;
    let cert = X509::from_pem(pem.as_bytes())?;
    let mut b = X509StoreBuilder::new()?;
    b.add_cert(root)?;
    b.set_purpose(openssl::x509::X509PurposeId::SSL_CLIENT)?;
    let store = b.build();
    let mut ctx = X509StoreContext::new()?;
    let chain: Stack<X509> = Stack::new()?;
    let ok = ctx.init(&store, &cert, &chain, |c| c.verify_cert())?;
    assert!(ok, "the legacy certificate does not chain to the root");
    let cn = cert
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .ok_or("no CN")?
        .data()
        .to_string()?;
    assert_eq!(cn, sid);
    let key = cert.public_key()?;
    assert_eq!(key.id(), openssl::pkey::Id::RSA);
    assert_eq!(key.bits(), 2048);
    Ok(())
}

/// Menu choice `2` up to the session key: the three frames back to back,
/// the one "verified" frame, the session key. Returns the decrypted key.
fn open_submission(bb: &mut Legacy, sid: &str, cert: &str) -> Result<String> {
    bb.send("2")?;
    bb.send(sid)?;
    bb.send(cert)?;
    assert_eq!(bb.recv()?, format!("{sid} has been verified"));
    let wire = bb.recv()?;
    let key = decrypt_session_key(sid, &wire)?;
    assert!(
        (16..=64).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()),
        "session key {key:?} is not printable ASCII"
    );
    assert_ne!(
        key, "regina",
        "the session key must not be the original's constant"
    );
    Ok(key)
}

/// The rest of menu choice `2`: `<msg>_<mac>`, then the answer.
fn submit(bb: &mut Legacy, sid: &str, key: &str) -> Result<()> {
    let frame = format!("{}_{}", report_text(sid), hmac_sha1_hex(key, sid)?);
    bb.send(&frame)?;
    assert_eq!(bb.recv()?, "massage sent!");
    Ok(())
}

fn admin_text(server: &TestServer, args: &[&str]) -> Result<String> {
    let out = server.admin(args)?;
    assert!(out.status.success(), "{}", text(&out));
    Ok(stdout(&out))
}

// ---- the tests ----

#[test]
fn worked_example_matches_the_spec() -> TestResult {
    // The spec's vectors, checked against this file's client side.
    assert_eq!(
        decrypt_session_key("1155000001", "w7XCmcKOO8O4wog=")?,
        "regina"
    );
    assert_eq!(
        hmac_sha1_hex("regina", "1155000001")?,
        "10481f4194100e769fa8dc221baadea4a86a1a06"
    );
    assert_eq!(report_text("1155000001").len() + 1 + 40, 421);
    Ok(())
}

#[test]
fn three_students_in_a_row_on_the_same_connections() -> TestResult {
    let server = TestServer::start(&["--legacy"])?;
    let mut ca = Legacy::connect(server.ca)?;
    let mut bb = Legacy::connect(server.blackboard)?;
    let sids = ["1155000001", "1155000002", "student_3"];
    for sid in sids {
        let cert = enroll(&mut ca, sid)?;
        check_issued(&server, sid, &cert)?;
        let key = open_submission(&mut bb, sid, &cert)?;
        submit(&mut bb, sid, &key)?;
    }
    // The client's `q`: on the CA socket, then on Blackboard; both close
    // without a word.
    ca.send("q")?;
    bb.send("q")?;
    ca.expect_closed()?;
    bb.expect_closed()?;

    let reports = admin_text(&server, &["reports"])?;
    for sid in sids {
        let line = reports
            .lines()
            .find(|l| l.contains(&format!("sid={sid} ")))
            .ok_or_else(|| format!("no report for {sid}:\n{reports}"))?;
        assert!(line.contains("origin=legacy"), "{line}");
        assert!(line.contains("lines=10"), "{line}");
        assert!(
            line.contains(&format!("first=\"This is submission from SID{sid}\"")),
            "{line}"
        );
    }
    assert_eq!(reports.lines().count(), 3, "{reports}");
    let certs = admin_text(&server, &["certs"])?;
    assert_eq!(certs.matches("origin=legacy").count(), 3, "{certs}");

    // Blackboard printed each report, marked legacy, once it was durable.
    let mut printed = String::new();
    while let Ok(line) = server.stdout.recv_timeout(Duration::from_secs(5)) {
        printed.push_str(&line);
        printed.push('\n');
        if printed.matches("(legacy):").count() == 3 {
            break;
        }
    }
    for sid in sids {
        assert!(printed.contains(&format!("report SID{sid} ")), "{printed}");
    }
    Ok(())
}

#[test]
fn original_client_fresh_connections_per_student_then_q() -> TestResult {
    // What student.py really does: two new sockets per student, `1`, `2`,
    // then `q` on both, and on to the next student.
    let server = TestServer::start(&["--legacy"])?;
    for sid in ["1155000001", "alice", "bob"] {
        let mut ca = Legacy::connect(server.ca)?;
        let mut bb = Legacy::connect(server.blackboard)?;
        let cert = enroll(&mut ca, sid)?;
        let key = open_submission(&mut bb, sid, &cert)?;
        submit(&mut bb, sid, &key)?;
        ca.send("q")?;
        bb.send("Q")?;
        ca.expect_closed()?;
        bb.expect_closed()?;
    }
    let reports = admin_text(&server, &["reports"])?;
    assert_eq!(reports.matches("origin=legacy").count(), 3, "{reports}");
    // A fresh connection whose first frame is `q` is closed quietly too.
    let mut c = Legacy::connect(server.ca)?;
    c.send("q")?;
    c.expect_closed()?;
    Ok(())
}

#[test]
fn wrong_mac_is_refused_and_the_connection_stays_open() -> TestResult {
    let server = TestServer::start(&["--legacy"])?;
    let sid = "1155000001";
    let mut ca = Legacy::connect(server.ca)?;
    let cert = enroll(&mut ca, sid)?;
    let mut bb = Legacy::connect(server.blackboard)?;
    let _key = open_submission(&mut bb, sid, &cert)?;
    // The original server's constant key: someone replaying the spec's MAC.
    let stale = format!("{}_{}", report_text(sid), hmac_sha1_hex("regina", sid)?);
    bb.send(&stale)?;
    assert_eq!(bb.recv()?, "mac verification failed!");
    // Same connection, next command: a proper submission is accepted.
    let key = open_submission(&mut bb, sid, &cert)?;
    submit(&mut bb, sid, &key)?;
    let reports = admin_text(&server, &["reports"])?;
    assert_eq!(reports.lines().count(), 1, "{reports}");
    assert!(
        server.wait_log("MAC does not verify", 5),
        "{}",
        server.log()
    );
    Ok(())
}

/// The three frames of a submission, then exactly one refusal frame and a
/// close.
fn expect_one_refusal(server: &TestServer, sid: &str, cert: &str, needle: &str) -> Result<()> {
    let mut bb = Legacy::connect(server.blackboard)?;
    bb.send("2")?;
    bb.send(sid)?;
    bb.send(cert)?;
    let answer = bb.recv()?;
    assert!(answer.starts_with("error: "), "{answer}");
    assert!(answer.contains("has not been verified"), "{answer}");
    assert!(answer.contains(needle), "{answer:?} lacks {needle:?}");
    bb.expect_closed()?;
    Ok(())
}

#[test]
fn foreign_certificate_or_wrong_sid_gets_one_refusal_frame() -> TestResult {
    let server = TestServer::start(&["--legacy"])?;
    let mut ca = Legacy::connect(server.ca)?;
    let alice = enroll(&mut ca, "alice")?;
    // The original CUHK's self-signed certificate: not from our root.
    expect_one_refusal(
        &server,
        "1155000001",
        FOREIGN_CERT,
        "does not chain to the CUHK root",
    )?;
    // Alice's genuine certificate presented as someone else's.
    expect_one_refusal(&server, "bob", &alice, "not for the claimed SID")?;
    // Alice's certificate with one character changed: the signature breaks.
    let tampered = alice.replacen("MII", "MIJ", 1);
    expect_one_refusal(&server, "alice", &tampered, "alice")?;
    // A revoked certificate.
    let carol = enroll(&mut ca, "carol")?;
    admin_text(
        &server,
        &["revoke", "--sid", "carol", "--reason", "key-compromise"],
    )?;
    expect_one_refusal(&server, "carol", &carol, "revoked")?;
    // A certboard student's certificate is public (it travels in clear):
    // the legacy protocol, which proves no key, must not accept it.
    let out = server.client(&["modern"])?;
    assert!(out.status.success(), "{}", text(&out));
    let modern_pem = std::fs::read_to_string(server.path().join("students/modern/cert.pem"))?;
    expect_one_refusal(
        &server,
        "modern",
        &modern_pem,
        "issued to a certboard client",
    )?;
    // A bad SID: the refusal still comes as the one answer after the cert.
    expect_one_refusal(&server, "../etc", &alice, "bad student id")?;
    let log = server.log();
    assert!(log.contains("legacy: alice has not been verified"), "{log}");
    assert!(
        log.contains("blackboard:127.0.0.1:"),
        "refusals are logged with the peer:\n{log}"
    );
    let reports = admin_text(&server, &["reports"])?;
    assert!(!reports.contains("origin=legacy"), "{reports}");
    Ok(())
}

#[test]
fn report_frame_without_underscore_gets_a_clear_error() -> TestResult {
    let server = TestServer::start(&["--legacy"])?;
    let sid = "1155000001";
    let mut ca = Legacy::connect(server.ca)?;
    let cert = enroll(&mut ca, sid)?;
    for bad in [
        report_text(sid),
        format!("{}_{}_x", report_text(sid), "0".repeat(40)),
        format!("{}_{}", report_text(sid), "Z".repeat(40)),
    ] {
        let mut bb = Legacy::connect(server.blackboard)?;
        let _key = open_submission(&mut bb, sid, &cert)?;
        bb.send(&bad)?;
        let answer = bb.recv()?;
        assert!(
            answer.starts_with("error: report refused: expected <message>_<mac>"),
            "{answer}"
        );
        bb.expect_closed()?;
    }
    // The server is still there and still serves.
    let mut bb = Legacy::connect(server.blackboard)?;
    let key = open_submission(&mut bb, sid, &cert)?;
    submit(&mut bb, sid, &key)?;
    Ok(())
}

#[test]
fn bad_sid_and_wrong_commands_get_text_errors() -> TestResult {
    let server = TestServer::start(&["--legacy"])?;
    let mut ca = Legacy::connect(server.ca)?;
    ca.send("1")?;
    assert_eq!(ca.recv()?, "please input your student_id");
    ca.send("a b")?;
    let answer = ca.recv()?;
    assert!(
        answer.starts_with("error: enrollment refused: bad student id"),
        "{answer}"
    );
    ca.expect_closed()?;
    // `2` on the CA port, `1` on Blackboard's.
    let mut ca = Legacy::connect(server.ca)?;
    ca.send("2")?;
    assert!(ca.recv()?.contains("CA port"));
    ca.expect_closed()?;
    let mut bb = Legacy::connect(server.blackboard)?;
    bb.send("1")?;
    assert!(bb.recv()?.contains("Blackboard port"));
    bb.expect_closed()?;
    // After an exchange, anything but a command ends it with a reason.
    let mut ca = Legacy::connect(server.ca)?;
    enroll(&mut ca, "alice")?;
    ca.send("hello")?;
    assert!(ca.recv()?.starts_with("error: unknown command \"hello\""));
    ca.expect_closed()?;
    Ok(())
}

#[test]
fn without_legacy_flag_a_legacy_command_is_refused_with_a_hint() -> TestResult {
    use certboard::message::{ErrorCode, Message};
    let server = TestServer::start(&[])?;
    for (addr, command) in [(server.ca, "1"), (server.blackboard, "2")] {
        let mut c = Legacy::connect(addr)?;
        c.send(command)?;
        match Message::decode(&c.recv_bytes()?)? {
            Message::Error { code, reason } => {
                assert_eq!(code, ErrorCode::LegacyDisabled);
                assert!(reason.contains("legacy"), "{reason}");
            }
            other => return Err(format!("expected an error, got {other:?}").into()),
        }
        c.expect_closed()?;
    }
    assert!(server.wait_log("--legacy", 5), "{}", server.log());
    assert!(admin_text(&server, &["certs"])?.is_empty());
    Ok(())
}

/// Issue 15: a revocation made while a submission is open takes effect on
/// it. The session key was sent before the revocation; the report that
/// follows is refused with the revoked reason, and nothing is recorded.
#[test]
fn a_certificate_revoked_after_the_session_key_cannot_submit() -> TestResult {
    let server = TestServer::start(&["--legacy"])?;
    let sid = "1155000031";
    let cert = enroll(&mut Legacy::connect(server.ca)?, sid)?;
    let mut bb = Legacy::connect(server.blackboard)?;
    let key = open_submission(&mut bb, sid, &cert)?;
    admin_text(&server, &["revoke", "--sid", sid, "--reason", "superseded"])?;
    let frame = format!("{}_{}", report_text(sid), hmac_sha1_hex(&key, sid)?);
    bb.send(&frame)?;
    let answer = bb.recv()?;
    assert!(answer.starts_with("error: "), "{answer}");
    assert!(answer.contains("has been revoked (superseded)"), "{answer}");
    bb.expect_closed()?;
    assert_eq!(admin_text(&server, &["reports"])?, "");
    Ok(())
}

/// Writes `roster.csv` with these SIDs and imports it over the legacy
/// certificates already issued, keeping them (unvouched).
fn import_roster(server: &TestServer, sids: &[&str]) -> Result<()> {
    let mut csv = String::from("sid,name\n");
    for sid in sids {
        csv.push_str(&format!("{sid},Student {sid}\n"));
    }
    std::fs::write(server.path().join("roster.csv"), csv)?;
    admin_text(
        server,
        &["roster", "import", "roster.csv", "--keep-unverified"],
    )?;
    Ok(())
}

/// A legacy certificate comes from open enrollment: no enrollment code
/// vouches for it. Once a roster is in force it no longer opens a
/// submission, and the student is told why in the one answer.
#[test]
fn a_roster_in_force_refuses_an_unvouched_legacy_certificate() -> TestResult {
    let server = TestServer::start(&["--legacy"])?;
    let sid = "1155000041";
    let cert = enroll(&mut Legacy::connect(server.ca)?, sid)?;
    // Before the roster it submits.
    let mut bb = Legacy::connect(server.blackboard)?;
    let key = open_submission(&mut bb, sid, &cert)?;
    submit(&mut bb, sid, &key)?;
    import_roster(&server, &[sid])?;
    expect_one_refusal(
        &server,
        sid,
        &cert,
        "is not vouched for by an enrollment code",
    )?;
    // The log is read from the server's stderr by a thread: wait for it.
    let line = format!("legacy: {sid} has not been verified: certificate serial");
    assert!(server.wait_log(&line, 10), "{line:?}\n{}", server.log());
    assert_eq!(admin_text(&server, &["reports"])?.lines().count(), 1);
    Ok(())
}

/// A student removed from the roster (`roster remove`) no longer submits
/// by the legacy protocol either: refused at the certificate frame, and
/// at the report frame when the removal came after the session key.
#[test]
fn a_dropped_student_is_refused() -> TestResult {
    let server = TestServer::start(&["--legacy"])?;
    let (dropped, late) = ("1155000042", "1155000043");
    let mut ca = Legacy::connect(server.ca)?;
    let cert = enroll(&mut ca, dropped)?;
    let late_cert = enroll(&mut ca, late)?;
    // The session key is given before the roster exists.
    let mut bb = Legacy::connect(server.blackboard)?;
    let key = open_submission(&mut bb, late, &late_cert)?;
    import_roster(&server, &[dropped, late, "1155000044"])?;
    admin_text(&server, &["roster", "remove", dropped])?;
    admin_text(&server, &["roster", "remove", late])?;

    expect_one_refusal(&server, dropped, &cert, "is not on the course roster")?;
    let frame = format!("{}_{}", report_text(late), hmac_sha1_hex(&key, late)?);
    bb.send(&frame)?;
    let answer = bb.recv()?;
    assert!(answer.starts_with("error: "), "{answer}");
    assert!(answer.contains("is not on the course roster"), "{answer}");
    bb.expect_closed()?;

    for sid in [dropped, late] {
        let line =
            format!("legacy: {sid} has not been verified: SID {sid} is not on the course roster");
        assert!(server.wait_log(&line, 10), "{line:?}\n{}", server.log());
    }
    assert_eq!(admin_text(&server, &["reports"])?, "");
    Ok(())
}
