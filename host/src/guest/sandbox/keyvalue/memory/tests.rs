//! The in-memory store's bookkeeping, bounds, namespaces and pages.

use super::*;

fn entries(keys: &[&str], value: &[u8]) -> Vec<(String, Vec<u8>)> {
    keys.iter()
        .map(|k| (k.to_string(), value.to_vec()))
        .collect()
}

/// Every key of `bucket`, following the cursors.
fn all_keys(memory: &Memory, bucket: &str) -> Vec<String> {
    let (mut keys, mut cursor) = (Vec::new(), None);
    loop {
        let page = memory.list_keys(bucket, cursor).expect("a page");
        keys.extend(page.keys);
        cursor = page.cursor;
        if cursor.is_none() {
            return keys;
        }
    }
}

#[test]
fn what_is_held_is_counted_and_freed_to_the_byte() {
    let memory = Memory::new(1000, &[]).expect("empty");
    memory
        .set_many("b", entries(&["k1", "k2"], b"xyz"))
        .expect("fits");
    // The bucket's name once, then each key and value.
    assert_eq!(memory.buckets().used, 1 + 2 * (2 + 3));
    memory.set_many("b", entries(&["k1"], b"x")).expect("fits");
    assert_eq!(memory.buckets().used, 1 + (2 + 1) + (2 + 3));
    assert_eq!(memory.increment("b", "n", 9).expect("a number"), 9);
    assert_eq!(memory.increment("b", "n", 1).expect("a number"), 10);
    assert_eq!(memory.buckets().used, 1 + (2 + 1) + (2 + 3) + (1 + 2));
    memory
        .delete_many("b", &["k1".into(), "k2".into(), "n".into()])
        .expect("deleted");
    assert_eq!(memory.buckets().used, 0);
    assert!(memory.buckets().by_name.is_empty());
}

#[test]
fn a_write_past_the_bound_changes_nothing() {
    let memory = Memory::new(20, &[]).expect("empty");
    memory
        .set_many("", entries(&["a"], &[0; 10]))
        .expect("fits");
    let refused = memory.set_many("", entries(&["b", "c"], &[0; 5]));
    assert!(refused.is_err_and(|why| why.contains("--keyvalue-max-bytes")));
    assert_eq!(memory.get("", "b"), Ok(None));
    assert_eq!(memory.buckets().used, 11);
    // Replacing a value with a smaller one always fits.
    memory.set_many("", entries(&["a"], &[0; 1])).expect("fits");
    assert!(Memory::new(3, &[("".into(), "key".into(), "value".into())]).is_err());
}

#[test]
fn buckets_do_not_share_keys() {
    let memory = Memory::new(1000, &[("".into(), "k".into(), "preloaded".into())]).expect("fits");
    memory
        .set_many("other", entries(&["k"], b"mine"))
        .expect("fits");
    assert_eq!(memory.get("", "k"), Ok(Some(b"preloaded".to_vec())));
    assert_eq!(memory.get("other", "k"), Ok(Some(b"mine".to_vec())));
    assert_eq!(memory.exists("third", "k"), Ok(false));
    assert_eq!(memory.increment("third", "k", 2), Ok(2));
    assert!(memory.increment("", "k", 1).is_err(), "not a number");
}

#[test]
fn a_pass_through_the_pages_lists_every_key_present_throughout_once() {
    let memory = Memory::new(1 << 20, &[]).expect("empty");
    let keys: Vec<String> = (0..2500).map(|i| format!("key{i}")).collect();
    let batch: Vec<(String, Vec<u8>)> = keys.iter().map(|k| (k.clone(), vec![1])).collect();
    memory.set_many("b", batch).expect("fits");
    let first = memory.list_keys("b", None).expect("a page");
    assert_eq!(first.keys.len(), PAGE_KEYS);
    // Keys come and go between pages: those present throughout are
    // each listed exactly once.
    let gone: Vec<String> = keys.iter().step_by(7).cloned().collect();
    memory.delete_many("b", &gone).expect("deleted");
    memory
        .set_many("b", entries(&["new1", "new2"], b"n"))
        .expect("fits");
    let (mut listed, mut cursor) = (first.keys, first.cursor);
    while let Some(at) = cursor {
        let page = memory.list_keys("b", Some(at)).expect("a page");
        listed.extend(page.keys);
        cursor = page.cursor;
    }
    for key in keys.iter().filter(|k| !gone.contains(k)) {
        assert_eq!(listed.iter().filter(|l| *l == key).count(), 1, "{key}");
    }
    assert_eq!(all_keys(&memory, "b").len(), 2500 - gone.len() + 2);
    assert!(all_keys(&memory, "none").is_empty());
}

#[test]
fn increments_go_below_zero_and_swaps_happen_only_on_what_was_seen() {
    let memory = Memory::new(1000, &[("default".into(), "seen".into(), "1".into())]).expect("fits");
    assert_eq!(memory.increment("b", "n", -3), Ok(-3));
    assert_eq!(memory.increment("b", "n", 5), Ok(2));
    assert_eq!(memory.get("default", "seen"), Ok(Some(b"1".to_vec())));
    // Expected what it holds: set. Expected something else: not.
    assert_eq!(
        memory.swap("default", "seen", Some(b"1"), b"2".to_vec()),
        Ok(true)
    );
    assert_eq!(
        memory.swap("default", "seen", Some(b"1"), b"3".to_vec()),
        Ok(false)
    );
    assert_eq!(memory.get("default", "seen"), Ok(Some(b"2".to_vec())));
    // Expected no value: only where there is none.
    assert_eq!(memory.swap("default", "new", None, b"x".to_vec()), Ok(true));
    assert_eq!(
        memory.swap("default", "new", None, b"y".to_vec()),
        Ok(false)
    );
    // The bound holds for swaps too.
    let big = vec![0; 2000];
    assert!(memory.swap("default", "big", None, big).is_err());
}
