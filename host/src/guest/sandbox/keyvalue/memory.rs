//! The in-memory key-value store: one per replica process, shared by every
//! worker and instance, bounded by `--keyvalue-max-bytes`.
//!
//! Each bucket keeps its keys ordered by a hash of the key (a random one,
//! fixed for the process), which is also what a `list-keys` cursor holds: the
//! hash of the last key a page returned. So a full pass through the pages
//! lists every key present throughout it exactly once, however the bucket
//! changes meanwhile (a key added or deleted during the pass may or may not
//! be listed).

use super::keys::{Page, Preload, shorten};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

/// The most keys one `list-keys` page holds, and about the most bytes of
/// them: a guest's memory is small.
const PAGE_KEYS: usize = 1000;
const PAGE_BYTES: usize = 256 * 1024;

pub(super) struct Memory {
    buckets: Mutex<Buckets>,
    order: RandomState,
    max_bytes: u64,
}

#[derive(Default)]
struct Buckets {
    by_name: HashMap<String, Bucket>,
    /// Bytes held: bucket names, keys and values.
    used: u64,
}

/// A bucket's entries by place (the key's hash); keys whose hashes collide
/// share a place.
#[derive(Default)]
struct Bucket {
    places: BTreeMap<u64, Vec<(String, Vec<u8>)>>,
}

impl Bucket {
    fn entry(&self, place: u64, key: &str) -> Option<&Vec<u8>> {
        self.places
            .get(&place)?
            .iter()
            .find_map(|(k, v)| (k == key).then_some(v))
    }
}

impl Memory {
    /// An empty store of at most `max_bytes`, holding `preload` (bucket,
    /// key, value).
    pub(super) fn new(max_bytes: u64, preload: &Preload) -> anyhow::Result<Self> {
        let memory = Self {
            buckets: Mutex::default(),
            order: RandomState::new(),
            max_bytes,
        };
        for (bucket, key, value) in preload {
            memory
                .set_many(bucket, vec![(key.clone(), value.clone().into_bytes())])
                .map_err(|why| anyhow::anyhow!("--keyvalue cannot be preloaded: {why}"))?;
        }
        Ok(memory)
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "in this process's memory (at most {} bytes)",
            self.max_bytes
        )
    }

    fn place(&self, key: &str) -> u64 {
        // 0 is where a pass starts, before every place.
        self.order.hash_one(key).max(1)
    }

    fn buckets(&self) -> MutexGuard<'_, Buckets> {
        // Every change below is made whole before the lock is let go, so a
        // poisoned lock still guards a consistent store.
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        let place = self.place(key);
        let buckets = self.buckets();
        Ok(buckets
            .by_name
            .get(bucket)
            .and_then(|b| b.entry(place, key))
            .cloned())
    }

    pub(super) fn get_many(
        &self,
        bucket: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, String> {
        let places: Vec<u64> = keys.iter().map(|k| self.place(k)).collect();
        let buckets = self.buckets();
        let found = buckets.by_name.get(bucket);
        Ok(keys
            .iter()
            .zip(places)
            .map(|(key, place)| found.and_then(|b| b.entry(place, key)).cloned())
            .collect())
    }

    pub(super) fn exists(&self, bucket: &str, key: &str) -> Result<bool, String> {
        let place = self.place(key);
        let buckets = self.buckets();
        Ok(buckets
            .by_name
            .get(bucket)
            .is_some_and(|b| b.entry(place, key).is_some()))
    }

    /// Sets every key, or none if the store would grow past its bound.
    pub(super) fn set_many(
        &self,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Result<(), String> {
        if entries.is_empty() {
            return Ok(());
        }
        let placed: Vec<(u64, String, Vec<u8>)> = entries
            .into_iter()
            .map(|(k, v)| (self.place(&k), k, v))
            .collect();
        let mut buckets = self.buckets();
        let found = buckets.by_name.get(bucket);
        let mut grows = if found.is_none() {
            bucket.len() as u64
        } else {
            0
        };
        let mut shrinks = 0u64;
        for (place, key, value) in &placed {
            match found.and_then(|b| b.entry(*place, key)) {
                Some(old) => shrinks += old.len() as u64,
                None => grows += key.len() as u64,
            }
            grows += value.len() as u64;
        }
        buckets.used = self.bounded(buckets.used, grows, shrinks)?;
        let target = buckets.by_name.entry(bucket.to_string()).or_default();
        for (place, key, value) in placed {
            let at = target.places.entry(place).or_default();
            match at.iter_mut().find(|(k, _)| *k == key) {
                Some((_, old)) => *old = value,
                None => at.push((key, value)),
            }
        }
        Ok(())
    }

    /// `used` after growing by `grows` and shrinking by `shrinks` bytes, or
    /// why that is over the bound.
    fn bounded(&self, used: u64, grows: u64, shrinks: u64) -> Result<u64, String> {
        let after = used.saturating_add(grows).saturating_sub(shrinks);
        if grows > shrinks && after > self.max_bytes {
            return Err(format!(
                "the key-value store is full: this write would make it {after} bytes, over \
                 --keyvalue-max-bytes ({}); delete keys, or ask the operator to raise it",
                self.max_bytes
            ));
        }
        Ok(after)
    }

    pub(super) fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), String> {
        let places: Vec<u64> = keys.iter().map(|k| self.place(k)).collect();
        let mut buckets = self.buckets();
        let Some(target) = buckets.by_name.get_mut(bucket) else {
            return Ok(());
        };
        let mut freed = 0u64;
        for (key, place) in keys.iter().zip(places) {
            let Some(at) = target.places.get_mut(&place) else {
                continue;
            };
            if let Some(index) = at.iter().position(|(k, _)| k == key) {
                let (k, v) = at.swap_remove(index);
                freed += (k.len() + v.len()) as u64;
            }
            if at.is_empty() {
                target.places.remove(&place);
            }
        }
        if target.places.is_empty() {
            buckets.by_name.remove(bucket);
            freed += bucket.len() as u64;
        }
        buckets.used = buckets.used.saturating_sub(freed);
        Ok(())
    }

    /// Adds `delta` to the decimal number `key` holds (0 if none), all under
    /// the lock: concurrent increments all count.
    pub(super) fn increment(&self, bucket: &str, key: &str, delta: i64) -> Result<i64, String> {
        let mut buckets = self.buckets();
        let current = match self.entry_in(&buckets, bucket, key) {
            None => 0,
            Some(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse::<i64>().ok())
                .ok_or_else(|| {
                    format!(
                        "`{}` does not hold a decimal number, so it cannot be incremented",
                        shorten(key)
                    )
                })?,
        };
        let new = current
            .checked_add(delta)
            .ok_or_else(|| format!("incrementing `{}` would overflow", shorten(key)))?;
        self.put(&mut buckets, bucket, key, new.to_string().into_bytes())?;
        Ok(new)
    }

    /// Sets `key` to `value` if it still holds `expected` (`None`: is not
    /// set), all under the lock; says whether it did.
    pub(super) fn swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: Vec<u8>,
    ) -> Result<bool, String> {
        let mut buckets = self.buckets();
        if self.entry_in(&buckets, bucket, key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        self.put(&mut buckets, bucket, key, value)?;
        Ok(true)
    }

    fn entry_in<'a>(&self, buckets: &'a Buckets, bucket: &str, key: &str) -> Option<&'a Vec<u8>> {
        buckets
            .by_name
            .get(bucket)
            .and_then(|b| b.entry(self.place(key), key))
    }

    /// Sets one key under a lock already held, within the bound.
    fn put(
        &self,
        buckets: &mut Buckets,
        bucket: &str,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), String> {
        let place = self.place(key);
        let (grows, shrinks) = match self.entry_in(buckets, bucket, key) {
            Some(old) => (value.len() as u64, old.len() as u64),
            None => {
                let name = if buckets.by_name.contains_key(bucket) {
                    0
                } else {
                    bucket.len()
                };
                ((name + key.len() + value.len()) as u64, 0)
            }
        };
        buckets.used = self.bounded(buckets.used, grows, shrinks)?;
        let at = buckets
            .by_name
            .entry(bucket.to_string())
            .or_default()
            .places
            .entry(place)
            .or_default();
        match at.iter_mut().find(|(k, _)| k == key) {
            Some((_, old)) => *old = value,
            None => at.push((key.to_string(), value)),
        }
        Ok(())
    }

    pub(super) fn list_keys(&self, bucket: &str, cursor: Option<u64>) -> Result<Page, String> {
        let buckets = self.buckets();
        let Some(found) = buckets.by_name.get(bucket) else {
            return Ok(Page {
                keys: Vec::new(),
                cursor: None,
            });
        };
        let after = cursor.unwrap_or(0);
        let mut keys = Vec::new();
        let mut bytes = 0;
        let mut last = None;
        let mut places = found
            .places
            .range((Bound::Excluded(after), Bound::Unbounded))
            .peekable();
        for (place, entries) in places.by_ref() {
            // A place is never split between pages.
            for (key, _) in entries {
                bytes += key.len();
                keys.push(key.clone());
            }
            last = Some(*place);
            if keys.len() >= PAGE_KEYS || bytes >= PAGE_BYTES {
                break;
            }
        }
        let more = places.peek().is_some();
        Ok(Page {
            keys,
            cursor: if more { last } else { None },
        })
    }
}

#[cfg(test)]
mod tests;
