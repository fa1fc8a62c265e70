//! `rbox login` and `rbox logout`: store or remove registry credentials where Podman keeps
//! them (`$XDG_RUNTIME_DIR/containers/auth.json`, `--authfile`, `$REGISTRY_AUTH_FILE`).
//! Login checks the credentials against the registry before storing them. No user namespace
//! and no store are involved.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use rbox_registry::auth::{self, LogoutOutcome};
use rbox_registry::config::RegistriesConf;
use rbox_registry::Credentials;

use crate::cmd::pull::RegistryFlags;
use crate::context::Context;

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// User name
    #[arg(short = 'u', long, value_name = "USER")]
    pub username: Option<String>,
    /// Password (visible to other users in the process list; prefer --password-stdin)
    #[arg(short = 'p', long, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Read the password from stdin
    #[arg(long = "password-stdin", conflicts_with = "password")]
    pub password_stdin: bool,
    /// Print the user name stored for the registry and exit
    #[arg(long = "get-login")]
    pub get_login: bool,
    #[command(flatten)]
    pub registry_flags: RegistryFlags,
    /// Registry (HOST[:PORT], or HOST/REPO for repository-scoped credentials)
    /// [default: the first unqualified-search registry]
    #[arg(value_name = "REGISTRY")]
    pub registry: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// Remove the credentials of every registry
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Credentials file [default: $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json]
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub authfile: Option<PathBuf>,
    /// Registry to log out of
    #[arg(value_name = "REGISTRY", required_unless_present = "all")]
    pub registry: Option<String>,
}

/// The registry to use when none was named: the first unqualified-search registry.
fn default_registry() -> Result<String> {
    let conf = RegistriesConf::load(None)?;
    match conf.unqualified_search_registries.first() {
        Some(r) => Ok(r.clone()),
        None => bail!("no registry given and no unqualified-search-registries in registries.conf"),
    }
}

fn prompt_line(prompt: &str) -> Result<String> {
    eprint!("{prompt}");
    io::stderr().flush().ok();
    let mut s = String::new();
    io::stdin()
        .lock()
        .read_line(&mut s)
        .context("read from the terminal")?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

/// Read a password from the terminal with echo off.
fn prompt_password(prompt: &str) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = io::stdin();
    let saved = tcgetattr(&stdin).context("read terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turn off terminal echo")?;
    let res = prompt_line(prompt);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    res
}

pub fn login(_g: &Context, a: LoginArgs) -> Result<ExitCode> {
    let registry = match &a.registry {
        Some(r) => r.clone(),
        None => default_registry()?,
    };
    let registry = registry.trim_start_matches("docker://").to_string();
    let transport = a.registry_flags.transport()?;
    let key = auth::normalize_key(&registry);
    let (host, repo) = key.split_once('/').unwrap_or((&key, ""));

    if a.get_login {
        match auth::lookup(host, repo, transport.authfile.as_deref())? {
            Some(c) => {
                println!("{}", c.username);
                return Ok(ExitCode::SUCCESS);
            }
            None => bail!("not logged into {key}"),
        }
    }

    let interactive = io::stdin().is_terminal();
    // No new credentials given: check the stored ones, as podman does.
    if a.username.is_none() && a.password.is_none() && !a.password_stdin {
        if let Some(c) = auth::lookup(host, repo, transport.authfile.as_deref())? {
            eprintln!("Authenticating with existing credentials for {key}");
            if rbox_registry::client::verify_credentials(host, &c, &transport).is_ok() {
                println!("Existing credentials are valid. Already logged in to {key}");
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("Existing credentials are invalid, please enter valid username and password");
        }
    }
    let username = match &a.username {
        Some(u) => u.clone(),
        None if interactive && !a.password_stdin => prompt_line("Username: ")?,
        None => bail!("no user name: pass -u USER"),
    };
    if username.is_empty() {
        bail!("the user name is empty");
    }
    let password = if let Some(p) = &a.password {
        p.clone()
    } else if a.password_stdin {
        let mut s = String::new();
        io::stdin()
            .read_to_string(&mut s)
            .context("read the password from stdin")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if interactive {
        prompt_password("Password: ")?
    } else {
        bail!("no password: pass --password-stdin or -p")
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let creds = Credentials::new(username, password);
    rbox_registry::login(&registry, &creds, &transport)
        .with_context(|| format!("log in to {key}"))?;
    println!("Login Succeeded!");
    Ok(ExitCode::SUCCESS)
}

pub fn logout(_g: &Context, a: LogoutArgs) -> Result<ExitCode> {
    let transport = rbox_registry::TransportOptions {
        authfile: a.authfile.clone(),
        ..Default::default()
    };
    let registry = a
        .registry
        .as_deref()
        .map(|r| r.trim_start_matches("docker://"));
    let shown = registry.map(auth::normalize_key).unwrap_or_default();
    let outcome = rbox_registry::logout(registry, a.all, &transport)
        .with_context(|| format!("log out of {shown}"))?;
    match outcome {
        LogoutOutcome::RemovedAll(_) => println!("Removed login credentials for all registries"),
        LogoutOutcome::Removed(_) => println!("Removed login credentials for {shown}"),
    }
    Ok(ExitCode::SUCCESS)
}
