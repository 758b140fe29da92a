//! The agent's gRPC service over a Unix socket (mode 0600).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use policy_proto::agent::health_response::ServingStatus;
use policy_proto::agent::policy_agent_server::{PolicyAgent, PolicyAgentServer};
use policy_proto::agent::policy_call_result::Outcome;
use policy_proto::agent::{
    CallStatus, DegradedStatus, EmergencyRequest, EmergencyStatus, GetAgentConfigRequest,
    GetAgentConfigResponse, HealthRequest, HealthResponse, JournalStatus, PolicyCall,
    PolicyCallResult, PolicyRequest, PolicyResponse, PrepareChainsRequest, PrepareChainsResponse,
    TierDecisions,
};
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status, Streaming};

use crate::agent::Agent;
use crate::degraded::{EmergencyChange, EmergencyError};
use crate::error::SetupError;
use crate::traces::ChainTrace;

/// Answers of one `ExecutePoliciesStream` that may wait for the stream.
const STREAM_ANSWERS: usize = 1024;

/// The answers of an `ExecutePoliciesStream`.
pub type CallResults = Pin<Box<dyn Stream<Item = Result<PolicyCallResult, Status>> + Send>>;

/// The tonic service backed by an [`Agent`].
#[derive(Clone)]
pub struct AgentService {
    agent: Arc<Agent>,
    permits: Arc<Semaphore>,
}

impl AgentService {
    /// A service for `agent`, admitting `max_concurrent_requests` at once.
    pub fn new(agent: Arc<Agent>) -> Self {
        let permits = Arc::new(Semaphore::new(agent.config().max_concurrent_requests));
        Self { agent, permits }
    }

    /// One chain execution: the answer of `ExecutePolicies`, and of each
    /// call of `ExecutePoliciesStream`.
    pub async fn run(&self, req: PolicyRequest) -> Result<PolicyResponse, Status> {
        let _permit = self
            .permits
            .try_acquire()
            .map_err(|_| Status::resource_exhausted("agent is at max_concurrent_requests"))?;
        let tracer = crate::traces::agent_tracer();
        let trace = tracer.map(|t| ChainTrace::start(t, &req, &self.agent.config().name));
        let mut exec = self.agent.execute(&req);
        if let (true, Some(seq)) = (exec.sync_required, exec.record_seq) {
            // `audit: strict`: answer once the record is on disk; the wait is
            // for a group commit, off the async workers.
            let agent = self.agent.clone();
            let synced = tokio::task::spawn_blocking(move || agent.wait_synced(seq))
                .await
                .map_err(|e| Status::internal(format!("waiting for the record: {e}")))?;
            if let Err(e) = synced {
                self.agent.fail_closed(&mut exec, &req, &e);
            }
        }
        tracing::debug!(
            request_id = %req.request_id,
            route = %req.route,
            status = exec.response.status.as_ref().map(|s| s.code).unwrap_or_default(),
            micros = exec.duration.as_micros() as u64,
            "chain evaluated"
        );
        if let (Some(tracer), Some(trace)) = (tracer, trace) {
            let masked = self
                .agent
                .journal()
                .map(|j| j.settings.records.masked_headers.as_slice())
                .unwrap_or_default();
            trace.end(tracer, &req, &exec, &self.agent.config().name, masked);
        }
        Ok(exec.response)
    }
}

/// The answers of an `ExecutePoliciesStream` whose calls are run by `run`
/// (what the unary call answers). Each call runs in a task of its own, so
/// the calls of one stream run in parallel, as unary calls do (on a runtime
/// of one worker, a call that does not wait is run in place); a call
/// without a request is INVALID_ARGUMENT. A malformed call ends the stream
/// with its error; the calls under way are still answered.
pub fn serve_calls<F, Fut>(mut calls: Streaming<PolicyCall>, run: F) -> CallResults
where
    F: Fn(PolicyRequest) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<PolicyResponse, Status>> + Send + 'static,
{
    let (answers, queue) = tokio::sync::mpsc::channel(STREAM_ANSWERS);
    // On a single worker a task per call buys no parallelism, only a turn
    // of the run queue before the call starts: a call that completes
    // without waiting (all but `audit: strict` ones) is answered here.
    let inline = tokio::runtime::Handle::current().metrics().num_workers() == 1;
    tokio::spawn(async move {
        loop {
            match calls.message().await {
                Ok(Some(call)) => {
                    let Some(request) = call.request else {
                        let status = Status::invalid_argument("a call without a request");
                        if answers
                            .send(Ok(call_result(call.id, Err(status))))
                            .await
                            .is_err()
                        {
                            break;
                        }
                        continue;
                    };
                    let mut running = Box::pin(run(request));
                    if inline {
                        let polled = running
                            .as_mut()
                            .poll(&mut Context::from_waker(Waker::noop()));
                        if let Poll::Ready(result) = polled {
                            if answers
                                .send(Ok(call_result(call.id, result)))
                                .await
                                .is_err()
                            {
                                break;
                            }
                            continue;
                        }
                    }
                    // (A future polled once may be polled again with another
                    // waker: it registers the one it is polled with.)
                    let answers = answers.clone();
                    tokio::spawn(async move {
                        let result = running.await;
                        let _ = answers.send(Ok(call_result(call.id, result))).await;
                    });
                }
                Ok(None) => break,
                Err(status) => {
                    let _ = answers.send(Err(status)).await;
                    break;
                }
            }
        }
    });
    Box::pin(ReceiverStream::new(queue))
}

/// A stream call's answer: the response, or the status a unary call would
/// have ended with.
fn call_result(id: u64, result: Result<PolicyResponse, Status>) -> PolicyCallResult {
    PolicyCallResult {
        id,
        outcome: Some(match result {
            Ok(r) => Outcome::Response(r),
            Err(s) => Outcome::Error(CallStatus {
                code: s.code() as i32,
                message: s.message().to_string(),
            }),
        }),
    }
}

#[tonic::async_trait]
impl PolicyAgent for AgentService {
    async fn get_agent_config(
        &self,
        _: Request<GetAgentConfigRequest>,
    ) -> Result<Response<GetAgentConfigResponse>, Status> {
        Ok(Response::new(self.agent.agent_config()))
    }

    async fn execute_policies(
        &self,
        request: Request<PolicyRequest>,
    ) -> Result<Response<PolicyResponse>, Status> {
        self.run(request.into_inner()).await.map(Response::new)
    }

    type ExecutePoliciesStreamStream = CallResults;

    async fn execute_policies_stream(
        &self,
        request: Request<Streaming<PolicyCall>>,
    ) -> Result<Response<CallResults>, Status> {
        let service = self.clone();
        Ok(Response::new(serve_calls(
            request.into_inner(),
            move |req| {
                let service = service.clone();
                async move { service.run(req).await }
            },
        )))
    }

    async fn prepare_chains(
        &self,
        request: Request<PrepareChainsRequest>,
    ) -> Result<Response<PrepareChainsResponse>, Status> {
        let agent = self.agent.clone();
        let chains = request.into_inner().chains;
        // Compiling is CPU work of milliseconds per chain: off the async workers.
        let answer = tokio::task::spawn_blocking(move || {
            let mut out = PrepareChainsResponse::default();
            for c in &chains {
                match agent.prepare(c.phase, &c.policies) {
                    Ok(()) => out.prepared += 1,
                    Err(e) => out.errors.push(e.to_string()),
                }
            }
            out
        })
        .await
        .map_err(|e| Status::internal(format!("preparing chains: {e}")))?;
        Ok(Response::new(answer))
    }

    async fn set_emergency(
        &self,
        request: Request<EmergencyRequest>,
    ) -> Result<Response<EmergencyStatus>, Status> {
        let req = request.into_inner();
        let agent = self.agent.clone();
        let result = tokio::task::spawn_blocking(move || {
            agent.set_emergency(&EmergencyChange {
                enable: req.enable,
                reason: &req.reason,
                ttl: std::time::Duration::from_secs(req.ttl_seconds),
                operator: &req.operator,
                token: &req.token,
            })
        })
        .await
        .map_err(|e| Status::internal(format!("emergency change: {e}")))?;
        match result {
            Ok(e) => Ok(Response::new(emergency_status(e.as_ref()))),
            Err(e @ EmergencyError::BadToken) => Err(Status::unauthenticated(e.to_string())),
            Err(e @ EmergencyError::NotConfigured) => {
                Err(Status::failed_precondition(e.to_string()))
            }
            Err(e @ EmergencyError::Invalid(_)) => Err(Status::invalid_argument(e.to_string())),
            Err(e @ EmergencyError::NotRecorded(_)) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn health(&self, _: Request<HealthRequest>) -> Result<Response<HealthResponse>, Status> {
        let journal = self.agent.journal().map(|j| {
            let s = j.stats();
            JournalStatus {
                server_configured: j.settings.server.is_some(),
                connected: j.connected().unwrap_or(false),
                last_seq: s.last_seq,
                acked_seq: s.acked_seq,
                synced_seq: s.synced_seq,
                pending_records: s.pending_records,
                pending_bytes: s.pending_bytes,
                dropped_total: s.dropped_total,
                denied_full_total: s.denied_full_total,
                degraded: j.degraded().map(|d| degraded_status(&d.status())),
            }
        });
        Ok(Response::new(HealthResponse {
            status: ServingStatus::Serving as i32,
            policy_revision: self.agent.policies().revision().to_string(),
            journal,
            metrics: self
                .agent
                .config()
                .metrics_enabled
                .then(|| self.agent.stats().metrics.snapshot()),
        }))
    }
}

fn emergency_status(e: Option<&crate::degraded::Emergency>) -> EmergencyStatus {
    match e {
        Some(e) => EmergencyStatus {
            active: true,
            reason: e.reason.clone(),
            operator: e.operator.clone(),
            until: e
                .until_wall
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        },
        None => EmergencyStatus::default(),
    }
}

fn degraded_status(s: &crate::degraded::DegradedStatus) -> DegradedStatus {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    DegradedStatus {
        emergency: s.emergency.as_ref().map(|e| emergency_status(Some(e))),
        emergency_decisions: s.emergency_decisions,
        mode: if s.emergency.is_some() {
            "emergency".to_string()
        } else {
            s.mode.as_str().to_string()
        },
        in_mode_ms: ms(s.in_mode),
        transitions: s.transitions,
        snapshot_version: s.snapshot_version.unwrap_or(0),
        snapshot_age_ms: s
            .snapshot_age
            .map_or(-1, |a| i64::try_from(a.as_millis()).unwrap_or(i64::MAX)),
        decisions: s
            .decisions
            .iter()
            .map(|((tier, outcome), count)| TierDecisions {
                tier: tier.as_str().to_string(),
                outcome: (*outcome).to_string(),
                count: *count,
            })
            .collect(),
        sync_failures: s.sync_failures,
    }
}

/// Binds `path` (removing a stale socket file first) with mode 0600.
pub fn bind_socket(path: &Path) -> Result<UnixListener, SetupError> {
    let err = |source| SetupError::Socket {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if path.exists() {
        // A live agent would answer; a socket nobody listens on is stale.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another process is listening on this socket",
            )));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// Serves `agent` on `listener` until `shutdown` completes.
pub async fn serve(
    agent: Arc<Agent>,
    listener: UnixListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(PolicyAgentServer::new(AgentService::new(agent)))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}
