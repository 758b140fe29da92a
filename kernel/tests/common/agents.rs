//! Agents for the tests: the real policy agent and a scriptable fake, each
//! on a temp Unix socket.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use policy_agent::{Agent, AgentConfig};
use policy_proto::agent::health_response::ServingStatus;
use policy_proto::agent::policy_agent_server::{PolicyAgent, PolicyAgentServer};
use policy_proto::agent::{
    GetAgentConfigRequest, GetAgentConfigResponse, HealthRequest, HealthResponse, PolicyCall,
    PolicyInfo, PolicyPhase, PolicyRequest, PolicyResponse, PrepareChainsRequest,
    PrepareChainsResponse,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;

/// The demo key of `deploy/local` and the SHA-256 the agent's data holds.
pub const ALICE_KEY: &str = "demo-key-alice";
const ALICE_SHA256: &str = "f80024220afd493b4d9592af870de7afe98061992d28fdb75480c9b717783fa2";

/// A running agent; stops (gracefully) when dropped or on [`RunningAgent::stop`].
pub struct RunningAgent {
    pub socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// A fake agent on a runtime of its own (see [`FakeAgent::serve_killable`]).
pub struct KillableAgent {
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KillableAgent {
    /// Ends the agent at once: its runtime, connections and calls under way
    /// go, and the socket file with them.
    pub async fn kill(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join().unwrap())
                .await
                .unwrap();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl RunningAgent {
    /// Stops serving and removes the socket file.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The real policy agent (built-in policies, demo key data) on `socket`.
pub async fn start_agent(socket: &Path) -> RunningAgent {
    let data = serde_json::json!({
        "policy_data": {"apiKeyAuth": {"keys": {ALICE_SHA256: {"user_id": "alice"}}}}
    });
    let agent = Arc::new(
        Agent::with_data(AgentConfig::with_defaults("default-agent", socket), data).unwrap(),
    );
    let listener = policy_agent::bind_socket(socket).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        policy_agent::serve(agent, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    RunningAgent {
        socket: socket.to_path_buf(),
        stop: Some(stop),
        task: Some(task),
    }
}

type Respond = Arc<
    dyn Fn(
            PolicyRequest,
            usize,
        ) -> Pin<Box<dyn Future<Output = Result<PolicyResponse, tonic::Status>> + Send>>
        + Send
        + Sync,
>;

/// A scriptable agent: advertises `policies` for both phases and answers
/// `ExecutePolicies` (and each call of `ExecutePoliciesStream`) with
/// `respond(request, call_index)`; records requests and how they came.
#[derive(Clone)]
pub struct FakeAgent {
    policies: Arc<Mutex<(Vec<String>, String)>>,
    respond: Respond,
    pub calls: Arc<Mutex<Vec<PolicyRequest>>>,
    /// Answer `ExecutePoliciesStream` with UNIMPLEMENTED (an agent without it).
    unary_only: bool,
    /// How many calls came over the call stream.
    streamed: Arc<Mutex<usize>>,
    /// Fail every `ExecutePoliciesStream` with this code (a stream that
    /// cannot be opened).
    open_error: Option<tonic::Code>,
}

impl FakeAgent {
    pub fn new<F, Fut>(policies: &[&str], respond: F) -> Self
    where
        F: Fn(PolicyRequest, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<PolicyResponse, tonic::Status>> + Send + 'static,
    {
        Self {
            policies: Arc::new(Mutex::new((
                policies.iter().map(|p| p.to_string()).collect(),
                "r1".to_string(),
            ))),
            respond: Arc::new(move |r, i| Box::pin(respond(r, i))),
            calls: Arc::new(Mutex::new(Vec::new())),
            unary_only: false,
            streamed: Arc::new(Mutex::new(0)),
            open_error: None,
        }
    }

    /// The same agent, whose call stream fails to open with `code`.
    pub fn failing_stream_open(mut self, code: tonic::Code) -> Self {
        self.open_error = Some(code);
        self
    }

    /// The same agent without `ExecutePoliciesStream`.
    pub fn unary_only(mut self) -> Self {
        self.unary_only = true;
        self
    }

    /// How many calls came over the call stream (the others were unary).
    pub fn streamed(&self) -> usize {
        *self.streamed.lock().unwrap()
    }

    /// Advertises `policies` under policy revision `revision` from now on
    /// (as an agent restarted with another build would).
    pub fn set_policies(&self, policies: &[&str], revision: &str) {
        *self.policies.lock().unwrap() = (
            policies.iter().map(|p| p.to_string()).collect(),
            revision.to_string(),
        );
    }

    pub fn calls(&self) -> Vec<PolicyRequest> {
        self.calls.lock().unwrap().clone()
    }

    /// Serves on `socket` on a runtime of its own, which
    /// [`KillableAgent::kill`] drops with every connection and the calls
    /// they carry, as when the agent process dies.
    pub fn serve_killable(&self, socket: &Path) -> KillableAgent {
        let _ = std::fs::remove_file(socket);
        let std_listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let svc = PolicyAgentServer::new(self.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(std_listener).unwrap();
                tokio::select! {
                    r = tonic::transport::Server::builder()
                        .add_service(svc)
                        .serve_with_incoming(UnixListenerStream::new(listener)) => r.unwrap(),
                    _ = stopped => {}
                }
            });
            // Dropping `rt` here ends every connection task.
        });
        KillableAgent {
            socket: socket.to_path_buf(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Serves on `socket` until the returned agent is stopped.
    pub async fn serve(&self, socket: &Path) -> RunningAgent {
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let svc = PolicyAgentServer::new(self.clone());
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        RunningAgent {
            socket: socket.to_path_buf(),
            stop: Some(stop),
            task: Some(task),
        }
    }
}

#[tonic::async_trait]
impl PolicyAgent for FakeAgent {
    async fn get_agent_config(
        &self,
        _: tonic::Request<GetAgentConfigRequest>,
    ) -> Result<tonic::Response<GetAgentConfigResponse>, tonic::Status> {
        let (policies, revision) = self.policies.lock().unwrap().clone();
        Ok(tonic::Response::new(GetAgentConfigResponse {
            agent_name: "fake".into(),
            agent_version: "0.0.1".into(),
            supported_policies: policies
                .iter()
                .map(|p| PolicyInfo {
                    name: p.clone(),
                    supported_phases: vec![
                        PolicyPhase::Request as i32,
                        PolicyPhase::Response as i32,
                    ],
                    ..Default::default()
                })
                .collect(),
            agent_metadata: HashMap::from([("policy_revision".to_string(), revision)]),
        }))
    }

    async fn execute_policies(
        &self,
        request: tonic::Request<PolicyRequest>,
    ) -> Result<tonic::Response<PolicyResponse>, tonic::Status> {
        let req = request.into_inner();
        let index = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(req.clone());
            calls.len() - 1
        };
        (self.respond)(req, index).await.map(tonic::Response::new)
    }

    type ExecutePoliciesStreamStream = policy_agent::CallResults;

    async fn execute_policies_stream(
        &self,
        request: tonic::Request<tonic::Streaming<PolicyCall>>,
    ) -> Result<tonic::Response<Self::ExecutePoliciesStreamStream>, tonic::Status> {
        if self.unary_only {
            return Err(tonic::Status::unimplemented(
                "no ExecutePoliciesStream here",
            ));
        }
        if let Some(code) = self.open_error {
            return Err(tonic::Status::new(code, "operation was canceled"));
        }
        let this = self.clone();
        Ok(tonic::Response::new(policy_agent::serve_calls(
            request.into_inner(),
            move |req| {
                *this.streamed.lock().unwrap() += 1;
                let this = this.clone();
                async move {
                    this.execute_policies(tonic::Request::new(req))
                        .await
                        .map(tonic::Response::into_inner)
                }
            },
        )))
    }

    async fn prepare_chains(
        &self,
        request: tonic::Request<PrepareChainsRequest>,
    ) -> Result<tonic::Response<PrepareChainsResponse>, tonic::Status> {
        let prepared = u32::try_from(request.into_inner().chains.len()).unwrap_or(u32::MAX);
        Ok(tonic::Response::new(PrepareChainsResponse {
            prepared,
            errors: Vec::new(),
        }))
    }

    async fn set_emergency(
        &self,
        _: tonic::Request<policy_proto::agent::EmergencyRequest>,
    ) -> Result<tonic::Response<policy_proto::agent::EmergencyStatus>, tonic::Status> {
        Err(tonic::Status::failed_precondition(
            "a fake agent has no emergency mode",
        ))
    }

    async fn health(
        &self,
        _: tonic::Request<HealthRequest>,
    ) -> Result<tonic::Response<HealthResponse>, tonic::Status> {
        Ok(tonic::Response::new(HealthResponse {
            status: ServingStatus::Serving as i32,
            policy_revision: self.policies.lock().unwrap().1.clone(),
            journal: None,
            metrics: None,
        }))
    }
}
