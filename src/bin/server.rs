//! The certboard server: `cargo run --bin server`.
//!
//! With no subcommand it runs the CA and Blackboard on single-threaded
//! reactors (one by default, `--reactors N` for more, sharing the ports);
//! the subcommands are the operator's admin commands, which work on
//! the same keys and data dirs, also while the server runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use certboard::admin::{self, CodeRequest, Format, ReportFilter, RevokeReason, RevokeTarget};
use certboard::ca::{self, CaKeyType, DEFAULT_BLACKBOARD_NAME};
use certboard::course::{GuessLimits, Window};
use certboard::server::{self, Role, Server, ServerConfig};
use certboard::store::{self, Location, SqliteStore};
use certboard::{HttpConnLimits, Limits};

/// `--max-frame`'s default, as the `u32` clap's range parser gives.
const DEFAULT_MAX_FRAME: u32 = certboard::framing::DEFAULT_MAX_FRAME as u32; // ok: 65,590 fits

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
    /// The transparency log's origin (checkpoint origin line and key name;
    /// no spaces or '+'); default `<the root's organisation>/certboard-log`,
    /// e.g. `CUHK/certboard-log`. Set it once: verifiers pin it.
    #[arg(long, value_name = "ORIGIN", global = true)]
    log_origin: Option<String>,
    /// PostgreSQL database of certificates and reports, instead of SQLite
    /// in the data dir: postgres://USER[:PASSWORD]@HOST:PORT/DB[?sslmode=...]
    /// (several hosts on one database; README "More than one host").
    #[arg(
        long,
        value_name = "URL",
        env = "CERTBOARD_DATABASE",
        hide_env_values = true,
        global = true
    )]
    database: Option<String>,
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
    /// The name in Blackboard's own certificate (CN and subjectAltName
    /// dNSName); students' clients check it (their --blackboard-name).
    /// Its key and certificate are kept in the keys dir
    /// (blackboard-key.pem, blackboard-cert.pem), made at first start and
    /// renewed when a third of their 7-day life remains.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_BLACKBOARD_NAME)]
    blackboard_name: String,
    /// Validity of student certificates, in days (default: a term).
    #[arg(long, value_name = "DAYS", default_value_t = certboard::course::DEFAULT_VALIDITY_DAYS, value_parser = clap::value_parser!(u32).range(1..=825))]
    validity_days: u32,
    /// Days after expiry a student certificate still renews by proof of
    /// possession of its key (never once revoked); 0: only while valid.
    /// Past it the student needs a new enrollment code.
    #[arg(long, value_name = "DAYS", default_value_t = certboard::course::DEFAULT_RENEWAL_GRACE_DAYS, value_parser = clap::value_parser!(u32).range(0..=365))]
    renewal_grace: u32,
    /// Require every connection to answer an HMAC challenge keyed with the
    /// secret in FILE (at least 16 bytes).
    #[arg(long, value_name = "FILE")]
    admission_secret_file: Option<PathBuf>,
    /// Also serve the original lab's Python client on both ports (weak by
    /// design; see README "Legacy mode").
    #[arg(long)]
    legacy: bool,
    /// The oldest protocol version Blackboard serves: 2 also takes version
    /// 2 clients (their reports go to the assignment `lab`); 3 refuses them
    /// with code 10, telling the student to upgrade (this release's client
    /// then hands its lab report in by version 3).
    #[arg(long, value_name = "VERSION", default_value_t = 2, value_parser = clap::value_parser!(u16).range(2..=3))]
    min_protocol: u16,
    /// Largest file a student may hand in (protocol version 3), in bytes;
    /// a larger one is refused at its announcement, before it is sent.
    #[arg(long, value_name = "BYTES", default_value_t = certboard::protocol::DEFAULT_MAX_SUBMISSION)]
    max_submission: u64,
    /// Number of reactor threads (each its own event loop; SO_REUSEPORT).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    reactors: u16,
    /// Milliseconds a reactor may hold a commit back while other
    /// exchanges owe the message that makes their record (a report after
    /// the offer, a request after the challenge), so that one transaction,
    /// one fsync and one signed checkpoint serve them all (as PostgreSQL's
    /// commit_delay). Never while no other exchange owes one (a lone
    /// student waits nothing extra) nor while another commit is under way.
    /// 0: never hold.
    #[arg(long, value_name = "MS", default_value_t = server::DEFAULT_COMMIT_DELAY_MS, value_parser = clap::value_parser!(u32).range(0..=100))]
    commit_delay: u32,
    /// Largest frame accepted, in bytes (the default is the largest frame
    /// an honest client sends: a report of 64 KiB with its fields).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_FRAME, value_parser = clap::value_parser!(u32).range(64..=(64 << 20)))]
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
    /// Address of the staff web interface (port 0: any free port); off by
    /// default. Put it behind a TLS-terminating proxy (deploy/) and give
    /// --staff-secure-cookie.
    #[arg(long, value_name = "ADDR")]
    staff_listen: Option<SocketAddr>,
    /// Mark the staff session cookie `Secure` (served over TLS by a proxy).
    #[arg(long)]
    staff_secure_cookie: bool,
    /// Hours a staff login lasts.
    #[arg(long, value_name = "HOURS", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=168))]
    staff_session_hours: u64,
    /// A reverse proxy in front of the staff listener (an exact IP address;
    /// repeat for several): only requests from it have their client taken
    /// from X-Forwarded-For / X-Real-IP, for the login throttle and the
    /// audit log. Default none: those headers are ignored.
    #[arg(long = "staff-trusted-proxy", value_name = "ADDR")]
    staff_trusted_proxy: Vec<std::net::IpAddr>,
    /// Most requests on one HTTP connection (keep-alive).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    http_max_requests: u32,
    /// Blackboard refuses reports before this time (RFC 3339, e.g.
    /// 2026-12-01T09:00:00+08:00); enrollment is not affected.
    #[arg(long, value_name = "TIME", value_parser = rfc3339_arg)]
    submissions_open: Option<i64>,
    /// Blackboard refuses reports from this time on (RFC 3339); nothing
    /// late is recorded. It becomes the default assignment `lab`'s due
    /// time at every start, with no late period (a late period set with
    /// `assignment edit lab` gives way: start without the flags to keep
    /// it); a time already past is taken (a restart after the deadline
    /// still starts) with a warning in the log.
    #[arg(long, value_name = "TIME", value_parser = rfc3339_arg)]
    submissions_close: Option<i64>,
    /// Enrollment code guesses are counted over a sliding window of this
    /// many seconds (a guess is any enrollment carrying a code, right or
    /// wrong, counted before it is checked). Nothing ever locks a SID: the
    /// right code works from any address within its bounds.
    #[arg(long, value_name = "SECS", default_value_t = 900, value_parser = clap::value_parser!(u32).range(1..=604_800))]
    guess_window: u32,
    /// Most code guesses one source address (an IPv4 address, an IPv6 /64)
    /// may make per window, across all SIDs (a lab behind one NAT address
    /// shares it).
    #[arg(long, value_name = "N", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    guesses_per_address: u32,
    /// Most code guesses for one SID from one source address per window
    /// (room for a student's typos).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    guesses_per_sid: u32,
    /// A C2SP tlog-witness to ask to cosign each new checkpoint
    /// (`http://HOST:PORT[/PREFIX]` or `https://...`, e.g. one run by
    /// `server witness run` on another host); repeat for several, each
    /// with its --witness-key.
    /// Asked off the event loops: a witness that is down is logged and
    /// never holds up an enrollment or a submission. Checkpoints handed out
    /// once a witness has cosigned their tree carry its cosignature.
    #[arg(long = "witness", value_name = "URL")]
    witness: Vec<String>,
    /// The verifier key of the --witness at the same position (`server
    /// witness key` prints it); its cosignatures are checked before use.
    #[arg(long = "witness-key", value_name = "VKEY")]
    witness_key: Vec<String>,
    /// Seconds one request to a witness may take.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    witness_timeout: f64,
    /// Seconds a commit that logged records waits, off the event loops,
    /// for the witnesses to cosign its tree before those records are
    /// answered, so that their receipts and certificates' proofs carry the
    /// cosignatures (records arriving meanwhile join the next commit).
    /// A witness that fails or does not answer within it is no longer
    /// waited for (logged once) until it cosigns again. 0: never wait
    /// (receipts then carry none; the served checkpoint gets them moments
    /// later). Default: --witness-timeout.
    #[arg(long, value_name = "SECS")]
    witness_wait: Option<f64>,
    /// PEM roots that `https://` witnesses' certificates must chain to
    /// (default: OpenSSL's default roots; SSL_CERT_FILE or SSL_CERT_DIR
    /// name the system's).
    #[arg(long, value_name = "FILE")]
    witness_ca: Option<PathBuf>,
}

fn rfc3339_arg(s: &str) -> Result<i64, certboard::time::BadTime> {
    certboard::time::parse_rfc3339(s)
}

fn time_arg(s: &str) -> Result<i64, certboard::assignment::BadInput> {
    certboard::assignment::parse_time(s)
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
    /// List issued certificates.
    Certs {
        /// Output format (`lines`, the default, is one `key=value` line
        /// per certificate; `table` aligned columns).
        #[arg(long, value_enum, default_value_t = Format::Lines)]
        format: Format,
    },
    /// List accepted reports (the table shows each one's first line).
    Reports {
        /// Only this SID's reports.
        #[arg(long, value_name = "SID")]
        sid: Option<String>,
        /// Only each SID's newest report.
        #[arg(long)]
        latest: bool,
        /// The whole text in the table (CSV and JSON always carry it).
        #[arg(long)]
        full: bool,
        /// Output format (`lines`, the default, is one `key=value` line
        /// per report; `table` aligned columns).
        #[arg(long, value_enum, default_value_t = Format::Lines)]
        format: Format,
        /// With --extract: the assignment whose submissions to write.
        #[arg(long, value_name = "ID", requires = "extract")]
        assignment: Option<String>,
        /// Write each student's latest submission for --assignment as
        /// DIR/<assignment>/<SID>/<file name>, byte for byte (a version 2
        /// report is report.txt). Never follows or makes a link, never
        /// writes over a file: extract into a new or empty directory.
        #[arg(long, value_name = "DIR", requires = "assignment")]
        extract: Option<PathBuf>,
        /// With --extract: every version, as <receipt id>-<file name>.
        #[arg(long, requires = "extract")]
        all: bool,
    },
    /// One row per roster student (per SID seen, without a roster): her
    /// certificate, reports, last report and code; the table ends with the
    /// totals (enrolled, submitted, missing) and the submission window.
    Status {
        /// Per student of one assignment instead: on time, late (by how
        /// much), missing, extension; totals at the end.
        #[arg(long, value_name = "ID")]
        assignment: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Assignments and their deadlines; changes hold for the running
    /// server's next submission (every host), no restart.
    #[command(subcommand)]
    Assignment(AssignmentCommand),
    /// Give one student her own due time for an assignment (her late
    /// period, if the assignment has one, keeps its length after it).
    Extend {
        /// The student.
        #[arg(long, value_name = "SID")]
        sid: String,
        /// The assignment.
        #[arg(long, value_name = "ID")]
        assignment: String,
        /// Her due time (RFC 3339 with an offset).
        #[arg(long, value_name = "TIME", value_parser = time_arg)]
        until: i64,
    },
    /// One row per roster student: per assignment the status (on_time,
    /// late, missing), the submission time, its SHA-256 and the receipt.
    Gradebook {
        /// Output format (csv, the default, or json).
        #[arg(long, value_enum, default_value_t = admin::DataFormat::Csv)]
        format: admin::DataFormat,
    },
    /// Course settings.
    #[command(subcommand)]
    Course(CourseCommand),
    /// The course roster and its enrollment codes.
    #[command(subcommand)]
    Roster(RosterCommand),
    /// Staff accounts of the web interface (--staff-listen).
    #[command(subcommand)]
    Staff(StaffCommand),
    /// Write a consistent copy of the database to FILE (safe while the
    /// server runs).
    Backup {
        /// Where to write the copy (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Issue a Blackboard key and certificate into DIR, for a `--role
    /// blackboard` host that has no root key (needs the passphrase; copy
    /// both files into that host's keys dir, the key privately).
    BlackboardCert {
        /// Directory to write blackboard-key.pem (0600) and
        /// blackboard-cert.pem into (replacing them).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The name in the certificate (CN and subjectAltName dNSName).
        #[arg(long, value_name = "NAME", default_value = DEFAULT_BLACKBOARD_NAME)]
        name: String,
    },
    /// Copy the SQLite store in the data dir into an empty PostgreSQL
    /// database, in one transaction (stop the server first).
    Migrate {
        /// The PostgreSQL database to fill (default: --database).
        #[arg(long, value_name = "URL")]
        to: Option<String>,
    },
    /// The transparency log: its key, its checkpoint, its verification.
    #[command(subcommand)]
    Log(LogCommand),
    /// A C2SP tlog-witness for certboard logs (usually on another host,
    /// run by someone other than the CA's operator): it cosigns a log's
    /// checkpoint only if it extends the last one it cosigned, so a log
    /// that shows two histories is caught. Its key is
    /// --keys-dir/witness-key.pem, encrypted under a passphrase of its own
    /// given as the CA's is (--ca-passphrase-file FILE, or
    /// CERTBOARD_CA_PASSPHRASE, or asked on a terminal; at least 8
    /// characters); its state (the last tree cosigned per log) is
    /// --data-dir/witness-state: keep it, a witness that loses it must get
    /// a new key. No CA, database or --log-origin is used.
    #[command(subcommand)]
    Witness(WitnessCommand),
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

/// The transparency log of every certificate issued and report accepted
/// (served as C2SP tlog-tiles under /log/ on the CA's --http-listen).
#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Print the log's verifier key (signed-note vkey form), for students'
    /// clients and anyone checking the log (needs the passphrase).
    Key,
    /// Print the latest signed checkpoint, for publishing (course page,
    /// mailing list), so everyone can compare the same tree head.
    Checkpoint,
    /// Recompute the log from the store: every stored hash, the tree head,
    /// every certificate and report against its leaf. Names the first
    /// mismatch (a row deleted or edited behind certboard's back) and exits
    /// non-zero.
    Verify,
}

/// `server witness ...`.
#[derive(Debug, Subcommand)]
enum WitnessCommand {
    /// Create the witness key in --keys-dir, cosigning as NAME (a
    /// schema-less URL naming the witness, e.g. `witness.example.org/w1`;
    /// fixed for good: it is part of the key id). Prints the verifier key.
    Init {
        /// The witness's name.
        #[arg(long, value_name = "NAME")]
        name: String,
    },
    /// Print the witness's verifier key (`NAME+ID+KEY`, type 0x04), which
    /// the log server takes as --witness-key and students' clients as
    /// --witness-key.
    Key,
    /// Serve `POST <prefix>/add-checkpoint` on --listen. Prints `witness
    /// VKEY` and `listening witness ADDR` once ready. Stop it with SIGTERM: every cosignature
    /// was recorded before it left.
    Run {
        /// Address to listen on (port 0: any free port).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8014")]
        listen: SocketAddr,
        /// A log this witness vouches for: its verifier key, as `server
        /// log key` prints it (repeat for several). Its checkpoints must
        /// carry the key's name as their origin.
        #[arg(long = "log-key", value_name = "VKEY", required = true)]
        log_key: Vec<String>,
        /// URL path prefix of the endpoint, starting with `/` (e.g.
        /// `/witness`: then `POST /witness/add-checkpoint`).
        #[arg(long, value_name = "PATH", default_value = "")]
        prefix: String,
        /// Seconds a connection has for each whole request.
        #[arg(long, value_name = "SECS", default_value_t = 10.0)]
        request_timeout: f64,
        /// Most open connections; at it, the one that has waited longest
        /// for its next request is closed to make room.
        #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
        max_connections: u32,
        /// Most open connections from one source (an IPv4 address, an IPv6
        /// /64), so that one host's flood leaves the other slots to the
        /// logs; raise it to --max-connections behind a reverse proxy.
        #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
        max_connections_per_address: u32,
    },
}

#[derive(Debug, Subcommand)]
enum CourseCommand {
    /// Set how times are shown to people (refusals, listings).
    Set {
        /// IANA time zone name, e.g. Asia/Hong_Kong (times are stored and
        /// sent in UTC either way).
        #[arg(long, value_name = "ZONE")]
        timezone: String,
    },
}

/// The times of `assignment add` and `assignment edit`.
#[derive(Debug, Args)]
struct AssignmentTimes {
    /// Its title.
    #[arg(long, value_name = "TEXT")]
    title: Option<String>,
    /// Submissions are refused before this time (RFC 3339 with an offset).
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    opens: Option<i64>,
    /// From this time on a submission is late (RFC 3339 with an offset).
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    due: Option<i64>,
    /// Late submissions are taken until this time, then refused (default:
    /// none are, the due time closes it).
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    late_until: Option<i64>,
    /// Accept a due time in the past.
    #[arg(long)]
    force: bool,
}

impl AssignmentTimes {
    fn spec(self) -> admin::AssignmentSpec {
        admin::AssignmentSpec {
            title: self.title,
            opens: self.opens,
            due: self.due,
            late_until: self.late_until,
            force: self.force,
            no_opens: false,
            no_late_until: false,
        }
    }
}

#[derive(Debug, Subcommand)]
enum AssignmentCommand {
    /// Add an assignment (ID: a-z, 0-9, '_', '-'; needs --title and --due).
    Add {
        /// Its id, e.g. hw1.
        id: String,
        #[command(flatten)]
        times: AssignmentTimes,
    },
    /// Change an assignment's title or times (those given); --no-opens
    /// and --no-late-until remove a time.
    Edit {
        /// Its id.
        id: String,
        #[command(flatten)]
        times: AssignmentTimes,
        /// Remove the opening time: open from now on.
        #[arg(long, conflicts_with = "opens")]
        no_opens: bool,
        /// Remove the late period: the due time (or her extension's) closes
        /// it.
        #[arg(long, conflicts_with = "late_until")]
        no_late_until: bool,
    },
    /// List the assignments, times in the course's zone.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Close an assignment now: nothing more is taken, extensions included.
    Close {
        /// Its id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum StaffCommand {
    /// Add a staff account. The password (at least 12 characters) is
    /// asked on the terminal, or read from the first line of
    /// --password-file; only its argon2id hash is stored.
    Add {
        /// Her login name: 1 to 64 of A-Z a-z 0-9 . _ -
        name: String,
        /// Read the password from the first line of this file.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// List the staff accounts (name and when added).
    List,
    /// Remove a staff account; her sessions end at once.
    Remove {
        /// Her login name.
        name: String,
    },
}

/// `server staff ...`.
fn staff(location: &Location, cmd: StaffCommand) -> Result<(), Box<dyn std::error::Error>> {
    use certboard::staff::auth;
    let mut store = location.open_staff()?;
    match cmd {
        StaffCommand::Add {
            name,
            password_file,
        } => {
            auth::check_name(&name)?;
            let password = match password_file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).map_err(|source| {
                        admin::AdminError::File {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    text.lines().next().unwrap_or("").to_string()
                }
                None => {
                    use std::io::IsTerminal;
                    if !std::io::stdin().is_terminal() {
                        return Err(
                            "no terminal to ask the password on: give --password-file FILE".into(),
                        );
                    }
                    let first = rpassword::prompt_password(format!("password for {name}: "))?;
                    let again = rpassword::prompt_password("again: ")?;
                    if first != again {
                        return Err("the two passwords differ; nothing was added".into());
                    }
                    first
                }
            };
            // Hashing takes tens of milliseconds: here, in the command,
            // never on the server's loop.
            let phc = auth::hash_password(&password)?;
            store.add_staff(&name, &phc, certboard::time::now_unix())?;
            println!("staff account {name} added");
        }
        StaffCommand::List => {
            for a in store.staff_accounts()? {
                println!("{} {}", a.name, certboard::time::rfc3339(a.created_at));
            }
        }
        StaffCommand::Remove { name } => {
            if !store.remove_staff(&name)? {
                return Err(format!("no staff account {name:?}").into());
            }
            println!("staff account {name} removed; her sessions are ended");
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum RosterCommand {
    /// Add students and update names from a CSV with a header `sid,name`
    /// (other columns ignored). Nothing is imported if any row is bad;
    /// nobody is ever removed. Safe while the server runs, which follows
    /// the roster at once. A first roster over certificates issued by open
    /// enrollment (no code) lists them and needs a decision:
    /// --revoke-unverified or --keep-unverified.
    Import {
        /// The roster CSV.
        file: PathBuf,
        /// Revoke every certificate no enrollment code vouches for (reason
        /// privilegeWithdrawn): anyone could have enrolled them.
        #[arg(long, conflicts_with = "keep_unverified")]
        revoke_unverified: bool,
        /// Keep them unrevoked; with the roster in force they still neither
        /// renew nor submit, and the student's code enrollment revokes
        /// them (superseded).
        #[arg(long)]
        keep_unverified: bool,
    },
    /// Remove a student from the roster: she no longer counts as missing
    /// and may no longer enroll; her records stay. Importing her again
    /// puts her back.
    #[command(visible_alias = "drop")]
    Remove {
        /// The student.
        sid: String,
    },
    /// Make enrollment codes and write `sid,code` to FILE (created new,
    /// mode 0600): for every roster student never given one, or for
    /// --sid SID (also after her code was used: a revoked student needs a
    /// new one). The codes are stored only as keys derived from them: this
    /// file is the only copy.
    Codes {
        /// Where to write the codes (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Only this student.
        #[arg(long, value_name = "SID")]
        sid: Option<String>,
        /// Replace unused codes too (the old ones stop working) and lift a
        /// wrong-code lock.
        #[arg(long)]
        reissue: bool,
        /// Also write one ready-to-send RFC 5322 message per student with
        /// an e-mail address into DIR (`SID.eml`, mode 0600): her code, the
        /// root's fingerprint and the client command, which names the
        /// addresses she dials. Needs --ca-address and --blackboard-address:
        /// the listen addresses (often 0.0.0.0 or 127.0.0.1) are not what a
        /// student's machine can reach, so they are never guessed.
        #[arg(long, value_name = "DIR")]
        eml: Option<PathBuf>,
        /// With --eml: the CA's address as students dial it (a DNS name,
        /// IPv4 or [IPv6] address, and the port), e.g. ca.example.edu:8011;
        /// written as the client's --ca.
        #[arg(long, value_name = "HOST:PORT", requires = "eml")]
        ca_address: Option<admin::DialAddress>,
        /// With --eml: Blackboard's address as students dial it, e.g.
        /// blackboard.example.edu:8002; written as the client's --blackboard.
        #[arg(long, value_name = "HOST:PORT", requires = "eml")]
        blackboard_address: Option<admin::DialAddress>,
        /// With --eml: the name in Blackboard's certificate, written as the
        /// client's --blackboard-name. Default: the name of
        /// blackboard-cert.pem in the keys dir when there is one and it is
        /// not the client's default (blackboard.invalid).
        #[arg(long, value_name = "NAME", requires = "eml")]
        blackboard_name: Option<admin::DialName>,
        /// The From address of those messages.
        #[arg(
            long,
            value_name = "ADDR",
            default_value = "instructor@certboard.invalid"
        )]
        from: String,
    },
}

/// A time flag out of range.
#[derive(Debug)]
struct BadSeconds {
    flag: &'static str,
    value: f64,
    /// 0 is taken too (it turns what the flag bounds off).
    zero_ok: bool,
}

impl std::fmt::Display for BadSeconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--{} must be {}at least 0.001 and at most 86400 seconds, got {}",
            self.flag,
            if self.zero_ok { "0 (off) or " } else { "" },
            self.value
        )
    }
}

impl std::error::Error for BadSeconds {}

fn seconds(flag: &'static str, value: f64) -> Result<Duration, BadSeconds> {
    // Below a millisecond a timeout rounds to nothing: every connection
    // (or every request to a witness) would fail at once.
    if value.is_finite() && (0.001..=86_400.0).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(BadSeconds {
            flag,
            value,
            zero_ok: false,
        })
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
        database: common.database,
        passphrase_file: common.ca_passphrase_file,
        ca_key_type: a.ca_key_type,
        ca_cert: a.ca_cert,
        blackboard_name: a.blackboard_name,
        validity_days: a.validity_days,
        renewal_grace_days: a.renewal_grace,
        admission_secret_file: a.admission_secret_file,
        legacy: a.legacy,
        upload: certboard::protocol::UploadPolicy {
            min_protocol: a.min_protocol,
            max_submission: a.max_submission,
        },
        reactors: usize::from(a.reactors),
        commit_delay: Duration::from_millis(a.commit_delay.into()),
        limits,
        window: Window {
            open: a.submissions_open,
            close: a.submissions_close,
        },
        guess_limits: GuessLimits {
            window: i64::from(a.guess_window),
            per_source: a.guesses_per_address,
            per_sid_source: a.guesses_per_sid,
        },
        http_listen: a.http_listen,
        http_limits: HttpConnLimits {
            max_requests: a.http_max_requests,
            ..HttpConnLimits::default()
        },
        public_url: a.public_url,
        log_origin: common.log_origin.clone(),
        witnesses: server::witnessing::Witnesses {
            targets: server::witnessing::WitnessTarget::pair(&a.witness, &a.witness_key)?,
            timeout: seconds("witness-timeout", a.witness_timeout)?,
            ca_file: a.witness_ca.clone(),
            wait: match a.witness_wait {
                None => seconds("witness-timeout", a.witness_timeout)?,
                Some(0.0) => Duration::ZERO,
                Some(w) => {
                    seconds("witness-wait", w).map_err(|e| BadSeconds { zero_ok: true, ..e })?
                }
            },
        },
        staff_listen: a.staff_listen,
        staff: certboard::staff::StaffConfig {
            session_lifetime: Duration::from_secs(a.staff_session_hours * 3600),
            secure_cookie: a.staff_secure_cookie,
            trusted_proxies: a
                .staff_trusted_proxy
                .iter()
                .map(|p| p.to_canonical())
                .collect(),
            ..certboard::staff::StaffConfig::default()
        },
    };
    if let (Some(o), Some(c)) = (a.submissions_open, a.submissions_close) {
        if o >= c {
            return Err("--submissions-open must be before --submissions-close".into());
        }
    }
    // A bad --witness-ca is said before anything starts.
    cfg.witnesses.tls()?;
    let server = Server::bind(&cfg)?;
    // For the instructor to publish: students' clients compare it with the
    // root they are given (trust on first use, or --ca-fingerprint).
    println!("root fingerprint SHA-256 {}", server.root_fingerprint());
    for (kind, addr) in server.addrs() {
        println!("listening {} {addr}", kind.name());
        log::info!("{} listening on {addr}", kind.name());
    }
    if let Some(addr) = server.http_addr() {
        println!("listening http {addr}");
        log::info!("http listening on {addr}");
    }
    if let Some(addr) = server.staff_addr() {
        println!("listening staff {addr}");
        log::info!("staff web interface listening on {addr}");
    }
    use std::io::Write;
    std::io::stdout().flush()?;
    server.run()?;
    Ok(())
}

/// The exact `pg_dump` command that backs up the database at `url`
/// (without its password, which pg_dump takes from `PGPASSWORD` or
/// `~/.pgpass`).
fn pg_dump_hint(url: &str) -> String {
    format!(
        "backup does not copy a PostgreSQL store; use PostgreSQL's own tool, which takes one \
         consistent snapshot while the servers run:\n  \
         pg_dump --format=custom --file=certboard.dump --dbname='{}'\n\
         (the password from PGPASSWORD or ~/.pgpass); restore into an empty database with\n  \
         pg_restore --no-owner --dbname='URL' certboard.dump",
        store::shown_url(url)
    )
}

fn migrate(common: &Common, to: Option<String>) -> Result<(), Box<dyn std::error::Error>> {
    let url = match (to, &common.database) {
        (Some(to), Some(db)) if &to != db => {
            return Err(
                "--to and --database ($CERTBOARD_DATABASE) name different databases: \
                 migrate copies the SQLite store in --data-dir into --to"
                    .into(),
            )
        }
        (Some(url), _) => url,
        (None, Some(url)) => url.clone(),
        (None, None) => return Err("give the PostgreSQL database to fill: --to URL".into()),
    };
    log::info!(
        "copying SQLite {} into {}",
        common.data_dir.join(store::DB_FILE).display(),
        store::shown_url(&url)
    );
    let done = store::migrate(&common.data_dir, &url)?;
    let tables: Vec<String> = done
        .tables
        .iter()
        .chain(&done.counters)
        .map(|(t, n)| format!("{t}={n}"))
        .collect();
    println!("migrated to {}: {}", done.target, tables.join(" "));
    Ok(())
}

/// `server witness ...`: no CA and no store, only the witness's key and
/// state file.
fn witness(common: &Common, cmd: WitnessCommand) -> Result<(), Box<dyn std::error::Error>> {
    use certboard::tlog::key::{create_witness_key, open_witness_key};
    let pass = server::ca_passphrase_of(&common.keys_dir, common.ca_passphrase_file.as_deref())?;
    match cmd {
        WitnessCommand::Init { name } => {
            certboard::server::witness::create_private_dir(&common.keys_dir)?;
            let w = create_witness_key(&common.keys_dir, &pass, &name)?;
            println!("{}", w.verifier_key());
        }
        WitnessCommand::Key => {
            println!(
                "{}",
                open_witness_key(&common.keys_dir, &pass)?.verifier_key()
            );
        }
        WitnessCommand::Run {
            listen,
            log_key,
            prefix,
            request_timeout,
            max_connections,
            max_connections_per_address,
        } => {
            if !prefix.is_empty() && !prefix.starts_with('/') {
                return Err(format!("--prefix {prefix:?} must start with '/'").into());
            }
            let cosigner = open_witness_key(&common.keys_dir, &pass)?;
            let logs = log_key
                .iter()
                .map(|k| {
                    certboard::tlog::NoteVerifier::from_key(k).map_err(|e| {
                        if certboard::tlog::cosignature::CosignatureVerifier::from_key(k).is_ok() {
                            format!(
                                "--log-key {k:?} is a witness's key (type 0x04), not a log's: \
                                 give the log's key, as `server log key` prints it on the log's host"
                            )
                        } else {
                            format!("--log-key {k:?}: {e}")
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            certboard::server::witness::create_private_dir(&common.data_dir)?;
            let state = common.data_dir.join(certboard::server::witness::STATE_FILE);
            let names: Vec<String> = logs.iter().map(|l| l.name().to_string()).collect();
            let w = certboard::tlog::witness::Witness::new(cosigner, logs, Some(state))?;
            let vkey = w.cosigner().verifier_key();
            let limits = certboard::server::witness::WitnessLimits {
                max_connections: max_connections as usize,
                max_per_source: max_connections_per_address as usize,
                request_timeout: seconds("request-timeout", request_timeout)?,
                ..Default::default()
            };
            let srv = certboard::server::witness::WitnessServer::bind(
                listen,
                std::sync::Arc::new(w),
                &prefix,
                limits,
            )?;
            println!("witness {vkey}");
            println!("listening witness {}", srv.addr());
            log::info!(
                "witness listening on {}{prefix}/add-checkpoint for {}",
                srv.addr(),
                names.join(", ")
            );
            use std::io::Write;
            std::io::stdout().flush()?;
            srv.run(&std::sync::atomic::AtomicBool::new(false))?;
        }
    }
    Ok(())
}

fn run_admin(common: Common, cmd: Command) -> Result<(), Box<dyn std::error::Error>> {
    if let Command::Witness(cmd) = cmd {
        return witness(&common, cmd);
    }
    if let Command::BlackboardCert { out, name } = &cmd {
        // The root key alone: no database needed.
        let ca = server::open_existing_ca(&common.keys_dir, common.ca_passphrase_file.as_deref())?;
        let id = ca.issue_blackboard(name)?;
        id.save(out)?;
        let (key, cert) = ca::blackboard_paths(out);
        println!(
            "Blackboard certificate for {name:?} valid until {}: {} and {} (mode 0600)",
            certboard::time::time_text(id.not_after()),
            cert.display(),
            key.display()
        );
        // A Blackboard host appends to the log and signs its checkpoints.
        if certboard::tlog::key::log_key_path(&common.keys_dir).exists() {
            let pass =
                server::ca_passphrase_of(&common.keys_dir, common.ca_passphrase_file.as_deref())?;
            let log = certboard::tlog::key::export_host_key(&common.keys_dir, &pass, out)?;
            println!(
                "the transparency log's key for a Blackboard host: {} (mode 0600)",
                log.display()
            );
        }
        return Ok(());
    }
    let location = Location::from_flags(&common.data_dir, common.database.as_deref());
    match (&cmd, &location) {
        (Command::Migrate { to }, _) => return migrate(&common, to.clone()),
        (Command::Staff(_), _) => {
            if let Command::Staff(cmd) = cmd {
                return staff(&location, cmd);
            }
            return Ok(());
        }
        (Command::Backup { .. }, Location::Postgres(url)) => return Err(pg_dump_hint(url).into()),
        (Command::Backup { out }, Location::Sqlite(dir)) => {
            SqliteStore::open_existing(dir)?.backup_to(out)?;
            println!("database copied to {}", out.display());
            return Ok(());
        }
        _ => {}
    }
    let mut store = location.open_existing()?;
    log::debug!("store: {location}");
    let store = store.as_mut();
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
            let n = admin::revoke(store, &target, reason)?;
            if n == 0 {
                println!("revoked 0 certificate(s): already revoked");
            } else {
                println!("revoked {n} certificate(s) ({})", reason.name());
            }
        }
        // Handled above, before a store is opened.
        Command::Backup { .. } | Command::Migrate { .. } | Command::Staff(_) => {}
        Command::Certs { format } => admin::certs(store, format, &mut stdout.lock())?,
        Command::Reports {
            assignment: Some(id),
            extract: Some(dir),
            all,
            ..
        } => {
            let done = admin::extract::extract(store, &id, &dir, all)?;
            println!(
                "extracted {} file(s), {} bytes, to {}",
                done.files,
                done.bytes,
                dir.join(&id).display()
            );
        }
        Command::Reports {
            sid,
            latest,
            full,
            format,
            ..
        } => {
            let files = store
                .uploads()?
                .iter()
                .filter(|u| sid.as_ref().is_none_or(|s| *s == u.sid))
                .count();
            let filter = ReportFilter { sid, latest, full };
            admin::reports(store, &filter, format, &mut stdout.lock())?;
            if files > 0 {
                // On stderr: the listing itself stays what a script reads.
                eprintln!(
                    "note: {files} file(s) handed in by version 3 are not text reports and are not \
                     listed here: see `server gradebook`, `server status --assignment ID` and \
                     `server reports --assignment ID --extract DIR`"
                );
            }
        }
        Command::Status {
            assignment: None,
            format,
        } => admin::status(store, format, &mut stdout.lock())?,
        Command::Status {
            assignment: Some(id),
            format,
        } => admin::assignment_status(store, &id, format, &mut stdout.lock())?,
        Command::Assignment(cmd) => assignment(store, cmd)?,
        Command::Extend {
            sid,
            assignment,
            until,
        } => {
            let (due, close) = admin::extend(store, &sid, &assignment, until)?;
            let zone = admin::timezone(store)?;
            let t = |t: Option<i64>| {
                t.map(|t| certboard::assignment::show_time(t, zone.as_deref()))
                    .unwrap_or_default()
            };
            println!(
                "SID {sid}: assignment {assignment} due {} for her (taken until {})",
                t(due),
                t(close)
            );
        }
        Command::Gradebook { format } => {
            admin::gradebook(store, format.into(), &mut stdout.lock())?
        }
        Command::Course(CourseCommand::Set { timezone }) => {
            let zone = admin::set_timezone(store, &timezone)?;
            println!("course times are shown in {zone}");
        }
        Command::Roster(RosterCommand::Remove { sid }) => {
            admin::remove_student(store, &sid)?;
            println!(
                "SID {sid} removed from the roster: no longer counted, may not enroll; her \
                 certificates and reports stay (revoke with `server revoke --sid {sid}`)"
            );
        }
        Command::Roster(RosterCommand::Import {
            file,
            revoke_unverified,
            keep_unverified,
        }) => {
            let decision = match (revoke_unverified, keep_unverified) {
                (true, _) => admin::Unverified::Revoke,
                (false, true) => admin::Unverified::Keep,
                (false, false) => admin::Unverified::Ask,
            };
            let done = admin::import_roster(store, &file, decision)?;
            println!(
                "roster: {} student(s) in {}: {} added, {} renamed, {} with a new e-mail address, {} unchanged",
                done.students,
                file.display(),
                done.change.added,
                done.change.renamed,
                done.change.new_email,
                done.change.unchanged
            );
            if done.revoked > 0 {
                println!(
                    "revoked {} certificate(s) of open enrollment ({})",
                    done.revoked,
                    admin::UNVERIFIED_REASON.name()
                );
            }
            if !done.unverified.is_empty() {
                println!(
                    "{} certificate(s) of open enrollment kept, unvouched: with the roster in \
                     force they neither renew nor submit (serials: {})",
                    done.unverified.len(),
                    done.unverified
                        .iter()
                        .map(|c| c.serial.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
        }
        Command::Roster(RosterCommand::Codes {
            out,
            sid,
            reissue,
            eml,
            from,
            ca_address,
            blackboard_address,
            blackboard_name,
        }) => {
            // Checked before any code is made: a refusal after would leave
            // codes stored whose messages were never written.
            let prepared = match &eml {
                Some(_) => {
                    let dial = admin::Dial::required(ca_address, blackboard_address)?;
                    admin::check_address(&from).map_err(|e| format!("--from: {e}"))?;
                    let (_, cert) = ca::root_paths(&common.keys_dir);
                    let pem = std::fs::read(&cert).map_err(|source| admin::AdminError::File {
                        path: cert.clone(),
                        source,
                    })?;
                    let der = openssl::x509::X509::from_pem(&pem)?.to_der()?;
                    let name = match blackboard_name {
                        Some(n) => Some(n),
                        None => admin::DialName::of_blackboard_cert(&common.keys_dir)?,
                    };
                    Some((certboard::crypto::fingerprint(&der), dial, name))
                }
                None => None,
            };
            let n = admin::issue_codes(store, &out, &CodeRequest { sid, reissue })?;
            if let (Some(dir), Some((fingerprint, dial, blackboard_name)), true) =
                (&eml, prepared, n > 0)
            {
                let text = std::fs::read_to_string(&out)?;
                let letter = admin::Letter {
                    fingerprint,
                    from,
                    date: certboard::time::now_unix(),
                    dial,
                    blackboard_name,
                };
                let roster = store.roster()?;
                let (written, without) = admin::write_messages(&roster, &text, dir, &letter)?;
                println!(
                    "wrote {written} message(s) to {} (mode 0600){}",
                    dir.display(),
                    if without.is_empty() {
                        String::new()
                    } else {
                        format!("; no e-mail address for {}", without.join(", "))
                    }
                );
            }
            if n == 0 {
                println!("no student needs a code (--sid SID for one, --reissue to replace unused ones); nothing written");
            } else {
                println!(
                    "wrote {n} code(s) to {} (mode 0600); hand each student hers: they are stored nowhere else",
                    out.display()
                );
            }
        }
        Command::BlackboardCert { .. } | Command::Witness(_) => {}
        Command::Log(LogCommand::Key) => {
            let signer = server::open_existing_log(
                &common.keys_dir,
                common.ca_passphrase_file.as_deref(),
                common.log_origin.as_deref(),
            )?;
            println!("{}", signer.verifier_key());
        }
        Command::Log(LogCommand::Checkpoint) => {
            let signer = server::open_existing_log(
                &common.keys_dir,
                common.ca_passphrase_file.as_deref(),
                common.log_origin.as_deref(),
            )?;
            let api = certboard::ops::transparency::LogApi::new(std::sync::Arc::new(
                certboard::tlog::CheckpointSigner::new(signer),
            ));
            print!("{}", api.checkpoint(store)?);
        }
        Command::Log(LogCommand::Verify) => match admin::log::verify(store)? {
            Ok(v) => println!(
                "log verified: {} entries ({} certificate(s), {} report(s), {} file(s)) recompute every stored hash and the tree head {}",
                v.size,
                v.certs,
                v.reports,
                v.uploads,
                openssl::base64::encode_block(&v.root)
            ),
            Err(problem) => return Err(format!("log verification FAILED: {problem}").into()),
        },
        Command::Crl { der, out } => {
            let ca =
                server::open_existing_ca(&common.keys_dir, common.ca_passphrase_file.as_deref())?;
            let bytes = admin::crl(store, &ca, der)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, bytes).map_err(|source| admin::AdminError::File {
                        path: path.clone(),
                        source,
                    })?
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

fn assignment(
    store: &mut dyn certboard::store::Storage,
    cmd: AssignmentCommand,
) -> Result<(), Box<dyn std::error::Error>> {
    let shown = |store: &mut dyn certboard::store::Storage,
                 a: &certboard::store::Assignment|
     -> Result<String, admin::AdminError> {
        let zone = admin::timezone(store)?;
        Ok(certboard::assignment::describe(a, zone.as_deref()))
    };
    match cmd {
        AssignmentCommand::Add { id, times } => {
            let a = admin::add_assignment(store, &id, &times.spec())?;
            println!("added {}", shown(store, &a)?);
        }
        AssignmentCommand::Edit {
            id,
            times,
            no_opens,
            no_late_until,
        } => {
            let spec = admin::AssignmentSpec {
                no_opens,
                no_late_until,
                ..times.spec()
            };
            let edited = admin::edit_assignment(store, &id, &spec)?;
            println!(
                "changed {} (from the next submission on){}",
                shown(store, &edited.assignment)?,
                if edited.reopened {
                    "; it was closed and is open again"
                } else {
                    ""
                }
            );
        }
        AssignmentCommand::List { format } => {
            admin::list_assignments(store, format, &mut std::io::stdout().lock())?
        }
        AssignmentCommand::Close { id } => {
            let a = admin::close_assignment(store, &id)?;
            println!("closed {}", shown(store, &a)?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    certboard::logging::init("info");
    let cli = Cli::parse();
    let result = match cli.command {
        None => run_server(cli.common, cli.run),
        Some(cmd) => run_admin(cli.common, cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `server reports | head`: the reader has gone; end quietly.
        Err(e)
            if matches!(e.downcast_ref::<admin::AdminError>(),
                Some(admin::AdminError::Io(io)) if io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::from(141)
        }
        Err(e) => {
            eprintln!("server: error: {e}");
            ExitCode::FAILURE
        }
    }
}
