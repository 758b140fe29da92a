// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.

// policy-engine patch: the VM builds its `VmError`s lazily
// (`.ok_or_else(|| VmError::…)` instead of `.ok_or(VmError::…)`). Clippy calls
// the closure unnecessary because the fields are cheap, but the eager form
// builds and drops a `VmError` (which has drop glue) on every successful
// lookup on the hot path.
#![allow(clippy::unnecessary_lazy_evaluations)]

mod arithmetic;
mod comprehension;
mod constants;
mod context;
mod dispatch;
mod errors;
mod execution;
mod execution_model;
mod functions;
mod loops;
mod machine;
mod rules;
mod state;
mod virtual_data;

pub use context::{CallRuleContext, IterationState, LoopContext};
pub use errors::{Result, VmError};
pub use execution_model::{ExecutionMode, ExecutionState, SuspendReason};
pub use machine::{HostAwaitHandler, RegoVM};
