//! `rbox push IMAGE [DESTINATION]`: upload a stored image to a registry, as
//! `podman push` does (DESTINATION is `docker://HOST/REPO[:TAG]` or `HOST/REPO[:TAG]`; without
//! it the image's own name says where). The work is `rbox_registry::push`; progress is drawn
//! by `pull`'s display. Runs inside rbox's user namespace, where the store's files are ours.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use rbox_registry::PushOptions;
use rbox_storage::{Compression, ManifestFormat};

use crate::cmd::pull::{Display, RegistryFlags};
use crate::context::Context;
use crate::runtime;

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Print nothing but errors
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the pushed manifest's digest to FILE
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub digestfile: Option<PathBuf>,
    /// Manifest type to write: oci or v2s2 [default: the stored image's]
    #[arg(short = 'f', long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Compress layers compressed otherwise anew with gzip or zstd [default: as stored]
    #[arg(long = "compression-format", value_name = "FORMAT")]
    pub compression_format: Option<String>,
    /// Compress layers for a dir: destination (accepted for Podman compatibility: registry
    /// layers are always pushed compressed)
    #[arg(long)]
    pub compress: bool,
    /// Discard the image's signatures (accepted: rbox stores none)
    #[arg(long = "remove-signatures")]
    pub remove_signatures: bool,
    /// Does nothing: a Docker option Podman accepts as a no-op, as rbox does
    #[arg(long = "disable-content-trust")]
    pub disable_content_trust: bool,
    /// Sign with this GPG key: refused, rbox does not sign images
    #[arg(long = "sign-by", value_name = "KEY")]
    pub sign_by: Option<String>,
    /// Sign with this sigstore private key: refused, rbox does not sign images
    #[arg(
        long = "sign-by-sigstore-private-key",
        value_name = "PATH",
        value_hint = clap::ValueHint::FilePath
    )]
    pub sign_by_sigstore_private_key: Option<PathBuf>,
    /// Passphrase file for signing: refused, rbox does not sign images
    #[arg(
        long = "sign-passphrase-file",
        value_name = "PATH",
        value_hint = clap::ValueHint::FilePath
    )]
    pub sign_passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// Local image to push (name or id)
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Where to push it: [docker://]HOST[:PORT]/REPO[:TAG] [default: the image's name]
    #[arg(value_name = "DESTINATION")]
    pub destination: Option<String>,
}

pub fn run(g: &Context, a: PushArgs) -> Result<ExitCode> {
    if let Some(flag) = [
        a.sign_by.is_some().then_some("--sign-by"),
        a.sign_by_sigstore_private_key
            .is_some()
            .then_some("--sign-by-sigstore-private-key"),
        a.sign_passphrase_file
            .is_some()
            .then_some("--sign-passphrase-file"),
    ]
    .into_iter()
    .flatten()
    .next()
    {
        bail!("{flag}: rbox does not sign images; push without it");
    }
    let opts = PushOptions {
        transport: a.registry.transport()?,
        format: a.format.as_deref().map(manifest_format).transpose()?,
        compression: a
            .compression_format
            .as_deref()
            .map(compression_format)
            .transpose()?,
        ..Default::default()
    };
    let store = runtime::open_store(g)?;
    let display = Display::new(a.quiet);
    let res = rbox_registry::push(&store, &a.image, a.destination.as_deref(), &opts, &display);
    display.finish();
    let shown = a.destination.as_deref().unwrap_or(&a.image);
    let report = res
        .with_context(|| format!("push `{}` to `{shown}`", a.image))
        .map_err(super::common::image_not_known_bare)?;
    if let Some(f) = &a.digestfile {
        std::fs::write(f, report.digest.to_string())
            .with_context(|| format!("write `{}`", f.display()))?;
    }
    crate::events::image(g, "push", "", shown);
    Ok(ExitCode::SUCCESS)
}

/// `--format`, as Podman spells the manifest types.
fn manifest_format(s: &str) -> Result<ManifestFormat> {
    match s {
        "oci" => Ok(ManifestFormat::Oci),
        "v2s2" => Ok(ManifestFormat::Docker),
        "v2s1" => bail!("format v2s1: rbox does not write schema 1 manifests; use oci or v2s2"),
        _ => bail!("unknown format \"{s}\": choose oci or v2s2"),
    }
}

/// `--compression-format`, refused in Podman's words.
fn compression_format(s: &str) -> Result<Compression> {
    match s {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        _ => bail!("cannot find compressor for \"{s}\""),
    }
}
