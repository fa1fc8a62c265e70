//! rbox-registry: images from and to OCI distribution registries.
//!
//! Owns everything between a reference typed by the user and bytes on the wire:
//! registries.conf (short-name search list, mirrors, insecure and blocked registries,
//! [`config`]), credentials in auth.json and docker's config.json ([`auth`]), TLS roots from the
//! system bundle and `certs.d` ([`tls`]), the HTTP client with the Bearer/Basic token dance and
//! retries ([`client`]), manifests and platform choice ([`manifest`], [`platform`]), and the
//! [`pull`](mod@pull) and [`push`](mod@push) flows. It does not own the store: layers are
//! streamed into [`rbox_storage::Store::pull_layer`], which verifies and unpacks them in one
//! pass, and images are recorded with [`rbox_storage::Store::commit_image`]. Rendering progress
//! is the caller's business through the [`Progress`] trait.

pub mod auth;
pub mod challenge;
pub mod client;
pub mod config;
pub mod manifest;
pub mod platform;
pub mod progress;
pub mod pull;
pub mod push;
pub mod tls;

use std::path::PathBuf;

pub use auth::{login, logout, Credentials};
pub use platform::Platform;
pub use progress::{NoProgress, Progress};
pub use pull::{inspect_remote, list_tags, pull, search, PullOptions, PullPolicy, RemoteManifest};
pub use push::{push, PushOptions, PushReport};
pub use rbox_storage::reference::{Reference, ReferenceError};
pub use rbox_storage::Digest;

/// How to reach registries: the options `pull`, `push`, `login` and `manifest inspect` share.
#[derive(Debug, Clone, Default)]
pub struct TransportOptions {
    /// `--tls-verify`: `Some(false)` allows plain HTTP and unverified TLS for every registry,
    /// `Some(true)` requires verified TLS even where registries.conf says `insecure = true`,
    /// `None` follows registries.conf.
    pub tls_verify: Option<bool>,
    /// `--cert-dir`: a directory of `*.crt` CAs (and `*.cert`/`*.key` client pairs) used instead
    /// of `certs.d/<host>`.
    pub cert_dir: Option<PathBuf>,
    /// `--authfile`: the only credentials file read (and written by login).
    pub authfile: Option<PathBuf>,
    /// `--creds USER:PASS` style credentials that override any stored ones.
    pub credentials: Option<Credentials>,
    /// registries.conf to read instead of the usual search (tests, `CONTAINERS_REGISTRIES_CONF`).
    pub registries_conf: Option<PathBuf>,
}

/// Run `f` on every item with up to `jobs` threads (this one included). The first failure
/// sets the stop flag `f` is given, so the others give up at their next check, and it is the
/// error returned (not the "stopped" of the threads it interrupted).
pub(crate) fn for_each_parallel<T: Sync>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T, &std::sync::atomic::AtomicBool) -> Result<()> + Sync,
) -> Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_err: std::sync::Mutex<Option<Error>> = std::sync::Mutex::new(None);
    let worker = || loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
            return;
        };
        if let Err(e) = f(item, &stop) {
            stop.store(true, Ordering::Relaxed);
            let mut slot = first_err.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(e);
            }
            return;
        }
    };
    // The other threads' ids, and how many of them have finished: a Ctrl-C reaches this
    // thread, which wakes them out of a read that a stalled registry would keep them in (up
    // to the read timeout's minute).
    let tids = std::sync::Mutex::new(Vec::new());
    let spawned = jobs.min(items.len()).saturating_sub(1);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        for _ in 0..spawned {
            let done = done_tx.clone();
            let (tids, worker) = (&tids, &worker);
            s.spawn(move || {
                if let Ok(mut t) = tids.lock() {
                    t.push(rbox_storage::interrupt::thread_id());
                }
                worker();
                let _ = done.send(());
            });
        }
        // (a worker that panics drops its sender unsent: the wait below ends all the same)
        drop(done_tx);
        worker();
        let mut finished = 0;
        while finished < spawned {
            match done_rx.recv_timeout(std::time::Duration::from_millis(20)) {
                Ok(()) => finished += 1,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if rbox_storage::interrupt::requested() {
                        if let Ok(t) = tids.lock() {
                            rbox_storage::interrupt::wake(&t);
                        }
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    match first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Errors of registry operations. Messages are one lowercase sentence.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    // Not `#[from]`/transparent: that would expose the store error's own `source()` and the
    // binary's `{:#}` would print its cause twice.
    #[error("{0}")]
    Store(rbox_storage::Error),
    // The cause is part of the message and deliberately not a `source()`: the binary prints
    // the chain with `{:#}`, which would repeat it.
    #[error("{context}: {error}")]
    Io {
        context: String,
        error: std::io::Error,
    },
    #[error("parse `{path}`: {message}")]
    Config { path: PathBuf, message: String },
    #[error("parse credentials file `{path}`: {message}")]
    AuthFile { path: PathBuf, message: String },
    #[error("registry `{0}` is blocked in registries.conf")]
    Blocked(String),
    #[error(
        "short name `{0}` cannot be resolved: no unqualified-search-registries are defined in \
         registries.conf; use a fully qualified name such as docker.io/library/{0}"
    )]
    NoSearchRegistries(String),
    #[error("invalid platform `{0}`: expected os/arch[/variant]")]
    InvalidPlatform(String),
    #[error("read certificates `{path}`: {message}")]
    Certificates { path: PathBuf, message: String },
    #[error("{method} {url}: {message}")]
    Http {
        method: &'static str,
        url: String,
        message: String,
        /// A failure worth retrying (reset, timeout, 5xx).
        transient: bool,
    },
    #[error("{url}: the registry answered http {status}{}", detail_suffix(.detail))]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("authentication required for `{registry}`{}", detail_suffix(.detail))]
    Unauthorized { registry: String, detail: String },
    #[error("access denied to `{registry}/{repository}`{}", detail_suffix(.detail))]
    Denied {
        registry: String,
        repository: String,
        detail: String,
    },
    #[error("{reference}: manifest unknown")]
    ManifestUnknown { reference: String },
    #[error("{registry}/{repository}: repository unknown")]
    RepositoryUnknown {
        registry: String,
        repository: String,
    },
    #[error("{registry}/{repository}: blob {digest} unknown")]
    BlobUnknown {
        registry: String,
        repository: String,
        digest: Digest,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("unsupported manifest media type `{0}`")]
    UnsupportedMediaType(String),
    #[error("invalid manifest from `{reference}`: {message}")]
    InvalidManifest { reference: String, message: String },
    #[error("no image for platform {wanted} in `{reference}` (it has: {available})")]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("layer {digest}: {error}")]
    Layer { digest: Digest, error: Box<Error> },
    #[error("{0}")]
    Usage(String),
    // Podman's words for `--pull=never` and a missing image, which scripts match.
    #[error("{0}: image not known")]
    PullNever(String),
    #[error("{}", attempts_text(.reference, .attempts))]
    AllFailed {
        reference: String,
        attempts: Vec<(String, Error)>,
    },
}

fn detail_suffix(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(": {d}")
    }
}

fn attempts_text(reference: &str, attempts: &[(String, Error)]) -> String {
    match attempts {
        [(_, only)] => only.to_string(),
        _ => {
            let parts: Vec<String> = attempts.iter().map(|(c, e)| format!("{c}: {e}")).collect();
            format!(
                "pull `{reference}` from every candidate: {}",
                parts.join("; ")
            )
        }
    }
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            error: source,
        }
    }

    /// True for failures worth trying again (connection reset, timeout, http 5xx or 429).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Http { transient, .. } => *transient,
            Error::Status { status, .. } => *status >= 500 || *status == 429,
            Error::Io { error, .. } => client::transient_io(error),
            Error::Store(rbox_storage::Error::Io { error, .. }) => client::transient_io(error),
            _ => false,
        }
    }

    /// True when another candidate (search registry, mirror) may still succeed: the image is
    /// not there, we may not see it, or the registry cannot be reached. Integrity failures
    /// (digest mismatch) and store errors stop the search.
    pub fn try_next_source(&self) -> bool {
        match self {
            Error::ManifestUnknown { .. }
            | Error::RepositoryUnknown { .. }
            | Error::BlobUnknown { .. }
            | Error::Unauthorized { .. }
            | Error::Denied { .. }
            | Error::Http { .. }
            | Error::Status { .. }
            | Error::Protocol(_)
            | Error::Blocked(_)
            | Error::NoMatchingPlatform { .. } => true,
            Error::Io { error, .. } => client::transient_io(error),
            _ => false,
        }
    }
}

impl From<rbox_storage::Error> for Error {
    fn from(e: rbox_storage::Error) -> Error {
        Error::Store(e)
    }
}

/// `Result` with the registry [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The user agent rbox sends.
pub(crate) const USER_AGENT: &str = concat!("rbox/", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod parallel_tests {
    use std::io::Read;

    /// A stop asked for while a worker thread (not the one the signal reaches) is blocked in a
    /// read that nothing else would end: the waiting thread wakes it (EINTR) and the run ends.
    /// (nextest runs each test in a process of its own: the process-wide stop request and the
    /// wake handler stay in it.)
    #[test]
    fn a_stop_wakes_a_worker_blocked_in_a_read() {
        rbox_storage::interrupt::catch_wake_signal().unwrap();
        let main = std::thread::current().id();
        let (r, _w) = std::io::pipe().unwrap();
        let r = std::sync::Mutex::new(Some(r));
        let started = std::time::Instant::now();
        std::thread::spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(200));
            rbox_storage::interrupt::request();
        });
        let res = super::for_each_parallel(&[0, 1], 2, |_, _| {
            if std::thread::current().id() == main {
                // long enough for the worker to take the other item
                std::thread::sleep(std::time::Duration::from_millis(100));
                return Ok(());
            }
            // the worker: a read of a pipe no one writes to
            let mut reader = r.lock().unwrap().take().expect("one worker");
            let mut b = [0u8; 1];
            match reader.read(&mut b) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(super::Error::Io {
                    context: "read".into(),
                    error: e,
                }),
                other => panic!("the read ended otherwise: {other:?}"),
            }
        });
        assert!(res.is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
