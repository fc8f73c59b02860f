//! The transparency log (issue 21): every certificate issued and every
//! submission accepted is a leaf of one append-only Merkle tree (RFC 6962
//! hashing), whose signed checkpoints (C2SP `tlog-checkpoint` in a
//! `signed-note`, Ed25519) anyone can compare, served as C2SP
//! `tlog-tiles` and proven to the student in C2SP `tlog-proof` form.
//!
//! - [`merkle`]: the tree over stored complete subtrees; proofs and their
//!   verification.
//! - [`note`]: signed notes and Ed25519 log keys.
//! - [`checkpoint`]: tree heads and inclusion proofs as text.
//! - [`tiles`]: the tiles API's paths and bodies.
//! - [`leaf`]: what one entry says, byte by byte.
//! - [`cosignature`]: witnesses' C2SP `tlog-cosignature` lines.
//! - [`witness`]: a C2SP `tlog-witness` (`add-checkpoint`), sans I/O.

pub mod checkpoint;
pub mod cosignature;
pub mod key;
pub mod leaf;
pub mod merkle;
pub mod note;
pub mod signer;
pub mod tiles;
pub mod witness;

pub use checkpoint::{Checkpoint, CheckpointError, TlogProof};
pub use leaf::{Authorisation, Leaf, LeafError};
pub use merkle::{Hash, NodeId, TreeError};
pub use note::{NoteError, NoteSigner, NoteVerifier};
pub use signer::CheckpointSigner;
pub use tiles::Tile;
