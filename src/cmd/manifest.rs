//! `rbox manifest inspect IMAGE`: print the manifest or index a registry serves for IMAGE,
//! indented, keys in the registry's order (short names resolve as for pull). No store, no
//! user namespace.

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::cmd::pull::RegistryFlags;
use crate::context::Context;

#[derive(Debug, clap::Args)]
pub struct ManifestArgs {
    #[command(subcommand)]
    pub command: ManifestCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ManifestCommand {
    /// Print the manifest or manifest list of an image in a registry
    Inspect(InspectArgs),
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Print the bytes exactly as served (no indentation)
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// Image reference: [docker://]NAME[:TAG|@DIGEST]
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

pub fn run(_g: &Context, a: ManifestArgs) -> Result<ExitCode> {
    match a.command {
        ManifestCommand::Inspect(i) => inspect(i),
    }
}

fn inspect(a: InspectArgs) -> Result<ExitCode> {
    let name = a.image.strip_prefix("docker://").unwrap_or(&a.image);
    let transport = a.registry.transport()?;
    let m = rbox_registry::inspect_remote(name, &transport)
        .with_context(|| format!("inspect manifest of `{name}`"))?;
    if a.raw {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(&m.bytes).context("write to stdout")?;
    } else {
        println!("{}", indent_json(&String::from_utf8_lossy(&m.bytes)));
    }
    Ok(ExitCode::SUCCESS)
}

/// Re-indent JSON text with four spaces, keeping key order and string contents untouched.
fn indent_json(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    let mut chars = s.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("    ");
        }
    };
    while let Some(c) = chars.next() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // Keep empty containers on one line.
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}') | Some(']')) {
                    out.push(chars.next().unwrap_or(' '));
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::indent_json;

    #[test]
    fn indents_and_keeps_order_and_strings() {
        let got = indent_json(r#"{"z":1,"a":[{"k":"v, {x}: \"q\""}],"e":{},"l":[ ]}"#);
        let want = "{\n    \"z\": 1,\n    \"a\": [\n        {\n            \"k\": \"v, {x}: \\\"q\\\"\"\n        }\n    ],\n    \"e\": {},\n    \"l\": []\n}";
        assert_eq!(got, want);
        let v: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["a"][0]["k"], "v, {x}: \"q\"");
    }
}
