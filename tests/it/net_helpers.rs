//! The network helpers (pasta, slirp4netns) against the container's own failures: a
//! container whose init fails while its network is being made reports the init's error and
//! exit code, as it does without a network, never the helper's "child failed".

use crate::util::{for_each_user, have, require};

const BACKENDS: [&str; 2] = ["pasta", "slirp4netns"];

/// An init that fails early (a tmpfs mount refused, before the helper has joined its
/// namespace: exit 126 as Podman's for a mount its runtime could not make), a missing command
/// and a bad working directory: the same error line and exit code with each helper as with
/// `--network=none`.
#[test]
fn an_early_init_failure_wins_over_the_network_helper() {
    if !require(
        BACKENDS.iter().all(|b| have(b)),
        "pasta and slirp4netns installed",
    ) {
        return;
    }
    for_each_user("net_init_fails", |env| {
        env.import_busybox("busybox");
        let cases: [(&[&str], i32, &str); 3] = [
            (
                &["--tmpfs", "/x:size=abc", "busybox", "true"],
                126,
                "mount tmpfs on `/x`",
            ),
            (&["busybox", "no-such-command"], 127, "no-such-command"),
            (
                &["--workdir", "/etc/passwd", "busybox", "true"],
                126,
                "working directory `/etc/passwd`",
            ),
        ];
        for (args, code, says) in cases {
            let none = env
                .rbox()
                .args(["run", "--rm", "--network=none"])
                .args(args)
                .output()
                .code_is(code);
            none.assert_clean_error();
            assert!(none.stderr.contains(says), "{none}");
            for net in BACKENDS {
                // several times: the init and the helper race
                for _ in 0..3 {
                    let out = env
                        .rbox()
                        .args(["run", "--rm", "--network", net])
                        .args(args)
                        .output()
                        .code_is(code);
                    assert_eq!(out.stderr, none.stderr, "{net}: {out}");
                }
            }
        }
        // detached: the monitor passes the init's reason to the caller
        let none = env
            .rbox()
            .args(["run", "-d", "--network=none", "--tmpfs", "/x:size=abc"])
            .args(["busybox", "true"])
            .output()
            .code_is(126);
        assert!(none.stderr.contains("mount tmpfs on `/x`"), "{none}");
        for net in BACKENDS {
            let out = env
                .rbox()
                .args(["run", "-d", "--network", net, "--tmpfs", "/x:size=abc"])
                .args(["busybox", "true"])
                .output()
                .code_is(126);
            assert_eq!(out.stderr, none.stderr, "-d {net}: {out}");
        }
        env.rbox().args(["rm", "-a", "-f"]).output().success();
        let left = env.rbox().args(["ps", "-aq"]).output().success();
        assert_eq!(left.stdout, "", "containers left behind");
    });
}

/// A host whose only resolver is on its loopback (127.0.0.53, no systemd-resolved upstream
/// list): the container's resolv.conf names pasta's forwarding address, where pasta carries
/// UDP and rbox's relay carries TCP, both to the host's resolver; a restarted container
/// (same network namespace, relay paused and resumed) still gets answers over TCP.
#[test]
fn dns_over_tcp_through_pastas_forwarder() {
    use crate::net_hosts::{ask, on_a_private_host, resolver, ANSWER, ASK_OVER_TCP, STUB};
    use std::path::Path;
    if !require(
        crate::util::is_root(),
        "root, to make a network namespace and a fake resolv.conf",
    ) || !require(have("pasta"), "pasta installed")
    {
        return;
    }
    let answer: Vec<String> = ANSWER.iter().map(u8::to_string).collect();
    let answer = answer.join(" ");
    let check = |what: &str, out: &str| {
        assert!(out.contains("server=169.254.1.1\n"), "{what}: {out}");
        assert!(
            out.lines()
                .nth(1)
                .is_some_and(|l| l.trim_end().ends_with(&answer)),
            "{what}: no answer over TCP: {out}"
        );
        assert!(out.contains("Address: 192.0.2.77"), "{what}: {out}");
    };
    on_a_private_host(true, || {
        resolver(STUB);
        for_each_user("dns_tcp_pasta", |env| {
            env.import_busybox("busybox");
            let conf = env.write("stub.conf", format!("nameserver {STUB}\nsearch lan\n"));
            // an empty /run/systemd: no upstream list behind the stub
            let none = env.path("no-systemd");
            std::fs::create_dir_all(&none).unwrap();
            let hide = Path::new("/run/systemd").is_dir().then_some(none.as_path());
            check("run --rm", &ask(env, "pasta", &conf, hide));

            let mut cmd = env.rbox();
            cmd.bind_over(&conf, Path::new("/etc/resolv.conf"));
            if let Some(dir) = hide {
                cmd.bind_over(dir, Path::new("/run/systemd"));
            }
            cmd.args([
                "run",
                "-d",
                "--name",
                "dnsweb",
                "--network=pasta",
                "busybox",
            ])
            .args(["sleep", "600"])
            .output()
            .success();
            let exec = || {
                env.rbox()
                    .args(["exec", "dnsweb", "sh", "-c", ASK_OVER_TCP])
                    .output()
                    .success()
                    .stdout
            };
            check("exec", &exec());
            env.rbox()
                .args(["restart", "-t", "0", "dnsweb"])
                .output()
                .success();
            check("exec after restart", &exec());
            let relay = relays_of(env);
            assert_eq!(relay.len(), 1, "one DNS relay: {relay:?}");
            env.rbox().args(["rm", "-f", "dnsweb"]).output().success();
            // killed with its monitor (by the kernel when rm -f kills that), as pasta is
            gone_soon(env, "rm -f");

            // a killed monitor takes its relay along
            let mut cmd = env.rbox();
            cmd.bind_over(&conf, Path::new("/etc/resolv.conf"));
            if let Some(dir) = hide {
                cmd.bind_over(dir, Path::new("/run/systemd"));
            }
            cmd.args([
                "run",
                "-d",
                "--name",
                "dnskill",
                "--network=pasta",
                "busybox",
            ])
            .args(["sleep", "600"])
            .output()
            .success();
            let relay = relays_of(env);
            assert_eq!(relay.len(), 1, "one DNS relay: {relay:?}");
            let monitor = parent_of(relay[0]);
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(monitor),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            gone_soon(env, "a killed monitor");
            env.rbox().args(["rm", "-f", "dnskill"]).output().success();
        });
    });
}

/// Live `rbox-dns` processes of this env's containers (their command line names its store).
fn relays_of(env: &crate::util::Env) -> Vec<i32> {
    let store = env.store().to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if comm.trim() == "rbox-dns"
            && !zombie
            && String::from_utf8_lossy(&cmdline).contains(&store)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Wait (with a deadline) until no relay of `env` is left.
fn gone_soon(env: &crate::util::Env, after: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !relays_of(env).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "a DNS relay outlived {after}: {:?}",
            relays_of(env)
        );
        std::thread::yield_now();
    }
}

fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}
