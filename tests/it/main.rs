//! rbox's integration tests: one test binary (ripgrep style), running the real `rbox` binary as
//! root and as each unprivileged test user (see `util`), on images the tests make offline (see
//! `fixtures`). Run with `cargo nextest run --workspace` (what `.ci/run` runs).

mod fixtures;
mod util;

mod commands;
mod debian;
mod docs;
mod errors;
mod hostile;
mod images;
mod lifecycle;
mod netshare;
mod network;
mod podman;
mod podman_habits;
mod registry;
mod run;
mod run_flags;
mod runtime_habits;
mod seccomp;
mod security;
mod system;
mod userns_state;
