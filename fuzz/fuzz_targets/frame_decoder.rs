//! The frame decoder on arbitrary bytes arriving in arbitrary pieces:
//! it never panics, never yields a frame over the limit, and the frames it
//! yields, framed again, are exactly the bytes it consumed.
#![cfg_attr(feature = "libfuzzer", no_main)]

use certboard::framing::{self, Decoder, FrameError};
use certboard_fuzz::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: the limit (small, so long frames are exercised too);
    // second: the size of each read.
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let Some((&chunk, stream)) = rest.split_first() else {
        return;
    };
    let max = usize::from(limit) * 4;
    let chunk = usize::from(chunk).max(1);
    let mut d = Decoder::new(max);
    let mut buf = Vec::new();
    let mut reframed = Vec::new();
    let mut consumed = 0usize;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(f)) => {
                    assert!(f.len() <= max, "frame over the limit");
                    consumed += framing::HEADER_LEN + f.len();
                    framing::encode(&f, &mut reframed);
                }
                Ok(None) => break,
                Err(FrameError::NegativeLength(n)) => {
                    assert!(n < 0);
                    return check(stream, &reframed, consumed);
                }
                Err(FrameError::TooLong { len, max: m }) => {
                    assert!(len > m);
                    return check(stream, &reframed, consumed);
                }
                Err(_) => return check(stream, &reframed, consumed),
            }
        }
    }
    check(stream, &reframed, consumed);
});

fn check(stream: &[u8], reframed: &[u8], consumed: usize) {
    assert_eq!(reframed.len(), consumed);
    assert_eq!(
        &stream[..consumed],
        reframed,
        "frames differ from the bytes consumed"
    );
}
