//! The HTTP listener end to end (issue 14): the real server binary, real
//! students enrolled by the real client, and relying-party tools nobody
//! here wrote: `openssl ocsp`, `openssl verify -crl_download`, `openssl
//! crl`, `curl`, and the Prometheus project's Python text parser.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{stdout, text, TestResult, TestServer};

/// A server with the HTTP listener on a port-0 address.
fn start(extra: &[&str]) -> Result<(TestServer, SocketAddr), Box<dyn std::error::Error>> {
    let mut args = vec!["--http-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = TestServer::start(&args)?;
    let addr = server.http_addr()?;
    Ok((server, addr))
}

/// A server whose certificates point at its own HTTP listener: started once
/// on port 0 to learn a free port, then again on that port with
/// `--public-url` naming it.
fn start_with_public_url() -> Result<(TestServer, SocketAddr), Box<dyn std::error::Error>> {
    let (first, addr) = start(&[])?;
    let dir = first.crash()?;
    let listen = addr.to_string();
    let url = format!("http://{addr}");
    let server = TestServer::start_in(dir, &["--http-listen", &listen, "--public-url", &url])?;
    let got = server.http_addr()?;
    assert_eq!(got, addr);
    Ok((server, addr))
}

fn run(cmd: &mut Command) -> Result<Output, Box<dyn std::error::Error>> {
    Ok(cmd.output()?)
}

fn enroll(server: &TestServer, sid: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let out = server.client(&[sid])?;
    assert!(out.status.success(), "{}", text(&out));
    Ok(server.path().join("students").join(sid).join("cert.pem"))
}

/// `openssl ocsp` against `/ocsp` (POST, with a nonce), as a relying party
/// checks a certificate.
fn openssl_ocsp(server: &TestServer, http: SocketAddr, what: &[&str]) -> std::io::Result<Output> {
    let ca = server.root_pem();
    Command::new("openssl")
        .arg("ocsp")
        .arg("-issuer")
        .arg(&ca)
        .args(what)
        .args(["-url", &format!("http://{http}/ocsp")])
        .arg("-CAfile")
        .arg(&ca)
        .args(["-timeout", "20"])
        .output()
}

fn both(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn revoke(server: &TestServer, sid: &str, reason: &str) -> TestResult {
    let out = server.admin(&["revoke", "--sid", sid, "--reason", reason])?;
    assert!(out.status.success(), "{}", text(&out));
    Ok(())
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn ocsp_says_good_then_revoked_at_once_and_unknown_for_strangers() -> TestResult {
    let (server, http) = start(&[])?;
    let cert = enroll(&server, "1155000001")?;
    let cert_s = path_str(&cert);

    let out = openssl_ocsp(&server, http, &["-cert", &cert_s])?;
    let said = both(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("Response verify OK"), "{said}");
    assert!(said.contains(": good"), "{said}");
    // openssl sends a nonce by default and complains when it is not echoed.
    assert!(!said.contains("nonce"), "nonce not echoed: {said}");

    revoke(&server, "1155000001", "key-compromise")?;
    let out = openssl_ocsp(&server, http, &["-cert", &cert_s])?;
    let said = both(&out);
    assert!(said.contains("Response verify OK"), "{said}");
    assert!(said.contains(": revoked"), "{said}");
    assert!(said.contains("Reason: keyCompromise"), "{said}");
    assert!(said.contains("Revocation Time:"), "{said}");

    // A serial this CA never issued: unknown, still signed.
    let out = openssl_ocsp(&server, http, &["-serial", "0x1234ABCD"])?;
    let said = both(&out);
    assert!(said.contains("Response verify OK"), "{said}");
    assert!(said.contains("0x1234ABCD: unknown"), "{said}");

    // The GET form (RFC 5019), with curl: the request's DER, base64, URL-encoded.
    let dir = server.path();
    let req = dir.join("req.der");
    let out = run(Command::new("openssl")
        .arg("ocsp")
        .arg("-issuer")
        .arg(server.root_pem())
        .args(["-cert", &cert_s, "-no_nonce", "-reqout"])
        .arg(&req))?;
    assert!(out.status.success(), "{}", text(&out));
    let b64 = openssl::base64::encode_block(&std::fs::read(&req)?);
    let encoded = b64
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let resp = dir.join("resp.der");
    let out = run(Command::new("curl")
        .args(["-sS", "-D", "-", "-o"])
        .arg(&resp)
        .arg(format!("http://{http}/ocsp/{encoded}")))?;
    let headers = stdout(&out).to_ascii_lowercase();
    assert!(headers.starts_with("http/1.1 200"), "{}", text(&out));
    assert!(
        headers.contains("content-type: application/ocsp-response"),
        "{headers}"
    );
    assert!(headers.contains("cache-control: max-age="), "{headers}");
    let out = run(Command::new("openssl")
        .arg("ocsp")
        .arg("-respin")
        .arg(&resp)
        .arg("-issuer")
        .arg(server.root_pem())
        .args(["-cert", &cert_s, "-CAfile"])
        .arg(server.root_pem()))?;
    let said = both(&out);
    assert!(said.contains("Response verify OK"), "{said}");
    assert!(said.contains(": revoked"), "{said}");
    Ok(())
}

#[test]
fn crl_distribution_point_is_followed_and_lists_each_reason() -> TestResult {
    let (server, http) = start_with_public_url()?;
    let good = enroll(&server, "1155000010")?;
    let compromised = enroll(&server, "1155000011")?;
    let moved = enroll(&server, "1155000012")?;
    revoke(&server, "1155000011", "key-compromise")?;
    revoke(&server, "1155000012", "affiliation-changed")?;

    let verify = |cert: &Path| {
        Command::new("openssl")
            .arg("verify")
            .args(["-crl_check", "-crl_download", "-CAfile"])
            .arg(server.root_pem())
            .arg(cert)
            .output()
    };
    let out = verify(&good)?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains(": OK"), "{}", text(&out));
    for revoked in [&compromised, &moved] {
        let out = verify(revoked)?;
        assert!(!out.status.success(), "{}", text(&out));
        assert!(both(&out).contains("certificate revoked"), "{}", text(&out));
    }

    // The CRL itself, as served and as `server crl` prints it.
    let served = server.path().join("served.crl");
    let out = run(Command::new("curl")
        .args(["-sS", "-f", "-o"])
        .arg(&served)
        .arg(format!("http://{http}/crl")))?;
    assert!(out.status.success(), "{}", text(&out));
    let crl_text = |path: &Path, form: &str| -> Result<String, Box<dyn std::error::Error>> {
        let out = run(Command::new("openssl")
            .args(["crl", "-noout", "-text", "-inform", form, "-in"])
            .arg(path))?;
        assert!(out.status.success(), "{}", text(&out));
        Ok(stdout(&out))
    };
    let served_text = crl_text(&served, "DER")?;
    let admin = server.admin(&["crl"])?;
    assert!(admin.status.success(), "{}", text(&admin));
    let printed = server.path().join("printed.crl");
    std::fs::write(&printed, &admin.stdout)?;
    let printed_text = crl_text(&printed, "PEM")?;
    for t in [&served_text, &printed_text] {
        assert!(t.contains("Key Compromise"), "{t}");
        assert!(t.contains("Affiliation Changed"), "{t}");
        assert_eq!(t.matches("Serial Number:").count(), 2, "{t}");
        assert!(t.contains("X509v3 Authority Key Identifier"), "{t}");
        assert!(t.contains("X509v3 CRL Number"), "{t}");
    }
    // The admin command took a later CRL number than the one served.
    let number = |t: &str| -> Option<u64> {
        let mut lines = t.lines();
        lines.find(|l| l.contains("X509v3 CRL Number"))?;
        lines.next()?.trim().parse().ok()
    };
    let (served_n, printed_n) = (number(&served_text), number(&printed_text));
    assert!(
        served_n.is_some() && printed_n > served_n,
        "{served_n:?} {printed_n:?}"
    );
    // Served from memory while nothing is revoked: the same bytes again.
    let again = server.path().join("again.crl");
    let out = run(Command::new("curl")
        .args(["-sS", "-f", "-o"])
        .arg(&again)
        .arg(format!("http://{http}/crl")))?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(&again)?, std::fs::read(&served)?);
    Ok(())
}

/// One GET over a fresh connection: (status, body).
fn get(http: SocketAddr, path: &str) -> Result<(u16, String), Box<dyn std::error::Error>> {
    let mut s = TcpStream::connect(http)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut all = Vec::new();
    s.read_to_end(&mut all)?;
    let all = String::from_utf8_lossy(&all).into_owned();
    let status = all
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not a response: {all:?}"))?;
    let body = all
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// The value of one series, read with prometheus_client's own parser.
fn metric(exposition: &str, name: &str, labels: &str) -> Result<f64, Box<dyn std::error::Error>> {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
name, want = sys.argv[1], sys.argv[2]
want = dict(kv.split("=") for kv in want.split(",")) if want else {}
total = 0.0
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in want.items()):
            total += s.value
print(total)
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, name, labels])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(exposition.as_bytes())?;
    let out = child.wait_with_output()?;
    assert!(
        out.status.success(),
        "the parser refused it: {}",
        text(&out)
    );
    Ok(stdout(&out).trim().parse()?)
}

#[test]
fn metrics_parse_and_move_as_students_enroll_and_submit() -> TestResult {
    let (server, http) = start(&[])?;
    let (status, before) = get(http, "/metrics")?;
    assert_eq!(status, 200);
    assert_eq!(
        metric(&before, "certboard_certificates_issued_total", "")?,
        0.0
    );
    assert_eq!(
        metric(&before, "certboard_reports_accepted_total", "")?,
        0.0
    );

    enroll(&server, "1155000020")?;
    enroll(&server, "1155000021")?;
    let cert = server.path().join("students/1155000020/cert.pem");
    let out = openssl_ocsp(&server, http, &["-cert", &path_str(&cert)])?;
    assert!(out.status.success(), "{}", text(&out));

    let (_, after) = get(http, "/metrics")?;
    assert_eq!(
        metric(&after, "certboard_certificates_issued_total", "")?,
        2.0
    );
    assert_eq!(metric(&after, "certboard_reports_accepted_total", "")?, 2.0);
    assert_eq!(
        metric(&after, "certboard_ocsp_responses_total", "status=good")?,
        1.0
    );
    assert!(
        metric(
            &after,
            "certboard_connections_accepted_total",
            "listener=ca"
        )? >= 2.0
    );
    assert!(
        metric(
            &after,
            "certboard_connections_accepted_total",
            "listener=blackboard"
        )? >= 2.0
    );
    assert!(metric(&after, "certboard_commit_latency_seconds_count", "")? >= 1.0);
    assert_eq!(
        metric(&after, "certboard_records_awaiting_commit", "")?,
        0.0
    );
    // A refusal is counted by its reason.
    let mut s = TcpStream::connect(server.ca)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])?;
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    let (_, later) = get(http, "/metrics")?;
    assert!(
        metric(&later, "certboard_refusals_total", "reason=malformed")? >= 1.0,
        "{later}"
    );
    Ok(())
}

#[test]
fn health_is_503_with_the_reason_while_the_database_file_is_gone() -> TestResult {
    let (server, http) = start(&[])?;
    let (status, body) = get(http, "/health")?;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"status":"ok","store":"ok"}"#)
    );
    let db = server.path().join("data").join(certboard::store::DB_FILE);
    let aside = server.path().join("moved-away.sqlite3");
    std::fs::rename(&db, &aside)?;
    let (status, body) = get(http, "/health")?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""status":"unavailable""#), "{body}");
    assert!(body.contains("no longer there"), "{body}");
    std::fs::rename(&aside, &db)?;
    let (status, _) = get(http, "/health")?;
    assert_eq!(status, 200);
    Ok(())
}

#[test]
fn without_the_ca_key_ocsp_and_crl_say_why() -> TestResult {
    // A CA-only run creates the root; a Blackboard alone then trusts it.
    let (first, _) = start(&["--role", "ca"])?;
    // Blackboard's own certificate, made where the root key is.
    let made = first.admin(&["blackboard-cert", "--out", "keys"])?;
    assert!(made.status.success(), "{}", text(&made));
    let dir = first.crash()?;
    let server = TestServer::start_in(
        dir,
        &["--role", "blackboard", "--http-listen", "127.0.0.1:0"],
    )?;
    let http = server.http_addr()?;
    for path in ["/crl", "/ocsp/MAA"] {
        let (status, body) = get(http, path)?;
        assert_eq!(status, 503, "{path}: {body}");
        assert!(body.contains("does not hold the CA key"), "{body}");
    }
    assert_eq!(get(http, "/health")?.0, 200);
    Ok(())
}

/// Sends `bytes` on a new connection and reads what comes back until the
/// server closes (or 20 s).
fn exchange(http: SocketAddr, bytes: &[u8]) -> Result<String, Box<dyn std::error::Error>> {
    let mut s = TcpStream::connect(http)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    // The server may close before taking it all (that is the point).
    let _ = s.write_all(bytes);
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    Ok(String::from_utf8_lossy(&all).into_owned())
}

#[test]
fn hostile_http_is_refused_while_an_honest_ocsp_request_is_answered() -> TestResult {
    let (server, http) = start(&["--idle-timeout", "2", "--deadline", "20"])?;
    let cert = enroll(&server, "1155000030")?;

    // Slow headers: many connections each holding half a head.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(http)?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")?;
        slow.push(s);
    }
    // Meanwhile an honest relying party is answered.
    let out = openssl_ocsp(&server, http, &["-cert", &path_str(&cert)])?;
    assert!(both(&out).contains(": good"), "{}", text(&out));

    // The slow ones are cut off at the idle timeout, with a 408.
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        let all = String::from_utf8_lossy(&all);
        assert!(all.starts_with("HTTP/1.1 408"), "{all:?}");
    }

    // Huge headers.
    let mut huge = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..400 {
        huge.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "a".repeat(60)).as_bytes());
    }
    huge.extend_from_slice(b"\r\n");
    let answer = exchange(http, &huge)?;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // Garbage.
    let answer = exchange(
        http,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    )?;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");

    // A body over the limit: refused on its Content-Length alone.
    let answer = exchange(
        http,
        b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\n\
          Content-Length: 10000000\r\n\r\n",
    )?;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");

    // A pipelined flood: answered in order up to the per-connection limit
    // (100), the last with `Connection: close`, then the connection ends.
    let flood = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1000);
    let answer = exchange(http, &flood)?;
    assert_eq!(
        answer.matches("HTTP/1.1 200").count(),
        100,
        "{}",
        answer.len()
    );
    assert_eq!(answer.matches("Connection: close").count(), 1);

    // And the honest client is still served.
    let out = openssl_ocsp(&server, http, &["-cert", &path_str(&cert)])?;
    assert!(both(&out).contains(": good"), "{}", text(&out));
    assert!(both(&out).contains("Response verify OK"), "{}", text(&out));
    Ok(())
}

#[test]
fn ocsp_example_script_shows_good_revoked_and_the_crl() -> TestResult {
    let out = common::run_example("ocsp.sh")?;
    assert!(out.status.success(), "{}", text(&out));
    let s = both(&out);
    assert!(s.contains("cert.pem: good"), "{s}");
    assert!(s.contains("cert.pem: revoked"), "{s}");
    assert!(s.contains("Reason: keyCompromise"), "{s}");
    assert_eq!(s.matches("Response verify OK").count(), 2, "{s}");
    assert!(s.contains("Key Compromise"), "the CRL's entry: {s}");
    assert!(s.contains("certificate revoked"), "{s}");
    assert!(s.contains("== refused, as it should be"), "{s}");
    Ok(())
}

/// One GET over a fresh connection: (status, body bytes).
fn get_bytes(http: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), Box<dyn std::error::Error>> {
    let mut s = TcpStream::connect(http)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut all = Vec::new();
    s.read_to_end(&mut all)?;
    let status = std::str::from_utf8(all.get(9..12).unwrap_or_default())?.parse()?;
    let start = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of head")?
        + 4;
    Ok((status, all[start..].to_vec()))
}

/// The distinct CRLs served over `n` fresh connections (spread by the
/// kernel over the reactors sharing the port).
fn crls_served(
    http: SocketAddr,
    n: usize,
) -> Result<std::collections::BTreeSet<Vec<u8>>, Box<dyn std::error::Error>> {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..n {
        let (status, body) = get_bytes(http, "/crl")?;
        assert_eq!(status, 200);
        seen.insert(body);
    }
    Ok(seen)
}

#[test]
fn every_reactor_serves_one_crl_number_per_revocation_state() -> TestResult {
    let (server, http) = start(&["--reactors", "2"])?;
    enroll(&server, "1155000030")?;
    let before = crls_served(http, 24)?;
    assert_eq!(before.len(), 1, "several CRLs for one state");
    revoke(&server, "1155000030", "key-compromise")?;
    let after = crls_served(http, 24)?;
    assert_eq!(after.len(), 1, "several CRLs for one state");
    assert!(before.is_disjoint(&after), "the revocation was not served");
    // The numbers, as openssl reads them: the later is larger.
    let number = |der: &Vec<u8>| -> Result<u64, Box<dyn std::error::Error>> {
        let path = server.path().join("n.crl");
        std::fs::write(&path, der)?;
        let out = run(Command::new("openssl")
            .args(["crl", "-noout", "-crlnumber", "-inform", "DER", "-in"])
            .arg(&path))?;
        assert!(out.status.success(), "{}", text(&out));
        let hex = stdout(&out);
        let hex = hex.trim().trim_start_matches("crlNumber=0x");
        Ok(u64::from_str_radix(hex, 16)?)
    };
    let first = before.iter().next().ok_or("none")?;
    let second = after.iter().next().ok_or("none")?;
    assert!(number(second)? > number(first)?);
    Ok(())
}

/// A series' value, insisting that the series is there (`metric` sums
/// what it finds, so a missing series would read 0).
fn gauge(exposition: &str, name: &str) -> Result<f64, Box<dyn std::error::Error>> {
    assert!(
        exposition
            .lines()
            .any(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(' '))),
        "no {name} in\n{exposition}"
    );
    metric(exposition, name, "")
}

#[test]
fn store_gauges_count_the_course_across_a_restart() -> TestResult {
    let (server, _) = start(&[])?;
    for sid in ["1155000040", "1155000041"] {
        enroll(&server, sid)?;
    }
    revoke(&server, "1155000041", "superseded")?;
    let dir = server.crash()?;
    let server = TestServer::start_in(dir, &["--http-listen", "127.0.0.1:0"])?;
    let http = server.http_addr()?;
    let (status, text_) = get(http, "/metrics")?;
    assert_eq!(status, 200);
    // The counters start again; the gauges read the store.
    assert_eq!(metric(&text_, "certboard_reports_accepted_total", "")?, 0.0);
    assert_eq!(gauge(&text_, "certboard_reports_stored")?, 2.0);
    assert_eq!(gauge(&text_, "certboard_certificates_stored")?, 2.0);
    assert_eq!(gauge(&text_, "certboard_certificates_current")?, 1.0);
    assert_eq!(gauge(&text_, "certboard_certificates_revoked")?, 1.0);
    assert_eq!(gauge(&text_, "certboard_students_enrolled")?, 1.0);
    assert_eq!(gauge(&text_, "certboard_roster_students")?, 0.0);
    assert!(gauge(&text_, "certboard_store_read_timestamp_seconds")? > 1.7e9);
    assert!(text_.contains("# TYPE certboard_students_enrolled gauge\n"));

    // Scrapes bring them up to date (read off the loop, at most once a
    // second): bounded polling, no timing asserted.
    enroll(&server, "1155000042")?;
    let mut latest = String::new();
    for _ in 0..100 {
        latest = get(http, "/metrics")?.1;
        if gauge(&latest, "certboard_students_enrolled")? == 2.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        gauge(&latest, "certboard_students_enrolled")?,
        2.0,
        "{latest}"
    );
    assert_eq!(gauge(&latest, "certboard_reports_stored")?, 3.0);
    assert_eq!(
        metric(&latest, "certboard_reports_accepted_total", "")?,
        1.0
    );
    Ok(())
}
