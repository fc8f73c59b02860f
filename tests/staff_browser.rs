//! The staff web interface (issue 23) in a real browser: Debian's headless
//! Chromium driven over WebDriver (tests/common/webdriver.rs) against the
//! real server binary's `--staff-listen` listener. The element ids and URLs
//! are the contract in the notes (docs/staff.md lists them).

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use certboard::time::{now_unix, rfc3339};
use common::{stdout, text, TestResult, TestServer};
use webdriver::{http_request, sha256_hex, Element, HttpResponse, WebDriver};

// ---------------------------------------------------------------------------
// The WebDriver client itself, against a tiny page served here: proves the
// client (and the installed browser) before trusting it with the server.

const STATIC_PAGE: &str = "<!doctype html><html><head><title>static page</title></head>\
<body><p id=\"greeting\">Hello &lt;b&gt;world&lt;/b&gt;</p>\
<script>window.pwned = 1;</script>\
<form id=\"f\" method=\"post\" action=\"/echo\" enctype=\"multipart/form-data\">\
<input name=\"q\" id=\"q\" value=\"old\"><input type=\"file\" name=\"upload\" id=\"file\">\
<button type=\"submit\" id=\"go\">Go</button></form>\
<a id=\"dl\" href=\"/file\">download</a></body></html>";

const DOWNLOAD: &[u8] = b"\x00\x01binary \xff bytes\r\n";

/// Serves [`STATIC_PAGE`] at `/` (with `Content-Security-Policy` at
/// `/csp`), echoes what a POST to `/echo` received, and a download at
/// `/file`. Runs until the test process ends.
fn static_server() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = serve_one(stream);
            });
        }
    });
    Ok(addr)
}

fn serve_one(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (method, path, body) = loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        raw.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = req.parse(&raw) {
            let len = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0usize);
            if raw.len() >= head + len {
                break (
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("").to_string(),
                    raw[head..head + len].to_vec(),
                );
            }
        }
    };
    let (ctype, extra, content): (&str, String, Vec<u8>) = match (method.as_str(), path.as_str()) {
        ("GET", "/") => (
            "text/html; charset=utf-8",
            "Set-Cookie: t=1; Path=/; HttpOnly; SameSite=Strict\r\n".into(),
            STATIC_PAGE.into(),
        ),
        ("GET", "/csp") => (
            "text/html; charset=utf-8",
            "Content-Security-Policy: default-src 'none'\r\n".into(),
            STATIC_PAGE.into(),
        ),
        ("POST", "/echo") => {
            let body = String::from_utf8_lossy(&body);
            let has = |s: &str| if body.contains(s) { "yes" } else { "no" };
            (
                "text/html; charset=utf-8",
                String::new(),
                format!(
                    "<!doctype html><p id=\"q\">{}</p><p id=\"file\">{}</p><p id=\"name\">{}</p>",
                    has("\r\n\r\nnew text\r\n"),
                    has("roster line one\nline two"),
                    has("filename=\"upload.csv\""),
                )
                .into_bytes(),
            )
        }
        ("GET", "/file") => (
            "application/octet-stream",
            "Content-Disposition: attachment; filename=\"data.bin\"\r\n".into(),
            DOWNLOAD.to_vec(),
        ),
        _ => ("text/plain", String::new(), b"not found".to_vec()),
    };
    let status = if content == b"not found" {
        "404 Not Found"
    } else {
        "200 OK"
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        content.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&content)?;
    Ok(())
}

#[test]
fn the_webdriver_client_drives_chromium_on_a_static_page() -> TestResult {
    let site = static_server()?;
    let wd = WebDriver::start()?;
    wd.goto(&format!("http://{site}/"))?;
    assert_eq!(wd.title()?, "static page");
    assert_eq!(wd.current_url()?, format!("http://{site}/"));
    assert_eq!(wd.text(&wd.find("#greeting")?)?, "Hello <b>world</b>");
    assert!(wd.page_source()?.contains("id=\"greeting\""));
    assert_eq!(wd.find_all("input")?.len(), 2);
    assert!(!wd.exists("#nothing-here")?);
    assert!(wd.find("#nothing-here").is_err());

    // Scripts run without a CSP, so the side-effect check can fail...
    assert_eq!(
        wd.execute("return window.pwned;", &[])?,
        serde_json::json!(1)
    );
    // ...and with one the same page's inline script does not run.
    wd.goto(&format!("http://{site}/csp"))?;
    assert_eq!(
        wd.execute("return typeof window.pwned;", &[])?,
        serde_json::json!("undefined")
    );

    let cookies = wd.cookies()?;
    let t = cookies
        .iter()
        .find(|c| c.name == "t")
        .ok_or("no cookie t")?;
    assert!(t.http_only, "{t:?}");
    assert_eq!(t.same_site.as_deref(), Some("Strict"), "{t:?}");
    assert!(!t.secure, "{t:?}");

    let png = wd.screenshot()?;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");

    // A form with a file input, filled and sent by the browser.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("upload.csv");
    std::fs::write(&file, "roster line one\nline two")?;
    let q = wd.find("#q")?;
    assert_eq!(wd.property(&q, "value")?, serde_json::json!("old"));
    assert_eq!(wd.attribute(&q, "name")?.as_deref(), Some("q"));
    wd.clear(&q)?;
    wd.send_keys(&q, "new text")?;
    wd.send_keys(&wd.find("#file")?, &file.to_string_lossy())?;
    wd.click(&wd.find("#go")?)?;
    wd.wait_for("p#name", Duration::from_secs(10))?;
    assert_eq!(wd.current_url()?, format!("http://{site}/echo"));
    for id in ["#q", "#file", "#name"] {
        assert_eq!(wd.text(&wd.find(id)?)?, "yes", "{id}");
    }

    // A download the browser saves where the client said.
    wd.goto(&format!("http://{site}/"))?;
    wd.click(&wd.find("#dl")?)?;
    let got = wd.wait_download("data.bin", Duration::from_secs(20))?;
    assert_eq!(sha256_hex(&got), sha256_hex(DOWNLOAD));

    // The plain HTTP helper the staff tests use beside the browser.
    let resp = http_request(site, "GET", "/file", &[], &[], Duration::from_secs(10))?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, DOWNLOAD);
    assert_eq!(
        resp.header("content-disposition"),
        Some("attachment; filename=\"data.bin\"")
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// The staff interface.

const STAFF: &str = "ta.chan";
const PASSWORD: &str = "deadline-day-2026";
const NET: Duration = Duration::from_secs(20);

const ROSTER: &str = "sid,name,email\n\
1155000001,Chan Tai Man,a@example.edu\n\
1155000002,Lee Siu Ming,b@example.edu\n\
1155000003,Wong Mei Ling,c@example.edu\n";

/// A server with the staff and HTTP listeners, its roster imported and its
/// codes written to codes.csv, and a staff account.
struct Course {
    server: TestServer,
    staff: SocketAddr,
    http: SocketAddr,
}

impl Course {
    fn start(roster: &str, extra: &[&str]) -> Result<Course, Box<dyn std::error::Error>> {
        let mut args = vec![
            "--staff-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let server = TestServer::start(&args)?;
        let addrs = listening(&server, &["staff", "http"])?;
        let course = Course {
            staff: addrs["staff"],
            http: addrs["http"],
            server,
        };
        std::fs::write(course.path("roster.csv"), roster)?;
        course.admin(&["roster", "import", "roster.csv"])?;
        course.admin(&["roster", "codes", "--out", "codes.csv"])?;
        std::fs::write(course.path("staff-password"), format!("{PASSWORD}\n"))?;
        course.admin(&["staff", "add", STAFF, "--password-file", "staff-password"])?;
        Ok(course)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.server.path().join(name)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.staff)
    }

    fn admin(&self, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
        let out = self.server.admin(args)?;
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        Ok(stdout(&out))
    }

    fn client(&self, args: &[&str]) -> Result<Output, Box<dyn std::error::Error>> {
        let out = self.server.client(args)?;
        assert!(out.status.success(), "client {args:?}: {}", text(&out));
        Ok(out)
    }

    /// The assignment's standing per SID (`server status --assignment`).
    fn standing(
        &self,
        id: &str,
    ) -> Result<HashMap<String, serde_json::Value>, Box<dyn std::error::Error>> {
        let out = self.admin(&["status", "--assignment", id, "--format", "json"])?;
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out)?;
        Ok(rows
            .into_iter()
            .map(|r| (r["sid"].as_str().unwrap_or("").to_string(), r))
            .collect())
    }

    /// `openssl ocsp` for a student's saved certificate, against the
    /// server's own HTTP listener (as tests/http.rs asks it).
    fn ocsp(&self, sid: &str) -> Result<String, Box<dyn std::error::Error>> {
        let root = self.server.root_pem();
        let cert = self
            .server
            .path()
            .join("students")
            .join(sid)
            .join("cert.pem");
        let out = Command::new("openssl")
            .arg("ocsp")
            .arg("-issuer")
            .arg(&root)
            .arg("-cert")
            .arg(&cert)
            .args(["-url", &format!("http://{}/ocsp", self.http)])
            .arg("-CAfile")
            .arg(&root)
            .args(["-timeout", "20"])
            .output()?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains("Response verify OK"), "{said}");
        Ok(said)
    }

    /// A plain HTTP request to the staff listener with the browser's
    /// session cookie (what the browser does not let a test do: leave out
    /// the CSRF token, read the raw answer).
    fn request(
        &self,
        wd: &WebDriver,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<HttpResponse, Box<dyn std::error::Error>> {
        let cookie = session_cookie(wd)?;
        let body = form_encode(form);
        let mut headers = vec![("Cookie", cookie.as_str())];
        if method == "POST" {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        Ok(http_request(
            self.staff,
            method,
            path,
            &headers,
            body.as_bytes(),
            NET,
        )?)
    }
}

/// The addresses of the `listening NAME ADDR` lines for `names` (printed
/// after the CA's and Blackboard's, in any order).
fn listening(
    server: &TestServer,
    names: &[&str],
) -> Result<HashMap<String, SocketAddr>, Box<dyn std::error::Error>> {
    let mut found = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while found.len() < names.len() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = server
            .stdout
            .recv_timeout(left)
            .map_err(|_| format!("no listening line for {names:?}; log:\n{}", server.log()))?;
        if let ["listening", name, addr] = line.split_whitespace().collect::<Vec<_>>()[..] {
            if names.contains(&name) {
                found.insert(name.to_string(), addr.parse()?);
            }
        }
    }
    Ok(found)
}

fn form_encode(form: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    form.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `certboard_staff=...` as the browser holds it.
fn session_cookie(wd: &WebDriver) -> Result<String, Box<dyn std::error::Error>> {
    let c = wd
        .cookies()?
        .into_iter()
        .find(|c| c.name == "certboard_staff")
        .ok_or("the browser holds no certboard_staff cookie")?;
    Ok(format!("{}={}", c.name, c.value))
}

/// The page's CSRF token (the hidden field of its forms).
fn csrf(wd: &WebDriver) -> Result<String, Box<dyn std::error::Error>> {
    let field = wd.find("input[name=csrf]")?;
    Ok(wd
        .attribute(&field, "value")?
        .ok_or("a csrf field without a value")?)
}

fn login(wd: &WebDriver, course: &Course, name: &str, password: &str) -> TestResult {
    wd.goto(&course.url("/login"))?;
    let form = wd.find("form#login-form")?;
    wd.send_keys(&wd.find_in(&form, "#username")?, name)?;
    wd.send_keys(&wd.find_in(&form, "#password")?, password)?;
    wd.click(&wd.find("#login")?)?;
    Ok(())
}

/// Types `value` into a form's field, or picks it from a `<select>`;
/// date-time pickers get their value set directly (typing into them
/// depends on the browser's locale).
fn fill(wd: &WebDriver, css: &str, value: &str) -> TestResult {
    let field = wd.find(css)?;
    let tag = wd.property(&field, "tagName")?;
    if tag
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case("select"))
    {
        let options = wd.find_all(&format!("{css} option"))?;
        for o in options {
            if wd.attribute(&o, "value")?.as_deref() == Some(value) {
                wd.click(&o)?;
                return Ok(());
            }
        }
        return Err(format!("{css} has no option {value:?}").into());
    }
    let kind = wd.attribute(&field, "type")?.unwrap_or_default();
    if kind == "hidden" {
        let have = wd.attribute(&field, "value")?.unwrap_or_default();
        assert_eq!(have, value, "{css}");
        return Ok(());
    }
    if matches!(kind.as_str(), "datetime-local" | "date" | "time") {
        wd.execute(
            "arguments[0].value = arguments[1];",
            &[
                serde_json::json!({webdriver::ELEMENT_KEY: field.0}),
                serde_json::json!(value),
            ],
        )?;
        return Ok(());
    }
    wd.clear(&field)?;
    wd.send_keys(&field, value)?;
    Ok(())
}

/// Clicks the form's submit button.
fn submit(wd: &WebDriver, form: &str) -> TestResult {
    let buttons = wd.find_all(&format!(
        "{form} button[type=submit], {form} button:not([type]), {form} input[type=submit]"
    ))?;
    let button = buttons
        .first()
        .ok_or(format!("{form} has no submit button"))?;
    wd.click(button)?;
    Ok(())
}

/// Submits `form` and waits until the browser has left its page: the
/// button clicked, found on that page, goes stale once the answer's page
/// replaced it. (Waiting for an element of the answer's page alone is not
/// enough when the page before had it too.)
fn submit_and_leave(wd: &WebDriver, form: &str) -> TestResult {
    let button = wd.find(&format!("{form} button[type=submit]"))?;
    wd.click(&button)?;
    let deadline = std::time::Instant::now() + NET;
    while wd.attribute(&button, "type").is_ok() {
        if std::time::Instant::now() > deadline {
            return Err(format!("still on the page of {form} after {NET:?}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A time for a form: RFC 3339 for a text field, the course zone's
/// (UTC here) `YYYY-MM-DDTHH:MM` for a date-time picker.
fn time_for(wd: &WebDriver, css: &str, t: i64) -> Result<String, Box<dyn std::error::Error>> {
    let field = wd.find(css)?;
    let full = rfc3339(t);
    Ok(match wd.attribute(&field, "type")?.as_deref() {
        Some("datetime-local") => full[..16].to_string(),
        _ => full,
    })
}

fn path_of(url: &str) -> &str {
    url.find("://")
        .and_then(|i| url[i + 3..].find('/').map(|j| &url[i + 3 + j..]))
        .unwrap_or(url)
}

fn cell(wd: &WebDriver, row: &Element, class: &str) -> Result<String, Box<dyn std::error::Error>> {
    Ok(wd.text(&wd.find_in(row, &format!("td.{class}, th.{class}"))?)?)
}

/// Saves a screenshot to target/screenshots/, and to docs/screenshots/
/// with CERTBOARD_UPDATE_SCREENSHOTS=1 (so an ordinary run leaves the git
/// tree as it was).
fn save_screenshot(name: &str, png: &[u8]) -> TestResult {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("target").join("screenshots")];
    if std::env::var("CERTBOARD_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        dirs.push(root.join("docs").join("screenshots"));
    }
    for dir in dirs {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), png)?;
    }
    Ok(())
}

/// No script ran and none is on the page (the pages have no JavaScript
/// at all), no element carries an event handler.
fn assert_inert(wd: &WebDriver) -> TestResult {
    let url = wd.current_url()?;
    let got = wd.execute(
        "return [typeof window.pwned, document.scripts.length, \
         document.querySelectorAll('[onerror],[onload],[onclick]').length];",
        &[],
    )?;
    assert_eq!(got, serde_json::json!(["undefined", 0, 0]), "on {url}");
    Ok(())
}

#[test]
fn a_ta_runs_the_deadline_day_from_the_browser() -> TestResult {
    let course = Course::start(ROSTER, &[])?;
    let now = now_unix();
    course.admin(&["assignment", "edit", "lab", "--due", &rfc3339(now + 3600)])?;
    // 1155000001 hands in a file; 1155000002 only enrolls; 1155000003
    // does nothing.
    let report: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(course.path("report.bin"), &report)?;
    course.client(&[
        "--codes-file",
        "codes.csv",
        "submit",
        "--assignment",
        "lab",
        "--file",
        "report.bin",
        "1155000001",
    ])?;
    course.client(&["--codes-file", "codes.csv", "enroll", "1155000002"])?;

    let wd = WebDriver::start()?;
    // No session: every page sends her to the login form.
    wd.goto(&course.url("/assignments/lab"))?;
    assert_eq!(path_of(&wd.current_url()?), "/login");

    // A wrong password: an error, no session.
    login(&wd, &course, STAFF, "not-the-password-at-all")?;
    wd.wait_for("#error", NET)?;
    assert!(wd.cookies()?.iter().all(|c| c.name != "certboard_staff"));

    login(&wd, &course, STAFF, PASSWORD)?;
    wd.wait_for("#counts", NET)?;
    assert_eq!(path_of(&wd.current_url()?), "/");
    let cookies = wd.cookies()?;
    let session = cookies
        .iter()
        .find(|c| c.name == "certboard_staff")
        .ok_or("no session cookie")?;
    assert!(session.http_only, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Strict"), "{session:?}");
    assert!(
        !session.secure,
        "Secure without --staff-secure-cookie: {session:?}"
    );
    assert!(
        session.expiry.is_some(),
        "the session cookie never expires: {session:?}"
    );

    // The overview: counts, the lab's row, the chart.
    let count = |k: &str| -> Result<String, Box<dyn std::error::Error>> {
        let row = wd.find(&format!("#counts [data-count={k}]"))?;
        let cells = wd.find_all(&format!("#counts [data-count={k}] td"))?;
        Ok(match cells.last() {
            Some(c) => wd.text(c)?,
            None => wd.text(&row)?,
        })
    };
    assert_eq!(count("enrolled")?, "2");
    assert_eq!(count("not-enrolled")?, "1");
    assert_eq!(count("locked")?, "0");
    let lab = wd.find("#assignments tr[data-assignment=lab]")?;
    assert_eq!(cell(&wd, &lab, "on-time")?, "1");
    assert_eq!(cell(&wd, &lab, "late")?, "0");
    assert_eq!(cell(&wd, &lab, "missing")?, "2");
    assert!(wd.exists("svg#timeline")?);
    assert_inert(&wd)?;
    save_screenshot("staff-overview.png", &wd.screenshot_full()?)?;

    // The assignment's table: who handed in what.
    wd.click(&wd.find_in(&lab, "a[href='/assignments/lab']")?)?;
    wd.wait_for("#roster", NET)?;
    assert_eq!(path_of(&wd.current_url()?), "/assignments/lab");
    assert_eq!(wd.find_all("#roster tr[data-sid]")?.len(), 3);
    let row = wd.find("#roster tr[data-sid='1155000001']")?;
    assert_eq!(
        wd.attribute(&row, "data-status")?.as_deref(),
        Some("on-time")
    );
    assert_eq!(cell(&wd, &row, "name")?, "Chan Tai Man");
    assert_eq!(cell(&wd, &row, "sha256")?, sha256_hex(&report));
    let missing = wd.find("#roster tr[data-sid='1155000003']")?;
    assert_eq!(
        wd.attribute(&missing, "data-status")?.as_deref(),
        Some("missing")
    );
    save_screenshot("staff-assignment.png", &wd.screenshot_full()?)?;

    // Filters, as in Moodle's grading table.
    wd.goto(&course.url("/assignments/lab?filter=not-submitted"))?;
    let sids: Vec<String> = wd
        .find_all("#roster tr[data-sid]")?
        .iter()
        .map(|r| wd.attribute(r, "data-sid").map(Option::unwrap_or_default))
        .collect::<Result<_, _>>()?;
    assert_eq!(sids, ["1155000002", "1155000003"]);
    wd.click(&wd.find("#filter-late")?)?;
    wd.wait_for("#roster", NET)?;
    assert!(wd.current_url()?.contains("filter=late"));
    assert!(wd.find_all("#roster tr[data-sid]")?.is_empty());

    // The download, by the browser, is her file byte for byte...
    wd.goto(&course.url("/assignments/lab"))?;
    wd.click(&wd.find("#roster tr[data-sid='1155000001'] a.download")?)?;
    let got = wd.wait_download("report.bin", NET)?;
    assert_eq!(sha256_hex(&got), sha256_hex(&report));
    // ...sent as an attachment the browser must not sniff.
    let resp = course.request(&wd, "GET", "/assignments/lab/files/1155000001", &[])?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, report);
    assert_eq!(
        resp.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    let disposition = resp.header("content-disposition").unwrap_or_default();
    assert!(
        disposition.starts_with("attachment; filename=\"report.bin\""),
        "{disposition}"
    );
    // The CSV export of the table.
    let csv = course.request(&wd, "GET", "/assignments/lab/export.csv", &[])?;
    assert_eq!(csv.status, 200);
    let csv = csv.text();
    assert!(
        csv.contains("1155000001") && csv.contains(&sha256_hex(&report)),
        "{csv}"
    );

    // An extension for 1155000002, from her page.
    let until = (now + 3 * 86_400) / 60 * 60;
    wd.goto(&course.url("/students/1155000002"))?;
    wd.wait_for("form#extension", NET)?;
    fill(&wd, "#extension [name=assignment]", "lab")?;
    let value = time_for(&wd, "#extension [name=until]", until)?;
    fill(&wd, "#extension [name=until]", &value)?;
    submit_and_leave(&wd, "#extension")?;
    wd.wait_for("#certs", NET)?;
    assert_eq!(path_of(&wd.current_url()?), "/students/1155000002");
    assert_eq!(
        course.standing("lab")?["1155000002"]["extension_until"],
        serde_json::json!(rfc3339(until))
    );
    wd.goto(&course.url("/assignments/lab?filter=extension"))?;
    let with_extension = wd.find_all("#roster tr[data-sid]")?;
    assert_eq!(with_extension.len(), 1);
    assert_eq!(
        wd.attribute(&with_extension[0], "data-sid")?.as_deref(),
        Some("1155000002")
    );

    // The lab's due time moved.
    let due = (now + 2 * 86_400) / 60 * 60;
    wd.goto(&course.url("/assignments/lab"))?;
    let value = time_for(&wd, "#move-due [name=due]", due)?;
    fill(&wd, "#move-due [name=due]", &value)?;
    submit(&wd, "#move-due")?;
    wd.wait_for("#roster", NET)?;
    let list: serde_json::Value =
        serde_json::from_str(&course.admin(&["assignment", "list", "--format", "json"])?)?;
    let lab_due = list["assignments"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == "lab"))
        .map(|a| a["due"].clone());
    assert_eq!(lab_due, Some(serde_json::json!(rfc3339(due))));

    // Revoking her certificate takes a confirmation; OCSP says so at once.
    assert!(course.ocsp("1155000001")?.contains(": good"));
    wd.goto(&course.url("/students/1155000001"))?;
    let cert = wd.find("#certs tr[data-status=good]")?;
    let serial = wd
        .attribute(&cert, "data-serial")?
        .ok_or("no data-serial")?;
    fill(&wd, "#revoke [name=serial]", &serial)?;
    fill(&wd, "#revoke [name=reason]", "keyCompromise")?;
    submit(&wd, "#revoke")?;
    wd.wait_for("#confirm-revoke", NET)?;
    // Not yet: only the confirmation revokes.
    assert!(course.ocsp("1155000001")?.contains(": good"));
    wd.click(&wd.find("#confirm")?)?;
    wd.wait_for("#certs", NET)?;
    assert_eq!(path_of(&wd.current_url()?), "/students/1155000001");
    let row = wd.find(&format!("#certs tr[data-serial='{serial}']"))?;
    assert_eq!(
        wd.attribute(&row, "data-status")?.as_deref(),
        Some("revoked")
    );
    let said = course.ocsp("1155000001")?;
    assert!(said.contains(": revoked"), "{said}");
    assert!(said.contains("Reason: keyCompromise"), "{said}");

    // A new code for 1155000003, shown once, that enrolls her.
    wd.goto(&course.url("/students/1155000003"))?;
    submit(&wd, "#reissue-code")?;
    let code = wd.text(&wd.wait_for("#new-code", NET)?)?;
    assert!(!code.trim().is_empty());
    std::fs::write(course.path("code.txt"), code.trim())?;
    course.client(&["--code-file", "code.txt", "enroll", "1155000003"])?;
    wd.goto(&course.url("/students/1155000003"))?;
    assert!(!wd.exists("#new-code")?, "the code is shown again");
    assert!(wd.exists("#certs tr[data-status=good]")?);

    // A roster CSV uploaded through the file input.
    let upload = course.path("new-roster.csv");
    std::fs::write(
        &upload,
        format!("{ROSTER}1155000009,Ho Ka Yan,d@example.edu\n"),
    )?;
    wd.goto(&course.url("/roster"))?;
    assert_eq!(wd.find_all("#roster tr[data-sid]")?.len(), 3);
    wd.send_keys(
        &wd.find("#import input[type=file]")?,
        &upload.to_string_lossy(),
    )?;
    wd.click(&wd.find("#upload")?)?;
    wd.wait_for("#import-result", NET)?;
    wd.goto(&course.url("/roster"))?;
    let added = wd.find("#roster tr[data-sid='1155000009']")?;
    assert!(wd.text(&added)?.contains("Ho Ka Yan"));

    // Dropping 1155000002: off the lab's table.
    wd.goto(&course.url("/students/1155000002"))?;
    submit_and_leave(&wd, "#drop")?;
    wd.wait_for("#certs", NET)?;
    assert!(!course.standing("lab")?.contains_key("1155000002"));

    // Every action is in the audit log, with who did it.
    wd.goto(&course.url("/audit"))?;
    for action in [
        "login",
        "extension",
        "due",
        "revoke",
        "code",
        "import",
        "drop",
    ] {
        let rows = wd.find_all(&format!("#audit tr[data-action={action}]"))?;
        let row = rows
            .first()
            .ok_or(format!("no {action} in the audit log"))?;
        assert!(wd.text(row)?.contains(STAFF), "{action}");
    }
    assert_inert(&wd)?;

    // Logging out ends the session: the old cookie opens nothing.
    let old = session_cookie(&wd)?;
    wd.click(&wd.find("#logout")?)?;
    wd.wait_for("#login-form", NET)?;
    assert_eq!(path_of(&wd.current_url()?), "/login");
    wd.goto(&course.url("/roster"))?;
    assert_eq!(path_of(&wd.current_url()?), "/login");
    let resp = http_request(course.staff, "GET", "/", &[("Cookie", &old)], &[], NET)?;
    assert_eq!(resp.status, 303);
    assert_eq!(resp.header("location"), Some("/login"));
    Ok(())
}

#[test]
fn a_post_without_the_csrf_token_is_refused_and_changes_nothing() -> TestResult {
    let course = Course::start(ROSTER, &[])?;
    course.client(&["--codes-file", "codes.csv", "enroll", "1155000001"])?;
    let wd = WebDriver::start()?;
    login(&wd, &course, STAFF, PASSWORD)?;
    wd.wait_for("#counts", NET)?;
    wd.goto(&course.url("/students/1155000001"))?;
    let cert = wd.find("#certs tr[data-status=good]")?;
    let serial = wd
        .attribute(&cert, "data-serial")?
        .ok_or("no data-serial")?;
    let token = csrf(&wd)?;
    let revoke = [
        ("serial", serial.as_str()),
        ("reason", "keyCompromise"),
        ("confirm", "yes"),
    ];
    let path = "/students/1155000001/revoke";
    for with in [None, Some("0".repeat(token.len())), Some(String::new())] {
        let mut form = revoke.to_vec();
        if let Some(t) = &with {
            form.push(("csrf", t));
        }
        let resp = course.request(&wd, "POST", path, &form)?;
        assert_eq!(resp.status, 403, "csrf {with:?}: {}", resp.text());
        assert!(resp.text().contains("id=\"error\""), "{}", resp.text());
        assert!(
            course.ocsp("1155000001")?.contains(": good"),
            "revoked without a token"
        );
    }
    let ext = [("assignment", "lab"), ("until", "2030-01-01T00:00:00Z")];
    let resp = course.request(&wd, "POST", "/students/1155000001/extension", &ext)?;
    assert_eq!(resp.status, 403);
    assert_eq!(
        course.standing("lab")?["1155000001"]["extension_until"],
        serde_json::Value::Null
    );
    // Another session's token is no better.
    let other = WebDriver::start()?;
    login(&other, &course, STAFF, PASSWORD)?;
    other.wait_for("#counts", NET)?;
    let theirs = csrf(&other)?;
    assert_ne!(theirs, token, "two sessions share a token");
    let mut form = revoke.to_vec();
    form.push(("csrf", &theirs));
    assert_eq!(course.request(&wd, "POST", path, &form)?.status, 403);
    assert!(course.ocsp("1155000001")?.contains(": good"));

    // The same request with her token does what it says (so the 403s
    // above were the token's doing).
    let mut form = revoke.to_vec();
    form.push(("csrf", &token));
    let resp = course.request(&wd, "POST", path, &form)?;
    assert_eq!(resp.status, 303, "{}", resp.text());
    assert!(course.ocsp("1155000001")?.contains(": revoked"));
    Ok(())
}

#[test]
fn hostile_names_are_shown_as_text_and_run_no_script() -> TestResult {
    let script = "<script>window.pwned=1</script>";
    let img = "<img src=x onerror=\"window.pwned=2\">";
    let roster = format!(
        "sid,name,email\n1155000001,{script},a@example.edu\n\
         1155000002,\"<img src=x onerror=\"\"window.pwned=2\"\">\",b@example.edu\n"
    );
    let course = Course::start(&roster, &[])?;
    // A file name with markup too.
    let hostile_file = "<img src=x onerror=window.pwned=3>.txt";
    std::fs::write(course.path(hostile_file), "hello\n")?;
    course.client(&[
        "--codes-file",
        "codes.csv",
        "submit",
        "--assignment",
        "lab",
        "--file",
        hostile_file,
        "1155000001",
    ])?;

    let wd = WebDriver::start()?;
    login(&wd, &course, STAFF, PASSWORD)?;
    wd.wait_for("#counts", NET)?;
    assert_inert(&wd)?;
    for page in ["/roster", "/assignments/lab"] {
        wd.goto(&course.url(page))?;
        wd.wait_for("#roster", NET)?;
        assert_inert(&wd)?;
        let one = wd.find("#roster tr[data-sid='1155000001']")?;
        assert!(
            wd.text(&one)?.contains(script),
            "{page}: {}",
            wd.text(&one)?
        );
        let two = wd.find("#roster tr[data-sid='1155000002']")?;
        assert!(wd.text(&two)?.contains(img), "{page}: {}", wd.text(&two)?);
    }
    wd.goto(&course.url("/students/1155000001"))?;
    wd.wait_for("#submissions", NET)?;
    assert_inert(&wd)?;
    assert!(wd.text(&wd.find("body")?)?.contains(script));
    assert!(wd.text(&wd.find("#submissions")?)?.contains(hostile_file));
    wd.goto(&course.url("/students/1155000002"))?;
    assert_inert(&wd)?;

    // The policy that would stop a script the escaping missed.
    let resp = course.request(&wd, "GET", "/roster", &[])?;
    let csp = resp.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    // The download names the file without its markup's quotes breaking out.
    let resp = course.request(&wd, "GET", "/assignments/lab/files/1155000001", &[])?;
    let disposition = resp.header("content-disposition").unwrap_or_default();
    // attachment; filename="ASCII"; filename*=UTF-8''PCT: the quoted
    // name ends where it should, the encoded one holds no markup.
    let rest = disposition
        .strip_prefix("attachment; filename=\"")
        .ok_or(format!("not an attachment: {disposition}"))?;
    let (ascii, rest) = rest.split_once('"').ok_or(disposition.to_string())?;
    assert!(
        ascii.is_ascii() && !ascii.contains(['\\', '\r', '\n']),
        "{disposition}"
    );
    let encoded = rest
        .strip_prefix("; filename*=UTF-8''")
        .ok_or(format!("no filename* in {disposition}"))?;
    assert!(
        !encoded.contains(['<', '>', '"', ' ', ';']),
        "{disposition}"
    );
    assert!(encoded.contains("%3C"), "{disposition}");
    Ok(())
}
