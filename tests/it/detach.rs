//! Detaching from an attached `rbox run` (`--detach-keys`, Ctrl-P Ctrl-Q by default) and
//! `--sig-proxy`, as Podman 4.3.1 behaves: the container goes on as a detached one that
//! `ps`, `logs`, `attach` and `--rm` know. The terminal is a real pty (util-linux `script`,
//! whose stdin the test types into); each step waits for the container's answer, never for
//! time to pass.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::util::{for_each_user, Cmd, Env, RemoveAll, Running};

/// Reads the command's output line by line until a line holds `text` (the watchdog ends a
/// command that never says it); returns that line.
fn read_until(r: &mut Running, text: &str) -> String {
    let mut seen = String::new();
    loop {
        let line = r.read_line();
        assert!(
            !line.is_empty(),
            "end of output before {text:?}; got {seen:?}"
        );
        if line.contains(text) {
            return line;
        }
        seen.push_str(&line);
    }
}

/// A container that echoes each line it reads as `got:LINE`, and exits 3 on `quit`.
const ECHO: &str =
    r#"echo ready; while read l; do [ "$l" = quit ] && exit 3; echo "got:$l"; done; echo eof"#;

/// `rbox ARGS` on a terminal of its own, typed into by the test.
fn on_terminal(env: &Env, args: &[&str]) -> Running {
    env.rbox()
        .args(args)
        .pty()
        .timeout(Duration::from_secs(90))
        .spawn()
}

/// `rbox run -it --network=none FLAGS --name NAME busybox sh -c SCRIPT`, with `rbox` (from
/// `env.rbox()`, perhaps with more set), on a terminal of its own, once the container said
/// `ready`.
fn started(mut rbox: Cmd, flags: &[&str], name: &str, script: &str) -> Running {
    let mut run = rbox
        .args(["run", "-it", "--network=none"])
        .args(flags)
        .args(["--name", name, "busybox", "sh", "-c", script])
        .pty()
        .timeout(Duration::from_secs(90))
        .spawn();
    read_until(&mut run, "ready");
    run
}

fn status(env: &Env, name: &str) -> String {
    env.inspect(name, "{{.State.Status}}")
}

#[test]
fn detach_keys_leave_the_container_running() {
    for_each_user("detach_keys", |env| {
        env.import_busybox("busybox");
        let _rm = RemoveAll(env);
        let mut run = started(env.rbox(), &[], "c1", ECHO);
        run.write_stdin(b"one\n");
        read_until(&mut run, "got:one");
        // each key in a read of its own, as typed (Podman takes them only so)
        run.type_apart(b"\x10\x11");
        let out = run.wait().success();
        assert!(!out.stdout.contains("got:"), "{out}");
        assert_eq!(status(env, "c1"), "running");
        let ps = env.text(&["ps", "--format", "{{.Names}} {{.Status}}"]);
        assert!(ps.starts_with("c1 Up"), "{ps}");
        let logs = env.rbox().args(["logs", "c1"]).output().success();
        assert!(logs.stdout.contains("got:one"), "{logs}");

        // `attach` takes it over; its exit is recorded (attach exits 0, as Podman's)
        let mut at = on_terminal(env, &["attach", "c1"]);
        at.write_stdin(b"two\n");
        read_until(&mut at, "got:two");
        at.write_stdin(b"quit\n");
        at.wait().success();
        assert_eq!(status(env, "c1"), "exited");
        assert_eq!(env.inspect("c1", "{{.State.ExitCode}}"), "3");

        // piped stdin is the container's own: Ctrl-P Ctrl-Q in data pass through, byte for
        // byte (Podman does not detach on them either)
        let mut data = vec![b'a'; 100_000];
        data.extend_from_slice(b"\x10\x11");
        data.extend(vec![b'z'; 100_000]);
        let out = env
            .rbox()
            .args(["run", "-i", "--rm", "--network=none", "busybox", "sh", "-c"])
            .arg("tr -d az | od -An -tx1")
            .stdin(data)
            .output()
            .success();
        assert_eq!(out.text().trim(), "10 11", "{out}");
    });
}

#[test]
fn detach_keys_custom_none_and_invalid() {
    for_each_user("detach_custom", |env| {
        env.import_busybox("busybox");
        let _rm = RemoveAll(env);
        let mut run = started(env.rbox(), &["--detach-keys=ctrl-a,ctrl-b"], "k1", ECHO);
        // Ctrl-P reaches the container now (Ctrl-Q is the container terminal's XON)
        run.write_stdin(b"\x10\x11x\n");
        let line = read_until(&mut run, "got:");
        assert!(line.contains("got:\u{10}x"), "{line:?}");
        run.type_apart(b"\x01\x02");
        run.wait().success();
        assert_eq!(status(env, "k1"), "running");
        env.rbox()
            .args(["rm", "-f", "-t", "0", "k1"])
            .output()
            .success();

        // containers.conf's `[engine] detach_keys`, when the command line gives none
        let conf = env.write("containers.conf", "[engine]\ndetach_keys = \"ctrl-x\"\n");
        let mut rbox = env.rbox();
        rbox.env("CONTAINERS_CONF", &conf);
        let mut run = started(rbox, &[], "k3", ECHO);
        run.write_stdin(b"\x18");
        run.wait().success();
        assert_eq!(status(env, "k3"), "running");
        env.rbox()
            .args(["rm", "-f", "-t", "0", "k3"])
            .output()
            .success();

        // "": no detaching, Ctrl-P Ctrl-Q go to the container
        let mut run = started(env.rbox(), &["--detach-keys="], "k2", ECHO);
        run.write_stdin(b"a\x10\x11b\n");
        let line = read_until(&mut run, "got:");
        assert!(line.contains("got:a\u{10}b"), "{line:?}");
        run.write_stdin(b"quit\n");
        run.wait().code_is(3);

        // Podman's text; nothing is created
        let out = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--network=none",
                "--detach-keys=foo",
                "busybox",
                "true",
            ])
            .output()
            .code_is(125);
        assert_eq!(
            out.stderr.trim(),
            "Error: invalid detach keys: Unknown character: 'foo'",
            "{out}"
        );
        let out = env
            .rbox()
            .args(["run", "--detach-keys=ctrl-p,,ctrl-q", "busybox", "true"])
            .output()
            .code_is(125);
        assert!(out.stderr.contains("Unknown character: ''"), "{out}");
        // create has neither flag (as Podman)
        let out = env
            .rbox()
            .args(["create", "--detach-keys=x", "busybox", "true"])
            .output()
            .code_is(125);
        assert!(out.stderr.contains("unknown flag: --detach-keys"), "{out}");
        let ps = env.text(&["ps", "-a", "--format", "{{.Names}}"]);
        assert_eq!(ps, "k2", "only the containers run above remain");
    });
}

#[test]
fn detached_rm_container_goes_when_it_exits() {
    for_each_user("detach_rm", |env| {
        env.import_busybox("busybox");
        let _rm = RemoveAll(env);
        let mut run = started(env.rbox(), &["--rm"], "r1", ECHO);
        run.type_apart(b"\x10\x11");
        run.wait().success();
        assert_eq!(status(env, "r1"), "running");
        let mut at = on_terminal(env, &["attach", "r1"]);
        at.write_stdin(b"two\n");
        read_until(&mut at, "got:two");
        at.write_stdin(b"quit\n");
        at.wait().success();
        let ps = env.text(&["ps", "-a", "--format", "{{.Names}}"]);
        assert_eq!(ps, "", "the --rm container is gone");
    });
}

/// The pid of the `rbox run` attached to container `name` (the process running rbox whose
/// parent does not: its monitor is its child).
fn front_end_of(env: &Env, name: &str) -> nix::unistd::Pid {
    let store = env.store().to_string_lossy().into_owned();
    let cmdline = |pid: &str| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let is_ours = |c: &[u8]| {
        let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
        args.first() == Some(&crate::util::RBOX.as_bytes())
            && args.contains(&store.as_bytes())
            && args.contains(&name.as_bytes())
    };
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || !is_ours(&cmdline(&pid)) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().nth(1).unwrap_or(""))
            .unwrap_or("");
        if !is_ours(&cmdline(ppid)) {
            return nix::unistd::Pid::from_raw(pid.parse().unwrap());
        }
    }
    panic!("no rbox run of {name} found");
}

/// A container that says when its trap is set, and whether SIGTERM reached it.
const TRAP: &str =
    r#"trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 600 & wait $!; done"#;

#[test]
fn sig_proxy() {
    for_each_user("sig_proxy", |env| {
        env.import_busybox("busybox");
        let _rm = RemoveAll(env);
        // default: rbox passes SIGTERM on
        let mut run = env
            .rbox()
            .args([
                "run",
                "--network=none",
                "--name",
                "s1",
                "busybox",
                "sh",
                "-c",
                TRAP,
            ])
            .timeout(Duration::from_secs(90))
            .spawn();
        read_until(&mut run, "ready");
        run.signal(Signal::SIGTERM);
        let out = run.wait().code_is(7);
        assert!(out.stdout.contains("got-term"), "{out}");

        // the same through the detached monitor of an attached `run -it` on a terminal
        let run = started(env.rbox(), &[], "s3", TRAP);
        let front = front_end_of(env, "s3");
        nix::sys::signal::kill(front, Signal::SIGTERM).unwrap();
        let out = run.wait().code_is(7);
        assert!(out.stdout.contains("got-term"), "{out}");

        // false: the signal ends rbox run and never reaches the container, which goes on
        let mut run = env
            .rbox()
            .args([
                "run",
                "--sig-proxy=false",
                "--network=none",
                "--name",
                "s2",
                "busybox",
            ])
            .args(["sh", "-c", TRAP])
            .timeout(Duration::from_secs(90))
            .spawn();
        read_until(&mut run, "ready");
        run.signal(Signal::SIGTERM);
        let out = run.wait().code_is(128 + 15);
        assert!(!out.stdout.contains("got-term"), "{out}");
        assert_eq!(status(env, "s2"), "running");
        // rbox stop's SIGTERM does reach it
        env.rbox().args(["stop", "s2"]).output().success();
        assert_eq!(env.inspect("s2", "{{.State.ExitCode}}"), "7");
        let logs = env.rbox().args(["logs", "s2"]).output().success();
        assert!(logs.stdout.contains("ready\ngot-term"), "{logs}");
    });
}

/// What the host gets from `http://127.0.0.1:PORT/index.html`.
fn http_get(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

#[test]
fn detached_run_keeps_its_port_and_restores_the_terminal() {
    for_each_user("detach_port", |env| {
        env.import_busybox("busybox");
        let _rm = RemoveAll(env);
        let port = crate::util::free_port();
        let publish = format!("{port}:8080");
        let web = "mkdir /w && echo hello-port > /w/index.html && httpd -p 8080 -h /w && \
                   echo ready; while read l; do echo \"got:$l\"; done";
        // the terminal's modes after rbox returns, as the shell that ran it sees them
        let mut line = String::new();
        for a in [
            crate::util::RBOX,
            "--root",
            &env.store().to_string_lossy(),
            "--runroot",
            &env.runroot().to_string_lossy(),
            "run",
            "-it",
            "-p",
            &publish,
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            web,
        ] {
            line.push_str(&crate::util::shell_quote(a));
            line.push(' ');
        }
        line.push_str("; echo \"rc=$?\"; stty -a");
        let mut run = env
            .cmd("sh")
            .args(["-c", &line])
            .pty()
            .timeout(Duration::from_secs(90))
            .spawn();
        read_until(&mut run, "ready");
        run.type_apart(b"\x10\x11");
        let rc = read_until(&mut run, "rc=");
        assert_eq!(rc.trim(), "rc=0");
        // raw mode is undone: `-ixon`, `-isig`, `-icanon`, `-echo` would say it is not
        let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let iflags = words(&read_until(&mut run, "ixon"));
        assert!(iflags.iter().any(|w| w == "ixon"), "{iflags:?}");
        let lflags = words(&read_until(&mut run, "icanon"));
        for mode in ["isig", "icanon", "echo"] {
            assert!(
                lflags.iter().any(|w| w == mode),
                "{mode} restored: {lflags:?}"
            );
        }
        run.wait().success();
        let page = http_get(port).expect("the published port answers after the detach");
        assert!(page.contains("hello-port"), "{page}");
        env.rbox()
            .args(["rm", "-f", "-t", "0", "web"])
            .output()
            .success();
        assert!(
            http_get(port).is_err(),
            "the port is let go with the container"
        );
    });
}

#[test]
fn start_attach_detaches() {
    for_each_user("detach_start", |env| {
        env.import_busybox("busybox");
        let _rm = RemoveAll(env);
        env.rbox()
            .args([
                "create",
                "-it",
                "--network=none",
                "--name",
                "a1",
                "busybox",
                "sh",
                "-c",
                ECHO,
            ])
            .output()
            .success();
        let mut st = on_terminal(env, &["start", "-ai", "--detach-keys=ctrl-x", "a1"]);
        read_until(&mut st, "ready");
        st.write_stdin(b"one\n");
        read_until(&mut st, "got:one");
        st.write_stdin(b"\x18");
        st.wait().success();
        assert_eq!(status(env, "a1"), "running");
        let out = env
            .rbox()
            .args(["start", "-a", "--detach-keys=ctrl-", "a1"])
            .output()
            .code_is(125);
        assert!(out.stderr.contains("Unknown character: 'ctrl-'"), "{out}");
        env.rbox()
            .args(["rm", "-f", "-t", "0", "a1"])
            .output()
            .success();
    });
}

/// After the detach nobody reads the first client's connection: the container's output must
/// still flow (to the log) however much it writes.
#[test]
fn output_after_detach_is_not_held_up() {
    for_each_user("detach_output", |env| {
        env.import_busybox("busybox");
        let _rm = RemoveAll(env);
        // it writes 3 MB once `exec` says go through a fifo, then exits
        let script = "mkfifo /go && echo ready && read l </go && \
                      head -c 3000000 /dev/zero | tr '\\0' x && echo && echo big-done";
        let mut run = started(env.rbox(), &[], "o1", script);
        run.type_apart(b"\x10\x11");
        run.wait().success();
        env.rbox()
            .args(["exec", "o1", "sh", "-c", "echo go > /go"])
            .output()
            .success();
        let waited = env
            .rbox()
            .args(["wait", "o1"])
            .timeout(Duration::from_secs(60))
            .output()
            .success();
        assert_eq!(waited.text(), "0");
        let logs = env
            .rbox()
            .args(["logs", "--tail", "2", "o1"])
            .output()
            .success();
        assert!(logs.stdout.contains("big-done"), "{logs}");
    });
}
