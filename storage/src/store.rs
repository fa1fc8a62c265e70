//! The store facade: root layout, staging in `tmp/`, and content-addressed blobs.
//!
//! Owns where everything lives (see the crate docs for the layout), temp entries and their
//! cleanup, atomic file replacement and the blob operations. Layers, images, archives and
//! container dirs add their methods to [`Store`] from their own modules.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};

use nix::dir::{Dir, Type as DirType};
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fchmodat, fstatat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::digest::{Digest, HashingReader};
use crate::lock::{self, LockGuard};
use crate::{bt, Error, IdMap, IoContext, Result};

/// A handle on one store root. Cheap to open; holds no lock.
pub struct Store {
    root: PathBuf,
    ids: IdMap,
    /// Layers this handle unpacked or found and has not yet committed into an image record,
    /// each with a shared flock on `locks/pin-<hex>` (see [`Store::pin_layer`]).
    pins: Mutex<HashMap<Digest, LockGuard>>,
    /// The most one layer may unpack to (see [`Store::set_max_layer_size`]).
    max_layer_size: Option<u64>,
    /// Set once this handle has swept `tmp/` (on its first write, see [`Store::tmp_path`]).
    swept: Once,
    /// Where warnings go as they happen (see [`Store::set_warning_sink`]).
    warn: Option<WarningSink>,
    /// Set on a handle made by [`Store::open_read_only`]: an additional image store, which
    /// this handle only reads (lookups, records, blobs, layer paths) and never writes to.
    read_only: bool,
    /// Read-only additional image stores, searched in order after this one
    /// ([`Store::add_read_only_store`]).
    additional: Vec<Store>,
    /// Where new containers' upper and work directories go instead of `containers/<id>/`
    /// ([`Store::set_upper_root`]).
    upper_root: Option<PathBuf>,
}

/// Receives each warning of a [`Store`] as it happens, one line without a `Warning:` prefix;
/// called from any thread (layers unpack on worker threads).
pub type WarningSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The default of [`Store::set_max_layer_size`]: 64 GiB, above the largest layers seen in
/// real images (CUDA toolkits, baked-in models) and below what fills a disk by surprise.
pub const DEFAULT_MAX_LAYER_SIZE: u64 = 64 << 30;

/// Parses a size such as `10G` or `512M`: a whole number with an optional binary unit `K`,
/// `M`, `G`, `T` (also written `KiB`, `KB`, ...), case-insensitive.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits].parse().ok()?;
    let unit = s[digits..].to_ascii_lowercase();
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

const DIRS: &[&str] = &[
    "blobs/sha256",
    "layers",
    "images",
    "names",
    "containers",
    "locks",
    "tmp",
];

/// `names/` under a store root: a pure function, for the lock-free listing that has no
/// [`Store`] ([`crate::list_image_names_fast`]).
pub(crate) fn names_dir_in(root: &Path) -> PathBuf {
    root.join("names")
}

/// The lock key of a layer's pin.
fn pin_key(d: &Digest) -> String {
    format!("pin-{}", d.hex())
}

impl Store {
    /// Opens (creating on first use) the store at `root`, which is made mode 0700 (see
    /// [`make_private`]). Stale temp entries left by dead processes are removed by the
    /// handle's first write.
    pub fn open(root: &Path, ids: IdMap) -> Result<Store> {
        make_private(root)?;
        for d in DIRS {
            let p = root.join(d);
            if !p.is_dir() {
                fs::create_dir_all(&p).ctx(|| format!("create store directory {}", bt(&p)))?;
            }
        }
        let store = Store {
            root: root.to_path_buf(),
            ids,
            pins: Mutex::new(HashMap::new()),
            max_layer_size: Some(DEFAULT_MAX_LAYER_SIZE),
            swept: Once::new(),
            warn: None,
            read_only: false,
            additional: Vec::new(),
            upper_root: None,
        };
        Ok(store)
    }

    /// Opens the store at `root` for reading only: an additional image store (a shared
    /// directory on a cluster filesystem, made by someone else with `rbox --root DIR pull`).
    /// Nothing is created, chmodded, locked or swept there; lookups, image records, blobs
    /// and layer directories are read, and every write path of the store goes to the handle
    /// the store was added to. Fails when `root` has no `images/` directory.
    pub fn open_read_only(root: &Path) -> Result<Store> {
        let images = root.join("images");
        match fs::metadata(&images) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(Error::NotAStore(root.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotAStore(root.to_path_buf()))
            }
            Err(e) => return Err(Error::io(format!("open image store {}", bt(root)), e)),
        }
        Ok(Store {
            root: root.to_path_buf(),
            ids: IdMap::full(),
            pins: Mutex::new(HashMap::new()),
            max_layer_size: None,
            swept: Once::new(),
            warn: None,
            read_only: true,
            additional: Vec::new(),
            upper_root: None,
        })
    }

    /// Adds a read-only additional image store (see [`Store::open_read_only`]), searched
    /// after this store and the ones added before it.
    pub fn add_read_only_store(&mut self, store: Store) {
        debug_assert!(store.read_only);
        self.additional.push(store);
    }

    /// Puts the upper and work directories of containers created from now on under
    /// `dir/<id>/` (created 0700) instead of `containers/<id>/`: for a store on a network
    /// filesystem, where kernel overlay takes no upper directory (see [`crate::placement`]).
    /// Each container records where its directories are, so later commands find them
    /// whatever this is set to then.
    pub fn set_upper_root(&mut self, dir: Option<PathBuf>) {
        self.upper_root = dir;
    }

    pub fn upper_root(&self) -> Option<&Path> {
        self.upper_root.as_deref()
    }

    /// The additional image stores, in search order.
    pub fn additional_stores(&self) -> &[Store] {
        &self.additional
    }

    /// Whether this handle is a read-only additional store.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ids(&self) -> IdMap {
        self.ids
    }

    /// Limits what one layer may unpack to: the sum of the apparent sizes of its regular
    /// files (a sparse file counts its holes, though they take no disk), checked from each
    /// entry's header before its data is written; `None` for no limit. A layer over the
    /// limit is refused with [`Error::LayerTooLarge`] and leaves nothing in the store.
    /// The default is [`DEFAULT_MAX_LAYER_SIZE`].
    pub fn set_max_layer_size(&mut self, limit: Option<u64>) {
        self.max_layer_size = limit;
    }

    pub fn max_layer_size(&self) -> Option<u64> {
        self.max_layer_size
    }

    /// Reports what the store skipped but did not refuse (device nodes and unsupported
    /// entries in a layer) to `sink` as it happens; without a sink they are only returned
    /// ([`crate::LayerInfo::warnings`]). The library never prints: callers that get only image
    /// records back (archive load, pull) see the warnings here.
    pub fn set_warning_sink(&mut self, sink: WarningSink) {
        self.warn = Some(sink);
    }

    /// The sink set by [`Store::set_warning_sink`], for the unpacker's threads.
    pub(crate) fn warning_sink(&self) -> Option<WarningSink> {
        self.warn.clone()
    }

    // ---- paths ----

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    /// Where the blob `d` lives (whether or not it is present).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.hex())
    }

    pub(crate) fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    pub(crate) fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    pub(crate) fn names_dir(&self) -> PathBuf {
        names_dir_in(&self.root)
    }

    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    pub(crate) fn tmp_root(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// `locks/<key>`: the flock file of `key` (`layer-<hex>`, `pin-<hex>`, ...).
    fn lock_path(&self, key: &str) -> PathBuf {
        self.root.join("locks").join(key)
    }

    pub(crate) fn lock(&self, key: &str) -> Result<LockGuard> {
        lock::exclusive(&self.lock_path(key))
    }

    pub(crate) fn lock_shared(&self, key: &str) -> Result<LockGuard> {
        lock::shared(&self.lock_path(key))
    }

    // ---- layer pins ----

    /// Pins a layer for the life of this handle (or until [`Store::unpin_layer`]): between
    /// unpacking a layer and committing the image that uses it, no record references the
    /// layer, and a concurrent `rmi` of another image sharing it must not collect it.
    /// Called with the layer lock held.
    pub(crate) fn pin_layer(&self, d: &Digest) -> Result<()> {
        let mut pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        if !pins.contains_key(d) {
            let g = lock::shared(&self.lock_path(&pin_key(d)))?;
            pins.insert(d.clone(), g);
        }
        Ok(())
    }

    pub(crate) fn unpin_layer(&self, d: &Digest) {
        self.pins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(d);
    }

    /// For removal: an exclusive hold on the layer's pin, or `None` while another handle
    /// (another process, or another thread's handle) has it pinned.
    pub(crate) fn try_unpinned(&self, d: &Digest) -> Result<Option<LockGuard>> {
        self.unpin_layer(d);
        lock::try_exclusive(&self.lock_path(&pin_key(d)))
    }

    // ---- staging ----

    /// A fresh path under `tmp/` (not created) that is removed when the guard drops unless
    /// [`TmpPath::keep`] is called. The first one of a handle sweeps `tmp/` of entries left
    /// by dead processes: every write goes through here, and read-only commands (listings)
    /// neither pay for the sweep nor need the right to delete.
    pub(crate) fn tmp_path(&self, what: &str) -> TmpPath {
        self.swept.call_once(|| self.clean_tmp());
        let (pid, start) = self_stamp();
        // Process-wide, so two handles on one store in one process never collide.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TmpPath {
            path: self.tmp_root().join(format!("{pid}.{start}.{n}.{what}")),
            keep: false,
        }
    }

    /// Removes `tmp/` entries whose owning process is gone. Errors are ignored: an entry
    /// that cannot go now (a full disk, a foreign owner) is tried again by the next writer.
    fn clean_tmp(&self) {
        let Ok(rd) = fs::read_dir(self.tmp_root()) else {
            return;
        };
        for ent in rd.flatten() {
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            // `probe-<pid>`: overlay probes of rbox before the probe used stamped entries
            if let Some(pid) = name
                .strip_prefix("probe-")
                .and_then(|p| p.parse::<u32>().ok())
            {
                if process_start(pid).is_none() {
                    let _ = remove_tree(&ent.path());
                }
                continue;
            }
            let mut parts = name.splitn(3, '.');
            let (Some(pid), Some(start)) = (parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
                continue;
            };
            if process_start(pid) != Some(start) {
                let _ = remove_tree(&ent.path());
            }
        }
    }

    /// Writes `bytes` to `path` atomically (temp in `tmp/`, fsync, rename).
    pub(crate) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = self.tmp_path("file");
        let mut f = create_new(&tmp.path, 0o644)?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .ctx(|| format!("write {}", bt(&tmp.path)))?;
        drop(f);
        fs::rename(&tmp.path, path).ctx(|| format!("rename into {}", bt(path)))?;
        tmp.keep();
        Ok(())
    }

    // ---- blobs ----

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Streams `r` into the blob store. With `expected`, a digest mismatch returns
    /// [`Error::DigestMismatch`] and keeps nothing; likewise a size mismatch.
    pub fn write_blob(
        &self,
        r: impl Read,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64)> {
        let tmp = self.tmp_path("blob");
        let mut f = create_new(&tmp.path, 0o644)?;
        // One byte past the announced size is enough to tell a mismatch; never read on.
        let r = r.take(expected_size.map_or(u64::MAX, |n| n.saturating_add(1)));
        let mut hr = HashingReader::new(crate::interrupt::Checked::new(r));
        let n = io::copy(&mut hr, &mut f).ctx(|| format!("write blob {}", bt(&tmp.path)))?;
        let (digest, _) = hr.finish().ctx(|| "read blob".to_string())?;
        if let Some(size) = expected_size {
            if size != n {
                return Err(Error::SizeMismatch {
                    digest: expected.cloned().unwrap_or(digest),
                    expected: size,
                    actual: n,
                });
            }
        }
        if let Some(exp) = expected {
            if *exp != digest {
                return Err(Error::DigestMismatch {
                    expected: exp.clone(),
                    actual: digest,
                });
            }
        }
        self.commit_blob(tmp, f, &digest)?;
        Ok((digest, n))
    }

    /// Moves a fully written and verified temp file into `blobs/`.
    pub(crate) fn commit_blob(&self, tmp: TmpPath, f: File, digest: &Digest) -> Result<()> {
        f.sync_all().ctx(|| format!("sync {}", bt(&tmp.path)))?;
        drop(f);
        let dst = self.blob_path(digest);
        if dst.is_file() {
            // Same content already present; the temp copy goes away with the guard.
            return Ok(());
        }
        fs::rename(&tmp.path, &dst).ctx(|| format!("rename blob into {}", bt(&dst)))?;
        tmp.keep();
        Ok(())
    }

    /// Stores a small blob held in memory.
    pub fn put_blob(&self, data: &[u8]) -> Result<Digest> {
        let d = Digest::of(data);
        if !self.has_blob(&d) {
            self.write_blob(data, Some(&d), Some(data.len() as u64))?;
        }
        Ok(d)
    }

    /// Where the blob `d` is to be read: this store's copy, else that of the first
    /// additional store holding it, else this store's (absent) path.
    fn readable_blob_path(&self, d: &Digest) -> PathBuf {
        let own = self.blob_path(d);
        if own.is_file() {
            return own;
        }
        self.additional
            .iter()
            .map(|s| s.blob_path(d))
            .find(|p| p.is_file())
            .unwrap_or(own)
    }

    /// Whether the blob is here or in an additional store.
    pub fn has_readable_blob(&self, d: &Digest) -> bool {
        self.readable_blob_path(d).is_file()
    }

    /// Reads a whole blob, verifying it against its digest.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.readable_blob_path(d);
        let data = match fs::read(&p) {
            Ok(v) => v,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::BlobNotFound(d.clone()))
            }
            Err(e) => return Err(Error::io(format!("read blob {}", bt(&p)), e)),
        };
        let actual = Digest::of(&data);
        if actual != *d {
            return Err(Error::DigestMismatch {
                expected: d.clone(),
                actual,
            });
        }
        Ok(data)
    }

    /// Opens a blob for streaming (not verified; callers hash as they read when it matters).
    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let p = self.readable_blob_path(d);
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::BlobNotFound(d.clone())
            } else {
                Error::io(format!("open blob {}", bt(&p)), e)
            }
        })
    }

    /// Deletes a blob if present.
    pub(crate) fn delete_blob(&self, d: &Digest) -> Result<()> {
        let p = self.blob_path(d);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove blob {}", bt(&p)), e)),
        }
    }

    /// Removes a directory tree by first renaming it into `tmp/` (so a crash mid-way leaves
    /// only a stale temp entry, never a half-deleted layer in place).
    pub(crate) fn remove_dir_atomic(&self, dir: &Path) -> Result<()> {
        let tmp = self.tmp_path("del");
        match fs::rename(dir, &tmp.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("remove {}", bt(dir)), e)),
        }
        remove_tree(&tmp.path).ctx(|| format!("remove {}", bt(&tmp.path)))?;
        tmp.keep();
        Ok(())
    }
}

/// A path under `tmp/` removed on drop unless kept.
pub(crate) struct TmpPath {
    pub path: PathBuf,
    keep: bool,
}

impl TmpPath {
    /// The entry has been renamed away (or is otherwise gone): do not remove it on drop.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TmpPath {
    fn drop(&mut self) {
        if !self.keep {
            let _ = remove_tree(&self.path);
        }
    }
}

/// Creates `root` mode 0700 (with any missing parents, also 0700, as XDG base directories
/// are), or takes group and other access away from an existing one. Layer files keep their
/// setuid bits and their world-writable directories (an image's `/tmp`), and a home directory
/// is often 0755: only a closed root keeps another user from running a setuid file of this
/// store with our uid, or from planting files in it. Everything below the root may then keep
/// the modes the image gave it.
fn make_private(root: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    // (one stat where the store exists, as it does after the first command)
    let md = match fs::metadata(root) {
        Ok(md) if md.is_dir() => md,
        _ => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .ctx(|| format!("create store directory {}", bt(root)))?;
            fs::metadata(root).ctx(|| format!("stat store directory {}", bt(root)))?
        }
    };
    if md.permissions().mode() & 0o077 != 0 {
        let mode = md.permissions().mode() & 0o7700;
        fs::set_permissions(root, fs::Permissions::from_mode(mode))
            .ctx(|| format!("make store directory {} private (chmod 0700)", bt(root)))?;
    }
    Ok(())
}

pub(crate) fn create_new(path: &Path, mode: u32) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .ctx(|| format!("create {}", bt(path)))
}

/// Removes a file or a directory tree, making directories writable first when a read-only
/// directory (mode 0555 from an image) stops an unprivileged removal. Never follows symlinks.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let md = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !md.is_dir() {
        return fs::remove_file(path);
    }
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            },
            n,
        ),
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    let pfd = openat(AT_FDCWD, parent, WALK_FLAGS, Mode::empty())?;
    remove_tree_at(&pfd, name.as_bytes())
}

const WALK_FLAGS: OFlag = OFlag::O_DIRECTORY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_RDONLY);

/// Removes the entry `name` of the directory `parent` and, for a directory, everything below.
///
/// Holds a bounded number of descriptors whatever the depth (std's `remove_dir_all` keeps one
/// per level, so a 2000-level tree from an image ran out at the default `ulimit -n` of 1024 and
/// stayed in `tmp/`), and works on names relative to the current directory, so no path grows
/// past PATH_MAX. It goes down into the first subdirectory it finds, back up through `..` once
/// a directory is empty, and keeps only the names of the directories it is in. The trees it
/// removes are private to the store (under `tmp/` or renamed there), so nothing moves them
/// while it walks; symlinks are unlinked, never followed.
pub(crate) fn remove_tree_at<F: AsFd>(parent: F, name: &[u8]) -> io::Result<()> {
    let parent = parent.as_fd();
    let name = OsStr::from_bytes(name);
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if !is_dir(st.st_mode) => {
            return ok_if_gone(unlinkat(parent, name, UnlinkatFlags::NoRemoveDir))
        }
        Ok(st) => writable_dir(parent, name, st.st_mode)?,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let mut cur = openat(parent, name, WALK_FLAGS, Mode::empty())?;
    // The names from the top directory down to `cur`.
    let mut names: Vec<OsString> = Vec::new();
    loop {
        match first_subdir_after_clearing(&cur)? {
            Some(sub) => {
                cur = openat(&cur, sub.as_os_str(), WALK_FLAGS, Mode::empty())?;
                names.push(sub);
            }
            None => {
                let Some(done) = names.pop() else { break };
                cur = openat(&cur, "..", WALK_FLAGS, Mode::empty())?;
                ok_if_gone(unlinkat(&cur, done.as_os_str(), UnlinkatFlags::RemoveDir))?;
            }
        }
    }
    drop(cur);
    ok_if_gone(unlinkat(parent, name, UnlinkatFlags::RemoveDir))
}

/// Unlinks every non-directory in `dir` and returns the name of a subdirectory (made
/// writable and searchable for its owner), or `None` once `dir` is empty.
fn first_subdir_after_clearing(dir: &OwnedFd) -> io::Result<Option<OsString>> {
    let mut d = Dir::openat(dir, ".", WALK_FLAGS, Mode::empty())?;
    for ent in d.iter() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        let n = OsStr::from_bytes(n);
        let mode = match ent.file_type() {
            Some(DirType::Directory) => None,
            Some(_) => Some(0),
            None => match fstatat(dir, n, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => Some(st.st_mode).filter(|m| !is_dir(*m)),
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(e.into()),
            },
        };
        if mode.is_some() {
            ok_if_gone(unlinkat(dir, n, UnlinkatFlags::NoRemoveDir))?;
            continue;
        }
        let st = fstatat(dir, n, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        writable_dir(dir.as_fd(), n, st.st_mode)?;
        return Ok(Some(n.to_os_string()));
    }
    Ok(None)
}

/// Gives the owner rwx on the directory `name` in `parent` when it lacks them (an image's
/// 0555 or 0000 directory): its entries can then be listed and removed without privileges.
fn writable_dir(parent: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    if mode & 0o700 == 0o700 {
        return Ok(());
    }
    // Linux has no fchmodat without following; `name` was just seen as a directory by an
    // lstat, in a tree nobody else writes to.
    fchmodat(
        parent,
        name,
        Mode::from_bits_truncate((mode & 0o7777) | 0o700),
        FchmodatFlags::FollowSymlink,
    )
    .map_err(io::Error::from)
}

fn is_dir(mode: u32) -> bool {
    SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
}

fn ok_if_gone(r: nix::Result<()>) -> io::Result<()> {
    match r {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// This process's pid and start time (clock ticks since boot), which together name it
/// uniquely across pid reuse. Read again in a forked child (`rbox build --jobs` forks one
/// builder per stage), whose tmp entries must not collide with its parent's or siblings'.
fn self_stamp() -> (u32, u64) {
    static STAMP: Mutex<(u32, u64)> = Mutex::new((0, 0));
    let pid = std::process::id();
    let mut s = STAMP.lock().unwrap_or_else(|e| e.into_inner());
    if s.0 != pid {
        *s = (pid, process_start(pid).unwrap_or(0));
    }
    *s
}

/// `<tmp>/<pid>.<start>.0.<what>`: an entry of a store's `tmp/` stamped with this process
/// ([`self_stamp`]: read again in a forked child, which is another process).
pub(crate) fn stamped_tmp_path(tmp: &Path, what: &str) -> PathBuf {
    let (pid, start) = self_stamp();
    tmp.join(format!("{pid}.{start}.0.{what}"))
}

/// This process's start time (clock ticks since boot, `/proc/self/stat` field 22), read
/// once per process (see [`self_stamp`]): with its pid it names the process across pid
/// reuse.
pub fn own_start_time() -> u64 {
    self_stamp().1
}

/// Start time of `pid` from `/proc/<pid>/stat` (field 22), or `None` if it does not exist.
fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(
            &d.path().join("store"),
            IdMap {
                uid_count: 1,
                gid_count: 1,
            },
        )
        .unwrap();
        (d, s)
    }

    fn tmp_entries(s: &Store) -> usize {
        fs::read_dir(s.tmp_root()).unwrap().count()
    }

    #[test]
    fn open_makes_the_root_private() {
        let d = tempfile::tempdir().unwrap();
        let ids = IdMap {
            uid_count: 1,
            gid_count: 1,
        };
        // new: 0700 whatever the umask, parents included
        let fresh = d.path().join("data/rbox");
        Store::open(&fresh, ids).unwrap();
        for p in [&fresh, &d.path().join("data")] {
            let mode = fs::metadata(p).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o700, "{}", p.display());
        }
        // an existing store made 0755 by an older rbox is closed on open
        let old = d.path().join("old");
        fs::create_dir(&old).unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o755)).unwrap();
        Store::open(&old, ids).unwrap();
        let mode = fs::metadata(&old).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn open_creates_the_documented_layout() {
        let (_d, s) = store();
        for d in DIRS {
            assert!(s.root().join(d).is_dir(), "{d}");
        }
        assert_eq!(
            s.blob_path(&Digest::of(b"")).parent().unwrap(),
            s.root().join("blobs/sha256")
        );
        let r = s.root();
        assert_eq!(s.layers_dir(), r.join("layers"));
        assert_eq!(s.images_dir(), r.join("images"));
        assert_eq!(s.names_dir(), r.join("names"));
        assert_eq!(names_dir_in(r), r.join("names"));
        assert_eq!(s.containers_dir(), r.join("containers"));
        assert_eq!(s.tmp_root(), r.join("tmp"));
        assert_eq!(s.lock_path("layer-ab"), r.join("locks/layer-ab"));
        assert_eq!(
            s.lock_path(&pin_key(&Digest::of(b""))),
            r.join("locks")
                .join(format!("pin-{}", Digest::of(b"").hex()))
        );
        assert_eq!(s.overlay_probe_memo(), r.join("overlay-probe"));
        assert!(crate::list_image_names_fast(&s.root().join("nonexistent")).is_empty());
        // Opening again (another process) is harmless.
        Store::open(s.root(), s.ids()).unwrap();
    }

    #[test]
    fn blob_write_verify_and_read() {
        let (_d, s) = store();
        let want = Digest::of(b"hello");
        let (d, n) = s.write_blob(&b"hello"[..], Some(&want), Some(5)).unwrap();
        assert_eq!((d.clone(), n), (want.clone(), 5));
        assert!(s.has_blob(&d));
        assert_eq!(s.read_blob(&d).unwrap(), b"hello");
        assert_eq!(s.put_blob(b"hello").unwrap(), d);
        assert_eq!(tmp_entries(&s), 0);
    }

    #[test]
    fn blob_digest_mismatch_keeps_nothing() {
        let (_d, s) = store();
        let want = Digest::of(b"hello");
        let err = s.write_blob(&b"HELLO"[..], Some(&want), None).unwrap_err();
        match err {
            Error::DigestMismatch { expected, actual } => {
                assert_eq!(expected, want);
                assert_eq!(actual, Digest::of(b"HELLO"));
            }
            e => panic!("unexpected {e}"),
        }
        assert!(!s.has_blob(&want));
        assert!(!s.has_blob(&Digest::of(b"HELLO")));
        assert_eq!(tmp_entries(&s), 0);
        let err = s
            .write_blob(&b"hello"[..], Some(&want), Some(4))
            .unwrap_err();
        assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
        assert!(!s.has_blob(&want));
    }

    #[test]
    fn an_endless_source_stops_one_byte_past_the_size() {
        let (_d, s) = store();
        let err = s.write_blob(io::repeat(7), None, Some(10)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::SizeMismatch {
                    expected: 10,
                    actual: 11,
                    ..
                }
            ),
            "{err}"
        );
        let d = Digest::of(b"x");
        let err = s
            .pull_layer(io::repeat(0), &d, Some(4096), None)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::SizeMismatch {
                    expected: 4096,
                    actual: 4097,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(tmp_entries(&s), 0);
    }

    #[test]
    fn corrupted_blob_is_detected_on_read() {
        let (_d, s) = store();
        let d = s.put_blob(b"data").unwrap();
        fs::write(s.blob_path(&d), b"evil").unwrap();
        assert!(matches!(s.read_blob(&d), Err(Error::DigestMismatch { .. })));
        let missing = Digest::of(b"missing");
        assert!(matches!(s.read_blob(&missing), Err(Error::BlobNotFound(_))));
    }

    #[test]
    fn stale_tmp_entries_of_dead_processes_are_removed_by_the_next_write() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("store");
        let s = Store::open(&root, IdMap::full()).unwrap();
        let live = s.tmp_path("keepme");
        fs::write(&live.path, b"x").unwrap();
        // A pid that cannot exist (above pid_max) and a live one (ours) with a wrong start
        // time; the dead one holds a read-only directory, as an unpacked image can.
        let dead = s.tmp_root().join("4294967.1.0.layer");
        fs::create_dir_all(dead.join("ro/sub")).unwrap();
        fs::write(dead.join("ro/sub/f"), b"x").unwrap();
        fs::set_permissions(dead.join("ro/sub"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(dead.join("ro"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::write(
            s.tmp_root()
                .join(format!("{}.1.0.blob", std::process::id())),
            b"x",
        )
        .unwrap();
        // Opening (a listing) leaves tmp/ alone; the first write of a handle sweeps it.
        let other = Store::open(&root, IdMap::full()).unwrap();
        assert_eq!(tmp_entries(&s), 3);
        other.put_blob(b"a write").unwrap();
        let left: Vec<_> = fs::read_dir(s.tmp_root())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(left, vec![live.path.clone()]);
    }

    #[test]
    fn stale_overlay_probes_are_swept() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("store");
        let s = Store::open(&root, IdMap::full()).unwrap();
        // a probe killed midway: its stamped entry, with the mode-0 work dir the kernel makes,
        // and one of the older unstamped kind; a live process's older entry stays
        let dead = s.tmp_root().join("4294967.1.0.overlay-probe");
        fs::create_dir_all(dead.join("w/work")).unwrap();
        fs::set_permissions(dead.join("w/work"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::create_dir_all(s.tmp_root().join("probe-4294967/m")).unwrap();
        let live = s.tmp_root().join(format!("probe-{}", std::process::id()));
        fs::create_dir(&live).unwrap();
        let scratch = s.overlay_probe_scratch().unwrap();
        let mut left: Vec<_> = fs::read_dir(s.tmp_root())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        left.sort();
        let mut want = vec![live, scratch.dir().to_path_buf()];
        want.sort();
        assert_eq!(left, want);
    }

    /// Makes `depth` nested directories `d/d/d/...` under `top` through relative opens (the
    /// path would be longer than PATH_MAX), each holding a file and a symlink, with every
    /// tenth directory read-only.
    fn deep_tree(top: &Path, depth: usize) {
        fs::create_dir(top).unwrap();
        let mut cur = openat(AT_FDCWD, top, WALK_FLAGS, Mode::empty()).unwrap();
        let mut ro = Vec::new();
        for i in 0..depth {
            nix::sys::stat::mkdirat(&cur, "d", Mode::from_bits_truncate(0o755)).unwrap();
            let f = openat(
                &cur,
                "f",
                OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .unwrap();
            drop(f);
            nix::unistd::symlinkat("/etc/passwd", &cur, "l").unwrap();
            let next = openat(&cur, "d", WALK_FLAGS, Mode::empty()).unwrap();
            if i % 10 == 9 {
                ro.push(next.try_clone().unwrap());
                if ro.len() > 16 {
                    for fd in ro.drain(..) {
                        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o555)).unwrap();
                    }
                }
            }
            cur = next;
        }
        for fd in ro {
            nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o555)).unwrap();
        }
    }

    #[test]
    fn remove_tree_needs_no_descriptor_per_level() {
        use nix::sys::resource::{getrlimit, Resource};
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        // Deeper than this process could hold descriptors for, one per level.
        let depth = soft.min(20_000) as usize + 64;
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("deep");
        deep_tree(&top, depth);
        remove_tree(&top).unwrap();
        assert!(!top.exists());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        // Gone already, or a plain file: both fine.
        remove_tree(&top).unwrap();
        fs::write(&top, b"x").unwrap();
        remove_tree(&top).unwrap();
        assert!(!top.exists());
    }

    #[test]
    fn remove_tree_never_follows_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"x").unwrap();
        let top = d.path().join("t");
        fs::create_dir(&top).unwrap();
        std::os::unix::fs::symlink(&outside, top.join("link")).unwrap();
        std::os::unix::fs::symlink(&outside, d.path().join("toplink")).unwrap();
        remove_tree(&top).unwrap();
        remove_tree(&d.path().join("toplink")).unwrap();
        assert!(outside.join("keep").is_file());
        assert!(!top.exists() && !d.path().join("toplink").exists());
    }
}
