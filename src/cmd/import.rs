//! `rbox import` (and `rbox image import`): make a one-layer image from a root filesystem
//! tarball (plain, gzip or zstd), from a file or `-` for stdin. `--change` applies Dockerfile
//! instructions (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL) to the
//! generated config. Runs inside rbox's user namespace (the layer keeps its owners).

use std::fs;
use std::io::{self, BufReader, IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

use crate::context::Context;
use crate::runtime;

#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction to the image config (e.g. 'CMD ["/bin/sh"]')
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub change: Vec<String>,
    /// Set the comment of the image's history entry (default: imported from tarball)
    #[arg(short = 'm', long, value_name = "MESSAGE")]
    pub message: Option<String>,
    /// Set the image's architecture (default: the host's)
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Set the image's operating system (default: linux)
    #[arg(long, value_name = "OS")]
    pub os: Option<String>,
    /// Set the image's architecture variant (e.g. v8)
    #[arg(long, value_name = "VARIANT")]
    pub variant: Option<String>,
    /// Print nothing but the image id
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// The tarball, or - for stdin
    #[arg(value_name = "TARBALL", value_hint = clap::ValueHint::FilePath)]
    pub source: String,
    /// Name for the image (NAME[:TAG]; without a registry it goes under localhost/)
    #[arg(value_name = "NAME[:TAG]")]
    pub reference: Option<String>,
}

pub fn run(g: &Context, a: ImportArgs) -> Result<ExitCode> {
    crate::exit::stop_on_signals()?;
    if a.source.contains("://") {
        bail!(
            "import from a URL is not supported: download `{}` first and import the file",
            a.source
        );
    }
    if a.source == "-" && io::stdin().is_terminal() {
        bail!("no tarball on stdin: pipe one into rbox import -, or name a file");
    }
    let store = runtime::open_store(g)?;
    let reader: Box<dyn Read> = if a.source == "-" {
        Box::new(io::stdin().lock())
    } else {
        let f = fs::File::open(&a.source).with_context(|| format!("open `{}`", a.source))?;
        Box::new(BufReader::new(f))
    };
    let rec = store
        .import_rootfs_with(
            reader,
            a.reference.as_deref(),
            &a.change,
            &rbox_storage::ImportOptions {
                comment: a.message,
                arch: a.arch,
                os: a.os,
                variant: a.variant,
            },
        )
        .with_context(|| format!("import `{}`", a.source))?;
    // as Podman prints it
    println!("{}", rec.id);
    let name = rec.names.first().map_or("", String::as_str);
    crate::events::image(g, "import", rec.id.hex(), name);
    Ok(ExitCode::SUCCESS)
}
