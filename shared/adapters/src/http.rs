//! The smoke-test prober: one HTTP/1.1 GET over a plain TCP connection.
//!
//! Smoke tests reach green instances at their private addresses over plain HTTP inside the
//! VPC, so this needs no TLS. The request and the response go through hyper's client
//! connection (`hyper::client::conn::http1`), the HTTP stack the AWS SDK's client already
//! links into every binary, so the functions carry one HTTP/1.1 parser, not two. It reads at
//! most [`MAX_BODY`] bytes of body (`Content-Length`, chunked and close-delimited bodies all
//! work), and gives up after the timeout.

use crate::Prober;
use async_trait::async_trait;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{header, Request};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// The most body a smoke test reads.
pub const MAX_BODY: usize = 64 * 1024;

/// HTTP GET over TCP (`http://` URLs only).
pub struct HttpProber;

#[async_trait]
impl Prober for HttpProber {
    async fn get(&self, url: &str, header: Option<(&str, &str)>, timeout: Duration) -> Result<(u16, String), String> {
        let target = Target::parse(url)?;
        match tokio::time::timeout(timeout, fetch(&target, header)).await {
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

/// One GET on a fresh connection (`Connection: close`), through hyper's HTTP/1.1 client
/// connection: the parser the SDK's client already links.
async fn fetch(target: &Target, extra: Option<(&str, &str)>) -> Result<(u16, String), String> {
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connect {}:{}: {e}", target.host, target.port))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // The connection runs beside the request; it ends when the answer has been read (or
    // when this call ends, its guard aborts it: nothing outlives a timeout).
    let _connection = AbortOnDrop(tokio::spawn(connection));
    let mut request = Request::get(target.path.as_str())
        .header(header::HOST, format!("{}:{}", target.host, target.port))
        .header(header::USER_AGENT, "greenlight-smoke-test")
        .header(header::ACCEPT, "*/*")
        .header(header::CONNECTION, "close");
    if let Some((name, value)) = extra {
        request = request.header(name, value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("{:?} is not a valid smoke-test path: {e}", target.path))?;
    let response = sender.send_request(request).await.map_err(|e| format!("read: {e}"))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut read = Vec::new();
    while read.len() < MAX_BODY {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Err(format!("read: {e}")),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    read.extend_from_slice(data);
                }
            }
        }
    }
    read.truncate(MAX_BODY);
    Ok((status, String::from_utf8_lossy(&read).into_owned()))
}

/// Aborts the spawned connection task when the request is done with it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

    /// Answers each connection with the next of `answers`, as written, then closes it.
    async fn serve(answers: Vec<Vec<u8>>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for answer in answers {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(&answer).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn reads_every_kind_of_body_and_refuses_what_is_not_http() {
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
            MAX_BODY + 10,
            "x".repeat(MAX_BODY + 10)
        );
        // (what the server writes, the answer or the start of the error)
        type Case<'a> = (&'a [u8], Result<(u16, String), &'a str>);
        let table: [Case; 6] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                Ok((200, "ok".into())),
            ),
            (
                b"HTTP/1.0 503 Service Unavailable\r\n\r\ndown",
                Ok((503, "down".into())),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3\r\n v2\r\n0\r\n\r\n",
                Ok((200, "ok v2".into())),
            ),
            (big.as_bytes(), Ok((200, "x".repeat(MAX_BODY)))),
            (b"SSH-2.0-OpenSSH\r\n\r\n", Err("read: ")),
            (b"HTTP/1.1 200 OK\r\nContent-", Err("read: ")),
        ];
        let addr = serve(table.iter().map(|(raw, _)| raw.to_vec()).collect()).await;
        for (raw, want) in table {
            let got = HttpProber
                .get(&format!("http://{addr}/smoke"), None, Duration::from_secs(2))
                .await;
            match want {
                Ok(answer) => assert_eq!(got.as_ref(), Ok(&answer), "{}", String::from_utf8_lossy(raw)),
                Err(prefix) => assert!(got.as_ref().is_err_and(|e| e.starts_with(prefix)), "{got:?}"),
            }
        }
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
        let got = HttpProber.get(&url, None, Duration::from_secs(2)).await.unwrap();
        assert_eq!(got, (500, "broke".to_string()));
        let err = HttpProber
            .get(&url, None, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(err.contains("no answer within 200 ms"), "{err}");
        let refused = HttpProber
            .get("http://127.0.0.1:1/", None, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(refused.contains("connect"), "{refused}");
    }
}
