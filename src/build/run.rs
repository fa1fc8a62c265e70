//! RUN: a step's command in a container made from the current image exactly as `rbox run`
//! makes one ([`crate::runtime::run`]: the same namespaces, network and user rules; its
//! entrypoint off, its output passed through), whose upper directory (with the copy driver:
//! the difference of its root to the image) becomes the step's layer; `RUN --mount` (bind, cache, tmpfs, secret) as `rbox run --mount`s whose mount
//! points are left out of the layer. The container is removed whatever happens.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};

use super::{absolute, copy, ignore, parse, Builder, Stage};
use crate::runtime::{self, RunOptions};

impl Builder<'_> {
    /// `RUN --mount=type=bind|cache|tmpfs|secret,...` -> the `rbox run --mount` values (none
    /// for a secret that is not given and not required) and what keys the cache.
    pub(super) fn run_mount(
        &mut self,
        text: &str,
        scope: BTreeMap<String, String>,
    ) -> Result<(Vec<(String, String)>, String)> {
        let text = parse::expand(text, &scope, self.escape).map_err(anyhow::Error::msg)?;
        let mut kind = "bind".to_string();
        let mut o: BTreeMap<String, String> = BTreeMap::new();
        for item in text.split(',').filter(|i| !i.is_empty()) {
            let (k, v) = item.split_once('=').unwrap_or((item, "true"));
            if k == "type" {
                kind = v.to_string();
            } else {
                let k = match k {
                    "dst" | "destination" => "target",
                    "src" => "source",
                    "readonly" => "ro",
                    k => k,
                };
                o.insert(k.to_string(), v.to_string());
            }
        }
        let target = |o: &BTreeMap<String, String>| -> Result<String> {
            o.get("target")
                .map(|t| absolute("/", t))
                .ok_or_else(|| anyhow!("invalid --mount `{text}`: a target is required"))
        };
        match kind.as_str() {
            "bind" => {
                if o.get("rw").is_some_and(|v| v == "true") {
                    bail!("invalid --mount `{text}`: rw bind mounts are not supported yet");
                }
                let t = target(&o)?;
                let root = match o.get("from") {
                    Some(f) => self.root_of(f)?,
                    None => self.context.clone(),
                };
                let rel: PathBuf = ignore::clean(o.get("source").map_or("", |s| s))
                    .iter()
                    .collect();
                // symlinks resolved inside the root: never a host path outside it
                let rel = copy::in_root(&root, &rel)?;
                let src = root.join(&rel);
                if std::fs::symlink_metadata(&src).is_err() {
                    bail!("invalid --mount `{text}`: no `{}` to mount", rel.display());
                }
                let digest = copy::digest(
                    &copy::Source {
                        root: &root,
                        ignore: None,
                        what: String::new(),
                    },
                    &[rel],
                    (!o.contains_key("from")).then_some(&self.digests),
                )?;
                Ok((
                    vec![(format!("type=bind,source={},target={t},ro", src.display()), t)],
                    digest,
                ))
            }
            "cache" => {
                let t = target(&o)?;
                let id = o.get("id").cloned().unwrap_or_else(|| t.clone());
                let dir = self.store.build_cache_mount(&id)?;
                let uid = o.get("uid").map_or(Ok(0), |v| v.parse()).context("invalid uid")?;
                let gid = o.get("gid").map_or(Ok(0), |v| v.parse()).context("invalid gid")?;
                let mode = o
                    .get("mode")
                    .map_or(Ok(0o755), |m| u32::from_str_radix(m, 8))
                    .context("invalid mode")?;
                copy::set_owner_mode(&dir, (uid, gid), Some(mode))?;
                Ok((
                    vec![(format!("type=bind,source={},target={t}", dir.display()), t)],
                    String::new(),
                ))
            }
            "tmpfs" => {
                let t = target(&o)?;
                let size = o
                    .get("size")
                    .map(|s| format!(",tmpfs-size={s}"))
                    .unwrap_or_default();
                Ok((vec![(format!("type=tmpfs,target={t}{size}"), t)], String::new()))
            }
            "secret" => {
                let id = o
                    .get("id")
                    .cloned()
                    .or_else(|| o.get("target").map(|t| {
                        Path::new(t).file_name().unwrap_or_default().to_string_lossy().into_owned()
                    }))
                    .ok_or_else(|| anyhow!("invalid --mount `{text}`: a secret needs an id"))?;
                let t = o
                    .get("target")
                    .map(|t| absolute("/", t))
                    .unwrap_or_else(|| format!("/run/secrets/{id}"));
                match self.secrets.get(&id) {
                    Some(src) => Ok((
                        vec![(format!("type=bind,source={},target={t},ro", src.display()), t)],
                        String::new(),
                    )),
                    None if o.get("required").is_some_and(|v| v == "true") => {
                        bail!("secret {id:?} is required: give it with --secret id={id},src=FILE")
                    }
                    None => Ok((Vec::new(), String::new())),
                }
            }
            k => bail!("invalid --mount `{text}`: type {k:?} is not supported (bind, cache, tmpfs, secret)"),
        }
    }

    /// RUN: a container of the current image, as `rbox run` makes it (its entrypoint off,
    /// output passed through), whose upper directory becomes the layer.
    pub(super) fn run(
        &self,
        st: &Stage,
        argv: Vec<String>,
        env: Vec<String>,
        network: Option<String>,
        mounts: Vec<(String, String)>,
    ) -> Result<rbox_storage::LayerInfo> {
        let scratch = self.store.scratch_dir("build-run")?;
        let cidfile = scratch.path().join("cid");
        let flags = runtime::spec::Flags {
            entrypoint: Some(String::new()),
            command: argv.into_iter().map(OsString::from).collect(),
            env,
            network: network.unwrap_or_default(),
            mount: mounts.iter().map(|(m, _)| m.clone()).collect(),
            log_driver: Some("passthrough".into()),
            userns: String::new(),
            // the stage's USER, else root with root's groups: buildah's RUN has them (a run
            // without any user has none, as Podman)
            user: Some(
                st.img.config["config"]["User"]
                    .as_str()
                    .filter(|u| !u.is_empty())
                    .unwrap_or("0")
                    .to_string(),
            ),
            // chown, setuid and mknod of a device succeed (without effect) where the
            // namespace maps only the caller: apt, dpkg, useradd carry on
            security_opt: vec!["fakeroot=auto".into()],
            extra: runtime::spec::ExtraFlags {
                http_proxy: self.o.http_proxy,
                ..Default::default()
            },
            ..Default::default()
        };
        let opts = RunOptions {
            name: None,
            cidfile: Some(cidfile.clone()),
            detach: false,
            rm: false,
            image: st.img.id.to_string(),
            pull: "never".into(),
            platform: None,
            tls_verify: None,
            authfile: None,
            rootfs: false,
            image_file: None,
            flags,
            devices: Default::default(),
            detach_keys: Vec::new(),
            sig_proxy: true,
            hidden_streams: [false; 2],
        };
        let ran = {
            // `-q`: the steps' output goes nowhere, as with Podman
            let _quiet = if self.o.quiet {
                Some(Silenced::new()?)
            } else {
                None
            };
            // Ctrl-C: the watcher kills the container, the step ends as interrupted
            let watch = super::jobs::Watch::start();
            let ran = runtime::run(self.g, opts, self.puller, true);
            if watch.is_some_and(super::jobs::Watch::finish) {
                Err(super::jobs::Interrupted(nix::sys::signal::Signal::SIGINT).into())
            } else {
                ran
            }
        };
        // the container goes, whatever happened (it exists once its id file has the id)
        let id = std::fs::read_to_string(&cidfile).unwrap_or_default();
        let res = ran.and_then(|_| {
            if id.is_empty() {
                bail!("the build container left no id in `{}`", cidfile.display());
            }
            Ok(())
        });
        let res = res.and_then(|()| {
            let rec = crate::state::load(self.g, &id)?;
            let code = rec.state.exit_code.unwrap_or(-1);
            if code != 0 {
                // Podman's text and exit code
                return Err(crate::exit::CodedError::new(
                    1,
                    format!("while running runtime: exit status {code}"),
                )
                .into());
            }
            let dir = self.store.container_dir(&id)?;
            if rec.driver == rbox_storage::Driver::Copy {
                // no upper directory: the changes are the difference to the image
                let staging = self.store.scratch_dir("build-diff")?;
                copy::diff_rootfs(&dir.rootfs, &st.img.dirs, staging.path())?;
                for (_, target) in &mounts {
                    prune_mount_point(staging.path(), target, &st.img.dirs);
                }
                return self.staged(
                    staging.path(),
                    &["etc/hosts", "etc/hostname", "etc/resolv.conf"],
                );
            }
            // the mount points of RUN --mount are no changes of the step
            for (_, target) in &mounts {
                prune_mount_point(&dir.upper, target, &st.img.dirs);
            }
            self.staged(
                &dir.upper,
                &["etc/hosts", "etc/hostname", "etc/resolv.conf"],
            )
        });
        if !id.is_empty() {
            if let Ok(rec) = crate::state::load(self.g, &id) {
                let _ = crate::state::remove(self.g, &rec);
            }
            let _ = self.store.remove_container_dir(&id);
        }
        res
    }
}

/// Removes what the runtime made in `upper` only to mount over at `target` (an empty file or
/// directory, and its empty parents) where the image has nothing.
fn prune_mount_point(upper: &Path, target: &str, layers: &[PathBuf]) {
    let mut rel: PathBuf = ignore::clean(target).iter().collect();
    while !rel.as_os_str().is_empty() {
        if copy::lookup(layers, &rel).is_some() {
            return;
        }
        let p = upper.join(&rel);
        let gone = match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir(&p).is_ok(),
            Ok(m) if m.is_file() && m.len() == 0 => std::fs::remove_file(&p).is_ok(),
            _ => false,
        };
        if !gone {
            return;
        }
        rel.pop();
    }
}

/// Standard output and error pointed at /dev/null until dropped.
struct Silenced {
    out: std::os::fd::OwnedFd,
    err: std::os::fd::OwnedFd,
}

impl Silenced {
    pub(super) fn new() -> Result<Silenced> {
        let null = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .context("open /dev/null")?;
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let out = nix::unistd::dup(std::io::stdout()).context("save standard output")?;
        let err = nix::unistd::dup(std::io::stderr()).context("save standard error")?;
        nix::unistd::dup2_stdout(&null).context("silence standard output")?;
        nix::unistd::dup2_stderr(&null).context("silence standard error")?;
        Ok(Silenced { out, err })
    }
}

impl Drop for Silenced {
    fn drop(&mut self) {
        let _ = nix::unistd::dup2_stdout(&self.out);
        let _ = nix::unistd::dup2_stderr(&self.err);
    }
}

/// `--secret id=ID,src=FILE`s -> id -> file.
pub(super) fn secrets(given: &[String]) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for s in given {
        let mut id = None;
        let mut src = None;
        for item in s.split(',') {
            match item.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(v.to_string()),
                Some(("type", "file")) => {}
                _ => bail!("invalid --secret `{s}`: expected id=ID,src=FILE"),
            }
        }
        let (Some(id), Some(src)) = (id, src) else {
            bail!("invalid --secret `{s}`: expected id=ID,src=FILE");
        };
        let p = std::fs::canonicalize(&src)
            .with_context(|| format!("invalid --secret `{s}`: `{src}`"))?;
        out.insert(id, p);
    }
    Ok(out)
}
