//! rbox-netns: user-mode networking for a network namespace that an unprivileged user owns.
//!
//! It parses published ports (`-p`, [`parse_publish`]) and backend options
//! (`--network=pasta:...|slirp4netns:...`, [`Backend`]), finds the installed helpers
//! ([`installed`]), and starts one helper process (pasta or slirp4netns) that bridges the
//! namespace of a target process to the host ([`start`] -> [`Helper`]), forwarding the
//! published ports. Helpers are driven through file descriptors (ready-fd, exit-fd, pidfds),
//! never by sleeping. It prints nothing: failures are [`Error`]s, warnings are returned.
//!
//! rbox's own port forwarder ([`bind`] -> [`Bound::start`] -> [`Forwarder`]) serves published
//! ports from a thread of the caller, keeping each client's address. [`names`] says which DNS
//! server and which host address a bridged container can reach; where that is pasta's
//! UDP-only DNS forwarder, rbox's relay ([`listen_dns`] -> [`DnsListener::serve`]) serves
//! DNS over TCP at the same address.
//!
//! Not here: choosing `--network` modes other than the two bridges (none, host, container:,
//! ns:), writing resolv.conf and /etc/hosts; the rbox binary owns those.

mod backend;
mod dns;
mod forward;
mod helper;
pub mod names;
mod netlink;
mod pasta;
mod ports;
mod slirp4netns;
mod sys;

use std::io;

pub use backend::{
    default_backend_name, installed, Backend, Installed, PastaOptions, PortHandler,
    Slirp4netnsOptions, Tool,
};
pub use dns::{listen_dns, DnsListener};
pub use forward::{bind, Bound, Forwarder, UDP_IDLE};
pub use helper::{spawn, start, Helper, Starting};
pub use ports::{parse_publish, pick_host_ports, PortMapping, Proto};

/// Everything this crate can fail with; each displays as one line that says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid port spec `{spec}`: {reason}")]
    InvalidPublish { spec: String, reason: String },
    #[error("invalid network `{spec}`: {reason}")]
    InvalidNetwork { spec: String, reason: String },
    #[error(
        "{helper} is not installed: install the `{package}` package or put `{helper}` on $PATH (or run with --network=none or --network=host)"
    )]
    HelperMissing {
        helper: &'static str,
        package: &'static str,
    },
    #[error("{helper} cannot use `/dev/net/tun`: {message}: make it mode 0666 (as root: `chmod 666 /dev/net/tun`) or load the tun module")]
    TunUnusable {
        helper: &'static str,
        message: String,
    },
    #[error("start {helper}: {message}")]
    HelperFailed {
        helper: &'static str,
        message: String,
    },
    #[error("publish {}: host port {}/{} is already in use", .port, .port.host_port, .port.proto)]
    PortInUse { port: PortMapping },
    #[error("publish {}: binding host port {} needs root or a lower sysctl net.ipv4.ip_unprivileged_port_start", .port, .port.host_port)]
    PrivilegedPort { port: PortMapping },
    #[error("publish {port}: {reason}")]
    Unpublishable { port: PortMapping, reason: String },
    #[error("forward published ports: {message}")]
    Forwarder { message: String },
    #[error("serve DNS over TCP at {addr}: {message}")]
    DnsRelay {
        addr: std::net::IpAddr,
        message: String,
    },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}
