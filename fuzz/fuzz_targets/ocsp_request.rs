//! The OCSP responder on arbitrary requests. Never panics, and every
//! answer is an OCSPResponse OpenSSL parses; a successful one verifies
//! against the CA and answers every CertID asked, in order.
//!
//! First byte even: the rest is a whole request (DER, or the GET form's
//! path when it is text). Odd: the rest is a serial number and a nonce
//! put into an otherwise valid request for this CA, so signing and the
//! success path are reached too.
#![cfg_attr(feature = "libfuzzer", no_main)]

use std::sync::OnceLock;

use certboard::ca::RevocationReason;
use certboard::ops::ocsp::{
    decode_get_path, parse_request, CertStatus, OcspError, Responder, ResponderConfig,
    ResponseStatus,
};
use certboard::testing::{p256_key, CertParams};
use certboard_fuzz::fuzz_target;
use openssl::ocsp::{OcspFlag, OcspResponse, OcspResponseStatus};
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::X509;

struct Ca {
    cert: X509,
    responder: Responder,
    store: X509Store,
    /// DER prefix of a CertID for this CA up to the serial number.
    cert_id_prefix: Vec<u8>,
}

fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| {
        let key = p256_key().unwrap();
        let cert = CertParams::authority("fuzz CA").self_signed(&key).unwrap();
        let responder = Responder::new(&cert, &key, ResponderConfig::default()).unwrap();
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(cert.clone()).unwrap();
        let name_hash = openssl::sha::sha1(&cert.subject_name().to_der().unwrap());
        let spki = cert.public_key().unwrap().public_key_to_der().unwrap();
        // P-256 SPKI: the 65 key bytes end it.
        let key_hash = openssl::sha::sha1(&spki[spki.len() - 65..]);
        let mut prefix = vec![
            0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00,
        ];
        prefix.extend([0x04, 20]);
        prefix.extend(name_hash);
        prefix.extend([0x04, 20]);
        prefix.extend(key_hash);
        Ca {
            cert,
            responder,
            store: store.build(),
            cert_id_prefix: prefix,
        }
    })
}

/// DER header for `len` content bytes (lengths here stay under 64 KiB).
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// A request for this CA with `serial` as the INTEGER's content and
/// `nonce` as the nonce extension's value.
fn request(serial: &[u8], nonce: &[u8]) -> Vec<u8> {
    let mut id = ca().cert_id_prefix.clone();
    id.extend(tlv(0x02, serial));
    let one = tlv(0x30, &tlv(0x30, &id));
    let mut tbs = tlv(0x30, &one);
    let mut ext = tlv(
        0x06,
        &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02],
    );
    ext.extend(tlv(0x04, nonce));
    tbs.extend(tlv(0xa2, &tlv(0x30, &tlv(0x30, &ext))));
    tlv(0x30, &tlv(0x30, &tbs))
}

/// Every reason a store may hold.
const REASONS: [RevocationReason; 10] = [
    RevocationReason::Unspecified,
    RevocationReason::KeyCompromise,
    RevocationReason::CaCompromise,
    RevocationReason::AffiliationChanged,
    RevocationReason::Superseded,
    RevocationReason::CessationOfOperation,
    RevocationReason::CertificateHold,
    RevocationReason::RemoveFromCrl,
    RevocationReason::PrivilegeWithdrawn,
    RevocationReason::AaCompromise,
];

fn lookup(serial: &[u8]) -> CertStatus {
    match serial.first().map(|b| b % 3) {
        Some(0) => CertStatus::Good,
        Some(1) => CertStatus::Revoked {
            at_unix: 1_700_000_000,
            // Index 10 and up: no reason recorded.
            reason: serial
                .get(1)
                .and_then(|r| REASONS.get(usize::from(r % 12)).copied()),
        },
        _ => CertStatus::Unknown,
    }
}

fn check(der: &[u8]) {
    let ca = ca();
    let parsed = parse_request(der);
    let answer = ca.responder.respond(der, 1_700_000_000, lookup);
    let resp = OcspResponse::from_der(&answer.der).expect("OpenSSL parses every answer");
    match answer.status {
        ResponseStatus::Successful => {
            let req = parsed
                .as_ref()
                .expect("a successful answer to a parsed request");
            assert_eq!(resp.status(), OcspResponseStatus::SUCCESSFUL);
            assert_eq!(answer.cert_statuses.len(), req.cert_ids.len());
            let basic = resp.basic().expect("a basic response");
            let mut certs = Stack::new().unwrap();
            certs.push(ca.cert.clone()).unwrap();
            basic
                .verify(&certs, &ca.store, OcspFlag::empty())
                .expect("a successful answer verifies");
        }
        ResponseStatus::MalformedRequest => {
            assert!(parsed.is_err());
            assert_eq!(resp.status(), OcspResponseStatus::MALFORMED_REQUEST);
        }
        ResponseStatus::Unauthorized => {
            assert!(parsed.is_ok());
            assert_eq!(resp.status(), OcspResponseStatus::UNAUTHORIZED);
        }
        ResponseStatus::InternalError => panic!("signing failed: {:?}", answer.error),
        // Only the HTTP layer answers tryLater (its store did not answer).
        ResponseStatus::TryLater => panic!("tryLater from the responder itself"),
    }
    if let Ok(req) = parsed {
        for id in &req.cert_ids {
            assert!(!id.serial.is_empty());
            assert!(der.windows(id.der.len()).any(|w| w == id.der));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        check(rest);
        if let Ok(text) = std::str::from_utf8(rest) {
            match decode_get_path(text) {
                Ok(der) => check(&der),
                Err(OcspError::BadGetEncoding) => {}
                Err(e) => panic!("unexpected GET error {e}"),
            }
        }
    } else {
        let split = usize::from(mode >> 1).min(rest.len());
        let (serial, nonce) = rest.split_at(split);
        check(&request(serial, nonce));
    }
});
