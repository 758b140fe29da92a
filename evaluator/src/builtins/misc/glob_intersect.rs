//! Whether two regexp-style globs match a common non-empty string, as the
//! Go package OPA uses for `regex.globs_match` (`glob-intersection` v0.2)
//! decides it.
//!
//! A glob is a sequence of tokens (a character, `.` for any character, or
//! a `[...]` set), each optionally followed by `+` or `*`; `\` escapes the
//! next character. The decision procedure is the package's greedy one,
//! kept as it is so the answers agree with OPA's.

/// How often a token may repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flag {
    None,
    Plus,
    Star,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Char(char),
    Dot,
    /// Inclusive code point ranges, sorted and merged.
    Set(Vec<(u32, u32)>),
}

#[derive(Clone, Debug)]
struct Token {
    kind: Kind,
    flag: Flag,
}

/// `NonEmpty`: whether the globs `lhs` and `rhs` intersect. An error names
/// what is malformed.
pub(super) fn non_empty(lhs: &str, rhs: &str) -> Result<bool, String> {
    let g1 = glob(lhs)?;
    let g2 = glob(rhs)?;
    Ok(match trim(&g1, &g2) {
        Some((g1, g2)) => intersect_normal(g1, g2),
        None => false,
    })
}

fn glob(input: &str) -> Result<Vec<Token>, String> {
    let runes: Vec<char> = input.chars().collect();
    Ok(simplify(tokenize(&runes)?))
}

fn invalid(input: &[char], index: usize, message: &str) -> String {
    format!(
        "the input provided is invalid: input:{}, pos:{index}, {message}",
        input.iter().collect::<String>()
    )
}

/// `nextRune`: the rune at `index` (a `\` escapes the next one), the index
/// after it and whether it was escaped; `Ok(None)` at the end of the input.
fn next_rune(index: usize, input: &[char]) -> Result<Option<(usize, char, bool)>, String> {
    match input.get(index) {
        None => Ok(None),
        Some('\\') => match input.get(index + 1) {
            Some(&r) => Ok(Some((index + 2, r, true))),
            None => Err(invalid(
                input,
                index,
                "input ends with a \\ (escape) character",
            )),
        },
        Some(&r) => Ok(Some((index + 1, r, false))),
    }
}

fn tokenize(input: &[char]) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut index = 0;
    while let Some((next, r, escaped)) = next_rune(index, input)? {
        let (mut next, kind) = match (r, escaped) {
            ('.', false) => (next, Kind::Dot),
            (']', false) => {
                return Err(invalid(input, next, "set-close ']' with no preceding '['"));
            }
            ('[', false) => set(next, input)?,
            ('+' | '*', false) => {
                return Err(invalid(
                    input,
                    next,
                    &format!("flag '{r}' must be preceded by a non-flag"),
                ));
            }
            (r, _) => (next, Kind::Char(r)),
        };
        let mut flag = Flag::None;
        if let Some((after, f, false)) = next_rune(next, input)? {
            match f {
                '+' => (flag, next) = (Flag::Plus, after),
                '*' => (flag, next) = (Flag::Star, after),
                _ => {}
            }
        }
        tokens.push(Token { kind, flag });
        index = next;
    }
    Ok(tokens)
}

/// `nextTokenSet`: the set starting after a `[` at `index`.
fn set(index: usize, input: &[char]) -> Result<(usize, Kind), String> {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    let mut prev: Option<char> = None;
    let mut index = index;
    loop {
        let Some((next, r, escaped)) = next_rune(index, input)? else {
            return Err(invalid(input, index, "found [ without matching ]"));
        };
        index = next;
        match (r, escaped) {
            (']', false) => break,
            ('-', false) => {
                let Some(start) = prev else {
                    return Err(invalid(
                        input,
                        index,
                        "range character '-' must be preceded by a Unicode character",
                    ));
                };
                if index + 1 >= input.len() {
                    return Err(invalid(
                        input,
                        index,
                        "range character '-' must be followed by a Unicode character",
                    ));
                }
                let Some((next, end, escaped)) = next_rune(index, input)? else {
                    return Err(invalid(input, index, "found [ without matching ]"));
                };
                index = next;
                if !escaped && (end == ']' || end == '-') {
                    return Err(invalid(
                        input,
                        index,
                        "range character '-' cannot be followed by a special symbol",
                    ));
                }
                if end < start {
                    return Err(invalid(
                        input,
                        index,
                        &format!(
                            "range is out of order: '{end}' comes before '{start}' in Unicode"
                        ),
                    ));
                }
                ranges.push((u32::from(start), u32::from(end)));
                prev = None;
            }
            (r, _) => {
                ranges.push((u32::from(r), u32::from(r)));
                prev = Some(r);
            }
        }
    }
    Ok((index, Kind::Set(normalize(ranges))))
}

fn normalize(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// `Simplify`: adjacent equal flagged tokens collapse (`t*t+` is `t+`).
fn simplify(tokens: Vec<Token>) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    for t in tokens {
        if let Some(last) = out.last_mut()
            && t.flag != Flag::None
            && last.flag != Flag::None
            && t.kind == last.kind
        {
            last.flag = if t.flag == Flag::Plus || last.flag == Flag::Plus {
                Flag::Plus
            } else {
                Flag::Star
            };
            continue;
        }
        out.push(t);
    }
    out
}

/// `Match`: whether two tokens (flags aside) match a common character.
fn matches(a: &Token, b: &Token) -> bool {
    match (&a.kind, &b.kind) {
        (Kind::Char(x), Kind::Char(y)) => x == y,
        (Kind::Dot, _) | (_, Kind::Dot) => true,
        (Kind::Char(c), Kind::Set(s)) | (Kind::Set(s), Kind::Char(c)) => {
            let c = u32::from(*c);
            s.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c))
        }
        (Kind::Set(s1), Kind::Set(s2)) => s1
            .iter()
            .any(|(lo1, hi1)| s2.iter().any(|(lo2, hi2)| lo1 <= hi2 && lo2 <= hi1)),
    }
}

/// `trimGlobs`: drops the matching unflagged prefix and suffix (keeping one
/// token of each), or `None` when they do not match.
fn trim<'a>(g1: &'a [Token], g2: &'a [Token]) -> Option<(&'a [Token], &'a [Token])> {
    let mut l = 0;
    while let (Some(a), Some(b)) = (g1.get(l), g2.get(l)) {
        if a.flag != Flag::None || b.flag != Flag::None {
            break;
        }
        if !matches(a, b) {
            return None;
        }
        l += 1;
    }
    l = l.saturating_sub(1);

    // r1, r2 are one past the last kept token.
    let (mut r1, mut r2) = (g1.len(), g2.len());
    while r1 > l && r2 > l {
        let (Some(a), Some(b)) = (g1.get(r1 - 1), g2.get(r2 - 1)) else {
            break;
        };
        if a.flag != Flag::None || b.flag != Flag::None {
            break;
        }
        if !matches(a, b) {
            return None;
        }
        r1 -= 1;
        r2 -= 1;
    }
    if r1 < g1.len() {
        r1 += 1;
        r2 += 1;
    }
    Some((g1.get(l..r1)?, g2.get(l..r2)?))
}

fn intersect_normal(g1: &[Token], g2: &[Token]) -> bool {
    for (i, (a, b)) in g1.iter().zip(g2).enumerate() {
        if a.flag == Flag::None && b.flag == Flag::None {
            if !matches(a, b) {
                return false;
            }
        } else {
            return intersect_special(&g1[i..], &g2[i..]);
        }
    }
    g1.len() == g2.len()
}

fn intersect_special(g1: &[Token], g2: &[Token]) -> bool {
    let (Some(a), Some(b)) = (g1.first(), g2.first()) else {
        return false;
    };
    match (a.flag, b.flag) {
        (Flag::Plus, _) => intersect_plus(g1, g2),
        (Flag::Star, _) => intersect_star(g1, g2),
        (Flag::None, Flag::Plus) => intersect_plus(g2, g1),
        (Flag::None, Flag::Star) => intersect_star(g2, g1),
        (Flag::None, Flag::None) => false,
    }
}

fn intersect_plus(plussed: &[Token], other: &[Token]) -> bool {
    let (Some(p), Some(o)) = (plussed.first(), other.first()) else {
        return false;
    };
    if !matches(p, o) {
        return false;
    }
    if intersect_star(plussed, &other[1..]) {
        return true;
    }
    o.flag != Flag::None && intersect_normal(&plussed[1..], other)
}

fn intersect_star(starred: &[Token], other: &[Token]) -> bool {
    let Some(star) = starred.first() else {
        return false;
    };
    let next = starred.get(1);
    for (i, t) in other.iter().enumerate() {
        if let Some(next) = next
            && matches(t, next)
        {
            if intersect_normal(&starred[1..], &other[i..]) {
                return true;
            }
            if !matches(t, star) {
                return false;
            }
        } else if !matches(t, star) {
            return false;
        }
    }
    next.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersections() {
        assert_eq!(non_empty("a.a.[0-9]+z", ".b.b2359825792*594823z"), Ok(true));
        assert_eq!(non_empty("[a-z]+", "[0-9]*"), Ok(false));
        assert_eq!(non_empty("b.*", "bar"), Ok(true));
        assert_eq!(non_empty("b.*", "foo"), Ok(false));
        assert_eq!(non_empty(r"[a-z]+\[[0-9]+\]", r"foo\[1\]"), Ok(true));
        assert_eq!(non_empty("abc", "abc"), Ok(true));
        assert_eq!(non_empty("abc", "abd"), Ok(false));
        assert_eq!(non_empty("a*", "a+"), Ok(true));
    }

    #[test]
    fn malformed_globs_are_errors() {
        assert!(non_empty("[abc", "a").is_err());
        assert!(non_empty("*a", "a").is_err());
        assert!(non_empty("a]", "a").is_err());
        assert!(non_empty("a\\", "a").is_err());
        assert!(non_empty("[z-a]", "a").is_err());
        assert!(non_empty("[-a]", "a").is_err());
        assert!(non_empty("[a-]", "a").is_err());
    }

    #[test]
    fn simplifies_repeated_flags() {
        let g = glob("a*a+b").unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].flag, Flag::Plus);
    }
}
