// policy-engine patch: `sprintf` as OPA's: Go's `fmt.Sprintf` on the values
// converted as OPA's `builtinSprintf` converts them (see `sprintf/term.rs`),
// with Go's texts for a verb that does not fit its value (`%!d(string=a)`),
// a missing argument (`%!s(MISSING)`) and extra ones (`%!(EXTRA int64=1)`).

use crate::ast::{Expr, Ref};
use crate::builtins;
use crate::builtins::utils::{ensure_args_count, ensure_array, ensure_string, operand};
use crate::lexer::Span;
use crate::value::Value;
use crate::*;

use anyhow::Result;

mod go_is_print;
mod printer;
mod strconv;
mod term;
mod verbs;

pub fn register(m: &mut builtins::BuiltinsMap<&'static str, builtins::BuiltinFcn>) {
    m.insert("sprintf", (sprintf, 2));
}

fn sprintf(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let name = "sprintf";
    ensure_args_count(span, name, params, args, 2)?;
    let format = ensure_string(name, operand(params, 0), &args[0])?;
    let values = ensure_array(name, operand(params, 1), args[1].clone())?;
    let go_args = values
        .iter()
        .map(term::go_arg)
        .collect::<Result<Vec<_>>>()?;
    Ok(Value::from(printer::sprintf(&format, &go_args)?))
}
