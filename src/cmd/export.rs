//! `rbox export` (and `container export`): a container's whole root filesystem as one flat
//! tar (the image's layers and the container's changes, whiteouts applied; owners as the image
//! gives them), to a file (`-o`) or to stdout, which must not be a terminal. `rbox import` makes
//! an image of it again.

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use rbox_storage::Driver;

use crate::cli::complete;
use crate::context::Context;
use crate::runtime;
use crate::state;

#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Write to a specified file (default: stdout, which must be redirected)
    #[arg(short = 'o', long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub output: Option<PathBuf>,
    /// The container (name or id)
    #[arg(value_name = "CONTAINER", add = complete::container_candidates())]
    pub container: String,
}

pub fn run(g: &Context, a: ExportArgs) -> Result<ExitCode> {
    if a.output.is_none() && io::stdout().is_terminal() {
        // Podman's words
        bail!("refusing to export to terminal. Use -o flag or redirect");
    }
    let rec = state::lookup(g, &a.container)?;
    if let Some(f) = &rec.image_file {
        // its lower layer is the squashfs, mounted only inside the container
        bail!(
            "export container {}: its root is the image file `{}` (--image-file): unsquashfs it instead",
            rec.name,
            f.display()
        );
    }
    // The file is created before entering the user namespace: it belongs to the caller.
    let out: Box<dyn Write> = match &a.output {
        Some(p) => {
            Box::new(fs::File::create(p).with_context(|| format!("create `{}`", p.display()))?)
        }
        None => Box::new(io::stdout().lock()),
    };
    let store = runtime::open_store(g)?;
    let dir = store.container_dir(&rec.id)?;
    // Podman mounts the container's root to export it, and logs that (its `mount` event,
    // observed in 4.3; rbox reads the layers in place)
    crate::events::container(g, &rec, "mount");
    let mut dirs = Vec::new();
    match (&dir.host_root, rec.driver) {
        (_, Driver::Copy) => dirs.push(dir.rootfs.clone()),
        (Some(h), _) => {
            dirs.push(dir.upper.clone());
            dirs.push(h.clone());
        }
        (None, _) => {
            dirs.push(dir.upper.clone());
            dirs.extend(dir.lower_dirs.iter().cloned());
        }
    }
    let skip: Vec<&str> = super::diff::MOUNT_POINTS
        .iter()
        .map(|p| p.trim_start_matches('/'))
        .filter(|p| !super::diff::lower_exists(&dir.lower_dirs, std::path::Path::new(p)))
        .collect();
    let dirs: Vec<&std::path::Path> = dirs.iter().map(PathBuf::as_path).collect();
    let mut out = io::BufWriter::with_capacity(256 * 1024, out);
    let written = rbox_storage::changes::write_union_tar(&dirs, &skip, &mut out)
        .map_err(anyhow::Error::from)
        .and_then(|_| out.flush().map_err(anyhow::Error::from));
    if let Err(e) = written {
        // No half-written file left behind under the name the caller asked for.
        if let Some(p) = &a.output {
            let _ = fs::remove_file(p);
        }
        return Err(e.context(format!("export container {}", rec.name)));
    }
    Ok(ExitCode::SUCCESS)
}
