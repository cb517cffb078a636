//! What a connection opens with. Outbound, the app's first bytes say
//! whether it speaks HTTP/1.x, HTTP/2 or something else (read, then replayed
//! through [`Prefixed`]); inbound, a peek at the first TLS record says
//! whether a peer proxy is calling (a ClientHello offering a mesh ALPN).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use plexus_config::sidecar::{ALPN_H2, ALPN_TCP};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long a connection may stay silent before it is taken for a protocol
/// where the server speaks first (outbound: opaque; inbound: plaintext).
pub const DETECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How much of a request line detection reads at most.
const MAX_DETECT_BYTES: usize = 8192;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What an outbound connection opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Http1,
    Http2,
    Opaque,
}

/// Decides from the first bytes, if they suffice: None means "read more".
pub fn detect_bytes(bytes: &[u8]) -> Option<Detected> {
    let n = bytes.len().min(H2_PREFACE.len());
    if bytes[..n] == H2_PREFACE[..n] {
        return (n == H2_PREFACE.len()).then_some(Detected::Http2);
    }
    // A request line: METHOD SP target SP HTTP/1.x CRLF.
    let method = bytes.iter().take_while(|b| b.is_ascii_uppercase()).count();
    if bytes.len() > method && (method == 0 || bytes[method] != b' ') {
        return Some(Detected::Opaque);
    }
    match bytes.windows(2).position(|w| w == b"\r\n") {
        Some(end)
            if bytes[..end].ends_with(b" HTTP/1.1") || bytes[..end].ends_with(b" HTTP/1.0") =>
        {
            Some(Detected::Http1)
        }
        Some(_) => Some(Detected::Opaque),
        None if bytes.len() >= MAX_DETECT_BYTES => Some(Detected::Opaque),
        None => None,
    }
}

/// Reads what the client sends first, until its protocol is known or
/// `timeout` (if any) passes (a protocol where the server speaks first).
/// The bytes read are returned, to be replayed.
pub async fn detect(
    stream: &mut TcpStream,
    timeout: Option<Duration>,
) -> std::io::Result<(Detected, Vec<u8>)> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut buffer = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 2048];
        let read = stream.read(&mut chunk);
        let n = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                Ok(read) => read?,
                Err(_) => return Ok((Detected::Opaque, buffer)),
            },
            None => read.await?,
        };
        if n == 0 {
            return Ok((Detected::Opaque, buffer));
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(detected) = detect_bytes(&buffer) {
            return Ok((detected, buffer));
        }
    }
}

/// A stream whose first bytes were already read: they are read again first.
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix: prefix.into(),
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What an inbound connection opens with.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening {
    /// A TLS ClientHello offering the mesh's ALPN: a peer proxy.
    MeshTls,
    /// Another TLS ClientHello: the app's own TLS.
    OtherTls,
    /// Anything else, or silence for [`DETECT_TIMEOUT`].
    Plaintext,
}

/// Classifies the bytes a connection opened with.
pub fn opening(bytes: &[u8]) -> Opening {
    match bytes.first() {
        Some(0x16)
            if [ALPN_TCP, ALPN_H2]
                .iter()
                .any(|alpn| bytes.windows(alpn.len()).any(|w| w == *alpn)) =>
        {
            Opening::MeshTls
        }
        Some(0x16) => Opening::OtherTls,
        _ => Opening::Plaintext,
    }
}

/// The server name (SNI) a TLS ClientHello asks for, lowercase; none when
/// `bytes` do not hold a whole ClientHello with one.
pub fn server_name(bytes: &[u8]) -> Option<String> {
    let mut acceptor = rustls::server::Acceptor::default();
    acceptor.read_tls(&mut &bytes[..]).ok()?;
    let accepted = acceptor.accept().ok()??;
    let name = accepted.client_hello().server_name()?.to_ascii_lowercase();
    Some(name)
}

/// Peeks (without consuming) at what the client sends first: for a TLS
/// record, until the whole record (the ClientHello) is there, within
/// [`DETECT_TIMEOUT`].
pub async fn peek_opening(stream: &TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buffer = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + DETECT_TIMEOUT;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buffer)).await {
            Ok(result) => result?,
            Err(_) => return Ok(Vec::new()),
        };
        let record = (n >= 5 && buffer[0] == 0x16)
            .then(|| 5 + usize::from(u16::from_be_bytes([buffer[3], buffer[4]])));
        let complete = match record {
            Some(length) => n >= length.min(buffer.len()),
            None => n > 0,
        };
        if n == 0 || complete || tokio::time::Instant::now() >= deadline {
            buffer.truncate(n);
            return Ok(buffer);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_protocols() {
        assert_eq!(
            detect_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Some(Detected::Http1)
        );
        assert_eq!(
            detect_bytes(b"POST /a?b HTTP/1.0\r\n"),
            Some(Detected::Http1)
        );
        assert_eq!(detect_bytes(b"GET / HT"), None);
        assert_eq!(
            detect_bytes(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Some(Detected::Http2)
        );
        assert_eq!(detect_bytes(b"PRI * HTTP/2"), None);
        assert_eq!(detect_bytes(b"\x16\x03\x01"), Some(Detected::Opaque));
        assert_eq!(detect_bytes(b"SSH-2.0-OpenSSH\r\n"), Some(Detected::Opaque));
        assert_eq!(detect_bytes(b"get / HTTP/1.1\r\n"), Some(Detected::Opaque));
        assert_eq!(detect_bytes(b"GET / SMTP\r\n"), Some(Detected::Opaque));
    }

    #[test]
    fn openings() {
        assert_eq!(opening(b""), Opening::Plaintext);
        assert_eq!(opening(b"GET / HTTP/1.1\r\n"), Opening::Plaintext);
        assert_eq!(opening(b"\x16\x03\x01\x00\x05hello"), Opening::OtherTls);
        let mut hello = b"\x16\x03\x01\x00\x40....".to_vec();
        hello.extend_from_slice(ALPN_TCP);
        assert_eq!(opening(&hello), Opening::MeshTls);
    }
}
