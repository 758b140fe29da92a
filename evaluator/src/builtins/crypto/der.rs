//! A minimal DER reader for the structures that `x509-parser` does not
//! expose the way Go's `crypto/x509` does (raw certificate parts, ordered
//! extended key usages, private keys).

use num_bigint::BigUint;

/// One DER element: its tag byte, its contents and its whole encoding.
#[derive(Clone, Copy)]
pub(super) struct Tlv<'a> {
    pub(super) tag: u8,
    pub(super) content: &'a [u8],
    pub(super) full: &'a [u8],
}

/// Reads one element (low tag numbers, definite lengths) and what follows.
pub(super) fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (content, after) = rest.split_at(len);
    let header_len = input.len() - rest.len();
    let full = input.get(..header_len + len)?;
    Some((Tlv { tag, content, full }, after))
}

/// Every element of a constructed value's contents.
pub(super) fn children(mut content: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tlv, rest) = read(content)?;
        out.push(tlv);
        content = rest;
    }
    Some(out)
}

/// The contents of a SEQUENCE that is the whole of `input`.
pub(super) fn sequence(input: &[u8]) -> Option<Vec<Tlv<'_>>> {
    match read(input)? {
        (t, []) if t.tag == 0x30 => children(t.content),
        _ => None,
    }
}

/// A non-negative INTEGER's value.
pub(super) fn uint(t: &Tlv<'_>) -> Option<BigUint> {
    if t.tag != 0x02 || t.content.is_empty() || t.content[0] & 0x80 != 0 {
        return None;
    }
    Some(BigUint::from_bytes_be(t.content))
}

/// A small INTEGER's value.
pub(super) fn small_int(t: &Tlv<'_>) -> Option<i64> {
    if t.tag != 0x02 || t.content.is_empty() || t.content.len() > 8 {
        return None;
    }
    let negative = t.content[0] & 0x80 != 0;
    let init: i64 = if negative { -1 } else { 0 };
    Some(
        t.content
            .iter()
            .fold(init, |acc, &b| (acc << 8) | i64::from(b)),
    )
}

/// An OBJECT IDENTIFIER's arcs (each fitting a `u64`).
pub(super) fn oid(t: &Tlv<'_>) -> Option<Vec<u64>> {
    if t.tag != 0x06 || t.content.is_empty() {
        return None;
    }
    let mut arcs = Vec::new();
    let mut acc: u64 = 0;
    for &b in t.content {
        acc = acc.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    (t.content.last().is_some_and(|b| b & 0x80 == 0)).then_some(arcs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_oids_and_integers() {
        let (t, rest) = read(&[0x06, 0x03, 0x55, 0x1d, 0x0f, 0xff]).expect("tlv");
        assert_eq!(rest, &[0xff]);
        assert_eq!(oid(&t), Some(vec![2, 5, 29, 15]));
        let (t, _) = read(&[0x02, 0x01, 0xff]).expect("tlv");
        assert_eq!(small_int(&t), Some(-1));
        assert!(uint(&t).is_none());
        assert!(read(&[0x30, 0x05, 0x00]).is_none());
    }
}
