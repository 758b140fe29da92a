//! Per-worker evaluation state: one bytecode VM per (worker thread, chain),
//! reused for every request, with the native builtins answered through the
//! VM's host-await suspensions. Interpreter fallbacks keep one engine per
//! (worker thread, chain) the same way.

use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use regorus::rvm::vm::{ExecutionMode, HostAwaitHandler, RegoVM, VmError};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};

use crate::builtins::{self, RecordedCall};
use crate::error::EvalError;
use crate::policyset::{CompiledChain, Exec, PolicySet};

/// Instruction budget per evaluation; the deadline is the real bound.
const MAX_INSTRUCTIONS: usize = 10_000_000;

/// Which engine evaluated a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnginePath {
    Vm,
    Interpreter,
}

/// A chain's raw decision document and how it was produced.
#[derive(Debug)]
pub struct Evaluation {
    pub decision: Value,
    pub path: EnginePath,
    /// Non-deterministic builtin results, for the decision record.
    pub recorded: Vec<RecordedCall>,
}

#[derive(Default)]
struct Worker {
    set_id: u64,
    vms: HashMap<u64, RegoVM>,
    engines: HashMap<u64, Engine>,
}

thread_local! {
    static WORKER: RefCell<Worker> = RefCell::new(Worker::default());
}

/// Evaluates `chain` of `set` on `input` within `timeout`.
pub fn evaluate(
    set: &PolicySet,
    chain: &CompiledChain,
    input: Value,
    timeout: Duration,
) -> Result<Evaluation, EvalError> {
    let started = Instant::now();
    builtins::take_recorded();
    let timer = ExecutionTimerConfig {
        limit: timeout,
        check_interval: NonZeroU32::MIN.saturating_add(63),
    };
    let outcome = WORKER.with_borrow_mut(|w| {
        if w.set_id != set.id {
            // A new snapshot: the old one's VMs are no longer used.
            *w = Worker {
                set_id: set.id,
                ..Worker::default()
            };
        }
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &chain.exec {
            Exec::Vm(program) => {
                let vm = match w.vms.entry(chain.id) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        let mut vm = RegoVM::new();
                        vm.load_program(program.clone());
                        vm.set_data(set.data.clone())
                            .map_err(|e| EvalError::Engine(e.to_string()))?;
                        vm.set_execution_mode(ExecutionMode::RunToCompletion);
                        let natives = set.builtins.clone();
                        vm.set_host_await_handler(Some(HostAwaitHandler(Arc::new(
                            move |id: &Value, arg: Value| host_call(&natives, id, arg),
                        ))));
                        vm.set_max_instructions(MAX_INSTRUCTIONS);
                        e.insert(vm)
                    }
                };
                set.stats.vm_evaluations.fetch_add(1, Ordering::Relaxed);
                run_vm(vm, input, timer).map(|d| (d, EnginePath::Vm))
            }
            Exec::Interpreter { engine, .. } => {
                let engine = w
                    .engines
                    .entry(chain.id)
                    .or_insert_with(|| engine.as_ref().clone());
                set.stats
                    .interpreter_evaluations
                    .fetch_add(1, Ordering::Relaxed);
                engine.set_execution_timer_config(timer);
                engine.set_input(input);
                engine
                    .eval_rule(chain.rule.clone())
                    .map_err(|e| interpreter_error(&e, timeout))
                    .map(|d| (d, EnginePath::Interpreter))
            }
        }));
        match run {
            Ok(r) => r,
            Err(panic) => {
                // The engine's state is unknown after a panic: start afresh.
                w.vms.remove(&chain.id);
                w.engines.remove(&chain.id);
                set.stats.panics.fetch_add(1, Ordering::Relaxed);
                Err(EvalError::Panic(panic_message(&panic)))
            }
        }
    });
    let recorded = builtins::take_recorded();
    let (decision, path) = outcome?;
    if started.elapsed() > timeout {
        return Err(EvalError::Timeout {
            deadline_ms: millis(timeout),
        });
    }
    if decision == Value::Undefined {
        return Err(EvalError::Undefined);
    }
    Ok(Evaluation {
        decision,
        path,
        recorded,
    })
}

fn run_vm(vm: &mut RegoVM, input: Value, timer: ExecutionTimerConfig) -> Result<Value, EvalError> {
    vm.set_execution_timer_config(Some(timer));
    vm.set_input(input);
    vm.execute().map_err(|e| vm_error(&e, timer.limit))
}

/// Answers a `HostAwait` of the compiled chain: the identifier names the
/// native builtin, the argument is its argument array.
fn host_call(natives: &builtins::NativeBuiltins, id: &Value, arg: Value) -> Value {
    let Value::String(name) = id else {
        return Value::Undefined;
    };
    let args: Vec<Value> = match arg {
        Value::Array(a) => a.iter().cloned().collect(),
        other => vec![other],
    };
    natives.call_lenient(name, &args).0
}

fn vm_error(e: &VmError, limit: Duration) -> EvalError {
    match e {
        VmError::TimeLimitExceeded { .. } => EvalError::Timeout {
            deadline_ms: millis(limit),
        },
        other => EvalError::Engine(other.to_string()),
    }
}

fn interpreter_error(e: &anyhow::Error, limit: Duration) -> EvalError {
    if e.downcast_ref::<regorus::LimitError>().is_some()
        || e.to_string().contains("exceeded time limit")
    {
        EvalError::Timeout {
            deadline_ms: millis(limit),
        }
    } else {
        EvalError::Engine(e.to_string())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}
