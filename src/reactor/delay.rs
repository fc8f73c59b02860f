//! Group commit delay, as PostgreSQL's `commit_delay` and
//! `commit_siblings`: records made ready while other exchanges are about to
//! make theirs are held back a moment, so that one transaction, one `fsync`
//! and one checkpoint signature serve them all.
//!
//! Each commit that appends leaves makes a new tree head, and every
//! receipt carries a checkpoint signed for its own head: with the eight
//! submitting clients of `bench/compare.sh`, each bound by its own RSA
//! decryption, reports come one at a time, and nearly every one paid for
//! its own commit and its own Ed25519 signature (~70 µs here, a fifth of
//! the log's cost per submission). A record is held only while some other
//! exchange owes the message that makes its record (a report after the
//! offer, a request after the challenge: [`Expected`]), never beyond the
//! bound, and a batch is never held while another is in flight (the records
//! then wait for that one anyway). A lone student waits nothing extra.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The default bound (`server --commit-delay`): about the time two of
/// compare.sh's submitting clients take to send their next report (one
/// every ~2 ms at its rate), a few percent of a submission's own time on
/// the client's side.
pub const DEFAULT_COMMIT_DELAY_MS: u32 = 4;

/// One exchange that owes the message making its record, counted in its
/// reactor's tally while held; dropping it (the exchange moved on, was
/// refused or closed) takes it out again, whatever the path. (The reactor
/// counts its jobs on the worker pool the same way, in a tally of their
/// own.)
#[derive(Debug)]
pub(super) struct Expected(Arc<AtomicUsize>);

impl Expected {
    pub(super) fn new(tally: &Arc<AtomicUsize>) -> Expected {
        // Relaxed: the tally is read by the same reactor thread that
        // changes it; the atomic only makes the connection `Send`.
        tally.fetch_add(1, Ordering::Relaxed);
        Expected(Arc::clone(tally))
    }
}

impl Drop for Expected {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Brings a connection's count in line with its session: counted while
/// `awaits` says its record is owed.
pub(super) fn sync(slot: &mut Option<Expected>, awaits: bool, tally: &Arc<AtomicUsize>) {
    match (awaits, slot.is_some()) {
        (true, false) => *slot = Some(Expected::new(tally)),
        (false, true) => *slot = None,
        _ => {}
    }
}

/// When the pending records may go to the writer: `None` now, or not
/// before the instant returned. `since` is when the oldest of them became
/// ready, `expected` how many other exchanges owe a record now.
pub(super) fn hold_until(
    delay: Duration,
    since: Instant,
    expected: usize,
    now: Instant,
) -> Option<Instant> {
    if delay.is_zero() || expected == 0 {
        return None;
    }
    let deadline = since.checked_add(delay)?;
    (now < deadline).then_some(deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_record_is_held_only_while_another_is_owed_and_never_beyond_the_bound() {
        let t0 = Instant::now();
        // Someone else owes a record: held until the bound, from the oldest.
        assert_eq!(hold_until(4 * MS, t0, 3, t0), Some(t0 + 4 * MS));
        assert_eq!(hold_until(4 * MS, t0, 1, t0 + 3 * MS), Some(t0 + 4 * MS));
        // The bound reached or passed: now.
        assert_eq!(hold_until(4 * MS, t0, 3, t0 + 4 * MS), None);
        assert_eq!(hold_until(4 * MS, t0, 3, t0 + 9 * MS), None);
    }

    #[test]
    fn a_lone_exchange_and_a_zero_delay_wait_nothing() {
        let t0 = Instant::now();
        assert_eq!(hold_until(4 * MS, t0, 0, t0), None);
        assert_eq!(hold_until(Duration::ZERO, t0, 50, t0), None);
    }

    #[test]
    fn each_exchange_is_counted_once_and_uncounted_however_it_ends() {
        let tally = Arc::new(AtomicUsize::new(0));
        let (mut a, mut b) = (None, None);
        sync(&mut a, true, &tally);
        sync(&mut a, true, &tally);
        sync(&mut b, true, &tally);
        assert_eq!(tally.load(Ordering::Relaxed), 2);
        // Its record made: no longer owed.
        sync(&mut a, false, &tally);
        assert_eq!(tally.load(Ordering::Relaxed), 1);
        sync(&mut a, false, &tally);
        assert_eq!(tally.load(Ordering::Relaxed), 1);
        // Closed while owing (its connection dropped).
        drop(b);
        assert_eq!(tally.load(Ordering::Relaxed), 0);
    }
}
