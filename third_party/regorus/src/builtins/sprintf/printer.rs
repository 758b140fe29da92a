// policy-engine patch: Go's `fmt.Sprintf` (fmt/print.go and fmt/format.go)
// over the argument types OPA's `sprintf` passes it: verbs, flags, width,
// precision, `*`, argument indexes and Go's error texts (`%!d(string=a)`,
// `%!s(MISSING)`, `%!(EXTRA int64=1)`, `%!d(BADINDEX)`, `%!(BADWIDTH)`,
// `%!(BADPREC)`, `%!(NOVERB)`).

use super::strconv;
use crate::builtins::utils::enforce_limit;
use crate::number::BigInt;
use crate::*;

use anyhow::Result;
use core::fmt::Write as _;

/// A Go value as OPA's `sprintf` hands it to `fmt.Sprintf`.
#[derive(Debug, Clone)]
pub(super) enum GoArg {
    /// `int64`
    Int(i64),
    /// `*big.Int`
    Big(BigInt),
    /// `float64`
    Float(f64),
    /// `string`
    Str(String),
}

impl GoArg {
    /// Go's `reflect.TypeOf(arg).String()`.
    const fn type_name(&self) -> &'static str {
        match self {
            Self::Int(_) => "int64",
            Self::Big(_) => "*big.Int",
            Self::Float(_) => "float64",
            Self::Str(_) => "string",
        }
    }
}

/// Go's `fmt.Sprintf(format, args...)`.
pub(super) fn sprintf(format: &str, args: &[GoArg]) -> Result<String> {
    let mut p = Printer {
        buf: String::with_capacity(format.len()),
        f: Flags::default(),
        args,
        good_arg_num: true,
        reordered: false,
        erroring: false,
    };
    p.do_printf(format)?;
    Ok(p.buf)
}

/// Go's `fmt.fmtFlags` with the width and precision.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Flags {
    pub(super) sharp: bool,
    pub(super) zero: bool,
    pub(super) plus: bool,
    pub(super) minus: bool,
    pub(super) space: bool,
    pub(super) sharp_v: bool,
    pub(super) plus_v: bool,
    pub(super) wid: usize,
    pub(super) wid_present: bool,
    pub(super) prec: usize,
    pub(super) prec_present: bool,
}

/// Widths and precisions at least this large are ignored, as in Go.
const TOO_LARGE: i64 = 1_000_000;

#[derive(Debug)]
pub(super) struct Printer<'a> {
    pub(super) buf: String,
    pub(super) f: Flags,
    args: &'a [GoArg],
    good_arg_num: bool,
    reordered: bool,
    erroring: bool,
}

/// Go's `parsenum`: the number at `s[start..end]`, whether there is one, and
/// the index after it (`end` when it is too large).
fn parse_num(s: &[u8], start: usize, end: usize) -> (usize, bool, usize) {
    let mut num = 0_usize;
    let mut is_num = false;
    let mut i = start;
    while i < end {
        let Some(c) = s.get(i).filter(|c| c.is_ascii_digit()) else {
            break;
        };
        if num >= 1_000_000 {
            return (0, false, end);
        }
        num = num * 10 + usize::from(c - b'0');
        is_num = true;
        i += 1;
    }
    (num, is_num, i)
}

/// Go's `parseArgNumber`: the zero-based index in `[n]` at the start of `s`,
/// the bytes to consume and whether the number parsed.
fn parse_arg_number(s: &[u8]) -> (Option<usize>, usize, bool) {
    if s.len() < 3 {
        return (None, 1, false);
    }
    match s.iter().skip(1).position(|&c| c == b']') {
        Some(pos) => {
            let close = pos + 1;
            let (n, ok, next) = parse_num(s, 1, close);
            if !ok || next != close {
                return (None, close + 1, false);
            }
            (n.checked_sub(1), close + 1, true)
        }
        None => (None, 1, false),
    }
}

impl Printer<'_> {
    fn do_printf(&mut self, format: &str) -> Result<()> {
        let fb = format.as_bytes();
        let end = fb.len();
        let byte = |i: usize| fb.get(i).copied().unwrap_or(0);
        let mut arg_num = 0_usize;
        let mut i = 0_usize;
        'format: while i < end {
            self.good_arg_num = true;
            let last = i;
            while i < end && byte(i) != b'%' {
                i += 1;
            }
            if i > last {
                self.buf.push_str(format.get(last..i).unwrap_or_default());
            }
            if i >= end {
                break;
            }
            // Process one verb.
            i += 1;
            self.f = Flags::default();
            while i < end {
                match byte(i) {
                    b'#' => self.f.sharp = true,
                    b'0' => self.f.zero = true,
                    b'+' => self.f.plus = true,
                    b'-' => self.f.minus = true,
                    b' ' => self.f.space = true,
                    c => {
                        // Fast path: flags and a lower case verb.
                        if c.is_ascii_lowercase() && arg_num < self.args.len() {
                            if c == b'v' || c == b'w' {
                                self.set_v_flags();
                            }
                            self.print_arg_at(arg_num, char::from(c));
                            arg_num += 1;
                            i += 1;
                            enforce_limit()?;
                            continue 'format;
                        }
                        break;
                    }
                }
                i += 1;
            }

            // An explicit argument index?
            let mut after_index;
            (arg_num, i, after_index) = self.arg_number(arg_num, fb, i);

            // A width?
            if byte(i) == b'*' && i < end {
                i += 1;
                let (wid, ok, next) = self.int_from_arg(arg_num);
                arg_num = next;
                self.f.wid_present = ok;
                if !ok {
                    self.buf.push_str("%!(BADWIDTH)");
                }
                if wid < 0 {
                    self.f.minus = true;
                    self.f.zero = false;
                }
                self.f.wid = usize::try_from(wid.unsigned_abs()).unwrap_or(0);
                after_index = false;
            } else {
                let (wid, present, next) = parse_num(fb, i, end);
                (self.f.wid, self.f.wid_present, i) = (wid, present, next);
                if after_index && present {
                    self.good_arg_num = false;
                }
            }

            // A precision?
            if i + 1 < end && byte(i) == b'.' {
                i += 1;
                if after_index {
                    self.good_arg_num = false;
                }
                (arg_num, i, after_index) = self.arg_number(arg_num, fb, i);
                if i < end && byte(i) == b'*' {
                    i += 1;
                    let (prec, ok, next) = self.int_from_arg(arg_num);
                    arg_num = next;
                    // A negative precision means none.
                    let ok = ok && prec >= 0;
                    self.f.prec = if ok {
                        usize::try_from(prec).unwrap_or(0)
                    } else {
                        0
                    };
                    self.f.prec_present = ok;
                    if !ok {
                        self.buf.push_str("%!(BADPREC)");
                    }
                    after_index = false;
                } else {
                    let (prec, present, next) = parse_num(fb, i, end);
                    (self.f.prec, i) = (if present { prec } else { 0 }, next);
                    self.f.prec_present = true;
                }
            }

            if !after_index {
                (arg_num, i, _) = self.arg_number(arg_num, fb, i);
            }

            let Some(verb) = format.get(i..).and_then(|rest| rest.chars().next()) else {
                self.buf.push_str("%!(NOVERB)");
                break;
            };
            i += verb.len_utf8();

            if verb == '%' {
                // Percent does not absorb operands and ignores width and precision.
                self.buf.push('%');
            } else if !self.good_arg_num {
                let _ = write!(self.buf, "%!{verb}(BADINDEX)");
            } else if arg_num >= self.args.len() {
                let _ = write!(self.buf, "%!{verb}(MISSING)");
            } else {
                if verb == 'v' || verb == 'w' {
                    self.set_v_flags();
                }
                self.print_arg_at(arg_num, verb);
                arg_num += 1;
            }
            enforce_limit()?;
        }

        // Extra arguments, unless the format accessed them out of order.
        if !self.reordered && arg_num < self.args.len() {
            self.f = Flags::default();
            self.buf.push_str("%!(EXTRA ");
            let args = self.args;
            for (k, arg) in args.iter().enumerate().skip(arg_num) {
                if k > arg_num {
                    self.buf.push_str(", ");
                }
                self.buf.push_str(arg.type_name());
                self.buf.push('=');
                self.print_arg(arg, 'v');
                enforce_limit()?;
            }
            self.buf.push(')');
        }
        Ok(())
    }

    /// `%v`: `#` asks for Go syntax and `+` for field names, not for the
    /// flags' usual meaning.
    const fn set_v_flags(&mut self) {
        self.f.sharp_v = self.f.sharp;
        self.f.sharp = false;
        self.f.plus_v = self.f.plus;
        self.f.plus = false;
    }

    /// Go's `argNumber`: the argument an explicit `[n]` at `fb[i..]` selects.
    fn arg_number(&mut self, arg_num: usize, fb: &[u8], i: usize) -> (usize, usize, bool) {
        if fb.get(i) != Some(&b'[') {
            return (arg_num, i, false);
        }
        self.reordered = true;
        let (index, wid, ok) = parse_arg_number(fb.get(i..).unwrap_or_default());
        match index {
            Some(index) if ok && index < self.args.len() => (index, i + wid, true),
            _ => {
                self.good_arg_num = false;
                (arg_num, i + wid, ok)
            }
        }
    }

    /// Go's `intFromArg`: a `*` width or precision taken from an argument.
    fn int_from_arg(&self, arg_num: usize) -> (i64, bool, usize) {
        match self.args.get(arg_num) {
            Some(GoArg::Int(n)) if -TOO_LARGE < *n && *n < TOO_LARGE => (*n, true, arg_num + 1),
            Some(_) => (0, false, arg_num + 1),
            None => (0, false, arg_num),
        }
    }

    fn print_arg_at(&mut self, arg_num: usize, verb: char) {
        let args = self.args;
        if let Some(arg) = args.get(arg_num) {
            self.print_arg(arg, verb);
        }
    }

    /// Go's `printArg`.
    fn print_arg(&mut self, arg: &GoArg, verb: char) {
        match verb {
            'T' => return self.fmt_s(arg.type_name()),
            // Only a pointer has an address to print; a `*big.Int`'s is not
            // reproducible, so it gets the bad verb text too.
            'p' => return self.bad_verb(arg, verb),
            _ => {}
        }
        match arg {
            GoArg::Int(v) => self.fmt_integer(v.cast_unsigned(), true, verb, arg),
            GoArg::Float(v) => self.fmt_float_verb(*v, verb, arg),
            GoArg::Str(s) => self.fmt_string(s, verb, arg),
            GoArg::Big(b) if self.erroring => self.big_value(b),
            GoArg::Big(_) if verb == 'w' => self.bad_verb(arg, verb),
            GoArg::Big(b) => self.big_format(b, verb),
        }
    }

    /// Go's `badVerb`: `%!verb(type=value)`.
    pub(super) fn bad_verb(&mut self, arg: &GoArg, verb: char) {
        self.erroring = true;
        let _ = write!(self.buf, "%!{verb}({}=", arg.type_name());
        self.print_arg(arg, 'v');
        self.buf.push(')');
        self.erroring = false;
    }

    /// Go's `fmt.writePadding`.
    pub(super) fn write_padding(&mut self, n: usize) {
        let pad = if self.f.zero && !self.f.minus {
            '0'
        } else {
            ' '
        };
        self.buf.extend(core::iter::repeat_n(pad, n));
    }

    /// Go's `fmt.pad`: `s` padded to the width, counted in characters.
    pub(super) fn pad(&mut self, s: &str) {
        if !self.f.wid_present || self.f.wid == 0 {
            self.buf.push_str(s);
            return;
        }
        let width = self.f.wid.saturating_sub(s.chars().count());
        if self.f.minus {
            self.buf.push_str(s);
            self.write_padding(width);
        } else {
            self.write_padding(width);
            self.buf.push_str(s);
        }
    }

    /// `s` cut to the precision, in characters.
    pub(super) fn truncate<'s>(&self, s: &'s str) -> &'s str {
        if !self.f.prec_present {
            return s;
        }
        s.char_indices()
            .nth(self.f.prec)
            .map_or(s, |(i, _)| s.get(..i).unwrap_or(s))
    }

    pub(super) fn fmt_s(&mut self, s: &str) {
        let s = self.truncate(s);
        self.pad(s);
    }

    /// Go's `fmt.fmtQ`.
    pub(super) fn fmt_q(&mut self, s: &str) {
        let s = self.truncate(s);
        if self.f.sharp && strconv::can_backquote(s) {
            self.pad(&format!("`{s}`"));
        } else {
            self.pad(&strconv::quote(s, self.f.plus));
        }
    }
}
