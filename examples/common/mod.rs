//! What the load drivers (`loadgen`, `upload`) share: the loopback-only
//! rule and the server's CPU time and memory read from `/proc`. A module
//! (`mod common;`), not an example: cargo builds only `examples/*.rs` and
//! `examples/*/main.rs` as examples.

#![allow(dead_code)]

use std::fs;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// The drivers' error: anything, sendable between their threads.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The socket address `addr` names, if it is a loopback one (127.0.0.0/8
/// or ::1): the drivers load only this machine. `who` names the driver in
/// the refusal.
pub(crate) fn loopback_only(addr: &str, who: &str) -> Result<SocketAddr, BoxError> {
    let sa = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    if !sa.ip().is_loopback() {
        return Err(format!("{addr}: {who} only targets loopback addresses").into());
    }
    Ok(sa)
}

/// The CPU time (user + system, every thread) of a process, from
/// `/proc/PID/stat`.
pub(crate) fn cpu_time(pid: u32) -> Result<Duration, BoxError> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces: fields are
    // counted after the last ')'. utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("unexpected /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64, BoxError> {
        Ok(fields
            .get(i)
            .ok_or("short /proc/PID/stat")?
            .parse::<u64>()?)
    };
    // fields[0] is field 3 (state): utime is field 14 -> index 11.
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(total as f64 / clock_ticks() as f64))
}

/// USER_HZ: 100 on every Linux this runs on (sysconf needs unsafe code).
fn clock_ticks() -> u64 {
    100
}

/// A `/proc/PID/status` field in KiB (`VmHWM:`, `VmRSS:`).
pub(crate) fn status_kib(pid: u32, field: &str) -> Result<u64, BoxError> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("unexpected /proc/PID/status")?
        .parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_a_target() {
        assert!(loopback_only("127.0.0.1:8011", "t").is_ok());
        assert!(loopback_only("[::1]:8011", "t").is_ok());
        assert!(loopback_only("10.0.0.1:8011", "t").is_err());
        assert!(loopback_only("192.0.2.1:1", "t").is_err());
    }

    #[test]
    fn this_process_has_a_cpu_time_and_a_peak_resident_set() -> Result<(), BoxError> {
        let pid = std::process::id();
        cpu_time(pid)?;
        assert!(status_kib(pid, "VmHWM:")? > 0);
        assert!(status_kib(pid, "NoSuchField:").is_err());
        Ok(())
    }
}
