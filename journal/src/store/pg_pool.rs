//! A small PostgreSQL connection pool: at most `size` connections, each
//! with the configured `search_path`, reconnecting when one was closed.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::{Client, NoTls};

use super::StoreError;

pub(crate) struct Pool {
    config: tokio_postgres::Config,
    /// Quoted schema for `SET search_path`, if any.
    schema: Option<String>,
    idle: Mutex<Vec<Client>>,
    permits: Semaphore,
}

impl Pool {
    pub fn new(config: tokio_postgres::Config, schema: Option<String>, size: usize) -> Self {
        Self {
            config,
            schema,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1)),
        }
    }

    /// A connection, waiting while all `size` are in use.
    pub async fn get(&self) -> Result<Conn<'_>, StoreError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::PoolClosed)?;
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let mut found = None;
            while let Some(c) = idle.pop() {
                if !c.is_closed() {
                    found = Some(c);
                    break;
                }
            }
            found
        };
        let client = match idle {
            Some(c) => c,
            None => self.connect().await?,
        };
        Ok(Conn {
            client: Some(client),
            pool: self,
            _permit: permit,
        })
    }

    async fn connect(&self) -> Result<Client, StoreError> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "postgres connection closed");
            }
        });
        if let Some(schema) = &self.schema {
            client
                .batch_execute(&format!("SET search_path TO {schema}"))
                .await?;
        }
        Ok(client)
    }
}

/// A pooled connection; returns to the pool when dropped.
pub(crate) struct Conn<'a> {
    client: Option<Client>,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
}

impl Deref for Conn<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        // INVARIANT: `client` is only taken in `drop`.
        #[expect(clippy::unwrap_used, reason = "set in `get`, taken only in `drop`")]
        self.client.as_ref().unwrap()
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        #[expect(clippy::unwrap_used, reason = "set in `get`, taken only in `drop`")]
        self.client.as_mut().unwrap()
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !c.is_closed()
        {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(c);
        }
    }
}
