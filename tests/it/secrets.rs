//! Secrets (issue 9): `rbox secret create|ls|inspect|rm|exists` and `run/create --secret`.
//! The expected texts, keys and codes are Podman 4.3.1's, observed as rboxsub on this machine
//! with the same arguments; where rbox differs on purpose (read-only secret files, env secrets
//! kept out of `inspect`, `secret exists`, which 4.3 lacks) the test says so.

use std::os::unix::fs::MetadataExt;

use crate::util::{for_each_user, Env, RemoveAll, Who};

/// `rbox secret create NAME FILE` of `data`, which must succeed: the new id.
fn create(env: &Env, name: &str, data: &str) -> String {
    let f = env.write(&format!("{name}.data"), data);
    let id = env
        .rbox()
        .args(["secret", "create", name])
        .arg(&f)
        .output()
        .success()
        .text();
    assert!(
        id.len() == 25 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id:?}"
    );
    id
}

/// `rbox ARGS`, which must fail as rbox fails (125, one line): its stderr.
fn fails(env: &Env, args: &[&str]) -> String {
    env.rbox().args(args).output().rbox_error().stderr
}

#[test]
fn secret_verbs_as_podman() {
    for_each_user("secret_verbs", |env| {
        let a = create(env, "pw", "hunter2\n");
        let b = env
            .rbox()
            .args(["secret", "create", "-l", "a=b", "-l", "c", "in", "-"])
            .stdin("from stdin")
            .output()
            .success()
            .text();
        let c = env
            .rbox()
            .args(["secret", "create", "--env", "ev", "MY_SECRET_VAR"])
            .env("MY_SECRET_VAR", "from env")
            .output()
            .success()
            .text();
        // the data is the user's, 0600 in a 0700 directory of the store
        let data = env.store().join("secrets").join(&a).join("data");
        let m = std::fs::metadata(&data).unwrap();
        assert_eq!((m.mode() & 0o777, m.uid()), (0o600, env.user.uid));
        assert_eq!(std::fs::read(&data).unwrap(), b"hunter2\n");
        let dir = std::fs::metadata(data.parent().unwrap()).unwrap();
        assert_eq!(dir.mode() & 0o777, 0o700);

        // Podman's refusals, word for word
        let f = env.write("x", "x");
        let f = f.to_str().unwrap();
        for (args, text) in [
            (vec!["secret", "create", "pw", f], "Error: pw: secret name in use"),
            (
                vec!["secret", "create", "bad/name", f],
                "Error: only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]: bad/name: invalid secret name",
            ),
            (
                vec!["secret", "create", "n1", "/nonexistent"],
                "Error: open /nonexistent: no such file or directory",
            ),
            (vec!["secret", "create", "-d", "foo", "n1", f], "Error: invalid driver"),
            (
                vec!["secret", "create", "--env", "n1", "RBOX_UNSET_VAR"],
                "Error: cannot create store secret data: environment variable RBOX_UNSET_VAR is not set",
            ),
            (vec!["secret", "ls", "--filter", "foo=bar"], "Error: invalid filter \"foo\""),
            (
                vec!["secret", "ls", "--filter", "name"],
                "Error: filter input must be in the form of filter=value: name is invalid",
            ),
            (
                vec!["secret", "rm", "-a", "pw"],
                "Error: `rbox secret rm` requires one argument, or the --all flag",
            ),
            (
                vec!["secret", "rm"],
                "Error: `rbox secret rm` requires one argument, or the --all flag",
            ),
        ] {
            assert_eq!(fails(env, &args).trim(), text, "{args:?}");
        }
        // Podman's bounds: more than 0 bytes, less than 512000
        for size in [0, 512_000, 2_000_000] {
            let f = env.write("sized", "x".repeat(size));
            let out = fails(env, &["secret", "create", "n1", f.to_str().unwrap()]);
            assert_eq!(
                out.trim(),
                "Error: secret data must be larger than 0 and less than 512000 bytes"
            );
        }
        let f = env.write("sized", "x".repeat(511_999));
        let big = env
            .rbox()
            .args(["secret", "create", "big"])
            .arg(&f)
            .output()
            .success()
            .text();
        env.text(&["secret", "rm", "big"]);
        assert!(!env.store().join("secrets").join(big).exists());

        // ls: Podman's columns, oldest first
        let ls = env.text(&["secret", "ls"]);
        let lines: Vec<&str> = ls.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["ID", "NAME", "DRIVER", "CREATED", "UPDATED"]
        );
        assert_eq!(lines.len(), 4, "{ls}");
        assert!(lines[1].starts_with(&format!("{a}  pw ")), "{ls}");
        assert!(lines[1].contains(" file "), "{ls}");
        assert!(lines[1].contains("ago"), "{ls}");
        assert_eq!(env.text(&["secret", "ls", "-q"]), format!("{a}\n{b}\n{c}"));
        let noheading = env.text(&["secret", "ls", "--noheading"]);
        assert_eq!(noheading.lines().count(), 3, "{noheading}");
        assert!(!noheading.contains("NAME"), "{noheading}");
        assert_eq!(
            env.text(&[
                "secret",
                "ls",
                "--filter",
                "name=^i",
                "--format",
                "{{.Name}} {{.ID}}"
            ]),
            format!("in {b}")
        );
        assert_eq!(
            env.text(&["secret", "ls", "--filter", &format!("id={}", &c[..6]), "-q"]),
            c
        );

        // inspect: Podman's keys in its order, never the data
        let out = env.text(&["secret", "inspect", "in"]);
        assert!(!out.contains("from stdin"), "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let keys: Vec<&String> = v[0].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["CreatedAt", "ID", "Spec", "UpdatedAt"]);
        let order: Vec<usize> = ["\"ID\"", "\"CreatedAt\"", "\"UpdatedAt\"", "\"Spec\""]
            .iter()
            .map(|k| out.find(k).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
        assert_eq!(v[0]["ID"], b.as_str());
        assert_eq!(v[0]["Spec"]["Name"], "in");
        assert_eq!(v[0]["Spec"]["Driver"]["Name"], "file");
        assert_eq!(
            v[0]["Spec"]["Labels"],
            serde_json::json!({"a": "b", "c": ""})
        );
        assert_eq!(v[0]["CreatedAt"], v[0]["UpdatedAt"]);
        assert_eq!(
            env.text(&["secret", "inspect", "--format", "{{.Spec.Name}}", &a[..8]]),
            "pw"
        );
        // --pretty: Podman's lines (and over --format, as there)
        let out = env.text(&["secret", "inspect", "--pretty", "--format", "{{.ID}}", "in"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[..6],
            [
                format!("ID:              {b}").as_str(),
                "Name:              in",
                "Labels:",
                " - a=b",
                " - c=",
                "Driver:            file",
            ],
            "{out}"
        );
        assert_eq!(lines.len(), 8, "{out}");
        for (line, head) in lines[6..]
            .iter()
            .zip(["Created at:        ", "Updated at:        "])
        {
            assert!(
                line.starts_with(head) && line.ends_with(" +0000 UTC"),
                "{out}"
            );
        }
        // what was found is printed, the first missing one is the error
        let out = env
            .rbox()
            .args(["secret", "inspect", "pw", "nope"])
            .output()
            .rbox_error();
        assert!(out.stdout.contains(&a), "{out}");
        assert_eq!(
            out.stderr.trim(),
            "Error: inspecting secret: no secret with name or id \"nope\": no such secret"
        );

        // completion offers the names
        let offered = crate::docs::complete(&env.store(), &["rbox", "secret", "rm", ""]);
        let names: Vec<&String> = offered.iter().filter(|o| !o.starts_with('-')).collect();
        assert_eq!(names, ["ev", "in", "pw"]);

        // exists (Podman 4.5's verb): 0 or 1
        env.rbox()
            .args(["secret", "exists", "pw"])
            .output()
            .success();
        env.rbox()
            .args(["secret", "exists", "nope"])
            .output()
            .code_is(1);

        // rm: the ids removed, then the error of what was not there
        let out = env
            .rbox()
            .args(["secret", "rm", "pw", "nope"])
            .output()
            .rbox_error();
        assert_eq!(out.text(), a);
        assert_eq!(
            out.stderr.trim(),
            "Error: no secret with name or id \"nope\": no such secret"
        );
        assert!(!env.store().join("secrets").join(&a).exists());
        assert_eq!(env.text(&["secret", "rm", "-a"]), format!("{b}\n{c}"));
        assert_eq!(env.text(&["secret", "ls", "-q"]), "");
    });
}

#[test]
fn run_secret_as_file_and_variable() {
    for_each_user("secret_run", |env| {
        env.import_busybox("bb");
        let _rm = RemoveAll(env);
        let id = create(env, "pw", "hunter2");
        let run = |args: &[&str]| {
            env.rbox()
                .args(["run", "--rm", "--network=none"])
                .args(args)
                .output()
        };
        // the default: /run/secrets/NAME, root's, 0444, read-only
        let out = run(&[
            "--secret",
            "pw",
            "bb",
            "sh",
            "-c",
            "stat -c '%u:%g %a' /run/secrets/pw; cat /run/secrets/pw; echo; echo x > /run/secrets/pw",
        ]);
        assert_ne!(out.code, 0, "{out}");
        assert_eq!(out.text(), "0:0 444\nhunter2");
        assert!(out.stderr.contains("Read-only file system"), "{out}");
        // a relative target is below /run/secrets; an absolute one anywhere, with a mode
        let out = run(&[
            "--secret",
            "pw,target=k",
            "--secret",
            "pw,target=/etc/pw,mode=0400",
            "bb",
            "sh",
            "-c",
            "cat /run/secrets/k; echo; stat -c %a /etc/pw",
        ])
        .success();
        assert_eq!(out.text(), "hunter2\n400");
        // an owner: with a subordinate range any id, with a single id only 0
        let out = run(&[
            "--secret",
            "pw,uid=5,gid=6",
            "bb",
            "stat",
            "-c",
            "%u:%g",
            "/run/secrets/pw",
        ]);
        if env.user.has_many_ids() {
            assert_eq!(out.success().text(), "5:6");
        } else {
            let out = out.rbox_error();
            assert!(
                out.stderr.contains("secret pw: uid 5 is not mapped"),
                "{out}"
            );
        }
        // owners are the container's ids: keep-id's namespace too (Podman's 0:0 there)
        if env.user.has_many_ids() && env.user.who != Who::Root {
            let out = run(&[
                "--userns=keep-id",
                "--secret",
                "pw",
                "bb",
                "stat",
                "-c",
                "%u:%g",
                "/run/secrets/pw",
            ]);
            assert_eq!(out.success().text(), "0:0");
        }
        // type=env: the variable NAME or target
        let out = run(&[
            "--secret",
            "pw,type=env",
            "--secret",
            "pw,type=env,target=OTHER",
            "bb",
            "sh",
            "-c",
            "echo $pw $OTHER",
        ])
        .success();
        assert_eq!(out.text(), "hunter2 hunter2");

        // Podman's refusals
        for (flag, text) in [
            (
                "nope",
                "Error: no secret with name or id \"nope\": no such secret",
            ),
            ("pw,type=foo", "Error: type foo is invalid: parsing secret"),
            (
                "pw,bogus=1",
                "Error: option bogus=1 invalid: parsing secret",
            ),
            ("pw,mode=999", "Error: mode 999 invalid: parsing secret"),
            (
                "pw,type=env,uid=1",
                "Error: UID, GID, Mode options cannot be set with secret type env: parsing secret",
            ),
        ] {
            let out = run(&["--secret", flag, "bb", "true"]).rbox_error();
            assert_eq!(out.stderr.trim(), text, "{flag}");
        }
        assert_eq!(env.text(&["ps", "-aq"]), "");

        // inspect shows the file secrets as Podman's Config.Secrets, never the data (Podman
        // 4.3 shows an env secret's value in Config.Env; rbox does not)
        env.rbox()
            .args(["create", "--name", "c", "--network=none"])
            .args(["--secret", "pw", "--secret", "pw,type=env,target=V"])
            .args(["bb", "sh", "-c", "cat /run/secrets/pw; echo \" $V\""])
            .output()
            .success();
        let out = env.text(&["inspect", "c"]);
        assert!(!out.contains("hunter2"), "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v[0]["Config"]["Secrets"],
            serde_json::json!([{"Name": "pw", "ID": id, "UID": 0, "GID": 0, "Mode": 292}])
        );
        // the data was copied at create: the container starts without the secret
        env.text(&["secret", "rm", "pw"]);
        let out = env.rbox().args(["start", "-a", "c"]).output().success();
        assert_eq!(out.text(), "hunter2 hunter2");
        // nor does its diff show what rbox made for the secret (Podman's shows nothing)
        let diff = env.text(&["diff", "c"]);
        assert!(!diff.contains("/run/secrets"), "{diff}");
        // a commit carries no secret: neither its data nor its mount point (as Podman's)
        env.text(&["commit", "-q", "c", "committed"]);
        let out = run(&[
            "committed",
            "sh",
            "-c",
            "ls -A /run/secrets; cat /run/secrets/*",
        ]);
        assert_ne!(out.code, 0, "{out}");
        assert_eq!(out.text(), "", "{out}");
    });
}

/// Names stay unique when creates race: of parallel `secret create`s of one name exactly one
/// succeeds, and the others fail with Podman's text.
#[test]
fn parallel_creates_of_one_name() {
    for_each_user("secret_race", |env| {
        let f = env.write("same.data", "x");
        let running: Vec<_> = (0..4)
            .map(|_| {
                env.rbox()
                    .args(["secret", "create", "same"])
                    .arg(&f)
                    .spawn()
            })
            .collect();
        let outs: Vec<_> = running.into_iter().map(|r| r.wait()).collect();
        let ok = outs.iter().filter(|o| o.code == 0).count();
        assert_eq!(ok, 1, "{outs:?}");
        for o in outs.iter().filter(|o| o.code != 0) {
            let o = o.clone().rbox_error();
            assert_eq!(o.stderr.trim(), "Error: same: secret name in use");
        }
        assert_eq!(env.text(&["secret", "ls", "-q"]).lines().count(), 1);
    });
}
