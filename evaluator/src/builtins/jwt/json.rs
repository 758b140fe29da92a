//! A JSON reader with the acceptance rules of Go's `encoding/json`, which
//! OPA uses for JWT headers and payloads and `jwx` uses for JWKs.
//!
//! Differences from a strict RFC 8259 reader, all as in Go: invalid UTF-8
//! inside strings becomes U+FFFD (one per byte), as do unpaired surrogate
//! escapes; duplicate object members are kept in order (the last one wins
//! when converted to a [`Value`]); numbers keep their literal text.
//!
//! One deliberate difference: nesting is limited to [`MAX_DEPTH`] levels
//! (Go allows 10000), as in the `serde_json` reader used for every other
//! document, so that an attacker-supplied token cannot build values deep
//! enough to exhaust the stack of code that walks them.

use std::collections::BTreeMap;

use regorus::Value;

/// Deepest nesting of arrays and objects accepted.
pub(super) const MAX_DEPTH: usize = 128;

/// A parsed JSON document, members in document order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Json {
    Null,
    Bool(bool),
    /// The number's literal text.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Members named exactly `name`, in document order.
    pub(super) fn members<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Json> + 'a {
        let fields: &[(String, Json)] = match self {
            Json::Object(fields) => fields,
            _ => &[],
        };
        fields
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// Parses `input` as one JSON value with only whitespace around it
/// (`json.Unmarshal`).
pub(super) fn parse(input: &[u8]) -> Option<Json> {
    let mut p = Parser { input, pos: 0 };
    let v = p.value(0)?;
    p.skip_ws();
    (p.pos == input.len()).then_some(v)
}

/// Parses the first JSON value of `input`, ignoring what follows it
/// (`json.Decoder.Decode`).
pub(super) fn parse_prefix(input: &[u8]) -> Option<Json> {
    Parser { input, pos: 0 }.value(0)
}

/// Converts to a Rego value: duplicate members keep the last value, numbers
/// keep their precision. `None` for a number Rego cannot represent.
pub(super) fn to_value(j: &Json) -> Option<Value> {
    Some(match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => number(n)?,
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::from(items.iter().map(to_value).collect::<Option<Vec<_>>>()?),
        Json::Object(fields) => {
            let mut map = BTreeMap::new();
            for (k, v) in fields {
                map.insert(Value::from(k.as_str()), to_value(v)?);
            }
            Value::from(map)
        }
    })
}

/// A number literal as a Rego number; `None` beyond the float64 range
/// (`1e400`), which no document the agent writes can hold. Exponents are
/// bounded before the exact conversion so that `1e999999999` cannot
/// allocate a huge integer.
fn number(literal: &str) -> Option<Value> {
    let f: f64 = literal.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    let bounded = match literal.find(['e', 'E']) {
        None => true,
        Some(i) => literal
            .get(i + 1..)
            .and_then(|e| e.parse::<i64>().ok())
            .is_some_and(|e| e.abs() <= 400),
    };
    if bounded && let Ok(v) = Value::from_numeric_string(literal) {
        return Some(v);
    }
    Some(Value::from(f))
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn literal(&mut self, word: &[u8], v: Json) -> Option<Json> {
        let end = self.pos.checked_add(word.len())?;
        (self.input.get(self.pos..end)? == word).then(|| {
            self.pos = end;
            v
        })
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        self.skip_ws();
        match self.peek()? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(Json::String),
            b't' => self.literal(b"true", Json::Bool(true)),
            b'f' => self.literal(b"false", Json::Bool(false)),
            b'n' => self.literal(b"null", Json::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn object(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        let mut fields = Vec::new();
        self.skip_ws();
        if self.eat(b'}') {
            return Some(Json::Object(fields));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return None;
            }
            let key = self.string()?;
            self.skip_ws();
            if !self.eat(b':') {
                return None;
            }
            let v = self.value(depth)?;
            fields.push((key, v));
            self.skip_ws();
            if self.eat(b'}') {
                return Some(Json::Object(fields));
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.eat(b']') {
            return Some(Json::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_ws();
            if self.eat(b']') {
                return Some(Json::Array(items));
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.pos;
        self.eat(b'-');
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.') && self.digits() == 0 {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        let text = std::str::from_utf8(self.input.get(start..self.pos)?).ok()?;
        Some(Json::Number(text.to_string()))
    }

    fn hex4(&mut self) -> Option<u16> {
        let end = self.pos.checked_add(4)?;
        let text = std::str::from_utf8(self.input.get(self.pos..end)?).ok()?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.pos = end;
        u16::from_str_radix(text, 16).ok()
    }

    /// A string starting at the opening quote.
    fn string(&mut self) -> Option<String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while matches!(self.peek(), Some(c) if c != b'"' && c != b'\\' && c >= 0x20) {
                self.pos += 1;
            }
            push_lossy(&mut out, self.input.get(start..self.pos)?);
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                _ => return None, // control character
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Option<()> {
        let c = self.peek()?;
        self.pos += 1;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                if (0xD800..0xE000).contains(&unit) {
                    self.surrogate(unit)
                } else {
                    char::from_u32(u32::from(unit))?
                }
            }
            _ => return None,
        };
        out.push(ch);
        Some(())
    }

    /// Completes a surrogate escape: a high surrogate followed by a
    /// `\u` low surrogate is one character; anything else is U+FFFD and
    /// the following text is read normally.
    fn surrogate(&mut self, high: u16) -> char {
        if (0xD800..0xDC00).contains(&high)
            && self.input.get(self.pos..self.pos + 2) == Some(b"\\u")
        {
            let save = self.pos;
            self.pos += 2;
            if let Some(low) = self.hex4()
                && (0xDC00..0xE000).contains(&low)
                && let Some(ch) = char::from_u32(
                    0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(low) - 0xDC00),
                )
            {
                return ch;
            }
            self.pos = save;
        }
        char::REPLACEMENT_CHARACTER
    }
}

/// Appends `bytes`, replacing each byte of an invalid UTF-8 sequence with
/// U+FFFD as Go does.
fn push_lossy(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for _ in chunk.invalid() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Value {
        Value::from_json_str(s).unwrap_or(Value::Undefined)
    }

    #[test]
    fn go_compatible_parsing() {
        assert_eq!(
            parse(br#" {"a":1,"a":2} "#).and_then(|j| to_value(&j)),
            Some(v(r#"{"a":2}"#))
        );
        assert_eq!(parse(br#"{"a":1} x"#), None);
        assert_eq!(parse(br#"{"a":1,}"#), None);
        assert_eq!(parse(b"[01]"), None);
        assert_eq!(parse(b"[1.]"), None);
        assert_eq!(parse(b"\"a\x01\""), None);
        assert_eq!(
            parse_prefix(br#"{"a":1} x"#),
            Some(Json::Object(vec![("a".into(), Json::Number("1".into()))]))
        );
        assert_eq!(
            parse(b"\"\xff\xfe\""),
            Some(Json::String("\u{fffd}\u{fffd}".into()))
        );
        assert_eq!(
            parse(br#""\ud800x""#),
            Some(Json::String("\u{fffd}x".into()))
        );
        assert_eq!(
            parse(br#""\ud83d\ude00""#),
            Some(Json::String("\u{1f600}".into()))
        );
        assert_eq!(
            parse(br#""\ud800\u0041""#),
            Some(Json::String("\u{fffd}A".into()))
        );
        assert_eq!(parse(br#""\x""#), None);
        assert_eq!(parse(b"\xef\xbb\xbf{}"), None);
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(deep.as_bytes()).is_some());
        let deeper = format!("[{deep}]");
        assert_eq!(parse(deeper.as_bytes()), None);
    }

    #[test]
    fn numbers_keep_precision() {
        let j = parse(b"[123456789012345678901234567890, 1.5, 1e3, -0, 1e999999999]");
        let Some(Json::Array(items)) = j else {
            unreachable!("array expected");
        };
        assert_eq!(
            to_value(&items[0]),
            Value::from_numeric_string("123456789012345678901234567890").ok()
        );
        assert_eq!(to_value(&items[1]), Some(Value::from(1.5)));
        assert_eq!(to_value(&items[2]), Some(Value::from(1000u64)));
        assert_eq!(to_value(&items[3]), Some(Value::from(0u64)));
        assert_eq!(to_value(&items[4]), None);
    }
}
