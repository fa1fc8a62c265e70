//! `WWW-Authenticate` challenges (RFC 7235) as registries send them:
//! `Bearer realm="https://auth.example/token",service="registry.example",scope="repository:x:pull"`
//! or `Basic realm="registry"`. Pure parsing; the client decides what to do with them.

use std::collections::BTreeMap;

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased: `bearer`, `basic`, ...
    pub scheme: String,
    /// Parameters with lowercased names (`realm`, `service`, `scope`, `error`).
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    pub fn is_bearer(&self) -> bool {
        self.scheme == "bearer"
    }

    pub fn is_basic(&self) -> bool {
        self.scheme == "basic"
    }
}

/// Parse every challenge in one header value. Malformed parts are skipped, never fatal.
///
/// The grammar allows several challenges in one value, separated by commas like the
/// parameters themselves: a token followed by whitespace and not by `=` starts a new one.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    loop {
        p.skip_ws_commas();
        if p.done() {
            break;
        }
        let Some(tok) = p.token() else {
            // Garbage: skip one byte and resynchronise.
            p.i += 1;
            continue;
        };
        p.skip_ws();
        if p.peek() == Some(b'=') && !out.is_empty() {
            // `name=value` belonging to the current challenge.
            p.i += 1;
            p.skip_ws();
            let value = if p.peek() == Some(b'"') {
                p.quoted()
            } else {
                p.token68()
            };
            if let (Some(c), Some(v)) = (out.last_mut(), value) {
                c.params.insert(tok.to_ascii_lowercase(), v);
            }
        } else {
            out.push(Challenge {
                scheme: tok.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_ws_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    /// An RFC 7230 token.
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while let Some(b) = self.peek() {
            if b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b) {
                self.i += 1;
            } else {
                break;
            }
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// An unquoted parameter value: everything up to a comma or whitespace.
    fn token68(&mut self) -> Option<String> {
        let start = self.i;
        while let Some(b) = self.peek() {
            if b == b',' || b == b' ' || b == b'\t' {
                break;
            }
            self.i += 1;
        }
        Some(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// A quoted string with backslash escapes; the opening quote is at `self.i`.
    fn quoted(&mut self) -> Option<String> {
        self.i += 1;
        let mut v = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => return Some(String::from_utf8_lossy(&v).into_owned()),
                b'\\' => {
                    if let Some(n) = self.peek() {
                        v.push(n);
                        self.i += 1;
                    }
                }
                _ => v.push(b),
            }
        }
        // Unterminated: take what there is.
        Some(String::from_utf8_lossy(&v).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert!(c[0].is_bearer());
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/alpine:pull"));
    }

    #[test]
    fn insufficient_scope_with_commas_in_quotes() {
        let c = parse(
            r#"Bearer realm="https://r/token", service="r", scope="repository:a/b:pull,push", error="insufficient_scope""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));
    }

    #[test]
    fn basic_and_case() {
        let c = parse(r#"BASIC Realm="registry \"one\"""#);
        assert_eq!(c.len(), 1);
        assert!(c[0].is_basic());
        assert_eq!(c[0].param("realm"), Some(r#"registry "one""#));
    }

    #[test]
    fn several_challenges_and_unquoted_values() {
        let c = parse(r#"Basic realm="x", Bearer realm=https://t/token,service=svc"#);
        assert_eq!(c.len(), 2);
        assert!(c[0].is_basic());
        assert_eq!(c[0].param("realm"), Some("x"));
        assert!(c[1].is_bearer());
        assert_eq!(c[1].param("realm"), Some("https://t/token"));
        assert_eq!(c[1].param("service"), Some("svc"));
    }

    #[test]
    fn garbage_does_not_panic() {
        for s in [
            "",
            ",,,",
            "=",
            "Bearer realm=\"unterminated",
            "Bearer =x",
            "\u{1F600}",
            "a=b",
        ] {
            let _ = parse(s);
        }
        assert_eq!(
            parse("Bearer realm=\"unterminated")[0].param("realm"),
            Some("unterminated")
        );
        assert!(parse("a=b").is_empty() || parse("a=b")[0].scheme == "a");
    }
}
