//! The smoke-test prober: a minimal HTTP/1.1 GET over a plain TCP connection.
//!
//! Smoke tests reach green instances at their private addresses over plain HTTP inside the
//! VPC, so this needs no TLS and no second HTTP stack in the Lambda binaries. It reads at
//! most [`MAX_BODY`] bytes of body, understands `Content-Length`, chunked and
//! close-delimited bodies, and gives up after the timeout.

use crate::Prober;
use async_trait::async_trait;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most body a smoke test reads.
pub const MAX_BODY: usize = 64 * 1024;
/// The most response head (status line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;

/// HTTP GET over TCP (`http://` URLs only).
pub struct HttpProber;

#[async_trait]
impl Prober for HttpProber {
    async fn get(&self, url: &str, timeout: Duration) -> Result<(u16, String), String> {
        let target = Target::parse(url)?;
        match tokio::time::timeout(timeout, fetch(&target)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }
}

/// A parsed `http://host:port/path` URL.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// URLs are supported for smoke tests"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| format!("{url:?}: bad port"))?),
            None => (authority, 80),
        };
        if host.is_empty() || path.contains(char::is_whitespace) || path.contains(char::is_control) {
            return Err(format!("{url:?} is not a valid smoke-test URL"));
        }
        Ok(Target {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

async fn fetch(target: &Target) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connect {}:{}: {e}", target.host, target.port))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: greenlight-smoke-test\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path, target.host, target.port
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(done) = complete(&raw) {
            raw.truncate(done);
            break;
        }
        if raw.len() > MAX_HEAD + MAX_BODY * 2 {
            break;
        }
    }
    parse_response(&raw)
}

/// If `raw` holds a whole response with a known length, the length to keep.
fn complete(raw: &[u8]) -> Option<usize> {
    let head_end = find(raw, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())?;
    let want = head_end + length.min(MAX_BODY);
    (raw.len() >= want).then_some(want)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Status and body (at most [`MAX_BODY`] bytes, lossy UTF-8) of a raw response.
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let head_end = find(raw, b"\r\n\r\n").ok_or("the response ended before its headers did")?;
    if head_end > MAX_HEAD {
        return Err("response headers are too large".into());
    }
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if !version.starts_with("HTTP/1.") {
        return Err(format!(
            "not an HTTP/1.x response: {:?}",
            status_line.chars().take(80).collect::<String>()
        ));
    }
    let status: u16 = code.parse().map_err(|_| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("transfer-encoding:")
            .is_some_and(|v| v.contains("chunked"))
    });
    let body = &raw[head_end + 4..];
    let mut body = if chunked { dechunk(body) } else { body.to_vec() };
    body.truncate(MAX_BODY);
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Decodes a chunked body (as much of it as arrived).
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(body, b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let end = (start + size).min(body.len());
        out.extend_from_slice(&body[start..end]);
        if out.len() >= MAX_BODY || end + 2 > body.len() {
            break;
        }
        body = &body[end + 2..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn parses_urls_and_rejects_others() {
        assert_eq!(
            Target::parse("http://127.0.0.5:8080/smoke").unwrap(),
            Target {
                host: "127.0.0.5".into(),
                port: 8080,
                path: "/smoke".into()
            }
        );
        assert_eq!(Target::parse("http://10.0.0.1").unwrap().path, "/");
        for bad in ["https://x/", "ftp://x", "http://:80/", "http://x:port/", "http://x/a b"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_responses() {
        let table: [(&[u8], u16, &str); 3] = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, "ok"),
            (b"HTTP/1.0 503 Service Unavailable\r\n\r\ndown", 503, "down"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3\r\n v2\r\n0\r\n\r\n",
                200,
                "ok v2",
            ),
        ];
        for (raw, status, body) in table {
            assert_eq!(parse_response(raw).unwrap(), (status, body.to_string()));
        }
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-").is_err());
    }

    #[tokio::test]
    async fn gets_from_a_real_server_and_times_out_on_a_silent_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            // First connection: a real answer. Second: accept and say nothing.
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nbroke")
                .await
                .unwrap();
            let (_silent, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let url = format!("http://{addr}/smoke");
        let got = HttpProber.get(&url, Duration::from_secs(2)).await.unwrap();
        assert_eq!(got, (500, "broke".to_string()));
        let err = HttpProber.get(&url, Duration::from_millis(200)).await.unwrap_err();
        assert!(err.contains("no answer within 200 ms"), "{err}");
        let refused = HttpProber
            .get("http://127.0.0.1:1/", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(refused.contains("connect"), "{refused}");
    }
}
