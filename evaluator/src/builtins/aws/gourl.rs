//! The parts of Go's `net/url.Parse` that AWS SigV4 signing reads: the
//! host (with its port, as Go keeps it), the escaped path and the raw query.

/// A parsed URL, reduced to what the canonical request needs.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Url {
    /// `URL.Host`: host and optional port, as written.
    pub(super) host: String,
    /// `URL.EscapedPath()`.
    pub(super) escaped_path: String,
    /// `URL.RawQuery`.
    pub(super) raw_query: String,
}

/// Go's `url.Parse`, with Go's error texts.
pub(super) fn parse(raw: &str) -> Result<Url, String> {
    let (u, _fragment) = raw.split_once('#').unwrap_or((raw, ""));
    parse_without_fragment(u).map_err(|e| format!("parse {u:?}: {e}"))
}

fn parse_without_fragment(raw: &str) -> Result<Url, String> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".to_string());
    }
    let mut url = Url {
        host: String::new(),
        escaped_path: String::new(),
        raw_query: String::new(),
    };
    if raw == "*" {
        url.escaped_path = "*".to_string();
        return Ok(url);
    }
    let (scheme, rest) = scheme(raw)?;
    let rest = if rest.ends_with('?') && rest.matches('?').count() == 1 {
        &rest[..rest.len() - 1]
    } else {
        let (r, q) = rest.split_once('?').unwrap_or((rest, ""));
        url.raw_query = q.to_string();
        r
    };
    if !rest.starts_with('/') {
        if !scheme.is_empty() {
            // An opaque URL (`mailto:x`): no host and no path.
            return Ok(url);
        }
        let segment = rest.split('/').next().unwrap_or("");
        if segment.contains(':') {
            return Err("first path segment in URL cannot contain colon".to_string());
        }
    }
    let mut path = rest;
    if (!scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
        let authority = &rest[2..];
        let (authority, p) = match authority.find('/') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, ""),
        };
        url.host = parse_authority(authority)?;
        path = p;
    }
    let unescaped = unescape(path, false)?;
    url.escaped_path = if valid_encoded_path(path) {
        path.to_string()
    } else {
        escape_path(&unescaped)
    };
    Ok(url)
}

/// Go's `getScheme`.
fn scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i == 0 => return Ok(("", raw)),
            b'0'..=b'9' | b'+' | b'-' | b'.' => {}
            b':' if i == 0 => return Err("missing protocol scheme".to_string()),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

/// Go's `parseAuthority`: the host part, user info validated and dropped.
fn parse_authority(authority: &str) -> Result<String, String> {
    let (userinfo, host) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let host = parse_host(host)?;
    if let Some(u) = userinfo
        && !u.bytes().all(valid_userinfo_byte)
    {
        return Err("net/url: invalid userinfo".to_string());
    }
    Ok(host)
}

fn valid_userinfo_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&c) || c >= 0x80
}

/// Go's `parseHost`: the port must be digits; host bytes must be allowed.
fn parse_host(host: &str) -> Result<String, String> {
    if let Some(rest) = host.strip_prefix('[') {
        let Some(end) = rest.rfind(']') else {
            return Err("missing ']' in host".to_string());
        };
        let port = &rest[end + 1..];
        if !valid_optional_port(port) {
            return Err(format!("invalid port {port:?} after host"));
        }
    } else if let Some(i) = host.rfind(':') {
        let port = &host[i..];
        if !valid_optional_port(port) {
            return Err(format!("invalid port {port:?} after host"));
        }
    }
    for c in host.bytes() {
        let ok = c >= 0x80 || c.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"%".contains(&c);
        if !ok {
            return Err(format!(
                "invalid character {:?} in host name",
                char::from(c).to_string()
            ));
        }
    }
    unescape(host, true)
}

fn valid_optional_port(port: &str) -> bool {
    match port.strip_prefix(':') {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
        None => port.is_empty(),
    }
}

/// Go's `unescape` for paths (and, loosely, hosts): `%XX` decoded, a
/// malformed escape is an error.
fn unescape(s: &str, host: bool) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        if c == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(b) = hex else {
                let end = (i + 3).min(bytes.len());
                return Err(format!(
                    "invalid URL escape {:?}",
                    String::from_utf8_lossy(&bytes[i..end])
                ));
            };
            if host && b < 0x80 && &bytes[i..i + 3] != b"%25" {
                return Err(format!(
                    "invalid URL escape {:?}",
                    String::from_utf8_lossy(&bytes[i..i + 3])
                ));
            }
            out.push(b);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `shouldEscape(c, encodePath)`.
fn path_should_escape(c: u8) -> bool {
    !(c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_'
                | b'.'
                | b'~'
                | b'$'
                | b'&'
                | b'+'
                | b','
                | b'/'
                | b':'
                | b';'
                | b'='
                | b'@'
        ))
}

/// Go's `validEncoded(s, encodePath)`.
fn valid_encoded_path(s: &str) -> bool {
    s.bytes()
        .all(|c| b"!$&'()*+,;=:@[]%".contains(&c) || !path_should_escape(c))
}

/// Go's `escape(s, encodePath)`.
fn escape_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.bytes() {
        if path_should_escape(c) {
            out.push_str(&format!("%{c:02X}"));
        } else {
            out.push(char::from(c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: &str, path: &str, query: &str) -> Url {
        Url {
            host: host.to_string(),
            escaped_path: path.to_string(),
            raw_query: query.to_string(),
        }
    }

    #[test]
    fn parses_like_go() {
        assert_eq!(
            parse("http://example.com").unwrap(),
            url("example.com", "", "")
        );
        assert_eq!(
            parse("https://user:pw@Example.com:8443/a%20b/c d?x=1&y=2#frag").unwrap(),
            url("Example.com:8443", "/a%20b/c%20d", "x=1&y=2")
        );
        assert_eq!(parse("https://h/a?").unwrap(), url("h", "/a", ""));
        assert_eq!(parse("mailto:someone").unwrap(), url("", "", ""));
        assert_eq!(parse("/just/a/path").unwrap(), url("", "/just/a/path", ""));
    }

    #[test]
    fn rejects_what_go_rejects() {
        assert!(parse(":foo").is_err());
        assert!(parse("http://h/%zz").is_err());
        assert!(parse("http://h:port/").is_err());
        assert!(parse("http://h\u{7f}/").is_err());
        assert!(parse("a:b/c").is_ok());
        assert!(parse("1a:b/c").is_err());
    }
}
