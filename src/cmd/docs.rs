//! The generated documentation: man pages (clap_mangen) and shell completion scripts, both from
//! the clap definition in `cli.rs`. `rbox __generate-docs DIR` writes them (the committed copies
//! in man/ and completions/ come from it) and tests/it/docs.rs fails when they are stale.
//!
//! The completion scripts are clap_complete's dynamic registrations: the shell calls
//! `COMPLETE=<shell> rbox -- <words>` at each TAB, so subcommands and flags always match the
//! binary, and image and container names come from the store (`cli::complete`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap_complete::env::Shells;

use crate::cli;

/// The shells rbox ships a completion script for, and the file each goes to.
pub const SHELLS: &[(&str, &str)] = &[
    ("bash", "rbox.bash"),
    ("zsh", "_rbox"),
    ("fish", "rbox.fish"),
];

/// The completion script for `shell`, exactly as committed in completions/.
pub fn completion_script(shell: &str) -> Result<String> {
    let shells = Shells::builtins();
    let Some(sh) = shells.completer(shell) else {
        let known: Vec<&str> = SHELLS.iter().map(|(s, _)| *s).collect();
        bail!("unknown shell `{shell}`: use one of {}", known.join(", "));
    };
    let mut buf = Vec::new();
    sh.write_registration("COMPLETE", "rbox", "rbox", "rbox", &mut buf)
        .with_context(|| format!("write the {shell} completion script"))?;
    let script = String::from_utf8(buf).context("completion script is not UTF-8")?;
    if shell == "bash" {
        return bash_colon_aware(&script);
    }
    Ok(script)
}

/// Bash splits words at `:` (COMP_WORDBREAKS), so `rbox run alpine:3<TAB>` would ask rbox to
/// complete `3` after a stray `:` word. Rebuild the words from the command line split at
/// whitespace only, and strip the part before bash's own current word (after the last `:` or
/// `=`) from the answers, as bash-completion's `__ltrim_colon_completions` does. Fails (and so the docs test fails) if
/// clap's script no longer has the shape this edits.
fn bash_colon_aware(script: &str) -> Result<String> {
    const INDEX: &str = "    local _CLAP_COMPLETE_INDEX=${COMP_CWORD}\n";
    const WORDS: &str = "    local words=(\"${COMP_WORDS[@]}\")\n    if [[ \"${BASH_VERSINFO[0]}\" -ge 4 ]]; then\n        words[COMP_CWORD]=\"$2\"\n    fi\n";
    const END: &str = "        compopt -o nospace\n    fi\n}\n";
    const OUR_WORDS: &str =
        "    # rbox: split at whitespace only, so image names keep their `:tag`.
    local line=\"${COMP_LINE:0:COMP_POINT}\"
    local words
    IFS=$' \\t\\n' read -r -a words <<< \"$line\"
    if [[ -z \"$line\" || \"$line\" =~ [[:space:]]$ ]]; then
        words+=(\"\")
    fi
    local _CLAP_COMPLETE_INDEX=$(( ${#words[@]} - 1 ))
    local cur=\"${words[_CLAP_COMPLETE_INDEX]}\"
";
    const OUR_END: &str = "        compopt -o nospace
    fi
    # rbox: bash replaces only its own current word ($2), which ends the whitespace word at
    # the last `:` or `=`; drop what comes before it from the answers.
    local before=\"${cur%\"$2\"}\"
    if [[ -n \"$before\" ]]; then
        local i=${#COMPREPLY[@]}
        while [[ $((--i)) -ge 0 ]]; do
            COMPREPLY[i]=\"${COMPREPLY[i]#\"$before\"}\"
        done
    fi
}
";
    if !(script.contains(INDEX) && script.contains(WORDS) && script.contains(END)) {
        bail!("clap_complete's bash script changed shape: update `bash_colon_aware` in src/cmd/docs.rs");
    }
    Ok(script
        .replacen(INDEX, "", 1)
        .replacen(WORDS, OUR_WORDS, 1)
        .replacen(END, OUR_END, 1))
}

/// Every generated file: its path relative to the docs root and its contents.
pub fn generate() -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    for (shell, file) in SHELLS {
        out.push((
            Path::new("completions").join(file),
            completion_script(shell)?.into_bytes(),
        ));
    }
    let mut cmd = cli::command().disable_help_subcommand(true);
    cmd.build();
    man_pages(&cmd, &mut out)?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn man_pages(cmd: &clap::Command, out: &mut Vec<(PathBuf, Vec<u8>)>) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, out)?;
    }
    let man = clap_mangen::Man::new(cmd.clone())
        .manual("rbox Manual")
        .source("rbox");
    let mut buf = Vec::new();
    man.render(&mut buf)
        .with_context(|| format!("render the man page of {}", cmd.get_name()))?;
    out.push((Path::new("man").join(man.get_filename()), buf));
    Ok(())
}

/// `rbox __generate-docs DIR`: write man/ and completions/ under DIR, removing pages of
/// subcommands that no longer exist.
pub fn write_to(dir: &Path) -> Result<()> {
    let files = generate()?;
    for sub in ["man", "completions"] {
        let d = dir.join(sub);
        fs::create_dir_all(&d).with_context(|| format!("create `{}`", d.display()))?;
        for ent in fs::read_dir(&d)
            .with_context(|| format!("read `{}`", d.display()))?
            .flatten()
        {
            let rel = Path::new(sub).join(ent.file_name());
            if !files.iter().any(|(p, _)| *p == rel) {
                fs::remove_file(ent.path())
                    .with_context(|| format!("remove stale `{}`", ent.path().display()))?;
            }
        }
    }
    for (rel, data) in files {
        let p = dir.join(&rel);
        fs::write(&p, data).with_context(|| format!("write `{}`", p.display()))?;
    }
    Ok(())
}
