//! Helpers shared by the listing and image commands: opening the store for reading (no user
//! namespace, no lock), short ids, and splitting image names for display.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use rbox_storage::{IdMap, Store};

use crate::context::Context;

/// Open the store for commands that only read it (images, ps, inspect, history, save): no
/// namespace entry. The id map only matters when unpacking, which these never do.
pub fn read_store(g: &Context) -> Result<Store> {
    let root: PathBuf = g.storage_root()?;
    let mut store = Store::open(
        &root,
        IdMap {
            uid_count: 1,
            gid_count: 1,
        },
    )
    .with_context(|| format!("open storage at `{}`", root.display()))?;
    crate::runtime::add_image_stores(g, &mut store);
    Ok(store)
}

/// Runs `f` on each of `items` (`volume rm`, `secret rm`): what fails does not stop the
/// others; every error but the last is printed as it comes, the last is the command's, as
/// Podman reports them.
pub fn each_then_last_error<T>(items: &[T], mut f: impl FnMut(&T) -> Result<()>) -> Result<()> {
    let mut last: Option<anyhow::Error> = None;
    for item in items {
        if let Err(e) = f(item) {
            if let Some(prev) = last.replace(e) {
                eprintln!("Error: {prev:#}");
            }
        }
    }
    match last {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// An unknown image is reported as Podman reports it, `Error: NAME: image not known`, without
/// the context the command adds (`tag ...`, `pull ...`): scripts match that line.
pub fn image_not_known_bare(e: anyhow::Error) -> anyhow::Error {
    let bare = e.chain().find_map(|c| {
        if let Some(rbox_storage::Error::ImageNotFound(_)) = c.downcast_ref::<rbox_storage::Error>()
        {
            return Some(c.to_string());
        }
        match c.downcast_ref::<rbox_registry::Error>() {
            Some(
                rbox_registry::Error::PullNever(_)
                | rbox_registry::Error::Store(rbox_storage::Error::ImageNotFound(_)),
            ) => Some(c.to_string()),
            _ => None,
        }
    });
    match bare {
        Some(text) => anyhow::anyhow!(text),
        None => e,
    }
}

/// The first 12 hex digits of an id (with or without `sha256:`).
pub fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// Split a stored name `registry/repo:tag[@digest]` into repository and tag (`<none>` when
/// there is none), as `rbox images` shows them.
pub fn split_name(name: &str) -> (String, String) {
    let name = name.split('@').next().unwrap_or(name);
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[slash..].rfind(':') {
        Some(i) => (
            name[..slash + i].to_string(),
            name[slash + i + 1..].to_string(),
        ),
        None => (name.to_string(), "<none>".to_string()),
    }
}

/// Seconds since the epoch of an RFC 3339 time, or 0.
pub fn epoch(t: Option<&str>) -> i64 {
    t.and_then(crate::format::human::parse_rfc3339).unwrap_or(0)
}

/// Refuse to write binary data to a terminal.
pub fn stdout_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_the_tag_not_the_port() {
        assert_eq!(
            split_name("localhost/busybox:latest"),
            ("localhost/busybox".into(), "latest".into())
        );
        assert_eq!(
            split_name("localhost:5000/a/b:1.2"),
            ("localhost:5000/a/b".into(), "1.2".into())
        );
        assert_eq!(
            split_name("localhost:5000/a/b"),
            ("localhost:5000/a/b".into(), "<none>".into())
        );
        assert_eq!(
            split_name("docker.io/library/alpine:3@sha256:abc"),
            ("docker.io/library/alpine".into(), "3".into())
        );
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
