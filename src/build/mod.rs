//! `rbox build`: a Containerfile -> an image, rootless, without buildah. Owns the executor:
//! stages (`FROM image|scratch|stage [AS name]`), one intermediate image per step (as Podman's
//! `--layers` writes them), RUN in a container made exactly as `rbox run` makes one
//! ([`crate::runtime::run`]) whose upper directory becomes the step's layer, COPY/ADD through
//! a staging directory, the config instructions as edits of the image config with a history
//! entry each, the step cache (keyed by the parent image, the instruction after expansion
//! and its inputs; a local miss looked up in the `--cache-from` repositories as the image
//! tagged with the key's hex, each built step pushed to the `--cache-to` ones), and the
//! progress output Podman prints. Parsing is `parse.rs` (pure),
//! ignore rules and globs `ignore.rs` (pure), the staging of COPY/ADD `copy.rs`, RUN's
//! container `run.rs`, storing and reading images (and `--squash`) `image.rs`; the command
//! line is `cmd/build.rs`.

pub mod copy;
pub mod ignore;
mod image;
mod jobs;
pub mod parse;
mod run;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _, Result};
use rbox_storage::layer::Compression;
use rbox_storage::{Digest, ImageRecord, Store};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::context::Context;
use crate::runtime::{self, Puller};
use parse::Instruction;

/// What `rbox build` was asked for, as plain values.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-f`: the Containerfile (`-` for stdin); else CONTEXT/Containerfile or Dockerfile
    pub file: Option<PathBuf>,
    pub context: PathBuf,
    pub tags: Vec<String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// `--layers` (cache the steps)
    pub layers: bool,
    /// `--pull`: missing (default), always, never, newer
    pub pull: String,
    pub iidfile: Option<PathBuf>,
    pub labels: Vec<String>,
    pub build_args: Vec<String>,
    /// `oci` or `docker`
    pub format: String,
    pub quiet: bool,
    pub network: Option<String>,
    pub platform: Option<String>,
    pub compression: Option<String>,
    /// `--secret id=ID,src=FILE`
    pub secrets: Vec<String>,
    /// `--squash`: the new layers as one
    pub squash: bool,
    /// `--squash-all`: all layers as one
    pub squash_all: bool,
    /// `--http-proxy`: the caller's proxy variables reach RUN steps
    pub http_proxy: bool,
    /// `--jobs`: how many stages build at the same time (0: no limit)
    pub jobs: usize,
    /// `--cache-from`: repositories to look missed steps up in (tag: the key's hex)
    pub cache_from: Vec<String>,
    /// `--cache-to`: repositories each built step's image is pushed to
    pub cache_to: Vec<String>,
    /// `--cache-ttl`: cached steps older than this are missed
    pub cache_ttl: Option<std::time::Duration>,
    /// `--tls-verify`, `--cert-dir`, `--authfile`, `--creds`: for FROM pulls and the cache
    pub transport: rbox_registry::TransportOptions,
    /// `--timestamp`: seconds since the epoch for the image's and the new history entries'
    /// creation time and every file of the new layers (reproducible builds)
    pub timestamp: Option<u64>,
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The ARGs Docker predefines: usable from `--build-arg` without an ARG line.
const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// An image as a build step sees it.
#[derive(Clone)]
struct Img {
    id: Digest,
    config: Value,
    /// the manifest's layer descriptors, bottom first
    layers: Vec<Value>,
    /// the unpacked layer directories, top-most first
    dirs: Vec<PathBuf>,
    /// what history comments call the parent: `localhost/bb:latest` or a short id
    shown: String,
}

/// A stage of the Containerfile.
struct StageDef {
    name: Option<String>,
    from: Instruction,
    steps: Vec<Instruction>,
}

/// A step's layer, made only when the cache misses.
enum LayerJob {
    Run {
        argv: Vec<String>,
        env: Vec<String>,
        /// `RUN --network=`, else `--network`
        network: Option<String>,
        /// `RUN --mount=`s as `rbox run --mount` values, and their targets
        mounts: Vec<(String, String)>,
    },
    Copy(CopyJob),
    /// WORKDIR of a directory the image lacks
    Mkdir(String),
}

struct CopyJob {
    /// (stage or image root, or None for the context; the entries)
    sources: Vec<(Option<PathBuf>, Vec<PathBuf>)>,
    /// absolute destination in the image
    dest: String,
    dest_is_dir: bool,
    attrs: copy::Attrs,
    add: bool,
    /// heredoc files: (name, content)
    inline: Vec<(String, String)>,
    /// ADD of URLs: (file name, the download)
    urls: Vec<(String, PathBuf)>,
    /// where the downloads are, removed with the job
    _downloads: Option<rbox_storage::build_cache::ScratchDir>,
}

/// A planned step: the new config (history included) and the layer to make, if any.
struct Plan {
    key: String,
    config: Value,
    job: Option<LayerJob>,
}

struct Builder<'a> {
    g: &'a Context,
    o: &'a Options,
    store: Store,
    puller: &'a dyn Puller,
    context: PathBuf,
    ignore: ignore::Ignore,
    escape: char,
    /// `--build-arg` values
    build_args: BTreeMap<String, String>,
    /// the ARGs before the first FROM, with their values
    global_args: BTreeMap<String, Option<String>>,
    /// finished stages: (name, image)
    done: Vec<(Option<String>, Img)>,
    /// an image's root for COPY --from, by image id
    roots: BTreeMap<String, FromRoot>,
    compression: Compression,
    /// `--secret id=ID,src=FILE`s
    secrets: BTreeMap<String, PathBuf>,
    /// the build args some ARG (or RUN, for the proxy ones) used
    consumed: std::collections::BTreeSet<String>,
    /// in a stage's own process (`jobs.rs`): readable once the build is to stop
    cancel: Option<std::os::fd::OwnedFd>,
    /// the content digests of context files, kept between builds
    digests: copy::FileDigests,
}

/// Per-stage state.
struct Stage {
    img: Img,
    /// the ARGs declared in this stage
    args: BTreeMap<String, Option<String>>,
    shell: Vec<String>,
    cmd_set: bool,
}

/// `rbox build`.
pub fn build(g: &Context, o: &Options, puller: &dyn Puller) -> Result<ExitCode> {
    jobs::hold_interrupts()?;
    // the RUN steps' containers are the build's own business, as Podman's (Buildah's) are
    crate::events::no_container_events();
    let mut result = None;
    let res = build_all(g, o, puller, &mut result);
    forget_scratch(g, result.as_ref());
    match res {
        // Ctrl-C: as Podman, no message and status 1
        // (or inside a pull or a layer's write, which the store's streams stopped)
        Err(e) if e.is::<jobs::Interrupted>() || rbox_storage::interrupt::requested() => {
            Ok(ExitCode::from(crate::exit::INTERRUPTED))
        }
        r => r,
    }
}

/// Removes the image [`Builder::scratch_img`] stored, unless it is the build's result
/// (`FROM scratch` alone), has a name, or a container uses it: Podman's build leaves no such
/// image behind.
fn forget_scratch(g: &Context, result: Option<&Digest>) {
    let cfg = serde_json::to_vec(&image::scratch_config()).expect("json");
    let id = Digest::of(&cfg);
    if result == Some(&id) {
        return;
    }
    let Ok(store) = runtime::open_store(g) else {
        return;
    };
    if store
        .lookup_image(&id.to_string())
        .is_ok_and(|rec| rec.names.is_empty())
    {
        // refused (and kept) while a container uses it
        let _ = store.remove_image(&id, false);
    }
}

/// `result`: the id of the image the build made, once made.
fn build_all(
    g: &Context,
    o: &Options,
    puller: &dyn Puller,
    result_id: &mut Option<Digest>,
) -> Result<ExitCode> {
    let context = std::fs::canonicalize(&o.context)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| {
            anyhow!(
                "context directory `{}` does not exist or is not a directory",
                o.context.display()
            )
        })?;
    let (file_name, text) = read_containerfile(o, &context)?;
    let file = parse::parse(&text).map_err(|e| anyhow!("parse `{file_name}`: {e}"))?;
    let escape = match file.directives.get("escape").map(String::as_str) {
        Some("`") => '`',
        _ => '\\',
    };
    let ignore = read_ignore(&context);
    let mut build_args = BTreeMap::new();
    for a in &o.build_args {
        match a.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            None => match std::env::var(a) {
                Ok(v) => build_args.insert(a.clone(), v),
                Err(_) => None,
            },
        };
    }
    // ARGs before the first FROM, and the stages
    let mut global_args = BTreeMap::new();
    let mut stages: Vec<StageDef> = Vec::new();
    for ins in file.instructions {
        if ins.cmd == "FROM" {
            let words: Vec<&str> = ins.rest.split_whitespace().collect();
            let name = match words.as_slice() {
                [_] => None,
                [_, kw, n] if kw.eq_ignore_ascii_case("as") => Some(n.to_ascii_lowercase()),
                _ => bail!(
                    "parse `{file_name}`: line {}: FROM requires either one or three arguments",
                    ins.line
                ),
            };
            stages.push(StageDef {
                name,
                from: ins,
                steps: Vec::new(),
            });
            continue;
        }
        match stages.last_mut() {
            Some(s) => s.steps.push(ins),
            None if ins.cmd == "ARG" => {
                let env = values(&global_args);
                for (k, v) in parse::pairs(&ins.rest, &env, escape, true)
                    .map_err(|e| anyhow!("parse `{file_name}`: line {}: {e}", ins.line))?
                {
                    let v = build_args.get(&k).cloned().or(v);
                    global_args.insert(k, v);
                }
            }
            None => bail!(
                "parse `{file_name}`: line {}: no FROM before {}",
                ins.line,
                ins.cmd
            ),
        }
    }
    if stages.is_empty() {
        bail!("parse `{file_name}`: no FROM instruction");
    }
    let last = match &o.target {
        Some(t) => stages
            .iter()
            .position(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str()))
            .ok_or_else(|| {
                // Podman's text
                anyhow!("The target {t:?} was not found in the provided Dockerfile")
            })?,
        None => stages.len() - 1,
    };
    let compression = match o.compression.as_deref() {
        None | Some("gzip") => Compression::Gzip,
        Some("zstd") | Some("zstd:chunked") => Compression::Zstd,
        Some(c) => bail!("invalid compression format `{c}`: use gzip or zstd"),
    };
    let store = runtime::open_store(g)?;
    let mut b = Builder {
        g,
        o,
        store,
        puller,
        context,
        ignore,
        escape,
        build_args,
        global_args,
        done: Vec::new(),
        roots: BTreeMap::new(),
        compression,
        secrets: run::secrets(&o.secrets)?,
        consumed: std::collections::BTreeSet::new(),
        cancel: None,
        digests: Default::default(),
    };
    b.digests = copy::FileDigests::decode(
        &b.store
            .build_cache_note(copy::DIGESTS_NOTE)
            .unwrap_or_default(),
    );
    b.consumed.extend(b.global_args.keys().cloned());
    let needed = b.needed(&stages, last);
    let total = last + 1;
    let mut result = None;
    let jobs = if o.jobs == 0 { usize::MAX } else { o.jobs };
    // independent stages at the same time (jobs.rs); their images then stand as done
    // (a fork needs a single-threaded process: else one at a time)
    let parallel =
        jobs > 1 && needed[..last].iter().filter(|n| **n).count() > 1 && !jobs::threaded();
    let mut built = if parallel {
        let deps: Vec<Vec<usize>> = (0..stages.len()).map(|i| b.deps(&stages, i)).collect();
        b.stages_in_parallel(&stages, &deps, &needed, last, jobs)?
    } else {
        Vec::new()
    };
    b.done.clear();
    for (i, s) in stages.iter().enumerate().take(total) {
        if let Some(img) = built.get_mut(i).and_then(Option::take) {
            b.done.push((s.name.clone(), img));
            continue;
        }
        if !needed[i] {
            b.done.push((s.name.clone(), b.scratch_img()?));
            continue;
        }
        let prefix = if total > 1 {
            format!("[{}/{}] ", i + 1, total)
        } else {
            String::new()
        };
        let (img, base) = b.stage(s, &prefix, i == last)?;
        if i == last {
            result = Some((img, prefix, base));
        } else {
            b.done.push((s.name.clone(), img));
        }
    }
    let (img, prefix, base) = result.expect("the last stage ran");
    // a Ctrl-C during the last step: nothing tagged
    if jobs::interrupt_pending() {
        return Err(jobs::Interrupted(nix::sys::signal::Signal::SIGINT).into());
    }
    *result_id = Some(img.id.clone());
    let id = img.id.hex().to_string();
    let done = b.finish(img, &prefix, base)?;
    // Podman's one event for a build (its name the image's id); its steps' containers log
    // none (see `build`)
    crate::events::image(g, "build", &id, &id);
    Ok(done)
}

fn values(m: &BTreeMap<String, Option<String>>) -> BTreeMap<String, String> {
    m.iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect()
}

/// The Containerfile's name (for errors) and text.
fn read_containerfile(o: &Options, context: &Path) -> Result<(String, String)> {
    let path = match &o.file {
        Some(p) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("read the Containerfile from stdin")?;
            return Ok(("-".into(), s));
        }
        // relative to the working directory, else (as Podman) to the context
        Some(p) if p.exists() || p.is_absolute() || !context.join(p).exists() => {
            if !p.exists() {
                let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
                // Podman's text
                bail!("stat {}: no such file or directory", abs.display());
            }
            p.clone()
        }
        Some(p) => context.join(p),
        None => ["Containerfile", "Dockerfile"]
            .iter()
            .map(|n| context.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                anyhow!(
                    "no Containerfile or Dockerfile specified or found in context directory, {}: no such file or directory",
                    context.display()
                )
            })?,
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read `{}`", path.display()))?;
    Ok((path.display().to_string(), text))
}

/// `.containerignore`, else `.dockerignore`, in the context.
fn read_ignore(context: &Path) -> ignore::Ignore {
    for n in [".containerignore", ".dockerignore"] {
        if let Ok(t) = std::fs::read_to_string(context.join(n)) {
            return ignore::Ignore::parse(&t);
        }
    }
    ignore::Ignore::default()
}

fn short(id: &Digest) -> String {
    id.hex()[..11].to_string()
}

/// Shell form -> SHELL + the text; exec form as it is.
fn command_of(ins: &Instruction, shell: &[String]) -> Vec<String> {
    match ins.json() {
        Some(v) => v,
        None => {
            let mut v = shell.to_vec();
            v.push(ins.rest.clone());
            v
        }
    }
}

/// The platform's values of the automatic ARGs (TARGETARCH, BUILDPLATFORM, ...).
fn platform_args() -> BTreeMap<String, String> {
    let arch = rbox_storage::archive::host_arch();
    let mut m = BTreeMap::new();
    for p in ["TARGET", "BUILD"] {
        m.insert(format!("{p}PLATFORM"), format!("linux/{arch}"));
        m.insert(format!("{p}OS"), "linux".into());
        m.insert(format!("{p}ARCH"), arch.into());
        m.insert(format!("{p}VARIANT"), String::new());
    }
    m
}

fn env_list(cfg: &Value) -> Vec<(String, String)> {
    cfg["config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str())
                .filter_map(|e| e.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

impl Builder<'_> {
    /// Which stages the target needs: itself, and what its FROM and COPY --from name,
    /// transitively.
    fn needed(&self, stages: &[StageDef], last: usize) -> Vec<bool> {
        let mut need = vec![false; stages.len()];
        let mut todo = vec![last];
        while let Some(i) = todo.pop() {
            if need[i] {
                continue;
            }
            need[i] = true;
            todo.extend(self.deps(stages, i));
        }
        need
    }

    /// The stages stage `i` needs: what its FROM, `COPY --from` and `RUN --mount=from=` name.
    fn deps(&self, stages: &[StageDef], i: usize) -> Vec<usize> {
        let globals = values(&self.global_args);
        let s = &stages[i];
        let base = s.from.rest.split_whitespace().next().unwrap_or("");
        let base = parse::expand(base, &globals, self.escape).unwrap_or_default();
        let mut v: Vec<usize> = jobs::find(stages, &base, i).into_iter().collect();
        v.extend(
            jobs::step_sources(s)
                .iter()
                .filter_map(|f| jobs::find(stages, f, i)),
        );
        v
    }

    /// The image a FROM names: a stage, scratch, or an image (pulled when missing).
    fn base(&self, ins: &Instruction) -> Result<Img> {
        let globals = {
            let mut m = platform_args();
            m.extend(values(&self.global_args));
            m
        };
        let first = ins.rest.split_whitespace().next().unwrap_or("");
        let name = parse::expand(first, &globals, self.escape)
            .map_err(|e| anyhow!("line {}: {e}", ins.line))?;
        let lower = name.to_ascii_lowercase();
        if let Some((_, img)) = self
            .done
            .iter()
            .find(|(n, _)| n.as_deref() == Some(lower.as_str()))
        {
            return Ok(img.clone());
        }
        if let Ok(i) = name.parse::<usize>() {
            if let Some((_, img)) = self.done.get(i) {
                return Ok(img.clone());
            }
        }
        if lower == "scratch" {
            return self.scratch_img();
        }
        let rec = self.image(&name, ins.flag("platform").or(self.o.platform.as_deref()))?;
        let shown = rbox_storage::meant_name(&name, &rec.names)
            .or_else(|| rec.names.first().cloned())
            .unwrap_or_else(|| short(&rec.id));
        self.load(&rec, shown)
    }

    fn image(&self, name: &str, platform: Option<&str>) -> Result<ImageRecord> {
        let policy: rbox_registry::PullPolicy = self.o.pull.parse().map_err(anyhow::Error::msg)?;
        if policy == rbox_registry::PullPolicy::Missing
            || policy == rbox_registry::PullPolicy::Never
        {
            match self.store.lookup_image(name) {
                Ok(i) => return Ok(i),
                Err(rbox_storage::Error::ImageNotFound(_))
                    if policy == rbox_registry::PullPolicy::Missing => {}
                Err(e) => return Err(e.into()),
            }
        }
        let platform = platform.map(rbox_registry::Platform::parse).transpose()?;
        let opts = rbox_registry::PullOptions {
            platform,
            policy,
            transport: self.o.transport.clone(),
            ..Default::default()
        };
        jobs::unheld(|| self.puller.pull(&self.store, name, &opts))
    }

    /// Whether the cached image `id` is young enough for `--cache-ttl`.
    fn fresh(&self, id: &Digest) -> bool {
        let Some(ttl) = self.o.cache_ttl else {
            return true;
        };
        let created = self
            .store
            .lookup_image(&id.to_string())
            .ok()
            .and_then(|r| r.created)
            .and_then(|c| humantime::parse_rfc3339_weak(&c).ok());
        created.is_some_and(|c| c.elapsed().map_or(true, |age| age < ttl))
    }

    /// A step missing from the local cache, from the `--cache-from` repositories: the image
    /// tagged with the key's hex, pulled (quietly, as Podman says only where from) and
    /// recorded in the local cache. Any failure is a miss.
    fn cache_pull(&self, key: &Digest) -> Option<Digest> {
        for repo in &self.o.cache_from {
            let name = format!("{repo}:{}", key.hex());
            let opts = rbox_registry::PullOptions {
                policy: rbox_registry::PullPolicy::Missing,
                transport: self.o.transport.clone(),
                // no threads: RUN steps clone containers from this process
                jobs: 1,
                ..Default::default()
            };
            match rbox_registry::pull(&self.store, &name, &opts, &rbox_registry::NoProgress) {
                Ok(rec) if self.fresh(&rec.id) => {
                    self.say(&format!("--> Cache pulled from remote {name}"));
                    if let Err(e) = self.store.build_cache_put(key, &rec.id) {
                        tracing::debug!("record the cache entry of `{name}`: {e}");
                    }
                    return Some(rec.id);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("look the step up as `{name}`: {e}"),
            }
        }
        None
    }

    /// Pushes the image `id` a step built to the `--cache-to` repositories, tagged with the
    /// key's hex; a failure is a warning (the build itself went well).
    fn cache_push(&self, key: &Digest, id: &Digest) {
        for repo in &self.o.cache_to {
            let dest = format!("{repo}:{}", key.hex());
            self.say(&format!("--> Pushing cache {dest}"));
            let opts = rbox_registry::PushOptions {
                transport: self.o.transport.clone(),
                jobs: 1,
                ..Default::default()
            };
            let pushed = rbox_registry::push(
                &self.store,
                &id.to_string(),
                Some(&dest),
                &opts,
                &rbox_registry::NoProgress,
            );
            if let Err(e) = pushed {
                tracing::warn!("push the cache of the step to `{dest}`: {e}");
            }
        }
    }

    /// Runs a stage; returns its image and how many layers its base had.
    fn stage(&mut self, s: &StageDef, prefix: &str, final_stage: bool) -> Result<(Img, usize)> {
        let n = s.steps.len() + 1;
        // a stage by name shows as its image's id, as Podman shows it
        let mut shown = s.from.original.clone();
        let first = s.from.rest.split_whitespace().next().unwrap_or("");
        let lower = first.to_ascii_lowercase();
        if let Some((_, img)) = self
            .done
            .iter()
            .find(|(n, _)| n.as_deref() == Some(lower.as_str()))
        {
            let after = s.from.rest.trim_start()[first.len()..].to_string();
            shown = format!("FROM {}{after}", img.id.hex());
        }
        self.say(&format!("{prefix}STEP 1/{n}: {shown}"));
        let img = self
            .base(&s.from)
            .map_err(|e| anyhow!("building at STEP \"{}\": {e:#}", s.from.original))?;
        let base_layers = img.layers.len();
        let mut st = Stage {
            img,
            args: BTreeMap::new(),
            shell: vec!["/bin/sh".into(), "-c".into()],
            cmd_set: false,
        };
        if let Some(sh) = st.img.config["config"]["Shell"].as_array() {
            let v: Vec<String> = sh
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect();
            if !v.is_empty() {
                st.shell = v;
            }
        }
        // a base without PATH gets the default one first in Env, as Podman (buildah) writes it
        if !env_list(&st.img.config).iter().any(|(k, _)| k == "PATH") {
            if !st.img.config["config"].is_object() {
                st.img.config["config"] = json!({});
            }
            let c = &mut st.img.config["config"];
            let mut env = vec![json!(format!("PATH={}", runtime::spec::DEFAULT_PATH))];
            env.extend(c["Env"].as_array().cloned().unwrap_or_default());
            c["Env"] = json!(env);
        }
        // the base's ONBUILD triggers run first (and are not passed on), as Docker runs them
        let mut steps = Vec::new();
        if let Some(triggers) = st.img.config["config"]["OnBuild"].as_array().cloned() {
            for t in triggers.iter().filter_map(|t| t.as_str()) {
                let f = parse::parse(t).map_err(|e| {
                    anyhow!("parse the ONBUILD trigger {t:?} of the base image: {e}")
                })?;
                steps.extend(f.instructions);
            }
            if let Some(c) = st.img.config["config"].as_object_mut() {
                c.remove("OnBuild");
            }
        }
        steps.extend(s.steps.iter().cloned());
        let n = steps.len() + 1;
        for (k, ins) in steps.iter().enumerate() {
            if self.cancel.as_ref().is_some_and(jobs::cancelled) {
                bail!("stop: another stage failed");
            }
            if jobs::interrupt_pending() {
                return Err(jobs::Interrupted(nix::sys::signal::Signal::SIGINT).into());
            }
            self.say(&format!("{prefix}STEP {}/{n}: {}", k + 2, ins.original));
            let last = final_stage && k + 1 == steps.len();
            self.step(&mut st, ins, last).map_err(|e| {
                if e.is::<jobs::Interrupted>() {
                    return e;
                }
                let code = crate::exit::code_of(&e);
                let msg = format!("building at STEP \"{}\": {e:#}", ins.original);
                anyhow::Error::from(crate::exit::CodedError::new(code, msg))
            })?;
        }
        Ok((st.img, base_layers))
    }

    /// Whether the docker-only config field of `what` is written: in the OCI format it is
    /// not (the OCI config has no such field), with Podman's warning.
    fn docker_only(&self, what: &str, rest: &str) -> bool {
        if self.o.format == "docker" {
            return true;
        }
        let sep = if what == "HEALTHCHECK" { " " } else { ", " };
        tracing::warn!(
            "{what} is not supported for OCI image format{sep}{rest}. Must use `docker` format"
        );
        false
    }

    fn say(&self, line: &str) {
        if !self.o.quiet {
            use std::io::Write;
            // a closed pipe (`| head`) ends the output, not the build
            let _ = writeln!(std::io::stdout(), "{line}");
        }
    }

    /// The variables in scope for expansion: the stage's ARGs, then ENV over them.
    fn scope(&self, st: &Stage) -> BTreeMap<String, String> {
        let mut m = values(&st.args);
        for (k, v) in env_list(&st.img.config) {
            m.insert(k, v);
        }
        m
    }

    fn step(&mut self, st: &mut Stage, ins: &Instruction, last: bool) -> Result<()> {
        let allowed: &[&str] = match ins.cmd.as_str() {
            "COPY" => &["from", "chown", "chmod", "link"],
            "ADD" => &["chown", "chmod", "link", "checksum"],
            "RUN" => &["network", "mount"],
            "HEALTHCHECK" => &[
                "interval",
                "timeout",
                "start-period",
                "start-interval",
                "retries",
            ],
            _ => &[],
        };
        if let Some((f, _)) = ins
            .flags
            .iter()
            .find(|(f, _)| !allowed.contains(&f.as_str()))
        {
            // Docker's text
            bail!("line {}: Unknown flag: {f}", ins.line);
        }
        let plan = self
            .plan(st, ins)
            .map_err(|e| anyhow!("line {}: {e:#}", ins.line))?;
        let mut h = Sha256::new();
        h.update(st.img.id.to_string());
        h.update([0]);
        h.update(self.o.format.as_bytes());
        h.update([0]);
        h.update(plan.key.as_bytes());
        let key = Digest::from_hex(&hex::encode(h.finalize())).expect("sha256 hex");
        let use_cache = self.o.layers && !self.o.no_cache;
        if use_cache {
            let hit = self
                .store
                .build_cache_get(&key)
                .filter(|id| self.fresh(id))
                .or_else(|| self.cache_pull(&key));
            if let Some(id) = hit {
                let rec = self.store.lookup_image(&id.to_string())?;
                self.say(&format!("--> Using cache {}", id.hex()));
                st.img = self.load(&rec, short(&id)[..11].to_string())?;
                st.img.shown = id.hex()[..12].to_string();
                if !last {
                    self.say(&format!("--> {}", short(&id)));
                }
                return Ok(());
            }
        }
        let mut config = plan.config;
        let mut layers = st.img.layers.clone();
        if let Some(job) = plan.job {
            let info = self.layer(st, job)?;
            layers.push(self.descriptor(&info)?);
            let ids = config["rootfs"]["diff_ids"]
                .as_array_mut()
                .ok_or_else(|| anyhow!("invalid image config: no rootfs.diff_ids"))?;
            ids.push(json!(info.diff_id.to_string()));
        } else if let Some(h) = config["history"].as_array_mut().and_then(|h| h.last_mut()) {
            h["empty_layer"] = json!(true);
        }
        let img = self.commit(config, layers, &[], "")?;
        let id = img.id.clone();
        st.img = img;
        st.img.shown = id.hex()[..12].to_string();
        if self.o.layers {
            self.store.build_cache_put(&key, &id)?;
            self.cache_push(&key, &id);
        }
        if !last {
            self.say(&format!("--> {}", short(&id)));
        }
        Ok(())
    }

    /// What an instruction does to the image: the new config and the layer to make.
    fn plan(&mut self, st: &mut Stage, ins: &Instruction) -> Result<Plan> {
        let scope = self.scope(st);
        let esc = self.escape;
        let mut config = st.img.config.clone();
        let now = self.created();
        config["created"] = json!(now);
        if !config["config"].is_object() {
            config["config"] = json!({});
        }
        let mut job = None;
        let mut key = format!("{}\n{}", ins.cmd, ins.original);
        if let Some(t) = self.o.timestamp {
            key.push_str(&format!("\n--timestamp {t}"));
        }
        let nop = |s: &str| format!("/bin/sh -c #(nop) {s}");
        let created_by;
        let c = &mut config["config"];
        match ins.cmd.as_str() {
            "ARG" => {
                let mut names = Vec::new();
                for (k, v) in
                    parse::pairs(&ins.rest, &scope, esc, true).map_err(anyhow::Error::msg)?
                {
                    let val = self
                        .build_args
                        .get(&k)
                        .cloned()
                        .or(v)
                        .or_else(|| self.global_args.get(&k).cloned().flatten())
                        .or_else(|| platform_args().get(&k).cloned());
                    names.push(k.clone());
                    self.consumed.insert(k.clone());
                    key.push_str(&format!("\n{k}={val:?}"));
                    st.args.insert(k, val);
                }
                created_by = nop(&format!("ARG {}", names.join(" ")));
            }
            "ENV" => {
                let pairs =
                    parse::pairs(&ins.rest, &scope, esc, false).map_err(anyhow::Error::msg)?;
                let mut env = env_list(&config);
                let mut shown = Vec::new();
                for (k, v) in pairs {
                    let v = v.unwrap_or_default();
                    shown.push(format!("{k}={v}"));
                    match env.iter_mut().find(|(ek, _)| *ek == k) {
                        Some(e) => e.1 = v,
                        None => env.push((k, v)),
                    }
                }
                config["config"]["Env"] = json!(env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>());
                key.push_str(&format!("\n{}", shown.join(" ")));
                created_by = nop(&format!("ENV {}", shown.join(" ")));
            }
            "LABEL" => {
                let pairs =
                    parse::pairs(&ins.rest, &scope, esc, false).map_err(anyhow::Error::msg)?;
                if !c["Labels"].is_object() {
                    c["Labels"] = json!({});
                }
                let mut shown = Vec::new();
                for (k, v) in pairs {
                    let v = v.unwrap_or_default();
                    shown.push(format!("{k}={v}"));
                    c["Labels"][&k] = json!(v);
                }
                key.push_str(&format!("\n{}", shown.join(" ")));
                created_by = nop(&format!("LABEL {}", shown.join(" ")));
            }
            "MAINTAINER" => {
                let v = parse::expand(&ins.rest, &scope, esc).map_err(anyhow::Error::msg)?;
                config["author"] = json!(v);
                created_by = nop(&format!("MAINTAINER {v}"));
            }
            "WORKDIR" => {
                let v = parse::expand(&ins.rest, &scope, esc).map_err(anyhow::Error::msg)?;
                let cur = c["WorkingDir"].as_str().unwrap_or("/").to_string();
                let dir = absolute(&cur, &v);
                c["WorkingDir"] = json!(dir);
                key.push_str(&format!("\n{dir}"));
                let rel: PathBuf = ignore::clean(&dir).iter().collect();
                let rel = copy::in_image(&st.img.dirs, &rel, true)?;
                if !rel.as_os_str().is_empty() && copy::lookup(&st.img.dirs, &rel).is_none() {
                    job = Some(LayerJob::Mkdir(format!("/{}", rel.display())));
                }
                created_by = nop(&format!("WORKDIR {dir}"));
            }
            "USER" => {
                let v = parse::expand(&ins.rest, &scope, esc).map_err(anyhow::Error::msg)?;
                c["User"] = json!(v);
                key.push_str(&format!("\n{v}"));
                created_by = nop(&format!("USER {v}"));
            }
            "STOPSIGNAL" => {
                let v = parse::expand(&ins.rest, &scope, esc).map_err(anyhow::Error::msg)?;
                c["StopSignal"] = json!(v);
                key.push_str(&format!("\n{v}"));
                created_by = nop(&format!("STOPSIGNAL {v}"));
            }
            "EXPOSE" => {
                let ports =
                    parse::expand_words(&ins.rest, &scope, esc).map_err(anyhow::Error::msg)?;
                if !c["ExposedPorts"].is_object() {
                    c["ExposedPorts"] = json!({});
                }
                for p in &ports {
                    let p = if p.contains('/') {
                        p.clone()
                    } else {
                        format!("{p}/tcp")
                    };
                    c["ExposedPorts"][p] = json!({});
                }
                key.push_str(&format!("\n{}", ports.join(" ")));
                created_by = nop(&format!("EXPOSE {}", ports.join(" ")));
            }
            "VOLUME" => {
                let vols = match ins.json() {
                    Some(v) => v,
                    None => {
                        parse::expand_words(&ins.rest, &scope, esc).map_err(anyhow::Error::msg)?
                    }
                };
                if !c["Volumes"].is_object() {
                    c["Volumes"] = json!({});
                }
                for v in &vols {
                    c["Volumes"][v] = json!({});
                }
                key.push_str(&format!("\n{}", vols.join(" ")));
                created_by = nop(&format!("VOLUME {vols:?}"));
            }
            "CMD" => {
                let v = command_of(ins, &st.shell);
                c["Cmd"] = json!(v);
                st.cmd_set = true;
                created_by = nop(&format!("CMD {}", serde_json::to_string(&v).unwrap()));
            }
            "ENTRYPOINT" => {
                let v = command_of(ins, &st.shell);
                c["Entrypoint"] = json!(v);
                // Docker: an ENTRYPOINT drops the CMD inherited from the base
                if !st.cmd_set {
                    c.as_object_mut().unwrap().remove("Cmd");
                }
                created_by = nop(&format!(
                    "ENTRYPOINT {}",
                    serde_json::to_string(&v).unwrap()
                ));
            }
            "SHELL" => {
                let v = ins
                    .json()
                    .ok_or_else(|| anyhow!("SHELL requires the arguments to be in JSON form"))?;
                if self.docker_only("SHELL", &format!("[{}] will be ignored", v.join(" "))) {
                    c["Shell"] = json!(v);
                }
                st.shell = v.clone();
                created_by = nop(&format!("SHELL {}", serde_json::to_string(&v).unwrap()));
            }
            "ONBUILD" => {
                if self.docker_only("ONBUILD", &format!("{} will be ignored", ins.rest)) {
                    if !c["OnBuild"].is_array() {
                        c["OnBuild"] = json!([]);
                    }
                    c["OnBuild"].as_array_mut().unwrap().push(json!(ins.rest));
                }
                created_by = nop(&format!("ONBUILD {}", ins.rest));
            }
            "HEALTHCHECK" => {
                created_by = nop(&format!("HEALTHCHECK {}", ins.rest));
                let h = healthcheck(ins, &st.shell)?;
                if self.docker_only("HEALTHCHECK", "and will be ignored") {
                    c["Healthcheck"] = h;
                }
            }
            "RUN" => {
                let argv = if ins.json().is_none()
                    && !ins.heredocs.is_empty()
                    && ins.rest.trim_start().starts_with("<<")
                    && ins.heredocs.len() == 1
                {
                    // `RUN <<EOF`: the body is the script
                    let mut v = st.shell.clone();
                    v.push(ins.heredocs[0].body.clone());
                    v
                } else if !ins.heredocs.is_empty() {
                    let mut text = ins.rest.clone();
                    for h in &ins.heredocs {
                        text.push('\n');
                        text.push_str(&h.body);
                        text.push_str(&h.name);
                    }
                    let mut v = st.shell.clone();
                    v.push(text);
                    v
                } else {
                    command_of(ins, &st.shell)
                };
                let env_names: Vec<String> =
                    env_list(&config).into_iter().map(|(k, _)| k).collect();
                let mut args: Vec<String> = values(&st.args)
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                for p in PROXY_ARGS {
                    if let Some(v) = self.build_args.get(*p) {
                        if !st.args.contains_key(*p) {
                            self.consumed.insert(p.to_string());
                            args.push(format!("{p}={v}"));
                        }
                    }
                }
                let env: Vec<String> = args
                    .iter()
                    .filter(|a| {
                        !env_names
                            .iter()
                            .any(|n| a.split_once('=').map(|x| x.0) == Some(n.as_str()))
                    })
                    .cloned()
                    .collect();
                let shown = if ins.json().is_some() {
                    serde_json::to_string(&argv).unwrap()
                } else {
                    format!(
                        "{} {}",
                        st.shell.join(" "),
                        argv.last().cloned().unwrap_or_default()
                    )
                };
                created_by = if args.is_empty() {
                    shown
                } else {
                    format!("|{} {} {shown}", args.len(), args.join(" "))
                };
                key.push_str(&format!(
                    "\n{created_by}\n{}",
                    serde_json::to_string(&argv).unwrap()
                ));
                let network = match ins.flag("network") {
                    Some("default") | None => self.o.network.clone(),
                    Some(n) => Some(n.to_string()),
                };
                key.push_str(&format!("\nnetwork={network:?}"));
                let mut mounts = Vec::new();
                for (f, v) in &ins.flags {
                    if f == "mount" {
                        let (m, k) = self.run_mount(v, scope.clone())?;
                        key.push_str(&format!("\nmount={v} {k}"));
                        mounts.extend(m);
                    }
                }
                job = Some(LayerJob::Run {
                    argv,
                    env,
                    network,
                    mounts,
                });
            }
            "COPY" | "ADD" => {
                let (cj, digest, shown) = self.plan_copy(st, ins, &scope)?;
                key.push_str(&format!("\n{digest}\n{shown}"));
                created_by = nop(&format!("{} {shown} ", ins.cmd));
                job = Some(LayerJob::Copy(cj));
            }
            other => bail!("unknown instruction: {other}"),
        }
        let comment = format!("FROM {}", st.img.shown);
        if !config["history"].is_array() {
            config["history"] = json!([]);
        }
        config["history"].as_array_mut().unwrap().push(json!({
            "created": now,
            "created_by": created_by,
            "comment": comment,
        }));
        Ok(Plan { key, config, job })
    }

    fn plan_copy(
        &mut self,
        st: &Stage,
        ins: &Instruction,
        scope: &BTreeMap<String, String>,
    ) -> Result<(CopyJob, String, String)> {
        let esc = self.escape;
        let add = ins.cmd == "ADD";
        let mut words = match ins.json() {
            Some(v) => v,
            None => parse::expand_words(&ins.rest, scope, esc).map_err(anyhow::Error::msg)?,
        };
        let mut inline = Vec::new();
        // heredoc sources: `COPY <<EOF /dest`
        words.retain(|w| {
            if let Some(name) = w.strip_prefix("<<") {
                let name = name.trim_start_matches('-').trim_matches(['"', '\'']);
                if let Some(h) = ins.heredocs.iter().find(|h| h.name == name) {
                    let body = if h.quoted {
                        h.body.clone()
                    } else {
                        parse::expand(&h.body, scope, esc).unwrap_or_else(|_| h.body.clone())
                    };
                    inline.push((name.to_string(), body));
                    return false;
                }
            }
            true
        });
        let Some(dest_word) = words.pop() else {
            bail!("{} requires at least two arguments", ins.cmd);
        };
        if words.is_empty() && inline.is_empty() {
            bail!("{} requires at least two arguments", ins.cmd);
        }
        let workdir = st.img.config["config"]["WorkingDir"]
            .as_str()
            .unwrap_or("/")
            .to_string();
        let dest = absolute(&workdir, &dest_word);
        let many = words.len() + inline.len() > 1 || words.iter().any(|w| ignore::is_pattern(w));
        let dest_rel: PathBuf = ignore::clean(&dest).iter().collect();
        // where the image's symlinks lead (a directory's link followed to the end)
        let followed = copy::in_image(&st.img.dirs, &dest_rel, true)?;
        let dest_is_dir = dest_word.ends_with('/')
            || dest_word == "."
            || many
            || copy::lookup(&st.img.dirs, &followed).is_some_and(|m| m.is_dir());
        let dest_rel = if dest_is_dir {
            followed
        } else {
            copy::in_image(&st.img.dirs, &dest_rel, false)?
        };
        let dest = format!("/{}", dest_rel.display());
        // owner and mode
        let mut attrs = copy::Attrs::default();
        if let Some(ch) = ins.flag("chown") {
            let ch = parse::expand(ch, scope, esc).map_err(anyhow::Error::msg)?;
            let (u, g) = match ch.split_once(':') {
                Some((u, g)) => (u.to_string(), Some(g.to_string())),
                None => (ch.clone(), None),
            };
            let uid = copy::resolve_id(&st.img.dirs, &u, "etc/passwd")?;
            let gid = match g {
                Some(g) => copy::resolve_id(&st.img.dirs, &g, "etc/group")?,
                None => uid,
            };
            attrs.owner = (uid, gid);
        }
        if let Some(m) = ins.flag("chmod") {
            attrs.mode = Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| anyhow!("invalid --chmod `{m}`: an octal mode is expected"))?,
            );
        }
        let mut sources = Vec::new();
        let mut h = Sha256::new();
        let from = ins.flag("from");
        let root = match from {
            Some(f) => Some(self.root_of(f)?),
            None => None,
        };
        let mut urls = Vec::new();
        let mut downloads = None;
        for w in &words {
            if add && (w.starts_with("http://") || w.starts_with("https://")) {
                if downloads.is_none() {
                    downloads = Some(self.store.scratch_dir("build-add")?);
                }
                let dir = downloads.as_ref().expect("made above").path();
                let name = copy::url_file_name(w);
                let file = dir.join(format!("{}", urls.len()));
                copy::download(w, &file)?;
                if let Some(want) = ins.flag("checksum") {
                    let got = Digest::of(&std::fs::read(&file).context("read the download")?);
                    if want != got.to_string() {
                        bail!("unexpected checksum of `{w}`: expected {want}, got {got}");
                    }
                }
                let src = copy::Source {
                    root: dir,
                    ignore: None,
                    what: String::new(),
                };
                h.update(name.as_bytes());
                h.update(copy::digest(
                    &src,
                    &[PathBuf::from(format!("{}", urls.len()))],
                    None,
                )?);
                urls.push((name, file));
                continue;
            }
            let src = match &root {
                Some(r) => copy::Source {
                    root: r,
                    ignore: None,
                    what: format!("stage or image {}", from.unwrap_or_default()),
                },
                None => copy::Source {
                    root: &self.context,
                    ignore: Some(&self.ignore),
                    what: "build context".into(),
                },
            };
            let rels = copy::resolve(&src, w)?;
            let cache = root.is_none().then_some(&self.digests);
            h.update(copy::digest(&src, &rels, cache)?);
            sources.push((root.clone(), rels));
        }
        for (n, body) in &inline {
            h.update(n.as_bytes());
            h.update(body.as_bytes());
        }
        h.update(format!("{:?}{:?}{dest_is_dir}", attrs.owner, attrs.mode));
        self.save_digests();
        let digest = hex::encode(h.finalize());
        let kind = if words.len() + inline.len() == 1 && !dest_is_dir {
            "file"
        } else {
            "dir"
        };
        let shown = format!("{kind}:{digest} in {dest}");
        Ok((
            CopyJob {
                sources,
                dest,
                dest_is_dir,
                attrs,
                add,
                inline,
                urls,
                _downloads: downloads,
            },
            digest,
            shown,
        ))
    }

    /// Writes the context file digests back when this build learnt new ones (merged with
    /// what other builds wrote meanwhile); a failure only costs a re-read next time.
    fn save_digests(&self) {
        if !self.digests.dirty() {
            return;
        }
        if let Some(b) = self.store.build_cache_note(copy::DIGESTS_NOTE) {
            self.digests.merge_from(copy::FileDigests::decode(&b));
        }
        match self
            .store
            .build_cache_set_note(copy::DIGESTS_NOTE, &self.digests.encode())
        {
            Ok(()) => self.digests.mark_saved(),
            Err(e) => tracing::debug!("keep the context file digests: {e}"),
        }
    }

    /// The root directory of a stage's or image's filesystem, for COPY --from: its layers
    /// mounted read-only (kernel overlay in a mount namespace of this process's own), or
    /// where that cannot be, copied out of them; once per image and build.
    fn root_of(&mut self, from: &str) -> Result<PathBuf> {
        let lower = from.to_ascii_lowercase();
        let img = match self
            .done
            .iter()
            .find(|(n, _)| n.as_deref() == Some(lower.as_str()))
        {
            Some((_, i)) => i.clone(),
            None => match from.parse::<usize>().ok().and_then(|i| self.done.get(i)) {
                Some((_, i)) => i.clone(),
                None => {
                    let rec = self.image(from, None)?;
                    self.load(&rec, from.to_string())?
                }
            },
        };
        let key = img.id.hex().to_string();
        if let Some(r) = self.roots.get(&key) {
            return Ok(r.dir.path().join("root"));
        }
        let d = self.store.scratch_dir("build-from")?;
        let p = d.path().join("root");
        let mounted = !img.dirs.is_empty() && mount_layers(&img.dirs, d.path()).is_ok();
        if !mounted {
            let lowers: Vec<PathBuf> = img.dirs.iter().rev().cloned().collect();
            rbox_storage::mount::copy::copy_layers(&lowers, &p)
                .with_context(|| format!("copy the root of {from}"))?;
        }
        self.roots.insert(key, FromRoot { mounted, dir: d });
        Ok(p)
    }

    /// Makes a step's layer.
    /// The creation time of the image and its new history entries: `--timestamp`'s, else now.
    fn created(&self) -> String {
        match self.o.timestamp {
            Some(t) => {
                humantime::format_rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t))
                    .to_string()
            }
            None => crate::state::now_rfc3339(),
        }
    }

    /// A step's changes in `dir` as a layer ([`rbox_storage::Store::layer_from_staged`]),
    /// every file's times `--timestamp`'s first when it is given.
    fn staged(&self, dir: &Path, skip: &[&str]) -> Result<rbox_storage::LayerInfo> {
        if let Some(t) = self.o.timestamp {
            // the removal of a mount point would change its directory's time again
            rbox_storage::changes::remove_mount_points(dir, skip)?;
            rbox_storage::changes::set_times_under(dir, t as i64)?;
        }
        Ok(self.store.layer_from_staged(dir, self.compression, skip)?)
    }

    fn layer(&self, st: &Stage, job: LayerJob) -> Result<rbox_storage::LayerInfo> {
        match job {
            LayerJob::Run {
                argv,
                env,
                network,
                mounts,
            } => self.run(st, argv, env, network, mounts),
            LayerJob::Mkdir(dir) => {
                let s = self.store.scratch_dir("build-workdir")?;
                let rel: PathBuf = ignore::clean(&dir).iter().collect();
                copy::make_parents(s.path(), &rel.join("x"), &st.img.dirs)?;
                self.staged(s.path(), &[])
            }
            LayerJob::Copy(cj) => {
                let s = self.store.scratch_dir("build-copy")?;
                // the layer this COPY made last time, to link its unchanged files from
                let note = copy_note(&self.context, &cj);
                let reuse = note
                    .as_ref()
                    .and_then(|n| self.store.build_cache_note(n))
                    .and_then(|b| Digest::from_hex(String::from_utf8_lossy(&b).trim()).ok())
                    .filter(|d| self.store.has_layer(d))
                    .and_then(|d| {
                        let t = self.o.timestamp.map(|t| t as i64);
                        copy::Reuse::new(s.path(), &self.store.layer_path(&d), t)
                    });
                let rel: PathBuf = ignore::clean(&cj.dest).iter().collect();
                let target = s.path().join(&rel);
                if cj.dest_is_dir {
                    copy::make_parents(s.path(), &rel.join("x"), &st.img.dirs)?;
                    if copy::lookup(&st.img.dirs, &rel).is_none() {
                        copy::set_owner_mode(&target, cj.attrs.owner, None)?;
                    }
                } else {
                    copy::make_parents(s.path(), &rel, &st.img.dirs)?;
                }
                for (root, rels) in &cj.sources {
                    let src = copy::Source {
                        root: root.as_deref().unwrap_or(&self.context),
                        ignore: if root.is_none() {
                            Some(&self.ignore)
                        } else {
                            None
                        },
                        what: String::new(),
                    };
                    for r in rels {
                        let from = src.root.join(r);
                        let is_dir = std::fs::symlink_metadata(&from).is_ok_and(|m| m.is_dir());
                        if cj.add && root.is_none() && !is_dir && copy::looks_like_archive(&from) {
                            copy::extract(&from, &target, cj.attrs)?;
                            continue;
                        }
                        let to = if cj.dest_is_dir && !is_dir {
                            target.join(r.file_name().unwrap_or_default())
                        } else {
                            target.clone()
                        };
                        copy::copy_entry(&src, r, &to, cj.attrs, reuse.as_ref())?;
                    }
                }
                for (name, file) in &cj.urls {
                    let to = if cj.dest_is_dir {
                        target.join(name)
                    } else {
                        target.clone()
                    };
                    std::fs::copy(file, &to)
                        .with_context(|| format!("write `{}`", to.display()))?;
                    copy::set_owner_mode(
                        &to,
                        cj.attrs.owner,
                        Some(cj.attrs.mode.unwrap_or(0o600)),
                    )?;
                }
                for (name, body) in &cj.inline {
                    let to = if cj.dest_is_dir {
                        target.join(name)
                    } else {
                        target.clone()
                    };
                    std::fs::write(&to, body)
                        .with_context(|| format!("write `{}`", to.display()))?;
                    copy::set_owner_mode(
                        &to,
                        cj.attrs.owner,
                        Some(cj.attrs.mode.unwrap_or(0o644)),
                    )?;
                }
                let info = self.staged(s.path(), &[])?;
                // a lost note only means copies instead of links next time
                if let Some(Err(e)) = note.map(|n| {
                    self.store
                        .build_cache_set_note(&n, info.diff_id.hex().as_bytes())
                }) {
                    tracing::debug!("note the layer of the COPY: {e}");
                }
                Ok(info)
            }
        }
    }
}

/// The name of the build-cache note that holds the layer a COPY made last time
/// ([`copy::Reuse`]): by the context, the destination, owner and mode, and the sources, so
/// that the next build of the same instruction finds it whatever else changed. Only a hint:
/// every file linked from that layer is compared first. None for a COPY from a stage or an
/// image (their roots are this build's own, a note by them would never be found again).
fn copy_note(context: &Path, cj: &CopyJob) -> Option<String> {
    if cj.sources.is_empty() || cj.sources.iter().any(|(root, _)| root.is_some()) {
        return None;
    }
    let mut h = Sha256::new();
    h.update(context.as_os_str().as_encoded_bytes());
    h.update(format!(
        "\0{}\0{:?}\0{:?}\0{:?}",
        cj.dest, cj.attrs.owner, cj.attrs.mode, cj.sources
    ));
    Some(format!("copy-layer-{}", hex::encode(h.finalize())))
}

/// A stage's or image's root for COPY --from: `dir/root`, a mount or a copy.
struct FromRoot {
    mounted: bool,
    dir: rbox_storage::build_cache::ScratchDir,
}

impl Drop for FromRoot {
    fn drop(&mut self) {
        // before the scratch dir goes, which would otherwise delete through the mount
        if self.mounted {
            let _ = nix::mount::umount2(
                &self.dir.path().join("root"),
                nix::mount::MntFlags::MNT_DETACH,
            );
        }
    }
}

/// Mounts `layers` (top-most first) as kernel overlay at `scratch/root`, an empty upper
/// beside it, in a private mount namespace this process enters on first use (a mount in the
/// namespace rbox shares with other invocations would outlive the build).
fn mount_layers(layers: &[PathBuf], scratch: &Path) -> Result<()> {
    static PRIVATE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let private = *PRIVATE.get_or_init(|| crate::runtime::sys::private_mount_namespace().is_ok());
    if !private {
        bail!("no mount namespace of our own");
    }
    let (upper, work, root) = (scratch.join("u"), scratch.join("w"), scratch.join("root"));
    for d in [&upper, &work, &root] {
        std::fs::create_dir(d).with_context(|| format!("create `{}`", d.display()))?;
    }
    rbox_storage::Rootfs::Overlay {
        lowers: layers.to_vec(),
        upper,
        work,
        volatile: true,
    }
    .mount(&root)?;
    Ok(())
}

/// `dir` made absolute against the working directory `cur`.
fn absolute(cur: &str, dir: &str) -> String {
    let joined = if dir.starts_with('/') {
        dir.to_string()
    } else {
        format!("{cur}/{dir}")
    };
    let c = ignore::clean(&joined);
    let mut s = format!("/{}", c.join("/"));
    if dir.ends_with('/') && s != "/" {
        s.push('/');
    }
    s
}

/// HEALTHCHECK [--interval=..] CMD ... | NONE -> the config's Healthcheck.
fn healthcheck(ins: &Instruction, shell: &[String]) -> Result<Value> {
    let rest = ins.rest.trim();
    if rest.eq_ignore_ascii_case("none") {
        return Ok(json!({"Test": ["NONE"]}));
    }
    let Some(cmd) = rest
        .strip_prefix("CMD")
        .or_else(|| rest.strip_prefix("cmd"))
        .map(str::trim)
    else {
        bail!("HEALTHCHECK requires CMD or NONE");
    };
    let test = match serde_json::from_str::<Vec<String>>(cmd) {
        Ok(v) => {
            let mut t = vec!["CMD".to_string()];
            t.extend(v);
            t
        }
        Err(_) => {
            let _ = shell;
            vec!["CMD-SHELL".to_string(), cmd.to_string()]
        }
    };
    let mut h = json!({"Test": test});
    let dur = |s: &str| -> Result<u64> {
        Ok(humantime::parse_duration(s)
            .map_err(|e| anyhow!("invalid duration `{s}`: {e}"))?
            .as_nanos() as u64)
    };
    for (k, v) in &ins.flags {
        match k.as_str() {
            "interval" => h["Interval"] = json!(dur(v)?),
            "timeout" => h["Timeout"] = json!(dur(v)?),
            "start-period" => h["StartPeriod"] = json!(dur(v)?),
            "retries" => {
                h["Retries"] = json!(v
                    .parse::<u64>()
                    .map_err(|_| anyhow!("invalid --retries `{v}`"))?)
            }
            _ => bail!("unknown HEALTHCHECK flag --{k}"),
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_file_names() {
        assert_eq!(copy::url_file_name("http://h/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(copy::url_file_name("https://h:8080/dir/"), "dir");
        assert_eq!(copy::url_file_name("http://h"), "index.html");
    }

    #[test]
    fn workdirs_resolve_against_the_current_one() {
        assert_eq!(absolute("/", "w"), "/w");
        assert_eq!(absolute("/a", "b/../c"), "/a/c");
        assert_eq!(absolute("/a", "/x/"), "/x/");
        assert_eq!(absolute("/a", "."), "/a");
    }

    #[test]
    fn healthcheck_forms() {
        let f = parse::parse("FROM x\nHEALTHCHECK --interval=5s --retries=2 CMD [\"true\"]\nHEALTHCHECK CMD curl -f x\nHEALTHCHECK NONE\n").unwrap();
        let sh = vec!["/bin/sh".to_string(), "-c".to_string()];
        let h = healthcheck(&f.instructions[1], &sh).unwrap();
        assert_eq!(h["Test"], json!(["CMD", "true"]));
        assert_eq!(h["Interval"], json!(5_000_000_000u64));
        assert_eq!(h["Retries"], json!(2));
        let h = healthcheck(&f.instructions[2], &sh).unwrap();
        assert_eq!(h["Test"], json!(["CMD-SHELL", "curl -f x"]));
        assert_eq!(
            healthcheck(&f.instructions[3], &sh).unwrap()["Test"],
            json!(["NONE"])
        );
    }
}
