//! rbox-storage: the image store of rbox.
//!
//! Owns content-addressed blobs, unpacked layers (one directory per diff id, shared by every
//! image that has it), image records and their names, per-container layer directories, layers
//! written from a container's changes ([`changes`]: an upper as an OCI layer tar, a union as one
//! flat tar, images derived from a base), and docker-archive / oci-archive / rootfs-tarball import and export, and the storage drivers
//! that assemble a container's root from its layers ([`mount`]: overlay, copy, the place of
//! the FUSE overlay) with the overlay probe's files, and the stop request its byte streams obey
//! on Ctrl-C ([`interrupt`]). It does not own when and in which process
//! a root is mounted (the `rbox` binary's mount plan), reference grammar (`reference.rs`, the
//! registry helper's) nor the network side of pulls (crate `rbox-registry`).
//!
//! # Layout under the store root
//!
//! ```text
//! blobs/sha256/<hex>          verified blobs (manifests, configs, compressed layers); written to
//!                             tmp/, fsynced, renamed into place
//! layers/<diffid-hex>/diff/   the unpacked layer: the overlay lowerdir (`Store::layer_path`)
//! layers/<diffid-hex>/layer.json   {diff_id, blob, size}; the whole layer dir appears by one rename
//! images/<id-hex>.json        one ImageRecord per image (id = config digest), replaced atomically
//! names/<encoded name>        one small file per name holding the image id hex; lock-free to read
//!                             (replaced by rename), `/` written as `%2F` and `%` as `%25`
//! <upper root>/<id>/          upper/ and work/ instead, when the store's upper root is set
//!                             (a store on a network filesystem, `Store::set_upper_root`;
//!                             recorded in the container's layer.json)
//! containers/<id>/            upper/, work/ (overlay only), rootfs/ (copy driver only: its
//!                             tree), empty/ (overlay's lower dir for an image without
//!                             layers), layer.json {image_id, layers}; and the binary's files
//!                             below
//! locks/                      flock files: layer-<hex>, image-<hex>, name-<encoded>, and
//!                             pin-<hex> (held shared by a process that unpacked a layer it has
//!                             not yet committed into an image, so `rmi` elsewhere keeps it)
//! build-cache/<key-hex>     the image id a cached build step produced (`build_cache.rs`)
//! build-cache/mounts/<hex>  the directories of `RUN --mount=type=cache`, by their id's digest
//! build-cache/notes/<name>  what the builder remembers between builds (`file-digests`: the
//!                             content digests of context files by path and stamp)
//! tmp/                        staging on the same filesystem; entries are `<pid>.<starttime>.<n>.<what>`
//!                             and entries of dead processes are removed by the next write
//! tmp/<stamp>.overlay-probe/  the overlay probe's scratch: l/ u/ w/ (lower, upper, work) and m/
//!                             (mount point), removed after the probe, or by the sweep when the
//!                             probe was killed (older rbox named it `tmp/probe-<pid>`; the sweep
//!                             removes those of dead processes too)
//! volumes/<name>/_data        a volume's content: what containers mount (`Store::volume_data`)
//! volumes/<name>/volume.json  its VolumeRecord (labels, options, created, anonymous, copy-up);
//!                             a volume appears by one rename of a directory made in tmp/
//! locks/volume-<name>         held while a volume is created, populated or removed
//! secrets/<id>/secret.json    a secret's SecretRecord (name, labels, created); the file driver's
//! secrets/<id>/data           data beside it, mode 0600; the directory (0700) appears by one
//!                             rename from tmp/ and goes through tmp/ on removal
//! locks/secrets               held while a secret is created or removed (names are unique)
//! overlay-probe               the overlay probe's memo: `<kernel release> ok|no`; probed again on
//!                             another kernel, and by every `rbox info` (`Store::overlay_probe_memo`)
//! ```
//!
//! The `rbox` binary keeps files of its own beside these, every path named by its `layout`
//! module (`src/layout.rs`, whose unit test checks this list):
//!
//! ```text
//! containers/<id>/container.json   the container record (spec, name, state), replaced atomically
//!                                  through container.json.tmp
//! containers/<id>/config.json      the container's OCI runtime spec (process, root, mounts,
//!                                  namespaces, ...): what the runtime runs at each start
//! containers/<id>/ctr.log          a detached container's output (`rbox logs`)
//! containers/<id>/monitor.log      what the monitor of a detached container logs
//! containers/<id>/hosts, hostname, resolv.conf
//!                                  the container's /etc files, bind-mounted into it
//! containers/<id>/secrets/<n>      the copy of the container's nth `--secret`, made at create
//!                                  (mode and owner as asked; the directory 0700)
//! container-names/<name>           one small file per container name holding its id; read
//!                                  lock-free (completion lists this directory)
//! mnt/                             the one mount point every container assembles its root on,
//!                                  each in its own mount namespace
//! cache/seccomp/<hash>.bpf         compiled seccomp programs, by the hash of their rules and
//!                                  libseccomp's version
//! run/                             the runtime directory when `/tmp/rbox-run-UID` is another
//!                                  user's
//! ```
//!
//! and in the runtime directory (`--runroot`, else `$XDG_RUNTIME_DIR/rbox`, else
//! `/tmp/rbox-run-UID`, else `run/` above; volatile, 0700):
//!
//! ```text
//! containers/<id>.json        the live state of a container's current start: pid, start time,
//!                             boot id, monitor pid
//! pause.pid                   the pid of the pause process keeping rbox's user namespace
//! pause.stamp                 its pid again, with what /etc/subuid and /etc/subgid were
//! ```
//!
//! A read-only additional image store ([`Store::open_read_only`]) has this same layout; it is
//! only read (image records, names, blobs, layer directories as overlay lowers), never
//! written, locked or chmodded: every write of a handle goes to its own root.
//!
//! The root is mode 0700 (made so on open): layer files keep their setuid bits and images
//! their world-writable directories, so no other user may reach anything below it.
//!
//! There is no global database: a layer is committed under its own lock, an image record under
//! its image lock, a name under its name lock. Readers (image listings, lookups, completion)
//! take no lock at all, since every file they read is replaced by an atomic rename.
//!
//! Limits on hostile input: one layer may unpack to at most [`DEFAULT_MAX_LAYER_SIZE`] (64 GiB)
//! of regular files by apparent size, checked from each tar header before its data is written
//! (configurable per handle, [`Store::set_max_layer_size`]; the `rbox` binary reads
//! `RBOX_MAX_LAYER_SIZE`). Holes of sparse entries and block-aligned runs of zeros are not
//! written, so they take no disk. JSON read from archives is capped before parsing
//! ([`archive::MANIFEST_LIMIT`] for manifests, indexes and `manifest.json`,
//! [`archive::CONFIG_LIMIT`] for configs).
//!
//! Durability: blobs, layer.json, image records and names are fsynced before their rename.
//! The files inside an unpacked layer are not synced one by one (neither does
//! containers/storage; it would cost a pull most of its speed), so a power cut, unlike a
//! killed process or a full disk, can leave a committed layer with lost file data.

pub mod archive;
pub mod build_cache;
pub mod changes;
pub mod container;
pub mod digest;
pub mod images;
pub mod interrupt;
pub mod layer;
mod lock;
pub mod mount;
pub mod placement;
pub mod reference;
pub mod secret;
mod store;
mod sys;
pub mod volume;

use std::path::PathBuf;

pub use archive::{apply_change, rfc3339_now, DirFormat, Format, ImportOptions, SaveLayers};
pub use changes::{ManifestFormat, RecompressedBlob};
pub use container::{ContainerDir, Detached, Remover};
pub use digest::{Digest, Hasher};
pub use images::{list_image_names_fast, meant_name, HistoryEntry, ImageRecord, LayerRef};
pub use layer::{Compression, LayerInfo};
pub use mount::{Driver, Rootfs};
pub use secret::{validate_secret_name, SecretRecord};
pub use store::{
    own_start_time, parse_size, remove_tree, Store, WarningSink, DEFAULT_MAX_LAYER_SIZE,
};
pub use sys::flistxattr;
/// What `rbox build --squash` marks opaque directories with.
pub use sys::fsetxattr;
/// Also what `rbox info` reads file capabilities with: one wrapper for both crates.
pub use sys::lgetxattr;
pub use volume::{validate_volume_name, VolumeRecord};

/// The ids usable in the current user namespace: uids `0..uid_count`, gids `0..gid_count`.
///
/// Unpacking folds any owner outside that range to 0 instead of failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub uid_count: u32,
    pub gid_count: u32,
}

impl IdMap {
    /// Every id (real root in the initial namespace).
    pub fn full() -> IdMap {
        IdMap {
            uid_count: u32::MAX,
            gid_count: u32::MAX,
        }
    }

    /// Maps a uid from an image to one usable here.
    pub fn uid(&self, id: u64) -> u32 {
        if id < u64::from(self.uid_count) {
            id as u32
        } else {
            0
        }
    }

    /// Maps a gid from an image to one usable here.
    pub fn gid(&self, id: u64) -> u32 {
        if id < u64::from(self.gid_count) {
            id as u32
        } else {
            0
        }
    }
}

/// This process's id maps, `/proc/self/uid_map` and `gid_map` as text (empty where
/// unreadable). A run asks for them in many places (rbox's mode, the host ids, whether an
/// id is mapped, whether only one is); they are read once per user namespace: a namespace's
/// maps are written once and never change (user_namespaces(7)), but this process moves to
/// another namespace when it enters rbox's, so the text is kept with the identity of the
/// namespace it was read in. That identity (a readlink(2) of `/proc/self/ns/user`) is checked
/// again only where the namespace may have changed since: in another process (a child
/// cloned into a namespace of its own shares this memory, or copied it), or after
/// [`id_maps_changed`], which every setns(2) and unshare(2) of a user namespace calls.
/// Maps not written yet (between unshare and their writes) are not kept.
pub fn own_id_maps() -> (String, String) {
    use std::sync::Mutex;
    struct Cached {
        pid: u32,
        generation: u64,
        ns: PathBuf,
        maps: (String, String),
    }
    static CACHE: Mutex<Option<Cached>> = Mutex::new(None);
    let read = || {
        let r = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        (r("/proc/self/uid_map"), r("/proc/self/gid_map"))
    };
    use std::sync::atomic::Ordering;
    let (pid, generation) = (std::process::id(), NS_GENERATION.load(Ordering::SeqCst));
    // never waits: the init of a container reads them too, cloned from a parent whose other
    // threads may have held the lock at that moment
    let Some(mut cache) = lock_now(&CACHE) else {
        return read();
    };
    if let Some(c) = &*cache {
        if c.pid == pid && c.generation == generation {
            return c.maps.clone();
        }
    }
    let Ok(ns) = std::fs::read_link("/proc/self/ns/user") else {
        return read();
    };
    if let Some(c) = &mut *cache {
        if c.ns == ns {
            (c.pid, c.generation) = (pid, generation);
            return c.maps.clone();
        }
    }
    let maps = read();
    if !maps.0.is_empty() && !maps.1.is_empty() {
        *cache = Some(Cached {
            pid,
            generation,
            ns,
            maps: maps.clone(),
        });
    }
    maps
}

/// `m`'s lock, or `None` while another thread holds it: a process-wide cache that a child
/// forked while another thread held its lock must not wait for forever (a poisoned lock is
/// taken as it is).
pub(crate) fn lock_now<T>(m: &std::sync::Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Bumped by [`id_maps_changed`]: see [`own_id_maps`].
static NS_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// This process may have joined or made another user namespace (after a setns(2) or
/// unshare(2)): the next [`own_id_maps`] checks which namespace it is in.
pub fn id_maps_changed() {
    NS_GENERATION.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// Errors of the image store. Messages are one lowercase sentence, paths in backticks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The cause is part of the message and deliberately not an error `source`: anyhow's
    // `{:#}` would print it a second time.
    #[error("{context}: {error}")]
    Io {
        context: String,
        error: std::io::Error,
    },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("invalid digest `{0}`")]
    InvalidDigest(String),
    #[error("blob {0} not found in the store")]
    BlobNotFound(Digest),
    #[error("layer {0} not found in the store")]
    LayerNotFound(Digest),
    // Podman's words ("NAME: image not known"), which scripts match.
    #[error("{0}: image not known")]
    ImageNotFound(String),
    #[error("image name `{name}` is ambiguous: {candidates:?}")]
    AmbiguousImage {
        name: String,
        candidates: Vec<String>,
    },
    #[error(
        "image {image} is in use by containers {containers:?} (use force to remove it anyway)"
    )]
    ImageInUse {
        image: String,
        containers: Vec<String>,
    },
    #[error("invalid image name `{0}`")]
    InvalidName(String),
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
    #[error("refusing layer entry `{path}`: {reason}")]
    HostileEntry { path: String, reason: String },
    #[error("invalid layer: {0}")]
    InvalidLayer(String),
    /// `layer` is the digest and a space, or empty when not known (an import).
    #[error(
        "layer {layer}unpacks to more than {} (at `{entry}`): raise the limit with \
         RBOX_MAX_LAYER_SIZE (0 for none)",
        human_size(*limit)
    )]
    LayerTooLarge {
        layer: String,
        limit: u64,
        entry: String,
    },
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    #[error("invalid image config: {0}")]
    InvalidConfig(String),
    #[error("invalid archive: {0}")]
    InvalidArchive(String),
    #[error(
        "not a docker-archive or oci-archive: expected a tar (plain, gzip or zstd compressed) \
         holding manifest.json or index.json"
    )]
    NotAnArchive,
    #[error("{what} is too large: {size} bytes, at most {} allowed", human_size(*limit))]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("invalid change `{0}`")]
    InvalidChange(String),
    #[error("open image store `{}`: no images/ directory: not an rbox store", .0.display())]
    NotAStore(PathBuf),
    /// An image of a read-only additional store, which rmi, tag and untag may not change.
    #[error("image {image} is in the read-only image store `{}`: it can only be changed there", store.display())]
    ReadOnlyImage { image: String, store: PathBuf },
    #[error("container {0} already exists")]
    ContainerExists(String),
    #[error("container {0} not found in the store")]
    ContainerNotFound(String),
    // Podman's words for the three, which scripts match
    #[error("no volume with name \"{0}\" found: no such volume")]
    VolumeNotFound(String),
    #[error("volume with name {0} already exists: volume already exists")]
    VolumeExists(String),
    #[error("names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*: invalid argument")]
    InvalidVolumeName(String),
    // Podman's words for the secret errors, which scripts match
    #[error("no secret with name or id \"{0}\": no such secret")]
    SecretNotFound(String),
    #[error("{0}: secret name in use")]
    SecretExists(String),
    #[error("only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]: {0}: invalid secret name")]
    InvalidSecretName(String),
    #[error("more than one result secret with prefix {0}: secret is ambiguous")]
    SecretAmbiguous(String),
    #[error(
        "secret data must be larger than 0 and less than {} bytes",
        secret::MAX_DATA
    )]
    SecretSize,
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, error: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            error,
        }
    }

    pub(crate) fn hostile(path: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::HostileEntry {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// `Result` with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds `context` to io errors: `res.ctx(|| format!("read `{}`", p.display()))`.
pub(crate) trait IoContext<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| Error::io(f(), std::io::Error::from(e)))
    }
}

/// `4194304` as `4 MiB`, `1000` as `1000 bytes`: limits in error text.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = None;
    let mut v = n;
    for u in UNITS {
        if v < 1024 || v % 1024 != 0 {
            break;
        }
        v /= 1024;
        unit = Some(u);
    }
    match unit {
        Some(u) => format!("{v} {u}"),
        None => format!("{n} bytes"),
    }
}

/// Formats a path for error text.
pub(crate) fn bt(p: &std::path::Path) -> String {
    format!("`{}`", p.display())
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Store>();
    f::<Error>();
    let _: Option<PathBuf> = None;
}
