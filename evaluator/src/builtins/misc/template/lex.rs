//! Lexing of Go `text/template` source: text and action tokens, with
//! `{{-`/`-}}` trimming applied and comments dropped.

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Field(Vec<String>),
    Dot,
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    LParen,
    RParen(Vec<String>),
    Bar,
    Declare,
    Assign,
    Comma,
    Space,
}

pub(super) enum Item {
    Text(String),
    Action(Vec<Tok>),
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

pub(super) fn lex(src: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    loop {
        let Some(open) = rest.find("{{") else {
            let text = if trim_next {
                rest.trim_start_matches(is_space)
            } else {
                rest
            };
            if !text.is_empty() {
                items.push(Item::Text(text.to_string()));
            }
            return Ok(items);
        };
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start_matches(is_space);
        }
        let mut inner = &rest[open + 2..];
        if let Some(after) = inner.strip_prefix('-')
            && after.starts_with(is_space)
        {
            text = text.trim_end_matches(is_space);
            inner = &after[1..];
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        if let Some(comment) = inner.strip_prefix("/*") {
            let Some(end) = comment.find("*/") else {
                return Err("unclosed comment".to_string());
            };
            let after = &comment[end + 2..];
            let (after, trim) =
                close_delim(after).ok_or("comment ends before closing delimiter")?;
            trim_next = trim;
            rest = after;
            continue;
        }
        let (toks, after, trim) = lex_action(inner)?;
        items.push(Item::Action(toks));
        trim_next = trim;
        rest = after;
    }
}

/// After a comment: `}}` or ` -}}` (with the trim flag), else `None`.
fn close_delim(s: &str) -> Option<(&str, bool)> {
    if let Some(after) = s.strip_prefix("}}") {
        return Some((after, false));
    }
    let t = s.trim_start_matches(is_space);
    if t.len() < s.len()
        && let Some(after) = t.strip_prefix("-}}")
    {
        return Some((after, true));
    }
    None
}

fn ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Lexes one action; returns its tokens, the text after `}}` and whether
/// the action ends with a right trim marker.
fn lex_action(src: &str) -> Result<(Vec<Tok>, &str, bool), String> {
    let mut toks = Vec::new();
    let mut s = src;
    let mut depth = 0usize;
    loop {
        let Some(c) = s.chars().next() else {
            return Err("unclosed action".to_string());
        };
        if is_space(c) {
            let t = s.trim_start_matches(is_space);
            if let Some(after) = t.strip_prefix("-}}") {
                if depth > 0 {
                    return Err("unclosed left paren".to_string());
                }
                return Ok((toks, after, true));
            }
            if toks.last() != Some(&Tok::Space) {
                toks.push(Tok::Space);
            }
            s = t;
            continue;
        }
        if let Some(after) = s.strip_prefix("}}") {
            if depth > 0 {
                return Err("unclosed left paren".to_string());
            }
            return Ok((toks, after, false));
        }
        match c {
            '"' => {
                let (lit, after) = quoted(s)?;
                toks.push(Tok::Str(lit));
                s = after;
            }
            '`' => {
                let end = s[1..].find('`').ok_or("unterminated raw quoted string")?;
                toks.push(Tok::Str(s[1..1 + end].to_string()));
                s = &s[end + 2..];
            }
            '\'' => {
                let (lit, after) = char_constant(s)?;
                toks.push(Tok::Int(i64::from(u32::from(lit))));
                s = after;
            }
            '.' if !s[1..].starts_with(|c: char| c.is_ascii_digit()) => {
                let (chain, after) = field_chain(s);
                if chain.is_empty() {
                    toks.push(Tok::Dot);
                    s = &s[1..];
                } else {
                    toks.push(Tok::Field(chain));
                    s = after;
                }
            }
            '$' => {
                let len = s[1..].find(|c: char| !ident_char(c)).unwrap_or(s.len() - 1);
                let name = s[..1 + len].to_string();
                let (chain, after) = field_chain(&s[1 + len..]);
                toks.push(Tok::Var(name, chain));
                s = after;
            }
            '(' => {
                depth += 1;
                toks.push(Tok::LParen);
                s = &s[1..];
            }
            ')' => {
                depth = depth.checked_sub(1).ok_or("unexpected right paren")?;
                let (chain, after) = field_chain(&s[1..]);
                toks.push(Tok::RParen(chain));
                s = after;
            }
            '|' => {
                toks.push(Tok::Bar);
                s = &s[1..];
            }
            ',' => {
                toks.push(Tok::Comma);
                s = &s[1..];
            }
            ':' if s.starts_with(":=") => {
                toks.push(Tok::Declare);
                s = &s[2..];
            }
            '=' => {
                toks.push(Tok::Assign);
                s = &s[1..];
            }
            c if c.is_ascii_digit()
                || c == '.'
                || ((c == '-' || c == '+')
                    && s[1..].starts_with(|d: char| d.is_ascii_digit() || d == '.')) =>
            {
                let len = s[1..]
                    .find(|c: char| {
                        !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
                    })
                    .map_or(s.len(), |i| i + 1);
                toks.push(number(&s[..len])?);
                s = &s[len..];
            }
            c if ident_char(c) => {
                let len = s.find(|c: char| !ident_char(c)).unwrap_or(s.len());
                toks.push(Tok::Ident(s[..len].to_string()));
                s = &s[len..];
            }
            c => return Err(format!("unrecognized character in action: {c:?}")),
        }
    }
}

/// `.a.b.c` at the start of `s` (possibly empty) and the rest.
fn field_chain(mut s: &str) -> (Vec<String>, &str) {
    let mut chain = Vec::new();
    while let Some(after) = s.strip_prefix('.') {
        let len = after.find(|c: char| !ident_char(c)).unwrap_or(after.len());
        if len == 0 {
            break;
        }
        chain.push(after[..len].to_string());
        s = &after[len..];
    }
    (chain, s)
}

/// A number literal as Go's template parser reads it (decimal, hex, octal
/// and binary integers, decimal floats).
fn number(text: &str) -> Result<Tok, String> {
    let clean = text.replace('_', "");
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let radix = [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ]
    .iter()
    .find_map(|(p, r)| digits.strip_prefix(p).map(|d| (d, *r)));
    let int = match radix {
        Some((d, r)) => i64::from_str_radix(d, r).ok(),
        None if digits.len() > 1
            && digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            i64::from_str_radix(&digits[1..], 8).ok()
        }
        None => digits.parse::<i64>().ok(),
    };
    if let Some(i) = int {
        return Ok(Tok::Int(if neg { -i } else { i }));
    }
    match clean.parse::<f64>() {
        Ok(f) if f.is_finite() => {
            if f.fract() == 0.0 && f.abs() < 9.2e18 && !clean.contains(['.', 'e', 'E']) {
                Ok(Tok::Int(f as i64))
            } else {
                Ok(Tok::Float(f))
            }
        }
        _ => Err(format!("bad number syntax: {text:?}")),
    }
}

/// A `"…"` literal with Go's escapes; returns the value and the rest.
fn quoted(s: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\n' => break,
            '\\' => {
                let (_, e) = chars.next().ok_or("unterminated quoted string")?;
                match e {
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\u{b}'),
                    '\\' | '"' => out.push(e),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n)
                            .filter_map(|_| chars.next().map(|(_, h)| h))
                            .collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .map_err(|_| "invalid escape in quoted string")?;
                        out.push(char::from_u32(code).ok_or("invalid escape in quoted string")?);
                    }
                    _ => return Err(format!("unknown escape sequence: \\{e}")),
                }
            }
            c => out.push(c),
        }
    }
    Err("unterminated quoted string".to_string())
}

fn char_constant(s: &str) -> Result<(char, &str), String> {
    let body = &s[1..];
    let end = body.find('\'').ok_or("unterminated character constant")?;
    let lit = &body[..end];
    let c = if lit.starts_with('\\') {
        let (v, _) = quoted(&format!("\"{lit}\""))?;
        let mut it = v.chars();
        match (it.next(), it.next()) {
            (Some(c), None) => c,
            _ => return Err("malformed character constant".to_string()),
        }
    } else {
        let mut it = lit.chars();
        match (it.next(), it.next()) {
            (Some(c), None) => c,
            _ => return Err("malformed character constant".to_string()),
        }
    };
    Ok((c, &body[end + 1..]))
}
