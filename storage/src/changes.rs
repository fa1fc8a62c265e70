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
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

use crate::digest::{Digest, Hasher};
use crate::layer::{Compression, LayerInfo};
use crate::store::{create_new, Store};
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
        let tmp = self.tmp_path("commit");
        let file = create_new(&tmp.path, 0o600)?;
        let diff_id = write_compressed(upper, skip, compression, &file)?;
        drop(file);
        let f = File::open(&tmp.path).ctx(|| format!("open {}", bt(&tmp.path)))?;
        // The stream goes through the same unpacker as a pull: the stored layer is exactly
        // what another host gets from the blob.
        self.store_layer(
            io::BufReader::with_capacity(256 * 1024, f),
            None,
            None,
            Some(&diff_id),
            true,
        )
    }
}

/// Writes the layer tar of `upper` compressed into `out`; returns the diff id (the sha256 of
/// the uncompressed tar).
fn write_compressed(
    upper: &Path,
    skip: &[&str],
    compression: Compression,
    out: &File,
) -> Result<Digest> {
    let out = BufWriter::with_capacity(256 * 1024, out);
    let finish_err = |e| Error::io("write the layer tar", e);
    let hasher = match compression {
        Compression::None => {
            let mut h = HashTee::new(out);
            write_layer_tar(upper, skip, &mut h)?;
            h.inner.flush().map_err(finish_err)?;
            h.hasher
        }
        Compression::Gzip => {
            let mut h = HashTee::new(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::default(),
            ));
            write_layer_tar(upper, skip, &mut h)?;
            h.inner
                .finish()
                .and_then(|mut w| w.flush())
                .map_err(finish_err)?;
            h.hasher
        }
        Compression::Zstd => {
            let enc = zstd::stream::write::Encoder::new(out, 3).map_err(finish_err)?;
            let mut h = HashTee::new(enc);
            write_layer_tar(upper, skip, &mut h)?;
            h.inner
                .finish()
                .and_then(|mut w| w.flush())
                .map_err(finish_err)?;
            h.hasher
        }
    };
    Ok(hasher.finish())
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
pub fn write_layer_tar<W: Write>(upper: &Path, skip: &[&str], out: W) -> Result<()> {
    let root =
        nix::fcntl::open(upper, DIR_FLAGS, Mode::empty()).ctx(|| format!("open {}", bt(upper)))?;
    let mut w = Walk {
        b: tar::Builder::new(out),
        links: HashMap::new(),
        skip,
    };
    w.b.mode(tar::HeaderMode::Complete);
    w.dir(&root, b"")?;
    w.b.into_inner()
        .and_then(|mut o| o.flush())
        .map_err(|e| Error::io("write the layer tar", e))?;
    Ok(())
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

/// Whether an xattr is the overlay's bookkeeping (never part of a layer).
fn overlay_xattr(name: &str) -> bool {
    name.starts_with("user.overlay.") || name.starts_with("trusted.overlay.")
}

impl<W: Write> Walk<'_, W> {
    fn dir(&mut self, fd: &OwnedFd, rel: &[u8]) -> Result<()> {
        let shown_rel = String::from_utf8_lossy(rel).into_owned();
        let rel_shown = &shown_rel;
        let dup = fd.try_clone().ctx(|| "dup fd".into())?;
        let mut dir =
            nix::dir::Dir::from_fd(dup).ctx(|| format!("read directory `/{rel_shown}`"))?;
        let mut names: Vec<Vec<u8>> = Vec::new();
        for ent in dir.iter() {
            let ent = ent.ctx(|| format!("read directory `/{rel_shown}`"))?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        names.sort();
        for raw in names {
            let name = std::ffi::OsStr::from_bytes(&raw);
            let tar_path = tar_path(rel, &raw);
            // Tar paths stay bytes; the lossy form is for messages only.
            let path = String::from_utf8_lossy(&tar_path).into_owned();
            let st = match fstatat(fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Gone since the listing (a running container): nothing to write.
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(Error::io(format!("stat `/{path}`"), e.into())),
            };
            match kind(&st) {
                SFlag::S_IFCHR if st.st_rdev == 0 => {
                    let mut wh = rel_prefix(rel);
                    wh.extend_from_slice(WHITEOUT.as_bytes());
                    wh.extend_from_slice(&raw);
                    self.append(&mut marker(), &wh, io::empty(), &path)?;
                }
                SFlag::S_IFDIR => {
                    let sub = match openat(fd, name, DIR_FLAGS, Mode::empty()) {
                        Ok(f) => f,
                        Err(Errno::ENOENT) => continue,
                        Err(e) => return Err(Error::io(format!("open `/{path}`"), e.into())),
                    };
                    let st = fstat(&sub).ctx(|| format!("stat `/{path}`"))?;
                    let xattrs = sys::fxattrs(&sub).ctx(|| format!("list xattrs of `/{path}`"))?;
                    let opaque = xattrs
                        .iter()
                        .any(|(k, v)| k == "user.overlay.opaque" && v == b"y");
                    self.pax(&xattrs, &path)?;
                    let mut dpath = tar_path.clone();
                    dpath.push(b'/');
                    self.append(
                        &mut header(&st, tar::EntryType::Directory),
                        &dpath,
                        io::empty(),
                        &path,
                    )?;
                    if opaque {
                        dpath.extend_from_slice(OPAQUE.as_bytes());
                        self.append(&mut marker(), &dpath, io::empty(), &path)?;
                    }
                    self.dir(&sub, &tar_path)?;
                }
                SFlag::S_IFREG => {
                    let flags = OFlag::O_RDONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_NONBLOCK
                        | OFlag::O_CLOEXEC
                        | OFlag::O_NOCTTY;
                    let f = match openat(fd, name, flags, Mode::empty()) {
                        Ok(f) => f,
                        Err(Errno::ENOENT) => continue,
                        Err(e) => return Err(Error::io(format!("open `/{path}`"), e.into())),
                    };
                    let st = fstat(&f).ctx(|| format!("stat `/{path}`"))?;
                    if kind(&st) != SFlag::S_IFREG {
                        // Swapped for something else since the stat: take it next time.
                        continue;
                    }
                    if st.st_size == 0 && self.skip.iter().any(|s| s.as_bytes() == tar_path) {
                        continue;
                    }
                    if st.st_nlink > 1 {
                        let key = (st.st_dev, st.st_ino);
                        if let Some(first) = self.links.get(&key).cloned() {
                            let mut h = header(&st, tar::EntryType::Link);
                            self.b
                                .append_link(&mut h, os(&tar_path), &first)
                                .map_err(|e| write_err(e, &path))?;
                            continue;
                        }
                        self.links
                            .insert(key, String::from_utf8_lossy(&tar_path).into_owned());
                    }
                    let xattrs = sys::fxattrs(&f).ctx(|| format!("list xattrs of `/{path}`"))?;
                    self.pax(&xattrs, &path)?;
                    let mut h = header(&st, tar::EntryType::Regular);
                    h.set_size(st.st_size as u64);
                    // A file that shrinks while written would break the tar: hold its size.
                    let data = io::Read::take(File::from(f), st.st_size as u64);
                    let data = Pad {
                        inner: data,
                        left: st.st_size as u64,
                    };
                    self.append(&mut h, &tar_path, data, &path)?;
                }
                SFlag::S_IFLNK => {
                    let target = match readlinkat(fd, name) {
                        Ok(t) => t,
                        Err(Errno::ENOENT) => continue,
                        Err(e) => return Err(Error::io(format!("read link `/{path}`"), e.into())),
                    };
                    // user.* xattrs cannot be set on symlinks (PLATFORM.md), so none are read.
                    let mut h = header(&st, tar::EntryType::Symlink);
                    self.b
                        .append_link(&mut h, os(&tar_path), Path::new(&target))
                        .map_err(|e| write_err(e, &path))?;
                }
                SFlag::S_IFIFO => {
                    self.append(
                        &mut header(&st, tar::EntryType::Fifo),
                        &tar_path,
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
                    let mut h = header(&st, t);
                    let dev = st.st_rdev;
                    h.set_device_major(nix::sys::stat::major(dev) as u32)
                        .and_then(|_| h.set_device_minor(nix::sys::stat::minor(dev) as u32))
                        .map_err(|e| write_err(e, &path))?;
                    self.append(&mut h, &tar_path, io::empty(), &path)?;
                }
                // Sockets belong to a running process; no layer format holds them.
                _ => {}
            }
        }
        Ok(())
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
