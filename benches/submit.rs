//! Blackboard's per-submission work without the network: the SubmitOpen
//! frame handed to the state machine exactly as the reactor hands it
//! (message decode, `check_certificate`: path validation to the pinned root,
//! the profile checks and the store's status lookup; then the session key:
//! random key and nonce, RSA-OAEP to the student's key, the transcript and
//! Blackboard's signature over it, the two HKDFs, the SessionOffer frame),
//! per CA key type. Every certificate is distinct (its
//! own serial, and its own RSA-2048 key up to `--keys`), issued up front and
//! recorded in a SQLite store as the CA would record it.
//!
//! ```text
//! cargo bench --bench submit                      # 2 s per CA key type and part
//! cargo bench --bench submit -- 5 p256            # 5 s, only the P-256 CA
//! cargo bench --bench submit -- --count 64 --keys 4 hello   # a fixed count, for callgrind
//! valgrind --tool=callgrind target/release/deps/submit-* --count 64 --keys 4 hello
//! ```
//!
//! Parts: `verify` (`Verifier::verify` alone), `check` (`check_certificate`:
//! SID, verify, store status), `hello` (the whole protocol version 2 frame,
//! SubmitOpen: `Session::on_frame` from a new Blackboard session, including
//! the transcript and Blackboard's ECDSA P-256 signature over it),
//! `receipt` (what Blackboard signs once a report is durable: the receipt's
//! JSON and its CMS SignedData). Prints
//! one line per CA key type and part for people, then a JSON line each
//! (`{"bench":"submit","ca":"p256","part":"hello","us_per_op":…}`) for
//! scripts. With `--count N` each part runs exactly N operations (cycling
//! through the certificates), which makes callgrind's instruction counts per
//! operation exact; otherwise each part runs for the given seconds.

use std::time::{Duration, Instant};

use certboard::ca::CaKeyType;
use certboard::client::{make_key, KeyType};
use certboard::message::Message;
use certboard::protocol::{cert_record, check_certificate, ServiceKind, Session, Shared};
use certboard::receipt::{ReceiptContent, RECEIPT_VERSION};
use certboard::store::{Origin, SqliteStore, Storage};
use certboard::testing::{CaParams, TestPki};
use openssl::pkey::PKey;

type BoxError = Box<dyn std::error::Error>;

const PARTS: [&str; 4] = ["verify", "check", "hello", "receipt"];

struct Args {
    seconds: f64,
    count: Option<usize>,
    keys: usize,
    certs: usize,
    cas: Vec<String>,
    parts: Vec<String>,
}

fn parse_args() -> Result<Args, BoxError> {
    // `cargo bench` passes `--bench`; under `cargo test --all-targets`
    // (no `--bench`) this is a short smoke run.
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let bench = raw.iter().any(|a| a == "--bench");
    let mut args = Args {
        seconds: if bench { 2.0 } else { 0.05 },
        count: None,
        keys: if bench { 32 } else { 2 },
        certs: if bench { 256 } else { 4 },
        cas: Vec::new(),
        parts: Vec::new(),
    };
    let mut it = raw.into_iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<usize, BoxError> {
            Ok(it
                .next()
                .ok_or_else(|| format!("{name} needs a value"))?
                .parse()?)
        };
        match a.as_str() {
            "--bench" => {}
            "--count" => args.count = Some(value("--count")?),
            "--keys" => args.keys = value("--keys")?.max(1),
            "--certs" => args.certs = value("--certs")?.max(1),
            "rsa2048" | "p256" => args.cas.push(a),
            p if PARTS.contains(&p) => args.parts.push(a),
            other => match other.parse() {
                Ok(s) => args.seconds = s,
                Err(_) => return Err(format!("unknown argument {other:?}").into()),
            },
        }
    }
    args.certs = args.certs.max(args.keys);
    Ok(args)
}

/// What a part does with one SubmitOpen.
fn run_part(part: &str, shared: &mut Shared, hello: &Hello) -> Result<(), BoxError> {
    match part {
        "verify" => {
            let v = shared.verifier.as_ref().ok_or("no verifier")?;
            v.verify(&hello.sid, &hello.cert_der, &[])?;
        }
        "check" => {
            check_certificate(shared, &hello.sid, &hello.cert_der, &[], Origin::Certboard)
                .map_err(|e| format!("{e:?}"))?;
        }
        "receipt" => {
            let bb = shared.blackboard.as_ref().ok_or("no Blackboard identity")?;
            let content = ReceiptContent {
                sid: hello.sid.clone(),
                serial: "5A1B2C3D4E5F60718293A4B5C6D7E8F9".into(),
                receipt: "1234567890123456789".into(),
                received_at: "2026-12-06T23:00:00Z".into(),
                report_sha256: "ab".repeat(32),
                transcript_sha256: "cd".repeat(32),
                version: RECEIPT_VERSION,
                assignment: Some("lab".into()),
                late: Some(false),
                late_seconds: None,
                log_index: None,
                log_proof: None,
                file: None,
            };
            bb.current(None).sign_receipt(&content.to_json())?;
        }
        _ => {
            // Without admission control a Blackboard session starts
            // waiting for the hello, and says nothing.
            let (session, _) = Session::start(ServiceKind::Blackboard, shared);
            let (_, out) = session.on_frame(&hello.frame, shared, "bench");
            let key_sent = match out.send.as_slice() {
                [frame] => matches!(Message::decode(frame), Ok(Message::SessionOffer { .. })),
                _ => false,
            };
            if !key_sent || out.close {
                return Err(format!("submission not accepted: {out:?}").into());
            }
        }
    }
    Ok(())
}

struct Hello {
    sid: String,
    cert_der: Vec<u8>,
    /// SubmitOpen.
    frame: Vec<u8>,
}

fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let keys: Vec<PKey<openssl::pkey::Public>> = (0..args.keys)
        .map(|_| {
            let k = make_key(KeyType::Rsa2048)?;
            Ok(PKey::public_key_from_der(&k.public_key_to_der()?)?)
        })
        .collect::<Result<_, BoxError>>()?;
    for (kind, name) in [(CaKeyType::Rsa2048, "rsa2048"), (CaKeyType::P256, "p256")] {
        if !args.cas.is_empty() && !args.cas.iter().any(|c| c == name) {
            continue;
        }
        let dir = tempfile::tempdir()?;
        // Blackboard's keys are issued by the CA, which this Blackboard
        // then does without: only the verifier and the keys serve.
        let pki = TestPki::create(
            &dir.path().join("keys"),
            &CaParams {
                kind,
                ..CaParams::default()
            },
        )?;
        let ca = &pki.ca;
        let mut store = SqliteStore::open(&dir.path().join("data"))?;
        let mut hellos = Vec::with_capacity(args.certs);
        let mut records = Vec::with_capacity(args.certs);
        for i in 0..args.certs {
            let sid = format!("{}", 1_155_000_000 + i);
            let issued = ca.issue_for(&sid, &keys[i % keys.len()])?;
            let frame = Message::SubmitOpen {
                sid: sid.clone(),
                cert_der: issued.der.clone(),
                chain: Vec::new(),
                client_nonce: [7; 32],
            }
            .encode();
            hellos.push(Hello {
                sid,
                cert_der: issued.der.clone(),
                frame,
            });
            records.push(cert_record(
                issued,
                Origin::Certboard,
                certboard::store::Authorisation::Open,
            ));
        }
        store.commit(&records)?;
        let mut shared = pki.shared().ca(None).store(store).build()?;
        for part in PARTS {
            if !args.parts.is_empty() && !args.parts.iter().any(|p| p == part) {
                continue;
            }
            let start = Instant::now();
            let mut n = 0usize;
            match args.count {
                Some(count) => {
                    for hello in hellos.iter().cycle().take(count) {
                        run_part(part, &mut shared, hello)?;
                    }
                    n = count;
                }
                None => {
                    let end = start + Duration::from_secs_f64(args.seconds);
                    while n == 0 || Instant::now() < end {
                        for hello in &hellos {
                            run_part(part, &mut shared, hello)?;
                        }
                        n += hellos.len();
                    }
                }
            }
            let us = start.elapsed().as_secs_f64() / n.max(1) as f64 * 1e6;
            println!(
                "submit {part} with a {name} CA: {us:.1} µs per submission ({n} in {:.2} s, {} distinct certificates, {} keys)",
                start.elapsed().as_secs_f64(),
                hellos.len(),
                keys.len()
            );
            println!(
                "{{\"bench\":\"submit\",\"ca\":\"{name}\",\"part\":\"{part}\",\"us_per_op\":{us:.2}}}"
            );
        }
    }
    Ok(())
}
