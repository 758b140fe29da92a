// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.
// policy-engine patch: every `.ok_or(VmError::…)` in this file became
// `.ok_or_else(|| VmError::…)` so no error value is built (and dropped) on the
// success path; see `vm/mod.rs`.

use crate::builtins;
use crate::value::Value;

use super::errors::{Result, VmError};
use super::execution_model::ExecutionMode;
use super::machine::RegoVM;
use crate::rvm::program::Program;

impl RegoVM {
    /// policy-engine patch: the program comes from the caller (see
    /// `jump_to_in`).
    pub(super) fn execute_function_call_in(
        &mut self,
        program: &Program,
        params_index: u16,
    ) -> Result<()> {
        let params = program
            .instruction_data
            .get_function_call_params(params_index)
            .cloned()
            .ok_or_else(|| VmError::InvalidFunctionCallParamsIndex {
                index: params_index,
                pc: self.pc,
                available: program.instruction_data.function_call_params.len(),
            })?;
        match self.execution_mode {
            ExecutionMode::RunToCompletion => self.execute_call_rule_in(
                program,
                params.dest,
                params.func_rule_index,
                Some(&params),
            )?,
            ExecutionMode::Suspendable => self.execute_call_rule_suspendable(
                params.dest,
                params.func_rule_index,
                Some(&params),
            )?,
        }
        self.memory_check()?;
        Ok(())
    }

    /// policy-engine patch: the program comes from the caller (see
    /// `jump_to_in`).
    pub(super) fn execute_builtin_call_in(
        &mut self,
        program: &Program,
        params_index: u16,
    ) -> Result<()> {
        let params = program
            .instruction_data
            .get_builtin_call_params(params_index)
            .ok_or_else(|| VmError::InvalidBuiltinCallParamsIndex {
                index: params_index,
                pc: self.pc,
                available: program.instruction_data.builtin_call_params.len(),
            })?
            .clone();
        let builtin_info = program
            .get_builtin_info(params.builtin_index)
            .ok_or_else(|| VmError::InvalidBuiltinInfoIndex {
                index: params.builtin_index,
                pc: self.pc,
                available: program.builtin_info_table.len(),
            })?;

        // policy-engine patch: the most frequent pure builtins are answered
        // here, from the argument registers, with the same results as their
        // implementations (which still handle every other case).
        if let Some(fast) = self
            .fast_builtins
            .get(usize::from(params.builtin_index))
            .copied()
        {
            if fast != FastBuiltin::None {
                if let Some(value) = self.fast_builtin(fast, params.arg_registers())? {
                    self.set_register(params.dest, value)?;
                    return Ok(());
                }
            }
        }

        let mut args = core::mem::take(&mut self.cached_builtin_args);
        args.clear();
        for &arg_reg in params.arg_registers().iter() {
            let arg_value = self.get_register(arg_reg)?.clone();
            args.push(arg_value);
        }

        let expected_args = builtin_info.num_args;
        let actual_args = args.len();
        if u16::try_from(actual_args).unwrap_or(u16::MAX) != expected_args {
            self.cached_builtin_args = args;
            return Err(VmError::BuiltinArgumentMismatch {
                expected: expected_args,
                actual: actual_args,
                pc: self.pc,
            });
        }

        if args.iter().any(|a| matches!(a, Value::Undefined)) {
            self.cached_builtin_args = args;
            self.set_register(params.dest, Value::Undefined)?;
            self.memory_check()?;
            return Ok(());
        }

        // Extract everything we need from program before releasing the borrow.
        let builtin_fn = match program.get_resolved_builtin(params.builtin_index) {
            Some(fcn) => fcn.0,
            None => {
                self.cached_builtin_args = args;
                return Err(VmError::BuiltinNotResolved {
                    name: builtin_info.name.clone(),
                    pc: self.pc,
                });
            }
        };
        let cache_name = builtins::must_cache(builtin_info.name.as_str());

        self.ensure_dummy_exprs(args.len())?;
        // Take the dummy_exprs vec out of self so we can pass it to the builtin
        // while still calling &mut self methods afterwards.
        let dummy_exprs = core::mem::take(&mut self.dummy_exprs);

        if let Some(name) = cache_name {
            if let Some(entries) = self.builtins_cache.get(name) {
                for entry in entries {
                    if entry.0.as_slice() == args.as_slice() {
                        let cached = entry.1.clone();
                        self.dummy_exprs = dummy_exprs;
                        self.cached_builtin_args = args;
                        self.set_register(params.dest, cached)?;
                        self.memory_check()?;
                        return Ok(());
                    }
                }
            }
        }

        // policy-engine patch: the span is moved out and back instead of
        // cloned per call (its source is reference counted).
        let dummy_span = match self.dummy_span.take() {
            Some(span) => span,
            None => self.get_dummy_span()?.clone(),
        };
        let outcome = builtin_fn(
            &dummy_span,
            dummy_exprs.get(..args.len()).unwrap_or(&[]),
            &args,
            self.strict_builtin_errors,
        );
        self.dummy_span = Some(dummy_span);
        let result = match outcome {
            Ok(value) => value,
            // Resource-limit errors must always propagate, even in non-strict
            // mode, to prevent `not builtin(...)` from silently flipping to true.
            Err(e) if !self.strict_builtin_errors => {
                if e.downcast_ref::<crate::LimitError>().is_some() {
                    self.dummy_exprs = dummy_exprs;
                    self.cached_builtin_args = args;
                    return Err(e.into());
                }
                Value::Undefined
            }
            Err(err) => {
                self.dummy_exprs = dummy_exprs;
                self.cached_builtin_args = args;
                return Err(err.into());
            }
        };

        // Put dummy_exprs back for reuse.
        self.dummy_exprs = dummy_exprs;

        if let Some(name) = cache_name {
            // Move args into the cache. The now-empty (zero-capacity) Vec is
            // stored back in cached_builtin_args; the next call will re-allocate.
            // This is acceptable because cache inserts are rare (once per unique
            // argument set) while the hot path (cache hit above) reuses the Vec.
            let cache_args = core::mem::take(&mut args);
            self.cached_builtin_args = args;
            self.builtins_cache
                .entry(name)
                .or_default()
                .push((cache_args, result.clone()));
            self.set_register(params.dest, result)?;
        } else {
            self.cached_builtin_args = args;
            self.set_register(params.dest, result)?;
        }

        self.memory_check()?;

        Ok(())
    }
}

/// policy-engine patch: builtins that `execute_builtin_call` answers without
/// building an argument vector, span and expression list. Each gives exactly
/// what its implementation in `crate::builtins` gives for the cases it
/// handles, and hands every other case (`None` from `fast_builtin`) to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastBuiltin {
    None,
    IsObject,
    IsString,
    IsNumber,
    IsArray,
    IsBoolean,
    IsSet,
    IsNull,
    Count,
    ObjectGet,
}

impl FastBuiltin {
    pub(super) fn for_name(name: &str, num_args: u16) -> Self {
        match (name, num_args) {
            ("is_object", 1) => Self::IsObject,
            ("is_string", 1) => Self::IsString,
            ("is_number", 1) => Self::IsNumber,
            ("is_array", 1) => Self::IsArray,
            ("is_boolean", 1) => Self::IsBoolean,
            ("is_set", 1) => Self::IsSet,
            ("is_null", 1) => Self::IsNull,
            ("count", 1) => Self::Count,
            ("object.get", 3) => Self::ObjectGet,
            _ => Self::None,
        }
    }
}

impl RegoVM {
    /// The value of `fast` for the arguments in `regs`, or None to use the
    /// builtin's implementation. An undefined argument makes the call
    /// undefined, as in `execute_builtin_call`.
    fn fast_builtin(&self, fast: FastBuiltin, regs: &[u8]) -> Result<Option<Value>> {
        let arg = |i: usize| -> Result<&Value> {
            match regs.get(i) {
                Some(&r) => self.get_register(r),
                None => Ok(&Value::Undefined),
            }
        };
        let a = arg(0)?;
        if matches!(*a, Value::Undefined) {
            return Ok(None);
        }
        Ok(match fast {
            FastBuiltin::None => None,
            FastBuiltin::IsObject => Some(Value::Bool(matches!(a, Value::Object(_)))),
            FastBuiltin::IsString => Some(Value::Bool(matches!(a, Value::String(_)))),
            FastBuiltin::IsNumber => Some(Value::Bool(matches!(a, Value::Number(_)))),
            FastBuiltin::IsArray => Some(Value::Bool(matches!(a, Value::Array(_)))),
            FastBuiltin::IsBoolean => Some(Value::Bool(matches!(a, Value::Bool(_)))),
            FastBuiltin::IsSet => Some(Value::Bool(matches!(a, Value::Set(_)))),
            FastBuiltin::IsNull => Some(Value::Bool(matches!(a, Value::Null))),
            FastBuiltin::Count => match a {
                Value::Array(x) => Some(Value::from(x.len())),
                Value::Set(x) => Some(Value::from(x.len())),
                Value::Object(x) => Some(Value::from(x.len())),
                Value::String(x) if x.is_ascii() => Some(Value::from(x.len())),
                _ => None,
            },
            FastBuiltin::ObjectGet => {
                let key = arg(1)?;
                let default = arg(2)?;
                match (a, key) {
                    (_, Value::Undefined | Value::Array(_)) => None,
                    (_, _) if matches!(*default, Value::Undefined) => None,
                    (Value::Object(obj), key) => {
                        Some(obj.get(key).cloned().unwrap_or_else(|| default.clone()))
                    }
                    _ => None,
                }
            }
        })
    }
}
