//! Stages in parallel (`--jobs N`): which stage needs which (FROM, `COPY --from`,
//! `RUN --mount=from=`), and a scheduler that forks one builder process per stage once the
//! stages it needs are done, at most N at a time. A fork, not a thread: RUN steps clone
//! containers and mount overlays from the builder, which needs a single-threaded process
//! (see STYLE.md: nothing locks between fork and exec in a multithreaded parent), and a
//! stage in its own process is one more rbox invocation to the store, whose layers, images
//! and cache entries are already written atomically and locked for concurrent invocations.
//!
//! Output stays Podman's serial text: the lowest-numbered unfinished stage streams its
//! stdout live, later ones are buffered and printed when their turn comes, so the lines are
//! the ones a `--jobs 1` build prints, in the same order (stderr passes straight through).
//! The first stage that fails stops the build: no new stage starts, the running ones stop
//! before their next step, a RUN step under way is cut short (its container killed: see
//! [`kill_containers`]; its stage process then removes it and its staging as after any failed
//! step, so nothing is left behind), and the build ends with the failed stage's error and
//! exit code. SIGINT, SIGTERM or SIGHUP (Ctrl-C sends SIGINT to the whole process group) stop
//! the stages the same way; the build then exits 1 without a message, as Podman's does. The
//! last stage runs in the invocation itself (`mod.rs`), after the stages it needs.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use anyhow::{anyhow, Result};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::unistd::{ForkResult, Pid};

use super::{Builder, Img, StageDef};
use crate::exit::CodedError;
use crate::runtime::sys;

/// The stage `n` (a name or an index) refers to, among the stages before `before`.
pub(super) fn find(stages: &[StageDef], n: &str, before: usize) -> Option<usize> {
    let n = n.to_ascii_lowercase();
    stages[..before]
        .iter()
        .position(|s| s.name.as_deref() == Some(n.as_str()))
        .or_else(|| n.parse::<usize>().ok().filter(|i| *i < before))
}

/// The names a stage's steps read from: `COPY --from=X` and `RUN --mount=...,from=X`.
pub(super) fn step_sources(s: &StageDef) -> Vec<String> {
    let mut v = Vec::new();
    for st in &s.steps {
        for (f, val) in &st.flags {
            match f.as_str() {
                "from" => v.push(val.clone()),
                "mount" => v.extend(
                    val.split(',')
                        .filter_map(|i| i.strip_prefix("from="))
                        .map(String::from),
                ),
                _ => {}
            }
        }
    }
    v
}

/// What one stage process reports on its result pipe.
enum Outcome {
    /// the stage's image id and the build args it used
    Done(String, Vec<String>),
    Failed(u8, String),
}

impl Outcome {
    fn encode(&self) -> String {
        match self {
            Outcome::Done(id, used) => format!("ok\n{id}\n{}", used.join("\n")),
            Outcome::Failed(code, msg) => format!("err\n{code}\n{msg}"),
        }
    }

    fn decode(s: &str) -> Option<Outcome> {
        let mut it = s.splitn(3, '\n');
        match (it.next()?, it.next()?, it.next().unwrap_or("")) {
            ("ok", id, used) => Some(Outcome::Done(
                id.to_string(),
                used.lines().map(String::from).collect(),
            )),
            ("err", code, msg) => Some(Outcome::Failed(code.parse().ok()?, msg.to_string())),
            _ => None,
        }
    }
}

/// Puts the signal mask back as it was.
struct Restore(nix::sys::signal::SigSet);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&self.0),
            None,
        );
    }
}

/// A stage process under way.
struct Running {
    stage: usize,
    pid: Pid,
    out: File,
    res: File,
    buf: Vec<u8>,
}

/// The build stopped on a signal: exit 1 quietly, as `podman build` does on Ctrl-C.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {0}")]
pub(super) struct Interrupted(pub(super) nix::sys::signal::Signal);

/// The signals that stop a parallel build.
fn stopping() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut s = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        s.add(sig);
    }
    s
}

/// SIGKILLs the containers the stage processes `pids` run: their descendants in another pid
/// namespace than ours (a container's init; its namespace dies with it), found in /proc.
/// Their other descendants (rbox's own helpers) are left to the stage process, which tears
/// its container down as after any failed RUN. A container started after the scan is caught
/// by the next one (the caller scans until the stages have ended).
fn kill_containers(pids: &[Pid]) {
    let Ok(ours) = std::fs::read_link("/proc/self/ns/pid") else {
        return;
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    // parent -> children, from /proc/PID/stat (the ppid follows the parenthesised name)
    let mut children: std::collections::HashMap<i32, Vec<i32>> = Default::default();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(pp) = ppid {
            children.entry(pp).or_default().push(pid);
        }
    }
    let mut todo: Vec<i32> = pids
        .iter()
        .flat_map(|p| children.get(&p.as_raw()).cloned().unwrap_or_default())
        .collect();
    while let Some(pid) = todo.pop() {
        match std::fs::read_link(format!("/proc/{pid}/ns/pid")) {
            Ok(ns) if ns == ours => todo.extend(children.get(&pid).cloned().unwrap_or_default()),
            // gone meanwhile
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            _ => {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            }
        }
    }
}

/// Blocks the stopping signals for the rest of the build, so that Ctrl-C at any point is
/// seen where the build can stop cleanly ([`interrupt_pending`] between steps and
/// [`check_interrupt`] inside a COPY) instead of killing rbox half-way through a step, which
/// left its staging directory in the store and ended with the signal's status (130) where
/// Podman exits 1. A RUN's container gets a clean mask from `runtime::run`; processes rbox
/// starts otherwise (network helpers) inherit it, as they did after the first RUN step.
/// A pull ([`unheld`]) and the write of a layer (the store's streams look for a held signal,
/// see `rbox_storage::interrupt`) stop inside, their staging removed.
pub(super) fn hold_interrupts() -> Result<()> {
    nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&stopping()),
        None,
    )?;
    Ok(())
}

/// Runs `f` (a pull) with SIGINT, SIGTERM and SIGHUP let through to the handler `rbox pull`
/// has ([`crate::exit::stop_on_signals`]: a stop request to the store's streams): a read
/// waiting on a stalled registry is then woken (EINTR), where a held signal is only seen
/// when the next bytes come. Held again after; a signal that came meanwhile stays known to
/// [`interrupt_pending`] through the request.
pub(super) fn unheld<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    crate::exit::stop_on_signals()?;
    let mut old = nix::sys::signal::SigSet::empty();
    nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_UNBLOCK,
        Some(&stopping()),
        Some(&mut old),
    )?;
    let _held_again = Restore(old);
    f()
}

/// [`interrupt_pending`] at every 256th call, as an error: cheap enough for a loop over the
/// files of a COPY (three system calls per check).
pub(super) fn check_interrupt() -> Result<()> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CALLS: AtomicU32 = AtomicU32::new(0);
    if CALLS.fetch_add(1, Ordering::Relaxed) % 256 == 0 && interrupt_pending() {
        return Err(Interrupted(nix::sys::signal::Signal::SIGINT).into());
    }
    Ok(())
}

/// Whether a stopping signal waits, blocked, for this process (consumed then): the build
/// blocks them ([`hold_interrupts`]), so a Ctrl-C between steps (during a COPY) is seen
/// here, not by the next step's container, which ignores it.
pub(super) fn interrupt_pending() -> bool {
    // seen (and left pending) by a store stream already
    if rbox_storage::interrupt::requested() {
        return true;
    }
    let Ok(sfd) = nix::sys::signalfd::SignalFd::with_flags(
        &stopping(),
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    ) else {
        return false;
    };
    let seen = matches!(sfd.read_signal(), Ok(Some(_)));
    if seen {
        // consumed here: the store's streams must still stop
        rbox_storage::interrupt::request();
    }
    seen
}

/// A watcher of Ctrl-C while this process runs a RUN step itself (the last stage, or a
/// serial build): the step's container is relayed signals by `runtime::run`, but its command
/// runs as PID 1 of its namespace, which ignores SIGINT and SIGTERM without a handler of its
/// own, so the build would carry on (and commit) after Ctrl-C. The watcher is a forked
/// process in the same process group: on SIGINT, SIGTERM or SIGHUP it kills the step's
/// container (as [`kill_containers`]) until the step returns, and says so on a pipe; the
/// step then ends as [`Interrupted`], its container and staging removed as after any
/// failure.
pub(super) struct Watch {
    pid: Pid,
    /// closed when the step is over: the watcher exits
    done: Option<OwnedFd>,
    /// a byte from the watcher: a stopping signal came
    said: File,
}

impl Watch {
    /// Starts the watcher; `None` where this process may not fork (threads) or cannot.
    pub(super) fn start() -> Option<Watch> {
        if threaded() {
            return None;
        }
        let parent = nix::unistd::getpid();
        let (done_r, done_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
        let (said_r, said_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
        let sfd = nix::sys::signalfd::SignalFd::with_flags(
            &stopping(),
            nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
        )
        .ok()?;
        let mut old = nix::sys::signal::SigSet::empty();
        nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&stopping()),
            Some(&mut old),
        )
        .ok()?;
        let _ = std::io::stdout().flush();
        let forked = sys::fork();
        // the parent's mask as it was (runtime::run blocks these itself)
        if !matches!(forked, Ok(ForkResult::Child)) {
            let _ = nix::sys::signal::pthread_sigmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&old),
                None,
            );
        }
        match forked.ok()? {
            ForkResult::Parent { child } => Some(Watch {
                pid: child,
                done: Some(done_w),
                said: File::from(said_r),
            }),
            ForkResult::Child => {
                drop((done_w, said_r));
                let mut said = File::from(said_w);
                let mut stopping = false;
                loop {
                    let mut fds = [
                        PollFd::new(done_r.as_fd(), PollFlags::POLLIN),
                        PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
                    ];
                    let wait = if stopping {
                        PollTimeout::from(50u8)
                    } else {
                        PollTimeout::NONE
                    };
                    let _ = nix::poll::poll(&mut fds, wait);
                    let done = fds[0].revents().is_some_and(|r| !r.is_empty());
                    let sig = fds[1].revents().is_some_and(|r| !r.is_empty());
                    if done {
                        sys::exit_now(0);
                    }
                    if sig {
                        while let Ok(Some(_)) = sfd.read_signal() {}
                        if !stopping {
                            let _ = said.write_all(b"x");
                            stopping = true;
                        }
                    }
                    if stopping {
                        kill_containers(&[parent]);
                    }
                }
            }
        }
    }

    /// Ends the watcher; whether a stopping signal came.
    pub(super) fn finish(mut self) -> bool {
        drop(self.done.take());
        let _ = nix::sys::wait::waitpid(self.pid, None);
        let mut b = [0u8; 1];
        matches!((&self.said).read(&mut b), Ok(1))
    }
}

/// Whether this process has threads besides the main one (then it must not fork).
pub(super) fn threaded() -> bool {
    std::fs::read_dir("/proc/self/task").map_or(true, |d| d.count() != 1)
}

/// Whether the stage process's parent asked it to stop (the cancel pipe is readable: its
/// write end was closed).
pub(super) fn cancelled(fd: &OwnedFd) -> bool {
    let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    matches!(nix::poll::poll(&mut p, PollTimeout::ZERO), Ok(n) if n > 0)
}

impl Builder<'_> {
    /// The stages `need`ed before `last`, `jobs` at a time, each in a process of its own;
    /// returns their images (None for the stages not needed) or the first failure.
    pub(super) fn stages_in_parallel(
        &mut self,
        stages: &[StageDef],
        deps: &[Vec<usize>],
        need: &[bool],
        last: usize,
        jobs: usize,
    ) -> Result<Vec<Option<Img>>> {
        let total = last + 1;
        let todo: Vec<usize> = (0..last).filter(|i| need[*i]).collect();
        let mut done: Vec<Option<Img>> = vec![None; last];
        let mut started = vec![false; last];
        let mut finished: Vec<Option<Vec<u8>>> = vec![None; last];
        let mut running: Vec<Running> = Vec::new();
        let mut failed: Option<anyhow::Error> = None;
        // the cancel pipe: its write end closed means stop
        let (cancel_r, cancel_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let mut cancel_w = Some(cancel_w);
        // the stage whose output streams live
        let mut head = 0usize;
        let scratch = self.scratch_img()?;
        let out = std::io::stdout();
        // the stopping signals come from a descriptor while the stages run; the stage
        // processes inherit them blocked (a RUN's container gets a clean mask) and leave
        // stopping to this process
        let mut old_mask = nix::sys::signal::SigSet::empty();
        nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&stopping()),
            Some(&mut old_mask),
        )?;
        let restore = Restore(old_mask);
        let sfd = nix::sys::signalfd::SignalFd::with_flags(
            &stopping(),
            nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
        )?;
        loop {
            while failed.is_none() && running.len() < jobs {
                let Some(&i) = todo.iter().find(|&&i| {
                    !started[i] && deps[i].iter().all(|d| !need[*d] || done[*d].is_some())
                }) else {
                    break;
                };
                started[i] = true;
                // what the stage can see: the finished stages, by position
                self.done = (0..i)
                    .map(|j| {
                        let img = done[j].clone().unwrap_or_else(|| scratch.clone());
                        (stages[j].name.clone(), img)
                    })
                    .collect();
                let prefix = format!("[{}/{}] ", i + 1, total);
                match self.fork_stage(&stages[i], i, &prefix, &cancel_r, &mut cancel_w) {
                    Ok(r) => running.push(r),
                    // the stages under way stop and are waited for
                    Err(e) => {
                        failed = Some(e);
                        cancel_w = None;
                    }
                }
            }
            if running.is_empty() {
                break;
            }
            if failed.is_some() {
                // stopping: cut the RUN steps under way short, again until the stages end
                kill_containers(&running.iter().map(|r| r.pid).collect::<Vec<_>>());
            }
            let ready: Vec<bool> = {
                let mut fds: Vec<PollFd> = running
                    .iter()
                    .map(|r| PollFd::new(r.out.as_fd(), PollFlags::POLLIN))
                    .collect();
                fds.push(PollFd::new(sfd.as_fd(), PollFlags::POLLIN));
                let wait = if failed.is_some() {
                    PollTimeout::from(50u8)
                } else {
                    PollTimeout::NONE
                };
                match nix::poll::poll(&mut fds, wait) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    r => r.map_err(|e| anyhow!("wait for the build stages: {e}"))?,
                };
                fds.iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect()
            };
            if ready.last() == Some(&true) {
                while let Ok(Some(info)) = sfd.read_signal() {
                    if let Ok(sig) = nix::sys::signal::Signal::try_from(info.ssi_signo as i32) {
                        failed.get_or_insert(Interrupted(sig).into());
                    }
                }
                cancel_w = None;
            }
            let mut k = 0;
            let mut ready = ready.into_iter();
            while k < running.len() {
                if !ready.next().unwrap_or(false) {
                    k += 1;
                    continue;
                }
                let r = &mut running[k];
                let mut chunk = [0u8; 16384];
                let n = match r.out.read(&mut chunk) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                        k += 1;
                        continue;
                    }
                    Err(_) => 0,
                };
                if n > 0 {
                    if r.stage == head {
                        let _ = out.lock().write_all(&chunk[..n]);
                    } else {
                        r.buf.extend_from_slice(&chunk[..n]);
                    }
                    k += 1;
                    continue;
                }
                // end of its output: the result, then reap it
                let r = running.remove(k);
                let mut res = String::new();
                let _ = (&r.res).read_to_string(&mut res);
                let status = nix::sys::wait::waitpid(r.pid, None);
                let outcome = Outcome::decode(&res).unwrap_or_else(|| {
                    Outcome::Failed(
                        crate::exit::FAILED,
                        format!(
                            "build stage {}: the builder process ended without a result ({status:?})",
                            r.stage + 1
                        ),
                    )
                });
                match outcome {
                    Outcome::Done(id, used) => {
                        // shown as the serial build shows a stage's image: 12 hex digits
                        let img = self
                            .store
                            .lookup_image(&id)
                            .map_err(anyhow::Error::from)
                            .and_then(|rec| self.load(&rec, rec.id.hex()[..12].to_string()));
                        match img {
                            Ok(img) => done[r.stage] = Some(img),
                            Err(e) => {
                                failed.get_or_insert(e);
                                cancel_w = None;
                            }
                        }
                        self.consumed.extend(used);
                    }
                    Outcome::Failed(code, msg) => {
                        if failed.is_none() {
                            failed = Some(CodedError::new(code, msg).into());
                        }
                        cancel_w = None;
                    }
                }
                finished[r.stage] = Some(r.buf);
            }
            // hand the live output on to the next stages in order
            while head < last && (!need[head] || finished[head].is_some()) {
                if let Some(buf) = finished[head].take() {
                    if !buf.is_empty() {
                        let _ = out.lock().write_all(&buf);
                    }
                    finished[head] = Some(Vec::new());
                }
                head += 1;
                if let Some(r) = running.iter_mut().find(|r| r.stage == head) {
                    let _ = out.lock().write_all(&std::mem::take(&mut r.buf));
                }
            }
        }
        drop(cancel_w);
        drop(sfd);
        drop(restore);
        // a failure: what the other stages printed, in order, then the error
        for b in finished.into_iter().flatten() {
            let _ = out.lock().write_all(&b);
        }
        let _ = out.lock().flush();
        match failed {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// Forks the process that builds stage `i`: its stdout into a pipe, its outcome into
    /// another.
    fn fork_stage(
        &mut self,
        s: &StageDef,
        i: usize,
        prefix: &str,
        cancel: &OwnedFd,
        cancel_w: &mut Option<OwnedFd>,
    ) -> Result<Running> {
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (res_r, res_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        match sys::fork().map_err(|e| anyhow!("fork a build stage: {e}"))? {
            ForkResult::Parent { child } => Ok(Running {
                stage: i,
                pid: child,
                out: File::from(out_r),
                res: File::from(res_r),
                buf: Vec::new(),
            }),
            ForkResult::Child => {
                // the write end stays the parent's alone: its closing is the signal
                drop((out_r, res_r, cancel_w.take()));
                // the parent's `COPY --from` roots are the parent's to remove
                std::mem::forget(std::mem::take(&mut self.roots));
                let code = if sys::dup2(&out_w, 1).is_ok() {
                    drop(out_w);
                    self.cancel = Some(cancel.try_clone().ok()).flatten();
                    let before: BTreeSet<String> = self.consumed.clone();
                    let outcome = match self.stage(s, prefix, false) {
                        Ok((img, _)) => Outcome::Done(
                            img.id.to_string(),
                            self.consumed.difference(&before).cloned().collect(),
                        ),
                        Err(e) => Outcome::Failed(crate::exit::code_of(&e), format!("{e:#}")),
                    };
                    let _ = std::io::stdout().flush();
                    let _ = File::from(res_w).write_all(outcome.encode().as_bytes());
                    // the roots this stage mounted or copied go now
                    drop(std::mem::take(&mut self.roots));
                    0
                } else {
                    crate::exit::FAILED as i32
                };
                sys::exit_now(code)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    fn stages(text: &str) -> Vec<StageDef> {
        let f = parse::parse(text).unwrap();
        let mut v: Vec<StageDef> = Vec::new();
        for ins in f.instructions {
            if ins.cmd == "FROM" {
                let w: Vec<&str> = ins.rest.split_whitespace().collect();
                v.push(StageDef {
                    name: w.get(2).map(|n| n.to_ascii_lowercase()),
                    from: ins,
                    steps: Vec::new(),
                });
            } else {
                v.last_mut().unwrap().steps.push(ins);
            }
        }
        v
    }

    #[test]
    fn stage_sources_are_found() {
        let s = stages(
            "FROM bb AS a\nFROM bb AS B\nFROM a\nCOPY --from=b /x /x\n\
             RUN --mount=type=bind,from=0,target=/m true\nCOPY --from=other:img /y /y\n",
        );
        assert_eq!(step_sources(&s[2]), ["b", "0", "other:img"]);
        assert_eq!(find(&s, "B", 2), Some(1));
        assert_eq!(find(&s, "0", 2), Some(0));
        assert_eq!(find(&s, "other:img", 2), None);
        // a stage cannot name itself or a later one
        assert_eq!(find(&s, "b", 1), None);
    }

    #[test]
    fn outcomes_round_trip() {
        let o = Outcome::Done("sha256:ab".into(), vec!["A".into(), "B".into()]);
        match Outcome::decode(&o.encode()) {
            Some(Outcome::Done(id, used)) => {
                assert_eq!(id, "sha256:ab");
                assert_eq!(used, ["A", "B"]);
            }
            _ => panic!("not decoded"),
        }
        match Outcome::decode(&Outcome::Failed(2, "a\nb".into()).encode()) {
            Some(Outcome::Failed(2, m)) => assert_eq!(m, "a\nb"),
            _ => panic!("not decoded"),
        }
        assert!(Outcome::decode("").is_none());
    }
}
