//! `rbox save` (and `rbox image save`): write images as a docker-archive (what `docker load`
//! and `podman load` read) or an oci-archive, to `-o FILE` or stdout; as a directory laid out
//! as Podman's oci-dir (an OCI layout) or docker-dir (the "dir" transport, one image) to
//! `-o DIR`; or one image as a single-file squashfs image (`--format squashfs -o FILE`) that
//! `rbox run --image-file` mounts without unpacking. Reads the store only.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use rbox_storage::{DirFormat, Format, SaveLayers};

use super::common::{read_store, stdout_is_terminal};
use crate::cli::complete;
use crate::context::Context;

#[derive(Debug, Clone, clap::Args)]
pub struct SaveArgs {
    /// Write to FILE (default: stdout, refused when it is a terminal)
    #[arg(short = 'o', long = "output", value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub output: Option<PathBuf>,
    /// Archive format; oci-dir (an OCI layout) and docker-dir (a v2s2 manifest and its blobs,
    /// one image) are directories written to -o DIR (squashfs: one image's flattened root and
    /// config in one squashfs file, for `rbox run --image-file`; needs -o)
    #[arg(long, value_name = "FORMAT", default_value = "docker-archive",
          value_parser = ["docker-archive", "oci-archive", "oci-dir", "docker-dir", "squashfs"])]
    pub format: String,
    /// Write docker-dir layers gzip-compressed (as Podman, only with --format docker-dir,
    /// whose layers are plain tars otherwise)
    #[arg(long)]
    pub compress: bool,
    /// Write oci-archive and oci-dir layers as plain tars (the other formats' layers already
    /// are, or follow --compress)
    #[arg(long)]
    pub uncompressed: bool,
    /// Print nothing but errors
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Save every image named into one archive (rbox's archives always hold every image
    /// named; accepted as Podman spells it)
    #[arg(short = 'm', long = "multi-image-archive")]
    pub multi_image_archive: bool,
    /// Images to save (names or ids)
    #[arg(value_name = "IMAGE", required = true, add = complete::image_candidates())]
    pub images: Vec<String>,
}

pub fn run(g: &Context, a: SaveArgs) -> Result<ExitCode> {
    if a.compress && a.format != "docker-dir" {
        bail!("--compress can only be set when --format is 'docker-dir'");
    }
    crate::exit::stop_on_signals()?;
    if a.format == "squashfs" {
        return save_squashfs(g, &a);
    }
    let layers = if a.compress {
        SaveLayers::Gzip
    } else if a.uncompressed {
        SaveLayers::Uncompressed
    } else {
        SaveLayers::AsStored
    };
    let dir_format = match a.format.as_str() {
        "oci-dir" => Some(DirFormat::Oci),
        "docker-dir" => Some(DirFormat::Docker),
        _ => None,
    };
    if let Some(f) = dir_format {
        if a.output.is_none() {
            bail!("--format {} writes a directory: pass -o DIR", a.format);
        }
        if f == DirFormat::Docker && a.images.len() > 1 {
            bail!("unsupported format \"docker-dir\" for saving multiple images (only docker-archive, oci-archive and oci-dir)");
        }
    }
    let format = match a.format.as_str() {
        "oci-archive" => Format::OciArchive,
        _ => Format::DockerArchive,
    };
    if a.output.is_none() && stdout_is_terminal() {
        bail!("refusing to write an archive to a terminal: pass -o FILE or redirect stdout");
    }
    let store = read_store(g)?;
    // As Podman's archives: an image is written once, under the names it was asked by
    // (none when asked by id), not every name it has here.
    let mut images: Vec<rbox_storage::ImageRecord> = Vec::new();
    for name in &a.images {
        let rec = store.lookup_image(name)?;
        let asked = rbox_storage::meant_name(name, &rec.names);
        let i = match images.iter().position(|r| r.id == rec.id) {
            Some(i) => i,
            None => {
                images.push(rbox_storage::ImageRecord {
                    names: Vec::new(),
                    ..rec
                });
                images.len() - 1
            }
        };
        if let Some(n) = asked.filter(|n| !images[i].names.contains(n)) {
            images[i].names.push(n);
        }
    }
    match (&a.output, dir_format) {
        (Some(path), Some(f)) => save_dir(&store, &images, path, f, layers)?,
        (None, _) => {
            let mut out = BufWriter::new(io::stdout().lock());
            store
                .save_archive(&images, &mut out, format, layers)
                .context("write the archive to stdout")?;
            out.flush().context("write the archive to stdout")?;
        }
        (Some(path), None) => {
            // Write next to the target and rename, so a failed save leaves no half archive.
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = path.with_file_name(format!(".{name}.rbox-save-{}", std::process::id()));
            let res = (|| -> Result<()> {
                let f = fs::File::create(&tmp)
                    .with_context(|| format!("create `{}`", tmp.display()))?;
                let mut w = BufWriter::new(f);
                store.save_archive(&images, &mut w, format, layers)?;
                let f = w.into_inner().map_err(|e| e.into_error())?;
                f.sync_all()?;
                fs::rename(&tmp, path)?;
                Ok(())
            })();
            if let Err(e) = res {
                let _ = fs::remove_file(&tmp);
                return Err(e.context(format!("save to `{}`", path.display())));
            }
        }
    }
    for i in &a.images {
        crate::events::image(g, "save", "", i);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--format oci-dir|docker-dir`: written into a directory next to `path` and renamed onto it,
/// so a failed save leaves nothing; `path` may be an empty directory (rename(2) replaces it),
/// anything else there is refused rather than mixed with.
fn save_dir(
    store: &rbox_storage::Store,
    images: &[rbox_storage::ImageRecord],
    path: &std::path::Path,
    format: DirFormat,
    layers: SaveLayers,
) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.rbox-save-{}", std::process::id()));
    fs::create_dir(&tmp).with_context(|| format!("create `{}`", tmp.display()))?;
    let res = store
        .save_dir(images, &tmp, format, layers)
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            fs::rename(&tmp, path).map_err(|e| match e.raw_os_error() {
                Some(libc::ENOTEMPTY) | Some(libc::EEXIST) | Some(libc::ENOTDIR) => {
                    anyhow::anyhow!("it exists and is not an empty directory")
                }
                _ => e.into(),
            })
        });
    if let Err(e) = res {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e.context(format!("save to `{}`", path.display())));
    }
    Ok(())
}

/// `--format squashfs`: one image, to `-o FILE`, written under a temporary name next to it and
/// renamed, so a failed save leaves nothing. Runs in rbox's user namespace, where the layer
/// files show the image's own owners, which the squashfs keeps.
fn save_squashfs(g: &Context, a: &SaveArgs) -> Result<ExitCode> {
    let [image] = &a.images[..] else {
        bail!("--format squashfs saves one image, not {}", a.images.len());
    };
    let Some(path) = &a.output else {
        bail!("--format squashfs needs -o FILE: a squashfs image cannot be written to a stream");
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.rbox-save-{}", std::process::id()));
    let store = crate::runtime::open_store(g)?;
    let rec = store.lookup_image(image)?;
    let res = rbox_storage::mount::squash::write_image(&store, &rec, &tmp)
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            fs::File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, path)?;
            Ok(())
        });
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(e.context(format!("save to `{}`", path.display())));
    }
    Ok(ExitCode::SUCCESS)
}
