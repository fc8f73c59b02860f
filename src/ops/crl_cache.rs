//! The CRL a process serves, one for all its reactors (issue 22, 18a).
//!
//! Each reactor used to keep its own CRL, and each minted its own cRLNumber
//! for the same revocations: with `--reactors N` a relying party saw N
//! numbers for one content, and a later number could list less than an
//! earlier one from another reactor. One [`CrlCache`], made by the server
//! and cloned into every reactor's `Ops`, holds the CRL served now: a new
//! one is minted only when the revocations change (or it nears its
//! nextUpdate), by one reactor at a time.
//!
//! The cache also outlives the store's answers (issue 19): while the store
//! does not answer, the CRL last made is still a valid CRL until its
//! nextUpdate, and is served as such.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::ca::CertificateAuthority;
use crate::store::{RevocationMark, Storage};

use super::{fresh_crl, OpsError, CRL_MARGIN_SECS};
use crate::ca::SignedCrl;

/// A CRL and the revocations it was made from.
#[derive(Debug)]
pub(crate) struct CachedCrl {
    pub(crate) crl: SignedCrl,
    pub(crate) mark: RevocationMark,
}

/// The CRL every reactor of a process serves; clones share it.
#[derive(Debug, Clone, Default)]
pub(crate) struct CrlCache {
    current: Arc<Mutex<Option<Arc<CachedCrl>>>>,
    /// Held while a CRL is made, so that two reactors finding the cache
    /// out of date mint one number between them, not two.
    minting: Arc<Mutex<()>>,
}

/// A lock that survives a panic elsewhere: what it guards is replaced
/// whole, never left half-written.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl CrlCache {
    /// An empty cache: the first request makes the CRL.
    pub(crate) fn new() -> CrlCache {
        CrlCache::default()
    }

    /// The cached CRL if it was made from `mark` and is not near its
    /// nextUpdate at `now`.
    fn current(&self, mark: &RevocationMark, now: i64) -> Option<Arc<CachedCrl>> {
        lock(&self.current)
            .as_ref()
            .filter(|c| c.mark == *mark && now < c.crl.next_update.saturating_sub(CRL_MARGIN_SECS))
            .cloned()
    }

    /// The cached CRL if it is still valid at `now` (before its
    /// nextUpdate), whatever revocations came since: what is served while
    /// the store cannot say.
    pub(crate) fn still_valid(&self, now: i64) -> Option<Arc<CachedCrl>> {
        lock(&self.current)
            .as_ref()
            .filter(|c| now < c.crl.next_update)
            .cloned()
    }

    /// The CRL to serve for the revocations `mark` counts (read from
    /// `store` just before): the cached one if it was made from them, else
    /// a new one made now from `store` and kept for every reactor.
    pub(crate) fn serve(
        &self,
        store: &mut dyn Storage,
        ca: &CertificateAuthority,
        mark: RevocationMark,
        now: i64,
    ) -> Result<Arc<CachedCrl>, OpsError> {
        if let Some(c) = self.current(&mark, now) {
            return Ok(c);
        }
        let _minting = match self.minting.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            // Another reactor is making the next CRL: rather than wait for
            // it on this loop, serve the one it replaces while still valid
            // (as if this request had come a moment earlier).
            Err(std::sync::TryLockError::WouldBlock) => match self.still_valid(now) {
                Some(c) => return Ok(c),
                // Nothing to serve yet (the first request of a process).
                None => lock(&self.minting),
            },
        };
        // Made by another reactor while this one waited.
        if let Some(c) = self.current(&mark, now) {
            return Ok(c);
        }
        // The mark was read first: the list read after it holds at least
        // what it counts.
        let made = Arc::new(CachedCrl {
            crl: fresh_crl(store, ca)?,
            mark,
        });
        *lock(&self.current) = Some(Arc::clone(&made));
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Record, SqliteStore};

    type TestResult<T> = Result<T, Box<dyn std::error::Error>>;

    /// Records a certificate for `sid` in `store` and revokes it; the
    /// store's mark after.
    fn revoke_one(
        store: &mut SqliteStore,
        ca: &CertificateAuthority,
        sid: &str,
    ) -> TestResult<RevocationMark> {
        let issued = crate::testing::Student::enroll(ca, sid)?.issued;
        let serial = issued.serial.clone();
        let rec: Record = crate::protocol::cert_record(
            issued,
            crate::store::Origin::Certboard,
            crate::store::Authorisation::Open,
        );
        store.commit(&[rec])?;
        store.revoke_serial(&serial, crate::store::RevocationReason::KeyCompromise, 1)?;
        Ok(store.revocation_mark()?)
    }

    #[test]
    fn caches_share_one_crl_number_until_the_revocations_change(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let pki = crate::testing::TestPki::create(dir.path(), &Default::default())?;
        let mut a = SqliteStore::open(dir.path())?;
        let mut b = SqliteStore::open(dir.path())?;
        let shared = CrlCache::new();
        let (one, two) = (shared.clone(), shared.clone());
        let now = crate::time::now_unix();
        let mark = a.revocation_mark()?;
        let first = one.serve(&mut a, &pki.ca, mark, now)?;
        for _ in 0..5 {
            // Another reactor, with its own store connection.
            let mark = b.revocation_mark()?;
            let again = two.serve(&mut b, &pki.ca, mark, now)?;
            assert_eq!(again.crl.number, first.crl.number);
            assert_eq!(again.crl.der, first.crl.der);
        }
        // A revocation: the next request anywhere makes one new CRL.
        let mark = revoke_one(&mut a, &pki.ca, "1155000001")?;
        let second = two.serve(&mut b, &pki.ca, mark, now)?;
        assert!(second.crl.number > first.crl.number);
        let mark = a.revocation_mark()?;
        let seen = one.serve(&mut a, &pki.ca, mark, now)?;
        assert_eq!(seen.crl.number, second.crl.number);
        // An unshared cache would have minted its own.
        let own = CrlCache::new().serve(&mut a, &pki.ca, mark, now)?;
        assert_ne!(own.crl.number, second.crl.number);
        Ok(())
    }

    #[test]
    fn a_crl_past_its_next_update_is_neither_current_nor_valid(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let pki = crate::testing::TestPki::create(dir.path(), &Default::default())?;
        let mut s = SqliteStore::open(dir.path())?;
        let cache = CrlCache::new();
        assert!(cache.still_valid(0).is_none());
        let now = crate::time::now_unix();
        let mark = s.revocation_mark()?;
        let made = cache.serve(&mut s, &pki.ca, mark, now)?;
        assert!(cache.still_valid(now).is_some());
        let after = made.crl.next_update;
        assert!(cache.still_valid(after).is_none());
        let near = after - CRL_MARGIN_SECS;
        let remade = cache.serve(&mut s, &pki.ca, mark, near)?;
        assert!(remade.crl.number > made.crl.number);
        Ok(())
    }
}
