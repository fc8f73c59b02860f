//! The listening sockets: binding, what each one serves, and the
//! bookkeeping of accept failures. Accepting itself is the reactor's one
//! accept path.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{warn, Level};
use mio::net::TcpListener;

use crate::protocol::{ConnectionError, ServiceKind};

/// What a listener's connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Serves {
    /// Frames of our protocol (or the legacy one), for a session.
    Frames(ServiceKind),
    /// HTTP requests for the operations endpoints (OCSP, CRL, health,
    /// metrics).
    Http,
    /// HTTP requests for the staff web interface.
    Staff,
}

impl Serves {
    /// The listener's name in logs and metrics.
    pub(super) fn name(self) -> &'static str {
        match self {
            Serves::Frames(kind) => kind.name(),
            Serves::Http => "http",
            Serves::Staff => "staff",
        }
    }

    /// The level of a connection's "connected" and "closed" lines: HTTP
    /// clients come and go by the request, so theirs are debug lines.
    pub(super) fn log_level(self) -> Level {
        match self {
            Serves::Frames(_) => Level::Info,
            Serves::Http | Serves::Staff => Level::Debug,
        }
    }

    /// What a client refused at accept is told, in what it reads.
    pub(super) fn refusal_at_accept(self, e: &ConnectionError) -> Vec<u8> {
        match self {
            Serves::Frames(_) => e.frame(),
            Serves::Http | Serves::Staff => super::http::Http::refusal_at_accept(e),
        }
    }
}

/// One listening socket and its connections' count.
#[derive(Debug)]
pub(super) struct Listener {
    pub(super) serves: Serves,
    pub(super) socket: TcpListener,
    /// Connections open from this listener.
    pub(super) active: usize,
    /// Accepting stopped for a moment (a failure); the sweep retries.
    pub(super) paused_until: Option<Instant>,
}

impl Listener {
    pub(super) fn new(serves: Serves, socket: TcpListener) -> Listener {
        Listener {
            serves,
            socket,
            active: 0,
            paused_until: None,
        }
    }
}

/// Binds a listening socket; with `reuse_port` several reactors can bind the
/// same address and the kernel spreads connections among them.
pub(crate) fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Binds the first of several SO_REUSEPORT listeners. SO_REUSEPORT would
/// also let a second server (of the same user) bind the same port and take
/// half of the connections, silently: so the address is first bound
/// without it, which fails if anyone holds it, then released and bound
/// shared. (Port 0 resolves to a free port in the first step.)
pub(crate) fn bind_first_shared(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let probe = std::net::TcpListener::bind(addr)?;
    let resolved = probe.local_addr()?;
    drop(probe);
    bind(resolved, true)
}

/// EMFILE or ENFILE: the process's or the system's descriptor table is full.
pub(super) fn out_of_descriptors(e: &io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(ENFILE | EMFILE))
}

/// The spare descriptor; `None` (retried later) if even that fails.
pub(super) fn open_spare() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// How often the accept-failure lines may be written.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(1);

/// Accept failures and "server busy" refusals for lack of descriptors,
/// counted and logged at most once per [`ACCEPT_LOG_EVERY`]: under a
/// flood they would otherwise fill the log (and slow the loop on it).
#[derive(Debug, Default)]
pub(super) struct AcceptFailures {
    last_logged: Option<Instant>,
    failed: u64,
    refused: u64,
}

impl AcceptFailures {
    fn due(&mut self) -> bool {
        let now = Instant::now();
        let due = self
            .last_logged
            .is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_EVERY);
        if due {
            self.last_logged = Some(now);
        }
        due
    }

    pub(super) fn note(&mut self, serves: Serves, e: &io::Error) {
        self.failed += 1;
        if self.due() {
            warn!(
                "{} listener: accept failed: {e} ({} time(s) since the last such line)",
                serves.name(),
                std::mem::take(&mut self.failed)
            );
        }
    }

    pub(super) fn refused(&mut self, serves: Serves, addr: SocketAddr) {
        self.refused += 1;
        if self.due() {
            warn!(
                "{addr}: refused: server busy, out of file descriptors ({} connection(s) to the \
                 {} listener refused so since the last such line)",
                std::mem::take(&mut self.refused),
                serves.name()
            );
        }
    }
}
