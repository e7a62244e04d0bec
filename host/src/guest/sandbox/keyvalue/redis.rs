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

mod connect;
mod health;

use self::health::{Health, is_outage};
use super::keys::Page;
use crate::side_runtime::SideRuntime;
use redis::aio::ConnectionManager;
use redis::{Cmd, FromRedisValue};
use std::sync::Arc;
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
    /// The connection's thread, ended when the store goes.
    _side: SideRuntime,
}

/// Why a call failed.
enum Why {
    /// Redis cannot be reached, or answered too late: an outage.
    Unavailable(String),
    /// Redis refused the command (a value that is not a number, say).
    Refused(String),
}

impl Redis {
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
        delta: i64,
    ) -> Result<i64, String> {
        self.run(
            redis::cmd("HINCRBY")
                .arg(hash_of(bucket))
                .arg(key)
                .arg(delta)
                .clone(),
        )
        .await
    }

    /// Sets `key` to `value` if it still holds `expected` (`None`: is not
    /// set), atomically in Redis (a script runs whole); says whether it did.
    pub(super) async fn swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: Vec<u8>,
    ) -> Result<bool, String> {
        const SWAP: &str = "local held = redis.call('HGET', KEYS[1], ARGV[1]) \
            if (ARGV[2] == '0' and held == false) or (ARGV[2] == '1' and held == ARGV[3]) then \
              redis.call('HSET', KEYS[1], ARGV[1], ARGV[4]) return 1 \
            end return 0";
        let swapped: i64 = self
            .run(
                redis::cmd("EVAL")
                    .arg(SWAP)
                    .arg(1)
                    .arg(hash_of(bucket))
                    .arg(key)
                    .arg(if expected.is_some() { "1" } else { "0" })
                    .arg(expected.unwrap_or_default())
                    .arg(value)
                    .clone(),
            )
            .await?;
        Ok(swapped == 1)
    }

    pub(super) async fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<Page, String> {
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
        Ok(Page {
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
