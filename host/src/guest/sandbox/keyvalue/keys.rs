//! What the backends share: what they start with, a page of `list-keys`,
//! and a key short enough to quote in an error.

/// What a store starts with: (bucket, key, value), from `--keyvalue` and
/// `--keyvalue-in`.
pub(crate) type Preload = [(String, String, String)];

/// One page of a bucket's keys, and where the next one starts (`None`: this
/// was the last).
pub(super) struct Page {
    pub(super) keys: Vec<String>,
    pub(super) cursor: Option<u64>,
}

/// A key short enough to quote in an error.
pub(super) fn shorten(key: &str) -> &str {
    match key.char_indices().nth(64) {
        Some((end, _)) => &key[..end],
        None => key,
    }
}
