//! `net.cidr_merge`'s range arithmetic, as OPA does it
//! (`v1/topdown/cidr.go` and `internal/cidr/merge`).
//!
//! Ranges are compared as byte strings (Go's `bytes.Compare`), IPv4 ranges
//! as IPv4-mapped IPv6 addresses, so the merge of mixed families follows
//! OPA's ordering exactly.

use num_bigint::BigUint;

use super::goip::{IpNet, V4_IN_V6_PREFIX, cidr_mask, ip_mask, mask_size, to4};

const DEFAULT_IPV4: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];
const DEFAULT_IPV6: [u8; 16] = [0; 16];
const UPPER_IPV4: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 255, 255, 255, 255];
const UPPER_IPV6: [u8; 16] = [0xff; 16];

/// A block of addresses: either one of the input networks or a merged range.
struct Block {
    first: Vec<u8>,
    last: Vec<u8>,
    network: Option<IpNet>,
}

/// Merges `networks` into the smallest list of networks covering them.
pub(super) fn merge(networks: Vec<IpNet>) -> Vec<IpNet> {
    let mut ranges: Vec<Block> = networks
        .into_iter()
        .map(|network| {
            let (first, last) = address_range(&network);
            Block {
                first,
                last,
                network: Some(network),
            }
        })
        .collect();
    // A stable sort on (last, first), as Go's `sort.Sort` on these keys
    // leaves equal ranges in an order that does not affect the result.
    ranges.sort_by(|a, b| a.last.cmp(&b.last).then_with(|| a.first.cmp(&b.first)));

    let mut i = ranges.len();
    while i > 1 {
        i -= 1;
        let (Some(prev), Some(cur)) = (ranges.get(i - 1), ranges.get(i)) else {
            break;
        };
        if previous_ip(&cur.first) <= prev.last {
            let first = if prev.first < cur.first {
                prev.first.clone()
            } else {
                cur.first.clone()
            };
            let merged = Block {
                first,
                last: cur.last.clone(),
                network: None,
            };
            ranges[i - 1] = merged;
            ranges.remove(i);
        }
    }

    let mut out = Vec::new();
    for block in ranges {
        match block.network {
            Some(network) => out.push(network),
            None => out.extend(range_to_cidrs(&block.first, &block.last)),
        }
    }
    out
}

/// Go's `GetAddressRange`: the first and last address of a network, IPv4
/// in IPv4-mapped form.
fn address_range(net: &IpNet) -> (Vec<u8>, Vec<u8>) {
    let mut first = ip_mask(&net.ip, &net.mask).unwrap_or_default();
    let mut last = first.clone();
    if to4(&first).is_some() {
        first = [V4_IN_V6_PREFIX.as_slice(), &first].concat();
        last = [V4_IN_V6_PREFIX.as_slice(), &last].concat();
    }
    for (i, m) in net.mask.iter().rev().enumerate() {
        if let Some(b) = 15usize.checked_sub(i).and_then(|j| last.get_mut(j)) {
            *b |= !m;
        }
    }
    (first, last)
}

/// Go's `GetPreviousIP`.
fn previous_ip(ip: &[u8]) -> Vec<u8> {
    if ip == DEFAULT_IPV4 || ip == DEFAULT_IPV6 || ip_equal_v4(ip, &DEFAULT_IPV4) {
        return ip.to_vec();
    }
    let mut prev = ip.to_vec();
    let lower = if to4(ip).is_some() { 12 } else { 0 };
    let mut overflow = false;
    for i in (lower..ip.len()).rev() {
        if overflow || i == ip.len() - 1 {
            prev[i] = prev[i].wrapping_sub(1);
        }
        overflow = ip[i] == 0 && prev[i] == 255;
    }
    prev
}

/// Go's `getNextIP`.
fn next_ip(ip: &[u8]) -> Vec<u8> {
    if ip == UPPER_IPV4 || ip == UPPER_IPV6 || ip_equal_v4(ip, &UPPER_IPV4) {
        return ip.to_vec();
    }
    match ip.len() {
        4 | 16 => {
            let n = BigUint::from_bytes_be(ip) + 1u32;
            let modulus = BigUint::from(1u8) << (ip.len() * 8);
            fixed_bytes(&(n % modulus), ip.len())
        }
        _ => ip.to_vec(),
    }
}

/// Go's `net.IP.Equal` against an IPv4-mapped constant for a 4-byte address.
fn ip_equal_v4(ip: &[u8], mapped: &[u8; 16]) -> bool {
    ip.len() == 4 && mapped.get(12..) == Some(ip)
}

/// Go's `RangeToCIDRs`.
fn range_to_cidrs(first: &[u8], last: &[u8]) -> Vec<IpNet> {
    let mut spanning = spanning_cidr(first, last);
    let (first_spanning, last_spanning) = address_range(&spanning);
    let mut list = Vec::new();

    if first_spanning.as_slice() < first {
        let prev = previous_ip(first);
        let bits = if to4(&prev).is_some() { 32 } else { 128 };
        let exclude = IpNet {
            ip: prev,
            mask: cidr_mask(bits, bits),
        };
        let (_, right) = partition(&spanning, &exclude);
        let mut right = right.into_iter();
        if let Some(head) = right.next() {
            spanning = head;
        }
        list.extend(right);
    }

    if last_spanning.as_slice() > last {
        let next = next_ip(last);
        let bits = if to4(&next).is_some() { 32 } else { 128 };
        let exclude = IpNet {
            ip: next,
            mask: cidr_mask(bits, bits),
        };
        let (left, _) = partition(&spanning, &exclude);
        list.extend(left);
    } else {
        list.push(spanning);
    }
    list
}

/// Go's `createSpanningCIDR`: one network spanning `first..=last`.
fn spanning_cidr(first: &[u8], last: &[u8]) -> IpNet {
    let is_v4 = to4(first).is_some();
    let (bit_len, byte_len) = if is_v4 { (32, 4) } else { (128, 16) };
    let lowest = BigUint::from_bytes_be(first);
    let mut highest = BigUint::from_bytes_be(last);
    let mut size = bit_len;
    while size > 0 && lowest < highest {
        size -= 1;
        let shift = bit_len - size;
        highest = (highest >> shift) << shift;
    }
    let mut ip = big_bytes(&highest);
    if is_v4 {
        ip = [&[0u8; 10][..], &ip].concat();
    }
    if ip.is_empty() {
        ip = vec![0; byte_len];
    }
    IpNet {
        ip,
        mask: cidr_mask(size, bit_len),
    }
}

/// Go's `partitionCIDR`: the networks of `target` left and right of `exclude`.
fn partition(target: &IpNet, exclude: &IpNet) -> (Vec<IpNet>, Vec<IpNet>) {
    let target_is_v4 = to4(&target.ip).is_some();
    let (target_first, target_last) = address_range(target);
    let (exclude_first, exclude_last) = address_range(exclude);
    let (target_size, _) = mask_size(&target.mask);
    let (exclude_size, _) = mask_size(&exclude.mask);

    if exclude_last < target_first {
        return (Vec::new(), vec![target.clone()]);
    }
    if target_last < exclude_first {
        return (vec![target.clone()], Vec::new());
    }
    if target_size >= exclude_size {
        return (Vec::new(), Vec::new());
    }

    let bit_len = if target_is_v4 { 32 } else { 128 };
    let mut left = Vec::new();
    let mut right = Vec::new();
    let mut new_prefix = target_size + 1;
    let mut lower = BigUint::from_bytes_be(&target_first);
    let to16 = if target_first.len() == 4 {
        [V4_IN_V6_PREFIX.as_slice(), &target_first].concat()
    } else {
        target_first.clone()
    };
    let mut upper = BigUint::from_bytes_be(&to16) + (BigUint::from(1u8) << (bit_len - new_prefix));
    let mut matched;

    while exclude_size >= new_prefix {
        let (upper_bytes, lower_bytes) = if target_is_v4 {
            (
                [&[0u8; 10][..], &big_bytes(&upper)].concat(),
                [&[0u8; 10][..], &big_bytes(&lower)].concat(),
            )
        } else {
            (pad16(&big_bytes(&upper)), pad16(&big_bytes(&lower)))
        };
        if exclude_first >= upper_bytes {
            left.push(IpNet {
                ip: lower_bytes,
                mask: cidr_mask(new_prefix, bit_len),
            });
            matched = upper.clone();
        } else {
            right.push(IpNet {
                ip: upper_bytes,
                mask: cidr_mask(new_prefix, bit_len),
            });
            matched = lower.clone();
        }
        new_prefix += 1;
        if new_prefix > bit_len {
            break;
        }
        lower = matched.clone();
        upper = matched + (BigUint::from(1u8) << (bit_len - new_prefix));
    }
    (left, right)
}

/// Go's `big.Int.Bytes`: big-endian without leading zeros (empty for zero).
fn big_bytes(n: &BigUint) -> Vec<u8> {
    if n.bits() == 0 {
        Vec::new()
    } else {
        n.to_bytes_be()
    }
}

/// Left-pads to 16 bytes (longer values are kept as they are, as Go does).
fn pad16(b: &[u8]) -> Vec<u8> {
    if b.len() >= 16 {
        return b.to_vec();
    }
    [vec![0u8; 16 - b.len()], b.to_vec()].concat()
}

/// `n` as exactly `len` big-endian bytes (`n` must fit).
fn fixed_bytes(n: &BigUint, len: usize) -> Vec<u8> {
    let b = big_bytes(n);
    let pad = len.saturating_sub(b.len());
    [vec![0u8; pad], b].concat()
}

#[cfg(test)]
mod tests {
    use super::super::goip::{net_string, parse_cidr};
    use super::*;

    fn merged(cidrs: &[&str]) -> Vec<String> {
        let nets = cidrs.iter().map(|c| parse_cidr(c).unwrap().1).collect();
        let mut out: Vec<String> = merge(nets).iter().map(net_string).collect();
        out.sort();
        out
    }

    #[test]
    fn merges_adjacent_and_contained() {
        assert_eq!(
            merged(&["192.0.128.0/24", "192.0.129.0/24"]),
            ["192.0.128.0/23"]
        );
        assert_eq!(
            merged(&["192.0.2.112/30", "192.0.2.116/31", "192.0.2.118/31"]),
            ["192.0.2.112/29"]
        );
        assert_eq!(merged(&["192.0.128.0/24", "0.0.0.0/0"]), ["0.0.0.0/0"]);
        assert_eq!(merged(&["::/0", "fe80::1/128"]), ["::/0"]);
    }

    #[test]
    fn splits_ranges_that_are_not_one_network() {
        assert_eq!(
            merged(&["192.0.2.112/31", "192.0.2.116/31", "192.0.2.118/31"]),
            ["192.0.2.112/31", "192.0.2.116/30"]
        );
        assert_eq!(
            merged(&["192.0.2.0/24", "192.0.3.0/24", "192.0.4.0/24"]),
            ["192.0.2.0/23", "192.0.4.0/24"]
        );
        assert_eq!(
            merged(&["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/32"]),
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/32"]
        );
    }

    #[test]
    fn previous_and_next_ip() {
        assert_eq!(previous_ip(&DEFAULT_IPV4), DEFAULT_IPV4.to_vec());
        assert_eq!(
            previous_ip(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 1, 0]),
            vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 255]
        );
        assert_eq!(next_ip(&[10, 0, 0, 255]), vec![10, 0, 1, 0]);
        assert_eq!(next_ip(&UPPER_IPV6), UPPER_IPV6.to_vec());
    }
}
