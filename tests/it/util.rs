//! The harness every integration test uses: who runs rbox (root, a user with a subordinate id
//! range, a user without one, or just the current user on a developer machine), a per-test
//! directory owned by that user with its own `--root` and `--runroot` (so tests run in
//! parallel), and a command builder with a watchdog so a hung container fails the test instead
//! of hanging CI.
//!
//! Skips are loud and rare (STYLE habit 11): [`require`] prints why a test cannot run, and under
//! `CI=true` it fails instead, because `.ci/run` installs every prerequisite.
//! This module does not build images; see `fixtures`.

use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The rbox binary under test.
pub const RBOX: &str = env!("CARGO_BIN_EXE_rbox");

/// The unprivileged user that has /etc/subuid and /etc/subgid ranges (created by `.ci/run`).
pub const SUB_USER: &str = "rboxsub";
/// The unprivileged user without any subordinate range (created by `.ci/run`).
pub const NOSUB_USER: &str = "rboxnosub";
/// A third account without a range, the stranger in cross-user tests (created by `.ci/run`).
pub const OTHER_USER: &str = "rboxother";

/// A plain PATH: the tests never inherit the caller's environment.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long one command may run before the watchdog kills it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

pub fn is_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Check a prerequisite. When it is missing: under CI fail the test (CI installs everything),
/// elsewhere print why the test is skipped and return false.
#[track_caller]
pub fn require(ok: bool, what: impl fmt::Display) -> bool {
    if ok {
        return true;
    }
    if is_ci() {
        panic!("missing prerequisite under CI=true: {what}");
    }
    eprintln!("SKIP ({}): {what}", std::panic::Location::caller());
    false
}

/// Whether a program is on the PATH.
pub fn have(prog: &str) -> bool {
    PATH.split(':').any(|d| {
        let p = Path::new(d).join(prog);
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// Which kind of identity a test runs rbox as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Real root (the tests run as root, as on CI).
    Root,
    /// An unprivileged user with subordinate id ranges: a full id map in the container.
    Sub,
    /// An unprivileged user without ranges: only container id 0 exists.
    NoSub,
    /// The user running the tests, when that is not root (a developer machine).
    Current,
    /// A second unprivileged account without ranges, never a test's main identity: the other
    /// user of cross-user tests (see [`other_user`]).
    Other,
}

/// One identity that runs rbox.
#[derive(Debug, Clone)]
pub struct User {
    pub who: Who,
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl User {
    /// Whether the container has more ids than its root (needed for `-u 1000`, chown...).
    pub fn has_many_ids(&self) -> bool {
        match self.who {
            Who::Root | Who::Sub => true,
            Who::NoSub | Who::Other => false,
            Who::Current => has_subuid_range(&self.name, self.uid),
        }
    }

    /// Whether rbox runs as another user than the test process (through setpriv).
    fn switches(&self) -> bool {
        matches!(self.who, Who::Sub | Who::NoSub | Who::Other)
    }
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (uid {})", self.name, self.uid)
    }
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let u = nix::unistd::User::from_name(name).ok()??;
    Some((u.uid.as_raw(), u.gid.as_raw()))
}

fn has_subuid_range(name: &str, uid: u32) -> bool {
    let Ok(s) = std::fs::read_to_string("/etc/subuid") else {
        return false;
    };
    s.lines().any(|l| {
        let first = l.split(':').next().unwrap_or("");
        first == name || first == uid.to_string()
    })
}

/// The identities a test runs as: root and both unprivileged users when the tests run as root
/// (CI), else only the current user.
pub fn users() -> Vec<User> {
    if !is_root() {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let name = nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string());
        return vec![User {
            who: Who::Current,
            name,
            uid,
            gid,
        }];
    }
    let mut out = vec![User {
        who: Who::Root,
        name: "root".into(),
        uid: 0,
        gid: 0,
    }];
    for (who, name) in [(Who::Sub, SUB_USER), (Who::NoSub, NOSUB_USER)] {
        match lookup_user(name) {
            Some((uid, gid)) => {
                let sub = has_subuid_range(name, uid);
                let ok = if who == Who::Sub { sub } else { !sub };
                if require(
                    ok,
                    format_args!(
                        "user {name} must {} an /etc/subuid range (run .ci/run)",
                        if who == Who::Sub { "have" } else { "not have" }
                    ),
                ) {
                    out.push(User {
                        who,
                        name: name.into(),
                        uid,
                        gid,
                    });
                }
            }
            None => {
                require(
                    false,
                    format_args!("user {name} does not exist (run .ci/run)"),
                );
            }
        }
    }
    check_binary_reachable(&out);
    out
}

/// The stranger of cross-user tests: another unprivileged account that must not reach the
/// test user's store or runtime directory. Needs root (to switch users); `None` (with a loud
/// skip, or a failure under CI) when the tests do not run as root or the account is missing.
pub fn other_user() -> Option<User> {
    if !require(is_root(), "cross-user tests switch users and need root") {
        return None;
    }
    let found = lookup_user(OTHER_USER);
    if !require(
        found.is_some(),
        format_args!("user {OTHER_USER} does not exist (run .ci/run)"),
    ) {
        return None;
    }
    let (uid, gid) = found?;
    let u = User {
        who: Who::Other,
        name: OTHER_USER.into(),
        uid,
        gid,
    };
    check_binary_reachable(std::slice::from_ref(&u));
    Some(u)
}

/// The unprivileged users must be able to execute the binary under target/: a checkout under a
/// closed directory (say /root) makes every test fail in a confusing way, so say it once here.
fn check_binary_reachable(users: &[User]) {
    for u in users.iter().filter(|u| u.switches()) {
        let ok = Command::new("setpriv")
            .args(setpriv_args(u))
            .args(["test", "-x", RBOX])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "user {u} cannot execute `{RBOX}`: make every parent directory of the checkout \
             traversable (chmod o+x), as .ci/run does"
        );
    }
}

fn setpriv_args(u: &User) -> Vec<String> {
    vec![
        format!("--reuid={}", u.uid),
        format!("--regid={}", u.gid),
        "--init-groups".into(),
        "--".into(),
    ]
}

/// A per-test, per-user directory: `home`, `data`, `config`, the store (`--root`) and the
/// runtime dir (`--runroot`), all owned by that user. Removed on drop.
pub struct Env {
    pub user: User,
    /// The directory owned by the user; everything of this test lives below it.
    pub dir: PathBuf,
    /// The root-owned (or, when not root, own) temp dir holding `dir`.
    base: Option<tempfile::TempDir>,
}

impl Env {
    pub fn new(test: &str, user: &User) -> Env {
        let base = tempfile::Builder::new()
            .prefix(&format!("rbox-it-{test}-{}-", user.name))
            .tempdir_in("/tmp")
            .expect("create test dir under /tmp");
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = base.path().join("u");
        std::fs::create_dir(&dir).unwrap();
        for sub in ["home", "data", "config", "work"] {
            std::fs::create_dir(dir.join(sub)).unwrap();
        }
        let env = Env {
            user: user.clone(),
            dir,
            base: Some(base),
        };
        env.give_to_user(&env.dir);
        env
    }

    /// `--root`
    pub fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// `--runroot`
    pub fn runroot(&self) -> PathBuf {
        self.dir.join("run")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Make `p` (recursively) owned by the test's user.
    pub fn give_to_user(&self, p: &Path) {
        if !self.user.switches() {
            return;
        }
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.user.uid, self.user.gid))
            .arg(p)
            .status()
            .expect("run chown");
        assert!(status.success(), "chown `{}`", p.display());
    }

    /// Write a file owned by the test's user.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap();
        if self.user.switches() {
            chown(&p, Some(self.user.uid), Some(self.user.gid)).unwrap();
        }
        p
    }

    /// Copy a fixture into the test dir (owned by the user), so it is readable whatever the
    /// modes of the fixture cache.
    pub fn copy_in(&self, src: &Path, rel: &str) -> PathBuf {
        let p = self.dir.join(rel);
        std::fs::copy(src, &p).unwrap_or_else(|e| panic!("copy `{}`: {e}", src.display()));
        if self.user.switches() {
            chown(&p, Some(self.user.uid), Some(self.user.gid)).unwrap();
        }
        p
    }

    /// `rbox --root STORE --runroot RUN`, run as the test's user.
    pub fn rbox(&self) -> Cmd {
        let mut c = self.cmd(RBOX);
        c.arg("--root")
            .arg(self.store())
            .arg("--runroot")
            .arg(self.runroot());
        c
    }

    /// `sh -c SCRIPT` with `rbox --root STORE --runroot RUN` as its `"$@"`: inside `rbox
    /// unshare` when `unshare` (the namespace a user's `rbox mount` needs), else directly.
    pub fn sh_with_rbox(&self, script: &str, unshare: bool) -> Cmd {
        let mut c = if unshare {
            let mut c = self.rbox();
            c.args(["unshare", "sh"]);
            c
        } else {
            self.cmd("sh")
        };
        c.args(["-c", script, "sh", RBOX])
            .arg("--root")
            .arg(self.store())
            .arg("--runroot")
            .arg(self.runroot());
        c
    }

    /// `rbox --root STORE --runroot RUN ARGS` on a pty of `rows` x `cols` (set by stty
    /// before rbox starts), run as the test's user.
    pub fn rbox_on_terminal(&self, rows: u16, cols: u16, args: &[&str]) -> Cmd {
        let mut line = format!(
            "stty rows {rows} cols {cols} && exec {} --root {} --runroot {}",
            shell_quote(RBOX),
            shell_quote(&self.store().to_string_lossy()),
            shell_quote(&self.runroot().to_string_lossy()),
        );
        for a in args {
            line.push(' ');
            line.push_str(&shell_quote(a));
        }
        let mut c = self.cmd("sh");
        c.args(["-c", &line]).pty();
        c
    }

    /// Any program run as the test's user with the test's environment.
    pub fn cmd(&self, prog: impl Into<OsString>) -> Cmd {
        let mut env: Vec<(OsString, OsString)> = vec![
            ("PATH".into(), PATH.into()),
            ("HOME".into(), self.dir.join("home").into()),
            ("XDG_DATA_HOME".into(), self.dir.join("data").into()),
            ("XDG_CONFIG_HOME".into(), self.dir.join("config").into()),
            ("USER".into(), self.user.name.clone().into()),
            ("LOGNAME".into(), self.user.name.clone().into()),
        ];
        if let Some(ci) = std::env::var_os("CI") {
            env.push(("CI".into(), ci));
        }
        Cmd {
            prog: prog.into(),
            args: Vec::new(),
            env,
            cwd: self.dir.join("work"),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
            user: self.user.clone(),
            pty: false,
            binds: Vec::new(),
            tmpfs: Vec::new(),
            strace: None,
            cpus: None,
        }
    }

    /// skopeo as the test's user, reading and writing credentials only in the test's directory.
    /// Without XDG_RUNTIME_DIR it reads /run/containers/UID/auth.json, and a root podman run on
    /// the same machine leaves /run/containers at mode 0700: EACCES, where a fresh machine gives
    /// "no such file" and every registry test passes.
    pub fn skopeo(&self) -> Cmd {
        let mut c = self.cmd("skopeo");
        c.env("REGISTRY_AUTH_FILE", self.dir.join("skopeo-auth.json"));
        c
    }

    /// `rbox import` the busybox rootfs as `name`.
    /// `rbox ARGS`, which must succeed: its output, trimmed.
    pub fn text(&self, args: &[&str]) -> String {
        self.rbox().args(args).output().success().text()
    }

    /// `rbox inspect --format FORMAT NAME`, which must succeed: its output, trimmed.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.text(&["inspect", "--format", format, name])
    }

    /// One field of `rbox inspect NAME`, given as `.State.Pid`.
    pub fn field(&self, name: &str, field: &str) -> String {
        self.inspect(name, &format!("{{{{{field}}}}}"))
    }

    pub fn import_busybox(&self, name: &str) {
        let tar = self.copy_in(&crate::fixtures::busybox_rootfs_tar(), "busybox.tar");
        self.rbox()
            .arg("import")
            .arg(&tar)
            .arg(name)
            .output()
            .success();
    }

    /// `rbox import` the debootstrap Debian root `tar` ([`crate::fixtures::debian_rootfs_tar`])
    /// as `debian:bookworm`.
    pub fn import_debian(&self, tar: &Path) {
        let tar = self.copy_in(tar, "debian.tar");
        self.rbox()
            .arg("import")
            .arg(&tar)
            .arg("debian:bookworm")
            .timeout(std::time::Duration::from_secs(300))
            .output()
            .success();
    }

    /// `rbox load -i` a fixture archive.
    pub fn load(&self, archive: &Path) -> Output {
        let name = archive.file_name().unwrap().to_string_lossy().into_owned();
        let p = self.copy_in(archive, &name);
        self.rbox().arg("load").arg("-i").arg(&p).output()
    }

    /// `rbox load -q -i` an archive made in memory (written as `file` in the test's dir).
    pub fn load_bytes(&self, file: &str, archive: Vec<u8>) {
        let p = self.write(file, archive);
        self.rbox()
            .args(["load", "-q", "-i"])
            .arg(&p)
            .output()
            .success();
    }

    /// The numeric owner of each entry of `rbox export NAME` whose path starts with
    /// `prefix`, as `PATH UID:GID`, sorted.
    pub fn exported_owners(&self, name: &str, prefix: &str) -> Vec<String> {
        let tar = self.path(&format!("{name}.tar"));
        self.rbox()
            .args(["export", "-o"])
            .arg(&tar)
            .arg(name)
            .output()
            .success();
        let mut a = tar::Archive::new(std::fs::File::open(&tar).unwrap());
        let mut out = Vec::new();
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let path = path.trim_end_matches('/');
            if path.starts_with(prefix) {
                let h = e.header();
                out.push(format!(
                    "{} {}:{}",
                    path,
                    h.uid().unwrap(),
                    h.gid().unwrap()
                ));
            }
        }
        out.sort();
        out
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Files owned by subordinate ids can only be removed from inside rbox's user namespace
        // when the tests do not run as root; as root the temp dir's own removal does it all.
        if self.user.who == Who::Current && self.store().exists() {
            let mut c = self.rbox();
            c.args(["unshare", "rm", "-rf"])
                .arg(self.store())
                .arg(self.runroot());
            c.timeout = Duration::from_secs(60);
            let _ = c.try_output();
        }
        if let Some(base) = self.base.take() {
            let path = base.path().to_path_buf();
            if let Err(e) = base.close() {
                eprintln!("note: remove test dir `{}`: {e}", path.display());
            }
        }
    }
}

/// Run `f` once for each identity from [`users`], each with its own [`Env`].
/// Removes the test's containers when the test ends, failed or not: a detached container's
/// monitor would outlive the test otherwise.
pub struct RemoveAll<'a>(pub &'a Env);

impl Drop for RemoveAll<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .rbox()
            .args(["rm", "-f", "-a", "-t", "0"])
            .try_output();
    }
}

pub fn for_each_user(test: &str, mut f: impl FnMut(&Env)) {
    let users = users();
    for u in &users {
        eprintln!("--- {test} as {u}");
        let env = Env::new(test, u);
        f(&env);
    }
}

/// A command to run, as a user, with a watchdog.
pub struct Cmd {
    prog: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: PathBuf,
    stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    user: User,
    pty: bool,
    /// (file, over): bind-mounted in a private mount namespace the command runs in
    binds: Vec<(PathBuf, PathBuf)>,
    /// directories that are empty tmpfs mounts in that namespace, made before the binds
    tmpfs: Vec<PathBuf>,
    /// (trace file, strace's `-e` expression): the command runs under `strace -f`
    strace: Option<(PathBuf, String)>,
    /// a CPU list: the command runs under `taskset -c LIST`
    cpus: Option<String>,
}

impl Cmd {
    pub fn arg(&mut self, a: impl Into<OsString>) -> &mut Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(&mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> &mut Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn stdin(&mut self, data: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin = Some(data.into());
        self
    }

    pub fn timeout(&mut self, t: Duration) -> &mut Self {
        self.timeout = t;
        self
    }

    /// Run the command on a real pseudo-terminal, through util-linux `script`.
    pub fn pty(&mut self) -> &mut Self {
        self.pty = true;
        self
    }

    /// Run the command in a private mount namespace (made as root, before the user switch)
    /// where `file` is bind-mounted over `over`, such as a fake /etc/resolv.conf.
    pub fn bind_over(&mut self, file: &Path, over: &Path) -> &mut Self {
        assert!(is_root(), "bind_over needs the tests to run as root");
        self.binds.push((file.into(), over.into()));
        self
    }

    /// Run the command in a private mount namespace (as [`Cmd::bind_over`]) where `dir` is an
    /// empty tmpfs, mounted before the binds; a bind's target in it is made as an empty file
    /// first (such as a socket's path the host has not).
    pub fn tmpfs_over(&mut self, dir: &Path) -> &mut Self {
        assert!(is_root(), "tmpfs_over needs the tests to run as root");
        self.tmpfs.push(dir.into());
        self
    }

    /// Run the command under `strace -f -e EXPR`, as the test process (root, so that the
    /// setuid id-map helpers keep their privileges), writing what it saw to `file`.
    pub fn strace(&mut self, file: &Path, expr: &str) -> &mut Self {
        self.strace = Some((file.into(), expr.into()));
        self
    }

    /// Run the command on the CPUs of `list` only (`taskset -c LIST`, as a user would).
    pub fn pin_cpus(&mut self, list: &str) -> &mut Self {
        self.cpus = Some(list.into());
        self
    }

    /// The argv that is really executed (setpriv and script wrappers included).
    fn argv(&self) -> Vec<OsString> {
        let mut inner: Vec<OsString> = match &self.cpus {
            Some(list) => vec!["taskset".into(), "-c".into(), list.into()],
            None => Vec::new(),
        };
        inner.push(self.prog.clone());
        inner.extend(self.args.iter().cloned());
        if self.pty {
            let line = inner
                .iter()
                .map(|a| shell_quote(&a.to_string_lossy()))
                .collect::<Vec<_>>();
            // -e: return the child's exit status; -q: no banner; /dev/null: no typescript file.
            inner = vec![
                "script".into(),
                "-qec".into(),
                line.join(" ").into(),
                "/dev/null".into(),
            ];
        }
        let mut v = if self.user.switches() {
            let mut v: Vec<OsString> = vec!["setpriv".into()];
            v.extend(setpriv_args(&self.user).into_iter().map(Into::into));
            v.extend(inner);
            v
        } else {
            inner
        };
        if let Some((file, expr)) = &self.strace {
            let mut w: Vec<OsString> = vec!["strace".into(), "-f".into(), "-qq".into()];
            w.extend([
                "-o".into(),
                file.into(),
                "-e".into(),
                expr.into(),
                "--".into(),
            ]);
            w.append(&mut v);
            v = w;
        }
        if !self.binds.is_empty() || !self.tmpfs.is_empty() {
            let mut line = String::new();
            let mut args: Vec<OsString> = Vec::new();
            for dir in &self.tmpfs {
                args.push(dir.into());
                line.push_str(&format!("mount -t tmpfs tmpfs \"${{{}}}\" && ", args.len()));
            }
            for (file, over) in &self.binds {
                args.extend([file.into(), over.into()]);
                let (f, o) = (args.len() - 1, args.len());
                if self.tmpfs.iter().any(|d| over.starts_with(d)) {
                    line.push_str(&format!("touch \"${{{o}}}\" && "));
                }
                line.push_str(&format!("mount --bind \"${{{f}}}\" \"${{{o}}}\" && "));
            }
            line.push_str(&format!("shift {} && exec \"$@\"", args.len()));
            let mut w: Vec<OsString> = vec![
                "unshare".into(),
                "-m".into(),
                "--propagation".into(),
                "private".into(),
                "sh".into(),
                "-c".into(),
                line.into(),
                "sh".into(),
            ];
            w.extend(args);
            w.append(&mut v);
            v = w;
        }
        v
    }

    fn command(&self) -> Command {
        let argv = self.argv();
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c.env_clear();
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c.current_dir(&self.cwd);
        // Own process group, so the watchdog can kill the whole tree.
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        c
    }

    pub fn cmdline(&self) -> String {
        self.argv()
            .iter()
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Start the command with piped stdin/stdout/stderr (for tests that talk to it).
    pub fn spawn(&self) -> Running {
        let mut c = self.command();
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.cmdline()));
        let watchdog = Watchdog::start(child.id(), self.timeout);
        Running {
            child: Some(child),
            cmdline: self.cmdline(),
            watchdog: Some(watchdog),
        }
    }

    /// Run to completion; panics only if the program cannot be started.
    pub fn output(&self) -> Output {
        self.try_output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.cmdline()))
    }

    pub fn try_output(&self) -> std::io::Result<Output> {
        let mut c = self.command();
        c.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn()?;
        let watchdog = Watchdog::start(child.id(), self.timeout);
        let writer = self.stdin.clone().map(|data| {
            let mut stdin = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            })
        });
        let out = child.wait_with_output()?;
        let timed_out = watchdog.stop();
        if let Some(w) = writer {
            let _ = w.join();
        }
        Ok(Output::new(self.cmdline(), out, timed_out))
    }
}

/// Kills a process group when its time is up; stopped (and told) when the command ends.
struct Watchdog {
    done: mpsc::Sender<()>,
    handle: std::thread::JoinHandle<bool>,
}

impl Watchdog {
    fn start(pid: u32, timeout: Duration) -> Watchdog {
        let (done, rx) = mpsc::channel::<()>();
        let handle = std::thread::spawn(move || match rx.recv_timeout(timeout) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let pg = nix::unistd::Pid::from_raw(-(pid as i32));
                let _ = nix::sys::signal::kill(pg, nix::sys::signal::Signal::SIGKILL);
                true
            }
            _ => false,
        });
        Watchdog { done, handle }
    }

    /// Returns whether the watchdog fired.
    fn stop(self) -> bool {
        let _ = self.done.send(());
        self.handle.join().unwrap_or(false)
    }
}

/// A command started with [`Cmd::spawn`].
pub struct Running {
    /// `None` once waited for.
    child: Option<Child>,
    cmdline: String,
    watchdog: Option<Watchdog>,
}

impl Running {
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// Read stdout up to and including the next newline (one byte at a time, so nothing after
    /// the line is consumed).
    pub fn read_line(&mut self) -> String {
        let out = self.child.as_mut().unwrap().stdout.as_mut().unwrap();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        loop {
            match out.read(&mut b) {
                Ok(0) => break,
                Ok(_) => {
                    line.push(b[0]);
                    if b[0] == b'\n' {
                        break;
                    }
                }
                Err(e) => panic!("read stdout of {}: {e}", self.cmdline),
            }
        }
        String::from_utf8_lossy(&line).into_owned()
    }

    /// Write to the command's stdin (kept open).
    pub fn write_stdin(&mut self, data: &[u8]) {
        let stdin = self.child.as_mut().unwrap().stdin.as_mut().unwrap();
        stdin.write_all(data).unwrap();
        stdin.flush().unwrap();
    }

    /// The bytes written to the command's stdin that it has not read yet (FIONREAD on the
    /// pipe): 0 once it took everything.
    pub fn stdin_unread(&self) -> u64 {
        let stdin = self.child.as_ref().unwrap().stdin.as_ref().unwrap();
        rustix::io::ioctl_fionread(stdin).unwrap()
    }

    /// Type `keys` on the terminal of a [`Cmd::pty`] command, each key in a read of its own
    /// (as a person types them, and as Podman's detach keys must come): each is written once
    /// the program behind the terminal read the one before (after the last it may be gone).
    pub fn type_apart(&mut self, keys: &[u8]) {
        for (i, k) in keys.iter().enumerate() {
            let before = self.terminal_reads();
            self.write_stdin(&[*k]);
            if i + 1 < keys.len() {
                eventually("the program behind the terminal reads the key", || {
                    self.terminal_reads() > before
                });
            }
        }
    }

    /// The bytes read so far (`rchar` of /proc/PID/io) by the processes behind a
    /// [`Cmd::pty`] command's terminal: the descendants of `script` whose stdin is the
    /// terminal `script` made (the same device on the same devpts: a container's processes,
    /// on a terminal of their own, read their binaries and files, which must not count). The
    /// terminal's own input queue cannot tell: a write to its other end reaches the queue
    /// later, from a kernel worker.
    fn terminal_reads(&self) -> u64 {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let stdin_of = |pid: &str| {
            std::fs::metadata(format!("/proc/{pid}/fd/0"))
                .ok()
                .filter(|m| m.file_type().is_char_device())
                .map(|m| (m.dev(), m.rdev()))
        };
        let children = |pid: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default()
        };
        let script = self.pid().as_raw().to_string();
        let Some(terminal) = children(&script).split_whitespace().find_map(stdin_of) else {
            return 0;
        };
        let mut total = 0;
        let mut todo = vec![script];
        while let Some(pid) = todo.pop() {
            for c in children(&pid).split_whitespace() {
                if stdin_of(c) == Some(terminal) {
                    let io = std::fs::read_to_string(format!("/proc/{c}/io")).unwrap_or_default();
                    total += io
                        .lines()
                        .find_map(|l| l.strip_prefix("rchar: "))
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .unwrap_or(0);
                }
                todo.push(c.to_string());
            }
        }
        total
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).unwrap();
    }

    pub fn wait(mut self) -> Output {
        let mut child = self.child.take().unwrap();
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        let timed_out = self.watchdog.take().map(|w| w.stop()).unwrap_or(false);
        Output::new(self.cmdline.clone(), out, timed_out)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(w) = self.watchdog.take() {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            w.stop();
        }
    }
}

/// What a command did, with assertions that print everything on failure.
#[derive(Clone)]
pub struct Output {
    pub cmdline: String,
    /// Exit status, or 128+n when killed by signal n (as a shell reports it).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Output {
    fn new(cmdline: String, out: std::process::Output, timed_out: bool) -> Output {
        use std::os::unix::process::ExitStatusExt;
        let code = out
            .status
            .code()
            .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0));
        Output {
            cmdline,
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            timed_out,
        }
    }

    /// Assert exit status 0.
    #[track_caller]
    pub fn success(self) -> Output {
        self.code_is(0)
    }

    /// Assert an exact exit status.
    #[track_caller]
    pub fn code_is(self, code: i32) -> Output {
        assert!(!self.timed_out, "command timed out:\n{self}");
        assert_eq!(self.code, code, "unexpected exit status:\n{self}");
        self
    }

    /// Assert rbox failed as rbox fails: exit 125 and one `Error: ...` line, no panic.
    #[track_caller]
    pub fn rbox_error(self) -> Output {
        let out = self.code_is(125);
        out.assert_clean_error();
        out
    }

    /// No panic and an `Error:` line on stderr.
    #[track_caller]
    pub fn assert_clean_error(&self) {
        assert!(!self.stderr.contains("panicked"), "rbox panicked:\n{self}");
        assert!(
            self.stderr.lines().any(|l| l.starts_with("Error: ")),
            "expected an `Error: ...` line on stderr:\n{self}"
        );
    }

    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .collect()
    }

    /// stdout without a trailing newline (and without the carriage returns of a pty).
    pub fn text(&self) -> String {
        self.stdout
            .replace("\r\n", "\n")
            .trim_end_matches('\n')
            .to_string()
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.cmdline)?;
        writeln!(
            f,
            "status: {}{}",
            self.code,
            if self.timed_out { " (timed out)" } else { "" }
        )?;
        writeln!(f, "--- stdout\n{}", self.stdout)?;
        write!(f, "--- stderr\n{}", self.stderr)
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Every path below `root` (relative), for before/after comparisons. Unreadable parts are
/// listed as they are seen.
pub fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A unique suffix for names shared across test processes.
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Poll `ok` every 20 ms until it holds; fail after 20 s, naming `what`.
pub fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "after 20 s: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A TCP port free on every host address now (the kernel's choice), for a test to publish.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .expect("bind a port")
        .port()
}
