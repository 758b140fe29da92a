// policy-engine patch: rules whose value depends only on the data.
//
// A VM evaluates many queries against the same program and data; a complete
// or partial rule that reads neither the input nor the context, calls no
// builtin whose answer can change between queries (time, randomness, the
// network, host calls) and calls only rules and functions of the same kind
// has the same value in every query. The VM keeps those values from one
// query to the next (`RegoVM::constant_values`) until the program or the
// data change, as if each query had computed them again.
//
// The analysis is conservative: a body is read from its entry point to its
// `RuleReturn` (`DestructuringSuccess` for a destructuring block), and any
// instruction outside a known list, or a body that does not end where
// expected, makes the rule and every rule that calls it non-constant.

use alloc::vec;
use alloc::vec::Vec;

use crate::rvm::instructions::Instruction;
use crate::rvm::program::Program;

/// Builtins whose answer may differ between two queries with the same
/// arguments, or that have effects (output).
fn varies(builtin: &str) -> bool {
    const PREFIXES: [&str; 7] = [
        "time.",
        "rand.",
        "uuid.",
        "http.",
        "net.",
        "opa.",
        "io.jwt.encode_sign",
    ];
    matches!(builtin, "print" | "trace") || PREFIXES.iter().any(|p| builtin.starts_with(p))
}

/// What one body needs: `None` when it reads something that varies between
/// queries (or cannot be read), else the rules it calls.
fn body_calls(program: &Program, entry: u32, end_on_destructuring: bool) -> Option<Vec<u16>> {
    let mut calls = Vec::new();
    let start = usize::try_from(entry).ok()?;
    for (offset, instruction) in program.instructions.get(start..)?.iter().enumerate() {
        match *instruction {
            Instruction::RuleReturn {} => return Some(calls),
            Instruction::DestructuringSuccess {} if end_on_destructuring => return Some(calls),
            // A body starts with its rule's `RuleInit`; another one means the
            // body did not end where expected.
            Instruction::RuleInit { .. } if offset > 0 => return None,
            Instruction::RuleInit { .. }
            | Instruction::DestructuringSuccess {}
            | Instruction::Load { .. }
            | Instruction::LoadTrue { .. }
            | Instruction::LoadFalse { .. }
            | Instruction::LoadNull { .. }
            | Instruction::LoadBool { .. }
            | Instruction::LoadData { .. }
            | Instruction::Move { .. }
            | Instruction::Add { .. }
            | Instruction::Sub { .. }
            | Instruction::Mul { .. }
            | Instruction::Div { .. }
            | Instruction::Mod { .. }
            | Instruction::Eq { .. }
            | Instruction::Ne { .. }
            | Instruction::Lt { .. }
            | Instruction::Le { .. }
            | Instruction::Gt { .. }
            | Instruction::Ge { .. }
            | Instruction::And { .. }
            | Instruction::Or { .. }
            | Instruction::Not { .. }
            | Instruction::ObjectSet { .. }
            | Instruction::ObjectCreate { .. }
            | Instruction::Index { .. }
            | Instruction::IndexLiteral { .. }
            | Instruction::ChainedIndex { .. }
            | Instruction::ArrayNew { .. }
            | Instruction::ArrayPush { .. }
            | Instruction::ArrayPushDefined { .. }
            | Instruction::ArrayCreate { .. }
            | Instruction::SetNew { .. }
            | Instruction::SetAdd { .. }
            | Instruction::SetCreate { .. }
            | Instruction::Contains { .. }
            | Instruction::Count { .. }
            | Instruction::AssertEq { .. }
            | Instruction::Guard { .. }
            | Instruction::ReturnUndefinedIfNotTrue { .. }
            | Instruction::CoalesceUndefinedToNull { .. }
            | Instruction::LoopStart { .. }
            | Instruction::LoopNext { .. }
            | Instruction::ComprehensionBegin { .. }
            | Instruction::ComprehensionYield { .. }
            | Instruction::ComprehensionEnd {} => {}
            Instruction::BuiltinCall { params_index } => {
                let params = program
                    .instruction_data
                    .get_builtin_call_params(params_index)?;
                let info = program.get_builtin_info(params.builtin_index)?;
                if varies(info.name.as_str()) {
                    return None;
                }
            }
            Instruction::FunctionCall { params_index } => {
                let params = program
                    .instruction_data
                    .get_function_call_params(params_index)?;
                calls.push(params.func_rule_index);
            }
            Instruction::CallRule { rule_index, .. } => calls.push(rule_index),
            // The input, the context, host calls, virtual document lookups
            // and everything else.
            _ => return None,
        }
    }
    None
}

/// For each rule of `program`, whether its value is the same in every query
/// on the same data: true only for complete and partial rules (a function's
/// value depends on its arguments) whose bodies, and the bodies of every
/// rule and function they call, pass `body_calls`.
pub(super) fn constant_rules(program: &Program) -> Vec<bool> {
    let n = program.rule_infos.len();
    // The rules each rule calls, or `None` for a rule that varies itself.
    let calls: Vec<Option<Vec<u16>>> = program
        .rule_infos
        .iter()
        .map(|info| {
            let mut all = Vec::new();
            for (def_idx, bodies) in info.definitions.iter().enumerate() {
                if let Some(Some(entry)) = info.destructuring_blocks.get(def_idx) {
                    all.extend(body_calls(program, *entry, true)?);
                }
                for entry in bodies {
                    all.extend(body_calls(program, *entry, false)?);
                }
            }
            Some(all)
        })
        .collect();
    // Pure until shown otherwise: a rule is impure when it varies itself or
    // calls an impure rule (to a fixed point; Rego forbids recursion).
    let mut pure: Vec<bool> = calls.iter().map(Option::is_some).collect();
    let mut changed = true;
    while changed {
        changed = false;
        for (i, c) in calls.iter().enumerate() {
            let Some(c) = c else { continue };
            if pure[i]
                && c.iter()
                    .any(|&j| !pure.get(usize::from(j)).copied().unwrap_or(false))
            {
                pure[i] = false;
                changed = true;
            }
        }
    }
    let mut constant = vec![false; n];
    for (i, info) in program.rule_infos.iter().enumerate() {
        constant[i] = pure[i] && info.function_info.is_none() && !info.definitions.is_empty();
    }
    constant
}
