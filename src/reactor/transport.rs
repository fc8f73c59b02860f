//! The transport part of a connection, the same for every kind: the
//! stream, its input and output buffers, the byte and time limits, the
//! interest derived from what is queued, the peer's close, and the one
//! budget of buffered input shared by every connection of a reactor.
//! Generic over the stream so that it is tested with a fake one.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::Interest;

use super::Limits;
use crate::protocol::{ConnectionError, Expiry};

/// Queued output past which a connection's buffered input waits, unread by
/// its handler, until the peer reads: a pipelined flood cannot grow the
/// output buffer.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// Most reads spent discarding input from a connection that is closing,
/// per event: a peer that keeps sending must not hold the loop.
const DISCARD_READS: usize = 16;

/// Output buffers larger than this are given back once empty.
const KEEP_OUTPUT_CAPACITY: usize = 4096;

pub(super) fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

pub(super) fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// The bytes held in every connection's input buffer, against one limit
/// (`Limits::max_buffered`): without it, many connections each sending
/// most of a large frame or request could exhaust memory.
#[derive(Debug)]
pub(super) struct Budget {
    used: usize,
    max: usize,
}

impl Budget {
    pub(super) fn new(max: usize) -> Budget {
        Budget { used: 0, max }
    }

    #[cfg(test)]
    pub(super) fn used(&self) -> usize {
        self.used
    }
}

/// A stream with its buffers and limits.
#[derive(Debug)]
pub(super) struct Transport<S> {
    stream: S,
    /// Received, not yet taken by the handler.
    pub(super) inbuf: Vec<u8>,
    /// Queued for the peer.
    pub(super) outbuf: Vec<u8>,
    /// How much of `inbuf` is counted in the budget.
    counted: usize,
    /// The peer has closed its sending side.
    eof: bool,
    /// The last bytes are queued: flush them, then close; nothing more is
    /// read or handled.
    closing: bool,
    /// What the exchange deadline counts from: the connection's opening,
    /// or an upload's last chunk (see [`Transport::progress`]).
    started: Instant,
    /// When the last whole frame or request came (or the connection opened).
    last_unit: Instant,
    bytes_in: u64,
    /// Bytes allowed beyond `--max-conn-bytes` (an announced upload).
    extra_bytes: u64,
    /// A read was skipped while the handler waited with input enough
    /// buffered: the socket must be read once the wait is over, as no new
    /// edge may come (the peer may be blocked on a full window).
    paused: bool,
    /// Input buffered past which the connection is not read
    /// ([`INPUT_HIGH_WATER`] unless its protocol part needs more whole, as
    /// a staff form's body: [`Transport::set_high_water`]).
    high_water: usize,
    /// When the peer last took output (a write moved bytes), for a
    /// connection whose answers may be long (a staff download): a slow
    /// reader of one is progress, not an idle or stuck exchange. `None`
    /// for the others, whose exchange deadline stays whole (PROTOCOL.md
    /// §7): an answer never extends it.
    last_output: Option<Instant>,
    /// Whether output counts as progress ([`Transport::output_is_progress`]).
    output_progress: bool,
    /// An event announced the peer's FIN (or a reset): it raises no new
    /// edge, so every later read, however late it resumes, reads on to the
    /// end (a read held back at the high-water mark must not lose it).
    peer_closed: bool,
    interest: Interest,
}

/// Input buffered past which a connection waiting for its record is not
/// read (four 64 KiB chunks): TCP flow control then holds the sender.
pub(super) const INPUT_HIGH_WATER: usize = 4 * 65_600;

/// Least a read asks for, however close to the high-water mark.
const MIN_READ: usize = 16 * 1024;

/// The reactor's read buffer: a read takes up to the high-water mark at
/// once. Four 64 KiB reads per four chunks cost a system call and a TCP
/// window update each (BENCHMARKS.md, "Chunks streamed to the writer").
pub(super) const READ_BUFFER: usize = INPUT_HIGH_WATER;

impl<S: Read + Write> Transport<S> {
    pub(super) fn new(stream: S, now: Instant) -> Transport<S> {
        Transport {
            stream,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            counted: 0,
            eof: false,
            closing: false,
            started: now,
            last_unit: now,
            bytes_in: 0,
            extra_bytes: 0,
            paused: false,
            high_water: INPUT_HIGH_WATER,
            last_output: None,
            output_progress: false,
            peer_closed: false,
            interest: Interest::READABLE,
        }
    }

    pub(super) fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    pub(super) fn eof(&self) -> bool {
        self.eof
    }

    pub(super) fn closing(&self) -> bool {
        self.closing
    }

    /// Whether the handler may take more input now: open, and the peer is
    /// reading what it is sent.
    pub(super) fn can_work(&self) -> bool {
        !self.closing && self.outbuf.len() < OUTPUT_HIGH_WATER
    }

    /// Lets the connection send `extra` bytes beyond its limit.
    pub(super) fn allow_bytes(&mut self, extra: u64) {
        self.extra_bytes = self.extra_bytes.saturating_add(extra);
    }

    /// Skips reading now: the handler waits, with enough input buffered.
    /// `peer_closed`: the event skipped announced the peer's close, which
    /// the read that resumes must then see.
    pub(super) fn pause(&mut self, peer_closed: bool) {
        self.paused = true;
        self.peer_closed |= peer_closed;
    }

    /// Whether reading was skipped; clears it.
    pub(super) fn take_paused(&mut self) -> bool {
        std::mem::take(&mut self.paused)
    }

    /// Reading was skipped, and the handler has since taken enough that
    /// the socket may be read again.
    pub(super) fn may_resume(&self) -> bool {
        self.paused && !self.closing && self.inbuf.len() < self.high_water
    }

    /// Raises the input high-water mark to `bytes` (never below
    /// [`INPUT_HIGH_WATER`]): for a protocol part that can only take a
    /// unit whole and whose units may be larger (an HTTP request with its
    /// body). The reactor's budget of buffered bytes still bounds the sum.
    pub(super) fn set_high_water(&mut self, bytes: usize) {
        self.high_water = bytes.max(INPUT_HIGH_WATER);
    }

    /// The peer taking output moves the timers on (a connection serving
    /// downloads).
    pub(super) fn output_is_progress(&mut self) {
        self.output_progress = true;
    }

    /// Whether as much input is buffered as the connection may hold.
    pub(super) fn at_high_water(&self) -> bool {
        self.inbuf.len() >= self.high_water
    }

    /// An upload's chunk came: the exchange deadline counts from now, so
    /// that a large file on a slow link is not cut while it moves. Bounded:
    /// every chunk but the last is a full 64 KiB (a transfer slower than
    /// that per deadline is still cut), and there are no more chunks than
    /// the announced size makes (PROTOCOL.md §7).
    pub(super) fn progress(&mut self, now: Instant) {
        self.started = now;
    }

    /// A whole frame or request came: the idle timer starts again.
    pub(super) fn touch(&mut self) {
        self.last_unit = Instant::now();
    }

    /// Reads until the socket is drained, the peer closes, or a limit is
    /// hit. Once closing (or after the peer's close), input is discarded
    /// instead, a bounded number of reads.
    ///
    /// A read shorter than the buffer has emptied the socket's receive
    /// queue, so the read that would only say `EAGAIN` is skipped (one
    /// system call per message): anything arriving later raises a new edge.
    /// Unless the event announced the peer's FIN (`peer_closed`), which
    /// raises no new edge: then the socket is read to its end so that the
    /// close is seen now.
    ///
    /// `want` (the protocol part's [`crate::framing::Decoder::wanted`])
    /// bounds what is read now, so that a large frame ends its buffer:
    /// reading stops there as at the high-water mark, and resumes once the
    /// handler has taken the frame. Not once the peer has closed: the
    /// close is read now.
    pub(super) fn read_in(
        &mut self,
        scratch: &mut [u8],
        limits: &Limits,
        budget: &mut Budget,
        peer_closed: bool,
        want: Option<usize>,
    ) -> Result<(), ConnectionError> {
        if self.closing || self.eof {
            self.discard_input(scratch);
            return Ok(());
        }
        self.peer_closed |= peer_closed;
        let peer_closed = self.peer_closed;
        let before = self.inbuf.len();
        let max_bytes = limits.max_conn_bytes.saturating_add(self.extra_bytes);
        let want = if peer_closed { None } else { want };
        let read = self.read_until_drained(scratch, max_bytes, peer_closed, want);
        let added = self.inbuf.len().saturating_sub(before);
        self.settle(budget);
        read?;
        if added > 0 && budget.used > budget.max {
            return Err(ConnectionError::Overloaded {
                max_buffered: budget.max,
            });
        }
        Ok(())
    }

    fn read_until_drained(
        &mut self,
        scratch: &mut [u8],
        max_bytes: u64,
        peer_closed: bool,
        mut want: Option<usize>,
    ) -> Result<(), ConnectionError> {
        loop {
            // Up to the high-water mark in one read, not past it by more
            // than a small read.
            let up_to = self
                .high_water
                .saturating_sub(self.inbuf.len())
                .max(MIN_READ);
            let room = want.map_or(up_to, |w| w.min(up_to)).min(scratch.len());
            let Some(into) = scratch.get_mut(..room) else {
                return Ok(());
            };
            match self.stream.read(into) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.bytes_in += n as u64;
                    if self.bytes_in > max_bytes {
                        return Err(ConnectionError::TooManyBytes { limit: max_bytes });
                    }
                    self.inbuf
                        .extend_from_slice(scratch.get(..n).unwrap_or_default());
                    // Enough for the handler's next turns: the rest stays
                    // in the socket, where TCP flow control holds the
                    // sender, instead of in our memory (an upload would
                    // otherwise pull MiBs in per event). The reactor reads
                    // again once the handler has taken from the buffer.
                    if self.inbuf.len() >= self.high_water {
                        self.paused = true;
                        return Ok(());
                    }
                    if let Some(w) = want {
                        if n >= w {
                            // What was wanted is here: the rest waits in
                            // the socket, which raises no new edge for it.
                            self.paused = true;
                            return Ok(());
                        }
                        want = Some(w - n);
                    }
                    if n < room && !peer_closed {
                        return Ok(());
                    }
                }
                Err(e) if would_block(&e) => return Ok(()),
                Err(e) if interrupted(&e) => continue,
                // Reset by peer and the like: a close.
                Err(_) => {
                    self.eof = true;
                    return Ok(());
                }
            }
        }
    }

    /// Reads and drops what a finished connection still sends (new data
    /// raises a new edge, so stopping early loses nothing).
    fn discard_input(&mut self, scratch: &mut [u8]) {
        for _ in 0..DISCARD_READS {
            match self.stream.read(scratch) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(_) => continue,
                Err(e) if interrupted(&e) => continue,
                Err(_) => return,
            }
        }
    }

    /// Brings the budget up to date with the input buffer, after the
    /// handler took from it.
    pub(super) fn settle(&mut self, budget: &mut Budget) {
        let now = self.inbuf.len();
        budget.used = budget.used.saturating_sub(self.counted).saturating_add(now);
        self.counted = now;
    }

    /// The last bytes are queued: drop the input, read nothing more, close
    /// once the output is out.
    pub(super) fn finish(&mut self, budget: &mut Budget) {
        self.closing = true;
        self.inbuf = Vec::new();
        self.settle(budget);
    }

    /// Gives the input buffer's bytes back to the budget (the connection
    /// is closing for good).
    pub(super) fn release(&mut self, budget: &mut Budget) {
        self.inbuf = Vec::new();
        self.settle(budget);
    }

    /// Writes as much of the output as the stream takes, keeping the rest.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        let mut written = 0;
        while written < self.outbuf.len() {
            match self
                .stream
                .write(self.outbuf.get(written..).unwrap_or_default())
            {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if would_block(&e) => break,
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        if written > 0 && self.output_progress {
            self.last_output = Some(Instant::now());
        }
        self.outbuf.drain(..written);
        if self.outbuf.is_empty() && self.outbuf.capacity() > KEEP_OUTPUT_CAPACITY {
            self.outbuf = Vec::new();
        }
        Ok(())
    }

    pub(super) fn drained(&self) -> bool {
        self.outbuf.is_empty()
    }

    /// The interest the connection's state calls for: WRITABLE only while
    /// output is queued.
    pub(super) fn wanted_interest(&self) -> Interest {
        if self.outbuf.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        }
    }

    /// Whether `wanted` differs from what is registered; records it as
    /// registered.
    pub(super) fn interest_changes(&mut self, wanted: Interest) -> bool {
        let changed = wanted != self.interest;
        self.interest = wanted;
        changed
    }

    /// The earliest moment a time limit may be reached, as things stand.
    pub(super) fn deadline(&self, limits: &Limits) -> Instant {
        // A limit too large for the clock is no limit: look again in an hour.
        let after = |t: Instant, d: Duration| {
            t.checked_add(d)
                .or_else(|| t.checked_add(Duration::from_secs(3600)))
                .unwrap_or(t)
        };
        let (started, active) = self.timer_starts();
        after(started, limits.exchange_deadline).min(after(active, limits.idle_timeout))
    }

    /// Which time limit, if any, is reached at `now`.
    pub(super) fn expired(&self, now: Instant, limits: &Limits) -> Option<Expiry> {
        let (started, active) = self.timer_starts();
        if now.duration_since(started) >= limits.exchange_deadline {
            Some(Expiry::Deadline)
        } else if now.duration_since(active) >= limits.idle_timeout {
            Some(Expiry::Idle)
        } else {
            None
        }
    }

    /// What the exchange deadline and the idle timer count from: the
    /// exchange's start (or its last progress) and the last whole unit in,
    /// each moved on by the peer taking output (a download to a slow
    /// reader keeps moving while it reads).
    fn timer_starts(&self) -> (Instant, Instant) {
        match self.last_output {
            Some(out) => (self.started.max(out), self.last_unit.max(out)),
            None => (self.started, self.last_unit),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// What the fake stream does on its next read or write.
    #[derive(Debug, Clone)]
    enum Step {
        Bytes(Vec<u8>),
        WouldBlock,
        Eof,
        Reset,
    }

    /// A stream that plays a script: reads come from `reads`, writes take
    /// at most the next of `write_caps` bytes (0 = WouldBlock).
    #[derive(Debug, Default)]
    struct Fake {
        reads: VecDeque<Step>,
        write_caps: VecDeque<usize>,
        written: Vec<u8>,
    }

    impl Read for Fake {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.reads.pop_front() {
                None | Some(Step::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
                Some(Step::Eof) => Ok(0),
                Some(Step::Reset) => Err(io::ErrorKind::ConnectionReset.into()),
                Some(Step::Bytes(mut b)) => {
                    let n = b.len().min(buf.len());
                    buf[..n].copy_from_slice(&b[..n]);
                    if n < b.len() {
                        self.reads.push_front(Step::Bytes(b.split_off(n)));
                    }
                    Ok(n)
                }
            }
        }
    }

    impl Write for Fake {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            match self.write_caps.pop_front() {
                None | Some(0) => Err(io::ErrorKind::WouldBlock.into()),
                Some(cap) => {
                    let n = cap.min(buf.len());
                    self.written.extend_from_slice(&buf[..n]);
                    Ok(n)
                }
            }
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn transport(reads: Vec<Step>) -> Transport<Fake> {
        let fake = Fake {
            reads: reads.into(),
            ..Fake::default()
        };
        Transport::new(fake, Instant::now())
    }

    /// Limits that never stop a read: what a test of the read marks needs.
    fn unbounded() -> Limits {
        Limits {
            max_conn_bytes: u64::MAX,
            max_buffered: usize::MAX,
            ..Limits::default()
        }
    }

    fn limits() -> Limits {
        Limits {
            max_conn_bytes: 100,
            max_buffered: 1000,
            ..Limits::default()
        }
    }

    #[test]
    fn reads_until_would_block_and_counts_the_budget() {
        let mut t = transport(vec![
            Step::Bytes(b"hello ".to_vec()),
            Step::Bytes(b"world".to_vec()),
            Step::WouldBlock,
            Step::Bytes(b"later".to_vec()),
        ]);
        let mut budget = Budget::new(1000);
        // A scratch buffer of 6 bytes: the first read fills it, so the
        // loop reads on; the second is short, so the socket is drained.
        t.read_in(&mut [0u8; 6], &limits(), &mut budget, false, None)
            .unwrap();
        assert_eq!(t.inbuf, b"hello world");
        assert_eq!(budget.used(), 11);
        assert!(!t.eof());
        // The handler takes a part: the budget follows.
        t.inbuf.drain(..6);
        t.settle(&mut budget);
        assert_eq!(budget.used(), 5);
        t.release(&mut budget);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn reading_stops_where_the_protocol_part_wants_and_resumes_once_taken() {
        let mut t = transport(vec![Step::Bytes(vec![9u8; 1000]); 4]);
        let mut budget = Budget::new(usize::MAX);
        let mut scratch = vec![0u8; 64];
        let limits = unbounded();
        t.read_in(&mut scratch, &limits, &mut budget, false, Some(150))
            .unwrap();
        assert_eq!(t.inbuf.len(), 150, "no further than wanted");
        assert!(t.may_resume(), "the rest is read after the handler's turn");
        assert!(t.take_paused());
        t.inbuf.clear();
        t.settle(&mut budget);
        t.read_in(&mut scratch, &limits, &mut budget, false, Some(4))
            .unwrap();
        assert_eq!(t.inbuf.len(), 4);
        // The peer's close is read now, whatever is wanted.
        t.read_in(&mut scratch, &limits, &mut budget, true, Some(1))
            .unwrap();
        assert!(t.inbuf.len() > 5);
    }

    #[test]
    fn reading_stops_at_the_high_water_mark_and_resumes_once_taken() {
        // A sender with far more queued than the high-water mark (an
        // upload): only about the mark is read, the rest stays in the
        // socket until the handler has taken from the buffer.
        let piece = vec![1u8; 65_536];
        let mut t = transport(vec![Step::Bytes(piece.clone()); 64]);
        let mut budget = Budget::new(usize::MAX);
        let limits = unbounded();
        let mut scratch = vec![0u8; 65_536];
        t.read_in(&mut scratch, &limits, &mut budget, false, None)
            .unwrap();
        assert!(t.inbuf.len() >= INPUT_HIGH_WATER);
        assert!(t.inbuf.len() < INPUT_HIGH_WATER + piece.len());
        assert!(!t.may_resume(), "nothing taken yet");
        t.inbuf.drain(..2 * piece.len());
        t.settle(&mut budget);
        assert!(t.may_resume());
        assert!(t.take_paused());
        let before = t.inbuf.len();
        t.read_in(&mut scratch, &limits, &mut budget, false, None)
            .unwrap();
        assert!(t.inbuf.len() > before, "read on after resuming");
        assert!(t.inbuf.len() < INPUT_HIGH_WATER + piece.len());
    }

    #[test]
    fn a_close_announced_while_reading_is_held_back_is_still_read_to_the_end() {
        // An upload's chunks fill the buffer, then the peer closes: the
        // event that says so comes while the connection is held at the
        // high-water mark, and no further edge will come.
        let piece = vec![1u8; 65_536];
        let mut reads = vec![Step::Bytes(piece.clone()); 8];
        reads.push(Step::Eof);
        let mut t = transport(reads);
        let mut budget = Budget::new(usize::MAX);
        let limits = unbounded();
        let mut scratch = vec![0u8; READ_BUFFER];
        t.read_in(&mut scratch, &limits, &mut budget, false, None)
            .unwrap();
        assert!(!t.eof());
        t.pause(true);
        // Taken, then resumed by a read that knows of no event: the rest
        // and the close are read all the same.
        for _ in 0..10 {
            t.inbuf.clear();
            t.settle(&mut budget);
            if t.eof() || !t.take_paused() {
                break;
            }
            t.read_in(&mut scratch, &limits, &mut budget, false, None)
                .unwrap();
        }
        assert!(t.eof(), "the close is seen without a new edge");
    }

    #[test]
    fn one_read_takes_up_to_the_high_water_mark_and_never_far_past_it() {
        let mut t = transport(vec![Step::Bytes(vec![1u8; 4 * INPUT_HIGH_WATER])]);
        let mut budget = Budget::new(usize::MAX);
        let limits = unbounded();
        let mut scratch = vec![0u8; READ_BUFFER];
        t.read_in(&mut scratch, &limits, &mut budget, false, None)
            .unwrap();
        assert_eq!(t.inbuf.len(), INPUT_HIGH_WATER, "in one read, to the mark");
        t.inbuf.drain(..1000);
        t.settle(&mut budget);
        assert!(t.take_paused());
        t.read_in(&mut scratch, &limits, &mut budget, false, None)
            .unwrap();
        assert_eq!(
            t.inbuf.len(),
            INPUT_HIGH_WATER - 1000 + MIN_READ,
            "near the mark, one small read"
        );
    }

    #[test]
    fn a_read_of_zero_is_the_peer_closing_and_a_reset_too() {
        let mut t = transport(vec![Step::Bytes(b"ab".to_vec()), Step::Eof]);
        let mut budget = Budget::new(1000);
        t.read_in(&mut [0u8; 2], &limits(), &mut budget, true, None)
            .unwrap();
        assert!(t.eof());
        assert_eq!(t.inbuf, b"ab");

        let mut t = transport(vec![Step::Reset]);
        t.read_in(&mut [0u8; 8], &limits(), &mut budget, false, None)
            .unwrap();
        assert!(t.eof());
    }

    #[test]
    fn more_than_the_byte_limit_is_refused() {
        let mut t = transport(vec![Step::Bytes(vec![7; 101])]);
        let mut budget = Budget::new(1000);
        let e = t
            .read_in(&mut [0u8; 64], &limits(), &mut budget, false, None)
            .unwrap_err();
        assert!(matches!(e, ConnectionError::TooManyBytes { limit: 100 }));
        // What was buffered is still counted until released.
        assert_eq!(budget.used(), t.inbuf.len());
    }

    #[test]
    fn one_budget_is_shared_by_every_connection() {
        let mut budget = Budget::new(10);
        let mut a = transport(vec![Step::Bytes(vec![1; 6])]);
        let mut b = transport(vec![Step::Bytes(vec![2; 6])]);
        a.read_in(&mut [0u8; 64], &limits(), &mut budget, false, None)
            .unwrap();
        let e = b
            .read_in(&mut [0u8; 64], &limits(), &mut budget, false, None)
            .unwrap_err();
        assert!(matches!(
            e,
            ConnectionError::Overloaded { max_buffered: 10 }
        ));
        b.finish(&mut budget);
        assert_eq!(budget.used(), 6);
        a.release(&mut budget);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn partial_writes_keep_the_rest_and_writable_interest_follows_the_output() {
        let mut t = transport(vec![]);
        assert_eq!(t.wanted_interest(), Interest::READABLE);
        t.outbuf.extend_from_slice(b"0123456789");
        t.stream_mut().write_caps = vec![3, 4, 0].into();
        t.flush().unwrap();
        assert_eq!(t.outbuf, b"789");
        assert_eq!(t.stream_mut().written, b"0123456");
        assert_eq!(t.wanted_interest(), Interest::READABLE | Interest::WRITABLE);
        assert!(t.interest_changes(t.wanted_interest()));
        assert!(!t.interest_changes(t.wanted_interest()));
        t.stream_mut().write_caps = vec![10].into();
        t.flush().unwrap();
        assert!(t.drained());
        assert_eq!(t.wanted_interest(), Interest::READABLE);
    }

    #[test]
    fn a_closing_connection_discards_input_a_bounded_number_of_reads() {
        let reads = (0..DISCARD_READS + 5)
            .map(|_| Step::Bytes(vec![0; 4]))
            .collect();
        let mut t = transport(reads);
        let mut budget = Budget::new(1000);
        t.finish(&mut budget);
        assert!(!t.can_work());
        t.read_in(&mut [0u8; 64], &limits(), &mut budget, false, None)
            .unwrap();
        assert!(t.inbuf.is_empty());
        assert_eq!(budget.used(), 0);
        // Some reads are left for the next event.
        assert_eq!(t.stream_mut().reads.len(), 5);
    }

    #[test]
    fn output_past_the_high_water_mark_stops_work() {
        let mut t = transport(vec![]);
        assert!(t.can_work());
        t.outbuf = vec![0; OUTPUT_HIGH_WATER];
        assert!(!t.can_work());
    }

    #[test]
    fn time_limits_come_from_the_start_and_the_last_whole_unit() {
        let t = transport(vec![]);
        let limits = Limits {
            idle_timeout: Duration::from_secs(10),
            exchange_deadline: Duration::from_secs(30),
            ..Limits::default()
        };
        let start = t.started;
        assert_eq!(t.deadline(&limits), start + Duration::from_secs(10));
        assert_eq!(t.expired(start + Duration::from_secs(9), &limits), None);
        assert_eq!(
            t.expired(start + Duration::from_secs(10), &limits),
            Some(Expiry::Idle)
        );
        assert_eq!(
            t.expired(start + Duration::from_secs(30), &limits),
            Some(Expiry::Deadline)
        );
    }

    #[test]
    fn output_taken_moves_the_timers_only_where_it_is_progress() {
        let limits = Limits {
            idle_timeout: Duration::from_secs(10),
            exchange_deadline: Duration::from_secs(30),
            ..Limits::default()
        };
        for download in [false, true] {
            let mut t = Transport::new(
                Fake {
                    write_caps: vec![4].into(),
                    ..Fake::default()
                },
                Instant::now() - Duration::from_secs(20),
            );
            t.last_unit = t.started;
            if download {
                t.output_is_progress();
            }
            t.outbuf.extend_from_slice(b"body");
            t.flush().unwrap();
            // Twenty seconds after the last unit in: idle, unless the peer
            // just took output from a download.
            let now = Instant::now();
            assert_eq!(
                t.expired(now, &limits),
                (!download).then_some(Expiry::Idle),
                "download: {download}"
            );
        }
    }

    #[test]
    fn an_uploads_progress_moves_the_deadline_but_not_the_idle_timer() {
        let mut t = transport(vec![]);
        let limits = Limits {
            idle_timeout: Duration::from_secs(10),
            exchange_deadline: Duration::from_secs(30),
            ..Limits::default()
        };
        let start = t.started;
        t.progress(start + Duration::from_secs(25));
        assert_eq!(
            t.expired(start + Duration::from_secs(40), &limits),
            Some(Expiry::Idle),
            "progress is no frame: the idle timer still runs from the last one"
        );
        t.last_unit = start + Duration::from_secs(50);
        assert_eq!(t.expired(start + Duration::from_secs(54), &limits), None);
        assert_eq!(
            t.expired(start + Duration::from_secs(55), &limits),
            Some(Expiry::Deadline)
        );
    }
}
