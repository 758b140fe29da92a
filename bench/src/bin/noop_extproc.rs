//! A no-op Envoy ext_proc v3 server: the ceiling any ext_proc engine can
//! reach through the same Envoy (DESIGN §10). Every message is answered at
//! once with CONTINUE and the response type that matches it
//! (`request_headers` → `request_headers`, `response_body` →
//! `response_body`, trailers → trailers, ...); nothing is parsed, logged or
//! changed. Messages in observability mode get no answer (Envoy ignores it).
//!
//! `noop_extproc --listen 127.0.0.1:0` prints `listening on ADDR` once
//! bound. Served like policy-kernel's ext_proc listener: tonic over HTTP/2,
//! `TCP_NODELAY`, the same 8 MiB message limit.
//!
//! Used by `bench/load/run.sh`.

use std::net::SocketAddr;
use std::pin::Pin;

use clap::Parser;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::{
    ExternalProcessor, ExternalProcessorServer,
};
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Message;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response as Answer;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyResponse, CommonResponse, HeadersResponse, ProcessingRequest, ProcessingResponse,
    TrailersResponse, common_response::ResponseStatus,
};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

/// The allocator: fewer instructions per allocation than the system one on
/// the decision path, which allocates and frees many small values.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Largest ext_proc message accepted, as in policy-kernel.
const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

#[derive(Parser)]
#[command(about = "No-op Envoy ext_proc v3 server: answers every message CONTINUE")]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

fn continue_response() -> Option<CommonResponse> {
    Some(CommonResponse {
        status: ResponseStatus::Continue as i32,
        ..Default::default()
    })
}

/// The CONTINUE answer of the type that matches `msg`; `None` when Envoy
/// expects no answer.
fn answer(msg: ProcessingRequest) -> Option<ProcessingResponse> {
    if msg.observability_mode {
        return None;
    }
    let headers = || HeadersResponse {
        response: continue_response(),
    };
    let body = || BodyResponse {
        response: continue_response(),
    };
    let response = match msg.request? {
        Message::RequestHeaders(_) => Answer::RequestHeaders(headers()),
        Message::ResponseHeaders(_) => Answer::ResponseHeaders(headers()),
        Message::RequestBody(_) => Answer::RequestBody(body()),
        Message::ResponseBody(_) => Answer::ResponseBody(body()),
        Message::RequestTrailers(_) => Answer::RequestTrailers(TrailersResponse::default()),
        Message::ResponseTrailers(_) => Answer::ResponseTrailers(TrailersResponse::default()),
    };
    Some(ProcessingResponse {
        response: Some(response),
        ..Default::default()
    })
}

struct Noop;

type AnswerStream = Pin<Box<dyn Stream<Item = Result<ProcessingResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalProcessor for Noop {
    type ProcessStream = AnswerStream;

    async fn process(
        &self,
        request: Request<Streaming<ProcessingRequest>>,
    ) -> Result<Response<Self::ProcessStream>, Status> {
        // One answer per message, in order, until Envoy ends the stream
        // (or it breaks: then the answers end too).
        let answers = request
            .into_inner()
            .map_while(Result::ok)
            .filter_map(answer)
            .map(Ok);
        Ok(Response::new(Box::pin(answers)))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let service = ExternalProcessorServer::new(Noop)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .max_concurrent_streams(1000)
        .add_service(service)
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await?;
    Ok(())
}
