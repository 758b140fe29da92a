//! The gRPC service (`policy.journal.v1.Journal`) over mutual TLS, and how
//! to run it: [`start`] binds and returns a handle with the bound address,
//! [`serve`] runs until a shutdown future completes.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use policy_proto::journal::journal_server::{Journal, JournalServer};
use policy_proto::journal::{
    AppendAck, AppendRequest, DataSnapshot, GetDataRequest, PutDataRequest, QueryRequest,
    RecordEnvelope, StoredRecord, VerifyReport, VerifyRequest,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::config::{JournalConfig, StorageConfig};
use crate::data::{DataDocument, MAX_MESSAGE_BYTES};
use crate::identity::client_identity;
use crate::store::{
    AnyStore, OrderKey, PAGE_SIZE, PgStore, QueryFilter, SledStore, Store, StoreError, StoredData,
};

/// How long shutdown waits for open streams before closing them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("cannot bind `{addr}`: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("tls configuration: {0}")]
    Tls(#[source] tonic::transport::Error),
    #[error("transport: {0}")]
    Transport(#[source] tonic::transport::Error),
    #[error("server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The `Journal` gRPC service over a store.
pub struct JournalService<S> {
    store: S,
    readers: Option<Arc<HashSet<String>>>,
    data_writers: Arc<HashSet<String>>,
    tail_poll: Duration,
    shutdown: watch::Receiver<bool>,
}

impl<S: Store + Clone> JournalService<S> {
    /// A service over `store`. `readers`: identities allowed to query
    /// (`None`: any authenticated client); `data_writers`: identities
    /// allowed to replace the data document. Streams end when `shutdown`
    /// becomes true.
    pub fn new(
        store: S,
        readers: Option<Vec<String>>,
        data_writers: Vec<String>,
        tail_poll: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            store,
            readers: readers.map(|r| Arc::new(r.into_iter().collect())),
            data_writers: Arc::new(data_writers.into_iter().collect()),
            tail_poll,
            shutdown,
        }
    }

    fn authorize_reader<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let identity = client_identity(request)?;
        if let Some(readers) = &self.readers
            && !readers.contains(&identity)
        {
            tracing::warn!(identity, "read from a client not in `readers` rejected");
            return Err(Status::permission_denied(format!(
                "`{identity}` may not read the journal"
            )));
        }
        Ok(identity)
    }

    fn authorize_data_writer<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let identity = client_identity(request)?;
        if !self.data_writers.contains(&identity) {
            tracing::warn!(
                identity,
                "data write from a client not in `data_writers` rejected"
            );
            return Err(Status::permission_denied(format!(
                "`{identity}` may not write the data document"
            )));
        }
        Ok(identity)
    }
}

/// The one place store errors become gRPC statuses.
fn status_of(e: &StoreError) -> Status {
    match e {
        StoreError::WrongAgent { .. } | StoreError::InvalidAgent(_) => {
            Status::invalid_argument(e.to_string())
        }
        StoreError::VersionConflict { .. } => Status::failed_precondition(e.to_string()),
        _ => Status::unavailable(format!("journal storage error: {e}")),
    }
}

fn snapshot(data: StoredData) -> DataSnapshot {
    DataSnapshot {
        version: data.version,
        unchanged: data.json.is_none(),
        data_json: data.json.map(String::into_bytes).unwrap_or_default(),
        updated_at: data.updated_at,
        updated_by: data.updated_by,
    }
}

/// The agent id a record claims, in its envelope and in its JSON, when it is
/// not `identity`.
fn foreign_agent(identity: &str, env: &RecordEnvelope) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct AgentOnly {
        agent_id: String,
    }
    if env.agent_id != identity {
        return Some(env.agent_id.clone());
    }
    match serde_json::from_slice::<AgentOnly>(&env.record_json) {
        Ok(r) if r.agent_id != identity => Some(r.agent_id),
        // A record that does not parse is stored and flagged `hash_mismatch`.
        _ => None,
    }
}

type Stream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl<S: Store + Clone> Journal for JournalService<S> {
    type AppendStream = Stream<AppendAck>;
    type QueryStream = Stream<StoredRecord>;
    type TailStream = Stream<StoredRecord>;

    async fn append(
        &self,
        request: Request<Streaming<AppendRequest>>,
    ) -> Result<Response<Self::AppendStream>, Status> {
        let identity = client_identity(&request)?;
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let store = self.store.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = inbound.message() => m,
                    () = stopped(&mut shutdown) => {
                        let _ = tx.send(Err(Status::unavailable("journal shutting down"))).await;
                        return;
                    }
                };
                let batch = match msg {
                    Ok(Some(batch)) => batch,
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(identity, %status, "append stream ended");
                        return;
                    }
                };
                if let Some(claimed) = batch
                    .records
                    .iter()
                    .find_map(|e| foreign_agent(&identity, e))
                {
                    tracing::warn!(
                        identity,
                        claimed_agent_id = claimed,
                        ?peer,
                        "append under another agent's id rejected"
                    );
                    let _ = tx
                        .send(Err(Status::permission_denied(format!(
                            "`{identity}` may not append records of agent `{claimed}`"
                        ))))
                        .await;
                    return;
                }
                let reply = match store.append(&identity, batch.records).await {
                    Ok(out) => Ok(AppendAck {
                        agent_id: identity.clone(),
                        acked_seq: out.acked_seq,
                    }),
                    Err(e) => {
                        tracing::error!(identity, error = %e, "append failed");
                        Err(status_of(&e))
                    }
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<Self::QueryStream>, Status> {
        self.authorize_reader(&request)?;
        let filter = QueryFilter::try_from(request.get_ref())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (tx, rx) = mpsc::channel(64);
        let store = self.store.clone();
        tokio::spawn(async move {
            let _ = backlog(&store, &filter, &tx, None).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    /// The backlog as `Query` (its `limit` bounds the backlog only), then
    /// every matching record in commit order as it is committed: at once
    /// for commits through this server, within `tail_poll` for commits by
    /// other servers sharing the database. Ends when the client goes away or
    /// the server shuts down.
    async fn tail(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<Self::TailStream>, Status> {
        let identity = self.authorize_reader(&request)?;
        let filter = QueryFilter::try_from(request.get_ref())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (tx, rx) = mpsc::channel(64);
        let store = self.store.clone();
        let poll = self.tail_poll;
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut commits = store.commits();
            let mut cursor = match store.tail_cursor().await {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(status_of(&e))).await;
                    return;
                }
            };
            if backlog(&store, &filter, &tx, Some(&mut cursor))
                .await
                .is_err()
            {
                return;
            }
            let follow = QueryFilter {
                limit: None,
                ..filter
            };
            loop {
                match store.tail_next(&follow, &mut cursor).await {
                    Ok(records) => {
                        for r in records {
                            if tx.send(Ok(r)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(status_of(&e))).await;
                        return;
                    }
                }
                tokio::select! {
                    _ = tx.closed() => break,
                    () = stopped(&mut shutdown) => break,
                    _ = commits.changed() => {}
                    _ = tokio::time::sleep(poll) => {}
                }
            }
            tracing::debug!(identity, "tail ended");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn verify(
        &self,
        request: Request<VerifyRequest>,
    ) -> Result<Response<VerifyReport>, Status> {
        self.authorize_reader(&request)?;
        let agent = request.get_ref().agent_id.clone();
        let agents = self
            .store
            .verify((!agent.is_empty()).then_some(agent.as_str()))
            .await
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(VerifyReport { agents }))
    }

    /// Any authenticated client (agents poll with the version they hold).
    async fn get_data(
        &self,
        request: Request<GetDataRequest>,
    ) -> Result<Response<DataSnapshot>, Status> {
        let identity = client_identity(&request)?;
        let known = request.get_ref().known_version;
        let data = self.store.get_data(known).await.map_err(|e| {
            tracing::error!(identity, error = %e, "reading the data document failed");
            status_of(&e)
        })?;
        Ok(Response::new(snapshot(data)))
    }

    /// Only `data_writers`. The document is validated and normalized
    /// ([`DataDocument`]) and never logged.
    async fn put_data(
        &self,
        request: Request<PutDataRequest>,
    ) -> Result<Response<DataSnapshot>, Status> {
        let identity = self.authorize_data_writer(&request)?;
        let put = request.into_inner();
        let document = DataDocument::try_from_json(&put.data_json).map_err(|e| {
            // Debug only: the reason may quote parts of the document.
            tracing::debug!(identity, error = %e, "data document rejected");
            Status::invalid_argument(e.to_string())
        })?;
        let expected = (put.expected_version != 0).then_some(put.expected_version);
        let data = self
            .store
            .put_data(&document, expected, &identity)
            .await
            .map_err(|e| {
                if matches!(e, StoreError::VersionConflict { .. }) {
                    tracing::info!(identity, error = %e, "data document not written");
                } else {
                    tracing::error!(identity, error = %e, "data document not written");
                }
                status_of(&e)
            })?;
        tracing::info!(identity, version = data.version, "data document replaced");
        Ok(Response::new(snapshot(data)))
    }
}

/// Completes when `shutdown` becomes true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Streams the records matching `filter` page by page; notes them in
/// `cursor` when tailing. `Err` when the client went away or storage failed.
async fn backlog<S: Store>(
    store: &S,
    filter: &QueryFilter,
    tx: &mpsc::Sender<Result<StoredRecord, Status>>,
    mut cursor: Option<&mut crate::store::TailCursor>,
) -> Result<(), ()> {
    let mut after: Option<OrderKey> = None;
    let mut sent: u64 = 0;
    loop {
        let want = match filter.limit {
            Some(l) => (l.saturating_sub(sent) as usize).min(PAGE_SIZE),
            None => PAGE_SIZE,
        };
        if want == 0 {
            return Ok(());
        }
        let page = match store.query_page(filter, after.as_ref(), want).await {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.send(Err(status_of(&e))).await;
                return Err(());
            }
        };
        if let Some(c) = cursor.as_deref_mut() {
            c.note(&page);
        }
        for r in page.records {
            sent += 1;
            tx.send(Ok(r)).await.map_err(|_| ())?;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

/// A running journal server.
pub struct RunningJournal {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl RunningJournal {
    /// The address the server is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, ends open streams (an in-flight append finishes its
    /// commit first) and waits up to [`SHUTDOWN_GRACE`] for connections.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.shutdown.send_replace(true);
        let mut task = self.task;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(res) => res?,
            Err(_) => {
                tracing::warn!("connections still open after the grace period; closing them");
                task.abort();
                Ok(())
            }
        }
    }

    /// Waits until the server stops on its own (a transport error).
    pub async fn wait(&mut self) -> Result<(), ServeError> {
        (&mut self.task).await?
    }
}

/// Opens the configured store.
pub async fn open_store(storage: &StorageConfig) -> Result<AnyStore, StoreError> {
    Ok(match storage {
        StorageConfig::Sled { path } => AnyStore::Sled(SledStore::open(path)?),
        StorageConfig::Postgres(options) => AnyStore::Postgres(PgStore::connect(options).await?),
    })
}

/// Opens the store of `config`, binds and starts serving in a task.
pub async fn start(config: JournalConfig) -> Result<RunningJournal, ServeError> {
    let store = open_store(&config.storage).await?;
    start_with_store(config, store).await
}

/// Like [`start`], over an already opened store.
pub async fn start_with_store<S: Store + Clone>(
    config: JournalConfig,
    store: S,
) -> Result<RunningJournal, ServeError> {
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            &config.tls.cert_pem,
            &config.tls.key_pem,
        ))
        .client_ca_root(Certificate::from_pem(&config.tls.ca_pem))
        .client_auth_optional(false);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let service = JournalService::new(
        store,
        config.readers,
        config.data_writers,
        config.tail_poll,
        shutdown_rx,
    );
    let mut stop = shutdown.subscribe();
    let router = tonic::transport::Server::builder()
        .tls_config(tls)
        .map_err(ServeError::Tls)?
        // Above tonic's 4 MiB default, so that a data document over its own
        // limit is answered INVALID_ARGUMENT with the reason.
        .add_service(JournalServer::new(service).max_decoding_message_size(MAX_MESSAGE_BYTES));
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, async move { stopped(&mut stop).await })
            .await
            .map_err(ServeError::Transport)
    });
    tracing::info!(addr = %local_addr, "journal listening");
    Ok(RunningJournal {
        local_addr,
        shutdown,
        task,
    })
}

/// Runs the journal of `config` until `shutdown` completes. `on_bound` is
/// called with the bound address once listening.
pub async fn serve(
    config: JournalConfig,
    shutdown: impl Future<Output = ()>,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let mut running = start(config).await?;
    on_bound(running.local_addr());
    let ended = tokio::select! {
        res = running.wait() => Some(res),
        () = shutdown => None,
    };
    match ended {
        Some(res) => res,
        None => {
            tracing::info!("shutting down");
            running.shutdown().await
        }
    }
}
