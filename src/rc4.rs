//! RC4, written here on purpose: the lab asks for it and the original client
//! speaks it. It is broken as a cipher (biased key stream, no integrity), so
//! certboard never uses it by default; `--cipher rc4` opts in, always under
//! a fresh per-session key and an HMAC. Tested against RFC 6229.

/// An RC4 key stream. One instance per direction: never share a state
/// between two messages or two peers.
#[derive(Clone)]
pub struct Rc4 {
    s: [u8; 256],
    i: u8,
    j: u8,
}

impl std::fmt::Debug for Rc4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The state is key material: never print it.
        f.write_str("Rc4 { .. }")
    }
}

/// Why a key cannot key RC4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadKeyLength(pub usize);

impl std::fmt::Display for BadKeyLength {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RC4 key length {} is not between 1 and 256 bytes",
            self.0
        )
    }
}

impl std::error::Error for BadKeyLength {}

impl Rc4 {
    /// Runs the key schedule. Keys of 1 to 256 bytes are accepted.
    pub fn new(key: &[u8]) -> Result<Rc4, BadKeyLength> {
        if key.is_empty() || key.len() > 256 {
            return Err(BadKeyLength(key.len()));
        }
        let mut s = [0u8; 256];
        for (i, v) in s.iter_mut().enumerate() {
            *v = i as u8; // i < 256
        }
        let mut j: u8 = 0;
        for i in 0..256 {
            j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
            s.swap(i, usize::from(j));
        }
        Ok(Rc4 { s, i: 0, j: 0 })
    }

    fn next_byte(&mut self) -> u8 {
        self.i = self.i.wrapping_add(1);
        self.j = self.j.wrapping_add(self.s[usize::from(self.i)]);
        self.s.swap(usize::from(self.i), usize::from(self.j));
        let k = self.s[usize::from(self.i)].wrapping_add(self.s[usize::from(self.j)]);
        self.s[usize::from(k)]
    }

    /// XORs the next `data.len()` key-stream bytes into `data`; encryption
    /// and decryption are the same operation.
    pub fn apply(&mut self, data: &mut [u8]) {
        for b in data {
            *b ^= self.next_byte();
        }
    }

    /// Discards `n` key-stream bytes.
    pub fn skip(&mut self, n: usize) {
        for _ in 0..n {
            self.next_byte();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Checks the key stream at the RFC 6229 offsets 0, 16, 240, 256, 496,
    /// 512, 752, 768, 1008, 1024, 1520, 1536, 2032, 2048, 3056, 3072, 4080
    /// and 4096, 16 bytes each.
    fn check_rfc6229(key: &[u8], rows: &[(usize, &str)]) {
        let mut rc4 = Rc4::new(key).unwrap();
        let mut stream = vec![0u8; 4112];
        rc4.apply(&mut stream);
        for (offset, expected) in rows {
            assert_eq!(
                &stream[*offset..*offset + 16],
                &hex(expected)[..],
                "key {key:02x?} offset {offset}"
            );
        }
    }

    // RFC 6229 section 2, key 0x0102030405 (40 bits), every listed offset.
    // (All tables here were also cross-checked against OpenSSL's RC4.)
    #[test]
    fn rfc6229_40_bit_key() {
        check_rfc6229(
            &hex("0102030405"),
            &[
                (0, "b2 39 63 05  f0 3d c0 27   cc c3 52 4a  0a 11 18 a8"),
                (16, "69 82 94 4f  18 fc 82 d5   89 c4 03 a4  7a 0d 09 19"),
                (240, "28 cb 11 32  c9 6c e2 86   42 1d ca ad  b8 b6 9e ae"),
                (256, "1c fc f6 2b  03 ed db 64   1d 77 df cf  7f 8d 8c 93"),
                (496, "42 b7 d0 cd  d9 18 a8 a3   3d d5 17 81  c8 1f 40 41"),
                (512, "64 59 84 44  32 a7 da 92   3c fb 3e b4  98 06 61 f6"),
                (752, "ec 10 32 7b  de 2b ee fd   18 f9 27 76  80 45 7e 22"),
                (768, "eb 62 63 8d  4f 0b a1 fe   9f ca 20 e0  5b f8 ff 2b"),
                (1008, "45 12 90 48  e6 a0 ed 0b   56 b4 90 33  8f 07 8d a5"),
                (1024, "30 ab bc c7  c2 0b 01 60   9f 23 ee 2d  5f 6b b7 df"),
                (1520, "32 94 f7 44  d8 f9 79 05   07 e7 0f 62  e5 bb ce ea"),
                (1536, "d8 72 9d b4  18 82 25 9b   ee 4f 82 53  25 f5 a1 30"),
                (2032, "1e b1 4a 0c  13 b3 bf 47   fa 2a 0b a9  3a d4 5b 8b"),
                (2048, "cc 58 2f 8b  a9 f2 65 e2   b1 be 91 12  e9 75 d2 d7"),
                (3056, "f2 e3 0f 9b  d1 02 ec bf   75 aa ad e9  bc 35 c4 3c"),
                (3072, "ec 0e 11 c4  79 dc 32 9d   c8 da 79 68  fe 96 56 81"),
                (4080, "06 83 26 a2  11 84 16 d2   1f 9d 04 b2  cd 1c a0 50"),
                (4096, "ff 25 b5 89  95 99 67 07   e5 1f bd f0  8b 34 d8 75"),
            ],
        );
    }

    // RFC 6229, key 0x0102030405060708 (64 bits).
    #[test]
    fn rfc6229_64_bit_key() {
        check_rfc6229(
            &hex("0102030405060708"),
            &[
                (0, "97ab8a1bf0afb96132f2f67258da15a8"),
                (16, "8263efdb45c4a18684ef87e6b19e5b09"),
                (240, "9636ebc9841926f4f7d1f362bddf6e18"),
                (256, "d0a990ff2c05fef5b90373c9ff4b870a"),
                (4080, "d5fa5a3469d29aaaf83d23589db8c85b"),
                (4096, "3fb46e2c8f0f068edce8cdcd7dfc5862"),
            ],
        );
    }

    // RFC 6229, key 0x0102030405060708090a0b0c0d0e0f10 (128 bits).
    #[test]
    fn rfc6229_128_bit_key() {
        check_rfc6229(
            &hex("0102030405060708090a0b0c0d0e0f10"),
            &[
                (0, "9ac7cc9a609d1ef7b2932899cde41b97"),
                (16, "5248c4959014126a6e8a84f11d1a9e1c"),
                (240, "065902e4b620f6cc36c8589f66432f2b"),
                (256, "d39d566bc6bce3010768151549f3873f"),
                (4080, "ff38265c1642c1abe8d3c2fe5e572bf8"),
                (4096, "a36a4c301ae8ac13610ccbc12256cacc"),
            ],
        );
    }

    // RFC 6229, key 0x0102…1f20 (256 bits, the size certboard uses).
    #[test]
    fn rfc6229_256_bit_key() {
        check_rfc6229(
            &hex("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"),
            &[
                (0, "eaa6bd25880bf93d3f5d1e4ca2611d91"),
                (16, "cfa45c9f7e714b54bdfa80027cb14380"),
                (240, "114ae344ded71b35f2e60febad727fd8"),
                (256, "02e1e7056b0f623900496422943e97b6"),
                (4080, "a13a7c79c7e119b5ab0296ab28c300b9"),
                (4096, "f3e4c0a2e02d1d01f7f0a74618af2b48"),
            ],
        );
    }

    // RFC 6229, key 0x1ada…772a (256 bits, section 3).
    #[test]
    fn rfc6229_random_256_bit_key() {
        check_rfc6229(
            &hex("1ada31d5cf688221c109163908ebe51debb46227c6cc8b37641910833222772a"),
            &[
                (0, "dd5bcb0018e922d494759d7c395d02d3"),
                (16, "c8446f8f77abf737685353eb89a1c9eb"),
                (240, "af3e30f9c095045938151575c3fb9098"),
                (256, "f8cb6274db99b80b1d2012a98ed48f0e"),
                (4080, "d5a39e3dfcc50280bac4a6b5aa0dca7d"),
                (4096, "370b1c1fe655916d97fd0d47ca1d72b8"),
            ],
        );
    }

    #[test]
    fn decrypt_inverts_encrypt_and_split_calls_agree() {
        let key = b"certboard";
        let mut data = b"This is submission from SID1.\n".to_vec();
        let mut whole = data.clone();
        Rc4::new(key).unwrap().apply(&mut whole);
        let mut split = Rc4::new(key).unwrap();
        let (a, b) = data.split_at_mut(7);
        split.apply(a);
        split.apply(b);
        assert_eq!(data, whole);
        Rc4::new(key).unwrap().apply(&mut data);
        assert_eq!(data, b"This is submission from SID1.\n");
    }

    #[test]
    fn refuses_bad_key_lengths() {
        assert_eq!(Rc4::new(&[]).err(), Some(BadKeyLength(0)));
        assert_eq!(Rc4::new(&[0; 257]).err(), Some(BadKeyLength(257)));
        assert!(Rc4::new(&[0; 256]).is_ok());
    }

    #[test]
    fn legacy_worked_example() {
        // ../shared/legacy-protocol.md §6: SID 1155000001, plaintext "regina".
        let mut data = b"regina".to_vec();
        Rc4::new(b"11550000011155000001").unwrap().apply(&mut data);
        assert_eq!(data, hex("f5 99 8e 3b f8 88"));
    }
}
