//! The key-value store in Redis (`--keyvalue-url`): what every replica given
//! the same URL shares, so that the fleet behind a load balancer reads what
//! any replica wrote and an increment counts once across all of them.
//!
//! Each bucket is one Redis hash, `wasi:keyvalue:<bucket>`, each key a field
//! of it: `HGET`, `HSET`, `HDEL`, `HEXISTS`, `HINCRBY` (atomic in Redis),
//! `HMGET`, and `HSCAN` for `list-keys`, whose cursor is Redis's own.
//!
//! One multiplexed connection (redis' `ConnectionManager`, which reconnects
//! by itself) on a thread of its own, so that whatever worker calls, the
//! connection lives as long as the process. Every call is bounded by
//! `--keyvalue-timeout`: with Redis down or slow, the guest's call fails in
//! that time and the request goes on. An outage is logged once when it
//! starts and once when it ends, never once per call.

use super::KeyResponse;
use anyhow::{Context as _, Result, bail};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError};
use replica_config::StoreUrl;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::runtime::Handle;

/// What each bucket's hash is named after.
const PREFIX: &str = "wasi:keyvalue:";

/// About how many keys one `list-keys` page asks Redis for.
const PAGE_KEYS: usize = 1000;

pub(super) struct Redis {
    connection: ConnectionManager,
    /// The runtime of the connection's thread, where every call runs.
    runtime: Handle,
    timeout: Duration,
    /// The URL without its credentials.
    shown: String,
    health: Arc<Health>,
    /// Ends the connection's thread when the store goes.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Why a call failed.
enum Why {
    /// Redis cannot be reached, or answered too late: an outage.
    Unavailable(String),
    /// Redis refused the command (a value that is not a number, say).
    Refused(String),
}

impl Redis {
    /// Checks `url` and reaches Redis once: wrong credentials stop the host;
    /// Redis unreachable does not (it is reached when it is back), nor does
    /// a `preload` that cannot be written yet. `preload` sets the keys of
    /// the bucket "" that are not set already.
    pub(super) fn connect(
        url: &StoreUrl,
        timeout: Duration,
        preload: &[(String, String)],
    ) -> Result<Self> {
        let shown = url.to_string();
        let client = redis::Client::open(url.secret()).map_err(|e| {
            anyhow::anyhow!(
                "--keyvalue-url {shown} cannot be used ({}): write it as \
                 redis://[USER:PASSWORD@]HOST[:PORT][/DB], or rediss:// for TLS",
                e.category()
            )
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the key-value store's async runtime")?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("keyvalue-redis".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .context("cannot start the key-value store's thread")?;
        // One try per connection attempt: a call that finds Redis down fails
        // at once, and the next one tries again.
        let settings = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let connection = {
            let _in_runtime = handle.enter();
            ConnectionManager::new_lazy_with_config(client, settings)
                .with_context(|| format!("cannot set up the connection to Redis at {shown}"))?
        };
        let redis = Self {
            connection,
            runtime: handle,
            timeout,
            shown,
            health: Arc::new(Health::default()),
            _stop: stop,
        };
        redis.first_contact(preload)?;
        Ok(redis)
    }

    pub(super) fn describe(&self) -> String {
        format!("in Redis at {}", self.shown)
    }

    /// PINGs Redis, and writes `preload`, before serving.
    fn first_contact(&self, preload: &[(String, String)]) -> Result<()> {
        let mut connection = self.connection.clone();
        let timeout = self.timeout;
        let hash = hash_of("");
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
            for (key, value) in &entries {
                pipeline
                    .cmd("HSETNX")
                    .arg(&hash)
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

    /// Runs `cmd` on the connection's thread within the timeout, and notes
    /// whether Redis answered.
    async fn run<T: FromRedisValue + Send + 'static>(&self, cmd: Cmd) -> Result<T, String> {
        let mut connection = self.connection.clone();
        let timeout = self.timeout;
        let call = self.runtime.spawn(async move {
            tokio::time::timeout(timeout, async {
                match cmd.query_async::<T>(&mut connection).await {
                    // Refused: the command was never sent, and the refusal
                    // started a new connection, which the retry waits for
                    // (so the first call after Redis is back succeeds).
                    Err(e) if e.is_connection_refusal() => {
                        cmd.query_async::<T>(&mut connection).await
                    }
                    answer => answer,
                }
            })
            .await
        });
        let outcome = match call.await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) if is_outage(&e) => Err(Why::Unavailable(e.to_string())),
            Ok(Ok(Err(e))) => Err(Why::Refused(e.to_string())),
            Ok(Err(_elapsed)) => Err(Why::Unavailable(format!("no answer within {timeout:?}"))),
            Err(e) => Err(Why::Unavailable(format!("the call was lost ({e})"))),
        };
        match outcome {
            Ok(value) => {
                self.health.up(&self.shown);
                Ok(value)
            }
            Err(Why::Refused(why)) => {
                self.health.up(&self.shown);
                Err(format!("Redis refused the call: {why}"))
            }
            Err(Why::Unavailable(why)) => {
                self.health.down(&self.shown, &why);
                Err(format!(
                    "the key-value store (Redis at {}) is unavailable: {why}",
                    self.shown
                ))
            }
        }
    }

    pub(super) async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.run(redis::cmd("HGET").arg(hash_of(bucket)).arg(key).clone())
            .await
    }

    pub(super) async fn get_many(
        &self,
        bucket: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, String> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.run(redis::cmd("HMGET").arg(hash_of(bucket)).arg(keys).clone())
            .await
    }

    pub(super) async fn exists(&self, bucket: &str, key: &str) -> Result<bool, String> {
        self.run(redis::cmd("HEXISTS").arg(hash_of(bucket)).arg(key).clone())
            .await
    }

    pub(super) async fn set_many(
        &self,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Result<(), String> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("HSET");
        cmd.arg(hash_of(bucket));
        for (key, value) in &entries {
            cmd.arg(key).arg(value);
        }
        self.run::<()>(cmd).await
    }

    pub(super) async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), String> {
        if keys.is_empty() {
            return Ok(());
        }
        self.run::<()>(redis::cmd("HDEL").arg(hash_of(bucket)).arg(keys).clone())
            .await
    }

    /// `HINCRBY`: Redis adds it atomically, whoever else increments.
    pub(super) async fn increment(
        &self,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> Result<u64, String> {
        let delta = i64::try_from(delta).map_err(|_| {
            format!(
                "an increment of {delta} is over what Redis can add at once ({})",
                i64::MAX
            )
        })?;
        let total: i64 = self
            .run(
                redis::cmd("HINCRBY")
                    .arg(hash_of(bucket))
                    .arg(key)
                    .arg(delta)
                    .clone(),
            )
            .await?;
        u64::try_from(total).map_err(|_| {
            format!(
                "`{}` holds {total} after the increment, which is not a u64",
                super::shorten(key)
            )
        })
    }

    pub(super) async fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<KeyResponse, String> {
        // Fields and values alternate (NOVALUES needs Redis 7.4).
        let (next, fields_and_values): (u64, Vec<Vec<u8>>) = self
            .run(
                redis::cmd("HSCAN")
                    .arg(hash_of(bucket))
                    .arg(cursor.unwrap_or(0))
                    .arg("COUNT")
                    .arg(PAGE_KEYS)
                    .clone(),
            )
            .await?;
        Ok(KeyResponse {
            keys: fields_and_values
                .iter()
                .step_by(2)
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect(),
            cursor: (next != 0).then_some(next),
        })
    }
}

fn hash_of(bucket: &str) -> String {
    format!("{PREFIX}{bucket}")
}

/// Whether `e` says Redis cannot be used now (rather than refusing one
/// command): I/O, time-outs, credentials, a connection to replace.
fn is_outage(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
        || is_auth(e)
}

fn is_auth(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

/// Whether Redis answered the last call (0 until the first), so that an
/// outage is logged once.
#[derive(Default)]
struct Health(AtomicU8);

impl Health {
    const UP: u8 = 1;
    const DOWN: u8 = 2;

    fn store(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
    }

    fn up(&self, shown: &str) {
        if self.0.swap(Self::UP, Ordering::Relaxed) == Self::DOWN {
            tracing::info!("wasi:keyvalue: Redis at {shown} answers again");
        }
    }

    fn down(&self, shown: &str, why: &str) {
        if self.0.swap(Self::DOWN, Ordering::Relaxed) != Self::DOWN {
            tracing::warn!(
                "wasi:keyvalue: Redis at {shown} is unavailable ({why}): key-value calls fail \
                 until it answers again; everything else is served"
            );
        }
    }
}
