//! Progress events of pulls and pushes. The library only reports; the binary renders (bars on a
//! terminal, plain lines otherwise, nothing with `-q`). Every method has an empty default, and
//! implementations must be `Sync`: layers are transferred from several threads at once.

use crate::Digest;

/// Why a blob was not transferred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The layer (pull) or blob (push) is already there.
    AlreadyExists,
    /// Push: the registry mounted it from another repository.
    Mounted { from: String },
}

pub trait Progress: Sync {
    /// A candidate reference is being tried (`Trying to pull docker.io/library/alpine:latest...`).
    fn trying(&self, _reference: &str) {}
    /// A warning or a note worth showing (e.g. a platform mismatch).
    fn note(&self, _message: &str) {}
    /// The blobs that will be transferred: count and total bytes, once known.
    fn start(&self, _blobs: usize, _total_bytes: u64) {}
    /// A blob transfer begins (`size` from the manifest).
    fn blob_start(&self, _digest: &Digest, _size: u64) {}
    /// `bytes` more bytes of `digest` went over the wire (may be called from any thread).
    fn blob_bytes(&self, _digest: &Digest, _bytes: u64) {}
    /// A transfer is starting over after a failure: bytes counted so far are void.
    fn blob_restart(&self, _digest: &Digest) {}
    /// A blob is complete (downloaded, verified, unpacked; or uploaded).
    fn blob_done(&self, _digest: &Digest) {}
    /// A blob needed no transfer.
    fn blob_skipped(&self, _digest: &Digest, _why: &Skip) {}
    /// The config blob is being copied.
    fn config(&self, _digest: &Digest) {}
    /// The manifest is being written (to the store or the registry).
    fn writing_manifest(&self) {}
}

/// Progress that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
