//! Where the store lives, and the one place that picks the engine for it:
//! SQLite in the data dir (the embedded default), or PostgreSQL at a URL
//! (`--database`, `$CERTBOARD_DATABASE`) for more than one host.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{PostgresStore, SqliteStore, StaffStorage, Storage, StoreError, DB_FILE};

/// The store a server or an admin command works on.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// The SQLite file in this data dir.
    Sqlite(PathBuf),
    /// The PostgreSQL database at this URL (it may hold a password: never
    /// printed; [`Location`]'s `Display` and `Debug` leave it out).
    Postgres(String),
}

impl Location {
    /// PostgreSQL when a database URL is given, else SQLite in `data_dir`.
    pub fn from_flags(data_dir: &Path, database: Option<&str>) -> Location {
        match database {
            Some(url) => Location::Postgres(url.to_string()),
            None => Location::Sqlite(data_dir.to_path_buf()),
        }
    }

    /// Opens the store for a server: SQLite creates its file on first
    /// start, PostgreSQL its schema in an empty database; either migrates
    /// an older schema and refuses a foreign or newer one untouched.
    pub fn open(&self) -> Result<Box<dyn Storage + Send>, StoreError> {
        Ok(match self {
            Location::Sqlite(dir) => Box::new(SqliteStore::open(dir)?),
            Location::Postgres(url) => Box::new(PostgresStore::open(url)?),
        })
    }

    /// Opens an existing store for an admin command, which must never
    /// create one behind a mistyped path or URL.
    pub fn open_existing(&self) -> Result<Box<dyn Storage + Send>, StoreError> {
        Ok(match self {
            Location::Sqlite(dir) => Box::new(SqliteStore::open_existing(dir)?),
            Location::Postgres(url) => Box::new(PostgresStore::open_existing(url)?),
        })
    }

    /// Opens an existing store with the staff interface's calls too: for
    /// `server staff ...` and the staff listener's own connection.
    pub fn open_staff(&self) -> Result<Box<dyn StaffStorage + Send>, StoreError> {
        Ok(match self {
            Location::Sqlite(dir) => Box::new(SqliteStore::open_existing(dir)?),
            Location::Postgres(url) => Box::new(PostgresStore::open_existing(url)?),
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(dir) => write!(f, "SQLite {}", dir.join(DB_FILE).display()),
            Location::Postgres(url) => write!(f, "PostgreSQL {}", shown_url(url)),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

/// A database URL without its password (and without its query, which may
/// name files but never secrets worth showing), for logs and messages:
/// `postgres://user@host:port/db`.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_string();
    };
    let rest = rest.split_once('?').map_or(rest, |(base, _)| base);
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}@{host}")
        }
        None => format!("{scheme}://{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            shown_url("postgres://alice:s3cret@db:5432/board?sslmode=require"),
            "postgres://alice@db:5432/board"
        );
        assert_eq!(shown_url("postgresql://bob@h/x"), "postgresql://bob@h/x");
        // A password holding '@' or ':' (unescaped) still stays hidden.
        let shown = shown_url("postgres://u:p@ss:w@h:1/d");
        assert!(!shown.contains("ss:w") && !shown.contains(":p"), "{shown}");
        assert_eq!(shown_url("nonsense"), "(not a URL)");
        let pg = Location::from_flags(Path::new("data"), Some("postgres://u:pw@h/d"));
        assert_eq!(pg.to_string(), "PostgreSQL postgres://u@h/d");
        assert!(!format!("{pg:?}").contains("pw"));
        let lite = Location::from_flags(Path::new("data"), None);
        assert_eq!(lite.to_string(), "SQLite data/certboard.sqlite3");
    }
}
