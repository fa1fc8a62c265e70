//! Exit codes, written down once (the same table is in README.md and rbox-run(1)):
//! 125 rbox itself failed, 126 the command cannot be invoked, 127 the command was not found,
//! otherwise the container's own status, 128+n when it was killed by signal n.

use std::process::ExitCode;

/// rbox itself failed (bad input, storage, namespace setup).
pub const FAILED: u8 = 125;
/// The container command exists but cannot be invoked (permission, not executable).
pub const CANNOT_INVOKE: u8 = 126;
/// The container command was not found.
pub const NOT_FOUND: u8 = 127;
/// `rm`/`rmi`: the only failures were unknown containers or images (as Podman's rm and rmi).
pub const NOT_KNOWN: u8 = 1;
/// `rmi`: an image is in use by a container (as Podman's rmi).
pub const IN_USE: u8 = 2;
/// `rm`: a container runs, and no `-f` (as Podman's rm: "container state improper").
pub const STATE_IMPROPER: u8 = 2;

/// A pull, build, commit, save, load or import stopped by SIGINT, SIGTERM or SIGHUP (Ctrl-C): no
/// message, as Podman's (checked with podman 4.3: exit 1 and nothing printed).
pub const INTERRUPTED: u8 = 1;

/// For the commands whose long work is in the store's byte streams (pull, commit, save,
/// load, import): Ctrl-C asks those streams to stop (`rbox_storage::interrupt`) instead of killing
/// rbox half-way through a write, so the command's staging in `tmp/` is removed and the
/// store stays as it was; `main` then exits [`INTERRUPTED`]. A second Ctrl-C does nothing
/// more: the first one is already being obeyed.
pub fn stop_on_signals() -> anyhow::Result<()> {
    extern "C" fn on_signal(_: libc::c_int) {
        rbox_storage::interrupt::request();
    }
    crate::runtime::sys::catch_stop_signals(on_signal)
        .and_then(|()| rbox_storage::interrupt::catch_wake_signal())
        .map_err(|e| anyhow::anyhow!("catch SIGINT: {e}"))
}

/// An error that carries the exit code it must produce; anything else exits 125.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct CodedError {
    pub code: u8,
    pub msg: String,
    /// `msg` is Podman's multi-error form, printed on its several lines ([`CodedError::list`]).
    lines: bool,
}

impl CodedError {
    pub fn new(code: u8, msg: impl Into<String>) -> Self {
        CodedError {
            code,
            msg: msg.into(),
            lines: false,
        }
    }

    /// Several errors of one command in the form Podman prints them (Go's multierror), which
    /// scripts match: "2 errors occurred:" then a tab-indented "* ERROR" line for each; one
    /// error alone is just itself.
    pub fn list(code: u8, errors: &[String]) -> Self {
        match errors {
            [one] => CodedError::new(code, one.clone()),
            _ => CodedError {
                code,
                msg: format!(
                    "{} errors occurred:{}",
                    errors.len(),
                    errors
                        .iter()
                        .map(|e| format!("\n\t* {e}"))
                        .collect::<String>()
                ),
                lines: true,
            },
        }
    }
}

/// The exit code `err` carries: its [`CodedError`]'s, else [`FAILED`].
pub fn code_of(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<CodedError>()
        .map(|c| c.code)
        .unwrap_or(FAILED)
}

/// Print `err` as one line on stderr (a [`CodedError::list`] on its lines) and return its
/// exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    let code = code_of(err);
    // `{:#}` joins the context chain with ": " into one sentence.
    let mut line = format!("{err:#}");
    if !err.downcast_ref::<CodedError>().is_some_and(|c| c.lines) {
        line = line.replace('\n', " ");
    }
    eprintln!("Error: {line}");
    ExitCode::from(code)
}

/// The exit code for a wait status: the status itself, or 128+n for signal n.
pub fn from_wait(status: nix::sys::wait::WaitStatus) -> u8 {
    use nix::sys::wait::WaitStatus;
    match status {
        WaitStatus::Exited(_, c) => c as u8,
        WaitStatus::Signaled(_, sig, _) => 128u8.wrapping_add(sig as i32 as u8),
        _ => FAILED,
    }
}

/// A reader that closes rbox's output early (`rbox ps | head -1`) ends rbox as SIGPIPE ends a
/// C program: quietly, with the shell's status 141. Rust ignores SIGPIPE, so `println!`
/// panics on the broken pipe instead; this hook turns exactly that panic into the quiet exit
/// and leaves every other panic to the default hook. Restoring SIGPIPE itself is not an option:
/// the monitor and the attached relay write to pipes and sockets whose readers may go away.
pub fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// The status an [`ExitCode`] stands for (std has no stable way to read it back).
#[cfg_attr(test, allow(dead_code))]
pub fn status(code: ExitCode) -> i32 {
    (0..=255u8)
        .find(|&n| ExitCode::from(n) == code)
        .map_or(1, i32::from)
}
