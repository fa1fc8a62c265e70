//! `rbox logs`: what a container wrote (stdout and stderr in `ctr.log` in the container's
//! directory: kept by the monitor of a detached container, and by `rbox run`/`start --attach`
//! as they relay an attached one's output). `-f` follows until the container exits.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

use crate::cli::complete;
use crate::context::Context;
use crate::state;

#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// Keep printing as the container writes, until it exits
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Container (name or id)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub container: String,
}

pub fn run(g: &Context, a: LogsArgs) -> Result<ExitCode> {
    let rec = state::lookup(g, &a.container)?;
    let log = crate::layout::container_log(&g.storage_root()?, &rec.id);
    let mut f = match File::open(&log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if rec.state.started_at.is_empty() || !a.follow {
                // never started (or only by an rbox that kept no log of attached runs)
                return Ok(ExitCode::SUCCESS);
            }
            bail!(
                "container {} has no log: it ran before rbox kept logs of attached containers",
                rec.name
            );
        }
        Err(e) => return Err(e).with_context(|| format!("open `{}`", log.display())),
    };
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut f, &mut out).context("write logs")?;
    if !a.follow {
        return Ok(ExitCode::SUCCESS);
    }
    // Follow: wait for the log to change (inotify), print what was added, until the container
    // is no longer running.
    let mut pos = f.stream_position().context("seek log")?;
    loop {
        let running = state::lookup(g, &rec.id)
            .map(|r| state::is_running(&r))
            .unwrap_or(false);
        f.seek(SeekFrom::Start(pos)).context("seek log")?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).context("read log")?;
        pos += buf.len() as u64;
        out.write_all(&buf).context("write logs")?;
        out.flush().ok();
        if !running {
            return Ok(ExitCode::SUCCESS);
        }
        crate::runtime::sys::wait_modified(&log, std::time::Duration::from_secs(1));
    }
}
