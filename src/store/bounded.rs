//! A store the event loop may call without waiting on the network.
//!
//! The sessions read the store on the loop (an enrollment's view, a
//! certificate's status, OCSP, `/health`). SQLite answers from the local
//! disk; PostgreSQL answers over the network, and a database that stops
//! answering (a partition, a stopped host: not a refusal, which fails at
//! once) would hold the loop, and every client of that host with it, for
//! as long as the kernel or the connect timeout allow.
//!
//! [`Bounded`] runs every call of the store it wraps on a reader thread of
//! its own, which owns that store (and its connection, and its reconnects),
//! and waits for the answer at most a bound ([`LOOP_STORE_WAIT`] for the
//! server's loops). No answer in time: the call fails as
//! [`StoreError::Unavailable`] and the store is *unanswering*: every
//! further call fails at once, without waiting, until the reader thread's
//! outstanding call returns, and then calls go through again. So a stopped
//! database costs a loop one bound, once, and it recovers by itself.
//!
//! A late answer is dropped: a read is simply not used. A
//! [`Storage::commit`] that times out is reported with
//! [`super::Unavailable::outcome_unknown`] set, since it may still commit.
//! Nothing else here writes on the loop: the server's writes go through
//! the commit thread ([`crate::reactor::commit`]), which has its own connection and
//! may wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use super::{
    Assignment, Census, CertRow, CertStatus, CodeKey, Counts, EnrollView, Extension, Record,
    ReportRecord, Revocation, RevocationMark, RevocationReason, RosterChange, RosterEntry, Serial,
    Storage, StoreError, Student, SubmissionView, Unavailable,
};

/// The longest a server's event loop waits for one answer of a store on
/// the network: under the 100 ms the loop may lose to a database that
/// stops answering, with room for the two thread switches of a call.
pub const LOOP_STORE_WAIT: Duration = Duration::from_millis(80);

/// One call, run on the reader thread against the store it owns; it sends
/// its answer on a channel of its own.
type Call = Box<dyn FnOnce(&mut dyn Storage) + Send>;

/// A store whose calls wait at most a bound (see the module's header).
pub struct Bounded {
    calls: Sender<Call>,
    /// Set while the reader thread runs a call, cleared by the call itself
    /// before it answers: a call still running when a new one comes means
    /// the store is unanswering.
    busy: Arc<AtomicBool>,
    wait: Duration,
    /// Where the store is, for errors and logs (never a password).
    target: String,
}

impl std::fmt::Debug for Bounded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bounded")
            .field("target", &self.target)
            .field("wait", &self.wait)
            .field("unanswering", &self.busy.load(Ordering::Acquire))
            .finish()
    }
}

impl Bounded {
    /// Moves `store` to a new reader thread; each call then waits at most
    /// `wait`. `target` names the store in errors. The thread ends when
    /// the `Bounded` is dropped and its outstanding call, if any, returns.
    pub fn new(
        store: Box<dyn Storage + Send>,
        target: String,
        wait: Duration,
    ) -> std::io::Result<Bounded> {
        let (calls, queue) = mpsc::channel::<Call>();
        std::thread::Builder::new()
            .name("store-reader".into())
            .spawn(move || {
                let mut store = store;
                while let Ok(call) = queue.recv() {
                    call(store.as_mut());
                }
            })?;
        Ok(Bounded {
            calls,
            busy: Arc::new(AtomicBool::new(false)),
            wait,
            target,
        })
    }

    /// Whether a call is outstanding on the reader thread, past its bound:
    /// calls now fail at once.
    pub fn unanswering(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Runs `op` on the reader thread and waits at most the bound for its
    /// answer. `writes` says whether `op` may change the store (a timed-out
    /// write's outcome is unknown).
    fn call<T: Send + 'static>(
        &mut self,
        writes: bool,
        op: impl FnOnce(&mut dyn Storage) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if self.unanswering() {
            // Nothing was sent: nothing of this call happened.
            return Err(self.unavailable(false));
        }
        let (answer, answered) = mpsc::sync_channel(1);
        // Set before sending; the call clears it once the store has
        // answered and before it answers, so the next call never finds it
        // set unless this one is still running.
        self.busy.store(true, Ordering::Release);
        let done = Arc::clone(&self.busy);
        let call: Call = Box::new(move |store| {
            let result = op(store);
            done.store(false, Ordering::Release);
            // The caller may have stopped waiting: the answer is then dropped.
            let _ = answer.send(result);
        });
        if self.calls.send(call).is_err() {
            self.busy.store(false, Ordering::Release);
            log::error!("{}: the store's reader thread is gone", self.target);
            return Err(self.unavailable(false));
        }
        match answered.recv_timeout(self.wait) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => {
                log::warn!(
                    "{}: no answer within {} ms; refusing what needs the store until it answers",
                    self.target,
                    self.wait.as_millis()
                );
                Err(self.unavailable(writes))
            }
            // The thread panicked in the call (and is gone): the next call
            // finds it gone.
            Err(RecvTimeoutError::Disconnected) => {
                self.busy.store(false, Ordering::Release);
                log::error!("{}: the store's reader thread failed", self.target);
                Err(self.unavailable(writes))
            }
        }
    }

    fn unavailable(&self, outcome_unknown: bool) -> StoreError {
        StoreError::Unavailable(Unavailable {
            target: self.target.clone(),
            outcome_unknown,
            retry_in: Duration::ZERO,
            source: None,
        })
    }
}

// Each method hands its call, with owned copies of its arguments, to the
// reader thread: one line each.
impl Storage for Bounded {
    fn commit(&mut self, batch: &[Record]) -> Result<(), StoreError> {
        let batch = batch.to_vec();
        self.call(true, move |s| s.commit(&batch))
    }
    fn commit_logged(
        &mut self,
        batch: &[Record],
    ) -> Result<Option<crate::store::tlog::Appended>, StoreError> {
        let batch = batch.to_vec();
        self.call(true, move |s| s.commit_logged(&batch))
    }
    fn cert_status(&mut self, serial: &Serial) -> Result<CertStatus, StoreError> {
        let serial = serial.clone();
        self.call(false, move |s| s.cert_status(&serial))
    }
    fn revoke_serial(
        &mut self,
        serial: &Serial,
        reason: RevocationReason,
        at: i64,
    ) -> Result<usize, StoreError> {
        let serial = serial.clone();
        self.call(true, move |s| s.revoke_serial(&serial, reason, at))
    }
    fn revoke_sid(
        &mut self,
        sid: &str,
        reason: RevocationReason,
        at: i64,
    ) -> Result<usize, StoreError> {
        let sid = sid.to_string();
        self.call(true, move |s| s.revoke_sid(&sid, reason, at))
    }
    fn certs(&mut self) -> Result<Vec<CertRow>, StoreError> {
        self.call(false, |s| s.certs())
    }
    fn reports(&mut self) -> Result<Vec<ReportRecord>, StoreError> {
        self.call(false, |s| s.reports())
    }
    fn next_crl_number(&mut self) -> Result<u64, StoreError> {
        self.call(true, |s| s.next_crl_number())
    }
    fn import_roster(&mut self, students: &[Student]) -> Result<RosterChange, StoreError> {
        let students = students.to_vec();
        self.call(true, move |s| s.import_roster(&students))
    }
    fn roster(&mut self) -> Result<Vec<RosterEntry>, StoreError> {
        self.call(false, |s| s.roster())
    }
    fn enrollment_view(&mut self, sid: &str) -> Result<EnrollView, StoreError> {
        let sid = sid.to_string();
        self.call(false, move |s| s.enrollment_view(&sid))
    }
    fn store_codes(
        &mut self,
        codes: &[(String, CodeKey)],
        at: i64,
        replace_unused: bool,
    ) -> Result<Vec<String>, StoreError> {
        let codes = codes.to_vec();
        self.call(true, move |s| s.store_codes(&codes, at, replace_unused))
    }
    fn counts(&mut self) -> Result<Counts, StoreError> {
        self.call(false, |s| s.counts())
    }
    fn record_window(&mut self, open: Option<i64>, close: Option<i64>) -> Result<(), StoreError> {
        self.call(true, move |s| s.record_window(open, close))
    }
    fn recorded_window(&mut self) -> Result<(Option<i64>, Option<i64>), StoreError> {
        self.call(false, |s| s.recorded_window())
    }
    fn revocations(&mut self) -> Result<Vec<Revocation>, StoreError> {
        self.call(false, |s| s.revocations())
    }
    fn census(&mut self, now: i64) -> Result<Census, StoreError> {
        self.call(false, move |s| s.census(now))
    }
    fn revocation_mark(&mut self) -> Result<RevocationMark, StoreError> {
        self.call(false, |s| s.revocation_mark())
    }
    fn uploads(&mut self) -> Result<Vec<crate::store::UploadRecord>, StoreError> {
        self.call(false, |s| s.uploads())
    }
    fn submissions_of(
        &mut self,
        sid: &str,
    ) -> Result<
        (
            Vec<crate::store::ReportRecord>,
            Vec<crate::store::UploadRecord>,
        ),
        StoreError,
    > {
        let sid = sid.to_string();
        self.call(false, move |s| s.submissions_of(&sid))
    }
    fn upload_chunk(&mut self, upload_id: i64, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(false, move |s| s.upload_chunk(upload_id, seq))
    }
    fn staged_chunks(&mut self) -> Result<u64, StoreError> {
        self.call(false, |s| s.staged_chunks())
    }
    fn discard_orphan_chunks(&mut self, before: i64) -> Result<u64, StoreError> {
        self.call(true, move |s| s.discard_orphan_chunks(before))
    }
    fn check(&mut self) -> Result<(), StoreError> {
        self.call(false, |s| s.check())
    }
    fn put_assignment(&mut self, a: &Assignment) -> Result<(), StoreError> {
        let a = a.clone();
        self.call(true, move |s| s.put_assignment(&a))
    }
    fn assignments(&mut self) -> Result<Vec<Assignment>, StoreError> {
        self.call(false, |s| s.assignments())
    }
    fn submission_view(
        &mut self,
        sid: &str,
        assignment: &str,
    ) -> Result<SubmissionView, StoreError> {
        let (sid, assignment) = (sid.to_string(), assignment.to_string());
        self.call(false, move |s| s.submission_view(&sid, &assignment))
    }
    fn extend(
        &mut self,
        sid: &str,
        assignment: &str,
        until: i64,
        at: i64,
    ) -> Result<(), StoreError> {
        let (sid, assignment) = (sid.to_string(), assignment.to_string());
        self.call(true, move |s| s.extend(&sid, &assignment, until, at))
    }
    fn extensions(&mut self) -> Result<Vec<Extension>, StoreError> {
        self.call(false, |s| s.extensions())
    }
    fn drop_student(&mut self, sid: &str, at: i64) -> Result<bool, StoreError> {
        let sid = sid.to_string();
        self.call(true, move |s| s.drop_student(&sid, at))
    }
    fn set_course_setting(&mut self, name: &str, value: Option<&str>) -> Result<(), StoreError> {
        let (name, value) = (name.to_string(), value.map(str::to_string));
        self.call(true, move |s| s.set_course_setting(&name, value.as_deref()))
    }
    fn course_setting(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.to_string();
        self.call(false, move |s| s.course_setting(&name))
    }
    fn log_head(&mut self) -> Result<crate::store::tlog::Head, StoreError> {
        self.call(false, |s| s.log_head())
    }
    fn log_nodes(
        &mut self,
        ids: &[crate::tlog::NodeId],
    ) -> Result<Vec<crate::tlog::Hash>, StoreError> {
        let ids = ids.to_vec();
        self.call(false, move |s| s.log_nodes(&ids))
    }
    fn log_entries(&mut self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.call(false, move |s| s.log_entries(from, to))
    }
    fn log_entry_and_nodes(
        &mut self,
        index: u64,
        ids: &[crate::tlog::NodeId],
    ) -> Result<(Vec<u8>, Vec<crate::tlog::Hash>), StoreError> {
        let ids = ids.to_vec();
        self.call(false, move |s| s.log_entry_and_nodes(index, &ids))
    }
    fn log_index_of(&mut self, record: &str) -> Result<Option<u64>, StoreError> {
        let record = record.to_string();
        self.call(false, move |s| s.log_index_of(&record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::gated::{Gated, GatedCall};
    use crate::store::SqliteStore;
    use crate::testing::FakeStore;
    use std::sync::Mutex;

    /// A serial as the records carry it.
    fn sn(hex: &str) -> Serial {
        Serial::parse_hex(hex).expect("a test serial is hex")
    }

    /// The store under test: `check` waits for the test's word (a database
    /// that stopped answering), everything else answers at once from SQLite.
    struct Gate;

    impl Gate {
        fn wrapped(wait: Duration) -> (Bounded, mpsc::Sender<()>) {
            let (release, open) = mpsc::channel();
            let gate = Gated {
                inner: SqliteStore::in_memory().unwrap(),
                at: GatedCall::Check,
                open: Arc::new(Mutex::new(open)),
            };
            let b = Bounded::new(Box::new(gate), "test store".into(), wait).unwrap();
            (b, release)
        }
    }

    fn is_unavailable(r: Result<impl std::fmt::Debug, StoreError>, unknown: bool) -> bool {
        matches!(r, Err(StoreError::Unavailable(Unavailable { outcome_unknown, .. })) if outcome_unknown == unknown)
    }

    #[test]
    fn answers_in_time_pass_through() {
        let (mut b, _release) = Gate::wrapped(Duration::from_secs(30));
        assert_eq!(b.counts().unwrap(), Counts::default());
        assert_eq!(b.cert_status(&sn("0A")).unwrap(), CertStatus::Unknown);
        assert!(!b.unanswering());
    }

    #[test]
    fn a_store_that_stops_answering_fails_once_after_the_bound_then_at_once() {
        let (mut b, release) = Gate::wrapped(Duration::from_millis(20));
        assert!(is_unavailable(b.check(), false));
        assert!(b.unanswering());
        // Nothing more is sent while the outstanding call is stuck, reads
        // and writes alike (a write never sent has certainly not happened).
        assert!(is_unavailable(b.cert_status(&sn("0A")), false));
        assert!(is_unavailable(b.commit(&[]), false));
        // The store answers again: the stuck call returns, and calls pass.
        release.send(()).unwrap();
        let mut recovered = false;
        for _ in 0..500 {
            if !b.unanswering() {
                recovered = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(recovered, "still unanswering");
        assert_eq!(b.cert_status(&sn("0A")).unwrap(), CertStatus::Unknown);
        release.send(()).unwrap();
        b.check().unwrap();
    }

    #[test]
    fn a_write_past_the_bound_has_an_unknown_outcome() {
        // Slow to commit, and its reads fail.
        let slow = FakeStore {
            commit_delay: Duration::from_millis(300),
            failing_reads: true,
            ..FakeStore::default()
        };
        let mut b = Bounded::new(Box::new(slow), "slow".into(), Duration::from_millis(10)).unwrap();
        assert!(is_unavailable(b.commit(&[]), true));
        // Errors of the store itself come through unchanged.
        for _ in 0..500 {
            if !b.unanswering() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(matches!(
            b.enrollment_view("x"),
            Err(StoreError::Duplicate(_))
        ));
    }
}
