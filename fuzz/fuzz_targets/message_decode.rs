//! `Message::decode` on arbitrary payloads: never panics, and whatever it
//! accepts encodes back to the very same bytes (decoding is strict and the
//! encoding canonical) — except an Error's unknown code, which decodes as
//! `Internal` by design.
#![cfg_attr(feature = "libfuzzer", no_main)]

use certboard::message::{ErrorCode, Message};
use certboard_fuzz::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::decode(data) else {
        return;
    };
    let again = msg.encode();
    assert_eq!(
        Message::decode(&again).as_ref(),
        Ok(&msg),
        "re-decode differs"
    );
    match &msg {
        Message::Error {
            code: ErrorCode::Internal,
            ..
        } => {}
        _ => assert_eq!(again, data, "encoding is not canonical"),
    }
});
