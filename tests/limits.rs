//! End-to-end: every connection limit of the real server binary, each with
//! a client that crosses it, and each time an honest client still served.
//! Timing is only ever bounded, never asserted: what is checked is who got
//! which answer, and in which order.

mod common;
mod wire;

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use certboard::client::{self, FramedStream, KeyType};
use certboard::message::{ErrorCode, Message};
use common::*;
use wire::*;

fn honest(server: &TestServer, sid: &str) -> TestResult {
    let out = server.client(&[sid])?;
    assert!(
        out.status.success(),
        "honest client failed:\n{}",
        text(&out)
    );
    assert!(
        stdout(&out).contains("Blackboard acknowledged"),
        "{}",
        text(&out)
    );
    Ok(())
}

fn csr(sid: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let key = client::make_key(KeyType::Rsa2048)?;
    Ok(client::make_csr(sid, &key)?)
}

#[test]
fn frame_over_max_frame_is_refused_before_it_is_read() -> TestResult {
    let server = TestServer::start(&["--max-frame", "4096"])?;
    // Only the header is sent: the refusal must not wait for the payload.
    let (code, reason) = send_and_refusal(server.ca, &header(5000))?;
    assert_eq!(code, ErrorCode::Malformed);
    assert!(
        reason.contains("frame length 5000 exceeds the limit of 4096 bytes"),
        "{reason}"
    );
    assert!(server.wait_log("frame length 5000 exceeds the limit", 5));
    // A frame at the limit is read (and refused for what it is, not its size).
    let mut at_limit = header(4096).to_vec();
    at_limit.extend(std::iter::repeat_n(0x14, 4096));
    let (code, reason) = send_and_refusal(server.ca, &at_limit)?;
    assert_eq!(code, ErrorCode::Malformed, "{reason}");
    assert!(!reason.contains("exceeds the limit"), "{reason}");
    honest(&server, "framelimit")
}

#[test]
fn total_bytes_per_connection_are_capped() -> TestResult {
    let server = TestServer::start(&["--max-conn-bytes", "3000"])?;
    // A frame well under --max-frame, but more than the connection may send.
    let mut s = connect(server.ca)?;
    let mut bytes = header(8000).to_vec();
    bytes.extend(std::iter::repeat_n(0xAA, 8000));
    // The server may close while we still write: ignore write errors.
    let _ = s.write_all(&bytes);
    let got = read_to_close(&mut s, WAIT).ok_or("not closed")?;
    let (code, reason) = refusal(&got)?;
    assert_eq!(code, ErrorCode::Limit);
    assert!(
        reason.contains("connection sent more than 3000 bytes"),
        "{reason}"
    );
    assert!(server.wait_log("connection sent more than 3000 bytes", 5));
    honest(&server, "bytelimit")
}

#[test]
fn unfinished_frames_across_connections_are_capped_by_the_memory_budget() -> TestResult {
    let server = TestServer::start(&["--max-buffered", "60000"])?;
    // Two connections each park 40,000 bytes of an unfinished 60,000-byte
    // frame: together over the budget, each alone under every other limit.
    let mut part = header(60_000).to_vec();
    part.extend(std::iter::repeat_n(0x10, 40_000));
    let mut first = connect(server.ca)?;
    first.write_all(&part)?;
    assert!(
        read_to_close(&mut first, Duration::from_millis(500)).is_none(),
        "the first is within the budget and stays open"
    );
    let mut second = connect(server.ca)?;
    let _ = second.write_all(&part);
    let got = read_to_close(&mut second, WAIT).ok_or("second not closed")?;
    let (code, reason) = refusal(&got)?;
    assert_eq!(code, ErrorCode::Limit);
    assert!(reason.contains("unfinished frames in flight"), "{reason}");
    // Closing the first returns its share: honest clients are served.
    drop(first);
    honest(&server, "budget")
}

#[test]
fn connections_past_the_listener_limit_get_an_error_frame_and_others_are_served() -> TestResult {
    let server = TestServer::start(&["--max-connections", "3"])?;
    // Fill the CA listener with three silent connections.
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| connect(server.ca))
        .collect::<Result<_, _>>()?;
    // The server counts a connection once it has accepted it; wait for that.
    assert!(eventually(WAIT, || {
        let Ok(mut extra) = connect(server.ca) else {
            return false;
        };
        match read_to_close(&mut extra, Duration::from_secs(2)).map(|b| refusal(&b)) {
            Some(Ok((code, reason))) => {
                code == ErrorCode::Limit && reason.contains("too many connections")
            }
            _ => false,
        }
    }));
    assert!(server.wait_log("listener is at its limit of 3 connections", 5));

    // The three held connections are still served.
    let csr_der = csr("held0")?;
    let mut first = held.remove(0);
    let mut wire = frame(&Message::CaHello {
        version: certboard::message::PROTOCOL_VERSION,
    });
    wire.extend(frame(&Message::CertRequest {
        csr_der,
        auth: certboard::message::EnrollAuth::Open,
    }));
    first.write_all(&wire)?;
    let got = read_to_close(&mut first, WAIT).ok_or("held connection not answered")?;
    assert!(
        matches!(
            messages(&got)[..],
            [Message::CaChallenge { .. }, Message::CertIssued { .. }]
        ),
        "{:?}",
        messages(&got)
    );
    // The limit is per listener: Blackboard is not affected by the CA's.
    let mut bb = connect(server.blackboard)?;
    bb.write_all(&frame(&Message::Report {
        cipher: certboard::message::CipherId::Aes256Ctr,
        iv: [0; 16],
        ciphertext: vec![1, 2, 3],
        mac: [0; 32],
    }))?;
    let (code, _) = refusal(&read_to_close(&mut bb, WAIT).ok_or("bb not answered")?)?;
    assert_eq!(code, ErrorCode::UnexpectedMessage);

    // Closing the rest frees their slots: an honest client goes through.
    drop(held);
    assert!(eventually(WAIT, || honest(&server, "afterlimit").is_ok()));
    Ok(())
}

#[test]
fn a_silent_connection_is_cut_off_at_the_idle_timeout() -> TestResult {
    let server = TestServer::start(&["--idle-timeout", "1", "--deadline", "60"])?;
    let mut s = connect(server.ca)?;
    let got = read_to_close(&mut s, WAIT).ok_or("silent connection never closed")?;
    let (code, reason) = refusal(&got)?;
    assert_eq!(code, ErrorCode::Limit);
    assert!(reason.contains("idle timeout of 1 s reached"), "{reason}");
    assert!(server.wait_log("idle timeout of 1 s reached", 5));
    honest(&server, "afteridle")
}

/// A slowloris: announces a frame, then sends one byte of it every 200 ms,
/// reading whatever the server says meanwhile. Returns what it received,
/// when the server closed, or `None` if it never did within `limit`.
fn slowloris(
    addr: std::net::SocketAddr,
    limit: Duration,
) -> mpsc::Receiver<Option<(Vec<u8>, Instant)>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let run = || -> Option<(Vec<u8>, Instant)> {
            let mut s = connect(addr).ok()?;
            s.write_all(&header(1000)).ok()?;
            let until = Instant::now() + limit;
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while Instant::now() < until {
                // A write after the server closed fails; keep reading anyway.
                let _ = s.write_all(b"x");
                // The 200 ms read timeout paces the trickle.
                match std::io::Read::read(&mut s, &mut buf) {
                    Ok(0) => return Some((got, Instant::now())),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return Some((got, Instant::now())),
                }
            }
            None
        };
        let _ = tx.send(run());
    });
    rx
}

#[test]
fn a_trickling_slowloris_is_cut_off_at_the_deadline_while_others_are_served() -> TestResult {
    // Idle timeout long, deadline short: the trickle keeps bytes coming but
    // never finishes its exchange in time.
    let server = TestServer::start(&["--idle-timeout", "60", "--deadline", "5"])?;
    let lorises: Vec<_> = (0..5)
        .map(|_| slowloris(server.ca, Duration::from_secs(30)))
        .collect();
    // Meanwhile an honest student enrolls and submits, on the same loop.
    honest(&server, "meanwhile")?;
    let honest_done = Instant::now();
    for rx in lorises {
        let (got, closed_at) = rx
            .recv_timeout(Duration::from_secs(40))?
            .ok_or("the slowloris was never cut off")?;
        assert!(
            closed_at > honest_done,
            "the honest client finished while the trickling clients were still connected"
        );
        let (code, reason) = refusal(&got)?;
        assert_eq!(code, ErrorCode::Limit);
        assert!(
            reason.contains("exchange deadline of 5 s reached"),
            "{reason}"
        );
    }
    assert!(server.wait_log("exchange deadline of 5 s reached", 5));
    Ok(())
}

#[test]
fn a_trickle_that_never_completes_a_frame_is_cut_off_at_the_idle_timeout() -> TestResult {
    // Bytes keep arriving, but the idle timer runs between whole frames.
    let server = TestServer::start(&["--idle-timeout", "1", "--deadline", "60"])?;
    let (got, _) = slowloris(server.blackboard, Duration::from_secs(20))
        .recv_timeout(Duration::from_secs(30))?
        .ok_or("the trickle was never cut off")?;
    let (code, reason) = refusal(&got)?;
    assert_eq!(code, ErrorCode::Limit);
    assert!(reason.contains("idle timeout of 1 s reached"), "{reason}");
    Ok(())
}

#[test]
fn messages_past_the_cap_are_refused() -> TestResult {
    // One message per connection: an enrollment (CaHello, then the
    // request) is stopped at its second frame, and nothing is issued.
    let server = TestServer::start(&["--max-messages", "1"])?;
    let out = server.client(&["capped"])?;
    assert!(!out.status.success(), "{}", text(&out));
    let s = stdout(&out);
    assert!(!s.contains("SIDcapped sign finished"), "{s}");
    assert!(s.contains("more than 1 messages on one connection"), "{s}");
    let certs = server.admin(&["certs"])?;
    assert_eq!(stdout(&certs), "", "nothing issued: {}", text(&certs));
    assert!(server.wait_log("more than 1 messages on one connection", 5));
    let reports = server.admin(&["reports"])?;
    assert_eq!(stdout(&reports), "", "nothing recorded: {}", text(&reports));
    Ok(())
}

#[test]
fn frames_out_of_order_are_refused_with_a_reason() -> TestResult {
    let server = TestServer::start(&[])?;
    let report = Message::Report {
        cipher: certboard::message::CipherId::Aes256Ctr,
        iv: [0; 16],
        ciphertext: b"never decrypted".to_vec(),
        mac: [0; 32],
    };
    let cases = [
        // A report before any hello.
        (
            server.blackboard,
            report.clone(),
            "unexpected Report message",
            "unexpected Report while waiting for a submission hello",
        ),
        // A hello to the CA.
        (
            server.ca,
            Message::SubmitOpen {
                sid: "alice".into(),
                cert_der: vec![0x30, 0],
                chain: vec![],
                client_nonce: [0; 32],
            },
            "unexpected SubmitOpen message: this connection is waiting for an enrollment request",
            "unexpected SubmitOpen while waiting for an enrollment request",
        ),
        // A server's message sent by a client.
        (
            server.ca,
            Message::CertIssued {
                cert_der: vec![],
                ca_cert_der: vec![],
                next_nonce: [0; 32],
            },
            "unexpected CertIssued message",
            "unexpected CertIssued while",
        ),
        // An admission answer nobody asked for.
        (
            server.blackboard,
            Message::AdmissionResponse { mac: [7; 32] },
            "unexpected AdmissionResponse message: this connection is waiting for a submission hello",
            "unexpected AdmissionResponse while waiting for a submission hello",
        ),
    ];
    for (addr, msg, want, logged) in cases {
        let (code, reason) = send_and_refusal(addr, &frame(&msg))?;
        assert_eq!(code, ErrorCode::UnexpectedMessage, "{reason}");
        assert!(reason.contains(want), "{reason}");
        assert!(server.wait_log(logged, 5), "{logged:?} not logged");
    }
    // A CA connection may carry several enrollments in turn, but nothing
    // else: a submission hello after an enrollment is refused, not acted on.
    let mut conn = FramedStream::connect(&server.ca.to_string(), WAIT)?;
    let mut session = client::CaSession::open(&mut conn)?;
    for sid in ["twice-1", "twice-2"] {
        session.request(&mut conn, csr(sid)?, certboard::message::EnrollAuth::Open)?;
    }
    conn.send(&Message::SubmitOpen {
        sid: "twice-1".into(),
        cert_der: vec![0x30, 0x00],
        chain: vec![],
        client_nonce: [0; 32],
    })?;
    match conn.recv() {
        Err(client::ClientError::Refused { code, reason }) => {
            assert_eq!(code, ErrorCode::UnexpectedMessage, "{reason}");
            assert!(
                reason.contains("waiting for an enrollment request"),
                "{reason}"
            );
        }
        other => return Err(format!("hello on a CA connection: {other:?}").into()),
    }
    let certs = server.admin(&["certs"])?;
    assert_eq!(stdout(&certs).lines().count(), 2, "{}", text(&certs));
    honest(&server, "inorder")
}

/// A version 1 client, on either service, gets code 10 with a reason it
/// can act on, and the connection closes: the first frame or after a
/// version 2 exchange began. Nothing is recorded.
#[test]
fn a_version_1_client_gets_code_10_and_the_close() -> TestResult {
    let server = TestServer::start(&[])?;
    let (code, reason) = send_and_refusal(server.ca, &v1_enroll_request(&csr("old-1")?))?;
    assert_eq!(
        (code, reason.as_str()),
        (ErrorCode::UnsupportedVersion, V1_REFUSED)
    );
    assert!(server.wait_log("protocol version 1 EnrollRequest refused", 5));
    let key = client::make_key(client::KeyType::Rsa2048)?;
    let cert = enroll_key(server.ca, "old-2", &key)?;
    let (code, reason) = send_and_refusal(server.blackboard, &v1_submit_hello("old-2", &cert))?;
    assert_eq!(
        (code, reason.as_str()),
        (ErrorCode::UnsupportedVersion, V1_REFUSED)
    );
    assert!(server.wait_log("protocol version 1 SubmitHello refused", 5));
    // After a CaHello was answered.
    let mut wire = frame(&Message::CaHello {
        version: certboard::message::PROTOCOL_VERSION,
    });
    wire.extend(v1_enroll_request(&csr("old-3")?));
    let mut s = connect(server.ca)?;
    s.write_all(&wire)?;
    let got = read_to_close(&mut s, WAIT).ok_or("not closed")?;
    assert!(
        matches!(messages(&got).first(), Some(Message::CaChallenge { .. })),
        "{:?}",
        messages(&got)
    );
    assert_eq!(refusal(&got)?.0, ErrorCode::UnsupportedVersion);
    // Only the version 2 enrollment is recorded; no report.
    let certs = server.admin(&["certs"])?;
    assert_eq!(stdout(&certs).lines().count(), 1, "{}", text(&certs));
    let reports = server.admin(&["reports"])?;
    assert_eq!(stdout(&reports), "", "{}", text(&reports));
    Ok(())
}

#[test]
fn a_client_that_half_closes_gets_its_answer_and_the_close_at_once() -> TestResult {
    // The server skips the read that would only say "no more data" after a
    // short read; a FIN that came with the request must still be seen, or
    // the connection would linger until the idle timeout (60 s here).
    let server = TestServer::start(&["--idle-timeout", "60", "--deadline", "120"])?;
    let mut stream = TcpStream::connect(server.ca)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut request = certboard::framing::frame(
        &Message::CaHello {
            version: certboard::message::PROTOCOL_VERSION,
        }
        .encode(),
    );
    request.extend(certboard::framing::frame(
        &Message::CertRequest {
            csr_der: csr("halfclose")?,
            auth: certboard::message::EnrollAuth::Open,
        }
        .encode(),
    ));
    // Corked, the request and the FIN leave in one segment, so the server
    // sees both in one event, after which no new edge comes.
    let socket = socket2::SockRef::from(&stream);
    socket.set_cork(true)?;
    stream.write_all(&request)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let started = Instant::now();
    let mut answer = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut answer)
        .map_err(|e| format!("no close from the server within 20 s: {e}"))?;
    assert!(started.elapsed() < Duration::from_secs(20));
    let mut decoder = certboard::framing::Decoder::new(1 << 20);
    let frame = decoder.decode(&mut answer)?.ok_or("no whole frame")?;
    assert!(
        matches!(Message::decode(&frame)?, Message::CaChallenge { .. }),
        "expected a challenge"
    );
    let frame = decoder.decode(&mut answer)?.ok_or("no second frame")?;
    assert!(
        matches!(Message::decode(&frame)?, Message::CertIssued { .. }),
        "expected a certificate"
    );
    assert!(answer.is_empty(), "nothing after the answer");
    assert!(server.wait_log("closed (peer closed the connection)", 5));
    Ok(())
}
