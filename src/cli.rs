//! The clap definition of the whole command line: global options and the list of
//! subcommands. Each subcommand's `Args` struct lives next to its handler in `cmd/<verb>.rs`.
//! Flags are spelled as Podman spells them, so `alias docker=rbox` keeps working hands working.

use std::path::PathBuf;

use clap::builder::{Resettable, StyledStr};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::cmd;

#[derive(Debug, Parser)]
#[command(
    name = "rbox",
    version,
    about = "Rootless, daemonless containers",
    long_about = "rbox runs OCI containers as an ordinary user: no root, no daemon, no setuid helper \
                  of its own. Images live in a content-addressed store under $XDG_DATA_HOME/rbox.",
    propagate_version = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Storage root (images, layers, container records) [default: storage.conf's graphroot
    /// (rootless_storage_path for users), else $XDG_DATA_HOME/rbox]; a containers/storage
    /// (Podman) store gets rbox's in its subdirectory rbox/
    #[arg(long, global = true, env = "RBOX_ROOT", value_name = "PATH")]
    pub root: Option<PathBuf>,
    /// Directory for volatile state [default: storage.conf's runroot, else $XDG_RUNTIME_DIR/rbox, else /tmp/rbox-run-$UID when that is
    /// a private directory of yours, else run/ in the store]
    #[arg(long, global = true, env = "RBOX_RUNROOT", value_name = "PATH")]
    pub runroot: Option<PathBuf>,
    /// Storage driver for container root filesystems: overlay (kernel overlayfs, falling back
    /// to fuse-overlay, then to copy, when it cannot be mounted), fuse-overlay (rbox's own
    /// FUSE overlay over the same layers) or vfs (always copy; also accepted as copy)
    /// [default: storage.conf's driver, else overlay]
    #[arg(
        long,
        global = true,
        env = "RBOX_STORAGE_DRIVER",
        value_name = "DRIVER"
    )]
    pub storage_driver: Option<String>,
    /// Read-only additional image store (an rbox store made with `rbox --root DIR pull`,
    /// world-readable, e.g. on a cluster filesystem); images are looked up there after the
    /// own store, used in place and never written; repeatable [default: storage.conf's
    /// additionalimagestores]
    #[arg(long, global = true, value_name = "DIR")]
    pub additional_image_store: Vec<PathBuf>,
    /// Directory of OCI hook files (oci-hooks(5)) matched to each container created;
    /// repeatable, a later one's file masks an earlier one's of the same name [default:
    /// containers.conf's hooks_dir, else /usr/share/containers/oci/hooks.d and
    /// /etc/containers/oci/hooks.d]
    #[arg(long, global = true, value_name = "DIR")]
    pub hooks_dir: Vec<PathBuf>,
    /// Storage driver option: overlay.mount_program=PATH is accepted (rbox mounts overlay
    /// itself), "" clears the configured options; others are refused
    #[arg(long, global = true, value_name = "OPTION")]
    pub storage_opt: Vec<String>,
    /// Log messages at or above this level: error, warn, info, debug, trace
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    pub log_level: String,
    /// Send rbox's log messages (those --log-level lets through) to the syslog daemon too, by
    /// its socket (/dev/log, /var/run/syslog or /var/run/log); refused where there is none,
    /// as in Podman
    #[arg(long, global = true)]
    pub syslog: bool,
    /// Send rbox's own standard output to /dev/null (an attached container's output still
    /// reaches the terminal)
    #[arg(long, global = true)]
    pub noout: bool,
    /// OCI runtime: rbox is its own runtime, so only `rbox` (or the path of this binary)
    #[arg(long, global = true, value_name = "RUNTIME")]
    pub runtime: Option<String>,
    /// Flag for the OCI runtime: refused, rbox is its own runtime and takes none
    #[arg(long, global = true, value_name = "FLAG")]
    pub runtime_flag: Vec<String>,
    /// Where events go: file or none (rbox writes no journald events)
    #[arg(long, global = true, value_name = "BACKEND")]
    pub events_backend: Option<String>,
    /// Cgroup manager: cgroupfs (rbox does not talk to systemd)
    #[arg(long, global = true, value_name = "MANAGER")]
    pub cgroup_manager: Option<String>,
    /// Directory for temporary state (accepted; rbox keeps its volatile state under --runroot)
    #[arg(long, global = true, value_name = "PATH")]
    pub tmpdir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a new container
    #[command(after_long_help = EXIT_CODES)]
    Run(cmd::run::RunArgs),
    /// Create a container without starting it
    #[command(after_long_help = EXIT_CODES)]
    Create(cmd::run::RunArgs),
    /// Start one or more created containers
    Start(cmd::start::StartArgs),
    /// Stop one or more running containers
    Stop(cmd::stop::StopArgs),
    /// Restart one or more containers
    Restart(cmd::restart::RestartArgs),
    /// Attach to a running container's terminal or output
    Attach(cmd::attach::AttachArgs),
    /// Send a signal to one or more running containers
    Kill(cmd::kill::KillArgs),
    /// Check that created containers are ready to start, and print them
    Init(cmd::init::InitArgs),
    /// Run a command in a running container
    Exec(cmd::exec::ExecArgs),
    /// Display the running processes of a container
    Top(cmd::top::TopArgs),
    /// Pause all the processes in one or more containers
    Pause(cmd::pause::PauseArgs),
    /// Unpause the processes in one or more containers
    Unpause(cmd::pause::UnpauseArgs),
    /// Display a live stream of container resource usage statistics
    Stats(cmd::stats::StatsArgs),
    /// Print the output of a detached container
    Logs(cmd::logs::LogsArgs),
    /// List the ports a running container publishes
    Port(cmd::port::PortArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cmd::cp::CpArgs),
    /// Display the changes to a container's or image's filesystem
    Diff(cmd::diff::DiffArgs),
    /// Create a new image from a container's changes
    Commit(cmd::commit::CommitArgs),
    /// Export a container's filesystem contents as a tar archive
    Export(cmd::export::ExportArgs),
    /// Mount a container's root filesystem (inside `rbox unshare` when rootless)
    Mount(cmd::mount::MountArgs),
    /// Unmount a container's root filesystem
    #[command(visible_alias = "umount")]
    Unmount(cmd::mount::UnmountArgs),
    /// List containers
    #[command(visible_alias = "list", visible_alias = "ls")]
    Ps(cmd::ps::PsArgs),
    /// Remove one or more containers
    Rm(cmd::rm::RmArgs),
    /// Block until containers stop, then print their exit codes
    Wait(cmd::wait::WaitArgs),
    /// Rename a container
    Rename(cmd::rename::RenameArgs),
    /// Change the resource limits of a container
    Update(cmd::update::UpdateArgs),
    /// Display the configuration of containers or images
    Inspect(cmd::inspect::InspectArgs),
    /// List images in local storage
    Images(cmd::images::ImagesArgs),
    /// Remove one or more images from local storage
    Rmi(cmd::rmi::RmiArgs),
    /// Add an additional name to a local image
    Tag(cmd::tag::TagArgs),
    /// Remove names from an image (all of them when none is given)
    Untag(cmd::untag::UntagArgs),
    /// Show the history of an image
    History(cmd::history::HistoryArgs),
    /// Manage images
    Image(cmd::image::ImageArgs),
    /// Manage containers
    Container(cmd::container::ContainerArgs),
    /// A verb only a group has (`container exists`): never parsed at the top level
    #[command(skip)]
    Grouped(cmd::Grouped),
    /// Load images from a docker-archive or oci-archive
    Load(cmd::load::LoadArgs),
    /// Save images to a docker-archive or oci-archive
    Save(cmd::save::SaveArgs),
    /// Import a tarball as a root filesystem image
    Import(cmd::import::ImportArgs),
    /// Build an image from a Containerfile
    Build(cmd::build::BuildArgs),
    /// Docker's builder group: `buildx build` is `build`
    Buildx(cmd::build::BuildxArgs),
    /// Pull an image from a registry
    Pull(cmd::pull::PullArgs),
    /// Push an image to a registry
    Push(cmd::push::PushArgs),
    /// Show events of containers, images and volumes
    Events(cmd::events::EventsArgs),
    /// Search registries for images (or list a repository's tags)
    Search(cmd::search::SearchArgs),
    /// Log in to a container registry
    Login(cmd::login::LoginArgs),
    /// Log out of a container registry
    Logout(cmd::login::LogoutArgs),
    /// Inspect manifests and manifest lists
    Manifest(cmd::manifest::ManifestArgs),
    /// Manage volumes
    Volume(cmd::volume::VolumeArgs),
    /// Manage secrets
    Secret(cmd::secret::SecretArgs),
    /// Generate systemd units for containers
    Generate(cmd::generate::GenerateArgs),
    /// Run a container's healthcheck
    Healthcheck(cmd::healthcheck::HealthcheckArgs),
    /// Display host, namespace and storage information
    Info(cmd::info::InfoArgs),
    /// Run a command inside rbox's user namespace (e.g. to remove files owned by mapped ids)
    Unshare(cmd::unshare::UnshareArgs),
    /// rbox as an OCI runtime: create, start, state, kill, delete containers from bundles
    #[command(long_about = cmd::oci::LONG_ABOUT)]
    Oci(cmd::oci::OciArgs),
    /// Print a shell completion script
    Completion(cmd::completion::CompletionArgs),
    /// Print version information
    Version(cmd::system::VersionArgs),
    /// Manage rbox: disk usage, pruning, reset, information
    System(cmd::system::SystemArgs),
    /// Remove the container of `run --join=KEY` once no task of KEY is left
    #[command(name = "__join-watch", hide = true)]
    JoinWatch { key: String, id: String },
    /// Regenerate the man pages and completion scripts into DIR (DIR/man, DIR/completions)
    #[command(name = "__generate-docs", hide = true)]
    GenerateDocs {
        /// Directory that receives man/ and completions/
        dir: PathBuf,
    },
}

/// The exit code table of `rbox run` and `rbox create` (also in README.md and `exit.rs`).
pub const EXIT_CODES: &str = "\
Exit status:
  125     rbox itself failed (bad flag, unknown image, storage)
  126     the command cannot be invoked (not executable)
  127     the command was not found
  128+n   the container was killed by signal n (137 = SIGKILL)
  other   the exit status of the container command

Examples:
  rbox run --rm busybox sh -c 'exit 3'; echo $?   # 3
  rbox run --rm busybox /nonexistent; echo $?     # 127
  rbox run --rm --init busybox sh -c 'kill -9 $$'; echo $?  # 137
  (without --init the shell is PID 1, which the kernel shields from its own signals: 0)";

/// The whole command line, with the dynamic completers attached to the arguments defined in
/// files this module does not own (run/create IMAGE, push IMAGE).
pub fn command() -> clap::Command {
    command_with(true)
}

/// The command tree; `twins`: with the `container` and `image` verbs given their twins' help
/// texts, which copies the whole tree twice (about a millisecond): [`parse`] skips it when no
/// argument names either group, as no help text of theirs can be shown then.
fn command_with(twins: bool) -> clap::Command {
    // `mut_args` edits in place: `mut_arg` would move the argument to the end and change the
    // order of positionals.
    let image_args = |c: clap::Command| {
        c.mut_args(|a| {
            if a.get_id() == "image" {
                complete::images(a)
            } else {
                a
            }
        })
    };
    // `create` shares run's flags but for these, which it refuses as Podman does
    let create_args = |c: clap::Command| {
        image_args(c).mut_args(|a| match a.get_id().as_str() {
            "detach_keys" | "sig_proxy" => a.hide(true),
            _ => a,
        })
    };
    let cmd = Cli::command()
        .mut_subcommand("run", image_args)
        .mut_subcommand("create", create_args)
        .mut_subcommand("push", image_args)
        .mut_subcommand("image", |c| c.mut_subcommand("push", image_args))
        .mut_subcommand("container", |c| {
            c.mut_subcommand("run", image_args)
                .mut_subcommand("create", create_args)
        });
    if !twins {
        return last_value_wins(cmd);
    }
    let cmd = twins_help(cmd, "container", cmd::container::twin);
    last_value_wins(twins_help(cmd, "image", cmd::image::twin))
}

/// As Podman (pflag): a single-value option given twice takes the last value, in every
/// subcommand (`args_override_self` is not inherited by subcommands).
fn last_value_wins(cmd: clap::Command) -> clap::Command {
    cmd.args_override_self(true)
        .mut_subcommands(last_value_wins)
}

/// Names the top-level command a group's verb is the twin of (`cmd::container::twin`).
type Twin = fn(&str) -> Option<&str>;

/// Give each verb of the group `group` the help text of its top-level twin (`twin` names it),
/// so that `rbox container run --help` and its man page say what `rbox run`'s do.
fn twins_help(cmd: clap::Command, group: &str, twin: Twin) -> clap::Command {
    let top = cmd.clone();
    cmd.mut_subcommand(group, |g| {
        g.mut_subcommands(|verb| {
            let Some(t) = twin(verb.get_name()).and_then(|t| top.find_subcommand(t)) else {
                return verb;
            };
            let text = |s: Option<&StyledStr>| Resettable::from(s.cloned());
            verb.about(text(t.get_about()))
                .long_about(text(t.get_long_about()))
                .before_help(text(t.get_before_help()))
                .before_long_help(text(t.get_before_long_help()))
                .after_help(text(t.get_after_help()))
                .after_long_help(text(t.get_after_long_help()))
        })
    })
}

/// Parse the command line. Usage errors exit 125 as Podman's do (rbox itself failed: a bad
/// flag), not clap's 2, and print one line that says what to change (see [`usage_error`]);
/// `--help` and `--version` exit 0.
pub fn parse() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let alone = [
        parse_oci_only,
        parse_run_only,
        parse_create_only,
        parse_start_only,
        parse_exec_only,
        parse_ps_only,
        parse_rm_only,
        parse_stop_only,
        parse_inspect_only,
    ];
    if let Some(cli) = alone.iter().find_map(|parse| parse(&args)) {
        return cli;
    }
    let twins = std::env::args_os()
        .skip(1)
        .any(|a| a == "container" || a == "image");
    let res = command_with(twins)
        .try_get_matches()
        .and_then(|mut m| Cli::from_arg_matches_mut(&mut m));
    match res {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) => {
            let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
            eprintln!("Error: {}", usage_error(&e, &argv));
            std::process::exit(i32::from(crate::exit::FAILED));
        }
    }
}

/// `rbox [global options] oci VERB ...` with no help asked for: parsed by a command line that
/// holds the global options and `oci` alone, as building all of rbox's commands costs
/// milliseconds, which is most of an OCI runtime verb's own time. Anything else, an error
/// included, is left to the whole command line (`None`), so what is printed stays its.
fn parse_oci_only(args: &[std::ffi::OsString]) -> Option<Cli> {
    #[derive(Debug, Parser)]
    #[command(name = "rbox", version, disable_help_subcommand = true)]
    struct OciOnly {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        command: OciOnlyCommand,
    }
    #[derive(Debug, Subcommand)]
    enum OciOnlyCommand {
        Oci(cmd::oci::OciArgs),
    }
    if !names("oci", args) {
        return None;
    }
    let mut m = last_value_wins(OciOnly::command())
        .try_get_matches_from(args)
        .ok()?;
    let OciOnly { global, command } = OciOnly::from_arg_matches_mut(&mut m).ok()?;
    let OciOnlyCommand::Oci(a) = command;
    Some(Cli {
        global,
        command: Command::Oci(a),
    })
}

/// A parser of `rbox [global options] VERB ...` with no help asked for, by a command line of
/// the global options and that verb alone, as [`parse_oci_only`] does for `oci`: the whole
/// command line costs about 3 ms of CPU and 450 page faults to build, a fifth of a
/// container's start. Anything else, an error included, is left to the whole command line
/// (`None`). `$variant` is the verb's [`Command`], named as clap names it.
macro_rules! parse_alone {
    ($name:ident, $verb:literal, $variant:ident, $args:ty) => {
        fn $name(args: &[std::ffi::OsString]) -> Option<Cli> {
            #[derive(Debug, Parser)]
            #[command(name = "rbox", version, disable_help_subcommand = true)]
            struct Alone {
                #[command(flatten)]
                global: GlobalArgs,
                #[command(subcommand)]
                command: AloneCommand,
            }
            #[derive(Debug, Subcommand)]
            enum AloneCommand {
                $variant($args),
            }
            if !names($verb, args) {
                return None;
            }
            let mut m = last_value_wins(Alone::command())
                .try_get_matches_from(args)
                .ok()?;
            // (taken from the matches, not from a copy of them: derive's `from_arg_matches`
            // clones all of them first, defaults of every flag included)
            let Alone { global, command } = Alone::from_arg_matches_mut(&mut m).ok()?;
            let AloneCommand::$variant(a) = command;
            Some(Cli {
                global,
                command: Command::$variant(a),
            })
        }
    };
}

// the start-up paths: a container's, in one step or two, and a process's in a container
parse_alone!(parse_run_only, "run", Run, cmd::run::RunArgs);
parse_alone!(parse_create_only, "create", Create, cmd::run::RunArgs);
parse_alone!(parse_start_only, "start", Start, cmd::start::StartArgs);
parse_alone!(parse_exec_only, "exec", Exec, cmd::exec::ExecArgs);
// what scripts run in loops around them
parse_alone!(parse_ps_only, "ps", Ps, cmd::ps::PsArgs);
parse_alone!(parse_rm_only, "rm", Rm, cmd::rm::RmArgs);
parse_alone!(parse_stop_only, "stop", Stop, cmd::stop::StopArgs);
parse_alone!(
    parse_inspect_only,
    "inspect",
    Inspect,
    cmd::inspect::InspectArgs
);

/// Whether one of the words of the command line `args` is `verb` and none asks for help or
/// the version (which the whole command line answers).
fn names(verb: &str, args: &[std::ffi::OsString]) -> bool {
    let asks_help = |a: &std::ffi::OsString| {
        ["-h", "--help", "-V", "--version", "help"]
            .iter()
            .any(|h| a == h)
    };
    args.iter().skip(1).any(|a| a == verb) && !args.iter().any(asks_help)
}

/// Podman flags that rbox does not implement yet, with what to do instead. Without this a
/// user who types `-p 8080:80` or `--memory 1g` from habit gets clap's generic usage text.
const NOT_YET: &[(&[&str], &str)] = &[
    (
        &["--url", "--connection", "--remote", "-r", "--identity"],
        "rbox has no remote service: it runs containers on this host only; run rbox on the \
         other host (e.g. over ssh)",
    ),
    (
        &["--ip", "--mac-address"],
        "rbox gives a container no address of its own yet: its bridge (pasta, slirp4netns) \
         picks it",
    ),
    (
        &["--cgroup-parent"],
        "rbox puts a container's cgroup under /rbox as root, and rootless only in a \
         subtree delegated to you (rootless Podman 4.3 fails with this flag too): drop the flag",
    ),
    (
        &["--pod", "--pod-id-file"],
        "rbox has no pods: run the containers separately",
    ),
];

/// One line for a usage error in the command line `argv`: what is wrong, and what to do
/// instead. clap's own text spans several lines (a tip, the usage, a pointer to --help); rbox
/// errors are one line.
pub fn usage_error(e: &clap::Error, argv: &[std::ffi::OsString]) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let help = format!("see `{} --help`", subcommand_path(argv).join(" "));
    let missing = e.kind() == ErrorKind::MissingRequiredArgument;
    let extra = e.kind() == ErrorKind::UnknownArgument
        && !matches!(e.get(ContextKind::InvalidArg),
                     Some(ContextValue::String(s)) if s.starts_with('-'));
    if missing || extra {
        if let Some(line) = arity_error(argv, missing) {
            return line;
        }
    }
    if e.kind() == ErrorKind::UnknownArgument {
        let arg = match e.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(s)) => s.clone(),
            _ => String::new(),
        };
        let flag = arg.split('=').next().unwrap_or_default();
        if let Some((_, why)) = NOT_YET.iter().find(|(flags, _)| flags.contains(&flag)) {
            return format!("unsupported flag `{flag}`: {why}");
        }
        return format!("unknown flag `{flag}`: {help}");
    }
    // clap's message up to its tip and usage lines, joined into one line, without its
    // "error: " and with backticks for quotes
    let text = e.render().to_string();
    let what: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("tip:"))
        .collect();
    let what = what.join(" ");
    let what = what.strip_prefix("error: ").unwrap_or(&what);
    format!("{}: {help}", what.replace('\'', "`"))
}

/// Podman's own words where a command checks its arguments itself and none were given, by
/// command path (`rbox container X` looks up `rbox X`; `{}` stands for the path typed).
const NO_ARGS_GIVEN: &[(&str, &str)] = &[
    ("rbox rmi", "image name or ID must be specified"),
    ("rbox image rm", "image name or ID must be specified"),
    ("rbox image unmount", "image name or ID must be specified"),
    ("rbox save", "need at least 1 argument"),
    ("rbox image save", "need at least 1 argument"),
    ("rbox image inspect", "no names or ids specified"),
    ("rbox inspect", "no names or ids specified"),
    ("rbox start", "start requires at least one argument"),
    ("rbox stop", "you must provide at least one name or id"),
    ("rbox kill", "you must provide at least one name or id"),
    ("rbox rm", "you must provide at least one name or id"),
    ("rbox restart", "you must provide at least one name or id"),
    (
        "rbox attach",
        "\"{}\" requires a name, id, or the \"--latest\" flag",
    ),
    (
        "rbox exec",
        "exec requires the name or ID of a container or the --latest flag",
    ),
    (
        "rbox logs",
        "specify at least one container name or ID to log",
    ),
    (
        "rbox port",
        "you must supply a running container name or id",
    ),
    (
        "rbox top",
        "you must provide the name or id of a running container",
    ),
    (
        "rbox wait",
        "\"{}\" requires a name, id, or the \"--latest\" flag",
    ),
    (
        "rbox diff",
        "\"{}\" requires a name, id, or the \"--latest\" flag",
    ),
];

/// A wrong number of arguments in the words of Podman's command-line library (cobra), which
/// scripts and users see from podman: "accepts 1 arg(s), received 2", "requires at least 1
/// arg(s), only received 0", "`rbox load` takes no arguments". `missing`: clap found a
/// required argument missing (one that is required only without some flag counts as one).
/// `None` when the command's arguments cannot be counted that way.
fn arity_error(argv: &[std::ffi::OsString], missing: bool) -> Option<String> {
    let (path, leaf, start) = leaf_command(argv);
    let given = count_positionals(&leaf, &argv[start..]);
    let path = path.join(" ");
    if given == 0 {
        let short = path.replacen("rbox container ", "rbox ", 1);
        if let Some((_, words)) = NO_ARGS_GIVEN.iter().find(|(p, _)| *p == short) {
            return Some(words.replace("{}", &path));
        }
    }
    let (mut min, mut max) = (0usize, Some(0usize));
    for a in leaf.get_positionals() {
        let range = a.get_num_args().unwrap_or_default();
        if a.is_required_set() {
            min += range.min_values().max(1);
        }
        max = match (max, range.max_values()) {
            (Some(m), n) if n != usize::MAX => Some(m + n),
            _ => None,
        };
    }
    if missing {
        min = min.max(1);
    }
    // a count that does not explain the error (a missing command after the container):
    // clap's own words say which argument is missing
    if missing && given >= min {
        return None;
    }
    Some(match max {
        Some(0) => format!("`{path}` takes no arguments"),
        Some(m) if min == 0 => format!("accepts at most {m} arg(s), received {given}"),
        None if min == 0 => return None,
        Some(m) if m == min => format!("accepts {min} arg(s), received {given}"),
        Some(m) => format!("accepts between {min} and {m} arg(s), received {given}"),
        None => format!("requires at least {min} arg(s), only received {given}"),
    })
}

/// The deepest subcommand named in `argv` (with globals propagated), its path from `rbox`,
/// and where its own arguments start. The path ends at the first word that is not a flag, a
/// flag's value or a subcommand: `rbox network ls` is `rbox` (no `network` command), not
/// `rbox ls` (`ps`'s alias).
fn leaf_command(argv: &[std::ffi::OsString]) -> (Vec<String>, clap::Command, usize) {
    let mut cmd = command();
    cmd.build();
    let mut path = vec!["rbox".to_string()];
    let mut start = 1;
    while cmd.has_subcommands() {
        let rest = &argv[start.min(argv.len())..];
        let Some(i) = positionals(&cmd, rest).first().copied() else {
            break;
        };
        let Some(sub) = rest[i]
            .to_str()
            .and_then(|a| cmd.find_subcommand(a))
            .cloned()
        else {
            break;
        };
        path.push(sub.get_name().to_string());
        cmd = sub;
        start += i + 1;
    }
    (path, cmd, start)
}

/// How many of `args` are positional arguments of `cmd`: not flags, nor flags' values.
fn count_positionals(cmd: &clap::Command, args: &[std::ffi::OsString]) -> usize {
    positionals(cmd, args).len()
}

/// Where in `args` the positional arguments of `cmd` are: not flags, nor flags' values
/// (everything after `--`).
fn positionals(cmd: &clap::Command, args: &[std::ffi::OsString]) -> Vec<usize> {
    let takes_value = |a: Option<&clap::Arg>| {
        a.is_some_and(|a| a.get_num_args().unwrap_or_default().min_values() > 0)
    };
    let mut out = Vec::new();
    let mut it = args.iter().map(|a| a.to_string_lossy()).enumerate();
    while let Some((i, a)) = it.next() {
        if a == "--" {
            out.extend(it.map(|(j, _)| j));
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            if !long.contains('=')
                && takes_value(cmd.get_arguments().find(|x| x.get_long() == Some(long)))
            {
                it.next();
            }
        } else if let Some(shorts) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            // the first short flag that takes a value takes the rest, or the next argument
            for (k, c) in shorts.char_indices() {
                if takes_value(cmd.get_arguments().find(|x| x.get_short() == Some(c))) {
                    if k + c.len_utf8() == shorts.len() {
                        it.next();
                    }
                    break;
                }
            }
        } else {
            out.push(i);
        }
    }
    out
}

/// The command path this invocation typed (`rbox container wait`), for the texts in which
/// Podman names the command as typed, where a command refuses its arguments itself.
pub fn typed_path() -> String {
    subcommand_path(&std::env::args_os().collect::<Vec<_>>()).join(" ")
}

/// The subcommands named in `argv`, from `rbox` down: `rbox --root /x image ls -q` gives
/// `["rbox", "image", "ls"]`.
fn subcommand_path(argv: &[std::ffi::OsString]) -> Vec<String> {
    leaf_command(argv).0
}

/// Answer a dynamic completion request when the shell asks for one, and exit.
pub fn complete_env() {
    clap_complete::CompleteEnv::with_factory(command).complete();
}

/// Dynamic completion of image and container names, read straight from the store directory:
/// no lock, no user namespace, no record parsing, so a TAB stays instant with hundreds of
/// images. Attach with `#[arg(add = complete::image_candidates())]`.
pub mod complete {
    use std::path::PathBuf;

    use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};

    /// The store root the command line being completed names (`--root X`, `--root=X`), else
    /// `$RBOX_ROOT`, else the default.
    fn root() -> Option<PathBuf> {
        let args: Vec<String> = std::env::args().collect();
        for (i, a) in args.iter().enumerate() {
            if let Some(v) = a.strip_prefix("--root=") {
                return Some(PathBuf::from(v));
            }
            if a == "--root" {
                if let Some(v) = args.get(i + 1) {
                    return Some(PathBuf::from(v));
                }
            }
        }
        if let Some(r) = std::env::var_os("RBOX_ROOT") {
            return Some(PathBuf::from(r));
        }
        crate::paths::storage_root(None).ok()
    }

    /// Image names as stored (`localhost/busybox:latest`) and as people type them
    /// (`busybox:latest`, `busybox`).
    pub fn image_names() -> Vec<String> {
        let Some(root) = root() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for full in rbox_storage::list_image_names_fast(&root) {
            for short in familiar(&full) {
                out.push(short);
            }
            out.push(full);
        }
        out.sort();
        out.dedup();
        out
    }

    /// The short spellings that resolve to `full`.
    pub fn familiar(full: &str) -> Vec<String> {
        let mut out = Vec::new();
        for prefix in ["localhost/", "docker.io/library/"] {
            if let Some(short) = full.strip_prefix(prefix) {
                if let Some(repo) = short.strip_suffix(":latest") {
                    out.push(repo.to_string());
                }
                out.push(short.to_string());
            }
        }
        out
    }

    /// Container names: one file per name under `container-names/`.
    pub fn container_names() -> Vec<String> {
        let Some(root) = root() else {
            return Vec::new();
        };
        let Ok(rd) = std::fs::read_dir(crate::layout::container_names_dir(&root)) else {
            return Vec::new();
        };
        let mut v: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        v.sort();
        v
    }

    /// Volume names: one directory per volume under `volumes/`.
    pub fn volume_names() -> Vec<String> {
        let Some(root) = root() else {
            return Vec::new();
        };
        let Ok(rd) = std::fs::read_dir(rbox_storage::volume::volumes_dir_in(&root)) else {
            return Vec::new();
        };
        let mut v: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        v.sort();
        v
    }

    /// Secret names, from the records under `secrets/`.
    pub fn secret_names() -> Vec<String> {
        let Some(root) = root() else {
            return Vec::new();
        };
        let mut v: Vec<String> = rbox_storage::secret::secrets_in(&root)
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.name)
            .collect();
        v.sort();
        v
    }

    pub fn secret_candidates() -> ArgValueCandidates {
        ArgValueCandidates::new(|| {
            secret_names()
                .into_iter()
                .map(CompletionCandidate::new)
                .collect::<Vec<_>>()
        })
    }

    pub fn volume_candidates() -> ArgValueCandidates {
        ArgValueCandidates::new(|| {
            volume_names()
                .into_iter()
                .map(CompletionCandidate::new)
                .collect::<Vec<_>>()
        })
    }

    pub fn image_candidates() -> ArgValueCandidates {
        ArgValueCandidates::new(|| {
            image_names()
                .into_iter()
                .map(CompletionCandidate::new)
                .collect::<Vec<_>>()
        })
    }

    pub fn container_candidates() -> ArgValueCandidates {
        ArgValueCandidates::new(|| {
            container_names()
                .into_iter()
                .map(CompletionCandidate::new)
                .collect::<Vec<_>>()
        })
    }

    /// Containers, then images: what `rbox inspect` takes.
    pub fn object_candidates() -> ArgValueCandidates {
        ArgValueCandidates::new(|| {
            container_names()
                .into_iter()
                .chain(image_names())
                .map(CompletionCandidate::new)
                .collect::<Vec<_>>()
        })
    }

    /// `rbox ps --filter` values: name=NAME for each container, and the status values.
    pub fn ps_filter_candidates() -> ArgValueCandidates {
        ArgValueCandidates::new(|| {
            container_names()
                .into_iter()
                .map(|n| format!("name={n}"))
                .chain(
                    [
                        "status=running",
                        "status=exited",
                        "status=created",
                        "restart-policy=always",
                        "restart-policy=unless-stopped",
                        "restart-policy=on-failure",
                    ]
                    .map(String::from),
                )
                .chain(image_names().into_iter().map(|i| format!("ancestor={i}")))
                .map(CompletionCandidate::new)
                .collect::<Vec<_>>()
        })
    }

    pub(super) fn images(a: clap::Arg) -> clap::Arg {
        a.add(image_candidates())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own consistency checks over the whole tree, with the completers attached (a
    /// reordered positional once made `rbox run` panic at parse time).
    #[test]
    fn command_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn familiar_names() {
        assert_eq!(
            complete::familiar("localhost/busybox:latest"),
            vec!["busybox".to_string(), "busybox:latest".to_string()]
        );
        assert_eq!(
            complete::familiar("docker.io/library/alpine:3.19"),
            vec!["alpine:3.19".to_string()]
        );
        assert!(complete::familiar("quay.io/x/y:1").is_empty());
    }

    #[test]
    fn image_group_and_aliases_parse() {
        let cli = Cli::try_parse_from(["rbox", "image", "ls", "-q"]).unwrap();
        assert!(matches!(cli.command, Command::Image(_)));
        let cli = Cli::try_parse_from(["rbox", "ps", "-a", "--format", "{{.ID}}"]).unwrap();
        assert!(
            matches!(cli.command, Command::Ps(ref a) if a.all && a.format.as_deref() == Some("{{.ID}}"))
        );
        // rm with nothing to remove parses; it is refused in Podman's words when it runs
        assert!(Cli::try_parse_from(["rbox", "rm"]).is_ok());
        assert!(Cli::try_parse_from(["rbox", "rm", "--bogus"]).is_err());
        assert!(Cli::try_parse_from(["rbox", "rm", "-a"]).is_ok());
    }

    /// A group's verb is its twin: the same arguments and help, the same handler.
    #[test]
    fn group_verbs_are_their_top_level_twins() {
        let cmd = command();
        let groups: [(&str, Twin); 2] = [
            ("container", cmd::container::twin),
            ("image", cmd::image::twin),
        ];
        for (group, twin) in groups {
            let g = cmd.find_subcommand(group).unwrap();
            for verb in g.get_subcommands() {
                let name = verb.get_name();
                let Some(t) = twin(name) else {
                    assert!(
                        ["inspect", "exists", "prune", "cleanup", "tree", "mount", "unmount"]
                            .contains(&name),
                        "only inspect and the group's own verbs are not twins: {name}"
                    );
                    // as in Podman, which has no top-level `exists`, `prune`, `cleanup`, `tree`
                    assert!(
                        // `image mount`/`unmount` are the image's: the top-level ones are the container's
                        ["inspect", "mount", "unmount"].contains(&name)
                            || cmd.find_subcommand(name).is_none(),
                        "{group} {name}"
                    );
                    continue;
                };
                let t = cmd.find_subcommand(t).unwrap();
                let ids = |c: &clap::Command| {
                    c.get_arguments()
                        .map(|a| a.get_id().clone())
                        .collect::<Vec<_>>()
                };
                assert_eq!(ids(verb), ids(t), "{group} {name}");
                assert_eq!(verb.get_about(), t.get_about(), "{group} {name}");
                assert!(verb.get_about().is_some(), "{group} {name}");
                assert_eq!(
                    verb.get_after_long_help().map(|s| s.to_string()),
                    t.get_after_long_help().map(|s| s.to_string()),
                    "{group} {name}"
                );
            }
        }
        let parsed = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Container(a) => Command::from(a.command),
            Command::Image(a) => Command::from(a.command),
            c => c,
        };
        assert!(matches!(parsed(&["rbox", "container", "ls", "-a"]), Command::Ps(a) if a.all));
        assert!(
            matches!(parsed(&["rbox", "container", "rm", "-f", "c"]), Command::Rm(a) if a.force)
        );
        assert!(matches!(
            parsed(&["rbox", "container", "inspect", "c"]),
            Command::Inspect(a) if a.kind == "container" && a.names == ["c"]
        ));
        assert!(matches!(
            parsed(&["rbox", "image", "rm", "x"]),
            Command::Rmi(_)
        ));
        assert!(matches!(
            parsed(&["rbox", "image", "inspect", "-f", "{{.Id}}", "x"]),
            Command::Inspect(a) if a.kind == "image" && a.format.as_deref() == Some("{{.Id}}")
        ));
    }

    /// `rbox run` (create, start, exec) parsed by the command line of that verb alone gives
    /// what the whole command line gives; help, the version, other verbs and errors are left to
    /// the whole one.
    #[test]
    fn verbs_alone_parse_as_the_whole_command_line() {
        let argv =
            |args: &[&str]| -> Vec<std::ffi::OsString> { args.iter().map(Into::into).collect() };
        let whole = |args: &[&str]| {
            let m = command_with(false).try_get_matches_from(args).unwrap();
            format!("{:?}", Cli::from_arg_matches(&m).unwrap())
        };
        for args in [
            &["rbox", "run", "--rm", "--network=none", "bb", "/bin/true"][..],
            &[
                "rbox",
                "--root",
                "/r",
                "--runroot",
                "/rr",
                "run",
                "--rm",
                "bb",
                "true",
            ],
            &[
                "rbox", "run", "--name", "a", "--name", "b", "-e", "A=1", "-e", "B", "bb",
            ],
            &[
                "rbox", "run", "-it", "--rm", "bb", "sh", "-c", "ls -l", "run",
            ],
            &["rbox", "run", "bb", "ls", "-l", "--rm"],
            &[
                "rbox",
                "run",
                "--log-level",
                "debug",
                "-v",
                "/a:/b:ro",
                "bb",
            ],
        ] {
            let alone = parse_run_only(&argv(args)).expect("parsed by run alone");
            assert_eq!(format!("{alone:?}"), whole(args), "{args:?}");
        }
        type Parse = fn(&[std::ffi::OsString]) -> Option<Cli>;
        let others: [(Parse, &[&str]); 10] = [
            (
                parse_ps_only,
                &[
                    "rbox", "ps", "-a", "--format", "{{.ID}}", "--filter", "name=x",
                ],
            ),
            (
                parse_rm_only,
                &["rbox", "--root", "/r", "rm", "-f", "a", "b"],
            ),
            (parse_stop_only, &["rbox", "stop", "-t", "3", "c"]),
            (
                parse_inspect_only,
                &["rbox", "inspect", "--type", "image", "-f", "{{.Id}}", "bb"],
            ),
            (parse_inspect_only, &["rbox", "inspect", "c"]),
            (
                parse_create_only,
                &["rbox", "create", "--name", "c", "bb", "run"],
            ),
            (
                parse_start_only,
                &["rbox", "--root", "/r", "start", "-a", "c"],
            ),
            (
                parse_exec_only,
                &["rbox", "exec", "-it", "c", "sh", "-c", "ls -l"],
            ),
            (
                parse_exec_only,
                &["rbox", "exec", "-e", "A=1", "-w", "/tmp", "c", "run"],
            ),
            (parse_exec_only, &["rbox", "exec", "c", "ls", "-l", "--rm"]),
        ];
        for (parse, args) in others {
            let alone = parse(&argv(args)).expect("parsed by the verb alone");
            assert_eq!(format!("{alone:?}"), whole(args), "{args:?}");
        }
        assert!(parse_run_only(&argv(&["rbox", "exec", "c", "run"])).is_none());
        assert!(parse_exec_only(&argv(&["rbox", "run", "bb", "exec"])).is_none());
        assert!(parse_start_only(&argv(&["rbox", "container", "start", "c"])).is_none());
        assert!(parse_rm_only(&argv(&["rbox", "image", "rm", "bb"])).is_none());
        assert!(parse_ps_only(&argv(&["rbox", "container", "ps"])).is_none());
        assert!(
            parse_rm_only(&argv(&["rbox", "rm", "--bogus"])).is_none(),
            "an error is the whole line's"
        );
        for args in [
            &["rbox", "run", "--help"][..],
            &["rbox", "run", "bb", "sh", "-h"],
            &["rbox", "--version", "run"],
            &["rbox", "container", "run", "bb"],
            &["rbox", "--root", "run", "ps"],
            &["rbox", "run", "--no-such-flag", "bb"],
            &["rbox", "ps"],
        ] {
            assert!(parse_run_only(&argv(args)).is_none(), "{args:?}");
        }
    }

    fn usage_line(args: &[&str]) -> String {
        let e = command().try_get_matches_from(args).unwrap_err();
        let argv: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        usage_error(&e, &argv)
    }

    #[test]
    fn usage_errors_are_one_line_with_what_to_change() {
        let l = usage_line(&["rbox", "run", "--ip", "10.0.0.2", "busybox"]);
        assert!(
            l.starts_with("unsupported flag `--ip`: rbox gives a container no address"),
            "{l}"
        );
        let l = usage_line(&["rbox", "create", "--cgroup-parent", "x", "busybox"]);
        assert!(l.starts_with("unsupported flag `--cgroup-parent`"), "{l}");
        let l = usage_line(&["rbox", "run", "--frobnicate", "busybox"]);
        assert_eq!(l, "unknown flag `--frobnicate`: see `rbox run --help`");
        let l = usage_line(&["rbox", "image", "ls", "--bogus"]);
        assert_eq!(l, "unknown flag `--bogus`: see `rbox image ls --help`");
        // podman 4.3's (cobra's) words for a wrong number of arguments
        for (args, want) in [
            (
                &["rbox", "run"][..],
                "requires at least 1 arg(s), only received 0",
            ),
            (
                &["rbox", "--root", "/x", "history", "-q"],
                "accepts 1 arg(s), received 0",
            ),
            (
                &["rbox", "image", "exists", "a", "b"],
                "accepts 1 arg(s), received 2",
            ),
            (
                &["rbox", "tag", "a"],
                "requires at least 2 arg(s), only received 1",
            ),
            (
                &["rbox", "import"],
                "accepts between 1 and 2 arg(s), received 0",
            ),
            (
                &["rbox", "system", "df", "x"],
                "`rbox system df` takes no arguments",
            ),
            (
                &["rbox", "load", "-i", "f", "x"],
                "`rbox load` takes no arguments",
            ),
            (&["rbox", "rmi"], "image name or ID must be specified"),
            (&["rbox", "save", "-o", "f"], "need at least 1 argument"),
            (
                &["rbox", "volume", "create", "a", "b"],
                "accepts at most 1 arg(s), received 2",
            ),
        ] {
            assert_eq!(usage_line(args), want, "{args:?}");
        }
        let l = usage_line(&["rbox", "frob"]);
        assert!(
            l.contains("`frob`") && l.ends_with("see `rbox --help`"),
            "{l}"
        );
        let l2 = usage_line(&["rbox", "--root", "/x", "ps", "--last", "x"]);
        assert!(l2.ends_with("see `rbox ps --help`"), "{l2}");
        for l in [l, l2] {
            assert!(!l.contains('\n'), "{l}");
        }
    }
}
