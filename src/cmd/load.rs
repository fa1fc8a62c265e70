//! `rbox load` (and `rbox image load`): load images from a docker-archive or oci-archive
//! (detected automatically; gzip or zstd compressed archives too), from `-i FILE` or stdin.
//! Runs inside rbox's user namespace, since layers are unpacked with their owners.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

use crate::context::Context;
use crate::runtime;

#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Read the archive from FILE (default: stdin)
    #[arg(short = 'i', long = "input", value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub input: Option<PathBuf>,
    /// Print nothing but errors
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

pub fn run(g: &Context, a: LoadArgs) -> Result<ExitCode> {
    crate::exit::stop_on_signals()?;
    if a.input.is_none() && io::stdin().is_terminal() {
        bail!("no archive given: pass -i FILE or pipe one into rbox load");
    }
    let store = runtime::open_store(g)?;
    // The archive is read once, front to back: stdin is streamed, not spooled.
    let res = match &a.input {
        Some(p) => store.load_archive(p),
        None => store.load_archive_from(io::stdin().lock()),
    };
    let images = res.with_context(|| match &a.input {
        Some(p) => format!("load `{}`", p.display()),
        None => "load the archive from stdin".to_string(),
    })?;
    for rec in &images {
        let name = rec.names.first().map_or("", String::as_str);
        crate::events::image(g, "load", rec.id.hex(), name);
    }
    if !a.quiet {
        for rec in &images {
            if rec.names.is_empty() {
                println!("Loaded image: {}", rec.id);
            }
            for n in &rec.names {
                println!("Loaded image: {n}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
