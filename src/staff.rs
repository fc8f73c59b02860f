//! The staff web interface (issue 23): server-rendered pages for course
//! staff, on a listener of its own (`--staff-listen`).
//!
//! The reactor only decodes requests and writes responses: every staff
//! request is a [`StaffJob`] run on the worker pool, with the staff store
//! connection of [`StaffApp`]. So an argon2id check (tens of
//! milliseconds), a page over the whole roster, or an action's writes
//! never hold the loop, and other clients are served meanwhile.
//!
//! - [`forms`]: urlencoded and multipart bodies, cookies (pure).
//! - [`auth`]: passwords, sessions, CSRF tokens, the login throttle.
//! - [`pages`]: the GET pages (askama templates, auto-escaped).
//! - [`actions`]: the POST actions, each through the admin commands' own
//!   functions, each written to the audit log.

mod actions;
pub mod auth;
pub mod forms;
mod pages;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{info, warn};

use crate::ops::http::{Method, Request, Response};
use crate::store::{AuditEntry, LoginLimits, StaffSession, StaffStorage, StoreError};

/// The session cookie's name.
pub const COOKIE: &str = "certboard_staff";

/// Most bytes of one staff request (the roster upload is the largest).
pub const MAX_BODY: usize = 1 << 20;

/// The Content-Security-Policy of every response: nothing but our own
/// stylesheet and images, no script at all, no framing.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// How the staff listener runs (flags of `server`).
#[derive(Debug, Clone)]
pub struct StaffConfig {
    /// How long a session lasts.
    pub session_lifetime: Duration,
    /// Mark the cookie `Secure` (served over TLS, e.g. behind a proxy).
    pub secure_cookie: bool,
    /// The login throttle.
    pub login_limits: LoginLimits,
    /// Reverse proxies (exact addresses) whose `X-Forwarded-For` /
    /// `X-Real-IP` name the client (`--staff-trusted-proxy`). Empty: those
    /// headers are ignored and the TCP peer is the client.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for StaffConfig {
    fn default() -> Self {
        StaffConfig {
            session_lifetime: Duration::from_secs(8 * 60 * 60),
            secure_cookie: false,
            login_limits: LoginLimits::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// What every staff request is served with: the configuration and the
/// staff store connection (used by one worker at a time).
pub struct StaffApp {
    config: StaffConfig,
    store: Mutex<Box<dyn StaffStorage + Send>>,
}

impl std::fmt::Debug for StaffApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffApp")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl StaffApp {
    /// The app over `store`, a connection of its own.
    pub fn new(config: StaffConfig, store: Box<dyn StaffStorage + Send>) -> Arc<StaffApp> {
        Arc::new(StaffApp {
            config,
            store: Mutex::new(store),
        })
    }

    /// Answers one request from the TCP peer `peer`, a download's body
    /// read whole (tests and benches; the listener streams it instead).
    pub fn handle(&self, req: &Request, peer: IpAddr) -> Response {
        let (mut resp, stream) = self.answer(req, peer);
        if let Some(mut stream) = stream {
            while !stream.finished() {
                match self.next_piece(&mut stream) {
                    Ok(piece) => resp.body.extend_from_slice(&piece),
                    Err(e) => return secured(e.response()),
                }
            }
        }
        resp
    }

    /// Answers one request from the TCP peer `peer`: the whole of the
    /// staff side. A download's response comes with its body still in the
    /// store: the [`BodyStream`] to send after the head, piece by piece.
    pub fn answer(&self, req: &Request, peer: IpAddr) -> (Response, Option<BodyStream>) {
        let source = client_address(peer, req, &self.config.trusted_proxies);
        let mut guard = match self.store.lock() {
            Ok(g) => g,
            // A worker panicked mid-request: the connection is still usable
            // (each call is its own transaction).
            Err(poisoned) => poisoned.into_inner(),
        };
        let store: &mut dyn StaffStorage = guard.as_mut();
        let mut cx = Cx {
            store,
            config: &self.config,
            source,
            now: crate::time::now_unix(),
            stream: None,
        };
        let resp = match route(&mut cx, req) {
            Ok(r) => r,
            Err(e) => {
                warn!(
                    "staff {source}: {} {}: {e}",
                    req.method.as_str(),
                    req.path()
                );
                cx.stream = None;
                e.response()
            }
        };
        (secured(resp), cx.stream.take())
    }

    /// The next piece of a download (at least [`PIECE`] bytes unless it is
    /// the last), read from the store on a worker.
    pub fn next_piece(&self, stream: &mut BodyStream) -> Result<Vec<u8>, StaffError> {
        let mut guard = match self.store.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut piece = Vec::new();
        while piece.len() < PIECE && stream.next < stream.chunks {
            let seq = stream.next;
            let chunk = guard.upload_chunk(stream.upload_id, seq)?.ok_or_else(|| {
                StaffError::NotFound(format!("chunk {seq} of upload {}", stream.upload_id))
            })?;
            piece.extend_from_slice(&chunk);
            stream.next += 1;
        }
        stream.sent = stream.sent.saturating_add(piece.len() as u64);
        // The head announced `size`: a store that disagrees ends the
        // connection rather than send a body of another length.
        if stream.sent > stream.size || (stream.finished() && stream.sent != stream.size) {
            return Err(StaffError::NotFound(format!(
                "upload {} holds {}+ bytes, its record says {}",
                stream.upload_id, stream.sent, stream.size
            )));
        }
        Ok(piece)
    }
}

/// Bytes of a download read from the store per worker job: about one
/// stored chunk. The listener asks for the next piece only when the
/// client has taken all but [`BODY_LOW_WATER`] of what is queued, so a
/// download holds at most about these two in memory, however large the
/// file and however slow the reader.
pub const PIECE: usize = 64 * 1024;
/// Queued output below which the next piece of a download is read.
pub const BODY_LOW_WATER: usize = 64 * 1024;

/// The rest of a download: the stored chunks still to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyStream {
    upload_id: i64,
    /// The next chunk to read.
    next: u64,
    chunks: u64,
    /// What the head announced.
    size: u64,
    /// Bytes read so far.
    sent: u64,
}

impl BodyStream {
    /// The body of the upload `upload_id`: `chunks` chunks, `size` bytes.
    pub fn new(upload_id: i64, chunks: u64, size: u64) -> BodyStream {
        BodyStream {
            upload_id,
            next: 0,
            chunks,
            size,
            sent: 0,
        }
    }

    /// The body's length, as the head announces it.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Every chunk has been read.
    pub fn finished(&self) -> bool {
        self.next >= self.chunks
    }
}

/// One piece of a download to read off the loop.
pub struct BodyJob {
    app: Arc<StaffApp>,
    stream: BodyStream,
}

impl std::fmt::Debug for BodyJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyJob")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl BodyJob {
    /// The next piece of `stream`, for `app`.
    pub fn new(app: Arc<StaffApp>, stream: BodyStream) -> BodyJob {
        BodyJob { app, stream }
    }

    /// Runs on a worker thread: the stream moved on, and the piece.
    pub fn run(mut self) -> (BodyStream, Result<Vec<u8>, StaffError>) {
        let piece = self.app.next_piece(&mut self.stream);
        (self.stream, piece)
    }
}

/// The client a request is from: the TCP peer, unless the peer is a
/// trusted proxy, then the right-most `X-Forwarded-For` entry that is not a
/// trusted proxy itself (entries further left were written by whoever
/// sent them, the client included, so they prove nothing), else
/// `X-Real-IP`, else the peer. From any other peer both headers are
/// ignored: a direct client must not choose the address it is throttled
/// and audited under.
pub fn client_address(peer: IpAddr, req: &Request, trusted: &[IpAddr]) -> IpAddr {
    let is_trusted = |a: IpAddr| trusted.contains(&a.to_canonical());
    if !is_trusted(peer) {
        return peer;
    }
    if let Some(list) = req.forwarded_for.as_deref() {
        for entry in list.rsplit(',') {
            match forwarded_address(entry) {
                Some(a) if is_trusted(a) => continue,
                Some(a) => return a,
                // "unknown", an obfuscated name, garbage: what lies further
                // left cannot be placed, so stop here.
                None => break,
            }
        }
    }
    req.real_ip
        .as_deref()
        .and_then(forwarded_address)
        .unwrap_or(peer)
}

/// One address of `X-Forwarded-For` / `X-Real-IP`: `1.2.3.4`, `2001:db8::1`,
/// or with a port (`1.2.3.4:5678`, `[2001:db8::1]:80`), which some proxies
/// add.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|a| a.to_canonical())
}

/// A request's context on the worker.
pub(crate) struct Cx<'a> {
    pub(crate) store: &'a mut dyn StaffStorage,
    pub(crate) config: &'a StaffConfig,
    pub(crate) source: IpAddr,
    pub(crate) now: i64,
    /// A download's body, to send after the response's head.
    pub(crate) stream: Option<BodyStream>,
}

impl Cx<'_> {
    /// Does `action` under an audit entry written first ([`audited`]),
    /// `particulars` saying what is about to be done.
    pub(crate) fn audited<T>(
        &mut self,
        who: &str,
        action: &str,
        target: &str,
        particulars: &str,
        work: impl FnOnce(&mut dyn StaffStorage) -> Result<(T, String), StaffError>,
    ) -> Result<T, StaffError> {
        info!(
            "staff {}: {who} {action} {target} {particulars}",
            self.source
        );
        let entry = AuditEntry {
            id: 0,
            at: self.now,
            who: who.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            detail: particulars.to_string(),
        };
        audited(&mut *self.store, &entry, work)
    }

    /// Appends to the audit log what is no action on the course (a refused
    /// login). A failure is logged, not shown.
    pub(crate) fn audit(&mut self, who: &str, action: &str, target: &str, detail: &str) {
        let entry = AuditEntry {
            id: 0,
            at: self.now,
            who: who.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            detail: detail.to_string(),
        };
        info!(
            "staff audit: {who} {action} {target} {detail} (from {})",
            self.source
        );
        if let Err(e) = self.store.audit(&entry) {
            warn!("staff audit log: cannot write {action} by {who}: {e}");
        }
    }
}

/// What an audit entry's detail ends with while its action's outcome is
/// not recorded: the action was about to be done, and the process died or
/// the store failed before it could say how it went (the store itself
/// says whether it happened).
pub const PENDING: &str = "outcome not recorded";

/// Does a staff action so that it never happens unaudited: `entry` (its
/// detail the particulars) is written first, as an intent; only once it is
/// in the store is `work` run; then the entry's detail is settled to
/// `particulars; done[: what work says]` or `particulars; failed: why`.
///
/// Why not one transaction: the actions are the admin commands' own
/// functions (so the web page does exactly what `server revoke` ... does),
/// each several store calls with transactions of their own, which neither
/// engine can nest. An intent first gives the guarantee that matters: an
/// entry that cannot be written refuses the action, and an action whose
/// outcome cannot be written still has its entry (ending [`PENDING`]).
pub fn audited<T>(
    store: &mut dyn StaffStorage,
    entry: &AuditEntry,
    work: impl FnOnce(&mut dyn StaffStorage) -> Result<(T, String), StaffError>,
) -> Result<T, StaffError> {
    let particulars = entry.detail.as_str();
    let intent = AuditEntry {
        detail: joined(particulars, PENDING),
        ..entry.clone()
    };
    let id = store.audit(&intent).map_err(|e| {
        warn!(
            "staff audit log: cannot write {} {} by {}, so it is not done: {e}",
            entry.action, entry.target, entry.who
        );
        e
    })?;
    let result = work(&mut *store);
    let outcome = match &result {
        Ok((_, said)) if said.is_empty() => "done".to_string(),
        Ok((_, said)) => format!("done: {said}"),
        // The first line: a refused import lists every certificate below.
        Err(e) => format!("failed: {}", e.to_string().lines().next().unwrap_or("")),
    };
    let detail = joined(particulars, &outcome);
    info!(
        "staff audit #{id}: {} {} by {}: {detail}",
        entry.action, entry.target, entry.who
    );
    match store.settle_audit(id, &detail) {
        Ok(true) => {}
        Ok(false) => warn!("staff audit log: entry #{id} is gone; its outcome: {detail}"),
        Err(e) => warn!("staff audit log: entry #{id} keeps \"{PENDING}\"; its outcome: {detail}; cannot write it: {e}"),
    }
    result.map(|(value, _)| value)
}

/// `particulars; outcome`, or the outcome alone.
fn joined(particulars: &str, outcome: &str) -> String {
    if particulars.is_empty() {
        outcome.to_string()
    } else {
        format!("{particulars}; {outcome}")
    }
}

/// Why a staff request failed: each becomes a page with `id="error"`.
#[derive(Debug)]
#[non_exhaustive]
pub enum StaffError {
    /// The store failed.
    Store(StoreError),
    /// An admin function refused (bad input, not found).
    Admin(crate::admin::AdminError),
    /// No such page.
    NotFound(String),
    /// The request is not acceptable (a bad form, a bad time).
    BadRequest(String),
    /// A POST without the session's CSRF token.
    Csrf,
    /// A page could not be rendered.
    Render(askama::Error),
    /// A method the path does not take.
    Method,
}

impl std::fmt::Display for StaffError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StaffError::Store(e) => write!(f, "store: {e}"),
            StaffError::Admin(e) => write!(f, "{e}"),
            StaffError::NotFound(what) => write!(f, "not found: {what}"),
            StaffError::BadRequest(why) => write!(f, "bad request: {why}"),
            StaffError::Csrf => write!(
                f,
                "refused: the form's CSRF token is missing or wrong (reload the page and try again); nothing was changed"
            ),
            StaffError::Render(e) => write!(f, "cannot render the page: {e}"),
            StaffError::Method => write!(f, "method not allowed here"),
        }
    }
}

impl std::error::Error for StaffError {}

impl From<StoreError> for StaffError {
    fn from(e: StoreError) -> Self {
        StaffError::Store(e)
    }
}

impl From<crate::admin::AdminError> for StaffError {
    fn from(e: crate::admin::AdminError) -> Self {
        StaffError::Admin(e)
    }
}

impl From<askama::Error> for StaffError {
    fn from(e: askama::Error) -> Self {
        StaffError::Render(e)
    }
}

impl From<forms::FormError> for StaffError {
    fn from(e: forms::FormError) -> Self {
        StaffError::BadRequest(e.to_string())
    }
}

impl StaffError {
    fn status(&self) -> u16 {
        match self {
            StaffError::Store(_) | StaffError::Render(_) => 500,
            StaffError::Admin(crate::admin::AdminError::NotFound(_)) | StaffError::NotFound(_) => {
                404
            }
            StaffError::Admin(crate::admin::AdminError::Store(_)) => 500,
            StaffError::Admin(_) | StaffError::BadRequest(_) => 400,
            StaffError::Csrf => 403,
            StaffError::Method => 405,
        }
    }

    fn response(&self) -> Response {
        let r = pages::message_page(self.status(), "Refused", &self.to_string());
        match self {
            StaffError::Method => r.allow("GET, HEAD, POST"),
            _ => r,
        }
    }
}

/// The security headers every staff response carries.
fn secured(resp: Response) -> Response {
    let resp = if resp.cache_control.is_none() {
        resp.cache_control("no-store")
    } else {
        resp
    };
    resp.header("Content-Security-Policy", CSP)
        .header("X-Content-Type-Options", "nosniff")
        .header("Referrer-Policy", "no-referrer")
        .header("X-Frame-Options", "DENY")
}

/// A `303 See Other` to `location` (a path of ours).
pub(crate) fn see_other(location: &str) -> Response {
    Response::new(303, Vec::new()).header("Location", location)
}

/// The logged-in session of a request, if any.
pub(crate) fn session(cx: &mut Cx<'_>, req: &Request) -> Result<Option<StaffSession>, StaffError> {
    let Some(token) = req.cookie.as_deref().and_then(|c| forms::cookie(c, COOKIE)) else {
        return Ok(None);
    };
    Ok(cx.store.staff_session(&auth::token_hash(token), cx.now)?)
}

fn route(cx: &mut Cx<'_>, req: &Request) -> Result<Response, StaffError> {
    let path = req.path();
    let get = matches!(req.method, Method::Get | Method::Head);
    // What needs no session.
    if let Some(rest) = path.strip_prefix("/static/") {
        return if get {
            pages::static_file(rest)
        } else {
            Err(StaffError::Method)
        };
    }
    if path == "/login" {
        return if get {
            pages::login_page(200, None)
        } else {
            actions::login(cx, req)
        };
    }
    let Some(s) = session(cx, req)? else {
        return Ok(see_other("/login"));
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if get {
        return match segments.as_slice() {
            [""] => pages::overview(cx, &s),
            ["roster"] => pages::roster(cx, &s),
            ["audit"] => pages::audit(cx, &s),
            ["assignments", id] => pages::assignment(cx, &s, id, &forms::query(&req.target)),
            ["assignments", id, "export.csv"] => {
                pages::export_csv(cx, id, &forms::query(&req.target))
            }
            ["assignments", id, "files", sid] => pages::download(cx, id, sid),
            ["students", sid] => pages::student(cx, &s, sid),
            _ => Err(StaffError::NotFound(path.to_string())),
        };
    }
    // Every POST: the session's CSRF token first, before anything else is
    // read or done.
    let fields = actions::Fields::read(req)?;
    if !auth::csrf_matches(&s.csrf, fields.get("csrf")) {
        warn!(
            "staff {}: {} POST {path} without its CSRF token",
            cx.source, s.name
        );
        return Err(StaffError::Csrf);
    }
    match segments.as_slice() {
        ["logout"] => actions::logout(cx, &s),
        ["students", sid, "revoke"] => actions::revoke(cx, &s, sid, &fields),
        ["students", sid, "code"] => actions::reissue_code(cx, &s, sid),
        ["students", sid, "extension"] => actions::extension(cx, &s, sid, &fields),
        ["students", sid, "drop"] => actions::drop_student(cx, &s, sid),
        ["assignments", id, "due"] => actions::move_due(cx, &s, id, &fields),
        ["roster", "import"] => actions::import(cx, &s, &fields),
        _ => Err(StaffError::NotFound(path.to_string())),
    }
}

/// One staff request to run off the loop.
pub struct StaffJob {
    app: Arc<StaffApp>,
    request: Request,
    source: IpAddr,
}

impl std::fmt::Debug for StaffJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffJob")
            .field("path", &self.request.path())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl StaffJob {
    /// `request` from `source`, for `app`.
    pub fn new(app: Arc<StaffApp>, request: Request, source: IpAddr) -> StaffJob {
        StaffJob {
            app,
            request,
            source,
        }
    }

    /// Runs on a worker thread: the response, a download's body still to
    /// read, and the method it answers.
    pub fn run(self) -> (Method, Response, Option<BodyStream>) {
        let (resp, stream) = self.app.answer(&self.request, self.source);
        (self.request.method, resp, stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(xff: Option<&str>, real: Option<&str>) -> Request {
        Request {
            forwarded_for: xff.map(str::to_string),
            real_ip: real.map(str::to_string),
            ..crate::testing::get_request("/")
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn forwarded_headers_count_only_from_a_trusted_proxy() {
        let proxy = ip("127.0.0.1");
        let trusted = [proxy, ip("10.0.0.2")];
        let r = req(Some("6.6.6.6"), Some("7.7.7.7"));
        // A direct client's headers are ignored, whatever they say.
        assert_eq!(
            client_address(ip("203.0.113.9"), &r, &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(client_address(proxy, &r, &[]), proxy);
        // Through the proxy: the right-most entry not itself a proxy; what
        // the client wrote further left is not believed.
        let r = req(Some("6.6.6.6, 198.51.100.4, 10.0.0.2"), Some("7.7.7.7"));
        assert_eq!(client_address(proxy, &r, &trusted), ip("198.51.100.4"));
        // An IPv4-mapped peer is the same proxy; ports and brackets parse.
        let r = req(Some("[2001:db8::1]:443"), None);
        assert_eq!(
            client_address(ip("::ffff:127.0.0.1"), &r, &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_address(proxy, &req(Some("198.51.100.4:5555"), None), &trusted),
            ip("198.51.100.4")
        );
        // No usable X-Forwarded-For: X-Real-IP, then the peer.
        assert_eq!(
            client_address(proxy, &req(Some("unknown"), Some("7.7.7.7")), &trusted),
            ip("7.7.7.7")
        );
        assert_eq!(
            client_address(proxy, &req(Some("10.0.0.2"), Some("junk")), &trusted),
            proxy
        );
        assert_eq!(client_address(proxy, &req(None, None), &trusted), proxy);
    }
}
