//! The `/metrics` gauges read from the store (issue 22, 16): enrolled
//! students, current and revoked certificates, reports, the roster. The
//! counters count what this process did since it started; these say what
//! the course holds, across restarts and hosts.
//!
//! They are read on a thread of their own, with a store connection of its
//! own, never on a reactor's loop: a scrape serves the values last read and
//! costs no query, and a database that stops answering stalls only this
//! thread (the gauges keep their last values, and
//! `certboard_store_read_timestamp_seconds` shows how old they are). The
//! store is read every [`REFRESH_EVERY`], and again after a scrape, but
//! never more often than [`MIN_GAP`]: however often `/metrics` is fetched,
//! the store sees at most one count query per [`MIN_GAP`].

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::ops::metrics::{Metrics, StoreState};
use crate::store::{Census, Storage};
use crate::time::now_unix;

/// How often the store is read without a scrape asking.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(15);
/// The least time between two reads, whatever the scrapes.
pub(crate) const MIN_GAP: Duration = Duration::from_secs(1);

/// The gauges of `census`, read at `read_at`.
pub(crate) fn state_of(census: &Census, read_at: i64) -> StoreState {
    StoreState {
        students_enrolled: census.students_current,
        certificates_current: census.certs_current,
        certificates_revoked: census.certs_revoked,
        certificates_stored: census.certs,
        reports_stored: census.reports,
        roster_students: census.roster,
        read_at,
    }
}

/// The thread that reads the store into the gauges; it ends when this is
/// dropped (after its read in progress, if any: it is never joined, so a
/// stopped database cannot hold up the server's exit).
#[derive(Debug)]
pub(crate) struct StoreGauges {
    _stop: Sender<()>,
}

impl StoreGauges {
    /// Reads `store` into `metrics`' store gauges from now on, every
    /// `every` and after scrapes (see the module's header).
    pub(crate) fn start(
        store: Box<dyn Storage + Send>,
        metrics: Arc<Metrics>,
        every: Duration,
    ) -> std::io::Result<StoreGauges> {
        let (stop, stopped) = mpsc::channel::<()>();
        let (scraped_tx, scraped) = mpsc::sync_channel::<()>(1);
        metrics.tell_scrapes_to(scraped_tx);
        std::thread::Builder::new()
            .name("store-gauges".into())
            .spawn(move || run(store, &metrics, every, &stopped, &scraped))?;
        Ok(StoreGauges { _stop: stop })
    }
}

/// The thread's loop: wait for a scrape or the period, read, publish.
fn run(
    mut store: Box<dyn Storage + Send>,
    metrics: &Metrics,
    every: Duration,
    stopped: &Receiver<()>,
    scraped: &Receiver<()>,
) {
    let mut last_read: Option<Instant> = None;
    let mut failing = false;
    loop {
        // The earlier of the period and a scrape (checked at MIN_GAP steps:
        // a scrape waits for no read).
        let due = last_read.map_or(Instant::now(), |t| t + every);
        let mut asked = false;
        let mut scrape_seen = false;
        while !asked && Instant::now() < due {
            let step = due.saturating_duration_since(Instant::now()).min(MIN_GAP);
            match stopped.recv_timeout(step) {
                Err(RecvTimeoutError::Timeout) => {}
                // Stopped (or its sender gone with the server).
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
            scrape_seen |= scraped.try_recv().is_ok();
            asked = scrape_seen && last_read.is_none_or(|t| t.elapsed() >= MIN_GAP);
        }
        // A scrape during the read asks for the next one, not this one.
        while scraped.try_recv().is_ok() {}
        let now = now_unix();
        last_read = Some(Instant::now());
        match store.census(now) {
            Ok(census) => {
                metrics.set_store_state(&state_of(&census, now));
                if std::mem::take(&mut failing) {
                    info!("metrics: the store answers again; its gauges are current");
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    warn!(
                        "metrics: cannot read the store ({e}); its gauges keep their last values \
                         until it answers"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Record, SqliteStore};

    fn gauge(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn a_scrape_after_a_change_brings_the_store_gauges_up_to_date(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let pki = crate::testing::TestPki::create(dir.path(), &Default::default())?;
        let mut writer = SqliteStore::open(dir.path())?;
        let metrics = Arc::new(Metrics::new());
        // A long period: only scrapes make it read again.
        let _gauges = StoreGauges::start(
            Box::new(SqliteStore::open(dir.path())?),
            Arc::clone(&metrics),
            Duration::from_secs(3600),
        )?;
        let read = |want: f64| -> Result<bool, Box<dyn std::error::Error>> {
            // Bounded: MIN_GAP is 1 s, so 100 × 50 ms covers several reads.
            for _ in 0..100 {
                let text = metrics.encode();
                if gauge(&text, "certboard_certificates_current") == Some(want) {
                    return Ok(true);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(false)
        };
        assert!(read(0.0)?, "the first read");
        for sid in ["1155000001", "1155000002"] {
            let issued = crate::testing::Student::enroll(&pki.ca, sid)?.issued;
            let rec: Record = crate::protocol::cert_record(
                issued,
                crate::store::Origin::Certboard,
                crate::store::Authorisation::Open,
            );
            writer.commit(&[rec])?;
        }
        writer.revoke_sid(
            "1155000002",
            crate::store::RevocationReason::Superseded,
            now_unix(),
        )?;
        assert!(read(1.0)?, "{}", metrics.encode());
        let text = metrics.encode();
        assert_eq!(gauge(&text, "certboard_certificates_revoked"), Some(1.0));
        assert_eq!(gauge(&text, "certboard_certificates_stored"), Some(2.0));
        assert_eq!(gauge(&text, "certboard_students_enrolled"), Some(1.0));
        assert!(gauge(&text, "certboard_store_read_timestamp_seconds").is_some_and(|t| t > 0.0));
        Ok(())
    }

    #[test]
    fn the_census_maps_to_the_gauges_field_by_field() {
        let c = Census {
            certs: 6,
            certs_current: 5,
            certs_revoked: 4,
            students_current: 3,
            reports: 2,
            roster: 1,
        };
        let s = state_of(&c, 7);
        assert_eq!(
            (
                s.certificates_stored,
                s.certificates_current,
                s.certificates_revoked,
                s.students_enrolled,
                s.reports_stored,
                s.roster_students,
                s.read_at
            ),
            (6, 5, 4, 3, 2, 1, 7)
        );
    }
}
