//! The operations layer behind the HTTP listener (issue 14): one decoded
//! [`Request`] in, one [`Response`] out. It answers from the pki (the CA's
//! key signs OCSP answers and CRLs) and the store (the same connection the
//! reactor's Blackboard sessions read), never from a protocol session, so a
//! revocation recorded by `server revoke` on any host is answered as
//! revoked by the next request, on every reactor.
//!
//! Routes:
//!
//! | request | answer |
//! |---|---|
//! | `POST /ocsp` (`application/ocsp-request`) | OCSP response (RFC 6960) |
//! | `GET /ocsp/{url-encoded base64}` | the same, cacheable (RFC 5019 §5) |
//! | `GET /crl` | the current CRL, DER (`application/pkix-crl`) |
//! | `GET /health` | 200 JSON when the store answers, else 503 with why |
//! | `GET /metrics` | Prometheus text exposition |
//!
//! `HEAD` is served wherever `GET` is. Other paths are 404, other methods
//! on a known path 405. A process without the CA key (`--role
//! blackboard`) answers `/ocsp` and `/crl` with 503 and says so: it cannot
//! sign.
//!
//! The HTTP side lives here, under this parent: [`http`], the sans-I/O
//! HTTP/1.1 codec the reactor's HTTP connections decode with; [`ocsp`],
//! the responder's core the `/ocsp` routes call; [`metrics`], the
//! process's counters (updated by the reactors and the commit thread,
//! served as `/metrics`); [`store_gauges`], the thread that reads the
//! store into `/metrics`' gauges; [`crl_cache`], the one CRL all reactors
//! serve. The reactor holds the sockets; nothing here does.

pub(crate) mod crl_cache;
pub mod http;
pub(crate) mod metrics;
pub mod ocsp;
pub(crate) mod store_gauges;
pub mod transparency;

use std::fmt;
use std::sync::Arc;

use log::{info, warn};

use crate::ca::{CaError, CertificateAuthority, RevokedEntry, Serial, SignedCrl};
use crate::ops::crl_cache::CrlCache;
use crate::ops::http::{Method, Request, Response};
use crate::ops::metrics::Metrics;
use crate::ops::ocsp::{CertStatus, OcspAnswer, Responder, ResponderConfig};
use crate::store::{self, Storage, StoreError};
use crate::time::now_unix;

/// `Content-Type` of OCSP requests (RFC 6960 appendix A.1).
const OCSP_REQUEST: &str = "application/ocsp-request";
/// `Content-Type` of OCSP responses.
const OCSP_RESPONSE: &str = "application/ocsp-response";
/// `Content-Type` of a DER CRL (RFC 5280 §4.2.1.13, RFC 2585).
const PKIX_CRL: &str = "application/pkix-crl";
/// A served CRL is made again this long before its nextUpdate, so no
/// relying party ever fetches one about to go stale.
pub(crate) const CRL_MARGIN_SECS: i64 = 86_400;

/// Why the operations layer could not produce something.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpsError {
    /// The store did not answer.
    Store(StoreError),
    /// The CA failed to sign.
    Ca(CaError),
}

impl fmt::Display for OpsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpsError::Store(e) => write!(f, "store: {e}"),
            OpsError::Ca(e) => write!(f, "CA: {e}"),
        }
    }
}

impl std::error::Error for OpsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpsError::Store(e) => Some(e),
            OpsError::Ca(e) => Some(e),
        }
    }
}

impl From<StoreError> for OpsError {
    fn from(e: StoreError) -> Self {
        OpsError::Store(e)
    }
}

impl From<CaError> for OpsError {
    fn from(e: CaError) -> Self {
        OpsError::Ca(e)
    }
}

/// A CRL of every revocation in `store`, numbered with the store's next
/// CRL number: what `GET /crl` serves and `server crl` prints.
pub(crate) fn fresh_crl(
    store: &mut dyn Storage,
    ca: &CertificateAuthority,
) -> Result<SignedCrl, OpsError> {
    let entries: Vec<RevokedEntry> = store
        .revocations()?
        .into_iter()
        .map(|r| RevokedEntry {
            reason: r.reason,
            serial: r.serial,
            at: r.at,
        })
        .collect();
    let number = store.next_crl_number()?;
    Ok(ca.crl(&entries, number)?)
}

/// What signs: the CA and its OCSP responder.
struct Signing {
    ca: Arc<CertificateAuthority>,
    responder: Responder,
}

/// One reactor's operations endpoints.
pub(crate) struct Ops {
    signing: Option<Signing>,
    /// Shared by every reactor of the process.
    crls: CrlCache,
    /// Whether the last `/crl` was served from the cache because the store
    /// did not answer: said once in the log when it starts and ends.
    crl_without_store: bool,
    metrics: Arc<Metrics>,
    /// The transparency log's read API, when this process holds the log key.
    log: Option<transparency::LogApi>,
    /// How long this reactor's batch in flight has gone unanswered, once
    /// past the reactor's bound: nothing can be recorded, so `/health`
    /// says unavailable even if a quick check of the store answers.
    commit_stuck: Option<std::time::Duration>,
}

impl fmt::Debug for Ops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ops")
            .field("signing", &self.signing.is_some())
            .field("crls", &self.crls)
            .finish_non_exhaustive()
    }
}

/// Why `/ocsp` and `/crl` cannot be served by a process without the key.
const NO_CA: &str = "this server does not hold the CA key (--role blackboard): \
                     ask the CA's own HTTP listener for OCSP and the CRL\n";

impl Ops {
    /// The endpoints of a process holding `ca` (or not: `--role
    /// blackboard`), counting into `metrics`, serving the CRL of `crls`
    /// (one cache for every reactor of the process).
    pub(crate) fn new(
        ca: Option<Arc<CertificateAuthority>>,
        metrics: Arc<Metrics>,
        crls: CrlCache,
    ) -> Result<Ops, ocsp::OcspError> {
        let signing = match ca {
            Some(ca) => Some(Signing {
                responder: Responder::new(ca.cert(), ca.key(), ResponderConfig::default())?,
                ca,
            }),
            None => None,
        };
        Ok(Ops {
            signing,
            crls,
            crl_without_store: false,
            commit_stuck: None,
            metrics,
            log: None,
        })
    }

    /// Serves the transparency log under `/log/` too.
    pub(crate) fn with_log(mut self, log: Option<transparency::LogApi>) -> Ops {
        self.log = log;
        self
    }

    /// What the reactor knows of its commits: `Some(age)` while a batch
    /// has gone unanswered past its bound, `None` otherwise.
    pub(crate) fn set_commit_stuck(&mut self, stuck: Option<std::time::Duration>) {
        self.commit_stuck = stuck;
    }

    /// Answers one request.
    pub(crate) fn handle(&mut self, req: &Request, store: &mut dyn Storage) -> Response {
        let path = req.path();
        let get = matches!(req.method, Method::Get | Method::Head);
        match path {
            "/ocsp" if req.method == Method::Post => self.ocsp_post(req, store),
            "/ocsp" => not_allowed("POST"),
            _ if path.starts_with("/ocsp/") => match get {
                true => self.ocsp_get(&path["/ocsp/".len()..], store),
                false => not_allowed("GET, HEAD"),
            },
            _ if path.starts_with("/log/") => match (&self.log, get) {
                (Some(l), true) => l.handle(&path["/log/".len()..], store),
                (Some(_), false) => not_allowed("GET, HEAD"),
                (None, _) => text(404, "this server does not serve the transparency log\n"),
            },
            "/crl" if get => self.crl(store),
            "/health" if get => health(store, self.commit_stuck),
            "/metrics" if get => Response::new(200, self.metrics.encode().into_bytes())
                .content_type(metrics::CONTENT_TYPE),
            "/crl" | "/health" | "/metrics" => not_allowed("GET, HEAD"),
            _ => text(
                404,
                "no such resource: try /ocsp, /crl, /health, /metrics or /log/checkpoint\n",
            ),
        }
    }

    fn ocsp_post(&mut self, req: &Request, store: &mut dyn Storage) -> Response {
        if req.media_type().as_deref() != Some(OCSP_REQUEST) {
            return text(415, "send the OCSP request as application/ocsp-request\n");
        }
        self.ocsp(&req.body, store, false)
    }

    fn ocsp_get(&mut self, encoded: &str, store: &mut dyn Storage) -> Response {
        // An undecodable path is a malformed OCSP request, answered as one.
        let der = ocsp::decode_get_path(encoded).unwrap_or_default();
        self.ocsp(&der, store, true)
    }

    fn ocsp(&mut self, der: &[u8], store: &mut dyn Storage, cacheable: bool) -> Response {
        let Some(signing) = &self.signing else {
            return text(503, NO_CA);
        };
        let now = now_unix();
        let mut failed: Option<StoreError> = None;
        let answer = signing.responder.respond(der, now, |serial| {
            let Some(key) = store_serial(serial) else {
                return CertStatus::Unknown;
            };
            match store.cert_status(&key) {
                Ok(s) => ocsp_status(s),
                Err(e) => {
                    failed = Some(e);
                    CertStatus::Unknown
                }
            }
        });
        // Never a signed "unknown" because the store did not answer.
        let answer = match failed {
            Some(e) => {
                warn!("ocsp: the store did not answer ({e}); tryLater");
                OcspAnswer::try_later()
            }
            None => answer,
        };
        self.metrics.ocsp_response(answer.label());
        // Short, not until nextUpdate: a cache must ask again soon after a
        // revocation (RFC 5019 §6.2 allows max-age < nextUpdate).
        let max_age = answer.max_age(now).min(ocsp::GET_MAX_AGE_SECS);
        let mut resp = Response::new(200, answer.der).content_type(OCSP_RESPONSE);
        if cacheable && max_age > 0 {
            // RFC 5019 §6.2.
            resp = resp.cache_control(format!(
                "max-age={max_age}, public, no-transform, must-revalidate"
            ));
        }
        resp
    }

    fn crl(&mut self, store: &mut dyn Storage) -> Response {
        let Some(signing) = &self.signing else {
            return text(503, NO_CA);
        };
        let now = now_unix();
        let served = store
            .revocation_mark()
            .map_err(OpsError::Store)
            .and_then(|mark| self.crls.serve(store, &signing.ca, mark, now));
        match served {
            Ok(c) => {
                if std::mem::take(&mut self.crl_without_store) {
                    info!(
                        "crl: the store answers again; serving CRL number {}",
                        c.crl.number
                    );
                }
                Response::new(200, c.crl.der.clone()).content_type(PKIX_CRL)
            }
            // The store did not answer: the CRL last made is still a
            // valid CRL until its nextUpdate (issue 19), a better answer
            // than none to a relying party that fails closed.
            Err(OpsError::Store(e)) => match self.crls.still_valid(now) {
                Some(c) => {
                    if !std::mem::replace(&mut self.crl_without_store, true) {
                        warn!(
                            "crl: the store did not answer ({e}); serving the last CRL made \
                             (number {}, valid until {}) until it answers",
                            c.crl.number,
                            crate::time::rfc3339(c.crl.next_update)
                        );
                    }
                    Response::new(200, c.crl.der.clone()).content_type(PKIX_CRL)
                }
                None => {
                    warn!("crl: {e}");
                    text(503, &format!("cannot make the CRL now: store: {e}\n"))
                }
            },
            Err(e) => {
                warn!("crl: {e}");
                text(503, &format!("cannot make the CRL now: {e}\n"))
            }
        }
    }
}

/// The store's key for an OCSP CertID's serial (the INTEGER's content):
/// [`Serial`]'s one text form. `None` for a negative serial, which this
/// CA never issues.
fn store_serial(content: &[u8]) -> Option<Serial> {
    let serial = Serial::from_der_integer(content);
    (!serial.is_negative()).then_some(serial)
}

fn ocsp_status(s: store::CertStatus) -> CertStatus {
    match s {
        store::CertStatus::Unknown => CertStatus::Unknown,
        store::CertStatus::Good { .. } => CertStatus::Good,
        store::CertStatus::Revoked { at, reason } => CertStatus::Revoked {
            at_unix: at,
            reason,
        },
    }
}

fn health(store: &mut dyn Storage, commit_stuck: Option<std::time::Duration>) -> Response {
    let unavailable = |why: String| {
        warn!("health: {why}");
        let body = serde_json::json!({"status": "unavailable", "store": why});
        Response::new(503, body.to_string().into_bytes()).content_type("application/json")
    };
    if let Some(age) = commit_stuck {
        return unavailable(format!(
            "a commit has not finished in {:.1} s: nothing can be recorded now",
            age.as_secs_f32()
        ));
    }
    match store.check() {
        Ok(()) => Response::new(200, br#"{"status":"ok","store":"ok"}"#.to_vec())
            .content_type("application/json"),
        Err(e) => unavailable(e.to_string()),
    }
}

fn text(status: u16, body: &str) -> Response {
    Response::new(status, body.as_bytes().to_vec()).content_type("text/plain; charset=utf-8")
}

fn not_allowed(allow: &'static str) -> Response {
    text(405, "method not allowed here\n").allow(allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(target: &str) -> Request {
        crate::testing::get_request(target)
    }

    #[test]
    fn routes_and_refusals() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut store = crate::store::SqliteStore::open(dir.path())?;
        let mut ops = Ops::new(None, Arc::new(Metrics::new()), CrlCache::new())?;
        assert_eq!(ops.handle(&get("/nope"), &mut store).status, 404);
        assert_eq!(ops.handle(&get("/ocsp"), &mut store).status, 405);
        let post = Request {
            method: Method::Post,
            ..get("/crl")
        };
        let r = ops.handle(&post, &mut store);
        assert_eq!((r.status, r.allow), (405, Some("GET, HEAD")));
        // Without the CA key: 503 with the reason.
        let r = ops.handle(&get("/crl"), &mut store);
        assert_eq!(r.status, 503);
        assert!(String::from_utf8(r.body)?.contains("--role blackboard"));
        assert_eq!(ops.handle(&get("/health"), &mut store).status, 200);
        let m = ops.handle(&get("/metrics"), &mut store);
        assert!(String::from_utf8(m.body)?.contains("certboard_certificates_issued_total"));
        Ok(())
    }

    #[test]
    fn ocsp_get_answers_are_cached_briefly_not_until_next_update(
    ) -> Result<(), Box<dyn std::error::Error>> {
        use openssl::hash::MessageDigest;
        use openssl::ocsp::{OcspCertId, OcspRequest};
        let dir = tempfile::tempdir()?;
        let pki = crate::testing::TestPki::create(dir.path(), &Default::default())?;
        let mut store = crate::store::SqliteStore::open(dir.path())?;
        let mut ops = Ops::new(
            Some(pki.ca.clone()),
            Arc::new(Metrics::new()),
            CrlCache::new(),
        )?;
        let id = OcspCertId::from_cert(MessageDigest::sha1(), pki.ca.cert(), pki.ca.cert())?;
        let mut req = OcspRequest::new()?;
        req.add_id(id)?;
        let b64 = openssl::base64::encode_block(&req.to_der()?);
        let encoded = b64
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        let r = ops.handle(&get(&format!("/ocsp/{encoded}")), &mut store);
        assert_eq!(r.status, 200);
        let cc = r.cache_control.ok_or("no Cache-Control")?;
        let age: i64 = cc
            .strip_prefix("max-age=")
            .and_then(|s| s.split(',').next())
            .ok_or("no max-age")?
            .parse()?;
        assert!(age > 0 && age <= ocsp::GET_MAX_AGE_SECS, "{cc}");
        assert!(age < ResponderConfig::default().validity_secs, "{cc}");
        Ok(())
    }

    #[test]
    fn the_crl_is_served_from_the_cache_while_the_store_does_not_answer(
    ) -> Result<(), Box<dyn std::error::Error>> {
        use crate::store::gated::{Gated, GatedCall};
        use std::sync::Mutex;
        use std::time::Duration;
        let dir = tempfile::tempdir()?;
        let pki = crate::testing::TestPki::create(dir.path(), &Default::default())?;
        let (open, gate) = std::sync::mpsc::channel();
        let gated = Gated {
            inner: crate::store::SqliteStore::open(dir.path())?,
            at: GatedCall::RevocationMark,
            open: Arc::new(Mutex::new(gate)),
        };
        let mut store =
            crate::store::Bounded::new(Box::new(gated), "gated".into(), Duration::from_millis(20))?;
        let crls = CrlCache::new();
        let mut ops = Ops::new(Some(pki.ca.clone()), Arc::new(Metrics::new()), crls.clone())?;
        // Another reactor's, sharing the cache.
        let mut other = Ops::new(Some(pki.ca.clone()), Arc::new(Metrics::new()), crls)?;
        open.send(())?;
        let first = ops.handle(&get("/crl"), &mut store);
        assert_eq!(first.status, 200);
        // The store stops answering: the CRL made is still valid, and
        // served, by either reactor.
        for _ in 0..2 {
            let r = ops.handle(&get("/crl"), &mut store);
            assert_eq!((r.status, &r.body), (200, &first.body));
            let r = other.handle(&get("/crl"), &mut store);
            assert_eq!((r.status, &r.body), (200, &first.body));
        }
        assert!(ops.crl_without_store && other.crl_without_store);
        // A process that never made one has nothing valid to serve.
        let mut fresh = Ops::new(
            Some(pki.ca.clone()),
            Arc::new(Metrics::new()),
            CrlCache::new(),
        )?;
        let r = fresh.handle(&get("/crl"), &mut store);
        assert_eq!(r.status, 503, "{:?}", String::from_utf8_lossy(&r.body));
        // The store answers again (the call it holds, then the next).
        open.send(())?;
        open.send(())?;
        let mut back = false;
        for _ in 0..200 {
            if !store.unanswering() {
                back = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(back, "the gated call never returned");
        let r = ops.handle(&get("/crl"), &mut store);
        assert_eq!((r.status, &r.body), (200, &first.body));
        assert!(!ops.crl_without_store);
        Ok(())
    }

    #[test]
    fn serials_take_the_stores_form() {
        assert_eq!(
            store_serial(&[0x00, 0x80, 0x01])
                .map(|s| s.to_string())
                .as_deref(),
            Some("8001")
        );
        assert_eq!(
            store_serial(&[0x4a, 0x0b])
                .map(|s| s.to_string())
                .as_deref(),
            Some("4A0B")
        );
        assert_eq!(
            store_serial(&[0x00]).map(|s| s.to_string()).as_deref(),
            Some("0")
        );
        assert_eq!(store_serial(&[0xff]), None);
    }

    #[test]
    fn health_reasons_are_json_strings() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut store = crate::store::SqliteStore::open(dir.path())?;
        let r = health(&mut store, None);
        assert_eq!(r.body, br#"{"status":"ok","store":"ok"}"#);
        // Answering, but a commit has been stuck: unavailable all the same.
        let r = health(&mut store, Some(std::time::Duration::from_secs(3)));
        assert_eq!(r.status, 503);
        assert!(String::from_utf8_lossy(&r.body).contains("a commit has not finished in 3.0 s"));
        std::fs::remove_file(dir.path().join(crate::store::DB_FILE))?;
        let r = health(&mut store, None);
        assert_eq!(r.status, 503);
        let body: serde_json::Value = serde_json::from_slice(&r.body)?;
        assert_eq!(body["status"], "unavailable");
        let why = body["store"].as_str().unwrap_or_default();
        assert!(why.contains("no longer there"), "{why}");
        Ok(())
    }
}
