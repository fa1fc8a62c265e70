//! Pushing a stored image to a registry: for each blob (layers, then config) a HEAD to skip
//! what the repository has, a cross-repository mount when another name of the image lives on
//! the same registry, else an upload (POST, then one PUT with the whole blob, or PATCH chunks
//! and a closing PUT for large blobs); finally the manifest PUT under the tag.
//!
//! Blobs are read from the store as they are (`Store::blob_path`); the manifest and config are
//! pushed byte for byte as stored, so the image keeps its digest, unless `--format` asks for
//! the other manifest type or `--compression-format` for layers compressed otherwise: then the
//! layers concerned are compressed anew into temporary files and a manifest is written for
//! them (the config, and so the image id, stays the same).

use std::path::PathBuf;

use rbox_storage::{Compression, ImageRecord, ManifestFormat, RecompressedBlob, Store};
use serde_json::json;

use crate::client::{Client, ReqBody, UploadStart};
use crate::config::RegistriesConf;
use crate::manifest::{self, Blob, ImageManifest, Manifest};
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
    /// `--format`: the manifest type to write; the stored one's when `None`.
    pub format: Option<ManifestFormat>,
    /// `--compression-format`: layers compressed otherwise are compressed anew with this.
    pub compression: Option<Compression>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            transport: TransportOptions::default(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            jobs: DEFAULT_JOBS,
            format: None,
            compression: None,
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

    // Layers to compress anew; the temporary files live until the push ends.
    let mut recompressed: Vec<Option<RecompressedBlob>> = Vec::new();
    for l in &m.layers {
        let have = compression_of(&l.media_type, &shown)?;
        recompressed.push(match opts.compression {
            Some(want) if want != have => {
                let diff_id = rec
                    .layers
                    .iter()
                    .find(|r| r.blob == l.digest)
                    .map(|r| r.diff_id.clone())
                    .ok_or_else(|| {
                        Error::Store(rbox_storage::Error::BlobNotFound(l.digest.clone()))
                    })?;
                Some(store.recompress_blob(&l.digest, &diff_id, want)?)
            }
            _ => None,
        });
    }
    let layers: Vec<(Blob, Compression)> = m
        .layers
        .iter()
        .zip(&recompressed)
        .map(|(l, r)| {
            let c = compression_of(&l.media_type, &shown)?;
            Ok(match r {
                Some(r) => {
                    let b = Blob {
                        media_type: l.media_type.clone(),
                        digest: r.digest.clone(),
                        size: r.size,
                    };
                    (b, opts.compression.unwrap_or(c))
                }
                None => (l.clone(), c),
            })
        })
        .collect::<Result<_>>()?;
    let (media_type, manifest_bytes) = manifest_to_push(
        &m,
        &manifest_bytes,
        opts.format,
        &layers,
        recompressed.iter().any(Option::is_some),
    )?;

    let mut blobs: Vec<Upload> = layers
        .iter()
        .zip(&recompressed)
        .map(|((b, _), r)| Upload {
            blob: b.clone(),
            path: r
                .as_ref()
                .map(|r| r.path().to_path_buf())
                .unwrap_or_else(|| store.blob_path(&b.digest)),
        })
        .collect();
    blobs.push(Upload {
        blob: m.config.clone(),
        path: store.blob_path(&m.config.digest),
    });
    let mut seen = Vec::new();
    blobs.retain(|u| {
        let new = !seen.contains(&u.blob.digest);
        seen.push(u.blob.digest.clone());
        new
    });
    progress.start(blobs.len(), blobs.iter().map(|u| u.blob.size).sum());
    let ctx = Ctx {
        client: &client,
        mount_from: &mount_from,
        chunk_size: opts.chunk_size.max(1),
        progress,
    };
    upload_all(&ctx, &blobs, opts.jobs.max(1))?;

    progress.writing_manifest();
    let reference = target.manifest_reference();
    let digest = client.put_manifest(&reference, &media_type, &manifest_bytes)?;
    Ok(PushReport {
        destination: target.to_string(),
        digest,
    })
}

/// The compression a layer media type names.
fn compression_of(media_type: &str, shown: &str) -> Result<Compression> {
    Ok(
        match manifest::layer_compression(media_type).map_err(|message| Error::InvalidManifest {
            reference: shown.to_string(),
            message,
        })? {
            manifest::LayerCompression::None => Compression::None,
            manifest::LayerCompression::Gzip => Compression::Gzip,
            manifest::LayerCompression::Zstd => Compression::Zstd,
        },
    )
}

/// The media type and bytes of the manifest to push: the stored ones when neither the format
/// nor any layer changes (the image keeps its digest), else a manifest of `format` (the stored
/// one's by default) over `layers`, each with its compression's media type for that format.
fn manifest_to_push(
    m: &ImageManifest,
    stored: &[u8],
    format: Option<ManifestFormat>,
    layers: &[(Blob, Compression)],
    layers_changed: bool,
) -> Result<(String, Vec<u8>)> {
    let stored_format = if m.media_type == manifest::DOCKER_MANIFEST {
        ManifestFormat::Docker
    } else {
        ManifestFormat::Oci
    };
    let format = format.unwrap_or(stored_format);
    if format == stored_format && !layers_changed {
        return Ok((m.media_type.clone(), stored.to_vec()));
    }
    let (media_type, config_type) = match format {
        ManifestFormat::Oci => (manifest::OCI_MANIFEST, manifest::OCI_CONFIG),
        ManifestFormat::Docker => (manifest::DOCKER_MANIFEST, manifest::DOCKER_CONFIG),
    };
    let descs = layers
        .iter()
        .map(|(b, c)| {
            let mt = match (format, c) {
                (ManifestFormat::Oci, c) => c.oci_media_type(),
                (ManifestFormat::Docker, Compression::Zstd) => {
                    return Err(Error::Usage(format!(
                        "layer {} is zstd-compressed, which a docker v2s2 manifest cannot \
                         describe: push with --format oci or --compression-format gzip",
                        b.digest
                    )))
                }
                (ManifestFormat::Docker, c) => c.docker_media_type(),
            };
            Ok(json!({"mediaType": mt, "size": b.size, "digest": b.digest.to_string()}))
        })
        .collect::<Result<Vec<_>>>()?;
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": config_type,
            "size": m.config.size,
            "digest": m.config.digest.to_string(),
        },
        "layers": descs,
    });
    Ok((
        media_type.to_string(),
        serde_json::to_vec(&doc).expect("a manifest serializes"),
    ))
}

/// A blob to upload and the file holding it.
struct Upload {
    blob: Blob,
    path: PathBuf,
}

struct Ctx<'a> {
    client: &'a Client,
    mount_from: &'a [String],
    chunk_size: u64,
    progress: &'a dyn Progress,
}

fn upload_all(ctx: &Ctx<'_>, blobs: &[Upload], jobs: usize) -> Result<()> {
    crate::for_each_parallel(blobs, jobs, |u, _| push_blob(ctx, u))
}

fn push_blob(ctx: &Ctx<'_>, upload: &Upload) -> Result<()> {
    let blob = &upload.blob;
    let d = &blob.digest;
    if ctx.client.blob_exists(d)? {
        ctx.progress.blob_skipped(d, &Skip::AlreadyExists);
        return Ok(());
    }
    let mut attempt = 0;
    loop {
        match push_blob_once(ctx, upload) {
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

fn push_blob_once(ctx: &Ctx<'_>, upload: &Upload) -> Result<()> {
    let blob = &upload.blob;
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
    let path = &upload.path;
    let size = match std::fs::metadata(path) {
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
                path,
                offset: 0,
                len: size,
                progress: Some(&on_bytes),
            },
        )?;
    } else {
        let mut offset = 0;
        while offset < size {
            let len = ctx.chunk_size.min(size - offset);
            location = client.patch_chunk(&location, path, offset, len, Some(&on_bytes))?;
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
    fn manifest_to_push_keeps_or_rewrites() {
        let blob = |mt: &str, data: &[u8]| Blob {
            media_type: mt.into(),
            digest: Digest::of(data),
            size: data.len() as u64,
        };
        let layer = blob(Compression::Gzip.oci_media_type(), b"layer");
        let m = ImageManifest {
            media_type: manifest::OCI_MANIFEST.into(),
            config: blob(manifest::OCI_CONFIG, b"config"),
            layers: vec![layer.clone()],
        };
        let stored = b"stored bytes";
        let layers = vec![(layer.clone(), Compression::Gzip)];
        // Nothing changes: the stored bytes, so the same digest.
        let (mt, bytes) =
            manifest_to_push(&m, stored, Some(ManifestFormat::Oci), &layers, false).unwrap();
        assert_eq!(
            (mt.as_str(), &bytes[..]),
            (manifest::OCI_MANIFEST, &stored[..])
        );
        // v2s2: Docker media types, the same config and layer digests.
        let (mt, bytes) =
            manifest_to_push(&m, stored, Some(ManifestFormat::Docker), &layers, false).unwrap();
        assert_eq!(mt, manifest::DOCKER_MANIFEST);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["config"]["mediaType"], manifest::DOCKER_CONFIG);
        assert_eq!(v["config"]["digest"], m.config.digest.to_string());
        assert_eq!(
            v["layers"][0]["mediaType"],
            Compression::Gzip.docker_media_type()
        );
        assert_eq!(v["layers"][0]["digest"], layer.digest.to_string());
        // A recompressed layer: its new digest and the zstd type; not describable in v2s2.
        let z = blob(Compression::Zstd.oci_media_type(), b"zstd layer");
        let layers = vec![(z.clone(), Compression::Zstd)];
        let (_, bytes) = manifest_to_push(&m, stored, None, &layers, true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["layers"][0]["digest"], z.digest.to_string());
        assert_eq!(
            v["layers"][0]["mediaType"],
            Compression::Zstd.oci_media_type()
        );
        assert!(manifest_to_push(&m, stored, Some(ManifestFormat::Docker), &layers, true).is_err());
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
