//! What a guest's call comes to: a response or why there is none
//! (`answer`), the body it is sent with (`reply`), and the place the request
//! holds under `--max-concurrency` while it keeps a guest busy (`slot`).

pub(crate) mod answer;
pub(crate) mod reply;
pub(crate) mod slot;
