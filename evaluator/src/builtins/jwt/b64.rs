//! Base64 decoders with the acceptance rules of Go's `encoding/base64`, as
//! OPA (and the `jwx` library it uses for JWKs) apply them.
//!
//! Go's decoders skip `\r` and `\n` anywhere in the input and ignore
//! non-zero trailing bits (the non-strict mode); a padded encoding needs
//! whole 4-character quanta with correct `=` padding, and an unpadded one
//! rejects `=` and a dangling single character.

#[derive(Clone, Copy)]
enum Alphabet {
    Std,
    Url,
}

fn sextet(alphabet: Alphabet, c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' if matches!(alphabet, Alphabet::Std) => Some(62),
        b'/' if matches!(alphabet, Alphabet::Std) => Some(63),
        b'-' if matches!(alphabet, Alphabet::Url) => Some(62),
        b'_' if matches!(alphabet, Alphabet::Url) => Some(63),
        _ => None,
    }
}

/// Decodes `input` like Go's `base64.{Std,URL,RawStd,RawURL}Encoding`.
fn go_decode(input: &[u8], alphabet: Alphabet, padded: bool) -> Option<Vec<u8>> {
    let chars: Vec<u8> = input
        .iter()
        .copied()
        .filter(|&c| c != b'\r' && c != b'\n')
        .collect();
    let data: &[u8] = if padded {
        if !chars.len().is_multiple_of(4) {
            return None;
        }
        let pad = if chars.ends_with(b"==") {
            2
        } else {
            usize::from(chars.ends_with(b"="))
        };
        // "xxx=" and "xx==" are the only padded final quanta.
        chars.get(..chars.len() - pad)?
    } else {
        if chars.len() % 4 == 1 {
            return None;
        }
        &chars
    };
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for quantum in data.chunks(4) {
        let mut acc: u32 = 0;
        for &c in quantum {
            acc = (acc << 6) | u32::from(sextet(alphabet, c)?);
        }
        let bytes = match quantum.len() {
            4 => 3,
            3 => {
                acc <<= 6;
                2
            }
            2 => {
                acc <<= 12;
                1
            }
            _ => return None,
        };
        let be = acc.to_be_bytes();
        out.extend_from_slice(be.get(1..1 + bytes)?);
    }
    Some(out)
}

/// OPA's `base64url.decode` as used on JWT segments: padding is restored
/// from the length (RFC 7515 appendix C) unless the text already ends in
/// `=`, then the text is decoded as padded base64url.
pub(super) fn jwt_segment(segment: &[u8]) -> Option<Vec<u8>> {
    let mut s = segment.to_vec();
    if !s.ends_with(b"=") {
        match s.len() % 4 {
            0 => {}
            2 => s.extend_from_slice(b"=="),
            3 => s.push(b'='),
            _ => return None,
        }
    }
    go_decode(&s, Alphabet::Url, true)
}

/// Go's `base64.StdEncoding` (padded), as `encoding/pem` and `x5c` use it.
pub(in crate::builtins) fn std_padded(input: &[u8]) -> Option<Vec<u8>> {
    go_decode(input, Alphabet::Std, true)
}

/// The `jwx` library's decoder for JWK members: the variant is guessed
/// from the text (padded if it ends in `=`, standard alphabet if it has
/// `+` or `/`).
pub(super) fn jwx(input: &str) -> Option<Vec<u8>> {
    let padded = input.ends_with('=');
    let alphabet = if input.contains(['+', '/']) {
        Alphabet::Std
    } else {
        Alphabet::Url
    };
    go_decode(input.as_bytes(), alphabet, padded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_segment_rules() {
        assert_eq!(jwt_segment(b"YWI"), Some(b"ab".to_vec()));
        assert_eq!(jwt_segment(b"YWI="), Some(b"ab".to_vec()));
        assert_eq!(jwt_segment(b"YWI=="), None);
        assert_eq!(jwt_segment(b"YWI=\n="), None);
        assert_eq!(jwt_segment(b"abcde"), None);
        assert_eq!(jwt_segment(b""), Some(vec![]));
        // Newlines are skipped, but count towards the padding computation.
        assert_eq!(jwt_segment(b"YW\n\nI="), Some(b"ab".to_vec()));
        assert_eq!(jwt_segment(b"Y\nWI"), None);
        assert_eq!(jwt_segment(b"YW+I"), None);
        // Non-zero trailing bits are accepted.
        assert_eq!(jwt_segment(b"YWJ"), Some(b"ab".to_vec()));
    }

    #[test]
    fn jwx_guessing() {
        assert_eq!(jwx("AQAB"), Some(vec![1, 0, 1]));
        assert_eq!(jwx("AQ"), Some(vec![1]));
        assert_eq!(jwx("AQ=="), Some(vec![1]));
        assert_eq!(jwx("AQ="), None);
        assert_eq!(jwx("AQABA"), None);
        assert_eq!(jwx("AQAB="), None);
        assert_eq!(jwx("AQ+_"), None);
        assert_eq!(jwx("AQ\nAB"), Some(vec![1, 0, 1]));
        assert_eq!(jwx("AQAB\t"), None);
    }

    #[test]
    fn std_padded_rules() {
        assert_eq!(std_padded(b"YWI="), Some(b"ab".to_vec()));
        assert_eq!(std_padded(b"YWI"), None);
        assert_eq!(std_padded(b"Y==="), None);
        assert_eq!(std_padded(b"YW=I"), None);
        assert_eq!(std_padded(b"YW-I"), None);
    }
}
