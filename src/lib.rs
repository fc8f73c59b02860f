//! certboard: an online certificate authority ("CUHK") and a
//! certificate-authenticated submission server ("Blackboard"), with the
//! student client, re-implementing a university cryptography lab properly.
//!
//! Data flows one way: socket ([`reactor`]) → frames ([`framing`]) →
//! messages ([`message`]) → per-connection state machines ([`service`],
//! [`legacy`]) → the CA ([`ca`]), the certificate check ([`verify`]) and the
//! durable [`store`] → response frames.

pub mod admin;
pub mod ca;
pub mod client;
pub mod commit;
pub mod config;
pub mod crypto;
pub mod der;
pub mod framing;
pub mod fsutil;
pub mod http;
pub mod legacy;
pub mod message;
pub mod metrics;
pub mod ocsp;
pub mod rc4;
pub mod reactor;
pub mod server;
pub mod service;
pub mod sid;
pub mod store;
pub mod verify;
