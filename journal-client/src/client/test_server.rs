//! A minimal journal for the client tests: mTLS, an in-memory store that
//! checks each agent's chain, cumulative acks, and a kill switch that breaks
//! every open stream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use policy_proto::journal::journal_server::{Journal, JournalServer};
use policy_proto::journal::{
    AppendAck, AppendRequest, DataSnapshot, GetDataRequest, PutDataRequest, QueryRequest,
    RecordEnvelope, StoredRecord, VerifyReport, VerifyRequest,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::{GENESIS_HASH, record_hash};

/// What the journal holds, shared across server restarts.
#[derive(Default)]
pub struct Store {
    pub records: Vec<RecordEnvelope>,
    /// Records received again (same seq, same hash).
    pub duplicates: u64,
    /// Anything that is not a duplicate and does not continue the chain.
    pub problems: Vec<String>,
    /// Ack only every n-th batch (cumulative acks make this legal); 0 or 1
    /// acks every batch.
    pub ack_every: u64,
    batches: u64,
}

impl Store {
    fn apply(&mut self, records: Vec<RecordEnvelope>) -> Option<u64> {
        for r in records {
            let last = self.records.last();
            let last_seq = last.map_or(0, |l| l.seq);
            if record_hash(&r.record_json) != r.hash {
                self.problems.push(format!("seq {}: hash mismatch", r.seq));
            } else if r.seq <= last_seq {
                let seen = &self.records[usize::try_from(r.seq - 1).unwrap()];
                if seen.hash == r.hash {
                    self.duplicates += 1;
                } else {
                    self.problems.push(format!("seq {}: conflict", r.seq));
                }
            } else if r.seq != last_seq + 1 {
                self.problems
                    .push(format!("seq {}..={} missing", last_seq + 1, r.seq - 1));
            } else if r.prev_hash != last.map_or(GENESIS_HASH, |l| l.hash.as_str()) {
                self.problems.push(format!("seq {}: chain break", r.seq));
            } else {
                self.records.push(r);
            }
        }
        self.batches += 1;
        (self.ack_every <= 1 || self.batches.is_multiple_of(self.ack_every))
            .then(|| self.records.last().map_or(0, |l| l.seq))
    }

    pub fn seqs(&self) -> Vec<u64> {
        self.records.iter().map(|r| r.seq).collect()
    }
}

struct TestJournal {
    store: Arc<Mutex<Store>>,
    kill: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl Journal for TestJournal {
    type AppendStream = ReceiverStream<Result<AppendAck, Status>>;
    type QueryStream = ReceiverStream<Result<StoredRecord, Status>>;
    type TailStream = ReceiverStream<Result<StoredRecord, Status>>;

    async fn append(
        &self,
        request: Request<Streaming<AppendRequest>>,
    ) -> Result<Response<Self::AppendStream>, Status> {
        if request.peer_certs().is_none_or(|c| c.is_empty()) {
            return Err(Status::unauthenticated("no client certificate"));
        }
        let mut inbound = request.into_inner();
        let store = Arc::clone(&self.store);
        let mut kill = self.kill.clone();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = kill.changed() => {
                        let _ = tx.send(Err(Status::unavailable("journal going away"))).await;
                        return;
                    }
                    msg = inbound.message() => match msg {
                        Ok(Some(req)) => {
                            let agent_id = req.records.first().map(|r| r.agent_id.clone()).unwrap_or_default();
                            let acked = store.lock().apply(req.records);
                            if let Some(acked_seq) = acked
                                && tx.send(Ok(AppendAck { agent_id, acked_seq })).await.is_err()
                            {
                                return;
                            }
                        }
                        Ok(None) | Err(_) => return,
                    },
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn query(&self, _: Request<QueryRequest>) -> Result<Response<Self::QueryStream>, Status> {
        Err(Status::unimplemented("test journal"))
    }

    async fn tail(&self, _: Request<QueryRequest>) -> Result<Response<Self::TailStream>, Status> {
        Err(Status::unimplemented("test journal"))
    }

    async fn verify(&self, _: Request<VerifyRequest>) -> Result<Response<VerifyReport>, Status> {
        Err(Status::unimplemented("test journal"))
    }

    async fn get_data(&self, _: Request<GetDataRequest>) -> Result<Response<DataSnapshot>, Status> {
        Err(Status::unimplemented("test journal"))
    }

    async fn put_data(&self, _: Request<PutDataRequest>) -> Result<Response<DataSnapshot>, Status> {
        Err(Status::unimplemented("test journal"))
    }
}

/// A running test journal.
pub struct Running {
    pub addr: SocketAddr,
    kill: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Serves `store` with the certificates of `certs` (from `write_dev_set`) on
/// `addr` (`127.0.0.1:0` for any port).
pub async fn start(certs: &Path, store: Arc<Mutex<Store>>, addr: SocketAddr) -> Running {
    let read = |name: &str| std::fs::read(certs.join(name)).unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            read("server.pem"),
            read("server-key.pem"),
        ))
        .client_ca_root(Certificate::from_pem(read("ca.pem")));
    // The port may still be held by the previous server's socket for a moment.
    let mut tries = 0;
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) if tries < 100 => {
                tries += 1;
                tracing::debug!(error = %e, "rebinding test journal");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot bind {addr}: {e}"),
        }
    };
    let addr = listener.local_addr().unwrap();
    let (kill, kill_rx) = watch::channel(false);
    let svc = TestJournal {
        store,
        kill: kill_rx.clone(),
    };
    let mut shutdown = kill_rx;
    let server = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(JournalServer::new(svc))
        .serve_with_incoming_shutdown(incoming(listener), async move {
            let _ = shutdown.changed().await;
        });
    let task = tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "test journal stopped");
        }
    });
    Running { addr, kill, task }
}

/// Accepted connections with Nagle off, as a journal should serve them
/// (acks are small; with Nagle and delayed ACKs they wait ~40 ms).
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

impl Running {
    /// Breaks every stream and stops serving.
    pub async fn stop(self) {
        self.kill.send_replace(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}
