//! Joined networks: `--network=container:NAME|ID` shares a running container's network
//! namespace (its interfaces, its loopback, its /etc/hosts and resolv.conf),
//! `--network=ns:PATH` joins the namespace at a path; and the errors around both. Every test
//! runs once per identity.

use crate::util::{for_each_user, Env};

/// An httpd on the first container's loopback only, reachable from whatever shares its
/// network namespace.
const SERVE: &str =
    "mkdir /www && echo shared-$HOSTNAME > /www/index.html && exec httpd -f -p 127.0.0.1:8000 -h /www";

/// Fetch the page from 127.0.0.1:8000, polling (the httpd starts after `run -d` returns) until
/// a deadline of 20 s.
const FETCH: &str = "i=0; until wget -qO- http://127.0.0.1:8000/; do i=$((i+1)); [ $i -lt 400 ] || exit 1; usleep 50000; done";

fn exec(env: &Env, name: &str, script: &str) -> String {
    env.rbox()
        .args(["exec", name, "sh", "-c", script])
        .output()
        .success()
        .text()
}

#[test]
fn containers_share_a_network_namespace() {
    for_each_user("netshare", |env| {
        env.import_busybox("busybox");
        for net in ["slirp4netns", "none"] {
            let id = env
                .rbox()
                .args(["run", "-d", "--name", "first", "--network", net])
                .args(["busybox", "sh", "-c", SERVE])
                .output()
                .success()
                .text();
            let page = format!("shared-{}", &id[..12]);
            // a second container reaches the first one's loopback-only server
            let got = env
                .rbox()
                .args(["run", "--rm", "--network=container:first", "busybox"])
                .args(["sh", "-c", FETCH])
                .output()
                .success()
                .text();
            assert_eq!(got, page, "{net}");
            // the same interfaces, addresses and sysfs view, and by id as well as by name
            let ifaces = "ip -o addr; ls /sys/class/net";
            let theirs = exec(env, "first", ifaces);
            let ours = env
                .rbox()
                .args(["run", "--rm", &format!("--network=container:{}", &id[..12])])
                .args(["busybox", "sh", "-c", ifaces])
                .output()
                .success()
                .text();
            assert_eq!(ours, theirs, "{net}");
            if net == "slirp4netns" {
                assert!(ours.contains("10.0.2.100"), "{ours}");
            } else {
                assert_eq!(ours.lines().last(), Some("lo"), "{ours}");
            }
            // a detached joiner: recorded by id, exec joins the shared network, and it uses
            // the first container's /etc/hosts and resolv.conf (as Podman does)
            env.rbox()
                .args(["run", "-d", "--name", "second", "--network=container:first"])
                .args(["busybox", "sleep", "1000"])
                .output()
                .success();
            assert_eq!(
                env.inspect("second", "{{.HostConfig.NetworkMode}}"),
                format!("container:{id}")
            );
            assert_eq!(exec(env, "second", FETCH), page, "{net}");
            let etc = "cat /etc/hosts /etc/resolv.conf";
            assert_eq!(exec(env, "second", etc), exec(env, "first", etc), "{net}");
            // the first cannot go while a container joins its network, not even with -f
            let out = env.rbox().args(["rm", "-f", "first"]).output().rbox_error();
            assert!(
                out.stderr
                    .contains("has dependent containers which must be removed before it"),
                "{out}"
            );
            assert_eq!(env.inspect("first", "{{.State.Status}}"), "running");
            env.rbox().args(["rm", "-f", "second"]).output().success();
            env.rbox().args(["rm", "-f", "first"]).output().success();
        }
    });
}

#[test]
fn a_container_joins_the_namespace_at_a_path() {
    for_each_user("netns-path", |env| {
        env.import_busybox("busybox");
        let id = env
            .rbox()
            .args(["run", "-d", "--name", "first", "--network=slirp4netns"])
            .args(["busybox", "sh", "-c", SERVE])
            .output()
            .success()
            .text();
        let pid = env.inspect("first", "{{.State.Pid}}");
        let path = format!("/proc/{pid}/ns/net");
        let got = env
            .rbox()
            .args(["run", "--rm", &format!("--network=ns:{path}"), "busybox"])
            .args(["sh", "-c", FETCH])
            .output()
            .success()
            .text();
        assert_eq!(got, format!("shared-{}", &id[..12]));
        // keep-id's nested user namespace joins through its parent all the same (root has
        // no keep-id: Podman refuses it)
        if env.user.uid == 0 {
            env.rbox().args(["rm", "-f", "first"]).output().success();
            return;
        }
        let got = env
            .rbox()
            .args([
                "run",
                "--rm",
                "--userns=keep-id",
                &format!("--network=ns:{path}"),
            ])
            .args(["busybox", "sh", "-c", FETCH])
            .output()
            .success()
            .text();
        assert_eq!(got, format!("shared-{}", &id[..12]));
        env.rbox().args(["rm", "-f", "first"]).output().success();
    });
}

#[test]
fn joining_a_network_that_is_not_there_fails_cleanly() {
    for_each_user("netshare-errors", |env| {
        env.import_busybox("busybox");
        let fails = |args: &[&str], want: &str| {
            let out = env
                .rbox()
                .args(["run", "--rm"])
                .args(args)
                .args(["busybox", "true"])
                .output()
                .rbox_error();
            assert!(out.stderr.contains(want), "{args:?}: {out}");
        };
        fails(
            &["--network=container:nosuch"],
            "no container with name or ID \"nosuch\" found: no such container",
        );
        env.rbox()
            .args(["run", "-d", "--name", "up", "busybox", "sleep", "1000"])
            .output()
            .success();
        fails(
            &["--network=container:up", "-p", "8080:80"],
            "publishing ports",
        );
        fails(&["--network=container:up", "--dns", "192.0.2.1"], "--dns");
        fails(
            &["--network=container:up", "--add-host", "a:192.0.2.1"],
            "--add-host",
        );
        fails(
            &["--network=ns:/etc/hostname"],
            "`/etc/hostname` is not a network namespace",
        );
        fails(&["--network=ns:/nonexistent"], "`/nonexistent`");
        env.rbox().args(["rm", "-f", "up"]).output().success();
        let left = env
            .rbox()
            .args(["ps", "-a", "-q"])
            .output()
            .success()
            .text();
        assert_eq!(left, "", "nothing left behind");
    });
}

/// A container that joins the network of one that does not run starts it first, as Podman
/// starts a container's dependencies: at `run`, and at `start` of a joiner created while its
/// target was only created, or after the target stopped.
#[test]
fn joining_a_stopped_container_starts_it() {
    for_each_user("netshare-deps", |env| {
        env.import_busybox("busybox");
        let running = |name: &str| env.field(name, ".State.Status") == "running";
        env.rbox()
            .args([
                "create",
                "--name",
                "owner",
                "--network=none",
                "busybox",
                "sleep",
                "1000",
            ])
            .output()
            .success();
        // created while its target is only created (Podman accepts it)
        env.rbox()
            .args(["create", "--name", "joiner", "--network=container:owner"])
            .args(["busybox", "sleep", "1000"])
            .output()
            .success();
        assert!(!running("owner"));
        let out = env.rbox().args(["start", "joiner"]).output().success();
        assert_eq!(
            out.text(),
            "joiner",
            "only the container asked for is printed"
        );
        assert!(running("owner") && running("joiner"));
        // one namespace: the joiner sees the owner's (loopback only with --network=none)
        let ns = |name: &str| exec(env, name, "readlink /proc/self/ns/net");
        assert_eq!(ns("joiner"), ns("owner"));
        env.rbox()
            .args(["stop", "-t", "0", "joiner", "owner"])
            .output()
            .success();
        // `run` of a joiner starts a stopped target too
        let out = env
            .rbox()
            .args(["run", "--rm", "--network=container:owner", "busybox"])
            .args(["cat", "/proc/net/dev"])
            .output()
            .success();
        assert!(out.stdout.contains("lo:"), "{out}");
        assert!(running("owner"));
        env.rbox()
            .args(["rm", "-f", "-t", "0", "joiner", "owner"])
            .output()
            .success();
    });
}

/// A container that joined another's network keeps it when that one restarts (`rbox
/// restart`, or its restart policy): the monitor runs the new command in the namespace it
/// held, so the joiner reaches the new server, and published ports still answer.
#[test]
fn a_joined_network_survives_the_targets_restart() {
    for_each_user("netshare_restart", |env| {
        env.import_busybox("busybox");
        for net in ["slirp4netns", "none"] {
            env.rbox()
                .args(["run", "-d", "--name", "first", "--network", net])
                .args(["--restart=always", "busybox", "sh", "-c"])
                .arg("mkdir -p /www && echo shared-$HOSTNAME > /www/index.html && httpd -f -p 127.0.0.1:8000 -h /www; exit 1")
                .output()
                .success();
            env.rbox()
                .args(["run", "-d", "--name", "second", "--network=container:first"])
                .args(["busybox", "sleep", "1000"])
                .output()
                .success();
            let id = env.inspect("first", "{{.Id}}");
            let page = format!("shared-{}", &id[..12]);
            assert_eq!(exec(env, "second", FETCH), page, "{net}");
            let before = env.inspect("first", "{{.State.Pid}}");
            env.rbox()
                .args(["restart", "-t", "0", "first"])
                .output()
                .success();
            assert_ne!(env.inspect("first", "{{.State.Pid}}"), before, "{net}");
            assert_eq!(exec(env, "second", FETCH), page, "{net}: after restart");
            // the restart policy's restart: the server killed, the shell exits 1
            // (killall may die with the pid namespace whose init it made exit: 137)
            let out = env
                .rbox()
                .args(["exec", "first", "killall", "httpd"])
                .output();
            assert!(matches!(out.code, 0 | 137), "{out}");
            assert_eq!(
                exec(env, "second", FETCH),
                page,
                "{net}: after the policy's restart"
            );
            assert_eq!(env.inspect("first", "{{.RestartCount}}"), "1", "{net}");
            env.rbox().args(["rm", "-f", "second"]).output().success();
            env.rbox().args(["rm", "-f", "first"]).output().success();
        }
    });
}
