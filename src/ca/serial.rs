//! Certificate serial numbers: drawn in one place ([`Serial::random`]) and
//! printed in one form ([`Serial`]'s `Display`), the form the store keys
//! certificates by and operators type.

use std::fmt;

use openssl::asn1::Asn1IntegerRef;
use openssl::bn::{BigNum, BigNumRef};
use openssl::error::ErrorStack;

/// Length of a drawn serial, bytes.
const SERIAL_LEN: usize = 16;

/// The most hex digits [`Serial::parse_hex`] reads: 20 bytes, the longest
/// serial RFC 5280 (4.1.2.2) lets a CA use.
const MAX_HEX_DIGITS: usize = 40;

/// Why a serial typed or stored as text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SerialError {
    /// No digits at all (nothing, or only `0x`).
    Empty,
    /// A character that is not a hex digit.
    NotHex {
        /// Its byte offset among the digits (after any `0x`).
        at: usize,
        /// The character.
        found: char,
    },
    /// More digits than any serial we accept has.
    TooLong {
        /// How many digits there were.
        digits: usize,
    },
}

impl fmt::Display for SerialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SerialError::Empty => write!(f, "a serial needs at least one hex digit"),
            SerialError::NotHex { at, found } => write!(
                f,
                "a serial is hex digits only; found {found:?} at digit {}",
                at + 1
            ),
            SerialError::TooLong { digits } => write!(
                f,
                "a serial has at most {MAX_HEX_DIGITS} hex digits; got {digits}"
            ),
        }
    }
}

impl std::error::Error for SerialError {}

/// A certificate serial number.
///
/// Printed as upper-case hex, two digits per byte, without leading zero
/// bytes (`0A`, `7F3C…`), exactly as OpenSSL's `BN_bn2hex` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Serial {
    /// RFC 5280 wants serials positive; a foreign certificate's may not be.
    negative: bool,
    /// Big-endian magnitude without leading zero bytes (empty for zero).
    magnitude: Vec<u8>,
}

impl Serial {
    /// A fresh random serial of 16 bytes (126 random bits; the top bits
    /// are fixed so every serial has the same DER length and is never
    /// negative, so its magnitude is its DER content as it stands).
    pub fn random() -> Result<Serial, ErrorStack> {
        let mut bytes = [0u8; SERIAL_LEN];
        openssl::rand::rand_bytes(&mut bytes)?;
        bytes[0] = (bytes[0] & 0x3f) | 0x40;
        Ok(Serial {
            negative: false,
            magnitude: bytes.to_vec(),
        })
    }

    /// The serial with this value.
    pub fn from_bn(bn: &BigNumRef) -> Serial {
        Serial {
            negative: bn.is_negative(),
            magnitude: bn.to_vec(),
        }
    }

    /// The serial whose DER INTEGER content bytes (big-endian two's
    /// complement, as in a certificate or an OCSP CertID) are `content`.
    pub fn from_der_integer(content: &[u8]) -> Serial {
        let negative = content.first().is_some_and(|b| b & 0x80 != 0);
        let mut magnitude = content.to_vec();
        if negative {
            // The magnitude of a negative number: invert, then add one.
            magnitude.iter_mut().for_each(|b| *b = !*b);
            for b in magnitude.iter_mut().rev() {
                let (sum, carry) = b.overflowing_add(1);
                *b = sum;
                if !carry {
                    break;
                }
            }
        }
        let zeros = magnitude.iter().take_while(|&&b| b == 0).count();
        magnitude.drain(..zeros);
        Serial {
            negative: negative && !magnitude.is_empty(),
            magnitude,
        }
    }

    /// The serial of a certificate, as OpenSSL decoded it.
    pub fn from_asn1(serial: &Asn1IntegerRef) -> Result<Serial, ErrorStack> {
        Ok(Serial::from_bn(&*serial.to_bn()?))
    }

    /// Reads a serial as operators type it and the store keeps it: an
    /// optional `0x`, then 1 to 40 hex digits (20 bytes) of either
    /// case (leading zeros allowed and counted). Anything else, a sign
    /// included (we issue no negative serials), is refused; never panics.
    ///
    /// Our own reader rather than OpenSSL's `BN_hex2bn`, which stops at the
    /// first non-digit ("12zz" reads as 0x12) and cannot take a NUL byte.
    pub fn parse_hex(text: &str) -> Result<Serial, SerialError> {
        let digits = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .unwrap_or(text);
        if digits.is_empty() {
            return Err(SerialError::Empty);
        }
        if let Some((at, found)) = digits.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(SerialError::NotHex { at, found });
        }
        if digits.len() > MAX_HEX_DIGITS {
            return Err(SerialError::TooLong {
                digits: digits.len(),
            });
        }
        let nibbles: Vec<u8> = digits
            .bytes()
            .filter_map(hex_value)
            .skip_while(|&d| d == 0)
            .collect();
        // Pair from the right: an odd count gets a leading zero nibble.
        let mut magnitude = Vec::with_capacity(nibbles.len().div_ceil(2));
        let (head, rest) = nibbles.split_at(nibbles.len() % 2);
        magnitude.extend(head.iter().copied());
        magnitude.extend(rest.chunks_exact(2).map(|p| (p[0] << 4) | p[1]));
        Ok(Serial {
            negative: false,
            magnitude,
        })
    }

    /// The value as an OpenSSL number (for OpenSSL's builders).
    pub fn to_bn(&self) -> Result<BigNum, ErrorStack> {
        let mut bn = BigNum::from_slice(&self.magnitude)?;
        bn.set_negative(self.negative);
        Ok(bn)
    }

    /// The big-endian magnitude, without leading zero bytes.
    pub fn magnitude(&self) -> &[u8] {
        &self.magnitude
    }

    /// Whether it is below zero (a foreign certificate's; never ours).
    pub fn is_negative(&self) -> bool {
        self.negative
    }
}

/// The value of one ASCII hex digit.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.magnitude.is_empty() {
            return f.write_str("0");
        }
        if self.negative {
            f.write_str("-")?;
        }
        // One write for the whole serial: it is printed several times per
        // submission (records, receipt, log leaf), and a `write!` per byte
        // cost ~250 instructions each (issue 19's profile).
        f.write_str(&crate::crypto::hex_upper(&self.magnitude))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_as_openssl_prints_a_bignum() -> Result<(), ErrorStack> {
        for hex in [
            "0",
            "A",
            "0a",
            "7f",
            "80",
            "100",
            "-5",
            "00FF00",
            "DEADBEEF01",
        ] {
            let bn = BigNum::from_hex_str(hex)?;
            let serial = Serial::from_bn(&bn);
            assert_eq!(serial.to_string(), bn.to_hex_str()?.to_string(), "{hex}");
            if !hex.starts_with('-') {
                assert_eq!(Serial::parse_hex(hex), Ok(serial.clone()), "{hex}");
            }
            assert_eq!(serial.to_bn()?, bn);
        }
        Ok(())
    }

    #[test]
    fn reads_der_integers_as_openssl_does() -> Result<(), Box<dyn std::error::Error>> {
        use openssl::asn1::Asn1Integer;
        use openssl::hash::MessageDigest;
        use openssl::x509::X509Builder;
        let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(
            openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)?.as_ref(),
        )?)?;
        for hex in [
            "1", "7F", "80", "C1C2", "FF", "0100", "-1", "-7F", "-80", "-81", "-FF00",
        ] {
            let bn = BigNum::from_hex_str(hex)?;
            let mut b = X509Builder::new()?;
            b.set_serial_number(Asn1Integer::from_bn(&bn)?.as_ref())?;
            b.set_pubkey(&key)?;
            b.sign(&key, MessageDigest::sha256())?;
            let der = b.build().to_der()?;
            let tbs = crate::der::TbsCertificate::parse(&der)?;
            let from_der = Serial::from_der_integer(tbs.serial.content);
            assert_eq!(from_der, Serial::from_bn(&bn), "{hex}");
            assert_eq!(from_der.to_string(), bn.to_hex_str()?.to_string(), "{hex}");
        }
        assert_eq!(Serial::from_der_integer(&[0x00]).to_string(), "0");
        assert_eq!(Serial::from_der_integer(&[]).to_string(), "0");
        Ok(())
    }

    #[test]
    fn parse_hex_reads_what_display_prints() -> Result<(), ErrorStack> {
        for _ in 0..8 {
            let s = Serial::random()?;
            assert_eq!(Serial::parse_hex(&s.to_string()), Ok(s.clone()));
            let lower = format!("0x{}", s.to_string().to_lowercase());
            assert_eq!(Serial::parse_hex(&lower), Ok(s));
        }
        Ok(())
    }

    #[test]
    fn parse_hex_takes_leading_zeros_and_odd_lengths() {
        let ten = Serial::parse_hex("0A").unwrap();
        assert_eq!(ten.magnitude(), [0x0A]);
        for same in ["A", "a", "000a", "0x0A", "0X00000a"] {
            assert_eq!(Serial::parse_hex(same).as_ref(), Ok(&ten), "{same}");
        }
        assert_eq!(Serial::parse_hex("00").unwrap().to_string(), "0");
        assert_eq!(Serial::parse_hex("123").unwrap().magnitude(), [0x01, 0x23]);
        assert_eq!(Serial::parse_hex("0x0100").unwrap().to_string(), "0100");
        // Leading zeros count towards the limit.
        let forty = format!("{}1", "0".repeat(39));
        assert_eq!(Serial::parse_hex(&forty).unwrap().magnitude(), [1]);
        let max = "F".repeat(MAX_HEX_DIGITS);
        assert_eq!(Serial::parse_hex(&max).unwrap().magnitude(), [0xFF; 20]);
    }

    #[test]
    fn parse_hex_refuses_everything_else_without_panicking() {
        let refused = |text: &str| Serial::parse_hex(text).unwrap_err();
        assert_eq!(refused(""), SerialError::Empty);
        assert_eq!(refused("0x"), SerialError::Empty);
        assert_eq!(refused("12zz"), SerialError::NotHex { at: 2, found: 'z' });
        assert_eq!(refused("12\0"), SerialError::NotHex { at: 2, found: '\0' });
        assert_eq!(refused("\0"), SerialError::NotHex { at: 0, found: '\0' });
        assert_eq!(refused("-5"), SerialError::NotHex { at: 0, found: '-' });
        assert_eq!(refused(" 0A"), SerialError::NotHex { at: 0, found: ' ' });
        assert_eq!(refused("0A\n"), SerialError::NotHex { at: 2, found: '\n' });
        assert_eq!(refused("0x0x1"), SerialError::NotHex { at: 1, found: 'x' });
        assert_eq!(refused("é1"), SerialError::NotHex { at: 0, found: 'é' });
        assert_eq!(refused("1٣"), SerialError::NotHex { at: 1, found: '٣' });
        assert_eq!(
            refused(&"1".repeat(MAX_HEX_DIGITS + 1)),
            SerialError::TooLong { digits: 41 }
        );
        assert_eq!(
            refused(&format!("0x{}", "0".repeat(41))),
            SerialError::TooLong { digits: 41 }
        );
        assert_eq!(
            refused("12zz").to_string(),
            "a serial is hex digits only; found 'z' at digit 3"
        );
        // A long non-hex input is refused for its first bad character, and
        // its length is never used to allocate.
        let huge = "z".repeat(1 << 20);
        assert_eq!(refused(&huge), SerialError::NotHex { at: 0, found: 'z' });
    }

    #[test]
    fn drawn_serials_are_positive_16_bytes_and_differ() -> Result<(), ErrorStack> {
        let a = Serial::random()?;
        let b = Serial::random()?;
        assert_ne!(a, b);
        for s in [&a, &b] {
            assert_eq!(s.magnitude().len(), SERIAL_LEN);
            assert_eq!(s.to_bn()?.num_bits(), 127);
            assert_eq!(s.to_string().len(), 2 * SERIAL_LEN);
            assert_eq!(s.to_string(), s.to_bn()?.to_hex_str()?.to_string());
        }
        Ok(())
    }
}
