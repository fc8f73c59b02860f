//! C2SP `tlog-tiles` paths and bodies: `tile/<L>/<N>[.p/<W>]` holds the
//! stored hashes of level `8·L`, indexes `N·256 ..`; `tile/entries/<N>`
//! the leaves themselves, each as a big-endian u16 length and its bytes.

use std::collections::HashMap;

use super::merkle::{node_hash, Hash, NodeId, TreeError};

/// Hashes in a full tile (tile height 8).
pub const TILE_WIDTH: u64 = 256;
/// The largest leaf an entry bundle can carry (its u16 length prefix).
pub const MAX_ENTRY: usize = u16::MAX as usize;

/// A resource of the tiles API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tile {
    /// Hashes: `tile/<level>/<index>[.p/<width>]`.
    Hashes {
        /// The tile level (stored-node level `8 × level`).
        level: u8,
        /// The tile's index within its level.
        index: u64,
        /// 256 for a full tile, 1–255 for a partial one.
        width: u64,
    },
    /// Entries: `tile/entries/<index>[.p/<width>]`.
    Entries {
        /// The bundle's index.
        index: u64,
        /// 256 for a full bundle, 1–255 for a partial one.
        width: u64,
    },
}

/// `<N>` as 3-digit groups, all but the last prefixed `x`.
fn encode_index(mut n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        groups.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

/// Parses `<N>` from its path elements; strict: one encoding per index
/// (no leading all-zero group).
fn parse_index(parts: &[&str]) -> Option<u64> {
    let (last, groups) = parts.split_last()?;
    let mut n: u64 = 0;
    for (i, g) in groups.iter().enumerate() {
        let digits = g.strip_prefix('x')?;
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // No leading all-zero group (one encoding per index).
        if i == 0 && digits == "000" {
            return None;
        }
        n = n.checked_mul(1000)?.checked_add(digits.parse().ok()?)?;
    }
    if last.len() != 3 || !last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n = n.checked_mul(1000)?.checked_add(last.parse().ok()?)?;
    Some(n)
}

impl Tile {
    /// Parses the part of a URL path after `tile/`.
    pub fn parse(path: &str) -> Option<Tile> {
        let (body, width) = match path.split_once(".p/") {
            Some((body, w)) => {
                if w.is_empty() || w.starts_with('0') || !w.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let w: u64 = w.parse().ok()?;
                if !(1..TILE_WIDTH).contains(&w) {
                    return None;
                }
                (body, w)
            }
            None => (path, TILE_WIDTH),
        };
        let parts: Vec<&str> = body.split('/').collect();
        let (first, rest) = parts.split_first()?;
        let index = parse_index(rest)?;
        if *first == "entries" {
            return Some(Tile::Entries { index, width });
        }
        if first.is_empty() || (first.len() > 1 && first.starts_with('0')) {
            return None;
        }
        let level: u8 = first.parse().ok()?;
        // Level 7 and above cover more than 2^64 leaves.
        if level > 7 {
            return None;
        }
        Some(Tile::Hashes {
            level,
            index,
            width,
        })
    }

    /// The path after `tile/`.
    pub fn path(&self) -> String {
        let (head, index, width) = match self {
            Tile::Hashes {
                level,
                index,
                width,
            } => (level.to_string(), *index, *width),
            Tile::Entries { index, width } => ("entries".to_string(), *index, *width),
        };
        let suffix = if width == TILE_WIDTH {
            String::new()
        } else {
            format!(".p/{width}")
        };
        format!("{head}/{}{suffix}", encode_index(index))
    }

    /// Whether a tree of `size` leaves holds this resource exactly: a full
    /// tile once the tree passes its end, a partial one only at the width
    /// the tree has now (C2SP: partial tiles exist for checkpointed sizes).
    pub fn exists_in(&self, size: u64) -> bool {
        let (level, index, width) = match *self {
            Tile::Hashes {
                level,
                index,
                width,
            } => (level, index, width),
            Tile::Entries { index, width } => (0, index, width),
        };
        // Nodes at stored level 8·level in a tree of `size` leaves.
        let shift = 8 * u32::from(level);
        let nodes = if shift >= 64 { 0 } else { size >> shift };
        let Some(start) = index.checked_mul(TILE_WIDTH) else {
            return false;
        };
        if width == TILE_WIDTH {
            start
                .checked_add(TILE_WIDTH)
                .is_some_and(|end| end <= nodes)
        } else {
            nodes.checked_sub(start) == Some(width)
        }
    }

    /// The stored nodes a hash tile lists, in order (leaf indexes for an
    /// entry bundle).
    pub fn nodes(&self) -> Vec<NodeId> {
        match *self {
            Tile::Hashes {
                level,
                index,
                width,
            } => (0..width)
                .map(|i| NodeId::new(8 * level, index * TILE_WIDTH + i))
                .collect(),
            Tile::Entries { index, width } => (0..width)
                .map(|i| NodeId::new(0, index * TILE_WIDTH + i))
                .collect(),
        }
    }
}

/// The hash tile holding the level-`8L` nodes a stored node is made of,
/// in a tree of `size` leaves (full, or partial at the width that size
/// gives); `None` when the node is not complete in that tree.
pub fn tile_of(id: NodeId, size: u64) -> Option<Tile> {
    let level = id.level / 8;
    let rise = u32::from(id.level % 8);
    let first = id.index.checked_shl(rise)?;
    let count = 1u64 << rise;
    let nodes = size.checked_shr(8 * u32::from(level)).unwrap_or(0);
    if first.checked_add(count)? > nodes {
        return None;
    }
    let index = first / TILE_WIDTH;
    let start = index * TILE_WIDTH;
    let width = (nodes - start).min(TILE_WIDTH);
    Some(Tile::Hashes {
        level,
        index,
        width,
    })
}

/// Stored nodes read from hash tiles (a verifier's view of the log): a
/// node at level `8L + r` is the root of `2^r` consecutive hashes of a
/// level-`L` tile. `tiles` maps each tile [`tile_of`] names to its bytes.
pub fn nodes_from_tiles(
    ids: &[NodeId],
    size: u64,
    tiles: &HashMap<Tile, Vec<u8>>,
) -> Result<Vec<Hash>, TreeError> {
    ids.iter()
        .map(|&id| {
            let tile = tile_of(id, size).ok_or(TreeError::MissingNode(id))?;
            let bytes = tiles.get(&tile).ok_or(TreeError::MissingNode(id))?;
            let rise = u32::from(id.level % 8);
            let first = (id.index << rise) as usize % TILE_WIDTH as usize;
            let count = 1usize << rise;
            let mut level: Vec<Hash> = bytes
                .get(first * 32..(first + count) * 32)
                .ok_or(TreeError::MissingNode(id))?
                .chunks_exact(32)
                .map(|c| {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(c);
                    h
                })
                .collect();
            while level.len() > 1 {
                level = level
                    .chunks_exact(2)
                    .map(|pair| node_hash(&pair[0], &pair[1]))
                    .collect();
            }
            level.pop().ok_or(TreeError::MissingNode(id))
        })
        .collect()
}

/// An entry bundle: each leaf as a big-endian u16 length, then its bytes.
pub fn entry_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let len = u16::try_from(e.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&e[..usize::from(len)]);
    }
    out
}

/// Splits an entry bundle back into its entries; `None` if it does not
/// parse exactly.
pub fn split_bundle(mut bundle: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !bundle.is_empty() {
        let (len, rest) = bundle.split_at_checked(2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let (entry, rest) = rest.split_at_checked(len)?;
        out.push(entry);
        bundle = rest;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_spec_examples() {
        let t = Tile::Hashes {
            level: 0,
            index: 1_234_067,
            width: 256,
        };
        assert_eq!(t.path(), "0/x001/x234/067");
        assert_eq!(Tile::parse("0/x001/x234/067"), Some(t));
        let p = Tile::Entries {
            index: 5,
            width: 17,
        };
        assert_eq!(p.path(), "entries/005.p/17");
        assert_eq!(Tile::parse("entries/005.p/17"), Some(p));
        assert_eq!(
            Tile::parse("2/000"),
            Some(Tile::Hashes {
                level: 2,
                index: 0,
                width: 256
            })
        );
        for bad in [
            "0/5",
            "0/0005",
            "0/x000/005",
            "0/005.p/0",
            "0/005.p/256",
            "0/005.p/07",
            "00/005",
            "8/000",
            "0/x1/005",
            "0/005/",
            "0/005.p/",
            "entries/5",
            "0/x001",
            "",
        ] {
            assert_eq!(Tile::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn which_tiles_a_tree_of_70000_has() {
        // The spec's example: 273 full level-0 tiles, a partial one of
        // width 112, one full level-1 tile, a partial level-1 of 17, a
        // partial level-2 of 1.
        let size = 70_000;
        let h = |level, index, width| Tile::Hashes {
            level,
            index,
            width,
        };
        assert!(h(0, 272, 256).exists_in(size));
        assert!(!h(0, 273, 256).exists_in(size));
        assert!(h(0, 273, 112).exists_in(size));
        assert!(!h(0, 273, 111).exists_in(size));
        assert!(h(1, 0, 256).exists_in(size));
        assert!(h(1, 1, 17).exists_in(size));
        assert!(h(2, 0, 1).exists_in(size));
        assert!(!h(3, 0, 1).exists_in(size));
        assert!(Tile::Entries {
            index: 273,
            width: 112
        }
        .exists_in(size));
        assert!(!h(0, u64::MAX, 256).exists_in(size));
    }

    #[test]
    fn proofs_computed_from_tiles_match_the_stored_nodes() -> Result<(), TreeError> {
        use crate::tlog::merkle::{append, consistency_proof, inclusion_proof, leaf_hash, root};
        let size = 70_000u64;
        let leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let stored: HashMap<NodeId, Hash> =
            append(0, &leaves, |_: &[NodeId]| Ok::<_, TreeError>(Vec::new()))?
                .into_iter()
                .collect();
        let from_store = |ids: &[NodeId]| -> Result<Vec<Hash>, TreeError> {
            ids.iter()
                .map(|id| stored.get(id).copied().ok_or(TreeError::MissingNode(*id)))
                .collect()
        };
        // Serve every tile a tree of this size has, as the server would.
        let mut tiles = HashMap::new();
        for level in 0..3u8 {
            let nodes = size >> (8 * level);
            for index in 0..=nodes / TILE_WIDTH {
                let start = index * TILE_WIDTH;
                let width = (nodes - start).min(TILE_WIDTH);
                if width == 0 {
                    continue;
                }
                let t = Tile::Hashes {
                    level,
                    index,
                    width,
                };
                assert!(t.exists_in(size));
                let body: Vec<u8> = from_store(&t.nodes())?.concat();
                tiles.insert(t, body);
            }
        }
        let from_tiles = |ids: &[NodeId]| nodes_from_tiles(ids, size, &tiles);
        assert_eq!(root(size, from_tiles)?, root(size, from_store)?);
        for index in [0, 255, 256, 65_535, 65_536, 69_999] {
            assert_eq!(
                inclusion_proof(index, size, from_tiles)?,
                inclusion_proof(index, size, from_store)?
            );
        }
        for old in [1, 256, 1000, 65_536, 69_998] {
            assert_eq!(
                consistency_proof(old, size, from_tiles)?,
                consistency_proof(old, size, from_store)?
            );
        }
        Ok(())
    }

    #[test]
    fn bundles_round_trip_and_truncation_is_refused() {
        let entries: Vec<&[u8]> = vec![b"", b"one", &[0u8; 300]];
        let b = entry_bundle(entries.iter().copied());
        assert_eq!(split_bundle(&b), Some(entries));
        assert_eq!(split_bundle(&b[..b.len() - 1]), None);
    }
}
