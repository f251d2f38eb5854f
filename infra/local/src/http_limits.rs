//! The errors that hyper answers by itself, before any router sees the request, in the API's
//! error shape.
//!
//! hyper refuses a request line longer than 65,534 bytes (414), a head larger than its read
//! buffer or with more than 100 headers (431), and a request line or header that is not HTTP
//! (400), with a bare status line and an empty body, then closes the connection. Neither axum
//! nor hyper offers a hook there, so the connection's writes are watched instead: such an
//! automatic answer (a 400, 414 or 431 head without a `content-type`, which every answer of our
//! routers has) is replaced on its way out by the same status with a JSON error body.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection that rewrites hyper's automatic error answers.
pub struct JsonErrorIo<T> {
    inner: T,
    /// A replacement being written: its bytes, how many are out, and the length of the
    /// original write it stands for.
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl<T> JsonErrorIo<T> {
    /// `inner`, with hyper's error answers rewritten.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            replacing: None,
        }
    }
}

/// The JSON answer for one of hyper's automatic error heads, if `head` is one.
pub fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&head[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?;
    let status = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let (code, message) = match status {
        "400" => (
            "malformed_request",
            "the request line or a header is not valid HTTP",
        ),
        "414" => ("uri_too_long", "the request URI is longer than 65534 bytes"),
        "431" => (
            "headers_too_large",
            "the request's headers are too large or more than 100",
        ),
        _ => return None,
    };
    let mut date = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => return None,
            "content-length" if value.trim() != "0" => return None,
            "date" => date = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let mut out = format!(
        "{version} {status_line_rest}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len(),
        status_line_rest = &status_line[version.len() + 1..],
    );
    if let Some(date) = date {
        out.push_str(&format!("date: {date}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Some(out.into_bytes())
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrorIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrorIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none() {
            match replacement(buf) {
                Some(bytes) => this.replacing = Some((bytes, 0, buf.len())),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        // Write the whole replacement before telling hyper its bytes went out.
        while let Some((bytes, written, _)) = this.replacing.as_mut() {
            if *written == bytes.len() {
                break;
            }
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let original = this.replacing.take().map_or(0, |(_, _, len)| len);
        Poll::Ready(Ok(original))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::replacement;

    #[test]
    fn only_hypers_bare_error_heads_are_replaced() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 15:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(replacement(bare).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(out.contains("content-type: application/json\r\n"));
        assert!(out.ends_with(r#"{"error":{"code":"headers_too_large","message":"the request's headers are too large or more than 100"}}"#));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n{\"error\":1}";
        assert!(replacement(ours).is_none());
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement(b"some body bytes").is_none());
    }
}
