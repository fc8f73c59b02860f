//! Group commit off the event loop.
//!
//! One writer thread per server owns the store connection that writes.
//! A reactor hands it the records made ready in a turn of its loop and goes
//! on serving: reading, verifying and signing the next requests while the
//! disk flushes. When the transaction is durable the writer answers on the
//! batch's own channel and wakes the reactor's `Poll`, and only then does
//! the reactor release the replies that waited on it. So an
//! acknowledgment still never outruns its record; what changes is that no
//! connection waits for an `fsync` it has nothing to do with.
//!
//! Batches that arrive while a transaction runs are merged into the next
//! one, across reactors too: with `--reactors N` there is one writer, so
//! one `fsync` serves them all and they never contend for SQLite's write
//! lock.
//!
//! A writer stuck in a `COMMIT` (a database that stopped answering) holds
//! no loop: a reactor only polls for its answer. The batches queued behind
//! it are not kept waiting either: one the writer has not taken up within
//! [`QUEUE_WAIT`] is refused ("store unavailable: nothing was
//! acknowledged", which is true: the writer will never commit it), and the
//! writer skips it. A batch the writer took up waits for the store's own
//! answer, whose outcome nothing else can know.
//!
//! With witnesses (`server --witness`, `--witness-wait`), a batch that
//! appended leaves is not answered until the witnesses have cosigned the
//! tree it left, or the wait's bound passed ([`CosignWait`]): the receipts
//! made from the answer then carry their cosignatures. The wait is here,
//! off the loops, beside the `fsync` it follows; records arriving meanwhile
//! gather into the next batch.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, error};
use mio::Waker;

use crate::ops::metrics::Metrics;
use crate::store::tlog::{self, Appended, Head, Logged};
use crate::store::{Authorisation, Record, Storage, StoreError, Unavailable};

/// Why a batch is not known to be durable.
#[derive(Debug)]
pub(crate) enum CommitError {
    /// The store refused the transaction: nothing of the batch was kept.
    Store(StoreError),
    /// The store's connection was lost while the transaction was being
    /// committed ([`crate::store::Unavailable::outcome_unknown`]): the
    /// batch may or may not have been kept. Unlike a lost writer, the store
    /// reconnects and the server carries on.
    OutcomeUnknown(StoreError),
    /// The writer thread is gone (it panicked) or did not answer in time:
    /// the batch may or may not have been kept. The server cannot record
    /// anything more and must stop.
    WriterLost(&'static str),
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommitError::Store(e) | CommitError::OutcomeUnknown(e) => write!(f, "{e}"),
            CommitError::WriterLost(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for CommitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CommitError::Store(e) | CommitError::OutcomeUnknown(e) => Some(e),
            CommitError::WriterLost(_) => None,
        }
    }
}

/// Two outcomes are alike when they fail the same way: store failures by
/// what they say (a `StoreError` holds I/O and SQLite errors, which have no
/// equality of their own).
impl PartialEq for CommitError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (CommitError::Store(a), CommitError::Store(b))
            | (CommitError::OutcomeUnknown(a), CommitError::OutcomeUnknown(b)) => {
                a.to_string() == b.to_string()
            }
            (CommitError::WriterLost(a), CommitError::WriterLost(b)) => a == b,
            _ => false,
        }
    }
}

const WRITER_GONE: CommitError = CommitError::WriterLost("the commit thread has stopped");

/// What became of one record: durable, with where its log entry went
/// when it has one ([`Logged`]: its receipt's proof reads no index nor
/// head back from the store), or not known to be.
pub(crate) type Outcome = Result<Option<Logged>, CommitError>;

/// Run by the writer after a commit that appended leaves, before its
/// records are answered: has the tree `head` cosigned by the witnesses
/// (waiting a bounded time, calling the second argument now and then:
/// it takes up the batches queued meanwhile, so none is refused for
/// [`QUEUE_WAIT`] while the writer waits for witnesses) and returns the
/// tree the records' proofs are to use: `head`, or a larger tree of the
/// same log that the witnesses have cosigned instead (another host grew
/// it meanwhile).
pub(crate) type CosignWait = Box<dyn FnMut(Head, &mut dyn FnMut()) -> Head + Send>;

/// One reactor's batch, and how to tell that reactor it is done: one
/// outcome per record, in order.
struct Job {
    records: Vec<Record>,
    reply: Sender<Vec<Outcome>>,
    waker: Arc<Waker>,
    /// Who decides the batch's fate: the writer taking it up, or the
    /// reactor refusing it after [`QUEUE_WAIT`] ([`QUEUED`], [`TAKEN`],
    /// [`REFUSED`]); whichever swaps it first.
    claim: Arc<AtomicU8>,
}

/// A batch handed over, not yet taken up by the writer.
const QUEUED: u8 = 0;
/// The writer has it: its answer is the store's.
const TAKEN: u8 = 1;
/// Refused after waiting [`QUEUE_WAIT`] in the queue: the writer skips it.
const REFUSED: u8 = 2;

/// How long a batch may wait for the writer to take it up (behind a
/// transaction the database does not answer) before it is refused with
/// nothing recorded. An ordinary commit takes milliseconds.
pub(crate) const QUEUE_WAIT: Duration = Duration::from_secs(2);

/// The writer thread; stopping it waits for every batch handed to it.
#[derive(Debug)]
pub(crate) struct Committer {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// Closed (its sender dropped) when the writer thread ends, however.
    ended: Receiver<()>,
}

impl Committer {
    /// [`Committer::start_cosigned`] without witnesses.
    #[cfg(test)]
    pub(crate) fn start(
        store: Box<dyn Storage + Send>,
        announce: impl FnMut(&[Record]) + Send + 'static,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Committer> {
        Committer::start_cosigned(store, announce, metrics, None)
    }

    /// Starts the writer thread on `store`; `announce` runs on the writer
    /// after each durable transaction, before the replies are released, so
    /// it must never block (the server's hands the reports to
    /// [`crate::report_log`] with a `try_send`). `metrics` counts what
    /// became durable, the records waiting and how long each commit took.
    /// With `cosign`, each batch that appended leaves waits (bounded) for
    /// the witnesses to cosign its tree before it is answered.
    pub(crate) fn start_cosigned(
        store: Box<dyn Storage + Send>,
        announce: impl FnMut(&[Record]) + Send + 'static,
        metrics: Arc<Metrics>,
        cosign: Option<CosignWait>,
    ) -> std::io::Result<Committer> {
        let (tx, rx) = mpsc::channel();
        let (ended_tx, ended) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("commit".into())
            .spawn(move || {
                // Dropped when the thread ends, panic included.
                let _ended = ended_tx;
                write_loop(
                    store,
                    rx,
                    Durable {
                        announce: Box::new(announce),
                        metrics,
                        cosign,
                    },
                )
            })?;
        Ok(Committer {
            jobs: Some(tx),
            thread: Some(thread),
            ended,
        })
    }

    /// A handle for one reactor, whose `Poll` the `waker` belongs to.
    pub(crate) fn handle(&self, waker: Arc<Waker>) -> CommitHandle {
        CommitHandle {
            jobs: self.jobs.clone(),
            waker,
        }
    }

    /// Waits until every batch handed over so far is committed (the
    /// reactors, which hold the other senders, must have stopped), for at
    /// most [`STOP_WAIT`]: a writer stuck on the disk must not make the
    /// process hang on SIGTERM.
    pub(crate) fn stop(mut self) {
        self.jobs = None;
        match self.ended.recv_timeout(STOP_WAIT) {
            Err(RecvTimeoutError::Timeout) => {
                error!(
                    "the commit thread did not finish within {} s; leaving it",
                    STOP_WAIT.as_secs()
                );
            }
            _ => {
                if let Some(t) = self.thread.take() {
                    if t.join().is_err() {
                        error!("the commit thread panicked");
                    }
                }
            }
        }
    }
}

/// A reactor's side of the writer.
#[derive(Debug)]
pub(crate) struct CommitHandle {
    jobs: Option<Sender<Job>>,
    waker: Arc<Waker>,
}

/// A batch handed to the writer, not yet answered.
#[derive(Debug)]
pub(crate) struct InFlight {
    answer: Receiver<Vec<Outcome>>,
    len: usize,
    claim: Arc<AtomicU8>,
    since: Instant,
}

/// The same failure for every record of a batch of `len`.
fn all_failed(len: usize, e: &CommitError) -> Vec<Outcome> {
    (0..len)
        .map(|_| {
            Err(match e {
                CommitError::WriterLost(why) => CommitError::WriterLost(why),
                CommitError::Store(_) | CommitError::OutcomeUnknown(_) => WRITER_GONE,
            })
        })
        .collect()
}

/// How long a stopping reactor waits for its last batch before giving up
/// on it (the writer is then stuck on the disk, or gone).
const STOP_WAIT: Duration = Duration::from_secs(60);

impl CommitHandle {
    /// Hands `records` to the writer. An `Err` means the writer is gone:
    /// nothing was recorded.
    pub(crate) fn submit(&self, records: Vec<Record>) -> Result<InFlight, CommitError> {
        let (reply, answer) = mpsc::channel();
        let len = records.len();
        let claim = Arc::new(AtomicU8::new(QUEUED));
        let job = Job {
            records,
            reply,
            waker: Arc::clone(&self.waker),
            claim: Arc::clone(&claim),
        };
        match &self.jobs {
            Some(jobs) if jobs.send(job).is_ok() => Ok(InFlight {
                answer,
                len,
                claim,
                since: Instant::now(),
            }),
            _ => Err(WRITER_GONE),
        }
    }
}

impl InFlight {
    /// The outcomes, one per record, if the writer has answered; `None`
    /// while it works. A batch the writer has not taken up within
    /// [`QUEUE_WAIT`] is refused now, each record as unavailable.
    pub(crate) fn poll(&self) -> Option<Vec<Outcome>> {
        self.poll_waiting(QUEUE_WAIT)
    }

    fn poll_waiting(&self, queue_wait: Duration) -> Option<Vec<Outcome>> {
        match self.answer.try_recv() {
            Ok(outcomes) => Some(outcomes),
            Err(TryRecvError::Empty)
                if self.since.elapsed() >= queue_wait
                    && self
                        .claim
                        .compare_exchange(QUEUED, REFUSED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok() =>
            {
                let u = Unavailable {
                    target: format!(
                        "the database did not take the batch within {} s",
                        queue_wait.as_secs_f32()
                    ),
                    outcome_unknown: false,
                    retry_in: Duration::ZERO,
                    source: None,
                };
                error!("commit of {} record(s) refused: {u}", self.len);
                Some(unavailable(&u, self.len))
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(all_failed(self.len, &WRITER_GONE)),
        }
    }

    /// How long since the batch was handed to the writer.
    pub(crate) fn age(&self) -> Duration {
        self.since.elapsed()
    }

    /// Blocks until the writer answers (used when stopping).
    pub(crate) fn wait(self) -> Vec<Outcome> {
        match self.answer.recv_timeout(STOP_WAIT) {
            Ok(outcomes) => outcomes,
            Err(RecvTimeoutError::Timeout) => all_failed(
                self.len,
                &CommitError::WriterLost("the commit thread did not answer in time"),
            ),
            Err(RecvTimeoutError::Disconnected) => all_failed(self.len, &WRITER_GONE),
        }
    }
}

/// What the writer calls with each durable batch.
type Announce = Box<dyn FnMut(&[Record]) + Send>;

/// What runs once records are durable, and only then: the announcement
/// and the counts (so the metrics never count what a crash could lose).
struct Durable {
    announce: Announce,
    metrics: Arc<Metrics>,
    cosign: Option<CosignWait>,
}

impl Durable {
    fn done(&mut self, records: &[Record]) {
        for r in records {
            match r {
                Record::Cert(c) => {
                    self.metrics.issued();
                    if matches!(c.authorised, Authorisation::Renewal { .. }) {
                        self.metrics.renewed();
                    }
                }
                Record::Report(_) => self.metrics.report_accepted(),
                Record::Guess(_)
                | Record::Chunk(_)
                | Record::Upload(_)
                | Record::DiscardUpload { .. } => {}
            }
        }
        (self.announce)(records);
    }

    /// Commits `records`, timing it.
    fn commit(
        &self,
        store: &mut dyn Storage,
        records: &[Record],
    ) -> Result<Option<Appended>, StoreError> {
        let started = std::time::Instant::now();
        let result = store.commit_logged(records);
        self.metrics.commit_latency(started.elapsed());
        result
    }

    /// Has the largest tree the batch's commits left cosigned, and points
    /// every logged record at the tree that came back: one tree per batch,
    /// so one wait, and a receipt's checkpoint is the cosigned one. (A
    /// batch retried record by record leaves several trees; the last holds
    /// every record of them.)
    fn cosigned(&mut self, outcomes: &mut [Vec<Outcome>], gather: &mut dyn FnMut()) {
        let Some(cosign) = self.cosign.as_mut() else {
            return;
        };
        let logged = || {
            outcomes
                .iter()
                .flatten()
                .filter_map(|o| o.as_ref().ok()?.as_ref())
        };
        let Some(largest) = logged().map(|l| l.head).max_by_key(|h| h.size) else {
            return;
        };
        let head = cosign(largest, gather);
        // Only a tree holding every record's entry will do.
        if head.size < largest.size {
            return;
        }
        for l in outcomes
            .iter_mut()
            .flatten()
            .filter_map(|o| o.as_mut().ok()?.as_mut())
        {
            if l.head != head {
                // A path made for another tree proves nothing in this one:
                // the receipt reads the hashes of this one.
                l.path = None;
            }
            l.head = head;
        }
    }
}

fn write_loop(mut store: Box<dyn Storage + Send>, jobs: Receiver<Job>, mut durable: Durable) {
    // A batch its reactor has refused meanwhile is dropped unanswered.
    let take = |job: &Job| {
        job.claim
            .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    };
    let gather = |into: &mut Vec<Job>| {
        while let Ok(more) = jobs.try_recv() {
            if take(&more) {
                into.push(more);
            }
        }
    };
    // Batches taken up while the last commit waited for witnesses.
    let mut next: Vec<Job> = Vec::new();
    loop {
        if next.is_empty() {
            match jobs.recv() {
                Ok(first) if take(&first) => next.push(first),
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        gather(&mut next);
        let batch = std::mem::take(&mut next);
        let waiting: usize = batch.iter().map(|j| j.records.len()).sum();
        durable.metrics.set_awaiting_commit(waiting);
        commit_jobs_gathering(store.as_mut(), batch, &mut durable, &mut || {
            gather(&mut next)
        });
        durable.metrics.set_awaiting_commit(0);
    }
    debug!("commit thread stopped");
}

#[cfg(test)]
fn commit_jobs(store: &mut dyn Storage, batch: Vec<Job>, durable: &mut Durable) {
    commit_jobs_gathering(store, batch, durable, &mut || {})
}

/// Commits several reactors' batches in one transaction. Should the store
/// refuse it, each batch is retried alone, and a batch that still fails has
/// each of its records retried alone, so one connection's bad record (a
/// duplicate serial, a code consumed meanwhile) fails only that connection.
/// Not when the store is unavailable: after a lost `COMMIT` a retry of a
/// batch that did commit would come back as a duplicate and be reported as
/// refused, and with the database down a retry only fails again; every
/// record is told what is known. With witnesses, the records are answered
/// once the tree is cosigned (bounded); `gather` takes up the batches that
/// queue meanwhile, for the next commit.
fn commit_jobs_gathering(
    store: &mut dyn Storage,
    mut batch: Vec<Job>,
    durable: &mut Durable,
    gather: &mut dyn FnMut(),
) {
    let mut outcomes: Vec<Vec<Outcome>> = if batch.len() == 1 {
        vec![commit_each(store, &batch[0].records, durable)]
    } else {
        let mut all = Vec::new();
        let mut lens = Vec::with_capacity(batch.len());
        for job in &mut batch {
            lens.push(job.records.len());
            all.append(&mut job.records);
        }
        match durable.commit(store, &all) {
            Ok(appended) => {
                debug!(
                    "committed {} record(s) of {} batches",
                    all.len(),
                    lens.len()
                );
                durable.done(&all);
                let mut each = tlog::logged_each(&all, appended).into_iter().map(Ok);
                lens.iter()
                    .map(|&n| each.by_ref().take(n).collect())
                    .collect()
            }
            Err(StoreError::Unavailable(u)) => {
                error!("commit of {} record(s) failed: {u}", all.len());
                lens.iter().map(|&n| unavailable(&u, n)).collect()
            }
            Err(e) => {
                debug!("merged commit failed ({e}); committing each batch alone");
                let mut start = 0;
                lens.iter()
                    .map(|len| {
                        let part = &all[start..start + len];
                        start += len;
                        commit_each(store, part, durable)
                    })
                    .collect()
            }
        }
    };
    durable.cosigned(&mut outcomes, gather);
    for (job, outcome) in batch.into_iter().zip(outcomes) {
        // A reactor that stopped waiting has closed its connections: there
        // is no one left to tell.
        let _ = job.reply.send(outcome);
        if let Err(e) = job.waker.wake() {
            error!("cannot wake a reactor after a commit: {e}");
        }
    }
}

/// One batch in one transaction; if that fails, each record alone.
fn commit_each(store: &mut dyn Storage, records: &[Record], durable: &mut Durable) -> Vec<Outcome> {
    match commit_one(store, records, durable) {
        Ok(each) => each.into_iter().map(Ok).collect(),
        Err(e) if records.len() == 1 => vec![Err(e)],
        Err(CommitError::Store(StoreError::Unavailable(u)))
        | Err(CommitError::OutcomeUnknown(StoreError::Unavailable(u))) => {
            unavailable(&u, records.len())
        }
        Err(e) => {
            debug!(
                "batch of {} failed ({e}); committing each record alone",
                records.len()
            );
            records
                .iter()
                .map(|r| {
                    commit_one(store, std::slice::from_ref(r), durable)
                        .map(|mut each| each.pop().flatten())
                })
                .collect()
        }
    }
}

/// One transaction; each record's [`Logged`] once durable.
fn commit_one(
    store: &mut dyn Storage,
    records: &[Record],
    durable: &mut Durable,
) -> Result<Vec<Option<Logged>>, CommitError> {
    match durable.commit(store, records) {
        Ok(appended) => {
            debug!("committed {} record(s)", records.len());
            durable.done(records);
            Ok(tlog::logged_each(records, appended))
        }
        Err(e @ (StoreError::CodeUsed { .. } | StoreError::RenewedRevoked { .. })) => {
            // The student's answer (code 14 or 16), not the server's failure.
            debug!("commit of {} record(s) refused: {e}", records.len());
            Err(CommitError::Store(e))
        }
        Err(e) => {
            error!("commit of {} record(s) failed: {e}", records.len());
            Err(failure(e))
        }
    }
}

/// The outcome of each of `n` records when the store was unavailable.
fn unavailable(u: &Unavailable, n: usize) -> Vec<Outcome> {
    (0..n)
        .map(|_| Err(failure(StoreError::Unavailable(u.clone()))))
        .collect()
}

/// What a failed commit tells the reactor.
fn failure(e: StoreError) -> CommitError {
    match e {
        StoreError::Unavailable(ref u) if u.outcome_unknown => CommitError::OutcomeUnknown(e),
        e => CommitError::Store(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use crate::testing::FakeStore;
    use std::sync::Mutex;

    /// The store of these tests: it keeps what it commits and refuses any
    /// transaction holding a report with receipt id 0.
    fn fake() -> FakeStore {
        FakeStore {
            refuse_receipt: Some(0),
            ..FakeStore::default()
        }
    }

    fn report(id: u64) -> Record {
        crate::testing::report_record(id)
    }

    fn no_announce(_: &[Record]) {}

    /// One job per batch, each taken up by the writer, and where each
    /// job's answer arrives.
    fn taken_jobs(
        batches: impl IntoIterator<Item = Vec<Record>>,
        w: &Arc<Waker>,
    ) -> (Vec<Job>, Vec<mpsc::Receiver<Vec<Outcome>>>) {
        batches
            .into_iter()
            .map(|records| {
                let (reply, answer) = mpsc::channel();
                let job = Job {
                    records,
                    reply,
                    waker: Arc::clone(w),
                    claim: Arc::new(AtomicU8::new(TAKEN)),
                };
                (job, answer)
            })
            .unzip()
    }

    /// What the writer does after a commit in these tests: no announce,
    /// fresh metrics, and `cosign` for the witnesses.
    fn durable(cosign: Option<CosignWait>) -> Durable {
        Durable {
            announce: Box::new(no_announce),
            metrics: Arc::new(Metrics::new()),
            cosign,
        }
    }

    fn waker() -> Result<(mio::Poll, Arc<Waker>), std::io::Error> {
        let poll = mio::Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0))?);
        Ok((poll, waker))
    }

    #[test]
    fn batches_are_committed_and_answered_in_order() -> Result<(), Box<dyn std::error::Error>> {
        let fake = fake();
        let seen = fake.clone();
        let committer = Committer::start(Box::new(fake), no_announce, Arc::new(Metrics::new()))?;
        let (_poll, w) = waker()?;
        let handle = committer.handle(w);
        let a = handle.submit(vec![report(1), report(2)])?;
        let b = handle.submit(vec![report(3)])?;
        assert_eq!(a.wait(), vec![Ok(None), Ok(None)]);
        assert_eq!(b.wait(), vec![Ok(None)]);
        drop(handle);
        committer.stop();
        assert_eq!(seen.committed_receipts().concat(), vec![1, 2, 3]);
        Ok(())
    }

    #[test]
    fn a_bad_batch_does_not_fail_the_others_merged_with_it() {
        let fake = fake();
        let seen = fake.clone();
        let mut store: Box<dyn Storage + Send> = Box::new(fake);
        let (_poll, w) = match waker() {
            Ok(x) => x,
            Err(e) => panic!("poll: {e}"),
        };
        let (jobs, answers) = taken_jobs(
            [
                vec![report(1)],
                vec![report(0)],
                vec![report(2)],
                vec![report(3), report(0), report(4)],
            ],
            &w,
        );
        commit_jobs(store.as_mut(), jobs, &mut durable(None));
        let outcomes: Vec<Vec<bool>> = answers
            .iter()
            .map(|a| {
                a.try_recv()
                    .unwrap_or_default()
                    .iter()
                    .map(Result::is_ok)
                    .collect()
            })
            .collect();
        // Within a reactor's batch too, only the bad record's connection fails.
        assert_eq!(
            outcomes,
            vec![vec![true], vec![false], vec![true], vec![true, false, true]]
        );
        assert_eq!(
            seen.committed_receipts(),
            vec![vec![1], vec![2], vec![3], vec![4]]
        );
    }

    /// Runs three merged jobs on a store that is down; returns each job's
    /// outcome and how many commits were tried.
    fn merged_on_a_store_down(outcome_unknown: bool) -> (Vec<Option<Outcome>>, usize) {
        // One record per job: each job's answer is that record's outcome.
        let fake = FakeStore {
            down: Some(outcome_unknown),
            ..fake()
        };
        let seen = fake.clone();
        let mut store: Box<dyn Storage + Send> = Box::new(fake);
        let (_poll, w) = match waker() {
            Ok(x) => x,
            Err(e) => panic!("poll: {e}"),
        };
        let (jobs, answers) = taken_jobs((1..=3).map(|id| vec![report(id)]), &w);
        commit_jobs(store.as_mut(), jobs, &mut durable(None));
        let outcomes = answers
            .iter()
            .map(|a| a.try_recv().ok().and_then(|mut o| o.pop()))
            .collect();
        (outcomes, seen.commits())
    }

    /// After a lost COMMIT, batches are not retried one by one (one that
    /// did commit would come back a duplicate, reported as refused): each
    /// is told the outcome is unknown.
    #[test]
    fn a_commit_of_unknown_outcome_is_not_retried_and_says_so() {
        let (outcomes, tried) = merged_on_a_store_down(true);
        assert_eq!(tried, 1, "no retry after an unknown outcome");
        for o in outcomes {
            assert!(
                matches!(o, Some(Err(CommitError::OutcomeUnknown(_)))),
                "{o:?}"
            );
        }
    }

    /// With the database down, each batch is told nothing was kept, once.
    #[test]
    fn a_store_down_refuses_every_batch_once() {
        let (outcomes, tried) = merged_on_a_store_down(false);
        assert_eq!(tried, 1, "no retry while the store is down");
        for o in outcomes {
            assert!(
                matches!(o, Some(Err(CommitError::Store(StoreError::Unavailable(_))))),
                "{o:?}"
            );
        }
    }

    #[test]
    fn a_dead_writer_is_reported_not_waited_for() -> Result<(), Box<dyn std::error::Error>> {
        let committer = Committer::start(
            Box::new(fake()),
            panicking_announce,
            Arc::new(Metrics::new()),
        )?;
        let (_poll, w) = waker()?;
        let handle = committer.handle(w);
        // The writer panics after this commit, so the answer never comes.
        let first = handle.submit(vec![report(7)])?;
        assert_eq!(first.wait(), vec![Err(WRITER_GONE)]);
        // Later batches fail too, whether the writer's queue is already
        // gone (submit fails) or not yet (the answer never comes).
        let later = match handle.submit(vec![report(8)]) {
            Ok(in_flight) => in_flight.wait(),
            Err(e) => vec![Err(e)],
        };
        assert!(later.iter().all(Result::is_err));
        drop(handle);
        committer.stop();
        Ok(())
    }

    /// Behind a COMMIT the database does not answer, a later batch is
    /// refused after the bound, with nothing recorded, and never committed;
    /// the stuck one gets the store's own answer when it comes.
    #[test]
    fn a_batch_queued_behind_a_stuck_commit_is_refused_and_never_committed(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (go, gate) = mpsc::channel();
        // A COMMIT the database does not answer until the test lets it go.
        let stuck = crate::store::gated::Gated {
            inner: fake(),
            at: crate::store::gated::GatedCall::Commit,
            open: Arc::new(Mutex::new(gate)),
        };
        let seen = stuck.inner.clone();
        let committer = Committer::start(Box::new(stuck), no_announce, Arc::new(Metrics::new()))?;
        let (_poll, w) = waker()?;
        let handle = committer.handle(w);
        let first = handle.submit(vec![report(1)])?;
        // Bounded: the writer takes the first batch up at once.
        for _ in 0..1000 {
            if first.claim.load(Ordering::Acquire) == TAKEN {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let second = handle.submit(vec![report(2), report(3)])?;
        let wait = Duration::from_millis(30);
        std::thread::sleep(wait);
        // The stuck one is not refused: its outcome is the store's.
        assert_eq!(first.poll_waiting(wait), None);
        let refused = second.poll_waiting(wait).ok_or("not refused")?;
        assert_eq!(refused.len(), 2);
        for o in &refused {
            assert!(
                matches!(o, Err(CommitError::Store(StoreError::Unavailable(u))) if !u.outcome_unknown),
                "{o:?}"
            );
        }
        // The database answers again.
        go.send(())?;
        assert_eq!(first.wait(), vec![Ok(None)]);
        let third = handle.submit(vec![report(4)])?;
        go.send(())?;
        assert_eq!(third.wait(), vec![Ok(None)]);
        drop(handle);
        drop(go);
        committer.stop();
        assert_eq!(
            seen.committed_receipts().concat(),
            vec![1, 4],
            "the refused batch was committed"
        );
        Ok(())
    }

    /// Merged batches on the real engine: each logged record is told its
    /// own entry's index and the head the commit left, which is what the
    /// store answers when asked afterwards; a record without a leaf (a
    /// guess) is told nothing.
    #[test]
    fn each_record_is_told_where_its_entry_went() -> Result<(), Box<dyn std::error::Error>> {
        let mut store: Box<dyn Storage + Send> = Box::new(crate::store::SqliteStore::in_memory()?);
        store.commit(&[report(100)])?;
        let (_poll, w) = waker()?;
        let guess = Record::Guess(crate::store::Guess {
            sid: "1155000001".into(),
            source: "127.0.0.1".into(),
            at: 1_700_000_000,
            limits: crate::store::GuessLimits::default(),
        });
        let (jobs, answers) = taken_jobs([vec![report(1), guess, report(2)], vec![report(3)]], &w);
        commit_jobs(store.as_mut(), jobs, &mut durable(None));
        let head = store.log_head()?;
        assert_eq!(head.size, 4);
        let told: Vec<Vec<Outcome>> = answers
            .iter()
            .map(|a| a.try_recv())
            .collect::<Result<_, _>>()?;
        // Each with its inclusion path in that tree, as the store gives it.
        let mut at = |index| -> Result<Outcome, crate::store::StoreError> {
            let path =
                crate::tlog::merkle::inclusion_proof(index, 4, |ids: &[_]| store.log_nodes(ids))?;
            Ok(Ok(Some(Logged {
                index,
                head,
                path: Some(path),
            })))
        };
        let want = vec![vec![at(1)?, Ok(None), at(2)?], vec![at(3)?]];
        assert_eq!(told, want);
        for id in 1..=3 {
            let key = tlog::report_record_key(id);
            assert_eq!(store.log_index_of(&key)?, Some(id));
        }
        Ok(())
    }

    /// With witnesses, the writer asks once per batch for the largest tree
    /// its commits left, before it answers, and points every logged record
    /// at the tree that comes back (one holding all of them); a batch that
    /// logged nothing asks nothing, and a smaller tree is not taken.
    #[test]
    fn a_batch_is_answered_with_the_tree_the_witnesses_cosigned(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let larger = Head {
            size: 99,
            root: [9u8; 32],
        };
        let run = |answer: Option<Head>, batches: Vec<Vec<Record>>| {
            let mut store: Box<dyn Storage + Send> =
                Box::new(crate::store::SqliteStore::in_memory()?);
            let (_poll, w) = waker()?;
            let (jobs, answers) = taken_jobs(batches, &w);
            let seen = Arc::clone(&asked);
            commit_jobs(
                store.as_mut(),
                jobs,
                &mut durable(Some(Box::new(move |head, _: &mut dyn FnMut()| {
                    if let Ok(mut s) = seen.lock() {
                        s.push(head);
                    }
                    answer.unwrap_or(head)
                }))),
            );
            let told: Vec<Vec<Outcome>> = answers
                .iter()
                .map(|a| a.try_recv())
                .collect::<Result<_, _>>()?;
            Ok::<_, Box<dyn std::error::Error>>((told, store.log_head()?))
        };
        let guess = || {
            Record::Guess(crate::store::Guess {
                sid: "1155000001".into(),
                source: "127.0.0.1".into(),
                at: 1_700_000_000,
                limits: crate::store::GuessLimits::default(),
            })
        };
        // Two merged batches: one question, for the tree after both.
        let (told, head) = run(
            Some(larger),
            vec![vec![report(1), guess()], vec![report(2)]],
        )?;
        assert_eq!(head.size, 2);
        assert_eq!(
            asked.lock().map(|a| a.clone()).unwrap_or_default(),
            vec![head]
        );
        // Pointed at another tree, a record has no path made for its own
        // (its receipt reads that tree's hashes).
        let at = |index, head| {
            Ok(Some(Logged {
                index,
                head,
                path: None,
            }))
        };
        assert_eq!(
            told,
            vec![vec![at(0, larger), Ok(None)], vec![at(1, larger)]]
        );
        // A smaller tree would not hold them: the commit's own is kept,
        // with the paths the commit made in it.
        let smaller = Head {
            size: 1,
            root: [1u8; 32],
        };
        let (told, head) = run(Some(smaller), vec![vec![report(1), report(2)]])?;
        let strip = |told: Vec<Vec<Outcome>>| -> Vec<(u64, Head, usize)> {
            told.into_iter()
                .flatten()
                .filter_map(|o| o.ok().flatten())
                .map(|l| (l.index, l.head, l.path.map_or(usize::MAX, |p| p.len())))
                .collect()
        };
        assert_eq!(strip(told), vec![(0, head, 1), (1, head, 1)]);
        // Nothing logged: nothing asked.
        if let Ok(mut a) = asked.lock() {
            a.clear();
        }
        let (told, _) = run(None, vec![vec![guess()]])?;
        assert_eq!(told, vec![vec![Ok(None)]]);
        assert!(asked.lock().map(|a| a.is_empty()).unwrap_or(false));
        Ok(())
    }

    /// While the writer waits for witnesses, batches queued behind it are
    /// taken up (so not refused after the queue's bound) and committed
    /// next, together.
    #[test]
    fn batches_queued_while_witnesses_are_awaited_are_taken_up_not_refused(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (go, gate) = mpsc::channel::<()>();
        let (asked_tx, asked) = mpsc::channel::<Head>();
        let cosign: CosignWait = Box::new(move |head, gather: &mut dyn FnMut()| {
            let _ = asked_tx.send(head);
            // Bounded: the test lets it go.
            for _ in 0..2000 {
                gather();
                if gate.recv_timeout(Duration::from_millis(5)).is_ok() {
                    break;
                }
            }
            head
        });
        let committer = Committer::start_cosigned(
            Box::new(crate::store::SqliteStore::in_memory()?),
            no_announce,
            Arc::new(Metrics::new()),
            Some(cosign),
        )?;
        let (_poll, w) = waker()?;
        let handle = committer.handle(w);
        let first = handle.submit(vec![report(1)])?;
        let head = asked.recv_timeout(Duration::from_secs(30))?;
        assert_eq!(head.size, 1);
        let second = handle.submit(vec![report(2)])?;
        let third = handle.submit(vec![report(3)])?;
        // Bounded: taken up within the writer's next gathering.
        for _ in 0..1000 {
            if third.claim.load(Ordering::Acquire) == TAKEN {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let wait = Duration::from_millis(30);
        std::thread::sleep(wait);
        assert_eq!(
            second.poll_waiting(wait),
            None,
            "refused while witnesses were awaited"
        );
        assert_eq!(
            third.poll_waiting(wait),
            None,
            "refused while witnesses were awaited"
        );
        go.send(())?;
        let logged = |o: Vec<Outcome>| -> Vec<Option<u64>> {
            o.into_iter()
                .map(|o| o.ok().flatten().map(|l| l.index))
                .collect()
        };
        assert_eq!(logged(first.wait()), vec![Some(0)]);
        // One commit for both, one question for its tree.
        let next = asked.recv_timeout(Duration::from_secs(30))?;
        assert_eq!(next.size, 3);
        go.send(())?;
        assert_eq!(logged(second.wait()), vec![Some(1)]);
        assert_eq!(logged(third.wait()), vec![Some(2)]);
        drop(handle);
        drop(go);
        committer.stop();
        Ok(())
    }

    fn panicking_announce(_: &[Record]) {
        panic!("simulated bug in the writer");
    }
}
