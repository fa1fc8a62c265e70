//! rbox: rootless, daemonless containers.
//!
//! `main` only parses the command line, dispatches, and maps the outcome to an exit code
//! (see [`exit`]); everything else lives in `cmd/` (one file per subcommand) and `runtime/`.

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
mod paths;
mod runtime;
mod state;

use std::process::ExitCode;

fn main() -> ExitCode {
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
