//! The wire framing shared by every certboard connection, ours and legacy:
//! a 4-byte little-endian *signed* length, then exactly that many payload
//! bytes (the original lab's `struct.pack('i', n)`).
//!
//! The decoder is incremental and pure: bytes in, whole frames out. It never
//! trusts the length prefix: a negative length or one over the limit is an
//! error before a single payload byte is buffered.

use std::fmt;
use std::ops::Range;

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

/// Frames at least this long (an upload's chunks) are read apart from
/// what follows them: see [`Decoder::wanted`].
pub const LARGE_FRAME: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecodeState {
    Head,
    /// This frame's length is known; its header is still in the buffer.
    Data(usize),
    /// A large frame's length is known and its header consumed: the
    /// buffer holds its payload only, and becomes the frame when whole.
    Body(usize),
}

/// Incremental frame decoder: feed it the connection's input buffer, take
/// whole frames out. A frame's bytes are consumed only once it is whole,
/// but for a large frame whose header came alone (as a reader following
/// [`Decoder::wanted`] reads it), whose header is consumed at once.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: DecodeState,
    max_frame: usize,
    /// The last frame was large: the next one probably is too (an
    /// upload's chunks follow one another).
    large: bool,
    /// Bytes at the front of the buffer already taken as frames but not
    /// yet removed ([`Decoder::consume`]).
    taken: usize,
    /// The frame [`Decoder::next_frame`] gave, until consumed.
    given: Option<Range<usize>>,
}

impl Decoder {
    /// A decoder refusing frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Decoder {
            state: DecodeState::Head,
            max_frame,
            large: false,
            taken: 0,
            given: None,
        }
    }

    /// How many bytes a reader should read at most now, with `buffered`
    /// bytes in the buffer, so that large frames never share a buffer with
    /// what follows them: a frame that is its buffer's only content is
    /// taken as it is, with no copy of its payload (an upload's 64 KiB
    /// chunks were copied out of the buffer and the rest moved up behind
    /// them, a sixth of the server's CPU per MiB, issue 20). While large
    /// frames come, that is the next header alone, then exactly its
    /// payload; `None`: read as much as there is (small frames, and
    /// anything the buffer already completes). It takes hold only once a
    /// large frame's header has come alone: the reactor's reads of an
    /// upload, chunk after chunk, mostly straddle frames. Making every read
    /// follow it was tried and dropped (BENCHMARKS.md, "Large frames read
    /// apart, tried again"): no less CPU, and a turn of the loop more per
    /// chunk.
    pub fn wanted(&self, buffered: usize) -> Option<usize> {
        let buffered = buffered.saturating_sub(self.taken);
        let want = match self.state {
            DecodeState::Head if self.large => HEADER_LEN.checked_sub(buffered)?,
            DecodeState::Body(len) => len.checked_sub(buffered)?,
            _ => return None,
        };
        // Nothing missing: the frame is whole, and a read of 0 bytes
        // would look like the peer's close.
        (want > 0).then_some(want)
    }

    /// Whether `buf` holds a whole frame for [`Decoder::decode`] to take
    /// (a header that will be refused counts as none).
    pub fn holds_frame(&self, buf: &[u8]) -> bool {
        let buf = buf.get(self.taken..).unwrap_or_default();
        let whole = |len: usize| buf.len() >= len;
        match self.state {
            DecodeState::Body(len) => whole(len),
            DecodeState::Data(len) => whole(HEADER_LEN + len),
            DecodeState::Head => buf
                .get(..HEADER_LEN)
                .and_then(|head| usize::try_from(LittleEndian::read_i32(head)).ok())
                .is_some_and(|len| len <= self.max_frame && whole(HEADER_LEN + len)),
        }
    }

    /// Whether [`Decoder::next_frame`] has something to do with `buf` as it
    /// is, without another byte: a whole frame to give, a header to refuse,
    /// or a large frame's header that came alone (the reads then follow
    /// [`Decoder::wanted`]). `false`: it can only wait for the peer.
    pub fn has_next(&self, buf: &[u8]) -> bool {
        if self.given.is_some() {
            return true;
        }
        let buf = buf.get(self.taken..).unwrap_or_default();
        match self.state {
            DecodeState::Body(len) => buf.len() >= len,
            DecodeState::Data(len) => buf.len() >= HEADER_LEN + len,
            DecodeState::Head => buf.get(..HEADER_LEN).is_some_and(|head| {
                match usize::try_from(LittleEndian::read_i32(head)) {
                    Ok(len) if len <= self.max_frame => {
                        buf.len() >= HEADER_LEN + len
                            || (len >= LARGE_FRAME && buf.len() == HEADER_LEN)
                    }
                    _ => true,
                }
            }),
        }
    }

    /// Where the next whole frame's payload lies in `buf`, to be read there
    /// and then taken off with [`Decoder::consume`]: no copy of it is made.
    ///
    /// `Ok(None)` means more bytes are needed. After an error the stream is
    /// out of sync for good and the connection must be closed.
    ///
    /// A taken frame's bytes leave the buffer lazily: only once they are as
    /// many as what is left behind them (then the rest moves up, at most
    /// once per byte taken), or all of it. Moving the rest up behind every
    /// frame moved up to three of an upload's chunks per chunk taken, a
    /// twentieth of the server's CPU per MiB (issue 20). A large frame read
    /// as [`Decoder::wanted`] asks is its buffer's only content: its header
    /// came alone and is consumed at once.
    pub fn next_frame(&mut self, buf: &mut Vec<u8>) -> Result<Option<Range<usize>>, FrameError> {
        if let Some(given) = &self.given {
            // Not consumed: the same frame again.
            return Ok(Some(given.clone()));
        }
        let at = self.taken;
        let len = match self.state {
            DecodeState::Head => {
                let Some(head) = buf.get(at..at + HEADER_LEN) else {
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
                if len >= LARGE_FRAME && buf.len() == at + HEADER_LEN {
                    // The header alone: the buffer is empty once it is
                    // consumed, so the payload fills it from the start.
                    buf.clear();
                    buf.reserve_exact(len);
                    self.taken = 0;
                    self.state = DecodeState::Body(len);
                    return Ok(None);
                }
                self.state = DecodeState::Data(len);
                len
            }
            DecodeState::Data(len) => len,
            DecodeState::Body(len) => {
                if buf.len() < len {
                    return Ok(None);
                }
                self.given = Some(0..len);
                return Ok(Some(0..len));
            }
        };
        let end = at + HEADER_LEN + len;
        if buf.len() < end {
            return Ok(None);
        }
        let range = end - len..end;
        self.given = Some(range.clone());
        Ok(Some(range))
    }

    /// Takes the frame [`Decoder::next_frame`] gave off the buffer.
    pub fn consume(&mut self, buf: &mut Vec<u8>) {
        let Some(Range { end, .. }) = self.given.take() else {
            return;
        };
        self.large = match self.state {
            DecodeState::Body(_) => true,
            DecodeState::Data(len) => len >= LARGE_FRAME,
            DecodeState::Head => self.large,
        };
        self.state = DecodeState::Head;
        if end >= buf.len() {
            buf.clear();
            self.taken = 0;
        } else if end >= buf.len() - end {
            buf.drain(..end);
            self.taken = 0;
        } else {
            self.taken = end;
        }
    }

    /// Takes the next whole frame off the front of `buf`, as a buffer of
    /// its own ([`Decoder::next_frame`], for a reader that keeps frames).
    /// A large frame read as [`Decoder::wanted`] asks is the buffer itself.
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(range) = self.next_frame(buf)? else {
            return Ok(None);
        };
        let frame = if range.start == 0 && range.end == buf.len() {
            // The buffer is the frame: taken whole, then consumed as any.
            let whole = std::mem::take(buf);
            self.consume(buf);
            whole
        } else {
            let frame = buf.get(range).unwrap_or_default().to_vec();
            self.consume(buf);
            frame
        };
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

    /// Feeds `stream` to `d` as a reader following `wanted` would (each
    /// read at most `cap` bytes), and returns the frames.
    fn read_as_wanted(d: &mut Decoder, stream: &[u8], cap: usize) -> Vec<Vec<u8>> {
        let (mut buf, mut at, mut frames) = (Vec::new(), 0, Vec::new());
        while at < stream.len() {
            let n = d
                .wanted(buf.len())
                .unwrap_or(cap)
                .min(cap)
                .min(stream.len() - at);
            assert!(n > 0, "a read of nothing would look like a close");
            buf.extend_from_slice(&stream[at..at + n]);
            at += n;
            while let Some(f) = d.decode(&mut buf).unwrap() {
                frames.push(f);
            }
        }
        assert!(buf.is_empty());
        frames
    }

    #[test]
    fn large_frames_are_read_apart_and_taken_whole_small_ones_as_before() {
        let chunk = |b: u8| vec![b; LARGE_FRAME + 100];
        let mut stream = Vec::new();
        for f in [
            b"hi".to_vec(),
            chunk(1),
            chunk(2),
            chunk(3),
            b"done".to_vec(),
            chunk(4),
        ] {
            encode(&f, &mut stream);
        }
        let mut d = Decoder::new(1 << 20);
        assert_eq!(d.wanted(0), None, "small frames so far: read all there is");
        let frames = read_as_wanted(&mut d, &stream, 64 * 1024);
        assert_eq!(
            frames,
            vec![
                b"hi".to_vec(),
                chunk(1),
                chunk(2),
                chunk(3),
                b"done".to_vec(),
                chunk(4)
            ]
        );
        // After a large frame: the header alone, then exactly its payload.
        assert_eq!(d.wanted(0), Some(HEADER_LEN));
        assert_eq!(d.wanted(3), Some(1));
        let mut buf = header(LARGE_FRAME as i32);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert!(
            buf.is_empty() && buf.capacity() >= LARGE_FRAME,
            "header consumed, room made"
        );
        assert_eq!(d.wanted(0), Some(LARGE_FRAME));
        buf.resize(LARGE_FRAME, 7);
        assert_eq!(
            d.wanted(buf.len()),
            None,
            "whole: nothing more to read first"
        );
        let at = buf.as_ptr();
        let frame = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.as_ptr(), at, "the buffer itself, not a copy");
    }

    #[test]
    fn holds_frame_says_whether_decode_would_take_one() {
        let d = Decoder::new(100);
        let f = frame(b"hello");
        assert!(d.holds_frame(&f));
        assert!(!d.holds_frame(&f[..f.len() - 1]));
        assert!(!d.holds_frame(&f[..3]), "not even a header");
        assert!(!d.holds_frame(&header(-1)), "refused, not held");
        let mut long = header(101);
        long.resize(4 + 101, 0);
        assert!(!d.holds_frame(&long), "over the limit: refused, not held");
        // A large frame read apart: the buffer is its payload.
        let mut d = Decoder::new(1 << 20);
        let mut buf = header(LARGE_FRAME as i32);
        d.large = true;
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        buf.resize(LARGE_FRAME - 1, 0);
        assert!(!d.holds_frame(&buf));
        buf.push(0);
        assert!(d.holds_frame(&buf));
    }

    #[test]
    fn has_next_says_whether_next_frame_can_act_without_another_byte() {
        let mut d = Decoder::new(100);
        let f = frame(b"hello");
        assert!(d.has_next(&f));
        assert!(
            !d.has_next(&f[..f.len() - 1]),
            "a part: the peer owes the rest"
        );
        assert!(!d.has_next(&f[..3]), "not even a header");
        assert!(!d.has_next(&[]));
        assert!(d.has_next(&header(-1)), "a header to refuse");
        assert!(d.has_next(&header(101)), "over the limit: to refuse");
        // Taken, not consumed: the same frame is there to give again.
        let mut two = f.clone();
        two.extend_from_slice(&frame(b"x")[..4]);
        assert!(d.next_frame(&mut two).unwrap().is_some());
        assert!(d.has_next(&two));
        d.consume(&mut two);
        assert!(!d.has_next(&two), "the rest of the second is owed");
        two.push(b'x');
        assert!(d.has_next(&two));
        // A large frame's header alone: the decoder reads it apart.
        let mut d = Decoder::new(1 << 20);
        let mut buf = header(LARGE_FRAME as i32);
        assert!(d.has_next(&buf));
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert!(!d.has_next(&buf), "its payload is owed");
        buf.resize(LARGE_FRAME, 0);
        assert!(d.has_next(&buf));
    }

    #[test]
    fn a_reader_ignoring_wanted_still_gets_every_frame_in_order() {
        let chunk = |b: u8| vec![b; LARGE_FRAME * 2];
        let mut stream = Vec::new();
        for f in [chunk(1), chunk(2), b"x".to_vec(), chunk(3), chunk(4)] {
            encode(&f, &mut stream);
        }
        // Reads of 4 bytes and then of odd sizes: the header sometimes
        // alone, the payload overrun by the next frame's bytes.
        for cap in [4, 5, 4093, 70_000, stream.len()] {
            let mut d = Decoder::new(1 << 20);
            let (mut buf, mut frames) = (Vec::new(), Vec::new());
            for piece in stream.chunks(cap) {
                buf.extend_from_slice(piece);
                while let Some(f) = d.decode(&mut buf).unwrap() {
                    frames.push(f);
                }
            }
            assert!(buf.is_empty(), "cap {cap}");
            assert_eq!(
                frames,
                vec![chunk(1), chunk(2), b"x".to_vec(), chunk(3), chunk(4)],
                "cap {cap}"
            );
        }
    }

    #[test]
    fn frames_are_read_in_place_and_what_follows_moves_up_only_once_as_much_is_taken() {
        let mut d = Decoder::new(1024);
        let mut buf = Vec::new();
        for b in 1..=4u8 {
            encode(&[b; 100], &mut buf);
        }
        let first = d.next_frame(&mut buf).unwrap().unwrap();
        assert_eq!(first, 4..104);
        assert_eq!(
            d.next_frame(&mut buf).unwrap(),
            Some(first.clone()),
            "until consumed"
        );
        let at = buf.as_ptr();
        d.consume(&mut buf);
        assert_eq!(buf.len(), 416, "one taken, three behind it: nothing moved");
        assert!(d.holds_frame(&buf));
        let second = d.next_frame(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[second], &[2u8; 100][..]);
        d.consume(&mut buf);
        assert_eq!(buf.len(), 208, "two taken, as many behind: they moved up");
        assert_eq!(buf.as_ptr(), at, "in the same buffer");
        let third = d.next_frame(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[third], &[3u8; 100][..]);
        d.consume(&mut buf);
        assert_eq!(buf.len(), 104, "as many taken as behind: moved up again");
        assert_eq!(d.wanted(buf.len()), None);
        buf.extend_from_slice(&frame(b"fifth")[..3]);
        assert!(d.holds_frame(&buf) && d.next_frame(&mut buf).unwrap().is_some());
        d.consume(&mut buf);
        assert!(!d.holds_frame(&buf), "a part of a header is no frame");
        assert_eq!(d.next_frame(&mut buf), Ok(None));
        buf.extend_from_slice(&frame(b"fifth")[3..]);
        let fifth = d.next_frame(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[fifth], b"fifth");
        d.consume(&mut buf);
        assert!(buf.is_empty(), "all taken: the buffer is empty again");
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
