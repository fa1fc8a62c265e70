//! The attach client (`runtime::front`), which `rbox run -i` and `rbox attach` share: input
//! and output at once in bulk (a container that echoes a huge paste must not deadlock the
//! client and the monitor), and piped stdin as Podman 4.3.1 treats it (observed as rboxsub:
//! `podman run -i` detaches when the reads bring Ctrl-P and Ctrl-Q one by one and the
//! container's stdin then ends; the end of `podman attach`'s stdin ends the container's).

use std::time::Duration;

use crate::util::{eventually, for_each_user, Output, RemoveAll, Running};

/// Reads the command's output line by line until a line holds `text`.
fn read_until(r: &mut Running, text: &str) {
    let mut seen = String::new();
    loop {
        let line = r.read_line();
        assert!(
            !line.is_empty(),
            "end of output before {text:?}; got {seen:?}"
        );
        if line.contains(text) {
            return;
        }
        seen.push_str(&line);
    }
}

/// `len` printable bytes that are not all alike (a shifted copy would not compare equal).
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b' ' + ((i * 7 + i / 977) % 95) as u8)
        .collect()
}

/// Exit 0 in time; on failure the megabytes of output are left out of the message.
#[track_caller]
fn ended_well(out: &Output) {
    assert!(
        out.code == 0,
        "{}: exit {} (timed out: {}), {} bytes out, stderr: {}",
        out.cmdline,
        out.code,
        out.timed_out,
        out.stdout.len(),
        out.stderr
    );
}

#[test]
fn attach_relay_echoes_megabytes_both_ways() {
    for_each_user("attach_relay_bulk", |env| {
        env.import_busybox("busybox");
        let _rm = RemoveAll(env);
        // 8 MB in while the container writes them back: the client must read the output
        // while its input waits for the monitor (both sides' buffers are far smaller)
        let data = pattern(8 << 20);
        let out = env
            .rbox()
            .args(["run", "-i", "--rm", "--network=none", "busybox", "cat"])
            .stdin(data.clone())
            .timeout(Duration::from_secs(120))
            .output();
        ended_well(&out);
        assert_eq!(out.stdout.len(), data.len(), "{}", out.cmdline);
        assert!(
            out.stdout.as_bytes() == data.as_slice(),
            "the bytes come back as sent"
        );
        // the same with the signals not passed on (the other way into the monitor)
        let data = pattern(3 << 20);
        let out = env
            .rbox()
            .args(["run", "-i", "--rm", "--sig-proxy=false", "--network=none"])
            .args(["busybox", "sh", "-c", "cat; echo done"])
            .stdin(data.clone())
            .timeout(Duration::from_secs(120))
            .output();
        ended_well(&out);
        assert_eq!(out.stdout.len(), data.len() + 5, "{}", out.cmdline);
        assert!(out.stdout.ends_with("done\n"), "{}", out.cmdline);
    });
}

/// Waits for `/go`, says so, waits for `/go2`, then counts its stdin.
const LATE_READER: &str = "echo ready; until [ -e /go ]; do usleep 20000; done; echo go-seen; \
                           until [ -e /go2 ]; do usleep 20000; done; wc -c";

#[test]
fn attach_relay_output_flows_while_stdin_waits() {
    for_each_user("attach_relay_late", |env| {
        env.import_busybox("busybox");
        let _rm = RemoveAll(env);
        let logs = || env.rbox().args(["logs", "late"]).output().text();
        std::thread::scope(|s| {
            let run = s.spawn(|| {
                env.rbox()
                    .args(["run", "-i", "--name", "late", "--network=none", "busybox"])
                    .args(["sh", "-c", LATE_READER])
                    .stdin(pattern(2 << 20))
                    .timeout(Duration::from_secs(120))
                    .output()
            });
            eventually("the container is up", || logs().contains("ready"));
            // its stdin pipe is full: the monitor holds more input it cannot write now
            let pid = env.inspect("late", "{{.State.Pid}}");
            let stdin = std::fs::File::open(format!("/proc/{pid}/fd/0")).unwrap();
            eventually("the container's stdin pipe fills", || {
                rustix::io::ioctl_fionread(&stdin).unwrap() >= 65536
            });
            // what it writes meanwhile still reaches the log (and the caller)
            env.rbox()
                .args(["exec", "late", "touch", "/go"])
                .output()
                .success();
            eventually("go-seen in the log", || logs().contains("go-seen"));
            env.rbox()
                .args(["exec", "late", "touch", "/go2"])
                .output()
                .success();
            let out = run.join().unwrap().success();
            assert_eq!(out.stdout, "ready\ngo-seen\n2097152\n", "{out}");
        });
    });
}

/// A container that echoes each line as `got:LINE`, and says `eof` when its stdin ends.
const ECHO: &str = r#"echo ready; while read l; do echo "got:$l"; done; echo eof"#;

/// Ticks until `/go` exists, then echoes its stdin, says `done` and exits 5.
const TICKS: &str = "while [ ! -e /go ]; do echo tick; usleep 100000; done; cat; echo done; exit 5";

#[test]
fn attach_relay_piped_stdin_detaches_and_ends() {
    for_each_user("attach_relay_piped", |env| {
        env.import_busybox("busybox");
        let _rm = RemoveAll(env);
        let mut run = env
            .rbox()
            .args(["run", "-i", "--network=none", "--name", "p1", "busybox"])
            .args(["sh", "-c", ECHO])
            .timeout(Duration::from_secs(90))
            .spawn();
        read_until(&mut run, "ready");
        run.write_stdin(b"one\n");
        read_until(&mut run, "got:one");
        // each key in a read of its own: rbox took Ctrl-P before Ctrl-Q is written
        run.write_stdin(b"\x10");
        eventually("rbox reads the Ctrl-P", || run.stdin_unread() == 0);
        run.write_stdin(b"\x11");
        let out = run.wait().success();
        assert!(!out.stdout.contains("eof"), "{out}");
        // the container's stdin ended with the detach: it finishes on its own, exit 0
        let waited = env
            .rbox()
            .args(["wait", "p1"])
            .timeout(Duration::from_secs(60))
            .output()
            .success();
        assert_eq!(waited.text(), "0");
        let logs = env.rbox().args(["logs", "p1"]).output().success();
        assert_eq!(logs.stdout, "ready\ngot:one\neof\n", "{logs}");

        // the end of attach's stdin is the end of the container's
        env.rbox()
            .args(["run", "-di", "--network=none", "--name", "r1", "busybox"])
            .args(["sh", "-c", "cat; echo done; exit 4"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["attach", "r1"])
            .stdin("hi\n")
            .timeout(Duration::from_secs(60))
            .output()
            .success();
        // attach's own newline at the end, and exit 0, as Podman 4.3's
        assert_eq!(out.stdout, "hi\ndone\n\n", "{out}");
        assert_eq!(env.text(&["wait", "r1"]), "4");
        // with --no-stdin the end of attach's stdin is not the container's: a later client
        // still gets its input through
        env.rbox()
            .args(["run", "-di", "--network=none", "--name", "r2", "busybox"])
            .args(["sh", "-c", TICKS])
            .output()
            .success();
        let mut quiet = env
            .rbox()
            .args(["attach", "--no-stdin", "r2"])
            .timeout(Duration::from_secs(60))
            .spawn();
        read_until(&mut quiet, "tick");
        // its stdin ends now (wait closes it); it stays until the container exits
        let quiet = std::thread::spawn(move || quiet.wait());
        env.rbox()
            .args(["exec", "r2", "touch", "/go"])
            .output()
            .success();
        let out = env
            .rbox()
            .args(["attach", "r2"])
            .stdin("two\n")
            .timeout(Duration::from_secs(60))
            .output()
            .success();
        assert!(out.stdout.ends_with("two\ndone\n\n"), "{out}");
        let out = quiet.join().unwrap().success();
        assert!(out.stdout.ends_with("two\ndone\n\n"), "{out}");
    });
}
