//! The `text` and `location` OPA reports for each expression of a query.
//!
//! regorus locates expressions by byte column and takes their text from the
//! token span, which drops the quotes around a trailing string literal
//! (`y = "a"` comes back as `y = "a`) and keeps only the keyword of
//! `some x in xs`. OPA reports the whole statement and counts columns in
//! characters. [`opa_text_and_location`] recovers OPA's view from the query
//! source and regorus's start position; when the two disagree it falls back
//! to what regorus reported.

/// An expression's text and 1-based position as OPA reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprText {
    pub text: String,
    pub row: u32,
    pub col: u32,
}

/// OPA's text and location for the expression regorus reported as `text`
/// at `row`:`col` (byte column) of `query`.
pub fn opa_text_and_location(query: &str, text: &str, row: u32, col: u32) -> ExprText {
    recover(query, text, row, col).unwrap_or_else(|| ExprText {
        text: text.to_string(),
        row,
        col,
    })
}

fn recover(query: &str, text: &str, row: u32, col: u32) -> Option<ExprText> {
    let line_start = line_start(query, row)?;
    let reported = line_start.checked_add(usize::try_from(col).ok()?.checked_sub(1)?)?;
    if !query.get(reported..)?.starts_with(text) {
        return None;
    }
    let mut start = reported;
    // A statement that starts with a string literal is located inside it.
    if let Some(quote @ (b'"' | b'`')) = start.checked_sub(1).map(|i| query.as_bytes()[i])
        && !text.starts_with(char::from(quote))
    {
        start -= 1;
    }
    let end = statement_end(query, start);
    if end < reported + text.len() {
        return None;
    }
    let col = query.get(line_start..start)?.chars().count() + 1;
    Some(ExprText {
        text: query.get(start..end)?.to_string(),
        row,
        col: u32::try_from(col).ok()?,
    })
}

/// Byte offset of the first character of 1-based line `row`.
fn line_start(query: &str, row: u32) -> Option<usize> {
    let skip = usize::try_from(row).ok()?.checked_sub(1)?;
    if skip == 0 {
        return Some(0);
    }
    query.match_indices('\n').nth(skip - 1).map(|(i, _)| i + 1)
}

/// End (exclusive, trailing blanks trimmed) of the statement starting at
/// `start`: the first `;`, newline or comment outside brackets and strings.
fn statement_end(query: &str, start: usize) -> usize {
    let bytes = query.as_bytes();
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = skip_string(bytes, i, b'"', true),
            b'`' => i = skip_string(bytes, i, b'`', false),
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b';' | b'\n' | b'#' if depth == 0 => break,
            _ => {}
        }
        i += 1;
    }
    let end = i.min(bytes.len());
    start + query[start..end].trim_end().len()
}

/// Index of the closing `quote` of the string opened at `open`.
fn skip_string(bytes: &[u8], open: usize, quote: u8, escapes: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if escapes && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            return i;
        }
        i += 1;
    }
    bytes.len()
}

/// Whether `text` is a bare `some x, y` declaration, which OPA does not
/// report as an expression.
pub fn is_some_declaration(text: &str) -> bool {
    let Some(vars) = text.strip_prefix("some") else {
        return false;
    };
    if !vars.starts_with(char::is_whitespace) {
        return false;
    }
    vars.split(',').all(|v| {
        let v = v.trim();
        !v.is_empty()
            && v.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
            && !v.starts_with(|c: char| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(query: &str, text: &str, row: u32, col: u32) -> (String, u32, u32) {
        let t = opa_text_and_location(query, text, row, col);
        (t.text, t.row, t.col)
    }

    #[test]
    fn restores_the_closing_quote_of_a_trailing_string() {
        assert_eq!(
            fix(r#"y = "a<b""#, r#"y = "a<b"#, 1, 1),
            (r#"y = "a<b""#.into(), 1, 1)
        );
        assert_eq!(fix("y := `r`", "y := `r", 1, 1), ("y := `r`".into(), 1, 1));
    }

    #[test]
    fn a_string_statement_starts_at_its_quote() {
        assert_eq!(fix(r#""a<b""#, "a<b", 1, 2), (r#""a<b""#.into(), 1, 1));
    }

    #[test]
    fn columns_count_characters() {
        let q = r#"x := "é"; y := `r`"#;
        assert_eq!(fix(q, r#"x := "é"#, 1, 1), (r#"x := "é""#.into(), 1, 1));
        assert_eq!(fix(q, "y := `r", 1, 12), ("y := `r`".into(), 1, 11));
    }

    #[test]
    fn keeps_the_whole_some_in_statement() {
        assert_eq!(
            fix("some x in [1,2]", "some", 1, 1),
            ("some x in [1,2]".into(), 1, 1)
        );
    }

    #[test]
    fn stops_at_separators_and_comments_outside_brackets() {
        let q = "x := {\"a;\": [1,\n 2]}; y = 2  # note\nz := \"#\"";
        assert_eq!(
            fix(q, "x := {\"a;\": [1,\n 2]}", 1, 1).0,
            "x := {\"a;\": [1,\n 2]}"
        );
        assert_eq!(fix(q, "y = 2", 2, 6), ("y = 2".into(), 2, 6));
        assert_eq!(fix(q, "z := \"#", 3, 1), ("z := \"#\"".into(), 3, 1));
    }

    #[test]
    fn falls_back_when_the_position_does_not_match() {
        assert_eq!(fix("abc", "zzz", 1, 1), ("zzz".into(), 1, 1));
        assert_eq!(fix("abc", "abc", 9, 1), ("abc".into(), 9, 1));
    }

    #[test]
    fn recognises_bare_some_declarations() {
        assert!(is_some_declaration("some i"));
        assert!(is_some_declaration("some x, y_2"));
        assert!(!is_some_declaration("some x in xs"));
        assert!(!is_some_declaration("something"));
        assert!(!is_some_declaration("some"));
    }
}
