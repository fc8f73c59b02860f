//! The database URL: parsed once into the client library's settings,
//! with the defaults certboard adds (timeouts, keepalives) and the TLS
//! checks `sslmode` asks for (libpq's meanings).

use std::path::PathBuf;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres::config::{Host, SslMode};
use postgres::Config;
use postgres_openssl::MakeTlsConnector;

use super::{PgError, UrlProblem};

/// Used when the URL sets no `connect_timeout`: a server that does not
/// answer must not hold the commit thread for the kernel's minutes.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Used when the URL sets no `tcp_user_timeout`: data unacknowledged by the
/// server for this long means the connection is gone.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);
/// Keepalive probing, so a silent peer (a host gone, a partition) is noticed
/// while a statement waits for its answer.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;

/// The connection settings from a URL, fixed for the life of the store.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) config: Config,
    pub(super) tls: MakeTlsConnector,
    /// `user@host:port/database`, never the password: it goes in messages.
    pub(super) shown: String,
}

/// How a URL's `sslmode` maps to the client library's mode and to OpenSSL's
/// checks (libpq's meanings: `prefer` and `require` encrypt without
/// checking the certificate; `verify-ca` checks the chain; `verify-full`
/// also the host name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsCheck {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

fn percent_decode(s: &str, what: &'static str) -> Result<String, PgError> {
    let bad = || PgError::BadUrl(UrlProblem::BadEscape(what));
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

impl Target {
    pub(super) fn parse(url: &str) -> Result<Target, PgError> {
        let bad = |p| PgError::BadUrl(p);
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(bad(UrlProblem::NotPostgres));
        }
        // `sslmode` and `sslrootcert` are ours to read: the client library
        // knows neither verify-ca/verify-full nor a root file.
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut check = TlsCheck::Prefer;
        let mut rootcert = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => {
                    check = match percent_decode(value, "sslmode")?.as_str() {
                        "disable" => TlsCheck::Disable,
                        "prefer" => TlsCheck::Prefer,
                        "require" => TlsCheck::Require,
                        "verify-ca" => TlsCheck::VerifyCa,
                        "verify-full" => TlsCheck::VerifyFull,
                        other => return Err(bad(UrlProblem::SslMode(other.to_string()))),
                    }
                }
                "sslrootcert" => {
                    rootcert = Some(PathBuf::from(percent_decode(value, "sslrootcert")?))
                }
                _ => rest.push(pair),
            }
        }
        let rebuilt = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config: Config = rebuilt.parse().map_err(|e| bad(UrlProblem::Syntax(e)))?;
        let user = config
            .get_user()
            .ok_or(bad(UrlProblem::Missing("user")))?
            .to_string();
        let dbname = config
            .get_dbname()
            .ok_or(bad(UrlProblem::Missing("database")))?
            .to_string();
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => return Err(bad(UrlProblem::Missing("host"))),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let shown = format!("{user}@{host}:{port}/{dbname}");

        config.ssl_mode(match check {
            TlsCheck::Disable => SslMode::Disable,
            TlsCheck::Prefer => SslMode::Prefer,
            TlsCheck::Require | TlsCheck::VerifyCa | TlsCheck::VerifyFull => SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_keepalives_interval().is_none() {
            config
                .keepalives(true)
                .keepalives_idle(KEEPALIVE_IDLE)
                .keepalives_interval(KEEPALIVE_INTERVAL)
                .keepalives_retries(KEEPALIVE_RETRIES);
        }
        if config.get_application_name().is_none() {
            config.application_name("certboard");
        }
        let tls = tls_connector(check, rootcert)?;
        Ok(Target { config, tls, shown })
    }
}

fn tls_connector(check: TlsCheck, rootcert: Option<PathBuf>) -> Result<MakeTlsConnector, PgError> {
    let setup = |rootcert: &Option<PathBuf>| {
        let rootcert = rootcert.clone();
        move |source| PgError::TlsSetup { rootcert, source }
    };
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(setup(&None))?;
    match check {
        TlsCheck::VerifyCa | TlsCheck::VerifyFull => {
            let path = rootcert
                .as_ref()
                .ok_or(PgError::BadUrl(UrlProblem::NoRootCert))?;
            builder.set_ca_file(path).map_err(setup(&rootcert))?;
            builder.set_verify(SslVerifyMode::PEER);
        }
        TlsCheck::Disable | TlsCheck::Prefer | TlsCheck::Require => {
            builder.set_verify(SslVerifyMode::NONE)
        }
    }
    let mut connector = MakeTlsConnector::new(builder.build());
    let verify_host = check == TlsCheck::VerifyFull;
    connector.set_callback(move |config, _host| {
        config.set_verify_hostname(verify_host);
        Ok(())
    });
    Ok(connector)
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres::config::SslMode;

    fn problem(url: &str) -> Option<UrlProblem> {
        match Target::parse(url) {
            Err(PgError::BadUrl(p)) => Some(p),
            _ => None,
        }
    }

    #[test]
    fn urls_are_read_and_bad_ones_named() {
        assert!(matches!(
            problem("mysql://a@b/c"),
            Some(UrlProblem::NotPostgres)
        ));
        assert!(matches!(
            problem("host=x user=y"),
            Some(UrlProblem::NotPostgres)
        ));
        assert!(matches!(
            problem("postgres://u@h:notaport/db"),
            Some(UrlProblem::Syntax(_))
        ));
        assert!(matches!(
            problem("postgres://u@h/db?sslmode=allow"),
            Some(UrlProblem::SslMode(m)) if m == "allow"
        ));
        assert!(matches!(
            problem("postgres://u@h/db?sslmode=verify-full"),
            Some(UrlProblem::NoRootCert)
        ));
        assert!(matches!(
            problem("postgres://h:5432/db"),
            Some(UrlProblem::Missing("user"))
        ));
        assert!(matches!(
            problem("postgres://u@h:5432"),
            Some(UrlProblem::Missing("database"))
        ));
        assert!(matches!(
            problem("postgres://u@h/db?sslrootcert=%zz"),
            Some(UrlProblem::BadEscape("sslrootcert"))
        ));

        let ok = Target::parse(
            "postgresql://alice:s%40cret@db.example:6543/board?sslmode=require&connect_timeout=3",
        );
        let Ok(t) = ok else {
            panic!("a good url refused: {:?}", ok.err());
        };
        assert_eq!(t.shown, "alice@db.example:6543/board", "no password shown");
        assert_eq!(t.config.get_password(), Some(&b"s@cret"[..]));
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
    }

    #[test]
    fn a_missing_root_file_is_named() {
        let err =
            Target::parse("postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/root.pem")
                .err();
        assert!(
            matches!(&err, Some(e @ PgError::TlsSetup { .. }) if e.to_string().contains("/nonexistent/root.pem")),
            "{err:?}"
        );
    }

    #[test]
    fn percent_escapes() {
        assert_eq!(
            percent_decode("/a%20b/c", "x").ok().as_deref(),
            Some("/a b/c")
        );
        assert!(percent_decode("%4", "x").is_err());
        assert!(percent_decode("%ff", "x").is_err(), "not UTF-8");
    }
}
