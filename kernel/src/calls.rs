//! `ExecutePolicies` calls multiplexed over one long-lived
//! `ExecutePoliciesStream` per agent. A unary call costs an HTTP/2 stream
//! (request and response headers, trailers, a task on each side); over the
//! call stream each call is one message each way, tagged with an id.
//!
//! The stream is opened on first use and reopened after it ends (the agent
//! restarted, the connection broke). When it ends, a waiting call that was
//! never handed to the connection fails `UNAVAILABLE`, the error of an
//! unreachable agent, which the caller may retry; one that was handed over
//! fails `UNKNOWN` marked [`LOST_CALL`]: the agent is just as unreachable
//! (`fail_open` applies), but it may have run the call (rate-limit tokens
//! taken, a decision recorded), so it is not retried. An agent without the
//! call stream (`UNIMPLEMENTED`) is called with unary `ExecutePolicies`
//! from then on; a unary call whose connection breaks (tonic's transport
//! error, `UNKNOWN`) is lost in the same way.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use policy_proto::agent::policy_agent_client::PolicyAgentClient;
use policy_proto::agent::policy_call_result::Outcome;
use policy_proto::agent::{PolicyCall, PolicyCallResult, PolicyRequest, PolicyResponse};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

/// Metadata key marking the error of a call that the connection lost after
/// handing it over (see the module documentation).
pub const LOST_CALL: &str = "policy-engine-lost-call";

/// The error of a call lost after it was handed over.
fn lost(message: String) -> Status {
    let mut status = Status::unknown(message);
    status
        .metadata_mut()
        .insert(LOST_CALL, tonic::metadata::MetadataValue::from_static("1"));
    status
}

/// Whether `status` is the connection's failure (tonic's transport error
/// among its sources) rather than an answer of the agent.
fn broken_connection(status: &Status) -> bool {
    std::iter::successors(std::error::Error::source(status), |e| e.source())
        .any(|e| e.is::<tonic::transport::Error>())
}

/// Calls queued for the stream before a caller waits to send.
const QUEUED_CALLS: usize = 1024;

type Answer = Result<PolicyResponse, Status>;

/// The call stream of one agent (see the module documentation).
pub struct CallStream {
    client: PolicyAgentClient<Channel>,
    /// The open stream; `None` before the first call.
    link: ArcSwapOption<Link>,
    /// Held while a stream is opened, so concurrent callers open one.
    opening: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    /// The agent has no call stream: unary calls only.
    unary: AtomicBool,
}

/// One open stream: where calls go, and who waits for which answer.
struct Link {
    calls: mpsc::Sender<PolicyCall>,
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    /// The agent's side of the stream ended: no answer will come.
    ended: bool,
    by_id: HashMap<u64, Waiter>,
}

struct Waiter {
    answer: oneshot::Sender<Answer>,
    /// The call was handed to the connection (it may have reached the agent).
    sent: bool,
}

impl Link {
    fn ended(&self) -> bool {
        self.waiting.lock().ended
    }
}

/// Forgets a call's waiter when the call ends early (its timeout, or the
/// call could not be queued); once answered, the router already removed it.
struct Registered<'a> {
    link: &'a Link,
    id: u64,
    answered: bool,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.link.waiting.lock().by_id.remove(&self.id);
        }
    }
}

fn stream_ended(detail: &str) -> Status {
    Status::unavailable(format!("the agent's call stream ended: {detail}"))
}

impl CallStream {
    /// Calls over `client`'s channel; nothing is opened before the first call.
    pub fn new(client: PolicyAgentClient<Channel>) -> Self {
        Self {
            client,
            link: ArcSwapOption::empty(),
            opening: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(0),
            unary: AtomicBool::new(false),
        }
    }

    /// One chain execution: the agent's answer, or the status of the call.
    pub async fn call(&self, req: PolicyRequest) -> Answer {
        // The unary call and the opening of the stream are boxed: they are
        // rare, and inline their futures would make every call's future
        // (and every ext_proc message's) several times larger.
        if self.unary.load(Ordering::Relaxed) {
            return Box::pin(self.unary_call(req)).await;
        }
        let open = match self.link.load_full().filter(|l| !l.ended()) {
            Some(link) => Some(link),
            None => Box::pin(self.open()).await?,
        };
        let Some(link) = open else {
            return Box::pin(self.unary_call(req)).await;
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = link.waiting.lock();
            if waiting.ended {
                return Err(stream_ended("before the call was sent"));
            }
            waiting.by_id.insert(
                id,
                Waiter {
                    answer: tx,
                    sent: false,
                },
            );
        }
        let mut registered = Registered {
            link: &link,
            id,
            answered: false,
        };
        let call = PolicyCall {
            id,
            request: Some(req),
        };
        let queued = match link.calls.try_send(call) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(call)) => {
                Box::pin(link.calls.send(call)).await.is_ok()
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        };
        if !queued {
            return Err(stream_ended("before the call was sent"));
        }
        // (A waiter is only dropped unanswered if the routing task is gone:
        // the call may have run, so it is not one to retry.)
        let answer = rx.await.unwrap_or_else(|_| {
            Err(lost(
                "the agent's call stream lost the call before it was answered".into(),
            ))
        });
        registered.answered = true;
        answer
    }

    async fn unary_call(&self, req: PolicyRequest) -> Answer {
        self.client
            .clone()
            .execute_policies(req)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| {
                if status.code() == Code::Unknown && broken_connection(&status) {
                    lost(format!(
                        "the agent's connection broke during the call: {}",
                        status.message()
                    ))
                } else {
                    status
                }
            })
    }

    /// Opens the stream when there is none (or it ended); `None` when the
    /// agent has no call stream.
    async fn open(&self) -> Result<Option<Arc<Link>>, Status> {
        let _opening = self.opening.lock().await;
        // Another caller may have opened it meanwhile.
        if let Some(link) = self.link.load_full().filter(|l| !l.ended()) {
            return Ok(Some(link));
        }
        let (calls, queue) = mpsc::channel(QUEUED_CALLS);
        let link = Arc::new(Link {
            calls,
            waiting: Mutex::new(Waiting::default()),
        });
        // Each call is marked as sent when the connection takes it.
        let taken = Arc::downgrade(&link);
        let outbound = ReceiverStream::new(queue).map(move |call: PolicyCall| {
            if let Some(link) = taken.upgrade()
                && let Some(w) = link.waiting.lock().by_id.get_mut(&call.id)
            {
                w.sent = true;
            }
            call
        });
        let answers = match self.client.clone().execute_policies_stream(outbound).await {
            Ok(answers) => answers.into_inner(),
            Err(status) if status.code() == Code::Unimplemented => {
                tracing::info!("the agent has no ExecutePoliciesStream: calling ExecutePolicies");
                self.unary.store(true, Ordering::Relaxed);
                return Ok(None);
            }
            Err(status) => return Err(open_failed(status)),
        };
        tokio::spawn(route_answers(Arc::downgrade(&link), answers));
        self.link.store(Some(link.clone()));
        Ok(Some(link))
    }
}

/// The status of a call when the call stream could not be opened: the call
/// was not sent, so an agent that cannot take it is unavailable (the caller
/// may retry, and `fail_open` applies), whatever the transport said. A
/// connection that the agent's exit cut while the stream was being opened
/// ends the request `CANCELLED`; the codes of an overloaded or slow agent
/// are kept.
fn open_failed(status: Status) -> Status {
    match status.code() {
        Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded => status,
        code => Status::unavailable(format!(
            "the agent's call stream could not be opened: {code:?}: {}",
            status.message()
        )),
    }
}

/// Hands each answer to its caller until the stream ends, then fails the
/// calls still waiting. Holds the link weakly: once no caller and no
/// `CallStream` holds it, its call queue closes, which ends the stream.
async fn route_answers(link: std::sync::Weak<Link>, mut answers: Streaming<PolicyCallResult>) {
    let detail = loop {
        match answers.message().await {
            Ok(Some(answer)) => {
                let Some(link) = link.upgrade() else {
                    return;
                };
                let waiter = link.waiting.lock().by_id.remove(&answer.id);
                if let Some(waiter) = waiter {
                    let _ = waiter.answer.send(match answer.outcome {
                        Some(Outcome::Response(r)) => Ok(r),
                        Some(Outcome::Error(e)) => Err(Status::new(Code::from(e.code), e.message)),
                        None => Err(Status::internal("the agent answered a call with nothing")),
                    });
                }
            }
            Ok(None) => break "the agent closed it".to_string(),
            Err(status) => break status.message().to_string(),
        }
    };
    let Some(link) = link.upgrade() else {
        return;
    };
    let waiting = {
        let mut w = link.waiting.lock();
        w.ended = true;
        std::mem::take(&mut w.by_id)
    };
    if !waiting.is_empty() {
        tracing::warn!(calls = waiting.len(), error = %detail, "agent call stream ended with calls waiting");
    }
    for (_, waiter) in waiting {
        let status = if waiter.sent {
            lost(format!(
                "the agent's call stream ended before the call was answered: {detail}"
            ))
        } else {
            stream_ended(&detail)
        };
        let _ = waiter.answer.send(Err(status));
    }
}
