//! HPC: `rbox run --join=KEY` (tasks sharing one container, removed after the last) and a
//! one-node Slurm cluster from Debian's packages (munged, slurmctld, slurmd in a temp dir,
//! started by the test as root and stopped by a drop guard), whose `oci.conf` points at
//! `rbox oci`: `srun --container=BUNDLE` and `srun -n 2 rbox run --join` as both test users.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;

use crate::util::{self, Env, Who, RBOX};

/// A task of `--join` that publishes its pid in /tmp/NAME, waits for the other's, checks
/// that the other's process is in its pid namespace, and stays until the other has checked
/// too (each wait polls for at most 20 s).
fn task(me: &str, other: &str) -> String {
    format!(
        "wait_for() {{ i=0; while [ ! -s $1 ]; do i=$((i+1)); [ $i -gt 400 ] && exit 9; sleep 0.05; done; }}; \
         echo $$ > /tmp/{me}; wait_for /tmp/{other}; kill -0 $(cat /tmp/{other}) || exit 8; \
         echo ok > /tmp/{me}.done; wait_for /tmp/{other}.done; echo {me} sees {other}"
    )
}

fn names(env: &Env) -> String {
    env.rbox()
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .output()
        .success()
        .stdout
}

/// Poll `f` until it holds, for at most `secs` seconds.
fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn join_shares_one_container_and_removes_it() {
    util::for_each_user("join_share", |env| {
        env.import_busybox("busybox");
        let run = |me: &str, other: &str| {
            let mut c = env.rbox();
            c.args(["run", "--network=none", "--join=k", "busybox", "sh", "-c"])
                .arg(task(me, other));
            c.spawn()
        };
        let a = run("a", "b");
        let b = run("b", "a");
        let (a, b) = (a.wait().success(), b.wait().success());
        assert_eq!(a.stdout.trim(), "a sees b", "{a}");
        assert_eq!(b.stdout.trim(), "b sees a", "{b}");
        assert!(!names(env).contains("join-k"), "{}", names(env));
        // the command's exit code is the task's
        env.rbox()
            .args([
                "run",
                "--network=none",
                "--join=k",
                "busybox",
                "sh",
                "-c",
                "exit 3",
            ])
            .output()
            .code_is(3);
        assert!(!names(env).contains("join-k"), "{}", names(env));
        // without a key and outside Slurm: a clean error
        let out = env
            .rbox()
            .args(["run", "--join", "busybox", "true"])
            .output()
            .rbox_error();
        assert!(out.stderr.contains("--join=KEY"), "{out}");
    });
}

#[test]
fn join_container_of_killed_tasks_is_removed() {
    util::for_each_user("join_killed", |env| {
        env.import_busybox("busybox");
        let t = env
            .rbox()
            .args([
                "run",
                "--network=none",
                "--join=k",
                "busybox",
                "sleep",
                "60",
            ])
            .spawn();
        eventually("the shared container runs", 20, || {
            env.rbox()
                .args(["ps", "--format", "{{.Names}}"])
                .output()
                .stdout
                .contains("join-k")
        });
        t.signal(Signal::SIGKILL);
        let _ = t.wait();
        // the watcher sees the last member's lock go and removes the container
        eventually("the watcher removes the container", 20, || {
            !names(env).contains("join-k")
        });
    });
}

/// A free TCP port on localhost (bound, then let go).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// munged, slurmctld and slurmd of one node, in a temp dir; stopped on drop.
struct Cluster {
    dir: tempfile::TempDir,
    pidfiles: Vec<PathBuf>,
}

impl Cluster {
    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("rbox-it-slurm-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path().to_path_buf();
        set_mode(&d, 0o755);
        let mut c = Cluster {
            dir,
            pidfiles: Vec::new(),
        };
        for sub in ["munge", "state", "spool", "log"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        set_mode(&d.join("state"), 0o700);
        let key: Vec<u8> = (0..1024).map(|_| rand_byte()).collect();
        std::fs::write(d.join("munge/key"), key).unwrap();
        set_mode(&d.join("munge/key"), 0o400);
        let p = |s: &str| d.join(s).to_string_lossy().into_owned();
        c.pidfiles.push(d.join("munge/pid"));
        run_ok(Command::new("munged").args([
            "-f",
            &format!("--key-file={}", p("munge/key")),
            &format!("--socket={}", p("munge/sock")),
            &format!("--pid-file={}", p("munge/pid")),
            &format!("--log-file={}", p("log/munged.log")),
            &format!("--seed-file={}", p("munge/seed")),
        ]));
        let mem_mb = std::fs::read_to_string("/proc/meminfo")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            / 1024;
        let cpus = std::thread::available_parallelism().unwrap().get();
        let conf = format!(
            "ClusterName=rboxit\n\
             SlurmctldHost=localhost\n\
             SlurmctldPort={ctld}\n\
             SlurmdPort={slurmd}\n\
             SlurmUser=root\n\
             SlurmdUser=root\n\
             AuthType=auth/munge\n\
             AuthInfo=socket={sock}\n\
             CredType=cred/munge\n\
             StateSaveLocation={state}\n\
             SlurmdSpoolDir={spool}\n\
             SlurmctldPidFile={dir}/slurmctld.pid\n\
             SlurmdPidFile={dir}/slurmd.pid\n\
             SlurmctldLogFile={dir}/log/slurmctld.log\n\
             SlurmdLogFile={dir}/log/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\n\
             JobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\n\
             SwitchType=switch/none\n\
             MpiDefault=none\n\
             SchedulerType=sched/builtin\n\
             SelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core\n\
             ReturnToService=2\n\
             NodeName=localhost CPUs={cpus} RealMemory={mem} State=UNKNOWN\n\
             PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n",
            ctld = free_port(),
            slurmd = free_port(),
            sock = p("munge/sock"),
            state = p("state"),
            spool = p("spool"),
            dir = d.display(),
            mem = mem_mb.saturating_sub(512).max(256),
        );
        std::fs::write(d.join("slurm.conf"), conf).unwrap();
        // slurmstepd reads oci.conf next to slurm.conf. 22.05 has no %U (numeric uid): the
        // state root is named by the user's name; the query, kill and delete run as root.
        let rt = format!("{RBOX} oci --root {}/oci-%u", d.display());
        let oci = format!(
            "RunTimeQuery=\"{rt} state %n.%u.%j.%s.%t\"\n\
             RunTimeKill=\"{rt} kill %n.%u.%j.%s.%t\"\n\
             RunTimeDelete=\"{rt} delete --force %n.%u.%j.%s.%t\"\n\
             RunTimeRun=\"{rt} run --bundle %b %n.%u.%j.%s.%t\"\n"
        );
        std::fs::write(d.join("oci.conf"), oci).unwrap();
        c.pidfiles.push(d.join("slurmctld.pid"));
        run_ok(Command::new("slurmctld").arg("-f").arg(c.conf()));
        c.pidfiles.push(d.join("slurmd.pid"));
        run_ok(
            Command::new("slurmd")
                .arg("-f")
                .arg(c.conf())
                .args(["-N", "localhost"]),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new("sinfo")
                .args(["-h", "-o", "%t"])
                .env("SLURM_CONF", c.conf())
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).trim() == "idle" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the Slurm node is not idle after 20 s: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// The slurmd log, for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/slurmd.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // a step a failed assertion left behind would keep slurmd (and its slurmstepd) alive
        let _ = Command::new("scancel")
            .args(["--partition=debug", "--full", "--signal=KILL"])
            .env("SLURM_CONF", self.conf())
            .output();
        // slurmd, slurmctld, then munged; each waited for (at most 10 s) before the temp dir goes
        for pf in self.pidfiles.iter().rev() {
            let Some(pid) = std::fs::read_to_string(pf)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
            else {
                continue;
            };
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
    }
}

/// Whether `pid` runs (a zombie nobody reaps does not: the daemons fork away from us).
fn alive(pid: nix::unistd::Pid) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    !stat.is_empty() && !state.starts_with('Z')
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn rand_byte() -> u8 {
    use std::io::Read;
    let mut b = [0u8; 1];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b[0]
}

fn run_ok(c: &mut Command) {
    let out = c.output().unwrap_or_else(|e| panic!("run {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn slurm_srun_container_and_join() {
    let ok = util::require(util::is_root(), "the Slurm test starts daemons as root")
        && ["munged", "slurmctld", "slurmd", "srun"]
            .iter()
            .all(|p| util::require(util::have(p), format!("{p} (Debian: slurm-wlm munge)")));
    if !ok {
        return;
    }
    let cluster = Cluster::start();
    let d = cluster.dir.path();
    for u in util::users()
        .into_iter()
        .filter(|u| matches!(u.who, Who::Sub | Who::NoSub))
    {
        eprintln!("--- slurm as {u}");
        let env = Env::new("slurm", &u);
        // the state root of `rbox oci` under Slurm: the user's own, made before the step
        let state = d.join(format!("oci-{}", u.name));
        std::fs::create_dir(&state).unwrap();
        set_mode(&state, 0o700);
        env.give_to_user(&state);
        // slurmstepd replaces the process args with the srun command
        let b = crate::ociruntime::bundle(&env, "bundle", &["true"]);
        let srun = || {
            let mut c = env.cmd("srun");
            c.env("SLURM_CONF", cluster.conf())
                .timeout(Duration::from_secs(60));
            c
        };
        // slurmstepd rewrites config.json (args, env, absolute root) into its spool and runs
        // RunTimeRun as the user: rootless, id 0 inside mapped to the user
        let out = srun()
            .arg(format!("--container={}", b.display()))
            .args([
                "sh",
                "-c",
                "id -u; cat /proc/self/uid_map; echo job=$SLURM_JOB_ID; exit 4",
            ])
            .output();
        assert_eq!(out.code, 4, "{out}\n{}", cluster.log());
        let lines = out.lines();
        assert_eq!(lines[0], "0", "{out}");
        let map: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(map[..2], ["0", &u.uid.to_string()], "{out}");
        assert!(lines[2].starts_with("job=") && lines[2].len() > 4, "{out}");
        // nothing is left in the runtime's state root
        assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0);

        // two tasks of one step share the container `--join` (the step's key) gives them
        env.import_busybox("busybox");
        let script = format!(
            "if [ $SLURM_PROCID = 0 ]; then me=t0 other=t1; else me=t1 other=t0; fi; {} in $SLURM_JOB_ID.$SLURM_STEP_ID",
            task("$me", "$other")
        );
        let mut c = srun();
        c.args(["-n", "2", RBOX, "--root"])
            .arg(env.store())
            .arg("--runroot")
            .arg(env.runroot())
            .args([
                "run",
                "--network=none",
                "--join",
                "busybox",
                "sh",
                "-c",
                &script,
            ]);
        let out = c.output().success();
        let mut lines = out.lines();
        lines.sort();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("t0 sees t1 in "), "{out}");
        assert!(lines[1].starts_with("t1 sees t0 in "), "{out}");
        assert!(!names(&env).contains("join-"), "{}", names(&env));

        // scancel of a step whose tasks share a container: the container goes with them
        let mut c = srun();
        c.args(["-n", "2", RBOX, "--root"])
            .arg(env.store())
            .arg("--runroot")
            .arg(env.runroot())
            .args(["run", "--network=none", "--join", "busybox", "sleep", "60"]);
        let step = c.spawn();
        eventually("the step's container runs", 20, || {
            env.rbox()
                .args(["ps", "--format", "{{.Names}}"])
                .output()
                .stdout
                .contains("join-")
        });
        let jobs = Command::new("squeue")
            .args(["-h", "-o", "%i"])
            .env("SLURM_CONF", cluster.conf())
            .output()
            .unwrap();
        let job = String::from_utf8_lossy(&jobs.stdout).trim().to_string();
        run_ok(
            Command::new("scancel")
                .arg(&job)
                .env("SLURM_CONF", cluster.conf()),
        );
        let out = step.wait();
        assert_ne!(out.code, 0, "{out}");
        eventually("the cancelled step's container is removed", 20, || {
            !names(&env).contains("join-")
        });
    }
    drop(cluster);
}

/// Slurm 22.05 runs RunTimeKill as root on a state root its user owns: `rbox oci` becomes that
/// user first, so a pid the user wrote into `state.json` cannot make root signal a process
/// that is not the user's.
#[test]
fn oci_as_root_on_a_users_state_acts_as_that_user() {
    if !util::require(util::is_root(), "needs root to act on another user's state") {
        return;
    }
    let Some(u) = util::users()
        .into_iter()
        .find(|u| matches!(u.who, Who::Sub))
    else {
        return;
    };
    let env = Env::new("oci_root_owner", &u);
    let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
    let state = json!({
        "ociVersion": "1.0.2", "id": "forged", "status": "running",
        "pid": victim.id(), "bundle": "/", "rootfs": "/", "created": "", "owner": "",
    });
    env.write("oci/forged/state.json", state.to_string());
    env.give_to_user(&env.path("oci"));
    let out = Command::new(RBOX)
        .args(["oci", "--root"])
        .arg(env.path("oci"))
        .args(["kill", "forged", "KILL"])
        .output()
        .unwrap();
    let alive = victim.try_wait().unwrap().is_none();
    let _ = victim.kill();
    let _ = victim.wait();
    assert!(
        alive,
        "root's rbox oci killed a root process named in a user's state.json"
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("signal container `forged`"), "{err}");
}
