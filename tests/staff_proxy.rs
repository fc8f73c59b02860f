//! deploy/nginx-staff.conf as CI runs it (issue 23): Debian's nginx as a
//! throwaway instance terminating TLS in front of the server's staff
//! listener, the committed file with only its ports, certificate paths and
//! upstream substituted; a staff member's login, overview and logout by
//! curl through it, the session cookie marked Secure.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{text, TestResult, TestServer};

const CONF: &str = include_str!("../deploy/nginx-staff.conf");
const HOST: &str = "staff.example.edu";
const NGINX: &str = "/usr/sbin/nginx";

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `from` replaced by `to` in `conf`, where `from` must occur exactly
/// `times` times: a renamed line in the committed file fails the test
/// instead of leaving a production value in the tested config.
fn substitute(
    conf: &str,
    from: &str,
    to: &str,
    times: usize,
) -> Result<String, Box<dyn std::error::Error>> {
    let n = conf.matches(from).count();
    if n != times {
        return Err(format!(
            "deploy/nginx-staff.conf has `{from}` {n} time(s), the test expects {times}"
        )
        .into());
    }
    Ok(conf.replace(from, to))
}

/// A throwaway nginx, killed on drop.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    https: SocketAddr,
    http: SocketAddr,
}

impl Nginx {
    /// deploy/nginx-staff.conf in front of `upstream`, with a fresh
    /// self-signed certificate for [`HOST`].
    fn start(upstream: SocketAddr) -> Result<Nginx, Box<dyn std::error::Error>> {
        if !Path::new(NGINX).exists() {
            return Err(format!(
                "{NGINX} is missing: run `sudo bash scripts/install-test-tools.sh`"
            )
            .into());
        }
        let dir = tempfile::tempdir()?;
        // Run as root (CI), nginx's workers drop to `nobody`: they must be
        // able to reach the temporary directories nginx makes in here.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        }
        let cert = dir.path().join("staff.pem");
        let key = dir.path().join("staff.key");
        let out = Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-days", "2"])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
            .args(["-subj", &format!("/CN={HOST}")])
            .args(["-addext", &format!("subjectAltName=DNS:{HOST}")])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()?;
        assert!(out.status.success(), "{}", text(&out));

        let https_port = free_port()?;
        let http_port = free_port()?;
        let mut conf = CONF.to_string();
        conf = substitute(
            &conf,
            "listen 443 ssl http2;",
            &format!("listen 127.0.0.1:{https_port} ssl http2;"),
            1,
        )?;
        conf = substitute(&conf, "listen [::]:443 ssl http2;", "", 1)?;
        conf = substitute(
            &conf,
            "listen 80;",
            &format!("listen 127.0.0.1:{http_port};"),
            1,
        )?;
        conf = substitute(&conf, "listen [::]:80;", "", 1)?;
        conf = substitute(
            &conf,
            "/etc/ssl/certs/staff.example.edu.pem;",
            &format!("{};", cert.display()),
            1,
        )?;
        conf = substitute(
            &conf,
            "/etc/ssl/private/staff.example.edu.key;",
            &format!("{};", key.display()),
            1,
        )?;
        conf = substitute(
            &conf,
            "proxy_pass http://127.0.0.1:8090;",
            &format!("proxy_pass http://{upstream};"),
            1,
        )?;
        std::fs::write(dir.path().join("staff.conf"), conf)?;

        // What Debian's /etc/nginx/nginx.conf gives the sites, with every
        // path nginx writes inside the temporary directory.
        let d = dir.path().display();
        let main = format!(
            "worker_processes 1;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
             default_type application/octet-stream;\n\
             access_log {d}/access.log;\n\
             client_body_temp_path {d}/client_body;\n\
             proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             include {d}/staff.conf;\n\
             }}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main)?;
        let error_log = dir.path().join("error.log");
        let globals = format!(
            "daemon off; pid {d}/nginx.pid; error_log {} info;",
            error_log.display()
        );
        let test = Command::new(NGINX)
            .arg("-t")
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", &globals])
            .output()?;
        assert!(test.status.success(), "nginx -t: {}", text(&test));
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", &globals])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut nginx = Nginx {
            child,
            dir,
            https: ([127, 0, 0, 1], https_port).into(),
            http: ([127, 0, 0, 1], http_port).into(),
        };
        nginx.wait_listening()?;
        Ok(nginx)
    }

    fn wait_listening(&mut self) -> TestResult {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("nginx exited ({status}): {}", self.error_log()).into());
            }
            let up = |a: &SocketAddr| TcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok();
            if up(&self.https) && up(&self.http) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("nginx is not listening: {}", self.error_log()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("staff.pem")
    }

    /// curl through this nginx by the staff host's name, trusting only the
    /// test's certificate; `-i`: the answer's head, then its body.
    fn curl(&self, jar: &Path, args: &[&str]) -> Result<Answer, Box<dyn std::error::Error>> {
        let out = Command::new("curl")
            .args(["-sS", "-i", "--max-time", "20"])
            .args([
                "--resolve",
                &format!("{HOST}:{}:127.0.0.1", self.https.port()),
            ])
            .arg("--cacert")
            .arg(self.cert())
            .arg("-c")
            .arg(jar)
            .arg("-b")
            .arg(jar)
            .args(args)
            .output()?;
        Answer::parse(&out)
    }

    fn url(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.https.port())
    }
}

impl Drop for Nginx {
    /// SIGTERM, so that the master stops its workers (a SIGKILLed master
    /// leaves them running, still listening); SIGKILL if it is not gone
    /// within a few seconds.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response as curl -i printed it.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn parse(out: &Output) -> Result<Answer, Box<dyn std::error::Error>> {
        if !out.status.success() {
            return Err(format!("curl: {}", text(out)).into());
        }
        let all = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = all.split_once("\r\n\r\n").ok_or("no head")?;
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or("no status line")?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Ok(Answer {
            status,
            headers,
            body: body.to_string(),
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// An upstream that answers every request with the request's head as its
/// body, and a cookie: what nginx passes on, seen from the server's side.
fn echo_upstream() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Set-Cookie: s=1; Path=/; HttpOnly\r\nConnection: close\r\n\r\n",
                raw.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&raw);
        }
    });
    Ok(addr)
}

#[test]
fn the_committed_nginx_config_terminates_tls_and_passes_the_client_on() -> TestResult {
    let upstream = echo_upstream()?;
    let nginx = Nginx::start(upstream)?;
    let dir = tempfile::tempdir()?;
    let jar = dir.path().join("jar");

    let a = nginx.curl(&jar, &[&nginx.url("/roster?x=1")])?;
    assert_eq!(a.status, 200, "{a:?}");
    let hsts = a.header("strict-transport-security").ok_or("no HSTS")?;
    assert!(hsts.starts_with("max-age="), "{hsts}");
    // What the server is told: the original host, scheme and client.
    let seen = a.body.to_ascii_lowercase();
    assert!(seen.starts_with("get /roster?x=1 http/1.1\r\n"), "{seen}");
    assert!(seen.contains(&format!("\r\nhost: {HOST}\r\n")), "{seen}");
    assert!(seen.contains("\r\nx-forwarded-proto: https\r\n"), "{seen}");
    assert!(seen.contains("\r\nx-real-ip: 127.0.0.1\r\n"), "{seen}");
    assert!(seen.contains("\r\nconnection: close\r\n"), "{seen}");
    assert!(!a.all("server").iter().any(|s| s.contains('/')), "{a:?}");

    // TLS 1.3 and 1.2 are accepted; 1.1 is refused even to a client that
    // offers it with every old cipher (Debian's OpenSSL alone would refuse
    // it too: this guards the deployed stack, not only the file).
    for (flags, ok) in [
        (&["--tlsv1.3"][..], true),
        (&["--tlsv1.2", "--tls-max", "1.2"][..], true),
    ] {
        let mut args = flags.to_vec();
        let url = nginx.url("/");
        args.push(&url);
        let r = nginx.curl(&jar, &args);
        assert_eq!(r.is_ok(), ok, "{flags:?}: {r:?}");
    }
    let old = Command::new("openssl")
        .args(["s_client", "-connect", &nginx.https.to_string()])
        .args([
            "-servername",
            HOST,
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ])
        .stdin(Stdio::null())
        .output()?;
    assert!(!old.status.success(), "TLS 1.1 accepted: {}", text(&old));

    // Plain HTTP only redirects to https.
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20"])
        .arg(format!("http://{HOST}:{}/login", nginx.http.port()))
        .args([
            "--resolve",
            &format!("{HOST}:{}:127.0.0.1", nginx.http.port()),
        ])
        .output()?;
    let a = Answer::parse(&out)?;
    assert_eq!(a.status, 301, "{a:?}");
    assert_eq!(
        a.header("location"),
        Some(format!("https://{HOST}/login").as_str())
    );
    Ok(())
}

/// The value of the page's first hidden `csrf` field.
fn csrf_in(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\"")?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let v = tag.split("value=\"").nth(1)?;
    Some(v.split('"').next()?.to_string())
}

#[test]
fn a_staff_member_logs_in_through_nginx_with_a_secure_cookie() -> TestResult {
    let server = TestServer::start(&[
        "--staff-listen",
        "127.0.0.1:0",
        "--staff-secure-cookie",
        "--staff-trusted-proxy",
        "127.0.0.1",
    ])?;
    let upstream = server.staff_addr()?;
    std::fs::write(server.path().join("pw"), "proxy-password-2026\n")?;
    let out = server.admin(&["staff", "add", "ta.lee", "--password-file", "pw"])?;
    assert!(out.status.success(), "{}", text(&out));
    let nginx = Nginx::start(upstream)?;
    let dir = tempfile::tempdir()?;
    let jar = dir.path().join("jar");

    // No session: to the login form, through the proxy.
    let a = nginx.curl(&jar, &[&nginx.url("/")])?;
    assert_eq!(
        (a.status, a.header("location")),
        (303, Some("/login")),
        "{a:?}"
    );
    let a = nginx.curl(&jar, &[&nginx.url("/login")])?;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.contains("id=\"login-form\""), "{}", a.body);
    assert!(a.header("strict-transport-security").is_some(), "{a:?}");
    // The server's own policy arrives once, unchanged.
    let csp = a.all("content-security-policy");
    assert_eq!(csp.len(), 1, "{a:?}");
    assert!(csp[0].contains("default-src 'none'"), "{a:?}");

    let a = nginx.curl(
        &jar,
        &[
            "--data-urlencode",
            "username=ta.lee",
            "--data-urlencode",
            "password=proxy-password-2026",
            // She is at 127.0.0.2 (nginx at 127.0.0.1, trusted) and claims
            // to be elsewhere: nginx appends her real address, the server
            // takes that one.
            "--interface",
            "127.0.0.2",
            "-H",
            "X-Forwarded-For: 198.51.100.66",
            &nginx.url("/login"),
        ],
    )?;
    assert_eq!((a.status, a.header("location")), (303, Some("/")), "{a:?}");
    let cookie = a
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("certboard_staff="))
        .ok_or(format!("no session cookie: {a:?}"))?
        .to_string();
    let attrs: Vec<String> = cookie
        .split(';')
        .map(|p| p.trim().to_ascii_lowercase())
        .collect();
    for want in ["secure", "httponly", "samesite=strict", "path=/"] {
        assert!(attrs.iter().any(|a| a == want), "{want} missing: {cookie}");
    }

    let a = nginx.curl(&jar, &[&nginx.url("/")])?;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.contains("id=\"counts\""), "{}", a.body);
    let token = csrf_in(&a.body).ok_or("no csrf field on the overview")?;
    let audit = nginx.curl(&jar, &[&nginx.url("/audit")])?;
    let login_row = audit
        .body
        .lines()
        .find(|l| l.contains("data-action=\"login\""))
        .ok_or(format!("no login row: {}", audit.body))?;
    assert!(login_row.contains("127.0.0.2"), "{login_row}");
    assert!(!audit.body.contains("198.51.100.66"), "{}", audit.body);
    let css = nginx.curl(&jar, &[&nginx.url("/static/staff.css")])?;
    assert_eq!(css.status, 200, "{css:?}");

    let a = nginx.curl(
        &jar,
        &[
            "--data-urlencode",
            &format!("csrf={token}"),
            &nginx.url("/logout"),
        ],
    )?;
    assert_eq!(
        (a.status, a.header("location")),
        (303, Some("/login")),
        "{a:?}"
    );
    // The old cookie, sent again by hand, opens nothing.
    let a = nginx.curl(
        dir.path().join("empty-jar").as_path(),
        &[
            "-H",
            &format!("Cookie: {}", cookie.split(';').next().unwrap_or("")),
            &nginx.url("/"),
        ],
    )?;
    assert_eq!(
        (a.status, a.header("location")),
        (303, Some("/login")),
        "{a:?}"
    );
    // nginx logged the requests it passed on.
    let access = std::fs::read_to_string(nginx.dir.path().join("access.log"))?;
    assert!(
        access
            .lines()
            .any(|l| l.contains("\"POST /login HTTP/") && l.contains("\" 303 ")),
        "{access}"
    );
    Ok(())
}
