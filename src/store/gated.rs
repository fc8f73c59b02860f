//! A store for tests that stops answering on one chosen call until the
//! test lets it go: a database that went quiet, for the commit thread's
//! and the bounded wrapper's tests alike.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use super::{
    Assignment, Census, CertRow, CertStatus, CodeKey, Counts, EnrollView, Extension, Record,
    ReportRecord, Revocation, RevocationMark, RevocationReason, RosterChange, RosterEntry, Serial,
    Storage, StoreError, Student, SubmissionView,
};

/// Which call waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GatedCall {
    /// `commit` (a COMMIT the database does not answer).
    Commit,
    /// `check` (a health check the database does not answer).
    Check,
    /// `revocation_mark` (the read before each `/crl`).
    RevocationMark,
}

/// `inner`, except that each `at` call first waits for one message on
/// `open` (a dropped sender lets it go too).
pub(crate) struct Gated<S> {
    pub(crate) inner: S,
    pub(crate) at: GatedCall,
    pub(crate) open: Arc<Mutex<Receiver<()>>>,
}

impl<S> Gated<S> {
    fn wait(&self, call: GatedCall) {
        if call == self.at {
            if let Ok(open) = self.open.lock() {
                let _ = open.recv();
            }
        }
    }
}

impl<S: Storage> Storage for Gated<S> {
    fn commit(&mut self, batch: &[Record]) -> Result<(), StoreError> {
        self.wait(GatedCall::Commit);
        self.inner.commit(batch)
    }
    fn commit_logged(
        &mut self,
        batch: &[Record],
    ) -> Result<Option<crate::store::tlog::Appended>, StoreError> {
        self.wait(GatedCall::Commit);
        self.inner.commit_logged(batch)
    }
    fn cert_status(&mut self, s: &Serial) -> Result<CertStatus, StoreError> {
        self.inner.cert_status(s)
    }
    fn revoke_serial(
        &mut self,
        s: &Serial,
        r: RevocationReason,
        at: i64,
    ) -> Result<usize, StoreError> {
        self.inner.revoke_serial(s, r, at)
    }
    fn revoke_sid(&mut self, s: &str, r: RevocationReason, at: i64) -> Result<usize, StoreError> {
        self.inner.revoke_sid(s, r, at)
    }
    fn certs(&mut self) -> Result<Vec<CertRow>, StoreError> {
        self.inner.certs()
    }
    fn reports(&mut self) -> Result<Vec<ReportRecord>, StoreError> {
        self.inner.reports()
    }
    fn next_crl_number(&mut self) -> Result<u64, StoreError> {
        self.inner.next_crl_number()
    }
    fn import_roster(&mut self, s: &[Student]) -> Result<RosterChange, StoreError> {
        self.inner.import_roster(s)
    }
    fn roster(&mut self) -> Result<Vec<RosterEntry>, StoreError> {
        self.inner.roster()
    }
    fn enrollment_view(&mut self, s: &str) -> Result<EnrollView, StoreError> {
        self.inner.enrollment_view(s)
    }
    fn store_codes(
        &mut self,
        c: &[(String, CodeKey)],
        at: i64,
        r: bool,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.store_codes(c, at, r)
    }
    fn counts(&mut self) -> Result<Counts, StoreError> {
        self.inner.counts()
    }
    fn record_window(&mut self, o: Option<i64>, c: Option<i64>) -> Result<(), StoreError> {
        self.inner.record_window(o, c)
    }
    fn recorded_window(&mut self) -> Result<(Option<i64>, Option<i64>), StoreError> {
        self.inner.recorded_window()
    }
    fn revocations(&mut self) -> Result<Vec<Revocation>, StoreError> {
        self.inner.revocations()
    }
    fn census(&mut self, now: i64) -> Result<Census, StoreError> {
        self.inner.census(now)
    }
    fn revocation_mark(&mut self) -> Result<RevocationMark, StoreError> {
        self.wait(GatedCall::RevocationMark);
        self.inner.revocation_mark()
    }
    fn uploads(&mut self) -> Result<Vec<crate::store::UploadRecord>, StoreError> {
        self.inner.uploads()
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
        self.inner.submissions_of(sid)
    }
    fn upload_chunk(&mut self, upload_id: i64, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.upload_chunk(upload_id, seq)
    }
    fn staged_chunks(&mut self) -> Result<u64, StoreError> {
        self.inner.staged_chunks()
    }
    fn discard_orphan_chunks(&mut self, before: i64) -> Result<u64, StoreError> {
        self.inner.discard_orphan_chunks(before)
    }
    fn check(&mut self) -> Result<(), StoreError> {
        self.wait(GatedCall::Check);
        self.inner.check()
    }
    fn put_assignment(&mut self, a: &Assignment) -> Result<(), StoreError> {
        self.inner.put_assignment(a)
    }
    fn assignments(&mut self) -> Result<Vec<Assignment>, StoreError> {
        self.inner.assignments()
    }
    fn submission_view(&mut self, sid: &str, a: &str) -> Result<SubmissionView, StoreError> {
        self.inner.submission_view(sid, a)
    }
    fn extend(&mut self, sid: &str, a: &str, until: i64, at: i64) -> Result<(), StoreError> {
        self.inner.extend(sid, a, until, at)
    }
    fn extensions(&mut self) -> Result<Vec<Extension>, StoreError> {
        self.inner.extensions()
    }
    fn drop_student(&mut self, sid: &str, at: i64) -> Result<bool, StoreError> {
        self.inner.drop_student(sid, at)
    }
    fn set_course_setting(&mut self, n: &str, v: Option<&str>) -> Result<(), StoreError> {
        self.inner.set_course_setting(n, v)
    }
    fn course_setting(&mut self, n: &str) -> Result<Option<String>, StoreError> {
        self.inner.course_setting(n)
    }
    fn log_head(&mut self) -> Result<crate::store::tlog::Head, StoreError> {
        self.inner.log_head()
    }
    fn log_nodes(
        &mut self,
        ids: &[crate::tlog::NodeId],
    ) -> Result<Vec<crate::tlog::Hash>, StoreError> {
        self.inner.log_nodes(ids)
    }
    fn log_entries(&mut self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.log_entries(from, to)
    }
    fn log_entry_and_nodes(
        &mut self,
        index: u64,
        ids: &[crate::tlog::NodeId],
    ) -> Result<(Vec<u8>, Vec<crate::tlog::Hash>), StoreError> {
        self.inner.log_entry_and_nodes(index, ids)
    }
    fn log_index_of(&mut self, record: &str) -> Result<Option<u64>, StoreError> {
        self.inner.log_index_of(record)
    }
}
