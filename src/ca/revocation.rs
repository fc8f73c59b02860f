//! Why a certificate was revoked: RFC 5280 §5.3.1's CRLReason, one type
//! for the operator's command (`server revoke --reason`, which clap parses
//! straight into it), the store (which keeps its RFC 5280 name), the CRL and
//! the OCSP responder (which write its code).

/// An RFC 5280 CRLReason. The operator may give the first five; the others
/// are read back should a store hold them (the CRL and OCSP still carry
/// their codes), never offered on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum RevocationReason {
    /// No reason given.
    Unspecified,
    /// Her private key is compromised.
    KeyCompromise,
    /// She left the course.
    AffiliationChanged,
    /// A new certificate replaces it.
    Superseded,
    /// No longer needed.
    CessationOfOperation,
    /// The CA's key is compromised.
    #[value(skip)]
    CaCompromise,
    /// On hold.
    #[value(skip)]
    CertificateHold,
    /// Taken off a delta CRL.
    #[value(skip)]
    RemoveFromCrl,
    /// A privilege was withdrawn.
    #[value(skip)]
    PrivilegeWithdrawn,
    /// An attribute authority's key is compromised.
    #[value(skip)]
    AaCompromise,
}

/// Every reason with its RFC 5280 name (the stored text) and code.
const TABLE: [(RevocationReason, &str, u8); 10] = [
    (RevocationReason::Unspecified, "unspecified", 0),
    (RevocationReason::KeyCompromise, "keyCompromise", 1),
    (RevocationReason::CaCompromise, "cACompromise", 2),
    (
        RevocationReason::AffiliationChanged,
        "affiliationChanged",
        3,
    ),
    (RevocationReason::Superseded, "superseded", 4),
    (
        RevocationReason::CessationOfOperation,
        "cessationOfOperation",
        5,
    ),
    (RevocationReason::CertificateHold, "certificateHold", 6),
    (RevocationReason::RemoveFromCrl, "removeFromCRL", 8),
    (
        RevocationReason::PrivilegeWithdrawn,
        "privilegeWithdrawn",
        9,
    ),
    (RevocationReason::AaCompromise, "aACompromise", 10),
];

impl RevocationReason {
    /// The RFC 5280 name: what the store keeps and the listings show.
    pub fn name(self) -> &'static str {
        TABLE
            .iter()
            .find(|(r, _, _)| *r == self)
            .map_or("unspecified", |(_, name, _)| name)
    }

    /// The RFC 5280 CRLReason code.
    pub fn code(self) -> u8 {
        TABLE
            .iter()
            .find(|(r, _, _)| *r == self)
            .map_or(0, |(_, _, code)| *code)
    }

    /// The reason a stored name names; `None` for a text that names none
    /// (such an entry carries no reasonCode, which RFC 5280 reads as
    /// unspecified).
    pub fn from_name(stored: &str) -> Option<RevocationReason> {
        TABLE
            .iter()
            .find(|(_, name, _)| *name == stored)
            .map(|(r, _, _)| *r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn every_reason_has_its_rfc_5280_name_and_code() {
        let code = |name: &str| RevocationReason::from_name(name).map(RevocationReason::code);
        assert_eq!(code("keyCompromise"), Some(1));
        assert_eq!(code("cessationOfOperation"), Some(5));
        assert_eq!(code("removeFromCRL"), Some(8));
        assert_eq!(code("because"), None);
        assert_eq!(code(""), None);
        for (r, name, c) in TABLE {
            assert_eq!((r.name(), r.code()), (name, c));
            assert_eq!(RevocationReason::from_name(name), Some(r));
        }
    }

    #[test]
    fn the_operator_is_offered_five() {
        let offered: Vec<String> = RevocationReason::value_variants()
            .iter()
            .filter_map(|r| r.to_possible_value().map(|v| v.get_name().to_string()))
            .collect();
        assert_eq!(
            offered,
            [
                "unspecified",
                "key-compromise",
                "affiliation-changed",
                "superseded",
                "cessation-of-operation"
            ]
        );
    }
}
