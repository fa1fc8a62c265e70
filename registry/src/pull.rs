//! Pulling an image into the store: resolve the name (short-name search, aliases, mirrors),
//! fetch and verify the manifest (choosing a platform from an index), fetch and verify the
//! config, then stream every layer the store lacks straight from the HTTP body into
//! [`Store::pull_layer`] (blob digest, size and diff id verified in the same pass), several
//! layers at once, and record the image with [`Store::commit_image`].
//!
//! Nothing is recorded unless everything verified: a failed or killed pull leaves only
//! complete, verified layers and blobs behind (the store's temp files are swept on the next
//! open), and the next pull skips those layers.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use rbox_storage::{ImageRecord, Store};

use crate::client::Client;
use crate::config::{Endpoint, RegistriesConf};
use crate::manifest::{self, Blob, ImageManifest, Manifest};
use crate::platform::{self, Platform};
use crate::progress::{Progress, Skip};
use crate::{Digest, Error, Reference, Result, TransportOptions};

/// Largest image config read into memory.
const CONFIG_LIMIT: u64 = 32 << 20;
/// Layers downloaded at once by default.
pub const DEFAULT_JOBS: usize = 3;
/// Whole-layer attempts after the first, when a download fails transiently beyond what the
/// Range resume could repair.
const LAYER_RETRIES: u32 = 2;

/// `--pull`: when `rbox run`/`create` (and [`pull`]) contact the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull only when no local image matches (the default of run and create).
    #[default]
    Missing,
    /// Always pull (the behaviour of `rbox pull`).
    Always,
    /// Never pull; fail when the image is not local.
    Never,
    /// Pull when the registry has a different manifest than the local image.
    Newer,
}

impl FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "missing" | "ifmissing" => Ok(PullPolicy::Missing),
            "always" | "true" => Ok(PullPolicy::Always),
            "never" | "false" => Ok(PullPolicy::Never),
            "newer" | "ifnewer" => Ok(PullPolicy::Newer),
            _ => Err(format!(
                "invalid pull policy `{s}`: expected missing, always, never or newer"
            )),
        }
    }
}

/// Options of [`pull`].
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to choose from an index; the host's when `None`.
    pub platform: Option<Platform>,
    pub transport: TransportOptions,
    pub policy: PullPolicy,
    /// Layers downloaded at once.
    pub jobs: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            transport: TransportOptions::default(),
            policy: PullPolicy::Always,
            jobs: DEFAULT_JOBS,
        }
    }
}

/// Pull `reference` into `store` according to `opts.policy` and return the local image.
pub fn pull(
    store: &Store,
    reference: &str,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<ImageRecord> {
    let local = || store.lookup_image(reference);
    match opts.policy {
        PullPolicy::Never => {
            return local().map_err(|e| match e {
                rbox_storage::Error::ImageNotFound(_) => Error::PullNever(reference.to_string()),
                e => Error::Store(e),
            })
        }
        PullPolicy::Missing => match local() {
            Ok(rec) => return Ok(rec),
            Err(rbox_storage::Error::ImageNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        },
        PullPolicy::Newer => match local() {
            Ok(rec) => {
                match remote_digest(reference, &rec.digest, opts) {
                    Ok(d) if d == rec.digest => return Ok(rec),
                    Ok(_) => {}
                    Err(e) => {
                        // As podman: an unreachable registry keeps the local image.
                        progress.note(&format!(
                            "checking for a newer image: {e}; using the local one"
                        ));
                        return Ok(rec);
                    }
                }
            }
            Err(rbox_storage::Error::ImageNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        },
        PullPolicy::Always => {}
    }
    pull_always(store, reference, opts, progress)
}

fn pull_always(
    store: &Store,
    reference: &str,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<ImageRecord> {
    let r = Reference::parse(reference)?;
    let conf = RegistriesConf::load(opts.transport.registries_conf.as_deref())?;
    let want = opts.platform.clone().unwrap_or_else(Platform::host);
    let mut attempts: Vec<(String, Error)> = Vec::new();
    for cand in conf.candidates(&r)? {
        progress.trying(&cand.to_string());
        let sources = match conf.pull_sources(&cand, opts.transport.tls_verify) {
            Ok(s) => s,
            Err(e) => {
                attempts.push((cand.to_string(), e));
                continue;
            }
        };
        for ep in sources {
            match pull_from(store, &ep, &cand, &want, opts, progress) {
                Ok(rec) => return Ok(rec),
                Err(e) if e.try_next_source() => attempts.push((ep.reference.to_string(), e)),
                Err(e) => return Err(e),
            }
        }
    }
    Err(all_failed(reference, attempts))
}

/// Every tag of the repository `reference` names (its tag or digest ignored, as
/// `podman pull --all-tags` 4.3 ignores them), as references to pull one by one. A short name
/// is resolved like a pull's: the first search registry (or mirror) that lists the
/// repository answers.
pub fn list_tags(reference: &str, transport: &TransportOptions) -> Result<Vec<Reference>> {
    let r = Reference::parse(reference)?;
    let conf = RegistriesConf::load(transport.registries_conf.as_deref())?;
    let mut attempts: Vec<(String, Error)> = Vec::new();
    for cand in conf.candidates(&r)? {
        let cand = cand.without_digest();
        let sources = match conf.pull_sources(&cand, transport.tls_verify) {
            Ok(s) => s,
            Err(e) => {
                attempts.push((cand.name(), e));
                continue;
            }
        };
        for ep in sources {
            match connect(&ep, transport).and_then(|c| c.list_tags()) {
                Ok(tags) => {
                    return tags
                        .iter()
                        .map(|t| cand.with_tag(t).map_err(Error::from))
                        .collect()
                }
                Err(e) if e.try_next_source() => attempts.push((ep.reference.name(), e)),
                Err(e) => return Err(e),
            }
        }
    }
    Err(all_failed(reference, attempts))
}

/// Up to `limit` repositories of `registry` that match `term`: Docker Hub's search API where
/// the registry answers it, else the repositories of its catalog (`/v2/_catalog`) whose names
/// contain `term` (all of them for an empty term), in the registry's order, as Podman
/// searches a v2 registry. Plain HTTP as a pull would allow it (`--tls-verify=false`, or
/// registries.conf's `insecure`).
pub fn search(
    registry: &str,
    term: &str,
    limit: usize,
    transport: &TransportOptions,
) -> Result<Vec<crate::client::SearchResult>> {
    let conf = RegistriesConf::load(transport.registries_conf.as_deref())?;
    let insecure = match transport.tls_verify {
        Some(v) => !v,
        None => conf.is_insecure(registry),
    };
    let client = Client::connect(registry, "", insecure, false, transport)?;
    if let Some(found) = client.v1_search(term, limit)? {
        return Ok(found.into_iter().take(limit).collect());
    }
    // a catalog can be long: enough pages for any sensible search
    let all = client.list_catalog(100_000)?;
    Ok(all
        .into_iter()
        .filter(|r| r.contains(term))
        .take(limit)
        .map(|name| crate::client::SearchResult {
            name,
            ..Default::default()
        })
        .collect())
}

/// The error for a pull that found no source: the only failure itself, or all of them.
fn all_failed(reference: &str, mut attempts: Vec<(String, Error)>) -> Error {
    if attempts.len() == 1 {
        return attempts.pop().expect("one attempt").1;
    }
    Error::AllFailed {
        reference: reference.to_string(),
        attempts,
    }
}

/// The manifest digest the registry would give for `reference` on this platform. A HEAD that
/// answers `local` settles it without a GET (registries count GETs against rate limits).
fn remote_digest(reference: &str, local: &Digest, opts: &PullOptions) -> Result<Digest> {
    let r = Reference::parse(reference)?;
    let conf = RegistriesConf::load(opts.transport.registries_conf.as_deref())?;
    let want = opts.platform.clone().unwrap_or_else(Platform::host);
    let mut last = None;
    for cand in conf.candidates(&r)? {
        for ep in conf.pull_sources(&cand, opts.transport.tls_verify)? {
            let res = connect(&ep, &opts.transport).and_then(|c| {
                match c.head_manifest(&ep.reference.manifest_reference())? {
                    Some((d, _)) if d == *local => Ok(d),
                    _ => resolve(&c, &ep.reference, &want).map(|x| x.digest),
                }
            });
            match res {
                Ok(d) => return Ok(d),
                Err(e) if e.try_next_source() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::ManifestUnknown {
        reference: reference.to_string(),
    }))
}

fn connect(ep: &Endpoint, transport: &TransportOptions) -> Result<Client> {
    Client::connect(
        ep.reference.registry(),
        ep.reference.repository(),
        ep.insecure,
        false,
        transport,
    )
}

/// An image manifest chosen for this platform.
struct Resolved {
    bytes: Vec<u8>,
    digest: Digest,
    manifest: ImageManifest,
    /// Set when the manifest was picked from an index.
    from_index: bool,
}

fn resolve(client: &Client, r: &Reference, want: &Platform) -> Result<Resolved> {
    let shown = r.to_string();
    let top = client.get_manifest(&r.manifest_reference())?;
    match manifest::parse(&top.bytes, &top.media_type, &shown)? {
        Manifest::Image(m) => Ok(Resolved {
            bytes: top.bytes,
            digest: top.digest,
            manifest: m,
            from_index: false,
        }),
        Manifest::Index(entries) => {
            let platforms: Vec<Option<Platform>> =
                entries.iter().map(|e| e.platform.clone()).collect();
            let Some(i) = platform::choose(want, &platforms) else {
                let available: Vec<String> = platforms
                    .iter()
                    .flatten()
                    .filter(|p| p.os != "unknown")
                    .map(|p| p.to_string())
                    .collect();
                return Err(Error::NoMatchingPlatform {
                    reference: shown,
                    wanted: want.to_string(),
                    available: if available.is_empty() {
                        "no platforms".into()
                    } else {
                        available.join(", ")
                    },
                });
            };
            let entry = &entries[i];
            let child = client.get_manifest(&entry.digest.to_string())?;
            if child.bytes.len() as u64 != entry.size {
                return Err(Error::SizeMismatch {
                    what: format!("manifest {}", entry.digest),
                    expected: entry.size,
                    actual: child.bytes.len() as u64,
                });
            }
            match manifest::parse(&child.bytes, &child.media_type, &shown)? {
                Manifest::Image(m) => Ok(Resolved {
                    bytes: child.bytes,
                    digest: child.digest,
                    manifest: m,
                    from_index: true,
                }),
                Manifest::Index(_) => Err(Error::InvalidManifest {
                    reference: shown,
                    message: "an index inside an index".into(),
                }),
            }
        }
    }
}

/// The name the pulled image gets: the candidate with its tag, or with its digest when it
/// has no tag.
fn local_name(cand: &Reference) -> String {
    if cand.tag().is_some() {
        cand.without_digest().to_string()
    } else {
        cand.to_string()
    }
}

fn pull_from(
    store: &Store,
    ep: &Endpoint,
    cand: &Reference,
    want: &Platform,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<ImageRecord> {
    let client = connect(ep, &opts.transport)?;
    let shown = ep.reference.to_string();
    let resolved = resolve(&client, &ep.reference, want)?;
    let m = &resolved.manifest;

    progress.config(&m.config.digest);
    let config = if store.has_blob(&m.config.digest) {
        store.read_blob(&m.config.digest)?
    } else {
        client.get_blob_bytes(&m.config.digest, Some(m.config.size), CONFIG_LIMIT)?
    };
    let summary = manifest::config_summary(&config, &shown)?;
    if summary.diff_ids.len() != m.layers.len() {
        return Err(Error::InvalidManifest {
            reference: shown,
            message: format!(
                "{} layers but the config lists {} diff ids",
                m.layers.len(),
                summary.diff_ids.len()
            ),
        });
    }
    if !resolved.from_index && opts.platform.is_some() {
        let p = &summary.platform;
        if p.os != want.os || p.architecture != want.architecture {
            progress.note(&format!(
                "image platform ({p}) does not match the expected platform ({want})"
            ));
        }
    }

    let mut todo: Vec<(&Blob, &Digest)> = Vec::new();
    for (blob, diff) in m.layers.iter().zip(&summary.diff_ids) {
        if store.has_layer(diff) && store.has_blob(&blob.digest) {
            progress.blob_skipped(&blob.digest, &Skip::AlreadyExists);
        } else if !todo.iter().any(|(b, _)| b.digest == blob.digest) {
            todo.push((blob, diff));
        }
    }
    progress.start(todo.len(), todo.iter().map(|(b, _)| b.size).sum());
    fetch_layers(store, &client, &todo, opts.jobs.max(1), progress)?;

    progress.writing_manifest();
    // A pull by digest of an image the store already has under a name in that repository
    // adds no `repo@sha256:...` name: the extra name would show as a `<none>` row and make
    // `rmi ID` refuse an image with several names (Podman adds none either).
    let name = local_name(cand);
    let names = if cand.tag().is_none() && store.lookup_image(&name).is_ok() {
        Vec::new()
    } else {
        vec![name]
    };
    let rec = store.commit_image(&resolved.bytes, &config, &names)?;
    Ok(rec)
}

/// Download `todo` with up to `jobs` threads. The first failure stops the others at their
/// next read.
fn fetch_layers(
    store: &Store,
    client: &Client,
    todo: &[(&Blob, &Digest)],
    jobs: usize,
    progress: &dyn Progress,
) -> Result<()> {
    if todo.is_empty() {
        return Ok(());
    }
    crate::for_each_parallel(todo, jobs, |(blob, diff), stop| {
        fetch_layer(store, client, blob, diff, stop, progress)
    })
}

/// A reader that fails once another layer has failed, so its thread stops early.
struct Stoppable<'a, R> {
    inner: R,
    stop: &'a AtomicBool,
}

impl<R: std::io::Read> std::io::Read for Stoppable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("stopped: another layer failed"));
        }
        self.inner.read(buf)
    }
}

fn fetch_layer(
    store: &Store,
    client: &Client,
    blob: &Blob,
    diff: &Digest,
    stop: &AtomicBool,
    progress: &dyn Progress,
) -> Result<()> {
    let wrap = |e: Error| Error::Layer {
        digest: blob.digest.clone(),
        error: Box::new(e),
    };
    let on_bytes = |n: u64| progress.blob_bytes(&blob.digest, n);
    let mut attempt = 0;
    progress.blob_start(&blob.digest, blob.size);
    loop {
        let res = client
            .blob_reader(&blob.digest, Some(blob.size), Some(&on_bytes))
            .and_then(|r| {
                let r = Stoppable { inner: r, stop };
                store
                    .pull_layer(r, &blob.digest, Some(blob.size), Some(diff))
                    .map_err(Error::from)
            });
        match res {
            Ok(_) => {
                progress.blob_done(&blob.digest);
                return Ok(());
            }
            Err(e)
                if e.is_transient() && attempt < LAYER_RETRIES && !stop.load(Ordering::Relaxed) =>
            {
                attempt += 1;
                progress.blob_restart(&blob.digest);
            }
            Err(e) => return Err(wrap(e)),
        }
    }
}

/// A manifest or index as the registry serves it, for `rbox manifest inspect`.
#[derive(Debug, Clone)]
pub struct RemoteManifest {
    /// The reference it was fetched from (after short-name resolution and mirrors).
    pub reference: String,
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

/// Fetch the manifest or index of `reference` without pulling anything.
pub fn inspect_remote(reference: &str, transport: &TransportOptions) -> Result<RemoteManifest> {
    let r = Reference::parse(reference)?;
    let conf = RegistriesConf::load(transport.registries_conf.as_deref())?;
    let mut attempts = Vec::new();
    for cand in conf.candidates(&r)? {
        let sources = match conf.pull_sources(&cand, transport.tls_verify) {
            Ok(s) => s,
            Err(e) => {
                attempts.push((cand.to_string(), e));
                continue;
            }
        };
        for ep in sources {
            let res = connect(&ep, transport)
                .and_then(|c| c.get_manifest(&ep.reference.manifest_reference()));
            match res {
                Ok(m) => {
                    return Ok(RemoteManifest {
                        reference: ep.reference.to_string(),
                        media_type: m.media_type,
                        digest: m.digest,
                        bytes: m.bytes,
                    })
                }
                Err(e) if e.try_next_source() => attempts.push((ep.reference.to_string(), e)),
                Err(e) => return Err(e),
            }
        }
    }
    Err(all_failed(reference, attempts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert_eq!("missing".parse::<PullPolicy>(), Ok(PullPolicy::Missing));
        assert_eq!("Always".parse::<PullPolicy>(), Ok(PullPolicy::Always));
        assert_eq!("never".parse::<PullPolicy>(), Ok(PullPolicy::Never));
        assert_eq!("newer".parse::<PullPolicy>(), Ok(PullPolicy::Newer));
        assert!("sometimes".parse::<PullPolicy>().is_err());
    }

    #[test]
    fn names_of_pulled_images() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse("reg:5000/a/b:1").unwrap();
        assert_eq!(local_name(&r), "reg:5000/a/b:1");
        let r = Reference::parse(&format!("reg:5000/a/b@{d}")).unwrap();
        assert_eq!(local_name(&r), format!("reg:5000/a/b@{d}"));
        let r = Reference::parse(&format!("reg:5000/a/b:1@{d}")).unwrap();
        assert_eq!(local_name(&r), "reg:5000/a/b:1");
    }
}
