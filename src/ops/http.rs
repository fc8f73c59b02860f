//! A sans-I/O HTTP/1.1 server codec for the operations listener (issue 14):
//! bytes in, whole [`Request`]s out; a [`Response`] in, bytes out. Like
//! [`crate::framing`], it never touches a socket, so the reactor owns the
//! I/O and every limit is tested without one.
//!
//! The request head is parsed by `httparse` (hyper's parser), never by
//! hand. What this module adds is the policy around it:
//!
//! - every limit ([`HttpLimits`]) is checked before more is buffered: a head
//!   over its limit is refused while it is still arriving, and a body over
//!   its limit is refused on its `Content-Length` alone, before one byte of
//!   it is read;
//! - bodies are framed by `Content-Length` only. Chunked bodies are refused
//!   (411, "send a length"), other transfer codings too (501), and anything
//!   that could make two parsers disagree on where a request ends (two
//!   `Content-Length`s, a list, both framings at once) is a 400: that is how
//!   request smuggling starts;
//! - persistence follows RFC 9112 §9.3: HTTP/1.1 stays open unless
//!   `Connection: close`, HTTP/1.0 closes unless `Connection: keep-alive`;
//! - after any [`HttpError`] the input is out of sync for good: answer with
//!   [`HttpError::response`] and close.
//!
//! Bare LF line endings are accepted, as RFC 9112 §2.2 allows a recipient to
//! (httparse does); a bare CR is an error.

use std::fmt;

/// Limits on one request. Paths and sizes come in from the binaries; these
/// defaults suit the operations endpoints (an OCSP request is a few hundred
/// bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// The request line and headers together, in bytes.
    pub max_head: usize,
    /// Header fields in one request.
    pub max_headers: usize,
    /// The body, in bytes.
    pub max_body: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_head: 8 * 1024,
            max_headers: 32,
            max_body: 16 * 1024,
        }
    }
}

/// The methods the operations endpoints serve. Any other is answered 405
/// (with `Allow`), since no resource here supports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: a `GET` whose response body is left out.
    Head,
    /// `POST`.
    Post,
}

impl Method {
    /// The method as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
        }
    }
}

/// The `Allow` header value that goes with a 405.
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST";

/// The protocol version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`.
    Http10,
    /// `HTTP/1.1`.
    Http11,
}

/// One whole request, body included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The request target in origin form (`/ocsp/...`, query included). An
    /// absolute-form target (`http://host/ocsp`) is reduced to its path.
    pub target: String,
    /// The protocol version.
    pub version: Version,
    /// The `Content-Type` value, if given.
    pub content_type: Option<String>,
    /// Whether `Expect: 100-continue` was sent.
    pub expects_continue: bool,
    /// The body (empty when there is none).
    pub body: Vec<u8>,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// The `Cookie` fields, joined with `; ` (the staff listener's
    /// session), if any.
    pub cookie: Option<String>,
    /// The `X-Forwarded-For` fields, joined with `, ` (RFC 9110 §5.3), if
    /// any. Only the staff listener reads it, and only from a proxy it was
    /// told to trust: anyone else can write anything here.
    pub forwarded_for: Option<String>,
    /// The `X-Real-IP` field (the last one given), if any; trusted as
    /// little as `forwarded_for`.
    pub real_ip: Option<String>,
}

impl Request {
    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(p, _)| p)
    }

    /// The media type of the body, lower-cased, without parameters
    /// (`application/ocsp-request`), if a `Content-Type` was given.
    pub fn media_type(&self) -> Option<String> {
        let ct = self.content_type.as_deref()?;
        let media = ct.split(';').next().unwrap_or(ct); // ok: split yields at least one item
        Some(media.trim().to_ascii_lowercase())
    }
}

/// Why a byte stream is not an acceptable request. Each maps to the status
/// to answer with ([`HttpError::status`]); after any of them the connection
/// is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The head is not HTTP/1.x syntax (httparse's reason). 400.
    Syntax(httparse::Error),
    /// A well-formed request line with a version other than 1.0 or 1.1
    /// (the HTTP/2 connection preface among them). 505.
    UnsupportedVersion,
    /// A method other than GET, HEAD and POST. 405.
    MethodNotAllowed(String),
    /// The request line alone is longer than the head limit. 414.
    TargetTooLong {
        /// The head limit in bytes.
        max: usize,
    },
    /// The head is longer than its limit. 431.
    HeadTooLarge {
        /// The head limit in bytes.
        max: usize,
    },
    /// More header fields than the limit. 431.
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// The announced body is larger than the limit; refused before it is
    /// read. 413.
    BodyTooLarge {
        /// The announced length (saturated at `u64::MAX`).
        len: u64,
        /// The limit in bytes.
        max: usize,
    },
    /// A `Content-Length` that is not one decimal number. 400.
    BadContentLength,
    /// More than one `Content-Length` field. 400.
    DuplicateContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`. 400.
    LengthAndTransferEncoding,
    /// A chunked body: only `Content-Length` framing is supported. 411.
    ChunkedBody,
    /// A transfer coding other than chunked. 501.
    UnsupportedTransferEncoding,
    /// An HTTP/1.1 request without exactly one `Host`. 400.
    BadHost,
    /// A target that is neither origin form (`/...`) nor absolute form. 400.
    BadTarget,
    /// A header the request needs is not valid UTF-8 text (named). 400.
    BadHeaderValue(&'static str),
}

impl HttpError {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Syntax(httparse::Error::TooManyHeaders) => 431,
            HttpError::Syntax(_)
            | HttpError::BadContentLength
            | HttpError::DuplicateContentLength
            | HttpError::LengthAndTransferEncoding
            | HttpError::BadHost
            | HttpError::BadTarget
            | HttpError::BadHeaderValue(_) => 400,
            HttpError::UnsupportedVersion => 505,
            HttpError::MethodNotAllowed(_) => 405,
            HttpError::TargetTooLong { .. } => 414,
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => 431,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::ChunkedBody => 411,
            HttpError::UnsupportedTransferEncoding => 501,
        }
    }

    /// The whole answer: the status, this error's text as a plain-text
    /// body, `Allow` with a 405, and `Connection: close`.
    pub fn response(&self) -> Response {
        let mut r = Response::refusal(self.status(), &self.to_string());
        if let HttpError::MethodNotAllowed(_) = self {
            r = r.allow(ALLOWED_METHODS);
        }
        r
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Syntax(e) => write!(f, "malformed request head: {e}"),
            HttpError::UnsupportedVersion => write!(f, "only HTTP/1.0 and HTTP/1.1 are supported"),
            HttpError::MethodNotAllowed(m) => {
                write!(f, "method {m:?} not allowed (allowed: {ALLOWED_METHODS})")
            }
            HttpError::TargetTooLong { max } => {
                write!(f, "request line longer than the {max}-byte limit")
            }
            HttpError::HeadTooLarge { max } => {
                write!(f, "request head longer than the {max}-byte limit")
            }
            HttpError::TooManyHeaders { max } => {
                write!(f, "more than {max} header fields")
            }
            HttpError::BodyTooLarge { len, max } => {
                write!(f, "body of {len} bytes exceeds the limit of {max} bytes")
            }
            HttpError::BadContentLength => write!(f, "invalid content-length"),
            HttpError::DuplicateContentLength => write!(f, "more than one content-length"),
            HttpError::LengthAndTransferEncoding => {
                write!(f, "both content-length and transfer-encoding")
            }
            HttpError::ChunkedBody => {
                write!(f, "chunked bodies are not supported: send a content-length")
            }
            HttpError::UnsupportedTransferEncoding => write!(f, "unsupported transfer-encoding"),
            HttpError::BadHost => write!(f, "an HTTP/1.1 request needs exactly one host header"),
            HttpError::BadTarget => write!(f, "request target is not a path"),
            HttpError::BadHeaderValue(name) => write!(f, "invalid {name} header value"),
        }
    }
}

impl std::error::Error for HttpError {}

/// A request whose head is parsed and whose body is still arriving.
#[derive(Debug, Clone)]
struct Pending {
    request: Request,
    head_len: usize,
    body_len: usize,
}

#[derive(Debug, Clone)]
enum DecodeState {
    Head,
    Body(Pending),
}

/// Incremental request decoder: feed it the connection's input buffer,
/// take whole requests out. Bytes are consumed only once a whole request is
/// there; pipelined requests come out one per call.
#[derive(Debug, Clone)]
pub struct RequestDecoder {
    state: DecodeState,
    limits: HttpLimits,
}

impl RequestDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: HttpLimits) -> Self {
        RequestDecoder {
            state: DecodeState::Head,
            limits,
        }
    }

    /// Takes the next whole request off the front of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed. After an error the stream is
    /// out of sync for good: answer [`HttpError::response`] and close.
    ///
    /// The head is re-parsed on each call until it is complete; the head
    /// limit bounds that work.
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Option<Request>, HttpError> {
        if let DecodeState::Head = self.state {
            match self.parse_head(buf)? {
                Some(pending) => self.state = DecodeState::Body(pending),
                None => return Ok(None),
            }
        }
        let DecodeState::Body(pending) = &self.state else {
            return Ok(None);
        };
        let Some(total) = pending.head_len.checked_add(pending.body_len) else {
            return Err(HttpError::BodyTooLarge {
                len: u64::MAX,
                max: self.limits.max_body,
            });
        };
        if buf.len() < total {
            return Ok(None);
        }
        let DecodeState::Body(mut pending) = std::mem::replace(&mut self.state, DecodeState::Head)
        else {
            return Ok(None);
        };
        pending.request.body = buf[pending.head_len..total].to_vec();
        buf.drain(..total);
        Ok(Some(pending.request))
    }

    /// Whether a parsed head announced a body that is not all here yet and
    /// asked for `100 Continue` first (curl does for bodies over 1 KiB).
    /// The reactor may send `HTTP/1.1 100 Continue\r\n\r\n` once when this
    /// turns true; not sending it only delays such a client by its timeout.
    pub fn awaiting_continue(&self) -> bool {
        match &self.state {
            DecodeState::Body(p) => p.request.expects_continue && p.body_len > 0,
            DecodeState::Head => false,
        }
    }

    /// Parses the head at the front of `buf` if it is all there, and checks
    /// it against the limits and the framing rules.
    fn parse_head(&self, buf: &[u8]) -> Result<Option<Pending>, HttpError> {
        let limits = &self.limits;
        let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut req = httparse::Request::new(&mut headers);
        let window = &buf[..buf.len().min(limits.max_head)];
        let head_len = match req.parse(window) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if buf.len() < limits.max_head {
                    return Ok(None);
                }
                // The whole allowance is here and the head is not over.
                return Err(if window.contains(&b'\n') {
                    HttpError::HeadTooLarge {
                        max: limits.max_head,
                    }
                } else {
                    HttpError::TargetTooLong {
                        max: limits.max_head,
                    }
                });
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HttpError::TooManyHeaders {
                    max: limits.max_headers,
                })
            }
            Err(httparse::Error::Version) => return Err(version_error(window)),
            Err(e) => return Err(HttpError::Syntax(e)),
        };
        // httparse only returns Complete with all three set.
        let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
            return Err(HttpError::Syntax(httparse::Error::Token));
        };
        let method = match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            other => return Err(HttpError::MethodNotAllowed(other.to_owned())),
        };
        let version = match minor {
            0 => Version::Http10,
            _ => Version::Http11,
        };
        let target = origin_form(target)?;
        let fields = Fields::read(req.headers)?;
        if version == Version::Http11 && fields.hosts != 1 {
            return Err(HttpError::BadHost);
        }
        let body_len = match (fields.content_length, fields.transfer_encoding) {
            (Some(_), Some(_)) => return Err(HttpError::LengthAndTransferEncoding),
            (None, Some(te)) => return Err(te),
            (Some(len), None) => len,
            (None, None) => 0,
        };
        let body_len = usize::try_from(body_len)
            .ok()
            .filter(|n| *n <= limits.max_body)
            .ok_or(HttpError::BodyTooLarge {
                len: body_len,
                max: limits.max_body,
            })?;
        let keep_alive = match version {
            Version::Http11 => !fields.close,
            Version::Http10 => fields.keep_alive && !fields.close,
        };
        Ok(Some(Pending {
            request: Request {
                method,
                target,
                version,
                content_type: fields.content_type,
                expects_continue: fields.expects_continue,
                body: Vec::new(),
                keep_alive,
                cookie: fields.cookie,
                forwarded_for: fields.forwarded_for,
                real_ip: fields.real_ip,
            },
            head_len,
            body_len,
        }))
    }
}

/// httparse reports any bad version byte the same way: tell a request line
/// asking for another version (`HTTP/` and a digit: 505) from garbage
/// (400). Only the bytes up to the one httparse stopped at decide, so the
/// answer is the same however the head was split into reads.
fn version_error(head: &[u8]) -> HttpError {
    let line = head.split(|b| *b == b'\n').next().unwrap_or(head); // ok: split yields at least one item
    let mut parts = line.splitn(3, |b| *b == b' ');
    let wants_other_version = matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(m), Some(t), Some(v))
            if !m.is_empty() && !t.is_empty()
                && v.len() > 5 && v.starts_with(b"HTTP/") && v[5].is_ascii_digit()
    );
    if wants_other_version {
        HttpError::UnsupportedVersion
    } else {
        HttpError::Syntax(httparse::Error::Version)
    }
}

/// The origin-form path of a request target; an absolute-form target
/// (which RFC 9112 §3.2.2 says a server must accept) is reduced to its path.
fn origin_form(target: &str) -> Result<String, HttpError> {
    if target.starts_with('/') {
        return Ok(target.to_owned());
    }
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else {
        return Err(HttpError::BadTarget);
    };
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => Ok(rest[i..].to_owned()),
        Some(i) => Ok(format!("/{}", &rest[i..])),
        None => Ok("/".to_owned()),
    }
}

/// What the decoder needs from the header fields.
#[derive(Debug, Default)]
struct Fields {
    content_length: Option<u64>,
    /// The error a `Transfer-Encoding` field leads to, if there was one.
    transfer_encoding: Option<HttpError>,
    content_type: Option<String>,
    hosts: usize,
    close: bool,
    keep_alive: bool,
    expects_continue: bool,
    cookie: Option<String>,
    forwarded_for: Option<String>,
    real_ip: Option<String>,
}

impl Fields {
    fn read(headers: &[httparse::Header<'_>]) -> Result<Fields, HttpError> {
        let mut f = Fields::default();
        for h in headers {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                if f.content_length.is_some() {
                    return Err(HttpError::DuplicateContentLength);
                }
                f.content_length = Some(content_length(h.value)?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                let chunked = std::str::from_utf8(h.value)
                    .map(|v| v.trim().eq_ignore_ascii_case("chunked"))
                    .unwrap_or(false);
                // Any second field, or chunked after another coding, is
                // something we do not do either way.
                f.transfer_encoding = Some(if chunked && f.transfer_encoding.is_none() {
                    HttpError::ChunkedBody
                } else {
                    HttpError::UnsupportedTransferEncoding
                });
            } else if name.eq_ignore_ascii_case("content-type") {
                let v = std::str::from_utf8(h.value)
                    .map_err(|_| HttpError::BadHeaderValue("content-type"))?;
                f.content_type = Some(v.trim().to_owned());
            } else if name.eq_ignore_ascii_case("host") {
                f.hosts += 1;
            } else if name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    f.close |= token.eq_ignore_ascii_case(b"close");
                    f.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case("cookie") {
                // RFC 6265 §5.4: one field, but HTTP/2 proxies may split it.
                let v = std::str::from_utf8(h.value)
                    .map_err(|_| HttpError::BadHeaderValue("cookie"))?;
                f.cookie = Some(match f.cookie.take() {
                    Some(before) => format!("{before}; {}", v.trim()),
                    None => v.trim().to_owned(),
                });
            } else if name.eq_ignore_ascii_case("x-forwarded-for") {
                // Not an error when unreadable: most listeners ignore it, and
                // the staff side treats a missing address like a bad one.
                if let Ok(v) = std::str::from_utf8(h.value) {
                    f.forwarded_for = Some(match f.forwarded_for.take() {
                        Some(before) => format!("{before}, {}", v.trim()),
                        None => v.trim().to_owned(),
                    });
                }
            } else if name.eq_ignore_ascii_case("x-real-ip") {
                f.real_ip = std::str::from_utf8(h.value)
                    .ok()
                    .map(|v| v.trim().to_owned());
            } else if name.eq_ignore_ascii_case("expect") {
                f.expects_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
        }
        Ok(f)
    }
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6): no sign, no list, no
/// spaces inside. A number too large for u64 is still a length, just an
/// impossible one: it saturates, and the body limit refuses it.
fn content_length(value: &[u8]) -> Result<u64, HttpError> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadContentLength);
    }
    Ok(digits.iter().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// One response. The encoder adds `Content-Length` and `Connection`
/// itself; the other headers are written only when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// `Cache-Control`, if any (RFC 5019 §6.2 for OCSP GET answers).
    pub cache_control: Option<String>,
    /// `Allow`, for a 405.
    pub allow: Option<&'static str>,
    /// Whether the connection closes after this response.
    pub close: bool,
    /// Further header fields, in order (the staff pages' security headers,
    /// `Location`, `Set-Cookie`, `Content-Disposition`).
    pub headers: Vec<(&'static str, String)>,
    /// The body (left out for HEAD, its length still announced).
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status` and `body`, keeping the connection open.
    pub fn new(status: u16, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type: None,
            cache_control: None,
            allow: None,
            close: false,
            headers: Vec::new(),
            body,
        }
    }

    /// A refusal in plain text that closes the connection, on either
    /// listener: marked not to be sniffed, framed, cached or run, since on
    /// the staff listener a browser may be the one refused.
    pub fn refusal(status: u16, reason: &str) -> Response {
        Response::new(status, format!("{reason}\n").into_bytes())
            .content_type("text/plain; charset=utf-8")
            .cache_control("no-store")
            .header("X-Content-Type-Options", "nosniff")
            .header(
                "Content-Security-Policy",
                "default-src 'none'; frame-ancestors 'none'",
            )
            .close()
    }

    /// Adds a header field (its value stripped of control characters).
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets `Content-Type`.
    pub fn content_type(mut self, value: impl Into<String>) -> Self {
        self.content_type = Some(value.into());
        self
    }

    /// Sets `Cache-Control`.
    pub fn cache_control(mut self, value: impl Into<String>) -> Self {
        self.cache_control = Some(value.into());
        self
    }

    /// Sets `Allow`.
    pub fn allow(mut self, methods: &'static str) -> Self {
        self.allow = Some(methods);
        self
    }

    /// Marks the connection to close after this response.
    pub fn close(mut self) -> Self {
        self.close = true;
        self
    }

    /// Appends the response as HTTP/1.1 bytes, answering a request made
    /// with `method` (HEAD gets the head only).
    pub fn encode(&self, method: Method, out: &mut Vec<u8>) {
        let head = self.head(self.body.len() as u64);
        out.reserve(head.len() + self.body.len());
        out.extend_from_slice(head.as_bytes());
        if method != Method::Head {
            out.extend_from_slice(&self.body);
        }
    }

    /// Only the head, announcing a body of `len` bytes that the caller
    /// sends itself, piece by piece (a staff download); `self.body` is
    /// not sent.
    pub fn encode_head(&self, len: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(self.head(len).as_bytes());
    }

    fn head(&self, len: u64) -> String {
        use std::fmt::Write as _;
        let mut h = String::with_capacity(160);
        // Writing to a String cannot fail.
        let _ = write!(
            h,
            "HTTP/1.1 {} {}\r\n",
            self.status,
            reason_phrase(self.status)
        );
        if let Some(ct) = &self.content_type {
            let _ = write!(h, "Content-Type: {}\r\n", header_text(ct));
        }
        if let Some(cc) = &self.cache_control {
            let _ = write!(h, "Cache-Control: {}\r\n", header_text(cc));
        }
        if let Some(allow) = self.allow {
            let _ = write!(h, "Allow: {}\r\n", header_text(allow));
        }
        for (name, value) in &self.headers {
            let _ = write!(h, "{}: {}\r\n", header_text(name), header_text(value));
        }
        let _ = write!(h, "Content-Length: {len}\r\n");
        let connection = if self.close { "close" } else { "keep-alive" };
        let _ = write!(h, "Connection: {connection}\r\n\r\n");
        h
    }
}

/// A header value with any control character dropped, so no caller's
/// string can split the head.
fn header_text(v: &str) -> String {
    v.chars().filter(|c| !c.is_control()).collect()
}

/// The reason phrase of the statuses this listener sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// The interim response for [`RequestDecoder::awaiting_continue`].
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

    fn decoder() -> RequestDecoder {
        RequestDecoder::new(HttpLimits::default())
    }

    fn small() -> RequestDecoder {
        RequestDecoder::new(HttpLimits {
            max_head: 64,
            max_headers: 4,
            max_body: 16,
        })
    }

    fn decode_all(wire: &[u8]) -> Result<Option<Request>, HttpError> {
        decoder().decode(&mut wire.to_vec())
    }

    fn post(body: &[u8]) -> Vec<u8> {
        let mut w = format!(
            "POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        w.extend_from_slice(body);
        w
    }

    #[test]
    fn read_simple_get() {
        let req = decode_all(GET).unwrap().unwrap();
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.target, "/health");
        assert_eq!(req.version, Version::Http11);
        assert!(req.keep_alive);
        assert!(req.body.is_empty());
    }

    #[test]
    fn forwarded_fields_are_joined_in_order() {
        let wire = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\n\
                     X-Real-IP: 9.9.9.9\r\nx-forwarded-for:  3.3.3.3 \r\n\r\n";
        let req = decode_all(wire).unwrap().unwrap();
        assert_eq!(
            req.forwarded_for.as_deref(),
            Some("1.1.1.1, 2.2.2.2, 3.3.3.3")
        );
        assert_eq!(req.real_ip.as_deref(), Some("9.9.9.9"));
        let plain = decode_all(GET).unwrap().unwrap();
        assert_eq!((plain.forwarded_for, plain.real_ip), (None, None));
    }

    #[test]
    fn read_incomplete_head() {
        let mut d = decoder();
        let mut buf = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), 31, "nothing consumed before a whole request");
    }

    #[test]
    fn read_head_split_over_many_reads() {
        let mut d = decoder();
        let wire = post(b"\x30\x03\x02\x01\x01");
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for b in &wire {
            buf.push(*b);
            if let Some(r) = d.decode(&mut buf).unwrap() {
                got.push(r);
            }
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, b"\x30\x03\x02\x01\x01");
        assert_eq!(
            got[0].media_type().as_deref(),
            Some("application/ocsp-request")
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn read_pipelined_requests_in_one_buffer() {
        let mut d = decoder();
        let mut buf = GET.to_vec();
        buf.extend(post(b"abc"));
        buf.extend(b"GET /metrics HTTP/1.0\r\n\r\n");
        buf.extend(b"GET /cr"); // start of a fourth
        let a = d.decode(&mut buf).unwrap().unwrap();
        let b = d.decode(&mut buf).unwrap().unwrap();
        let c = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!((a.method, a.path()), (Method::Get, "/health"));
        assert_eq!((b.method, b.body.as_slice()), (Method::Post, &b"abc"[..]));
        assert_eq!(
            (c.path(), c.version, c.keep_alive),
            ("/metrics", Version::Http10, false)
        );
        assert_eq!(buf, b"GET /cr");
    }

    #[test]
    fn read_body_split() {
        let mut d = decoder();
        let wire = post(b"0123456789");
        let split = wire.len() - 4;
        let mut buf = wire[..split].to_vec();
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), split, "head kept until the body is whole");
        buf.extend(&wire[split..]);
        assert_eq!(d.decode(&mut buf).unwrap().unwrap().body, b"0123456789");
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_oversized_head_while_it_arrives() {
        let mut d = small();
        let mut buf = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
        buf.extend(std::iter::repeat_n(b'a', 64 - buf.len() - 1));
        assert_eq!(d.decode(&mut buf), Ok(None), "one byte under the limit");
        buf.push(b'a');
        assert_eq!(d.decode(&mut buf), Err(HttpError::HeadTooLarge { max: 64 }));
        assert_eq!(HttpError::HeadTooLarge { max: 64 }.status(), 431);
    }

    #[test]
    fn refuses_long_request_line_as_uri_too_long() {
        let mut buf = b"GET /".to_vec();
        buf.extend(std::iter::repeat_n(b'a', 100));
        let err = small().decode(&mut buf).unwrap_err();
        assert_eq!(err, HttpError::TargetTooLong { max: 64 });
        assert_eq!(err.status(), 414);
    }

    #[test]
    fn refuses_too_many_headers() {
        let mut buf = b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n".to_vec();
        let err = small().decode(&mut buf).unwrap_err();
        assert_eq!(err, HttpError::TooManyHeaders { max: 4 });
        assert_eq!(err.status(), 431);
    }

    #[test]
    fn refuses_oversized_body_on_the_header_alone() {
        let mut d = small();
        let mut buf = b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n".to_vec();
        let err = d.decode(&mut buf).unwrap_err();
        assert_eq!(err, HttpError::BodyTooLarge { len: 17, max: 16 });
        assert_eq!(err.status(), 413);
        let mut huge =
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n"
                .to_vec();
        assert_eq!(
            decoder().decode(&mut huge),
            Err(HttpError::BodyTooLarge {
                len: u64::MAX,
                max: 16 * 1024
            })
        );
        let mut at_limit =
            b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n0123456789abcdef"
                .to_vec();
        assert_eq!(
            small().decode(&mut at_limit).unwrap().unwrap().body.len(),
            16
        );
    }

    #[test]
    fn refuses_garbage() {
        for garbage in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..], // a TLS ClientHello
            b"\x00\x01\x02\x03\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET / FTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", // bare CR
        ] {
            let err = decode_all(garbage).unwrap_err();
            assert_eq!(err.status(), 400, "{garbage:02x?}: {err}");
        }
    }

    #[test]
    fn accepts_bare_lf_line_endings() {
        let req = decode_all(b"GET /crl HTTP/1.1\nHost: x\n\n")
            .unwrap()
            .unwrap();
        assert_eq!(req.path(), "/crl");
    }

    #[test]
    fn refuses_http2_preface_as_unsupported_version() {
        let err = decode_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap_err();
        assert_eq!(err, HttpError::UnsupportedVersion);
        assert_eq!(err.status(), 505);
        assert_eq!(
            decode_all(b"GET / HTTP/1.2\r\nHost: x\r\n\r\n"),
            Err(HttpError::UnsupportedVersion)
        );
        assert_eq!(
            decode_all(b"GET / HTTP/3\r\n\r\n"),
            Err(HttpError::UnsupportedVersion)
        );
        // Decided on the version alone, whatever follows it.
        assert_eq!(
            decode_all(b"GET / HTTP/2 x\r\n\r\n"),
            Err(HttpError::UnsupportedVersion)
        );
        assert_eq!(
            decode_all(b"GET / HTTQ/1.1\r\n\r\n"),
            Err(HttpError::Syntax(httparse::Error::Version))
        );
    }

    #[test]
    fn refuses_chunked_and_other_transfer_codings() {
        let chunked = b"POST /ocsp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let err = decode_all(chunked).unwrap_err();
        assert_eq!((err.clone(), err.status()), (HttpError::ChunkedBody, 411));
        let gzip = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(decode_all(gzip).unwrap_err().status(), 501);
        let both =
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc";
        assert_eq!(decode_all(both), Err(HttpError::LengthAndTransferEncoding));
    }

    #[test]
    fn refuses_duplicate_or_malformed_content_length() {
        let dup =
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(decode_all(dup), Err(HttpError::DuplicateContentLength));
        for bad in ["3, 3", "+3", "-1", "0x10", "", "3 3"] {
            let wire = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {bad}\r\n\r\nabc");
            let err = decode_all(wire.as_bytes()).unwrap_err();
            assert_eq!(
                (err.clone(), err.status()),
                (HttpError::BadContentLength, 400),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refuses_other_methods_with_allow() {
        let err = decode_all(b"DELETE /crl HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_err();
        assert_eq!(err, HttpError::MethodNotAllowed("DELETE".into()));
        let mut out = Vec::new();
        err.response().encode(Method::Get, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAllow: GET, HEAD, POST\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    }

    #[test]
    fn http11_needs_one_host() {
        assert_eq!(
            decode_all(b"GET / HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadHost)
        );
        assert_eq!(
            decode_all(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(HttpError::BadHost)
        );
        assert!(decode_all(b"GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let ka = |wire: &[u8]| decode_all(wire).unwrap().unwrap().keep_alive;
        assert!(ka(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n"
        ));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: te, close\r\n\r\n"
        ));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn absolute_form_targets_become_paths() {
        let path = |t: &str| {
            let wire = format!("GET {t} HTTP/1.1\r\nHost: x\r\n\r\n");
            decode_all(wire.as_bytes()).map(|r| r.unwrap().target)
        };
        assert_eq!(
            path("http://ca.example:8080/ocsp/MEow"),
            Ok("/ocsp/MEow".into())
        );
        assert_eq!(path("HTTPS://ca.example"), Ok("/".into()));
        assert_eq!(path("http://ca.example?x"), Ok("/?x".into()));
        assert_eq!(path("*"), Err(HttpError::BadTarget));
        assert_eq!(path("ocsp"), Err(HttpError::BadTarget));
    }

    #[test]
    fn waits_for_100_continue_only_while_the_body_is_missing() {
        let mut d = decoder();
        let mut buf =
            b"POST /ocsp HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
                .to_vec();
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(d.awaiting_continue());
        buf.extend(b"hi");
        assert_eq!(d.decode(&mut buf).unwrap().unwrap().body, b"hi");
        assert!(!d.awaiting_continue());
    }

    #[test]
    fn encodes_responses() {
        let r = Response::new(200, b"DER".to_vec())
            .content_type("application/ocsp-response")
            .cache_control("max-age=300, public, no-transform, must-revalidate");
        let mut out = Vec::new();
        r.encode(Method::Get, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\n\
              Cache-Control: max-age=300, public, no-transform, must-revalidate\r\n\
              Content-Length: 3\r\nConnection: keep-alive\r\n\r\nDER"
        );
        let mut head = Vec::new();
        r.clone().close().encode(Method::Head, &mut head);
        assert!(head.ends_with(b"Content-Length: 3\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn refusals_are_plain_text_not_to_be_sniffed_framed_or_cached() {
        let mut out = Vec::new();
        HttpError::UnsupportedVersion
            .response()
            .encode(Method::Get, &mut out);
        let text = String::from_utf8_lossy(&out);
        for field in [
            "Content-Type: text/plain; charset=utf-8\r\n",
            "Cache-Control: no-store\r\n",
            "X-Content-Type-Options: nosniff\r\n",
            "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n",
            "Connection: close\r\n",
        ] {
            assert!(text.contains(field), "{field:?} missing:\n{text}");
        }
    }

    #[test]
    fn encoded_responses_cannot_be_split_by_header_values() {
        let r = Response::new(200, Vec::new()).content_type("text/plain\r\nSet-Cookie: x");
        let mut out = Vec::new();
        r.encode(Method::Get, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Content-Type: text/plainSet-Cookie: x\r\n"),
            "{text}"
        );
    }

    /// The requests and the final error of `stream` decoded `chunk` bytes
    /// at a time.
    fn decode_in_pieces(
        limits: HttpLimits,
        stream: &[u8],
        chunk: usize,
    ) -> (Vec<Request>, Option<HttpError>) {
        let mut d = RequestDecoder::new(limits);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(r)) => out.push(r),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    proptest::proptest! {
        #[test]
        fn how_bytes_arrive_does_not_matter(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(GET.to_vec()),
                    proptest::strategy::Just(post(b"0123456789")),
                    proptest::strategy::Just(b"GET / HTTP/1.0\r\n\r\n".to_vec()),
                    proptest::strategy::Just(b"GET / HTTP/2 x\r\n\r\n".to_vec()),
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
                ],
                0..6,
            ),
            chunk in 1usize..40,
        ) {
            let stream = parts.concat();
            let limits = HttpLimits { max_head: 96, max_headers: 4, max_body: 12 };
            let whole = decode_in_pieces(limits, &stream, stream.len().max(1));
            let pieces = decode_in_pieces(limits, &stream, chunk);
            proptest::prop_assert_eq!(whole, pieces);
        }
    }

    #[test]
    fn error_statuses_cover_the_brief() {
        let errs = [
            (HttpError::Syntax(httparse::Error::Token), 400),
            (HttpError::MethodNotAllowed("PUT".into()), 405),
            (HttpError::ChunkedBody, 411),
            (HttpError::BodyTooLarge { len: 1, max: 0 }, 413),
            (HttpError::TargetTooLong { max: 1 }, 414),
            (HttpError::TooManyHeaders { max: 1 }, 431),
            (HttpError::UnsupportedTransferEncoding, 501),
            (HttpError::UnsupportedVersion, 505),
        ];
        for (e, status) in errs {
            assert_eq!(e.status(), status, "{e}");
            let text = e.to_string();
            assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
            assert!(!reason_phrase(status).is_empty());
        }
    }
}
