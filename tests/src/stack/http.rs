//! A minimal HTTP/1.1 client over a fresh TCP connection per request
//! (`Connection: close`, the response read to EOF), so a test sees exactly
//! what went over the wire: status, every header as sent, the declared
//! `content-length` and the real body length.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How long one exchange (connect, send, read to EOF) may take.
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(30);

/// A request to send.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query, sent as is.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self {
            method: "GET".into(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `POST path` with `body` of type `content_type`.
    pub fn post(path: &str, content_type: &str, body: Vec<u8>) -> Self {
        Self {
            method: "POST".into(),
            path: path.into(),
            headers: vec![("content-type".into(), content_type.into())],
            body,
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds `name: value` when `value` is given.
    #[must_use]
    pub fn header_opt(self, name: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.header(name, v),
            None => self,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n",
            self.method, self.path
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !self.body.is_empty() || self.method != "GET" {
            head.push_str(&format!("content-length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// A response as received.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-case names, in the order received (repeats kept).
    pub headers: Vec<(String, String)>,
    /// The payload (de-chunked when `transfer-encoding: chunked`).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The declared `content-length`, when there is one.
    pub fn content_length(&self) -> anyhow::Result<Option<usize>> {
        self.header("content-length")
            .map(|v| {
                v.trim()
                    .parse()
                    .with_context(|| format!("bad content-length `{v}`"))
            })
            .transpose()
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("body is not JSON: {}", self.summary()))
    }

    /// Status, headers and the start of the body, for assertion messages.
    pub fn summary(&self) -> String {
        let mut s = format!("HTTP {}\n", self.status);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\n"));
        }
        let text = self.text();
        let cut: String = text.chars().take(600).collect();
        s.push('\n');
        s.push_str(&cut);
        if cut.len() < text.len() {
            s.push_str(&format!("… ({} bytes in all)", self.body.len()));
        }
        s
    }
}

/// Sends `request` to `addr` and reads the whole response.
pub async fn send(addr: SocketAddr, request: &HttpRequest) -> anyhow::Result<HttpResponse> {
    send_raw(addr, &request.encode())
        .await
        .with_context(|| format!("{} {} to {addr}", request.method, request.path))
}

/// Sends `bytes` as they are (any request, well-formed or not) to `addr`
/// and reads the whole response.
pub async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> anyhow::Result<HttpResponse> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        // Borrowed halves: the write side is never shut down (Envoy takes a
        // half-close for a disconnect).
        let (mut reader, mut writer) = stream.split();
        // Read while writing: a server may answer (413) and close before
        // the whole body is sent; its answer is what counts then.
        let write = async move { writer.write_all(bytes).await };
        let read = async move {
            let mut raw = Vec::new();
            let result = reader.read_to_end(&mut raw).await;
            (raw, result)
        };
        let (written, (raw, read)) = tokio::join!(write, read);
        match parse(&raw) {
            Ok(r) => Ok(r),
            Err(e) => {
                written.context("sending the request")?;
                read.context("reading the response")?;
                Err(e)
            }
        }
    };
    tokio::time::timeout(EXCHANGE_DEADLINE, exchange)
        .await
        .with_context(|| format!("no complete response within {EXCHANGE_DEADLINE:?}"))?
}

fn parse(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| {
            format!(
                "no end of headers in {:?}",
                String::from_utf8_lossy(raw)
                    .chars()
                    .take(300)
                    .collect::<String>()
            )
        })?;
    let head = std::str::from_utf8(raw.get(..end).unwrap_or_default())
        .context("response head is not UTF-8")?;
    let rest = raw.get(end + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line `{status_line}`"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .with_context(|| format!("bad header line `{line}`"))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// The payload of a `transfer-encoding: chunked` body.
fn dechunk(mut body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunked body")?;
        let size_line = std::str::from_utf8(body.get(..eol).unwrap_or_default())?;
        let size_text = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size `{size_line}`"))?;
        let data = body.get(eol + 2..).unwrap_or_default();
        if size == 0 {
            return Ok(out);
        }
        let Some(chunk) = data.get(..size) else {
            bail!("truncated chunk of {size} bytes");
        };
        out.extend_from_slice(chunk);
        body = data
            .get(size..)
            .and_then(|r| r.strip_prefix(b"\r\n"))
            .context("chunk without CRLF")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_bodies() -> anyhow::Result<()> {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\nhi")?;
        assert_eq!(r.status, 200);
        assert_eq!(r.content_length()?, Some(2));
        assert_eq!(r.header_all("X-A"), ["1", "2"]);
        assert_eq!(r.body, b"hi");
        let r = parse(
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )?;
        assert_eq!(r.status, 404);
        assert_eq!(r.body, b"abcde");
        assert_eq!(r.content_length()?, None);
        Ok(())
    }
}
