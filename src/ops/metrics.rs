//! The process's metrics (issue 14), served on `GET /metrics` in the
//! Prometheus text exposition format (0.0.4).
//!
//! Every reactor thread and the commit thread update one shared
//! [`Metrics`] (behind an `Arc`); each update is one atomic operation, or a
//! read lock plus one when a label value is seen the first time, so call
//! sites stay one cheap line. The encoding is the Prometheus project's own
//! Rust client's (`prometheus-client`), not ours.
//!
//! Label values are `&'static str` on purpose: only strings written in the
//! code can become a label, so a peer can never grow the number of series.
//!
//! This module knows nothing of the rest of the crate: callers name their
//! own refusal reasons, OCSP statuses and listeners.

use std::fmt;
use std::sync::mpsc::SyncSender;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: &'static str,
}

/// Upper bounds of the commit latency buckets, in seconds: 0.5 ms doubling
/// to about 2 s, the span from a batched fsync on an SSD to a stalled disk.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WitnessLabel {
    witness: String,
    outcome: &'static str,
}

fn commit_latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 13)
}

/// The course's state as the store last said: what the gauges read from
/// the store show (issue 22, 16). The counters above count this process's
/// work since it started; these survive a restart and agree across hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StoreState {
    /// Students holding a current certificate.
    pub(crate) students_enrolled: u64,
    /// Certificates neither revoked nor expired.
    pub(crate) certificates_current: u64,
    /// Certificates revoked.
    pub(crate) certificates_revoked: u64,
    /// Certificates ever issued.
    pub(crate) certificates_stored: u64,
    /// Reports recorded.
    pub(crate) reports_stored: u64,
    /// Students on the roster.
    pub(crate) roster_students: u64,
    /// When the store said so, Unix seconds.
    pub(crate) read_at: i64,
}

/// The process's metrics. Cheap to update from any thread; share it with
/// `Arc<Metrics>`.
pub(crate) struct Metrics {
    registry: Registry,
    issued: Counter,
    renewals: Counter,
    reports_accepted: Counter,
    refusals: Family<ReasonLabel, Counter>,
    ocsp_responses: Family<StatusLabel, Counter>,
    connections_accepted: Family<ListenerLabel, Counter>,
    connections_refused: Family<ListenerLabel, Counter>,
    open_connections: Family<ListenerLabel, Gauge>,
    awaiting_commit: Gauge,
    commit_latency: Histogram,
    commits_held: Counter,
    store_students_enrolled: Gauge,
    store_certificates_current: Gauge,
    store_certificates_revoked: Gauge,
    store_certificates: Gauge,
    store_reports: Gauge,
    store_roster: Gauge,
    store_read_at: Gauge,
    witness_requests: Family<WitnessLabel, Counter>,
    /// Told of each scrape, so that the store's gauges are read again soon
    /// after one (see `ops::store_gauges`); never waited on.
    scraped: OnceLock<SyncSender<()>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("issued", &self.issued.get())
            .field("reports_accepted", &self.reports_accepted.get())
            .field("awaiting_commit", &self.awaiting_commit.get())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics at zero, registered under their `certboard_` names.
    pub(crate) fn new() -> Self {
        let m = Metrics {
            registry: Registry::with_prefix("certboard"),
            issued: Counter::default(),
            renewals: Counter::default(),
            reports_accepted: Counter::default(),
            refusals: Family::default(),
            ocsp_responses: Family::default(),
            connections_accepted: Family::default(),
            connections_refused: Family::default(),
            open_connections: Family::default(),
            awaiting_commit: Gauge::default(),
            commits_held: Counter::default(),
            commit_latency: Histogram::new(commit_latency_buckets()),
            store_students_enrolled: Gauge::default(),
            store_certificates_current: Gauge::default(),
            store_certificates_revoked: Gauge::default(),
            store_certificates: Gauge::default(),
            store_reports: Gauge::default(),
            store_roster: Gauge::default(),
            store_read_at: Gauge::default(),
            witness_requests: Family::default(),
            scraped: OnceLock::new(),
        };
        let mut registry = m.registry;
        // Counters are registered without `_total`: the encoder adds it.
        registry.register(
            "certificates_issued",
            "Certificates issued (enrollments and renewals)",
            m.issued.clone(),
        );
        registry.register(
            "renewals",
            "Certificates issued as renewals",
            m.renewals.clone(),
        );
        registry.register(
            "reports_accepted",
            "Reports accepted and durably recorded",
            m.reports_accepted.clone(),
        );
        registry.register(
            "refusals",
            "Requests refused, by reason",
            m.refusals.clone(),
        );
        registry.register(
            "ocsp_responses",
            "OCSP responses sent, by status",
            m.ocsp_responses.clone(),
        );
        registry.register(
            "connections_accepted",
            "Connections accepted, by listener",
            m.connections_accepted.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused (over a limit), by listener",
            m.connections_refused.clone(),
        );
        registry.register(
            "open_connections",
            "Connections open now, by listener",
            m.open_connections.clone(),
        );
        registry.register(
            "witness_requests",
            "Checkpoints sent to a witness to cosign, by witness and outcome (cosigned, failed)",
            m.witness_requests.clone(),
        );
        registry.register(
            "records_awaiting_commit",
            "Records handed to the commit thread and not yet durable",
            m.awaiting_commit.clone(),
        );
        registry.register(
            "commits_held",
            "Commit batches a reactor held back (--commit-delay) for records other exchanges owed",
            m.commits_held.clone(),
        );
        registry.register(
            "commit_latency_seconds",
            "Time from a record's hand-over to its durable commit",
            m.commit_latency.clone(),
        );
        // Gauges of what the store holds: no `_total`, since they are not
        // this process's counts (a restart does not reset them).
        for (name, help, gauge) in [
            (
                "students_enrolled",
                "Students holding a current (unrevoked, unexpired) certificate, from the store",
                &m.store_students_enrolled,
            ),
            (
                "certificates_current",
                "Certificates neither revoked nor expired, from the store",
                &m.store_certificates_current,
            ),
            (
                "certificates_revoked",
                "Certificates revoked, from the store",
                &m.store_certificates_revoked,
            ),
            (
                "certificates_stored",
                "Certificates ever issued (every host, since the store was made), from the store",
                &m.store_certificates,
            ),
            (
                "reports_stored",
                "Reports recorded (every host, since the store was made), from the store",
                &m.store_reports,
            ),
            (
                "roster_students",
                "Students on the roster, from the store",
                &m.store_roster,
            ),
            (
                "store_read_timestamp_seconds",
                "When the gauges read from the store were last read (Unix time)",
                &m.store_read_at,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        Metrics { registry, ..m }
    }

    /// Shows `state` in the gauges read from the store.
    pub(crate) fn set_store_state(&self, state: &StoreState) {
        let set = |g: &Gauge, v: u64| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        set(&self.store_students_enrolled, state.students_enrolled);
        set(&self.store_certificates_current, state.certificates_current);
        set(&self.store_certificates_revoked, state.certificates_revoked);
        set(&self.store_certificates, state.certificates_stored);
        set(&self.store_reports, state.reports_stored);
        set(&self.store_roster, state.roster_students);
        self.store_read_at.set(state.read_at);
    }

    /// From now on each [`Metrics::encode`] sends `()` on `scraped` when it
    /// has room (a scrape is never held up by it). Once per process.
    pub(crate) fn tell_scrapes_to(&self, scraped: SyncSender<()>) {
        let _ = self.scraped.set(scraped);
    }

    /// A certificate was issued (a renewal counts here too, and also in
    /// [`Metrics::renewed`]).
    pub(crate) fn issued(&self) {
        self.issued.inc();
    }

    /// A certificate was issued as a renewal.
    pub(crate) fn renewed(&self) {
        self.renewals.inc();
    }

    /// A report was accepted and is durable.
    pub(crate) fn report_accepted(&self) {
        self.reports_accepted.inc();
    }

    /// A request was refused for `reason` (a fixed, short name such as
    /// `bad_signature`).
    pub(crate) fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// An OCSP response was sent with `status` (`good`, `revoked`,
    /// `unknown`, `malformed`, ...).
    pub(crate) fn ocsp_response(&self, status: &'static str) {
        self.ocsp_responses
            .get_or_create(&StatusLabel { status })
            .inc();
    }

    /// A connection was accepted on `listener`; it is open from now on
    /// until [`Metrics::connection_closed`].
    pub(crate) fn connection_accepted(&self, listener: &'static str) {
        let label = ListenerLabel { listener };
        self.connections_accepted.get_or_create(&label).inc();
        self.open_connections.get_or_create(&label).inc();
    }

    /// A connection accepted on `listener` was closed.
    pub(crate) fn connection_closed(&self, listener: &'static str) {
        self.open_connections
            .get_or_create(&ListenerLabel { listener })
            .dec();
    }

    /// A connection on `listener` was refused (closed at once, over a
    /// limit); it never counts as open.
    pub(crate) fn connection_refused(&self, listener: &'static str) {
        self.connections_refused
            .get_or_create(&ListenerLabel { listener })
            .inc();
    }

    /// A witness was asked to cosign a checkpoint: `outcome` is `cosigned`
    /// or `failed` (refused, down, or an answer that does not verify).
    pub(crate) fn witness_request(&self, witness: &str, outcome: &'static str) {
        self.witness_requests
            .get_or_create(&WitnessLabel {
                witness: witness.to_string(),
                outcome,
            })
            .inc();
    }

    /// `n` records are waiting for the commit thread.
    pub(crate) fn set_awaiting_commit(&self, n: usize) {
        self.awaiting_commit
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A reactor held a commit batch back for records other exchanges
    /// owed, then handed it over.
    pub(crate) fn commit_held(&self) {
        self.commits_held.inc();
    }

    /// A commit took `latency` from hand-over to durable.
    pub(crate) fn commit_latency(&self, latency: Duration) {
        self.commit_latency.observe(latency.as_secs_f64());
    }

    /// The whole exposition, for `GET /metrics` ([`CONTENT_TYPE`]).
    pub(crate) fn encode(&self) -> String {
        if let Some(scraped) = self.scraped.get() {
            // Full: a read is already due.
            let _ = scraped.try_send(());
        }
        let mut out = String::with_capacity(4096);
        // The encoder fails only when its writer does; a String never does.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            log::error!("encoding metrics: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::sync::Arc;

    /// The sample lines of `text` (no comments), as `name{labels} value`.
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    fn busy() -> Metrics {
        let m = Metrics::new();
        for _ in 0..3 {
            m.issued();
        }
        m.renewed();
        m.report_accepted();
        m.report_accepted();
        m.refused("bad_signature");
        m.refused("bad_signature");
        m.refused("window_closed");
        m.ocsp_response("good");
        m.ocsp_response("revoked");
        m.connection_accepted("ca");
        m.connection_accepted("ca");
        m.connection_accepted("http");
        m.connection_closed("ca");
        m.connection_refused("bb");
        m.set_awaiting_commit(7);
        m.commit_held();
        m.commit_latency(Duration::from_micros(300));
        m.commit_latency(Duration::from_millis(3));
        m.set_store_state(&StoreState {
            students_enrolled: 26,
            certificates_current: 27,
            certificates_revoked: 2,
            certificates_stored: 29,
            reports_stored: 31,
            roster_students: 40,
            read_at: 1_796_000_000,
        });
        m
    }

    #[test]
    fn encodes_every_metric_with_its_value() {
        let text = busy().encode();
        let s = samples(&text);
        for want in [
            "certboard_certificates_issued_total 3",
            "certboard_renewals_total 1",
            "certboard_reports_accepted_total 2",
            "certboard_refusals_total{reason=\"bad_signature\"} 2",
            "certboard_refusals_total{reason=\"window_closed\"} 1",
            "certboard_ocsp_responses_total{status=\"good\"} 1",
            "certboard_ocsp_responses_total{status=\"revoked\"} 1",
            "certboard_connections_accepted_total{listener=\"ca\"} 2",
            "certboard_connections_accepted_total{listener=\"http\"} 1",
            "certboard_connections_refused_total{listener=\"bb\"} 1",
            "certboard_open_connections{listener=\"ca\"} 1",
            "certboard_open_connections{listener=\"http\"} 1",
            "certboard_records_awaiting_commit 7",
            "certboard_commits_held_total 1",
            "certboard_commit_latency_seconds_count 2",
            "certboard_commit_latency_seconds_bucket{le=\"0.0005\"} 1",
            "certboard_commit_latency_seconds_bucket{le=\"0.004\"} 2",
            "certboard_commit_latency_seconds_bucket{le=\"+Inf\"} 2",
            "certboard_students_enrolled 26",
            "certboard_certificates_current 27",
            "certboard_certificates_revoked 2",
            "certboard_certificates_stored 29",
            "certboard_reports_stored 31",
            "certboard_roster_students 40",
            "certboard_store_read_timestamp_seconds 1796000000",
        ] {
            assert!(s.contains(&want), "missing {want:?} in\n{text}");
        }
        assert!(text.contains("# TYPE certboard_commit_latency_seconds histogram\n"));
        assert!(text.contains("# TYPE certboard_open_connections gauge\n"));
        assert!(text.contains("# TYPE certboard_certificates_issued_total counter\n"));
        assert!(!text.contains("# EOF"), "Prometheus text, not OpenMetrics");
    }

    #[test]
    fn a_fresh_process_reports_zeros() {
        let text = Metrics::new().encode();
        let s = samples(&text);
        assert!(
            s.contains(&"certboard_certificates_issued_total 0"),
            "{text}"
        );
        assert!(s.contains(&"certboard_records_awaiting_commit 0"), "{text}");
        assert!(
            s.contains(&"certboard_commit_latency_seconds_count 0"),
            "{text}"
        );
    }

    #[test]
    fn updates_from_many_threads_all_count() {
        let m = Arc::new(Metrics::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.issued();
                        m.refused("busy");
                        m.connection_accepted("ca");
                        m.connection_closed("ca");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = m.encode();
        let s = samples(&text);
        assert!(
            s.contains(&"certboard_certificates_issued_total 4000"),
            "{text}"
        );
        assert!(
            s.contains(&"certboard_refusals_total{reason=\"busy\"} 4000"),
            "{text}"
        );
        assert!(
            s.contains(&"certboard_open_connections{listener=\"ca\"} 0"),
            "{text}"
        );
    }

    /// Prints each sample Python's Prometheus text parser finds, one per
    /// line, as `name{k="v",...} value` with labels sorted.
    const PARSE_WITH_PYTHON: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{family.type} {s.name}{{{labels}}} {s.value:g}")
"#;

    #[test]
    fn python_prometheus_client_parses_the_exposition() {
        let has_parser = Command::new("python3")
            .args(["-c", "import prometheus_client.parser"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_parser {
            eprintln!(
                "skipped: python3 with prometheus_client is missing \
                 (scripts/install-test-tools.sh installs it)"
            );
            return;
        }
        let text = busy().encode();
        let mut child = Command::new("python3")
            .args(["-c", PARSE_WITH_PYTHON])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(text.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "python failed: {stderr}\non\n{text}");
        let parsed = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = parsed.lines().collect();
        for want in [
            "counter certboard_certificates_issued_total{} 3",
            "counter certboard_renewals_total{} 1",
            "counter certboard_reports_accepted_total{} 2",
            "counter certboard_refusals_total{reason=\"bad_signature\"} 2",
            "counter certboard_refusals_total{reason=\"window_closed\"} 1",
            "counter certboard_ocsp_responses_total{status=\"revoked\"} 1",
            "counter certboard_connections_accepted_total{listener=\"ca\"} 2",
            "counter certboard_connections_refused_total{listener=\"bb\"} 1",
            "gauge certboard_open_connections{listener=\"ca\"} 1",
            "gauge certboard_records_awaiting_commit{} 7",
            "histogram certboard_commit_latency_seconds_count{} 2",
            "histogram certboard_commit_latency_seconds_sum{} 0.0033",
            "histogram certboard_commit_latency_seconds_bucket{le=\"0.0005\"} 1",
            "histogram certboard_commit_latency_seconds_bucket{le=\"+Inf\"} 2",
            "gauge certboard_students_enrolled{} 26",
            "gauge certboard_reports_stored{} 31",
            "gauge certboard_store_read_timestamp_seconds{} 1.796e+09",
        ] {
            assert!(
                lines.contains(&want),
                "python did not see {want:?}:\n{parsed}"
            );
        }
    }
}
