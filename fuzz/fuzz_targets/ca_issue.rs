//! The CA's issuance path on arbitrary bytes posing as a CSR: never panics;
//! anything it does issue is a certificate for a valid SID that chains to
//! the root and is not a CA.
#![cfg_attr(feature = "libfuzzer", no_main)]

use std::sync::OnceLock;

use certboard::ca::CertificateAuthority;
use certboard::verify::{CertError, Verifier};
use certboard_fuzz::fuzz_target;

mod common;

fn ca() -> &'static (CertificateAuthority, Verifier) {
    static CA: OnceLock<(CertificateAuthority, Verifier)> = OnceLock::new();
    CA.get_or_init(|| {
        let ca = common::throwaway_ca("ca");
        let verifier = Verifier::new(ca.cert()).expect("verifier");
        (ca, verifier)
    })
}

fuzz_target!(|data: &[u8]| {
    let (ca, verifier) = ca();
    if let Ok(issued) = ca.issue(data) {
        assert!(certboard::sid::validate(&issued.sid).is_ok());
        match verifier.verify(&issued.sid, &issued.der, &[]) {
            // An EC key is certified by the CA but not usable at Blackboard.
            Ok(_) | Err(CertError::NotRsa) => {}
            Err(e) => panic!("issued a certificate Blackboard refuses: {e}"),
        }
    }
});
