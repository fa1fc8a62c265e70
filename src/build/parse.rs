//! The Containerfile parser: text -> a list of [`Instruction`]s (pure, no filesystem), and the
//! word processor that expands `$V`, `${V}`, `${V:-x}`, `${V:+x}` and removes quotes as
//! Docker's shell lexer does for ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER,
//! VOLUME, WORKDIR and ARG. It does not decide what an instruction means (the executor in
//! `build/mod.rs` does).
//!
//! Grammar, as the Dockerfile reference defines it: parser directives (`# syntax=`,
//! `# escape=`) only before the first comment, blank line or instruction; instructions
//! case-insensitive; a line ending in the escape character continues on the next, and comment
//! lines inside a continuation are dropped; `<<WORD` / `<<-WORD` heredocs take the lines up to
//! WORD as their body.

use std::collections::BTreeMap;
use std::fmt;

/// An instruction of a Containerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line of its first line
    pub line: usize,
    /// upper case: `RUN`, `COPY`, ...
    pub cmd: String,
    /// `--name=value` flags before the arguments (`--from=build`, `--chown=1:1`); a flag
    /// without `=` has an empty value
    pub flags: Vec<(String, String)>,
    /// the arguments after the flags, continuation lines joined
    pub rest: String,
    /// the heredoc bodies the arguments name, in order
    pub heredocs: Vec<Heredoc>,
    /// the instruction as written (flags included, continuations joined), for `STEP n/m:`
    pub original: String,
}

/// A `<<WORD` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub body: String,
    /// `<<"WORD"` or `<<'WORD'`: no expansion inside
    pub quoted: bool,
}

impl Instruction {
    /// The JSON array form (`["a", "b"]`), when the arguments are one.
    pub fn json(&self) -> Option<Vec<String>> {
        let t = self.rest.trim();
        if !t.starts_with('[') {
            return None;
        }
        serde_json::from_str::<Vec<String>>(t).ok()
    }

    /// The value of flag `--name`, if given.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parse error, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

fn err<T>(line: usize, msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line,
        msg: msg.into(),
    })
}

/// The instructions rbox knows.
pub const KNOWN: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// A parsed Containerfile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct File {
    /// the directives (`syntax`, `escape`), lower-case keys
    pub directives: BTreeMap<String, String>,
    pub instructions: Vec<Instruction>,
}

/// Parses a Containerfile's text.
pub fn parse(text: &str) -> Result<File, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut file = File::default();
    let mut escape = '\\';
    let mut i = 0;
    // directives: `# key=value` lines at the very top
    while i < lines.len() {
        let Some((k, v)) = directive(lines[i]) else {
            break;
        };
        if file.directives.contains_key(&k) {
            return err(i + 1, format!("only one {k} parser directive can be used"));
        }
        if k == "escape" {
            escape = match v.as_str() {
                "\\" => '\\',
                "`" => '`',
                _ => return err(i + 1, format!("invalid escape token `{v}`: use \\ or `")),
            };
        }
        file.directives.insert(k, v);
        i += 1;
    }
    while i < lines.len() {
        let first = i + 1;
        let l = lines[i];
        i += 1;
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        // join continuation lines
        let mut joined = String::new();
        let mut cur = t.to_string();
        loop {
            let trimmed = cur.trim_end();
            if let Some(body) = trimmed.strip_suffix(escape) {
                joined.push_str(body);
                // the next line that is not a comment (empty lines in a continuation are
                // dropped too, as Docker does with a warning)
                let mut next = None;
                while i < lines.len() {
                    let n = lines[i];
                    i += 1;
                    let nt = n.trim_start();
                    if nt.starts_with('#') || nt.is_empty() {
                        continue;
                    }
                    next = Some(n.to_string());
                    break;
                }
                match next {
                    Some(n) => cur = n,
                    None => break,
                }
            } else {
                joined.push_str(&cur);
                break;
            }
        }
        let joined = joined.trim().to_string();
        let (word, args) = match joined.find(char::is_whitespace) {
            Some(p) => (&joined[..p], joined[p..].trim_start()),
            None => (joined.as_str(), ""),
        };
        let cmd = word.to_ascii_uppercase();
        if !KNOWN.contains(&cmd.as_str()) {
            return err(first, format!("unknown instruction: {word}"));
        }
        let (flags, rest) = split_flags(args);
        let mut ins = Instruction {
            line: first,
            cmd,
            flags,
            rest: rest.to_string(),
            heredocs: Vec::new(),
            original: joined.clone(),
        };
        // heredocs, for the instructions that take them
        if matches!(ins.cmd.as_str(), "RUN" | "COPY" | "ADD") && ins.json().is_none() {
            for (name, strip, quoted) in heredoc_names(&ins.rest) {
                let mut body = String::new();
                let mut done = false;
                while i < lines.len() {
                    let n = lines[i];
                    i += 1;
                    let n = if strip { n.trim_start_matches('\t') } else { n };
                    if n == name {
                        done = true;
                        break;
                    }
                    body.push_str(n);
                    body.push('\n');
                }
                if !done {
                    return err(first, format!("unterminated heredoc `{name}`"));
                }
                ins.heredocs.push(Heredoc { name, body, quoted });
            }
        }
        check_args(&ins)?;
        file.instructions.push(ins);
    }
    Ok(file)
}

/// `# key=value` as a parser directive (known keys only, as Docker ignores the others).
fn directive(l: &str) -> Option<(String, String)> {
    let t = l.trim().strip_prefix('#')?.trim();
    let (k, v) = t.split_once('=')?;
    let k = k.trim().to_ascii_lowercase();
    if !matches!(k.as_str(), "syntax" | "escape" | "check") || k.contains(' ') {
        return None;
    }
    Some((k, v.trim().to_string()))
}

/// The leading `--name[=value]` words of `args`, and what follows them.
fn split_flags(args: &str) -> (Vec<(String, String)>, &str) {
    let mut flags = Vec::new();
    let mut rest = args;
    while let Some(f) = rest.strip_prefix("--") {
        let end = f.find(char::is_whitespace).unwrap_or(f.len());
        let word = &f[..end];
        match word.split_once('=') {
            Some((n, v)) => flags.push((n.to_string(), v.to_string())),
            None => flags.push((word.to_string(), String::new())),
        }
        rest = f[end..].trim_start();
    }
    (flags, rest)
}

/// The heredocs named in `s`: (word, `<<-`, quoted).
fn heredoc_names(s: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'<' && b[i + 1] == b'<' && (i + 2 >= b.len() || b[i + 2] != b'<') {
            let mut j = i + 2;
            let strip = j < b.len() && b[j] == b'-';
            if strip {
                j += 1;
            }
            let quote = b.get(j).copied().filter(|c| *c == b'"' || *c == b'\'');
            if quote.is_some() {
                j += 1;
            }
            let start = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if j > start {
                out.push((s[start..j].to_string(), strip, quote.is_some()));
                if quote.is_some() {
                    j += 1;
                }
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// What every instruction needs at the least.
fn check_args(ins: &Instruction) -> Result<(), ParseError> {
    let empty = ins.rest.trim().is_empty();
    let n = |k: usize| -> Result<(), ParseError> {
        if ins.json().map(|v| v.len()).unwrap_or(usize::MAX) < k {
            return err(
                ins.line,
                format!("{} requires at least {k} arguments", ins.cmd),
            );
        }
        Ok(())
    };
    match ins.cmd.as_str() {
        "CMD" | "ENTRYPOINT" | "HEALTHCHECK" => Ok(()),
        "COPY" | "ADD" if ins.heredocs.is_empty() => {
            n(2)?;
            if ins.json().is_none() && ins.rest.split_whitespace().count() < 2 {
                return err(
                    ins.line,
                    format!("{} requires at least two arguments", ins.cmd),
                );
            }
            Ok(())
        }
        _ if empty => err(
            ins.line,
            format!("{} requires at least one argument", ins.cmd),
        ),
        _ => Ok(()),
    }
}

// ---- words ----

/// Where `$NAME` gets its value.
pub trait Lookup {
    fn get(&self, name: &str) -> Option<String>;
}

impl Lookup for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
}

/// Expands variables and removes quotes in `s`, keeping it one word (whitespace stays as it
/// is): FROM, WORKDIR, USER, STOPSIGNAL.
pub fn expand(s: &str, env: &dyn Lookup, escape: char) -> Result<String, String> {
    Ok(words(s, env, escape, false)?.join(""))
}

/// Splits `s` into words on unquoted whitespace, expanding variables and removing quotes:
/// COPY, ADD, EXPOSE, VOLUME, and the `k=v` pairs of ENV, LABEL and ARG.
pub fn expand_words(s: &str, env: &dyn Lookup, escape: char) -> Result<Vec<String>, String> {
    words(s, env, escape, true)
}

fn words(s: &str, env: &dyn Lookup, escape: char, split: bool) -> Result<Vec<String>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if split && ch.is_whitespace() {
            if has {
                out.push(std::mem::take(&mut cur));
                has = false;
            }
            i += 1;
            continue;
        }
        has = true;
        if ch == escape {
            if let Some(n) = c.get(i + 1) {
                cur.push(*n);
                i += 2;
            } else {
                cur.push(ch);
                i += 1;
            }
        } else if ch == '\'' {
            i += 1;
            while i < c.len() && c[i] != '\'' {
                cur.push(c[i]);
                i += 1;
            }
            if i >= c.len() {
                return Err(
                    "unexpected end of statement while looking for matching single-quote".into(),
                );
            }
            i += 1;
        } else if ch == '"' {
            i += 1;
            loop {
                if i >= c.len() {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                match c[i] {
                    '"' => {
                        i += 1;
                        break;
                    }
                    e if e == escape && matches!(c.get(i + 1), Some('"' | '$') | Some('\\')) => {
                        cur.push(c[i + 1]);
                        i += 2;
                    }
                    '$' => {
                        let (v, n) = variable(&c, i, env, escape)?;
                        cur.push_str(&v);
                        i = n;
                    }
                    x => {
                        cur.push(x);
                        i += 1;
                    }
                }
            }
        } else if ch == '$' {
            let (v, n) = variable(&c, i, env, escape)?;
            cur.push_str(&v);
            i = n;
        } else {
            cur.push(ch);
            i += 1;
        }
    }
    if has || !split {
        out.push(cur);
    }
    Ok(out)
}

/// The value of the variable reference at `c[i]` (a `$`), and the index after it.
fn variable(
    c: &[char],
    i: usize,
    env: &dyn Lookup,
    escape: char,
) -> Result<(String, usize), String> {
    let name_char = |x: char| x.is_ascii_alphanumeric() || x == '_';
    let mut j = i + 1;
    if c.get(j) == Some(&'{') {
        j += 1;
        let start = j;
        while j < c.len() && name_char(c[j]) {
            j += 1;
        }
        let name: String = c[start..j].iter().collect();
        if name.is_empty() {
            return Err("bad substitution: missing variable name in ${}".into());
        }
        let val = env.get(&name);
        match c.get(j) {
            Some('}') => Ok((val.unwrap_or_default(), j + 1)),
            Some(':') => {
                let op = c.get(j + 1).copied();
                // the word up to the matching brace, itself expanded
                let mut depth = 1;
                let mut k = j + 2;
                while k < c.len() {
                    match c[k] {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    k += 1;
                }
                if k >= c.len() {
                    return Err(format!("missing '}}' in substitution of {name}"));
                }
                let word: String = c[j + 2..k].iter().collect();
                let word = expand(&word, env, escape)?;
                let set = val.as_deref().is_some_and(|v| !v.is_empty());
                let v = match op {
                    Some('-') => {
                        if set {
                            val.unwrap_or_default()
                        } else {
                            word
                        }
                    }
                    Some('+') => {
                        if set {
                            word
                        } else {
                            String::new()
                        }
                    }
                    Some('?') => {
                        if set {
                            val.unwrap_or_default()
                        } else {
                            return Err(format!("{name}: {word}"));
                        }
                    }
                    _ => return Err(format!("unsupported modifier in substitution of {name}")),
                };
                Ok((v, k + 1))
            }
            _ => Err(format!("missing '}}' in substitution of {name}")),
        }
    } else {
        let start = j;
        while j < c.len() && name_char(c[j]) {
            j += 1;
        }
        if j == start {
            return Ok(("$".into(), i + 1));
        }
        let name: String = c[start..j].iter().collect();
        Ok((env.get(&name).unwrap_or_default(), j))
    }
}

/// `k=v k2="v 2"` pairs (ENV, LABEL, ARG with values), or the old `ENV k v` form (one pair,
/// the value the rest of the line). `allow_bare`: a word without `=` is a name without a value
/// (ARG).
pub fn pairs(
    rest: &str,
    env: &dyn Lookup,
    escape: char,
    allow_bare: bool,
) -> Result<Vec<(String, Option<String>)>, String> {
    let first = rest.split_whitespace().next().unwrap_or("");
    if !first.contains('=') && !allow_bare {
        // `ENV key value with spaces`
        let (k, v) = match rest.trim().split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => return Err(format!("needs a value: {}", rest.trim())),
        };
        return Ok(vec![(k.to_string(), Some(expand(v, env, escape)?))]);
    }
    let mut out = Vec::new();
    for w in expand_words(rest, env, escape)? {
        match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_string(), Some(v.to_string()))),
            Some(_) => return Err(format!("invalid key: {w}")),
            None if allow_bare => out.push((w, None)),
            None => return Err(format!("needs a value: {w}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn instructions_continuations_comments_and_case() {
        let f = parse(
            "# syntax=docker/dockerfile:1\nfrom busybox AS b\n\n# a comment\nRUN echo a \\\n  # dropped\n  && echo b\ncopy --from=b --chown=1:2 /x /y\n",
        )
        .unwrap();
        assert_eq!(f.directives["syntax"], "docker/dockerfile:1");
        let i = &f.instructions;
        assert_eq!(i.len(), 3);
        assert_eq!(
            (i[0].cmd.as_str(), i[0].rest.as_str(), i[0].line),
            ("FROM", "busybox AS b", 2)
        );
        assert_eq!(i[1].rest, "echo a   && echo b");
        assert_eq!(i[1].line, 5);
        assert_eq!(i[2].flag("from"), Some("b"));
        assert_eq!(i[2].flag("chown"), Some("1:2"));
        assert_eq!(i[2].rest, "/x /y");
        assert_eq!(i[2].original, "copy --from=b --chown=1:2 /x /y");
    }

    #[test]
    fn escape_directive_and_late_directives() {
        let f = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo\n# escape=\\\n").unwrap();
        assert_eq!(f.instructions[1].rest, "dir c:\\   && echo");
        // a directive after an instruction is a comment
        assert_eq!(f.directives.len(), 1);
        assert!(parse("# escape=x\nFROM y\n").is_err());
    }

    #[test]
    fn heredocs_and_json() {
        let f = parse("FROM x\nRUN <<EOF\necho a\necho b\nEOF\nCMD [\"a\", \"b\"]\nCOPY <<-'E' /f\n\thello $X\nE\n").unwrap();
        let r = &f.instructions[1];
        assert_eq!(r.heredocs.len(), 1);
        assert_eq!(r.heredocs[0].body, "echo a\necho b\n");
        assert_eq!(f.instructions[2].json().unwrap(), ["a", "b"]);
        assert_eq!(f.instructions[2].line, 6);
        let c = &f.instructions[3];
        assert_eq!(
            (c.heredocs[0].body.as_str(), c.heredocs[0].quoted),
            ("hello $X\n", true)
        );
        let e = parse("FROM x\nRUN <<EOF\necho\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn errors_carry_the_line() {
        let e = parse("FROM x\n\nBOGUS y\n").unwrap_err();
        assert_eq!((e.line, e.msg.as_str()), (3, "unknown instruction: BOGUS"));
        assert_eq!(e.to_string(), "line 3: unknown instruction: BOGUS");
        let e = parse("FROM x\nCOPY a\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(parse("FROM x\nWORKDIR\n").unwrap_err().line, 2);
    }

    #[test]
    fn expansion_as_docker_defines_it() {
        let e = env(&[("A", "1"), ("E", ""), ("P", "/p q")]);
        let x = |s: &str| expand(s, &e, '\\').unwrap();
        assert_eq!(x("$A-${A}"), "1-1");
        assert_eq!(x("${E:-d}${A:-d}${U:-x$A}"), "d1x1");
        assert_eq!(x("${A:+set}${E:+set}${U:+set}"), "set");
        assert_eq!(x("'$A' \"$A\" \\$A"), "$A 1 $A");
        assert_eq!(x("$"), "$");
        assert!(expand("${U:?needed}", &e, '\\')
            .unwrap_err()
            .contains("needed"));
        assert!(expand("${A", &e, '\\').is_err());
        let w = expand_words("a $P \"$P\" 'x y'", &e, '\\').unwrap();
        assert_eq!(w, ["a", "/p q", "/p q", "x y"]);
    }

    #[test]
    fn env_label_arg_pairs() {
        let e = env(&[("A", "1")]);
        let p = pairs("K=v L=\"two words\" M=$A", &e, '\\', false).unwrap();
        assert_eq!(
            p,
            [
                ("K".into(), Some("v".into())),
                ("L".into(), Some("two words".into())),
                ("M".into(), Some("1".into()))
            ]
        );
        let p = pairs("K the rest $A", &e, '\\', false).unwrap();
        assert_eq!(p, [("K".into(), Some("the rest 1".into()))]);
        let p = pairs("V W=2", &e, '\\', true).unwrap();
        assert_eq!(p, [("V".into(), None), ("W".into(), Some("2".into()))]);
    }
}
