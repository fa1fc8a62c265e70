//! `rbox completion SHELL`: print the completion script for bash, zsh or fish: the same text
//! as the committed completions/ file (see `docs`).

use std::process::ExitCode;

use crate::context::Context;

#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
Install:
  bash: rbox completion bash > ~/.local/share/bash-completion/completions/rbox
  zsh:  rbox completion zsh > \"${fpath[1]}/_rbox\"
  fish: rbox completion fish > ~/.config/fish/completions/rbox.fish

The scripts ask rbox itself at each TAB (COMPLETE=<shell> rbox -- ...), so image and container
names are offered, read straight from the store.")]
pub struct CompletionArgs {
    /// Shell to print the script for
    #[arg(value_parser = ["bash", "zsh", "fish"], value_name = "SHELL")]
    pub shell: String,
}

pub fn run(_g: &Context, a: CompletionArgs) -> anyhow::Result<ExitCode> {
    print!("{}", super::docs::completion_script(&a.shell)?);
    Ok(ExitCode::SUCCESS)
}
