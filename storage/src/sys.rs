//! Raw syscalls nix does not wrap: extended attributes on open file descriptors.
//!
//! The only module of the crate allowed `unsafe` (the workspace denies it everywhere else);
//! one small wrapper per syscall, each unsafe block with its SAFETY argument.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// `fsetxattr(2)` on an open file or directory.
pub fn fsetxattr<F: AsFd>(fd: F, name: &str, value: &[u8]) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the fd is valid for the call (borrowed), `name` is a NUL-terminated string that
    // outlives the call, and `value` points to `value.len()` readable bytes.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_fd().as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[allow(dead_code)] // used by tests; kept next to fsetxattr
/// `fgetxattr(2)`: the value of `name`, or `None` when the attribute is absent.
pub fn fgetxattr<F: AsFd>(fd: F, name: &str) -> io::Result<Option<Vec<u8>>> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: the fd is valid for the call, `name` is NUL-terminated, and `buf` has
    // `buf.len()` writable bytes; the kernel writes at most that many.
    let r = unsafe {
        libc::fgetxattr(
            fd.as_fd().as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENODATA) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    buf.truncate(r as usize);
    Ok(Some(buf))
}
