//! certboard: an online certificate authority ("CUHK") and a
//! certificate-authenticated submission server ("Blackboard"), with the
//! student client, re-implementing a university cryptography lab properly.
//!
//! Data flows one way. A frame connection: socket (the `reactor`, the only
//! code that touches sockets) → frames ([`framing`]) → messages
//! ([`message`]) → the connection's [`Session`] ([`protocol`]: admission,
//! then enrollment, Blackboard or the legacy lab protocol), which asks the
//! course's rules ([`course`]: roster, enrollment codes, renewal, the
//! window), the CA ([`ca`]) and the certificate check ([`verify`]), and
//! reads the [`store`] → an `Output`: frames to send, and maybe a record
//! to persist or a job for the worker pool. Records go to the commit
//! thread (the reactor's group commit, one writer for every reactor), and
//! a reply waits until its record is durable. An HTTP connection: socket
//! → the HTTP codec ([`ops::http`]) → [`ops`] (OCSP, CRL, health,
//! metrics), answered from the pki and the store, never a session. With a
//! network store the loops read through the bounded wrapper
//! ([`store::Bounded`]): a database that stops answering costs a loop a
//! short wait and the request a "try later", never a stall.
//!
//! Modules are private unless something outside the crate needs them as
//! modules; the reason is beside each `pub mod`. The types the binaries
//! and tests use most are re-exported at the bottom.

// `bin/server`'s admin commands (revoke, roster, codes, exports), also run
// by the multi-host and PostgreSQL tests.
pub mod admin;
// The CA, its names and revocation reasons: benches, examples, tests, fuzz.
pub mod ca;
// The student client: `bin/client`, and every end-to-end test drives it.
pub mod client;
// `bin/client`'s secrets file.
pub mod config;
// Enrollment codes and the window: `bin/server`, tests, fuzz.
pub mod assignment;
pub mod course;
// Key derivation, report crypto, fingerprints: the adversary, the load
// generator and tests build wire messages with it.
pub mod crypto;
mod der;
// `bin/client` prints peer text through it.
pub mod escape;
// What a handed-in file may be called (client and server alike).
pub mod filename;
// The framing: examples and tests speak the wire by hand.
pub mod framing;
mod fsutil;
// The log setup both binaries call.
pub mod logging;
// The messages: examples, tests and fuzz encode and decode them.
pub mod message;
// The HTTP side; the fuzz targets drive its codec (`ops::http`) and the
// OCSP core (`ops::ocsp`).
pub mod ops;
// Sessions driven in-process by the session fuzz target, the benches and
// `examples/worst_case`; the legacy wire parsers are fuzzed.
pub mod protocol;
// RC4: its `BadKeyLength` is in `protocol::legacy`'s public signatures.
pub mod rc4;
mod reactor;
// `bin/client` checks receipts with it; fuzzed.
pub mod receipt;
mod report_log;
// `bin/server` assembles the server from it.
pub mod server;
// SID rules: `bin/client`, fuzz.
pub mod sid;
/// The staff web interface (issue 23).
pub mod staff;
// Stores opened by `bin/server`, the benches and the store tests.
pub mod store;
// Shared fixtures (test CA, `Shared`, certificates) for unit tests,
// integration tests, benches and fuzz targets; not an API.
#[doc(hidden)]
pub mod testing;
// Time text forms: `bin/server`, tests, fuzz.
pub mod time;
// The transparency log (issue 21): server, client, admin and tests.
pub mod tlog;
// The certificate check: `examples/worst_case`, fuzz.
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
