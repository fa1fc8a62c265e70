//! `rbox build` (also `rbox image build` and `rbox buildx build`): its flags, as Podman spells
//! them, handed to the builder (`build/`) as plain [`build::Options`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use rbox_registry::PullOptions;
use rbox_storage::{ImageRecord, Store};

use crate::build;
use crate::context::Context;
use crate::runtime;

#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// Name (and tag) of the resulting image; repeatable
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tag: Vec<String>,
    /// The Containerfile (- for stdin); default: Containerfile, else Dockerfile, in CONTEXT
    #[arg(short = 'f', long = "file", value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub file: Vec<PathBuf>,
    /// Build the stage of this name and the stages it needs, and stop
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Do not use cached steps (each step runs, and is cached again with --layers)
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Pass the caller's proxy variables (http_proxy, https_proxy, ftp_proxy, no_proxy, in
    /// either case) into RUN steps, under the build args and ENV (not into the image)
    #[arg(long = "http-proxy", value_name = "BOOL", num_args = 0..=1, default_value_t = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub http_proxy: bool,
    /// Cache each step as an intermediate image, reused by later builds
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_value_t = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub layers: bool,
    /// Pull policy of FROM images: missing, always, never, newer (alone: always)
    #[arg(long, value_name = "POLICY", num_args = 0..=1, default_value = "missing",
          default_missing_value = "always", require_equals = true)]
    pub pull: String,
    /// Squash the layers the build adds into one (the base image's layers stay)
    #[arg(long)]
    pub squash: bool,
    /// Squash all the image's layers, the base's too, into one
    #[arg(long = "squash-all")]
    pub squash_all: bool,
    /// Write the image id to FILE
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Add a label to the image (KEY=VALUE)
    #[arg(long = "label", value_name = "LABEL")]
    pub label: Vec<String>,
    /// A value for an ARG (KEY=VALUE, or KEY to take the caller's variable)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_arg: Vec<String>,
    /// Manifest and config format: oci or docker
    #[arg(long, value_name = "FORMAT", default_value = "oci")]
    pub format: String,
    /// Print nothing but the image id
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Network of RUN steps, as `rbox run --network` (default: as run)
    #[arg(long = "network", alias = "net", value_name = "MODE")]
    pub network: Option<String>,
    /// Platform of FROM images to pull (os/arch[/variant])
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Compression of the layers: gzip (default) or zstd
    #[arg(long = "compression-format", value_name = "FORMAT")]
    pub compression_format: Option<String>,
    /// Remove intermediate containers (always: accepted for compatibility)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_value_t = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub rm: bool,
    /// Remove intermediate containers even after a failed step (always)
    #[arg(long = "force-rm", value_name = "BOOL", num_args = 0..=1, default_value_t = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub force_rm: bool,
    /// A secret for `RUN --mount=type=secret,id=ID`: id=ID,src=FILE
    #[arg(long, value_name = "id=ID,src=FILE")]
    pub secret: Vec<String>,
    /// How many independent stages build at the same time (0: no limit); default: the
    /// number of CPUs (Podman's is 1). The output is the same as one at a time
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Repository to look a step missing from the local cache up in (its intermediate
    /// image, tagged with the step's cache key); repeatable
    #[arg(long = "cache-from", value_name = "REPO")]
    pub cache_from: Vec<String>,
    /// Repository to push the intermediate image of each step built to, tagged with the
    /// step's cache key; repeatable
    #[arg(long = "cache-to", value_name = "REPO")]
    pub cache_to: Vec<String>,
    /// Use only cached steps whose images were made less than DURATION ago (e.g. 10h)
    #[arg(long = "cache-ttl", value_name = "DURATION")]
    pub cache_ttl: Option<String>,
    /// Set the image's creation time, its new history entries' and every file's time in its
    /// new layers to SECONDS since the epoch, for reproducible builds
    #[arg(long, value_name = "SECONDS")]
    pub timestamp: Option<u64>,
    // boxed: `rbox image build`'s variant stays near the size of the others
    #[command(flatten)]
    pub registry: Box<super::pull::RegistryFlags>,
    /// The build context: a directory
    #[arg(value_name = "CONTEXT", value_hint = clap::ValueHint::DirPath)]
    pub context: Option<PathBuf>,
}

/// `rbox buildx`: Docker's builder group, whose `build` is rbox's.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildxArgs {
    #[command(subcommand)]
    pub command: BuildxCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BuildxCommand {
    /// Build an image from a Containerfile
    Build(BuildArgs),
}

pub fn run(g: &Context, a: BuildArgs) -> Result<ExitCode> {
    if !matches!(a.format.as_str(), "oci" | "docker") {
        bail!("unrecognized image type {:?}", a.format);
    }
    if a.file.len() > 1 {
        bail!(
            "only one Containerfile is supported (-f given {} times)",
            a.file.len()
        );
    }
    let cache_ttl = a
        .cache_ttl
        .as_deref()
        .map(|t| {
            humantime::parse_duration(t)
                .map_err(|e| anyhow::anyhow!("invalid --cache-ttl `{t}`: {e}"))
        })
        .transpose()?;
    let transport = a.registry.transport()?;
    let o = build::Options {
        cache_from: a.cache_from,
        cache_to: a.cache_to,
        cache_ttl,
        transport,
        timestamp: a.timestamp,
        file: a.file.into_iter().next(),
        context: a.context.unwrap_or_else(|| PathBuf::from(".")),
        tags: a.tag,
        target: a.target,
        no_cache: a.no_cache,
        layers: a.layers,
        pull: a.pull,
        iidfile: a.iidfile,
        labels: a.label,
        build_args: a.build_arg,
        format: a.format,
        quiet: a.quiet,
        network: a.network,
        platform: a.platform,
        compression: a.compression_format,
        secrets: a.secret,
        squash: a.squash,
        squash_all: a.squash_all,
        http_proxy: a.http_proxy,
        jobs: a.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }),
    };
    build::build(g, &o, &ShowPull { quiet: o.quiet })
}

/// Pulls a FROM image as `rbox pull` does.
struct ShowPull {
    quiet: bool,
}

impl runtime::Puller for ShowPull {
    fn pull(&self, store: &Store, image: &str, opts: &PullOptions) -> Result<ImageRecord> {
        super::pull::pull_image(store, image, opts, self.quiet)
    }
}
