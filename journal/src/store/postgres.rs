//! The PostgreSQL backend: many stateless journal servers share one
//! database.
//!
//! Table design (created on first connect, idempotently, under an advisory
//! lock so that servers starting together do not race):
//!
//! - `decision_records`: append-only, `PARTITION BY RANGE (ts)` on the record
//!   timestamp, one partition per UTC month (`decision_records_pYYYYMM`),
//!   created on demand before the append transaction. Range by time was
//!   chosen over hash by agent because retention and time-bounded queries
//!   (the common operator question, "what happened yesterday") then touch
//!   whole partitions: old months are detached or dropped, queries prune.
//!   The price is that a unique constraint must include the partition key,
//!   so `UNIQUE (agent_id, boot_epoch, seq, variant, ts)` alone would not
//!   stop a re-sent record with another timestamp; idempotency is therefore
//!   decided inside the append transaction while holding the agent's
//!   chain-head row lock, which serialises all appends of one agent across
//!   servers. `variant` is 0 for the record holding a key and 1.. for
//!   conflicting records stored beside it (flag `conflict`). `tx` (the
//!   inserting transaction id) gives `Tail` a commit order that is safe with
//!   concurrent writers.
//! - `chain_heads`: one row per agent (head seq and hash), read with
//!   `SELECT … FOR UPDATE` and updated in the same transaction as the
//!   inserts.
//! - `journal_data`: the data document, one row (`id = 1`), replaced under
//!   the same kind of row lock ([`data`]).

mod data;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use policy_proto::journal::{AgentChain, RecordEnvelope, StoredRecord};
use tokio::sync::watch;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use tokio_stream::StreamExt;

use super::filter::{ModeFilter, OrderKey, QueryFilter, now_ns};
use super::pg_pool::Pool;
use super::plan::plan_batch;
use super::{
    AppendOutcome, Page, Store, StoreError, StoredData, TailCursor, now_rfc3339, warn_flagged,
};
use crate::chain::{ChainWalk, Head};
use crate::data::DataDocument;

const SCHEMA_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS decision_records (
    id          bigserial NOT NULL,
    ts          timestamptz NOT NULL,
    ts_ns       bigint NOT NULL,
    agent_id    text COLLATE "C" NOT NULL,
    boot_epoch  bigint NOT NULL,
    seq         bigint NOT NULL,
    variant     integer NOT NULL,
    prev_hash   text NOT NULL,
    hash        text NOT NULL,
    record_json bytea NOT NULL,
    received_at text NOT NULL,
    flag        text NOT NULL,
    route       text NOT NULL,
    decision    text NOT NULL,
    mode        text NOT NULL,
    tx          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (agent_id, boot_epoch, seq, variant, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS decision_records_order
    ON decision_records (ts_ns, agent_id, seq, boot_epoch, variant);
CREATE INDEX IF NOT EXISTS decision_records_agent_seq
    ON decision_records (agent_id, seq, boot_epoch, variant);
CREATE INDEX IF NOT EXISTS decision_records_tx ON decision_records (tx);
CREATE TABLE IF NOT EXISTS chain_heads (
    agent_id   text COLLATE "C" PRIMARY KEY,
    head_seq   bigint NOT NULL,
    head_hash  text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS journal_data (
    id         smallint PRIMARY KEY CHECK (id = 1),
    version    bigint NOT NULL CHECK (version >= 0),
    body       json NOT NULL,
    updated_at text NOT NULL,
    updated_by text NOT NULL
);
"#;

/// Advisory lock key for DDL (schema and partitions).
const DDL_LOCK: i64 = 0x706f_6c6a_6f75_726e; // "poljourn"

/// `ts` from `ts_ns`: microseconds (PostgreSQL's resolution), truncated.
const TS_EXPR: &str = "(timestamptz 'epoch' + (u.ts_ns / 1000) * interval '1 microsecond')";

const COLUMNS: &str = "id, ts_ns, agent_id, boot_epoch, seq, variant, prev_hash, hash, \
     record_json, received_at, flag, (tx::text)::bigint";

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// libpq-style connection string (`host=… user=… dbname=…`).
    pub url: String,
    /// A schema to create and use instead of `public` (tests use one each).
    pub schema: Option<String>,
    /// Connections per server.
    pub pool_size: usize,
}

/// The PostgreSQL backend. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Months (year * 100 + month) whose partition is known to exist.
    partitions: Mutex<HashSet<i32>>,
    commits: watch::Sender<u64>,
}

impl PgStore {
    /// Connects and creates the schema, tables and indexes if missing.
    pub async fn connect(options: &PgOptions) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = options.url.parse()?;
        let schema = match &options.schema {
            Some(s) if is_identifier(s) => Some(format!("\"{s}\"")),
            Some(s) => return Err(StoreError::InvalidSchema(s.clone())),
            None => None,
        };
        if let Some(s) = &schema {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            let task = tokio::spawn(connection);
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
                .await?;
            drop(client);
            let _ = task.await;
        }
        let pool = Pool::new(config, schema, options.pool_size);
        {
            let mut conn = pool.get().await?;
            let tx = conn.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])
                .await?;
            tx.batch_execute(SCHEMA_SQL).await?;
            tx.commit().await?;
        }
        let (commits, _) = watch::channel(0);
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                partitions: Mutex::new(HashSet::new()),
                commits,
            }),
        })
    }

    /// Creates the monthly partitions that `ts_ns` values fall into.
    async fn ensure_partitions(&self, ts: impl Iterator<Item = i64>) -> Result<(), StoreError> {
        let months: HashSet<i32> = ts.map(month_of).collect();
        let missing: Vec<i32> = {
            let known = self
                .inner
                .partitions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            months.difference(&known).copied().collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut conn = self.inner.pool.get().await?;
        let tx = conn.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])
            .await?;
        for m in &missing {
            let (y, mo) = (m / 100, m % 100);
            let (ny, nmo) = if mo == 12 { (y + 1, 1) } else { (y, mo + 1) };
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS decision_records_p{y:04}{mo:02} \
                 PARTITION OF decision_records FOR VALUES \
                 FROM ('{y:04}-{mo:02}-01 00:00:00+00') TO ('{ny:04}-{nmo:02}-01 00:00:00+00')"
            ))
            .await?;
        }
        tx.commit().await?;
        self.inner
            .partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(missing);
        Ok(())
    }
}

impl Store for PgStore {
    async fn append(
        &self,
        agent_id: &str,
        records: Vec<RecordEnvelope>,
    ) -> Result<AppendOutcome, StoreError> {
        let received_ns = now_ns();
        // Partitions for every record time the plan may produce (a record
        // whose JSON does not parse is filed at its receive time).
        let metas: Vec<i64> = records
            .iter()
            .map(|e| super::RecordMeta::of_envelope(e, received_ns).ts_ns)
            .chain(std::iter::once(received_ns))
            .collect();
        self.ensure_partitions(metas.into_iter()).await?;

        let mut conn = self.inner.pool.get().await?;
        let tx = conn.transaction().await?;
        tx.execute(
            "INSERT INTO chain_heads (agent_id, head_seq, head_hash) VALUES ($1, 0, '') \
             ON CONFLICT (agent_id) DO NOTHING",
            &[&agent_id],
        )
        .await?;
        // INVARIANT: this row lock serialises all appends of one agent, on
        // every server sharing the database, until commit.
        let row = tx
            .query_one(
                "SELECT head_seq, head_hash FROM chain_heads WHERE agent_id = $1 FOR UPDATE",
                &[&agent_id],
            )
            .await?;
        let head = Head {
            seq: row.get::<_, i64>(0) as u64,
            hash: row.get(1),
        };
        let mut existing: HashMap<(u64, u64), Vec<RecordEnvelope>> = HashMap::new();
        if let (Some(lo), Some(hi)) = (
            records.iter().map(|e| e.seq).min(),
            records.iter().map(|e| e.seq).max(),
        ) {
            let rows = tx
                .query(
                    "SELECT boot_epoch, seq, prev_hash, hash, record_json FROM decision_records \
                     WHERE agent_id = $1 AND seq BETWEEN $2 AND $3",
                    &[&agent_id, &(lo as i64), &(hi as i64)],
                )
                .await?;
            for r in rows {
                let env = RecordEnvelope {
                    agent_id: agent_id.to_owned(),
                    boot_epoch: r.get::<_, i64>(0) as u64,
                    seq: r.get::<_, i64>(1) as u64,
                    prev_hash: r.get(2),
                    hash: r.get(3),
                    record_json: r.get(4),
                };
                existing
                    .entry((env.boot_epoch, env.seq))
                    .or_default()
                    .push(env);
            }
        }
        let plan = plan_batch(agent_id, head, &records, received_ns, |epoch, seq| {
            Ok(existing.get(&(epoch, seq)).cloned().unwrap_or_default())
        })?;
        if plan.writes.is_empty() {
            tx.rollback().await?;
            return Ok(plan.outcome);
        }
        let received_at = now_rfc3339();
        let w = &plan.writes;
        let ts_ns: Vec<i64> = w.iter().map(|p| p.meta.ts_ns).collect();
        let epochs: Vec<i64> = w.iter().map(|p| p.env.boot_epoch as i64).collect();
        let seqs: Vec<i64> = w.iter().map(|p| p.env.seq as i64).collect();
        let variants: Vec<i32> = w.iter().map(|p| p.variant as i32).collect();
        let prevs: Vec<&str> = w.iter().map(|p| p.env.prev_hash.as_str()).collect();
        let hashes: Vec<&str> = w.iter().map(|p| p.env.hash.as_str()).collect();
        let jsons: Vec<&[u8]> = w.iter().map(|p| p.env.record_json.as_slice()).collect();
        let flags: Vec<&str> = w.iter().map(|p| p.flag_str()).collect();
        let routes: Vec<&str> = w.iter().map(|p| p.meta.route.as_str()).collect();
        let decisions: Vec<&str> = w.iter().map(|p| p.meta.decision.as_str()).collect();
        let modes: Vec<&str> = w.iter().map(|p| p.meta.mode.as_str()).collect();
        tx.execute(
            &format!(
                "INSERT INTO decision_records (ts, ts_ns, agent_id, boot_epoch, seq, variant, \
                 prev_hash, hash, record_json, received_at, flag, route, decision, mode) \
                 SELECT {TS_EXPR}, u.ts_ns, $1, u.boot_epoch, u.seq, u.variant, u.prev_hash, \
                 u.hash, u.record_json, $2, u.flag, u.route, u.decision, u.mode \
                 FROM unnest($3::bigint[], $4::bigint[], $5::bigint[], $6::int[], $7::text[], \
                 $8::text[], $9::bytea[], $10::text[], $11::text[], $12::text[], $13::text[]) \
                 AS u(ts_ns, boot_epoch, seq, variant, prev_hash, hash, record_json, flag, \
                 route, decision, mode)"
            ),
            &[
                &agent_id,
                &received_at,
                &ts_ns,
                &epochs,
                &seqs,
                &variants,
                &prevs,
                &hashes,
                &jsons,
                &flags,
                &routes,
                &decisions,
                &modes,
            ],
        )
        .await?;
        tx.execute(
            "UPDATE chain_heads SET head_seq = $2, head_hash = $3, updated_at = now() \
             WHERE agent_id = $1",
            &[&agent_id, &(plan.head.seq as i64), &plan.head.hash],
        )
        .await?;
        // INVARIANT: acknowledged only after the commit returned.
        tx.commit().await?;
        warn_flagged(agent_id, &plan.outcome);
        self.inner.commits.send_modify(|n| *n = n.wrapping_add(1));
        Ok(plan.outcome)
    }

    async fn query_page(
        &self,
        filter: &QueryFilter,
        after: Option<&OrderKey>,
        page_size: usize,
    ) -> Result<Page, StoreError> {
        let mut sql = Sql::where_filter(filter);
        if let Some(k) = after {
            let p = [
                sql.bind(k.ts_ns),
                sql.bind(k.agent_id.clone()),
                sql.bind(k.seq as i64),
                sql.bind(k.boot_epoch as i64),
                sql.bind(k.variant as i32),
            ];
            sql.and(format!(
                "(ts_ns, agent_id, seq, boot_epoch, variant) > ({}, {}, {}, {}, {})",
                p[0], p[1], p[2], p[3], p[4]
            ));
        }
        let limit = sql.bind(page_size.max(1) as i64);
        let text = format!(
            "SELECT {COLUMNS} FROM decision_records {} \
             ORDER BY ts_ns, agent_id, seq, boot_epoch, variant LIMIT {limit}",
            sql.where_clause()
        );
        let conn = self.inner.pool.get().await?;
        let rows = conn.query(&text, &sql.params()).await?;
        let mut page = Page::default();
        for r in &rows {
            page.marks
                .push((r.get::<_, i64>(0) as u64, r.get::<_, i64>(11) as u64));
            page.records.push(stored(r));
        }
        if rows.len() >= page_size.max(1)
            && let Some(r) = rows.last()
        {
            page.next = Some(OrderKey {
                ts_ns: r.get(1),
                agent_id: r.get(2),
                seq: r.get::<_, i64>(4) as u64,
                boot_epoch: r.get::<_, i64>(3) as u64,
                variant: r.get::<_, i32>(5) as u32,
            });
        }
        Ok(page)
    }

    async fn tail_cursor(&self) -> Result<TailCursor, StoreError> {
        let conn = self.inner.pool.get().await?;
        Ok(TailCursor {
            position: snapshot_xmin(&conn).await?,
            ..TailCursor::default()
        })
    }

    async fn tail_next(
        &self,
        filter: &QueryFilter,
        cursor: &mut TailCursor,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let conn = self.inner.pool.get().await?;
        // INVARIANT: the xmin is taken before the query's snapshot, so every
        // transaction below it is visible to the query.
        let xmin = snapshot_xmin(&conn).await?;
        let mut sql = Sql::where_filter(filter);
        let from = sql.bind(cursor.position.to_string());
        sql.and(format!("tx >= ({from}::text)::xid8"));
        let text = format!(
            "SELECT {COLUMNS} FROM decision_records {} ORDER BY tx, id",
            sql.where_clause()
        );
        let rows = conn.query(&text, &sql.params()).await?;
        let mut out = Vec::new();
        for r in &rows {
            let id = r.get::<_, i64>(0) as u64;
            let order = r.get::<_, i64>(11) as u64;
            if cursor.seen.contains_key(&id) {
                continue;
            }
            cursor.seen.insert(id, order);
            out.push(stored(r));
        }
        cursor.position = xmin;
        cursor.seen.retain(|_, order| *order >= xmin);
        Ok(out)
    }

    async fn verify(&self, agent_id: Option<&str>) -> Result<Vec<AgentChain>, StoreError> {
        let conn = self.inner.pool.get().await?;
        let agents: Vec<String> = match agent_id {
            Some(a) => vec![a.to_owned()],
            None => conn
                .query("SELECT agent_id FROM chain_heads ORDER BY agent_id", &[])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect(),
        };
        let mut out = Vec::new();
        for agent in agents {
            let mut walk = ChainWalk::new(&agent);
            let params: [&(dyn ToSql + Sync); 1] = [&agent];
            let stream = conn
                .query_raw(
                    &format!(
                        "SELECT {COLUMNS} FROM decision_records WHERE agent_id = $1 \
                         ORDER BY seq, boot_epoch, variant"
                    ),
                    params,
                )
                .await?;
            tokio::pin!(stream);
            while let Some(row) = stream.next().await {
                let s = stored(&row?);
                if let Some(env) = &s.record {
                    walk.push(env, &s.flag);
                }
            }
            out.push(walk.finish());
        }
        Ok(out)
    }

    fn commits(&self) -> watch::Receiver<u64> {
        self.inner.commits.subscribe()
    }

    async fn get_data(&self, known_version: u64) -> Result<StoredData, StoreError> {
        let conn = self.inner.pool.get().await?;
        data::get(&conn, known_version).await
    }

    async fn put_data(
        &self,
        document: &DataDocument,
        expected_version: Option<u64>,
        updated_by: &str,
    ) -> Result<StoredData, StoreError> {
        let mut conn = self.inner.pool.get().await?;
        data::put(&mut conn, &document.to_json(), expected_version, updated_by).await
    }
}

async fn snapshot_xmin(conn: &tokio_postgres::Client) -> Result<u64, StoreError> {
    let row = conn
        .query_one(
            "SELECT (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint",
            &[],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}

fn stored(r: &Row) -> StoredRecord {
    StoredRecord {
        record: Some(RecordEnvelope {
            agent_id: r.get(2),
            boot_epoch: r.get::<_, i64>(3) as u64,
            seq: r.get::<_, i64>(4) as u64,
            prev_hash: r.get(6),
            hash: r.get(7),
            record_json: r.get(8),
        }),
        received_at: r.get(9),
        flag: r.get(10),
    }
}

/// A WHERE clause with numbered parameters.
struct Sql {
    conds: Vec<String>,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Sql {
    fn where_filter(f: &QueryFilter) -> Self {
        let mut sql = Self {
            conds: Vec::new(),
            params: Vec::new(),
        };
        if let Some(s) = f.since_ns {
            let p = sql.bind(s);
            // `ts` for partition pruning, `ts_ns` for the exact bound.
            sql.and(format!(
                "ts >= timestamptz 'epoch' + ({p}::bigint / 1000) * interval '1 microsecond' \
                 - interval '1 microsecond' AND ts_ns >= {p}::bigint"
            ));
        }
        if let Some(u) = f.until_ns {
            let p = sql.bind(u);
            sql.and(format!(
                "ts <= timestamptz 'epoch' + ({p}::bigint / 1000) * interval '1 microsecond' \
                 + interval '1 microsecond' AND ts_ns < {p}::bigint"
            ));
        }
        if let Some(a) = &f.agent_id {
            let p = sql.bind(a.clone());
            sql.and(format!("agent_id = {p}"));
        }
        if let Some(r) = &f.route {
            let p = sql.bind(r.clone());
            sql.and(format!("route = {p}"));
        }
        if let Some(d) = f.decision {
            let p = sql.bind(d.as_str().to_owned());
            sql.and(format!("decision = {p}"));
        }
        match &f.mode {
            Some(ModeFilter::Exact(m)) => {
                let p = sql.bind(m.clone());
                sql.and(format!("mode = {p}"));
            }
            Some(ModeFilter::AnyDegraded) => {
                sql.and("(mode = 'degraded' OR mode LIKE 'degraded:%')".to_owned());
            }
            None => {}
        }
        sql
    }

    fn bind(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(v));
        format!("${}", self.params.len())
    }

    fn and(&mut self, cond: String) {
        self.conds.push(cond);
    }

    fn where_clause(&self) -> String {
        if self.conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conds.join(" AND "))
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// year * 100 + month (UTC) of the partition `ts_ns` falls into, computed
/// from whole microseconds like the `ts` column.
fn month_of(ts_ns: i64) -> i32 {
    let micros = i128::from(ts_ns / 1000) * 1000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(micros) {
        Ok(t) => t.year() * 100 + i32::from(u8::from(t.month())),
        Err(_) => 197001,
    }
}

/// Schema names are interpolated into SQL: letters, digits and `_` only.
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_identifiers() {
        assert_eq!(month_of(0), 197001);
        // 2026-11-30T23:59:59.9999995Z stays in November.
        assert_eq!(month_of(1_796_083_199_999_999_500), 202611);
        assert!(is_identifier("schema_ab12"));
        assert!(!is_identifier("x; drop table y"));
    }
}
