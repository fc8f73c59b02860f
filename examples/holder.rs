//! Holds many connections open against a certboard listener, for the scale
//! part of `bench/compare.sh`:
//!
//! ```text
//! cargo run --release --example holder -- --addr 127.0.0.1:8011 --idle 10000 --seconds 120
//! cargo run --release --example holder -- --addr 127.0.0.1:8011 --slowloris 1000 --seconds 60
//! ```
//!
//! `--idle N` opens N connections and sends nothing. `--slowloris N` opens N
//! connections and sends one byte a second on each: the header of a frame
//! announcing 64 KiB, then its payload, byte by byte, so no frame ever
//! completes. Once every connection is open it prints `ready N` on stdout;
//! after `--seconds` (bounded) it prints how many the server still held and
//! exits. Loopback only. The process needs N file descriptors.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use clap::Parser;

type BoxError = Box<dyn std::error::Error>;

/// Holds idle or slowloris connections against a listener.
#[derive(Debug, Parser)]
#[command(name = "holder")]
struct Cli {
    /// The listener to connect to (loopback only).
    #[arg(long)]
    addr: String,
    /// Idle connections: connect and send nothing.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=19_000))]
    idle: u32,
    /// Slowloris connections: one byte a second each.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=19_000))]
    slowloris: u32,
    /// How long to hold them, seconds (at most an hour).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
}

/// Whether the server still holds the connection: a non-blocking read that
/// would block means open; end of file or an error means it was closed.
fn still_open(s: &mut TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let mut b = [0u8; 64];
    let open = match s.read(&mut b) {
        Ok(0) => false,
        Ok(_) => true, // an error frame is on its way; the close follows
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    };
    let _ = s.set_nonblocking(false);
    open
}

fn connect_many(addr: SocketAddr, n: u32) -> Result<Vec<TcpStream>, BoxError> {
    let mut v = Vec::with_capacity(n as usize);
    for i in 0..n {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| format!("connection {i} of {n}: {e}"))?;
        v.push(s);
    }
    Ok(v)
}

fn run(cli: Cli) -> Result<(), BoxError> {
    let addr = cli.addr.to_socket_addrs()?.next().ok_or("no address")?;
    if !addr.ip().is_loopback() {
        return Err("the holder only connects to loopback addresses".into());
    }
    let t = Instant::now();
    let mut idle = connect_many(addr, cli.idle)?;
    let mut slow = connect_many(addr, cli.slowloris)?;
    for s in &slow {
        s.set_write_timeout(Some(Duration::from_millis(100)))?;
    }
    println!(
        "ready {} ({} idle, {} slowloris) in {:.2} s",
        idle.len() + slow.len(),
        idle.len(),
        slow.len(),
        t.elapsed().as_secs_f64()
    );
    io::stdout().flush()?;

    // A frame header announcing 64 KiB, then payload bytes.
    let header = 65_536i32.to_le_bytes();
    let end = Instant::now() + Duration::from_secs(cli.seconds);
    let mut sent = 0usize;
    let mut write_failures = 0usize;
    let mut alive = vec![true; slow.len()];
    while Instant::now() < end {
        let tick = Instant::now();
        if !slow.is_empty() {
            let byte = header.get(sent).copied().unwrap_or(b'x');
            for (s, a) in slow.iter_mut().zip(alive.iter_mut()) {
                if *a && s.write_all(&[byte]).is_err() {
                    *a = false;
                    write_failures += 1;
                }
            }
            sent += 1;
        }
        let rest = Duration::from_secs(1).saturating_sub(tick.elapsed());
        std::thread::sleep(rest.min(end.saturating_duration_since(Instant::now())));
    }
    let idle_open = idle.iter_mut().map(still_open).filter(|open| *open).count();
    let slow_open = slow.iter_mut().map(still_open).filter(|open| *open).count();
    println!(
        "held for {} s: {idle_open} of {} idle and {slow_open} of {} slowloris connections still open ({write_failures} slowloris writes failed, {sent} bytes sent on each)",
        cli.seconds,
        idle.len(),
        slow.len()
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("holder: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
