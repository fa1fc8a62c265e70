//! Generated files are checked, not trusted (STYLE habit 8): the man pages in man/ and the
//! completion scripts in completions/ must be what the current clap definition generates.
//! Regenerate them with `RBOX_BLESS=1 cargo test --test it docs` (or
//! `cargo run -- __generate-docs .`). Also checks `rbox completion SHELL` and that dynamic
//! completion offers image and container names read straight from the store.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::RBOX;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for sub in ["man", "completions"] {
        if let Ok(rd) = fs::read_dir(dir.join(sub)) {
            for e in rd.flatten() {
                out.insert(Path::new(sub).join(e.file_name()));
            }
        }
    }
    out
}

fn generate_into(dir: &Path) {
    let out = Command::new(RBOX)
        .arg("__generate-docs")
        .arg(dir)
        .output()
        .expect("run rbox");
    assert!(
        out.status.success(),
        "rbox __generate-docs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn committed_docs_are_fresh() {
    if std::env::var_os("RBOX_BLESS").is_some() {
        generate_into(&repo());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    generate_into(tmp.path());
    let fresh = files_under(tmp.path());
    let committed = files_under(&repo());
    let mut stale = Vec::new();
    for f in fresh.difference(&committed) {
        stale.push(format!("{} is missing", f.display()));
    }
    for f in committed.difference(&fresh) {
        stale.push(format!("{} is no longer generated", f.display()));
    }
    for f in fresh.intersection(&committed) {
        if fs::read(tmp.path().join(f)).unwrap() != fs::read(repo().join(f)).unwrap() {
            stale.push(format!("{} is stale", f.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "generated docs differ from the committed ones (regenerate with `RBOX_BLESS=1 cargo test --test it docs` \
         or `cargo run -- __generate-docs .`):\n  {}",
        stale.join("\n  ")
    );
    // Every subcommand has a page, the image group's too.
    for page in [
        "rbox.1",
        "rbox-run.1",
        "rbox-ps.1",
        "rbox-images.1",
        "rbox-image-ls.1",
        "rbox-image-inspect.1",
    ] {
        assert!(
            fresh.contains(&Path::new("man").join(page)),
            "no man page {page}"
        );
    }
}

#[test]
fn run_man_page_has_the_exit_code_table() {
    let page =
        fs::read_to_string(repo().join("man/rbox-run.1")).expect("man/rbox-run.1 is committed");
    for code in ["125", "126", "127", "128+n"] {
        assert!(page.contains(code), "rbox-run(1) lacks exit code {code}");
    }
}

#[test]
fn completion_prints_the_committed_script() {
    for (shell, file) in [
        ("bash", "rbox.bash"),
        ("zsh", "_rbox"),
        ("fish", "rbox.fish"),
    ] {
        let out = Command::new(RBOX)
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rbox completion {shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let committed = fs::read(repo().join("completions").join(file)).unwrap();
        assert_eq!(
            out.stdout, committed,
            "rbox completion {shell} differs from completions/{file}"
        );
    }
    let out = Command::new(RBOX)
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(125),
        "an unknown shell is a usage error: exit 125 as podman"
    );
}

/// Ask rbox what bash would offer for the last word of `words`.
pub(crate) fn complete(root: &Path, words: &[&str]) -> Vec<String> {
    let out = Command::new(RBOX)
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", (words.len() - 1).to_string())
        .env("_CLAP_COMPLETE_COMP_TYPE", "9")
        .env("_CLAP_COMPLETE_SPACE", "true")
        .env("_CLAP_IFS", "\n")
        .env("RBOX_ROOT", root)
        .arg("--")
        .args(words)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "completion failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn dynamic_completion_offers_store_names() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // The store layout read by completion: names/<encoded name> and container-names/<name>.
    fs::create_dir_all(root.join("names")).unwrap();
    fs::create_dir_all(root.join("container-names")).unwrap();
    for i in 0..300 {
        fs::write(
            root.join("names")
                .join(format!("localhost%2Fimg{i}:latest")),
            "00",
        )
        .unwrap();
    }
    fs::write(
        root.join("names").join("docker.io%2Flibrary%2Falpine:3.19"),
        "00",
    )
    .unwrap();
    fs::write(root.join("container-names").join("web"), "00").unwrap();
    fs::write(root.join("container-names").join("db"), "00").unwrap();

    let rm = complete(root, &["rbox", "rm", ""]);
    assert!(
        rm.contains(&"web".to_string()) && rm.contains(&"db".to_string()),
        "rm offers {rm:?}"
    );

    let start = std::time::Instant::now();
    let run = complete(root, &["rbox", "run", "--rm", "img1"]);
    let took = start.elapsed();
    assert!(run.contains(&"img1".to_string()), "run offers {run:?}");
    assert!(
        run.contains(&"img17:latest".to_string()),
        "run offers {run:?}"
    );
    assert!(
        !run.iter().any(|c| c.starts_with("img2")),
        "prefix filter: {run:?}"
    );
    assert!(
        took.as_millis() < 1000,
        "completion took {took:?} with 300 images"
    );

    let full = complete(root, &["rbox", "create", "localhost/img29"]);
    assert!(
        full.contains(&"localhost/img29:latest".to_string())
            && full.iter().all(|c| c.starts_with("localhost/img29")),
        "{full:?}"
    );
    let alp = complete(root, &["rbox", "rmi", "alp"]);
    assert!(
        alp.contains(&"alpine:3.19".to_string()),
        "rmi offers {alp:?}"
    );
    let inspect = complete(root, &["rbox", "inspect", ""]);
    assert!(inspect.contains(&"web".to_string()) && inspect.contains(&"alpine:3.19".to_string()));
    let img = complete(root, &["rbox", "image", "inspect", "img29"]);
    assert!(
        img.contains(&"img29".to_string()),
        "image inspect offers {img:?}"
    );
}

/// Run the committed bash script's completion function in a real bash, the way bash calls it
/// (words split at `:` by COMP_WORDBREAKS), and return COMPREPLY.
fn bash_complete(
    root: &Path,
    bin_dir: &Path,
    line: &str,
    comp_words: &[&str],
    cur: &str,
    prev: &str,
) -> Vec<String> {
    let script = repo().join("completions/rbox.bash");
    let words: Vec<String> = comp_words.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        "source '{}'; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; COMP_WORDS=({}); \
         COMP_CWORD={}; COMP_TYPE=9; _clap_complete_rbox rbox '{cur}' '{prev}'; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words.join(" "),
        comp_words.len() - 1
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &prog])
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
        .env("RBOX_ROOT", root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect()
}

#[test]
fn bash_script_completes_names_with_tags() {
    if !crate::util::require(crate::util::have("bash"), "bash is not installed") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    fs::create_dir_all(root.join("names")).unwrap();
    fs::create_dir_all(root.join("container-names")).unwrap();
    fs::write(root.join("names").join("localhost%2Falpine:3.19"), "00").unwrap();
    fs::write(root.join("container-names").join("web"), "00").unwrap();
    let bin = tmp.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(RBOX, bin.join("rbox")).unwrap();

    // `alpine:3<TAB>`: bash's word is `3`, so the answer must be the rest after the colon.
    let got = bash_complete(
        &root,
        &bin,
        "rbox run alpine:3",
        &["rbox", "run", "alpine", ":", "3"],
        "3",
        ":",
    );
    assert_eq!(got, vec!["3.19"], "alpine:3<TAB>");
    let got = bash_complete(
        &root,
        &bin,
        "rbox run alp",
        &["rbox", "run", "alp"],
        "alp",
        "run",
    );
    assert_eq!(got, vec!["alpine:3.19"], "alp<TAB>");
    let got = bash_complete(&root, &bin, "rbox rm ", &["rbox", "rm", ""], "", "rm");
    assert!(got.contains(&"web".to_string()), "rm <TAB>: {got:?}");
}
