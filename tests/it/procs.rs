//! Looking into and freezing running containers: `top`, `pause`/`unpause`, `stats`. Every test
//! runs once per identity; header texts are the ones Podman 4.3 printed for the same commands.

use crate::util::{eventually, for_each_user};

/// The state letter of /proc/PID/stat (`S` sleeping, `T` stopped).
fn proc_state(pid: &str) -> char {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    s[s.rfind(')').unwrap() + 2..].chars().next().unwrap()
}

/// Cells of an aligned table line (cells are separated by two spaces or more).
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn top_shows_the_container_processes_as_it_sees_them() {
    for_each_user("procs-top", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args(["run", "-d", "--network=none", "--name", "t", "busybox"])
            .args(["sleep", "1000"])
            .output()
            .success();
        let out = env.rbox().args(["top", "t"]).output().success();
        let lines = out.lines();
        // podman 4.3 printed: USER PID PPID %CPU ELAPSED TTY TIME COMMAND
        assert_eq!(
            cells(lines[0]),
            ["USER", "PID", "PPID", "%CPU", "ELAPSED", "TTY", "TIME", "COMMAND"],
            "{out}"
        );
        assert_eq!(lines.len(), 2, "{out}");
        let row = cells(lines[1]);
        assert_eq!(
            (row[0], row[1], row[2], row[5], row[7]),
            ("root", "1", "0", "?", "sleep 1000"),
            "{out}"
        );

        // every descriptor, by its header as podman 4.3 printed it for the same list
        let all = "args comm etime group hgroup huser label nice pcpu pgid pid ppid rgroup \
                   ruser time tty user vsz rss stime state capeff capbnd seccomp";
        let out = env
            .rbox()
            .arg("top")
            .arg("t")
            .args(all.split(' '))
            .output()
            .success();
        assert_eq!(
            cells(out.lines()[0]),
            [
                "COMMAND",
                "COMMAND",
                "ELAPSED",
                "GROUP",
                "HGROUP",
                "HUSER",
                "LABEL",
                "NI",
                "%CPU",
                "PGID",
                "PID",
                "PPID",
                "RGROUP",
                "RUSER",
                "TIME",
                "TTY",
                "USER",
                "VSZ",
                "RSS",
                "STIME",
                "STATE",
                "EFFECTIVE CAPS",
                "BOUNDING CAPS",
                "SECCOMP"
            ],
            "{out}"
        );
        // commas separate descriptors too; the host's id of container root is the user's
        let out = env
            .rbox()
            .args(["top", "t", "pid,user,huser,state,seccomp"])
            .output()
            .success();
        let uid = env.user.uid.to_string();
        assert_eq!(
            cells(out.lines()[1]),
            ["1", "root", uid.as_str(), "S", "filter"],
            "{out}"
        );

        if env.user.has_many_ids() {
            // a process of another user, exec'd later: its own pid and its name from the
            // container's /etc/passwd
            env.rbox()
                .args([
                    "exec",
                    "-u",
                    "1000",
                    "t",
                    "sh",
                    "-c",
                    "sleep 900 >/dev/null 2>&1 & exit 0",
                ])
                .output()
                .success();
            let out = env
                .rbox()
                .args(["top", "t", "user", "pid", "ppid", "args"])
                .output()
                .success();
            let rows: Vec<Vec<&str>> = out.lines()[1..].iter().map(|l| cells(l)).collect();
            assert!(
                rows.iter()
                    .any(|r| r[0] == "tester" && r[1] != "1" && r[3] == "sleep 900"),
                "{out}"
            );
            env.rbox()
                .args(["run", "-d", "--network=none", "--name", "u", "-u", "1000"])
                .args(["busybox", "sleep", "1000"])
                .output()
                .success();
            let out = env.rbox().args(["top", "u"]).output().success();
            let row = cells(out.lines()[1]);
            assert_eq!((row[0], row[1]), ("tester", "1"), "{out}");
            env.rbox()
                .args(["rm", "-f", "-t", "0", "u"])
                .output()
                .success();
        }

        env.rbox()
            .args(["create", "--name", "c", "busybox", "true"])
            .output()
            .success();
        let out = env.rbox().args(["top", "c"]).output().rbox_error();
        assert!(
            out.stderr
                .contains("top can only be used on running containers"),
            "{out}"
        );
        env.rbox()
            .args(["rm", "-f", "-t", "0", "t", "c"])
            .output()
            .success();
    });
}

#[test]
fn pause_stops_every_process_and_unpause_resumes_them() {
    for_each_user("procs-pause", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args(["run", "-d", "--network=none", "--name", "p", "busybox"])
            .args(["sh", "-c", "sleep 1000 & exec sleep 1001"])
            .output()
            .success();
        let pid = env.field("p", ".State.Pid");
        let out = env.rbox().args(["pause", "p"]).output().success();
        assert_eq!(out.text(), "p");
        assert_eq!(proc_state(&pid), 'T');
        let out = env
            .rbox()
            .args(["top", "p", "pid", "state", "args"])
            .output()
            .success();
        assert_eq!(out.lines().len(), 3, "{out}");
        for l in &out.lines()[1..] {
            assert_eq!(cells(l)[1], "T", "{out}");
        }
        let out = env
            .rbox()
            .args(["ps", "-a", "--format", "{{.Names}} {{.Status}}"])
            .output()
            .success();
        assert_eq!(out.text(), "p Paused");
        assert_eq!(
            env.field("p", ".State.Status}} {{.State.Paused"),
            "paused true"
        );
        let out = env.rbox().args(["exec", "p", "true"]).output().rbox_error();
        assert!(
            out.stderr
                .contains("can only create exec sessions on running containers"),
            "{out}"
        );
        let out = env.rbox().args(["pause", "p"]).output().rbox_error();
        assert!(
            out.stderr
                .contains("\"paused\" is not running, can't pause: container state improper"),
            "{out}"
        );

        env.rbox().args(["unpause", "p"]).output().success();
        // running again (just woken, or asleep in its sleep once more)
        assert!(
            matches!(proc_state(&pid), 'S' | 'R'),
            "{}",
            proc_state(&pid)
        );
        assert_eq!(env.field("p", ".State.Status"), "running");
        let out = env.rbox().args(["unpause", "p"]).output().rbox_error();
        assert!(
            out.stderr
                .contains("\"running\" is not paused, can't unpause: container state improper"),
            "{out}"
        );
        // rm -f of a paused container
        env.rbox().args(["pause", "p"]).output().success();
        env.rbox()
            .args(["rm", "-f", "-t", "0", "p"])
            .output()
            .success();
        assert!(std::fs::metadata(format!("/proc/{pid}")).is_err() || proc_state(&pid) == 'Z');
    });
}

#[test]
fn stop_of_a_paused_container_delivers_its_stop_signal() {
    for_each_user("procs-pause-stop", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args(["run", "-d", "--network=none", "--name", "q", "busybox"])
            .args([
                "sh",
                "-c",
                "trap 'exit 3' TERM; touch /tmp/trapped; while :; do sleep 0.1; done",
            ])
            .output()
            .success();
        // the shell (PID 1) ignores a TERM that comes before its trap is set
        eventually("the container's shell to set its TERM trap", || {
            env.rbox()
                .args(["exec", "q", "test", "-e", "/tmp/trapped"])
                .output()
                .code
                == 0
        });
        env.rbox().args(["pause", "q"]).output().success();
        // the TERM reaches the shell (exit 3), long before the 60 s that would end in SIGKILL
        env.rbox()
            .args(["stop", "-t", "60", "q"])
            .output()
            .success();
        assert_eq!(
            env.field("q", ".State.Status}} {{.State.ExitCode"),
            "exited 3"
        );
        let out = env.rbox().args(["unpause", "q"]).output().rbox_error();
        assert!(out.stderr.contains("\"exited\" is not paused"), "{out}");
        let out = env.rbox().args(["pause", "q"]).output().rbox_error();
        assert!(out.stderr.contains("\"exited\" is not running"), "{out}");
    });
}

#[test]
fn stats_no_stream_shows_the_container() {
    for_each_user("procs-stats", |env| {
        env.import_busybox("busybox");
        env.rbox()
            .args(["run", "-d", "--network=none", "--name", "s", "busybox"])
            .args(["sh", "-c", "sleep 1000 & exec sleep 1001"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["stats", "--no-stream", "s"])
            .output()
            .success();
        // podman 4.3 on this host refuses stats (rootless with cgroup v1); this is the table
        // its podman-stats(1) and its default template give for a cgroup v2 host
        assert_eq!(
            cells(out.lines()[0]),
            [
                "ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "NET IO",
                "BLOCK IO",
                "PIDS",
                "CPU TIME",
                "AVG CPU %"
            ],
            "{out}"
        );
        let row = cells(out.lines()[1]);
        assert_eq!(row[1], "s", "{out}");
        assert_eq!(row[7], "2", "two processes: {out}");
        // two sleeps take some hundreds of kB to a few MB
        let mem = row[3].split(" / ").next().unwrap();
        assert!(
            mem.ends_with("kB") || mem.ends_with("MB"),
            "memory of two sleeps: {out}"
        );
        let out = env
            .rbox()
            .args(["stats", "--no-stream", "--format", "json", "s"])
            .output()
            .success();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v[0]["name"], "s", "{out}");
        assert_eq!(v[0]["pids"], "2", "{out}");
        let out = env
            .rbox()
            .args(["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}"])
            .output()
            .success();
        assert_eq!(out.text(), "s 2");
        env.rbox()
            .args(["rm", "-f", "-t", "0", "s"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["stats", "--no-stream", "s"])
            .output()
            .rbox_error();
        assert!(out.stderr.contains("no such container"), "{out}");
    });
}
