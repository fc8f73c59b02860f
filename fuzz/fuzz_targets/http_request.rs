//! The HTTP request decoder on arbitrary bytes arriving in arbitrary
//! pieces, with small limits: it never panics, never yields a body over
//! the limit, never consumes more than it was given, and yields the same
//! requests and the same final error whether the bytes come in pieces or
//! all at once. Every error's response is a well-formed HTTP/1.1 head.
#![cfg_attr(feature = "libfuzzer", no_main)]

use certboard::ops::http::{HttpError, HttpLimits, Method, Request, RequestDecoder};
use certboard_fuzz::fuzz_target;

/// Decodes `stream` read `chunk` bytes at a time: the requests, then the
/// error that stopped it (if any).
fn run(
    limits: HttpLimits,
    stream: &[u8],
    chunk: usize,
) -> (Vec<Request>, Option<HttpError>, usize) {
    let mut d = RequestDecoder::new(limits);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut fed = 0usize;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            let before = buf.len();
            match d.decode(&mut buf) {
                Ok(Some(r)) => {
                    assert!(r.body.len() <= limits.max_body, "body over the limit");
                    assert!(buf.len() < before, "a request consumed nothing");
                    assert!(r.target.starts_with('/'), "target not a path");
                    out.push(r);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Err(e) => {
                    check_error_response(&e);
                    return (out, Some(e), fed - buf.len());
                }
            }
        }
    }
    (out, None, fed - buf.len())
}

fn check_error_response(e: &HttpError) {
    let mut wire = Vec::new();
    e.response().encode(Method::Get, &mut wire);
    let head_end = wire
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head ending in an empty line");
    let head = std::str::from_utf8(&wire[..head_end]).expect("ASCII head");
    assert!(head.starts_with(&format!("HTTP/1.1 {} ", e.status())));
    assert!(head.contains("\r\nConnection: close"));
    assert!((400..600).contains(&e.status()));
}

fuzz_target!(|data: &[u8]| {
    // First byte: the size of each read; second: the limits' scale.
    let [chunk, scale, stream @ ..] = data else {
        return;
    };
    let scale = usize::from(*scale % 8) + 1;
    let limits = HttpLimits {
        max_head: 32 * scale,
        max_headers: scale,
        max_body: 8 * scale,
    };
    let chunk = usize::from(*chunk).max(1);
    let (pieces, err_pieces, used_pieces) = run(limits, stream, chunk);
    let (whole, err_whole, used_whole) = run(limits, stream, stream.len().max(1));
    assert_eq!(pieces, whole, "requests depend on how the bytes arrived");
    assert_eq!(
        err_pieces, err_whole,
        "the error depends on how the bytes arrived"
    );
    assert_eq!(used_pieces, used_whole);
    assert!(used_whole <= stream.len());
});
