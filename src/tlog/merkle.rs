//! RFC 6962's Merkle tree over stored complete subtrees.
//!
//! The log keeps the hash of every *complete* subtree: the node at level
//! `l`, index `i` covers leaves `[i·2^l, (i+1)·2^l)` (about 2n hashes for n
//! leaves, as Go's `sumdb/tlog` stores them). Every other hash the tree
//! needs (the root of a size that is not a power of two, a proof's path,
//! a tile) is computed from a handful of those, so appending never rewrites
//! a stored hash and a tile is a range of one level.
//!
//! Each computation runs in two passes over the same code: the first
//! records which stored nodes it needs (the shape of the tree never depends
//! on hash values), the caller fetches them in one query, the second
//! computes. So a store is asked once per proof, not once per node.

use std::collections::HashMap;
use std::fmt;

use openssl::sha::Sha256;

/// A SHA-256 Merkle tree hash.
pub type Hash = [u8; 32];

/// One stored node: the complete subtree at `level` whose leaves are
/// `[index << level, (index + 1) << level)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves (0: a leaf hash).
    pub level: u8,
    /// Position among the nodes of that level.
    pub index: u64,
}

impl NodeId {
    /// The node at `level`, `index`.
    pub fn new(level: u8, index: u64) -> NodeId {
        NodeId { level, index }
    }
}

/// RFC 6962 §2.1: the hash of a leaf, `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(&[0x00]);
    h.update(data);
    h.finish()
}

/// RFC 6962 §2.1: the hash of an interior node, `SHA-256(0x01 || l || r)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(&[0x01]);
    h.update(left);
    h.update(right);
    h.finish()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::new().finish()
}

/// A request the tree cannot answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeError {
    /// An index or size beyond the tree.
    OutOfRange {
        /// What was asked for, e.g. "leaf 7".
        what: String,
        /// The tree's size.
        size: u64,
    },
    /// A stored node the computation needed was not given.
    MissingNode(NodeId),
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeError::OutOfRange { what, size } => {
                write!(f, "{what} is outside a tree of size {size}")
            }
            TreeError::MissingNode(id) => write!(
                f,
                "stored hash of level {} index {} is missing",
                id.level, id.index
            ),
        }
    }
}

impl std::error::Error for TreeError {}

/// Where the second pass reads stored nodes (the first pass only records).
enum Lookup<'a> {
    Record(&'a mut Vec<NodeId>),
    Read(&'a HashMap<NodeId, Hash>),
}

impl Lookup<'_> {
    fn get(&mut self, id: NodeId) -> Result<Hash, TreeError> {
        match self {
            Lookup::Record(ids) => {
                ids.push(id);
                Ok([0; 32])
            }
            Lookup::Read(map) => map.get(&id).copied().ok_or(TreeError::MissingNode(id)),
        }
    }
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[lo:hi]) for a range RFC 6962's recursion produces: a complete,
/// aligned subtree is one stored node; anything else splits at the largest
/// power of two below its width.
fn range_hash(lo: u64, hi: u64, at: &mut Lookup<'_>) -> Result<Hash, TreeError> {
    let width = hi - lo;
    if width.is_power_of_two() && lo.is_multiple_of(width) {
        return at.get(NodeId::new(
            width.trailing_zeros() as u8,
            lo >> width.trailing_zeros(),
        ));
    }
    let k = split(width);
    let left = range_hash(lo, lo + k, at)?;
    let right = range_hash(lo + k, hi, at)?;
    // The first pass only learns which nodes are read: hashing its
    // placeholders would double the SHA-256 work of every root and proof.
    if matches!(at, Lookup::Record(_)) {
        return Ok([0; 32]);
    }
    Ok(node_hash(&left, &right))
}

/// RFC 6962 §2.1.1 PATH(m, D[lo:hi]), appended to `out` leaf side first.
fn path(
    m: u64,
    lo: u64,
    hi: u64,
    at: &mut Lookup<'_>,
    out: &mut Vec<Hash>,
) -> Result<(), TreeError> {
    if hi - lo <= 1 {
        return Ok(());
    }
    let k = split(hi - lo);
    if m < k {
        path(m, lo, lo + k, at, out)?;
        out.push(range_hash(lo + k, hi, at)?);
    } else {
        path(m - k, lo + k, hi, at, out)?;
        out.push(range_hash(lo, lo + k, at)?);
    }
    Ok(())
}

/// RFC 6962 §2.1.2 SUBPROOF(m, D[lo:hi], b).
fn subproof(
    m: u64,
    lo: u64,
    hi: u64,
    complete: bool,
    at: &mut Lookup<'_>,
    out: &mut Vec<Hash>,
) -> Result<(), TreeError> {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push(range_hash(lo, hi, at)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(m, lo, lo + k, complete, at, out)?;
        out.push(range_hash(lo + k, hi, at)?);
    } else {
        subproof(m - k, lo + k, hi, false, at, out)?;
        out.push(range_hash(lo, lo + k, at)?);
    }
    Ok(())
}

/// Runs `f` twice: once to learn the stored nodes it reads, then, once
/// `fetch` has returned them, to compute.
fn two_pass<T, E: From<TreeError>>(
    mut f: impl FnMut(&mut Lookup<'_>) -> Result<T, TreeError>,
    fetch: impl FnOnce(&[NodeId]) -> Result<Vec<Hash>, E>,
) -> Result<T, E> {
    let mut ids = Vec::new();
    f(&mut Lookup::Record(&mut ids))?;
    ids.sort_unstable();
    ids.dedup();
    let hashes = fetch(&ids)?;
    if hashes.len() != ids.len() {
        let missing = ids.get(hashes.len()).copied().unwrap_or(NodeId::new(0, 0));
        return Err(TreeError::MissingNode(missing).into());
    }
    let map: HashMap<NodeId, Hash> = ids.into_iter().zip(hashes).collect();
    Ok(f(&mut Lookup::Read(&map))?)
}

/// The root hash of the tree of the first `size` leaves. `fetch` returns
/// the stored hashes of the nodes it is given, in that order.
pub fn root<E: From<TreeError>>(
    size: u64,
    fetch: impl FnOnce(&[NodeId]) -> Result<Vec<Hash>, E>,
) -> Result<Hash, E> {
    if size == 0 {
        return Ok(empty_root());
    }
    two_pass(|at| range_hash(0, size, at), fetch)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves
/// (RFC 6962 §2.1.1), from the leaf's sibling up.
pub fn inclusion_proof<E: From<TreeError>>(
    index: u64,
    size: u64,
    fetch: impl FnOnce(&[NodeId]) -> Result<Vec<Hash>, E>,
) -> Result<Vec<Hash>, E> {
    if index >= size {
        return Err(TreeError::OutOfRange {
            what: format!("leaf {index}"),
            size,
        }
        .into());
    }
    two_pass(
        |at| {
            let mut out = Vec::new();
            path(index, 0, size, at, &mut out)?;
            Ok(out)
        },
        fetch,
    )
}

/// The consistency proof from the tree of `old` leaves to the tree of
/// `new` leaves (RFC 6962 §2.1.2); empty when `old` is 0 or equals `new`.
pub fn consistency_proof<E: From<TreeError>>(
    old: u64,
    new: u64,
    fetch: impl FnOnce(&[NodeId]) -> Result<Vec<Hash>, E>,
) -> Result<Vec<Hash>, E> {
    if old > new {
        return Err(TreeError::OutOfRange {
            what: format!("an older tree of size {old}"),
            size: new,
        }
        .into());
    }
    if old == 0 || old == new {
        return Ok(Vec::new());
    }
    two_pass(
        |at| {
            let mut out = Vec::new();
            subproof(old, 0, new, true, at, &mut out)?;
            Ok(out)
        },
        fetch,
    )
}

/// The stored nodes that appending leaves to a tree of `size` leaves
/// creates: each leaf's own node and every complete subtree it completes.
/// `fetch` is asked for the left siblings already stored.
pub fn append<E: From<TreeError>>(
    size: u64,
    leaves: &[Hash],
    fetch: impl FnOnce(&[NodeId]) -> Result<Vec<Hash>, E>,
) -> Result<Vec<(NodeId, Hash)>, E> {
    let end = size + leaves.len() as u64;
    // Left siblings a new node needs that lie before `size`.
    let mut needed = Vec::new();
    for n in size..end {
        let mut idx = n;
        let mut level = 0u8;
        while idx & 1 == 1 {
            let sibling = NodeId::new(level, idx - 1);
            if (sibling.index + 1) << level <= size {
                needed.push(sibling);
            }
            idx >>= 1;
            level += 1;
        }
    }
    needed.sort_unstable();
    needed.dedup();
    let old = fetch(&needed)?;
    if old.len() != needed.len() {
        let missing = needed.get(old.len()).copied().unwrap_or(NodeId::new(0, 0));
        return Err(TreeError::MissingNode(missing).into());
    }
    let mut known: HashMap<NodeId, Hash> = needed.into_iter().zip(old).collect();
    let mut made = Vec::new();
    for (n, leaf) in (size..end).zip(leaves) {
        let mut idx = n;
        let mut level = 0u8;
        let mut h = *leaf;
        made.push((NodeId::new(0, n), h));
        known.insert(NodeId::new(0, n), h);
        while idx & 1 == 1 {
            let sibling = NodeId::new(level, idx - 1);
            let left = known
                .get(&sibling)
                .copied()
                .ok_or(TreeError::MissingNode(sibling))?;
            h = node_hash(&left, &h);
            idx >>= 1;
            level += 1;
            let id = NodeId::new(level, idx);
            made.push((id, h));
            known.insert(id, h);
        }
    }
    Ok(made)
}

/// RFC 9162 §2.1.3.2: whether `proof` shows the leaf hashed to `leaf` at
/// `index` in the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && &r == root
}

/// RFC 9162 §2.1.4.2: whether `proof` shows the tree of `new` leaves with
/// root `new_root` extends the tree of `old` leaves with root `old_root`.
pub fn verify_consistency(
    old: u64,
    old_root: &Hash,
    new: u64,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        // Every tree extends the empty one.
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    &fr == old_root && &sr == new_root && s == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory stored-node table, as the store keeps it.
    #[derive(Default)]
    struct Memory {
        nodes: HashMap<NodeId, Hash>,
        size: u64,
    }

    impl Memory {
        fn fetch(&self) -> impl FnOnce(&[NodeId]) -> Result<Vec<Hash>, TreeError> + '_ {
            move |ids| {
                ids.iter()
                    .map(|id| {
                        self.nodes
                            .get(id)
                            .copied()
                            .ok_or(TreeError::MissingNode(*id))
                    })
                    .collect()
            }
        }

        fn push(&mut self, leaves: &[Vec<u8>]) {
            let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
            let made = append(self.size, &hashes, self.fetch()).unwrap(); // ok: test
            self.nodes.extend(made);
            self.size += leaves.len() as u64;
        }
    }

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 6962's reference leaves (certificate-transparency's
    /// merkle tree test data).
    fn reference_leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|s| {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()) // ok: test
                .collect()
        })
        .collect()
    }

    const REFERENCE_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// Straight from RFC 6962's definition, for cross-checking.
    fn mth(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn roots_match_rfc_6962_reference_vectors() {
        let leaves = reference_leaves();
        let mut m = Memory::default();
        for (i, leaf) in leaves.iter().enumerate() {
            m.push(std::slice::from_ref(leaf));
            let r = root(m.size, m.fetch()).unwrap(); // ok: test
            assert_eq!(hex(&r), REFERENCE_ROOTS[i], "size {}", i + 1);
        }
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn appending_in_batches_stores_the_same_nodes() {
        let leaves: Vec<Vec<u8>> = (0u32..300).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut one = Memory::default();
        for l in &leaves {
            one.push(std::slice::from_ref(l));
        }
        let mut batched = Memory::default();
        for chunk in leaves.chunks(37) {
            batched.push(chunk);
        }
        assert_eq!(one.nodes, batched.nodes);
        for size in [1u64, 2, 3, 255, 256, 257, 300] {
            let r = root(size, one.fetch()).unwrap(); // ok: test
            assert_eq!(r, mth(&leaves[..size as usize]), "size {size}");
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_a_wrong_one_does_not() {
        let leaves: Vec<Vec<u8>> = (0u32..70).map(|i| i.to_le_bytes().to_vec()).collect();
        let mut m = Memory::default();
        m.push(&leaves);
        for size in 1..=70u64 {
            let r = root(size, m.fetch()).unwrap(); // ok: test
            for index in 0..size {
                let p = inclusion_proof(index, size, m.fetch()).unwrap(); // ok: test
                let leaf = leaf_hash(&leaves[index as usize]);
                assert!(
                    verify_inclusion(&leaf, index, size, &p, &r),
                    "{index}/{size}"
                );
                // The same proof for another index, size or leaf fails.
                let other = leaf_hash(b"forged");
                assert!(!verify_inclusion(&other, index, size, &p, &r));
                if size > 1 {
                    assert!(!verify_inclusion(&leaf, (index + 1) % size, size, &p, &r));
                }
                let mut extended = p.clone();
                extended.push([7; 32]);
                assert!(!verify_inclusion(&leaf, index, size, &extended, &r));
            }
        }
        assert!(inclusion_proof(5, 5, m.fetch()).is_err());
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_rewritten_history_does_not() {
        let leaves: Vec<Vec<u8>> = (0u32..40).map(|i| i.to_le_bytes().to_vec()).collect();
        let mut m = Memory::default();
        m.push(&leaves);
        let mut forked_leaves = leaves.clone();
        forked_leaves[3] = b"rewritten".to_vec();
        let mut forked = Memory::default();
        forked.push(&forked_leaves);
        for new in 1..=40u64 {
            let new_root = root(new, m.fetch()).unwrap(); // ok: test
            for old in 0..=new {
                let old_root = root(old, m.fetch()).unwrap(); // ok: test
                let p = consistency_proof(old, new, m.fetch()).unwrap(); // ok: test
                assert!(
                    verify_consistency(old, &old_root, new, &new_root, &p),
                    "{old} -> {new}"
                );
                // A fork that changed leaf 3 cannot prove it extends the
                // honest tree that already held leaf 3.
                if old > 3 && old < new {
                    let fr = root(new, forked.fetch()).unwrap(); // ok: test
                    let fp = consistency_proof(old, new, forked.fetch()).unwrap(); // ok: test
                    assert!(!verify_consistency(old, &old_root, new, &fr, &fp));
                }
                if old > 0 && old < new {
                    assert!(!verify_consistency(old, &old_root, new, &new_root, &p[1..]));
                    assert!(!verify_consistency(old, &[9; 32], new, &new_root, &p));
                }
            }
        }
    }

    #[test]
    fn a_missing_stored_node_is_an_error_not_a_wrong_root() {
        let m = Memory::default();
        assert_eq!(
            root(3, m.fetch()),
            Err(TreeError::MissingNode(NodeId::new(0, 2)))
        );
    }
}
