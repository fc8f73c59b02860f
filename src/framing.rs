//! The wire framing shared by every certboard connection, ours and legacy:
//! a 4-byte little-endian *signed* length, then exactly that many payload
//! bytes (the original lab's `struct.pack('i', n)`).
//!
//! The decoder is incremental and pure: bytes in, whole frames out. It never
//! trusts the length prefix: a negative length or one over the limit is an
//! error before a single payload byte is buffered.

use std::fmt;

use byteorder::{ByteOrder, LittleEndian};

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Default cap on one frame's payload: 65,590 bytes, the largest frame an
/// honest peer sends in either protocol (a `Report` carrying a 64 KiB
/// report; `protocol::MAX_FRAME_NEEDED` derives it from the message
/// layouts, and a test there keeps the two equal).
pub const DEFAULT_MAX_FRAME: usize = 65_590;

/// Why a byte stream is not a valid sequence of frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix is negative.
    NegativeLength(i32),
    /// The length prefix exceeds the configured maximum.
    TooLong {
        /// The length the peer announced.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::NegativeLength(n) => write!(f, "negative frame length {n}"),
            FrameError::TooLong { len, max } => {
                write!(f, "frame length {len} exceeds the limit of {max} bytes")
            }
        }
    }
}

impl std::error::Error for FrameError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecodeState {
    Head,
    /// This frame's length is known; its header is still in the buffer.
    Data(usize),
}

/// Incremental frame decoder: feed it the connection's input buffer, take
/// whole frames out. Bytes are consumed only once a whole frame is there.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: DecodeState,
    max_frame: usize,
}

impl Decoder {
    /// A decoder refusing frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Decoder {
            state: DecodeState::Head,
            max_frame,
        }
    }

    /// Takes the next whole frame off the front of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed. After an error the stream is
    /// out of sync for good and the connection must be closed.
    ///
    /// A frame costs copies of its own length only, however much is
    /// buffered behind it: the header stays in `buf` until the frame is
    /// whole, then header and frame leave in one move. (Draining the header
    /// first and splitting the rest off moved and reallocated everything
    /// buffered, per frame: with an upload's chunks queued behind one
    /// another that was most of the server's CPU, issue 20.)
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, FrameError> {
        let len = match self.state {
            DecodeState::Head => {
                let Some(head) = buf.get(..HEADER_LEN) else {
                    return Ok(None);
                };
                let raw = LittleEndian::read_i32(head);
                let len = usize::try_from(raw).map_err(|_| FrameError::NegativeLength(raw))?;
                if len > self.max_frame {
                    return Err(FrameError::TooLong {
                        len,
                        max: self.max_frame,
                    });
                }
                self.state = DecodeState::Data(len);
                len
            }
            DecodeState::Data(len) => len,
        };
        let end = HEADER_LEN + len;
        let frame = if buf.len() == end {
            // The usual case: the frame is all there is; no copy of it.
            let mut whole = std::mem::take(buf);
            whole.drain(..HEADER_LEN);
            whole
        } else if let Some(payload) = buf.get(HEADER_LEN..end) {
            let frame = payload.to_vec();
            buf.drain(..end);
            frame
        } else {
            return Ok(None);
        };
        self.state = DecodeState::Head;
        Ok(Some(frame))
    }
}

/// Appends one frame holding `payload` to `out`.
///
/// Panics only if `payload` is over 2 GiB, which no certboard message can be
/// (every sender bounds its payloads far below that).
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    let len = i32::try_from(payload.len()).expect("frame payload over 2 GiB"); // ok: our own payloads are bounded
    let mut head = [0u8; HEADER_LEN];
    LittleEndian::write_i32(&mut head, len);
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
}

/// One frame as a fresh buffer.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    encode(payload, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(n: i32) -> Vec<u8> {
        n.to_le_bytes().to_vec()
    }

    #[test]
    fn read_empty_frame() {
        let mut d = Decoder::new(16);
        let mut buf = header(0);
        assert_eq!(d.decode(&mut buf), Ok(Some(vec![])));
        assert!(buf.is_empty());
    }

    #[test]
    fn read_incomplete_head() {
        let mut d = Decoder::new(16);
        let mut buf = vec![3, 0];
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(buf, vec![3, 0], "nothing consumed before a whole header");
    }

    #[test]
    fn read_single_frame_multi_packet() {
        let mut d = Decoder::new(16);
        let wire = frame(b"hello");
        let mut buf = Vec::new();
        let mut got = None;
        for b in wire {
            buf.push(b);
            if let Some(f) = d.decode(&mut buf).unwrap() {
                got = Some(f);
            }
        }
        assert_eq!(got.as_deref(), Some(&b"hello"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn read_several_frames_in_one_read() {
        let mut d = Decoder::new(16);
        let mut buf = frame(b"one");
        buf.extend(frame(b""));
        buf.extend(frame(b"three"));
        buf.extend(&header(2)); // start of a fourth
        assert_eq!(d.decode(&mut buf).unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(d.decode(&mut buf).unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(d.decode(&mut buf).unwrap().as_deref(), Some(&b"three"[..]));
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        buf.extend(b"xy");
        assert_eq!(d.decode(&mut buf).unwrap().as_deref(), Some(&b"xy"[..]));
    }

    #[test]
    fn frames_split_across_reads_with_more_behind_come_out_whole() {
        let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let mut stream = Vec::new();
        for p in [&big[..], b"two", b"", &big[..10]] {
            encode(p, &mut stream);
        }
        let mut d = Decoder::new(1 << 20);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        // Odd-sized reads, so headers and frames straddle them.
        for piece in stream.chunks(9_999) {
            buf.extend_from_slice(piece);
            while let Some(f) = d.decode(&mut buf).ok().flatten() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![big.clone(), b"two".to_vec(), Vec::new(), big[..10].to_vec()]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn read_max_frame_len() {
        let mut d = Decoder::new(4);
        let mut buf = frame(b"abcd");
        assert_eq!(d.decode(&mut buf).unwrap().as_deref(), Some(&b"abcd"[..]));
        let mut buf = frame(b"abcde");
        assert_eq!(
            d.decode(&mut buf),
            Err(FrameError::TooLong { len: 5, max: 4 })
        );
    }

    #[test]
    fn refuses_huge_length_before_buffering() {
        let mut d = Decoder::new(DEFAULT_MAX_FRAME);
        let mut buf = header(i32::MAX);
        assert!(matches!(
            d.decode(&mut buf),
            Err(FrameError::TooLong { len, .. }) if len == i32::MAX as usize
        ));
    }

    #[test]
    fn refuses_negative_length() {
        let mut d = Decoder::new(16);
        let mut buf = header(-1);
        assert_eq!(d.decode(&mut buf), Err(FrameError::NegativeLength(-1)));
        let mut buf = header(i32::MIN);
        assert_eq!(
            Decoder::new(16).decode(&mut buf),
            Err(FrameError::NegativeLength(i32::MIN))
        );
    }

    #[test]
    fn encode_matches_legacy_transcript() {
        // "1" as the original client sends it: 01 00 00 00 31.
        assert_eq!(frame(b"1"), vec![1, 0, 0, 0, 0x31]);
        assert_eq!(&frame(&[0u8; 421])[..4], &[0xa5, 0x01, 0, 0]);
    }
}
