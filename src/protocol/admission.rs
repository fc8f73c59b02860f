//! Admission control: with a shared secret configured, every connection
//! first answers an HMAC-SHA256 challenge (PROTOCOL.md §3.0) before the
//! service it came for starts.

use std::fmt;

use log::info;

use crate::crypto;
use crate::message::{Message, NONCE_LEN};

use super::error::{Internal, ProtocolError};
use super::{Expired, Output, ServiceKind, Shared, State, Step};

/// Why a connection was not admitted.
#[derive(Debug)]
#[non_exhaustive]
pub enum AdmissionError {
    /// The answer does not match the challenge.
    Wrong,
    /// Another message came instead of the answer.
    NotAnswered {
        /// That message's name.
        got: &'static str,
    },
    /// No answer came before a time limit.
    Silent(Expired),
}

impl AdmissionError {
    /// The log line, which says what the peer did.
    pub(super) fn logged(&self) -> String {
        match self {
            AdmissionError::Wrong => {
                "admission refused: wrong response to the challenge".to_string()
            }
            AdmissionError::NotAnswered { got } => {
                format!("admission refused: {got} instead of the answer to the challenge")
            }
            AdmissionError::Silent(_) => self.to_string(),
        }
    }
}

impl fmt::Display for AdmissionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdmissionError::Wrong => write!(f, "admission refused: wrong response"),
            // Not "unexpected message": a client without the secret should
            // learn that it needs one.
            AdmissionError::NotAnswered { got } => write!(
                f,
                "admission refused: this server requires the answer to its admission \
                 challenge first (got {got}); give the client the shared secret \
                 (--admission-secret-file)"
            ),
            AdmissionError::Silent(expired) => {
                write!(
                    f,
                    "admission refused: no answer to the challenge ({expired})"
                )
            }
        }
    }
}

impl std::error::Error for AdmissionError {}

/// The challenge sent, waiting for its answer.
#[derive(Debug)]
pub(super) struct Challenged {
    challenge: [u8; NONCE_LEN],
    service: ServiceKind,
}

/// Sends a fresh challenge for a connection to `service`.
pub(super) fn start(service: ServiceKind) -> Step {
    let challenge = crypto::random::<NONCE_LEN>()
        .map_err(|e| ProtocolError::Internal(Internal::new("random challenge", e)))?;
    Ok((
        State::Admission(Challenged { challenge, service }),
        Output::reply(Message::AdmissionChallenge { challenge }),
    ))
}

impl Challenged {
    /// Admits on the right answer; refuses anything else.
    pub(super) fn handle(self, msg: Message, shared: &Shared, peer: &str) -> Step {
        let Message::AdmissionResponse { mac } = msg else {
            return Err(ProtocolError::Admission(AdmissionError::NotAnswered {
                got: msg.name(),
            }));
        };
        let Some(secret) = &shared.admission_secret else {
            return Err(ProtocolError::Internal(Internal::new(
                "admission",
                "no secret",
            )));
        };
        let expected = crypto::hmac_sha256(secret, &self.challenge)
            .map_err(|e| ProtocolError::Internal(Internal::new("admission HMAC", e)))?;
        if !crypto::ct_eq(&expected, &mac) {
            return Err(ProtocolError::Admission(AdmissionError::Wrong));
        }
        info!("{peer}: admitted");
        Ok((State::first(self.service), Output::default()))
    }

    /// Silence after the challenge is a failed admission.
    pub(super) fn on_expiry(&self, expired: Expired) -> Option<ProtocolError> {
        Some(ProtocolError::Admission(AdmissionError::Silent(expired)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::*;
    use super::super::{Expiry, ServiceKind, Session, Shared};
    use crate::client::{make_csr, make_key, KeyType};
    use crate::crypto;
    use crate::message::{ErrorCode, Message};

    fn challenged(sh: &mut Shared) -> (Session, [u8; crate::message::NONCE_LEN]) {
        let (session, out) = Session::start(ServiceKind::Ca, sh);
        assert!(!out.close);
        match out.send.as_slice() {
            [frame] => match Message::decode(frame) {
                Ok(Message::AdmissionChallenge { challenge }) => (session, challenge),
                other => panic!("expected a challenge, got {other:?}"),
            },
            other => panic!("expected one frame, got {other:?}"),
        }
    }

    #[test]
    fn admission_right_and_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let secret = b"sixteen byte secret!";
        let mut sh = shared(dir.path(), Some(secret));
        let key = make_key(KeyType::Rsa2048).unwrap();
        let request = Message::CertRequest {
            csr_der: make_csr(SID, &key).unwrap(),
            auth: crate::message::EnrollAuth::Open,
        }
        .encode();

        // The right answer admits: the enrollment that follows is served.
        let (session, challenge) = challenged(&mut sh);
        let mac = crypto::hmac_sha256(secret, &challenge).unwrap();
        let answer = Message::AdmissionResponse { mac }.encode();
        let run = drive(session, &[answer, ca_hello(), request.clone()], &mut sh);
        assert!(matches!(
            run.replies[..],
            [Message::CaChallenge { .. }, Message::CertIssued { .. }]
        ));

        // A wrong answer, or none, is refused.
        let (session, _) = challenged(&mut sh);
        let wrong = Message::AdmissionResponse { mac: [0; 32] }.encode();
        let (code, reason) = refusal(&drive(session, &[wrong], &mut sh));
        assert_eq!(code, ErrorCode::AdmissionRefused);
        assert_eq!(reason, "admission refused: wrong response");
        let (session, _) = challenged(&mut sh);
        let (code, reason) = refusal(&drive(session, &[request], &mut sh));
        assert_eq!(code, ErrorCode::AdmissionRefused);
        assert!(reason.contains("(got CertRequest)"), "{reason}");
        // Silence until a time limit.
        let (session, _) = challenged(&mut sh);
        let err = session
            .on_expiry(Expiry::Idle, Duration::from_secs(10))
            .expect("silence is refused");
        assert_eq!(ErrorCode::from(&err), ErrorCode::AdmissionRefused);
        assert_eq!(
            err.to_string(),
            "admission refused: no answer to the challenge (idle timeout of 10 s reached)"
        );
    }
}
