//! Legacy mode: the original lab's student client (see PROTOCOL.md).

use crate::service::{Output, ServiceKind, Shared};

/// Whether a first frame is one of the original client's commands.
pub fn is_command(payload: &[u8]) -> bool {
    matches!(payload, b"1" | b"2" | b"q" | b"Q")
}

/// A legacy connection's state.
#[derive(Debug)]
pub struct LegacySession {
    service: ServiceKind,
}

impl LegacySession {
    /// A new legacy connection on `service`'s listener.
    pub fn start(service: ServiceKind) -> LegacySession {
        LegacySession { service }
    }

    /// Feeds one frame; `None` means the exchange is over.
    pub fn on_frame(
        self,
        _payload: &[u8],
        _shared: &mut Shared,
        _peer: &str,
    ) -> (Option<LegacySession>, Output) {
        let _ = self.service;
        (
            None,
            Output {
                close: true,
                ..Output::default()
            },
        )
    }
}
