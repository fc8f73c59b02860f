//! The open-file limit, checked at start.
//!
//! Every connection is a descriptor. With the common soft limit of 1024
//! and `--max-connections 10000`, about a thousand idle connections fill
//! the table and every later client waits in the listen backlog, never
//! told anything. So at start the soft `RLIMIT_NOFILE` is raised to the
//! hard limit (which an unprivileged process may do), and
//! `--max-connections` is lowered, with a log line, to what the limit
//! leaves once the server's own descriptors are set aside.

use std::fmt;
use std::io;

use log::{info, warn};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Linux's default `fs.nr_open`: the most a soft limit can be set to when
/// the hard limit is unlimited (setting "unlimited" itself fails).
const NR_OPEN_DEFAULT: u64 = 1 << 20;

/// Descriptors the process needs whatever the number of reactors: stdin,
/// stdout, stderr, the writer's SQLite database, WAL and shared memory
/// (and a journal), OpenSSL's random device, and slack for what the
/// libraries open unseen.
pub(crate) const RESERVED_BASE: u64 = 32;

/// Descriptors each reactor needs besides its listeners and connections:
/// its epoll and waker, the signal pipe, its reading SQLite connection
/// (database, WAL, shared memory) and a spare.
pub(crate) const RESERVED_PER_REACTOR: u64 = 8;

/// The open-file limit before and after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoFile {
    /// The soft limit the process started with.
    pub(crate) before: u64,
    /// The soft limit now.
    pub(crate) soft: u64,
    /// The hard limit (`None`: unlimited).
    pub(crate) hard: Option<u64>,
}

/// Why the soft limit could not be raised.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum FdLimitError {
    /// The soft limit is unlimited or unknown: nothing to size against.
    Unknown,
    /// `setrlimit` refused the new soft limit.
    Set {
        /// The soft limit asked for.
        wanted: u64,
        /// The soft limit the process keeps.
        current: u64,
        /// The cause.
        source: io::Error,
    },
}

impl fmt::Display for FdLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdLimitError::Unknown => write!(f, "the open-file limit is unknown"),
            FdLimitError::Set {
                wanted,
                current,
                source,
            } => write!(
                f,
                "cannot raise the open-file limit from {current} to {wanted}: {source}"
            ),
        }
    }
}

impl std::error::Error for FdLimitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FdLimitError::Set { source, .. } => Some(source),
            FdLimitError::Unknown => None,
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (to Linux's default
/// `fs.nr_open` when the hard limit is unlimited). Never lowers it.
pub(crate) fn raise_nofile() -> Result<NoFile, FdLimitError> {
    let Rlimit {
        current, maximum, ..
    } = getrlimit(Resource::Nofile);
    let before = current.ok_or(FdLimitError::Unknown)?;
    let wanted = maximum.unwrap_or(NR_OPEN_DEFAULT).max(before);
    if wanted > before {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(wanted),
                maximum,
            },
        )
        .map_err(|e| FdLimitError::Set {
            wanted,
            current: before,
            source: e.into(),
        })?;
    }
    Ok(NoFile {
        before,
        soft: wanted,
        hard: maximum,
    })
}

/// The most connections per listener that `soft` descriptors allow with
/// `reactors` reactors of `listeners` listeners each (at least 1), and
/// `wanted` if that is fewer. One listener may use every descriptor left
/// (the load is rarely shared evenly: 10,000 idle clients all on the CA's
/// port is the bench's case); should all listeners fill at once, accept
/// fails for lack of descriptors and the reactor's spare descriptor
/// refuses the newcomer with "server busy" instead of leaving it waiting.
pub(crate) fn fit_connections(
    wanted: usize,
    soft: u64,
    listeners: usize,
    reactors: usize,
) -> usize {
    let listeners = u64::try_from(listeners.max(1)).unwrap_or(u64::MAX);
    let reactors = u64::try_from(reactors.max(1)).unwrap_or(u64::MAX);
    let reserved = reactors
        .saturating_mul(RESERVED_PER_REACTOR.saturating_add(listeners))
        .saturating_add(RESERVED_BASE);
    let per_listener = soft.saturating_sub(reserved) / reactors;
    usize::try_from(per_listener)
        .unwrap_or(usize::MAX)
        .clamp(1, wanted.max(1))
}

/// At start: raises the limit, then returns `--max-connections` lowered to
/// what it allows, logging both.
pub(crate) fn fit_max_connections(wanted: usize, listeners: usize, reactors: usize) -> usize {
    let soft = match raise_nofile() {
        Ok(l) => {
            if l.soft > l.before {
                info!(
                    "raised the open-file limit (RLIMIT_NOFILE) from {} to {}",
                    l.before, l.soft
                );
            }
            l.soft
        }
        Err(FdLimitError::Unknown) => return wanted,
        Err(e @ FdLimitError::Set { current, .. }) => {
            warn!("{e}");
            current
        }
    };
    let fitted = fit_connections(wanted, soft, listeners, reactors);
    if fitted < wanted {
        warn!(
            "--max-connections lowered from {wanted} to {fitted} per listener: the open-file \
             limit is {soft} for {reactors} reactor(s) of {listeners} listener(s) (raise the hard \
             limit: `ulimit -Hn`, systemd's LimitNOFILE=)"
        );
    }
    fitted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_limit_keeps_what_was_asked() {
        assert_eq!(fit_connections(10_000, 1 << 20, 2, 1), 10_000);
        // (2^20 - (32 + 64 × 10)) / 64 reactors = 16,373: enough.
        assert_eq!(fit_connections(10_000, 1 << 20, 2, 64), 10_000);
        // 20,000 (this machine's hard limit) leaves 10,000 for one listener.
        assert_eq!(fit_connections(12_000, 20_000, 2, 1), 12_000);
    }

    #[test]
    fn the_common_soft_limit_lowers_ten_thousand() {
        // 1024 - (32 + 1 × (8 + 2)) = 982 descriptors, which either
        // listener may use.
        assert_eq!(fit_connections(10_000, 1024, 2, 1), 982);
        assert_eq!(fit_connections(10_000, 1024, 1, 1), 983);
        // 4 reactors: (1024 - (32 + 4 × 10)) / 4 = 238 each.
        assert_eq!(fit_connections(10_000, 1024, 2, 4), 238);
    }

    #[test]
    fn never_below_one_nor_above_what_was_asked() {
        assert_eq!(fit_connections(10_000, 10, 2, 1), 1);
        assert_eq!(fit_connections(10_000, 0, 2, 1), 1);
        assert_eq!(fit_connections(5, 1 << 20, 2, 1), 5);
        assert_eq!(fit_connections(0, 1 << 20, 0, 0), 1);
        assert!(fit_connections(usize::MAX, u64::MAX, 2, 1) > 1 << 60);
    }

    #[test]
    fn raising_never_lowers_and_reaches_the_hard_limit() -> Result<(), FdLimitError> {
        let l = raise_nofile()?;
        assert!(l.soft >= l.before);
        let now = getrlimit(Resource::Nofile);
        assert_eq!(now.current, Some(l.soft));
        assert_eq!(
            now.current,
            Some(l.hard.unwrap_or(NR_OPEN_DEFAULT).max(l.before))
        );
        Ok(())
    }
}
