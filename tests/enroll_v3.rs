//! Protocol version 3 enrollment (PROTOCOL.md V3.7; issue 20 gap 14): the
//! CA proves its root (signed with the root key over her nonce) before
//! her one-time code's MAC leaves, so a wrong pin refuses the CA with the
//! code unspent; the certificate comes with its log proof.

mod common;

use common::{stdout, text, TestResult, TestServer};

const ROSTER: &str = "sid,name\n1155000001,Chan Tai Man\n";

/// Her code, from the codes file `server roster codes` writes.
fn her_code(server: &TestServer) -> Result<String, Box<dyn std::error::Error>> {
    std::fs::write(server.path().join("roster.csv"), ROSTER)?;
    let out = server.admin(&["roster", "import", "roster.csv"])?;
    assert!(out.status.success(), "{}", text(&out));
    let out = server.admin(&["roster", "codes", "--out", "codes.csv"])?;
    assert!(out.status.success(), "{}", text(&out));
    let codes =
        certboard::client::read_codes(&std::fs::read_to_string(server.path().join("codes.csv"))?)?;
    let code = codes.get("1155000001").ok_or("no code")?.grouped();
    std::fs::write(server.path().join("code.txt"), format!("{code}\n"))?;
    Ok(code)
}

#[test]
fn a_wrong_pin_refuses_the_ca_before_her_code_is_spent() -> TestResult {
    let server = TestServer::start(&[])?;
    her_code(&server)?;
    // The fingerprint her instructor published, mistyped (another root).
    let wrong = ["AB"; 32].join(":");
    let out = server.client(&[
        "--ca-fingerprint",
        &wrong,
        "--code-file",
        "code.txt",
        "enroll",
        "1155000001",
    ])?;
    assert!(!out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&wrong),
        "the pinned fingerprint is named: {said}"
    );
    // Nothing reached the CA but the hello: no request, no guess counted,
    // no certificate.
    assert!(!server.log().contains("1155000001"), "{}", server.log());
    let certs = server.admin(&["certs"])?;
    assert!(!stdout(&certs).contains("1155000001"), "{}", text(&certs));
    // The code is still good: with the right pin she enrolls with it.
    let root = server.root_pem();
    let out = server.client(&[
        "--ca-cert",
        &root.to_string_lossy(),
        "--code-file",
        "code.txt",
        "enroll",
        "1155000001",
    ])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("her certificate is entry 0 of the transparency log"),
        "{}",
        text(&out)
    );
    Ok(())
}

/// A peer that holds the root certificate but not its key cannot make the
/// challenge's signature: the client refuses before sending anything.
#[test]
fn a_challenge_not_signed_by_the_roots_key_is_refused() -> TestResult {
    use certboard::message::{EnrollPolicy, Message};
    use std::io::{Read, Write};
    let server = TestServer::start(&[])?;
    let root_der = openssl::x509::X509::from_pem(&std::fs::read(server.root_pem())?)?.to_der()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let fake = std::thread::spawn(move || -> Result<Vec<u8>, std::io::Error> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
        let mut hello = [0u8; 256];
        let _ = s.read(&mut hello)?;
        let payload = Message::CaChallenge3 {
            version: 3,
            policy: EnrollPolicy::Roster,
            nonce: [9; 32],
            ca_cert_der: root_der,
            log_key: String::new(),
            signature: vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
        }
        .encode();
        s.write_all(&(payload.len() as u32).to_le_bytes())?;
        s.write_all(&payload)?;
        // Whatever the client sends after (it should send nothing).
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        Ok(rest)
    });
    her_code(&server)?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_client"))
        .current_dir(server.path())
        .args(["--ca", &addr.to_string(), "--blackboard", &addr.to_string()])
        .args(["--ca-cert", &server.root_pem().to_string_lossy()])
        .args([
            "--code-file",
            "code.txt",
            "--timeout",
            "20",
            "enroll",
            "1155000001",
        ])
        .stdin(std::process::Stdio::null())
        .output()?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("does not hold that root's key"),
        "{}",
        text(&out)
    );
    let after = fake.join().map_err(|_| "fake CA panicked")??;
    // Nothing but, at most, an Error frame: no CertRequest (type 0x14).
    assert!(
        after.len() < 5 || after[4] != 0x14,
        "the client sent a request: {after:?}"
    );
    Ok(())
}
