//! A throwaway PostgreSQL cluster for the tests (issue 13), made by
//! `scripts/pg-test-cluster.sh`: initdb in a temporary directory, the server
//! on a free loopback port, a password user `certboard` allowed to create
//! databases. Installs Debian's postgresql first when initdb is missing:
//! these tests never skip for lack of it.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-test-cluster.sh");

/// A running cluster, stopped and removed on drop (and, should this process
/// end without dropping it, by the script's watcher once the process is gone).
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    /// `postgres://certboard:PASSWORD@127.0.0.1:PORT/certboard`.
    pub url: String,
    pub port: u16,
    pub password: String,
    databases: AtomicUsize,
}

fn script(args: &[&str]) -> Result<String, BoxError> {
    let out = Command::new("bash").arg(SCRIPT).args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "pg-test-cluster.sh {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

impl Cluster {
    /// Starts a new cluster of its own (a test that stops the server needs
    /// one no other test uses).
    pub fn start() -> Result<Cluster, BoxError> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("certboard-pg-{}-{n}", std::process::id()));
        let pid = std::process::id().to_string();
        let path = dir.to_str().ok_or("temp dir is not UTF-8")?;
        let url = script(&["start", path, &pid])?.trim().to_string();
        let rest = url
            .strip_prefix("postgres://certboard:")
            .ok_or_else(|| format!("unexpected url {url:?}"))?;
        let (password, rest) = rest.split_once("@127.0.0.1:").ok_or("no password")?;
        let (port, _) = rest.split_once('/').ok_or("no port")?;
        Ok(Cluster {
            port: port.parse()?,
            password: password.to_string(),
            url,
            dir,
            databases: AtomicUsize::new(0),
        })
    }

    /// One cluster shared by every test of this test binary.
    pub fn shared() -> Result<&'static Cluster, BoxError> {
        static SHARED: OnceLock<Result<Cluster, BoxError>> = OnceLock::new();
        SHARED
            .get_or_init(Cluster::start)
            .as_ref()
            .map_err(|e| format!("the test cluster did not start: {e}").into())
    }

    /// A URL for database `db` with these credentials, plus `query`.
    pub fn url_with(&self, user: &str, password: &str, db: &str, query: &str) -> String {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{db}{q}",
            self.port
        )
    }

    /// Creates an empty database and returns its URL (plain TCP).
    pub fn fresh_db(&self, name: &str) -> Result<String, BoxError> {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let db = format!("t_{name}_{n}");
        let mut admin = self.client("certboard")?;
        admin.batch_execute(&format!("CREATE DATABASE {db}"))?;
        Ok(self.url_with("certboard", &self.password, &db, "sslmode=disable"))
    }

    /// A plain client on database `db`, to look behind the store's back.
    pub fn client(&self, db: &str) -> Result<postgres::Client, BoxError> {
        let url = self.url_with("certboard", &self.password, db, "sslmode=disable");
        Ok(postgres::Client::connect(&url, postgres::NoTls)?)
    }

    /// The server's self-signed certificate (for `sslrootcert`).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server at once (`pg_ctl stop -m fast`: sessions are
    /// ended, open transactions rolled back), keeping its data.
    pub fn halt(&self) -> Result<(), BoxError> {
        script(&["halt", self.dir.to_str().ok_or("path")?]).map(|_| ())
    }

    /// Starts a halted server again on the same port.
    pub fn resume(&self) -> Result<(), BoxError> {
        script(&["resume", self.dir.to_str().ok_or("path")?]).map(|_| ())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(path) = self.dir.to_str() {
            if let Err(e) = script(&["stop", path]) {
                eprintln!("stopping the test cluster: {e}");
            }
        }
    }
}
