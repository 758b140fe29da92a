//! What Envoy sends, as the agent protocol's contexts: the route name, the
//! request context (pseudo-headers, lower-case headers, query parameters,
//! client IP) and the response context. Everything here is total: header
//! values that are not UTF-8 are converted lossily, never rejected.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use envoy_types::pb::envoy::config::core::v3::HeaderMap;
use envoy_types::pb::google::protobuf::{Struct, value::Kind};
use policy_proto::agent::{RequestContext, ResponseContext};

/// The attribute namespace Envoy's ext_proc filter fills with the values of
/// its `request_attributes` / `response_attributes`.
pub const ATTRIBUTE_NAMESPACE: &str = "envoy.filters.http.ext_proc";
/// The attribute with the matched route's name (`request_attributes: ["xds.route_name"]`).
pub const ROUTE_ATTRIBUTE: &str = "xds.route_name";
/// The attribute with the downstream peer address (`request_attributes: ["source.address"]`).
pub const SOURCE_ATTRIBUTE: &str = "source.address";

/// Headers as one lower-case name → value map; repeated headers are joined
/// with `,` (RFC 9110 §5.3). Values come from `raw_value` when set (what
/// Envoy sends), else `value`.
pub fn header_map(headers: Option<&HeaderMap>) -> HashMap<String, String> {
    let headers = headers.map(|h| h.headers.as_slice()).unwrap_or_default();
    let mut out: HashMap<String, String> = HashMap::with_capacity(headers.len());
    for h in headers {
        let value = if h.raw_value.is_empty() {
            h.value.clone()
        } else {
            String::from_utf8_lossy(&h.raw_value).into_owned()
        };
        out.entry(h.key.to_ascii_lowercase())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// A string attribute of the ext_proc namespace.
pub fn attribute<'a>(attributes: &'a HashMap<String, Struct>, name: &str) -> Option<&'a str> {
    let value = attributes.get(ATTRIBUTE_NAMESPACE)?.fields.get(name)?;
    match &value.kind {
        Some(Kind::StringValue(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// The route name: the `xds.route_name` attribute, else the `route_header`
/// request header; `None` when neither is present.
pub fn route_name(
    attributes: &HashMap<String, Struct>,
    headers: &HashMap<String, String>,
    route_header: &str,
) -> Option<String> {
    attribute(attributes, ROUTE_ATTRIBUTE)
        .map(str::to_string)
        .or_else(|| headers.get(route_header).filter(|v| !v.is_empty()).cloned())
}

/// The client IP, most trusted source first: `x-envoy-external-address`
/// (set by Envoy itself), the `source.address` attribute (the downstream
/// peer), then the last `x-forwarded-for` hop (the one the nearest proxy
/// appended; the first hop is whatever the client claimed).
pub fn client_ip(
    headers: &HashMap<String, String>,
    attributes: &HashMap<String, Struct>,
) -> String {
    if let Some(ip) = headers
        .get("x-envoy-external-address")
        .and_then(|v| ip_of(v))
    {
        return ip;
    }
    if let Some(ip) = attribute(attributes, SOURCE_ATTRIBUTE).and_then(ip_of) {
        return ip;
    }
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.rsplit(',').map(str::trim).find(|s| !s.is_empty()))
        .and_then(ip_of)
        .unwrap_or_default()
}

/// The IP of `1.2.3.4`, `1.2.3.4:80`, `::1` or `[::1]:80`.
fn ip_of(s: &str) -> Option<String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(addr.ip().to_string());
    }
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

/// The request context of a `request_headers` message (no body yet).
pub fn request_context(headers: HashMap<String, String>, client_ip: String) -> RequestContext {
    let mut ctx = RequestContext {
        client_ip,
        ..Default::default()
    };
    for (k, v) in headers {
        match k.as_str() {
            ":method" => ctx.method = v,
            ":path" => ctx.path = v,
            ":scheme" => ctx.scheme = v,
            ":authority" => ctx.authority = v,
            k if k.starts_with(':') => {}
            _ => {
                ctx.headers.insert(k, v);
            }
        }
    }
    if ctx.authority.is_empty()
        && let Some(host) = ctx.headers.get("host")
    {
        ctx.authority = host.clone();
    }
    ctx.query_params = query_params(&ctx.path);
    ctx
}

/// The response context of a `response_headers` message (no body yet);
/// a missing or malformed `:status` is 0.
pub fn response_context(headers: HashMap<String, String>) -> ResponseContext {
    let mut ctx = ResponseContext::default();
    for (k, v) in headers {
        if k == ":status" {
            ctx.status_code = v.trim().parse().unwrap_or(0);
        } else if !k.starts_with(':') {
            ctx.headers.insert(k, v);
        }
    }
    ctx
}

/// Query parameters of a `:path`, percent-decoded (`+` is a space); the
/// first value of a repeated name wins.
pub fn query_params(path: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Some((_, query)) = path.split_once('?') else {
        return out;
    };
    let query = query.split('#').next().unwrap_or_default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(k))
            .or_insert_with(|| percent_decode(v));
    }
    out
}

fn percent_decode(s: &str) -> String {
    fn hex(b: Option<&u8>) -> Option<u8> {
        b.and_then(|b| char::from(*b).to_digit(16))
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = if b == b'%' {
            hex(bytes.get(i + 1)).zip(hex(bytes.get(i + 2)))
        } else {
            None
        };
        match (b, escaped) {
            (_, Some((hi, lo))) => {
                out.push(hi * 16 + lo);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (b, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::HeaderValue;
    use envoy_types::pb::google::protobuf::Value;

    fn raw(pairs: &[(&str, &[u8])]) -> HeaderMap {
        HeaderMap {
            headers: pairs
                .iter()
                .map(|(k, v)| HeaderValue {
                    key: (*k).into(),
                    raw_value: v.to_vec(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn attrs(pairs: &[(&str, &str)]) -> HashMap<String, Struct> {
        let fields = pairs
            .iter()
            .map(|(k, v)| {
                let value = Value {
                    kind: Some(Kind::StringValue((*v).into())),
                };
                ((*k).to_string(), value)
            })
            .collect();
        HashMap::from([(ATTRIBUTE_NAMESPACE.to_string(), Struct { fields })])
    }

    #[test]
    fn route_comes_from_the_attribute_then_the_header() {
        let headers = HashMap::from([("x-route-name".to_string(), "/from-header".to_string())]);
        let a = attrs(&[(ROUTE_ATTRIBUTE, "/from-attr")]);
        assert_eq!(
            route_name(&a, &headers, "x-route-name").as_deref(),
            Some("/from-attr")
        );
        assert_eq!(
            route_name(&HashMap::new(), &headers, "x-route-name").as_deref(),
            Some("/from-header")
        );
        assert_eq!(route_name(&HashMap::new(), &headers, "x-other"), None);
        // An empty attribute falls back to the header.
        let empty = attrs(&[(ROUTE_ATTRIBUTE, "")]);
        assert_eq!(
            route_name(&empty, &headers, "x-route-name").as_deref(),
            Some("/from-header")
        );
    }

    #[test]
    fn headers_are_lower_cased_joined_and_lossy() {
        let map = raw(&[
            (":method", b"POST"),
            (":path", b"/a/b?x=1&y=a%20b&x=2&z=c+d&bad=%zz"),
            (":scheme", b"https"),
            (":authority", b"api.example.com"),
            ("X-API-Key", b"k1"),
            ("accept", b"a"),
            ("accept", b"b"),
            ("x-bin", b"\xff\xfeok"),
        ]);
        let ctx = request_context(header_map(Some(&map)), "10.0.0.1".into());
        assert_eq!(ctx.method, "POST");
        assert_eq!(ctx.scheme, "https");
        assert_eq!(ctx.authority, "api.example.com");
        assert_eq!(ctx.path, "/a/b?x=1&y=a%20b&x=2&z=c+d&bad=%zz");
        assert_eq!(ctx.headers["x-api-key"], "k1");
        assert_eq!(ctx.headers["accept"], "a,b");
        assert_eq!(ctx.headers["x-bin"], "\u{fffd}\u{fffd}ok");
        assert!(!ctx.headers.keys().any(|k| k.starts_with(':')));
        assert_eq!(ctx.query_params["x"], "1");
        assert_eq!(ctx.query_params["y"], "a b");
        assert_eq!(ctx.query_params["z"], "c d");
        assert_eq!(ctx.query_params["bad"], "%zz");
        assert_eq!(ctx.client_ip, "10.0.0.1");
    }

    #[test]
    fn value_is_used_when_raw_value_is_empty_and_host_backs_authority() {
        let map = HeaderMap {
            headers: vec![HeaderValue {
                key: "host".into(),
                value: "h.example".into(),
                ..Default::default()
            }],
        };
        let ctx = request_context(header_map(Some(&map)), String::new());
        assert_eq!(ctx.authority, "h.example");
        assert!(ctx.query_params.is_empty());
    }

    #[test]
    fn client_ip_prefers_envoy_then_peer_then_last_forwarded_hop() {
        let mut headers = HashMap::from([(
            "x-forwarded-for".to_string(),
            "6.6.6.6, 10.1.1.1".to_string(),
        )]);
        assert_eq!(client_ip(&headers, &HashMap::new()), "10.1.1.1");
        let peer = attrs(&[(SOURCE_ATTRIBUTE, "[2001:db8::1]:4431")]);
        assert_eq!(client_ip(&headers, &peer), "2001:db8::1");
        headers.insert("x-envoy-external-address".into(), "192.0.2.7".into());
        assert_eq!(client_ip(&headers, &peer), "192.0.2.7");
        let junk = HashMap::from([("x-forwarded-for".to_string(), "not-an-ip".to_string())]);
        assert_eq!(client_ip(&junk, &HashMap::new()), "");
    }

    #[test]
    fn response_status_is_parsed_leniently() {
        let map = raw(&[(":status", b"201"), ("Content-Type", b"application/json")]);
        let ctx = response_context(header_map(Some(&map)));
        assert_eq!(ctx.status_code, 201);
        assert_eq!(ctx.headers["content-type"], "application/json");
        let ctx = response_context(header_map(Some(&raw(&[(":status", b"abc")]))));
        assert_eq!(ctx.status_code, 0);
        assert!(response_context(header_map(None)).headers.is_empty());
    }
}
