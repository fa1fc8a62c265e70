//! The overlay filesystem itself: a `fuser` [`Filesystem`] over the same layer directories the
//! kernel overlay driver mounts (upper first, then the image's layers topmost first), with the
//! same on-disk conventions: a 0/0 character device is a whiteout, `user.overlay.opaque=y`
//! makes a directory opaque. It owns lookup through the stack, copy-up, whiteouts and the
//! merged directory listings; it does not own mounting or the server's process (see
//! [`super`]).
//!
//! Every file operation is an `*at` call relative to a layer directory's fd opened before the
//! container's pivot_root, so the server never resolves an absolute path. A path is only ever
//! resolved inside a layer where each of its parent components was found to be a real
//! directory (a node's `stack`), so no symlink in a layer is followed on the way. Every error
//! is an errno reply; nothing here panics on a request.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};
use nix::fcntl::{openat, renameat2, AtFlags, OFlag};
use nix::sys::stat::mkdirat;
use nix::sys::stat::{fstat, fstatat, mknodat, FileStat, Mode, SFlag};
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::shift::IdShift;
use crate::sys;

/// The xattr that marks an opaque directory (layers are unpacked for `userxattr`).
pub const OPAQUE: &str = "user.overlay.opaque";
/// fuse-overlayfs's per-file owner and mode override: `UID:GID:MODE[:TYPE]`, mode in octal.
pub const OVERRIDE_STAT: &str = "user.containers.override_stat";

/// How long the kernel may cache entries and attributes. Only this server changes the layers
/// while the container runs, and the kernel drops its own copies on the changes it makes.
const TTL: Duration = Duration::from_secs(10);

type R<T> = Result<T, Errno>;

/// A merged directory listing: name, type, inode number.
type Listing = Vec<(OsString, FileType, u64)>;

fn errno(e: nix::Error) -> Errno {
    Errno::from_i32(e as i32)
}

fn ioerr(e: io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

/// A path inside a layer, never empty ("." for the root).
fn rel(p: &Path) -> &Path {
    if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    }
}

fn is_whiteout(s: &FileStat) -> bool {
    s.st_mode & libc::S_IFMT == libc::S_IFCHR && s.st_rdev == 0
}

fn is_dir(s: &FileStat) -> bool {
    s.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn kind_of(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    // checked: a layer's file may carry any time, and a reply must never panic
    let t = if sec >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(sec as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(sec.unsigned_abs()))
    };
    t.and_then(|t| t.checked_add(Duration::from_nanos(nsec.clamp(0, 999_999_999) as u64)))
        .unwrap_or(UNIX_EPOCH)
}

/// An override parsed from [`OVERRIDE_STAT`]: (uid, gid, permission bits).
pub type Override = (u32, u32, u32);

/// Parses fuse-overlayfs's `UID:GID:MODE[:TYPE]` (mode in octal); `None` when malformed.
pub fn parse_override(v: &[u8]) -> Option<Override> {
    let s = std::str::from_utf8(v).ok()?.trim_end_matches('\0');
    let mut it = s.split(':');
    let uid = it.next()?.parse().ok()?;
    let gid = it.next()?.parse().ok()?;
    let mode = u32::from_str_radix(it.next()?, 8).ok()?;
    Some((uid, gid, mode & 0o7777))
}

/// The value written for an override (what fuse-overlayfs writes, type left out).
pub fn format_override(o: Override) -> String {
    format!("{}:{}:0{:o}", o.0, o.1, o.2 & 0o7777)
}

/// Whether a container may see or set this xattr: the overlay's own and the override are
/// the filesystem's bookkeeping.
fn hidden_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.overlay.") || name == OVERRIDE_STAT.as_bytes()
}

/// The overrides of the inode table, shared with the owner supervisor thread.
pub struct Owners(Arc<Mutex<State>>);

impl Owners {
    /// The override of inode `ino` (the number the kernel shows), if it has one.
    pub fn get(&self, ino: u64) -> Option<Override> {
        let st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        st.nodes.get(&ino).and_then(|n| n.over)
    }
}

struct Node {
    /// relative to the root ("" for the root itself)
    path: PathBuf,
    /// the layer the node's own entry comes from (0: upper)
    layer: usize,
    /// directories: the layers that contribute entries, topmost first
    stack: Option<Vec<usize>>,
    /// regular files and directories: the owner/mode override, if any
    over: Option<Override>,
    lookups: u64,
    /// removed or replaced: only open handles reach it
    gone: bool,
    /// when the kernel last got this node's entry and attributes from this server, while
    /// nothing it knows of has changed them since (no write, truncation, link count or
    /// xattr change): a listing may then name the entry alone (see `readdirplus`)
    fresh_at: Option<Instant>,
}

struct State {
    nodes: HashMap<u64, Node>,
    by_path: HashMap<PathBuf, u64>,
    /// hard links, (st_dev, st_ino) -> node: one node (so one inode number, one page cache
    /// and one attribute cache in the kernel) for all names of a file
    by_inode: HashMap<(u64, u64), u64>,
    next_ino: u64,
}

struct Handle {
    ino: u64,
    file: File,
    /// written through (or allocated): the kernel's cached size and times of the node are
    /// stale from then on
    wrote: std::sync::atomic::AtomicBool,
}

/// What a lookup found for one name.
struct Found {
    layer: usize,
    st: FileStat,
    stack: Option<Vec<usize>>,
}

/// The overlay: layer 0 is the upper directory, 1.. the image's layers, topmost first.
pub struct Overlay {
    layers: Vec<OwnedFd>,
    work: OwnedFd,
    state: Arc<Mutex<State>>,
    /// a single-id namespace: reply the owner on disk for a file with an override (see
    /// [`Overlay::fold_foreign_owners`])
    fold: bool,
    /// owners shifted for a nested user namespace (see [`super::shift`])
    shift: Option<IdShift>,
    files: RwLock<HashMap<u64, Arc<Handle>>>,
    dirs: Mutex<HashMap<u64, Arc<Listing>>>,
    next_fh: AtomicU64,
}

impl Overlay {
    /// An overlay of `upper` (writable) over `lowers` (topmost first), with copy-ups staged
    /// in `work` (same filesystem as `upper`). The directory fds are all it keeps.
    pub fn new(upper: OwnedFd, work: OwnedFd, lowers: Vec<OwnedFd>) -> Overlay {
        let mut layers = vec![upper];
        layers.extend(lowers);
        let all: Vec<usize> = (0..layers.len()).collect();
        let mut nodes = HashMap::new();
        nodes.insert(
            1,
            Node {
                path: PathBuf::new(),
                layer: 0,
                stack: Some(all),
                over: None,
                lookups: 1,
                gone: false,
                fresh_at: None,
            },
        );
        let mut by_path = HashMap::new();
        by_path.insert(PathBuf::new(), 1);
        let fs = Overlay {
            layers,
            work,
            state: Arc::new(Mutex::new(State {
                nodes,
                by_path,
                by_inode: HashMap::new(),
                next_ino: 2,
            })),
            fold: false,
            shift: None,
            files: RwLock::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        };
        // the root's stack stops at the first opaque layer root, as for any directory
        let stack = fs.dir_stack(Path::new(""), 0, &(0..fs.layers.len()).collect::<Vec<_>>());
        if let Some(n) = fs.lock().nodes.get_mut(&1) {
            n.stack = Some(stack);
        }
        fs
    }

    /// Under a single-id map the kernel shows an owner it cannot map as the overflow id and
    /// treats the file as another user's (root's capabilities do not apply to it): reply the
    /// owner on disk (the one id) and the override's mode to the kernel, and leave the
    /// intended owner to the supervisor, which reads it through [`Overlay::owners`].
    pub fn fold_foreign_owners(mut self, fold: bool) -> Overlay {
        self.fold = fold;
        self
    }

    /// Replies owners shifted by `shift` and stores the owners the container gives shifted
    /// back (see [`super::shift`]); `None` replies the owners on disk.
    pub fn shift_owners(mut self, shift: Option<IdShift>) -> Overlay {
        self.shift = shift;
        self
    }

    /// The owner and group to reply for those seen on disk.
    fn view_ids(&self, uid: u32, gid: u32) -> (u32, u32) {
        match &self.shift {
            Some(s) => (s.uid_to_view(uid), s.gid_to_view(gid)),
            None => (uid, gid),
        }
    }

    /// The uid to store for one the container gives (EINVAL, as the kernel answers a chown
    /// to an id it cannot map, when rbox's namespace has no such id).
    fn disk_uid(&self, uid: u32) -> R<u32> {
        match &self.shift {
            Some(s) => s.uid_to_disk(uid).ok_or(Errno::EINVAL),
            None => Ok(uid),
        }
    }

    /// The gid to store for one the container gives.
    fn disk_gid(&self, gid: u32) -> R<u32> {
        match &self.shift {
            Some(s) => s.gid_to_disk(gid).ok_or(Errno::EINVAL),
            None => Ok(gid),
        }
    }

    /// A handle on the inode table's overrides for the owner supervisor.
    pub fn owners(&self) -> Owners {
        Owners(Arc::clone(&self.state))
    }

    /// Records the override `o` of `ino` (copying it up first), as a setattr does: what a
    /// chown the kernel could not make becomes.
    fn set_override(&self, ino: INodeNo, o: Override) -> R<()> {
        let mut st = self.lock();
        if !Self::node(&st, ino)?.gone {
            self.copy_up(&mut st, ino.0)?;
        }
        let fd = self.xattr_fd(&st, ino)?.ok_or(Errno::EPERM)?;
        sys::fsetxattr_flags(
            &fd,
            OVERRIDE_STAT.as_bytes(),
            format_override(o).as_bytes(),
            0,
        )
        .map_err(ioerr)?;
        if let Some(n) = st.nodes.get_mut(&ino.0) {
            n.over = Some(o);
            // the owner and mode the kernel holds are the old ones
            n.fresh_at = None;
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fd(&self, layer: usize) -> &OwnedFd {
        &self.layers[layer]
    }

    fn stat_in(&self, layer: usize, path: &Path) -> nix::Result<FileStat> {
        fstatat(self.fd(layer), rel(path), AtFlags::AT_SYMLINK_NOFOLLOW)
    }

    fn open_in(&self, layer: usize, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        openat(
            self.fd(layer),
            rel(path),
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    }

    fn opaque(&self, layer: usize, path: &Path) -> bool {
        match self.open_in(layer, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
            Ok(fd) => matches!(sys::fgetxattr_raw(&fd, OPAQUE.as_bytes()), Ok(v) if v == b"y"),
            Err(_) => false,
        }
    }

    /// The layers contributing to directory `path`, found as a directory in `stack[start]`:
    /// it and the following layers of its parent's stack where `path` is a directory too,
    /// down to an opaque one, a whiteout or a non-directory.
    fn dir_stack(&self, path: &Path, start: usize, parent_stack: &[usize]) -> Vec<usize> {
        let mut out = Vec::new();
        for &l in &parent_stack[start..] {
            match self.stat_in(l, path) {
                Ok(s) if is_dir(&s) => {
                    out.push(l);
                    if self.opaque(l, path) {
                        break;
                    }
                }
                Ok(_) => break,
                Err(_) => {}
            }
        }
        out
    }

    /// Looks `path` up through a parent's `stack`.
    fn find(&self, parent_stack: &[usize], path: &Path) -> R<Option<Found>> {
        self.find_with(parent_stack, path, |l| self.stat_in(l, path))
    }

    /// [`Self::find`] with each layer's entry statted by `stat` (given the layer).
    fn find_with(
        &self,
        parent_stack: &[usize],
        path: &Path,
        stat: impl Fn(usize) -> nix::Result<FileStat>,
    ) -> R<Option<Found>> {
        for (i, &l) in parent_stack.iter().enumerate() {
            match stat(l) {
                Ok(s) if is_whiteout(&s) => return Ok(None),
                Ok(s) if is_dir(&s) => {
                    let stack = self.dir_stack(path, i, parent_stack);
                    return Ok(Some(Found {
                        layer: l,
                        st: s,
                        stack: Some(stack),
                    }));
                }
                Ok(s) => {
                    return Ok(Some(Found {
                        layer: l,
                        st: s,
                        stack: None,
                    }))
                }
                Err(nix::Error::ENOENT) | Err(nix::Error::ENOTDIR) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        Ok(None)
    }

    /// Whether a layer below the upper one has a (not whited-out) entry at `path`.
    fn lower_has(&self, parent_stack: &[usize], path: &Path) -> bool {
        for &l in parent_stack.iter().filter(|&&l| l != 0) {
            match self.stat_in(l, path) {
                Ok(s) => return !is_whiteout(&s),
                Err(_) => continue,
            }
        }
        false
    }

    fn read_override(&self, layer: usize, path: &Path, mode: u32) -> Option<Override> {
        let t = mode & libc::S_IFMT;
        if t != libc::S_IFREG && t != libc::S_IFDIR {
            return None;
        }
        let fd = self
            .open_in(
                layer,
                path,
                OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            )
            .ok()?;
        parse_override(&sys::fgetxattr_raw(&fd, OVERRIDE_STAT.as_bytes()).ok()?)
    }

    fn attr(&self, ino: u64, st: &FileStat, over: Option<Override>) -> FileAttr {
        let (uid, gid, perm) = match over {
            Some((_, _, m)) if self.fold => (st.st_uid, st.st_gid, m),
            Some((u, g, m)) => (u, g, m),
            None => {
                let (u, g) = self.view_ids(st.st_uid, st.st_gid);
                (u, g, st.st_mode & 0o7777)
            }
        };
        // fuser sends `ino` as the entry's node id too: it must be ours, not the layer's
        FileAttr {
            ino: INodeNo(ino),
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            atime: time(st.st_atime, st.st_atime_nsec),
            mtime: time(st.st_mtime, st.st_mtime_nsec),
            ctime: time(st.st_ctime, st.st_ctime_nsec),
            crtime: UNIX_EPOCH,
            kind: kind_of(st.st_mode),
            perm: perm as u16,
            nlink: st.st_nlink as u32,
            uid,
            gid,
            rdev: st.st_rdev as u32,
            blksize: st.st_blksize as u32,
            flags: 0,
        }
    }

    /// Registers (or refreshes) the node of `path` and counts one lookup.
    fn remember(&self, st: &mut State, path: PathBuf, f: &Found) -> u64 {
        self.remember_known(st, path, f, None)
    }

    /// [`Self::remember`], with the override already known when `over` is given (an entry
    /// this server has just made has none: no xattr read for it).
    fn remember_known(
        &self,
        st: &mut State,
        path: PathBuf,
        f: &Found,
        over: Option<Option<Override>>,
    ) -> u64 {
        // one look in the path table (a listing of a large directory registers every entry)
        let existing = st.by_path.get(&path).copied();
        // a known node's override only changes through this server (setattr keeps it, and
        // copy-up copies it along): read the layer's xattr for new nodes only
        let known = over.or_else(|| {
            existing
                .and_then(|i| st.nodes.get(&i))
                .filter(|n| n.layer == f.layer && !n.gone)
                .map(|n| n.over)
        });
        let over = match known {
            Some(o) => o,
            None => self.read_override(f.layer, &path, f.st.st_mode),
        };
        let linked = (f.stack.is_none() && f.st.st_nlink > 1).then_some((f.st.st_dev, f.st.st_ino));
        if let Some(key) = linked {
            if let Some(&ino) = st.by_inode.get(&key) {
                if let Some(n) = st.nodes.get_mut(&ino).filter(|n| !n.gone) {
                    n.lookups += 1;
                    n.over = over;
                    // one node for several names: this name's entry only is fresh
                    n.fresh_at = None;
                    st.by_path.insert(path, ino);
                    return ino;
                }
            }
        }
        if let Some(ino) = existing {
            if let Some(n) = st.nodes.get_mut(&ino) {
                n.layer = f.layer;
                n.stack = f.stack.clone();
                n.over = over;
                n.lookups += 1;
                n.fresh_at = (linked.is_none() && !n.gone).then(Instant::now);
                return ino;
            }
        }
        let ino = st.next_ino;
        st.next_ino += 1;
        st.nodes.insert(
            ino,
            Node {
                path: path.clone(),
                layer: f.layer,
                stack: f.stack.clone(),
                over,
                lookups: 1,
                gone: false,
                fresh_at: linked.is_none().then(Instant::now),
            },
        );
        st.by_path.insert(path, ino);
        if let Some(key) = linked {
            st.by_inode.insert(key, ino);
        }
        ino
    }

    /// The kernel's cached entry or attributes of node `ino` (or of the node at `path`) may
    /// no longer be what this server last sent: the next listing sends them again.
    fn stale(st: &mut State, ino: u64) {
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.fresh_at = None;
        }
    }

    fn stale_path(st: &mut State, path: &Path) {
        if let Some(&ino) = st.by_path.get(path) {
            Self::stale(st, ino);
        }
    }

    fn node(st: &State, ino: INodeNo) -> R<&Node> {
        st.nodes.get(&ino.0).ok_or(Errno::ENOENT)
    }

    fn parent_of(st: &State, ino: INodeNo) -> R<(&Node, &[usize])> {
        let n = Self::node(st, ino)?;
        if n.gone {
            return Err(Errno::ENOENT);
        }
        match &n.stack {
            Some(s) => Ok((n, s.as_slice())),
            None => Err(Errno::ENOTDIR),
        }
    }

    /// Makes directory `path` (visible in the merged view) exist in the upper layer, with its
    /// parents, copying owner, mode, times and xattrs from the layer that shows it.
    fn upper_dir(&self, st: &mut State, path: &Path) -> R<()> {
        let mut prefix = PathBuf::new();
        let comps: Vec<_> = path.components().collect();
        for c in comps {
            prefix.push(c);
            match self.stat_in(0, &prefix) {
                Ok(s) if is_dir(&s) => continue,
                Ok(_) => return Err(Errno::ENOTDIR),
                Err(nix::Error::ENOENT) => {}
                Err(e) => return Err(errno(e)),
            }
            let mut src = None;
            for l in 1..self.layers.len() {
                if let Ok(s) = self.stat_in(l, &prefix) {
                    if is_dir(&s) {
                        src = Some((l, s));
                        break;
                    }
                }
            }
            let Some((l, s)) = src else {
                return Err(Errno::ENOENT);
            };
            let tmp = self.tmp_name();
            mkdirat(&self.work, tmp.as_path(), Mode::from_bits_truncate(0o700)).map_err(errno)?;
            let res = (|| -> R<()> {
                let to = self
                    .open_in_work(&tmp, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                    .map_err(errno)?;
                let from = self
                    .open_in(l, &prefix, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                    .map_err(errno)?;
                copy_meta(&from, &to, &s, true)?;
                renameat2(
                    &self.work,
                    tmp.as_path(),
                    self.fd(0),
                    prefix.as_path(),
                    nix::fcntl::RenameFlags::RENAME_NOREPLACE,
                )
                .map_err(errno)
            })();
            if res.is_err() {
                let _ = unlinkat(&self.work, tmp.as_path(), UnlinkatFlags::RemoveDir);
                res?;
            }
            if let Some(&ino) = st.by_path.get(&prefix) {
                if let Some(n) = st.nodes.get_mut(&ino) {
                    n.layer = 0;
                    if let Some(stack) = &mut n.stack {
                        if stack.first() != Some(&0) {
                            stack.insert(0, 0);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn open_in_work(&self, name: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        openat(
            &self.work,
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    }

    fn tmp_name(&self) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        PathBuf::from(format!(
            "rbox-copyup-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Copies node `ino` up into the upper layer (once: a node already there is left alone).
    fn copy_up(&self, st: &mut State, ino: u64) -> R<()> {
        self.copy_up_with(st, ino, true)
    }

    /// [`Self::copy_up`], leaving a regular file's bytes behind when `data` is false (it is
    /// about to be truncated to nothing: O_TRUNC, or a truncate to 0).
    fn copy_up_with(&self, st: &mut State, ino: u64, data: bool) -> R<()> {
        let (path, layer, is_d) = {
            let n = st.nodes.get(&ino).ok_or(Errno::ENOENT)?;
            if n.gone {
                return Err(Errno::ENOENT);
            }
            (n.path.clone(), n.layer, n.stack.is_some())
        };
        if layer == 0 {
            return Ok(());
        }
        if is_d {
            return self.upper_dir(st, &path);
        }
        if let Some(parent) = path.parent() {
            self.upper_dir(st, parent)?;
        }
        self.copy_file_up(layer, &path, data)?;
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.layer = 0;
        }
        // copy-up breaks a lower hard link (kernel overlay without `index` does the same):
        // the other names are looked up again as the lower file they still are
        if st.by_inode.values().any(|&i| i == ino) {
            st.by_inode.retain(|_, i| *i != ino);
            st.by_path.retain(|p, i| *i != ino || *p == path);
        }
        Ok(())
    }

    /// Copies the non-directory `path` of `layer` into the upper layer, staged in the work
    /// directory and renamed into place, so a crash never leaves half a file visible.
    fn copy_file_up(&self, layer: usize, path: &Path, data: bool) -> R<()> {
        let s = self.stat_in(layer, path).map_err(errno)?;
        let tmp = self.tmp_name();
        let t = s.st_mode & libc::S_IFMT;
        let res = (|| -> R<()> {
            match t {
                libc::S_IFREG => {
                    let from = self.open_in(layer, path, OFlag::O_RDONLY).map_err(errno)?;
                    let to = openat(
                        &self.work,
                        tmp.as_path(),
                        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o600),
                    )
                    .map_err(errno)?;
                    if data {
                        copy_data(&from, &to, s.st_size as u64)?;
                    }
                    copy_meta(&from, &to, &s, false)?;
                }
                libc::S_IFLNK => {
                    let target = nix::fcntl::readlinkat(self.fd(layer), path).map_err(errno)?;
                    symlinkat(target.as_os_str(), &self.work, tmp.as_path()).map_err(errno)?;
                    unmapped_ok(lchown_at(&self.work, &tmp, s.st_uid, s.st_gid))?;
                }
                _ => {
                    mknodat(
                        &self.work,
                        tmp.as_path(),
                        SFlag::from_bits_truncate(t),
                        Mode::from_bits_truncate(s.st_mode & 0o7777),
                        s.st_rdev,
                    )
                    .map_err(errno)?;
                    unmapped_ok(lchown_at(&self.work, &tmp, s.st_uid, s.st_gid))?;
                }
            }
            // a whiteout cannot be in the way: the file is visible
            renameat2(
                &self.work,
                tmp.as_path(),
                self.fd(0),
                path,
                nix::fcntl::RenameFlags::empty(),
            )
            .map_err(errno)
        })();
        if res.is_err() {
            let _ = unlinkat(&self.work, tmp.as_path(), UnlinkatFlags::NoRemoveDir);
        }
        res
    }

    /// Drops a whiteout (or nothing) at `path` in the upper layer; true when there was one.
    fn clear_whiteout(&self, path: &Path) -> R<bool> {
        match self.stat_in(0, path) {
            Ok(s) if is_whiteout(&s) => {
                unlinkat(self.fd(0), path, UnlinkatFlags::NoRemoveDir).map_err(errno)?;
                Ok(true)
            }
            Ok(_) => Err(Errno::EEXIST),
            Err(nix::Error::ENOENT) => Ok(false),
            Err(e) => Err(errno(e)),
        }
    }

    fn whiteout(&self, path: &Path) -> R<()> {
        mknodat(self.fd(0), path, SFlag::S_IFCHR, Mode::empty(), 0).map_err(errno)
    }

    /// The merged listing of a directory: names with their type and inode number,
    /// whiteouts and duplicates left out.
    fn list(&self, path: &Path, stack: &[usize]) -> R<Vec<(OsString, FileType, u64)>> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for &l in stack {
            let fd = match self.open_in(l, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(nix::Error::ENOENT) => continue,
                Err(e) => return Err(errno(e)),
            };
            let mut dir = nix::dir::Dir::from_fd(fd).map_err(errno)?;
            for e in dir.iter() {
                let e = e.map_err(errno)?;
                let name = OsStr::from_bytes(e.file_name().to_bytes()).to_os_string();
                if name == "." || name == ".." || !seen.insert(name.clone()) {
                    continue;
                }
                let ty = match e.file_type() {
                    Some(t) => t,
                    None => {
                        let s = self.stat_in(l, &path.join(&name)).map_err(errno)?;
                        match kind_of(s.st_mode) {
                            FileType::CharDevice if s.st_rdev == 0 => continue,
                            _ => file_type_of(s.st_mode),
                        }
                    }
                };
                let kind = match ty {
                    nix::dir::Type::CharacterDevice => match self.stat_in(l, &path.join(&name)) {
                        Ok(s) if is_whiteout(&s) => continue,
                        _ => FileType::CharDevice,
                    },
                    nix::dir::Type::Directory => FileType::Directory,
                    nix::dir::Type::Symlink => FileType::Symlink,
                    nix::dir::Type::Fifo => FileType::NamedPipe,
                    nix::dir::Type::BlockDevice => FileType::BlockDevice,
                    nix::dir::Type::Socket => FileType::Socket,
                    nix::dir::Type::File => FileType::RegularFile,
                };
                out.push((name, kind, e.ino()));
            }
        }
        Ok(out)
    }

    fn handle(&self, fh: FileHandle) -> R<Arc<Handle>> {
        self.files
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh.0)
            .cloned()
            .ok_or(Errno::EBADF)
    }

    fn add_handle(&self, ino: u64, fd: OwnedFd) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.files
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                fh,
                Arc::new(Handle {
                    ino,
                    file: File::from(fd),
                    wrote: std::sync::atomic::AtomicBool::new(false),
                }),
            );
        fh
    }

    /// An open handle of node `ino`: all that reaches a node once it is gone (or, for an
    /// O_TMPFILE file, before it has a name).
    fn handle_of(&self, ino: u64) -> R<Arc<Handle>> {
        let files = self.files.read().unwrap_or_else(|p| p.into_inner());
        files
            .values()
            .find(|h| h.ino == ino)
            .cloned()
            .ok_or(Errno::ENOENT)
    }

    /// An open of a node with no name (an O_TMPFILE file, a file deleted while open), which
    /// only a /proc/PID/fd link reaches: no path leads to its file, so the fd of an open
    /// handle whose access mode covers the one asked for is duplicated (the kernel has
    /// checked the permissions; reads and writes carry their offsets, so the shared file
    /// offset does not matter). ENOENT when none does, as before there was a way.
    fn reopen_unnamed(&self, ino: u64, f: OFlag) -> R<OwnedFd> {
        let want = f & OFlag::O_ACCMODE;
        let files = self.files.read().unwrap_or_else(|p| p.into_inner());
        for h in files.values().filter(|h| h.ino == ino) {
            let fl = nix::fcntl::fcntl(&h.file, nix::fcntl::FcntlArg::F_GETFL).map_err(errno)?;
            let have = OFlag::from_bits_truncate(fl) & OFlag::O_ACCMODE;
            if have == OFlag::O_RDWR || have == want {
                let fd = OwnedFd::from(h.file.try_clone().map_err(ioerr)?);
                if f.contains(OFlag::O_TRUNC) {
                    nix::unistd::ftruncate(&fd, 0).map_err(errno)?;
                }
                return Ok(fd);
            }
        }
        Err(Errno::ENOENT)
    }

    /// The stat of a node: its layer entry, or an open handle's once it is gone.
    fn stat_node(&self, st: &State, ino: u64) -> R<(FileStat, Option<Override>)> {
        let n = st.nodes.get(&ino).ok_or(Errno::ENOENT)?;
        if !n.gone {
            return Ok((self.stat_in(n.layer, &n.path).map_err(errno)?, n.over));
        }
        Ok((fstat(&self.handle_of(ino)?.file).map_err(errno)?, n.over))
    }

    fn entry_of(&self, st: &mut State, path: PathBuf, parent_stack: &[usize]) -> R<FileAttr> {
        let f = self.find(parent_stack, &path)?.ok_or(Errno::ENOENT)?;
        let ino = self.remember(st, path, &f);
        let over = st.nodes.get(&ino).and_then(|n| n.over);
        Ok(self.attr(ino, &f.st, over))
    }

    /// Marks the node at `path` (if any) as gone from the tree.
    /// Drops `n` lookups of node `ino`; the node goes when none is left (never the root).
    fn unref(st: &mut State, ino: u64, n: u64) {
        if ino == 1 {
            return;
        }
        let drop_it = match st.nodes.get_mut(&ino) {
            Some(node) => {
                node.lookups = node.lookups.saturating_sub(n);
                node.lookups == 0
            }
            None => false,
        };
        if !drop_it {
            return;
        }
        if let Some(node) = st.nodes.remove(&ino) {
            if st.by_path.get(&node.path) == Some(&ino) {
                st.by_path.remove(&node.path);
            }
            // a hard-linked node may hold other names: only then walk the tables
            if st.by_inode.values().any(|&i| i == ino) {
                st.by_path.retain(|_, i| *i != ino);
                st.by_inode.retain(|_, i| *i != ino);
            }
        }
    }

    /// A node with other names (hard links) keeps living under one of them.
    fn forget_path(st: &mut State, path: &Path) {
        if let Some(ino) = st.by_path.remove(path) {
            // only a node of the hard-link table can have other names: no walk of every
            // path for the common unlink
            let linked = st.by_inode.values().any(|&i| i == ino);
            let other = linked
                .then(|| {
                    st.by_path
                        .iter()
                        .find(|(_, &i)| i == ino)
                        .map(|(p, _)| p.clone())
                })
                .flatten();
            if let Some(n) = st.nodes.get_mut(&ino) {
                match other {
                    Some(p) => n.path = p,
                    None => n.gone = true,
                }
            }
        }
    }

    /// Moves the node of `from` (and those below it) to `to`.
    fn move_path(st: &mut State, from: &Path, to: &Path) {
        let moved: Vec<(PathBuf, u64)> = st
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        for (p, _) in &moved {
            st.by_path.remove(p);
        }
        for (p, ino) in moved {
            let np = match p.strip_prefix(from) {
                Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
                Ok(rest) => to.join(rest),
                Err(_) => continue,
            };
            if let Some(n) = st.nodes.get_mut(&ino) {
                n.path = np.clone();
            }
            st.by_path.insert(np, ino);
        }
    }

    /// Gives a new upper entry the caller's owner (the server creates as root), with the
    /// group of a set-gid parent.
    fn own(&self, path: &Path, req: &Request, parent_layer_stat: Option<&FileStat>) -> R<()> {
        match self.new_owner(req, parent_layer_stat)? {
            Some((uid, gid)) => lchown_at(self.fd(0), path, uid, gid),
            None => Ok(()),
        }
    }

    /// The owner [`Self::own`] gives a new entry; `None` when it is the one the server made
    /// it with (its own ids, a set-gid parent's group): a chown to the same ids is a
    /// syscall for nothing (most creates come from root).
    fn new_owner(
        &self,
        req: &Request,
        parent_layer_stat: Option<&FileStat>,
    ) -> R<Option<(u32, u32)>> {
        let uid = self.disk_uid(req.uid())?;
        let (gid, made_gid) = match parent_layer_stat {
            Some(p) if p.st_mode & libc::S_ISGID != 0 => (p.st_gid, p.st_gid),
            _ => (self.disk_gid(req.gid())?, sys_ids().1),
        };
        Ok((uid != sys_ids().0 || gid != made_gid).then_some((uid, gid)))
    }

    fn do_rename(
        &self,
        st: &mut State,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> R<()> {
        let (ppath, pstack) = {
            let (n, s) = Self::parent_of(st, parent)?;
            (n.path.clone(), s.to_vec())
        };
        let (npath, nstack) = {
            let (n, s) = Self::parent_of(st, newparent)?;
            (n.path.clone(), s.to_vec())
        };
        let from = ppath.join(name);
        let to = npath.join(newname);
        let src = self.find(&pstack, &from)?.ok_or(Errno::ENOENT)?;
        let dst = self.find(&nstack, &to)?;
        if from == to {
            return Ok(());
        }
        let pure_upper = |f: &Found| f.stack.as_deref().is_none_or(|s| s == [0]);
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            let dst = dst.ok_or(Errno::ENOENT)?;
            if !pure_upper(&src) || !pure_upper(&dst) {
                return Err(Errno::EXDEV);
            }
            let si = self.remember(st, from.clone(), &src);
            let di = self.remember(st, to.clone(), &dst);
            let r = self
                .copy_up(st, si)
                .and_then(|_| self.copy_up(st, di))
                .and_then(|_| {
                    renameat2(
                        self.fd(0),
                        from.as_path(),
                        self.fd(0),
                        to.as_path(),
                        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                    )
                    .map_err(errno)
                });
            for i in [si, di] {
                if let Some(n) = st.nodes.get_mut(&i) {
                    n.lookups -= 1;
                }
            }
            r?;
            // swap the two nodes' paths
            let tmp = PathBuf::from("\0rbox-exchange");
            Self::move_path(st, &from, &tmp);
            Self::move_path(st, &to, &from);
            Self::move_path(st, &tmp, &to);
            return Ok(());
        }
        if let Some(d) = &dst {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            match (src.stack.is_some(), d.stack.is_some()) {
                (false, true) => return Err(Errno::EISDIR),
                (true, false) => return Err(Errno::ENOTDIR),
                (true, true)
                    if !self
                        .list(&to, d.stack.as_deref().unwrap_or(&[]))?
                        .is_empty() =>
                {
                    return Err(Errno::ENOTEMPTY);
                }
                _ => {}
            }
        }
        if src.stack.is_some() && !pure_upper(&src) {
            // kernel overlay without redirect_dir does the same: mv falls back to copying
            return Err(Errno::EXDEV);
        }
        let si = self.remember(st, from.clone(), &src);
        let r = self.copy_up(st, si);
        if let Some(n) = st.nodes.get_mut(&si) {
            n.lookups -= 1;
        }
        r?;
        self.upper_dir(st, &npath)?;
        let mut make_opaque = false;
        if let Some(d) = &dst {
            if let Some(ds) = &d.stack {
                if d.layer == 0 {
                    clear_dir(self.fd(0), &to)?;
                }
                make_opaque = ds.iter().any(|&l| l != 0);
            }
        }
        if make_opaque {
            // the lower directory replaced: the moved one must hide it
            let fd = self
                .open_in(0, &from, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                .map_err(errno)?;
            sys::fsetxattr_flags(&fd, OPAQUE.as_bytes(), b"y", 0).map_err(ioerr)?;
        }
        renameat2(
            self.fd(0),
            from.as_path(),
            self.fd(0),
            to.as_path(),
            nix::fcntl::RenameFlags::empty(),
        )
        .map_err(errno)?;
        if self.lower_has(&pstack, &from) {
            self.whiteout(&from)?;
        }
        Self::forget_path(st, &to);
        Self::move_path(st, &from, &to);
        if let Some(&ino) = st.by_path.get(&to) {
            if let (Some(n), true) = (st.nodes.get_mut(&ino), make_opaque) {
                n.stack = Some(vec![0]);
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // the kernel's setattr, field by field
    fn do_setattr(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> R<FileAttr> {
        let mut st = self.lock();
        let gone = Self::node(&st, ino)?.gone;
        if !gone {
            let data = !(size == Some(0) && fh.is_none());
            self.copy_up_with(&mut st, ino.0, data)?;
        }
        let n = Self::node(&st, ino)?;
        let path = n.path.clone();
        let over = n.over;
        // an fd to act on: the open handle, else the upper entry (not for symlinks and
        // special files, which take the *at calls)
        let handle = match fh {
            Some(fh) => self.handle(fh).ok(),
            None if gone => self.handle_of(ino.0).ok(),
            None => None,
        };
        let cur = match &handle {
            Some(h) => fstat(&h.file).map_err(errno)?,
            None if gone => return Err(Errno::ENOENT),
            None => self.stat_in(0, &path).map_err(errno)?,
        };
        if let Some(size) = size {
            match &handle {
                Some(h) => h.file.set_len(size).map_err(ioerr)?,
                None => {
                    let fd = self.open_in(0, &path, OFlag::O_WRONLY).map_err(errno)?;
                    nix::unistd::ftruncate(&fd, size as i64).map_err(errno)?;
                }
            }
        }
        if mode.is_some() || uid.is_some() || gid.is_some() {
            // an override holds owners as the container sees them
            let (cu, cg) = self.view_ids(cur.st_uid, cur.st_gid);
            let mut o = over.unwrap_or((cu, cg, cur.st_mode & 0o7777));
            if let Some(m) = mode {
                o.2 = m & 0o7777;
            }
            if let Some(u) = uid {
                o.0 = u;
            }
            if let Some(g) = gid {
                o.1 = g;
            }
            if over.is_some() {
                let fd = match &handle {
                    Some(h) => h.file.try_clone().map_err(ioerr)?.into(),
                    None => self
                        .open_in(0, &path, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
                        .map_err(errno)?,
                };
                sys::fsetxattr_flags(
                    &fd,
                    OVERRIDE_STAT.as_bytes(),
                    format_override(o).as_bytes(),
                    0,
                )
                .map_err(ioerr)?;
                if let Some(n) = st.nodes.get_mut(&ino.0) {
                    n.over = Some(o);
                }
            } else {
                let is_link = cur.st_mode & libc::S_IFMT == libc::S_IFLNK;
                if uid.is_some() || gid.is_some() {
                    let u = uid.map(|u| self.disk_uid(u)).transpose()?;
                    let g = gid.map(|g| self.disk_gid(g)).transpose()?;
                    let (u, g) = (u.map(Uid::from_raw), g.map(Gid::from_raw));
                    match &handle {
                        Some(h) => nix::unistd::fchown(&h.file, u, g).map_err(errno)?,
                        None => fchownat(
                            self.fd(0),
                            path.as_path(),
                            u,
                            g,
                            AtFlags::AT_SYMLINK_NOFOLLOW,
                        )
                        .map_err(errno)?,
                    }
                }
                if let (Some(m), false) = (mode, is_link) {
                    let m = Mode::from_bits_truncate(m & 0o7777);
                    match &handle {
                        Some(h) => nix::sys::stat::fchmod(&h.file, m).map_err(errno)?,
                        None => nix::sys::stat::fchmodat(
                            self.fd(0),
                            path.as_path(),
                            m,
                            nix::sys::stat::FchmodatFlags::FollowSymlink,
                        )
                        .map_err(errno)?,
                    }
                }
            }
        }
        if atime.is_some() || mtime.is_some() {
            let ts = |t: Option<TimeOrNow>| match t {
                None => nix::sys::time::TimeSpec::UTIME_OMIT,
                Some(TimeOrNow::Now) => nix::sys::time::TimeSpec::UTIME_NOW,
                Some(TimeOrNow::SpecificTime(t)) => {
                    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
                    nix::sys::time::TimeSpec::new(d.as_secs() as i64, d.subsec_nanos() as i64)
                }
            };
            let (a, m) = (ts(atime), ts(mtime));
            match &handle {
                Some(h) => nix::sys::stat::futimens(&h.file, &a, &m).map_err(errno)?,
                None => nix::sys::stat::utimensat(
                    self.fd(0),
                    path.as_path(),
                    &a,
                    &m,
                    nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                )
                .map_err(errno)?,
            }
        }
        let (s, over) = match &handle {
            Some(h) => (fstat(&h.file).map_err(errno)?, Self::node(&st, ino)?.over),
            None => self.stat_node(&st, ino.0)?,
        };
        Ok(self.attr(ino.0, &s, over))
    }

    /// An fd for the xattr calls of a node (regular files and directories only: `user.*`
    /// attributes exist on nothing else).
    fn xattr_fd(&self, st: &State, ino: INodeNo) -> R<Option<OwnedFd>> {
        let n = Self::node(st, ino)?;
        if n.gone {
            let h = self.handle_of(ino.0)?;
            return Ok(Some(h.file.try_clone().map_err(ioerr)?.into()));
        }
        let s = self.stat_in(n.layer, &n.path).map_err(errno)?;
        let t = s.st_mode & libc::S_IFMT;
        if t != libc::S_IFREG && t != libc::S_IFDIR {
            return Ok(None);
        }
        Ok(Some(
            self.open_in(
                n.layer,
                &n.path,
                OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            )
            .map_err(errno)?,
        ))
    }

    /// Common part of mkdir/mknod/symlink/create: the parent made present in the upper
    /// layer, a whiteout at the name cleared. Returns the path, the parent's stack, whether a
    /// whiteout was there, and the parent's upper stat.
    fn prepare_new(
        &self,
        st: &mut State,
        parent: INodeNo,
        name: &OsStr,
    ) -> R<(PathBuf, Vec<usize>, bool, FileStat)> {
        let (ppath, pstack) = {
            let (n, s) = Self::parent_of(st, parent)?;
            (n.path.clone(), s.to_vec())
        };
        let path = ppath.join(name);
        // one pass down the stack (the kernel's lookup just made the same one, so the
        // entries are in the dentry cache): the name must be free, and a whiteout found in
        // the upper layer is remembered rather than looked at again
        let mut had_whiteout = false;
        for &l in &pstack {
            match self.stat_in(l, &path) {
                Ok(s) if is_whiteout(&s) => {
                    had_whiteout = l == 0;
                    break;
                }
                Ok(_) => return Err(Errno::EEXIST),
                Err(nix::Error::ENOENT) | Err(nix::Error::ENOTDIR) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        let upper = pstack.first() == Some(&0);
        // a directory node of layer 0 is in the upper layer already, with its parents
        if Self::node(st, parent)?.layer != 0 {
            self.upper_dir(st, &ppath)?;
        }
        if had_whiteout {
            unlinkat(self.fd(0), path.as_path(), UnlinkatFlags::NoRemoveDir).map_err(errno)?;
        } else if !upper {
            // the parent was not in the upper layer when its stack was taken
            had_whiteout = self.clear_whiteout(&path)?;
        }
        let pst = self.stat_in(0, &ppath).map_err(errno)?;
        let mut pstack = pstack;
        if !upper {
            pstack.insert(0, 0);
        }
        Ok((path, pstack, had_whiteout, pst))
    }

    /// A link of a node with no name in the tree: an O_TMPFILE file ([`Filesystem::tmpfile`])
    /// given its name (the kernel only asks for a file with no link left when it is one).
    /// Its upper file exists only as the open handle's fd, so the link is made from that fd
    /// with `AT_EMPTY_PATH`, which the kernel allows the server: it opened the file itself
    /// and is root of its user namespace (checked on Linux 6.18). A path through
    /// /proc/self/fd would not do: after pivot_root the server sees the container's /proc,
    /// of a pid namespace it is not in. The upper filesystem refuses the link (ENOENT) for a
    /// file opened with O_EXCL, whose fd the handle is.
    fn link_unnamed(
        &self,
        st: &mut State,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
    ) -> R<FileAttr> {
        // a lower file deleted while open must never become a hard link into the upper layer
        if Self::node(st, ino)?.layer != 0 {
            return Err(Errno::ENOENT);
        }
        let h = self.handle_of(ino.0)?;
        let (path, _, _, _) = self.prepare_new(st, newparent, newname)?;
        linkat(
            &h.file,
            "",
            self.fd(0),
            path.as_path(),
            AtFlags::AT_EMPTY_PATH,
        )
        .map_err(errno)?;
        let s = fstat(&h.file).map_err(errno)?;
        let n = st.nodes.get_mut(&ino.0).ok_or(Errno::ENOENT)?;
        // the same node (the kernel's inode, page cache and open file) under its new name,
        // one more lookup for the entry replied
        n.path = path.clone();
        n.gone = false;
        n.lookups += 1;
        let over = n.over;
        st.by_path.insert(path, ino.0);
        Ok(self.attr(ino.0, &s, over))
    }

    fn new_entry(&self, st: &mut State, path: PathBuf, stack: Option<Vec<usize>>) -> R<FileAttr> {
        let s = self.stat_in(0, &path).map_err(errno)?;
        self.new_entry_stat(st, path, stack, s)
    }

    /// [`Self::new_entry`] with the entry's stat already at hand (create's fstat of its fd).
    fn new_entry_stat(
        &self,
        st: &mut State,
        path: PathBuf,
        stack: Option<Vec<usize>>,
        s: FileStat,
    ) -> R<FileAttr> {
        let f = Found {
            layer: 0,
            st: s,
            stack,
        };
        // a name just made has no override; a new name of a file (link) keeps the file's
        let fresh = f.stack.is_some() || s.st_nlink <= 1;
        let ino = self.remember_known(st, path, &f, fresh.then_some(None));
        let over = st.nodes.get(&ino).and_then(|n| n.over);
        Ok(self.attr(ino, &s, over))
    }
}

/// Entries listed by their names alone (tests: that the listing took that way).
#[cfg(test)]
pub(crate) static NAMED_ALONE: AtomicU64 = AtomicU64::new(0);

/// The reply to a lookup of a missing name: node id 0 (the kernel's negative entry).
fn negative() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

/// The reply to a create or tmpfile: the new entry and its open handle, with the flags of
/// [`Filesystem::open`]'s handles.
fn reply_created(reply: ReplyCreate, r: R<(FileAttr, u64)>) {
    match r {
        Ok((a, fh)) => reply.created(
            &TTL,
            &a,
            Generation(0),
            FileHandle(fh),
            FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
        ),
        Err(e) => reply.error(e),
    }
}

/// The server's effective uid and gid (the owner of what it creates), read once.
fn sys_ids() -> (u32, u32) {
    static IDS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    })
}

fn file_type_of(mode: u32) -> nix::dir::Type {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => nix::dir::Type::Directory,
        libc::S_IFLNK => nix::dir::Type::Symlink,
        libc::S_IFIFO => nix::dir::Type::Fifo,
        libc::S_IFCHR => nix::dir::Type::CharacterDevice,
        libc::S_IFBLK => nix::dir::Type::BlockDevice,
        libc::S_IFSOCK => nix::dir::Type::Socket,
        _ => nix::dir::Type::File,
    }
}

/// A copy-up's chown to an owner with no id in this user namespace (a lower of an
/// additional image store made by another user shows its files as the overflow id) fails
/// with EINVAL: the copy then stays owned by the namespace's root, who is writing it.
fn unmapped_ok(r: R<()>) -> R<()> {
    match r {
        Err(e) if e == Errno::from_i32(libc::EINVAL) => Ok(()),
        r => r,
    }
}

fn lchown_at<F: AsFd>(dir: F, path: &Path, uid: u32, gid: u32) -> R<()> {
    fchownat(
        dir,
        path,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(errno)
}

/// Empties an upper directory that holds only whiteouts (the merged view is empty).
fn clear_dir(upper: &OwnedFd, path: &Path) -> R<()> {
    let fd = openat(
        upper,
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    let dup = fd.try_clone().map_err(ioerr)?;
    let mut dir = nix::dir::Dir::from_fd(dup).map_err(errno)?;
    let names: Vec<OsString> = dir
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    for n in names {
        let s = fstatat(&fd, n.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(errno)?;
        if !is_whiteout(&s) {
            return Err(Errno::ENOTEMPTY);
        }
        unlinkat(&fd, n.as_os_str(), UnlinkatFlags::NoRemoveDir).map_err(errno)?;
    }
    Ok(())
}

/// Copies a regular file's bytes, in kernel where it can (copy_file_range).
fn copy_data(from: &OwnedFd, to: &OwnedFd, size: u64) -> R<()> {
    let mut done = 0u64;
    while done < size {
        let want = (size - done).min(1 << 30) as usize;
        match sys::copy_file_range(from, to, want) {
            Ok(0) => break,
            Ok(n) => done += n as u64,
            Err(nix::Error::EXDEV) | Err(nix::Error::ENOSYS) | Err(nix::Error::EINVAL)
                if done == 0 =>
            {
                let f = File::from(from.try_clone().map_err(ioerr)?);
                let t = File::from(to.try_clone().map_err(ioerr)?);
                let mut buf = vec![0u8; 1 << 20];
                let mut off = 0u64;
                loop {
                    let n = f.read_at(&mut buf, off).map_err(ioerr)?;
                    if n == 0 {
                        break;
                    }
                    t.write_all_at(&buf[..n], off).map_err(ioerr)?;
                    off += n as u64;
                }
                return Ok(());
            }
            Err(e) => return Err(errno(e)),
        }
    }
    Ok(())
}

/// Owner, mode, xattrs (the overlay's own excepted) and times from `from` to `to`.
fn copy_meta(from: &OwnedFd, to: &OwnedFd, s: &FileStat, dir: bool) -> R<()> {
    unmapped_ok(
        nix::unistd::fchown(
            to,
            Some(Uid::from_raw(s.st_uid)),
            Some(Gid::from_raw(s.st_gid)),
        )
        .map_err(errno),
    )?;
    nix::sys::stat::fchmod(to, Mode::from_bits_truncate(s.st_mode & 0o7777)).map_err(errno)?;
    if let Ok(list) = sys::flistxattr(from) {
        for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            if name.starts_with(b"user.overlay.") || (dir && name == OPAQUE.as_bytes()) {
                continue;
            }
            if let Ok(v) = sys::fgetxattr_raw(from, name) {
                // an attribute the upper filesystem refuses is not worth failing the write
                let _ = sys::fsetxattr_flags(to, name, &v, 0);
            }
        }
    }
    let a = nix::sys::time::TimeSpec::new(s.st_atime, s.st_atime_nsec);
    let m = nix::sys::time::TimeSpec::new(s.st_mtime, s.st_mtime_nsec);
    nix::sys::stat::futimens(to, &a, &m).map_err(errno)
}

impl Filesystem for Overlay {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        // each on its own: one the kernel lacks must not cost the others
        for cap in [
            fuser::InitFlags::FUSE_PARALLEL_DIROPS,
            fuser::InitFlags::FUSE_CACHE_SYMLINKS,
            // atomic O_TRUNC: the open says it, so a lower file opened to be truncated is
            // copied up without its bytes
            fuser::InitFlags::FUSE_ATOMIC_O_TRUNC,
            fuser::InitFlags::FUSE_DO_READDIRPLUS,
            fuser::InitFlags::FUSE_READDIRPLUS_AUTO,
        ] {
            let _ = config.add_capabilities(cap);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut st = self.lock();
        let r = (|| {
            let (n, s) = Self::parent_of(&st, parent)?;
            let (path, stack) = (n.path.join(name), s.to_vec());
            self.entry_of(&mut st, path, &stack)
        })();
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            // a missing name, cached by the kernel as such (node id 0, not a lookup to be
            // forgotten): `touch` and `open(O_CREAT)` look a new name up twice, a shell's
            // PATH search and ld.so look up the same missing names over and over; only this
            // server adds names, and the kernel drops the negative entry when it does
            Err(e) if e == Errno::ENOENT => reply.entry(&TTL, &negative(), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        Self::unref(&mut self.lock(), ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let st = self.lock();
        let r = (|| {
            if let Some(fh) = fh {
                if let Ok(h) = self.handle(fh) {
                    let s = fstat(&h.file).map_err(errno)?;
                    return Ok(self.attr(ino.0, &s, Self::node(&st, ino)?.over));
                }
            }
            let (s, over) = self.stat_node(&st, ino.0)?;
            Ok(self.attr(ino.0, &s, over))
        })();
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.do_setattr(ino, mode, uid, gid, size, atime, mtime, fh) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let st = self.lock();
        let r = Self::node(&st, ino)
            .and_then(|n| nix::fcntl::readlinkat(self.fd(n.layer), rel(&n.path)).map_err(errno));
        match r {
            Ok(t) => reply.data(t.as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        // a 0/0 character device is a whiteout in the upper layer: made there it would hide
        // itself (and a lower file of that name); kernel overlay refuses it the same way
        if mode & libc::S_IFMT == libc::S_IFCHR && rdev == 0 {
            return reply.error(Errno::EPERM);
        }
        let mut st = self.lock();
        let r = (|| {
            let (path, _, _, pst) = self.prepare_new(&mut st, parent, name)?;
            mknodat(
                self.fd(0),
                path.as_path(),
                SFlag::from_bits_truncate(mode & libc::S_IFMT),
                Mode::from_bits_truncate(mode & 0o7777),
                rdev as libc::dev_t,
            )
            .map_err(errno)?;
            self.own(&path, req, Some(&pst))?;
            self.new_entry(&mut st, path, None)
        })();
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut st = self.lock();
        let r = (|| {
            let (path, _, had_whiteout, pst) = self.prepare_new(&mut st, parent, name)?;
            let mut m = mode & 0o7777;
            if pst.st_mode & libc::S_ISGID != 0 {
                m |= libc::S_ISGID;
            }
            mkdirat(self.fd(0), path.as_path(), Mode::from_bits_truncate(m)).map_err(errno)?;
            self.own(&path, req, Some(&pst))?;
            // prepare_new found the name free in every layer, so only an upper whiteout
            // means a lower entry was deleted here
            if had_whiteout {
                // a directory made where a lower one was deleted must not show its entries
                let fd = self
                    .open_in(0, &path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                    .map_err(errno)?;
                sys::fsetxattr_flags(&fd, OPAQUE.as_bytes(), b"y", 0).map_err(ioerr)?;
            }
            self.new_entry(&mut st, path, Some(vec![0]))
        })();
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.lock();
        let r = (|| {
            let (ppath, pstack) = {
                let (n, s) = Self::parent_of(&st, parent)?;
                (n.path.clone(), s.to_vec())
            };
            let path = ppath.join(name);
            // its other names' link count and change time
            Self::stale_path(&mut st, &path);
            let f = self.find(&pstack, &path)?.ok_or(Errno::ENOENT)?;
            if f.stack.is_some() {
                return Err(Errno::EISDIR);
            }
            let below = self.lower_has(&pstack, &path);
            if below {
                self.upper_dir(&mut st, &ppath)?;
            }
            if f.layer == 0 {
                unlinkat(self.fd(0), path.as_path(), UnlinkatFlags::NoRemoveDir).map_err(errno)?;
            }
            if below {
                self.whiteout(&path)?;
            }
            Self::forget_path(&mut st, &path);
            Ok(())
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.lock();
        let r = (|| {
            let (ppath, pstack) = {
                let (n, s) = Self::parent_of(&st, parent)?;
                (n.path.clone(), s.to_vec())
            };
            let path = ppath.join(name);
            let f = self.find(&pstack, &path)?.ok_or(Errno::ENOENT)?;
            let Some(stack) = &f.stack else {
                return Err(Errno::ENOTDIR);
            };
            if !self.list(&path, stack)?.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
            let below = self.lower_has(&pstack, &path);
            if below {
                self.upper_dir(&mut st, &ppath)?;
            }
            if f.layer == 0 {
                clear_dir(self.fd(0), &path)?;
                unlinkat(self.fd(0), path.as_path(), UnlinkatFlags::RemoveDir).map_err(errno)?;
            }
            if below {
                self.whiteout(&path)?;
            }
            Self::forget_path(&mut st, &path);
            Ok(())
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let mut st = self.lock();
        let r = (|| {
            let (path, _, _, pst) = self.prepare_new(&mut st, parent, link_name)?;
            symlinkat(target, self.fd(0), path.as_path()).map_err(errno)?;
            self.own(&path, req, Some(&pst))?;
            self.new_entry(&mut st, path, None)
        })();
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut st = self.lock();
        // the moved node's change time, the replaced one's link count
        for (p, n) in [(parent, name), (newparent, newname)] {
            if let Ok(path) = Self::parent_of(&st, p).map(|(d, _)| d.path.join(n)) {
                Self::stale_path(&mut st, &path);
            }
        }
        match self.do_rename(&mut st, parent, name, newparent, newname, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut st = self.lock();
        // its link count and change time
        Self::stale(&mut st, ino.0);
        let r = (|| {
            let n = Self::node(&st, ino)?;
            if n.stack.is_some() {
                return Err(Errno::EPERM);
            }
            if n.gone {
                return self.link_unnamed(&mut st, ino, newparent, newname);
            }
            self.copy_up(&mut st, ino.0)?;
            let src = Self::node(&st, ino)?.path.clone();
            let s = self.stat_in(0, &src).map_err(errno)?;
            st.by_inode.insert((s.st_dev, s.st_ino), ino.0);
            let (path, _, _, _) = self.prepare_new(&mut st, newparent, newname)?;
            linkat(
                self.fd(0),
                src.as_path(),
                self.fd(0),
                path.as_path(),
                AtFlags::empty(),
            )
            .map_err(errno)?;
            self.new_entry(&mut st, path, None)
        })();
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let r = (|| {
            let mut st = self.lock();
            let f = OFlag::from_bits_truncate(flags.0);
            let writes = f.contains(OFlag::O_WRONLY)
                || f.contains(OFlag::O_RDWR)
                || f.contains(OFlag::O_TRUNC);
            if writes && !Self::node(&st, ino)?.gone {
                self.copy_up_with(&mut st, ino.0, !f.contains(OFlag::O_TRUNC))?;
            }
            if f.contains(OFlag::O_TRUNC) {
                Self::stale(&mut st, ino.0);
            }
            let n = Self::node(&st, ino)?;
            let fd = if n.gone {
                self.reopen_unnamed(ino.0, f)?
            } else {
                self.open_in(
                    n.layer,
                    &n.path,
                    f & !(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOCTTY),
                )
                .map_err(errno)?
            };
            drop(st);
            let fh = self.add_handle(ino.0, fd);
            // every change to the layers goes through this mount, whose page cache the
            // kernel keeps coherent itself: cached pages stay valid across opens (and lower
            // files never change at all)
            // and no FLUSH on close: writes are never held here, and locks are the kernel's
            let ff = FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH;
            Ok((fh, ff))
        })();
        match r {
            Ok((fh, ff)) => reply.opened(FileHandle(fh), ff),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let r = (|| {
            let h = self.handle(fh)?;
            let mut buf = vec![0u8; size as usize];
            let mut n = 0;
            while n < buf.len() {
                match h.file.read_at(&mut buf[n..], offset + n as u64) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(ioerr(e)),
                }
            }
            buf.truncate(n);
            Ok(buf)
        })();
        match r {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let r = self.handle(fh).and_then(|h| {
            h.wrote.store(true, Ordering::Relaxed);
            h.file.write_all_at(data, offset).map_err(ioerr)
        });
        match r {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let h = self
            .files
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        if let Some(h) = h.filter(|h| h.wrote.load(Ordering::Relaxed)) {
            Self::stale(&mut self.lock(), h.ino);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.handle(fh).and_then(|h| {
            if datasync {
                h.file.sync_data()
            } else {
                h.file.sync_all()
            }
            .map_err(ioerr)
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let r = (|| {
            let st = self.lock();
            let (n, stack) = Self::parent_of(&st, ino)?;
            let list = self.list(&n.path, stack)?;
            drop(st);
            let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
            self.dirs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(fh, Arc::new(list));
            Ok(fh)
        })();
        match r {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let list = self
            .dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh.0)
            .cloned();
        let Some(list) = list else {
            return reply.error(Errno::EBADF);
        };
        // offsets: 1 is ".", 2 is "..", 3.. the merged entries; stable for the handle's life
        let mut off = offset;
        while off < 2 {
            let name = if off == 0 { "." } else { ".." };
            if reply.add(ino, off + 1, FileType::Directory, name) {
                return reply.ok();
            }
            off += 1;
        }
        for (i, (name, kind, dino)) in list.iter().enumerate().skip((off - 2) as usize) {
            if reply.add(INodeNo((*dino).max(1)), i as u64 + 3, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    /// `ls -l`'s pattern (readdir then a lookup per name) in one request per buffer: each
    /// entry carries its attributes and counts as a lookup, except `.` and `..`.
    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        let list = self
            .dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh.0)
            .cloned();
        let Some(list) = list else {
            return reply.error(Errno::EBADF);
        };
        let mut st = self.lock();
        let (dpath, dstack) = match Self::parent_of(&st, ino) {
            Ok((n, s)) => (n.path.clone(), s.to_vec()),
            Err(e) => return reply.error(e),
        };
        let mut off = offset;
        while off < 2 {
            let a = match self.stat_node(&st, ino.0) {
                Ok((s, over)) => self.attr(ino.0, &s, over),
                Err(e) => return reply.error(e),
            };
            let name = if off == 0 { "." } else { ".." };
            if reply.add(ino, off + 1, name, &TTL, &a, Generation(0)) {
                return reply.ok();
            }
            off += 1;
        }
        // each layer's copy of the directory, opened at most once for the whole batch (when
        // the first entry is statted there): an entry is then statted by its name alone, not
        // walked to from the layer's root (the state's lock is held, and every change to the
        // layers takes it: they stay put meanwhile)
        let dirs: Vec<std::cell::OnceCell<Option<OwnedFd>>> =
            (0..self.layers.len()).map(|_| Default::default()).collect();
        // (a copy that would not open is walked to as before)
        let stat_at = |l: usize, name: &OsStr, path: &Path| {
            let dir = dirs[l].get_or_init(|| {
                self.open_in(l, &dpath, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .ok()
            });
            match dir {
                Some(d) => fstatat(d, name, AtFlags::AT_SYMLINK_NOFOLLOW),
                None => self.stat_in(l, path),
            }
        };
        // An entry whose node the kernel holds with the entry and attributes this server
        // sent less than a TTL ago (minus a margin for the time the listing takes), unchanged
        // since, goes by its name alone: no stat here, no refresh there, no lookup counted.
        // The common `ls -l` right after the files were made or looked up then costs neither
        // side a stat per entry; where the guess is wrong, the kernel looks the name up.
        let now = Instant::now();
        let fresh_for = TTL.saturating_sub(Duration::from_secs(2));
        for (i, (name, kind, _)) in list.iter().enumerate().skip((off - 2) as usize) {
            let path = dpath.join(name);
            let held = st.by_path.get(&path).and_then(|nid| {
                st.nodes
                    .get(nid)
                    .filter(|n| {
                        !n.gone
                            && n.lookups > 0
                            && n.fresh_at
                                .is_some_and(|t| now.saturating_duration_since(t) < fresh_for)
                            // the name's type as listed at opendir is still the node's (a
                            // name removed and made again as another type since is sent whole)
                            && (*kind == FileType::Directory) == n.stack.is_some()
                    })
                    .map(|_| *nid)
            });
            if let Some(nid) = held {
                #[cfg(test)]
                NAMED_ALONE.fetch_add(1, Ordering::Relaxed);
                if reply.add_name(INodeNo(nid), i as u64 + 3, name, *kind) {
                    break;
                }
                continue;
            }
            // gone since the directory was opened: left out, offsets unchanged
            let Ok(Some(f)) = self.find_with(&dstack, &path, |l| stat_at(l, name, &path)) else {
                continue;
            };
            let nid = self.remember(&mut st, path, &f);
            let over = st.nodes.get(&nid).and_then(|n| n.over);
            let a = self.attr(nid, &f.st, over);
            if reply.add(INodeNo(nid), i as u64 + 3, name, &TTL, &a, Generation(0)) {
                // not sent: not a lookup the kernel will forget
                Self::unref(&mut st, nid, 1);
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match nix::sys::statvfs::fstatvfs(self.fd(0)) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let r = (|| {
            let tid = super::supervisor::SUPERVISOR_TID.load(Ordering::SeqCst);
            if name.as_bytes() == OVERRIDE_STAT.as_bytes() && tid != 0 && req.pid() == tid as u32 {
                // the owner supervisor's chown (see super::supervisor)
                return self.set_override(ino, parse_override(value).ok_or(Errno::EINVAL)?);
            }
            if hidden_xattr(name.as_bytes()) {
                return Err(Errno::EPERM);
            }
            let mut st = self.lock();
            // its change time
            Self::stale(&mut st, ino.0);
            if !Self::node(&st, ino)?.gone {
                self.copy_up(&mut st, ino.0)?;
            }
            let fd = self.xattr_fd(&st, ino)?.ok_or(Errno::EPERM)?;
            sys::fsetxattr_flags(&fd, name.as_bytes(), value, flags).map_err(ioerr)
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let r = (|| {
            if hidden_xattr(name.as_bytes()) {
                return Err(Errno::NO_XATTR);
            }
            let st = self.lock();
            let fd = self.xattr_fd(&st, ino)?.ok_or(Errno::NO_XATTR)?;
            drop(st);
            sys::fgetxattr_raw(&fd, name.as_bytes()).map_err(ioerr)
        })();
        match r {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let r = (|| {
            let st = self.lock();
            let Some(fd) = self.xattr_fd(&st, ino)? else {
                return Ok(Vec::new());
            };
            drop(st);
            let raw = sys::flistxattr(&fd).map_err(ioerr)?;
            let mut out = Vec::new();
            for n in raw.split(|&b| b == 0).filter(|n| !n.is_empty()) {
                if !hidden_xattr(n) {
                    out.extend_from_slice(n);
                    out.push(0);
                }
            }
            Ok(out)
        })();
        match r {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(e),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = (|| {
            if hidden_xattr(name.as_bytes()) {
                return Err(Errno::NO_XATTR);
            }
            let mut st = self.lock();
            // its change time
            Self::stale(&mut st, ino.0);
            if !Self::node(&st, ino)?.gone {
                self.copy_up(&mut st, ino.0)?;
            }
            let fd = self.xattr_fd(&st, ino)?.ok_or(Errno::NO_XATTR)?;
            sys::fremovexattr(&fd, name.as_bytes()).map_err(ioerr)
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel checks
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = (|| {
            let mut st = self.lock();
            let (path, _, _, pst) = self.prepare_new(&mut st, parent, name)?;
            let f = OFlag::from_bits_truncate(flags) & !(OFlag::O_NOCTTY);
            let fd = openat(
                self.fd(0),
                path.as_path(),
                f | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(mode & 0o7777),
            )
            .map_err(errno)?;
            self.own(&path, req, Some(&pst))?;
            // the fd's stat: no second walk of the path
            let s = fstat(&fd).map_err(errno)?;
            let a = self.new_entry_stat(&mut st, path.clone(), None, s)?;
            let ino = st.by_path.get(&path).copied().unwrap_or(0);
            drop(st);
            let fh = self.add_handle(ino, fd);
            Ok((a, fh))
        })();
        reply_created(reply, r);
    }

    /// `open(dir, O_TMPFILE)`: an unnamed file in the upper copy of `parent` (copied up as
    /// for a create, so a later link lands on the same filesystem), owned as create owns, as
    /// a node with no name (`gone`, reached through its handle only) until a
    /// [`Filesystem::link`] names it. Never linked, it goes with its last fd, in the upper
    /// layer as anywhere: nothing is left behind, not even after a crash of the server.
    fn tmpfile(
        &self,
        req: &Request,
        parent: INodeNo,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = (|| {
            let mut st = self.lock();
            let ppath = Self::parent_of(&st, parent)?.0.path.clone();
            if Self::node(&st, parent)?.layer != 0 {
                self.upper_dir(&mut st, &ppath)?;
            }
            let pst = self.stat_in(0, &ppath).map_err(errno)?;
            // the kernel passes the open's flags (O_TMPFILE among them); O_EXCL is kept: the
            // upper file is then as unlinkable as the kernel keeps the FUSE one. Read and
            // write whatever the mode asked: this handle is all a later open of the file
            // through /proc/PID/fd can be served from (see reopen_unnamed)
            let f = OFlag::from_bits_truncate(flags)
                & !(OFlag::O_TMPFILE
                    | OFlag::O_CREAT
                    | OFlag::O_TRUNC
                    | OFlag::O_NOCTTY
                    | OFlag::O_ACCMODE);
            let fd = openat(
                self.fd(0),
                rel(&ppath),
                f | OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(mode & 0o7777),
            )
            .map_err(errno)?;
            if let Some((uid, gid)) = self.new_owner(req, Some(&pst))? {
                nix::unistd::fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                    .map_err(errno)?;
            }
            let s = fstat(&fd).map_err(errno)?;
            let ino = st.next_ino;
            st.next_ino += 1;
            st.nodes.insert(
                ino,
                Node {
                    path: PathBuf::new(),
                    layer: 0,
                    stack: None,
                    over: None,
                    lookups: 1,
                    gone: true,
                    fresh_at: None,
                },
            );
            let a = self.attr(ino, &s, None);
            drop(st);
            Ok((a, self.add_handle(ino, fd)))
        })();
        reply_created(reply, r);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let r = self.handle(fh).and_then(|h| {
            h.wrote.store(true, Ordering::Relaxed);
            nix::fcntl::fallocate(
                &h.file,
                nix::fcntl::FallocateFlags::from_bits_truncate(mode),
                offset as i64,
                length as i64,
            )
            .map_err(errno)
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: fuser::ReplyLseek,
    ) {
        let r = self.handle(fh).and_then(|h| {
            let w = match whence {
                libc::SEEK_DATA => nix::unistd::Whence::SeekData,
                libc::SEEK_HOLE => nix::unistd::Whence::SeekHole,
                libc::SEEK_END => nix::unistd::Whence::SeekEnd,
                libc::SEEK_CUR => nix::unistd::Whence::SeekCur,
                _ => nix::unistd::Whence::SeekSet,
            };
            nix::unistd::lseek(&h.file, offset, w).map_err(errno)
        });
        match r {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(e),
        }
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Overlay>();
    let _ = OsString::from_vec(Vec::new());
}
