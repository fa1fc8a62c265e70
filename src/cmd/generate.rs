//! `rbox generate systemd CONTAINER...`: a systemd user unit per container that starts it
//! with `rbox start` and stops it with `rbox stop`, as `podman generate systemd` writes them
//! (`Type=forking`, the container's monitor as the unit's main process through the pid file
//! the monitor of a detached container writes). No daemon needed: the unit and the monitor
//! are all there is.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

use crate::cli::complete;
use crate::context::Context;
use crate::layout;
use crate::state::{self, ContainerRecord};

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    pub command: GenerateCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum GenerateCommand {
    /// Print a systemd user unit that starts and stops a container
    Systemd(SystemdArgs),
}

#[derive(Debug, clap::Args)]
pub struct SystemdArgs {
    /// Name the unit and the commands by the container's name instead of its id
    #[arg(short = 'n', long)]
    pub name: bool,
    /// Write CONTAINER-PREFIX-NAME.service files in the current directory and print their
    /// paths, instead of printing the units
    #[arg(short = 'f', long)]
    pub files: bool,
    /// Print the units as a JSON object, unit name to text
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Leave out the comment lines at the top
    #[arg(long = "no-header")]
    pub no_header: bool,
    /// systemd's Restart= for the unit
    #[arg(
        long = "restart-policy",
        value_name = "POLICY",
        default_value = "on-failure"
    )]
    pub restart_policy: String,
    /// systemd's RestartSec= for the unit
    #[arg(long = "restart-sec", value_name = "SECONDS")]
    pub restart_sec: Option<u64>,
    /// systemd's TimeoutStartSec=
    #[arg(long = "start-timeout", value_name = "SECONDS")]
    pub start_timeout: Option<u64>,
    /// Seconds `rbox stop` waits before SIGKILL
    #[arg(
        long = "stop-timeout",
        alias = "time",
        short = 't',
        value_name = "SECONDS",
        default_value_t = 10
    )]
    pub stop_timeout: u64,
    /// Prefix of the unit's name
    #[arg(
        long = "container-prefix",
        value_name = "PREFIX",
        default_value = "container"
    )]
    pub container_prefix: String,
    /// Separator between the prefix and the name or id
    #[arg(long, value_name = "SEP", default_value = "-")]
    pub separator: String,
    /// Add After= dependencies
    #[arg(long, value_name = "UNIT")]
    pub after: Vec<String>,
    /// Add Wants= dependencies
    #[arg(long, value_name = "UNIT")]
    pub wants: Vec<String>,
    /// Add Requires= dependencies
    #[arg(long, value_name = "UNIT")]
    pub requires: Vec<String>,
    /// Set environment variables in the unit (KEY=VALUE)
    #[arg(short = 'e', long = "env", value_name = "ENV")]
    pub env: Vec<String>,
    /// Create a new container at each start (not supported: rbox keeps no create command line)
    #[arg(long)]
    pub new: bool,
    /// Containers (names or ids)
    #[arg(value_name = "CONTAINER", required = true, add = complete::container_candidates())]
    pub containers: Vec<String>,
}

pub fn run(g: &Context, a: GenerateArgs) -> Result<ExitCode> {
    match a.command {
        GenerateCommand::Systemd(s) => systemd(g, s),
    }
}

fn systemd(g: &Context, a: SystemdArgs) -> Result<ExitCode> {
    if a.new {
        bail!("--new is not supported: rbox keeps no create command line to run again; generate the unit for the existing container");
    }
    if let Some(f) = a.format.as_deref().filter(|f| *f != "json") {
        bail!("unsupported format `{f}`: only json");
    }
    let exe = std::env::current_exe().context("find the rbox executable")?;
    let runtime_dir = g.runtime_dir()?;
    let mut units = Vec::new();
    for c in &a.containers {
        let rec = state::lookup(g, c)?;
        if rec.spec.restart.restarts() {
            tracing::warn!(
                "container {} has restart policy {:?}, which can lead to issues on shutdown: consider recreating it without a restart policy and using systemd's restart mechanism instead",
                rec.id,
                rec.spec.restart.name
            );
        }
        units.push(unit(&a, &rec, &exe, g, &runtime_dir));
    }
    if a.files {
        for (name, text) in &units {
            let p = std::env::current_dir()
                .context("find the current directory")?
                .join(format!("{name}.service"));
            std::fs::write(&p, text).with_context(|| format!("write `{}`", p.display()))?;
            println!("{}", p.display());
        }
    } else if a.format.is_some() {
        let m: serde_json::Map<String, serde_json::Value> = units
            .into_iter()
            .map(|(n, t)| (n, serde_json::Value::String(t)))
            .collect();
        println!("{}", serde_json::to_string_pretty(&m).expect("plain json"));
    } else {
        for (i, (_, text)) in units.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The unit's name (without `.service`) and its text.
fn unit(
    a: &SystemdArgs,
    rec: &ContainerRecord,
    exe: &std::path::Path,
    g: &Context,
    runtime_dir: &std::path::Path,
) -> (String, String) {
    let who = if a.name { &rec.name } else { &rec.id };
    let name = format!("{}{}{who}", a.container_prefix, a.separator);
    // the global options that point rbox at this store, so the unit finds the container
    let mut rbox = exe.display().to_string();
    for (flag, v) in g.explicit_dirs() {
        let _ = write!(rbox, " {flag} {}", v.display());
    }
    let mut t = String::new();
    if !a.no_header {
        let _ = writeln!(t, "# {name}.service");
        let _ = writeln!(t, "# autogenerated by rbox {}", env!("CARGO_PKG_VERSION"));
        let _ = writeln!(t, "# {}\n", crate::state::now_rfc3339());
    }
    let _ = writeln!(t, "[Unit]");
    let _ = writeln!(t, "Description=rbox {name}.service");
    let _ = writeln!(t, "Documentation=man:rbox-generate-systemd(1)");
    let mut wants = vec!["network-online.target".to_string()];
    wants.extend(a.wants.iter().cloned());
    let mut after = vec!["network-online.target".to_string()];
    after.extend(a.after.iter().cloned());
    let _ = writeln!(t, "Wants={}", wants.join(" "));
    let _ = writeln!(t, "After={}", after.join(" "));
    if !a.requires.is_empty() {
        let _ = writeln!(t, "Requires={}", a.requires.join(" "));
    }
    let _ = writeln!(
        t,
        "RequiresMountsFor={}",
        runtime_dir.join("containers").display()
    );
    let _ = writeln!(t, "\n[Service]");
    let _ = writeln!(t, "Environment=RBOX_SYSTEMD_UNIT=%n");
    for e in &a.env {
        let _ = writeln!(t, "Environment={e}");
    }
    let _ = writeln!(t, "Restart={}", a.restart_policy);
    if let Some(s) = a.restart_sec {
        let _ = writeln!(t, "RestartSec={s}");
    }
    if let Some(s) = a.start_timeout {
        let _ = writeln!(t, "TimeoutStartSec={s}");
    }
    let _ = writeln!(t, "TimeoutStopSec={}", a.stop_timeout + 60);
    let _ = writeln!(t, "ExecStart={rbox} start {who}");
    let _ = writeln!(t, "ExecStop={rbox} stop -t {} {who}", a.stop_timeout);
    let _ = writeln!(t, "ExecStopPost={rbox} stop -t {} {who}", a.stop_timeout);
    let _ = writeln!(
        t,
        "PIDFile={}",
        layout::monitor_pid(runtime_dir, &rec.id).display()
    );
    let _ = writeln!(t, "Type=forking");
    let _ = writeln!(t, "\n[Install]");
    let _ = writeln!(t, "WantedBy=default.target");
    (name, t)
}
