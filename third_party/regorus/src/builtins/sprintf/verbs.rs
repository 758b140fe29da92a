// policy-engine patch: the verbs of Go's `fmt` for each Go value OPA's
// `sprintf` passes (fmt/print.go `fmtInteger`, `fmtFloat`, `fmtString`,
// fmt/format.go, and `big.Int`'s `Format`).

use super::printer::{GoArg, Printer};
use super::strconv;
use crate::number::BigInt;
use crate::*;

use core::fmt::Write as _;
use num_traits::Signed as _;

impl Printer<'_> {
    /// Go's `fmt.fmtSbx`: the bytes of `s` in hexadecimal.
    fn fmt_sx(&mut self, s: &str, upper: bool) {
        let digits: &[u8; 16] = if upper {
            b"0123456789ABCDEF"
        } else {
            b"0123456789abcdef"
        };
        let x = if upper { 'X' } else { 'x' };
        let bytes = s.as_bytes();
        let length = if self.f.prec_present {
            self.f.prec.min(bytes.len())
        } else {
            bytes.len()
        };
        let mut width = 2 * length;
        if width == 0 {
            if self.f.wid_present {
                self.write_padding(self.f.wid);
            }
            return;
        }
        if self.f.space {
            if self.f.sharp {
                width *= 2;
            }
            width += length - 1;
        } else if self.f.sharp {
            width += 2;
        }
        if self.f.wid_present && self.f.wid > width && !self.f.minus {
            self.write_padding(self.f.wid - width);
        }
        if self.f.sharp {
            self.buf.push('0');
            self.buf.push(x);
        }
        for (k, &c) in bytes.iter().take(length).enumerate() {
            if self.f.space && k > 0 {
                self.buf.push(' ');
                if self.f.sharp {
                    self.buf.push('0');
                    self.buf.push(x);
                }
            }
            for nibble in [c >> 4, c & 0xf] {
                self.buf.push(char::from(
                    digits.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
        if self.f.wid_present && self.f.wid > width && self.f.minus {
            self.write_padding(self.f.wid - width);
        }
    }

    /// Go's `pp.fmtString`.
    pub(super) fn fmt_string(&mut self, s: &str, verb: char, arg: &GoArg) {
        match verb {
            'v' if self.f.sharp_v => self.fmt_q(s),
            'v' | 's' => self.fmt_s(s),
            'x' => self.fmt_sx(s, false),
            'X' => self.fmt_sx(s, true),
            'q' => self.fmt_q(s),
            _ => self.bad_verb(arg, verb),
        }
    }

    /// Go's `pp.fmtInteger`.
    pub(super) fn fmt_integer(&mut self, v: u64, signed: bool, verb: char, arg: &GoArg) {
        match verb {
            'v' | 'd' => self.fmt_int_base(v, 10, signed, verb, false),
            'b' => self.fmt_int_base(v, 2, signed, verb, false),
            'o' | 'O' => self.fmt_int_base(v, 8, signed, verb, false),
            'x' => self.fmt_int_base(v, 16, signed, verb, false),
            'X' => self.fmt_int_base(v, 16, signed, verb, true),
            'c' => {
                let c = go_rune(v);
                self.pad(c.encode_utf8(&mut [0; 4]));
            }
            'q' => self.pad(&strconv::quote_rune(go_rune(v), self.f.plus)),
            'U' => self.fmt_unicode(v),
            _ => self.bad_verb(arg, verb),
        }
    }

    /// Go's `fmt.fmtInteger`.
    fn fmt_int_base(&mut self, u: u64, base: u32, signed: bool, verb: char, upper: bool) {
        let negative = signed && u.cast_signed() < 0;
        let u = if negative { u.wrapping_neg() } else { u };
        // Two ways to ask for extra leading zero digits: %.3d or %03d; with
        // both the zero flag is ignored and the padding is spaces.
        let mut prec = 0;
        if self.f.prec_present {
            prec = self.f.prec;
            // Precision 0 and value 0 print nothing but the padding.
            if prec == 0 && u == 0 {
                let zero = self.f.zero;
                self.f.zero = false;
                self.write_padding(self.f.wid);
                self.f.zero = zero;
                return;
            }
        } else if self.f.zero && !self.f.minus && self.f.wid_present {
            prec = self.f.wid;
            if negative || self.f.plus || self.f.space {
                prec = prec.saturating_sub(1); // room for the sign
            }
        }
        let mut digits = match (base, upper) {
            (2, _) => format!("{u:b}"),
            (8, _) => format!("{u:o}"),
            (16, false) => format!("{u:x}"),
            (16, true) => format!("{u:X}"),
            _ => format!("{u}"),
        };
        let zeros = prec.saturating_sub(digits.len());
        let mut s = String::with_capacity(zeros + digits.len() + 4);
        if negative {
            s.push('-');
        } else if self.f.plus {
            s.push('+');
        } else if self.f.space {
            s.push(' ');
        }
        if verb == 'O' {
            s.push_str("0o");
        }
        if self.f.sharp {
            match base {
                2 => s.push_str("0b"),
                8 if zeros == 0 && !digits.starts_with('0') => s.push('0'),
                16 => s.push_str(if upper { "0X" } else { "0x" }),
                _ => {}
            }
        }
        s.extend(core::iter::repeat_n('0', zeros));
        s.push_str(&core::mem::take(&mut digits));
        // Zero padding was done above as a precision, or is off.
        let zero = self.f.zero;
        self.f.zero = false;
        self.pad(&s);
        self.f.zero = zero;
    }

    /// Go's `fmt.fmtUnicode`: `U+0041`, `%#U`: `U+0041 'A'`.
    fn fmt_unicode(&mut self, u: u64) {
        let prec = if self.f.prec_present && self.f.prec > 4 {
            self.f.prec
        } else {
            4
        };
        let hex = format!("{u:X}");
        let mut s = String::from("U+");
        s.extend(core::iter::repeat_n('0', prec.saturating_sub(hex.len())));
        s.push_str(&hex);
        let printable = u32::try_from(u)
            .ok()
            .and_then(char::from_u32)
            .filter(|c| super::go_is_print::is_print(*c));
        if let (true, Some(c)) = (self.f.sharp, printable) {
            let _ = write!(s, " '{c}'");
        }
        let zero = self.f.zero;
        self.f.zero = false;
        self.pad(&s);
        self.f.zero = zero;
    }

    /// Go's `pp.fmtFloat`.
    pub(super) fn fmt_float_verb(&mut self, v: f64, verb: char, arg: &GoArg) {
        match verb {
            'v' => self.fmt_float(v, 'g', -1),
            'b' | 'g' | 'G' | 'x' | 'X' => self.fmt_float(v, verb, -1),
            'f' | 'e' | 'E' | 'F' => self.fmt_float(v, verb, 6),
            _ => self.bad_verb(arg, verb),
        }
    }

    /// Go's `fmt.fmtFloat`.
    fn fmt_float(&mut self, v: f64, format: char, prec: i64) {
        let prec = if self.f.prec_present {
            i64::try_from(self.f.prec).unwrap_or(0)
        } else {
            prec
        };
        let text = strconv::format_float(v, format, prec);
        // `num` always starts with a sign.
        let mut num = if text.starts_with(['-', '+']) {
            text
        } else {
            format!("+{text}")
        };
        if self.f.space && num.starts_with('+') && !self.f.plus {
            num.replace_range(..1, " ");
        }
        // Infinities and NaN are not padded with zeros.
        if num.get(1..2).is_some_and(|c| c == "I" || c == "N") {
            let zero = self.f.zero;
            self.f.zero = false;
            if num.get(1..2) == Some("N") && !self.f.space && !self.f.plus {
                num.remove(0);
            }
            self.pad(&num);
            self.f.zero = zero;
            return;
        }
        // `#`: always a decimal point, and for %g and %x the trailing zeros.
        if self.f.sharp && format != 'b' {
            num = sharp_float(&num, format, prec);
        }
        // A sign if asked for or negative.
        if self.f.plus || !num.starts_with('+') {
            // Zero padding goes between the sign and the digits.
            if self.f.zero && !self.f.minus && self.f.wid_present && self.f.wid > num.len() {
                let (sign, digits) = num.split_at(1);
                self.buf.push_str(sign);
                self.write_padding(self.f.wid - num.len());
                self.buf.push_str(digits);
                return;
            }
            self.pad(&num);
            return;
        }
        // No sign to show and the number is positive.
        self.pad(num.get(1..).unwrap_or_default());
    }
}

/// The `#` flag of Go's `fmt.fmtFloat` on `num` (a sign, then the number).
fn sharp_float(num: &str, verb: char, prec: i64) -> String {
    let mut digits = match verb {
        'v' | 'g' | 'G' | 'x' => {
            if prec == -1 {
                6
            } else {
                prec
            }
        }
        _ => 0,
    };
    let (mut body, tail) = match num.char_indices().skip(1).find(|&(_, c)| {
        matches!(c, 'p' | 'P') || (matches!(c, 'e' | 'E') && verb != 'x' && verb != 'X')
    }) {
        Some((at, _)) => (
            num.get(..at).unwrap_or_default().to_owned(),
            num.get(at..).unwrap_or_default().to_owned(),
        ),
        None => (num.to_owned(), String::new()),
    };
    let mut has_point = false;
    let mut nonzero = false;
    for c in body.chars().skip(1) {
        if c == '.' {
            has_point = true;
            continue;
        }
        if c != '0' {
            nonzero = true;
        }
        if nonzero {
            digits -= 1;
        }
    }
    if !has_point {
        // A leading digit 0 counts once.
        if body.len() == 2 && body.ends_with('0') {
            digits -= 1;
        }
        body.push('.');
    }
    while digits > 0 {
        body.push('0');
        digits -= 1;
    }
    body.push_str(&tail);
    body
}

impl Printer<'_> {
    /// `big.Int`'s `Format` method.
    pub(super) fn big_format(&mut self, x: &BigInt, verb: char) {
        let base = match verb {
            'b' => 2,
            'o' | 'O' => 8,
            'd' | 's' | 'v' => 10,
            'x' | 'X' => 16,
            _ => {
                let _ = write!(self.buf, "%!{verb}(big.Int={x})");
                return;
            }
        };
        let plus = self.f.plus || self.f.plus_v;
        let sharp = self.f.sharp || self.f.sharp_v;
        let sign = if x.is_negative() {
            "-"
        } else if plus {
            "+"
        } else if self.f.space {
            " "
        } else {
            ""
        };
        let mut prefix = "";
        if sharp {
            prefix = match verb {
                'b' => "0b",
                'o' => "0",
                'x' => "0x",
                'X' => "0X",
                _ => "",
            };
        }
        if verb == 'O' {
            prefix = "0o";
        }
        let mut digits = x.magnitude().to_str_radix(base);
        if verb == 'X' {
            digits.make_ascii_uppercase();
        }
        let mut left = 0;
        let mut zeros = 0;
        let mut right = 0;
        if self.f.prec_present {
            if digits.len() < self.f.prec {
                zeros = self.f.prec - digits.len();
            } else if digits == "0" && self.f.prec == 0 {
                return; // nothing for zero with precision zero
            }
        }
        let length = sign.len() + prefix.len() + zeros + digits.len();
        if self.f.wid_present && length < self.f.wid {
            let d = self.f.wid - length;
            if self.f.minus {
                right = d;
            } else if self.f.zero && !self.f.prec_present {
                zeros = d;
            } else {
                left = d;
            }
        }
        self.buf.extend(core::iter::repeat_n(' ', left));
        self.buf.push_str(sign);
        self.buf.push_str(prefix);
        self.buf.extend(core::iter::repeat_n('0', zeros));
        self.buf.push_str(&digits);
        self.buf.extend(core::iter::repeat_n(' ', right));
    }

    /// A `*big.Int` printed by reflection (inside a bad verb's text):
    /// `&{neg [words]}`.
    pub(super) fn big_value(&mut self, x: &BigInt) {
        self.buf.push_str("&{");
        let neg = if x.is_negative() { "true" } else { "false" };
        self.fmt_s(neg);
        self.buf.push_str(" [");
        for (k, word) in x.magnitude().to_u64_digits().into_iter().enumerate() {
            if k > 0 {
                self.buf.push(' ');
            }
            self.fmt_int_base(word, 10, false, 'v', false);
        }
        self.buf.push_str("]}");
    }
}

/// The character Go's `%c` and `%q` print for an integer.
fn go_rune(v: u64) -> char {
    u32::try_from(v)
        .ok()
        .and_then(char::from_u32)
        .unwrap_or('\u{fffd}')
}
