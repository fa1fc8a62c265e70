//! `rbox attach CONTAINER`: the terminal (or the output and, with `-i`, the stdin) of a
//! detached container, through its monitor's attach socket (`runtime::console`). The detach
//! keys (Ctrl-P Ctrl-Q unless `--detach-keys` says otherwise) leave it running; otherwise
//! attach returns when the container's monitor ends, with the container's exit code.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::cli::complete;
use crate::context::Context;
use crate::runtime::console::{frame, take_frames, ERR, EXIT, IN, OUT, RESIZE};
use crate::state;

#[derive(Debug, Clone, clap::Args)]
pub struct AttachArgs {
    /// Keys that detach from the container and leave it running: a comma-separated list
    /// of ctrl-<value> and single characters (default ctrl-p,ctrl-q; empty: none)
    #[arg(long = "detach-keys", value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Do not attach stdin
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Pass the signals rbox receives on to the container (without a terminal)
    #[arg(long = "sig-proxy", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// The container created last
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Container (name or id)
    #[arg(value_name = "CONTAINER", required_unless_present = "latest", add = complete::container_candidates())]
    pub container: Option<String>,
}

pub fn run(g: &Context, a: AttachArgs) -> Result<ExitCode> {
    let rec = match (&a.container, a.latest) {
        (Some(c), _) => state::lookup(g, c)?,
        (None, _) => state::list(g)?
            .into_iter()
            .next()
            .context("no containers to attach to")?,
    };
    if !state::is_running(&rec) {
        bail!("you can only attach to running containers");
    }
    let conf = match &a.detach_keys {
        None => crate::config::containers()?.detach_keys,
        Some(_) => None,
    };
    let keys = crate::runtime::front::keys_or_conf(a.detach_keys.as_deref(), conf.as_deref())?;
    let mut keys = crate::runtime::front::Keys::new(keys);
    let dir = state::live_runtime_dir(g, &rec).context("find the container's runtime directory")?;
    let path = crate::layout::attach_socket(&dir, &rec.id);
    let mut sock = UnixStream::connect(&path).map_err(|e| {
        anyhow::anyhow!(
            "attach to container {}: {e} (a container run in the foreground by `rbox run` is attached there already)",
            rec.name
        )
    })?;
    let stdin = std::io::stdin();
    let use_stdin = !a.no_stdin && (rec.spec.tty || rec.spec.interactive);
    let is_tty = crate::runtime::sys::isatty(crate::runtime::sys::stdio(0));
    let _raw = (rec.spec.tty && use_stdin && is_tty).then(crate::runtime::attach::RawMode::enter);
    let send_size = |sock: &mut UnixStream| {
        if let Some(ws) = crate::runtime::terminal::caller_winsize() {
            let mut p = ws.ws_row.to_le_bytes().to_vec();
            p.extend_from_slice(&ws.ws_col.to_le_bytes());
            let _ = sock.write_all(&frame(RESIZE, &p));
        }
    };
    if rec.spec.tty {
        send_size(&mut sock);
    }
    let mut sigs = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        sigs.add(s);
    }
    sigs.thread_block().context("block signals")?;
    let sfd = SignalFd::with_flags(&sigs, SfdFlags::SFD_CLOEXEC).context("create signalfd")?;
    let mut stdin_open = use_stdin;
    let mut inbuf = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    loop {
        let mut fds = vec![
            PollFd::new(sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("poll"),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            let n = sock.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            inbuf.extend_from_slice(&buf[..n]);
            for (tag, data) in take_frames(&mut inbuf) {
                match tag {
                    OUT => {
                        stdout.write_all(&data).ok();
                        stdout.flush().ok();
                    }
                    ERR => {
                        stderr.write_all(&data).ok();
                    }
                    // the monitor recorded the exit (with `--rm` the record is gone then)
                    EXIT if data.len() == 4 => {
                        let code = i32::from_le_bytes(data[..4].try_into().expect("4 bytes"));
                        return Ok(ExitCode::from(code.clamp(0, 255) as u8));
                    }
                    _ => {}
                }
            }
        }
        if ready[1] {
            if let Ok(Some(info)) = sfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGWINCH) if rec.spec.tty => send_size(&mut sock),
                    Ok(Signal::SIGWINCH) => {}
                    Ok(s) if a.sig_proxy => {
                        let _ = crate::runtime::signal_container(g, &rec, s);
                    }
                    _ => {}
                }
            }
        }
        if stdin_open && ready.get(2).copied().unwrap_or(false) {
            let n = std::io::stdin().lock().read(&mut buf).unwrap_or_default();
            if n == 0 {
                stdin_open = false;
                continue;
            }
            // the detach keys, as `rbox run` finds them, end the attach
            let (out, detached) = keys.feed(&buf[..n]);
            if detached {
                if !out.is_empty() {
                    let _ = sock.write_all(&frame(IN, &out));
                }
                return Ok(ExitCode::SUCCESS);
            }
            if !out.is_empty() && sock.write_all(&frame(IN, &out)).is_err() {
                break;
            }
        }
    }
    drop(_raw);
    // the monitor is gone: the container's exit code, once recorded
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let cur = state::lookup(g, &rec.id)?;
        if !state::is_running(&cur) || std::time::Instant::now() > deadline {
            let code = cur.state.exit_code.unwrap_or(0);
            return Ok(ExitCode::from(code.clamp(0, 255) as u8));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
