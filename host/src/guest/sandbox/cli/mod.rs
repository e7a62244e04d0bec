//! wasi:cli as an instance sees it: the environment is the sandbox's (only
//! `SERVER_ID` and `--env`), stdin is empty, and stdout and stderr go into
//! the log a line at a time (`output`).

pub(crate) mod output;
