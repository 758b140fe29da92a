//! The results table: µs per decision per case and operation, the
//! interpreter/VM ratios, and the DESIGN §10 target.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::fixture::Op;

/// DESIGN §10: at most this many µs per spec-route decision on the VM path,
/// input build included.
pub const TARGET_US: f64 = 15.0;

/// The measurements of one case, in nanoseconds per operation.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub route: String,
    pub ns: BTreeMap<Op, f64>,
}

impl Row {
    fn us(&self, op: Op) -> Option<f64> {
        self.ns.get(&op).map(|ns| ns / 1000.0)
    }
}

/// Rows in the order they were added.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub rows: Vec<Row>,
}

impl Table {
    /// A markdown table with one line per case.
    ///
    /// `interp/vm eval` is `eval_interpreter / eval_vm`; `interp/vm
    /// decision` is the whole decision with the interpreter's evaluation in
    /// place of the VM's, `(decision_vm_total - eval_vm + eval_interpreter) /
    /// decision_vm_total`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "| route |");
        for op in Op::ALL {
            let _ = write!(out, " {} µs |", op.name());
        }
        let _ = writeln!(
            out,
            " interp/vm eval | interp/vm decision | ≤ {TARGET_US} µs |"
        );
        let _ = write!(out, "|---|");
        for _ in Op::ALL {
            let _ = write!(out, "---:|");
        }
        let _ = writeln!(out, "---:|---:|:---:|");
        for row in &self.rows {
            let _ = write!(out, "| `{}` |", row.route);
            for op in Op::ALL {
                match row.us(op) {
                    Some(us) => {
                        let _ = write!(out, " {us:.2} |");
                    }
                    None => {
                        let _ = write!(out, " – |");
                    }
                }
            }
            let vm = row.us(Op::EvalVm);
            let interpreter = row.us(Op::EvalInterpreter);
            let total = row.us(Op::DecisionVmTotal);
            let eval_ratio = vm.zip(interpreter).map(|(vm, i)| i / vm);
            let decision_ratio = match (vm, interpreter, total) {
                (Some(vm), Some(i), Some(t)) => Some((t - vm + i) / t),
                _ => None,
            };
            for ratio in [eval_ratio, decision_ratio] {
                match ratio {
                    Some(r) => {
                        let _ = write!(out, " {r:.1}× |");
                    }
                    None => {
                        let _ = write!(out, " – |");
                    }
                }
            }
            let verdict = match total {
                Some(t) if t <= TARGET_US => "yes",
                Some(_) => "**no**",
                None => "–",
            };
            let _ = writeln!(out, " {verdict} |");
        }
        out
    }
}
