//! Path patterns: `.containerignore` / `.dockerignore` rules and the globs of COPY and ADD
//! sources (pure). Docker's rules: a pattern is cleaned and made relative to the context;
//! `*`, `?` and `[...]` match within one path component, `**` any number of components; a
//! pattern that matches a directory excludes everything below it; lines starting with `!`
//! are exceptions, and the last pattern that matches a path decides.

/// The rules of an ignore file.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    /// Parses an ignore file's text (comments `#`, blank lines skipped).
    pub fn parse(text: &str) -> Ignore {
        let mut rules = Vec::new();
        for l in text.lines() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (neg, p) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            let comps = clean(p);
            if comps.is_empty() {
                continue;
            }
            rules.push((neg, comps));
        }
        Ignore { rules }
    }

    /// Whether `rel` (a path relative to the context, `/`-separated) is excluded.
    pub fn excludes(&self, rel: &str) -> bool {
        let path = clean(rel);
        if path.is_empty() {
            return false;
        }
        let mut out = false;
        for (neg, pat) in &self.rules {
            // the path itself or one of its parents
            let hit = (1..=path.len()).any(|n| match_components(pat, &path[..n]));
            if hit {
                out = !neg;
            }
        }
        out
    }
}

/// `./a//b/../c/` -> `["a", "c"]`.
pub fn clean(p: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    out
}

/// Whether the components of `path` match the pattern's (`**` spans any number).
pub fn match_components(pat: &[String], path: &[String]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => {
            (0..=path.len()).any(|k| match_components(rest, &path[k..]))
        }
        Some((p, rest)) => match path.split_first() {
            Some((c, prest)) => glob(p, c) && match_components(rest, prest),
            None => false,
        },
    }
}

/// Go's `filepath.Match` within one component: `*`, `?`, `[a-z]`, `[^x]`, `\x`.
pub fn glob(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let s: Vec<char> = s.chars().collect();
    glob_at(&p, &s)
}

fn glob_at(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') => (0..=s.len()).any(|k| glob_at(&p[1..], &s[k..])),
        Some('?') => !s.is_empty() && glob_at(&p[1..], &s[1..]),
        Some('[') => {
            let Some(c) = s.first() else { return false };
            let mut i = 1;
            let neg = matches!(p.get(1), Some('^' | '!'));
            if neg {
                i += 1;
            }
            let mut hit = false;
            let mut first = true;
            while i < p.len() && (p[i] != ']' || first) {
                first = false;
                let lo = p[i];
                if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|x| *x != ']') {
                    if lo <= *c && *c <= p[i + 2] {
                        hit = true;
                    }
                    i += 3;
                } else {
                    if lo == *c {
                        hit = true;
                    }
                    i += 1;
                }
            }
            if i >= p.len() {
                return false;
            }
            hit != neg && glob_at(&p[i + 1..], &s[1..])
        }
        Some('\\') if p.len() > 1 => s.first() == Some(&p[1]) && glob_at(&p[2..], &s[1..]),
        Some(x) => s.first() == Some(x) && glob_at(&p[1..], &s[1..]),
    }
}

/// Whether `s` has glob characters.
pub fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_within_a_component() {
        assert!(glob("*.txt", "a.txt"));
        assert!(!glob("*.txt", "a.txd"));
        assert!(glob("a?c", "abc"));
        assert!(glob("[a-c]x", "bx"));
        assert!(!glob("[^a-c]x", "bx"));
        assert!(glob("\\*", "*"));
        assert!(glob("*", "x"));
    }

    #[test]
    fn ignore_rules_with_exceptions_and_double_star() {
        let i = Ignore::parse("# c\n*.log\n!keep.log\nbuild/\n**/tmp\n/abs/x\nsub/*/deep\n");
        assert!(i.excludes("a.log"));
        assert!(!i.excludes("keep.log"));
        // `*.log` is for the top level only, as in Docker
        assert!(!i.excludes("d/a.log"));
        assert!(i.excludes("build"));
        assert!(i.excludes("build/a/b.c"));
        assert!(i.excludes("tmp"));
        assert!(i.excludes("x/y/tmp/z"));
        assert!(i.excludes("abs/x"));
        assert!(i.excludes("sub/q/deep/f"));
        assert!(!i.excludes("sub/deep"));
        assert!(!i.excludes("src/main.rs"));
        // the last match wins
        let j = Ignore::parse("!a\na\n");
        assert!(j.excludes("a"));
        let k = Ignore::parse("**\n!src\n");
        assert!(k.excludes("x"));
        assert!(!k.excludes("src"));
        assert!(!k.excludes("src/f"));
    }
}
