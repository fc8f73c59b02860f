//! The certificate revocation list, signed by the root.

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::x509::extension::AuthorityKeyIdentifier;
use openssl::x509::{CrlNumber, X509Builder, X509Crl, X509CrlBuilder, X509RevokedBuilder};

use super::{backdated_now, CaError, CertificateAuthority, Serial};

/// Days a CRL stays current (its nextUpdate).
pub const CRL_VALIDITY_DAYS: u32 = 7;

impl CertificateAuthority {
    /// A CRL listing `revoked` (serial hex, revocation time), signed by the
    /// root, with the given CRL number.
    pub fn crl(&self, revoked: &[(String, i64)], number: u64) -> Result<X509Crl, CaError> {
        let mut b = X509CrlBuilder::new()?;
        b.set_issuer_name(self.cert.subject_name())?;
        b.set_last_update(Asn1Time::from_unix(backdated_now())?.as_ref())?;
        b.set_next_update(Asn1Time::days_from_now(CRL_VALIDITY_DAYS)?.as_ref())?;
        let dummy = X509Builder::new()?;
        let ctx = dummy.x509v3_context(Some(&self.cert), None);
        b.append_extension(AuthorityKeyIdentifier::new().keyid(true).build(&ctx)?)?;
        b.append_extension(CrlNumber::new(BigNum::from_dec_str(&number.to_string())?)?.build()?)?;
        for (serial_hex, at) in revoked {
            let serial = Serial::parse_hex(serial_hex)?.to_bn()?;
            let mut r = X509RevokedBuilder::new()?;
            r.set_serial_number(serial.to_asn1_integer()?.as_ref())?;
            r.set_revocation_date(Asn1Time::from_unix(*at)?.as_ref())?;
            b.add_revoked(r.build())?;
        }
        b.sort()?;
        b.sign(&self.key, MessageDigest::sha256())?;
        Ok(b.build()?)
    }
}
