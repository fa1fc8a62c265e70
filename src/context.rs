//! The invocation's context: what the global options (`--root`, `--runroot`,
//! `--storage-driver`) decide, built once by the command layer (`cmd::dispatch`) and handed
//! down as `&Context` to the runtime, the container records and the paths. Nothing below the
//! command layer sees the clap structs.
//!
//! The two directories are resolved lazily, on first use, as before: a command that never
//! touches the store (`version`, `login`) must not fail on an unusable `$HOME`. The runtime
//! directory is then decided once for the whole invocation (see [`Context::runtime_dir`]).
//! Where the directories are and how they are checked is `paths`' business, not this file's.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Result;

use crate::paths;

/// What the global options decided, for one invocation.
#[derive(Debug, Default)]
pub struct Context {
    /// `--root` as given (relative paths are made absolute when used)
    root: Option<PathBuf>,
    /// `--runroot` as given
    runroot: Option<PathBuf>,
    /// `--storage-driver` as given (parsed where the root filesystem is made)
    storage_driver: Option<String>,
    /// the runtime directory, once decided
    runtime_dir: OnceLock<PathBuf>,
    /// the storage root, once decided
    storage_root: OnceLock<PathBuf>,
    /// `--additional-image-store` (else storage.conf's `additionalimagestores`), in order
    additional_image_stores: Vec<PathBuf>,
    /// `--hooks-dir`, in order
    hooks_dirs: Vec<PathBuf>,
}

impl Context {
    pub fn new(
        root: Option<PathBuf>,
        runroot: Option<PathBuf>,
        storage_driver: Option<String>,
    ) -> Context {
        Context {
            root,
            runroot,
            storage_driver,
            runtime_dir: OnceLock::new(),
            storage_root: OnceLock::new(),
            additional_image_stores: Vec::new(),
            hooks_dirs: Vec::new(),
        }
    }

    /// Sets the OCI hooks directories given with `--hooks-dir`.
    pub fn with_hooks_dirs(mut self, dirs: Vec<PathBuf>) -> Context {
        self.hooks_dirs = dirs;
        self
    }

    /// `--hooks-dir` as given (empty: containers.conf's, else the defaults).
    pub fn hooks_dirs(&self) -> &[PathBuf] {
        &self.hooks_dirs
    }

    /// Sets the read-only additional image stores, searched in this order.
    pub fn with_additional_image_stores(mut self, dirs: Vec<PathBuf>) -> Context {
        self.additional_image_stores = dirs;
        self
    }

    /// The additional image stores as absolute paths, each resolved as `--root` is (a
    /// containers/storage root names rbox's store in its `rbox/`).
    pub fn additional_image_stores(&self) -> Vec<PathBuf> {
        self.additional_image_stores
            .iter()
            .filter_map(|d| paths::storage_root(Some(d)).ok())
            .collect()
    }

    /// The durable storage root. Does not create it. Decided once per invocation, as the
    /// runtime directory is (a start asks several times, and whether `--root` is Podman's own
    /// store takes three lookups).
    pub fn storage_root(&self) -> Result<PathBuf> {
        if let Some(d) = self.storage_root.get() {
            return Ok(d.clone());
        }
        let d = paths::storage_root(self.root.as_deref())?;
        Ok(self.storage_root.get_or_init(|| d).clone())
    }

    /// The volatile runtime directory, created 0700 if missing. Decided once per invocation
    /// (the first call, before anything is created or started), so that a directory that
    /// changes under us later cannot split one invocation's state between two places.
    pub fn runtime_dir(&self) -> Result<PathBuf> {
        if let Some(d) = self.runtime_dir.get() {
            return Ok(d.clone());
        }
        let d = paths::choose_runtime_dir(self.runroot.as_deref(), self.root.as_deref())?;
        Ok(self.runtime_dir.get_or_init(|| d).clone())
    }

    /// The runtime directory if it was decided already (and so found private then).
    pub fn decided_runtime_dir(&self) -> Option<&Path> {
        self.runtime_dir.get().map(PathBuf::as_path)
    }

    /// `--storage-driver` as given, if any.
    /// `--root` and `--runroot` as absolute paths, where they were given (a command line that
    /// runs rbox later, such as a systemd unit, must name the same store).
    pub fn explicit_dirs(&self) -> Vec<(&'static str, PathBuf)> {
        let mut out = Vec::new();
        if self.root.is_some() {
            if let Ok(r) = self.storage_root() {
                out.push(("--root", r));
            }
        }
        if self.runroot.is_some() {
            if let Ok(r) = self.runtime_dir() {
                out.push(("--runroot", r));
            }
        }
        out
    }

    pub fn storage_driver(&self) -> Option<&str> {
        self.storage_driver.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_directory_is_decided_once() {
        let d = tempfile::tempdir().unwrap();
        let first = d.path().join("one");
        let ctx = Context::new(None, Some(first.clone()), None);
        assert_eq!(ctx.runtime_dir().unwrap(), first);
        // a later change of mind (here: the directory vanishing) does not move the state
        std::fs::remove_dir(&first).unwrap();
        assert_eq!(ctx.runtime_dir().unwrap(), first);
        assert!(!first.exists());
    }

    #[test]
    fn the_storage_root_follows_root() {
        let ctx = Context::new(Some("/srv/rbox".into()), None, Some("vfs".into()));
        assert_eq!(ctx.storage_root().unwrap(), PathBuf::from("/srv/rbox"));
        assert_eq!(ctx.storage_driver(), Some("vfs"));
        let rel = Context::new(Some("rel".into()), None, None);
        assert!(rel.storage_root().unwrap().is_absolute());
    }
}
