//! End-to-end: a live server fed everything a hostile peer might send —
//! garbage, impossible lengths, cut-off frames, a frame in 1-byte writes,
//! hundreds of half-open connections, messages out of order — and after
//! all of it, still alive and still serving an honest student.

mod common;
mod wire;

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use certboard::client::{self, KeyType};
use certboard::message::{CipherId, ErrorCode, Message};
use common::*;
use wire::*;

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    openssl::rand::rand_bytes(&mut b).expect("rand"); // ok: test
    b
}

fn alive(server: &mut TestServer) -> bool {
    matches!(server.child.try_wait(), Ok(None))
}

/// Sends `bytes` and expects the server to close, answering with a
/// refusal; returns it (or what came instead, for the message).
fn hostile(addr: SocketAddr, bytes: &[u8]) -> Result<(ErrorCode, String), WireError> {
    send_and_refusal(addr, bytes)
}

#[test]
fn hostile_bytes_do_not_crash_or_stall_the_server() -> TestResult {
    let mut server = TestServer::start(&["--idle-timeout", "3", "--deadline", "10"])?;
    battery(&mut server)?;
    let status = server.stop()?;
    assert!(status.success(), "server exit: {status:?}");
    Ok(())
}

/// The text frames a legacy connection got before the server closed it.
fn legacy_frames(
    addr: SocketAddr,
    frames: &[&[u8]],
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut s = connect(addr)?;
    for f in frames {
        s.write_all(&certboard::framing::frame(f))?;
    }
    let got = read_to_close(&mut s, WAIT).ok_or("legacy connection not closed")?;
    let mut d = certboard::framing::Decoder::new(certboard::framing::DEFAULT_MAX_FRAME);
    let mut buf = got;
    let mut out = Vec::new();
    while let Ok(Some(f)) = d.decode(&mut buf) {
        out.push(String::from_utf8(f)?);
    }
    Ok(out)
}

#[test]
fn hostile_bytes_with_legacy_mode_on() -> TestResult {
    let mut server = TestServer::start(&["--legacy", "--idle-timeout", "3", "--deadline", "10"])?;
    // The original protocol's text frames, abused.
    let long_cert = vec![b'A'; 20 * 1024];
    let cases: Vec<(SocketAddr, Vec<&[u8]>)> = vec![
        (server.ca, vec![b"1", b"../../etc/passwd"]),
        (server.ca, vec![b"1", &[0xff, 0xfe, 0x00]]),
        (server.ca, vec![b"2"]),
        (server.blackboard, vec![b"2", b"alice", &long_cert]),
        (
            server.blackboard,
            vec![
                b"2",
                b"alice",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
            ],
        ),
        (server.blackboard, vec![b"2", b"bad sid!", b"whatever"]),
        (server.blackboard, vec![b"1"]),
        (server.blackboard, vec![b"2", &[0x20, 0x00]]),
    ];
    for (addr, frames) in cases {
        let got = legacy_frames(addr, &frames)?;
        assert!(
            got.last().is_some_and(|l| l.starts_with("error: ")),
            "{frames:?} got {got:?}"
        );
    }
    // A legacy client that asks to enroll and then goes silent is cut off.
    let got = legacy_frames(server.ca, &[b"1"])?;
    assert!(
        got.last().is_some_and(|l| l.contains("idle timeout")),
        "{got:?}"
    );
    battery(&mut server)?;
    let status = server.stop()?;
    assert!(status.success(), "server exit: {status:?}");
    Ok(())
}

/// Everything hostile, then an honest student; the server must be alive
/// and have recorded her report.
fn battery(server: &mut TestServer) -> TestResult {
    let listeners = [server.ca, server.blackboard];

    // Random garbage, many times, on both listeners: the first four bytes
    // are read as a length, so each is refused as a bad frame or a bad
    // message, never acted on.
    for i in 0..40 {
        let addr = listeners[i % 2];
        let mut junk = random_bytes(64 + 97 * i);
        // Half of them with a small length so the payload itself is parsed.
        if i % 4 == 0 {
            let n = (junk.len() - 4) as i32;
            junk[..4].copy_from_slice(&header(n));
        }
        match hostile(addr, &junk) {
            Ok((ErrorCode::Malformed, _)) | Ok((ErrorCode::Limit, _)) => {}
            // A payload whose first byte is one of version 1's types is
            // refused by that byte alone.
            Ok((ErrorCode::UnsupportedVersion, _)) => {}
            // A garbage "length" may announce a frame we never complete:
            // then the idle timeout closes it.
            Ok((code, reason)) => return Err(format!("garbage got {code:?}: {reason}").into()),
            Err(e) => return Err(format!("garbage #{i}: {e}").into()),
        }
    }
    assert!(alive(server), "server died on random garbage");

    // A negative length; the two lengths around 2 GiB (i32::MAX, and 2^31
    // itself, which is negative as an i32).
    for (bytes, want) in [
        (header(-1).to_vec(), "negative frame length -1"),
        (
            header(i32::MAX).to_vec(),
            "frame length 2147483647 exceeds the limit",
        ),
        (
            0x8000_0000u32.to_le_bytes().to_vec(),
            "negative frame length -2147483648",
        ),
    ] {
        for addr in listeners {
            let (code, reason) = hostile(addr, &bytes)?;
            assert_eq!(code, ErrorCode::Malformed, "{reason}");
            assert!(reason.contains(want), "{reason}");
        }
    }

    // A frame cut off mid-payload, then a close: nothing to answer; the
    // server just drops the connection.
    for addr in listeners {
        let mut s = connect(addr)?;
        let mut partial = header(500).to_vec();
        partial.extend(random_bytes(200));
        s.write_all(&partial)?;
        s.shutdown(Shutdown::Write)?;
        let got = read_to_close(&mut s, WAIT).ok_or("cut-off frame: not closed")?;
        assert!(messages(&got).is_empty(), "{:?}", messages(&got));
    }
    // A valid message split into 1-byte writes is served like any other.
    let key = client::make_key(KeyType::Rsa2048)?;
    let csr_der = client::make_csr("bytewise", &key)?;
    let mut wire = frame(&Message::CaHello {
        version: certboard::message::PROTOCOL_VERSION,
    });
    wire.extend(frame(&Message::CertRequest {
        csr_der,
        auth: certboard::message::EnrollAuth::Open,
    }));
    let mut s = connect(server.ca)?;
    for (i, b) in wire.iter().enumerate() {
        s.write_all(&[*b])?;
        if i % 64 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let got = read_to_close(&mut s, WAIT).ok_or("1-byte writes: not answered")?;
    assert!(
        matches!(
            messages(&got)[..],
            [Message::CaChallenge { .. }, Message::CertIssued { .. }]
        ),
        "{:?}",
        messages(&got)
    );

    // Frames out of order on both services.
    let report = Message::Report {
        cipher: CipherId::Rc4,
        iv: [0; 16],
        ciphertext: random_bytes(40),
        mac: [0; 32],
    };
    let (code, _) = hostile(server.blackboard, &frame(&report))?;
    assert_eq!(code, ErrorCode::UnexpectedMessage);
    let (code, _) = hostile(server.ca, &frame(&report))?;
    assert_eq!(code, ErrorCode::UnexpectedMessage);

    // 300 half-open connections: some silent, some with half a header,
    // some with half a frame and their sending side shut. While they are
    // all held, an honest student is served.
    let mut held = Vec::new();
    for i in 0..300 {
        let addr = listeners[i % 2];
        let mut s = TcpStream::connect_timeout(&addr, WAIT)?;
        match i % 3 {
            0 => {}
            1 => s.write_all(&[0x10, 0x00])?,
            _ => {
                s.write_all(&header(100))?;
                s.write_all(&random_bytes(30))?;
                s.shutdown(Shutdown::Write)?;
            }
        }
        held.push(s);
    }
    let out = server.client(&["while300"])?;
    assert!(
        out.status.success(),
        "honest client failed among 300 half-open connections:\n{}",
        text(&out)
    );
    // The held ones are all cut off in the end (idle timeout), none hangs.
    for mut s in held.drain(..) {
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        read_to_close(&mut s, WAIT).ok_or("a half-open connection was never closed")?;
    }
    assert!(alive(server), "server died");

    // After all of it: an honest student enrolls and submits, and her report
    // is recorded.
    let out = server.client(&["1155000001"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("Blackboard acknowledged"),
        "{}",
        text(&out)
    );
    let reports = server.admin(&["reports"])?;
    assert!(
        stdout(&reports).contains("sid=1155000001"),
        "{}",
        text(&reports)
    );
    assert!(alive(server), "server died");
    // Every refusal above was logged with the peer's address.
    let log = server.log();
    for needle in [
        "bad frame: negative frame length",
        "exceeds the limit",
        "malformed message",
        "unexpected Report",
    ] {
        assert!(log.contains(needle), "{needle:?} not in the log");
    }
    assert!(
        log.lines()
            .any(|l| l.contains("ca:127.0.0.1:") && l.contains("bad frame")),
        "refusals are logged with the peer address"
    );
    Ok(())
}
