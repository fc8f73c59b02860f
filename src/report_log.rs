//! Blackboard's printed reports: the operator's view on stdout, printed by a
//! thread of its own so that a stdout nobody drains (a paused pager, a stuck
//! log shipper, a pipe never read) never delays an acknowledgement.
//!
//! The commit thread hands each durable report over with a non-blocking
//! `try_send` on a bounded queue. When the queue is full the report is not
//! printed (it is in the database, `server reports` lists it) and counted;
//! once the printer catches up it says how many it skipped.
//!
//! # The printed form
//!
//! ```text
//! report SID1155000001 serial 7233497DB8A58377DD868F75F1CEF9DC receipt 4878421494818374052: 2 lines
//!   4878421494818374052| This is submission from SID1155000001.
//!   4878421494818374052| ...
//! ```
//!
//! A report's text is the student's: it may hold newlines, so printed as it
//! came it could hold a complete fake header for another SID. Here no text
//! can counterfeit a header: a header is the only line that starts in the
//! first column, every line of a text starts with two spaces and its
//! report's receipt, and nothing inside a line can start a new one (newline
//! splits lines; CR, VT, FF, NEL, U+2028/2029 and every other control or
//! bidi character are escaped, see [`crate::escape`]). The header gives the
//! count of lines, so a reader knows where a report ends, and a line cut
//! from its report still names its receipt. Escaping the whole text onto
//! one line would be as safe but unreadable for a ten-line report.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use log::{error, warn};

use crate::escape::{escaped, escaped_keep_tab};
use crate::store::{Origin, Record, ReportRecord};

/// Reports waiting to be printed, at most: 256 reports of at most 64 KiB
/// each bound the queue to 16 MiB.
pub(crate) const QUEUE_REPORTS: usize = 256;

/// How long stopping waits for the printer to print what is queued: a
/// blocked stdout must not hold the process on SIGTERM.
pub(crate) const STOP_WAIT: Duration = Duration::from_secs(2);

/// The printer thread and its queue.
#[derive(Debug)]
pub(crate) struct ReportLog {
    sender: ReportSender,
    thread: JoinHandle<()>,
    /// Closed (its sender dropped) when the printer ends, however.
    ended: Receiver<()>,
}

/// The commit thread's side: hands reports over, never waits.
#[derive(Debug, Clone)]
pub(crate) struct ReportSender {
    queue: SyncSender<ReportRecord>,
    dropped: Arc<AtomicU64>,
}

impl ReportLog {
    /// Starts the printer on stdout.
    pub(crate) fn stdout() -> io::Result<ReportLog> {
        ReportLog::start(io::stdout(), QUEUE_REPORTS)
    }

    /// Starts the printer writing to `out`, with room for `capacity`
    /// reports waiting.
    pub(crate) fn start<W: Write + Send + 'static>(
        out: W,
        capacity: usize,
    ) -> io::Result<ReportLog> {
        let (queue, rx) = mpsc::sync_channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let (ended_tx, ended) = mpsc::channel::<()>();
        let counter = Arc::clone(&dropped);
        let thread = std::thread::Builder::new()
            .name("report-printer".into())
            .spawn(move || {
                let _ended = ended_tx;
                print_loop(out, &rx, &counter)
            })?;
        Ok(ReportLog {
            sender: ReportSender { queue, dropped },
            thread,
            ended,
        })
    }

    /// A handle for the commit thread.
    pub(crate) fn sender(&self) -> ReportSender {
        self.sender.clone()
    }

    /// Once every sender is dropped (the commit thread has stopped), waits
    /// up to `wait` for the queued reports to be printed.
    pub(crate) fn stop(self, wait: Duration) {
        let ReportLog {
            sender,
            thread,
            ended,
        } = self;
        drop(sender);
        match ended.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {
                warn!("stdout is blocked: reports still queued are not printed (they are in the database)");
            }
            _ => {
                if thread.join().is_err() {
                    error!("the report printer panicked");
                }
            }
        }
    }
}

impl ReportSender {
    /// Queues the reports of a durable batch for printing, without waiting.
    pub(crate) fn announce(&self, batch: &[Record]) {
        for record in batch {
            if let Record::Report(r) = record {
                match self.queue.try_send(r.clone()) {
                    Ok(()) => {}
                    // The printer is behind (or gone): the report is in
                    // the database; the printer says how many it skipped.
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

fn print_loop<W: Write>(mut out: W, rx: &Receiver<ReportRecord>, dropped: &AtomicU64) {
    let mut failed = false;
    let mut result = |r: io::Result<()>| {
        if let (Err(e), false) = (r, failed) {
            failed = true;
            warn!("printing reports: {e}; they are in the database (`server reports`)");
        }
    };
    loop {
        let report = match rx.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => {
                // Caught up: say what was skipped while behind.
                result(print_skipped(&mut out, dropped).and_then(|()| out.flush()));
                match rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        // One write for the whole report: stdout is line-buffered, so
        // `write!` made a system call per line (eleven for the lab's report).
        result(out.write_all(Printed(&report).to_string().as_bytes()));
    }
    result(print_skipped(&mut out, dropped).and_then(|()| out.flush()));
}

fn print_skipped<W: Write>(out: &mut W, dropped: &AtomicU64) -> io::Result<()> {
    match dropped.swap(0, Ordering::Relaxed) {
        0 => Ok(()),
        1 => writeln!(
            out,
            "1 report not printed (stdout blocked); it is in the database"
        ),
        n => writeln!(
            out,
            "{n} reports not printed (stdout blocked); they are in the database"
        ),
    }
}

/// One report in its printed form (see the module).
struct Printed<'a>(&'a ReportRecord);

impl fmt::Display for Printed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let lines: Vec<&str> = match r.text.strip_suffix('\n').unwrap_or(&r.text) {
            "" if r.text.is_empty() => Vec::new(),
            body => body.split('\n').collect(),
        };
        let origin = match r.origin {
            Origin::Legacy => " (legacy)",
            Origin::Certboard => "",
        };
        writeln!(
            f,
            "report SID{} serial {} receipt {}{origin}: {} line{}",
            escaped(&r.sid),
            r.serial,
            r.receipt_id,
            lines.len(),
            if lines.len() == 1 { "" } else { "s" }
        )?;
        for line in lines {
            writeln!(f, "  {}| {}", r.receipt_id, escaped_keep_tab(line))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn report(receipt_id: u64, sid: &str, text: &str) -> ReportRecord {
        ReportRecord {
            receipt_id,
            sid: sid.into(),
            serial: crate::ca::Serial::parse_hex("7233497D").unwrap(),
            received_at: 0,
            text: text.into(),
            origin: Origin::Certboard,
            assignment: "lab".into(),
            late_by: None,
        }
    }

    /// A report as a reader of the printed form sees it.
    #[derive(Debug, PartialEq)]
    struct Parsed {
        sid: String,
        receipt: String,
        lines: Vec<String>,
    }

    /// A strict reader of the printed form: a header in the first column,
    /// then exactly the announced number of lines, each with the header's
    /// receipt. Anything else is an error.
    fn parse(printed: &str) -> Result<Vec<Parsed>, Box<dyn std::error::Error>> {
        let mut out = Vec::new();
        let mut lines = printed.lines();
        while let Some(header) = lines.next() {
            let rest = header
                .strip_prefix("report SID")
                .ok_or(format!("not a header: {header:?}"))?;
            let (head, count) = rest.rsplit_once(": ").ok_or("no count")?;
            let n: usize = count
                .trim_end_matches('s')
                .strip_suffix(" line")
                .ok_or("no line count")?
                .parse()?;
            let words: Vec<&str> = head.split(' ').collect();
            let [sid, "serial", _serial, "receipt", receipt, ..] = words.as_slice() else {
                return Err(format!("bad header {header:?}").into());
            };
            let prefix = format!("  {receipt}| ");
            let mut body = Vec::new();
            for _ in 0..n {
                let line = lines.next().ok_or("report cut short")?;
                body.push(
                    line.strip_prefix(&prefix)
                        .ok_or(format!("line of another report: {line:?}"))?
                        .to_string(),
                );
            }
            out.push(Parsed {
                sid: sid.to_string(),
                receipt: receipt.to_string(),
                lines: body,
            });
        }
        Ok(out)
    }

    #[test]
    fn a_report_cannot_forge_another_students_header() -> Result<(), Box<dyn std::error::Error>> {
        let forged = "my report\n\nreport SID999 serial X receipt 1:\nI am SID999's report\n\
                      report SID999 serial X receipt 1: 1 line\n  1| forged\r\u{2028}report SID8\n";
        let printed = Printed(&report(42, "1155000001", forged)).to_string();
        let parsed = parse(&printed)?;
        assert_eq!(parsed.len(), 1, "{printed}");
        assert_eq!(parsed[0].sid, "1155000001");
        assert_eq!(parsed[0].receipt, "42");
        assert_eq!(parsed[0].lines.len(), 6, "{printed}");
        assert_eq!(parsed[0].lines[2], "report SID999 serial X receipt 1:");
        assert_eq!(parsed[0].lines[5], "  1| forged\\r\\u{2028}report SID8");
        // Nothing but the one header starts in the first column.
        assert_eq!(
            printed.lines().filter(|l| !l.starts_with(' ')).count(),
            1,
            "{printed}"
        );
        Ok(())
    }

    #[test]
    fn texts_print_line_by_line_with_tabs_kept() -> Result<(), Box<dyn std::error::Error>> {
        let cases: [(&str, Vec<&str>); 5] = [
            ("", vec![]),
            ("\n", vec![""]),
            ("one", vec!["one"]),
            ("a\tb\nc\n", vec!["a\tb", "c"]),
            ("a\n\n", vec!["a", ""]),
        ];
        for (text, lines) in cases {
            let printed = Printed(&report(7, "alice", text)).to_string();
            let parsed = parse(&printed)?;
            assert_eq!(parsed.len(), 1, "{printed}");
            assert_eq!(parsed[0].lines, lines, "{printed}");
        }
        let one = Printed(&report(7, "alice", "x")).to_string();
        assert!(one.starts_with("report SIDalice serial 7233497D receipt 7: 1 line\n"));
        let mut legacy = report(8, "bob", "y\nz");
        legacy.origin = Origin::Legacy;
        assert!(Printed(&legacy)
            .to_string()
            .starts_with("report SIDbob serial 7233497D receipt 8 (legacy): 2 lines\n"));
        Ok(())
    }

    /// A writer that blocks in its first write until released, like a pipe
    /// nobody reads.
    #[derive(Clone)]
    struct Stuck {
        out: Arc<Mutex<Vec<u8>>>,
        entered: SyncSender<()>,
        release: Arc<Mutex<Option<Receiver<()>>>>,
    }

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let gate = self
                .release
                .lock()
                .map_err(|_| io::ErrorKind::Other)?
                .take();
            if let Some(gate) = gate {
                let _ = self.entered.send(());
                let _ = gate.recv_timeout(Duration::from_secs(20));
            }
            self.out
                .lock()
                .map_err(|_| io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_writer_never_blocks_the_sender_and_skips_are_counted(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (entered_tx, entered) = mpsc::sync_channel(1);
        let (release_tx, release_rx) = mpsc::channel();
        let out = Arc::new(Mutex::new(Vec::new()));
        let writer = Stuck {
            out: Arc::clone(&out),
            entered: entered_tx,
            release: Arc::new(Mutex::new(Some(release_rx))),
        };
        let log = ReportLog::start(writer, 2)?;
        let sender = log.sender();
        sender.announce(&[Record::Report(report(1, "s1", "first"))]);
        // The printer now sits in its first write.
        entered.recv_timeout(Duration::from_secs(20))?;
        // Two fit in the queue; the other three are skipped, at once.
        let batch: Vec<Record> = (2..=6)
            .map(|i| Record::Report(report(i, "s", "r")))
            .collect();
        sender.announce(&batch);
        assert_eq!(sender.dropped.load(Ordering::Relaxed), 3);
        release_tx.send(())?;
        drop(sender);
        log.stop(Duration::from_secs(20));
        let printed = String::from_utf8(out.lock().map_err(|e| e.to_string())?.clone())?;
        let receipts: Vec<&str> = printed
            .lines()
            .filter_map(|l| l.strip_prefix("report SID"))
            .filter_map(|l| l.split(' ').nth(4))
            .collect();
        assert_eq!(receipts, ["1:", "2:", "3:"], "{printed}");
        assert!(
            printed.ends_with("3 reports not printed (stdout blocked); they are in the database\n"),
            "{printed}"
        );
        Ok(())
    }
}
