//! The client task: connect, stream, reconnect.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use policy_proto::journal::journal_client::JournalClient as GrpcClient;
use policy_proto::journal::{AppendAck, AppendRequest};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{ClientError, Connectivity, Counters};
use crate::config::ClientConfig;
use crate::outbox::LocalLog;

/// How soon to look again when records are logged but not yet fsynced.
const SYNC_POLL: Duration = Duration::from_millis(5);

pub(super) struct Ctx {
    pub cfg: ClientConfig,
    pub log: Arc<dyn LocalLog>,
    pub wake: Arc<Notify>,
    pub counters: Arc<Counters>,
    pub state: watch::Sender<Connectivity>,
    pub shutdown: watch::Receiver<bool>,
}

/// How a session ended without error.
enum Ended {
    Shutdown,
}

/// A failed session and whether it made progress (which resets the backoff).
struct Failed {
    error: ClientError,
    progressed: bool,
}

impl From<ClientError> for Failed {
    fn from(error: ClientError) -> Self {
        Self {
            error,
            progressed: false,
        }
    }
}

pub(super) async fn run(mut ctx: Ctx) {
    let mut attempt = 0u32;
    let mut last_ack = None;
    loop {
        if *ctx.shutdown.borrow() {
            break;
        }
        match session(&mut ctx, &mut last_ack).await {
            Ok(Ended::Shutdown) => break,
            Err(failed) => {
                let error = error_chain(&failed.error);
                tracing::warn!(%error, "journal stream down");
                *ctx.counters.last_error.lock() = Some(error);
                set_partitioned(&ctx.state, last_ack);
                if failed.progressed {
                    attempt = 0;
                }
                if *ctx.shutdown.borrow() {
                    break;
                }
                let delay = backoff(&ctx.cfg, attempt);
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    () = sleep(delay) => {}
                    _ = ctx.shutdown.changed() => break,
                }
                Counters::add(&ctx.counters.reconnects, 1);
            }
        }
    }
    set_partitioned(&ctx.state, last_ack);
}

/// `error: source: source ...` (tonic's transport errors say little on
/// their own).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

fn set_partitioned(state: &watch::Sender<Connectivity>, last_ack: Option<Instant>) {
    state.send_if_modified(|s| match s {
        Connectivity::Partitioned {
            last_ack: known, ..
        } if *known == last_ack => false,
        Connectivity::Partitioned {
            last_ack: known, ..
        } => {
            *known = last_ack;
            true
        }
        Connectivity::Connected { .. } => {
            *s = Connectivity::Partitioned {
                since: Instant::now(),
                last_ack,
            };
            true
        }
    });
}

/// Equal jitter: a random delay between half and all of the exponential one.
pub(super) fn backoff(cfg: &ClientConfig, attempt: u32) -> Duration {
    let exp = cfg
        .backoff_initial
        .saturating_mul(2u32.saturating_pow(attempt.min(30)))
        .min(cfg.backoff_max);
    let half = exp / 2;
    half + half.mul_f64(fastrand::f64())
}

/// A channel to the journal at `cfg.endpoint` over mutual TLS with the
/// certificate files of `cfg` (also what `policyctl journal` and the tests use).
pub async fn connect(cfg: &ClientConfig) -> Result<Channel, ClientError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ClientError::ReadPem {
            path: path.to_owned(),
            source,
        })
    };
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&cfg.ca_cert)?))
        .identity(Identity::from_pem(read(&cfg.cert)?, read(&cfg.key)?));
    if let Some(name) = &cfg.server_name {
        tls = tls.domain_name(name.clone());
    }
    let endpoint = Endpoint::from_shared(cfg.endpoint.clone())
        .map_err(|_| ClientError::Endpoint {
            endpoint: cfg.endpoint.clone(),
        })?
        .tls_config(tls)
        .map_err(|source| ClientError::Tls { source })?
        .connect_timeout(cfg.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(cfg.keepalive_interval)
        .keep_alive_timeout(cfg.keepalive_interval)
        .keep_alive_while_idle(true);
    match timeout(cfg.connect_timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(source)) => Err(ClientError::Connect {
            endpoint: cfg.endpoint.clone(),
            source,
        }),
        Err(_) => Err(ClientError::ConnectTimeout {
            endpoint: cfg.endpoint.clone(),
            timeout: cfg.connect_timeout,
        }),
    }
}

/// Batches sent on this stream and not yet acknowledged.
struct Outbound {
    tx: mpsc::Sender<AppendRequest>,
    /// Last seq of each batch in flight and when it was sent.
    in_flight: VecDeque<(u64, Instant)>,
    /// Highest seq sent (or known to be in the journal).
    sent: u64,
}

impl Outbound {
    /// Sends synced records after `sent` while fewer than `max_in_flight`
    /// batches are unacknowledged.
    fn fill(&mut self, ctx: &Ctx) -> Result<(), ClientError> {
        while self.in_flight.len() < ctx.cfg.max_in_flight {
            let synced = ctx.log.stats().synced_seq;
            if self.sent >= synced {
                return Ok(());
            }
            let mut records = ctx.log.read_after(self.sent, ctx.cfg.batch_max)?;
            records.retain(|r| r.seq <= synced);
            let Some(last) = records.last().map(|r| r.seq) else {
                return Ok(());
            };
            let n = records.len() as u64;
            // INVARIANT: the channel holds `max_in_flight` requests and at
            // most that many batches are unacknowledged, so it has room.
            if self.tx.try_send(AppendRequest { records }).is_err() {
                return Ok(());
            }
            self.in_flight.push_back((last, Instant::now()));
            self.sent = last;
            Counters::add(&ctx.counters.batches_sent, 1);
            Counters::add(&ctx.counters.records_sent, n);
        }
        Ok(())
    }
}

async fn session(ctx: &mut Ctx, last_ack: &mut Option<Instant>) -> Result<Ended, Failed> {
    let channel = tokio::select! {
        c = connect(&ctx.cfg) => c?,
        _ = ctx.shutdown.changed() => return Ok(Ended::Shutdown),
    };
    let (tx, rx) = mpsc::channel(ctx.cfg.max_in_flight);
    let mut out = Outbound {
        tx,
        in_flight: VecDeque::new(),
        sent: ctx.log.stats().acked_seq,
    };
    // Queue the first batches before opening the stream, in case the
    // journal waits for a first message before answering.
    out.fill(ctx)?;
    let mut grpc = GrpcClient::new(channel);
    let opened = tokio::select! {
        r = timeout(ctx.cfg.connect_timeout, grpc.append(ReceiverStream::new(rx))) => r,
        _ = ctx.shutdown.changed() => return Ok(Ended::Shutdown),
    };
    let mut acks = match opened {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => {
            return Err(ClientError::Stream {
                status: Box::new(status),
            }
            .into());
        }
        Err(_) => {
            return Err(ClientError::ConnectTimeout {
                endpoint: ctx.cfg.endpoint.clone(),
                timeout: ctx.cfg.connect_timeout,
            }
            .into());
        }
    };
    Counters::add(&ctx.counters.connects, 1);
    ctx.state.send_replace(Connectivity::Connected {
        since: Instant::now(),
    });
    tracing::info!(endpoint = %ctx.cfg.endpoint, from_seq = out.sent, "journal stream open");

    let mut progressed = false;
    let fail = |error: ClientError, progressed: bool| Failed { error, progressed };
    let mut last_progress = Instant::now();
    let mut grace: Option<Instant> = if *ctx.shutdown.borrow() {
        Some(Instant::now() + ctx.cfg.shutdown_grace)
    } else {
        None
    };
    loop {
        out.fill(ctx).map_err(|e| fail(e, progressed))?;
        let stats = ctx.log.stats();
        if grace.is_some() && out.in_flight.is_empty() && stats.acked_seq >= stats.last_seq {
            return Ok(Ended::Shutdown);
        }
        let poll = if out.in_flight.len() < ctx.cfg.max_in_flight && stats.last_seq > out.sent {
            SYNC_POLL.min(ctx.cfg.poll_interval)
        } else {
            ctx.cfg.poll_interval
        };
        let ack_deadline = out
            .in_flight
            .front()
            .map(|(_, sent_at)| (*sent_at).max(last_progress) + ctx.cfg.ack_timeout);
        tokio::select! {
            biased;
            msg = acks.message() => match msg {
                Ok(Some(ack)) => {
                    on_ack(ctx, &mut out, &ack).map_err(|e| fail(e, progressed))?;
                    progressed = true;
                    last_progress = Instant::now();
                    *last_ack = Some(last_progress);
                }
                Ok(None) => return Err(fail(ClientError::Closed, progressed)),
                Err(status) => {
                    return Err(fail(ClientError::Stream { status: Box::new(status) }, progressed));
                }
            },
            _ = ctx.shutdown.changed(), if grace.is_none() => {
                grace = Some(Instant::now() + ctx.cfg.shutdown_grace);
            }
            () = sleep_until(grace.unwrap_or_else(Instant::now)), if grace.is_some() => {
                return Ok(Ended::Shutdown);
            }
            () = sleep_until(ack_deadline.unwrap_or_else(Instant::now)), if ack_deadline.is_some() => {
                let error = ClientError::AckTimeout {
                    timeout: ctx.cfg.ack_timeout,
                    in_flight: out.in_flight.len(),
                };
                return Err(fail(error, progressed));
            }
            () = ctx.wake.notified() => {}
            () = sleep(poll) => {}
        }
    }
}

fn on_ack(ctx: &Ctx, out: &mut Outbound, ack: &AppendAck) -> Result<(), ClientError> {
    let before = ctx.log.stats().acked_seq;
    if ack.acked_seq > before {
        ctx.log.ack(ack.acked_seq)?;
        let after = ctx.log.stats().acked_seq;
        Counters::add(&ctx.counters.records_acked, after.saturating_sub(before));
    }
    while out
        .in_flight
        .front()
        .is_some_and(|(last, _)| *last <= ack.acked_seq)
    {
        out.in_flight.pop_front();
    }
    // The journal may already hold records this stream has not resent.
    out.sent = out.sent.max(ack.acked_seq.min(ctx.log.stats().last_seq));
    Ok(())
}
