//! Layers from changes: an overlay upper directory (or a plain staging directory) written as
//! an OCI layer tar, compressed, and stored like a pulled layer.
//!
//! Owns the translation from the overlay form back to the OCI form (the inverse of layer.rs):
//! a 0/0 character device becomes a `.wh.NAME` entry, a directory with
//! `user.overlay.opaque=y` gets a `.wh..wh..opq` entry, files that share an inode become tar
//! hard links to the first path written, xattrs travel as PAX `SCHILY.xattr.*` records except
//! overlay's own (`user.overlay.*`, `trusted.overlay.*`), modes, owners and mtimes are kept.
//! Entries come in byte order of their names and the root itself is not written, so the same
//! changes give the same tar and so the same diff id.
//!
//! Owners are written as the files hold them. The store is read inside rbox's user namespace,
//! where the ids a file shows are the image's own ids ([`crate::IdMap`] only folds ids the map
//! lacks to 0 when unpacking, and what was folded cannot be told apart afterwards).
//!
//! The walk opens every directory and file relative to its parent's fd with `O_NOFOLLOW`, so
//! a container that swaps a directory for a symlink while it runs cannot make the layer take
//! files from outside its upper. It does not decide which directory is a container's upper,
//! nor build image configs (the binary's commit does).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

use serde_json::{json, Value};

use crate::digest::{Digest, Hasher};
use crate::images::ImageRecord;
use crate::interrupt::Checked;
use crate::layer::{Compression, LayerInfo, LayerMeta};
use crate::store::{create_new, Store, TmpPath};
use crate::{bt, sys, Error, IoContext, Result};

/// The opaque-directory marker of the OCI layer format.
const OPAQUE: &str = ".wh..wh..opq";
/// The prefix of an OCI whiteout entry.
const WHITEOUT: &str = ".wh.";

impl Store {
    /// The changes in `upper` (an overlay upper directory as rbox's overlay and copy of layers
    /// leave it: 0/0 character devices are whiteouts, `user.overlay.opaque=y` marks an opaque
    /// directory) as an OCI layer: a tar with `.wh.NAME` / `.wh..wh..opq` entries, owners as
    /// the image gives them, hard links as tar links, xattrs (except overlay's own), mtimes
    /// kept; compressed (`compression`), stored as a blob and as an unpacked layer like a
    /// pulled one. A plain directory (no whiteouts) works as well. Returns the stored layer's
    /// facts.
    pub fn layer_from_upper(&self, upper: &Path, compression: Compression) -> Result<LayerInfo> {
        self.layer_from_upper_skipping(upper, compression, &[])
    }

    /// [`Store::layer_from_upper`] leaving out the empty regular files at `skip` (paths
    /// relative to `upper`, `etc/hosts`): the mount points a runtime left in an upper for its
    /// own bind mounts, which are not changes of the container.
    pub fn layer_from_upper_skipping(
        &self,
        upper: &Path,
        compression: Compression,
        skip: &[&str],
    ) -> Result<LayerInfo> {
        self.layer_from_tar(compression, |w| write_layer_tar(upper, skip, w))
    }

    /// One layer holding the union of `dirs` (top-most first, as overlay stacks them:
    /// an upper, then the image's layers), whiteouts applied: what `commit --squash` stores.
    pub fn layer_from_union(
        &self,
        dirs: &[&Path],
        compression: Compression,
        skip: &[&str],
    ) -> Result<LayerInfo> {
        self.layer_from_tar(compression, |w| write_union_tar(dirs, skip, w))
    }

    /// Stores the layer tar that `write` produces: compressed into `tmp/` while its diff id
    /// is hashed, then through the same unpacker as a pull, so the stored layer is exactly
    /// what another host gets from the blob.
    fn layer_from_tar(
        &self,
        compression: Compression,
        write: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<LayerInfo> {
        let tmp = self.tmp_path("commit");
        let file = create_new(&tmp.path, 0o600)?;
        let diff_id = write_compressed(write, compression, &file)?.diff_id;
        drop(file);
        let f = File::open(&tmp.path).ctx(|| format!("open {}", bt(&tmp.path)))?;
        self.store_layer(
            io::BufReader::with_capacity(256 * 1024, f),
            None,
            None,
            Some(&diff_id),
            true,
        )
    }
}

impl Store {
    /// [`Store::layer_from_upper_skipping`] for a directory the store may take over, which
    /// becomes the layer's directory by rename instead of being written a second time by
    /// unpacking its tar (for a COPY of thousands of files, half of the step's time):
    /// a build's copy staging directory, or a finished step's upper. Times are cut to whole
    /// seconds and overlay's bookkeeping xattrs dropped, as the tar has them, so the stored
    /// layer is the one another host unpacks from the blob. Where the directory holds what
    /// the unpacker would make in another form (hard links, fifos, `.wh.` names, xattrs an
    /// image may not carry) or lies on another filesystem, the layer is unpacked from its
    /// blob as [`Store::layer_from_upper`] does. `staged` is gone on success or changed and
    /// left to its owner to remove.
    pub fn layer_from_staged(
        &self,
        staged: &Path,
        compression: Compression,
        skip: &[&str],
    ) -> Result<LayerInfo> {
        remove_mount_points(staged, skip)?;
        let tmp = self.tmp_path("commit");
        let file = create_new(&tmp.path, 0o600)?;
        let mut seen = None;
        let w = write_compressed(
            |w| {
                seen = Some(write_staged_tar(staged, w)?);
                Ok(())
            },
            compression,
            &file,
        )?;
        let guard = self.lock(&format!("layer-{}", w.diff_id.hex()))?;
        let same_fs = |a: &Path, b: &Path| {
            use std::os::unix::fs::MetadataExt;
            matches!((fs::metadata(a), fs::metadata(b)), (Ok(x), Ok(y)) if x.dev() == y.dev())
        };
        let plain = !self.has_layer(&w.diff_id)
            && tmp.path.parent().is_some_and(|t| same_fs(staged, t))
            && match seen {
                // the walk saw every entry in a form the unpacker makes: only times to cut
                Some(s) if !s.unsettled => retime(staged, &s.retime),
                _ => settle(staged),
            }
            .ctx(|| format!("settle {}", bt(staged)))?;
        if !plain {
            // Same changes as an earlier step (verify and keep the blob, reuse the layer), or
            // not in the unpacker's form: the layer from the blob, as a pull stores it.
            drop(file);
            drop(guard);
            let f = File::open(&tmp.path).ctx(|| format!("open {}", bt(&tmp.path)))?;
            return self.store_layer(
                io::BufReader::with_capacity(256 * 1024, f),
                None,
                None,
                Some(&w.diff_id),
                true,
            );
        }
        self.commit_blob(tmp, file, &w.blob)?;
        let dir = self.tmp_path("layer");
        fs::create_dir(&dir.path).ctx(|| format!("create {}", bt(&dir.path)))?;
        let diff = dir.path.join("diff");
        fs::rename(staged, &diff).ctx(|| format!("move {} into the store", bt(staged)))?;
        // the tar has no root entry: the root gets the mode an unpacked layer's root has
        fs::set_permissions(
            &diff,
            std::os::unix::fs::PermissionsExt::from_mode(crate::layer::ROOT_MODE),
        )
        .ctx(|| format!("set the mode of {}", bt(&diff)))?;
        let meta = LayerMeta {
            diff_id: w.diff_id.clone(),
            blob: Some(w.blob.clone()),
            blob_size: Some(w.blob_size),
            compression,
            size: w.size,
            // settled only without override xattrs (not an image's to carry)
            foreign_owners: false,
            // not tracked by the diff writer: `--userns=auto` walks such a layer
            highest_owner: None,
        };
        self.install_layer(dir, &meta)?;
        self.pin_layer(&w.diff_id)?;
        drop(guard);
        Ok(LayerInfo {
            diff_id: w.diff_id,
            blob_size: Some(w.blob_size),
            blob: Some(w.blob),
            size: w.size,
            warnings: Vec::new(),
            compression,
        })
    }
}

/// Makes everything under `dir` (not `dir` itself) what unpacking its layer tar makes:
/// access and modification times the whole second of the modification time, overlay's own
/// xattrs gone except the opaque marker. False (and stops) at what the unpacker would make
/// otherwise: other than a directory, regular file, symlink or 0/0 whiteout, a file with
/// other links, a name the layer format reads as a whiteout, an xattr an image may not
/// carry, overlay's xattr form of a whiteout.
fn settle(dir: &Path) -> io::Result<bool> {
    settle_in(dir)
}

/// What [`Store::layer_from_staged`]'s tar walk saw that settling has to do: `unsettled`
/// when an entry needs [`settle`]'s full judgement (other than a directory or a regular file
/// none of whose other links the walk met, a `.wh.` name, any xattr), else the entries
/// whose modification time has a
/// fraction of a second (tar path, whole seconds). A staging directory a build made itself
/// needs only its directories' times cut then: no second walk with a stat, an xattr list
/// and a time change per file (a third of a 5,000-file COPY's system calls).
#[derive(Default)]
struct Seen {
    unsettled: bool,
    retime: Vec<(Vec<u8>, i64)>,
}

/// [`settle`] for a walk that found nothing but [`Seen::retime`]'s times to cut; access times
/// become the same whole second, as [`settle`] makes them. Always true.
fn retime(dir: &Path, entries: &[(Vec<u8>, i64)]) -> io::Result<bool> {
    for (rel, sec) in entries {
        let t = nix::sys::time::TimeSpec::new(*sec, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &dir.join(os(rel)),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )?;
    }
    Ok(true)
}

fn settle_in(dir: &Path) -> io::Result<bool> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for e in fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let md = fs::symlink_metadata(&p)?;
        let ft = md.file_type();
        let plain = ft.is_dir()
            || ft.is_symlink()
            || (ft.is_file() && md.nlink() == 1)
            || (ft.is_char_device() && md.rdev() == 0);
        if !plain || e.file_name().as_bytes().starts_with(WHITEOUT.as_bytes()) {
            return Ok(false);
        }
        for name in sys::llistxattr(&p)?
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
        {
            let name = String::from_utf8_lossy(name);
            match &*name {
                "user.overlay.opaque" if ft.is_dir() => {}
                "user.overlay.whiteout" | "user.overlay.whiteouts" => return Ok(false),
                n if n.starts_with("user.overlay.") || n.starts_with("trusted.overlay.") => {
                    sys::lremovexattr(&p, n)?
                }
                n if crate::layer::xattr_allowed(n) => {}
                _ => return Ok(false),
            }
        }
        if ft.is_dir() && !settle_in(&p)? {
            return Ok(false);
        }
        let t = nix::sys::time::TimeSpec::new(md.mtime(), 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &p,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )?;
    }
    Ok(true)
}

impl Store {
    /// The layer of a copy-driver container: its `rootfs` (the image's layers applied into
    /// it at create time, then changed by the container) compared with those layers
    /// (`lowers`, top-most first). What differs in type, mode, owner, size, mtime or link
    /// target is staged as an upper would hold it (files hard-linked, deletions as
    /// whiteouts) and written by [`Store::layer_from_upper`]'s writer.
    pub fn layer_from_copy(
        &self,
        rootfs: &Path,
        lowers: &[std::path::PathBuf],
        compression: Compression,
        skip: &[&str],
    ) -> Result<LayerInfo> {
        let stage = self.tmp_path("stage");
        std::fs::create_dir(&stage.path).ctx(|| format!("create {}", bt(&stage.path)))?;
        let staged = stage_changes(rootfs, lowers, &stage.path, Path::new(""))
            .ctx(|| format!("compare {} with its image", bt(rootfs)));
        let info =
            staged.and_then(|_| self.layer_from_upper_skipping(&stage.path, compression, skip));
        // the guard would remove it too; this way a failure to do so is not silent
        let _ = crate::store::remove_tree(&stage.path);
        info
    }
}

/// The entry `rel` of the union of `lowers` (top-most first), honouring whiteouts and
/// opaque directories: its path in the layer that shows it, and its metadata.
pub fn visible(
    lowers: &[std::path::PathBuf],
    rel: &Path,
) -> Option<(std::path::PathBuf, std::fs::Metadata)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let wh = |m: &std::fs::Metadata| m.file_type().is_char_device() && m.rdev() == 0;
    let comps: Vec<_> = rel.components().collect();
    'layers: for l in lowers {
        let mut p = l.clone();
        for (i, c) in comps.iter().enumerate() {
            p.push(c);
            match std::fs::symlink_metadata(&p) {
                Err(_) => continue 'layers,
                Ok(m) if wh(&m) => return None,
                Ok(m) if i + 1 == comps.len() => return Some((p, m)),
                Ok(m) if !m.is_dir() => return None,
                Ok(_) => {
                    if crate::lgetxattr(&p, "user.overlay.opaque").is_some_and(|v| v == b"y") {
                        let q = p.join(comps[i + 1..].iter().collect::<std::path::PathBuf>());
                        return match std::fs::symlink_metadata(&q) {
                            Ok(m) if !wh(&m) => Some((q, m)),
                            _ => None,
                        };
                    }
                }
            }
        }
    }
    None
}

/// Whether `m` (the entry at `path`) differs from `low` (an entry of another tree and its
/// metadata) as a change: type, mode, owner, mtime, and size or link target. Without
/// `exact_times` mtimes are compared in whole seconds, all a layer tar keeps.
pub fn differs(
    m: &std::fs::Metadata,
    path: &Path,
    low: &(std::path::PathBuf, std::fs::Metadata),
    exact_times: bool,
) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (lp, l) = low;
    if m.mode() != l.mode()
        || m.uid() != l.uid()
        || m.gid() != l.gid()
        || m.mtime() != l.mtime()
        || (exact_times && m.mtime_nsec() != l.mtime_nsec())
    {
        return true;
    }
    if m.file_type().is_symlink() {
        return std::fs::read_link(path).ok() != std::fs::read_link(lp).ok();
    }
    !m.is_dir() && m.len() != l.len()
}

fn stage_meta(m: &std::fs::Metadata, dst: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    match std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid())) {
        // a single-id namespace: everything is already owned by the only id
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        r => r?,
    }
    if !m.file_type().is_symlink() {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
    }
    let t = nix::sys::time::TimeSpec::new(m.mtime(), m.mtime_nsec());
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        dst,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

/// Stages what `rootfs/rel` changed over `lowers` into `stage/rel` (which exists).
fn stage_changes(
    rootfs: &Path,
    lowers: &[std::path::PathBuf],
    stage: &Path,
    rel: &Path,
) -> io::Result<()> {
    use std::fs;
    use std::os::unix::fs::FileTypeExt;
    let mut names: Vec<std::ffi::OsString> = fs::read_dir(rootfs.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for n in &names {
        let r = rel.join(n);
        let src = rootfs.join(&r);
        let dst = stage.join(&r);
        let m = fs::symlink_metadata(&src)?;
        let low = visible(lowers, &r);
        if m.is_dir() {
            let lower_dir = low.as_ref().is_some_and(|(_, l)| l.is_dir());
            let changed = !lower_dir || low.as_ref().is_some_and(|l| differs(&m, &src, l, true));
            fs::create_dir(&dst)?;
            stage_changes(rootfs, lowers, stage, &r)?;
            if lower_dir {
                // what the image has here and the container no longer does
                let mut gone = std::collections::BTreeSet::new();
                for l in lowers {
                    let Ok(rd) = fs::read_dir(l.join(&r)) else {
                        continue;
                    };
                    for e in rd.flatten() {
                        let name = e.file_name();
                        if fs::symlink_metadata(src.join(&name)).is_err()
                            && visible(lowers, &r.join(&name)).is_some()
                        {
                            gone.insert(name);
                        }
                    }
                }
                for name in gone {
                    nix::sys::stat::mknod(
                        &dst.join(name),
                        nix::sys::stat::SFlag::S_IFCHR,
                        nix::sys::stat::Mode::empty(),
                        0,
                    )?;
                }
            }
            if !changed && fs::read_dir(&dst)?.next().is_none() {
                fs::remove_dir(&dst)?;
            } else {
                stage_meta(&m, &dst)?;
            }
            continue;
        }
        if low.as_ref().is_some_and(|l| !differs(&m, &src, l, true)) {
            continue;
        }
        let ft = m.file_type();
        if ft.is_file() {
            // same filesystem: a link costs nothing and keeps hard links between files
            if fs::hard_link(&src, &dst).is_err() {
                fs::copy(&src, &dst)?;
                stage_meta(&m, &dst)?;
            }
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
            stage_meta(&m, &dst)?;
        } else if ft.is_fifo() {
            nix::unistd::mkfifo(&dst, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
            stage_meta(&m, &dst)?;
        }
        // sockets and devices: a copy root holds none the image gave, none go in a layer
    }
    Ok(())
}

/// The manifest format of an image made from changes (`--format oci|docker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestFormat {
    Oci,
    Docker,
}

impl Store {
    /// Records an image made of `base`'s layers (none for `scratch`) plus `layer` (none for
    /// a config-only change), with `config` as its image config: a JSON object whose
    /// `rootfs` is set here from those layers, so the two cannot disagree. The manifest has
    /// `format`'s media types. `names` as for [`Store::commit_image`].
    pub fn commit_derived(
        &self,
        base: Option<&ImageRecord>,
        layer: Option<&LayerInfo>,
        mut config: Value,
        format: ManifestFormat,
        names: &[String],
    ) -> Result<ImageRecord> {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        let media = |mt: &str, c: Option<Compression>| -> String {
            let c = c.unwrap_or_else(|| Compression::of_media_type(mt));
            match format {
                ManifestFormat::Oci => c.oci_media_type().to_string(),
                ManifestFormat::Docker => c.docker_media_type().to_string(),
            }
        };
        for l in base.map(|b| b.layers.as_slice()).unwrap_or_default() {
            descs.push(json!({
                "mediaType": media(&l.media_type, None),
                "size": l.size,
                "digest": l.blob.to_string(),
            }));
            diff_ids.push(l.diff_id.to_string());
        }
        if let Some(l) = layer {
            let (Some(blob), Some(size)) = (&l.blob, l.blob_size) else {
                return Err(Error::BlobNotFound(l.diff_id.clone()));
            };
            descs.push(json!({
                "mediaType": media("", Some(l.compression)),
                "size": size,
                "digest": blob.to_string(),
            }));
            diff_ids.push(l.diff_id.to_string());
        }
        let obj = config
            .as_object_mut()
            .ok_or_else(|| Error::InvalidConfig("not a JSON object".into()))?;
        obj.insert(
            "rootfs".into(),
            json!({ "type": "layers", "diff_ids": diff_ids }),
        );
        let config = serde_json::to_vec(&config).expect("json");
        let (mt, cmt) = match format {
            ManifestFormat::Oci => (OCI_MANIFEST, OCI_CONFIG),
            ManifestFormat::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG),
        };
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": mt,
            "config": {
                "mediaType": cmt,
                "size": config.len(),
                "digest": Digest::of(&config).to_string(),
            },
            "layers": descs,
        });
        let manifest = serde_json::to_vec(&manifest).expect("json");
        self.commit_image(&manifest, &config, names)
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// What [`write_compressed`] wrote: the diff id and length of the tar, the digest and length
/// of the compressed blob.
struct Written {
    diff_id: Digest,
    size: u64,
    blob: Digest,
    blob_size: u64,
}

/// Writes the tar that `write` makes compressed into `out`, hashing both the tar (for its
/// diff id) and what lands in `out` (the blob). A Ctrl-C stops the writing (see `interrupt`).
fn write_compressed(
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
    compression: Compression,
    out: &File,
) -> Result<Written> {
    let out = HashTee::new(BufWriter::with_capacity(256 * 1024, out));
    let finish_err = |e| Error::io("write the layer tar", e);
    let (tar, mut blob) = match compression {
        Compression::None => {
            let mut h = HashTee::new(out);
            write(&mut Checked::new(&mut h))?;
            (h.hasher, h.inner)
        }
        Compression::Gzip => {
            let mut h = HashTee::new(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::default(),
            ));
            write(&mut Checked::new(&mut h))?;
            (h.hasher, h.inner.finish().map_err(finish_err)?)
        }
        Compression::Zstd => {
            let enc = zstd::stream::write::Encoder::new(out, 3).map_err(finish_err)?;
            let mut h = HashTee::new(enc);
            write(&mut Checked::new(&mut h))?;
            (h.hasher, h.inner.finish().map_err(finish_err)?)
        }
    };
    blob.flush().map_err(finish_err)?;
    Ok(Written {
        size: tar.len(),
        diff_id: tar.finish(),
        blob_size: blob.hasher.len(),
        blob: blob.hasher.finish(),
    })
}

/// A layer blob compressed anew for a push (`--compression-format`): a file under the store's
/// `tmp/`, removed when this drops, never recorded as the image's own blob.
pub struct RecompressedBlob {
    tmp: TmpPath,
    pub digest: Digest,
    pub size: u64,
}

impl RecompressedBlob {
    pub fn path(&self) -> &Path {
        &self.tmp.path
    }
}

impl Store {
    /// The stored layer blob `blob` (whose tar has the diff id `diff_id`) decompressed and
    /// compressed again with `to`; the diff id is checked on the way, so a corrupt blob is
    /// refused rather than pushed under a new digest.
    pub fn recompress_blob(
        &self,
        blob: &Digest,
        diff_id: &Digest,
        to: Compression,
    ) -> Result<RecompressedBlob> {
        let f = self.open_blob(blob)?;
        let (_, mut rd) = crate::layer::decompress(io::BufReader::with_capacity(256 * 1024, f))?;
        let tmp = self.tmp_path("recompressed");
        let out = create_new(&tmp.path, 0o600)?;
        let w = write_compressed(
            |dst| {
                io::copy(&mut rd, dst)
                    .map(drop)
                    .map_err(|e| Error::io(format!("recompress blob {blob}"), e))
            },
            to,
            &out,
        )?;
        if w.diff_id != *diff_id {
            return Err(Error::DigestMismatch {
                expected: diff_id.clone(),
                actual: w.diff_id,
            });
        }
        Ok(RecompressedBlob {
            tmp,
            digest: w.blob,
            size: w.blob_size,
        })
    }
}

/// Hashes what passes through to `inner`: the uncompressed tar, for its diff id.
struct HashTee<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashTee<W> {
    fn new(inner: W) -> Self {
        HashTee {
            inner,
            hasher: Hasher::new(),
        }
    }
}

impl<W: Write> Write for HashTee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the OCI layer tar of `upper` (uncompressed) to `out`, leaving out the empty regular
/// files at the relative paths `skip`.
/// Removes the empty regular files at `skip` (paths relative to `dir`): the mount points a
/// runtime left in an upper for its own bind mounts (`etc/hosts`), no changes of the container.
pub fn remove_mount_points(dir: &Path, skip: &[&str]) -> Result<()> {
    for rel in skip {
        let p = dir.join(rel);
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_file() && m.len() == 0) {
            fs::remove_file(&p).ctx(|| format!("remove {}", bt(&p)))?;
        }
    }
    Ok(())
}

/// Gives everything under `dir` (not `dir` itself, which a layer tar does not carry) the
/// access and modification time `secs` (seconds since the epoch), symlinks included: what
/// `build --timestamp` makes of a step's changes before they become a layer, so the same
/// inputs give the same layer digest.
pub fn set_times_under(dir: &Path, secs: i64) -> Result<()> {
    let t = nix::sys::time::TimeSpec::new(secs, 0);
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).ctx(|| format!("read {}", bt(&d)))? {
            let e = e.ctx(|| format!("read {}", bt(&d)))?;
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &p,
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .ctx(|| format!("set the times of {}", bt(&p)))?;
        }
    }
    Ok(())
}

pub fn write_layer_tar<W: Write>(upper: &Path, skip: &[&str], out: W) -> Result<()> {
    let root =
        nix::fcntl::open(upper, DIR_FLAGS, Mode::empty()).ctx(|| format!("open {}", bt(upper)))?;
    let mut w = Walk::new(out, skip);
    w.dir(&root, b"")?;
    w.finish()
}

/// [`write_layer_tar`] of a staging directory, also noting what settling it has to do.
fn write_staged_tar(staged: &Path, out: &mut dyn Write) -> Result<Seen> {
    let root = nix::fcntl::open(staged, DIR_FLAGS, Mode::empty())
        .ctx(|| format!("open {}", bt(staged)))?;
    let mut w = Walk::new(out, &[]);
    w.seen = Some(Seen::default());
    w.dir(&root, b"")?;
    let seen = w.seen.take().unwrap_or_default();
    w.finish()?;
    Ok(seen)
}

/// Writes the flat tar of the union of `dirs` (top-most first; whiteouts and opaque
/// directories applied, none written) to `out`, leaving out the empty regular files at the
/// relative paths `skip`: a container's whole root filesystem (`rbox export`).
pub fn write_union_tar<W: Write>(dirs: &[&Path], skip: &[&str], out: W) -> Result<()> {
    write_union_tar_with(dirs, skip, &[], out)
}

/// [`write_union_tar`] plus regular files `extra` (relative paths, mode 0644, owned by 0:0,
/// their parent directories 0755) after the union: an image's flattened root with rbox's own
/// metadata (`rbox save --format squashfs`).
pub fn write_union_tar_with<W: Write>(
    dirs: &[&Path],
    skip: &[&str],
    extra: &[(&str, &[u8])],
    out: W,
) -> Result<()> {
    let mut fds = Vec::new();
    for d in dirs {
        let fd =
            nix::fcntl::open(*d, DIR_FLAGS, Mode::empty()).ctx(|| format!("open {}", bt(d)))?;
        let opaque = is_opaque(&fd);
        fds.push(fd);
        if opaque {
            break;
        }
    }
    let mut w = Walk::new(out, skip);
    w.union(&fds, b"")?;
    let mut made = std::collections::HashSet::new();
    for (path, data) in extra {
        let rel = Path::new(path);
        let mut parents: Vec<&Path> = rel.ancestors().skip(1).collect();
        parents.reverse();
        for p in parents.into_iter().filter(|p| !p.as_os_str().is_empty()) {
            if made.insert(p.to_path_buf()) {
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                w.b.append_data(&mut h, p, io::empty())
                    .map_err(|e| Error::io(format!("write `{}` to the tar", p.display()), e))?;
            }
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        w.b.append_data(&mut h, rel, *data)
            .map_err(|e| Error::io(format!("write `{path}` to the tar"), e))?;
    }
    w.finish()
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

struct Walk<'a, W: Write> {
    b: tar::Builder<W>,
    /// (dev, ino) of a file with more than one link -> the path it was first written under.
    links: HashMap<(u64, u64), String>,
    skip: &'a [&'a str],
    /// What settling the walked directory takes ([`write_staged_tar`] only).
    seen: Option<Seen>,
}

impl<'a, W: Write> Walk<'a, W> {
    fn new(out: W, skip: &'a [&'a str]) -> Self {
        let mut b = tar::Builder::new(out);
        b.mode(tar::HeaderMode::Complete);
        Walk {
            b,
            links: HashMap::new(),
            skip,
            seen: None,
        }
    }

    /// The tar's end, flushed.
    fn finish(self) -> Result<()> {
        self.b
            .into_inner()
            .and_then(|mut o| o.flush())
            .map_err(|e| Error::io("write the layer tar", e))
    }
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn header(st: &FileStat, t: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(t);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// An empty regular entry: a whiteout or the opaque marker.
fn marker() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    h
}

/// Whether an xattr is the overlay's bookkeeping (never part of a layer). The FUSE
/// overlay's owner override goes into the entry's header instead ([`intended_owner`]).
fn overlay_xattr(name: &str) -> bool {
    name.starts_with("user.overlay.")
        || name.starts_with("trusted.overlay.")
        || name == crate::mount::fuse::fs::OVERRIDE_STAT
}

/// The owner and mode the FUSE overlay shows for a file whose real owner a single-id map
/// folded (its override xattr): a layer made from it keeps the image's intended owners.
fn intended_owner(h: &mut tar::Header, xattrs: &[(String, Vec<u8>)]) {
    let over = xattrs
        .iter()
        .find(|(k, _)| k == crate::mount::fuse::fs::OVERRIDE_STAT)
        .and_then(|(_, v)| crate::mount::fuse::fs::parse_override(v));
    if let Some((uid, gid, mode)) = over {
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_mode(mode);
    }
}

impl<W: Write> Walk<'_, W> {
    /// The diff walk of an upper: whiteouts and opaque markers in their OCI form.
    fn dir(&mut self, fd: &OwnedFd, rel: &[u8]) -> Result<()> {
        for (raw, ty) in typed_names(fd, rel)? {
            let tar_path = tar_path(rel, &raw);
            if ty == Some(nix::dir::Type::File) {
                // the directory entry says a regular file: `file`'s open and fstat check
                // that, a stat before them would only repeat it
                self.file(fd, &raw, &tar_path)?;
                continue;
            }
            let Some(st) = stat_at(fd, &raw, &tar_path)? else {
                continue;
            };
            if whiteout(&st) {
                self.note(&tar_path, &st, false);
                let mut wh = rel_prefix(rel);
                wh.extend_from_slice(WHITEOUT.as_bytes());
                wh.extend_from_slice(&raw);
                self.append(&mut marker(), &wh, io::empty(), &shown(&tar_path))?;
                continue;
            }
            if let Some((sub, opaque)) = self.node(fd, &raw, &tar_path, &st)? {
                if opaque {
                    let mut m = tar_path.clone();
                    m.push(b'/');
                    m.extend_from_slice(OPAQUE.as_bytes());
                    self.append(&mut marker(), &m, io::empty(), &shown(&tar_path))?;
                }
                self.dir(&sub, &tar_path)?;
            }
        }
        Ok(())
    }

    /// The union walk: `fds` are this directory in each layer that shows it, top-most
    /// first. What an upper layer whites out, or hides below an opaque directory or a
    /// non-directory, is not written; whiteouts themselves never are.
    fn union(&mut self, fds: &[OwnedFd], rel: &[u8]) -> Result<()> {
        // name -> the layer whose entry wins, `None` when a whiteout hides it
        let mut seen: std::collections::BTreeMap<Vec<u8>, Option<usize>> = Default::default();
        for (i, fd) in fds.iter().enumerate() {
            for raw in names(fd, rel)? {
                if seen.contains_key(&raw) {
                    continue;
                }
                let Some(st) = stat_at(fd, &raw, &tar_path(rel, &raw))? else {
                    continue;
                };
                seen.insert(raw, (!whiteout(&st)).then_some(i));
            }
        }
        for (raw, win) in seen {
            let Some(i) = win else { continue };
            let tar_path = tar_path(rel, &raw);
            let Some(st) = stat_at(&fds[i], &raw, &tar_path)? else {
                continue;
            };
            if whiteout(&st) {
                continue;
            }
            let Some((sub, opaque)) = self.node(&fds[i], &raw, &tar_path, &st)? else {
                continue;
            };
            let mut subs = vec![sub];
            if !opaque {
                for fd in &fds[i + 1..] {
                    let Some(st) = stat_at(fd, &raw, &tar_path)? else {
                        continue;
                    };
                    if kind(&st) != SFlag::S_IFDIR {
                        // a whiteout or a file here hides every layer below
                        break;
                    }
                    let d = openat(fd, os(&raw), DIR_FLAGS, Mode::empty())
                        .ctx(|| format!("open `/{}`", shown(&tar_path)))?;
                    let opq = is_opaque(&d);
                    subs.push(d);
                    if opq {
                        break;
                    }
                }
            }
            self.union(&subs, &tar_path)?;
        }
        Ok(())
    }

    /// Writes the entry `raw` of `fd` (not a whiteout). For a directory, returns it opened
    /// and whether it is opaque, for the caller to walk.
    fn node(
        &mut self,
        fd: &OwnedFd,
        raw: &[u8],
        tar_path: &[u8],
        st: &FileStat,
    ) -> Result<Option<(OwnedFd, bool)>> {
        let name = os(raw);
        let path = shown(tar_path);
        if !matches!(kind(st), SFlag::S_IFDIR | SFlag::S_IFREG) {
            self.note(tar_path, st, false);
        }
        match kind(st) {
            SFlag::S_IFDIR => {
                let sub = match openat(fd, name, DIR_FLAGS, Mode::empty()) {
                    Ok(f) => f,
                    Err(Errno::ENOENT) => return Ok(None),
                    Err(e) => return Err(Error::io(format!("open `/{path}`"), e.into())),
                };
                let st = fstat(&sub).ctx(|| format!("stat `/{path}`"))?;
                let xattrs = sys::fxattrs(&sub).ctx(|| format!("list xattrs of `/{path}`"))?;
                let opaque = xattrs
                    .iter()
                    .any(|(k, v)| k == "user.overlay.opaque" && v == b"y");
                self.note(tar_path, &st, xattrs.is_empty());
                self.pax(&xattrs, &path)?;
                let mut dpath = tar_path.to_vec();
                dpath.push(b'/');
                let mut h = header(&st, tar::EntryType::Directory);
                intended_owner(&mut h, &xattrs);
                self.append(&mut h, &dpath, io::empty(), &path)?;
                return Ok(Some((sub, opaque)));
            }
            SFlag::S_IFREG => self.file(fd, raw, tar_path)?,
            SFlag::S_IFLNK => {
                let target = match readlinkat(fd, name) {
                    Ok(t) => t,
                    Err(Errno::ENOENT) => return Ok(None),
                    Err(e) => return Err(Error::io(format!("read link `/{path}`"), e.into())),
                };
                // user.* xattrs cannot be set on symlinks (PLATFORM.md), so none are read.
                let mut h = header(st, tar::EntryType::Symlink);
                self.b
                    .append_link(&mut h, os(tar_path), Path::new(&target))
                    .map_err(|e| write_err(e, &path))?;
            }
            SFlag::S_IFIFO => {
                self.append(
                    &mut header(st, tar::EntryType::Fifo),
                    tar_path,
                    io::empty(),
                    &path,
                )?;
            }
            k @ (SFlag::S_IFCHR | SFlag::S_IFBLK) => {
                let t = if k == SFlag::S_IFCHR {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                let mut h = header(st, t);
                let dev = st.st_rdev;
                h.set_device_major(nix::sys::stat::major(dev) as u32)
                    .and_then(|_| h.set_device_minor(nix::sys::stat::minor(dev) as u32))
                    .map_err(|e| write_err(e, &path))?;
                self.append(&mut h, tar_path, io::empty(), &path)?;
            }
            // Sockets belong to a running process; no layer format holds them.
            _ => {}
        }
        Ok(None)
    }

    /// Writes the regular file `raw` of `fd`, opened without following and checked by its
    /// fstat (it may have become something else since the directory was read: left out).
    fn file(&mut self, fd: &OwnedFd, raw: &[u8], tar_path: &[u8]) -> Result<()> {
        let name = os(raw);
        let path = shown(tar_path);
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY;
        let f = match openat(fd, name, flags, Mode::empty()) {
            Ok(f) => f,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(Error::io(format!("open `/{path}`"), e.into())),
        };
        let st = fstat(&f).ctx(|| format!("stat `/{path}`"))?;
        if kind(&st) != SFlag::S_IFREG {
            // Swapped for something else since the stat: take it next time.
            return Ok(());
        }
        if st.st_size == 0 && self.skip.iter().any(|s| s.as_bytes() == tar_path) {
            return Ok(());
        }
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key).cloned() {
                // a link between two paths of the walk; a file whose other links are outside
                // it (a COPY's link to an earlier layer) is written, and unpacked, as a file
                self.note(tar_path, &st, false);
                let mut h = header(&st, tar::EntryType::Link);
                self.b
                    .append_link(&mut h, os(tar_path), &first)
                    .map_err(|e| write_err(e, &path))?;
                return Ok(());
            }
            self.links.insert(key, path.clone());
        }
        let xattrs = sys::fxattrs(&f).ctx(|| format!("list xattrs of `/{path}`"))?;
        self.note(tar_path, &st, xattrs.is_empty());
        self.pax(&xattrs, &path)?;
        let mut h = header(&st, tar::EntryType::Regular);
        intended_owner(&mut h, &xattrs);
        h.set_size(st.st_size as u64);
        // A file that shrinks while written would break the tar: hold its size.
        let data = io::Read::take(File::from(f), st.st_size as u64);
        let data = Pad {
            inner: data,
            left: st.st_size as u64,
        };
        self.append(&mut h, tar_path, data, &path)?;
        Ok(())
    }

    /// Notes for [`Seen`] the entry `tar_path` with stat `st`: `plain` when its kind, links
    /// and xattrs are what unpacking makes.
    fn note(&mut self, tar_path: &[u8], st: &FileStat, plain: bool) {
        let Some(s) = &mut self.seen else { return };
        let name = tar_path.rsplit(|b| *b == b'/').next().unwrap_or(tar_path);
        if !plain || name.starts_with(WHITEOUT.as_bytes()) {
            s.unsettled = true;
        } else if st.st_mtime_nsec != 0 {
            s.retime.push((tar_path.to_vec(), st.st_mtime));
        }
    }

    fn pax(&mut self, xattrs: &[(String, Vec<u8>)], path: &str) -> Result<()> {
        let mut recs: Vec<(String, &[u8])> = xattrs
            .iter()
            .filter(|(k, _)| !overlay_xattr(k))
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
            .collect();
        if recs.is_empty() {
            return Ok(());
        }
        recs.sort();
        self.b
            .append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), *v)))
            .map_err(|e| write_err(e, path))
    }

    fn append(
        &mut self,
        h: &mut tar::Header,
        p: &[u8],
        data: impl io::Read,
        shown: &str,
    ) -> Result<()> {
        self.b
            .append_data(h, os(p), data)
            .map_err(|e| write_err(e, shown))
    }
}

/// Reads `inner` and then zeros up to `left` bytes in all (a file that shrank meanwhile).
struct Pad<R> {
    inner: R,
    left: u64,
}

impl<R: io::Read> io::Read for Pad<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let mut n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            buf[..want].fill(0);
            n = want;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The names in directory `fd` (shown as `rel`) with the type the directory entry gives
/// (none where the filesystem does not say), sorted by their bytes.
fn typed_names(fd: &OwnedFd, rel: &[u8]) -> Result<Vec<(Vec<u8>, Option<nix::dir::Type>)>> {
    let dup = fd.try_clone().ctx(|| "dup fd".into())?;
    let mut dir =
        nix::dir::Dir::from_fd(dup).ctx(|| format!("read directory `/{}`", shown(rel)))?;
    let mut names = Vec::new();
    for ent in dir.iter() {
        let ent = ent.ctx(|| format!("read directory `/{}`", shown(rel)))?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push((n.to_vec(), ent.file_type()));
        }
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(names)
}

/// The names in directory `fd` (shown as `rel`), sorted by their bytes.
fn names(fd: &OwnedFd, rel: &[u8]) -> Result<Vec<Vec<u8>>> {
    let dup = fd.try_clone().ctx(|| "dup fd".into())?;
    let mut dir =
        nix::dir::Dir::from_fd(dup).ctx(|| format!("read directory `/{}`", shown(rel)))?;
    let mut names: Vec<Vec<u8>> = Vec::new();
    for ent in dir.iter() {
        let ent = ent.ctx(|| format!("read directory `/{}`", shown(rel)))?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    names.sort();
    Ok(names)
}

/// `fstatat` without following; `None` when the entry is gone (a running container).
fn stat_at(fd: &OwnedFd, raw: &[u8], tar_path: &[u8]) -> Result<Option<FileStat>> {
    match fstatat(fd, os(raw), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(Error::io(format!("stat `/{}`", shown(tar_path)), e.into())),
    }
}

fn whiteout(st: &FileStat) -> bool {
    kind(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

fn is_opaque(fd: &OwnedFd) -> bool {
    matches!(sys::fgetxattr(fd, "user.overlay.opaque"), Ok(Some(v)) if v == b"y")
}

/// Tar paths stay bytes; this lossy form is for messages only.
fn shown(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

fn write_err(e: io::Error, path: &str) -> Error {
    Error::io(format!("write `/{path}` into the layer"), e)
}

fn os(b: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(b))
}

fn rel_prefix(rel: &[u8]) -> Vec<u8> {
    let mut p = rel.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p
}

fn tar_path(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = rel_prefix(rel);
    p.extend_from_slice(name);
    p
}

#[cfg(test)]
#[path = "changes_tests.rs"]
mod tests;
