//! Pushing a stored image to a registry: for each blob (layers, then config) a HEAD to skip
//! what the repository has, a cross-repository mount when another name of the image lives on
//! the same registry, else an upload (POST, then one PUT with the whole blob, or PATCH chunks
//! and a closing PUT for large blobs); finally the manifest PUT under the tag.
//!
//! Blobs are read from the store as they are (`Store::blob_path`); the manifest and config are
//! pushed byte for byte as stored, so the image keeps its digest.

use rbox_storage::{ImageRecord, Store};

use crate::client::{Client, ReqBody, UploadStart};
use crate::config::RegistriesConf;
use crate::manifest::{self, Blob, Manifest};
use crate::progress::{Progress, Skip};
use crate::{Digest, Error, Reference, Result, TransportOptions};

/// Blobs larger than this are uploaded in PATCH chunks of this size.
pub const DEFAULT_CHUNK_SIZE: u64 = 64 << 20;
/// Blobs uploaded at once by default.
pub const DEFAULT_JOBS: usize = 3;
/// Attempts after the first for one blob upload that failed transiently.
const BLOB_RETRIES: u32 = 2;

/// Options of [`push`].
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub transport: TransportOptions,
    /// Chunk size for large blobs (bytes, at least 1).
    pub chunk_size: u64,
    /// Blobs uploaded at once.
    pub jobs: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            transport: TransportOptions::default(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            jobs: DEFAULT_JOBS,
        }
    }
}

/// What was pushed where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The full destination reference.
    pub destination: String,
    /// The manifest digest in the registry.
    pub digest: Digest,
}

/// Strip a `docker://` transport; refuse the other containers-transports forms.
pub fn destination_string(dest: &str) -> Result<&str> {
    if let Some(rest) = dest.strip_prefix("docker://") {
        return Ok(rest);
    }
    for t in [
        "oci:",
        "oci-archive:",
        "docker-archive:",
        "dir:",
        "containers-storage:",
        "docker-daemon:",
    ] {
        if dest.starts_with(t) {
            return Err(Error::Usage(format!(
                "destination `{dest}`: only registry destinations (docker://) can be pushed; \
                 use rbox save for archives"
            )));
        }
    }
    Ok(dest)
}

/// The registry reference to push `image` (as the user named it) to.
fn destination(image: &str, dest: Option<&str>, rec: &ImageRecord) -> Result<Reference> {
    if let Some(d) = dest {
        return Ok(Reference::parse(destination_string(d)?)?);
    }
    let given = Reference::parse(destination_string(image)?).map_err(|_| {
        Error::Usage(format!(
            "`{image}` is not a name: give a destination to push it to"
        ))
    })?;
    if !given.is_short_name() {
        return Ok(given);
    }
    // A short name: push to the registry of the local name it matched (localhost/x, ...).
    let bare = given
        .repository()
        .strip_prefix("library/")
        .unwrap_or(given.repository());
    for n in &rec.names {
        if let Ok(r) = Reference::parse(n) {
            let repo_ok = r.repository() == given.repository() || r.repository() == bare;
            if repo_ok && r.tag() == given.tag() {
                return Ok(r);
            }
        }
    }
    Err(Error::Usage(format!(
        "cannot tell where to push `{image}`: give a fully qualified destination"
    )))
}

/// Push the local `image` to `dest` (or to the registry its name says) and return the result.
pub fn push(
    store: &Store,
    image: &str,
    dest: Option<&str>,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<PushReport> {
    let rec = store.lookup_image(image)?;
    let dest = destination(image, dest, &rec)?;
    let conf = RegistriesConf::load(opts.transport.registries_conf.as_deref())?;
    let ep = conf.push_endpoint(&dest, opts.transport.tls_verify)?;
    let target = ep.reference.clone();
    let manifest_bytes = store.image_manifest(&rec)?;
    let shown = target.to_string();
    let Manifest::Image(m) = manifest::parse(&manifest_bytes, &rec.manifest_media_type, &shown)?
    else {
        return Err(Error::InvalidManifest {
            reference: shown,
            message: "the stored manifest is an index".into(),
        });
    };
    if let Some(d) = target.digest() {
        if *d != Digest::of(&manifest_bytes) {
            return Err(Error::Usage(format!(
                "destination `{target}` names digest {d}, but the image's manifest is {}",
                Digest::of(&manifest_bytes)
            )));
        }
    }

    let client = Client::connect(
        target.registry(),
        target.repository(),
        ep.insecure,
        true,
        &opts.transport,
    )?;
    // Other repositories of the same registry that hold this image: candidates for mounts.
    let mut mount_from: Vec<String> = rec
        .names
        .iter()
        .filter_map(|n| Reference::parse(n).ok())
        .filter(|r| r.registry() == target.registry() && r.repository() != target.repository())
        .map(|r| r.repository().to_string())
        .collect();
    mount_from.dedup();

    let mut blobs: Vec<&Blob> = m.layers.iter().collect();
    blobs.push(&m.config);
    let mut seen = Vec::new();
    blobs.retain(|b| {
        let new = !seen.contains(&b.digest);
        seen.push(b.digest.clone());
        new
    });
    progress.start(blobs.len(), blobs.iter().map(|b| b.size).sum());
    let ctx = Ctx {
        store,
        client: &client,
        mount_from: &mount_from,
        chunk_size: opts.chunk_size.max(1),
        progress,
    };
    upload_all(&ctx, &blobs, opts.jobs.max(1))?;

    progress.writing_manifest();
    let reference = target.manifest_reference();
    let digest = client.put_manifest(&reference, &m.media_type, &manifest_bytes)?;
    Ok(PushReport {
        destination: target.to_string(),
        digest,
    })
}

struct Ctx<'a> {
    store: &'a Store,
    client: &'a Client,
    mount_from: &'a [String],
    chunk_size: u64,
    progress: &'a dyn Progress,
}

fn upload_all(ctx: &Ctx<'_>, blobs: &[&Blob], jobs: usize) -> Result<()> {
    crate::for_each_parallel(blobs, jobs, |blob, _| push_blob(ctx, blob))
}

fn push_blob(ctx: &Ctx<'_>, blob: &Blob) -> Result<()> {
    let d = &blob.digest;
    if ctx.client.blob_exists(d)? {
        ctx.progress.blob_skipped(d, &Skip::AlreadyExists);
        return Ok(());
    }
    let mut attempt = 0;
    loop {
        match push_blob_once(ctx, blob) {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() && attempt < BLOB_RETRIES => {
                attempt += 1;
                ctx.progress.blob_restart(d);
            }
            Err(e) => {
                return Err(Error::Layer {
                    digest: d.clone(),
                    error: Box::new(e),
                })
            }
        }
    }
}

fn push_blob_once(ctx: &Ctx<'_>, blob: &Blob) -> Result<()> {
    let d = &blob.digest;
    let client = ctx.client;
    let mut session = None;
    if let Some(from) = ctx.mount_from.first() {
        client.add_scope(format!("repository:{from}:pull"));
        match client.start_upload(Some((d, from))) {
            Ok(UploadStart::Mounted) => {
                ctx.progress
                    .blob_skipped(d, &Skip::Mounted { from: from.clone() });
                return Ok(());
            }
            // The registry could not mount and opened a normal session instead.
            Ok(UploadStart::Session(loc)) => session = Some(loc),
            Err(e) if e.is_transient() => return Err(e),
            Err(_) => {}
        }
    }
    let path = ctx.store.blob_path(d);
    let size = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Store(rbox_storage::Error::BlobNotFound(d.clone())))
        }
        Err(e) => return Err(Error::io(format!("stat `{}`", path.display()), e)),
    };
    if size != blob.size {
        return Err(Error::SizeMismatch {
            what: format!("stored blob {d}"),
            expected: blob.size,
            actual: size,
        });
    }
    let mut location = match session {
        Some(l) => l,
        None => match client.start_upload(None)? {
            UploadStart::Session(l) => l,
            UploadStart::Mounted => return Ok(()),
        },
    };
    ctx.progress.blob_start(d, size);
    let on_bytes = |n: u64| ctx.progress.blob_bytes(d, n);
    if size <= ctx.chunk_size {
        client.finish_upload(
            &location,
            d,
            ReqBody::File {
                path: &path,
                offset: 0,
                len: size,
                progress: Some(&on_bytes),
            },
        )?;
    } else {
        let mut offset = 0;
        while offset < size {
            let len = ctx.chunk_size.min(size - offset);
            location = client.patch_chunk(&location, &path, offset, len, Some(&on_bytes))?;
            offset += len;
        }
        client.finish_upload(&location, d, ReqBody::None)?;
    }
    ctx.progress.blob_done(d);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(names: &[&str]) -> ImageRecord {
        let d = Digest::of(b"x");
        ImageRecord {
            id: d.clone(),
            names: names.iter().map(|s| s.to_string()).collect(),
            digest: d,
            manifest_media_type: manifest::OCI_MANIFEST.into(),
            layers: Vec::new(),
            created: None,
            size: 0,
            read_only_store: None,
        }
    }

    #[test]
    fn destinations() {
        let r = rec(&["localhost/busybox:latest", "reg:5000/team/app:1"]);
        let d =
            |image: &str, dest: Option<&str>| destination(image, dest, &r).map(|x| x.to_string());
        assert_eq!(d("busybox", None).unwrap(), "localhost/busybox:latest");
        assert_eq!(
            d("reg:5000/team/app:1", None).unwrap(),
            "reg:5000/team/app:1"
        );
        assert_eq!(
            d("busybox", Some("docker://reg:5000/x/y:2")).unwrap(),
            "reg:5000/x/y:2"
        );
        assert_eq!(
            d("busybox", Some("reg:5000/x/y")).unwrap(),
            "reg:5000/x/y:latest"
        );
        assert!(d("busybox", Some("oci-archive:/tmp/x.tar")).is_err());
        assert!(d("other", None).is_err());
        assert!(d(&"a".repeat(64), None).is_err());
    }
}
