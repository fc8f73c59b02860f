//! The CA's session in our protocol: a CSR in, the certificate and the root
//! out, once the certificate is recorded.

use log::info;

use crate::message::Message;
use crate::store::Origin;
use crate::time::time_text;

use super::error::ProtocolError;
use super::{cert_record, Output, Shared, State, Step};

/// Where a CA connection is.
#[derive(Debug)]
pub(super) enum Enrollment {
    /// Waiting for the enrollment request.
    AwaitRequest,
    /// An enrollment answered; the client may send another on the same
    /// connection (or close).
    AwaitNext,
}

/// Issues for one CSR. A connection may carry several enrollments in turn
/// (a client enrolling many students saves a TCP handshake each); a refusal
/// ends it.
pub(super) fn enroll(csr_der: &[u8], shared: &mut Shared, peer: &str) -> Step {
    let ca = shared.ca.as_ref().ok_or(ProtocolError::NotACa)?;
    let issued = ca.issue(csr_der).map_err(ProtocolError::enrollment)?;
    info!(
        "{peer}: signed certificate serial {} for SID {} (valid until {}); sent once recorded",
        issued.serial_hex,
        issued.sid,
        time_text(issued.not_after)
    );
    let reply = Message::EnrollResponse {
        cert_der: issued.der.clone(),
        ca_cert_der: ca.cert_der().to_vec(),
    };
    let out = Output {
        send: vec![reply.encode()],
        persist: Some(cert_record(issued, Origin::Certboard)),
        close: false,
        ..Output::default()
    };
    Ok((State::Enrollment(Enrollment::AwaitNext), out))
}
