// policy-engine patch: the parts of Go's `strconv` that `fmt.Sprintf` uses
// (and so OPA's `sprintf`): `FormatFloat` in every format and `Quote`,
// `QuoteToASCII`, `QuoteRune`, `QuoteRuneToASCII`, `CanBackquote`.

use super::go_is_print::is_print;
use crate::*;

use core::fmt::Write as _;

/// A float64 has at most 767 significant decimal digits and 1074 after the
/// point, so formatting with more only adds zeros (and Rust's formatting
/// takes at most 65535).
const EXACT_SIGNIFICANT_DIGITS: usize = 800;
const EXACT_FRACTION_DIGITS: usize = 1100;

/// The decimal digits of a float, as Go's `decimalSlice`: `d` holds the
/// significant digits without trailing zeros (none for zero), the value being
/// `0.d × 10^dp`.
struct Decimal {
    d: Vec<u8>,
    dp: i64,
}

impl Decimal {
    /// Digits of `text`, Rust's `{:e}` rendering of a non-negative float.
    fn from_exp_text(text: &str) -> Self {
        let (mantissa, exp) = text.split_once('e').unwrap_or((text, "0"));
        let exp: i64 = exp.parse().unwrap_or(0);
        let mut d: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
        while d.last() == Some(&b'0') {
            d.pop();
        }
        let dp = if d.is_empty() { 0 } else { exp + 1 };
        Self { d, dp }
    }

    /// The shortest digits that read back as `v` (Go's and Rust's agree).
    fn shortest(v: f64) -> Self {
        Self::from_exp_text(&format!("{:e}", v.abs()))
    }

    /// `v` rounded to `digits` significant digits (half to even on the exact
    /// binary value, as Go).
    fn rounded(v: f64, digits: usize) -> Self {
        let digits = digits.min(EXACT_SIGNIFICANT_DIGITS);
        Self::from_exp_text(&format!("{:.*e}", digits.saturating_sub(1), v.abs()))
    }

    fn nd(&self) -> i64 {
        i64::try_from(self.d.len()).unwrap_or(i64::MAX)
    }

    fn digit(&self, i: i64) -> u8 {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.d.get(i).copied())
            .unwrap_or(b'0')
    }
}

/// Go's `strconv.FormatFloat(v, format, prec, 64)`; `prec < 0` is the
/// shortest representation. `F` is taken as `f`.
pub(super) fn format_float(v: f64, format: char, prec: i64) -> String {
    let neg = v.is_sign_negative();
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if neg { "-Inf" } else { "+Inf" }.to_owned();
    }
    match format {
        'b' => return format_b(v),
        'x' | 'X' => return format_x(v, format, prec),
        'f' | 'F' if prec >= 0 => {
            let prec = usize::try_from(prec).unwrap_or(0);
            let mut out = format!("{:.*}", prec.min(EXACT_FRACTION_DIGITS), v);
            out.extend(core::iter::repeat_n(
                '0',
                prec.saturating_sub(EXACT_FRACTION_DIGITS),
            ));
            return out;
        }
        _ => {}
    }
    let shortest = prec < 0;
    let (digs, mut prec) = if shortest {
        let digs = Decimal::shortest(v);
        let prec = match format {
            'e' | 'E' => (digs.nd() - 1).max(0),
            'f' | 'F' => (digs.nd() - digs.dp).max(0),
            _ => digs.nd(),
        };
        (digs, prec)
    } else {
        match format {
            'e' | 'E' => (
                Decimal::rounded(v, usize::try_from(prec + 1).unwrap_or(1)),
                prec,
            ),
            _ => {
                let prec = prec.max(1);
                (
                    Decimal::rounded(v, usize::try_from(prec).unwrap_or(1)),
                    prec,
                )
            }
        }
    };
    let mut out = String::new();
    match format {
        'e' | 'E' => fmt_e(&mut out, neg, &digs, prec, format),
        'f' | 'F' => fmt_f(&mut out, neg, &digs, prec),
        'g' | 'G' => {
            let mut eprec = prec;
            if eprec > digs.nd() && digs.nd() >= digs.dp {
                eprec = digs.nd();
            }
            // %e is used if the exponent from the conversion is less than -4
            // or greater than or equal to the precision; for the shortest
            // representation with a precision of 6.
            if shortest {
                eprec = 6;
            }
            let exp = digs.dp - 1;
            if exp < -4 || exp >= eprec {
                if prec > digs.nd() {
                    prec = digs.nd();
                }
                let e = if format == 'g' { 'e' } else { 'E' };
                fmt_e(&mut out, neg, &digs, prec - 1, e);
            } else {
                if prec > digs.dp {
                    prec = digs.nd();
                }
                fmt_f(&mut out, neg, &digs, (prec - digs.dp).max(0));
            }
        }
        _ => {
            out.push('%');
            out.push(format);
        }
    }
    out
}

/// `-d.ddddde±dd`
fn fmt_e(out: &mut String, neg: bool, d: &Decimal, prec: i64, format: char) {
    if neg {
        out.push('-');
    }
    out.push(char::from(if d.d.is_empty() { b'0' } else { d.digit(0) }));
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            out.push(char::from(d.digit(i)));
        }
    }
    out.push(format);
    let mut exp = if d.d.is_empty() { 0 } else { d.dp - 1 };
    if exp < 0 {
        out.push('-');
        exp = -exp;
    } else {
        out.push('+');
    }
    if exp < 10 {
        out.push('0');
    }
    let _ = write!(out, "{exp}");
}

/// `-ddddd.dddd`
fn fmt_f(out: &mut String, neg: bool, d: &Decimal, prec: i64) {
    if neg {
        out.push('-');
    }
    if d.dp > 0 {
        for i in 0..d.dp {
            out.push(char::from(d.digit(i)));
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            out.push(char::from(d.digit(d.dp + i - 1)));
        }
    }
}

/// The sign, mantissa and binary exponent of `v` as Go's `FormatFloat`
/// takes them apart.
fn float_parts(v: f64) -> (bool, u64, i64) {
    let bits = v.to_bits();
    let neg = bits >> 63 != 0;
    let mut exp = i64::try_from((bits >> 52) & 0x7ff).unwrap_or(0);
    let mut mant = bits & ((1_u64 << 52) - 1);
    if exp == 0 {
        exp += 1;
    } else {
        mant |= 1_u64 << 52;
    }
    (neg, mant, exp - 1023)
}

/// `-ddddp±ddd`
fn format_b(v: f64) -> String {
    let (neg, mant, exp) = float_parts(v);
    let exp = exp - 52;
    format!(
        "{}{mant}p{}{exp}",
        if neg { "-" } else { "" },
        if exp >= 0 { "+" } else { "" }
    )
}

/// `-0x1.yyyyyyyyp±dd` or `-0x0p+00`
fn format_x(v: f64, format: char, prec: i64) -> String {
    let (neg, mut mant, mut exp) = float_parts(v);
    if mant == 0 {
        exp = 0;
    }
    // Shift digits so the leading 1 (if any) is at bit 1<<60.
    mant <<= 60 - 52;
    while mant != 0 && mant & (1 << 60) == 0 {
        mant <<= 1;
        exp -= 1;
    }
    // Round if requested.
    if (0..15).contains(&prec) {
        let shift = u32::try_from(prec * 4).unwrap_or(0);
        let extra = (mant << shift) & ((1 << 60) - 1);
        mant >>= 60 - shift;
        if extra | (mant & 1) > 1 << 59 {
            mant += 1;
        }
        mant <<= 60 - shift;
        if mant & (1 << 61) != 0 {
            // Wrapped around.
            mant >>= 1;
            exp += 1;
        }
    }
    let hex: &[u8; 16] = if format == 'X' {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let nibble = |m: u64| char::from(hex[usize::try_from((m >> 60) & 15).unwrap_or(0)]);
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push('0');
    out.push(format);
    out.push(if (mant >> 60) & 1 == 1 { '1' } else { '0' });
    mant <<= 4; // remove the leading 0 or 1
    if prec < 0 && mant != 0 {
        out.push('.');
        while mant != 0 {
            out.push(nibble(mant));
            mant <<= 4;
        }
    } else if prec > 0 {
        out.push('.');
        for _ in 0..prec {
            out.push(nibble(mant));
            mant <<= 4;
        }
    }
    out.push(if format == 'X' { 'P' } else { 'p' });
    if exp < 0 {
        out.push('-');
        exp = -exp;
    } else {
        out.push('+');
    }
    if exp < 10 {
        out.push('0');
    }
    let _ = write!(out, "{exp}");
    out
}

/// Go's `strconv.Quote` (`ascii_only`: `QuoteToASCII`).
pub(super) fn quote(s: &str, ascii_only: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        append_escaped(&mut out, c, '"', ascii_only);
    }
    out.push('"');
    out
}

/// Go's `strconv.QuoteRune` (`ascii_only`: `QuoteRuneToASCII`).
pub(super) fn quote_rune(c: char, ascii_only: bool) -> String {
    let mut out = String::from("'");
    append_escaped(&mut out, c, '\'', ascii_only);
    out.push('\'');
    out
}

fn append_escaped(out: &mut String, c: char, quote: char, ascii_only: bool) {
    if c == quote || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if if ascii_only {
        c.is_ascii() && is_print(c)
    } else {
        is_print(c)
    } {
        out.push(c);
        return;
    }
    let code = u32::from(c);
    let _ = match c {
        '\u{07}' => out.write_str("\\a"),
        '\u{08}' => out.write_str("\\b"),
        '\u{0c}' => out.write_str("\\f"),
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        '\u{0b}' => out.write_str("\\v"),
        _ if code < 0x20 || code == 0x7f => write!(out, "\\x{code:02x}"),
        _ if code < 0x10000 => write!(out, "\\u{code:04x}"),
        _ => write!(out, "\\U{code:08x}"),
    };
}

/// Go's `strconv.CanBackquote`.
pub(super) fn can_backquote(s: &str) -> bool {
    s.chars()
        .all(|c| !matches!(c, '\u{feff}' | '`' | '\u{7f}') && (c >= ' ' || c == '\t'))
}
