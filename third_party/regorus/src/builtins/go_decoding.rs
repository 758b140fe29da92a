// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.

//! policy-engine patch: decoders that behave as the Go standard library
//! functions OPA calls (`encoding/base64`, `net/url`), and Go's rendering of
//! decoded bytes that are not UTF-8.

use alloc::string::String;
use alloc::vec::Vec;

/// The value of each base64 digit, `NOT_DIGIT` for any other byte.
const fn digit_table(url: bool) -> [u8; 256] {
    let mut t = [NOT_DIGIT; 256];
    let mut i = 0u8;
    while i < 26 {
        t[(b'A' + i) as usize] = i;
        t[(b'a' + i) as usize] = i + 26;
        i += 1;
    }
    let mut d = 0u8;
    while d < 10 {
        t[(b'0' + d) as usize] = d + 52;
        d += 1;
    }
    if url {
        t[b'-' as usize] = 62;
        t[b'_' as usize] = 63;
    } else {
        t[b'+' as usize] = 62;
        t[b'/' as usize] = 63;
    }
    t
}

const NOT_DIGIT: u8 = 0xff;
static STD_DIGITS: [u8; 256] = digit_table(false);
static URL_DIGITS: [u8; 256] = digit_table(true);

/// Go's `base64.StdEncoding` (or `URLEncoding`) `DecodeString`: padding is
/// required and ends the input, `\r` and `\n` are ignored anywhere, and the
/// unused bits of the last character are not checked. `None` on corrupt
/// input.
pub(crate) fn base64_decode(input: &[u8], url: bool) -> Option<Vec<u8>> {
    let table = if url { &URL_DIGITS } else { &STD_DIGITS };
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    // policy-engine patch: the leading quanta of four digits (all of the
    // usual input but its last quantum) through a table; the rest, from the
    // first quantum holding anything else, the general way below.
    let mut done = 0;
    for q in input.chunks_exact(4) {
        let [a, b, c, d] = [q[0], q[1], q[2], q[3]].map(|x| table[usize::from(x)]);
        if (a | b | c | d) & 0xc0 != 0 {
            break;
        }
        let value = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
        out.extend_from_slice(&[(value >> 16) as u8, (value >> 8) as u8, value as u8]);
        done += 4;
    }
    let src: Vec<u8> = input[done..]
        .iter()
        .copied()
        .filter(|c| *c != b'\n' && *c != b'\r')
        .collect();
    let digit = |c: u8| -> Option<u32> {
        match table[usize::from(c)] {
            NOT_DIGIT => None,
            d => Some(u32::from(d)),
        }
    };
    let mut si = 0;
    while si < src.len() {
        let mut quantum = [0u32; 4];
        let mut len = 4;
        for j in 0..4 {
            // A quantum cut short without padding is corrupt.
            let c = *src.get(si)?;
            si += 1;
            if let Some(d) = digit(c) {
                quantum[j] = d;
                continue;
            }
            if c != b'=' || j < 2 {
                return None;
            }
            if j == 2 {
                // `==` is expected.
                if src.get(si) != Some(&b'=') {
                    return None;
                }
                si += 1;
            }
            // Nothing may follow the padding.
            if si < src.len() {
                return None;
            }
            len = j;
            break;
        }
        let value = quantum[0] << 18 | quantum[1] << 12 | quantum[2] << 6 | quantum[3];
        let bytes = [(value >> 16) as u8, (value >> 8) as u8, value as u8];
        out.extend_from_slice(&bytes[..len - 1]);
    }
    Some(out)
}

/// Go's `url.QueryUnescape`: `+` is a space and `%XX` a byte; a `%` without
/// two hexadecimal digits is an error (`None`).
pub(crate) fn query_unescape(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hi = char::from(*b.get(i + 1)?).to_digit(16)?;
                let lo = char::from(*b.get(i + 2)?).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// A Go string of arbitrary bytes as OPA writes it out: each byte that is
/// not part of a valid UTF-8 sequence becomes U+FFFD (Go decodes an invalid
/// sequence one byte at a time).
pub(crate) fn lossy_string(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let bytes = e.into_bytes();
            let mut out = String::with_capacity(bytes.len() + 8);
            let mut rest = bytes.as_slice();
            while !rest.is_empty() {
                match core::str::from_utf8(rest) {
                    Ok(s) => {
                        out.push_str(s);
                        break;
                    }
                    Err(e) => {
                        let (valid, after) = rest.split_at(e.valid_up_to());
                        out.push_str(core::str::from_utf8(valid).unwrap_or_default());
                        out.push(char::REPLACEMENT_CHARACTER);
                        rest = after.get(1..).unwrap_or_default();
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_follows_go() {
        assert_eq!(
            base64_decode(b"aGVsbG8=", false).as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(
            base64_decode(b"aGVs\nbG8=", false).as_deref(),
            Some(&b"hello"[..])
        );
        // Padding in the middle, missing padding, a lone character.
        assert_eq!(base64_decode(b"AGVSBG8=AGVSBG8=", false), None);
        assert_eq!(base64_decode(b"aGVsbG8", false), None);
        assert_eq!(base64_decode(b"aGVsb", false), None);
        assert_eq!(base64_decode(b"a===", false), None);
        // Unused bits are not checked.
        assert_eq!(base64_decode(b"QR==", false).as_deref(), Some(&b"A"[..]));
        assert_eq!(
            base64_decode(b"-_8=", true).as_deref(),
            Some(&[0xfb, 0xff][..])
        );
        assert_eq!(base64_decode(b"-_8=", false), None);
        assert_eq!(base64_decode(b"", false).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn query_unescape_follows_go() {
        assert_eq!(query_unescape("a+b%20c").as_deref(), Some(&b"a b c"[..]));
        assert_eq!(query_unescape(" x ").as_deref(), Some(&b" x "[..]));
        assert_eq!(query_unescape("%4"), None);
        assert_eq!(query_unescape("%zz"), None);
    }

    #[test]
    fn lossy_string_replaces_each_invalid_byte() {
        assert_eq!(
            lossy_string(alloc::vec![0xf0, 0x9f, 0x98, b'a']),
            "\u{fffd}\u{fffd}\u{fffd}a"
        );
        assert_eq!(lossy_string(b"ok".to_vec()), "ok");
    }
}
