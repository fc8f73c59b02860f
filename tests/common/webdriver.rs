//! A small synchronous W3C WebDriver client for the browser tests: Debian's
//! `chromedriver` driving Debian's `chromium` headless, spoken to over
//! plain HTTP/1.1 on loopback with `std::net` and `serde_json`.
//!
//! Why not a crate: the WebDriver crates are async (tokio) or fetch a
//! browser of their own; the dozen commands the tests need are one JSON
//! request each. Every step is bounded (connect, read, the driver's start,
//! the browser's page load and script timeouts), so a stuck browser fails a
//! test instead of hanging CI.
//!
//! Included by the tests that use it with
//! `#[path = "common/webdriver.rs"] mod webdriver;`.

#![allow(dead_code, unreachable_pub)]

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Where Debian puts them (`scripts/install-test-tools.sh` installs them);
/// the environment variables point elsewhere on another system.
pub fn chromedriver_path() -> PathBuf {
    std::env::var_os("CERTBOARD_CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

pub fn chromium_path() -> PathBuf {
    std::env::var_os("CERTBOARD_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// The W3C name of an element reference in JSON.
pub const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one driver command may take, page loads included.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the driver may take to answer `/status` as ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong talking to the driver.
#[derive(Debug)]
pub enum WebDriverError {
    /// The driver or browser binary is not there.
    Missing(PathBuf),
    /// Starting the driver or a session failed; the driver's log is kept.
    Start {
        why: String,
        log: String,
    },
    Io(std::io::Error),
    /// The driver's answer was not HTTP/JSON as the protocol says.
    Protocol(String),
    /// A WebDriver error answer (e.g. `no such element`).
    Command {
        command: String,
        status: u16,
        error: String,
        message: String,
    },
    /// [`WebDriver::wait_for`] gave up.
    Timeout(String),
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(p) => write!(
                f,
                "{} is missing: run `sudo bash scripts/install-test-tools.sh`",
                p.display()
            ),
            Self::Start { why, log } => write!(f, "chromedriver did not start: {why}\n{log}"),
            Self::Io(e) => write!(f, "talking to chromedriver: {e}"),
            Self::Protocol(s) => write!(f, "chromedriver's answer: {s}"),
            Self::Command {
                command,
                status,
                error,
                message,
            } => write!(f, "{command}: {status} {error}: {message}"),
            Self::Timeout(s) => write!(f, "timed out: {s}"),
        }
    }
}

impl std::error::Error for WebDriverError {}

impl From<std::io::Error> for WebDriverError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// An HTTP/1.1 answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case, in order, repeated ones kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`), read
/// to the end within `timeout`. `headers` are extra lines (name, value);
/// Host and Content-Length are added. Also what the tests use to speak to
/// the staff listener the way a browser would not (no CSRF token, a
/// download with the browser's cookie).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, WebDriverError> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WebDriverError::Timeout(format!(
                "{method} {path} on {addr}"
            )));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                // chromedriver keeps the connection open despite
                // `Connection: close`: stop at the announced end.
                if let Some(resp) = complete_response(&raw) {
                    return Ok(resp);
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Err(WebDriverError::Timeout(format!(
                    "{method} {path} on {addr}"
                )));
            }
            // A server that answers and closes while our body is unread
            // may reset the connection after its answer: keep what came.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !raw.is_empty() => break,
            Err(e) => return Err(e.into()),
        }
    }
    parse_response(&raw)
}

/// The answer in `raw` if it is all there by its Content-Length or its
/// last chunk.
fn complete_response(raw: &[u8]) -> Option<HttpResponse> {
    let mut header_buf = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut header_buf);
    let head_len = match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let mut length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
        if h.name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().ok();
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
            chunked = true;
        }
    }
    let done = if chunked {
        dechunk(&raw[head_len..]).is_ok()
    } else {
        length.is_some_and(|len| raw.len() >= head_len + len)
    };
    if done {
        parse_response(raw).ok()
    } else {
        None
    }
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, WebDriverError> {
    let mut header_buf = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut header_buf);
    let head_len = match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(WebDriverError::Protocol(format!(
                "truncated answer: {:?}",
                String::from_utf8_lossy(raw)
            )))
        }
        Err(e) => return Err(WebDriverError::Protocol(format!("bad HTTP answer: {e}"))),
    };
    let status = resp.code.unwrap_or(0);
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let rest = &raw[head_len..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
    {
        rest.get(..len)
            .ok_or_else(|| {
                WebDriverError::Protocol(format!("body of {} bytes, {len} announced", rest.len()))
            })?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, WebDriverError> {
    let bad = || WebDriverError::Protocol("bad chunked body".into());
    let mut out = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| bad())?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(rest.get(..size).ok_or_else(bad)?);
        rest = rest.get(size + 2..).ok_or_else(bad)?;
    }
}

/// A port that was free a moment ago (the driver wants a number, not a
/// listening socket).
pub fn free_port() -> std::io::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A cookie as the browser holds it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub secure: bool,
    #[serde(default, rename = "httpOnly")]
    pub http_only: bool,
    #[serde(default, rename = "sameSite")]
    pub same_site: Option<String>,
    /// Seconds since the epoch; absent for a session cookie.
    #[serde(default)]
    pub expiry: Option<u64>,
}

/// An element reference of the current page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(pub String);

/// How the browser is started.
#[derive(Debug, Default, Clone)]
pub struct BrowserOptions {
    /// Accept a certificate the browser does not trust (the proxy test's
    /// own throwaway certificate).
    pub accept_insecure_certs: bool,
}

/// A chromedriver process and one browser session; both end on drop.
#[derive(Debug)]
pub struct WebDriver {
    driver: Child,
    addr: SocketAddr,
    session: String,
    /// The browser's profile, the driver's log and the downloads.
    dir: tempfile::TempDir,
}

impl WebDriver {
    /// Starts chromedriver and a headless Chromium session.
    pub fn start() -> Result<WebDriver, WebDriverError> {
        Self::start_with(&BrowserOptions::default())
    }

    pub fn start_with(options: &BrowserOptions) -> Result<WebDriver, WebDriverError> {
        let driver_bin = chromedriver_path();
        let browser_bin = chromium_path();
        for p in [&driver_bin, &browser_bin] {
            if !p.exists() {
                return Err(WebDriverError::Missing(p.clone()));
            }
        }
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("profile"))?;
        std::fs::create_dir(dir.path().join("downloads"))?;
        // The port is free when chosen, not necessarily when the driver
        // binds it: a few tries with fresh ports.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let log = std::fs::File::create(dir.path().join("chromedriver.log"))?;
            let mut driver = Command::new(&driver_bin)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?;
            match wait_ready(addr, &mut driver) {
                Ok(()) => {
                    let mut wd = WebDriver {
                        driver,
                        addr,
                        session: String::new(),
                        dir,
                    };
                    wd.new_session(&browser_bin, options)?;
                    return Ok(wd);
                }
                Err(why) => {
                    let _ = driver.kill();
                    let _ = driver.wait();
                    last = why.to_string();
                }
            }
        }
        Err(WebDriverError::Start {
            why: last,
            log: std::fs::read_to_string(dir.path().join("chromedriver.log")).unwrap_or_default(),
        })
    }

    fn new_session(
        &mut self,
        browser_bin: &Path,
        options: &BrowserOptions,
    ) -> Result<(), WebDriverError> {
        let profile = self.dir.path().join("profile");
        let downloads = self.dir.path().join("downloads");
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "acceptInsecureCerts": options.accept_insecure_certs,
                    "pageLoadStrategy": "normal",
                    "timeouts": {"implicit": 0, "pageLoad": 30000, "script": 10000},
                    "goog:chromeOptions": {
                        "binary": browser_bin.to_string_lossy(),
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-quic",
                            "--no-first-run",
                            "--no-default-browser-check",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--disable-dev-shm-usage",
                            format!("--user-data-dir={}", profile.display()),
                            "--window-size=1280,900",
                        ],
                        "prefs": {
                            "download.default_directory": downloads.to_string_lossy(),
                            "download.prompt_for_download": false,
                            "download.directory_upgrade": true,
                            "safebrowsing.enabled": false,
                        },
                    },
                },
            },
        });
        let v = self
            .call("POST", "/session", Some(&caps), "new session")
            .map_err(|e| WebDriverError::Start {
                why: e.to_string(),
                log: self.driver_log(),
            })?;
        self.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| WebDriverError::Protocol(format!("no sessionId in {v}")))?
            .to_string();
        Ok(())
    }

    /// What chromedriver wrote so far (for failure messages).
    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// Where the browser saves downloads.
    pub fn download_dir(&self) -> PathBuf {
        self.dir.path().join("downloads")
    }

    /// One command; the answer's `value`.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value, WebDriverError> {
        let bytes = match body {
            Some(b) => {
                serde_json::to_vec(b).map_err(|e| WebDriverError::Protocol(e.to_string()))?
            }
            None => Vec::new(),
        };
        let headers: &[(&str, &str)] = if body.is_some() {
            &[("Content-Type", "application/json; charset=utf-8")]
        } else {
            &[]
        };
        let resp = http_request(self.addr, method, path, headers, &bytes, COMMAND_TIMEOUT)?;
        let v: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| WebDriverError::Protocol(format!("{what}: {e}: {}", resp.text())))?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if resp.status != 200 {
            return Err(WebDriverError::Command {
                command: what.to_string(),
                status: resp.status,
                error: value["error"].as_str().unwrap_or("?").to_string(),
                message: value["message"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            });
        }
        Ok(value)
    }

    fn session_call(
        &self,
        method: &str,
        rest: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value, WebDriverError> {
        let path = format!("/session/{}{rest}", self.session);
        self.call(method, &path, body, what)
    }

    /// Navigates and waits for the page's load.
    pub fn goto(&self, url: &str) -> Result<(), WebDriverError> {
        self.session_call(
            "POST",
            "/url",
            Some(&json!({ "url": url })),
            &format!("goto {url}"),
        )?;
        Ok(())
    }

    pub fn current_url(&self) -> Result<String, WebDriverError> {
        let v = self.session_call("GET", "/url", None, "current url")?;
        as_string(v, "current url")
    }

    pub fn title(&self) -> Result<String, WebDriverError> {
        let v = self.session_call("GET", "/title", None, "title")?;
        as_string(v, "title")
    }

    pub fn find(&self, css: &str) -> Result<Element, WebDriverError> {
        let v = self.session_call(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
            &format!("find {css}"),
        )?;
        element(&v)
    }

    pub fn find_all(&self, css: &str) -> Result<Vec<Element>, WebDriverError> {
        let v = self.session_call(
            "POST",
            "/elements",
            Some(&json!({"using": "css selector", "value": css})),
            &format!("find all {css}"),
        )?;
        v.as_array()
            .ok_or_else(|| WebDriverError::Protocol(format!("find all {css}: {v}")))?
            .iter()
            .map(element)
            .collect()
    }

    /// An element under `parent`.
    pub fn find_in(&self, parent: &Element, css: &str) -> Result<Element, WebDriverError> {
        let v = self.session_call(
            "POST",
            &format!("/element/{}/element", parent.0),
            Some(&json!({"using": "css selector", "value": css})),
            &format!("find {css} in an element"),
        )?;
        element(&v)
    }

    /// Whether the page has an element for `css` now.
    pub fn exists(&self, css: &str) -> Result<bool, WebDriverError> {
        Ok(!self.find_all(css)?.is_empty())
    }

    /// Waits (bounded) until an element for `css` exists.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element, WebDriverError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.find_all(css)?.into_iter().next() {
                return Ok(e);
            }
            if Instant::now() >= deadline {
                return Err(WebDriverError::Timeout(format!(
                    "no {css} on {}",
                    self.current_url().unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn click(&self, e: &Element) -> Result<(), WebDriverError> {
        self.session_call(
            "POST",
            &format!("/element/{}/click", e.0),
            Some(&json!({})),
            "click",
        )?;
        Ok(())
    }

    /// Types `text` into the element; for `<input type=file>`, a path.
    pub fn send_keys(&self, e: &Element, text: &str) -> Result<(), WebDriverError> {
        self.session_call(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(&json!({ "text": text })),
            "send keys",
        )?;
        Ok(())
    }

    pub fn clear(&self, e: &Element) -> Result<(), WebDriverError> {
        self.session_call(
            "POST",
            &format!("/element/{}/clear", e.0),
            Some(&json!({})),
            "clear",
        )?;
        Ok(())
    }

    /// The element's rendered text.
    pub fn text(&self, e: &Element) -> Result<String, WebDriverError> {
        let v = self.session_call("GET", &format!("/element/{}/text", e.0), None, "text")?;
        as_string(v, "text")
    }

    /// An attribute as written in the markup (None when absent).
    pub fn attribute(&self, e: &Element, name: &str) -> Result<Option<String>, WebDriverError> {
        let v = self.session_call(
            "GET",
            &format!("/element/{}/attribute/{name}", e.0),
            None,
            "attribute",
        )?;
        Ok(v.as_str().map(str::to_string))
    }

    /// A DOM property (e.g. `value`, `checked`).
    pub fn property(&self, e: &Element, name: &str) -> Result<Value, WebDriverError> {
        self.session_call(
            "GET",
            &format!("/element/{}/property/{name}", e.0),
            None,
            "property",
        )
    }

    /// Runs `script` (a function body; `return` gives the value) in the
    /// page, synchronously. Driver scripts are not subject to the page's
    /// Content-Security-Policy, which is what lets a test look for a
    /// hostile script's side effect on a page that allows no script.
    pub fn execute(&self, script: &str, args: &[Value]) -> Result<Value, WebDriverError> {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
            "execute script",
        )
    }

    pub fn page_source(&self) -> Result<String, WebDriverError> {
        let v = self.session_call("GET", "/source", None, "page source")?;
        as_string(v, "page source")
    }

    /// The cookies the browser holds for the current page.
    pub fn cookies(&self) -> Result<Vec<Cookie>, WebDriverError> {
        let v = self.session_call("GET", "/cookie", None, "cookies")?;
        serde_json::from_value(v).map_err(|e| WebDriverError::Protocol(format!("cookies: {e}")))
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Result<Vec<u8>, WebDriverError> {
        let v = self.session_call("GET", "/screenshot", None, "screenshot")?;
        let b64 = as_string(v, "screenshot")?;
        openssl::base64::decode_block(&b64)
            .map_err(|e| WebDriverError::Protocol(format!("screenshot base64: {e}")))
    }

    /// A PNG of the whole page: the window is made as tall as the page
    /// first (capped), since W3C screenshots are of the viewport.
    pub fn screenshot_full(&self) -> Result<Vec<u8>, WebDriverError> {
        let h = self
            .execute(
                "return Math.ceil(document.documentElement.scrollHeight);",
                &[],
            )?
            .as_u64()
            .unwrap_or(900)
            .clamp(300, 4000);
        self.session_call(
            "POST",
            "/window/rect",
            Some(&json!({"width": 1280, "height": h + 120})),
            "window size",
        )?;
        let png = self.screenshot();
        self.session_call(
            "POST",
            "/window/rect",
            Some(&json!({"width": 1280, "height": 900})),
            "window size",
        )?;
        png
    }

    /// Waits (bounded) for a finished download named `name` in
    /// [`Self::download_dir`] and returns its bytes.
    pub fn wait_download(&self, name: &str, timeout: Duration) -> Result<Vec<u8>, WebDriverError> {
        let path = self.download_dir().join(name);
        let deadline = Instant::now() + timeout;
        loop {
            // Chromium writes `name.crdownload` and renames it when done.
            if path.exists() {
                return Ok(std::fs::read(&path)?);
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = std::fs::read_dir(self.download_dir())?
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                return Err(WebDriverError::Timeout(format!(
                    "download {name}; the download dir holds {seen:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = http_request(
                self.addr,
                "DELETE",
                &path,
                &[],
                &[],
                Duration::from_secs(10),
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn as_string(v: Value, what: &str) -> Result<String, WebDriverError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(WebDriverError::Protocol(format!(
            "{what}: not a string: {other}"
        ))),
    }
}

fn element(v: &Value) -> Result<Element, WebDriverError> {
    v.get(ELEMENT_KEY)
        .and_then(Value::as_str)
        .map(|s| Element(s.to_string()))
        .ok_or_else(|| WebDriverError::Protocol(format!("not an element reference: {v}")))
}

/// The SHA-256 of `data`, lower-case hex (as the staff pages show it).
pub fn sha256_hex(data: &[u8]) -> String {
    openssl::sha::sha256(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Polls the driver's `/status` until it says ready, it exits, or
/// [`START_TIMEOUT`] passes.
fn wait_ready(addr: SocketAddr, driver: &mut Child) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = driver.try_wait() {
            return Err(format!("chromedriver exited: {status}").into());
        }
        if let Ok(resp) = http_request(addr, "GET", "/status", &[], &[], Duration::from_secs(5)) {
            let ready = serde_json::from_slice::<Value>(&resp.body)
                .map(|v| v["value"]["ready"] == Value::Bool(true))
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("not ready on {addr} after {START_TIMEOUT:?}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
