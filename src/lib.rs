//! certboard: an online certificate authority ("CUHK") and a
//! certificate-authenticated submission server ("Blackboard"), with the
//! student client, re-implementing a university cryptography lab properly.
//!
//! Data flows one way: socket (`reactor`) → frames ([`framing`]) →
//! messages ([`message`]) → per-connection state machines ([`protocol`]) →
//! the CA ([`ca`]), the certificate check ([`verify`]) and the durable
//! [`store`] → response frames.
//!
//! What is `pub` is what the binaries, tests, benches, examples and fuzz
//! targets use; the event loop, the group commit and the file helpers are
//! the server's own business.

pub mod admin;
pub mod ca;
pub mod client;
pub mod config;
pub mod course;
pub mod crypto;
mod der;
pub mod escape;
pub mod framing;
mod fsutil;
pub mod logging;
pub mod message;
pub mod ops;
pub mod protocol;
pub mod rc4;
mod reactor;
pub mod receipt;
mod report_log;
pub mod server;
pub mod sid;
pub mod store;
#[doc(hidden)]
pub mod testing;
pub mod time;
pub mod verify;

pub use ca::{CaError, CertificateAuthority};
pub use client::{ClientError, ClientOptions};
pub use fsutil::PermError;
pub use message::{ErrorCode, Message};
pub use protocol::{ServiceKind, Session, Shared};
pub use reactor::{HttpConnLimits, Limits};
pub use server::{Role, Server, ServerConfig, ServerError};
pub use store::{SqliteStore, Storage, StoreError};
pub use verify::{CertError, Verifier};
