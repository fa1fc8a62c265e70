//! Layer unpacking: a (gzip | zstd | plain) tar stream becomes one directory per diff id.
//!
//! Owns decompression (autodetected by magic), the diff id (sha256 of the uncompressed tar)
//! computed while unpacking, and the translation of tar entries into the form the overlay
//! mount needs: OCI whiteouts `.wh.NAME` become 0/0 character devices, `.wh..wh..opq` becomes
//! `user.overlay.opaque=y` on the directory (layers are mounted with `userxattr`).
//!
//! This is the security boundary against hostile images. Every file operation happens
//! relative to a directory fd obtained by an `O_NOFOLLOW` component walk from the layer root,
//! after the entry path has been cleaned lexically; so no entry can reach outside the layer:
//! `..` that climbs above the root is refused, absolute paths are made relative, a parent path
//! that goes through a symlink is refused, hard links must name a file inside the layer through
//! real directories, and symlinks are created but never followed. Device nodes other than
//! whiteouts are skipped with a warning; `trusted.*` and `user.overlay.*` xattrs from the image
//! are dropped (the kernel would obey them). Owners outside the [`IdMap`] fold to 0.
//!
//! It does not mount anything and does not know about images.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{
    fchmod, fstatat, futimens, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{
    fchown, fchownat, linkat, mkfifoat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags,
};
use serde::{Deserialize, Serialize};

use crate::archive::tar_error;
use crate::digest::{Digest, Hasher, HashingReader};
use crate::store::{create_new, remove_tree_at, Store, TmpPath};
use crate::{bt, sys, Error, IdMap, IoContext, Result};

/// What unpacking a layer produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// The stored (possibly compressed) blob, when one was kept.
    pub blob: Option<Digest>,
    /// Size of the uncompressed tar stream in bytes.
    pub size: u64,
    /// Entries skipped (device nodes, unsupported types), one line each; each also went to
    /// the store's warning sink, if any, when it happened ([`Store::set_warning_sink`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Size of the stored blob, when one was kept.
    #[serde(default)]
    pub blob_size: Option<u64>,
    /// Compression of the stored blob (or of the stream when no blob was kept).
    pub compression: Compression,
}

/// Compression of a layer stream, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Detects gzip (`1f 8b`) and zstd (`28 b5 2f fd`); anything else is taken as plain tar.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The compression a stored layer's media type names (plain tar when it names none).
    pub fn of_media_type(media_type: &str) -> Compression {
        if media_type.ends_with("gzip") {
            Compression::Gzip
        } else if media_type.ends_with("zstd") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI layer media type for this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// The Docker schema2 layer media type (Docker has none for zstd; the OCI one is used).
    pub fn docker_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.docker.image.rootfs.diff.tar",
            Compression::Gzip => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Wraps `r` in the decompressor its magic bytes call for.
pub fn decompress<'a, R: BufRead + 'a>(mut r: R) -> Result<(Compression, Box<dyn Read + 'a>)> {
    let head = r.fill_buf().ctx(|| "read layer stream".to_string())?;
    let c = Compression::detect(head);
    let rd: Box<dyn Read + 'a> = match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(r).ctx(|| "start zstd decoder".to_string())?,
        ),
    };
    Ok((c, rd))
}

/// Per-layer metadata kept next to the unpacked `diff/` directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LayerMeta {
    pub diff_id: Digest,
    #[serde(default)]
    pub blob: Option<Digest>,
    #[serde(default)]
    pub blob_size: Option<u64>,
    pub compression: Compression,
    pub size: u64,
    /// Unpacked under a single-id map with files of other owners, kept in the FUSE
    /// overlay's override xattr (the runtime then prefers that driver).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub foreign_owners: bool,
    /// The highest uid or gid of the layer's entries, in the image's ids (what
    /// `--userns=auto` must map); recorded when the layer is unpacked, absent for layers
    /// unpacked before rbox recorded it and for layers of a commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest_owner: Option<u32>,
}

impl Store {
    pub(crate) fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.layers_dir().join(diff_id.hex())
    }

    /// Whether the layer with this diff id is unpacked in the store.
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).join("layer.json").is_file()
    }

    /// The store holding the layer for reading: this one, else the first additional store
    /// that has it, else this one (where it is missing).
    pub(crate) fn layer_home(&self, diff_id: &Digest) -> &Store {
        if self.has_layer(diff_id) {
            return self;
        }
        self.additional_stores()
            .iter()
            .find(|s| s.has_layer(diff_id))
            .unwrap_or(self)
    }

    /// Whether the layer is unpacked in this store or in one of its additional stores.
    pub fn has_layer_anywhere(&self, diff_id: &Digest) -> bool {
        self.layer_home(diff_id).has_layer(diff_id)
    }

    /// The unpacked layer directory, usable as an overlay lowerdir: this store's, or that
    /// of an additional store, used in place.
    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.layer_home(diff_id).layer_dir(diff_id).join("diff")
    }

    /// Whether the layer has files whose owners a single-id map folded (kept in the FUSE
    /// overlay's override xattr, which only that driver shows).
    pub fn layer_has_foreign_owners(&self, diff_id: &Digest) -> bool {
        self.layer_home(diff_id)
            .layer_meta(diff_id)
            .is_ok_and(|m| m.foreign_owners)
    }

    /// The highest uid or gid owning an entry of the layer, as the image gives it (`None`
    /// when the store did not record it: the caller walks the layer instead).
    pub fn layer_highest_owner(&self, diff_id: &Digest) -> Option<u32> {
        self.layer_home(diff_id)
            .layer_meta(diff_id)
            .ok()
            .and_then(|m| m.highest_owner)
    }

    /// The uncompressed size of an unpacked layer, in bytes (`None` when it is not stored).
    pub fn layer_size(&self, diff_id: &Digest) -> Option<u64> {
        self.layer_home(diff_id)
            .layer_meta(diff_id)
            .ok()
            .map(|m| m.size)
    }

    pub(crate) fn layer_meta(&self, diff_id: &Digest) -> Result<LayerMeta> {
        let p = self.layer_dir(diff_id).join("layer.json");
        let data = match fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::LayerNotFound(diff_id.clone()))
            }
            Err(e) => return Err(Error::io(format!("read {}", bt(&p)), e)),
        };
        serde_json::from_slice(&data).map_err(|e| Error::InvalidLayer(format!("{}: {e}", bt(&p))))
    }

    /// Unpacks a layer stream (gzip, zstd or plain tar) into the store. With
    /// `expected_diff_id`, the uncompressed stream must hash to it, and an already present
    /// layer is returned without reading the stream.
    pub fn apply_layer(
        &self,
        r: impl Read,
        expected_diff_id: Option<&Digest>,
    ) -> Result<LayerInfo> {
        self.store_layer(r, None, None, expected_diff_id, false)
    }

    /// One streaming pass over a downloaded layer blob: stores the compressed blob and unpacks
    /// it, verifying the blob digest (and size) and the diff id. On any mismatch nothing is kept.
    pub fn pull_layer(
        &self,
        r: impl Read,
        blob: &Digest,
        size: Option<u64>,
        expected_diff_id: Option<&Digest>,
    ) -> Result<LayerInfo> {
        self.store_layer(r, Some(blob), size, expected_diff_id, true)
    }

    /// The general form of [`Store::apply_layer`] and [`Store::pull_layer`]: `keep_blob` also
    /// stores the raw stream as a blob (verified against `expected_blob` when given).
    pub(crate) fn store_layer(
        &self,
        r: impl Read,
        expected_blob: Option<&Digest>,
        expected_size: Option<u64>,
        expected_diff: Option<&Digest>,
        keep_blob: bool,
    ) -> Result<LayerInfo> {
        // A source longer than announced is a mismatch: one byte past the size tells, so a
        // hostile endless stream is not read (and stored) forever.
        // Checked: a Ctrl-C stops the read (see `interrupt`), and the guards below remove
        // what was staged.
        let mut r = crate::interrupt::Checked::new(r)
            .take(expected_size.map_or(u64::MAX, |n| n.saturating_add(1)));
        // With a known diff id, hold the layer lock for the whole unpack: a concurrent
        // unpack of the same layer waits and then finds it present instead of redoing it.
        let mut guard = match expected_diff {
            Some(d) => Some(self.lock(&format!("layer-{}", d.hex()))?),
            None => None,
        };
        if let Some(d) = expected_diff {
            if self.has_layer(d) {
                let info =
                    self.existing_layer(&mut r, d, expected_blob, expected_size, keep_blob)?;
                self.pin_layer(d)?;
                return Ok(info);
            }
        }

        let dir = self.tmp_path("layer");
        fs::create_dir(&dir.path).ctx(|| format!("create {}", bt(&dir.path)))?;
        let diff = dir.path.join("diff");
        fs::create_dir(&diff).ctx(|| format!("create {}", bt(&diff)))?;
        // A layer without a root entry ("./") gets a read-only root, as containers/storage
        // gives it (Podman shows `/` as 0555); a root entry's own mode replaces it.
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&diff, fs::Permissions::from_mode(ROOT_MODE))
                .ctx(|| format!("set the mode of {}", bt(&diff)))?;
        }
        let blob_tmp = if keep_blob {
            let t = self.tmp_path("blob");
            let f = create_new(&t.path, 0o644)?;
            Some((t, f))
        } else {
            None
        };

        let mut raw_hasher = Hasher::new();
        let source_err = RefCell::new(None);
        let unpacked = (|| {
            let mut tee = Tee {
                inner: &mut r,
                hasher: &mut raw_hasher,
                file: blob_tmp.as_ref().map(|(_, f)| f),
                source_err: &source_err,
            };
            let (compression, decoded) =
                decompress(BufReader::with_capacity(256 * 1024, &mut tee))?;
            let mut hashed = HashingReader::new(decoded);
            let mut unpacker = Unpacker::new(&diff, self.ids(), self.max_layer_size())?;
            unpacker.sink = self.warning_sink();
            let mut unpacker = unpack_pipelined(&mut hashed, unpacker)?;
            let (diff_id, size) = hashed.finish().map_err(read_err)?;
            unpacker.finish()?;
            // The decoder may stop before the end of the raw stream (gzip trailer padding);
            // the rest still belongs to the blob digest.
            io::copy(&mut tee, &mut io::sink()).map_err(read_err)?;
            Ok((
                compression,
                diff_id,
                size,
                unpacker.warnings,
                unpacker.foreign_owners,
                unpacker.highest_owner,
            ))
        })();
        let (compression, diff_id, size, warnings, foreign_owners, highest_owner) = unpacked
            .map_err(|e| source_or(&source_err, e))
            .map_err(|e| match e {
                Error::LayerTooLarge { limit, entry, .. } => Error::LayerTooLarge {
                    layer: expected_diff
                        .or(expected_blob)
                        .map(|d| format!("{d} "))
                        .unwrap_or_default(),
                    limit,
                    entry,
                },
                e => e,
            })?;
        let blob_file = blob_tmp;
        let blob_size = raw_hasher.len();
        let blob_digest = raw_hasher.finish();

        if let Some(exp) = expected_size {
            if exp != blob_size {
                return Err(Error::SizeMismatch {
                    digest: expected_blob.cloned().unwrap_or(blob_digest),
                    expected: exp,
                    actual: blob_size,
                });
            }
        }
        if let Some(exp) = expected_blob {
            if *exp != blob_digest {
                return Err(Error::DigestMismatch {
                    expected: exp.clone(),
                    actual: blob_digest,
                });
            }
        }
        // Last: a wrong size or blob digest is the more telling report of a bad download.
        if let Some(exp) = expected_diff {
            if *exp != diff_id {
                return Err(Error::DigestMismatch {
                    expected: exp.clone(),
                    actual: diff_id,
                });
            }
        }

        if guard.is_none() {
            guard = Some(self.lock(&format!("layer-{}", diff_id.hex()))?);
        }
        let blob = if let Some((t, f)) = blob_file {
            self.commit_blob(t, f, &blob_digest)?;
            Some(blob_digest)
        } else {
            None
        };
        let meta = LayerMeta {
            diff_id: diff_id.clone(),
            blob: blob.clone(),
            blob_size: blob.as_ref().map(|_| blob_size),
            compression,
            size,
            foreign_owners,
            highest_owner: Some(highest_owner),
        };
        if !self.has_layer(&diff_id) {
            self.install_layer(dir, &meta)?;
        }
        self.pin_layer(&diff_id)?;
        drop(guard);
        Ok(LayerInfo {
            diff_id,
            blob_size: blob.as_ref().map(|_| blob_size),
            blob,
            size,
            warnings,
            compression,
        })
    }

    /// Moves the layer directory `dir` (holding `diff/`) into place with its `layer.json`.
    /// The caller holds the layer's lock and has seen that the layer is not present.
    pub(crate) fn install_layer(&self, dir: TmpPath, meta: &LayerMeta) -> Result<()> {
        let mut f = create_new(&dir.path.join("layer.json"), 0o644)?;
        f.write_all(&serde_json::to_vec_pretty(meta).expect("layer meta serializes"))
            .and_then(|_| f.sync_all())
            .ctx(|| format!("write {}", bt(&dir.path.join("layer.json"))))?;
        let dst = self.layer_dir(&meta.diff_id);
        // A leftover directory without layer.json is an interrupted removal: clear it.
        if dst.exists() {
            self.remove_dir_atomic(&dst)?;
        }
        fs::rename(&dir.path, &dst).ctx(|| format!("rename layer into {}", bt(&dst)))?;
        dir.keep();
        Ok(())
    }

    /// The layer `d` is already unpacked: make sure the wanted blob is stored too (verifying
    /// that it really holds this layer) without unpacking again.
    fn existing_layer(
        &self,
        r: impl Read,
        d: &Digest,
        expected_blob: Option<&Digest>,
        expected_size: Option<u64>,
        keep_blob: bool,
    ) -> Result<LayerInfo> {
        let meta = self.layer_meta(d)?;
        let info = |blob: Option<Digest>, blob_size: Option<u64>, compression| LayerInfo {
            diff_id: d.clone(),
            blob,
            size: meta.size,
            warnings: Vec::new(),
            blob_size,
            compression,
        };
        let want = expected_blob.or(meta.blob.as_ref());
        if let Some(b) = want.filter(|b| self.has_blob(b)) {
            if meta.blob.as_ref() == Some(b) {
                return Ok(info(Some(b.clone()), meta.blob_size, meta.compression));
            }
            let f = self.open_blob(b)?;
            let len = f.metadata().ctx(|| format!("stat blob {b}"))?.len();
            let mut head = [0u8; 4];
            let got = (&f).read(&mut head).ctx(|| format!("read blob {b}"))?;
            return Ok(info(
                Some(b.clone()),
                Some(len),
                Compression::detect(&head[..got]),
            ));
        }
        if !keep_blob {
            return Ok(info(None, None, meta.compression));
        }
        let tmp = self.tmp_path("blob");
        let file = create_new(&tmp.path, 0o644)?;
        let mut raw_hasher = Hasher::new();
        let mut r = r;
        let source_err = RefCell::new(None);
        let hashed = (|| {
            let mut tee = Tee {
                inner: &mut r,
                hasher: &mut raw_hasher,
                file: Some(&file),
                source_err: &source_err,
            };
            let (compression, decoded) =
                decompress(BufReader::with_capacity(256 * 1024, &mut tee))?;
            let (diff_id, _) = HashingReader::new(decoded).finish().map_err(read_err)?;
            io::copy(&mut tee, &mut io::sink()).map_err(read_err)?;
            Ok((compression, diff_id))
        })();
        let (compression, diff_id) = hashed.map_err(|e| source_or(&source_err, e))?;
        let blob_size = raw_hasher.len();
        let blob = raw_hasher.finish();
        if let Some(exp) = expected_size {
            if exp != blob_size {
                return Err(Error::SizeMismatch {
                    digest: expected_blob.cloned().unwrap_or(blob),
                    expected: exp,
                    actual: blob_size,
                });
            }
        }
        if let Some(exp) = expected_blob {
            check(exp, &blob)?;
        }
        check(d, &diff_id)?;
        self.commit_blob(tmp, file, &blob)?;
        if meta.blob.as_ref().is_none_or(|b| !self.has_blob(b)) {
            let mut m = meta.clone();
            m.blob = Some(blob.clone());
            m.blob_size = Some(blob_size);
            m.compression = compression;
            self.write_atomic(
                &self.layer_dir(d).join("layer.json"),
                &serde_json::to_vec_pretty(&m).expect("layer meta serializes"),
            )?;
        }
        Ok(info(Some(blob), Some(blob_size), compression))
    }
}

fn check(expected: &Digest, actual: &Digest) -> Result<()> {
    if expected != actual {
        return Err(Error::DigestMismatch {
            expected: expected.clone(),
            actual: actual.clone(),
        });
    }
    Ok(())
}

/// The error to report for a failed unpack: the source's own read error when there was one
/// (it is the cause of whatever followed), else `e`.
/// Decompressed bytes travel from the reading thread to the unpacking thread in chunks of
/// this size, at most `PIPE_DEPTH` chunks ahead.
const PIPE_CHUNK: usize = 256 * 1024;
const PIPE_DEPTH: usize = 8;

/// Unpack the tar stream `src` on a second thread while this one keeps reading, hashing and
/// inflating: on two cores a layer then costs about max(inflate, untar) instead of their sum.
/// An unpack error stops the reader (its channel closes); a read error ends the stream, and
/// the read error is the one returned.
fn unpack_pipelined<R: Read>(src: &mut R, mut unpacker: Unpacker) -> Result<Unpacker> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPE_DEPTH);
    std::thread::scope(|s| {
        let worker = s.spawn(move || -> Result<Unpacker> {
            let mut reader = ChannelReader {
                rx,
                chunk: Vec::new(),
                pos: 0,
            };
            unpacker.unpack(&mut tar::Archive::new(&mut reader))?;
            // Take what follows the end-of-archive marker, so the reader never blocks on a
            // full channel.
            io::copy(&mut reader, &mut io::sink()).map_err(read_err)?;
            Ok(unpacker)
        });
        let produced = (|| -> Result<()> {
            loop {
                let mut chunk = vec![0u8; PIPE_CHUNK];
                let n = loop {
                    match src.read(&mut chunk) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(read_err(e)),
                    }
                };
                if n == 0 {
                    return Ok(());
                }
                chunk.truncate(n);
                if tx.send(chunk).is_err() {
                    // the unpacker stopped: its error is the one to report
                    return Ok(());
                }
            }
        })();
        drop(tx);
        let unpacked = match worker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        produced?;
        unpacked
    })
}

/// The receiving end of [`unpack_pipelined`] as a `Read`; end of file once the sender is gone.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn source_or(source_err: &RefCell<Option<io::Error>>, e: Error) -> Error {
    match source_err.borrow_mut().take() {
        Some(src) => Error::io("read layer stream", src),
        None => e,
    }
}

fn read_err(e: io::Error) -> Error {
    // Decoders report corrupt input as InvalidData/InvalidInput: that is a bad layer, not
    // an I/O failure of the machine.
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof => {
            Error::InvalidLayer(format!("corrupt layer stream: {e}"))
        }
        _ => Error::io("read layer stream", e),
    }
}

/// Copies everything read from `inner` into a hasher and, optionally, a blob file. An error
/// of `inner` itself (a dropped connection, a timeout) is kept aside in `source_err`, so it
/// can be reported as it was, not as whatever the decoder or tar parser made of it: the
/// registry client retries transient source errors, never a corrupt layer.
struct Tee<'a, R: Read> {
    inner: &'a mut R,
    hasher: &'a mut Hasher,
    file: Option<&'a File>,
    source_err: &'a RefCell<Option<io::Error>>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let kind = e.kind();
                *self.source_err.borrow_mut() = Some(e);
                return Err(io::Error::new(kind, "layer source read error"));
            }
        };
        self.hasher.update(&buf[..n]);
        if let Some(mut f) = self.file {
            f.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

/// Holes are kept at this granularity (the usual filesystem block).
const HOLE_BLOCK: usize = 4096;
static ZEROS: [u8; HOLE_BLOCK] = [0; HOLE_BLOCK];

/// Copies a file's contents from `r` into the new, empty file `f`, seeking over every
/// block-aligned run of zeros instead of writing it, so the unpacked file keeps the holes of
/// a sparse tar entry (the tar crate hands those to `Read` as zeros) and of zero-filled
/// regions (a huge `lastlog`). Returns the file's size.
fn copy_keeping_holes(r: &mut impl Read, f: &File, buf: &mut Vec<u8>) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    buf.resize(PIPE_CHUNK, 0);
    let mut off = 0u64;
    let mut end_written = 0u64;
    loop {
        let mut n = 0;
        while n < buf.len() {
            match r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let data = &buf[..n];
        let mut i = 0;
        while i < n {
            // `==` on byte slices is a memcmp, fast even in a debug build.
            let zero = |at: usize| {
                data[at..n.min(at + HOLE_BLOCK)] == ZEROS[..n.min(at + HOLE_BLOCK) - at]
            };
            if zero(i) {
                i = n.min(i + HOLE_BLOCK);
                continue;
            }
            let mut j = n.min(i + HOLE_BLOCK);
            while j < n && !zero(j) {
                j = n.min(j + HOLE_BLOCK);
            }
            f.write_all_at(&data[i..j], off + i as u64)?;
            end_written = off + j as u64;
            i = j;
        }
        off += n as u64;
        if n < buf.len() {
            break;
        }
    }
    if end_written < off {
        // The file ends in a hole: give it its size.
        f.set_len(off)?;
    }
    Ok(off)
}

/// The mode of a layer's root when its archive does not set one, and of a container's root
/// over no layer.
pub const ROOT_MODE: u32 = 0o555;

/// A cleaned relative path inside the layer: no empty, `.` or `..` components.
type Comps = Vec<Vec<u8>>;

/// Cleans a tar path lexically: leading `/` and `.` components go, `..` pops, and a `..`
/// that would climb above the layer root is refused.
pub(crate) fn clean_path(raw: &[u8]) -> Result<Comps> {
    let mut out: Comps = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err(Error::hostile(
                        String::from_utf8_lossy(raw),
                        "path escapes the layer",
                    ));
                }
            }
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

fn show(comps: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            s.push('/');
        }
        s.push_str(&String::from_utf8_lossy(c));
    }
    s
}

fn os(c: &[u8]) -> &OsStr {
    OsStr::from_bytes(c)
}

/// Metadata applied to a directory after all its contents are written.
struct DirMeta {
    comps: Comps,
    mode: u32,
    mtime: i64,
}

struct Unpacker {
    root: OwnedFd,
    ids: IdMap,
    euid: u32,
    egid: u32,
    dirs: Vec<DirMeta>,
    parent_cache: Option<(Comps, OwnedFd)>,
    pub warnings: Vec<String>,
    /// Where each warning also goes as it happens.
    sink: Option<crate::store::WarningSink>,
    /// Sum of the apparent sizes of the regular files so far, and its limit.
    unpacked: u64,
    limit: Option<u64>,
    /// Copy buffer for file contents, reused across entries.
    buf: Vec<u8>,
    /// Some owner was kept in the override xattr ([`Unpacker::record_owner`]).
    foreign_owners: bool,
    /// The highest uid or gid of the entries so far, as their headers give them.
    highest_owner: u32,
}

/// The parts of a tar header the unpacker uses, with PAX overrides applied.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

const DIR_FLAGS: OFlag = OFlag::O_DIRECTORY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_RDONLY);

impl Unpacker {
    fn new(root_path: &Path, ids: IdMap, limit: Option<u64>) -> Result<Unpacker> {
        let root = openat(nix::fcntl::AT_FDCWD, root_path, DIR_FLAGS, Mode::empty())
            .ctx(|| format!("open {}", bt(root_path)))?;
        Ok(Unpacker {
            root,
            ids,
            euid: nix::unistd::geteuid().as_raw(),
            egid: nix::unistd::getegid().as_raw(),
            dirs: Vec::new(),
            parent_cache: None,
            warnings: Vec::new(),
            sink: None,
            unpacked: 0,
            limit,
            buf: Vec::new(),
            foreign_owners: false,
            highest_owner: 0,
        })
    }

    fn unpack<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<()> {
        let entries = archive
            .entries()
            .map_err(|e| Error::InvalidLayer(tar_error(&e)))?;
        let mut first = true;
        for entry in entries {
            let mut entry = entry.map_err(|e| match e.kind() {
                // The tar crate reports malformed headers as `Other`; one in the very first
                // block means the stream is no tar at all (the crate would quote it).
                io::ErrorKind::Other | io::ErrorKind::UnexpectedEof if first => {
                    Error::InvalidLayer(
                        "not a tar archive (plain, gzip or zstd compressed)".to_string(),
                    )
                }
                io::ErrorKind::Other => {
                    Error::InvalidLayer(format!("read tar entry: {}", tar_error(&e)))
                }
                _ => read_err(e),
            })?;
            first = false;
            self.entry(&mut entry)?;
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let comps = clean_path(&raw_path)?;
        let meta = read_meta(entry)
            .map_err(|e| Error::InvalidLayer(format!("entry `{shown}`: {}", tar_error(&e))))?;
        let kind = entry.header().entry_type();
        let owner = meta.uid.max(meta.gid).min(u64::from(u32::MAX)) as u32;
        self.highest_owner = self.highest_owner.max(owner);

        if comps.is_empty() {
            // The layer root itself ("./"): only directory metadata applies.
            if kind.is_dir() {
                let root = self.root.try_clone().ctx(|| "dup fd".into())?;
                self.chown_fd(&root, &meta, &shown)?;
                self.record_owner(&root, &meta);
                self.dirs.push(DirMeta {
                    comps,
                    mode: meta.mode,
                    mtime: meta.mtime,
                });
            }
            return Ok(());
        }
        let (name, parent_comps) = comps.split_last().expect("non-empty");
        let parent = self.open_dir(parent_comps, true, &shown)?;

        // Whiteouts.
        if let Some(target) = name.strip_prefix(b".wh.") {
            if target == b".wh..opq" {
                sys::fsetxattr(&parent, "user.overlay.opaque", b"y")
                    .ctx(|| format!("mark `{}` opaque", show(parent_comps)))?;
                return Ok(());
            }
            if target.starts_with(b".wh.") {
                // Other AUFS metadata (`.wh..wh.plnk`, ...): meaningless to overlay.
                return Ok(());
            }
            if target.is_empty() || target == b"." || target == b".." {
                return Err(Error::hostile(shown, "invalid whiteout name"));
            }
            self.clear_slot(&parent, parent_comps, target)?;
            mknodat(&parent, os(target), SFlag::S_IFCHR, Mode::empty(), 0)
                .ctx(|| format!("create whiteout for `{shown}`"))?;
            return Ok(());
        }

        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                // The apparent size (a sparse file's holes included), known from the header
                // before a byte is written: a 512-byte sparse header can declare a hole of
                // petabytes, which costs time to expand even when it costs no disk.
                self.unpacked = self.unpacked.saturating_add(entry.size());
                if let Some(limit) = self.limit.filter(|l| self.unpacked > *l) {
                    return Err(Error::LayerTooLarge {
                        layer: String::new(),
                        limit,
                        entry: shown,
                    });
                }
                let create = || {
                    openat(
                        &parent,
                        os(name),
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_WRONLY
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o600),
                    )
                };
                // Try first, clear on EEXIST: saves a stat per entry in the common case.
                let fd = match create() {
                    Err(Errno::EEXIST) => {
                        self.clear_slot(&parent, parent_comps, name)?;
                        create()
                    }
                    r => r,
                }
                .ctx(|| format!("create `{shown}`"))?;
                let f = File::from(fd);
                let mut buf = std::mem::take(&mut self.buf);
                let copied = copy_keeping_holes(entry, &f, &mut buf);
                self.buf = buf;
                copied.map_err(|e| match read_err(e) {
                    Error::Io { error, .. } => Error::io(format!("write `{shown}`"), error),
                    other => other,
                })?;
                self.chown_fd(&f, &meta, &shown)?;
                fchmod(&f, Mode::from_bits_truncate(meta.mode))
                    .ctx(|| format!("chmod `{shown}`"))?;
                self.set_xattrs(&f, &meta);
                self.record_owner(&f, &meta);
                let t = TimeSpec::new(meta.mtime, 0);
                futimens(&f, &t, &t).ctx(|| format!("set times of `{shown}`"))?;
            }
            T::Directory => {
                let mkdir = || mkdirat(&parent, os(name), Mode::from_bits_truncate(0o700));
                match mkdir() {
                    Ok(()) => {}
                    Err(Errno::EEXIST) => {
                        let st = fstatat(&parent, os(name), AtFlags::AT_SYMLINK_NOFOLLOW)
                            .ctx(|| format!("stat `{shown}`"))?;
                        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
                            != SFlag::S_IFDIR
                        {
                            self.clear_slot(&parent, parent_comps, name)?;
                            mkdir().ctx(|| format!("create directory `{shown}`"))?;
                        }
                    }
                    Err(e) => {
                        return Err(Error::io(format!("create directory `{shown}`"), e.into()))
                    }
                }
                let dfd = openat(&parent, os(name), DIR_FLAGS, Mode::empty())
                    .ctx(|| format!("open directory `{shown}`"))?;
                self.chown_fd(&dfd, &meta, &shown)?;
                self.set_xattrs(&dfd, &meta);
                self.record_owner(&dfd, &meta);
                // Keep the directory writable (owner rwx) until its contents are in.
                fchmod(&dfd, Mode::from_bits_truncate((meta.mode & 0o777) | 0o700))
                    .ctx(|| format!("chmod `{shown}`"))?;
                self.dirs.push(DirMeta {
                    comps: comps.clone(),
                    mode: meta.mode,
                    mtime: meta.mtime,
                });
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::InvalidLayer(format!("symlink `{shown}` has no target")))?
                    .into_owned();
                if target.is_empty() || target.contains(&0) {
                    return Err(Error::InvalidLayer(format!(
                        "symlink `{shown}` has an invalid target"
                    )));
                }
                self.clear_slot(&parent, parent_comps, name)?;
                symlinkat(os(&target), &parent, os(name))
                    .ctx(|| format!("create symlink `{shown}`"))?;
                self.chown_at(&parent, name, &meta, &shown)?;
                let t = TimeSpec::new(meta.mtime, 0);
                utimensat(&parent, os(name), &t, &t, UtimensatFlags::NoFollowSymlink)
                    .ctx(|| format!("set times of `{shown}`"))?;
            }
            T::Link => {
                let raw_target = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        Error::InvalidLayer(format!("hard link `{shown}` has no target"))
                    })?
                    .into_owned();
                let tcomps = clean_path(&raw_target).map_err(|_| {
                    Error::hostile(shown.clone(), "hard link target escapes the layer")
                })?;
                let Some((tname, tparent_comps)) = tcomps.split_last() else {
                    return Err(Error::hostile(shown, "hard link to the layer root"));
                };
                let tparent = self
                    .open_dir(tparent_comps, false, &shown)
                    .map_err(|e| match e {
                        Error::HostileEntry { .. } => e,
                        _ => Error::hostile(shown.clone(), "hard link target is not in the layer"),
                    })?;
                match fstatat(&tparent, os(tname), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st)
                        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
                            == SFlag::S_IFDIR =>
                    {
                        return Err(Error::hostile(shown, "hard link to a directory"));
                    }
                    Ok(_) => {}
                    Err(Errno::ENOENT) => {
                        return Err(Error::hostile(
                            shown,
                            "hard link target is not in the layer",
                        ))
                    }
                    Err(e) => {
                        return Err(Error::io(
                            format!("stat link target of `{shown}`"),
                            e.into(),
                        ))
                    }
                }
                if tcomps == comps {
                    return Ok(());
                }
                self.clear_slot(&parent, parent_comps, name)?;
                // flags 0: a symlink target is linked itself, never followed.
                linkat(&tparent, os(tname), &parent, os(name), AtFlags::empty())
                    .ctx(|| format!("create hard link `{shown}`"))?;
            }
            T::Fifo => {
                self.clear_slot(&parent, parent_comps, name)?;
                mkfifoat(
                    &parent,
                    os(name),
                    Mode::from_bits_truncate(meta.mode & 0o7777),
                )
                .ctx(|| format!("create fifo `{shown}`"))?;
                self.chown_at(&parent, name, &meta, &shown)?;
                // The fifo was just created here by us, so following is moot; fchmodat with
                // NoFollow is not supported by Linux.
                nix::sys::stat::fchmodat(
                    &parent,
                    os(name),
                    Mode::from_bits_truncate(meta.mode & 0o7777),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .ctx(|| format!("chmod `{shown}`"))?;
                let t = TimeSpec::new(meta.mtime, 0);
                utimensat(&parent, os(name), &t, &t, UtimensatFlags::NoFollowSymlink)
                    .ctx(|| format!("set times of `{shown}`"))?;
            }
            T::Char | T::Block => {
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                if kind == T::Char && major == 0 && minor == 0 {
                    // Already in overlay whiteout form.
                    self.clear_slot(&parent, parent_comps, name)?;
                    mknodat(&parent, os(name), SFlag::S_IFCHR, Mode::empty(), 0)
                        .ctx(|| format!("create whiteout `{shown}`"))?;
                } else {
                    let what = if kind == T::Char {
                        "character"
                    } else {
                        "block"
                    };
                    self.warn(format!(
                        "skipped {what} device `{shown}` ({major}:{minor}): device nodes cannot be created rootless"
                    ));
                }
            }
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {}
            other => {
                self.warn(format!(
                    "skipped `{shown}`: unsupported tar entry type {:?}",
                    other.as_byte() as char
                ));
            }
        }
        Ok(())
    }

    /// Records a skipped entry and hands it to the warning sink right away: callers that only
    /// get image records back (archive load, pull) have no other way to show it.
    fn warn(&mut self, msg: String) {
        if let Some(sink) = &self.sink {
            sink(&msg);
        }
        self.warnings.push(msg);
    }

    /// Opens the directory `comps` under the root by a component walk that never follows a
    /// symlink; missing directories are created when `create`.
    fn open_dir(&mut self, comps: &[Vec<u8>], create: bool, shown: &str) -> Result<OwnedFd> {
        if let Some((c, fd)) = &self.parent_cache {
            if c.as_slice() == comps {
                return fd.try_clone().ctx(|| "dup fd".into());
            }
        }
        // Start from the cached directory when it is close: below it (a tree's entries come
        // parent first) or a few `..` above it (`finish` goes deepest first), so a deep tree
        // costs a few opens per entry, not one per level. `..` of a directory of this private
        // tree is its real parent; where it cannot be searched (just made 0000), walk from
        // the root instead.
        let near = match &self.parent_cache {
            Some((c, fd)) => {
                let common = c.iter().zip(comps).take_while(|(a, b)| a == b).count();
                let up = c.len() - common;
                if up + comps.len() - common < comps.len() {
                    let mut cur = Some(fd.try_clone().ctx(|| "dup fd".into())?);
                    for _ in 0..up {
                        cur = cur.and_then(|fd| openat(&fd, "..", DIR_FLAGS, Mode::empty()).ok());
                    }
                    cur.map(|fd| (fd, common))
                } else {
                    None
                }
            }
            None => None,
        };
        let (mut cur, start) = match near {
            Some(n) => n,
            None => (self.root.try_clone().ctx(|| "dup fd".into())?, 0),
        };
        for (i, c) in comps.iter().enumerate().skip(start) {
            let next = match openat(&cur, os(c), DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => {
                    mkdirat(&cur, os(c), Mode::from_bits_truncate(0o755))
                        .ctx(|| format!("create directory `{}`", show(&comps[..=i])))?;
                    openat(&cur, os(c), DIR_FLAGS, Mode::empty())
                        .ctx(|| format!("open directory `{}`", show(&comps[..=i])))?
                }
                Err(Errno::ELOOP) => {
                    return Err(Error::hostile(
                        shown,
                        format!("parent `{}` is a symlink", show(&comps[..=i])),
                    ))
                }
                Err(Errno::ENOTDIR) => {
                    return Err(Error::hostile(
                        shown,
                        format!("parent `{}` is not a directory", show(&comps[..=i])),
                    ))
                }
                Err(e) => {
                    return Err(Error::io(
                        format!("open directory `{}`", show(&comps[..=i])),
                        e.into(),
                    ))
                }
            };
            cur = next;
        }
        self.parent_cache = Some((comps.to_vec(), cur.try_clone().ctx(|| "dup fd".into())?));
        Ok(cur)
    }

    /// Makes room for a new entry `name` in `parent`: removes whatever is there (a later tar
    /// entry replaces an earlier one).
    fn clear_slot(
        &mut self,
        parent: &OwnedFd,
        parent_comps: &[Vec<u8>],
        name: &[u8],
    ) -> Result<()> {
        let st = match fstatat(parent, os(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => {
                return Err(Error::io(
                    format!(
                        "stat `{}/{}`",
                        show(parent_comps),
                        String::from_utf8_lossy(name)
                    ),
                    e.into(),
                ))
            }
        };
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR {
            // Relative to the parent fd: no path to outgrow PATH_MAX in a deep tree, and
            // remove_tree_at never follows symlinks.
            remove_tree_at(parent, name).map_err(|e| {
                Error::io(
                    format!(
                        "remove `{}/{}`",
                        show(parent_comps),
                        String::from_utf8_lossy(name)
                    ),
                    e,
                )
            })?;
            self.parent_cache = None;
            let mut full = parent_comps.to_vec();
            full.push(name.to_vec());
            self.dirs.retain(|d| !d.comps.starts_with(&full));
        } else {
            unlinkat(parent, os(name), UnlinkatFlags::NoRemoveDir).ctx(|| {
                format!(
                    "remove `{}/{}`",
                    show(parent_comps),
                    String::from_utf8_lossy(name)
                )
            })?;
        }
        Ok(())
    }

    fn owner(&self, meta: &Meta) -> (u32, u32) {
        (self.ids.uid(meta.uid), self.ids.gid(meta.gid))
    }

    /// Whether a chown error can be ignored: with a single mapped id every file is already
    /// owned by the only id there is.
    fn chown_ignorable(&self, e: Errno) -> bool {
        matches!(e, Errno::EPERM | Errno::EINVAL)
            && (self.ids.uid_count <= 1 || self.ids.gid_count <= 1)
    }

    fn chown_fd<F: AsFd>(&self, fd: F, meta: &Meta, shown: &str) -> Result<()> {
        let (uid, gid) = self.owner(meta);
        if (uid, gid) == (self.euid, self.egid) {
            return Ok(());
        }
        match fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))) {
            Ok(()) => Ok(()),
            Err(e) if self.chown_ignorable(e) => Ok(()),
            Err(e) => Err(Error::io(
                format!("chown `{shown}` to {uid}:{gid}"),
                e.into(),
            )),
        }
    }

    fn chown_at(&self, parent: &OwnedFd, name: &[u8], meta: &Meta, shown: &str) -> Result<()> {
        let (uid, gid) = self.owner(meta);
        if (uid, gid) == (self.euid, self.egid) {
            return Ok(());
        }
        match fchownat(
            parent,
            os(name),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(()) => Ok(()),
            Err(e) if self.chown_ignorable(e) => Ok(()),
            Err(e) => Err(Error::io(
                format!("chown `{shown}` to {uid}:{gid}"),
                e.into(),
            )),
        }
    }

    /// With a single-id map the image's other owners fold into the one id there is: keep
    /// them (and the mode) in the FUSE overlay's override xattr, which that driver shows
    /// instead of the folded owner (see `mount::fuse::supervisor`); the kernel overlay driver
    /// ignores it. Only regular files and directories can carry a `user.*` xattr; a failure
    /// (a filesystem without user xattrs) leaves the folded owner, as before.
    fn record_owner<F: AsFd>(&mut self, fd: F, meta: &Meta) {
        if self.ids.uid_count > 1 && self.ids.gid_count > 1 {
            return;
        }
        let (uid, gid) = self.owner(meta);
        if (u64::from(uid), u64::from(gid)) == (meta.uid, meta.gid) {
            return;
        }
        let (Ok(u), Ok(g)) = (u32::try_from(meta.uid), u32::try_from(meta.gid)) else {
            return;
        };
        let v = crate::mount::fuse::fs::format_override((u, g, meta.mode));
        if sys::fsetxattr(
            fd.as_fd(),
            crate::mount::fuse::fs::OVERRIDE_STAT,
            v.as_bytes(),
        )
        .is_ok()
        {
            self.foreign_owners = true;
        }
    }

    /// Sets the image's xattrs where the kernel allows; failures are not fatal (an
    /// unprivileged user cannot set `security.*`, some filesystems have no `user.*`).
    fn set_xattrs<F: AsFd>(&self, fd: F, meta: &Meta) {
        for (k, v) in &meta.xattrs {
            let _ = sys::fsetxattr(fd.as_fd(), k, v);
        }
    }

    /// Applies deferred directory modes and mtimes, deepest first, so that writing children
    /// neither needs write permission nor bumps a parent's mtime afterwards.
    fn finish(&mut self) -> Result<()> {
        self.parent_cache = None;
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.comps.len()));
        for d in dirs {
            let shown = show(&d.comps);
            let fd = self.open_dir(&d.comps, false, &shown)?;
            fchmod(&fd, Mode::from_bits_truncate(d.mode & 0o7777))
                .ctx(|| format!("chmod `{shown}`"))?;
            let t = TimeSpec::new(d.mtime, 0);
            futimens(&fd, &t, &t).ctx(|| format!("set times of `{shown}`"))?;
        }
        Ok(())
    }
}

/// Xattrs an image may carry into the layer. `trusted.*` and `user.overlay.*` would be
/// obeyed by overlayfs (an image could fake whiteouts, redirects or metacopy), the FUSE
/// overlay's owner override is the unpacker's to write (an image's own would contradict its
/// tar headers), and everything outside `user.*` / `security.capability` is not ours to set.
pub(crate) fn xattr_allowed(name: &str) -> bool {
    (name.starts_with("user.")
        && !name.starts_with("user.overlay.")
        && name != crate::mount::fuse::fs::OVERRIDE_STAT)
        || name == "security.capability"
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
    let h = entry.header();
    let mut meta = Meta {
        mode: h.mode()? & 0o7777,
        // Some writers leave these blank; GNU tar reads blank as 0, and so do we.
        uid: h.uid().unwrap_or(0),
        gid: h.gid().unwrap_or(0),
        mtime: h
            .mtime()
            .map(|m| m.min(i64::MAX as u64) as i64)
            .unwrap_or(0),
        xattrs: Vec::new(),
    };
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            let val = ext.value_bytes();
            let num = || {
                std::str::from_utf8(val)
                    .ok()
                    .and_then(|s| s.split('.').next()?.parse::<i64>().ok())
            };
            match key {
                "uid" => {
                    if let Some(v) = num() {
                        meta.uid = v.max(0) as u64;
                    }
                }
                "gid" => {
                    if let Some(v) = num() {
                        meta.gid = v.max(0) as u64;
                    }
                }
                "mtime" => {
                    if let Some(v) = num() {
                        meta.mtime = v;
                    }
                }
                k => {
                    if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                        if xattr_allowed(name) {
                            meta.xattrs.push((name.to_string(), val.to_vec()));
                        }
                    }
                }
            }
        }
    }
    Ok(meta)
}

#[cfg(test)]
#[path = "layer_tests.rs"]
pub(crate) mod tests;
