//! `net.*` builtins missing from regorus, with OPA v1.20's semantics
//! (`v1/topdown/cidr.go`, `v1/topdown/net.go`).
//!
//! Addresses are parsed and printed as Go's `net` package does (see
//! `goip`); `net.cidr_merge` follows OPA's range merge (see `merge`).
//! `net.lookup_ip_addr` asks the system resolver; unlike OPA its answers
//! are not cached for the rest of the query.

mod goip;
mod merge;

use std::collections::BTreeSet;
use std::net::ToSocketAddrs;

use regorus::Value;

use self::goip::{IpNet, contains, default_mask, mask_size, parse_cidr, parse_ip, to4};
use super::{BuiltinError, arg_str};

const CIDR_INTERSECTS: &str = "net.cidr_intersects";
const CIDR_CONTAINS_MATCHES: &str = "net.cidr_contains_matches";
const CIDR_MERGE: &str = "net.cidr_merge";
const LOOKUP_IP_ADDR: &str = "net.lookup_ip_addr";

pub(crate) const BUILTINS: &[(&str, usize)] = &[
    (CIDR_INTERSECTS, 2),
    (CIDR_CONTAINS_MATCHES, 2),
    (CIDR_MERGE, 1),
    (LOOKUP_IP_ADDR, 1),
];

pub(crate) fn call(name: &str, args: &[Value]) -> Result<Value, BuiltinError> {
    match name {
        CIDR_INTERSECTS => cidr_intersects(args),
        CIDR_CONTAINS_MATCHES => cidr_contains_matches(args),
        CIDR_MERGE => cidr_merge(args),
        LOOKUP_IP_ADDR => lookup_ip_addr(args),
        _ => Err(BuiltinError::Unknown(name.to_string())),
    }
}

fn invalid(name: &'static str, reason: impl Into<String>) -> BuiltinError {
    BuiltinError::Invalid {
        name,
        reason: reason.into(),
    }
}

/// A string operand parsed as a CIDR. OPA reports a wrong type as operand 1
/// whichever operand it is.
fn net_operand(name: &'static str, v: &Value) -> Result<IpNet, BuiltinError> {
    let Value::String(s) = v else {
        return Err(BuiltinError::Operand {
            name,
            position: 1,
            expected: "a string",
        });
    };
    parse_cidr(s)
        .map(|(_, net)| net)
        .ok_or_else(|| invalid(name, format!("invalid CIDR address: {s}")))
}

fn cidr_intersects(args: &[Value]) -> Result<Value, BuiltinError> {
    let a = net_operand(CIDR_INTERSECTS, arg(args, 0))?;
    let b = net_operand(CIDR_INTERSECTS, arg(args, 1))?;
    Ok(Value::Bool(contains(&a, &b.ip) || contains(&b, &a.ip)))
}

fn arg(args: &[Value], i: usize) -> &Value {
    args.get(i).unwrap_or(&Value::Undefined)
}

/// OPA's `net.cidr_contains` on two terms, as `cidr_contains_matches` uses it.
fn cidr_contains(name: &'static str, cidr: &Value, other: &Value) -> Result<bool, BuiltinError> {
    let a = net_operand(name, cidr)?;
    let Value::String(other) = other else {
        return Err(BuiltinError::Operand {
            name,
            position: 1,
            expected: "a string",
        });
    };
    if let Some(ip) = parse_ip(other) {
        return Ok(contains(&a, &ip));
    }
    let Some((_, b)) = parse_cidr(other) else {
        return Err(invalid(
            name,
            format!("not a valid textual representation of an IP address or CIDR: {other}"),
        ));
    };
    if !contains(&a, &b.ip) {
        return Ok(false);
    }
    Ok(contains(&a, &last_ip(&b)?))
}

/// OPA's `getLastIP`: the highest address of a network.
fn last_ip(net: &IpNet) -> Result<Vec<u8>, BuiltinError> {
    let (ones, bits) = mask_size(&net.mask);
    if ones == 0 && bits == 0 {
        return Err(invalid(
            CIDR_CONTAINS_MATCHES,
            "CIDR mask is in non-standard format",
        ));
    }
    if ones == bits {
        return Ok(net.ip.clone());
    }
    let host_bits = bits - ones;
    let mut last = vec![0u8; bits / 8];
    // The network's bytes, right-aligned as Go's big.Int arithmetic leaves them.
    for (slot, b) in last.iter_mut().rev().zip(net.ip.iter().rev()) {
        *slot = *b;
    }
    for (i, slot) in last.iter_mut().rev().enumerate() {
        let low = i * 8;
        if low >= host_bits {
            break;
        }
        let n = (host_bits - low).min(8);
        *slot |= if n == 8 { 0xff } else { (1u8 << n) - 1 };
    }
    Ok(last)
}

/// The (cidr, index) pairs of one `cidr_contains_matches` operand, in
/// OPA's iteration order; a malformed element is an error in its place, so
/// errors surface in the order OPA meets them.
type MatchTerm = Result<(Value, Value), BuiltinError>;

fn match_terms(operand: usize, v: &Value) -> Vec<MatchTerm> {
    let elem = |x: &Value| -> Result<Value, BuiltinError> {
        match x {
            Value::String(_) => Ok(x.clone()),
            Value::Array(a) if !a.is_empty() => Ok(a.first().cloned().unwrap_or(Value::Undefined)),
            _ => Err(invalid(
                CIDR_CONTAINS_MATCHES,
                format!("operand {operand}: element must be string or non-empty array"),
            )),
        }
    };
    match v {
        Value::String(_) => vec![Ok((v.clone(), v.clone()))],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| Ok((elem(x)?, Value::from(i))))
            .collect(),
        Value::Set(items) => items
            .iter_sorted()
            .map(|x| Ok((elem(x)?, x.clone())))
            .collect(),
        Value::Object(items) => items
            .iter_sorted()
            .map(|(k, x)| Ok((elem(x)?, k.clone())))
            .collect(),
        _ => Vec::new(),
    }
}

fn cidr_contains_matches(args: &[Value]) -> Result<Value, BuiltinError> {
    let cidrs = match_terms(1, arg(args, 0));
    let others = match_terms(2, arg(args, 1));
    let mut out = BTreeSet::new();
    for entry in cidrs {
        let (cidr, i) = entry?;
        for other in &others {
            let (other, j) = other.clone()?;
            if cidr_contains(CIDR_CONTAINS_MATCHES, &cidr, &other)? {
                out.insert(Value::from(vec![i.clone(), j]));
            }
        }
    }
    Ok(Value::from(out))
}

/// OPA's `generateIPNet`: a CIDR, or an IPv4 address with its classful mask.
fn ip_net(v: &Value) -> Result<IpNet, BuiltinError> {
    let Value::String(s) = v else {
        return Err(invalid(CIDR_MERGE, "element must be string"));
    };
    let Some(ip) = parse_ip(s) else {
        return parse_cidr(s)
            .map(|(_, net)| net)
            .ok_or_else(|| invalid(CIDR_MERGE, format!("invalid CIDR address: {s}")));
    };
    match default_mask(&ip) {
        Some(mask) if to4(&ip).is_some() => Ok(IpNet { ip, mask }),
        _ => Err(invalid(CIDR_MERGE, "IPv6 invalid: needs prefix length")),
    }
}

fn cidr_merge(args: &[Value]) -> Result<Value, BuiltinError> {
    let networks = match arg(args, 0) {
        Value::Array(items) => items.iter().map(ip_net).collect::<Result<Vec<_>, _>>()?,
        Value::Set(items) => items
            .iter_sorted()
            .map(ip_net)
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(invalid(CIDR_MERGE, "operand must be an array")),
    };
    let out: BTreeSet<Value> = merge::merge(networks)
        .iter()
        .map(|n| Value::from(goip::net_string(n)))
        .collect();
    Ok(Value::from(out))
}

fn lookup_ip_addr(args: &[Value]) -> Result<Value, BuiltinError> {
    let host = arg_str(LOOKUP_IP_ADDR, args, 0)?;
    let addrs = (host, 0u16)
        .to_socket_addrs()
        .map_err(|e| invalid(LOOKUP_IP_ADDR, format!("lookup {host}: {e}")))?;
    let out: BTreeSet<Value> = addrs
        .map(|a| {
            let ip = match a.ip() {
                std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
                std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            let text = goip::ip_string(&ip);
            match a {
                std::net::SocketAddr::V6(v6) if v6.scope_id() != 0 => {
                    Value::from(format!("{text}%{}", v6.scope_id()))
                }
                _ => Value::from(text),
            }
        })
        .collect();
    Ok(Value::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::from(v)
    }

    #[test]
    fn intersects() {
        let t = |a: &str, b: &str| call(CIDR_INTERSECTS, &[s(a), s(b)]).unwrap();
        assert_eq!(t("192.168.1.0/25", "192.168.1.64/25"), Value::Bool(true));
        assert_eq!(t("192.168.1.0/24", "192.168.2.0/25"), Value::Bool(false));
        assert_eq!(
            t("fd1e:5bfe:8af3:9ddc::/64", "fd1e:5bfe:8af3:9ddc:1111::/72"),
            Value::Bool(true)
        );
        assert!(matches!(
            call(CIDR_INTERSECTS, &[Value::from(1u64), s("10.0.0.0/8")]),
            Err(BuiltinError::Operand { .. })
        ));
        assert!(matches!(
            call(CIDR_INTERSECTS, &[s("10.0.0.0"), s("10.0.0.0/8")]),
            Err(BuiltinError::Invalid { .. })
        ));
    }

    #[test]
    fn contains_matches_over_collections() {
        let cidrs =
            Value::from_json_str(r#"{"a": "10.0.0.0/8", "b": ["192.168.0.0/16", "x"]}"#).unwrap();
        let addrs = Value::from_json_str(r#"["10.1.1.1", "192.168.3.0/24", "8.8.8.8"]"#).unwrap();
        let got = call(CIDR_CONTAINS_MATCHES, &[cidrs, addrs]).unwrap();
        let want = BTreeSet::from([
            Value::from(vec![s("a"), Value::from(0u64)]),
            Value::from(vec![s("b"), Value::from(1u64)]),
        ]);
        assert_eq!(got, Value::from(want));
        assert!(matches!(
            call(
                CIDR_CONTAINS_MATCHES,
                &[Value::from(vec![Value::from(1u64)]), s("1.1.1.1")]
            ),
            Err(BuiltinError::Invalid { .. })
        ));
        assert!(matches!(
            call(
                CIDR_CONTAINS_MATCHES,
                &[
                    Value::from(vec![Value::from(vec![Value::from(1u64)])]),
                    s("1.1.1.1")
                ]
            ),
            Err(BuiltinError::Operand { .. })
        ));
        assert_eq!(
            call(CIDR_CONTAINS_MATCHES, &[Value::from(1u64), s("1.1.1.1")]).unwrap(),
            Value::from(BTreeSet::new())
        );
    }

    #[test]
    fn last_ip_of_networks() {
        let net = parse_cidr("10.0.0.0/22").unwrap().1;
        assert_eq!(last_ip(&net).unwrap(), vec![10, 0, 3, 255]);
        let net = parse_cidr("10.0.0.0/32").unwrap().1;
        assert_eq!(last_ip(&net).unwrap(), vec![10, 0, 0, 0]);
    }

    #[test]
    fn merge_builtin() {
        let v = Value::from(vec![s("192.0.2.112"), s("192.0.2.116/31")]);
        let got = call(CIDR_MERGE, &[v]).unwrap();
        assert_eq!(got, Value::from(BTreeSet::from([s("192.0.2.0/24")])));
        let v = Value::from(vec![s("2601:600:8a80:207e:a57d:7567:e2c9:e7b3")]);
        assert!(matches!(
            call(CIDR_MERGE, &[v]),
            Err(BuiltinError::Invalid { .. })
        ));
        assert!(matches!(
            call(CIDR_MERGE, &[s("10.0.0.0/8")]),
            Err(BuiltinError::Invalid { .. })
        ));
    }

    #[test]
    fn lookup_of_literals_needs_no_network() {
        let got = call(LOOKUP_IP_ADDR, &[s("::")]).unwrap();
        assert_eq!(got, Value::from(BTreeSet::from([s("::")])));
        let got = call(LOOKUP_IP_ADDR, &[s("10.0.0.0")]).unwrap();
        assert_eq!(got, Value::from(BTreeSet::from([s("10.0.0.0")])));
        assert!(matches!(
            call(LOOKUP_IP_ADDR, &[Value::Null]),
            Err(BuiltinError::Operand { .. })
        ));
    }
}
