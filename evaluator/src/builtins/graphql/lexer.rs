//! GraphQL tokenizer with gqlparser's token kinds, positions and messages.

use super::SyntaxError;

/// Token kinds, named as gqlparser prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Invalid,
    Eof,
    Bang,
    Dollar,
    Amp,
    ParenL,
    ParenR,
    Spread,
    Colon,
    Equals,
    At,
    BracketL,
    BracketR,
    BraceL,
    BraceR,
    Pipe,
    Name,
    Int,
    Float,
    String,
    BlockString,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Invalid => "<Invalid>",
            Kind::Eof => "<EOF>",
            Kind::Bang => "!",
            Kind::Dollar => "$",
            Kind::Amp => "&",
            Kind::ParenL => "(",
            Kind::ParenR => ")",
            Kind::Spread => "...",
            Kind::Colon => ":",
            Kind::Equals => "=",
            Kind::At => "@",
            Kind::BracketL => "[",
            Kind::BracketR => "]",
            Kind::BraceL => "{",
            Kind::BraceR => "}",
            Kind::Pipe => "|",
            Kind::Name => "Name",
            Kind::Int => "Int",
            Kind::Float => "Float",
            Kind::String => "String",
            Kind::BlockString => "BlockString",
        }
    }
}

/// A source position: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) column: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: Kind,
    pub(crate) value: String,
    pub(crate) pos: Pos,
}

impl Token {
    /// The token as gqlparser describes it in messages (`Name "foo"`, `{`).
    pub(crate) fn describe(&self) -> String {
        if self.value.is_empty() {
            self.kind.as_str().to_string()
        } else {
            format!("{} {}", self.kind.as_str(), go_quote(&self.value))
        }
    }
}

/// Quotes `s` the way Go's `strconv.Quote` does for printable text.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) struct Lexer<'a> {
    input: &'a str,
    bytes: &'a [u8],
    start: usize,
    start_runes: usize,
    end: usize,
    end_runes: usize,
    line: usize,
    line_start_runes: usize,
}

type Lexed = (Token, Option<SyntaxError>);

impl<'a> Lexer<'a> {
    pub(crate) fn new(input: &'a str) -> Self {
        Self {
            input,
            bytes: input.as_bytes(),
            start: 0,
            start_runes: 0,
            end: 0,
            end_runes: 0,
            line: 1,
            line_start_runes: 0,
        }
    }

    fn token(&self, kind: Kind, value: String) -> Lexed {
        (
            Token {
                kind,
                value,
                pos: Pos {
                    line: self.line,
                    column: rune_column(self.start_runes, self.line_start_runes),
                },
            },
            None,
        )
    }

    fn slice_token(&self, kind: Kind) -> Lexed {
        self.token(kind, self.input[self.start..self.end].to_string())
    }

    fn error(&self, message: String) -> Lexed {
        let pos = Pos {
            line: self.line,
            column: rune_column(self.end_runes, self.line_start_runes),
        };
        (
            Token {
                kind: Kind::Invalid,
                value: String::new(),
                pos,
            },
            Some(SyntaxError { message, pos }),
        )
    }

    fn peek_char(&self) -> Option<char> {
        self.input[self.end..].chars().next()
    }

    /// Reads the next token, skipping whitespace and comments.
    pub(crate) fn read_token(&mut self) -> Lexed {
        loop {
            self.skip_whitespace();
            self.start = self.end;
            self.start_runes = self.end_runes;
            let Some(&r) = self.bytes.get(self.start) else {
                return self.slice_token(Kind::Eof);
            };
            self.end += 1;
            self.end_runes += 1;
            let punct = match r {
                b'!' => Some(Kind::Bang),
                b'$' => Some(Kind::Dollar),
                b'&' => Some(Kind::Amp),
                b'(' => Some(Kind::ParenL),
                b')' => Some(Kind::ParenR),
                b':' => Some(Kind::Colon),
                b'=' => Some(Kind::Equals),
                b'@' => Some(Kind::At),
                b'[' => Some(Kind::BracketL),
                b']' => Some(Kind::BracketR),
                b'{' => Some(Kind::BraceL),
                b'}' => Some(Kind::BraceR),
                b'|' => Some(Kind::Pipe),
                _ => None,
            };
            if let Some(kind) = punct {
                return self.token(kind, String::new());
            }
            match r {
                b'.' if self.bytes.get(self.start..self.start + 3) == Some(b"...") => {
                    self.end += 2;
                    self.end_runes += 2;
                    return self.token(Kind::Spread, String::new());
                }
                b'#' => {
                    self.skip_comment();
                    continue;
                }
                b'_' | b'a'..=b'z' | b'A'..=b'Z' => return self.read_name(),
                b'-' | b'0'..=b'9' => return self.read_number(),
                b'"' => {
                    if self.bytes.get(self.start..self.start + 3) == Some(b"\"\"\"") {
                        return self.read_block_string();
                    }
                    return self.read_string();
                }
                _ => {}
            }
            self.end -= 1;
            self.end_runes -= 1;
            if r < 0x20 && r != b'\t' && r != b'\n' && r != b'\r' {
                return self.error(format!(
                    "Cannot contain the invalid character \"\\u{:04}\"",
                    r
                ));
            }
            if r == b'\'' {
                return self.error(
                    "Unexpected single quote character ('), did you mean to use a double quote (\")?"
                        .to_string(),
                );
            }
            // Go's `string(byte)`: the byte read as a code point.
            let c = char::from(r);
            return self.error(format!("Cannot parse the unexpected character \"{c}\"."));
        }
    }

    fn skip_whitespace(&mut self) {
        while let Some(&b) = self.bytes.get(self.end) {
            match b {
                b'\t' | b' ' | b',' => {
                    self.end += 1;
                    self.end_runes += 1;
                }
                b'\n' => {
                    self.end += 1;
                    self.end_runes += 1;
                    self.line += 1;
                    self.line_start_runes = self.end_runes;
                }
                b'\r' => {
                    self.end += 1;
                    self.end_runes += 1;
                    self.line += 1;
                    self.line_start_runes = self.end_runes;
                    if self.bytes.get(self.end) == Some(&b'\n') {
                        self.end += 1;
                        self.end_runes += 1;
                    }
                }
                0xef if self.bytes.get(self.end + 1..self.end + 3) == Some(&[0xbb, 0xbf]) => {
                    self.end += 3;
                    self.end_runes += 1;
                }
                _ => return,
            }
        }
    }

    fn skip_comment(&mut self) {
        while let Some(c) = self.peek_char() {
            if c as u32 > 0x1f || c == '\t' {
                self.end += c.len_utf8();
                self.end_runes += 1;
            } else {
                break;
            }
        }
    }

    fn accept_byte(&mut self, accepted: &[u8]) -> bool {
        match self.bytes.get(self.end) {
            Some(b) if accepted.contains(b) => {
                self.end += 1;
                self.end_runes += 1;
                true
            }
            _ => false,
        }
    }

    fn accept_digits(&mut self) -> usize {
        let mut consumed = 0;
        while self.bytes.get(self.end).is_some_and(u8::is_ascii_digit) {
            self.end += 1;
            self.end_runes += 1;
            consumed += 1;
        }
        consumed
    }

    fn describe_next(&self) -> String {
        match self.bytes.get(self.end) {
            Some(&b) => format!("\"{}\"", b as char),
            None => "<EOF>".to_string(),
        }
    }

    fn read_number(&mut self) -> Lexed {
        let mut float = false;
        self.end -= 1;
        self.end_runes -= 1;
        self.accept_byte(b"-");
        if self.accept_byte(b"0") {
            let consumed = self.accept_digits();
            if consumed != 0 {
                self.end -= consumed;
                self.end_runes -= consumed;
                return self.error(format!(
                    "Invalid number, unexpected digit after 0: {}.",
                    self.describe_next()
                ));
            }
        } else if self.accept_digits() == 0 {
            return self.error(format!(
                "Invalid number, expected digit but got: {}.",
                self.describe_next()
            ));
        }
        if self.accept_byte(b".") {
            float = true;
            if self.accept_digits() == 0 {
                return self.error(format!(
                    "Invalid number, expected digit but got: {}.",
                    self.describe_next()
                ));
            }
        }
        if self.accept_byte(b"eE") {
            float = true;
            self.accept_byte(b"-+");
            if self.accept_digits() == 0 {
                return self.error(format!(
                    "Invalid number, expected digit but got: {}.",
                    self.describe_next()
                ));
            }
        }
        self.slice_token(if float { Kind::Float } else { Kind::Int })
    }

    fn read_string(&mut self) -> Lexed {
        let len = self.bytes.len();
        let mut buf: Option<String> = None;
        self.start += 1;
        self.start_runes += 1;
        while self.end < len {
            let r = self.bytes[self.end];
            if r == b'\n' || r == b'\r' {
                break;
            }
            if r < 0x20 && r != b'\t' {
                return self.error(format!("Invalid character within String: \"\\u{r:04}\"."));
            }
            match r {
                b'"' => {
                    let value = buf
                        .take()
                        .unwrap_or_else(|| self.input[self.start..self.end].to_string());
                    let tok = self.token(Kind::String, value);
                    self.end += 1;
                    self.end_runes += 1;
                    return tok;
                }
                b'\\' => {
                    if self.end + 1 >= len {
                        self.end += 1;
                        self.end_runes += 1;
                        return self.error("Invalid character escape sequence.".to_string());
                    }
                    let b = buf.get_or_insert_with(|| self.input[self.start..self.end].to_string());
                    let escape = self.bytes[self.end + 1];
                    if escape == b'u' {
                        if self.end + 6 >= len {
                            self.end += 1;
                            self.end_runes += 1;
                            let rest = self.input.get(self.end..).unwrap_or("").to_string();
                            return self
                                .error(format!("Invalid character escape sequence: \\{rest}."));
                        }
                        let hex = self.input.get(self.end + 2..self.end + 6);
                        let code = hex.and_then(|h| {
                            if h.bytes().all(|c| c.is_ascii_hexdigit()) {
                                u32::from_str_radix(h, 16).ok()
                            } else {
                                None
                            }
                        });
                        let Some(code) = code else {
                            self.end += 1;
                            self.end_runes += 1;
                            let seq = self
                                .input
                                .get(self.end..self.end + 5)
                                .unwrap_or("")
                                .to_string();
                            return self
                                .error(format!("Invalid character escape sequence: \\{seq}."));
                        };
                        b.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        self.end += 6;
                        self.end_runes += 6;
                    } else {
                        let c = match escape {
                            b'"' => '"',
                            b'/' => '/',
                            b'\\' => '\\',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            _ => {
                                self.end += 1;
                                self.end_runes += 1;
                                let shown = self.input[self.end..].chars().next().unwrap_or(' ');
                                return self.error(format!(
                                    "Invalid character escape sequence: \\{shown}."
                                ));
                            }
                        };
                        b.push(c);
                        self.end += 2;
                        self.end_runes += 2;
                    }
                }
                _ => {
                    let c = self.peek_char().unwrap_or('\u{fffd}');
                    self.end += c.len_utf8();
                    self.end_runes += 1;
                    if let Some(b) = buf.as_mut() {
                        b.push(c);
                    }
                }
            }
        }
        self.error("Unterminated string.".to_string())
    }

    fn read_block_string(&mut self) -> Lexed {
        let len = self.bytes.len();
        let mut buf = String::new();
        self.start += 3;
        self.start_runes += 3;
        self.end += 2;
        self.end_runes += 2;
        while self.end < len {
            let r = self.bytes[self.end];
            if r == b'"' && self.bytes.get(self.end..self.end + 3) == Some(b"\"\"\"") {
                let tok = self.token(Kind::BlockString, block_string_value(&buf));
                self.end += 3;
                self.end_runes += 3;
                return tok;
            }
            if r < 0x20 && r != b'\t' && r != b'\n' && r != b'\r' {
                return self.error(format!("Invalid character within String: \"\\u{r:04}\"."));
            }
            if r == b'\\' && self.bytes.get(self.end..self.end + 4) == Some(b"\\\"\"\"") {
                buf.push_str("\"\"\"");
                self.end += 4;
                self.end_runes += 4;
            } else if r == b'\r' {
                if self.bytes.get(self.end + 1) == Some(&b'\n') {
                    self.end += 1;
                    self.end_runes += 1;
                }
                buf.push('\n');
                self.end += 1;
                self.end_runes += 1;
                self.line += 1;
                self.line_start_runes = self.end_runes;
            } else {
                let c = self.peek_char().unwrap_or('\u{fffd}');
                self.end += c.len_utf8();
                self.end_runes += 1;
                buf.push(c);
                if r == b'\n' {
                    self.line += 1;
                    self.line_start_runes = self.end_runes;
                }
            }
        }
        self.error("Unterminated string.".to_string())
    }

    fn read_name(&mut self) -> Lexed {
        while self
            .bytes
            .get(self.end)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            self.end += 1;
            self.end_runes += 1;
        }
        self.slice_token(Kind::Name)
    }
}

/// A 1-based column; negative for a token that starts before the current
/// line (a block string spanning lines), as in gqlparser.
fn rune_column(at: usize, line_start: usize) -> i64 {
    let at = i64::try_from(at).unwrap_or(i64::MAX);
    let line_start = i64::try_from(line_start).unwrap_or(i64::MAX);
    at - line_start + 1
}

/// Leading spaces/tabs of `line`, or `None` when the line is all whitespace.
fn leading_whitespace(line: &str) -> Option<usize> {
    line.char_indices()
        .find(|(_, c)| *c != ' ' && *c != '\t')
        .map(|(i, _)| i)
}

/// The value of a block string: common indentation and blank edge lines removed.
fn block_string_value(raw: &str) -> String {
    let mut lines: Vec<&str> = raw.split('\n').collect();
    let mut common: Option<usize> = None;
    for line in &lines {
        if let Some(indent) = leading_whitespace(line)
            && common.is_none_or(|c| indent < c)
        {
            common = Some(indent);
            if indent == 0 {
                break;
            }
        }
    }
    if let Some(common) = common {
        for line in lines.iter_mut().skip(1) {
            *line = line.get(common..).unwrap_or("");
        }
    }
    let mut start = 0;
    let mut end = lines.len();
    while start < end && leading_whitespace(lines[start]).is_none() {
        start += 1;
    }
    while start < end && leading_whitespace(lines[end - 1]).is_none() {
        end -= 1;
    }
    lines[start..end].join("\n")
}
