//! The FUSE overlay driver's place: an overlay served by rbox's own FUSE server (on the
//! `fuser` crate), for hosts where kernel overlayfs cannot be mounted in a user namespace
//! (old kernels, stores on filesystems overlay refuses as a layer). It is not written yet:
//! until it is, [`super::Driver`] has no variant for it, nothing selects it, and such hosts
//! use the copy driver.
//!
//! When it lands it owns what is specific to it: the server's view of the layers (lookups
//! through the same layer directories as [`super::overlay`], whiteouts and opaque
//! directories as the store writes them), and a [`super::Rootfs`] variant naming the FUSE
//! mount. The server process itself, and tying its life to the container's, stay the
//! binary's (its monitor). See PLATFORM.md's FUSE section for what the kernel allows.
