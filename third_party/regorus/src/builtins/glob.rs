// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.

#![allow(clippy::pattern_type_mismatch)]

use crate::ast::{Expr, Ref};
use crate::builtins;
use crate::builtins::utils::{ensure_args_count, ensure_string, ensure_string_collection};
use crate::builtins::utils::{operand, operand_error};
use crate::lexer::Span;
use crate::value::Value;
use crate::*;

use anyhow::{bail, Result};
use globset::{GlobBuilder, GlobMatcher};

pub fn register(m: &mut builtins::BuiltinsMap<&'static str, builtins::BuiltinFcn>) {
    m.insert("glob.match", (glob_match, 3));
    m.insert("glob.quote_meta", (quote_meta, 1));
}

const PLACE_HOLDER: &str = "\0";

fn suppress_unix_style_delimiter(s: &str) -> Result<String> {
    // Replace unix-style delimiter with placeholder so that no delimiter is
    // encountered during glob matching.
    Ok(s.replace('/', PLACE_HOLDER))
}

fn make_delimiters_unix_style(s: &str, delimiters: &[char]) -> Result<String> {
    if s.contains(PLACE_HOLDER) {
        bail!("string contains internal glob placeholder");
    }

    let has_unix_style = delimiters.contains(&'/');

    let mut s = if !has_unix_style {
        suppress_unix_style_delimiter(s)?
    } else {
        s.to_string()
    };

    for d in delimiters {
        if *d == ':' {
            s = s.replace(*d, PLACE_HOLDER);
        } else if *d != '/' {
            // Insert / before occurances of delimiter.
            s = s.replace(*d, format!("/{}/", *d).as_str());
        }
    }

    Ok(s)
}

fn make_glob(pattern: &str, span: &Span) -> Result<GlobMatcher> {
    #[cfg(feature = "cache")]
    {
        {
            let mut cache = crate::cache::GLOB_CACHE.lock();
            if let Some(matcher) = cache.get(pattern) {
                return Ok(matcher.clone());
            }
        }
        let matcher = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .or_else(|_| bail!(span.error("invalid glob")))?
            .compile_matcher();
        {
            let mut cache = crate::cache::GLOB_CACHE.lock();
            cache.put(alloc::string::String::from(pattern), matcher.clone());
        }
        Ok(matcher)
    }
    #[cfg(not(feature = "cache"))]
    {
        Ok(GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .or_else(|_| bail!(span.error("invalid glob")))?
            .compile_matcher())
    }
}

/// policy-engine patch: the syntax errors of the `gobwas/glob` compiler OPA
/// uses, which the glob translation below accepts: a character class holds
/// either characters or one `lo-hi` range (`[a-]x`, `[a-z0-9]`, `[]` and
/// `[z-a]` are errors), and must be closed.
fn gobwas_syntax_error(pattern: &str) -> Option<&'static str> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut terms = 0usize;
    while let Some(&c) = chars.get(i) {
        i += 1;
        match c {
            '{' => terms += 1,
            '}' if terms > 0 => terms -= 1,
            '[' => {
                if let Err(e) = gobwas_class(&chars, &mut i) {
                    return Some(e);
                }
            }
            '\\' => i += 1,
            _ => {}
        }
    }
    None
}

/// One character class after its `[` (gobwas `fetchRange` and `parserRange`).
fn gobwas_class(chars: &[char], i: &mut usize) -> core::result::Result<(), &'static str> {
    let (mut want_hi, mut want_close, mut seen_not) = (false, false, false);
    let (mut lo, mut hi, mut has_chars) = ('\0', '\0', false);
    loop {
        let Some(&r) = chars.get(*i) else {
            return Err("unexpected end of input");
        };
        *i += 1;
        if want_close {
            if r != ']' {
                return Err("expected close range character");
            }
            break;
        }
        if want_hi {
            hi = r;
            if hi < lo {
                return Err("hi character should be greater than lo");
            }
            want_close = true;
            continue;
        }
        if !seen_not && r == '!' {
            seen_not = true;
            continue;
        }
        if chars.get(*i) == Some(&'-') {
            lo = r;
            *i += 1;
            want_hi = true;
            continue;
        }
        // Text up to the closing `]`, `\` escaping the next character.
        *i -= 1;
        let mut escaped = false;
        while let Some(&t) = chars.get(*i) {
            if !escaped {
                if t == '\\' {
                    escaped = true;
                    *i += 1;
                    continue;
                }
                if t == ']' {
                    break;
                }
            }
            escaped = false;
            has_chars = true;
            *i += 1;
        }
        want_close = true;
    }
    let is_range = lo != '\0' && hi != '\0';
    if has_chars == is_range {
        return Err("could not parse range");
    }
    Ok(())
}

fn glob_match(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let name = "glob.match";
    ensure_args_count(span, name, params, args, 3)?;

    let pattern = ensure_string(name, operand(params, 0), &args[0])?;
    let value = ensure_string(name, operand(params, 2), &args[2])?;

    let pattern = pattern.as_ref();
    let value = value.as_ref();

    if let Some(reason) = gobwas_syntax_error(pattern) {
        bail!(params[0]
            .span()
            .error(&format!("eval_builtin_error: {name}: {reason}")));
    }

    if let Value::Null = &args[1] {
        // Ensure that / is not treated as a delimiter.
        let value = suppress_unix_style_delimiter(value)?;
        let pattern = suppress_unix_style_delimiter(pattern)?;

        let glob = make_glob(&pattern, params[0].span())?;
        return Ok(Value::Bool(glob.is_match(&value[..])));
    }

    let delimiters = if let Value::Array(_) = &args[1] {
        ensure_string_collection(name, &params[1], &args[1])?
    } else {
        bail!(params[1]
            .span()
            .error(format!("{name} requires string array").as_str()));
    };

    // policy-engine patch: each delimiter is one character (`RuneSliceOperand`
    // in OPA); an empty or longer string is OPA's operand type error.
    if delimiters.iter().any(|d| d.chars().count() != 1) {
        return Err(operand_error(
            params[1].span(),
            name,
            2,
            "must be array of runes but got array containing string",
        ));
    }

    let mut delimiters: Vec<char> = delimiters.iter().filter_map(|d| d.chars().next()).collect();

    if delimiters.is_empty() {
        delimiters.push('.');
    }

    let pattern = make_delimiters_unix_style(pattern, &delimiters)?;
    let value = make_delimiters_unix_style(value, &delimiters)?;

    let glob = make_glob(&pattern, params[0].span())?;
    Ok(Value::Bool(glob.is_match(&value[..])))
}

fn quote_meta(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let name = "glob.quote_meta";
    ensure_args_count(span, name, params, args, 1)?;

    let pattern = ensure_string(name, operand(params, 0), &args[0])?;
    // Ensure that the glob is valid.
    let _ = make_glob(&pattern, params[0].span())?;
    Ok(Value::String(pattern.as_ref().replace('*', "\\*").into()))
}
