//! The transparency log's read API on the HTTP listener, as C2SP
//! `tlog-tiles`: `/log/checkpoint` (the signed tree head),
//! `/log/tile/<L>/<N>[.p/<W>]` (hashes) and `/log/tile/entries/<N>[.p/<W>]`
//! (leaves). A tile is one bounded read (at most 256 stored hashes or
//! entries), so a client fetching tiles takes one turn of the loop per
//! tile, like any other request.

use std::sync::Arc;

use crate::ops::http::Response;
use crate::store::{Storage, StoreError};
use crate::tlog::tiles::{entry_bundle, Tile, TILE_WIDTH};
use crate::tlog::CheckpointSigner;

/// Full tiles never change: cached for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The checkpoint and partial tiles move on: a few seconds at most.
const SHORT: &str = "public, max-age=5";

/// The log's endpoints of one process (shared by its reactors).
#[derive(Debug, Clone)]
pub struct LogApi {
    signer: Arc<CheckpointSigner>,
}

fn unavailable(e: &StoreError) -> Response {
    log::warn!("/log: the store did not answer: {e}");
    Response::new(
        503,
        b"the store did not answer; try again shortly\n".to_vec(),
    )
    .content_type("text/plain; charset=utf-8")
    .cache_control("no-store")
}

fn not_found(why: &str) -> Response {
    Response::new(404, format!("{why}\n").into_bytes())
        .content_type("text/plain; charset=utf-8")
        .cache_control("no-store")
}

impl LogApi {
    /// Serves the log signed by `signer`.
    pub fn new(signer: Arc<CheckpointSigner>) -> LogApi {
        LogApi { signer }
    }

    /// The signed checkpoint of the store's current tree.
    pub fn checkpoint(&self, store: &mut dyn Storage) -> Result<String, StoreError> {
        let head = store.log_head()?;
        self.signer
            .checkpoint(head.size, head.root)
            .map_err(|e| StoreError::Incompatible(format!("signing the checkpoint: {e}")))
    }

    /// Answers a path under `/log/` (`rest` is what follows it).
    pub fn handle(&self, rest: &str, store: &mut dyn Storage) -> Response {
        if rest == "checkpoint" {
            return match self.checkpoint(store) {
                Ok(note) => Response::new(200, note.into_bytes())
                    .content_type("text/plain; charset=utf-8")
                    .cache_control(SHORT),
                Err(e) => unavailable(&e),
            };
        }
        let Some(tile) = rest.strip_prefix("tile/").and_then(Tile::parse) else {
            return not_found("no such log resource: try /log/checkpoint or /log/tile/<L>/<N>");
        };
        let size = match store.log_head() {
            Ok(h) => h.size,
            Err(e) => return unavailable(&e),
        };
        if !tile.exists_in(size) {
            return not_found("no such tile in the log's current tree");
        }
        let body = match tile {
            Tile::Hashes { .. } => store.log_nodes(&tile.nodes()).map(|h| h.concat()),
            Tile::Entries { index, width } => store
                .log_entries(index * TILE_WIDTH, index * TILE_WIDTH + width)
                .map(|e| entry_bundle(e.iter().map(Vec::as_slice))),
        };
        let full = matches!(tile, Tile::Hashes { width, .. } | Tile::Entries { width, .. } if width == TILE_WIDTH);
        match body {
            Ok(body) => Response::new(200, body)
                .content_type("application/octet-stream")
                .cache_control(if full { IMMUTABLE } else { SHORT }),
            Err(e) => unavailable(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Origin, Record, ReportRecord, SqliteStore};
    use crate::tlog::merkle::{leaf_hash, verify_inclusion};
    use crate::tlog::tiles::{nodes_from_tiles, split_bundle};
    use openssl::pkey::PKey;
    use std::collections::HashMap;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn report(id: u64) -> Result<Record, crate::ca::SerialError> {
        Ok(Record::Report(ReportRecord {
            receipt_id: id,
            sid: "1155000001".into(),
            serial: crate::ca::Serial::parse_hex("0A")?,
            received_at: 100 + id as i64,
            text: format!("report {id}"),
            origin: Origin::Certboard,
            assignment: crate::store::DEFAULT_ASSIGNMENT.into(),
            late_by: None,
        }))
    }

    #[test]
    fn tiles_and_checkpoint_prove_every_entry() -> TestResult {
        let mut store = SqliteStore::in_memory()?;
        for id in 1..=300u64 {
            store.commit(&[report(id)?])?;
        }
        let key = crate::tlog::NoteSigner::new("test/log", PKey::generate_ed25519()?)?;
        let verifier = key.verifier()?;
        let api = LogApi::new(Arc::new(CheckpointSigner::new(key)));
        let cp = api.handle("checkpoint", &mut store);
        assert_eq!(cp.status, 200);
        let note = String::from_utf8(cp.body)?;
        let head = crate::tlog::Checkpoint::open(&note, &verifier, "test/log")?;
        assert_eq!(head.size, 300);
        // The tiles a verifier needs for this size.
        let mut tiles = HashMap::new();
        for t in [
            Tile::Hashes {
                level: 0,
                index: 0,
                width: 256,
            },
            Tile::Hashes {
                level: 0,
                index: 1,
                width: 44,
            },
            Tile::Hashes {
                level: 1,
                index: 0,
                width: 1,
            },
        ] {
            let r = api.handle(&format!("tile/{}", t.path()), &mut store);
            assert_eq!(r.status, 200, "{}", t.path());
            tiles.insert(t, r.body);
        }
        let entries = api.handle("tile/entries/001.p/44", &mut store);
        assert_eq!(entries.status, 200);
        let bundle = split_bundle(&entries.body).ok_or("bad bundle")?;
        assert_eq!(bundle.len(), 44);
        let index = 256 + 43;
        let proof =
            crate::tlog::merkle::inclusion_proof(index, 300, |ids: &[crate::tlog::NodeId]| {
                nodes_from_tiles(ids, 300, &tiles)
            })?;
        assert!(verify_inclusion(
            &leaf_hash(bundle[43]),
            index,
            300,
            &proof,
            &head.root
        ));
        // A tile the tree does not have yet, or at another width, is 404.
        assert_eq!(api.handle("tile/0/001.p/45", &mut store).status, 404);
        assert_eq!(api.handle("tile/0/001", &mut store).status, 404);
        assert_eq!(api.handle("tile/0/1", &mut store).status, 404);
        assert_eq!(api.handle("nothing", &mut store).status, 404);
        Ok(())
    }
}
