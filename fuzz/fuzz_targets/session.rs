//! The per-connection state machines (CA and Blackboard, with or without
//! admission control and legacy mode) fed a sequence of arbitrary frames,
//! as the reactor would (until it says "close"), with or without a roster
//! (enrollment codes, renewal) and a closed submission window: never panics, and every
//! frame it sends is a well-formed message. A frame `[0xFD]` stands for a
//! valid SubmitOpen with a certificate from this process's CA, so the
//! fuzzer gets past the certificate check to the report (which it cannot
//! MAC), and `[0xFE]` for a protocol version 1 SubmitHello with that
//! certificate (no longer served: refused with code 10). The store is the real SQLite engine in
//! memory, fresh for every input (so a run depends on its input alone),
//! holding that one certificate as Good; records the sessions ask to
//! persist are committed to it, as the reactor does.
#![cfg_attr(feature = "libfuzzer", no_main)]

use std::sync::OnceLock;

use certboard::course::Window;
use certboard::message::Message;
use certboard::protocol::{cert_record, After, ServiceKind, Session};
use certboard::store::{Origin, Record, SqliteStore, Storage, Student};
use certboard::testing::TestPki;
use certboard_fuzz::fuzz_target;

mod common;

struct Fixture {
    pki: TestPki,
    hello: Vec<u8>,
    /// The honest certificate's record, committed into every run's store.
    record: Record,
    open: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let pki = common::throwaway_pki("ss");
        let issued = common::honest_certificate(&pki.ca);
        // Version 1's SubmitHello (type 0x20, text sid, bytes cert, empty
        // chain), by hand: the library no longer encodes it.
        let mut hello = vec![0x20, 4, 0];
        hello.extend_from_slice(b"fuzz");
        hello.extend_from_slice(&(issued.der.len() as u32).to_le_bytes());
        hello.extend_from_slice(&issued.der);
        hello.push(0);
        let open = Message::SubmitOpen {
            sid: "fuzz".into(),
            cert_der: issued.der.clone(),
            chain: vec![],
            client_nonce: [0; 32],
        }
        .encode();
        Fixture {
            pki,
            open,
            hello,
            record: cert_record(
                issued,
                Origin::Certboard,
                certboard::store::Authorisation::Open,
            ),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let kind = if flags & 1 == 0 {
        ServiceKind::Ca
    } else {
        ServiceKind::Blackboard
    };
    let mut store = SqliteStore::in_memory().expect("in-memory store");
    store
        .commit(std::slice::from_ref(&f.record))
        .expect("seed the honest certificate");
    if flags & 8 != 0 {
        // A roster: SID "fuzz" is on it with an unused code.
        let fuzz = Student {
            sid: "fuzz".into(),
            name: "Fuzz".into(),
            email: None,
        };
        store.import_roster(&[fuzz]).expect("seed a roster");
        store
            .store_codes(&[("fuzz".into(), [7; 32])], 0, false)
            .expect("seed a code");
    }
    let mut shared = f
        .pki
        .shared()
        .store(store)
        .admission((flags & 2 != 0).then_some(&b"fuzzing admission secret"[..]))
        .legacy(flags & 4 != 0)
        // Closed since the epoch's first second: the refusal path too.
        .window(Window {
            open: None,
            close: (flags & 16 != 0).then_some(1),
        })
        .build()
        .expect("the shared state");
    let (mut session, out) = Session::start(kind, &shared);
    if out.close {
        return;
    }
    // A connection that turned legacy speaks text frames, not our messages.
    let mut legacy_conn = false;
    // Frames: a 2-byte length, then the payload; at most 16 of them.
    for _ in 0..16 {
        if rest.len() < 2 {
            break;
        }
        let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let mut payload = &rest[2..2 + n];
        rest = &rest[2 + n..];
        if payload == [0xFE] {
            payload = &f.hello;
        }
        if payload == [0xFD] {
            payload = &f.open;
        }
        legacy_conn |= shared.legacy && certboard::protocol::legacy::is_command(payload);
        let (mut next, mut out) = session.on_frame(payload, &mut shared, "fuzz");
        // Work off the loop (a legacy key) is done in turn, as a worker would.
        if let After::Offload(job) = out.then {
            (next, out) = next.on_offloaded(job.run(), "fuzz");
        }
        // The reactor commits a record before the frames that promise it
        // leave, and closes the connection if the commit fails.
        if let After::Persist(record) = &out.then {
            if shared.store.commit(std::slice::from_ref(record)).is_err() {
                break;
            }
        }
        if matches!(out.then, After::Persist(_)) {
            // As the reactor does once the record is durable.
            let (after, more) = next.on_committed(&mut shared, "fuzz");
            next = after;
            out.send.extend(more.send);
            out.close |= more.close;
        }
        if !legacy_conn {
            // What the server says must itself be a well-formed message.
            for frame in &out.send {
                assert!(
                    Message::decode(frame).is_ok(),
                    "server sent a malformed message"
                );
            }
        }
        if out.close {
            break;
        }
        session = next;
    }
});
