//! wasi:http as an instance may use it beyond upstream's implementation:
//! outgoing requests only to `--allow-outbound` hosts, the headers no guest
//! may set, and the hooks that bound what a body holds (`outbound`); a 0.2
//! response to HEAD opened without upstream's body-size check (`head`).

pub(crate) mod head;
pub(crate) mod outbound;
