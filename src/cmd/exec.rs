//! `rbox exec`: run a command in a running container, through `runtime::exec`. It never enters
//! rbox's own user namespace: it joins the container's.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::complete;
use crate::context::Context;
use crate::runtime::exec::ExecOptions;
use crate::state;

#[derive(Debug, Clone, clap::Args)]
#[command(trailing_var_arg = true)]
pub struct ExecArgs {
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set environment variables (KEY=VALUE, or KEY to pass the caller's value)
    #[arg(short = 'e', long = "env", value_name = "ENV")]
    pub env: Vec<String>,
    /// Read environment variables from a file of KEY=VALUE lines
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Username or UID, with an optional group (user[:group])
    #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Give the process every capability
    #[arg(long)]
    pub privileged: bool,
    /// Run the command in the background: return once it runs, its output discarded
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Pass N more file descriptors (3 to 3+N-1) on to the command
    #[arg(long = "preserve-fds", value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Keys that, typed on a terminal (`-it`), leave the command running: a comma-separated
    /// list of ctrl-<value> and single characters (default ctrl-p,ctrl-q; empty: none)
    #[arg(long = "detach-keys", value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Run in the container created last (every argument is then the command)
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Container to run the command in (name or id)
    #[arg(value_name = "CONTAINER", required_unless_present = "latest", add = complete::container_candidates())]
    pub container: Option<String>,
    /// Command and arguments
    // optional for clap: a missing one is refused after the container's lookup, in Podman's
    // words, as Podman checks them in that order
    #[arg(
        value_name = "COMMAND",
        allow_hyphen_values = true,
        value_parser = clap::value_parser!(std::ffi::OsString)
    )]
    pub command: Vec<std::ffi::OsString>,
}

pub fn run(g: &Context, mut a: ExecArgs) -> Result<ExitCode> {
    let detach_keys = crate::runtime::front::keys(a.detach_keys.as_deref())?;
    let rec = match a.container.take() {
        Some(name) if !a.latest => state::lookup(g, &name)?,
        first => {
            // no container named: the first word is the command's
            a.command.splice(0..0, first.map(Into::into));
            state::latest(g)?
        }
    };
    if a.command.is_empty() {
        // Podman's words (its exit code, 255, is not taken: a refused command line is 125)
        bail!("must provide a non-empty command to start an exec session: invalid argument");
    }
    // Podman's words for a container created, exited or paused (its exit code, 255, is not
    // taken: a refused command line is rbox's 125)
    let running = state::live_pids(g, &rec).filter(|_| state::is_running(&rec));
    let Some((pid, _)) = running.filter(|_| !state::is_paused(g, &rec)) else {
        bail!("can only create exec sessions on running containers: container state improper");
    };
    // a container (re)starting under its monitor: its init still sets up until it runs the
    // command, and joining its namespaces then would see them change (a pivot_root moves
    // our root along)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !state::command_started(g, &rec) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let lookup = |k: &str| std::env::var(k).ok();
    let mut env = Vec::new();
    for f in &a.env_file {
        let text = crate::runtime::spec::read_flag_file(f, "env file")?;
        env.extend(crate::runtime::spec::parse_env_file(&text, &lookup)?);
    }
    for e in &a.env {
        env.extend(crate::runtime::spec::parse_env_file(e, &lookup)?);
    }
    if let Some(w) = &a.workdir {
        if !w.starts_with('/') {
            bail!("invalid working directory `{w}`: it must be an absolute path");
        }
    }
    let opts = ExecOptions {
        args: a.command,
        env,
        user: a.user,
        workdir: a.workdir,
        // a detached command has no one on a terminal's other end, whose going would hang
        // it up (Podman's conmon keeps one): it runs without (`-dt` as `-d`)
        tty: a.tty && !a.detach,
        interactive: a.interactive && !a.detach,
        privileged: a.privileged,
        detach: a.detach,
        preserve_fds: a.preserve_fds,
        detach_keys,
        store: g.storage_root()?,
    };
    crate::events::container(g, &rec, "exec");
    // the session's end as Podman logs it (`-d`: seen by the session's holder; an exec
    // detached by the keys has no rbox process left to see it end), through the log opened
    // here: exec ends in the container's mount namespace
    let later = crate::events::Later::open(g);
    // `-d`: a session Podman prints (and `inspect` lists in ExecIDs), recorded before exec
    // enters the container's mount namespace
    let session = if a.detach {
        Some(state::new_exec_session(g, &rec)?)
    } else {
        None
    };
    let ran = crate::runtime::exec::exec(&rec, pid, &opts, &|code| {
        later.exited(&rec, "exec_died", i32::from(code))
    });
    if let Some(id) = session {
        // (with `-d` this process joined no namespace: the holder did)
        match &ran {
            Ok(_) => println!("{id}"),
            Err(_) => state::forget_exec_session(g, &rec, &id),
        }
    }
    ran
}
