//! Image archives: docker-archive and oci-archive load and save, and flat rootfs import.
//!
//! Owns reading the two archive formats (detected automatically; the archive itself may be
//! gzip or zstd compressed), writing them from stored blobs, and turning a rootfs tarball into
//! a one-layer image with a generated config (`--change` instructions included). Loading
//! unpacks the archive's regular files into the store's `tmp/` first (nothing is held in
//! memory but manifests and configs; links in the archive are followed lexically, never on
//! disk), then streams each layer through the verifying unpacker. It does not unpack layers
//! itself (layer.rs) nor record images (images.rs).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::digest::{Digest, HashingReader};
use crate::images::{normalize_docker_name, normalize_name, split_name, ImageRecord};
use crate::layer::{clean_path, decompress, Compression, LayerMeta};
use crate::store::{Store, TmpPath};
use crate::{bt, Error, IoContext, Result};

/// Archive formats of `rbox save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// What `docker save` / `podman save` write: manifest.json, repositories, layer tars.
    DockerArchive,
    /// An OCI image layout in a tar: oci-layout, index.json, blobs/.
    OciArchive,
}

/// Directory formats of `rbox save` (`--format oci-dir|docker-dir`), laid out as Podman's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirFormat {
    /// An OCI image layout: oci-layout, index.json, blobs/sha256/ (several images).
    Oci,
    /// The containers "dir" transport with a Docker schema 2 manifest: manifest.json,
    /// version, and each blob under its hex digest (one image).
    Docker,
}

/// How `save` writes layer blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaveLayers {
    /// As stored (the OCI formats' default).
    #[default]
    AsStored,
    /// As plain tars (`--uncompressed`; docker-dir's default).
    Uncompressed,
    /// gzip-compressed, the stored blob where it is gzip already (`--compress`).
    Gzip,
}

/// Where `save` writes: a tar stream or a directory. Names are relative, `/`-separated.
trait Sink {
    fn dir(&mut self, name: &str) -> Result<()>;
    fn file(&mut self, name: &str, len: u64, r: &mut dyn Read) -> Result<()>;
}

impl<W: Write> Sink for tar::Builder<W> {
    fn dir(&mut self, name: &str) -> Result<()> {
        let mut h = file_header(0);
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        self.append_data(&mut h, name, io::empty())
            .map_err(|e| Error::io(format!("write `{name}` to the archive"), e))
    }

    fn file(&mut self, name: &str, len: u64, r: &mut dyn Read) -> Result<()> {
        let mut h = file_header(len);
        self.append_data(&mut h, name, r)
            .map_err(|e| Error::io(format!("write `{name}` to the archive"), e))
    }
}

/// A directory being written by `save` (created by the caller, empty).
struct DirSink<'a>(&'a Path);

impl Sink for DirSink<'_> {
    fn dir(&mut self, name: &str) -> Result<()> {
        let p = self.0.join(name);
        fs::create_dir_all(&p).ctx(|| format!("create {}", bt(&p)))
    }

    fn file(&mut self, name: &str, len: u64, r: &mut dyn Read) -> Result<()> {
        let p = self.0.join(name);
        let mut f = File::create(&p).ctx(|| format!("create {}", bt(&p)))?;
        let n = io::copy(&mut r.take(len), &mut f).ctx(|| format!("write {}", bt(&p)))?;
        if n != len {
            return Err(Error::io(
                format!("write {}", bt(&p)),
                io::Error::new(io::ErrorKind::UnexpectedEof, "the source ended early"),
            ));
        }
        Ok(())
    }
}

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidArchive(msg.into())
}

/// An archive unpacked into `tmp/`: regular files on disk, links kept as a map.
struct Unpacked {
    dir: TmpPath,
    /// cleaned path -> cleaned target path (both relative to the archive root).
    links: HashMap<String, String>,
}

impl Unpacked {
    fn resolve(&self, name: &str) -> Result<PathBuf> {
        let mut p = join_clean(
            &clean_path(name.as_bytes())
                .map_err(|_| bad(format!("path `{name}` escapes the archive")))?,
        );
        for _ in 0..16 {
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => return Ok(self.dir.path.join(&p)),
            }
        }
        Err(bad(format!("too many links resolving `{name}`")))
    }

    fn exists(&self, name: &str) -> bool {
        self.resolve(name).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Reads a JSON document of the archive, refusing one larger than `limit` before
    /// reading it (a hostile archive could hold a `manifest.json` of gigabytes).
    fn read(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let f = self.open(name)?;
        read_capped(f, limit, || format!("`{name}` in the archive"))
    }

    fn open(&self, name: &str) -> Result<File> {
        let p = self.resolve(name)?;
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                bad(format!("`{name}` is missing"))
            } else {
                Error::io(format!("open {}", bt(&p)), e)
            }
        })
    }

    /// Reads `blobs/sha256/<hex>` (at most `limit` bytes) and checks it against its digest
    /// (and size).
    fn read_blob(&self, d: &Digest, size: Option<u64>, limit: u64) -> Result<Vec<u8>> {
        let data = self.read(&format!("blobs/sha256/{}", d.hex()), limit)?;
        let actual = Digest::of(&data);
        if actual != *d {
            return Err(Error::DigestMismatch {
                expected: d.clone(),
                actual,
            });
        }
        if let Some(s) = size {
            if s != data.len() as u64 {
                return Err(Error::SizeMismatch {
                    digest: d.clone(),
                    expected: s,
                    actual: data.len() as u64,
                });
            }
        }
        Ok(data)
    }
}

/// The most a manifest, an index or `manifest.json` may weigh (what registries accept).
pub const MANIFEST_LIMIT: u64 = 4 << 20;
/// The most an image config may weigh (long histories make them larger than manifests).
pub const CONFIG_LIMIT: u64 = 32 << 20;

/// Reads all of `f` when it holds at most `limit` bytes, else [`Error::TooLarge`].
fn read_capped(f: File, limit: u64, what: impl Fn() -> String) -> Result<Vec<u8>> {
    let size = f.metadata().ctx(|| format!("stat {}", what()))?.len();
    if size > limit {
        return Err(Error::TooLarge {
            what: what(),
            size,
            limit,
        });
    }
    let mut data = Vec::with_capacity(size as usize);
    f.take(limit + 1)
        .read_to_end(&mut data)
        .ctx(|| format!("read {}", what()))?;
    if data.len() as u64 > limit {
        return Err(Error::TooLarge {
            what: what(),
            size: data.len() as u64,
            limit,
        });
    }
    Ok(data)
}

/// The tar crate's error text without what it quotes from the input: its header errors
/// end in "when getting FIELD for PATH" and "numeric field was not a number: BYTES", which
/// for a file that is no tar at all is whatever the file holds (`load -i /etc/passwd`).
pub(crate) fn tar_error(e: &io::Error) -> String {
    let msg = e.to_string();
    if let Some(i) = msg.find(" when getting ") {
        let field = msg[i + 14..].split(' ').next().unwrap_or("a");
        return format!("malformed {field} field in a tar header");
    }
    if msg.starts_with("numeric field") || msg.chars().any(|c| c.is_control()) {
        return "malformed tar header".to_string();
    }
    msg
}

fn join_clean(comps: &[Vec<u8>]) -> String {
    comps
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// What one image of an archive needs to be stored.
struct PendingImage {
    config: Vec<u8>,
    names: Vec<String>,
    /// The manifest to commit; `None` to build a Docker schema2 one from the layers.
    manifest: Option<Vec<u8>>,
    layers: Vec<PendingLayer>,
}

struct PendingLayer {
    file: String,
    diff_id: Digest,
    blob: Option<(Digest, u64)>,
}

/// The OCI architecture name of the host.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

impl Store {
    /// Loads every image of a docker-archive or oci-archive (detected automatically; the
    /// archive may be gzip or zstd compressed).
    pub fn load_archive(&self, path: &Path) -> Result<Vec<ImageRecord>> {
        let f = File::open(path).ctx(|| format!("open {}", bt(path)))?;
        self.load_archive_from(f)
    }

    /// [`Store::load_archive`] from a stream (stdin): the archive is read once, front to back.
    pub fn load_archive_from(&self, r: impl Read) -> Result<Vec<ImageRecord>> {
        let un = self.unpack_archive(r)?;
        let pending = if un.exists("manifest.json") {
            docker_images(&un)?
        } else if un.exists("index.json") {
            oci_images(&un)?
        } else {
            return Err(Error::NotAnArchive);
        };
        let mut out = Vec::new();
        for img in pending {
            // A concurrent `rmi` of another image may remove a layer between its unpack
            // here and the commit (nothing referenced it yet): unpack again and retry.
            let mut tries = 0;
            loop {
                match self.store_pending(&un, &img) {
                    Err(Error::LayerNotFound(_)) if tries < 3 => tries += 1,
                    r => {
                        out.push(r?);
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    fn unpack_archive(&self, r: impl Read) -> Result<Unpacked> {
        let dir = self.tmp_path("load");
        fs::create_dir(&dir.path).ctx(|| format!("create {}", bt(&dir.path)))?;
        let (_, rd) = decompress(BufReader::with_capacity(
            256 * 1024,
            crate::interrupt::Checked::new(r),
        ))?;
        let mut ar = tar::Archive::new(rd);
        let mut links = HashMap::new();
        let entries = ar.entries().map_err(|e| bad(tar_error(&e)))?;
        let mut first = true;
        for ent in entries {
            // A header that does not parse as the very first one: this is no tar at all
            // (a text file, an ELF binary), and the crate's message would quote its bytes.
            let mut ent = ent.map_err(|e| {
                if first {
                    Error::NotAnArchive
                } else {
                    bad(format!("read tar entry: {}", tar_error(&e)))
                }
            })?;
            first = false;
            let raw = ent.path_bytes().into_owned();
            let comps = clean_path(&raw).map_err(|_| {
                bad(format!(
                    "entry `{}` escapes the archive",
                    String::from_utf8_lossy(&raw)
                ))
            })?;
            if comps.is_empty() {
                continue;
            }
            let name = join_clean(&comps);
            match ent.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let dst = dir.path.join(&name);
                    if let Some(parent) = dst.parent() {
                        fs::create_dir_all(parent).ctx(|| format!("create {}", bt(parent)))?;
                    }
                    // No symlink is ever created under this dir, so plain paths are safe.
                    let mut out = File::create(&dst).ctx(|| format!("create {}", bt(&dst)))?;
                    io::copy(&mut ent, &mut out)
                        .map_err(|e| bad(format!("read `{name}`: {}", tar_error(&e))))?;
                    links.remove(&name);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = ent
                        .link_name_bytes()
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    let mut full = Vec::new();
                    if ent.header().entry_type() == tar::EntryType::Symlink
                        && !target.starts_with(b"/")
                    {
                        // Relative to the link's own directory.
                        for c in &comps[..comps.len() - 1] {
                            full.extend_from_slice(c);
                            full.push(b'/');
                        }
                    }
                    full.extend_from_slice(&target);
                    let t = clean_path(&full)
                        .map_err(|_| bad(format!("link `{name}` escapes the archive")))?;
                    links.insert(name, join_clean(&t));
                }
                _ => {}
            }
        }
        Ok(Unpacked { dir, links })
    }

    fn store_pending(&self, un: &Unpacked, img: &PendingImage) -> Result<ImageRecord> {
        let mut descs = Vec::new();
        for l in &img.layers {
            let f = un.open(&l.file)?;
            let (blob, size) = match &l.blob {
                Some((d, s)) => (Some(d), Some(*s)),
                None => (None, None),
            };
            let info = self.store_layer(
                BufReader::with_capacity(256 * 1024, f),
                blob,
                size,
                Some(&l.diff_id),
                true,
            )?;
            if img.manifest.is_none() {
                let (Some(b), Some(n)) = (info.blob.clone(), info.blob_size) else {
                    return Err(Error::BlobNotFound(info.diff_id));
                };
                descs.push(json!({
                    "mediaType": info.compression.docker_media_type(),
                    "size": n,
                    "digest": b.to_string(),
                }));
            }
        }
        let manifest = match &img.manifest {
            Some(m) => m.clone(),
            None => serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {
                    "mediaType": DOCKER_CONFIG,
                    "size": img.config.len(),
                    "digest": Digest::of(&img.config).to_string(),
                },
                "layers": descs,
            }))
            .expect("manifest serializes"),
        };
        self.commit_image(&manifest, &img.config, &img.names)
    }

    /// Writes `images` as one archive of the given format.
    pub fn save_archive(
        &self,
        images: &[ImageRecord],
        out: impl Write,
        format: Format,
        layers: SaveLayers,
    ) -> Result<()> {
        let mut b = tar::Builder::new(crate::interrupt::Checked::new(out));
        match format {
            Format::DockerArchive => self.save_docker(images, &mut b)?,
            Format::OciArchive => self.save_oci(images, &mut b, layers)?,
        }
        b.into_inner()
            .and_then(|w| w.into_inner().flush())
            .map_err(|e| Error::io("write archive", e))?;
        Ok(())
    }

    /// Writes `images` into the empty directory `dir` as `format` lays them out; docker-dir
    /// holds one image.
    pub fn save_dir(
        &self,
        images: &[ImageRecord],
        dir: &Path,
        format: DirFormat,
        layers: SaveLayers,
    ) -> Result<()> {
        let mut sink = DirSink(dir);
        match (format, images) {
            (DirFormat::Oci, _) => self.save_oci(images, &mut sink, layers),
            (DirFormat::Docker, [rec]) => self.save_docker_dir(rec, &mut sink, layers),
            (DirFormat::Docker, _) => Err(Error::InvalidManifest(format!(
                "a docker-dir holds one image, not {}",
                images.len()
            ))),
        }
    }

    /// The containers "dir" transport as Podman writes it for docker-dir: a v2s2 manifest,
    /// the config and the layers each under their hex digest, and `version`.
    fn save_docker_dir(
        &self,
        rec: &ImageRecord,
        sink: &mut dyn Sink,
        layers: SaveLayers,
    ) -> Result<()> {
        let config = self.read_blob(&rec.id)?;
        let mut descs = Vec::new();
        for l in &rec.layers {
            let stored = Compression::of_media_type(&l.media_type);
            let (digest, size, c) = match layers {
                SaveLayers::Uncompressed | SaveLayers::AsStored => {
                    let size = self.append_diff_tar(sink, l.diff_id.hex(), &l.diff_id, &l.blob)?;
                    (l.diff_id.clone(), size, Compression::None)
                }
                SaveLayers::Gzip if stored == Compression::Gzip => {
                    self.append_blob(sink, l.blob.hex(), &l.blob)?;
                    (l.blob.clone(), l.size, Compression::Gzip)
                }
                SaveLayers::Gzip => {
                    let r = self.recompress_blob(&l.blob, &l.diff_id, Compression::Gzip)?;
                    let mut f = File::open(r.path()).ctx(|| format!("open {}", bt(r.path())))?;
                    sink.file(r.digest.hex(), r.size, &mut f)?;
                    (r.digest.clone(), r.size, Compression::Gzip)
                }
            };
            descs.push(json!({
                "mediaType": c.docker_media_type(),
                "size": size,
                "digest": digest.to_string(),
            }));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": DOCKER_CONFIG,
                "size": config.len(),
                "digest": rec.id.to_string(),
            },
            "layers": descs,
        });
        append_bytes(sink, rec.id.hex(), &config)?;
        append_bytes(
            sink,
            "manifest.json",
            &serde_json::to_vec(&manifest).expect("json"),
        )?;
        append_bytes(sink, "version", b"Directory Transport Version: 1.1\n")
    }

    /// An OCI manifest whose layers are the plain diff tars (`--uncompressed`): each named
    /// by its diff id, with its tar length.
    fn uncompressed_oci_manifest(&self, manifest: &[u8], rec: &ImageRecord) -> Result<Vec<u8>> {
        let mut v: Value =
            serde_json::from_slice(manifest).map_err(|e| Error::InvalidManifest(e.to_string()))?;
        let mut descs = Vec::new();
        for l in &rec.layers {
            let meta = self.layer_home(&l.diff_id).layer_meta(&l.diff_id)?;
            descs.push(json!({
                "mediaType": Compression::None.oci_media_type(),
                "digest": l.diff_id.to_string(),
                "size": meta.size,
            }));
        }
        v["layers"] = Value::Array(descs);
        Ok(serde_json::to_vec(&v).expect("json"))
    }

    /// Appends a stored blob as it is, verified against its digest as it streams.
    fn append_blob(&self, sink: &mut dyn Sink, name: &str, blob: &Digest) -> Result<()> {
        let f = self.open_blob(blob)?;
        let len = f.metadata().ctx(|| format!("stat blob {blob}"))?.len();
        let mut hr = HashingReader::new(f);
        sink.file(name, len, &mut hr)?;
        let (d, _) = hr.finish().map_err(|e| Error::io("read blob", e))?;
        if d != *blob {
            return Err(Error::DigestMismatch {
                expected: blob.clone(),
                actual: d,
            });
        }
        Ok(())
    }

    fn save_docker(&self, images: &[ImageRecord], b: &mut dyn Sink) -> Result<()> {
        let mut written = BTreeSet::new();
        let mut manifest = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for rec in images {
            let config = self.read_blob(&rec.id)?;
            let config_name = format!("{}.json", rec.id.hex());
            if written.insert(config_name.clone()) {
                append_bytes(b, &config_name, &config)?;
            }
            let mut layers = Vec::new();
            for l in &rec.layers {
                let name = format!("{}.tar", l.diff_id.hex());
                if written.insert(name.clone()) {
                    self.append_diff_tar(b, &name, &l.diff_id, &l.blob)?;
                }
                layers.push(name);
            }
            let tags: Vec<String> = rec
                .names
                .iter()
                .filter(|n| split_name(n).2.is_none())
                .cloned()
                .collect();
            if let Some(top) = rec.layers.last() {
                for t in &tags {
                    if let (repo, Some(tag), _) = split_name(t) {
                        repositories
                            .entry(repo.to_string())
                            .or_default()
                            .insert(tag.to_string(), top.diff_id.hex().to_string());
                    }
                }
            }
            manifest.push(json!({
                "Config": config_name,
                "RepoTags": tags,
                "Layers": layers,
            }));
        }
        append_bytes(
            b,
            "manifest.json",
            &serde_json::to_vec(&manifest).expect("json"),
        )?;
        append_bytes(
            b,
            "repositories",
            &serde_json::to_vec(&repositories).expect("json"),
        )?;
        Ok(())
    }

    /// Appends the uncompressed diff tar of a layer, from its stored blob, verified against
    /// the diff id as it streams; returns its length.
    fn append_diff_tar(
        &self,
        b: &mut dyn Sink,
        name: &str,
        diff_id: &Digest,
        blob: &Digest,
    ) -> Result<u64> {
        let meta: LayerMeta = self.layer_home(diff_id).layer_meta(diff_id)?;
        let blob = if self.has_readable_blob(blob) {
            blob.clone()
        } else {
            meta.blob
                .clone()
                .ok_or_else(|| Error::BlobNotFound(blob.clone()))?
        };
        let f = self.open_blob(&blob)?;
        let (_, rd) = decompress(BufReader::with_capacity(256 * 1024, f))?;
        let mut hr = HashingReader::new(rd.take(meta.size));
        b.file(name, meta.size, &mut hr)?;
        let (d, n) = hr
            .finish()
            .map_err(|e| Error::io(format!("read blob {blob}"), e))?;
        if n != meta.size {
            return Err(Error::SizeMismatch {
                digest: diff_id.clone(),
                expected: meta.size,
                actual: n,
            });
        }
        if d != *diff_id {
            return Err(Error::DigestMismatch {
                expected: diff_id.clone(),
                actual: d,
            });
        }
        Ok(n)
    }

    fn save_oci(&self, images: &[ImageRecord], b: &mut dyn Sink, layers: SaveLayers) -> Result<()> {
        append_bytes(b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        b.dir("blobs/")?;
        b.dir("blobs/sha256/")?;
        let mut written = BTreeSet::new();
        let mut index = Vec::new();
        for rec in images {
            let stored = self.read_blob(&rec.digest)?;
            let manifest = if rec.manifest_media_type == OCI_MANIFEST {
                stored
            } else {
                to_oci_manifest(&stored)?
            };
            let uncompressed = layers == SaveLayers::Uncompressed;
            let manifest = if uncompressed {
                self.uncompressed_oci_manifest(&manifest, rec)?
            } else {
                manifest
            };
            let mdigest = Digest::of(&manifest);
            let config = self.read_blob(&rec.id)?;
            for (d, data) in [(&rec.id, &config), (&mdigest, &manifest)] {
                if written.insert(d.clone()) {
                    append_bytes(b, &format!("blobs/sha256/{}", d.hex()), data)?;
                }
            }
            for l in &rec.layers {
                if uncompressed {
                    if written.insert(l.diff_id.clone()) {
                        let name = format!("blobs/sha256/{}", l.diff_id.hex());
                        self.append_diff_tar(b, &name, &l.diff_id, &l.blob)?;
                    }
                } else if written.insert(l.blob.clone()) {
                    self.append_blob(b, &format!("blobs/sha256/{}", l.blob.hex()), &l.blob)?;
                }
            }
            let desc = |name: Option<&String>| {
                let mut d = json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": mdigest.to_string(),
                    "size": manifest.len(),
                });
                if let Some(n) = name {
                    d["annotations"] = json!({ REF_NAME: n });
                }
                d
            };
            if rec.names.is_empty() {
                index.push(desc(None));
            }
            for n in &rec.names {
                index.push(desc(Some(n)));
            }
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": index,
        });
        append_bytes(b, "index.json", &serde_json::to_vec(&index).expect("json"))
    }

    /// Imports a flat rootfs tarball (gzip, zstd or plain) as a one-layer image, with an
    /// optional name (`busybox` -> `localhost/busybox:latest`) and `--change` instructions
    /// (`CMD`, `ENTRYPOINT`, `ENV`, `WORKDIR`, `USER`, `LABEL`, `EXPOSE`, `VOLUME`,
    /// `STOPSIGNAL`).
    pub fn import_rootfs(
        &self,
        r: impl Read,
        name: Option<&str>,
        changes: &[String],
    ) -> Result<ImageRecord> {
        self.import_rootfs_with(r, name, changes, &ImportOptions::default())
    }

    /// [`Store::import_rootfs`] with the config's platform and the history comment given.
    pub fn import_rootfs_with(
        &self,
        r: impl Read,
        name: Option<&str>,
        changes: &[String],
        opts: &ImportOptions,
    ) -> Result<ImageRecord> {
        let names = match name {
            Some(n) => vec![normalize_name(n)?],
            None => Vec::new(),
        };
        let mut cfg = Map::new();
        for c in changes {
            apply_change(&mut cfg, c)?;
        }
        let info = self.store_layer(r, None, None, None, true)?;
        let (Some(blob), Some(blob_size)) = (info.blob.clone(), info.blob_size) else {
            return Err(Error::BlobNotFound(info.diff_id));
        };
        let now = rfc3339_now();
        let mut config = json!({
            "created": now,
            "architecture": opts.arch.as_deref().unwrap_or(host_arch()),
            "os": opts.os.as_deref().unwrap_or("linux"),
            "config": cfg,
            "rootfs": { "type": "layers", "diff_ids": [info.diff_id.to_string()] },
            "history": [{
                "created": now,
                "created_by": "rbox import",
                "comment": opts.comment.as_deref().unwrap_or("imported from tarball"),
            }],
        });
        if let Some(v) = &opts.variant {
            config["variant"] = json!(v);
        }
        let config = serde_json::to_vec(&config).expect("json");
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "size": config.len(),
                "digest": Digest::of(&config).to_string(),
            },
            "layers": [{
                "mediaType": info.compression.oci_media_type(),
                "size": blob_size,
                "digest": blob.to_string(),
            }],
        });
        let manifest = serde_json::to_vec(&manifest).expect("json");
        self.commit_image(&manifest, &config, &names)
    }
}

fn docker_images(un: &Unpacked) -> Result<Vec<PendingImage>> {
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(&un.read("manifest.json", MANIFEST_LIMIT)?)
            .map_err(|e| bad(format!("manifest.json: {e}")))?;
    let mut out = Vec::new();
    for e in entries {
        let config = un.read(&e.config, CONFIG_LIMIT)?;
        let cfg = ImageConfiguration::from_reader(&config[..])
            .map_err(|e| Error::InvalidConfig(e.to_string()))?;
        let diff_ids = cfg
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<Result<Vec<_>>>()?;
        if diff_ids.len() != e.layers.len() {
            return Err(bad(format!(
                "manifest.json lists {} layers but the config has {} diff ids",
                e.layers.len(),
                diff_ids.len()
            )));
        }
        let names = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| normalize_docker_name(t))
            .collect::<Result<Vec<_>>>()?;
        out.push(PendingImage {
            config,
            names,
            manifest: None,
            layers: e
                .layers
                .into_iter()
                .zip(diff_ids)
                .map(|(file, diff_id)| PendingLayer {
                    file,
                    diff_id,
                    blob: None,
                })
                .collect(),
        });
    }
    Ok(out)
}

fn oci_images(un: &Unpacked) -> Result<Vec<PendingImage>> {
    let index = ImageIndex::from_reader(&un.read("index.json", MANIFEST_LIMIT)?[..])
        .map_err(|e| bad(format!("index.json: {e}")))?;
    let mut out: Vec<PendingImage> = Vec::new();
    for desc in index.manifests() {
        let names = oci_names(desc.annotations().as_ref());
        let d = Digest::parse(desc.digest().as_ref())?;
        let mt = desc.media_type().to_string();
        let (d, size) = if mt == OCI_INDEX || mt == DOCKER_LIST {
            pick_platform(un, &d, desc.size())?
        } else {
            (d, desc.size())
        };
        // One image listed under several names: merge.
        if let Some(p) = out
            .iter_mut()
            .find(|p| p.manifest.as_ref().map(|m| Digest::of(m)) == Some(d.clone()))
        {
            p.names.extend(names);
            continue;
        }
        let manifest = un.read_blob(&d, Some(size), MANIFEST_LIMIT)?;
        let m = ImageManifest::from_reader(&manifest[..])
            .map_err(|e| Error::InvalidManifest(e.to_string()))?;
        let cd = Digest::parse(m.config().digest().as_ref())?;
        let config = un.read_blob(&cd, Some(m.config().size()), CONFIG_LIMIT)?;
        let cfg = ImageConfiguration::from_reader(&config[..])
            .map_err(|e| Error::InvalidConfig(e.to_string()))?;
        let diff_ids = crate::images::diff_ids(&cfg, m.layers().len())?;
        let mut layers = Vec::new();
        for (l, diff_id) in m.layers().iter().zip(diff_ids) {
            let bd = Digest::parse(l.digest().as_ref())?;
            layers.push(PendingLayer {
                file: format!("blobs/sha256/{}", bd.hex()),
                diff_id,
                blob: Some((bd, l.size())),
            });
        }
        out.push(PendingImage {
            config,
            names,
            manifest: Some(manifest),
            layers,
        });
    }
    Ok(out)
}

/// From a nested index, the manifest for the host's architecture (or the only one).
fn pick_platform(un: &Unpacked, d: &Digest, size: u64) -> Result<(Digest, u64)> {
    let data = un.read_blob(d, Some(size), MANIFEST_LIMIT)?;
    let idx =
        ImageIndex::from_reader(&data[..]).map_err(|e| bad(format!("nested index {d}: {e}")))?;
    let ms = idx.manifests();
    let pick = ms
        .iter()
        .find(|m| {
            m.platform()
                .as_ref()
                .map(|p| {
                    p.architecture().to_string() == host_arch() && p.os().to_string() == "linux"
                })
                .unwrap_or(false)
        })
        .or(if ms.len() == 1 { ms.first() } else { None })
        .ok_or_else(|| bad(format!("index {d} has no image for linux/{}", host_arch())))?;
    Ok((Digest::parse(pick.digest().as_ref())?, pick.size()))
}

/// Image names from an OCI index entry: containerd's full name, else the ref.name
/// annotation when it is a name (podman writes the full name there; a bare tag is skipped).
fn oci_names(ann: Option<&HashMap<String, String>>) -> Vec<String> {
    let Some(ann) = ann else { return Vec::new() };
    if let Some(n) = ann
        .get(CONTAINERD_NAME)
        .and_then(|n| normalize_docker_name(n).ok())
    {
        return vec![n];
    }
    match ann.get(REF_NAME) {
        Some(r) if r.contains('/') || r.contains(':') => normalize_name(r).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// A Docker schema2 manifest rewritten with OCI media types (same digests).
fn to_oci_manifest(docker: &[u8]) -> Result<Vec<u8>> {
    let mut v: Value =
        serde_json::from_slice(docker).map_err(|e| Error::InvalidManifest(e.to_string()))?;
    v["mediaType"] = json!(OCI_MANIFEST);
    v["config"]["mediaType"] = json!(OCI_CONFIG);
    if let Some(layers) = v["layers"].as_array_mut() {
        for l in layers {
            let mt = l["mediaType"].as_str().unwrap_or_default();
            let oci = match mt {
                "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                    Compression::Gzip.oci_media_type()
                }
                "application/vnd.docker.image.rootfs.diff.tar" => {
                    Compression::None.oci_media_type()
                }
                other => other,
            }
            .to_string();
            l["mediaType"] = json!(oci);
        }
    }
    Ok(serde_json::to_vec(&v).expect("json"))
}

fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_bytes(b: &mut dyn Sink, name: &str, data: &[u8]) -> Result<()> {
    b.file(name, data.len() as u64, &mut &data[..])
}

/// Applies one `--change` instruction (`INSTRUCTION VALUE` or `INSTRUCTION=VALUE`) to the
/// `config` object of an image config.
pub fn apply_change(cfg: &mut Map<String, Value>, change: &str) -> Result<()> {
    let invalid = || Error::InvalidChange(change.to_string());
    let change = change.trim();
    let split = change.find([' ', '\t', '=']).ok_or_else(invalid)?;
    let (instr, value) = (&change[..split], change[split + 1..].trim());
    if value.is_empty() {
        return Err(invalid());
    }
    let shell_or_json = |v: &str| -> Value {
        if v.starts_with('[') {
            if let Ok(a) = serde_json::from_str::<Vec<String>>(v) {
                return json!(a);
            }
        }
        json!(["/bin/sh", "-c", v])
    };
    let kv = |v: &str| -> Option<(String, String)> {
        let (k, val) = v.split_once('=').or_else(|| v.split_once(' '))?;
        let k = k.trim();
        if k.is_empty() {
            return None;
        }
        let val = val.trim();
        let val = val
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(val);
        Some((k.to_string(), val.to_string()))
    };
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => {
            cfg.insert("Cmd".into(), shell_or_json(value));
        }
        "ENTRYPOINT" => {
            cfg.insert("Entrypoint".into(), shell_or_json(value));
        }
        "ENV" => {
            let (k, v) = kv(value).ok_or_else(invalid)?;
            let env = cfg.entry("Env").or_insert_with(|| json!([]));
            let list = env.as_array_mut().ok_or_else(invalid)?;
            list.retain(|e| {
                e.as_str()
                    .and_then(|s| s.split_once('='))
                    .map(|(ek, _)| ek != k)
                    .unwrap_or(true)
            });
            list.push(json!(format!("{k}={v}")));
        }
        "LABEL" => {
            let (k, v) = kv(value).ok_or_else(invalid)?;
            let labels = cfg.entry("Labels").or_insert_with(|| json!({}));
            labels
                .as_object_mut()
                .ok_or_else(invalid)?
                .insert(k, json!(v));
        }
        "WORKDIR" => {
            cfg.insert("WorkingDir".into(), json!(value));
        }
        "USER" => {
            cfg.insert("User".into(), json!(value));
        }
        "STOPSIGNAL" => {
            cfg.insert("StopSignal".into(), json!(value));
        }
        "EXPOSE" => {
            let ports = cfg.entry("ExposedPorts").or_insert_with(|| json!({}));
            let ports = ports.as_object_mut().ok_or_else(invalid)?;
            for p in value.split_whitespace() {
                let p = if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                };
                ports.insert(p, json!({}));
            }
        }
        "VOLUME" => {
            let vols: Vec<String> = if value.starts_with('[') {
                serde_json::from_str(value).map_err(|_| invalid())?
            } else {
                value.split_whitespace().map(String::from).collect()
            };
            let map = cfg.entry("Volumes").or_insert_with(|| json!({}));
            let map = map.as_object_mut().ok_or_else(invalid)?;
            for v in vols {
                map.insert(v, json!({}));
            }
        }
        _ => return Err(invalid()),
    }
    Ok(())
}

/// The current UTC time as RFC 3339 (`2026-11-22T07:00:00Z`).
pub fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    rfc3339(secs)
}

pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;

/// What `import` may set besides the name and the `--change` instructions.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The history entry's comment (`import -m`); "imported from tarball" without one.
    pub comment: Option<String>,
    /// The config's `architecture`, `os` and `variant` (`--arch`, `--os`, `--variant`);
    /// the host's without them.
    pub arch: Option<String>,
    pub os: Option<String>,
    pub variant: Option<String>,
}
