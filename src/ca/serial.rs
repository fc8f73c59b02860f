//! Certificate serial numbers: drawn in one place ([`Serial::random`]) and
//! printed in one form ([`Serial`]'s `Display`), the form the store keys
//! certificates by and operators type.

use std::fmt;

use openssl::asn1::Asn1IntegerRef;
use openssl::bn::{BigNum, BigNumRef};
use openssl::error::ErrorStack;

/// Length of a drawn serial, bytes.
const SERIAL_LEN: usize = 16;

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

    /// The serial of a certificate, as OpenSSL decoded it.
    pub fn from_asn1(serial: &Asn1IntegerRef) -> Result<Serial, ErrorStack> {
        Ok(Serial::from_bn(&*serial.to_bn()?))
    }

    /// Reads hex as OpenSSL's `BN_hex2bn` does (any case, leading zeros
    /// allowed, a leading `-` for a negative number).
    pub fn parse_hex(hex: &str) -> Result<Serial, ErrorStack> {
        Ok(Serial::from_bn(&*BigNum::from_hex_str(hex)?))
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
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.magnitude.is_empty() {
            return f.write_str("0");
        }
        if self.negative {
            f.write_str("-")?;
        }
        for b in &self.magnitude {
            write!(f, "{b:02X}")?;
        }
        Ok(())
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
            assert_eq!(Serial::parse_hex(hex)?, serial);
            assert_eq!(serial.to_bn()?, bn);
        }
        Ok(())
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
