//! Drives protocol version 3 uploads at a running certboard server for
//! `bench/upload.sh` (issue 20), through the client library's own upload
//! (`certboard::client::upload`), so the server sees exactly what `client
//! submit` sends:
//!
//! ```text
//! cargo run --release --example upload -- --ca 127.0.0.1:8011 --blackboard 127.0.0.1:8002 \
//!     --server-pid PID --size 10485760 --files 20 --concurrency 1
//! cargo run --release --example upload -- --ca ... --blackboard ... --server-pid PID \
//!     --size 20971520 --files 20 --concurrency 20 --probes 15
//! ```
//!
//! Before the clock starts it enrolls `--concurrency` students (one RSA-2048
//! key, distinct SIDs), writes one file of `--size` random bytes and hashes
//! it. With `--probes N` it then times N honest enrollments one after the
//! other on the idle server (a new connection, `CaHello`, one CSR), the
//! unloaded latency. The timed phase runs `--files` uploads on
//! `--concurrency` connections (a student each, one upload per connection,
//! every receipt checked as the client checks it) and, with `--probes`, a
//! prober enrolling one student after another (a pause of `--probe-gap-ms`
//! between them) until the last upload ends. The uploading threads run at
//! nice 19 and the prober in the real-time class (`chrt --fifo`, when
//! allowed): they share one core, and a student's own machine is not busy
//! uploading twenty files, so the prober's latency is the server's doing,
//! not its own core's queue.
//!
//! It reads the server's CPU time (utime + stime of all its threads) from
//! `/proc/PID/stat` and its peak resident set (`VmHWM`) from
//! `/proc/PID/status` just before and just after the timed phase, and prints
//! figures for people, then one JSON line for scripts.
//!
//! Loopback only: it refuses any address that is not 127.0.0.0/8 or ::1.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certboard::client::{self, BlackboardTrust, FileToSend, FramedStream, KeyType};
use certboard::message::EnrollAuth;
use clap::Parser;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

mod common;
use common::{cpu_time, loopback_only, status_kib, BoxError};

/// This driver, as its refusals name it.
const WHO: &str = "this driver";

/// Drives version 3 uploads and reports the server's CPU per MiB and peak RSS.
#[derive(Debug, Parser)]
#[command(name = "upload")]
struct Cli {
    /// The CA's address.
    #[arg(long, default_value = "127.0.0.1:8011")]
    ca: String,
    /// Blackboard's address.
    #[arg(long, default_value = "127.0.0.1:8002")]
    blackboard: String,
    /// The server's PID (its CPU time and VmHWM are read from /proc).
    #[arg(long, value_name = "PID")]
    server_pid: u32,
    /// The file's size in bytes (at most 64 MiB).
    #[arg(long, default_value_t = 10 << 20, value_parser = clap::value_parser!(u64).range(1..=64 << 20))]
    size: u64,
    /// Uploads in the timed phase.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    files: u64,
    /// Uploads in flight at once (a student each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    concurrency: u32,
    /// Honest enrollments timed on the idle server first (0: none, and no
    /// prober during the uploads).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1000))]
    probes: u32,
    /// Pause between two probe enrollments during the uploads, ms.
    #[arg(long, default_value_t = 50)]
    probe_gap_ms: u64,
    /// The assignment handed in for.
    #[arg(long, default_value = "lab")]
    assignment: String,
    /// First SID; the others count up from it.
    #[arg(long, default_value_t = 1_166_000_000)]
    first_sid: u64,
    /// Where the test file is written (removed at the end).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Timeout of every network step, seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// A label copied into the JSON line.
    #[arg(long, default_value = "")]
    label: String,
}

/// One enrolled student.
struct Student {
    sid: String,
    cert_der: Vec<u8>,
    serial_hex: String,
}

/// One enrollment on a new CA connection, as a student's first run does
/// once her key exists: connect, `CaHello`, one CSR. Returns the answer.
fn enroll(ca: &str, timeout: Duration, csr: Vec<u8>) -> Result<client::CertAnswer, BoxError> {
    let mut conn = FramedStream::connect(ca, timeout)?;
    let mut session = client::CaSession::open(&mut conn)?;
    Ok(session.request(&mut conn, csr, EnrollAuth::Open)?)
}

/// A file of `size` random bytes at `path`.
fn write_random_file(path: &Path, size: u64) -> Result<(), BoxError> {
    let mut f = File::create(path)?;
    let mut block = vec![0u8; 1 << 16];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        openssl::rand::rand_bytes(&mut block[..n])?;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Nearest-rank percentile of sorted milliseconds.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// One timed enrollment: ms to the challenge (the connection and the
/// hello's round trip: the reactor's turns), and ms in all (the request
/// adds the CA's signature and a commit).
fn probe(ca: &str, timeout: Duration, csr: Vec<u8>) -> Result<(f64, f64), BoxError> {
    let t = Instant::now();
    let mut conn = FramedStream::connect(ca, timeout)?;
    let mut session = client::CaSession::open(&mut conn)?;
    let opened = t.elapsed().as_secs_f64() * 1e3;
    session.request(&mut conn, csr, EnrollAuth::Open)?;
    Ok((opened, t.elapsed().as_secs_f64() * 1e3))
}

/// Puts the calling thread in the real-time class (SCHED_FIFO, the lowest
/// priority) with `chrt`, so that it runs as soon as it wakes: the driver's
/// twenty uploading threads keep its core busy, and even at nice 19 a
/// prober sharing that core waited for their time slices between the
/// steps of its enrollment (3-19 ms between the server's challenge and
/// its request, while the server answered each step within 0.5 ms).
/// The prober sleeps between enrollments and does little else, so it
/// cannot hold the core. Needs CAP_SYS_NICE; without it, says so and goes
/// on at the default priority.
fn realtime_here() {
    let tid = fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let done = tid.and_then(|tid| {
        std::process::Command::new("chrt")
            .args(["--fifo", "--pid", "1", &tid])
            .status()
            .ok()
    });
    if !done.is_some_and(|s| s.success()) {
        eprintln!("{WHO}: the prober stays at the default priority (chrt --fifo failed)");
    }
}

/// Times `n` enrollments one after the other: ms to the challenge and
/// ms in all, each.
fn probe_enrollments(
    ca: &str,
    timeout: Duration,
    key: &PKey<Private>,
    first_sid: u64,
    n: u32,
) -> Result<(Vec<f64>, Vec<f64>), BoxError> {
    let (mut all, mut opening) = (Vec::new(), Vec::new());
    for i in 0..n {
        let csr = client::make_csr(&(first_sid + u64::from(i)).to_string(), key)?;
        let (open_ms, all_ms) = probe(ca, timeout, csr)?;
        opening.push(open_ms);
        all.push(all_ms);
    }
    Ok((all, opening))
}

fn run(cli: Cli) -> Result<(), BoxError> {
    if !(cli.timeout.is_finite() && cli.timeout > 0.0 && cli.timeout <= 600.0) {
        return Err("--timeout must be between 0 and 600 seconds".into());
    }
    loopback_only(&cli.ca, WHO)?;
    loopback_only(&cli.blackboard, WHO)?;
    let timeout = Duration::from_secs_f64(cli.timeout);
    let pid = cli.server_pid;

    let key = client::make_key(KeyType::Rsa2048)?;
    let mut students = Vec::new();
    let mut root = Vec::new();
    for i in 0..u64::from(cli.concurrency) {
        let sid = (cli.first_sid + i).to_string();
        let answer = enroll(&cli.ca, timeout, client::make_csr(&sid, &key)?)?;
        let serial_hex = X509::from_der(&answer.cert_der)?
            .serial_number()
            .to_bn()?
            .to_hex_str()?
            .to_string();
        root = answer.ca_cert_der;
        students.push(Student {
            sid,
            cert_der: answer.cert_der,
            serial_hex,
        });
    }
    let root = X509::from_der(&root)?;

    let dir = match &cli.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir(),
    };
    let path = dir.join(format!("certboard-upload-{}.bin", std::process::id()));
    write_random_file(&path, cli.size)?;
    let file = client::prepare_file(&path);
    let result = file
        .map_err(BoxError::from)
        .and_then(|file| timed(&cli, timeout, pid, &key, &root, &students, &file));
    // The file goes whatever happened.
    let removed = fs::remove_file(&path);
    result?;
    removed?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn timed(
    cli: &Cli,
    timeout: Duration,
    pid: u32,
    key: &PKey<Private>,
    root: &X509,
    students: &[Student],
    file: &FileToSend,
) -> Result<(), BoxError> {
    let probe_sid = cli.first_sid + 100_000;
    // On a thread of its own in the real-time class, as the prober during
    // the uploads: both figures are taken alike.
    let (unloaded, unloaded_opening) = std::thread::scope(|s| {
        s.spawn(|| {
            if cli.probes > 0 {
                realtime_here();
            }
            probe_enrollments(&cli.ca, timeout, key, probe_sid, cli.probes)
                .map_err(|e| e.to_string())
        })
        .join()
        .unwrap_or_else(|_| Err("probe thread panicked".into()))
    })?;
    let (unloaded, unloaded_opening) = (sorted(unloaded), sorted(unloaded_opening));

    let cpu0 = cpu_time(pid)?.as_secs_f64();
    let hwm0 = status_kib(pid, "VmHWM:")?;
    let rss0 = status_kib(pid, "VmRSS:")?;
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let uploading = Arc::new(AtomicBool::new(true));

    let prober = (cli.probes > 0).then(|| {
        let (ca, key, uploading) = (cli.ca.clone(), key.clone(), uploading.clone());
        let gap = Duration::from_millis(cli.probe_gap_ms);
        let first = probe_sid + u64::from(cli.probes);
        std::thread::spawn(move || -> Result<(Vec<f64>, Vec<f64>), BoxError> {
            realtime_here();
            let (mut out, mut opening) = (Vec::new(), Vec::new());
            // Bounded: the uploads end, or 1,000 probes.
            while uploading.load(Ordering::Acquire) && out.len() < 1000 {
                let csr = client::make_csr(&(first + out.len() as u64).to_string(), &key)?;
                let (open_ms, all_ms) = probe(&ca, timeout, csr)?;
                opening.push(open_ms);
                out.push(all_ms);
                std::thread::sleep(gap);
            }
            Ok((out, opening))
        })
    });

    let results: Vec<Result<Vec<f64>, BoxError>> = std::thread::scope(|s| {
        let handles: Vec<_> = students
            .iter()
            .map(|st| {
                let next = next.clone();
                s.spawn(move || -> Result<Vec<f64>, BoxError> {
                    // The uploading threads share this core with the
                    // prober; at the default priority its enrollment waits
                    // for twenty of them to yield the CPU, which times the
                    // load generator's core, not the server (the prober is
                    // also real-time: `realtime_here`). Linux applies
                    // nice(2) to the calling thread only.
                    if let Err(e) = rustix::process::nice(19) {
                        eprintln!("{WHO}: could not lower an uploading thread's priority: {e}");
                    }
                    let trust = BlackboardTrust {
                        root: root.clone(),
                        name: certboard::ca::DEFAULT_BLACKBOARD_NAME.into(),
                    };
                    let mut times = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < cli.files {
                        let t = Instant::now();
                        let mut conn = FramedStream::connect(&cli.blackboard, timeout)?;
                        client::upload(
                            &mut conn,
                            &st.sid,
                            &st.serial_hex,
                            &st.cert_der,
                            key,
                            &cli.assignment,
                            file,
                            &trust,
                            &mut |_| {},
                        )?;
                        times.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    Ok(times)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("upload thread panicked".into()))
            })
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let cpu1 = cpu_time(pid)?.as_secs_f64();
    let hwm1 = status_kib(pid, "VmHWM:")?;
    uploading.store(false, Ordering::Release);
    let (loaded, opening) = match prober {
        Some(h) => {
            let (all, opening) = h.join().map_err(|_| "probe thread panicked")??;
            (sorted(all), sorted(opening))
        }
        None => (Vec::new(), Vec::new()),
    };
    let mut upload_ms = Vec::new();
    for r in results {
        upload_ms.extend(r?);
    }
    let upload_ms = sorted(upload_ms);

    let mib = (cli.files * cli.size) as f64 / f64::from(1 << 20);
    let cpu = cpu1 - cpu0;
    let cpu_ms_per_mib = cpu * 1e3 / mib;
    let hwm_rise_mib = hwm1.saturating_sub(hwm0) as f64 / 1024.0;
    println!(
        "{} uploads of {} bytes ({:.0} MiB), {} at once, in {:.2} s: {:.1} MiB/s",
        cli.files,
        cli.size,
        mib,
        cli.concurrency,
        wall,
        mib / wall
    );
    println!(
        "upload latency ms: p50 {:.1}, max {:.1}",
        percentile(&upload_ms, 50.0),
        percentile(&upload_ms, 100.0)
    );
    println!(
        "server CPU {:.2} s = {:.3} ms per MiB received (utime+stime, /proc/{pid}/stat)",
        cpu, cpu_ms_per_mib
    );
    println!(
        "server VmHWM {:.1} MiB before, {:.1} MiB after: +{:.1} MiB (VmRSS before {:.1} MiB)",
        hwm0 as f64 / 1024.0,
        hwm1 as f64 / 1024.0,
        hwm_rise_mib,
        rss0 as f64 / 1024.0
    );
    let (u50, l50) = (percentile(&unloaded, 50.0), percentile(&loaded, 50.0));
    if cli.probes > 0 {
        println!(
            "honest enrollment ms: unloaded median {:.2} (max {:.2}, n={}); during the uploads \
             median {:.2} (p90 {:.2}, max {:.2}, n={}): {:.2}x",
            u50,
            percentile(&unloaded, 100.0),
            unloaded.len(),
            l50,
            percentile(&loaded, 90.0),
            percentile(&loaded, 100.0),
            loaded.len(),
            if u50 > 0.0 { l50 / u50 } else { 0.0 }
        );
        println!(
            "  of which the connection and the hello's round trip: unloaded median {:.2}; \
             during the uploads median {:.2} (p90 {:.2})",
            percentile(&unloaded_opening, 50.0),
            percentile(&opening, 50.0),
            percentile(&opening, 90.0)
        );
    }
    println!(
        "{{\"label\":\"{}\",\"files\":{},\"size\":{},\"concurrency\":{},\"mib\":{:.1},\
         \"seconds\":{:.3},\"server_cpu_s\":{:.3},\"cpu_ms_per_mib\":{:.4},\"hwm_before_kib\":{},\
         \"hwm_after_kib\":{},\"hwm_rise_mib\":{:.1},\"upload_p50_ms\":{:.1},\
         \"enroll_unloaded_ms\":{:.3},\"enroll_loaded_ms\":{:.3},\"enroll_loaded_n\":{}}}",
        cli.label,
        cli.files,
        cli.size,
        cli.concurrency,
        mib,
        wall,
        cpu,
        cpu_ms_per_mib,
        hwm0,
        hwm1,
        hwm_rise_mib,
        percentile(&upload_ms, 50.0),
        u50,
        l50,
        loaded.len()
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upload: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v = sorted(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!(percentile(&v, 50.0), 2.0);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
