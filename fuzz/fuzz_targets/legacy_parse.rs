//! Legacy mode's parsers of what the original client sends: the
//! `<message>_<mac>` report frame and the PEM certificate text. Never
//! panics; a split is exact (message, `_`, MAC give back the text) and the
//! MAC is 40 lower-case hex digits; certificate text over the limit is
//! refused.
#![cfg_attr(feature = "libfuzzer", no_main)]

use certboard::protocol::legacy::{parse_cert_text, split_msg_mac, MAC_HEX_LEN, MAX_CERT_TEXT};
use certboard_fuzz::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok((msg, mac)) = split_msg_mac(text) {
            assert_eq!(format!("{msg}_{mac}"), text, "split is not exact");
            assert_eq!(mac.len(), MAC_HEX_LEN);
            assert!(mac
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            assert!(!mac.contains('_'));
        }
    }
    let parsed = parse_cert_text(data);
    if data.len() > MAX_CERT_TEXT {
        assert!(parsed.is_err());
    }
});
