//! The certboard server: `cargo run --bin server`.
//!
//! With no subcommand it runs the CA and Blackboard on one single-threaded
//! reactor; the subcommands are the operator's admin commands, which work on
//! the same keys and data dirs, also while the server runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use certboard::admin::{self, RevokeReason, RevokeTarget};
use certboard::ca::CaKeyType;
use certboard::server::{self, Role, Server, ServerConfig};
use certboard::store::SqliteStore;
use certboard::{HttpConnLimits, Limits};

/// certboard: the CUHK certificate authority and the Blackboard submission
/// server of the lab, on one single-threaded event loop.
///
/// On first start the CA root key and certificate are created in the keys
/// dir (the key encrypted under the passphrase). The passphrase comes from
/// --ca-passphrase-file, else $CERTBOARD_CA_PASSPHRASE, else a prompt when
/// stdin is a terminal. Every issued certificate and accepted report is
/// recorded in the data dir before it is acknowledged.
///
/// Once listening, one line per listener is printed on stdout:
/// `listening ca ADDR` and `listening blackboard ADDR` (and `listening
/// http ADDR` with --http-listen). Logs go to stderr
/// (RUST_LOG=debug for more). SIGINT/SIGTERM stop it cleanly.
#[derive(Debug, Parser)]
#[command(name = "server", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    run: RunArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Flags shared by the server and the admin commands.
#[derive(Debug, Args)]
struct Common {
    /// Directory of the CA root key and certificate.
    #[arg(long, value_name = "DIR", default_value = "keys", global = true)]
    keys_dir: PathBuf,
    /// Directory of the database of certificates and reports.
    #[arg(long, value_name = "DIR", default_value = "data", global = true)]
    data_dir: PathBuf,
    /// File holding the CA passphrase (one line).
    #[arg(long, value_name = "FILE", global = true)]
    ca_passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Address of the CA listener (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8011")]
    ca_listen: SocketAddr,
    /// Address of the Blackboard listener (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8002")]
    blackboard_listen: SocketAddr,
    /// Which services to run.
    #[arg(long, value_enum, default_value_t = Role::All)]
    role: Role,
    /// Key type of a new CA root (an existing root is loaded as it is).
    #[arg(long, value_enum, default_value_t = CaKeyType::Rsa2048)]
    ca_key_type: CaKeyType,
    /// Root certificate for Blackboard (default: the one in the keys dir).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Validity of student certificates, in days.
    #[arg(long, value_name = "DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=825))]
    validity_days: u32,
    /// Require every connection to answer an HMAC challenge keyed with the
    /// secret in FILE (at least 16 bytes).
    #[arg(long, value_name = "FILE")]
    admission_secret_file: Option<PathBuf>,
    /// Also serve the original lab's Python client on both ports (weak by
    /// design; see README "Legacy mode").
    #[arg(long)]
    legacy: bool,
    /// Number of reactor threads (each its own event loop; SO_REUSEPORT).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    reactors: u16,
    /// Largest frame accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(64..=(64 << 20)))]
    max_frame: u32,
    /// Most bytes one connection may send in all.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    max_conn_bytes: u64,
    /// Most frames one connection may send.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    max_messages: u32,
    /// Most concurrent connections per listener.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Most bytes of unfinished frames buffered across all connections (per
    /// reactor); past it the connection that reads more is refused.
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 20)]
    max_buffered: usize,
    /// Seconds a connection may wait between two whole frames.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    idle_timeout: f64,
    /// Seconds a whole exchange may take.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    deadline: f64,
    /// Address of the HTTP listener for OCSP (`/ocsp`), the CRL (`/crl`),
    /// `/health` and `/metrics` (port 0: any free port); off by default.
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
    /// Base URL relying parties reach the HTTP listener at
    /// (`http://host:port`): every certificate issued then names URL/crl
    /// as its CRL distribution point and URL/ocsp as its OCSP responder.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Most requests on one HTTP connection (keep-alive).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    http_max_requests: u32,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Revoke a certificate by serial, or every certificate of a SID.
    Revoke {
        /// Serial number in hex.
        #[arg(
            long,
            value_name = "HEX",
            conflicts_with = "sid",
            required_unless_present = "sid"
        )]
        serial: Option<String>,
        /// Student id.
        #[arg(long, value_name = "SID")]
        sid: Option<String>,
        /// Reason (RFC 5280).
        #[arg(long, value_enum, default_value_t = RevokeReason::Unspecified)]
        reason: RevokeReason,
    },
    /// List issued certificates, one per line.
    Certs,
    /// List accepted reports, one per line.
    Reports,
    /// Write a consistent copy of the database to FILE (safe while the
    /// server runs).
    Backup {
        /// Where to write the copy (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print a CRL signed by the CA (needs the passphrase).
    Crl {
        /// DER instead of PEM.
        #[arg(long)]
        der: bool,
        /// Write to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// A time flag out of range.
#[derive(Debug)]
struct BadSeconds {
    flag: &'static str,
    value: f64,
}

impl std::fmt::Display for BadSeconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--{} must be between 0 and 86400 seconds, got {}",
            self.flag, self.value
        )
    }
}

impl std::error::Error for BadSeconds {}

fn seconds(flag: &'static str, value: f64) -> Result<Duration, BadSeconds> {
    if value.is_finite() && value > 0.0 && value <= 86_400.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(BadSeconds { flag, value })
    }
}

fn run_server(common: Common, a: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let limits = Limits {
        max_frame: a.max_frame as usize,
        max_conn_bytes: a.max_conn_bytes,
        max_messages: a.max_messages,
        max_connections: a.max_connections as usize,
        idle_timeout: seconds("idle-timeout", a.idle_timeout)?,
        exchange_deadline: seconds("deadline", a.deadline)?,
        max_buffered: a.max_buffered,
    };
    let cfg = ServerConfig {
        ca_listen: a.ca_listen,
        blackboard_listen: a.blackboard_listen,
        role: a.role,
        keys_dir: common.keys_dir,
        data_dir: common.data_dir,
        passphrase_file: common.ca_passphrase_file,
        ca_key_type: a.ca_key_type,
        ca_cert: a.ca_cert,
        validity_days: a.validity_days,
        admission_secret_file: a.admission_secret_file,
        legacy: a.legacy,
        reactors: usize::from(a.reactors),
        limits,
        http_listen: a.http_listen,
        http_limits: HttpConnLimits {
            max_requests: a.http_max_requests,
            ..HttpConnLimits::default()
        },
        public_url: a.public_url,
    };
    let server = Server::bind(&cfg)?;
    for (kind, addr) in server.addrs() {
        println!("listening {} {addr}", kind.name());
        log::info!("{} listening on {addr}", kind.name());
    }
    if let Some(addr) = server.http_addr() {
        println!("listening http {addr}");
        log::info!("http listening on {addr}");
    }
    use std::io::Write;
    std::io::stdout().flush()?;
    server.run()?;
    Ok(())
}

fn run_admin(common: Common, cmd: Command) -> Result<(), Box<dyn std::error::Error>> {
    let mut store = SqliteStore::open_existing(&common.data_dir)?;
    let stdout = std::io::stdout();
    match cmd {
        Command::Revoke {
            serial,
            sid,
            reason,
        } => {
            let target = match (serial, sid) {
                (Some(s), _) => RevokeTarget::Serial(s),
                (None, Some(s)) => RevokeTarget::Sid(s),
                (None, None) => return Err("give --serial HEX or --sid SID".into()),
            };
            let n = admin::revoke(&mut store, &target, reason)?;
            if n == 0 {
                println!("revoked 0 certificate(s): already revoked");
            } else {
                println!("revoked {n} certificate(s) ({})", reason.name());
            }
        }
        Command::Backup { out } => {
            store.backup_to(&out)?;
            println!("database copied to {}", out.display());
        }
        Command::Certs => admin::list_certs(&mut store, &mut stdout.lock())?,
        Command::Reports => admin::list_reports(&mut store, &mut stdout.lock())?,
        Command::Crl { der, out } => {
            let ca =
                server::open_existing_ca(&common.keys_dir, common.ca_passphrase_file.as_deref())?;
            let bytes = admin::crl(&mut store, &ca, der)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?
                }
                None => {
                    use std::io::Write;
                    stdout.lock().write_all(&bytes)?;
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => run_server(cli.common, cli.run),
        Some(cmd) => run_admin(cli.common, cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: error: {e}");
            ExitCode::FAILURE
        }
    }
}
