//! The endpoint's HTTP, deliberately tiny: HTTP/1.x, one request per connection, `GET /metrics`
//! answered 200, other paths 404, other methods 405, anything unparsable 400, a request head
//! over [`MAX_REQUEST`] 431, a client that has not sent its head within [`READ_DEADLINE`] 408.
//! It knows nothing of what it serves: the body comes from the caller.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest request head accepted (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// The whole request head must arrive within this.
pub const READ_DEADLINE: Duration = Duration::from_secs(5);
/// Writing the answer must finish within this.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// Reads one request head from `sock`, answers it (`body` makes the 200 answer's body) and
/// closes.
pub async fn handle(mut sock: TcpStream, body: impl FnOnce() -> String) {
    let mut buf = Vec::with_capacity(1024);
    let deadline = tokio::time::Instant::now() + READ_DEADLINE;
    let response = loop {
        if let Some(end) = head_end(&buf) {
            break route(&buf[..end], body);
        }
        if buf.len() >= MAX_REQUEST {
            break plain(
                431,
                "Request Header Fields Too Large",
                "request too large\n",
            );
        }
        let mut chunk = [0u8; 2048];
        let room = (MAX_REQUEST - buf.len()).min(chunk.len());
        match tokio::time::timeout_at(deadline, sock.read(&mut chunk[..room])).await {
            Err(_) => break plain(408, "Request Timeout", "request timeout\n"),
            Ok(Err(_)) | Ok(Ok(0)) => return,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let _ = tokio::time::timeout(WRITE_DEADLINE, async {
        sock.write_all(&response).await?;
        sock.shutdown().await
    })
    .await;
}

/// Where the request head ends (blank line, CRLF or bare LF).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n");
    let lf = memchr::memmem::find(buf, b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The answer to one request head; `body` is called only for `GET /metrics`.
pub fn route(head: &[u8], body: impl FnOnce() -> String) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let [method, target, version] = parts[..] else {
        return plain(400, "Bad Request", "bad request\n");
    };
    if !version.starts_with(b"HTTP/1.") || !target.starts_with(b"/") {
        return plain(400, "Bad Request", "bad request\n");
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if path != b"/metrics" {
        return plain(404, "Not Found", "not found: try /metrics\n");
    }
    if method != b"GET" {
        let mut r = plain(405, "Method Not Allowed", "only GET\n");
        // Insert the Allow header before the blank line.
        let at = memchr::memmem::find(&r, b"\r\n\r\n").unwrap_or(0);
        r.splice(at..at, b"\r\nAllow: GET".iter().copied());
        return r;
    }
    response(
        200,
        "OK",
        "text/plain; version=0.0.4; charset=utf-8",
        body().as_bytes(),
    )
}

fn plain(code: u16, reason: &str, body: &str) -> Vec<u8> {
    response(code, reason, "text/plain; charset=utf-8", body.as_bytes())
}

fn response(code: u16, reason: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_finds_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn routes() {
        let body = || "x 1\n".to_string();
        let ok = route(b"GET /metrics?a=b HTTP/1.1\r\nHost: h", body);
        assert!(ok.starts_with(b"HTTP/1.1 200 OK\r\n") && ok.ends_with(b"\r\n\r\nx 1\n"));
        assert!(route(b"GET /x HTTP/1.1", body).starts_with(b"HTTP/1.1 404 "));
        let post = route(b"POST /metrics HTTP/1.1", body);
        assert!(post.starts_with(b"HTTP/1.1 405 "));
        assert!(memchr::memmem::find(&post, b"\r\nAllow: GET\r\n\r\n").is_some());
        assert!(route(b"GET /metrics", body).starts_with(b"HTTP/1.1 400 "));
    }
}
