//! JSON text byte-for-byte as OPA writes it.
//!
//! OPA prints results with Go's `encoding/json`, which differs from
//! `serde_json` in one visible way: it escapes `<`, `>`, `&`, U+2028 and
//! U+2029 in strings (`"a<b"` becomes `"a\u003cb"`). The formatter here adds
//! that escaping on top of `serde_json`'s compact and pretty (two-space)
//! layouts, so `policyctl eval` output can be compared with `opa eval` output
//! as text.

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter};

/// `value` as Go's `json.Marshal` writes it (no whitespace).
pub fn to_compact<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    write(value, GoFormatter(CompactFormatter))
}

/// `value` as Go's `json.Encoder` with `SetIndent("", "  ")` writes it,
/// without the trailing newline the encoder adds.
pub fn to_indented<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    write(value, GoFormatter(PrettyFormatter::with_indent(b"  ")))
}

fn write<T: Serialize + ?Sized, F: Formatter>(
    value: &T,
    formatter: GoFormatter<F>,
) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut ser)?;
    // INVARIANT: serde_json writes valid UTF-8 and the escapes added are ASCII.
    String::from_utf8(out).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

/// A `serde_json` formatter that escapes like Go's `encoding/json`.
struct GoFormatter<F>(F);

/// The escape Go writes for `c`, when it differs from `serde_json`.
fn go_escape(c: char) -> Option<&'static str> {
    match c {
        '<' => Some("\\u003c"),
        '>' => Some("\\u003e"),
        '&' => Some("\\u0026"),
        '\u{2028}' => Some("\\u2028"),
        '\u{2029}' => Some("\\u2029"),
        _ => None,
    }
}

impl<F: Formatter> Formatter for GoFormatter<F> {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if let Some(escape) = go_escape(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                writer.write_all(escape.as_bytes())?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_html_characters_like_go() {
        let v = json!({"k": "a<b>&c\u{2028}d\u{2029}", "n": 1});
        assert_eq!(
            to_compact(&v).unwrap(),
            r#"{"k":"a\u003cb\u003e\u0026c\u2028d\u2029","n":1}"#
        );
    }

    #[test]
    fn keeps_serde_escapes_for_control_characters() {
        assert_eq!(
            to_compact(&json!("q\"\\\n\t\u{1}")).unwrap(),
            r#""q\"\\\n\t\u0001""#
        );
    }

    #[test]
    fn indents_with_two_spaces_and_empty_collections_inline() {
        let v = json!({"a": [1, {}], "b": []});
        assert_eq!(
            to_indented(&v).unwrap(),
            "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}"
        );
    }
}
