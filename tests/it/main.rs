//! rbox's integration tests: one test binary (ripgrep style), running the real `rbox` binary as
//! root and as each unprivileged test user (see `util`), on images the tests make offline (see
//! `fixtures`). Run with `cargo nextest run --workspace` (what `.ci/run` runs).

mod fixtures;
mod util;

mod attach_relay;
mod build;
mod build2;
mod build_cache;
mod cdi;
mod cgroups;
mod cli_compat;
mod commands;
mod commit;
mod cp_diff;
mod debian;
mod detach;
mod docs;
mod errors;
mod fakeroot;
mod fuse;
mod fuse_auto;
mod fuse_perf;
mod fuse_suite;
mod hostile;
mod images;
mod imagestore;
mod lifecycle;
mod net_helpers;
mod net_hosts;
mod netshare;
mod network;
mod ociconform;
mod ociruntime;
mod owners;
mod podman;
mod podman_habits;
mod procs;
mod registry;
mod run;
mod run_flags;
mod run_flags2;
mod runtime_habits;
mod seccomp;
mod security;
mod slurm;
mod sqfs;
mod startup;
mod system;
mod userns2;
mod userns_nomap;
mod userns_shift;
mod userns_state;
mod volumes;
