//! Image records, names and lookup.
//!
//! Owns `images/<id>.json` (one [`ImageRecord`] per image; the id is the config digest),
//! the `names/` index (one small file per name holding the image id, replaced by rename, so
//! readers need no lock), lookup by full name, short name, id or id prefix, tagging, removal
//! with garbage collection of layers no other image uses, and history from the config.
//! It does not unpack layers (layer.rs) nor read archives (archive.rs).
//!
//! Lock order, to stay deadlock-free: a name lock may be taken before an image lock, never
//! after; image locks are never nested; layer locks are taken in sorted order.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::Path;

use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::reference::Reference;
use crate::store::Store;
use crate::{bt, Error, IoContext, Result};

/// One image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest.
    pub id: Digest,
    /// The read-only additional image store the record was found in; `None` for the
    /// store's own images. Not stored: set by lookups and listings.
    #[serde(skip)]
    pub read_only_store: Option<std::path::PathBuf>,
    /// Full references, e.g. `localhost/busybox:latest`, `docker.io/library/alpine:3.19`.
    pub names: Vec<String>,
    /// The manifest digest.
    pub digest: Digest,
    pub manifest_media_type: String,
    /// Layers bottom-most first.
    pub layers: Vec<LayerRef>,
    /// RFC 3339 creation time from the config, when it has one.
    pub created: Option<String>,
    /// Sum of the uncompressed layer sizes, in bytes.
    pub size: u64,
}

/// One layer of an image: its diff id (the unpacked layer) and the blob it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    pub diff_id: Digest,
    pub blob: Digest,
    pub media_type: String,
    /// The blob size from the manifest.
    pub size: u64,
}

/// One line of `rbox history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The layer this step produced (`None` for an empty layer).
    pub layer: Option<Digest>,
    pub created: Option<String>,
    pub created_by: Option<String>,
    pub comment: Option<String>,
    pub empty_layer: bool,
    /// Uncompressed size of the layer, 0 for an empty layer.
    pub size: u64,
}

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

// ---- names ----

/// Splits `name[:tag][@digest]` into its repository (with registry), tag and digest parts.
pub(crate) fn split_name(s: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..]), digest),
        None => (rest, None, digest),
    }
}

/// Whether the first path component of `repo` names a registry (has a dot or a port, or is
/// `localhost`), as the docker reference grammar decides.
pub(crate) fn has_registry(repo: &str) -> bool {
    match repo.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

fn valid_repo(repo: &str) -> bool {
    !repo.is_empty()
        && repo.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-:".contains(&b))
        })
}

/// Normalises a name given by the user, as podman does for local images: no registry means
/// `localhost/`, no tag means `:latest`. `busybox` -> `localhost/busybox:latest`.
pub fn normalize_name(name: &str) -> Result<String> {
    let r = Reference::parse(name)?;
    let r = if r.is_short_name() {
        r.with_registry("localhost")?
    } else {
        r
    };
    Ok(r.to_string())
}

/// Normalises a name as docker does (archive `RepoTags`, containerd annotations): no
/// registry means `docker.io/`, and a single component gets `library/`.
/// `busybox` -> `docker.io/library/busybox:latest`.
pub fn normalize_docker_name(name: &str) -> Result<String> {
    Ok(Reference::parse(name)?.to_string())
}

/// A name as a file name in `names/`: `%` -> `%25`, `/` -> `%2F`.
fn encode_name(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

fn decode_name(file: &str) -> String {
    file.replace("%2F", "/").replace("%25", "%")
}

/// Every image name in the store at `root`, sorted: a plain directory listing, with no lock
/// and no namespace, for shell completion.
pub fn list_image_names_fast(root: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(crate::store::names_dir_in(root)) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(decode_name))
        .collect();
    v.sort();
    v
}

fn is_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The bytes of the image config this process read last, by digest (see
/// [`Store::image_config_and_raw`]).
static LAST_CONFIG: std::sync::Mutex<Option<(Digest, Vec<u8>)>> = std::sync::Mutex::new(None);

fn last_config(id: &Digest) -> Option<Vec<u8>> {
    LAST_CONFIG
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .filter(|(d, _)| d == id)
        .map(|(_, bytes)| bytes.clone())
}

impl Store {
    fn image_path(&self, id: &Digest) -> std::path::PathBuf {
        self.images_dir().join(format!("{}.json", id.hex()))
    }

    fn name_path(&self, name: &str) -> std::path::PathBuf {
        self.names_dir().join(encode_name(name))
    }

    fn read_record(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        let p = self.image_path(id);
        match fs::read(&p) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| Error::InvalidManifest(format!("image record {}: {e}", bt(&p)))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", bt(&p)), e)),
        }
    }

    fn write_record(&self, rec: &ImageRecord) -> Result<()> {
        let data = serde_json::to_vec_pretty(rec).expect("image record serializes");
        self.write_atomic(&self.image_path(&rec.id), &data)
    }

    fn read_name(&self, name: &str) -> Option<Digest> {
        let s = fs::read_to_string(self.name_path(name)).ok()?;
        Digest::from_hex(s.trim()).ok()
    }

    /// Records a new image (or adds names to an existing one). The config must match the
    /// manifest's config digest, and every layer must already be unpacked in the store.
    pub fn commit_image(
        &self,
        manifest: &[u8],
        config: &[u8],
        names: &[String],
    ) -> Result<ImageRecord> {
        let m = ImageManifest::from_reader(manifest)
            .map_err(|e| Error::InvalidManifest(e.to_string()))?;
        let media_type = match m.media_type() {
            Some(t) => t.to_string(),
            None => OCI_MANIFEST.to_string(),
        };
        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            return Err(Error::InvalidManifest(format!(
                "unsupported manifest media type `{media_type}`"
            )));
        }
        let want_config = Digest::parse(m.config().digest().as_ref())?;
        let id = Digest::of(config);
        if id != want_config {
            return Err(Error::DigestMismatch {
                expected: want_config,
                actual: id,
            });
        }
        let cfg = ImageConfiguration::from_reader(config)
            .map_err(|e| Error::InvalidConfig(e.to_string()))?;
        let diff_ids = diff_ids(&cfg, m.layers().len())?;
        let names = names
            .iter()
            .map(|n| normalize_name(n))
            .collect::<Result<Vec<_>>>()?;

        // Hold every layer's lock while checking presence and writing the record, so a
        // concurrent removal cannot delete a layer this record is about to reference.
        let unique: BTreeSet<&Digest> = diff_ids.iter().collect();
        let mut guards = Vec::new();
        for d in &unique {
            guards.push(self.lock(&format!("layer-{}", d.hex()))?);
            if !self.has_layer(d) {
                return Err(Error::LayerNotFound((*d).clone()));
            }
        }
        let mut size = 0;
        let mut layers = Vec::new();
        for (desc, diff_id) in m.layers().iter().zip(&diff_ids) {
            size += self.layer_meta(diff_id)?.size;
            layers.push(LayerRef {
                diff_id: diff_id.clone(),
                blob: Digest::parse(desc.digest().as_ref())?,
                media_type: desc.media_type().to_string(),
                size: desc.size(),
            });
        }
        let digest = self.put_blob(manifest)?;
        self.put_blob(config)?;
        let rec = {
            let _g = self.lock(&format!("image-{}", id.hex()))?;
            let old = self.read_record(&id)?;
            let mut rec = ImageRecord {
                read_only_store: None,
                id: id.clone(),
                names: old.map(|o| o.names).unwrap_or_default(),
                digest,
                manifest_media_type: media_type,
                layers,
                created: cfg.created().clone(),
                size,
            };
            for n in &names {
                if !rec.names.contains(n) {
                    rec.names.push(n.clone());
                }
            }
            self.write_record(&rec)?;
            rec
        };
        drop(guards);
        // The record references the layers now; the pins have done their job.
        for d in &unique {
            self.unpin_layer(d);
        }
        for n in &names {
            self.assign_name(n, &id)?;
        }
        self.read_record(&id)?
            .ok_or_else(|| Error::ImageNotFound(rec.id.to_string()))
    }

    /// Points `name` (normalised) at image `id`, taking it away from any other image.
    fn assign_name(&self, name: &str, id: &Digest) -> Result<()> {
        let _n = self.lock(&format!("name-{}", encode_name(name)))?;
        let old = self.read_name(name);
        {
            let _i = self.lock(&format!("image-{}", id.hex()))?;
            let mut rec = self
                .read_record(id)?
                .ok_or_else(|| Error::ImageNotFound(id.to_string()))?;
            if !rec.names.iter().any(|n| n == name) {
                rec.names.push(name.to_string());
                self.write_record(&rec)?;
            }
            self.write_atomic(&self.name_path(name), id.hex().as_bytes())?;
        }
        if let Some(old) = old.filter(|o| o != id) {
            let _i = self.lock(&format!("image-{}", old.hex()))?;
            if let Some(mut rec) = self.read_record(&old)? {
                rec.names.retain(|n| n != name);
                self.write_record(&rec)?;
            }
        }
        Ok(())
    }

    /// Every image record, newest first: this store's, then those of the additional
    /// stores that this store does not have (by id), marked with their store. A store that
    /// cannot be read is skipped: a shared filesystem being away must not break listings.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let mut out = self.own_images()?;
        let mut seen: BTreeSet<Digest> = out.iter().map(|r| r.id.clone()).collect();
        for s in self.additional_stores() {
            let Ok(recs) = s.own_images() else { continue };
            for mut rec in recs {
                if seen.insert(rec.id.clone()) {
                    rec.read_only_store = Some(s.root().to_path_buf());
                    out.push(rec);
                }
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The read-only store holding image `id`, when this store does not have it itself.
    fn read_only_home(&self, id: &Digest) -> Option<&Store> {
        if self.image_path(id).is_file() {
            return None;
        }
        self.additional_stores()
            .iter()
            .find(|s| s.image_path(id).is_file())
    }

    fn read_only_error(&self, image: &str, id: &Digest) -> Option<Error> {
        self.read_only_home(id).map(|s| Error::ReadOnlyImage {
            image: image.to_string(),
            store: s.root().to_path_buf(),
        })
    }

    /// This store's image records, newest first.
    pub(crate) fn own_images(&self) -> Result<Vec<ImageRecord>> {
        let dir = self.images_dir();
        let rd = fs::read_dir(&dir).ctx(|| format!("read {}", bt(&dir)))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.ctx(|| format!("read {}", bt(&dir)))?;
            let name = ent.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let Ok(id) = Digest::from_hex(hex) else {
                continue;
            };
            if let Some(rec) = self.read_record(&id)? {
                out.push(rec);
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Finds an image by full name, short name (`busybox`, `busybox:1`, `library/busybox`),
    /// `name@sha256:...`, full id or unique id prefix (3+ hex digits, `sha256:` optional):
    /// in this store, then in each additional store in order (a record found there is
    /// marked with [`ImageRecord::read_only_store`]).
    pub fn lookup_image(&self, name_or_id: &str) -> Result<ImageRecord> {
        let err = match self.lookup_own(name_or_id) {
            Err(e @ Error::ImageNotFound(_)) => e,
            r => return r,
        };
        for s in self.additional_stores() {
            match s.lookup_own(name_or_id) {
                Ok(mut rec) => {
                    rec.read_only_store = Some(s.root().to_path_buf());
                    return Ok(rec);
                }
                Err(Error::ImageNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Err(err)
    }

    fn lookup_own(&self, name_or_id: &str) -> Result<ImageRecord> {
        let q = name_or_id.trim();
        let not_found = || Error::ImageNotFound(q.to_string());
        if q.is_empty() {
            return Err(not_found());
        }
        let hexpart = q.strip_prefix("sha256:").unwrap_or(q);
        if hexpart.len() == 64 && is_hex(hexpart) {
            if let Some(rec) = self.read_record(&Digest::from_hex(hexpart)?)? {
                return Ok(rec);
            }
        }
        if let Ok(full) = normalize_name(q) {
            if let Some(id) = self.read_name(&full) {
                if let Some(rec) = self.read_record(&id)? {
                    return Ok(rec);
                }
            }
        }
        if let Some(rec) = self.lookup_by_digest(q)? {
            return Ok(rec);
        }
        if let Some(rec) = self.lookup_short(q)? {
            return Ok(rec);
        }
        if hexpart.len() >= 3 && is_hex(hexpart) {
            let mut found = Vec::new();
            if let Ok(rd) = fs::read_dir(self.images_dir()) {
                for ent in rd.flatten() {
                    let n = ent.file_name();
                    if let Some(h) = n.to_str().and_then(|n| n.strip_suffix(".json")) {
                        if h.starts_with(hexpart) {
                            found.push(h.to_string());
                        }
                    }
                }
            }
            match found.len() {
                0 => {}
                1 => {
                    if let Some(rec) = self.read_record(&Digest::from_hex(&found[0])?)? {
                        return Ok(rec);
                    }
                }
                _ => {
                    found.sort();
                    return Err(Error::AmbiguousImage {
                        name: q.to_string(),
                        candidates: found,
                    });
                }
            }
        }
        Err(not_found())
    }

    /// `repo@sha256:...`: an image whose manifest digest matches and which has a name in
    /// that repository.
    fn lookup_by_digest(&self, q: &str) -> Result<Option<ImageRecord>> {
        let (repo, _, Some(d)) = split_name(q) else {
            return Ok(None);
        };
        let Ok(d) = Digest::parse(d) else {
            return Ok(None);
        };
        for rec in self.own_images()? {
            if rec.digest != d {
                continue;
            }
            if rec.names.iter().any(|n| {
                let (r, _, _) = split_name(n);
                r == repo || short_matches(r, repo)
            }) {
                return Ok(Some(rec));
            }
        }
        Ok(None)
    }

    /// A name without a registry matches `<any registry>/<name>` and
    /// `docker.io/library/<name>`; `localhost/` wins, then `docker.io/`, else it must be unique.
    fn lookup_short(&self, q: &str) -> Result<Option<ImageRecord>> {
        let (repo, tag, digest) = split_name(q);
        if digest.is_some() || has_registry(repo) || !valid_repo(repo) {
            return Ok(None);
        }
        let tag = tag.unwrap_or("latest");
        let mut by_id: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for n in list_image_names_fast(self.root()) {
            let (r, t, _) = split_name(&n);
            if t != Some(tag) || !short_matches(r, repo) {
                continue;
            }
            if let Some(id) = self.read_name(&n) {
                by_id.entry(id).or_default().push(n);
            }
        }
        if by_id.len() > 1 {
            let pick = ["localhost/", "docker.io/"].iter().find_map(|p| {
                let ids: Vec<_> = by_id
                    .iter()
                    .filter(|(_, ns)| ns.iter().any(|n| n.starts_with(p)))
                    .map(|(id, _)| id.clone())
                    .collect();
                (ids.len() == 1).then(|| ids[0].clone())
            });
            match pick {
                Some(id) => by_id.retain(|k, _| *k == id),
                None => {
                    return Err(Error::AmbiguousImage {
                        name: q.to_string(),
                        candidates: by_id.into_values().flatten().collect(),
                    })
                }
            }
        }
        match by_id.into_keys().next() {
            Some(id) => self.read_record(&id),
            None => Ok(None),
        }
    }

    /// Adds `new_name` (normalised; `busybox` -> `localhost/busybox:latest`) to the image
    /// found by `image` (name or id).
    pub fn tag_image(&self, image: &str, new_name: &str) -> Result<ImageRecord> {
        let rec = self.lookup_image(image)?;
        if let Some(e) = self.read_only_error(image, &rec.id) {
            return Err(e);
        }
        let name = normalize_name(new_name)?;
        self.assign_name(&name, &rec.id)?;
        self.read_record(&rec.id)?
            .ok_or_else(|| Error::ImageNotFound(image.to_string()))
    }

    /// Removes one name from its image (the image stays, possibly without names). A name of
    /// an additional store's image is refused: that store is never written.
    pub fn untag_image(&self, name: &str) -> Result<ImageRecord> {
        match self.untag_own(name) {
            Err(Error::ImageNotFound(n)) => {
                if let Ok(rec) = self.lookup_image(name) {
                    if let Some(e) = self.read_only_error(name, &rec.id) {
                        return Err(e);
                    }
                }
                Err(Error::ImageNotFound(n))
            }
            r => r,
        }
    }

    fn untag_own(&self, name: &str) -> Result<ImageRecord> {
        let full = match normalize_name(name) {
            Ok(f) if self.read_name(&f).is_some() => f,
            _ => {
                // A short name: resolve it to the one full name it means.
                let rec = self
                    .lookup_short(name)?
                    .ok_or_else(|| Error::ImageNotFound(name.to_string()))?;
                let (repo, tag, _) = split_name(name);
                let tag = tag.unwrap_or("latest");
                rec.names
                    .iter()
                    .find(|n| {
                        let (r, t, _) = split_name(n);
                        t == Some(tag) && short_matches(r, repo)
                    })
                    .cloned()
                    .ok_or_else(|| Error::ImageNotFound(name.to_string()))?
            }
        };
        let _n = self.lock(&format!("name-{}", encode_name(&full)))?;
        let id = self
            .read_name(&full)
            .ok_or_else(|| Error::ImageNotFound(name.to_string()))?;
        let _i = self.lock(&format!("image-{}", id.hex()))?;
        let p = self.name_path(&full);
        fs::remove_file(&p).ctx(|| format!("remove {}", bt(&p)))?;
        let mut rec = self
            .read_record(&id)?
            .ok_or_else(|| Error::ImageNotFound(name.to_string()))?;
        rec.names.retain(|n| *n != full);
        self.write_record(&rec)?;
        Ok(rec)
    }

    /// Removes an image: its record, its names, and every layer and blob no other image
    /// uses. Refused while a container dir references it, unless `force`.
    pub fn remove_image(&self, id: &Digest, force: bool) -> Result<()> {
        if let Some(e) = self.read_only_error(&id.to_string(), id) {
            return Err(e);
        }
        let rec = {
            let _i = self.lock(&format!("image-{}", id.hex()))?;
            let rec = self
                .read_record(id)?
                .ok_or_else(|| Error::ImageNotFound(id.to_string()))?;
            if !force {
                let users = self.containers_using(id);
                if !users.is_empty() {
                    return Err(Error::ImageInUse {
                        image: id.to_string(),
                        containers: users,
                    });
                }
            }
            let p = self.image_path(id);
            fs::remove_file(&p).ctx(|| format!("remove {}", bt(&p)))?;
            rec
        };
        for n in &rec.names {
            let _n = self.lock(&format!("name-{}", encode_name(n)))?;
            if self.read_name(n).as_ref() == Some(id) {
                let p = self.name_path(n);
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("remove {}", bt(&p)), e)),
                }
            }
        }
        self.gc_image_content(&rec)
    }

    /// Deletes the layers and blobs of a removed record that no remaining record uses.
    fn gc_image_content(&self, rec: &ImageRecord) -> Result<()> {
        let unique: BTreeSet<&Digest> = rec.layers.iter().map(|l| &l.diff_id).collect();
        for diff_id in unique {
            let _l = self.lock(&format!("layer-{}", diff_id.hex()))?;
            let others = self.own_images()?;
            if others
                .iter()
                .any(|r| r.layers.iter().any(|l| l.diff_id == *diff_id))
            {
                continue;
            }
            // Unpacked by a load or pull that has not committed its image yet: keep it.
            let Some(_pin) = self.try_unpinned(diff_id)? else {
                continue;
            };
            let meta = self.layer_meta(diff_id).ok();
            self.remove_dir_atomic(&self.layer_dir(diff_id))?;
            let mut blobs: Vec<Digest> = rec
                .layers
                .iter()
                .filter(|l| l.diff_id == *diff_id)
                .map(|l| l.blob.clone())
                .collect();
            blobs.extend(meta.and_then(|m| m.blob));
            for b in blobs {
                if !others.iter().any(|r| r.layers.iter().any(|l| l.blob == b)) {
                    self.delete_blob(&b)?;
                }
            }
        }
        let others = self.own_images()?;
        if !others.iter().any(|r| r.digest == rec.digest) {
            self.delete_blob(&rec.digest)?;
        }
        if !others.iter().any(|r| r.id == rec.id) {
            self.delete_blob(&rec.id)?;
        }
        Ok(())
    }

    /// The image's parsed config.
    pub fn image_config(&self, rec: &ImageRecord) -> Result<ImageConfiguration> {
        Ok(self.image_config_and_raw(rec)?.0)
    }

    /// The image's parsed config and its bytes, for a caller that also reads fields the
    /// parsed form drops (the Docker `Healthcheck`) from one read of the blob.
    ///
    /// The bytes of the config this process read last are kept by digest: `rbox run` needs
    /// its image's config at create and again at start, and a blob, verified against its
    /// digest when read, has those bytes wherever it is stored.
    pub fn image_config_and_raw(&self, rec: &ImageRecord) -> Result<(ImageConfiguration, Vec<u8>)> {
        let data = match last_config(&rec.id) {
            Some(bytes) => bytes,
            None => {
                let bytes = self.read_blob(&rec.id)?;
                *LAST_CONFIG.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((rec.id.clone(), bytes.clone()));
                bytes
            }
        };
        let cfg = ImageConfiguration::from_reader(&data[..])
            .map_err(|e| Error::InvalidConfig(e.to_string()))?;
        Ok((cfg, data))
    }

    /// The config of image `id` (its config digest) where this process read it last
    /// ([`Store::image_config_and_raw`]), without reading the image's record: a start needs
    /// it again after its create. `None` where it has not been read.
    pub fn recent_image_config(&self, id: &Digest) -> Option<ImageConfiguration> {
        ImageConfiguration::from_reader(&last_config(id)?[..]).ok()
    }

    /// The image's stored manifest bytes.
    pub fn image_manifest(&self, rec: &ImageRecord) -> Result<Vec<u8>> {
        self.read_blob(&rec.digest)
    }

    /// The image's history, oldest first, each step with the layer it produced.
    pub fn history(&self, rec: &ImageRecord) -> Result<Vec<HistoryEntry>> {
        let cfg = self.image_config(rec)?;
        let mut layers = rec.layers.iter();
        let size_of = |l: &LayerRef| self.layer_size(&l.diff_id).unwrap_or(0);
        let mut out = Vec::new();
        for h in cfg.history().as_deref().unwrap_or(&[]) {
            let empty = h.empty_layer().unwrap_or(false);
            let layer = if empty { None } else { layers.next() };
            out.push(HistoryEntry {
                layer: layer.map(|l| l.diff_id.clone()),
                created: h.created().clone(),
                created_by: h.created_by().clone(),
                comment: h.comment().clone(),
                empty_layer: empty,
                size: layer.map(size_of).unwrap_or(0),
            });
        }
        // Layers the history does not describe (configs without history).
        for l in layers {
            out.push(HistoryEntry {
                layer: Some(l.diff_id.clone()),
                created: None,
                created_by: None,
                comment: None,
                empty_layer: false,
                size: size_of(l),
            });
        }
        Ok(out)
    }
}

/// Which of `names` (an image's names) the user meant by `query`, the text a lookup found the
/// image by: `bb` and `localhost/bb` mean `localhost/bb:latest`. `None` when `query` named
/// no name of these (an id, or a digest): the caller then shows the first name, as Podman.
pub fn meant_name(query: &str, names: &[String]) -> Option<String> {
    let q = query.trim();
    if let Ok(full) = normalize_name(q) {
        if names.contains(&full) {
            return Some(full);
        }
    }
    let (repo, tag, digest) = split_name(q);
    if digest.is_some() {
        return None;
    }
    let tag = tag.unwrap_or("latest");
    names
        .iter()
        .find(|n| {
            let (r, t, _) = split_name(n);
            t == Some(tag) && (r == repo || short_matches(r, repo))
        })
        .cloned()
}

/// Whether the stored repository `stored` (with registry) is what the short `query` means.
fn short_matches(stored: &str, query: &str) -> bool {
    let Some((registry, path)) = stored.split_once('/') else {
        return false;
    };
    if !has_registry(stored) {
        return false;
    }
    path == query || (registry == "docker.io" && path.strip_prefix("library/") == Some(query))
}

/// The config's diff ids, which must be one per layer of the manifest.
pub(crate) fn diff_ids(cfg: &ImageConfiguration, manifest_layers: usize) -> Result<Vec<Digest>> {
    let ids = cfg
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<Result<Vec<_>>>()?;
    if ids.len() != manifest_layers {
        return Err(Error::InvalidManifest(format!(
            "manifest has {manifest_layers} layers but the config lists {} diff ids",
            ids.len()
        )));
    }
    Ok(ids)
}

#[cfg(test)]
#[path = "images_tests.rs"]
pub(crate) mod tests;
