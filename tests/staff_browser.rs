//! The staff web interface (issue 23) in a real browser: Debian's headless
//! Chromium driven over WebDriver (tests/common/webdriver.rs) against the
//! real server binary's `--staff-listen` listener. The element ids and URLs
//! are the contract in the notes (docs/staff.md lists them).

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::TestResult;
use webdriver::{http_request, sha256_hex, WebDriver};

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
    let status = if content == b"not found" { "404 Not Found" } else { "200 OK" };
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
    assert_eq!(wd.execute("return window.pwned;", &[])?, serde_json::json!(1));
    // ...and with one the same page's inline script does not run.
    wd.goto(&format!("http://{site}/csp"))?;
    assert_eq!(
        wd.execute("return typeof window.pwned;", &[])?,
        serde_json::json!("undefined")
    );

    let cookies = wd.cookies()?;
    let t = cookies.iter().find(|c| c.name == "t").ok_or("no cookie t")?;
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
