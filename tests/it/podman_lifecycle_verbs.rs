//! Issue 9 re-check of the container verbs `ls`..`wait`, `cleanup` and `prune` against Podman
//! 4.3.1: `-l/--latest` on every verb that has it, Podman's refusals for a missing name and for
//! names, `--all`, `--latest` and `--cidfile` together, `ps`'s default order, `start --filter`,
//! `rm`'s exit codes and `--depend`, and what `rm` leaves of a `--userns=auto` container. The
//! expected texts and exit codes were observed with podman 4.3.1 as rboxsub on this machine
//! (same arguments, same busybox image) and are hard-coded here.

use crate::util::{for_each_user, Env, RemoveAll, Who};

/// `rbox ARGS` fails with exit 125 and exactly Podman's one-line `error`.
fn refused(env: &Env, args: &[&str], error: &str) {
    let out = env.rbox().args(args).output().rbox_error();
    assert_eq!(out.stderr.trim_end(), format!("Error: {error}"), "{args:?}");
}

/// A detached `sleep` container named `name`, with no network; its full id.
fn sleeper(env: &Env, name: &str) -> String {
    env.text(&[
        "run",
        "-d",
        "--network=none",
        "--name",
        name,
        "bb",
        "sleep",
        "1000",
    ])
}

#[test]
fn latest_picks_the_newest_container_for_each_verb() {
    for_each_user("lcverbs_latest", |env| {
        env.import_busybox("bb");
        let _rm = RemoveAll(env);
        // Podman with no container at all
        refused(env, &["stop", "-l"], "no such container");
        refused(
            env,
            &["top", "-l"],
            "unable to look up requested container: no such container",
        );
        sleeper(env, "old");
        let new = sleeper(env, "new");
        // each verb acts on `new` and prints it by full id, as Podman's do
        assert_eq!(env.text(&["pause", "-l"]), new);
        assert_eq!(
            env.text(&["ps", "--filter", "status=paused", "--format", "{{.Names}}"]),
            "new"
        );
        assert_eq!(env.text(&["unpause", "-l"]), new);
        let top = env.text(&["top", "-l", "pid", "args"]);
        assert_eq!(top.lines().next(), Some("PID         COMMAND"), "{top}");
        assert!(top.contains("sleep 1000"), "{top}");
        // --latest: the one argument of port is the port (none published here)
        assert_eq!(env.text(&["port", "-l"]), "");
        let out = env.rbox().args(["port", "-l", "80"]).output().rbox_error();
        assert_eq!(
            out.stderr.trim_end(),
            "Error: failed to find published port \"80\""
        );
        let stats = env.text(&["stats", "-l", "--no-stream", "--format", "{{.Name}}"]);
        assert_eq!(stats, "new");
        assert_eq!(env.text(&["stop", "-l", "-t", "0"]), new);
        assert_eq!(env.text(&["container", "cleanup", "-l"]), new);
        assert_eq!(env.text(&["start", "-l"]), new);
        assert_eq!(env.text(&["restart", "-l", "-t", "0"]), new);
        assert_eq!(env.text(&["rm", "-l", "-f", "-t", "0"]), new);
        assert_eq!(env.text(&["ps", "-a", "--format", "{{.Names}}"]), "old");
        // --latest beside names, --all or --cidfile
        refused(
            env,
            &["stop", "-l", "old"],
            "--latest and containers cannot be used together",
        );
        refused(
            env,
            &["restart", "-l", "old"],
            "--latest and containers cannot be used together",
        );
        refused(
            env,
            &["stop", "-l", "-a"],
            "--all and --latest cannot be used together",
        );
        refused(
            env,
            &["port", "-l", "-a"],
            "--all and --latest cannot be used together",
        );
        refused(
            env,
            &["rm", "-l", "--cidfile", "/nonexistent"],
            "--all, --latest, and --cidfile cannot be used together",
        );
        refused(
            env,
            &["rm", "-a", "old"],
            "no arguments are needed with --all",
        );
    });
}

#[test]
fn a_missing_name_is_refused_in_podmans_words() {
    for_each_user("lcverbs_missing", |env| {
        for (verb, error) in [
            (&["stop"][..], "you must provide at least one name or id"),
            (
                &["restart", "-t", "0"],
                "you must provide at least one name or id",
            ),
            (&["rm"], "you must provide at least one name or id"),
            (&["pause"], "you must provide at least one name or id"),
            (
                &["container", "unmount"],
                "you must provide at least one name or id",
            ),
            (
                &["container", "cleanup"],
                "you must provide at least one name or id",
            ),
            (&["start"], "start requires at least one argument"),
            (
                &["top"],
                "you must provide the name or id of a running container",
            ),
            (&["port"], "you must supply a running container name or id"),
            (
                &["wait"],
                "\"rbox wait\" requires a name, id, or the \"--latest\" flag",
            ),
        ] {
            refused(env, verb, error);
        }
    });
}

#[test]
fn verbs_look_every_name_up_before_acting_on_any() {
    for_each_user("lcverbs_all_found", |env| {
        env.import_busybox("bb");
        let _rm = RemoveAll(env);
        sleeper(env, "good");
        let pid = env.field("good", ".State.Pid");
        let unknown = "no container with name or ID \"nosuch\" found: no such container";
        // Podman 4.3.1: the unknown name fails the command (125), `good` is not touched
        for verb in [
            &["kill"][..],
            &["stop", "-t", "0"],
            &["pause"],
            &["unpause"],
            &["restart", "-t", "0"],
        ] {
            for names in [["good", "nosuch"], ["nosuch", "good"]] {
                let args = [verb, &names[..]].concat();
                let out = env.rbox().args(&args).output().rbox_error();
                assert_eq!(
                    out.stderr.trim_end(),
                    format!("Error: {unknown}"),
                    "{args:?}"
                );
                assert_eq!(out.text(), "", "{args:?}");
                assert_eq!(env.field("good", ".State.Status"), "running", "{args:?}");
            }
        }
        // the same init: neither signalled, stopped nor restarted
        assert_eq!(env.field("good", ".State.Pid"), pid);
        assert_eq!(env.field("good", ".RestartCount"), "0");
        // rm: exit 1 (podman-rm(1)), nothing removed
        let out = env
            .rbox()
            .args(["rm", "good", "nosuch"])
            .output()
            .code_is(1);
        assert_eq!(out.stderr.trim_end(), format!("Error: {unknown}"));
        assert_eq!(env.field("good", ".State.Status"), "running");
        // start: none started either
        let args = ["create", "--network=none", "--name", "made", "bb", "true"];
        env.rbox().args(args).output().success();
        for args in [["start", "made", "nosuch"], ["start", "nosuch", "made"]] {
            let out = env.rbox().args(args).output().rbox_error();
            assert_eq!(
                out.stderr.trim_end(),
                format!("Error: {unknown}"),
                "{args:?}"
            );
            assert_eq!(env.field("made", ".State.Status"), "created", "{args:?}");
        }
        // Podman's texts for a bad signal and an unknown container to top
        for (sig, error) in [
            ("BOGUS", "invalid signal: BOGUS"),
            ("SIGBOGUS", "invalid signal: SIGBOGUS"),
            ("0", "invalid signal: 0"),
            ("99", "valid signals are 1 through 64"),
        ] {
            refused(env, &["kill", "-s", sig, "good"], error);
            refused(env, &["kill", "-s", sig, "nosuch"], error);
        }
        refused(
            env,
            &["top", "nosuch"],
            &format!("unable to look up requested container: {unknown}"),
        );
    });
}

#[test]
fn ps_lists_oldest_first_and_start_filters_without_all() {
    for_each_user("lcverbs_ps_order", |env| {
        env.import_busybox("bb");
        for name in ["c1", "c2", "c3"] {
            env.text(&["create", "--network=none", "--name", name, "bb", "true"]);
        }
        // Podman's default --sort is created: oldest first, also after -n took the newest
        assert_eq!(
            env.text(&["ps", "-a", "--format", "{{.Names}}"]),
            "c1\nc2\nc3"
        );
        assert_eq!(
            env.text(&["ps", "-a", "-n", "2", "--format", "{{.Names}}"]),
            "c2\nc3"
        );
        let out = env.text(&["ps", "-a"]);
        let names: Vec<&str> = out
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().last())
            .collect();
        assert_eq!(names, ["c1", "c2", "c3"], "{out}");
        // --filter alone selects among all containers (Podman prints each started id)
        let c2 = env.inspect("c2", "{{.Id}}");
        assert_eq!(env.text(&["start", "--filter", "name=c2"]), c2);
        refused(
            env,
            &["start", "--all", "c1"],
            "either start all containers or the container(s) provided in the arguments",
        );
        refused(
            env,
            &["start", "-a", "--all"],
            "you cannot start and attach all containers at once",
        );
    });
}

#[test]
fn rm_exit_codes_and_depend_as_podman() {
    for_each_user("lcverbs_rm", |env| {
        env.import_busybox("bb");
        let _rm = RemoveAll(env);
        let a = sleeper(env, "a");
        // a running container: exit 2, "container state improper"
        let out = env.rbox().args(["rm", "a"]).output().code_is(2);
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "Error: cannot remove container {a} as it is running - running or paused \
                 containers cannot be removed without force: container state improper"
            )
        );
        // -f: a name nobody has is no error
        let out = env.rbox().args(["rm", "-f", "nosuch"]).output().success();
        assert_eq!(out.text(), "");
        // a container that joins a's network keeps a, even with -f; --depend removes both
        let b = env.text(&[
            "run",
            "-d",
            "--name",
            "b",
            "--network",
            "container:a",
            "bb",
            "sleep",
            "1000",
        ]);
        let out = env.rbox().args(["rm", "-f", "a"]).output().rbox_error();
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "Error: container {a} has dependent containers which must be removed before \
                 it: {b}: container already exists"
            )
        );
        let out = env
            .rbox()
            .args(["rm", "-f", "-t", "0", "--depend", "a"])
            .output()
            .success();
        assert_eq!(out.text(), format!("{b}\n{a}"));
        assert_eq!(env.text(&["ps", "-a", "-q"]), "");
    });
}

#[test]
fn rm_frees_the_userns_auto_reservation() {
    for_each_user("lcverbs_auto_rm", |env| {
        // a user without a range (and root without a `containers` one) gets no auto range:
        // userns_auto.rs checks that refusal
        let has_pool = match env.user.who {
            Who::Root => crate::userns_auto::containers_range().is_some(),
            _ => env.user.has_many_ids(),
        };
        if !has_pool {
            return;
        }
        env.import_busybox("bb");
        let id = env.text(&["create", "--network=none", "--userns=auto", "bb", "true"]);
        let reservation = env.store().join("userns-auto").join(&id);
        assert!(reservation.exists(), "{}", reservation.display());
        assert_eq!(env.text(&["rm", &id]), id);
        assert!(!reservation.exists(), "rm left {}", reservation.display());
    });
}

#[test]
fn ps_table_spaces_created_and_prune_filters_as_podman() {
    for_each_user("lcverbs_ps_format", |env| {
        env.import_busybox("bb");
        env.text(&[
            "create",
            "--network=none",
            "--name",
            "pr1",
            "--label",
            "k=v",
            "bb",
            "true",
        ]);
        env.text(&["create", "--network=none", "--name", "pr2", "bb", "true"]);
        // in a `table`, a space between actions separates columns as a tab does
        assert_eq!(
            env.text(&["ps", "-a", "--format", "table {{.Names}} is: {{.State}}"]),
            "NAMES       is:         STATE\n\
             pr1         is:         created\n\
             pr2         is:         created"
        );
        // .Created is Go's time, as .CreatedAt (`2026-11-25 15:33:05.117335127 +0000 UTC`)
        let created = env.text(&["ps", "-a", "-l", "--format", "{{.Created}}|{{.CreatedAt}}"]);
        let (c, at) = created.split_once('|').unwrap();
        assert_eq!(c, at);
        assert!(c.ends_with(" +0000 UTC"), "{created}");
        // container prune's filters
        refused(
            env,
            &["container", "prune", "-f", "--filter", "bogus=1"],
            "bogus is an invalid filter",
        );
        refused(
            env,
            &["container", "prune", "-f", "--filter", "label"],
            "filter input must be in the form of filter=value: label is invalid",
        );
        refused(
            env,
            &["container", "prune", "-f", "--filter", "until=bogus"],
            "failed to parse value as time or duration: \"bogus\"",
        );
        refused(
            env,
            &["image", "prune", "-f", "--filter", "bogus=1"],
            "unsupported image filter \"bogus\"",
        );
        let pr1 = env.inspect("pr1", "{{.Id}}");
        assert_eq!(
            env.text(&["container", "prune", "-f", "--filter", "label=k=v"]),
            pr1
        );
        assert_eq!(env.text(&["ps", "-a", "--format", "{{.Names}}"]), "pr2");
    });
}

#[test]
fn keep_id_runs_as_a_user_the_container_has() {
    for_each_user("lcverbs_keep_id_user", |env| {
        env.import_busybox("bb");
        let run = |user: &str| {
            env.rbox()
                .args([
                    "run",
                    "--rm",
                    "--network=none",
                    "--userns=keep-id",
                    "-u",
                    user,
                ])
                .args(["bb", "id", "-u"])
                .output()
        };
        // root: Podman's refusal of keep-id (userns_shift.rs checks it)
        if env.user.who == Who::Root {
            return;
        }
        // with a range -u 0 is container root
        if env.user.has_many_ids() {
            assert_eq!(run("0").success().text(), "0");
            return;
        }
        // without one the caller's ids are the only ones inside: Podman refuses keep-id there
        // (whatever -u); rbox runs keep-id as the caller and refuses only another user
        let uid = env.user.uid.to_string();
        assert_eq!(run(&uid).success().text(), uid);
        for user in ["0", "root", "0:0"] {
            let out = run(user).rbox_error();
            assert_eq!(
                out.stderr.trim_end(),
                "Error: keep-id requires additional UIDs or GIDs defined in /etc/subuid and \
                 /etc/subgid to function correctly",
                "-u {user}"
            );
        }
        assert_eq!(
            env.text(&["ps", "-a", "-q"]),
            "",
            "a refused run leaves nothing"
        );
    });
}

#[test]
fn unmount_force_of_a_busy_mount_keeps_start_refused_until_its_server_ends() {
    if !crate::fuse::fuse_usable() {
        return;
    }
    for_each_user("lcverbs_unmount_busy", |env| {
        env.import_busybox("bb");
        env.rbox()
            .args(["--storage-driver=fuse-overlay", "create", "--network=none"])
            .args(["--name", "c", "bb", "true"])
            .output()
            .success();
        // the shell's working directory keeps the mount busy: -f detaches it lazily and its
        // server goes on serving until the shell leaves it
        let script = r#"set -e
            p=$("$@" mount c)
            cat "$(dirname "$p")/server"
            cd "$p"
            "$@" unmount c 2>&1 || true
            "$@" unmount -f c
            "$@" start c 2>&1 || true
            cd /"#;
        let out = env
            .sh_with_rbox(script, env.user.who != Who::Root)
            .output()
            .success();
        let lines = out.lines();
        assert_eq!(lines.len(), 4, "{out}");
        let pid: i32 = lines[0].split_whitespace().next().unwrap().parse().unwrap();
        assert!(lines[1].contains("Device or resource busy"), "{out}");
        assert_eq!(lines[2], "c", "{out}");
        assert!(
            lines[3].starts_with(&format!(
                "Error: container c is mounted (`rbox mount`, FUSE server pid {pid})"
            )),
            "{out}"
        );
        // once nothing holds the detached mount its server ends, and start works
        crate::util::eventually("the lazily unmounted server ends", || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.contains(") Z ") || s.contains(") X "))
        });
        env.text(&["start", "-a", "c"]);
    });
}

#[test]
fn verbs_take_ps_filters_as_podman() {
    for_each_user("lcverbs_filters", |env| {
        env.import_busybox("bb");
        let _rm = RemoveAll(env);
        let f1 = env.text(&[
            "run",
            "-d",
            "--network=none",
            "--name",
            "f1",
            "--label",
            "grp=x",
            "bb",
            "sleep",
            "1000",
        ]);
        let f2 = sleeper(env, "f2");
        let f3 = env.text(&[
            "create",
            "--network=none",
            "--name",
            "f3",
            "--label",
            "grp=x",
            "bb",
            "true",
        ]);
        refused(
            env,
            &["stop", "--filter", "label=grp=x", "f2"],
            "--filter takes no arguments",
        );
        refused(
            env,
            &["stop", "--filter", "bogus=1"],
            "bogus is an invalid filter",
        );
        // each match, newest first, by full id (Podman printed them so)
        assert_eq!(env.text(&["pause", "--filter", "name=f2"]), f2);
        assert_eq!(env.text(&["unpause", "-f", "name=f2"]), f2);
        assert_eq!(env.text(&["restart", "-t", "0", "--filter", "name=f2"]), f2);
        assert_eq!(
            env.text(&["stop", "-t", "0", "--filter", "label=grp=x"]),
            format!("{f3}\n{f1}")
        );
        assert_eq!(env.text(&["stop", "--filter", "name=nomatch"]), "");
        assert_eq!(
            env.text(&["rm", "--filter", "label=grp=x"]),
            format!("{f3}\n{f1}")
        );
        assert_eq!(env.text(&["ps", "-a", "--format", "{{.Names}}"]), "f2");
    });
}

#[test]
fn pause_unpause_and_restart_read_cidfiles() {
    for_each_user("lcverbs_cidfile", |env| {
        env.import_busybox("bb");
        let _rm = RemoveAll(env);
        let cidfile = env.path("c.cid");
        let cid = cidfile.to_str().unwrap();
        let id = env.text(&[
            "run",
            "-d",
            "--network=none",
            "--cidfile",
            cid,
            "bb",
            "sleep",
            "1000",
        ]);
        assert_eq!(env.text(&["pause", "--cidfile", cid]), id);
        assert_eq!(
            env.text(&["ps", "--format", "{{.Status}}"]),
            "Paused",
            "paused by its cidfile"
        );
        assert_eq!(env.text(&["unpause", "--cidfile", cid]), id);
        assert_eq!(env.text(&["restart", "-t", "0", "--cidfile", cid]), id);
        refused(
            env,
            &["restart", "-l", "--cidfile", cid],
            "--all, --latest, and --cidfile cannot be used together",
        );
    });
}

#[test]
fn stats_interval_and_no_reset() {
    for_each_user("lcverbs_stats", |env| {
        env.import_busybox("bb");
        let _rm = RemoveAll(env);
        refused(
            env,
            &["stats", "-i", "0"],
            "invalid interval, must be a positive number greater zero",
        );
        // a table a second until the container ends; on a terminal each one replaces the
        // last unless --no-reset
        for (reset, extra) in [(true, None), (false, Some("--no-reset"))] {
            env.text(&[
                "run",
                "-d",
                "--network=none",
                "--name",
                "s",
                "bb",
                "sleep",
                "3",
            ]);
            let mut args = vec!["stats", "-i", "1", "--format", "{{.Name}}"];
            args.extend(extra);
            args.push("s");
            let out = env.rbox_on_terminal(24, 80, &args).output().success();
            let names = out.text().replace("\x1b[2J\x1b[H", "");
            assert!(names.lines().filter(|l| *l == "s").count() >= 2, "{out}");
            assert_eq!(out.stdout.contains("\x1b[2J"), reset, "{out}");
            env.text(&["rm", "s"]);
        }
    });
}

#[test]
fn top_with_ps_options_lists_the_containers_processes_only() {
    for_each_user("lcverbs_top_ps", |env| {
        env.import_busybox("bb");
        let _rm = RemoveAll(env);
        sleeper(env, "t");
        // podman 4.3.1: `top t -o pid,ppid,args` and `top t -o args` list no ps of their own
        assert_eq!(
            env.text(&["top", "t", "-o", "pid,ppid,args"]),
            "PID   PPID  COMMAND\n    1     0 sleep 1000"
        );
        assert_eq!(env.text(&["top", "t", "-o", "args"]), "COMMAND\nsleep 1000");
    });
}

#[test]
fn mount_lists_as_json_and_latest() {
    for_each_user("lcverbs_mount_json", |env| {
        env.import_busybox("bb");
        let id = env.text(&["create", "--network=none", "--name", "m", "bb", "true"]);
        // inside `rbox unshare` as a user (Podman's rule), in the host's namespace as root
        let script = r#"set -e
            p=$("$@" mount -l)
            echo "$p"
            "$@" mount --format json
            "$@" mount --format '{{.ID}}' 2>&1 || true
            "$@" unmount -l"#;
        let out = env
            .sh_with_rbox(script, env.user.who != Who::Root)
            .output()
            .success();
        let (point, rest) = out.stdout.split_once('\n').unwrap();
        // podman 4.3.1: [{"id": ..., "Names": [...], "mountpoint": ...}], one-space indent
        let want = format!(
            "[\n {{\n  \"id\": \"{id}\",\n  \"Names\": [\n   \"m\"\n  ],\n  \"mountpoint\": \"{point}\"\n }}\n]\n\
             Error: unknown --format argument: \"{{{{.ID}}}}\"\n{id}\n"
        );
        assert_eq!(rest, want, "{out}");
    });
}

/// `rbox mount -a/--all` as podman 4.3.1's.
#[test]
fn mount_all_mounts_every_container_oldest_first() {
    for_each_user("lcverbs_mount_all", |env| {
        env.import_busybox("bb");
        let a = env.text(&["create", "--network=none", "--name", "ma", "bb", "true"]);
        let b = env.text(&["create", "--network=none", "--name", "mb", "bb", "true"]);
        // podman 4.3.1: `mount -a` prints each path (oldest container first), takes no names
        // and no --latest, and ignores --format (it prints the paths too); `mount` lists the
        // mounted ones oldest first too, `unmount -a` prints their ids in the same order
        let script = r#"set -e
            "$@" mount -a
            "$@" mount -a --format json
            test -x "$("$@" mount ma)/bin/busybox"
            "$@" mount
            "$@" mount -a ma 2>&1 || true
            "$@" mount -a -l 2>&1 || true
            "$@" unmount -a"#;
        let out = env
            .sh_with_rbox(script, env.user.who != Who::Root)
            .output()
            .success();
        let point = |id: &str| format!("{}/mounts/{id}/merged", env.runroot().display());
        let (pa, pb) = (point(&a), point(&b));
        let want = [
            pa.clone(),
            pb.clone(),
            pa.clone(),
            pb.clone(),
            format!("{}  {pa}", &a[..12]),
            format!("{}  {pb}", &b[..12]),
            "Error: no arguments are needed with --all".into(),
            "Error: --all and --latest cannot be used together".into(),
            a.clone(),
            b.clone(),
        ];
        assert_eq!(out.lines(), want, "{out}");
    });
}

/// `rbox image mount --all` and `--format json`, `image unmount -a` with nothing mounted, as
/// podman 4.3.1 does them: -a mounts every image and then lists the mounted ones (a table, or
/// JSON whose "Names" is the manifest digest and "Repositories" the names, one-space indent);
/// -a with names and formats other than json refused in Podman's words; `image unmount -a`
/// succeeds outside `rbox unshare` (nothing is mounted there) where a named one is refused.
#[test]
fn image_mount_all_and_json() {
    for_each_user("lcverbs_image_mount_all", |env| {
        env.import_busybox("bb");
        let id = env.inspect("bb", "{{.Id}}");
        let id = id.trim_start_matches("sha256:").to_string();
        let digest = env.inspect("bb", "{{.Digest}}");
        let nothing = env
            .rbox()
            .args(["image", "unmount", "-a"])
            .output()
            .success();
        assert_eq!(nothing.stdout, "", "{nothing}");
        let script = r#"set -e
            "$@" image mount --format json
            "$@" image mount -a
            "$@" image mount --format json
            "$@" image mount bb --format json
            "$@" image mount -a bb 2>&1 || true
            "$@" image mount --format '{{.ID}}' 2>&1 || true
            "$@" image unmount -a"#;
        let out = env
            .sh_with_rbox(script, env.user.who != Who::Root)
            .output()
            .success();
        let point = format!("{}/image-mounts/{id}/merged", env.runroot().display());
        let json = format!(
            "[\n {{\n  \"id\": \"{id}\",\n  \"Names\": [\n   \"{digest}\"\n  ],\n  \
             \"Repositories\": [\n   \"localhost/bb:latest\"\n  ],\n  \"mountpoint\": \"{point}\"\n }}\n]\n"
        );
        let want = format!(
            "[]\nlocalhost/bb:latest  {point}\n{json}{json}\
             Error: when using the --all switch, you may not pass any image names or IDs\n\
             Error: unknown --format argument: \"{{{{.ID}}}}\"\n{id}\n"
        );
        assert_eq!(out.stdout, want, "{out}");
    });
}

/// `ps -w/--watch N` as podman 4.3.1's: the list again every N seconds until interrupted (on
/// a terminal each one after Podman's clear-screen and cursor-home), once with -q, --format
/// json or N = 0, refused with --latest in Podman's words; `--sync` accepted.
#[test]
fn ps_watch_redraws_until_interrupted_and_sync_is_accepted() {
    use nix::sys::signal::{killpg, Signal};
    for_each_user("lcverbs_ps_watch", |env| {
        env.import_busybox("bb");
        let _rm = RemoveAll(env);
        env.text(&["create", "--network=none", "--name", "w", "bb", "true"]);
        let mut ps = env
            .rbox()
            .args(["ps", "-a", "-w", "1", "--format", "table {{.Names}}"])
            .spawn();
        let frames: Vec<String> = (0..4).map(|_| ps.read_line()).collect();
        assert_eq!(frames, ["NAMES\n", "w\n", "NAMES\n", "w\n"]);
        killpg(ps.pid(), Signal::SIGINT).unwrap();
        ps.wait();
        // on a terminal: \e[2J\e[1;1H before each list
        let mut ps = env
            .rbox_on_terminal(
                24,
                80,
                &["ps", "-a", "--watch", "1", "--format", "{{.Names}}"],
            )
            .spawn();
        let frames: Vec<String> = (0..2).map(|_| ps.read_line()).collect();
        assert_eq!(frames, ["\x1b[2J\x1b[1;1Hw\r\n"; 2]);
        killpg(ps.pid(), Signal::SIGINT).unwrap();
        ps.wait();
        for once in [&["-q"][..], &["--format", "json"], &[]] {
            let mut args = vec!["ps", "-a", "-w"];
            args.push(if once.is_empty() { "0" } else { "1" });
            args.extend(once);
            let out = env.rbox().args(&args).output().success();
            assert!(!out.stdout.is_empty(), "{out}");
        }
        refused(
            env,
            &["ps", "-l", "-w", "1"],
            "the watch and latest flags cannot be used together",
        );
        assert_eq!(
            env.text(&["ps", "-a", "--sync", "--format", "{{.Names}}"]),
            "w"
        );
    });
}

/// `container cleanup --rmi` and `--exec` as podman 4.3.1's: after the cleanup (and with
/// `--rm` the removal) of each container, the image it was created from goes, only its name
/// when it has others; while a container uses it, Podman's error and no name printed. Each
/// container in turn: of two on one image, the first one's removal leaves the image to the
/// second. rbox keeps no exec sessions: every `--exec` id is unknown, in Podman's words.
#[test]
fn cleanup_rmi_and_exec_as_podman() {
    for_each_user("lcverbs_cleanup_rmi", |env| {
        env.import_busybox("bb");
        let _rm = RemoveAll(env);
        let image = env.inspect("bb", "{{.Id}}");
        let create = |name: &str, image: &str| {
            env.text(&["create", "--network=none", "--name", name, image, "true"])
        };
        create("a", "bb");
        let b = create("b", "bb");
        let in_use = |id: &str| {
            format!(
                "Error: image used by {id}: image is in use by a container: consider listing \
                 external containers and force-removing image"
            )
        };
        // the container stays: it uses the image
        let out = env
            .rbox()
            .args(["container", "cleanup", "--rmi", "a"])
            .output()
            .rbox_error();
        assert_eq!(out.stdout, "", "{out}");
        assert!(out.stderr.starts_with("Error: image used by "), "{out}");
        // a goes, b still uses the image; then b goes and the image with it
        let out = env
            .rbox()
            .args(["container", "cleanup", "--rm", "--rmi", "a", "b"])
            .output()
            .rbox_error();
        assert_eq!(
            (out.stdout.as_str(), out.stderr.trim_end()),
            ("b\n", in_use(&b).as_str()),
            "{out}"
        );
        assert_eq!(env.text(&["ps", "-a", "-q"]), "");
        let gone = env.rbox().args(["image", "exists", &image]).output();
        assert_eq!(gone.code, 1, "{gone}");
        // an image with two names loses the one the container was created by
        env.import_busybox("bb");
        env.text(&["tag", "bb", "other"]);
        create("c", "other");
        assert_eq!(
            env.text(&["container", "cleanup", "--rm", "--rmi", "c"]),
            "c"
        );
        assert_eq!(
            env.text(&["images", "--format", "{{.Repository}}"]),
            "localhost/bb"
        );
        let c = create("c", "bb");
        refused(
            env,
            &["container", "cleanup", "--exec", "x1", "c"],
            &format!("container {c} has no exec session with ID x1: no such exec session"),
        );
        refused(
            env,
            &["container", "cleanup", "--exec", "x1", "-a"],
            "exec and all options conflict",
        );
        refused(
            env,
            &["container", "cleanup", "--exec", "x1", "c", "c"],
            "cannot use exec option when more than one container is given",
        );
        assert_eq!(env.text(&["container", "cleanup", "--exec", "", "c"]), "c");
    });
}
