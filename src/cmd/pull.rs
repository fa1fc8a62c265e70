//! `rbox pull`: copy images from a registry into the store, with the flags registry commands
//! share ([`RegistryFlags`]) and the progress display ([`Display`]: bars per layer and in total
//! on a terminal, plain lines otherwise, nothing with `-q`) that `push` and `run` reuse.
//! The work itself is `rbox_registry::pull`; this file only parses flags and renders.
//! Runs inside rbox's user namespace, since layers are unpacked with their owners.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{bail, Context as _, Result};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbox_registry::progress::Skip;
use rbox_registry::{
    Credentials, Digest, Platform, Progress, PullOptions, PullPolicy, TransportOptions,
};
use rbox_storage::{ImageRecord, Store};

use crate::context::Context;
use crate::runtime;

/// Flags every registry command takes, spelled as Podman spells them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryFlags {
    /// Require HTTPS and verify certificates (--tls-verify=false allows plain HTTP and
    /// unverified TLS) [default: registries.conf, else true]
    #[arg(
        long = "tls-verify",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub tls_verify: Option<bool>,
    /// Directory of CA certificates (*.crt) and client keys (*.cert, *.key) for the registry,
    /// instead of certs.d
    #[arg(long = "cert-dir", value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub cert_dir: Option<PathBuf>,
    /// Credentials file [default: $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json]
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub authfile: Option<PathBuf>,
    /// Credentials USER:PASSWORD for the registry (instead of stored ones)
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,
}

impl RegistryFlags {
    /// The library's transport options from these flags.
    pub fn transport(&self) -> Result<TransportOptions> {
        let credentials = match &self.creds {
            None => None,
            Some(c) => Some(
                Credentials::parse_user_pass(c)
                    .with_context(|| "invalid --creds: expected USER:PASSWORD".to_string())?,
            ),
        };
        Ok(TransportOptions {
            tls_verify: self.tls_verify,
            cert_dir: self.cert_dir.clone(),
            authfile: self.authfile.clone(),
            credentials,
            // registries.conf is found by the library ($CONTAINERS_REGISTRIES_CONF included).
            registries_conf: None,
        })
    }
}

/// `--platform`, `--arch`, `--os`, `--variant`: the platform to pull from a multi-platform
/// image, declared once for `pull`, `run` and `create`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PlatformFlags {
    /// Platform to choose from a multi-platform image [default: the host's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Architecture to choose (overrides the host's)
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Operating system to choose (overrides the host's)
    #[arg(long, value_name = "OS")]
    pub os: Option<String>,
    /// Architecture variant to choose (e.g. v7)
    #[arg(long, value_name = "VARIANT")]
    pub variant: Option<String>,
}

impl PlatformFlags {
    /// The platform asked for, the host's for the parts not given; `None` when no flag is
    /// (a multi-platform image then gives the host's). `--platform` beside `--arch`, `--os`
    /// or `--variant` is refused in Podman's words.
    pub fn chosen(&self) -> Result<Option<Platform>> {
        let (os, arch, variant) = (
            self.os.as_deref(),
            self.arch.as_deref(),
            self.variant.as_deref(),
        );
        if os.is_none() && arch.is_none() && variant.is_none() {
            return Ok(self.platform.as_deref().map(Platform::parse).transpose()?);
        }
        if self.platform.is_some() {
            bail!("--platform option can not be specified with --arch or --os");
        }
        Ok(Some(Platform::from_flags(None, os, arch, variant)?))
    }
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Pull every tag of the repository (as Podman 4.3, the tag or digest given is ignored)
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Print only the image id
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[command(flatten)]
    pub platform: PlatformFlags,
    /// When to contact the registry: always, missing, never, newer
    #[arg(long, value_name = "POLICY", default_value = "always")]
    pub policy: String,
    /// Does nothing: a Docker option Podman accepts as a no-op, as rbox does
    #[arg(long = "disable-content-trust")]
    pub disable_content_trust: bool,
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// Images to pull: NAME[:TAG], NAME@DIGEST, docker://NAME
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

pub fn run(g: &Context, a: PullArgs) -> Result<ExitCode> {
    crate::exit::stop_on_signals()?;
    let policy: PullPolicy = a.policy.parse().map_err(anyhow::Error::msg)?;
    let opts = PullOptions {
        platform: a.platform.chosen()?,
        transport: a.registry.transport()?,
        policy,
        ..Default::default()
    };
    // Enter the user namespace before any thread exists (the download threads come later).
    let store = runtime::open_store(g)?;
    for image in &a.images {
        if a.all_tags {
            // One pull and one id line per tag, in the registry's order, as Podman prints them.
            let name = registry_name(image)?;
            let tags = rbox_registry::list_tags(name, &opts.transport)
                .with_context(|| format!("list the tags of `{name}`"))?;
            for tag in tags {
                let rec = pull_image(&store, &tag.to_string(), &opts, a.quiet)?;
                println!("{}", rec.id.hex());
                crate::events::image(g, "pull", "", &tag.to_string());
            }
        } else {
            let rec = pull_image(&store, image, &opts, a.quiet)?;
            println!("{}", rec.id.hex());
            crate::events::image(g, "pull", "", image);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Pull one image with the progress display `rbox pull` uses (for `run`/`create` too).
pub fn pull_image(
    store: &Store,
    image: &str,
    opts: &PullOptions,
    quiet: bool,
) -> Result<ImageRecord> {
    let name = registry_name(image)?;
    let display = Display::new(quiet);
    let res = rbox_registry::pull(store, name, opts, &display);
    display.finish();
    res.with_context(|| format!("pull `{name}`"))
        .map_err(super::common::image_not_known_bare)
}

/// `image` without its `docker://` transport; the other containers-transports forms refused.
fn registry_name(image: &str) -> Result<&str> {
    let name = image.strip_prefix("docker://").unwrap_or(image);
    if let Some((transport, _)) = name.split_once(':') {
        if [
            "oci",
            "oci-archive",
            "docker-archive",
            "dir",
            "containers-storage",
        ]
        .contains(&transport)
        {
            bail!("pull `{image}`: only registry images can be pulled; use rbox load for archives");
        }
    }
    Ok(name)
}

/// A short digest for progress lines: the first 12 hex digits.
fn short(d: &Digest) -> &str {
    d.short()
}

/// Renders [`Progress`] events on stderr.
pub struct Display {
    mode: Mode,
}

enum Mode {
    Quiet,
    Plain { sizes: Mutex<HashMap<Digest, u64>> },
    Bars(Box<Bars>),
}

struct Bars {
    multi: MultiProgress,
    total: Mutex<Option<ProgressBar>>,
    layers: Mutex<HashMap<Digest, ProgressBar>>,
    style: ProgressStyle,
}

impl Display {
    /// Bars when stderr is a terminal, plain lines otherwise, nothing when `quiet`.
    pub fn new(quiet: bool) -> Display {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            let style = ProgressStyle::with_template(
                "{prefix:>20} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            Mode::Bars(Box::new(Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                total: Mutex::new(None),
                layers: Mutex::new(HashMap::new()),
                style,
            }))
        } else {
            Mode::Plain {
                sizes: Mutex::new(HashMap::new()),
            }
        };
        Display { mode }
    }

    fn line(&self, msg: &str) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain { .. } => eprintln!("{msg}"),
            Mode::Bars(b) => {
                if b.multi.println(msg).is_err() {
                    eprintln!("{msg}");
                }
            }
        }
    }

    /// Remove the bars (call once the operation ended, successfully or not).
    pub fn finish(&self) {
        if let Mode::Bars(b) = &self.mode {
            for (_, bar) in lock(&b.layers).drain() {
                bar.finish_and_clear();
            }
            if let Some(t) = lock(&b.total).take() {
                t.finish_and_clear();
            }
            let _ = b.multi.clear();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Progress for Display {
    fn trying(&self, reference: &str) {
        self.line(&format!("Trying to pull {reference}..."));
    }

    fn note(&self, message: &str) {
        // Warnings show even with -q, as podman's do.
        match &self.mode {
            Mode::Quiet => eprintln!("WARNING: {message}"),
            _ => self.line(&format!("WARNING: {message}")),
        }
    }

    fn start(&self, blobs: usize, total_bytes: u64) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain { .. } => {
                if blobs > 0 {
                    let noun = if blobs == 1 { "blob" } else { "blobs" };
                    eprintln!("Copying {blobs} {noun} ({})", HumanBytes(total_bytes));
                }
            }
            Mode::Bars(b) => {
                if blobs > 1 {
                    let bar = b.multi.add(ProgressBar::new(total_bytes));
                    bar.set_style(b.style.clone());
                    bar.set_prefix(format!("total ({blobs} blobs)"));
                    *lock(&b.total) = Some(bar);
                }
            }
        }
    }

    fn blob_start(&self, digest: &Digest, size: u64) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain { sizes } => {
                lock(sizes).insert(digest.clone(), size);
                eprintln!("Copying blob {digest}");
            }
            Mode::Bars(b) => {
                let bar = ProgressBar::new(size);
                let bar = match lock(&b.total).as_ref() {
                    Some(t) => b.multi.insert_before(t, bar),
                    None => b.multi.add(bar),
                };
                bar.set_style(b.style.clone());
                bar.set_prefix(format!("blob {}", short(digest)));
                lock(&b.layers).insert(digest.clone(), bar);
            }
        }
    }

    fn blob_bytes(&self, digest: &Digest, bytes: u64) {
        if let Mode::Bars(b) = &self.mode {
            if let Some(bar) = lock(&b.layers).get(digest) {
                bar.inc(bytes);
            }
            if let Some(t) = lock(&b.total).as_ref() {
                t.inc(bytes);
            }
        }
    }

    fn blob_restart(&self, digest: &Digest) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain { .. } => eprintln!("Copying blob {digest}: retrying"),
            Mode::Bars(b) => {
                if let Some(bar) = lock(&b.layers).get(digest) {
                    let done = bar.position();
                    bar.set_position(0);
                    if let Some(t) = lock(&b.total).as_ref() {
                        t.set_position(t.position().saturating_sub(done));
                    }
                }
            }
        }
    }

    fn blob_done(&self, digest: &Digest) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain { sizes } => {
                let size = lock(sizes).get(digest).copied().unwrap_or(0);
                eprintln!("Copying blob {digest} done ({})", HumanBytes(size));
            }
            Mode::Bars(b) => {
                if let Some(bar) = lock(&b.layers).remove(digest) {
                    bar.finish_and_clear();
                    let _ = b.multi.println(format!(
                        "Copying blob {} done ({})",
                        short(digest),
                        HumanBytes(bar.length().unwrap_or(0))
                    ));
                }
            }
        }
    }

    fn blob_skipped(&self, digest: &Digest, why: &Skip) {
        let why = match why {
            Skip::AlreadyExists => "skipped: already exists".to_string(),
            Skip::Mounted { from } => format!("skipped: mounted from {from}"),
        };
        self.line(&format!("Copying blob {digest} {why}"));
    }

    fn config(&self, digest: &Digest) {
        self.line(&format!("Copying config {digest}"));
    }

    fn writing_manifest(&self) {
        if let Mode::Bars(b) = &self.mode {
            if let Some(t) = lock(&b.total).take() {
                t.finish_and_clear();
            }
        }
        self.line("Writing manifest to image destination");
    }
}
