//! rbox: rootless, daemonless containers.
//!
//! `main` only parses the command line, dispatches, and maps the outcome to an exit code
//! (see [`exit`]); everything else lives in `cmd/` (one file per subcommand) and `runtime/`.
//!
//! The entry point is C's `main` (`no_main`): std's own start-up reads /proc/self/maps to find
//! the main thread's stack (glibc's pthread_getattr_np) and maps an alternate signal stack
//! for its stack-overflow message (one per thread, too): about 70 us of each exec of rbox
//! on the benchmark machine, on the way to every container's start. What rbox needs of that
//! start-up, [`runtime::sys::start_process`] does: SIGPIPE ignored, closed stdio descriptors opened on
//! /dev/null. A stack overflow is then a plain SIGSEGV, and a panic still prints its message
//! and exits 101.
#![cfg_attr(not(test), no_main)]

mod build;
mod cli;
mod cmd;
mod config;
mod context;
mod events;
mod exit;
mod format;
mod layout;
mod logging;
mod mathsyms;
mod paths;
mod runtime;
mod state;

use std::process::ExitCode;

/// The process's entry (see the module's doc). Arguments reach `std::env::args` as with
/// std's start-up (glibc hands them to std's `.init_array` hook).
#[cfg(not(test))]
#[allow(unsafe_code)] // no_mangle: this is the C `main` glibc calls, with its signature
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    runtime::sys::start_process();
    let code = match std::panic::catch_unwind(rbox) {
        Ok(code) => exit::status(code),
        // the panic hook has said what happened; std's start-up exits 101 too
        Err(_) => 101,
    };
    // flushes stdout, as returning through std's start-up does
    std::process::exit(code)
}

#[cfg_attr(test, allow(dead_code))]
fn rbox() -> ExitCode {
    exit::quiet_on_closed_stdout();
    // Shell completion callbacks (`COMPLETE=bash rbox ...`) are answered before any parsing,
    // straight from the store, with no namespace entry and no lock.
    cli::complete_env();
    // `rbox-runtime` (a symlink to rbox): the OCI runtime's verbs at the top level
    if cmd::oci::invoked_as_runtime() {
        return cmd::oci::main_runtime();
    }
    let cli = cli::parse();
    if let Err(err) = logging::init(&cli.global.log_level, cli.global.syslog) {
        return exit::report(&err);
    }
    match cmd::dispatch(cli) {
        Ok(code) => code,
        // the command failed because Ctrl-C stopped it: Podman's quiet status
        Err(_) if rbox_storage::interrupt::requested() => ExitCode::from(exit::INTERRUPTED),
        Err(err) => exit::report(&err),
    }
}
