//! Go's `encoding/json` form of `x509.Certificate` and
//! `x509.CertificateRequest`, as OPA returns them: byte slices as padded
//! standard base64, big integers as numbers, OIDs as arrays of integers,
//! times in RFC 3339, enums as Go's integer constants, absent slices as
//! `null`: the shared pieces (names, keys, URLs, IPs); `certificate` puts
//! them together.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine;
use num_bigint::BigUint;
use regorus::Value;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Name};

use super::der;

/// A JSON object under construction.
#[derive(Default)]
pub(super) struct Object(BTreeMap<Value, Value>);

impl Object {
    pub(super) fn set(&mut self, key: &str, v: Value) {
        self.0.insert(Value::from(key), v);
    }

    pub(super) fn into_value(self) -> Value {
        Value::from(self.0)
    }
}

pub(super) fn b64(bytes: &[u8]) -> Value {
    Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A `[]byte` that is `nil` when absent.
pub(super) fn b64_or_null(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, b64)
}

pub(super) fn big(n: &BigUint) -> Value {
    Value::from_numeric_string(&n.to_string()).unwrap_or(Value::Null)
}

pub(super) fn strings_or_null(items: &[String]) -> Value {
    if items.is_empty() {
        return Value::Null;
    }
    Value::from(
        items
            .iter()
            .map(|s| Value::from(s.as_str()))
            .collect::<Vec<_>>(),
    )
}

pub(super) fn list_or_null(items: Vec<Value>) -> Value {
    if items.is_empty() {
        Value::Null
    } else {
        Value::from(items)
    }
}

pub(super) fn oid_value(arcs: &[u64]) -> Value {
    Value::from(arcs.iter().map(|&a| Value::from(a)).collect::<Vec<_>>())
}

pub(super) fn oid_arcs(oid: &x509_parser::der_parser::oid::Oid<'_>) -> Vec<u64> {
    oid.iter().map(|i| i.collect()).unwrap_or_default()
}

pub(super) fn oid_string(arcs: &[u64]) -> String {
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// Go's `x509.SignatureAlgorithm` for a signature algorithm OID.
fn signature_algorithm(arcs: &[u64]) -> i64 {
    match arcs {
        [1, 2, 840, 113549, 1, 1, 2] => 1,
        [1, 2, 840, 113549, 1, 1, 4] => 2,
        [1, 2, 840, 113549, 1, 1, 5] | [1, 3, 14, 3, 2, 29] => 3,
        [1, 2, 840, 113549, 1, 1, 11] => 4,
        [1, 2, 840, 113549, 1, 1, 12] => 5,
        [1, 2, 840, 113549, 1, 1, 13] => 6,
        [1, 2, 840, 10040, 4, 3] => 7,
        [2, 16, 840, 1, 101, 3, 4, 3, 2] => 8,
        [1, 2, 840, 10045, 4, 1] => 9,
        [1, 2, 840, 10045, 4, 3, 2] => 10,
        [1, 2, 840, 10045, 4, 3, 3] => 11,
        [1, 2, 840, 10045, 4, 3, 4] => 12,
        // RSA-PSS: the hash is in the parameters.
        [1, 2, 840, 113549, 1, 1, 10] => 13,
        [1, 3, 101, 112] => 16,
        _ => 0,
    }
}

/// The RSA-PSS variant (13, 14, 15) from the parameters' hash.
fn pss_variant(params: Option<&[u8]>) -> i64 {
    let hash = params
        .and_then(|p| der::sequence(p))
        .and_then(|fields| {
            let first = fields.first()?;
            (first.tag == 0xa0).then_some(*first)
        })
        .and_then(|t| der::sequence(t.content))
        .and_then(|alg| alg.first().and_then(der::oid));
    match hash.as_deref() {
        Some([2, 16, 840, 1, 101, 3, 4, 2, 1]) => 13,
        Some([2, 16, 840, 1, 101, 3, 4, 2, 2]) => 14,
        Some([2, 16, 840, 1, 101, 3, 4, 2, 3]) => 15,
        _ => 0,
    }
}

pub(super) fn signature_algorithm_value(
    alg: &x509_parser::x509::AlgorithmIdentifier<'_>,
    raw_alg: Option<&[u8]>,
) -> Value {
    let arcs = oid_arcs(&alg.algorithm);
    let mut v = signature_algorithm(&arcs);
    if v == 13 {
        let params = raw_alg
            .and_then(der::sequence)
            .and_then(|f| f.get(1).map(|p| p.full));
        v = pss_variant(params);
    }
    Value::from(v)
}

/// Go's `x509.PublicKeyAlgorithm` and the JSON of the parsed public key.
pub(super) fn public_key(spki: &SubjectPublicKeyInfo<'_>) -> (i64, Value) {
    let arcs = oid_arcs(&spki.algorithm.algorithm);
    let key = spki.subject_public_key.data.as_ref();
    match arcs.as_slice() {
        [1, 2, 840, 113549, 1, 1, 1] => {
            let Some(fields) = der::sequence(key) else {
                return (1, Value::Null);
            };
            let mut o = Object::default();
            if let (Some(n), Some(e)) = (
                fields.first().and_then(der::uint),
                fields.get(1).and_then(der::small_int),
            ) {
                o.set("N", big(&n));
                o.set("E", Value::from(e));
            }
            (1, o.into_value())
        }
        [1, 2, 840, 10045, 2, 1] => {
            let size = (key.len().saturating_sub(1)) / 2;
            let mut o = Object::default();
            o.set("Curve", Value::new_object());
            if key.first() == Some(&4) && key.len() == 1 + 2 * size {
                o.set("X", big(&BigUint::from_bytes_be(&key[1..=size])));
                o.set("Y", big(&BigUint::from_bytes_be(&key[1 + size..])));
            }
            (3, o.into_value())
        }
        [1, 3, 101, 112] => (4, b64(key)),
        [1, 2, 840, 10040, 4, 1] => (2, Value::new_object()),
        [1, 3, 101, 110] => (0, Value::new_object()),
        _ => (0, Value::Null),
    }
}

/// Go's `parseASN1String` for a directory string.
fn directory_string(tag: u32, data: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, NumericString
        12 | 19 | 22 | 18 => String::from_utf8(data.to_vec()).ok(),
        // T61String: each byte one code point
        20 => Some(data.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UCS-2
        30 => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = data
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// `pkix.Name` as Go's `FillFromRDNSequence` fills it.
pub(super) fn name(n: &X509Name<'_>) -> Value {
    let mut lists: [(u64, &str, Vec<String>); 8] = [
        (6, "Country", Vec::new()),
        (10, "Organization", Vec::new()),
        (11, "OrganizationalUnit", Vec::new()),
        (7, "Locality", Vec::new()),
        (8, "Province", Vec::new()),
        (9, "StreetAddress", Vec::new()),
        (17, "PostalCode", Vec::new()),
        (0, "", Vec::new()),
    ];
    let mut common_name = String::new();
    let mut serial = String::new();
    let mut names = Vec::new();
    for atv in n.iter_attributes() {
        let arcs = oid_arcs(atv.attr_type());
        let any = atv.attr_value();
        let value = directory_string(any.tag().0, any.data).unwrap_or_default();
        let mut entry = Object::default();
        entry.set("Type", oid_value(&arcs));
        entry.set("Value", Value::from(value.as_str()));
        names.push(entry.into_value());
        if let [2, 5, 4, last] = arcs.as_slice() {
            match last {
                3 => common_name = value,
                5 => serial = value,
                _ => {
                    if let Some((_, _, list)) = lists.iter_mut().find(|(n, _, _)| n == last) {
                        list.push(value);
                    }
                }
            }
        }
    }
    let mut o = Object::default();
    for (_, field, list) in &lists {
        if !field.is_empty() {
            o.set(field, strings_or_null(list));
        }
    }
    o.set("SerialNumber", Value::from(serial));
    o.set("CommonName", Value::from(common_name));
    o.set("Names", list_or_null(names));
    o.set("ExtraNames", Value::Null);
    o.into_value()
}

/// Go's `time.Time` JSON (RFC 3339 with nanoseconds when non-zero).
pub(super) fn time_value(t: time::OffsetDateTime) -> Value {
    let format = time::format_description::well_known::Rfc3339;
    Value::from(t.format(&format).unwrap_or_default())
}

/// `net.IP.String()`.
pub(super) fn ip_string(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            let v6 = Ipv6Addr::from(a);
            match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => v6.to_string(),
            }
        }
        _ => format!("?{}", hex::encode(bytes)),
    }
}

/// The JSON of Go's `url.URL` for a URI that parses (a simplified
/// `url.Parse`: scheme, opaque part or authority, path, query, fragment).
pub(super) fn url_value(uri: &str) -> Value {
    let (rest, fragment) = match uri.split_once('#') {
        Some((r, f)) => (r, f),
        None => (uri, ""),
    };
    let (scheme, mut rest) = match rest.split_once(':') {
        Some((s, r))
            if s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            (s.to_ascii_lowercase(), r)
        }
        _ => (String::new(), rest),
    };
    let mut raw_query = "";
    let mut force_query = false;
    if let Some((r, q)) = rest.split_once('?') {
        rest = r;
        raw_query = q;
        force_query = q.is_empty();
    }
    let mut o = Object::default();
    let mut opaque = "";
    let mut host = String::new();
    let mut user = Value::Null;
    let mut omit_host = false;
    let mut path = rest;
    if !rest.starts_with('/') && !scheme.is_empty() {
        opaque = rest;
        path = "";
    } else if let Some(after) = rest.strip_prefix("//") {
        let end = after.find('/').unwrap_or(after.len());
        let authority = &after[..end];
        path = &after[end..];
        let h = match authority.rsplit_once('@') {
            Some((_, h)) => {
                user = Value::new_object();
                h
            }
            None => authority,
        };
        host = h.to_string();
    } else if !scheme.is_empty() && rest.starts_with('/') {
        omit_host = true;
    }
    let decoded = percent_decode(path);
    o.set("Scheme", Value::from(scheme));
    o.set("Opaque", Value::from(opaque));
    o.set("User", user);
    o.set("Host", Value::from(host));
    o.set("Path", Value::from(decoded.as_str()));
    o.set(
        "RawPath",
        Value::from(if path.contains('%') { path } else { "" }),
    );
    o.set("OmitHost", Value::Bool(omit_host));
    o.set("ForceQuery", Value::Bool(force_query));
    o.set("RawQuery", Value::from(raw_query));
    o.set("Fragment", Value::from(percent_decode(fragment)));
    o.set("RawFragment", Value::from(""));
    o.into_value()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(h, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_as_go_parses_them() {
        let v = url_value("spiffe://example.com/opa");
        let Value::Object(o) = v else {
            panic!("object")
        };
        assert_eq!(
            o.get(&Value::from("Scheme"))
                .cloned()
                .unwrap_or(Value::Undefined),
            Value::from("spiffe")
        );
        assert_eq!(
            o.get(&Value::from("Host"))
                .cloned()
                .unwrap_or(Value::Undefined),
            Value::from("example.com")
        );
        assert_eq!(
            o.get(&Value::from("Path"))
                .cloned()
                .unwrap_or(Value::Undefined),
            Value::from("/opa")
        );
        let Value::Object(o) = url_value("urn:example:a") else {
            panic!("object")
        };
        assert_eq!(
            o.get(&Value::from("Opaque"))
                .cloned()
                .unwrap_or(Value::Undefined),
            Value::from("example:a")
        );
    }

    #[test]
    fn ip_strings_follow_go() {
        assert_eq!(ip_string(&[10, 0, 0, 1]), "10.0.0.1");
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(ip_string(&mapped), "1.2.3.4");
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_eq!(ip_string(&one), "::1");
    }
}
