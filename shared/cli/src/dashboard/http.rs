//! The dashboard's side of HTTP/1.1, small on purpose: one request per connection (every
//! answer closes it), a bounded head and body, no chunked uploads, no keep-alive. It serves
//! one engineer's browser on loopback; a general web server would be a dependency (and a
//! hyper feature rebuilding every AWS SDK crate) for nothing this page needs.
//!
//! Parsing is pure (`parse_head`, `parse_form`) and table-tested below;
//! `read_request` only gathers bytes within the limits.

pub use greenlight_core::form::decode;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The request line and headers may not exceed this (bytes).
pub const MAX_HEAD: usize = 16 * 1024;
/// A request body (an action's form) may not exceed this (bytes).
pub const MAX_BODY: usize = 16 * 1024;
/// A client gets this long to send its whole request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many headers.
const MAX_HEADERS: usize = 64;

/// The methods the dashboard answers; anything else is refused with 405.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Other,
}

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path, percent-decoding left to the router (a service name is checked after it).
    pub path: String,
    /// The query string without `?` ("" when none).
    pub query: String,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read: answered with the status it names, then closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRequest {
    /// 431: the head is over [`MAX_HEAD`].
    HeadTooLarge,
    /// 413: the body is over [`MAX_BODY`].
    BodyTooLarge,
    /// 411/501: a body the dashboard does not read (chunked, or a POST without a length).
    LengthRequired,
    /// 400: not HTTP/1.x as this parser reads it.
    Malformed(&'static str),
    /// 408: the client stopped sending.
    Timeout,
    /// The connection closed before a whole request arrived: nothing to answer.
    Closed,
}

impl BadRequest {
    /// The status line's code and text.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            BadRequest::HeadTooLarge => (431, "request head too large"),
            BadRequest::BodyTooLarge => (413, "request body too large"),
            BadRequest::LengthRequired => (411, "a request body needs Content-Length"),
            BadRequest::Malformed(why) => (400, why),
            BadRequest::Timeout => (408, "request not sent in time"),
            BadRequest::Closed => (400, "connection closed"),
        }
    }
}

/// The request line and headers (the bytes before the blank line), parsed.
pub fn parse_head(head: &str) -> Result<Request, BadRequest> {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadRequest::Malformed(
            "the request line is not `METHOD TARGET HTTP/1.x`",
        ));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(BadRequest::Malformed("only HTTP/1.x is served"));
    }
    if !target.starts_with('/') {
        return Err(BadRequest::Malformed("the target must be a path"));
    }
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => Method::Other,
        _ => return Err(BadRequest::Malformed("not an HTTP method")),
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(BadRequest::Malformed("a header line without `:`"));
        };
        if name.is_empty() || name.contains(|c: char| c.is_whitespace()) {
            return Err(BadRequest::Malformed("a header name with spaces"));
        }
        if headers.len() == MAX_HEADERS {
            return Err(BadRequest::HeadTooLarge);
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Vec::new(),
    })
}

/// Reads one request within the limits and [`READ_TIMEOUT`].
pub async fn read_request<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Request, BadRequest> {
    tokio::time::timeout(READ_TIMEOUT, read_within_limits(reader))
        .await
        .unwrap_or(Err(BadRequest::Timeout))
}

async fn read_within_limits<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Request, BadRequest> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at;
        }
        if buf.len() > MAX_HEAD {
            return Err(BadRequest::HeadTooLarge);
        }
        let n = reader.read(&mut chunk).await.map_err(|_| BadRequest::Closed)?;
        if n == 0 {
            return Err(BadRequest::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if head_end > MAX_HEAD {
        return Err(BadRequest::HeadTooLarge);
    }
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| BadRequest::Malformed("the head is not UTF-8"))?;
    let mut request = parse_head(head)?;
    if request.header("transfer-encoding").is_some() {
        return Err(BadRequest::LengthRequired);
    }
    let length = match request.header("content-length") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| BadRequest::Malformed("Content-Length is not a number"))?,
        None if request.method == Method::Post => return Err(BadRequest::LengthRequired),
        None => 0,
    };
    if length > MAX_BODY {
        return Err(BadRequest::BodyTooLarge);
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = reader.read(&mut chunk).await.map_err(|_| BadRequest::Closed)?;
        if n == 0 {
            return Err(BadRequest::Closed);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    request.body = body;
    Ok(request)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An `application/x-www-form-urlencoded` body (or query string) as name/value pairs, each
/// decoded as greenlight-core decodes S3's form-encoded keys; None when a pair cannot be.
pub fn parse_form(text: &str) -> Option<Vec<(String, String)>> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(name).ok()?, decode(value).ok()?))
        })
        .collect()
}

/// An answer: status, content type, body and extra headers. Every answer closes the
/// connection and carries the headers that keep the page to itself (CSP without inline
/// script or style, no sniffing, no framing, no caching, no referrer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// The Content-Security-Policy of every answer: the page's own script and style only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub fn html(status: u16, body: String) -> Response {
        Response::new(status, "text/html; charset=utf-8", body)
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response::new(status, "application/json", value.to_string())
    }

    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body.into())
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The status line, headers and body as sent.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        head.push_str(&security_headers());
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// The headers every answer (and the event stream) carries.
pub fn security_headers() -> String {
    format!(
        "content-security-policy: {CSP}\r\nx-content-type-options: nosniff\r\nx-frame-options: DENY\r\n\
         referrer-policy: no-referrer\r\ncache-control: no-store\r\n"
    )
}

/// The head of a server-sent event stream (the body never ends; the connection closes when
/// the page goes away).
pub fn event_stream_head() -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\nconnection: close\r\n{}\r\n",
        security_headers()
    )
    .into_bytes()
}

/// One server-sent event: `event: <name>` and the data, a `data:` line per line.
pub fn event(name: &str, data: &str) -> Vec<u8> {
    let mut out = format!("event: {name}\n");
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.trim_end_matches('\r'));
        out.push('\n');
    }
    out.push('\n');
    out.into_bytes()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_parse_or_are_refused_with_the_reason() {
        let ok = parse_head("GET /services/checkout?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8577\r\nOrigin:  http://a \r\n")
            .unwrap();
        assert_eq!(ok.method, Method::Get);
        assert_eq!((ok.path.as_str(), ok.query.as_str()), ("/services/checkout", "x=1"));
        assert_eq!(ok.header("host"), Some("127.0.0.1:8577"));
        assert_eq!(ok.header("origin"), Some("http://a"));
        assert_eq!(parse_head("DELETE / HTTP/1.1").unwrap().method, Method::Other);
        let table: &[(&str, BadRequest)] = &[
            (
                "GET /",
                BadRequest::Malformed("the request line is not `METHOD TARGET HTTP/1.x`"),
            ),
            (
                "GET / HTTP/1.1 extra",
                BadRequest::Malformed("the request line is not `METHOD TARGET HTTP/1.x`"),
            ),
            ("GET / HTTP/2", BadRequest::Malformed("only HTTP/1.x is served")),
            (
                "GET http://x/ HTTP/1.1",
                BadRequest::Malformed("the target must be a path"),
            ),
            ("get / HTTP/1.1", BadRequest::Malformed("not an HTTP method")),
            (
                "GET / HTTP/1.1\r\nno colon",
                BadRequest::Malformed("a header line without `:`"),
            ),
            (
                "GET / HTTP/1.1\r\nbad name: x",
                BadRequest::Malformed("a header name with spaces"),
            ),
        ];
        for (head, want) in table {
            assert_eq!(parse_head(head).as_ref().err(), Some(want), "{head:?}");
        }
        let many = format!("GET / HTTP/1.1\r\n{}", "a: b\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(parse_head(&many).err(), Some(BadRequest::HeadTooLarge));
    }

    #[tokio::test]
    async fn requests_are_read_within_their_limits() {
        let read = |bytes: Vec<u8>| async move { read_request(&mut bytes.as_slice()).await };
        let post = read(b"POST /a HTTP/1.1\r\ncontent-length: 7\r\n\r\nreason=x".to_vec())
            .await
            .unwrap();
        assert_eq!(post.body, b"reason=");
        let big_head = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(read(big_head.into_bytes()).await, Err(BadRequest::HeadTooLarge));
        let big_body = format!("POST / HTTP/1.1\r\ncontent-length: {}\r\n\r\n", MAX_BODY + 1);
        assert_eq!(read(big_body.into_bytes()).await, Err(BadRequest::BodyTooLarge));
        let chunked = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        assert_eq!(read(chunked).await, Err(BadRequest::LengthRequired));
        let no_length = b"POST / HTTP/1.1\r\n\r\n".to_vec();
        assert_eq!(read(no_length).await, Err(BadRequest::LengthRequired));
        let cut = b"POST / HTTP/1.1\r\ncontent-length: 9\r\n\r\nabc".to_vec();
        assert_eq!(read(cut).await, Err(BadRequest::Closed));
        assert_eq!(read(b"GET / HT".to_vec()).await, Err(BadRequest::Closed));
    }

    #[test]
    fn forms_decode_escapes_and_plus_and_refuse_broken_ones() {
        assert_eq!(
            parse_form("reason=p99+doubled%21&to_version=v1.2.0&empty=").unwrap(),
            vec![
                ("reason".to_string(), "p99 doubled!".to_string()),
                ("to_version".to_string(), "v1.2.0".to_string()),
                ("empty".to_string(), String::new()),
            ]
        );
        assert_eq!(parse_form("").unwrap(), vec![]);
        assert_eq!(parse_form("a=%e2%9c%93").unwrap()[0].1, "✓");
        assert_eq!(parse_form("a=%zz"), None);
        assert_eq!(parse_form("a=%4"), None);
        assert_eq!(parse_form("a=%ff"), None, "not UTF-8");
    }

    #[test]
    fn answers_close_the_connection_and_keep_the_page_to_itself() {
        let text = String::from_utf8(Response::text(404, "no").with_header("x-a", "b").to_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        for header in [
            "content-length: 2\r\n",
            "connection: close\r\n",
            "x-content-type-options: nosniff\r\n",
            "x-a: b\r\n",
        ] {
            assert!(text.contains(header), "{header:?} in {text}");
        }
        assert!(text.contains(&format!("content-security-policy: {CSP}\r\n")));
        assert!(text.ends_with("\r\n\r\nno"));
    }

    #[test]
    fn an_event_sends_each_line_of_its_data_on_a_data_line() {
        assert_eq!(
            String::from_utf8(event("live", "<p>\r\n</p>")).unwrap(),
            "event: live\ndata: <p>\ndata: </p>\n\n"
        );
    }
}
