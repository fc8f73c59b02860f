//! A first start that fails makes nothing (issue 22, 14): the real server
//! binary, started as a new instructor would, on a fresh directory, with a
//! mistake in its inputs. It must exit at once with a nonzero status and a
//! message naming the mistake, and leave no database, no key and no empty
//! dir behind: nothing a second, corrected start would mistake for an
//! existing course.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{text, TestResult, PASSPHRASE};

/// Runs the server on `dir` with `extra` flags and the passphrase `pass`
/// (none when `None`), expecting it to exit by itself; a server still
/// running after a generous wait is killed and reported.
fn start(
    dir: &Path,
    pass: Option<&str>,
    extra: &[&str],
) -> Result<Output, Box<dyn std::error::Error>> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_server"));
    cmd.current_dir(dir)
        .args(["--keys-dir", "keys", "--data-dir", "data"])
        .args(["--ca-key-type", "p256"])
        .args(extra)
        .env_remove("CERTBOARD_CA_PASSPHRASE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !extra.contains(&"--ca-listen") {
        cmd.args(["--ca-listen", "127.0.0.1:0"]);
    }
    cmd.args(["--blackboard-listen", "127.0.0.1:0"]);
    if let Some(p) = pass {
        cmd.env("CERTBOARD_CA_PASSPHRASE", p);
    }
    let mut child = cmd.spawn()?;
    let until = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        if Instant::now() > until {
            child.kill()?;
            let out = child.wait_with_output()?;
            return Err(format!("the server did not exit:\n{}", text(&out)).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child.wait_with_output()?)
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    Ok(names)
}

/// Exited nonzero, saying `says`, and left `dir` holding only `left`.
fn refused(out: &Output, says: &str, dir: &Path, left: &[&str]) -> TestResult {
    let all = text(out);
    assert!(!out.status.success(), "{all}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(says),
        "expected {says:?} in\n{all}"
    );
    assert!(!all.contains("new database"), "{all}");
    assert_eq!(entries(dir)?, left, "{all}");
    Ok(())
}

#[test]
fn without_a_passphrase_nothing_is_made() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = start(dir.path(), None, &[])?;
    refused(&out, "no CA passphrase", dir.path(), &[])
}

#[test]
fn with_a_short_passphrase_nothing_is_made() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = start(dir.path(), Some("short"), &[])?;
    refused(&out, "at least 8 characters", dir.path(), &[])?;
    // An empty one too.
    let out = start(dir.path(), Some(""), &[])?;
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(entries(dir.path())?, Vec::<String>::new());
    // Corrected, the same directory starts as a new course.
    let server = common::TestServer::start_in(dir, &[])?;
    assert!(server.wait_log("new database", 30), "{}", server.log());
    assert!(server.path().join("keys").join("ca-key.pem").exists());
    Ok(())
}

#[test]
fn an_address_not_of_this_host_makes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    // TEST-NET-1 (RFC 5737): never a local address.
    let out = start(
        dir.path(),
        Some(PASSPHRASE),
        &["--ca-listen", "192.0.2.1:8011"],
    )?;
    refused(&out, "cannot listen on 192.0.2.1:8011", dir.path(), &[])?;
    // An address in use, likewise.
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let out = start(dir.path(), Some(PASSPHRASE), &["--ca-listen", &addr])?;
    refused(&out, &format!("cannot listen on {addr}"), dir.path(), &[])
}

#[test]
fn an_unreadable_root_key_makes_no_database() -> TestResult {
    let dir = tempfile::tempdir()?;
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys)?;
    std::fs::write(keys.join("ca-key.pem"), "not a key\n")?;
    std::fs::write(keys.join("ca-cert.pem"), "not a certificate\n")?;
    // Owner-only, as the server wants its keys.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700))?;
    for f in ["ca-key.pem", "ca-cert.pem"] {
        std::fs::set_permissions(keys.join(f), std::fs::Permissions::from_mode(0o600))?;
    }
    let out = start(dir.path(), Some(PASSPHRASE), &[])?;
    refused(&out, "CA", dir.path(), &["keys"])?;
    // The keys dir is as it was: nothing added, nothing taken.
    assert_eq!(entries(&keys)?, ["ca-cert.pem", "ca-key.pem"]);
    Ok(())
}
