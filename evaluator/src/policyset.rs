//! A policy snapshot: the Rego modules and data of one policy revision, and
//! the chains compiled from it.
//!
//! Each distinct chain (its fingerprint) is compiled once into a regorus
//! bytecode program; a chain the VM cannot compile falls back to the
//! interpreter, which is counted. Evaluation happens on per-worker VMs (see
//! `worker`), never on a cloned `Engine` per request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::{Engine, Value};

use crate::builtins::NativeBuiltins;
use crate::chain::{self, ChainSpec};
use crate::error::{EvalError, SetupError};
use crate::metrics::{ChainMetrics, DecisionMetrics};
use crate::registry::PolicyRegistry;

static NEXT_SET_ID: AtomicU64 = AtomicU64::new(1);

/// How a compiled chain is executed.
pub(crate) enum Exec {
    /// A bytecode program run on a per-worker VM.
    Vm(Arc<Program>),
    /// The interpreter, for a chain the VM cannot compile; the engine is
    /// cloned once per worker thread.
    Interpreter { engine: Box<Engine>, reason: String },
}

/// A chain compiled for one policy snapshot.
pub struct CompiledChain {
    /// Fingerprint of the chain's content.
    pub id: u64,
    /// The decision rule, e.g. `data.chains.c0123456789abcdef.decision`.
    pub rule: String,
    /// The generated module.
    pub source: String,
    pub(crate) exec: Exec,
    /// The chain's counters, resolved at compile time.
    pub(crate) metrics: ChainMetrics,
}

impl CompiledChain {
    /// Whether this chain runs on the bytecode VM.
    pub fn is_vm(&self) -> bool {
        matches!(self.exec, Exec::Vm(_))
    }

    /// Why the chain runs on the interpreter, if it does.
    pub fn fallback_reason(&self) -> Option<&str> {
        match &self.exec {
            Exec::Vm(_) => None,
            Exec::Interpreter { reason, .. } => Some(reason),
        }
    }
}

/// Counters of the evaluation engine, and the decision metrics of the
/// chains compiled with it.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub chains_compiled: AtomicU64,
    pub vm_fallbacks: AtomicU64,
    pub vm_evaluations: AtomicU64,
    pub interpreter_evaluations: AtomicU64,
    pub panics: AtomicU64,
    /// Spec §7.1 metrics; they outlive policy snapshots.
    pub metrics: DecisionMetrics,
}

/// Modules, data and compiled chains of one policy revision.
pub struct PolicySet {
    pub(crate) id: u64,
    pub(crate) registry: Arc<PolicyRegistry>,
    template: Engine,
    pub(crate) data: Value,
    pub(crate) builtins: NativeBuiltins,
    chains: RwLock<HashMap<u64, Arc<CompiledChain>>>,
    /// Held while a chain compiles, so concurrent first requests for the
    /// same chain compile it once.
    compiling: parking_lot::Mutex<()>,
    pub(crate) stats: Arc<EngineStats>,
    revision: String,
}

impl PolicySet {
    /// Loads the chain library and every policy of `registry` with `data`.
    pub fn try_new(
        registry: Arc<PolicyRegistry>,
        data: serde_json::Value,
        builtins: NativeBuiltins,
        revision: &str,
        stats: Arc<EngineStats>,
    ) -> Result<Self, SetupError> {
        let mut template = new_engine();
        let rego_err = |path: &str, e: anyhow::Error| SetupError::Rego {
            path: path.to_string(),
            reason: e.to_string(),
        };
        for lib in policy_rego::library() {
            template
                .add_policy(lib.path.to_string(), lib.source.to_string())
                .map_err(|e| rego_err(lib.path, e))?;
        }
        for p in registry.iter() {
            template
                .add_policy(p.path.clone(), p.source.clone())
                .map_err(|e| rego_err(&p.path, e))?;
        }
        let data = Value::from(data);
        template
            .add_data(data.clone())
            .map_err(|e| rego_err("data", e))?;
        builtins
            .register_extensions(&mut template)
            .map_err(|e| rego_err("native builtins", e))?;
        Ok(Self {
            id: NEXT_SET_ID.fetch_add(1, Ordering::Relaxed),
            registry,
            template,
            data,
            builtins,
            chains: RwLock::new(HashMap::new()),
            compiling: parking_lot::Mutex::new(()),
            stats,
            revision: revision.to_string(),
        })
    }

    /// A snapshot of arbitrary modules (`(path, source)`) and data, with no
    /// registered policies: for evaluating compiled output such as
    /// `policyctl compile`'s, through [`PolicySet::compile_entrypoint`].
    pub fn try_from_modules(
        modules: &[(String, String)],
        data: serde_json::Value,
        builtins: NativeBuiltins,
        stats: Arc<EngineStats>,
    ) -> Result<Self, SetupError> {
        let mut template = new_engine();
        for (path, source) in modules {
            template
                .add_policy(path.clone(), source.clone())
                .map_err(|e| SetupError::Rego {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
        }
        let data = Value::from(data);
        let rego_err = |path: &str, e: anyhow::Error| SetupError::Rego {
            path: path.to_string(),
            reason: e.to_string(),
        };
        template
            .add_data(data.clone())
            .map_err(|e| rego_err("data", e))?;
        builtins
            .register_extensions(&mut template)
            .map_err(|e| rego_err("native builtins", e))?;
        Ok(Self {
            id: NEXT_SET_ID.fetch_add(1, Ordering::Relaxed),
            registry: Arc::new(PolicyRegistry::default()),
            template,
            data,
            builtins,
            chains: RwLock::new(HashMap::new()),
            compiling: parking_lot::Mutex::new(()),
            stats,
            revision: String::new(),
        })
    }

    /// Compiles an existing rule (e.g. `data.routes.api.request.decision`)
    /// for the VM, or for the interpreter when `use_vm` is false.
    pub fn compile_entrypoint(
        &self,
        rule: &str,
        use_vm: bool,
    ) -> Result<Arc<CompiledChain>, EvalError> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (rule, use_vm).hash(&mut h);
        let id = h.finish() & !(1 << 63);
        let exec = self.exec_for(&self.template, rule, use_vm, rule)?;
        Ok(Arc::new(CompiledChain {
            id,
            rule: rule.to_string(),
            source: String::new(),
            exec,
            metrics: ChainMetrics::default(),
        }))
    }

    /// The registry this snapshot was built from.
    pub fn registry(&self) -> &PolicyRegistry {
        &self.registry
    }

    /// The policy revision (bundle revision or a content hash).
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// Engine counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The compiled chain cached under `key`, if any.
    pub fn cached(&self, key: u64) -> Option<Arc<CompiledChain>> {
        self.chains.read().get(&key).cloned()
    }

    /// Compiles `spec` (once per fingerprint) and caches it under `key` too.
    pub fn compile(&self, key: u64, spec: &ChainSpec) -> Result<Arc<CompiledChain>, EvalError> {
        // Content ids keep the top bit clear; raw request keys set it.
        let id = spec.fingerprint() & !(1 << 63);
        let _compiling = self.compiling.lock();
        if let Some(c) = self.cached(id) {
            self.chains.write().insert(key, c.clone());
            return Ok(c);
        }
        let compiled = Arc::new(self.compile_uncached(id, spec, true)?);
        let mut chains = self.chains.write();
        chains.insert(id, compiled.clone());
        chains.insert(key, compiled.clone());
        Ok(compiled)
    }

    /// Compiles `spec` for the interpreter only (not cached): the baseline
    /// that benchmarks and differential tests compare the VM against.
    pub fn compile_interpreted(&self, spec: &ChainSpec) -> Result<Arc<CompiledChain>, EvalError> {
        let id = spec.fingerprint() & !(1 << 63);
        self.compile_uncached(id, spec, false).map(Arc::new)
    }

    fn compile_uncached(
        &self,
        id: u64,
        spec: &ChainSpec,
        use_vm: bool,
    ) -> Result<CompiledChain, EvalError> {
        let package = format!("chains.c{id:016x}");
        let source = chain::generate(&package, spec);
        let rule = format!("data.{package}.{}", chain::DECISION_RULE);
        let mut engine = self.template.clone();
        engine
            .add_policy(format!("{package}.rego"), source.clone())
            .map_err(|e| EvalError::Compile(e.to_string()))?;
        self.stats.chains_compiled.fetch_add(1, Ordering::Relaxed);
        let exec = self.exec_for(&engine, &rule, use_vm, &package)?;
        Ok(CompiledChain {
            id,
            rule,
            source,
            exec,
            metrics: self.stats.metrics.chain(&self.registry, spec),
        })
    }
}

impl PolicySet {
    /// The bytecode program for `rule` of `engine`, or the interpreter when
    /// the VM cannot compile it (counted) or is not wanted.
    fn exec_for(
        &self,
        engine: &Engine,
        rule: &str,
        use_vm: bool,
        label: &str,
    ) -> Result<Exec, EvalError> {
        let program = if use_vm {
            compile_program(engine, rule)
        } else {
            Err("interpreter requested".to_string())
        };
        match program {
            Ok(program) => Ok(Exec::Vm(program)),
            Err(reason) => {
                if use_vm {
                    self.stats.vm_fallbacks.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(chain = %label, %reason, "chain runs on the interpreter");
                }
                // Surface interpreter compile errors now rather than per request.
                let mut probe = engine.clone();
                probe
                    .compile_with_entrypoint(&rule.into())
                    .map_err(|e| EvalError::Compile(e.to_string()))?;
                Ok(Exec::Interpreter {
                    engine: Box::new(engine.clone()),
                    reason,
                })
            }
        }
    }
}

/// A regorus engine with the limits the agent uses: generated chain modules
/// embed metadata (certificates, JWKS) that can make lines longer than
/// regorus's default 1,024 columns.
pub fn new_engine() -> Engine {
    use std::num::{NonZeroU32, NonZeroUsize};
    let mut engine = Engine::new();
    engine.set_policy_length_config(regorus::PolicyLengthConfig {
        max_col: NonZeroU32::new(1 << 20).unwrap_or(NonZeroU32::MIN),
        max_file_bytes: NonZeroUsize::new(16 << 20).unwrap_or(NonZeroUsize::MIN),
        max_lines: NonZeroUsize::new(200_000).unwrap_or(NonZeroUsize::MIN),
    });
    engine
}

/// Compiles `rule` of `engine` to a bytecode program with the native
/// builtins as host-await calls.
fn compile_program(engine: &Engine, rule: &str) -> Result<Arc<Program>, String> {
    let host: Vec<(&str, usize)> = NativeBuiltins::signatures().collect();
    let mut engine = engine.clone();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let policy = engine
            .compile_with_entrypoint(&rule.into())
            .map_err(|e| e.to_string())?;
        Compiler::compile_from_policy_with_host_await(&policy, &[rule], &host)
            .map_err(|e| e.to_string())
    }));
    match result {
        Ok(r) => r,
        Err(_) => Err("the bytecode compiler panicked".into()),
    }
}
