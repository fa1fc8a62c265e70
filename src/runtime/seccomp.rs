//! Seccomp: the profile format Podman reads (containers-common's `seccomp.json`), rbox's
//! built-in default (the same rules as Podman's default profile), resolving a profile for this
//! architecture, kernel and the container's capabilities, and compiling the result to a BPF
//! program with libseccomp. Everything here runs in the parent before the container is
//! cloned; the child only installs the finished program (`sys::seccomp_install`, called from
//! `process.rs`). Which profile a container gets is decided by `spec.rs` (kept in its
//! [`Spec`](crate::state::Spec) for inspect); the filter resolved from it at create travels
//! in the container's OCI spec (`linux.seccomp`, [`Filter::to_oci`]), from which every start
//! and `exec` compiles it ([`Filter::from_oci`], [`compiled`]).

use std::collections::BTreeSet;
use std::io::{Read, Seek};
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use serde::{Deserialize, Deserializer, Serialize};

/// Which filter a container runs under (`--security-opt seccomp=...`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// rbox's built-in default, Podman's default profile
    #[default]
    Default,
    /// `seccomp=unconfined`: no filter
    Unconfined,
    /// `seccomp=PATH`: the profile read from PATH when the container was created
    Profile { path: String, profile: Profile },
}

impl Mode {
    /// The `--security-opt` that chose this mode, for `inspect` (none for the default).
    pub fn security_opt(&self) -> Option<String> {
        match self {
            Mode::Default => None,
            Mode::Unconfined => Some("seccomp=unconfined".into()),
            Mode::Profile { path, .. } => Some(format!("seccomp={path}")),
        }
    }
}

/// `--security-opt fakeroot`: whether the container's filter fakes the calls a package
/// manager makes as root ([`with_fakeroot`]). `auto` (what `rbox build` gives its RUN steps)
/// fakes them only where the container's user namespace maps a single id, the one place
/// where those calls cannot really succeed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fakeroot {
    #[default]
    Off,
    On,
    Auto,
}

impl Fakeroot {
    pub fn is_off(&self) -> bool {
        *self == Fakeroot::Off
    }

    /// Whether a container whose namespace maps a single id (`single_id`) gets the fake calls.
    pub fn applies(self, single_id: bool) -> bool {
        match self {
            Fakeroot::Off => false,
            Fakeroot::On => true,
            Fakeroot::Auto => single_id,
        }
    }

    /// The `--security-opt` that chose this, for `inspect` (none when off).
    pub fn security_opt(self) -> Option<String> {
        match self {
            Fakeroot::Off => None,
            Fakeroot::On => Some("fakeroot".into()),
            Fakeroot::Auto => Some("fakeroot=auto".into()),
        }
    }
}

/// The calls [`with_fakeroot`] turns into successes that do nothing: the chown family
/// ([`FAKED_CHOWNS`]) and the set*id family, with the 32-bit names of architectures that
/// have them (libseccomp resolves each name per architecture of the filter and skips those
/// an architecture lacks).
const FAKED_SET_IDS: &[&str] = &[
    "setuid",
    "setuid32",
    "setgid",
    "setgid32",
    "setreuid",
    "setreuid32",
    "setregid",
    "setregid32",
    "setresuid",
    "setresuid32",
    "setresgid",
    "setresgid32",
    "setfsuid",
    "setfsuid32",
    "setfsgid",
    "setfsgid32",
    "setgroups",
    "setgroups32",
];

/// The chown family, faked by [`with_fakeroot`] unless the FUSE overlay's owner supervisor
/// takes it (and records the owner).
const FAKED_CHOWNS: &[&str] = &[
    "chown", "chown32", "fchown", "fchown32", "fchownat", "lchown", "lchown32",
];

/// mknod's and mknodat's mode argument, and the file types whose creation is faked: device
/// nodes only; fifos, sockets and regular files are still really made.
const MKNOD_MODE_ARG: [(&str, u32); 2] = [("mknod", 1), ("mknodat", 2)];
const S_IFMT: u64 = libc::S_IFMT as u64;
const FAKED_NODES: [u64; 2] = [libc::S_IFCHR as u64, libc::S_IFBLK as u64];

/// `filter` (or, for a container that would run unconfined, a filter that allows everything
/// on the architectures of the default profile) with the calls of a root user faked, as
/// Charliecloud's seccomp mode does: the chown and set*id families and mknod of device nodes
/// return 0 without doing anything (SECCOMP_RET_ERRNO with errno 0). On a single-id map,
/// where the kernel refuses them (EINVAL for an unmapped id, EPERM for setgroups), this lets
/// package managers that chown their files or drop to a service user carry on. Nothing
/// records the owner a file was meant to have: it keeps the caller's, except with
/// `supervised_chown`: a root on the FUSE overlay under a single-id map, whose owner
/// supervisor (rbox_storage::mount::fuse::supervisor) takes the chown family instead,
/// records the owner of a file on the overlay and fakes the rest (an errno-0 rule here would
/// win over its notification).
pub fn with_fakeroot(filter: Option<Filter>, supervised_chown: bool) -> Result<Filter> {
    let mut f = match filter {
        Some(f) => f,
        None => Filter {
            default: Action::Allow,
            arches: builtin().resolve(&Host::current())?.arches,
            rules: Vec::new(),
        },
    };
    let chowns = if supervised_chown {
        &[][..]
    } else {
        FAKED_CHOWNS
    };
    let faked: Vec<&str> = FAKED_SET_IDS.iter().chain(chowns).copied().collect();
    // an unconditional rule of the profile for the same call would conflict with ours
    f.rules.retain(|r| !faked.contains(&r.name.as_str()));
    f.rules.extend(faked.iter().map(|n| Rule {
        name: n.to_string(),
        action: Action::Errno(0),
        args: Vec::new(),
    }));
    // libseccomp lets a call's unconditional rule win over its conditional ones, so the
    // profile's answer for mknod (allow, in the default profile) becomes one rule per other
    // file type: S_IFMT has four bits, sixteen values in all
    for (name, index) in MKNOD_MODE_ARG {
        let own = f
            .rules
            .iter()
            .find(|r| r.name == name && r.args.is_empty())
            .map_or(f.default, |r| r.action);
        f.rules.retain(|r| !(r.name == name && r.args.is_empty()));
        for kind in (0..16u64).map(|k| k << 12) {
            f.rules.push(Rule {
                name: name.into(),
                action: if FAKED_NODES.contains(&kind) {
                    Action::Errno(0)
                } else {
                    own
                },
                args: vec![Cmp {
                    index,
                    op: Op::MaskedEq,
                    value: S_IFMT,
                    value_two: kind,
                }],
            });
        }
    }
    Ok(f)
}

/// A seccomp profile in the JSON format of containers-common and Docker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// SCMP_ARCH_* names; older profiles list them here instead of in `archMap`
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub architectures: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub arch_map: Vec<ArchMap>,
    #[serde(default, deserialize_with = "nullable")]
    pub syscalls: Vec<SyscallEntry>,
}

/// The architectures a filter covers on a host of `architecture`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default, deserialize_with = "nullable")]
    pub sub_architectures: Vec<String>,
}

/// One entry of `syscalls`: an action for some calls, optionally only when the arguments
/// match and the includes/excludes conditions hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallEntry {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub names: Vec<String>,
    /// the single-name form of older profiles
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<Arg>,
    #[serde(default, deserialize_with = "nullable")]
    pub includes: Condition,
    #[serde(default, deserialize_with = "nullable")]
    pub excludes: Condition,
}

/// An argument comparison: `args[index] OP value` (for SCMP_CMP_MASKED_EQ, `value` is the
/// mask and `valueTwo` the expected result).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// When an entry applies: all of `caps` held (capability names such as CAP_SYS_ADMIN), the
/// host architecture (Go's names: amd64, arm64...) among `arches`, the kernel at least
/// `minKernel`. In `excludes`, any one of them holding drops the entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub caps: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub arches: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub min_kernel: String,
}

/// `null` reads as the empty value (containers-common writes `"args": null`).
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Profile {
    /// Parse and check a profile (every action, operator and architecture must be known).
    pub fn parse(text: &str) -> Result<Profile> {
        let p: Profile = serde_json::from_str(text)?;
        p.resolve(&Host::current())?;
        Ok(p)
    }

    /// Read a profile file given to `--security-opt seccomp=PATH`.
    pub fn read(path: &str) -> Result<Profile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read seccomp profile `{path}`"))?;
        Profile::parse(&text).with_context(|| format!("seccomp profile `{path}`"))
    }
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Hash, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    KillThread,
    KillProcess,
    Trap,
    Errno(u16),
    Trace(u16),
    Log,
    Allow,
}

/// The comparison operators of libseccomp (SCMP_CMP_*).
#[derive(Debug, Clone, Hash, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq,
}

/// One resolved argument comparison.
#[derive(Debug, Clone, Hash, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cmp {
    pub index: u32,
    pub op: Op,
    pub value: u64,
    pub value_two: u64,
}

/// One syscall rule of a resolved filter; all of `args` must hold.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub name: String,
    pub action: Action,
    pub args: Vec<Cmp>,
}

/// A profile resolved for one host and one capability set: what libseccomp is given.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct Filter {
    pub default: Action,
    /// SCMP_ARCH_* names; empty means the native architecture only
    pub arches: Vec<String>,
    pub rules: Vec<Rule>,
}

/// What a profile is resolved against.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    /// Go's name of this architecture (amd64, arm64...), as profiles spell it
    pub arch: &'static str,
    /// libseccomp's name of it (SCMP_ARCH_X86_64...), as `archMap` spells it
    pub scmp_arch: &'static str,
    /// the container's bounding set, bit n for capability n
    pub caps: u64,
    /// (major, minor) of the running kernel
    pub kernel: (u32, u32),
}

/// Go's and libseccomp's names of the architecture rbox was built for.
const fn native_arch() -> (&'static str, &'static str) {
    if cfg!(target_arch = "x86_64") {
        ("amd64", "SCMP_ARCH_X86_64")
    } else if cfg!(target_arch = "aarch64") {
        ("arm64", "SCMP_ARCH_AARCH64")
    } else if cfg!(target_arch = "x86") {
        ("386", "SCMP_ARCH_X86")
    } else if cfg!(target_arch = "arm") {
        ("arm", "SCMP_ARCH_ARM")
    } else if cfg!(target_arch = "riscv64") {
        ("riscv64", "SCMP_ARCH_RISCV64")
    } else if cfg!(target_arch = "s390x") {
        ("s390x", "SCMP_ARCH_S390X")
    } else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
        ("ppc64le", "SCMP_ARCH_PPC64LE")
    } else if cfg!(target_arch = "loongarch64") {
        ("loong64", "SCMP_ARCH_LOONGARCH64")
    } else {
        ("unknown", "SCMP_ARCH_NATIVE")
    }
}

/// (major, minor) from a kernel release such as "6.1.0-18-amd64".
fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

impl Host {
    /// This machine, with no capabilities (enough to check a profile's syntax).
    pub fn current() -> Host {
        Host::with_caps(0)
    }

    /// This machine, for a container whose bounding set is `caps`.
    pub fn with_caps(caps: u64) -> Host {
        let (arch, scmp_arch) = native_arch();
        let kernel = nix::sys::utsname::uname()
            .ok()
            .and_then(|u| parse_kernel(&u.release().to_string_lossy()))
            .unwrap_or((0, 0));
        Host {
            arch,
            scmp_arch,
            caps,
            kernel,
        }
    }

    fn has_cap(&self, name: &str) -> bool {
        // a capability this build does not know cannot be in the set
        matches!(super::caps::parse(name), Ok(Some(n)) if self.caps & (1u64 << n) != 0)
    }
}

fn action(name: &str, errno: Option<u32>) -> Result<Action> {
    let ret = |e: Option<u32>| -> Result<u16> {
        let e = e.unwrap_or(libc::EPERM as u32);
        u16::try_from(e)
            .ok()
            .filter(|e| *e < 4096)
            .with_context(|| format!("errno {e} is out of range"))
    };
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Action::KillThread,
        "SCMP_ACT_KILL_PROCESS" => Action::KillProcess,
        "SCMP_ACT_TRAP" => Action::Trap,
        "SCMP_ACT_ERRNO" => Action::Errno(ret(errno)?),
        "SCMP_ACT_TRACE" => Action::Trace(ret(errno)?),
        "SCMP_ACT_LOG" => Action::Log,
        "SCMP_ACT_ALLOW" => Action::Allow,
        "SCMP_ACT_NOTIFY" => {
            bail!("action SCMP_ACT_NOTIFY needs a seccomp listener, which rbox does not run")
        }
        _ => bail!("unknown action `{name}`"),
    })
}

fn op(name: &str) -> Result<Op> {
    Ok(match name {
        "SCMP_CMP_NE" => Op::Ne,
        "SCMP_CMP_LT" => Op::Lt,
        "SCMP_CMP_LE" => Op::Le,
        "SCMP_CMP_EQ" => Op::Eq,
        "SCMP_CMP_GE" => Op::Ge,
        "SCMP_CMP_GT" => Op::Gt,
        "SCMP_CMP_MASKED_EQ" => Op::MaskedEq,
        _ => bail!("unknown argument operator `{name}`"),
    })
}

fn min_kernel(v: &str) -> Result<(u32, u32)> {
    let (a, b) = v.split_once('.').unwrap_or((v, "0"));
    match (a.parse(), b.parse()) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        _ => bail!("invalid minKernel `{v}`: expected MAJOR.MINOR"),
    }
}

impl Profile {
    /// The rules that apply on `host`, in the way Podman (containers/common) selects them:
    /// an entry is dropped when the host's architecture is excluded, any excluded capability
    /// is held or the kernel reaches an excluded minimum; and unless every included
    /// architecture, capability and kernel condition holds.
    pub fn resolve(&self, host: &Host) -> Result<Filter> {
        let default =
            action(&self.default_action, self.default_errno_ret).context("defaultAction")?;
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            bail!("both `architectures` and `archMap` are given: use one of them");
        }
        let mut arches = self.architectures.clone();
        if let Some(m) = self
            .arch_map
            .iter()
            .find(|m| m.architecture == host.scmp_arch)
        {
            arches.push(m.architecture.clone());
            arches.extend(m.sub_architectures.iter().cloned());
        }
        for a in self
            .arch_map
            .iter()
            .flat_map(|m| std::iter::once(&m.architecture).chain(&m.sub_architectures))
        {
            ScmpArch::from_str(a).map_err(|_| anyhow::anyhow!("unknown architecture `{a}`"))?;
        }
        for a in &arches {
            ScmpArch::from_str(a).map_err(|_| anyhow::anyhow!("unknown architecture `{a}`"))?;
        }
        let mut rules = Vec::new();
        for (i, e) in self.syscalls.iter().enumerate() {
            let ctx = || format!("syscalls[{i}]");
            let act = action(&e.action, e.errno_ret).with_context(ctx)?;
            let args = e
                .args
                .iter()
                .map(|a| {
                    if a.index > 5 {
                        bail!("argument index {} is out of range (0-5)", a.index);
                    }
                    Ok(Cmp {
                        index: a.index,
                        op: op(&a.op)?,
                        value: a.value,
                        value_two: a.value_two,
                    })
                })
                .collect::<Result<Vec<_>>>()
                .with_context(ctx)?;
            let names: Vec<&String> = match (e.names.is_empty(), e.name.is_empty()) {
                (false, false) => {
                    bail!(
                        "{}: both `name` and `names` are given: use one of them",
                        ctx()
                    )
                }
                (true, false) => vec![&e.name],
                _ => e.names.iter().collect(),
            };
            let (inc, exc) = (&e.includes, &e.excludes);
            let inc_kernel = match inc.min_kernel.as_str() {
                "" => None,
                v => Some(min_kernel(v).with_context(ctx)?),
            };
            let exc_kernel = match exc.min_kernel.as_str() {
                "" => None,
                v => Some(min_kernel(v).with_context(ctx)?),
            };
            let excluded = exc.arches.iter().any(|a| a == host.arch)
                || exc.caps.iter().any(|c| host.has_cap(c))
                || exc_kernel.is_some_and(|k| host.kernel >= k);
            let included = (inc.arches.is_empty() || inc.arches.iter().any(|a| a == host.arch))
                && inc.caps.iter().all(|c| host.has_cap(c))
                && inc_kernel.is_none_or(|k| host.kernel >= k);
            if excluded || !included {
                continue;
            }
            for n in names {
                rules.push(Rule {
                    name: n.clone(),
                    action: act,
                    args: args.clone(),
                });
            }
        }
        Ok(Filter {
            default,
            arches,
            rules,
        })
    }
}

fn scmp_action(a: Action) -> ScmpAction {
    match a {
        Action::KillThread => ScmpAction::KillThread,
        Action::KillProcess => ScmpAction::KillProcess,
        Action::Trap => ScmpAction::Trap,
        Action::Errno(e) => ScmpAction::Errno(e.into()),
        Action::Trace(e) => ScmpAction::Trace(e),
        Action::Log => ScmpAction::Log,
        Action::Allow => ScmpAction::Allow,
    }
}

fn scmp_cmp(c: &Cmp) -> ScmpArgCompare {
    let op = match c.op {
        Op::Ne => ScmpCompareOp::NotEqual,
        Op::Lt => ScmpCompareOp::Less,
        Op::Le => ScmpCompareOp::LessOrEqual,
        Op::Eq => ScmpCompareOp::Equal,
        Op::Ge => ScmpCompareOp::GreaterEqual,
        Op::Gt => ScmpCompareOp::Greater,
        Op::MaskedEq => ScmpCompareOp::MaskedEqual(c.value),
    };
    let datum = if c.op == Op::MaskedEq {
        c.value_two
    } else {
        c.value
    };
    ScmpArgCompare::new(c.index, op, datum)
}

impl Filter {
    /// The BPF program for this filter, ready for seccomp(SECCOMP_SET_MODE_FILTER):
    /// libseccomp's, with its system-call dispatch rewritten as a range tree: the same
    /// decisions in fewer instructions, which the kernel converts, JIT-compiles and emulates
    /// at every container's start ([`seccomp_ranges`](super::seccomp_ranges)).
    pub fn compile(&self) -> Result<Vec<libc::sock_filter>> {
        let prog = self.libseccomp_program()?;
        Ok(super::seccomp_ranges::rewrite(&prog).unwrap_or(prog))
    }

    /// The program as libseccomp generates it.
    fn libseccomp_program(&self) -> Result<Vec<libc::sock_filter>> {
        let mut ctx =
            ScmpFilterContext::new(scmp_action(self.default)).context("create seccomp filter")?;
        // A binary tree of syscall numbers instead of a linear list: every system call of the
        // container runs this program, and the default profile has over 400 rules per arch.
        ctx.set_ctl_optimize(2)
            .context("ask libseccomp for a binary tree")?;
        let native = ScmpArch::native();
        let mut arches = Vec::new();
        for a in &self.arches {
            let arch =
                ScmpArch::from_str(a).map_err(|_| anyhow::anyhow!("unknown architecture `{a}`"))?;
            if !ctx
                .is_arch_present(arch)
                .context("query seccomp architectures")?
            {
                ctx.add_arch(arch)
                    .with_context(|| format!("add seccomp architecture `{a}`"))?;
            }
            arches.push(arch);
        }
        if !arches.is_empty() && !arches.contains(&native) {
            ctx.remove_arch(native)
                .context("remove the native seccomp architecture")?;
        }
        for r in &self.rules {
            // libseccomp refuses a rule that repeats the default action; it changes nothing
            if r.action == self.default {
                continue;
            }
            // a call this libseccomp does not know cannot be filtered (as in crun and runc)
            let Ok(call) = ScmpSyscall::from_name(&r.name) else {
                continue;
            };
            let act = scmp_action(r.action);
            let added = if r.args.is_empty() {
                ctx.add_rule(act, call)
            } else if has_repeated_index(&r.args) {
                // libseccomp cannot compare one argument twice in a rule: as runc does, each
                // comparison becomes a rule of its own
                r.args
                    .iter()
                    .try_for_each(|c| {
                        ctx.add_rule_conditional(act, call, &[scmp_cmp(c)])
                            .map(drop)
                    })
                    .map(|()| &mut ctx)
            } else {
                let cmps: Vec<ScmpArgCompare> = r.args.iter().map(scmp_cmp).collect();
                ctx.add_rule_conditional(act, call, &cmps)
            };
            added.with_context(|| format!("add seccomp rule for `{}`", r.name))?;
        }
        let fd =
            nix::sys::memfd::memfd_create("rbox-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                .context("create memfd for the seccomp program")?;
        ctx.export_bpf(&fd).context("export seccomp program")?;
        let mut f = std::fs::File::from(fd);
        let mut bytes = Vec::new();
        f.rewind()
            .and_then(|()| f.read_to_end(&mut bytes))
            .context("read seccomp program")?;
        if bytes.is_empty() || bytes.len() % INSN != 0 {
            bail!("libseccomp exported a program of {} bytes", bytes.len());
        }
        Ok(decode(&bytes))
    }
}

fn has_repeated_index(args: &[Cmp]) -> bool {
    let mut seen = BTreeSet::new();
    args.iter().any(|c| !seen.insert(c.index))
}

/// The program a container with bounding set `caps` runs under, or `None` when it runs
/// unconfined ([`filter`] and [`compiled`]).
pub fn program(
    mode: &Mode,
    privileged: bool,
    caps: u64,
    cache: Option<&Path>,
) -> Result<Option<Vec<libc::sock_filter>>> {
    match filter(mode, privileged, caps)? {
        Some(f) => compiled(&f, cache).map(Some),
        None => Ok(None),
    }
}

/// The filter a container with bounding set `caps` runs under, resolved for this host, or
/// `None` when it runs unconfined (`seccomp=unconfined`, or `--privileged` without an explicit
/// profile, as in Podman). This is what the container's OCI spec carries.
pub fn filter(mode: &Mode, privileged: bool, caps: u64) -> Result<Option<Filter>> {
    let host = Host::with_caps(caps);
    Ok(Some(match mode {
        Mode::Unconfined => return Ok(None),
        Mode::Default if privileged => return Ok(None),
        Mode::Default => builtin().resolve(&host)?,
        Mode::Profile { path, profile } => profile
            .resolve(&host)
            .with_context(|| format!("seccomp profile `{path}`"))?,
    }))
}

/// The BPF program of `filter`. With `cache` (a private directory of ours), compiled programs
/// are kept there by the hash of what was compiled: libseccomp takes about 12 ms for the
/// default profile, more than all the rest of a container's start.
pub fn compiled(filter: &Filter, cache: Option<&Path>) -> Result<Vec<libc::sock_filter>> {
    let Some(dir) = cache else {
        return filter.compile();
    };
    let path = dir.join(format!("{}.bpf", cache_key(filter)));
    if let Some(p) = read_cached(&path) {
        return Ok(p);
    }
    let prog = filter.compile()?;
    // a cache: a read-only or full store only costs the next start the compile again
    if write_cached(dir, &path, &prog).is_ok() {
        prune_cache(dir, CACHE_KEPT);
    }
    Ok(prog)
}

/// How many compiled programs the cache keeps: one per profile and rbox/libseccomp build in
/// use (the default profile, each `--security-opt seccomp=FILE`, each `--cap-add` set that
/// changes the profile), with room for old builds' programs until they are pruned.
const CACHE_KEPT: usize = 64;

/// Remove the least recently used programs (by access, else modification time) beyond
/// `keep`, and temp files a writer left behind. Runs after a program was written, so on
/// a miss only (a new profile, or a new build whose cache key changed): the start-up path
/// of a hit never lists the directory. A program still in use elsewhere is only compiled
/// again at its next start.
fn prune_cache(dir: &Path, keep: usize) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut programs = Vec::new();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for e in entries.flatten() {
        let (name, path) = (e.file_name(), e.path());
        let Ok(m) = e.metadata() else { continue };
        let name = name.to_string_lossy();
        if name.starts_with(".tmp-") {
            // a writer that died between write and rename; a live one is done in well
            // under an hour
            if m.modified().is_ok_and(|t| t < hour_ago) {
                let _ = std::fs::remove_file(&path);
            }
        } else if name.ends_with(".bpf") && m.is_file() {
            programs.push((m.atime().max(m.mtime()), path));
        }
    }
    if programs.len() <= keep {
        return;
    }
    programs.sort();
    for (_, p) in &programs[..programs.len() - keep] {
        let _ = std::fs::remove_file(p);
    }
}

/// OCI spelling of an action: the action and, for ERRNO and TRACE, the value.
fn oci_action(a: Action) -> (oci_spec::runtime::LinuxSeccompAction, Option<u16>) {
    use oci_spec::runtime::LinuxSeccompAction as A;
    match a {
        Action::KillThread => (A::ScmpActKillThread, None),
        Action::KillProcess => (A::ScmpActKillProcess, None),
        Action::Trap => (A::ScmpActTrap, None),
        Action::Errno(e) => (A::ScmpActErrno, Some(e)),
        Action::Trace(e) => (A::ScmpActTrace, Some(e)),
        Action::Log => (A::ScmpActLog, None),
        Action::Allow => (A::ScmpActAllow, None),
    }
}

/// The profile name of an OCI action, which [`action`] reads.
fn action_name(a: oci_spec::runtime::LinuxSeccompAction) -> &'static str {
    use oci_spec::runtime::LinuxSeccompAction as A;
    match a {
        A::ScmpActKill => "SCMP_ACT_KILL",
        A::ScmpActKillThread => "SCMP_ACT_KILL_THREAD",
        A::ScmpActKillProcess => "SCMP_ACT_KILL_PROCESS",
        A::ScmpActTrap => "SCMP_ACT_TRAP",
        A::ScmpActErrno => "SCMP_ACT_ERRNO",
        A::ScmpActNotify => "SCMP_ACT_NOTIFY",
        A::ScmpActTrace => "SCMP_ACT_TRACE",
        A::ScmpActLog => "SCMP_ACT_LOG",
        A::ScmpActAllow => "SCMP_ACT_ALLOW",
    }
}

fn oci_op(o: Op) -> oci_spec::runtime::LinuxSeccompOperator {
    use oci_spec::runtime::LinuxSeccompOperator as O;
    match o {
        Op::Ne => O::ScmpCmpNe,
        Op::Lt => O::ScmpCmpLt,
        Op::Le => O::ScmpCmpLe,
        Op::Eq => O::ScmpCmpEq,
        Op::Ge => O::ScmpCmpGe,
        Op::Gt => O::ScmpCmpGt,
        Op::MaskedEq => O::ScmpCmpMaskedEq,
    }
}

fn op_of(o: oci_spec::runtime::LinuxSeccompOperator) -> Op {
    use oci_spec::runtime::LinuxSeccompOperator as O;
    match o {
        O::ScmpCmpNe => Op::Ne,
        O::ScmpCmpLt => Op::Lt,
        O::ScmpCmpLe => Op::Le,
        O::ScmpCmpEq => Op::Eq,
        O::ScmpCmpGe => Op::Ge,
        O::ScmpCmpGt => Op::Gt,
        O::ScmpCmpMaskedEq => Op::MaskedEq,
    }
}

impl Filter {
    /// The filter as an OCI spec's `linux.seccomp`: consecutive rules with the same action
    /// and arguments share one entry, so the order (and so the compiled program) is kept.
    pub fn to_oci(&self) -> Result<oci_spec::runtime::LinuxSeccomp> {
        use oci_spec::runtime::{
            LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscall, LinuxSyscallBuilder,
        };
        let mut groups: Vec<(Action, &[Cmp], Vec<String>)> = Vec::new();
        for r in &self.rules {
            match groups.last_mut() {
                Some((a, args, names)) if *a == r.action && *args == r.args.as_slice() => {
                    names.push(r.name.clone())
                }
                _ => groups.push((r.action, &r.args, vec![r.name.clone()])),
            }
        }
        let ctx = "express the seccomp filter in the OCI spec";
        let syscalls = groups
            .into_iter()
            .map(|(a, args, names)| {
                let (action, ret) = oci_action(a);
                let mut b = LinuxSyscallBuilder::default().names(names).action(action);
                if let Some(e) = ret {
                    b = b.errno_ret(u32::from(e));
                }
                if !args.is_empty() {
                    let args = args
                        .iter()
                        .map(|c| {
                            LinuxSeccompArgBuilder::default()
                                .index(c.index as usize)
                                .value(c.value)
                                .value_two(c.value_two)
                                .op(oci_op(c.op))
                                .build()
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .context(ctx)?;
                    b = b.args(args);
                }
                b.build().context(ctx)
            })
            .collect::<Result<Vec<LinuxSyscall>>>()?;
        let (default, ret) = oci_action(self.default);
        let mut b = LinuxSeccompBuilder::default()
            .default_action(default)
            .syscalls(syscalls);
        if let Some(e) = ret {
            b = b.default_errno_ret(u32::from(e));
        }
        if !self.arches.is_empty() {
            let arches = self
                .arches
                .iter()
                .map(|a| serde_json::from_value(serde_json::Value::String(a.clone())))
                .collect::<Result<Vec<oci_spec::runtime::Arch>, _>>()
                .with_context(|| format!("{ctx}: architectures {:?}", self.arches))?;
            b = b.architectures(arches);
        }
        b.build().context(ctx)
    }

    /// The filter an OCI spec's `linux.seccomp` describes. Flags, listeners and
    /// SCMP_ACT_NOTIFY are refused: rbox does not run a seccomp agent.
    pub fn from_oci(s: &oci_spec::runtime::LinuxSeccomp) -> Result<Filter> {
        if s.flags().as_ref().is_some_and(|f| !f.is_empty()) || s.listener_path().is_some() {
            bail!("seccomp flags and listeners are not supported by rbox");
        }
        let default = action(action_name(s.default_action()), s.default_errno_ret())?;
        let arches = s
            .architectures()
            .iter()
            .flatten()
            .filter_map(|a| match serde_json::to_value(a) {
                Ok(serde_json::Value::String(name)) => Some(name),
                _ => None,
            })
            .collect();
        let mut rules = Vec::new();
        for sc in s.syscalls().iter().flatten() {
            let act = action(action_name(sc.action()), sc.errno_ret())?;
            let args: Vec<Cmp> = sc
                .args()
                .iter()
                .flatten()
                .map(|a| Cmp {
                    index: a.index() as u32,
                    op: op_of(a.op()),
                    value: a.value(),
                    value_two: a.value_two().unwrap_or(0),
                })
                .collect();
            for name in sc.names() {
                rules.push(Rule {
                    name: name.clone(),
                    action: act,
                    args: args.clone(),
                });
            }
        }
        Ok(Filter {
            default,
            arches,
            rules,
        })
    }
}

/// What a compiled program depends on: the resolved rules, libseccomp's version (its code
/// generation changes between releases) and the architecture.
fn cache_key(filter: &Filter) -> String {
    use sha2::Digest;
    use std::hash::Hash;
    /// Feeds what `Hash` writes (lengths before contents, so unambiguous) into SHA-256, which
    /// every start does: formatting the filter's Debug text for it cost more than the hash.
    struct Sha(sha2::Sha256);
    impl std::hash::Hasher for Sha {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            unreachable!("only the digest is used")
        }
    }
    let v = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let mut h = Sha(sha2::Sha256::new());
    filter.hash(&mut h);
    h.0.update(format!(
        "\nlibseccomp {v}\n{}\n{COMPILE_OPTIONS}",
        std::env::consts::ARCH
    ));
    hex::encode(h.0.finalize())
}

const INSN: usize = std::mem::size_of::<libc::sock_filter>();

/// How [`Filter::compile`] drives libseccomp; part of the cache key, so change it with them.
const COMPILE_OPTIONS: &str = "optimize=2, ranges 1";

/// A cached program, or `None` when there is none or it cannot be one (empty, torn, longer
/// than the kernel's BPF_MAXINSNS).
fn read_cached(path: &Path) -> Option<Vec<libc::sock_filter>> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.is_empty() || bytes.len() % INSN != 0 || bytes.len() / INSN > 4096 {
        return None;
    }
    Some(decode(&bytes))
}

/// Write a program under `dir` atomically (a temp file renamed into place), so a reader
/// never sees half of one.
fn write_cached(dir: &Path, path: &Path, prog: &[libc::sock_filter]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let mut bytes = Vec::with_capacity(prog.len() * INSN);
    for i in prog {
        bytes.extend_from_slice(&i.code.to_ne_bytes());
        bytes.extend_from_slice(&[i.jt, i.jf]);
        bytes.extend_from_slice(&i.k.to_ne_bytes());
    }
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// `struct sock_filter`s from their bytes in memory order (what libseccomp exports).
fn decode(bytes: &[u8]) -> Vec<libc::sock_filter> {
    bytes
        .chunks_exact(INSN)
        .map(|b| libc::sock_filter {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect()
}

/// errno values the default profile returns.
const EPERM: u32 = libc::EPERM as u32;
const ENOSYS: u32 = libc::ENOSYS as u32;
const EINVAL: u32 = libc::EINVAL as u32;

/// Obsolete or dangerous calls that fail with EPERM whatever the capabilities.
#[rustfmt::skip]
const DENIED: &[&str] = &[
    "bdflush", "io_pgetevents", "kexec_file_load", "kexec_load", "migrate_pages", "move_pages",
    "nfsservctl", "nice", "oldfstat", "oldlstat", "oldolduname", "oldstat", "olduname",
    "pciconfig_iobase", "pciconfig_read", "pciconfig_write", "sgetmask", "ssetmask",
    "swapcontext", "swapoff", "swapon", "sysfs", "uselib", "userfaultfd", "ustat", "vm86",
    "vm86old", "vmsplice",
];

/// The calls every container may make.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    "_llseek", "_newselect", "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk",
    "capget", "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64",
    "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "clone", "clone3", "close", "close_range", "connect",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1",
    "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old",
    "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2",
    "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat",
    "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr",
    "flock", "fork", "fremovexattr", "fsconfig", "fsetxattr", "fsmount", "fsopen", "fspick",
    "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64",
    "futex", "futex_time64", "futimesat", "get_mempolicy", "get_robust_list", "get_thread_area",
    "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid", "geteuid32",
    "getgid", "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid",
    "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresgid32",
    "getresuid", "getresuid32", "getrlimit", "getrusage", "getsid", "getsockname", "getsockopt",
    "gettid", "gettimeofday", "getuid", "getuid32", "getxattr", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy",
    "io_getevents", "io_setup", "io_submit", "ioctl", "ioprio_get", "ioprio_set", "ipc", "keyctl",
    "kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown",
    "lchown32", "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr",
    "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise", "mbind", "membarrier",
    "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock",
    "mlock2", "mlockall", "mmap", "mmap2", "mount", "mount_setattr", "move_mount", "mprotect",
    "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv",
    "msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep",
    "newfstatat", "open", "open_tree", "openat", "openat2", "pause", "pidfd_getfd", "pidfd_open",
    "pidfd_send_signal", "pipe", "pipe2", "pivot_root", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "process_mrelease", "process_vm_readv", "process_vm_writev", "pselect6",
    "pselect6_time64", "ptrace", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
    "readdir", "readlink", "readlinkat", "readv", "reboot", "recv", "recvfrom", "recvmmsg",
    "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename", "renameat",
    "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send",
    "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "set_mempolicy", "set_robust_list",
    "set_thread_area", "set_tid_address", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32",
    "setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setns", "setpgid",
    "setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
    "setresuid32", "setreuid", "setreuid32", "setrlimit", "setsid", "setsockopt", "setuid",
    "setuid32", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaction",
    "sigaltstack", "signal", "signalfd", "signalfd4", "sigpending", "sigprocmask", "sigreturn",
    "sigsuspend", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs", "statfs64",
    "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "syscall", "sysinfo",
    "syslog", "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
    "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit", "umask",
    "umount", "umount2", "uname", "unlink", "unlinkat", "unshare", "utime", "utimensat",
    "utimensat_time64", "utimes", "vfork", "wait4", "waitid", "waitpid", "write", "writev",
];

/// `personality(2)` values a container may set: PER_LINUX, PER_LINUX32, UNAME26,
/// UNAME26|PER_LINUX32, and 0xffffffff (query only).
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Calls that only exist (or are only needed) on some architectures (Go's names).
const BY_ARCH: &[(&[&str], &[&str])] = &[
    (&["ppc64le"], &["sync_file_range2"]),
    (
        &["arm", "arm64"],
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "breakpoint",
            "cacheflush",
            "set_tls",
            "sync_file_range2",
        ],
    ),
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "x86"], &["modify_ldt"]),
    (
        &["s390", "s390x"],
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
    ),
];

/// Calls allowed only to a container that holds a capability; without it they fail with
/// EPERM before the kernel sees them.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "fanotify_init",
            "lookup_dcookie",
            "perf_event_open",
            "quotactl",
            "setdomainname",
            "sethostname",
            "setns",
        ],
    ),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &[
            "delete_module",
            "finit_module",
            "init_module",
            "query_module",
        ],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_PTRACE", &["kcmp", "process_madvise"]),
    ("CAP_SYS_RAWIO", &["ioperm", "iopl"]),
    (
        "CAP_SYS_TIME",
        &["clock_settime", "clock_settime64", "settimeofday", "stime"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
];

/// The architectures a filter covers on each host architecture (libseccomp's names).
const ARCH_MAP: &[(&str, &[&str])] = &[
    ("SCMP_ARCH_X86_64", &["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
    ("SCMP_ARCH_AARCH64", &["SCMP_ARCH_ARM"]),
    (
        "SCMP_ARCH_MIPS64",
        &["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"],
    ),
    (
        "SCMP_ARCH_MIPS64N32",
        &["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"],
    ),
    (
        "SCMP_ARCH_MIPSEL64",
        &["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"],
    ),
    (
        "SCMP_ARCH_MIPSEL64N32",
        &["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"],
    ),
    ("SCMP_ARCH_S390X", &["SCMP_ARCH_S390"]),
];

/// AF_NETLINK and NETLINK_AUDIT: without CAP_AUDIT_WRITE an audit socket fails with EINVAL.
const AF_NETLINK: u64 = 16;
const NETLINK_AUDIT: u64 = 9;

fn entry(names: &[&str], act: &str, errno: Option<u32>) -> SyscallEntry {
    SyscallEntry {
        names: names.iter().map(|n| n.to_string()).collect(),
        action: act.into(),
        errno_ret: errno,
        ..Default::default()
    }
}

fn arg(index: u32, value: u64, op: &str) -> Arg {
    Arg {
        index,
        value,
        value_two: 0,
        op: op.into(),
    }
}

fn caps(c: &str) -> Condition {
    Condition {
        caps: vec![c.into()],
        ..Default::default()
    }
}

/// rbox's default profile: the rules of Podman's default (containers-common 0.50's
/// seccomp.json, Debian 12): unknown calls fail with ENOSYS, so that programs fall back to
/// older calls; a few calls fail with EPERM; capability-bound calls follow the container's
/// capabilities. A test checks it against the installed containers-common file.
pub fn builtin() -> Profile {
    const ALLOW: &str = "SCMP_ACT_ALLOW";
    const ERRNO: &str = "SCMP_ACT_ERRNO";
    let mut s = vec![
        entry(DENIED, ERRNO, Some(EPERM)),
        entry(ALLOWED, ALLOW, None),
    ];
    for v in PERSONALITIES {
        s.push(SyscallEntry {
            args: vec![arg(0, *v, "SCMP_CMP_EQ")],
            ..entry(&["personality"], ALLOW, None)
        });
    }
    for (arches, names) in BY_ARCH {
        s.push(SyscallEntry {
            includes: Condition {
                arches: arches.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            },
            ..entry(names, ALLOW, None)
        });
    }
    for (cap, names) in BY_CAPABILITY {
        s.push(SyscallEntry {
            includes: caps(cap),
            ..entry(names, ALLOW, None)
        });
        s.push(SyscallEntry {
            excludes: caps(cap),
            ..entry(names, ERRNO, Some(EPERM))
        });
    }
    let audit = || caps("CAP_AUDIT_WRITE");
    s.push(SyscallEntry {
        args: vec![
            arg(0, AF_NETLINK, "SCMP_CMP_EQ"),
            arg(2, NETLINK_AUDIT, "SCMP_CMP_EQ"),
        ],
        excludes: audit(),
        ..entry(&["socket"], ERRNO, Some(EINVAL))
    });
    for a in [
        arg(2, NETLINK_AUDIT, "SCMP_CMP_NE"),
        arg(0, AF_NETLINK, "SCMP_CMP_NE"),
    ] {
        s.push(SyscallEntry {
            args: vec![a],
            excludes: audit(),
            ..entry(&["socket"], ALLOW, None)
        });
    }
    s.push(SyscallEntry {
        includes: audit(),
        ..entry(&["socket"], ALLOW, None)
    });
    Profile {
        default_action: ERRNO.into(),
        default_errno_ret: Some(ENOSYS),
        architectures: Vec::new(),
        arch_map: ARCH_MAP
            .iter()
            .map(|(a, subs)| ArchMap {
                architecture: a.to_string(),
                sub_architectures: subs.iter().map(|s| s.to_string()).collect(),
            })
            .collect(),
        syscalls: s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODMAN_DEFAULT: &str = "/usr/share/containers/seccomp.json";

    fn host(caps: u64) -> Host {
        Host {
            arch: "amd64",
            scmp_arch: "SCMP_ARCH_X86_64",
            caps,
            kernel: (6, 1),
        }
    }

    fn cap(name: &str) -> u64 {
        1 << super::super::caps::parse(name).unwrap().unwrap()
    }

    /// A filter as a set of rules: order and repetition change nothing (containers-common
    /// 0.50 lists one socket rule twice).
    fn as_set(f: &Filter) -> (Action, Vec<String>, BTreeSet<Rule>) {
        (
            f.default,
            f.arches.clone(),
            f.rules.iter().cloned().collect(),
        )
    }

    fn bpf(f: &Filter) -> Vec<(u16, u8, u8, u32)> {
        f.compile()
            .unwrap()
            .iter()
            .map(|i| (i.code, i.jt, i.jf, i.k))
            .collect()
    }

    fn action_of<'a>(f: &'a Filter, name: &str) -> Vec<&'a Rule> {
        f.rules.iter().filter(|r| r.name == name).collect()
    }

    #[test]
    fn fakeroot_fakes_ids_and_device_nodes_on_top_of_any_filter() {
        let kept =
            super::super::caps::kept(&[], &[], false, super::super::caps::last_cap()).unwrap();
        let base = filter(&Mode::Default, false, kept).unwrap();
        let f = with_fakeroot(base.clone(), false).unwrap();
        assert_eq!(f.default, base.as_ref().unwrap().default);
        for n in ["chown", "fchownat", "setresuid", "setgroups", "chown32"] {
            let r = action_of(&f, n);
            assert_eq!(r.len(), 1, "{n}");
            assert_eq!(
                (r[0].action, r[0].args.is_empty()),
                (Action::Errno(0), true)
            );
        }
        // mknodat keeps the profile's allow for every file type but character and block
        // devices, which it fakes
        let m = action_of(&f, "mknodat");
        assert_eq!(m.len(), 16);
        assert!(m
            .iter()
            .all(|r| r.args.len() == 1
                && (r.action == Action::Allow || r.action == Action::Errno(0))));
        assert_eq!(m.iter().filter(|r| r.action == Action::Allow).count(), 14);
        let faked: Vec<u64> = m
            .iter()
            .filter(|r| r.action == Action::Errno(0))
            .map(|r| {
                assert_eq!((r.args[0].index, r.args[0].op), (2, Op::MaskedEq));
                r.args[0].value_two
            })
            .collect();
        assert_eq!(faked, [libc::S_IFCHR as u64, libc::S_IFBLK as u64]);
        assert!(!f.compile().unwrap().is_empty());
        // the OCI spec carries it unchanged (errno 0 included)
        let back = Filter::from_oci(&f.to_oci().unwrap()).unwrap();
        assert_eq!(as_set(&back), as_set(&f));
        // a container that would run unconfined gets everything else allowed
        let u = with_fakeroot(None, false).unwrap();
        assert_eq!(u.default, Action::Allow);
        assert!(!u.arches.is_empty());
        assert!(!u.compile().unwrap().is_empty());
        // with the owner supervisor taking the chown family, the profile answers it (and the
        // supervisor's notification can reach it); the set*id family is still faked
        let s = with_fakeroot(base.clone(), true).unwrap();
        for n in ["chown", "fchown", "fchownat", "lchown"] {
            assert_eq!(
                action_of(&s, n),
                action_of(base.as_ref().unwrap(), n),
                "{n}"
            );
        }
        assert_eq!(action_of(&s, "setresuid")[0].action, Action::Errno(0));
        assert!(Fakeroot::Auto.applies(true) && !Fakeroot::Auto.applies(false));
        assert!(Fakeroot::On.applies(false) && !Fakeroot::Off.applies(true));
    }

    #[test]
    fn builtin_equals_the_installed_podman_default() {
        let text = match std::fs::read_to_string(PODMAN_DEFAULT) {
            Ok(t) => t,
            Err(e) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "read `{PODMAN_DEFAULT}` (containers-common, installed with podman): {e}"
                );
                eprintln!("SKIP (no `{PODMAN_DEFAULT}`: {e})");
                return;
            }
        };
        let podman = Profile::parse(&text).unwrap();
        let ours = builtin();
        let default = crate::runtime::caps::kept(&[], &[], false, 40).unwrap();
        let all = crate::runtime::caps::kept(&[], &[], true, 40).unwrap();
        for caps in [
            default,
            0,
            all,
            default | cap("SYS_ADMIN"),
            default & !cap("SYS_CHROOT"),
        ] {
            let mut h = Host::with_caps(caps);
            let (a, b) = (ours.resolve(&h).unwrap(), podman.resolve(&h).unwrap());
            assert_eq!(as_set(&a), as_set(&b), "caps {caps:#x}");
            // the very same program, as libseccomp builds it
            assert_eq!(bpf(&a), bpf(&b), "caps {caps:#x}");
            // and on the other architectures the profile names
            for (arch, scmp) in [("arm64", "SCMP_ARCH_AARCH64"), ("s390x", "SCMP_ARCH_S390X")] {
                h.arch = arch;
                h.scmp_arch = scmp;
                assert_eq!(
                    as_set(&ours.resolve(&h).unwrap()),
                    as_set(&podman.resolve(&h).unwrap()),
                    "{arch} caps {caps:#x}"
                );
            }
        }
    }

    #[test]
    fn builtin_resolves_by_capability_and_arch() {
        let default = crate::runtime::caps::kept(&[], &[], false, 40).unwrap();
        let f = builtin().resolve(&host(default)).unwrap();
        assert_eq!(f.default, Action::Errno(libc::ENOSYS as u16));
        assert_eq!(
            f.arches,
            ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        );
        let only =
            |name: &str| -> Vec<Action> { action_of(&f, name).iter().map(|r| r.action).collect() };
        assert_eq!(only("read"), [Action::Allow]);
        assert_eq!(only("userfaultfd"), [Action::Errno(libc::EPERM as u16)]);
        // no CAP_SYS_ADMIN by default: sethostname is refused, chroot (CAP_SYS_CHROOT) is not;
        // setns is in both lists, as in containers-common (both go to libseccomp, as in crun)
        assert_eq!(only("sethostname"), [Action::Errno(libc::EPERM as u16)]);
        assert_eq!(
            only("setns"),
            [Action::Allow, Action::Errno(libc::EPERM as u16)]
        );
        assert_eq!(only("chroot"), [Action::Allow]);
        assert_eq!(only("arch_prctl"), [Action::Allow]);
        assert!(only("cacheflush").is_empty());
        assert_eq!(action_of(&f, "personality").len(), PERSONALITIES.len());
        // audit sockets: EINVAL without CAP_AUDIT_WRITE, plain allow with it
        assert_eq!(action_of(&f, "socket").len(), 3);
        let with = builtin()
            .resolve(&host(default | cap("SYS_ADMIN") | cap("AUDIT_WRITE")))
            .unwrap();
        assert_eq!(
            action_of(&with, "sethostname")
                .iter()
                .map(|r| r.action)
                .collect::<Vec<_>>(),
            [Action::Allow]
        );
        let socket = action_of(&with, "socket");
        assert_eq!(socket.len(), 1);
        assert!(socket[0].args.is_empty());
        let arm = builtin()
            .resolve(&Host {
                arch: "arm64",
                scmp_arch: "SCMP_ARCH_AARCH64",
                ..host(default)
            })
            .unwrap();
        assert_eq!(arm.arches, ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]);
        assert!(action_of(&arm, "arch_prctl").is_empty());
        assert_eq!(action_of(&arm, "cacheflush").len(), 1);
    }

    #[test]
    fn parse_profiles() {
        // nulls where containers-common writes them, the single-name form, errno defaults
        let p = Profile::parse(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": null, "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": null,
                 "includes": null, "excludes": {}},
                {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [
                    {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 4095, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]}"#,
        )
        .unwrap();
        let f = p.resolve(&host(0)).unwrap();
        assert_eq!(f.default, Action::Errno(libc::EPERM as u16));
        assert!(f.arches.is_empty());
        let names: Vec<&str> = f.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["read", "write", "mkdir", "kill"]);
        assert_eq!(f.rules[2].action, Action::Errno(13));
        assert_eq!(
            f.rules[3].args,
            [
                Cmp {
                    index: 1,
                    op: Op::Eq,
                    value: 9,
                    value_two: 0
                },
                Cmp {
                    index: 0,
                    op: Op::MaskedEq,
                    value: 4095,
                    value_two: 1
                }
            ]
        );
        // it survives the container record's round trip
        let back: Profile = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);

        let err = |text: &str| format!("{:#}", Profile::parse(text).unwrap_err());
        assert!(err("{").contains("EOF"));
        assert!(err(r#"{"syscalls": []}"#).contains("defaultAction"));
        assert!(err(r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#).contains("unknown action"));
        assert!(err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}"#
        )
        .contains("listener"));
        assert!(err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]}"#
        )
        .contains("unknown argument operator"));
        assert!(err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_ERRNO"}]}"#
        )
        .contains("both `name` and `names`"));
        assert!(
            err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}"#)
                .contains("unknown architecture")
        );
        assert!(
            err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}"#)
                .contains("out of range")
        );
    }

    #[test]
    fn includes_and_excludes() {
        let p: Profile = serde_json::from_str(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["a"], "action": "SCMP_ACT_LOG", "includes": {"minKernel": "5.10"}},
                {"names": ["b"], "action": "SCMP_ACT_LOG", "includes": {"minKernel": "6.2"}},
                {"names": ["c"], "action": "SCMP_ACT_LOG", "excludes": {"minKernel": "6.1"}},
                {"names": ["d"], "action": "SCMP_ACT_LOG", "includes": {"caps": ["CAP_KILL", "CAP_CHOWN"]}},
                {"names": ["e"], "action": "SCMP_ACT_LOG", "excludes": {"caps": ["CAP_KILL", "CAP_BPF"]}},
                {"names": ["f"], "action": "SCMP_ACT_LOG", "excludes": {"arches": ["amd64"]}},
                {"names": ["g"], "action": "SCMP_ACT_LOG", "includes": {"caps": ["CAP_FUTURE"]}}
            ]}"#,
        )
        .unwrap();
        let names = |caps: u64| -> String {
            p.resolve(&host(caps))
                .unwrap()
                .rules
                .iter()
                .map(|r| r.name.as_str())
                .collect()
        };
        assert_eq!(names(0), "ae");
        assert_eq!(names(cap("KILL")), "a");
        assert_eq!(names(cap("KILL") | cap("CHOWN")), "ad");
        assert_eq!(names(cap("CHOWN")), "ae");
    }

    #[test]
    fn compiles() {
        let default = crate::runtime::caps::kept(&[], &[], false, 40).unwrap();
        let prog = program(&Mode::Default, false, default, None)
            .unwrap()
            .unwrap();
        // BPF_MAXINSNS is 4096
        assert!(prog.len() > 100 && prog.len() < 4096, "{}", prog.len());
        assert!(program(&Mode::Default, true, default, None)
            .unwrap()
            .is_none());
        assert!(program(&Mode::Unconfined, false, default, None)
            .unwrap()
            .is_none());
        // repeated argument indexes become separate rules; unknown calls are skipped
        let profile: Profile = serde_json::from_str(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["kill", "no_such_call"], "action": "SCMP_ACT_ERRNO", "args": [
                    {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                    {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]}]}"#,
        )
        .unwrap();
        let mode = Mode::Profile {
            path: "/p.json".into(),
            profile,
        };
        assert!(program(&mode, true, 0, None).unwrap().is_some());
        assert_eq!(mode.security_opt().as_deref(), Some("seccomp=/p.json"));
        assert_eq!(parse_kernel("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel("6.18.44-fc-v595"), Some((6, 18)));
    }

    /// The range tree decides as libseccomp's program on every call number of x86_64, x86
    /// and x32 (and of an architecture the filter does not name), with argument values taken
    /// from the constants the program compares with, for the default profile under the
    /// default capabilities, CAP_SYS_ADMIN and all, and for a profile that allows by default.
    #[test]
    fn the_range_tree_decides_as_libseccomp() {
        use crate::runtime::seccomp_ranges::run;
        let default = crate::runtime::caps::kept(&[], &[], false, 40).unwrap();
        let mut filters: Vec<Filter> = [default, default | 1 << 21, (1 << 41) - 1]
            .into_iter()
            .map(|caps| filter(&Mode::Default, false, caps).unwrap().unwrap())
            .collect();
        let mut allow = filters[0].clone();
        allow.default = Action::Allow;
        for r in &mut allow.rules {
            if r.action == Action::Allow {
                r.action = Action::Errno(1);
            }
        }
        filters.push(allow);
        for f in &filters {
            let ours = f.compile().unwrap();
            let theirs = f.libseccomp_program().unwrap();
            assert!(
                ours.len() * 2 < theirs.len(),
                "{} instructions, libseccomp's {}",
                ours.len(),
                theirs.len()
            );
            let mut values: Vec<u32> = theirs.iter().map(|i| i.k).collect();
            values.sort_unstable();
            values.dedup();
            let mut args = vec![[0u32; 12], [u32::MAX; 12]];
            for (n, v) in values.iter().enumerate() {
                let mut a = [0u32; 12];
                a[n % 12] = *v;
                a[(n * 5 + 2) % 12] = *v;
                args.push(a);
                args.push([*v; 12]);
            }
            let x86_64 = 0xc000_003e;
            for (arch, base) in [
                (x86_64, 0),
                (0x4000_0003, 0),      // x86
                (x86_64, 0x4000_0000), // x32
                (0xc000_00b7, 0),      // aarch64: not in the filter
            ] {
                for nr in (base..base + 1100).chain([u32::MAX, 0x3fff_ffff, 0x8000_0000]) {
                    for a in &args {
                        assert_eq!(
                            run(&ours, nr, arch, a),
                            run(&theirs, nr, arch, a),
                            "arch {arch:#x} nr {nr:#x} args {a:x?}"
                        );
                    }
                }
            }
            // the interpreter does know every instruction libseccomp wrote
            assert!(run(&theirs, 0, x86_64, &[0; 12]).is_some());
        }
    }

    #[test]
    fn the_cache_keeps_the_programs_used_last_and_drops_dead_temp_files() {
        use std::time::{Duration, SystemTime};
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let t = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs);
        let times = |name: &str, accessed: u64, modified: u64| {
            let f = std::fs::File::create(dir.join(name)).unwrap();
            std::io::Write::write_all(&mut &f, &[0u8; INSN]).unwrap();
            let ft = std::fs::FileTimes::new()
                .set_accessed(t(accessed))
                .set_modified(t(modified));
            f.set_times(ft).unwrap();
        };
        let at = |name: &str, secs: u64| times(name, secs, secs);
        for i in 0..5 {
            at(&format!("{i}.bpf"), i);
        }
        // used a moment ago: its access time counts, not its older modification
        times("0.bpf", 100, 0);
        at(".tmp-1", 0);
        std::fs::write(dir.join(".tmp-2"), b"").unwrap(); // a writer at work now
        std::fs::write(dir.join("other"), b"").unwrap(); // not the cache's: left alone
        prune_cache(dir, 3);
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".tmp-2", "0.bpf", "3.bpf", "4.bpf", "other"]);
        // at or under the bound nothing more goes
        prune_cache(dir, 3);
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 5);
    }

    #[test]
    fn compiled_programs_are_cached_by_what_was_compiled() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        let default = crate::runtime::caps::kept(&[], &[], false, 40).unwrap();
        let fresh = program(&Mode::Default, false, default, None)
            .unwrap()
            .unwrap();
        let first = program(&Mode::Default, false, default, Some(&cache))
            .unwrap()
            .unwrap();
        let same = |a: &[libc::sock_filter], b: &[libc::sock_filter]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| (x.code, x.jt, x.jf, x.k) == (y.code, y.jt, y.jf, y.k))
        };
        assert!(same(&fresh, &first));
        let files: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "one program, no temp file left");
        let file = files[0].path();
        // a second start reads the file: prove it by planting another valid program there
        let planted = &fresh[..fresh.len() - 1];
        write_cached(&cache, &file, planted).unwrap();
        let second = program(&Mode::Default, false, default, Some(&cache))
            .unwrap()
            .unwrap();
        assert!(same(&second, planted));
        // other capabilities resolve to other rules: another entry
        let admin = default | 1 << 21; // CAP_SYS_ADMIN
        program(&Mode::Default, false, admin, Some(&cache)).unwrap();
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
        // a torn file is not a program: compiled again and replaced
        std::fs::write(&file, [1u8, 2, 3]).unwrap();
        let again = program(&Mode::Default, false, default, Some(&cache))
            .unwrap()
            .unwrap();
        assert!(same(&again, &fresh));
        assert_eq!(
            std::fs::metadata(&file).unwrap().len() as usize,
            fresh.len() * INSN
        );
    }
}
