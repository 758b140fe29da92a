//! IP addresses and networks as Go's `net` package models them.
//!
//! OPA's `net.*` builtins are written against Go's `net.IP` (4 or 16 bytes,
//! IPv4 usually held as an IPv4-mapped IPv6 address) and `net.IPNet`; their
//! results depend on those representations (which length a parsed address
//! has, how a mask applies to the other length, how a network prints), so
//! the same model is kept here.

use std::net::{IpAddr, Ipv6Addr};

/// The 12-byte prefix of an IPv4-mapped IPv6 address.
pub(super) const V4_IN_V6_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// Go's `net.IPNet`: a network number and a mask, each 4 or 16 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct IpNet {
    pub(super) ip: Vec<u8>,
    pub(super) mask: Vec<u8>,
}

/// Go's `net.ParseIP`: an address in 16-byte form, IPv4 as IPv4-mapped.
pub(super) fn parse_ip(s: &str) -> Option<Vec<u8>> {
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(v4.to_ipv6_mapped().octets().to_vec()),
        IpAddr::V6(v6) => Some(v6.octets().to_vec()),
    }
}

/// Go's `net.ParseCIDR`: the address (16 bytes) and its masked network,
/// or `None` when `s` is not a CIDR.
pub(super) fn parse_cidr(s: &str) -> Option<(Vec<u8>, IpNet)> {
    let (addr, mask) = s.split_once('/')?;
    let (addr16, iplen) = match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), 4),
        IpAddr::V6(v6) => (v6.octets(), 16),
    };
    let ones = dtoi(mask)?;
    if ones > iplen * 8 {
        return None;
    }
    let mask = cidr_mask(ones, iplen * 8);
    let ip = ip_mask(&addr16, &mask)?;
    Some((addr16.to_vec(), IpNet { ip, mask }))
}

/// Go's `dtoi` as `ParseCIDR` uses it: a run of decimal digits and nothing else.
fn dtoi(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut n: usize = 0;
    for b in s.bytes() {
        n = n * 10 + usize::from(b - b'0');
        if n >= 0xFF_FFFF {
            return None;
        }
    }
    Some(n)
}

/// Go's `net.CIDRMask`: `ones` leading one bits out of `bits`.
pub(super) fn cidr_mask(ones: usize, bits: usize) -> Vec<u8> {
    (0..bits / 8)
        .map(|i| {
            let lit = ones.saturating_sub(i * 8).min(8);
            if lit == 0 { 0 } else { 0xffu8 << (8 - lit) }
        })
        .collect()
}

/// Go's `net.IP.To4`: the 4-byte form of an IPv4 (or IPv4-mapped) address.
pub(super) fn to4(ip: &[u8]) -> Option<&[u8]> {
    match ip.len() {
        4 => Some(ip),
        16 if ip.starts_with(&V4_IN_V6_PREFIX) => ip.get(12..),
        _ => None,
    }
}

/// Go's `net.IP.Mask`; `None` where Go returns nil (lengths that do not fit).
pub(super) fn ip_mask(ip: &[u8], mask: &[u8]) -> Option<Vec<u8>> {
    let mut mask = mask;
    let mut ip = ip;
    if mask.len() == 16 && ip.len() == 4 && mask.iter().take(12).all(|b| *b == 0xff) {
        mask = mask.get(12..)?;
    }
    if mask.len() == 4 && ip.len() == 16 && ip.starts_with(&V4_IN_V6_PREFIX) {
        ip = ip.get(12..)?;
    }
    if ip.len() != mask.len() {
        return None;
    }
    Some(ip.iter().zip(mask).map(|(a, m)| a & m).collect())
}

/// Go's `net.IP.DefaultMask`: the classful mask of an IPv4 address.
pub(super) fn default_mask(ip: &[u8]) -> Option<Vec<u8>> {
    let first = *to4(ip)?.first()?;
    let ones = if first < 0x80 {
        8
    } else if first < 0xc0 {
        16
    } else {
        24
    };
    Some(cidr_mask(ones, 32))
}

/// Go's `net.IPMask.Size`: (leading ones, total bits), or (0, 0) when the
/// mask is not a run of ones followed by zeros.
pub(super) fn mask_size(mask: &[u8]) -> (usize, usize) {
    match simple_mask_length(mask) {
        Some(ones) => (ones, mask.len() * 8),
        None => (0, 0),
    }
}

fn simple_mask_length(mask: &[u8]) -> Option<usize> {
    let mut ones = 0;
    let mut seen_zero = false;
    for &b in mask {
        if seen_zero {
            if b != 0 {
                return None;
            }
            continue;
        }
        if b == 0xff {
            ones += 8;
            continue;
        }
        // A partial byte must be a run of ones followed by zeros.
        if b.leading_ones() + b.trailing_zeros() != 8 {
            return None;
        }
        ones += b.leading_ones() as usize;
        seen_zero = true;
    }
    Some(ones)
}

/// Go's `networkNumberAndMask`: the network's address and mask brought to
/// the same length, or `None` where they cannot be.
fn network_number_and_mask(n: &IpNet) -> Option<(&[u8], &[u8])> {
    let ip: &[u8] = match to4(&n.ip) {
        Some(v4) => v4,
        None if n.ip.len() == 16 => &n.ip,
        None => return None,
    };
    let mask: &[u8] = match n.mask.len() {
        4 if ip.len() == 4 => &n.mask,
        4 => return None,
        16 if ip.len() == 4 => n.mask.get(12..)?,
        16 => &n.mask,
        _ => return None,
    };
    Some((ip, mask))
}

/// Go's `net.IPNet.Contains`.
pub(super) fn contains(n: &IpNet, ip: &[u8]) -> bool {
    let Some((nn, m)) = network_number_and_mask(n) else {
        return false;
    };
    let ip = to4(ip).unwrap_or(ip);
    if ip.len() != nn.len() {
        return false;
    }
    nn.iter().zip(m).zip(ip).all(|((a, m), b)| a & m == b & m)
}

/// Go's `net.IP.String`.
pub(super) fn ip_string(ip: &[u8]) -> String {
    if ip.is_empty() {
        return "<nil>".to_string();
    }
    if let Some(v4) = to4(ip) {
        return v4.iter().map(u8::to_string).collect::<Vec<_>>().join(".");
    }
    match <[u8; 16]>::try_from(ip) {
        Ok(octets) => Ipv6Addr::from(octets).to_string(),
        Err(_) => format!("?{}", hex::encode(ip)),
    }
}

/// Go's `net.IPNet.String`.
pub(super) fn net_string(n: &IpNet) -> String {
    let Some((nn, m)) = network_number_and_mask(n) else {
        return "<nil>".to_string();
    };
    match simple_mask_length(m) {
        Some(l) => format!("{}/{l}", ip_string(nn)),
        None => format!("{}/{}", ip_string(nn), hex::encode(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cidrs_as_go_does() {
        let (ip, net) = parse_cidr("192.168.1.7/24").unwrap();
        assert_eq!(ip.len(), 16);
        assert_eq!(net.ip, vec![192, 168, 1, 0]);
        assert_eq!(net_string(&net), "192.168.1.0/24");
        let (_, net) = parse_cidr("2601:600:8a80:207e:a57d:7567:e2c9:e7b3/64").unwrap();
        assert_eq!(net_string(&net), "2601:600:8a80:207e::/64");
        assert!(parse_cidr("192.168.1.7/33").is_none());
        assert!(parse_cidr("192.168.1.7").is_none());
        assert!(parse_cidr("192.168.1.7/+4").is_none());
        assert!(parse_cidr("01.1.1.1/8").is_none());
        assert_eq!(
            net_string(&parse_cidr("10.0.0.0/008").unwrap().1),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn contains_mixes_v4_forms() {
        let (_, net) = parse_cidr("10.0.0.0/8").unwrap();
        assert!(contains(&net, &parse_ip("10.1.2.3").unwrap()));
        assert!(!contains(&net, &parse_ip("11.1.2.3").unwrap()));
        assert!(!contains(&net, &parse_ip("::1").unwrap()));
    }

    #[test]
    fn masks() {
        assert_eq!(cidr_mask(20, 32), vec![255, 255, 240, 0]);
        assert_eq!(mask_size(&cidr_mask(20, 32)), (20, 32));
        assert_eq!(mask_size(&[255, 0, 255, 0]), (0, 0));
        assert_eq!(
            default_mask(&parse_ip("192.0.2.1").unwrap()),
            Some(cidr_mask(24, 32))
        );
        assert_eq!(default_mask(&parse_ip("::1").unwrap()), None);
    }
}
