//! `rbox attach CONTAINER`: the terminal (or the output and, with `-i`, the stdin) of a
//! detached container, through its monitor's attach socket (`runtime::console`). The detach
//! keys (Ctrl-P Ctrl-Q unless `--detach-keys` says otherwise) leave it running; otherwise
//! attach returns when the container's monitor ends. Either way it then prints a newline and
//! exits 0, whatever the container's code, as Podman 4.3's does (observed: `out\n\n`, exit 0,
//! for a container that printed `out` and exited 3; Docker's gives the code: `rbox wait`
//! does, as both do).

use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

use crate::cli::complete;
use crate::context::Context;
use crate::runtime::front;
use crate::state;

#[derive(Debug, Clone, clap::Args)]
pub struct AttachArgs {
    /// Keys that detach from the container and leave it running: a comma-separated list
    /// of ctrl-<value> and single characters (default ctrl-p,ctrl-q; empty: none)
    #[arg(long = "detach-keys", value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Do not attach stdin
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Pass the signals rbox receives on to the container (without a terminal)
    #[arg(long = "sig-proxy", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// The container created last
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Container (name or id)
    #[arg(value_name = "CONTAINER", required_unless_present = "latest", add = complete::container_candidates())]
    pub container: Option<String>,
}

pub fn run(g: &Context, a: AttachArgs) -> Result<ExitCode> {
    let names = super::targets::with_latest(g, a.latest, a.container.as_slice(), "containers")?;
    let [name] = &names[..] else {
        bail!("attach takes one container");
    };
    let rec = state::lookup(g, name)?;
    if !state::is_running(&rec) {
        bail!("you can only attach to running containers");
    }
    let keys = front::keys(a.detach_keys.as_deref())?;
    let dir = state::live_runtime_dir(g, &rec).context("find the container's runtime directory")?;
    let path = crate::layout::attach_socket(&dir, &rec.id);
    let sock = UnixStream::connect(&path).map_err(|e| {
        anyhow::anyhow!(
            "attach to container {}: {e} (a container run in the foreground by `rbox run` is attached there already)",
            rec.name
        )
    })?;
    let stdin = !a.no_stdin && (rec.spec.tty || rec.spec.interactive);
    let o = front::Options {
        keys,
        sig_proxy: a.sig_proxy,
        hidden: [false; 2],
    };
    front::attach(g, &rec, sock, o, stdin)?;
    println!();
    Ok(ExitCode::SUCCESS)
}
