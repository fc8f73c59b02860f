//! Enrollment codes (PROTOCOL.md, "Enrollment code"): a per-student secret
//! the instructor hands out once, proven to the CA with an HMAC over the
//! CA's fresh nonce, the SID and the exact CSR, so the code never travels
//! and a man in the middle cannot swap the CSR under it. Also the message
//! a renewal signs. Pure: the client and the CA both use it.

use std::fmt;

use openssl::error::ErrorStack;

use crate::crypto::{hkdf, hmac_sha256};
use crate::message::{MAC_LEN, NONCE_LEN};

/// Crockford's base32 alphabet (no I, L, O, U).
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Symbols in a code: 20 × 5 bits = 100 bits.
pub const CODE_SYMBOLS: usize = 20;
/// Symbols per group when a code is shown.
const GROUP: usize = 5;

/// A normalised enrollment code. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollCode(String);

impl fmt::Debug for EnrollCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnrollCode(..)")
    }
}

/// Why a text is not an enrollment code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodeError {
    /// A character outside the alphabet (after normalisation).
    BadSymbol(char),
    /// Not 20 symbols.
    Length(usize),
}

impl fmt::Display for CodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodeError::BadSymbol(c) => write!(
                f,
                "{c:?} is not a symbol of an enrollment code (digits and letters except I, L, O, U)"
            ),
            CodeError::Length(n) => write!(
                f,
                "an enrollment code has {CODE_SYMBOLS} symbols (e.g. 7KQ2M-9XW4T-...), this one has {n}"
            ),
        }
    }
}

impl std::error::Error for CodeError {}

impl EnrollCode {
    /// A fresh random code from OpenSSL's CSPRNG. 256 is a multiple of 32,
    /// so each byte's low five bits are a uniform symbol.
    pub fn generate() -> Result<EnrollCode, ErrorStack> {
        let bytes = crate::crypto::random::<CODE_SYMBOLS>()?;
        Ok(EnrollCode(
            bytes
                .iter()
                .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
                .collect(),
        ))
    }

    /// Reads a code as a person typed or pasted it (PROTOCOL.md,
    /// "Enrollment code"): dropped are `-` and the dashes a word processor
    /// puts in its place (U+2010 to U+2015, U+2212), and every whitespace
    /// character, ASCII (space, TAB, CR, LF, FF: a code cut from the CRLF
    /// codes file keeps its `\r`) or not (a no-break space from a mail);
    /// then upper-cased, `I`/`L` read as `1` and `O` as `0`. The client
    /// and every other reader of codes call this one function.
    pub fn parse(text: &str) -> Result<EnrollCode, CodeError> {
        let mut out = String::with_capacity(CODE_SYMBOLS);
        for c in text.chars() {
            let c = match c.to_ascii_uppercase() {
                c if is_separator(c) => continue,
                'I' | 'L' => '1',
                'O' => '0',
                c => c,
            };
            if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
                return Err(CodeError::BadSymbol(c));
            }
            out.push(c);
        }
        match out.len() {
            CODE_SYMBOLS => Ok(EnrollCode(out)),
            n => Err(CodeError::Length(n)),
        }
    }

    /// The form handed out: four groups of five, joined by `-`.
    pub fn grouped(&self) -> String {
        let mut out = String::with_capacity(CODE_SYMBOLS + CODE_SYMBOLS / GROUP);
        for (i, c) in self.0.chars().enumerate() {
            if i > 0 && i % GROUP == 0 {
                out.push('-');
            }
            out.push(c);
        }
        out
    }

    /// `code_key = HKDF-SHA256(IKM = code, salt = "certboard v2 enrollment
    /// code", info = SID)`: what the CA stores, bound to one SID so a code
    /// is worth nothing for another.
    pub fn key(&self, sid: &str) -> Result<[u8; 32], ErrorStack> {
        hkdf(
            self.0.as_bytes(),
            b"certboard v2 enrollment code",
            sid.as_bytes(),
        )
    }
}

/// What a person may put between a code's symbols.
fn is_separator(c: char) -> bool {
    matches!(c, '-' | '\u{2010}'..='\u{2015}' | '\u{2212}') || c.is_whitespace()
}

/// `le64(len(x)) || x`.
fn lp(out: &mut Vec<u8>, x: &[u8]) {
    out.extend_from_slice(&(x.len() as u64).to_le_bytes());
    out.extend_from_slice(x);
}

/// `HMAC-SHA256(code_key, "certboard v2 enroll" || lp(nonce) || lp(SID) || lp(csr))`.
pub fn enroll_mac(
    code_key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    sid: &str,
    csr_der: &[u8],
) -> Result<[u8; MAC_LEN], ErrorStack> {
    let mut data = b"certboard v2 enroll".to_vec();
    lp(&mut data, nonce);
    lp(&mut data, sid.as_bytes());
    lp(&mut data, csr_der);
    hmac_sha256(code_key, &data)
}

/// What a renewal signs with her current key:
/// `"certboard v2 renew" || lp(nonce) || lp(cert) || lp(csr)`.
pub fn renewal_message(nonce: &[u8; NONCE_LEN], cert_der: &[u8], csr_der: &[u8]) -> Vec<u8> {
    let mut data = b"certboard v2 renew".to_vec();
    lp(&mut data, nonce);
    lp(&mut data, cert_der);
    lp(&mut data, csr_der);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_typed_forgivingly_and_shown_grouped() -> Result<(), Box<dyn std::error::Error>> {
        let code = EnrollCode::generate()?;
        let shown = code.grouped();
        assert_eq!(shown.len(), 23);
        assert_eq!(shown.matches('-').count(), 3);
        assert_eq!(EnrollCode::parse(&shown)?, code);
        assert_eq!(EnrollCode::parse(&shown.to_lowercase())?, code);
        let typed = EnrollCode::parse("o1il0 abcde-fghjk mnpqr")?;
        assert_eq!(typed.grouped(), "01110-ABCDE-FGHJK-MNPQR");
        assert_eq!(EnrollCode::parse(&format!("{shown}\r\n"))?, code);
        assert_eq!(EnrollCode::parse(&format!("\t{shown} "))?, code);
        // Every separator a person or a program may leave in: TAB, CR, LF,
        // FF, a no-break space, a word processor's dashes.
        let spaced = shown.replace('-', "\t\r\n\u{c}\u{a0}\u{2013}\u{2212}");
        assert_eq!(EnrollCode::parse(&spaced)?, code);
        assert_eq!(
            EnrollCode::parse(&format!("{shown}\u{200b}")),
            Err(CodeError::BadSymbol('\u{200b}')),
            "a zero-width space is not whitespace: refused, not guessed at"
        );
        assert_eq!(
            EnrollCode::parse("01110-ABCDE-FGHJK-MNPQU"),
            Err(CodeError::BadSymbol('U'))
        );
        assert_eq!(EnrollCode::parse("0111"), Err(CodeError::Length(4)));
        assert!(!format!("{code:?}").contains(&shown[..5]));
        Ok(())
    }

    #[test]
    fn generated_codes_differ_and_use_the_whole_alphabet() -> Result<(), ErrorStack> {
        let mut seen = std::collections::HashSet::new();
        let mut symbols = std::collections::HashSet::new();
        for _ in 0..200 {
            let c = EnrollCode::generate()?;
            symbols.extend(c.0.chars());
            assert!(seen.insert(c.0));
        }
        assert_eq!(symbols.len(), 32);
        Ok(())
    }

    #[test]
    fn the_mac_binds_nonce_sid_and_every_bit_of_the_csr() -> Result<(), Box<dyn std::error::Error>>
    {
        let code = EnrollCode::parse("7KQ2M-9XW4T-ABCDE-00000")?;
        let key = code.key("1155000001")?;
        assert_ne!(key, code.key("1155000002")?, "a code is bound to its SID");
        let nonce = [7u8; 32];
        let csr = vec![0x30, 0x82, 0x01, 0x00, 0x42];
        let mac = enroll_mac(&key, &nonce, "1155000001", &csr)?;
        // The same inputs: the same tag (what the CA recomputes).
        assert_eq!(mac, enroll_mac(&key, &nonce, "1155000001", &csr)?);
        for i in 0..csr.len() * 8 {
            let mut flipped = csr.clone();
            flipped[i / 8] ^= 1 << (i % 8);
            assert_ne!(mac, enroll_mac(&key, &nonce, "1155000001", &flipped)?);
        }
        let mut other_nonce = nonce;
        other_nonce[31] ^= 1;
        // A replay meets a fresh nonce, so the captured tag no longer fits.
        assert_ne!(mac, enroll_mac(&key, &other_nonce, "1155000001", &csr)?);
        assert_ne!(mac, enroll_mac(&key, &nonce, "1155000002", &csr)?);
        // Fields cannot slide into each other.
        assert_ne!(
            renewal_message(&nonce, b"ab", b"c"),
            renewal_message(&nonce, b"a", b"bc")
        );
        Ok(())
    }
}
