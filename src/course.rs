//! Running a course: who may enroll and how (the roster, enrollment codes,
//! renewal by key possession) and when reports are taken (the submission
//! window). Pure decisions over what the store says, so the sessions ask
//! one question each and the rules are tested without a socket.
//!
//! - `code`: the codes themselves and the proofs made with them (shared
//!   with the client).
//! - [`authorise`]: an enrollment by code or open enrollment, decided on the
//!   store's [`EnrollView`] of the SID, read per request (the store is the
//!   truth about the roster, for every host).
//! - [`Window`]: the submission window Blackboard checks.

pub mod code;

use std::fmt;

use openssl::error::ErrorStack;

use crate::ca::Serial;
use crate::crypto::ct_eq;
use crate::message::{EnrollAuth, EnrollPolicy, MAC_LEN, NONCE_LEN};
use crate::store::{CodeKey, EnrollView, LOCK_AFTER};
use crate::time::rfc3339;
use crate::verify::CertError;

/// How long a student certificate lasts by default, in days: a term (about
/// 15 weeks of teaching plus exams), so nobody needs a new code mid-term.
pub const DEFAULT_VALIDITY_DAYS: u32 = 180;

/// How many days after expiry a certificate still renews by default, by
/// proof of possession of its key: a student back from a break renews
/// herself instead of waiting for a new code.
pub const DEFAULT_RENEWAL_GRACE_DAYS: u32 = 14;

/// What a CA asks of a first enrollment, given whether a roster exists.
pub fn policy(roster_on: bool) -> EnrollPolicy {
    if roster_on {
        EnrollPolicy::Roster
    } else {
        EnrollPolicy::Open
    }
}

/// Why an enrollment was refused; each names the rule.
#[derive(Debug)]
#[non_exhaustive]
pub enum Refusal {
    /// A roster exists and the SID is not on it.
    NotOnRoster,
    /// The SID is locked after [`LOCK_AFTER`] wrong codes in a row.
    Locked,
    /// A roster exists and the request carries no code.
    CodeRequired,
    /// The request carries a code but none was ever issued for the SID.
    NoCodeIssued,
    /// The SID's code was already used.
    CodeUsed,
    /// The code's proof did not verify; `key` is the code it was checked
    /// against (its wrong-code count goes up).
    WrongCode {
        /// The key of the SID's current code.
        key: CodeKey,
        /// Wrong codes still allowed before the lock.
        left: u32,
    },
    /// A code was sent to a server without a roster.
    NoRoster,
    /// A renewal's proof, or the certificate it rests on, was refused.
    Renewal(RenewalError),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotOnRoster => {
                write!(f, "not on the roster: this SID may not enroll (ask the instructor)")
            }
            Refusal::Locked => write!(
                f,
                "locked: {LOCK_AFTER} wrong enrollment codes in a row; ask the instructor to \
                 reissue this SID's code"
            ),
            Refusal::CodeRequired => write!(
                f,
                "enrollment code required: a first enrollment needs the code the instructor \
                 gave you (client --code-file FILE)"
            ),
            Refusal::NoCodeIssued => write!(
                f,
                "enrollment code required: no code issued for this SID: ask the instructor"
            ),
            Refusal::CodeUsed => write!(
                f,
                "enrollment code already used: a code is good for one enrollment (renew with \
                 your current certificate, client --renew, or ask the instructor for a new code)"
            ),
            Refusal::WrongCode { left: 0, .. } => write!(
                f,
                "wrong enrollment code; this SID is now locked until the instructor reissues its code"
            ),
            Refusal::WrongCode { left, .. } => write!(
                f,
                "wrong enrollment code (for this SID, as typed?); {left} more wrong code(s) lock this SID"
            ),
            Refusal::NoRoster => write!(f, "no roster: this server issues no enrollment codes"),
            Refusal::Renewal(e) => write!(f, "renewal refused: {e}"),
        }
    }
}

impl std::error::Error for Refusal {}

/// The words for an unvouched certificate (a roster in force, and no code
/// behind it), shared by Blackboard's refusal and the CA's refusal of its
/// renewal (both code 18).
#[derive(Debug)]
pub struct Unvouched<'a>(pub &'a Serial);

impl fmt::Display for Unvouched<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "certificate serial {} is not vouched for by an enrollment code: it was issued by \
             open enrollment before the course had a roster (or renewed from such a \
             certificate), and with a roster it may neither renew nor submit; enroll with the \
             enrollment code the instructor gave you",
            self.0
        )
    }
}

/// Why a renewal was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum RenewalError {
    /// Her current certificate does not hold up (not ours, expired, not
    /// recorded, revoked, another SID's).
    Certificate(CertError),
    /// The signature does not verify with her certificate's key.
    BadSignature,
    /// A roster is in force and no code vouches for her certificate.
    Unvouched {
        /// Its serial.
        serial: Serial,
    },
    /// Her certificate expired longer ago than the renewal grace allows.
    ExpiredBeyondGrace {
        /// Its serial.
        serial: Serial,
        /// When it expired, Unix seconds.
        expired_at: i64,
        /// The grace, in days (0: renewal needs a certificate still valid).
        grace_days: u32,
    },
}

impl fmt::Display for RenewalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenewalError::Certificate(CertError::Revoked { serial, reason }) => write!(
                f,
                "the current certificate (serial {serial}) is revoked ({}); a revoked \
                 student needs a new enrollment code",
                reason.map_or("", crate::ca::RevocationReason::name)
            ),
            RenewalError::Certificate(e) => write!(f, "the current certificate: {e}"),
            RenewalError::BadSignature => write!(
                f,
                "the proof of possession does not verify with the current certificate's key"
            ),
            RenewalError::Unvouched { serial } => write!(f, "{}", Unvouched(serial)),
            RenewalError::ExpiredBeyondGrace {
                serial,
                expired_at,
                grace_days: 0,
            } => write!(
                f,
                "the current certificate (serial {serial}) expired at {}, and this course \
                 renews only certificates still valid; ask the instructor for a new \
                 enrollment code",
                rfc3339(*expired_at)
            ),
            RenewalError::ExpiredBeyondGrace {
                serial,
                expired_at,
                grace_days,
            } => write!(
                f,
                "the current certificate (serial {serial}) expired at {}, more than the \
                 {grace_days}-day renewal grace ago; ask the instructor for a new enrollment code",
                rfc3339(*expired_at)
            ),
        }
    }
}

impl std::error::Error for RenewalError {}

/// What authorised an enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Open enrollment (no roster).
    Open,
    /// The SID's code: the issuance consumes it.
    Code(CodeKey),
}

/// Decides an enrollment by code or open enrollment for the SID the CSR
/// names (renewals go through [`admits_renewal`] and the certificate
/// check). The outer `Err` is OpenSSL failing to compute the MAC.
///
/// The order is PROTOCOL.md's: roster, lock, code required, code state,
/// then the MAC in constant time.
pub fn authorise(
    view: &EnrollView,
    sid: &str,
    nonce: &[u8; NONCE_LEN],
    csr_der: &[u8],
    auth: &EnrollAuth,
) -> Result<Result<Grant, Refusal>, ErrorStack> {
    if !view.roster_on {
        return Ok(match auth {
            EnrollAuth::Open => Ok(Grant::Open),
            _ => Err(Refusal::NoRoster),
        });
    }
    if !view.on_roster {
        return Ok(Err(Refusal::NotOnRoster));
    }
    if view.code.as_ref().is_some_and(|c| c.locked()) {
        return Ok(Err(Refusal::Locked));
    }
    let mac = match auth {
        EnrollAuth::Code { mac } => mac,
        _ => return Ok(Err(Refusal::CodeRequired)),
    };
    let code = match &view.code {
        None => return Ok(Err(Refusal::NoCodeIssued)),
        Some(c) if c.used_at.is_some() => return Ok(Err(Refusal::CodeUsed)),
        Some(c) => c,
    };
    let expected: [u8; MAC_LEN] = code::enroll_mac(&code.code_key, nonce, sid, csr_der)?;
    Ok(if ct_eq(&expected, mac) {
        Ok(Grant::Code(code.code_key))
    } else {
        Err(Refusal::WrongCode {
            key: code.code_key,
            left: LOCK_AFTER.saturating_sub(code.wrong + 1),
        })
    })
}

/// Whether the roster lets this SID renew: with a roster she must still be
/// on it. A lock (wrong codes tried by someone) does not stop a student
/// who proves possession of her current key.
pub fn admits_renewal(view: &EnrollView) -> Result<(), Refusal> {
    if view.roster_on && !view.on_roster {
        return Err(Refusal::NotOnRoster);
    }
    Ok(())
}

/// When Blackboard takes reports: from `open` (inclusive) to `close`
/// (exclusive), Unix seconds; either end may be absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Reports are refused before this time.
    pub open: Option<i64>,
    /// Reports are refused from this time on.
    pub close: Option<i64>,
}

/// Why a report is outside the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Before the window opens.
    NotYetOpen {
        /// When it opens, Unix seconds.
        at: i64,
    },
    /// After the window closed.
    Closed {
        /// When it closed, Unix seconds.
        at: i64,
    },
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::NotYetOpen { at } => write!(f, "submissions open at {}", rfc3339(*at)),
            Closed::Closed { at } => write!(f, "submissions closed at {}", rfc3339(*at)),
        }
    }
}

impl std::error::Error for Closed {}

impl Window {
    /// Whether a report may be taken at `now`.
    pub fn check(&self, now: i64) -> Result<(), Closed> {
        match (self.open, self.close) {
            (Some(at), _) if now < at => Err(Closed::NotYetOpen { at }),
            (_, Some(at)) if now >= at => Err(Closed::Closed { at }),
            _ => Ok(()),
        }
    }

    /// The window for people: `always open`, `from ... until ...`.
    pub fn describe(&self) -> String {
        match (self.open, self.close) {
            (None, None) => "always open (no --submissions-open/--submissions-close)".into(),
            (Some(o), None) => format!("from {}", rfc3339(o)),
            (None, Some(c)) => format!("until {}", rfc3339(c)),
            (Some(o), Some(c)) => format!("from {} until {}", rfc3339(o), rfc3339(c)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::code::{enroll_mac, EnrollCode};
    use super::*;
    use crate::store::CodeState;

    const SID: &str = "1155000001";

    fn view(roster_on: bool, on_roster: bool, code: Option<CodeState>) -> EnrollView {
        EnrollView {
            roster_on,
            on_roster,
            code,
        }
    }

    fn code_state(key: CodeKey, used: bool, wrong: u32) -> CodeState {
        CodeState {
            code_key: key,
            issued_at: 1,
            used_at: used.then_some(2),
            wrong,
        }
    }

    fn decide(
        v: &EnrollView,
        nonce: &[u8; 32],
        csr: &[u8],
        auth: &EnrollAuth,
    ) -> Result<Grant, Refusal> {
        match authorise(v, SID, nonce, csr, auth) {
            Ok(r) => r,
            Err(e) => panic!("openssl: {e}"),
        }
    }

    #[test]
    fn every_rule_refuses_by_name() -> Result<(), Box<dyn std::error::Error>> {
        let code = EnrollCode::generate()?;
        let key = code.key(SID)?;
        let nonce = [9u8; 32];
        let csr = b"csr bytes".to_vec();
        let good = EnrollAuth::Code {
            mac: enroll_mac(&key, &nonce, SID, &csr)?,
        };
        let open = EnrollAuth::Open;
        // No roster: open enrollment; a code is refused.
        assert_eq!(
            decide(&view(false, false, None), &nonce, &csr, &open)?,
            Grant::Open
        );
        assert!(matches!(
            decide(&view(false, false, None), &nonce, &csr, &good),
            Err(Refusal::NoRoster)
        ));
        let fresh = Some(code_state(key, false, 0));
        assert!(matches!(
            decide(&view(true, false, None), &nonce, &csr, &good),
            Err(Refusal::NotOnRoster)
        ));
        assert!(matches!(
            decide(&view(true, true, fresh.clone()), &nonce, &csr, &open),
            Err(Refusal::CodeRequired)
        ));
        assert!(matches!(
            decide(&view(true, true, None), &nonce, &csr, &good),
            Err(Refusal::NoCodeIssued)
        ));
        assert!(matches!(
            decide(
                &view(true, true, Some(code_state(key, true, 0))),
                &nonce,
                &csr,
                &good
            ),
            Err(Refusal::CodeUsed)
        ));
        assert!(matches!(
            decide(
                &view(true, true, Some(code_state(key, false, LOCK_AFTER))),
                &nonce,
                &csr,
                &good
            ),
            Err(Refusal::Locked)
        ));
        assert_eq!(
            decide(&view(true, true, fresh.clone()), &nonce, &csr, &good)?,
            Grant::Code(key)
        );
        // The same tag over a flipped CSR bit, another nonce (a replay on a
        // new connection), or from another SID's code: wrong code.
        let mut flipped = csr.clone();
        flipped[0] ^= 1;
        let mut other_nonce = nonce;
        other_nonce[0] ^= 0x80;
        let others = EnrollAuth::Code {
            mac: enroll_mac(&code.key("1155000002")?, &nonce, SID, &csr)?,
        };
        for (n, c, a) in [
            (&nonce, &flipped, &good),
            (&other_nonce, &csr, &good),
            (&nonce, &csr, &others),
        ] {
            assert!(matches!(
                decide(&view(true, true, fresh.clone()), n, c, a),
                Err(Refusal::WrongCode { left: 4, .. })
            ));
        }
        assert!(matches!(
            decide(
                &view(true, true, Some(code_state(key, false, 4))),
                &other_nonce,
                &csr,
                &good
            ),
            Err(Refusal::WrongCode { left: 0, .. })
        ));
        // Renewal: the roster still decides who is a student.
        assert!(admits_renewal(&view(true, false, None)).is_err());
        assert!(admits_renewal(&view(true, true, Some(code_state(key, false, 9)))).is_ok());
        assert!(admits_renewal(&view(false, false, None)).is_ok());
        Ok(())
    }

    #[test]
    fn the_window_names_its_edge() {
        let w = Window {
            open: Some(100),
            close: Some(200),
        };
        assert_eq!(w.check(99), Err(Closed::NotYetOpen { at: 100 }));
        assert_eq!(w.check(100), Ok(()));
        assert_eq!(w.check(199), Ok(()));
        assert_eq!(w.check(200), Err(Closed::Closed { at: 200 }));
        assert_eq!(
            Closed::Closed { at: 1_764_597_600 }.to_string(),
            "submissions closed at 2025-12-01T14:00:00Z"
        );
        assert_eq!(Window::default().check(0), Ok(()));
    }
}
