//! The certificate revocation list, signed by the root: written in DER
//! here and signed by OpenSSL, like the leaf certificates (`profile.rs`),
//! because OpenSSL's CRL builder, as rust-openssl exposes it, cannot put a
//! reasonCode on an entry.
//! The reason of each entry is a [`RevocationReason`], written as its code.

use openssl::hash::MessageDigest;
use openssl::sign::Signer;

use super::{backdated_now, CaError, CertificateAuthority, RevocationReason, Serial};
use crate::der::{self, oid, tag};

/// Days a CRL stays current (its nextUpdate).
pub const CRL_VALIDITY_DAYS: u32 = 7;

/// One revoked certificate, as a CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Serial.
    pub serial: Serial,
    /// Revocation time, Unix seconds.
    pub at: i64,
    /// Why; `None` or unspecified writes no reasonCode (RFC 5280:
    /// unspecified SHOULD be absent).
    pub reason: Option<RevocationReason>,
}

/// A signed CRL and the times it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCrl {
    /// The CertificateList, DER.
    pub der: Vec<u8>,
    /// Its cRLNumber.
    pub number: u64,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: i64,
}

impl CertificateAuthority {
    /// A v2 CRL listing `revoked`, signed by the root, with the given CRL
    /// number, the root's authorityKeyIdentifier, thisUpdate now (less
    /// the backdate) and nextUpdate [`CRL_VALIDITY_DAYS`] later.
    pub fn crl(&self, revoked: &[RevokedEntry], number: u64) -> Result<SignedCrl, CaError> {
        let this_update = backdated_now();
        let next_update = crate::time::now_unix() + i64::from(CRL_VALIDITY_DAYS) * 86_400;
        let profile = &self.profile;
        let mut tbs = Vec::with_capacity(256 + 48 * revoked.len());
        der::write_nested(&mut tbs, tag::SEQUENCE, |t| {
            // version v2 (1): entries and CRL extensions are present.
            der::write_tlv(t, tag::INTEGER, &[1]);
            t.extend_from_slice(&profile.sig_alg_der);
            t.extend_from_slice(&profile.issuer_der);
            der::CivilTime::from_unix(this_update).write(t);
            der::CivilTime::from_unix(next_update).write(t);
            if !revoked.is_empty() {
                der::write_nested(t, tag::SEQUENCE, |list| {
                    for r in revoked {
                        der::write_nested(list, tag::SEQUENCE, |e| {
                            write_unsigned(e, r.serial.magnitude());
                            der::CivilTime::from_unix(r.at).write(e);
                            if let Some(code) =
                                r.reason.map(RevocationReason::code).filter(|c| *c != 0)
                            {
                                der::write_nested(e, tag::SEQUENCE, |exts| {
                                    super::profile::extension(exts, oid::CRL_REASON, false, |v| {
                                        der::write_tlv(v, tag::ENUMERATED, &[code]);
                                    });
                                });
                            }
                        });
                    }
                });
            }
            der::write_nested(t, tag::CONTEXT_0, |x| {
                der::write_nested(x, tag::SEQUENCE, |exts| {
                    exts.extend_from_slice(&profile.aki_ext_der);
                    super::profile::extension(exts, oid::CRL_NUMBER, false, |v| {
                        write_unsigned(v, &number.to_be_bytes());
                    });
                });
            });
        });
        let mut signer = Signer::new(MessageDigest::sha256(), &self.key)?;
        let signature = signer.sign_oneshot_to_vec(&tbs)?;
        let mut out = Vec::with_capacity(tbs.len() + signature.len() + 32);
        der::write_nested(&mut out, tag::SEQUENCE, |c| {
            c.extend_from_slice(&tbs);
            c.extend_from_slice(&profile.sig_alg_der);
            der::write_header(c, tag::BIT_STRING, signature.len() + 1);
            c.push(0);
            c.extend_from_slice(&signature);
        });
        Ok(SignedCrl {
            der: out,
            number,
            this_update,
            next_update,
        })
    }
}

/// A non-negative INTEGER from its big-endian magnitude: leading zero
/// bytes dropped, one put back when the top bit would read as a sign.
fn write_unsigned(out: &mut Vec<u8>, magnitude: &[u8]) {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let m = &magnitude[skip..];
    match m.first() {
        None => der::write_tlv(out, tag::INTEGER, &[0]),
        Some(b) if b & 0x80 != 0 => {
            der::write_header(out, tag::INTEGER, m.len() + 1);
            out.push(0);
            out.extend_from_slice(m);
        }
        Some(_) => der::write_tlv(out, tag::INTEGER, m),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{test_ca, TestResult};
    use super::super::CaKeyType;
    use super::*;
    use openssl::x509::{CrlNumber, ReasonCode, X509Crl};

    #[test]
    fn openssl_reads_and_verifies_the_crl_with_each_reason() -> TestResult {
        for kind in [CaKeyType::Rsa2048, CaKeyType::P256] {
            let dir = tempfile::tempdir()?;
            let ca = test_ca(dir.path(), kind)?;
            let entries = vec![
                RevokedEntry {
                    serial: Serial::parse_hex("7F3C01")?,
                    at: 1_700_000_000,
                    reason: RevocationReason::from_name("keyCompromise"),
                },
                RevokedEntry {
                    // Top bit set: a leading zero byte keeps it positive.
                    serial: Serial::parse_hex("80FF")?,
                    at: 1_700_000_100,
                    reason: RevocationReason::from_name("superseded"),
                },
                RevokedEntry {
                    serial: Serial::parse_hex("0A")?,
                    at: 1_700_000_200,
                    reason: RevocationReason::from_name("unspecified"),
                },
            ];
            let signed = ca.crl(&entries, 300)?;
            let crl = X509Crl::from_der(&signed.der)?;
            let key = ca.cert().public_key()?;
            assert!(crl.verify(&key)?, "{kind:?}");
            let number = crl.extension::<CrlNumber>()?.ok_or("no CRL number")?.1;
            assert_eq!(number.to_bn()?.to_dec_str()?.to_string(), "300");
            let revoked = crl.get_revoked().ok_or("no entries")?;
            let mut seen = Vec::new();
            for r in revoked {
                let serial = Serial::from_asn1(r.serial_number())?.to_string();
                let reason = match r.extension::<ReasonCode>()? {
                    Some((_, code)) => Some(code.get_i64()?),
                    None => None,
                };
                seen.push((serial, reason));
            }
            assert_eq!(
                seen,
                vec![
                    ("7F3C01".to_string(), Some(1)),
                    ("80FF".to_string(), Some(4)),
                    // unspecified: left out, as RFC 5280 asks.
                    ("0A".to_string(), None),
                ]
            );
            assert!(signed.next_update > signed.this_update);
        }
        Ok(())
    }

    #[test]
    fn an_empty_crl_is_valid_too() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ca = test_ca(dir.path(), CaKeyType::P256)?;
        let crl = X509Crl::from_der(&ca.crl(&[], 1)?.der)?;
        let key = ca.cert().public_key()?;
        assert!(crl.verify(&key)?);
        assert!(crl.get_revoked().is_none());
        Ok(())
    }
}
