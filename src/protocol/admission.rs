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
    pub(super) fn on_message(self, msg: Message, shared: &Shared, peer: &str) -> Step {
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
}
