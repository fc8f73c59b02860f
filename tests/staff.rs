//! The staff web interface end to end over plain TCP (issue 23): sessions,
//! the login throttle, CSRF, the actions and their audit rows, escaping.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{stdout, text, TestServer};

type R<T> = Result<T, Box<dyn std::error::Error>>;

/// One response: status, head (lower-cased names kept as sent), body.
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// One request on a new connection from `from` (a loopback address).
fn send(
    addr: SocketAddr,
    from: IpAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> R<Resp> {
    send_with(addr, from, method, path, cookie, body, "")
}

/// [`send`] with `extra` header lines (each ending in CRLF).
fn send_with(
    addr: SocketAddr,
    from: IpAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<(&str, &[u8])>,
    extra: &str,
) -> R<Resp> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(10))?;
    let mut s: std::net::TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: staff\r\nConnection: close\r\n{extra}");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    let (ct, data) = body.unwrap_or(("", b""));
    if body.is_some() {
        req.push_str(&format!(
            "Content-Type: {ct}\r\nContent-Length: {}\r\n",
            data.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(data)?;
    let mut all = Vec::new();
    s.read_to_end(&mut all)?;
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of head")?;
    let head = String::from_utf8(all[..split].to_vec())?;
    let status = head.split(' ').nth(1).ok_or("no status")?.parse()?;
    Ok(Resp {
        status,
        head,
        body: all[split + 4..].to_vec(),
    })
}

const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const ELSEWHERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const FORM: &str = "application/x-www-form-urlencoded";
const PASSWORD: &str = "correct horse battery";

fn get(addr: SocketAddr, path: &str, cookie: &str) -> R<Resp> {
    send(addr, HERE, "GET", path, Some(cookie), None)
}

fn post(addr: SocketAddr, path: &str, cookie: &str, form: &str) -> R<Resp> {
    send(
        addr,
        HERE,
        "POST",
        path,
        Some(cookie),
        Some((FORM, form.as_bytes())),
    )
}

fn login(addr: SocketAddr, from: IpAddr, name: &str, password: &str) -> R<Resp> {
    login_as_with(addr, from, name, password, "")
}

/// The session cookie (`name=value`) a login set.
fn cookie_of(r: &Resp) -> R<String> {
    let set = r.header("set-cookie").ok_or("no Set-Cookie")?;
    Ok(set.split(';').next().ok_or("empty cookie")?.to_string())
}

/// The CSRF token in a page's forms.
fn csrf_of(page: &str) -> R<String> {
    let at = page.find("name=\"csrf\" value=\"").ok_or("no csrf field")?;
    let rest = &page[at + 19..];
    Ok(rest[..rest.find('"').ok_or("unterminated")?].to_string())
}

/// The token with its first character changed: always a different token
/// (replacing it with a fixed digit gave the same one whenever the token
/// began with that digit, one run in sixteen).
fn altered(token: &str) -> String {
    let mut chars = token.chars();
    let first = if chars.next() == Some('0') { '1' } else { '0' };
    std::iter::once(first).chain(chars).collect()
}

fn started() -> R<(TestServer, SocketAddr)> {
    started_with(&[])
}

fn started_with(more: &[&str]) -> R<(TestServer, SocketAddr)> {
    let mut args = vec!["--staff-listen", "127.0.0.1:0"];
    args.extend_from_slice(more);
    let server = TestServer::start(&args)?;
    let addr = server.staff_addr()?;
    let pw = server.path().join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n"))?;
    let added = server.admin(&["staff", "add", "ta1", "--password-file", "pw"])?;
    assert!(added.status.success(), "{}", text(&added));
    Ok((server, addr))
}

fn multipart(csrf: &str, csv: &str, unverified: &str) -> (String, Vec<u8>) {
    let b = "----certboardTestBoundary";
    let body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"unverified\"\r\n\r\n{unverified}\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"roster\"; filename=\"r.csv\"\r\nContent-Type: text/csv\r\n\r\n{csv}\r\n--{b}--\r\n"
    );
    (
        format!("multipart/form-data; boundary={b}"),
        body.into_bytes(),
    )
}

#[test]
fn sessions_cookies_and_security_headers() -> R<()> {
    let (server, addr) = started()?;
    // Without a session: 303 to /login, with the security headers.
    let r = send(addr, HERE, "GET", "/", None, None)?;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location").as_deref(), Some("/login"));
    let csp = r.header("content-security-policy").ok_or("no CSP")?;
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(
        r.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let page = send(addr, HERE, "GET", "/login", None, None)?;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("id=\"login-form\""));
    assert_eq!(
        send(addr, HERE, "GET", "/static/staff.css", None, None)?.status,
        200
    );
    // Wrong password: refused, no cookie.
    let wrong = login(addr, HERE, "ta1", "not the password")?;
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("id=\"error\""));
    assert!(wrong.header("set-cookie").is_none());
    // Right one: a cookie with its attributes.
    let ok = login(addr, HERE, "ta1", PASSWORD)?;
    assert_eq!(ok.status, 303);
    let set = ok.header("set-cookie").ok_or("no cookie")?;
    for attr in ["HttpOnly", "SameSite=Strict", "Max-Age=28800", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "{set}");
    let cookie = cookie_of(&ok)?;
    let home = get(addr, "/", &cookie)?;
    assert_eq!(home.status, 200);
    assert!(home.text().contains("<svg id=\"timeline\""));
    assert!(home.text().contains("data-count=\"enrolled\""));
    // Logout ends it.
    let csrf = csrf_of(&home.text())?;
    let out = post(addr, "/logout", &cookie, &format!("csrf={csrf}"))?;
    assert_eq!(out.status, 303);
    assert_eq!(get(addr, "/", &cookie)?.status, 303);
    let audit = server.admin(&["staff", "list"])?;
    assert!(stdout(&audit).starts_with("ta1 "), "{}", text(&audit));
    Ok(())
}

#[test]
fn the_throttle_stops_a_guesser_but_not_her_from_elsewhere() -> R<()> {
    let (_server, addr) = started()?;
    let mut refused_at = None;
    for i in 0..10 {
        let r = login(addr, HERE, "ta1", "wrong guess number")?;
        if r.status == 429 {
            assert!(r.text().contains("id=\"error\""));
            refused_at = Some(i);
            break;
        }
        assert_eq!(r.status, 401);
    }
    assert_eq!(
        refused_at,
        Some(5),
        "the sixth guess from one address is throttled"
    );
    // Even the right password is not checked from the throttled address...
    assert_eq!(login(addr, HERE, "ta1", PASSWORD)?.status, 429);
    // ...but she logs in from her own.
    assert_eq!(login(addr, ELSEWHERE, "ta1", PASSWORD)?.status, 303);
    Ok(())
}

/// A login of `ta1` from `from` carrying `extra` header lines.
fn login_with(addr: SocketAddr, from: IpAddr, password: &str, extra: &str) -> R<Resp> {
    login_as_with(addr, from, "ta1", password, extra)
}

/// A login of `name` from `from` carrying `extra` header lines (each
/// ending in CRLF).
fn login_as_with(
    addr: SocketAddr,
    from: IpAddr,
    name: &str,
    password: &str,
    extra: &str,
) -> R<Resp> {
    let form = format!("username={name}&password={}", password.replace(' ', "+"));
    send_with(
        addr,
        from,
        "POST",
        "/login",
        None,
        Some((FORM, form.as_bytes())),
        extra,
    )
}

/// Wrong guesses from `from` with `extra` headers until one is throttled:
/// how many were answered 401 first.
fn guesses_until_throttled(
    addr: SocketAddr,
    from: IpAddr,
    extra: &dyn Fn(usize) -> String,
) -> R<usize> {
    for i in 0..10 {
        let r = login_with(addr, from, "wrong guess number", &extra(i))?;
        if r.status == 429 {
            return Ok(i);
        }
        assert_eq!(r.status, 401, "{}", r.text());
    }
    Err("never throttled".into())
}

#[test]
fn forwarded_addresses_count_only_from_a_trusted_proxy() -> R<()> {
    const PROXY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));
    let (_server, addr) = started_with(&["--staff-trusted-proxy", "127.0.0.3"])?;
    // A direct client cannot pick the address it is counted under: each
    // guess names another one, all are counted under its own.
    let spoofed = |i: usize| {
        format!(
            "X-Forwarded-For: 198.51.100.{}\r\nX-Real-IP: 198.51.100.{}\r\n",
            i + 10,
            i + 50
        )
    };
    assert_eq!(guesses_until_throttled(addr, HERE, &spoofed)?, 5);
    // Through the trusted proxy, a guesser at one address...
    let guesser = |_| "X-Forwarded-For: 203.0.113.66\r\n".to_string();
    assert_eq!(guesses_until_throttled(addr, PROXY, &guesser)?, 5);
    // ...does not hold back her login through the same proxy from hers,
    // even when the guesser also wrote her address further left.
    let her = "X-Forwarded-For: 192.0.2.7\r\n";
    let ok = login_with(addr, PROXY, PASSWORD, her)?;
    assert_eq!(ok.status, 303, "{}", ok.text());
    let sneaky = "X-Forwarded-For: 192.0.2.7, 203.0.113.66\r\n";
    assert_eq!(login_with(addr, PROXY, PASSWORD, sneaky)?.status, 429);
    // X-Real-IP when X-Forwarded-For is absent.
    assert_eq!(
        login_with(addr, PROXY, PASSWORD, "X-Real-IP: 192.0.2.8\r\n")?.status,
        303
    );
    // The audit log names the forwarded addresses, never a spoofed one.
    let cookie = cookie_of(&ok)?;
    let audit = get(addr, "/audit", &cookie)?.text();
    for seen in ["192.0.2.7", "192.0.2.8", "203.0.113.66", "127.0.0.1"] {
        assert!(audit.contains(seen), "{seen} missing from the audit page");
    }
    for spoof in ["198.51.100.10", "198.51.100.50"] {
        assert!(!audit.contains(spoof), "{spoof} in the audit page");
    }
    Ok(())
}

#[test]
fn actions_need_the_csrf_token_and_are_audited() -> R<()> {
    let (server, addr) = started()?;
    let ca = server.ca;
    // A certificate by open enrollment, before any roster.
    let key = certboard::client::make_key(certboard::client::KeyType::Rsa2048)?;
    let der = common::enroll_key(ca, "1155000001", &key)?;
    let serial = openssl::x509::X509::from_der(&der)?
        .serial_number()
        .to_bn()?
        .to_hex_str()?
        .to_string();
    let cookie = cookie_of(&login(addr, HERE, "ta1", PASSWORD)?)?;
    let csrf = csrf_of(&get(addr, "/", &cookie)?.text())?;

    // A GET never changes anything; a POST without or with a wrong token
    // is refused, and nothing changes.
    assert_eq!(
        get(addr, "/students/1155000001/revoke", &cookie)?.status,
        404
    );
    for form in [
        format!("serial={serial}&reason=keyCompromise&confirm=yes"),
        format!(
            "serial={serial}&reason=keyCompromise&confirm=yes&csrf={}",
            altered(&csrf)
        ),
    ] {
        let r = post(addr, "/students/1155000001/revoke", &cookie, &form)?;
        assert_eq!(r.status, 403);
        assert!(r.text().contains("id=\"error\""));
    }
    let certs = stdout(&server.admin(&["certs"])?);
    assert!(!certs.contains("revoked"), "{certs}");

    // Revoke: a confirmation page first, then the revocation.
    let form = format!("serial={serial}&reason=keyCompromise&csrf={csrf}");
    let confirm = post(addr, "/students/1155000001/revoke", &cookie, &form)?;
    assert_eq!(confirm.status, 200);
    assert!(confirm.text().contains("id=\"confirm-revoke\""));
    assert!(!stdout(&server.admin(&["certs"])?).contains("revoked"));
    let done = post(
        addr,
        "/students/1155000001/revoke",
        &cookie,
        &format!("{form}&confirm=yes"),
    )?;
    assert_eq!(done.status, 303);
    let certs = stdout(&server.admin(&["certs"])?);
    assert!(certs.contains("keyCompromise"), "{certs}");
    let page = get(addr, "/students/1155000001", &cookie)?.text();
    assert!(page.contains("data-status=\"revoked\""), "{page}");

    // A roster upload with hostile names (the open-enrollment certificate
    // is revoked, so no decision about it is asked for).
    let csv =
        "sid,name\n1155000002,<script>alert(1)</script>\n1155000003,\"=HYPERLINK(\"\"x\"\")\"\n";
    let (ct, body) = multipart(&csrf, csv, "ask");
    let r = send(
        addr,
        HERE,
        "POST",
        "/roster/import",
        Some(&cookie),
        Some((&ct, &body)),
    )?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("id=\"import-result\""));
    // A registrar's export past the reactor's usual input mark (256 KiB),
    // within the 1 MiB a staff form may carry: taken whole, promptly.
    let mut big = String::from("sid,name,email\n");
    for i in 0..6_000u32 {
        big.push_str(&format!(
            "11560{i:05},Student Number {i:05} of the big class,s{i}@example.edu\n"
        ));
    }
    assert!(big.len() > 300_000 && big.len() < 1 << 20);
    let (ct, body) = multipart(&csrf, &big, "ask");
    let t = std::time::Instant::now();
    let r = send(
        addr,
        HERE,
        "POST",
        "/roster/import",
        Some(&cookie),
        Some((&ct, &body)),
    )?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("6000 added"), "{}", r.text());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        t.elapsed()
    );
    let roster = get(addr, "/roster", &cookie)?.text();
    assert!(roster.contains("data-sid=\"1155000002\""));
    assert!(!roster.contains("<script>alert"), "{roster}");
    assert!(
        roster.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{roster}"
    );

    // Extension and due time.
    let r = post(
        addr,
        "/assignments/lab/due",
        &cookie,
        &format!("csrf={csrf}&due=2030-01-01T00%3A00%3A00Z"),
    )?;
    assert_eq!(r.status, 303, "{}", r.text());
    let list = stdout(&server.admin(&["assignment", "list"])?);
    assert!(list.contains("2030-01-01"), "{list}");
    // A late period the form's new due time passes is dropped, and the
    // audit log says so.
    server.admin_ok(&[
        "assignment",
        "edit",
        "lab",
        "--late-until",
        "2030-01-02T00:00:00Z",
    ])?;
    let r = post(
        addr,
        "/assignments/lab/due",
        &cookie,
        &format!("csrf={csrf}&due=2030-01-03T00%3A00%3A00Z"),
    )?;
    assert_eq!(r.status, 303, "{}", r.text());
    let csv = stdout(&server.admin(&["assignment", "list", "--format", "csv"])?);
    assert!(csv.contains(",2030-01-03T00:00:00Z,,"), "{csv}");
    let audit = get(addr, "/audit", &cookie)?.text();
    assert!(
        audit.contains("ended before the new due time and was dropped"),
        "{audit}"
    );
    let r = post(
        addr,
        "/students/1155000002/extension",
        &cookie,
        &format!("csrf={csrf}&assignment=lab&until=2030-01-05T00%3A00"),
    )?;
    assert_eq!(r.status, 303, "{}", r.text());
    let table = get(addr, "/assignments/lab?filter=extension", &cookie)?.text();
    assert!(table.contains("data-sid=\"1155000002\""), "{table}");
    assert!(!table.contains("data-sid=\"1155000003\""));

    // CSV export with the formula guard.
    // The export is the table as shown: the page's filter holds.
    let shown = get(
        addr,
        "/assignments/lab/export.csv?filter=extension",
        &cookie,
    )?
    .text();
    assert!(shown.contains("1155000002,"), "{shown}");
    assert!(!shown.contains("1155000003,"), "{shown}");
    let page = get(addr, "/assignments/lab?filter=extension&sort=name", &cookie)?.text();
    assert!(
        page.contains("export.csv?filter=extension&amp;sort=name&amp;dir=asc"),
        "the export link carries the view"
    );
    let csv = get(addr, "/assignments/lab/export.csv", &cookie)?;
    assert!(csv.header("content-disposition").is_some());
    assert!(csv.text().contains("'=HYPERLINK"), "{}", csv.text());

    // A new code, shown once.
    let r = post(
        addr,
        "/students/1155000002/code",
        &cookie,
        &format!("csrf={csrf}"),
    )?;
    let page = r.text();
    let at = page.find("<code id=\"new-code\">").ok_or("no code")? + 20;
    let code = &page[at..at + page[at..].find('<').ok_or("unterminated")?];
    assert!(code.len() >= 16, "{code}");
    assert!(!get(addr, "/students/1155000002", &cookie)?
        .text()
        .contains(code));

    // Drop.
    let r = post(
        addr,
        "/students/1155000003/drop",
        &cookie,
        &format!("csrf={csrf}"),
    )?;
    assert_eq!(r.status, 303);
    assert!(get(addr, "/roster", &cookie)?.text().contains("dropped"));

    // Every action is in the audit log, newest first.
    let audit = get(addr, "/audit", &cookie)?.text();
    for action in [
        "login",
        "revoke",
        "import",
        "due",
        "extension",
        "code",
        "drop",
    ] {
        assert!(
            audit.contains(&format!("data-action=\"{action}\"")),
            "{action}: {audit}"
        );
    }
    // Each written before its action, then settled with how it went.
    assert!(
        audit.contains("serial ") && audit.contains("reason keyCompromise; done: 1 newly revoked"),
        "{audit}"
    );
    assert!(audit.contains("remove from the roster; done"), "{audit}");
    assert!(!audit.contains(certboard::staff::PENDING), "{audit}");
    let first = audit.find("data-action=\"drop\"").ok_or("no drop")?;
    let login_at = audit.find("data-action=\"login\"").ok_or("no login")?;
    assert!(first < login_at, "newest first");
    Ok(())
}

#[test]
fn staff_accounts_from_the_command_line() -> R<()> {
    let (server, addr) = started()?;
    std::fs::write(server.path().join("short"), "eleven char\n")?;
    let r = server.admin(&["staff", "add", "ta2", "--password-file", "short"])?;
    assert!(!r.status.success());
    assert!(text(&r).contains("12"), "{}", text(&r));
    let r = server.admin(&["staff", "add", "ta2"])?;
    assert!(!r.status.success(), "no terminal: refused");
    let r = server.admin(&["staff", "add", "<b>", "--password-file", "pw"])?;
    assert!(!r.status.success());
    let r = server.admin(&["staff", "add", "ta1", "--password-file", "pw"])?;
    assert!(!r.status.success(), "a name is taken once");
    // Removing her ends her session.
    let cookie = cookie_of(&login(addr, HERE, "ta1", PASSWORD)?)?;
    assert_eq!(get(addr, "/", &cookie)?.status, 200);
    let r = server.admin(&["staff", "remove", "ta1"])?;
    assert!(r.status.success(), "{}", text(&r));
    assert_eq!(get(addr, "/", &cookie)?.status, 303);
    assert!(stdout(&server.admin(&["staff", "list"])?).is_empty());
    Ok(())
}

/// `examples/staff.sh`: a staff account from a password file, login with
/// curl and the scraped CSRF token, the overview, an assignment page, its
/// CSV export, a 5 MiB file downloaded (streamed) and compared by SHA-256
/// with the one handed in, logout, the old cookie refused.
#[test]
fn the_staff_script_runs_the_pages_with_curl() -> R<()> {
    let out = common::run_example("staff.sh")?;
    assert!(out.status.success(), "{}", text(&out));
    let s = stdout(&out);
    for step in [
        "5242880 bytes",
        "staff account ta.lee added",
        "matches",
        "== staff pages complete: every expectation held",
    ] {
        assert!(s.contains(step), "{step:?} missing:\n{}", text(&out));
    }
    Ok(())
}

/// A request the staff listener's decoder refuses is answered in plain
/// text with the headers that keep a browser from sniffing, framing or
/// caching it, as every staff page is.
#[test]
fn a_malformed_request_to_the_staff_listener_is_refused_with_the_security_headers() -> R<()> {
    use std::io::{Read, Write};
    let (_server, addr) = started_with(&[])?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /login HTTP/3.0\r\nHost: staff\r\n\r\n")?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let head = answer.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 "), "{answer}");
    assert!(!head.starts_with("http/1.1 200"), "{answer}");
    for field in [
        "x-content-type-options: nosniff",
        "content-security-policy: default-src 'none'; frame-ancestors 'none'",
        "cache-control: no-store",
        "content-type: text/plain; charset=utf-8",
    ] {
        assert!(head.contains(field), "{field:?} missing:\n{answer}");
    }
    Ok(())
}

/// A kept-alive staff connection is cut by its exchange deadline only when
/// one request takes that long, not when the connection has lived that
/// long: each request starts the deadline again.
#[test]
fn a_kept_alive_connection_outlives_the_exchange_deadline() -> R<()> {
    use std::io::{Read, Write};
    let (_server, addr) = started_with(&["--deadline", "2", "--idle-timeout", "2"])?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut pending: Vec<u8> = Vec::new();
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(1200));
        }
        s.write_all(b"GET /login HTTP/1.1\r\nHost: staff\r\n\r\n")?;
        // One whole answer: its head, then Content-Length bytes.
        let (head_end, len) = loop {
            if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&pending[..at]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or("no content-length")?;
                break (at + 4, len);
            }
            let mut buf = [0u8; 65536];
            let n = s.read(&mut buf)?;
            assert!(n > 0, "request {i}: the connection was closed");
            pending.extend_from_slice(&buf[..n]);
        };
        while pending.len() < head_end + len {
            let mut buf = [0u8; 65536];
            let n = s.read(&mut buf)?;
            assert!(n > 0, "request {i}: closed mid-answer");
            pending.extend_from_slice(&buf[..n]);
        }
        assert!(pending.starts_with(b"HTTP/1.1 200"), "request {i}");
        pending.drain(..head_end + len);
    }
    Ok(())
}
