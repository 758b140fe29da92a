#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail loudly

//! The bytecode VM's run-to-completion loop checks its instruction limit
//! and advances its execution timer in one comparison per instruction (a
//! patch in `third_party/regorus`, see its PATCHED.md). The limit must
//! still stop a program at exactly that many instructions, also inside
//! nested rule calls and after a run that used part of the budget, and the
//! timer must still stop a long loop at its deadline.

use std::num::NonZeroU32;
use std::time::Duration;

use regorus::Engine;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::{ExecutionMode, RegoVM, VmError};
use regorus::utils::limits::ExecutionTimerConfig;

const MODULE: &str = r#"package t
import rego.v1

f(x) := y if {
	y := x + 1
}

small := f(f(f(1)))

busy := count([x | some x in numbers.range(1, input.n); x > 0])
"#;

fn vm_for(rule: &str) -> RegoVM {
    let mut engine = Engine::new();
    engine.add_policy("t.rego".into(), MODULE.into()).unwrap();
    let policy = engine.compile_with_entrypoint(&rule.into()).unwrap();
    let program = Compiler::compile_from_policy(&policy, &[rule]).unwrap();
    let mut vm = RegoVM::new();
    vm.load_program(program);
    vm.set_execution_mode(ExecutionMode::RunToCompletion);
    vm
}

fn input(n: u64) -> regorus::Value {
    regorus::Value::from(serde_json::json!({ "n": n }))
}

/// The instructions `rule` executes on `input`, found by raising the limit
/// one at a time until the run completes.
fn instructions_needed(rule: &str, n: u64) -> usize {
    for limit in 1..100_000 {
        let mut vm = vm_for(rule);
        vm.set_max_instructions(limit);
        vm.set_input(input(n));
        match vm.execute() {
            Ok(_) => return limit,
            Err(VmError::InstructionLimitExceeded {
                limit: l, executed, ..
            }) => {
                assert_eq!(l, limit);
                assert_eq!(executed, limit, "stopped at the limit, not after it");
            }
            Err(e) => panic!("{rule}: {e}"),
        }
    }
    panic!("{rule} did not complete");
}

#[test]
fn the_instruction_limit_stops_at_exactly_the_limit() {
    // Nested function calls: the inner loops share the count.
    let small = instructions_needed("data.t.small", 0);
    assert!(small > 10, "{small}");
    let busy = instructions_needed("data.t.busy", 20);
    assert!(busy > 80, "a loop of 20 iterations: {busy}");

    // The same VM, run again: every run starts from a full budget, also
    // after a run that stopped at the limit.
    let mut vm = vm_for("data.t.busy");
    vm.set_max_instructions(busy);
    for round in 0..3 {
        vm.set_input(input(20));
        assert_eq!(
            vm.execute().unwrap(),
            regorus::Value::from(20),
            "round {round}"
        );
        vm.set_input(input(21));
        assert!(
            matches!(
                vm.execute(),
                Err(VmError::InstructionLimitExceeded { executed, .. }) if executed == busy
            ),
            "round {round}"
        );
    }
    // Raising the limit between runs takes effect at once.
    vm.set_max_instructions(busy + 1_000);
    vm.set_input(input(21));
    assert_eq!(vm.execute().unwrap(), regorus::Value::from(21));
}

#[test]
fn the_execution_timer_stops_a_long_loop_at_its_deadline() {
    let mut vm = vm_for("data.t.busy");
    vm.set_max_instructions(usize::MAX);
    vm.set_execution_timer_config(Some(ExecutionTimerConfig {
        limit: Duration::from_millis(20),
        check_interval: NonZeroU32::new(64).unwrap(),
    }));
    // A loop of a million iterations: far longer than the deadline.
    vm.set_input(input(1_000_000));
    let err = vm.execute().unwrap_err();
    assert!(matches!(err, VmError::TimeLimitExceeded { .. }), "{err}");

    // The same VM with the timer completes a short run afterwards.
    vm.set_input(input(10));
    assert_eq!(vm.execute().unwrap(), regorus::Value::from(10));
}
