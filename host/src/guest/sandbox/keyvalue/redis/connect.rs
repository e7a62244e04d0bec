//! Reaching Redis: the URL checked, the connection's thread and runtime, and
//! a first PING (and `--keyvalue`) before the host serves.

use super::health::{Health, is_auth};
use super::{Redis, hash_of};
use crate::guest::sandbox::keyvalue::keys::Preload;
use crate::side_runtime::SideRuntime;
use anyhow::{Context as _, Result, bail};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError};
use replica_config::StoreUrl;
use std::sync::Arc;
use std::time::Duration;

impl Redis {
    /// Checks `url` and reaches Redis once: wrong credentials stop the host;
    /// Redis unreachable does not (it is reached when it is back), nor does
    /// a `preload` that cannot be written yet. `preload` sets the keys of
    /// the bucket "" that are not set already.
    pub(in crate::guest::sandbox::keyvalue) fn connect(
        url: &StoreUrl,
        timeout: Duration,
        preload: &Preload,
    ) -> Result<Self> {
        let shown = url.to_string();
        let client = redis::Client::open(url.secret()).map_err(|e| {
            anyhow::anyhow!(
                "--keyvalue-url {shown} cannot be used ({}): write it as \
                 redis://[USER:PASSWORD@]HOST[:PORT][/DB], or rediss:// for TLS",
                e.category()
            )
        })?;
        let side = SideRuntime::start("keyvalue-redis", "the key-value store")?;
        // One try per connection attempt: a call that finds Redis down fails
        // at once, and the next one tries again.
        let settings = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let connection = {
            let _in_runtime = side.handle().enter();
            ConnectionManager::new_lazy_with_config(client, settings)
                .with_context(|| format!("cannot set up the connection to Redis at {shown}"))?
        };
        let redis = Self {
            connection,
            runtime: side.handle().clone(),
            timeout,
            shown,
            health: Arc::new(Health::default()),
            _side: side,
        };
        redis.first_contact(preload)?;
        Ok(redis)
    }

    pub(in crate::guest::sandbox::keyvalue) fn describe(&self) -> String {
        format!("in Redis at {}", self.shown)
    }

    /// PINGs Redis, and writes `preload`, before serving.
    fn first_contact(&self, preload: &Preload) -> Result<()> {
        let mut connection = self.connection.clone();
        let timeout = self.timeout;
        let entries = preload.to_vec();
        let reached: Result<(), Option<RedisError>> = self.runtime.block_on(async move {
            let ping = tokio::time::timeout(
                timeout,
                redis::cmd("PING").query_async::<String>(&mut connection),
            )
            .await;
            let ping = match ping {
                Ok(answer) => answer,
                Err(_) => return Err(None),
            };
            ping.map_err(Some)?;
            let mut pipeline = redis::pipe();
            for (bucket, key, value) in &entries {
                pipeline
                    .cmd("HSETNX")
                    .arg(hash_of(bucket))
                    .arg(key)
                    .arg(value)
                    .ignore();
            }
            if !entries.is_empty() {
                let written =
                    tokio::time::timeout(timeout, pipeline.query_async::<()>(&mut connection))
                        .await;
                match written {
                    Ok(written) => written.map_err(Some)?,
                    Err(_) => return Err(None),
                }
            }
            Ok(())
        });
        match reached {
            Ok(()) => {
                self.health.store(Health::UP);
                Ok(())
            }
            Err(Some(e)) if e.kind() == ErrorKind::AuthenticationFailed || is_auth(&e) => bail!(
                "Redis at {} refused this host ({e}): fix the user or password in --keyvalue-url",
                self.shown
            ),
            Err(e) => {
                let why = e.map_or_else(
                    || format!("no answer within {timeout:?}"),
                    |e| e.to_string(),
                );
                self.health.store(Health::DOWN);
                tracing::warn!(
                    "wasi:keyvalue: Redis at {} is unreachable ({why}); serving anyway: \
                     key-value calls fail until it answers{}",
                    self.shown,
                    if preload.is_empty() {
                        ""
                    } else {
                        ", and --keyvalue is not written"
                    }
                );
                Ok(())
            }
        }
    }
}
