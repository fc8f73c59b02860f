//! Running a course: who may enroll and how (the roster, enrollment codes,
//! renewal by key possession) and when reports are taken (the submission
//! window). Pure decisions over what the store says, so the sessions ask
//! one question each and the rules are tested without a socket.
//!
//! - `code`: the codes themselves and the proofs made with them (shared
//!   with the client).
//! - [`authorise`]: an enrollment by code or open enrollment, decided on the
//!   store's [`EnrollView`] of the SID, read per request (the store is the
//!   truth about the roster, for every host), and answered alike whether
//!   or not the SID is on the roster.
//! - [`guess_source`]: where a code guess is counted from ([`GuessLimits`]
//!   bound guesses per source and per SID and source; the store counts
//!   each guess before it is checked).
//! - [`Window`]: the submission window Blackboard checks.

pub mod code;

use std::fmt;
use std::net::IpAddr;

use openssl::error::ErrorStack;

use crate::ca::Serial;
use crate::crypto::ct_eq;
use crate::message::{EnrollAuth, EnrollPolicy, MAC_LEN, NONCE_LEN};
use crate::store::{CodeKey, EnrollView};

pub use crate::store::GuessLimits;
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
    /// A roster exists and the SID is not on it: said only to a renewal
    /// that proved possession of a certificate for the SID, never to a
    /// caller without credentials.
    NotOnRoster,
    /// A roster exists and the request carries no code (the same answer
    /// for every SID, on the roster or not, enrolled or not).
    CodeRequired,
    /// The SID's code was already used: said only to a request whose proof
    /// verifies with that code.
    CodeUsed,
    /// The code's proof did not verify, or the SID has no code, or is not
    /// on the roster: one answer for all three, so that a caller without
    /// the code learns nothing about the roster.
    WrongCode,
    /// A code was sent to a server without a roster.
    NoRoster,
    /// A renewal's proof, or the certificate it rests on, was refused.
    Renewal(RenewalError),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotOnRoster => {
                write!(
                    f,
                    "not on the roster: this SID may not enroll (ask the instructor)"
                )
            }
            Refusal::CodeRequired => write!(
                f,
                "enrollment code required: this course has a roster, so enrolling needs the \
                 code the instructor gave you (client --code-file FILE); with a current \
                 certificate, renew instead (client --renew)"
            ),
            Refusal::CodeUsed => write!(
                f,
                "enrollment code already used: a code is good for one enrollment (renew with \
                 your current certificate, client --renew, or ask the instructor for a new code)"
            ),
            Refusal::WrongCode => write!(
                f,
                "wrong enrollment code (for this SID, as typed?); guesses are limited per \
                 address (PROTOCOL.md), never locked: the right code still works"
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
/// check). The outer `Err` is OpenSSL failing to compute the MAC. With a
/// roster, a request carrying a code must have been counted as a guess
/// before this is asked.
///
/// PROTOCOL.md's order: no roster, open; no code, 12 (any SID); then the
/// MAC in constant time, against the SID's code or, for a SID without one
/// or off the roster, against a stand-in key, so that the answer (13) and
/// the work are the same; a right MAC for a spent code, 14.
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
    let mac = match auth {
        EnrollAuth::Code { mac } => mac,
        _ => return Ok(Err(Refusal::CodeRequired)),
    };
    let code = view.code.as_ref().filter(|_| view.on_roster);
    // A stand-in no code derives (HKDF output is never all zeros but with
    // probability 2^-256), checked all the same.
    let key = code.map_or([0u8; 32], |c| c.code_key);
    let expected: [u8; MAC_LEN] = code::enroll_mac(&key, nonce, sid, csr_der)?;
    let right = ct_eq(&expected, mac);
    Ok(match code {
        Some(c) if right && c.used_at.is_some() => Err(Refusal::CodeUsed),
        Some(c) if right => Ok(Grant::Code(c.code_key)),
        _ => Err(Refusal::WrongCode),
    })
}

/// Whether a request is a code guess, to be counted before it is checked:
/// a code sent to a course with a roster.
pub fn is_guess(view: &EnrollView, auth: &EnrollAuth) -> bool {
    view.roster_on && matches!(auth, EnrollAuth::Code { .. })
}

/// The source a code guess is counted under: the IPv4 address, or the
/// IPv6 /64 (one subscriber's usual allocation, so that rotating through
/// it is one source); an IPv4-mapped IPv6 address is the IPv4 address.
pub fn guess_source(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
    }
}

/// Whether the roster lets this SID renew, asked only once her proof of
/// possession holds (so that the answer tells a stranger nothing): with a
/// roster she must still be on it. Code guesses against her SID, by
/// anyone, never stop her renewing or submitting.
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

    fn code_state(key: CodeKey, used: bool) -> CodeState {
        CodeState {
            code_key: key,
            issued_at: 1,
            used_at: used.then_some(2),
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
        let fresh = Some(code_state(key, false));
        assert_eq!(
            decide(&view(true, true, fresh.clone()), &nonce, &csr, &good)?,
            Grant::Code(key)
        );
        // No code: 12 for every SID, on the roster or not, enrolled or not.
        for v in [
            view(true, true, fresh.clone()),
            view(true, true, Some(code_state(key, true))),
            view(true, false, None),
        ] {
            assert!(matches!(
                decide(&v, &nonce, &csr, &open),
                Err(Refusal::CodeRequired)
            ));
        }
        // A code for a SID off the roster or without a code is as wrong as
        // a wrong one: 13, never 11 or 12.
        assert!(matches!(
            decide(&view(true, false, None), &nonce, &csr, &good),
            Err(Refusal::WrongCode)
        ));
        assert!(matches!(
            decide(&view(true, true, None), &nonce, &csr, &good),
            Err(Refusal::WrongCode)
        ));
        // A spent code is said to be spent only to its holder.
        let used = Some(code_state(key, true));
        assert!(matches!(
            decide(&view(true, true, used.clone()), &nonce, &csr, &good),
            Err(Refusal::CodeUsed)
        ));
        // The same tag over a flipped CSR bit, another nonce (a replay on a
        // new connection), or from another SID's code: wrong code, spent
        // code or not.
        let mut flipped = csr.clone();
        flipped[0] ^= 1;
        let mut other_nonce = nonce;
        other_nonce[0] ^= 0x80;
        let others = EnrollAuth::Code {
            mac: enroll_mac(&code.key("1155000002")?, &nonce, SID, &csr)?,
        };
        for state in [fresh.clone(), used] {
            for (n, c, a) in [
                (&nonce, &flipped, &good),
                (&other_nonce, &csr, &good),
                (&nonce, &csr, &others),
            ] {
                assert!(matches!(
                    decide(&view(true, true, state.clone()), n, c, a),
                    Err(Refusal::WrongCode)
                ));
            }
        }
        // The texts are the SID's business only through the SID.
        assert_eq!(
            Refusal::WrongCode.to_string(),
            "wrong enrollment code (for this SID, as typed?); guesses are limited per address \
             (PROTOCOL.md), never locked: the right code still works"
        );
        // Renewal: the roster still decides who is a student.
        assert!(admits_renewal(&view(true, false, None)).is_err());
        assert!(admits_renewal(&view(true, true, Some(code_state(key, false)))).is_ok());
        assert!(admits_renewal(&view(false, false, None)).is_ok());
        Ok(())
    }

    #[test]
    fn guesses_are_counted_per_address_and_per_ipv6_64() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(guess_source(v4), "192.0.2.7");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(guess_source(mapped), "192.0.2.7");
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb:cccc:dddd:eeee".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(guess_source(a), "2001:db8:1:2::/64");
        assert_eq!(guess_source(a), guess_source(b));
        assert_ne!(guess_source(a), guess_source(c));
        // Only a code sent to a course with a roster is a guess.
        let code = EnrollAuth::Code { mac: [0; 32] };
        assert!(is_guess(&view(true, false, None), &code));
        assert!(!is_guess(&view(false, false, None), &code));
        assert!(!is_guess(&view(true, true, None), &EnrollAuth::Open));
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
