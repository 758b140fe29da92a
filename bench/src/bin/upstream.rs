//! A small, fast HTTP/1.1 upstream for the load harness
//! (`bench/load/run.sh`): every request, whatever its method or path, gets
//! `200` with the same JSON body, whose `internal_id` fields (top level and
//! nested) are what the `/api/v1/users` route's `responseBodyTransform`
//! removes. Keep-alive, `TCP_NODELAY`, no logging.
//!
//! `upstream --listen 127.0.0.1:0` prints `listening on ADDR` once bound.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// The allocator: fewer instructions per allocation than the system one on
/// the decision path, which allocates and frees many small values.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The body of every answer (the shape of `policyctl up`'s demo upstream).
const BODY: &str = r#"{"users":[{"id":1,"name":"alice","internal_id":"u-7f3a"},{"id":2,"name":"bob","internal_id":"u-91c2"}],"internal_id":"req-5d1e"}"#;

#[derive(Parser)]
#[command(about = "HTTP/1.1 upstream answering a fixed JSON body with internal_id fields")]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

async fn answer(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            // Out of file descriptors and the like: keep serving.
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
