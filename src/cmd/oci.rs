//! `rbox oci`: the command line of an OCI runtime (the verbs runc and crun take), and the same
//! verbs at the top level when rbox runs as `rbox-runtime` (a symlink), so that
//! `podman --runtime /path/to/rbox-runtime` drives rbox. The work is `runtime::bundle`'s.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

use crate::runtime::bundle::{self, CreateOptions, Runtime};

/// `rbox oci`'s options besides the global `--root` (its state directory).
#[derive(Debug, Clone, clap::Args)]
pub struct OciOpts {
    /// Write rbox's errors and warnings to FILE as well as stderr (as runc's --log)
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Format of the --log file
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Accepted for compatibility: a `slice:prefix:name` cgroupsPath is placed at
    /// /slice/prefix-name.scope in the cgroupfs tree (there is no systemd to ask)
    #[arg(long)]
    pub systemd_cgroup: bool,
    /// Log debug messages
    #[arg(long)]
    pub debug: bool,
}

/// `rbox oci --help`'s long text (and `rbox-oci(1)`'s description).
pub const LONG_ABOUT: &str =
    "rbox as an OCI runtime: the verbs runc and crun take, on bundles (a directory \
with config.json and a root filesystem). The same verbs are rbox's top-level command line when it \
runs as rbox-runtime (a symlink), so that `podman --runtime /path/to/rbox-runtime` uses rbox. \
States live under --root [default: $XDG_RUNTIME_DIR/rbox-oci, /run/rbox-oci as root, else \
/tmp/rbox-oci-UID]. An unprivileged user's bundle needs a user namespace (uidMappings and \
gidMappings: your own ids, or ranges of /etc/subuid through newuidmap). Differences from the \
runtime spec: namespaces are joined by path only where the caller may setns into them (root; \
a user namespace never); linux.resources are applied as root (in every cgroup v1 hierarchy, or \
cgroup v2 on a pure v2 host) and rootless only in a delegated cgroup v2 subtree; devices are the \
host's nodes bound in.";

/// `rbox oci ...`.
#[derive(Debug, clap::Args)]
pub struct OciArgs {
    #[command(flatten)]
    pub opts: OciOpts,
    #[command(subcommand)]
    pub verb: Verb,
}

/// The command line of rbox invoked as `rbox-runtime`.
#[derive(Debug, Parser)]
#[command(
    name = "rbox-runtime",
    version,
    about = "rbox as an OCI runtime (the verbs of runc and crun)",
    disable_help_subcommand = true
)]
pub struct RuntimeCli {
    /// State directory of the runtime's containers [default: $XDG_RUNTIME_DIR/rbox-oci, or
    /// /run/rbox-oci as root]
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub opts: OciOpts,
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Create a container from a bundle; it waits for `start` before running its process
    Create(CreateArgs),
    /// Start a created container's process
    Start(IdArg),
    /// Print a container's state as JSON
    State(IdArg),
    /// Send a signal to a container's init (default SIGTERM)
    Kill(KillArgs),
    /// Delete a stopped (or created) container
    Delete(DeleteArgs),
    /// Stop every process of a running container (SIGSTOP)
    Pause(IdArg),
    /// Let a paused container's processes go on (SIGCONT)
    Resume(IdArg),
    /// Create and start a container; attached, wait for it and return its exit code
    Run(RunArgs),
    /// Change the resource limits of a running container (in its cgroup)
    Update(UpdateArgs),
    /// Run a process in a running container
    Exec(ExecArgs),
    /// List the processes of a container
    Ps(PsArgs),
    /// List the runtime's containers
    List(ListArgs),
    /// Print the features rbox supports as JSON
    Features,
    /// Write an example config.json for a bundle
    Spec(SpecArgs),
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// JSON file of the spec's linux.resources to apply (`-`: standard input)
    #[arg(short, long, value_name = "FILE")]
    pub resources: PathBuf,
    /// Container id
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct IdArg {
    /// Container id
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// Bundle directory (holds config.json)
    #[arg(short, long, default_value = ".", value_name = "DIR")]
    pub bundle: PathBuf,
    /// Write the container init's pid to FILE
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the terminal's master side (process.terminal)
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Refused: rbox always uses pivot_root
    #[arg(long)]
    pub no_pivot: bool,
    /// Pass N more descriptors (3 and up) to the process
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// Accepted for compatibility (rbox does not set up a new session keyring)
    #[arg(long)]
    pub no_new_keyring: bool,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub bundle: BundleArgs,
    /// Container id
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub bundle: BundleArgs,
    /// Return once the process has started
    #[arg(short, long)]
    pub detach: bool,
    /// Container id
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// Signal every process of the container
    #[arg(short, long)]
    pub all: bool,
    /// Container id
    pub id: String,
    /// Signal, by name or number
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Kill the container first when it is running
    #[arg(short, long)]
    pub force: bool,
    /// Container id
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The process to run, as the runtime spec's `process` in a JSON file
    #[arg(short, long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Write the process's pid to FILE
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Return once the process has started
    #[arg(short, long)]
    pub detach: bool,
    /// Allocate a terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Environment variable (NAME=VALUE)
    #[arg(short, long, value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Working directory in the container
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// User (uid[:gid]) to run as
    #[arg(short, long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Container id
    pub id: String,
    /// Command and arguments (unless --process)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Output format: table or json
    #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Container id
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Output format: table or json
    #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Print the ids only
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct SpecArgs {
    /// Directory to write config.json into
    #[arg(short, long, default_value = ".", value_name = "DIR")]
    pub bundle: PathBuf,
    /// A spec for an unprivileged user: a user namespace mapping your uid and gid to 0
    #[arg(long)]
    pub rootless: bool,
}

/// `rbox oci ...`; `root` is the global `--root`.
pub fn run(root: Option<PathBuf>, a: OciArgs) -> Result<ExitCode> {
    dispatch(root, &a.opts, a.verb)
}

/// rbox invoked as `rbox-runtime`: parse its own command line and run it.
pub fn main_runtime() -> ExitCode {
    let cli = RuntimeCli::parse();
    let level = if cli.opts.debug { "debug" } else { "warn" };
    if let Err(e) = crate::logging::init(level, false) {
        return crate::exit::report(&e);
    }
    match dispatch(cli.root, &cli.opts, cli.verb) {
        Ok(c) => c,
        Err(e) => crate::exit::report(&e),
    }
}

/// Whether this process was invoked as `rbox-runtime`.
pub fn invoked_as_runtime() -> bool {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n == "rbox-runtime"))
        .unwrap_or(false)
}

fn dispatch(root: Option<PathBuf>, opts: &OciOpts, verb: Verb) -> Result<ExitCode> {
    let rt = Runtime::new(root);
    act_as_root_owner(&rt.root)?;
    let r = run_verb(&rt, verb);
    if let (Err(e), Some(log)) = (&r, &opts.log) {
        log_error(log, &opts.log_format, e);
    }
    r
}

/// Root acting on a state root another user owns becomes that user first. Slurm 22.05 runs
/// oci.conf's RunTimeQuery, RunTimeKill and RunTimeDelete as root on the state of a
/// container its user made: as root, a pid the user wrote into `state.json` would be
/// signalled whoever it belongs to.
fn act_as_root_owner(root: &std::path::Path) -> Result<()> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let Ok(m) = std::fs::metadata(root) else {
        return Ok(());
    };
    if m.uid() == 0 {
        return Ok(());
    }
    let (uid, gid) = (Uid::from_raw(m.uid()), Gid::from_raw(m.gid()));
    setgroups(&[gid])
        .and_then(|()| setresgid(gid, gid, gid))
        .and_then(|()| setresuid(uid, uid, uid))
        .with_context(|| format!("act as uid {uid}, the owner of `{}`", root.display()))
}

/// Append the error to the `--log` file, as a JSON line (`{"level","msg","time"}`, what
/// conmon and podman read) or as text.
fn log_error(log: &std::path::Path, format: &str, e: &anyhow::Error) {
    let msg = format!("{e:#}");
    let line = if format == "json" {
        serde_json::json!({"level": "error", "msg": msg, "time": crate::state::now_rfc3339()})
            .to_string()
    } else {
        format!("{} error: {msg}", crate::state::now_rfc3339())
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(f, "{line}");
    }
}

fn create_options(b: &BundleArgs) -> CreateOptions {
    CreateOptions {
        bundle: b.bundle.clone(),
        pid_file: b.pid_file.clone(),
        console_socket: b.console_socket.clone(),
        no_pivot: b.no_pivot,
        preserve_fds: b.preserve_fds,
    }
}

fn run_verb(rt: &Runtime, verb: Verb) -> Result<ExitCode> {
    match verb {
        Verb::Create(a) => {
            rt.create(&a.id, &create_options(&a.bundle))?;
        }
        Verb::Start(a) => rt.start(&a.id)?,
        Verb::State(a) => {
            let st = rt.state(&a.id)?;
            println!("{}", serde_json::to_string_pretty(&st)?);
        }
        Verb::Kill(a) => {
            let Some(sig) = crate::runtime::parse_signal(&a.signal) else {
                bail!("invalid signal `{}`", a.signal);
            };
            rt.kill(&a.id, sig, a.all)?;
        }
        Verb::Delete(a) => rt.delete(&a.id, a.force)?,
        Verb::Pause(a) => rt.pause(&a.id, true)?,
        Verb::Resume(a) => rt.pause(&a.id, false)?,
        Verb::Run(a) => {
            let code = rt.run(&a.id, &create_options(&a.bundle), a.detach)?;
            return Ok(ExitCode::from(code));
        }
        Verb::Update(a) => {
            let text = if a.resources.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .context("read the resources from standard input")?;
                s
            } else {
                std::fs::read_to_string(&a.resources)
                    .with_context(|| format!("read `{}`", a.resources.display()))?
            };
            let r = serde_json::from_str(&text)
                .with_context(|| format!("parse `{}` as linux.resources", a.resources.display()))?;
            rt.update(&a.id, &r)?
        }
        Verb::Exec(a) => return exec(rt, a),
        Verb::Ps(a) => {
            let pids = rt.pids(&a.id)?;
            if a.format == "json" {
                println!("{}", serde_json::to_string(&pids)?);
            } else {
                println!("PID\tCMD");
                for p in pids {
                    let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                    let cmd: Vec<String> = cmd
                        .split(|b| *b == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect();
                    println!("{p}\t{}", cmd.join(" "));
                }
            }
        }
        Verb::List(a) => {
            let all = rt.list()?;
            if a.quiet {
                for s in &all {
                    println!("{}", s.id);
                }
            } else if a.format == "json" {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                let mut t = tabwriter();
                let _ = writeln!(t, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER");
                for s in &all {
                    let _ = writeln!(
                        t,
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        s.id, s.pid, s.status, s.bundle, s.created, s.owner
                    );
                }
                print!("{}", t.finish());
            }
        }
        Verb::Features => println!("{}", serde_json::to_string_pretty(&features())?),
        Verb::Spec(a) => {
            let p = a.bundle.join("config.json");
            if p.exists() {
                bail!("`{}` exists already", p.display());
            }
            let spec = bundle::example_spec(a.rootless)?;
            let text = serde_json::to_string_pretty(&spec)?;
            std::fs::write(&p, text).with_context(|| format!("write `{}`", p.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `oci exec`: the spec's process with this command line's changes, or `--process`'s.
fn exec(rt: &Runtime, a: ExecArgs) -> Result<ExitCode> {
    let process = match &a.process {
        Some(f) => {
            let text = std::fs::read(f).with_context(|| format!("read `{}`", f.display()))?;
            Some(
                serde_json::from_slice(&text)
                    .with_context(|| format!("parse process `{}`", f.display()))?,
            )
        }
        None => None,
    };
    let change = bundle::ExecChange {
        args: a.args,
        env: a.env,
        cwd: a.cwd,
        user: a.user,
        tty: a.tty,
    };
    let code = rt.exec(&a.id, process, &change, a.detach, a.pid_file.as_deref())?;
    Ok(ExitCode::from(code))
}

/// A table with columns padded to their widest cell, three spaces apart (runc's `list`).
struct Table(Vec<Vec<String>>, String);

fn tabwriter() -> Table {
    Table(Vec::new(), String::new())
}

impl Write for Table {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.push_str(&String::from_utf8_lossy(buf));
        while let Some(i) = self.1.find('\n') {
            let line: String = self.1.drain(..=i).collect();
            self.0.push(
                line.trim_end_matches('\n')
                    .split('\t')
                    .map(String::from)
                    .collect(),
            );
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Table {
    fn finish(self) -> String {
        let cols = self.0.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.0
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for r in &self.0 {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                if i + 1 == r.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// What `features` reports (the runtime spec's features document).
fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": bundle::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["bind", "rbind", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
            "strictatime", "relatime", "norelatime", "noatime", "atime", "nodiratime", "diratime",
            "sync", "async", "dirsync", "private", "rprivate"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": crate::runtime::caps::NAMES.iter().map(|n| format!("CAP_{n}")).collect::<Vec<_>>(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": true, "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_TRACE", "SCMP_ACT_LOG"]},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {"io.github.rbox.version": env!("CARGO_PKG_VERSION")}
    })
}
