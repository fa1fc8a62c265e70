//! `--format` rendering for every listing and inspect command: `json`, and the Go-template
//! dialect Podman and Docker users type (`{{.ID}}`, `{{.State.Running}}`, `{{json .Config}}`,
//! `{{index .Labels "k"}}`, `{{range .Mounts}}...{{end}}`, `table ...`), evaluated over
//! `serde_json::Value`. Values print the way Go's `%v` prints them (`[a b]` for lists,
//! `map[k:v]` for maps) so scripts written against Podman keep working.
//!
//! What this module does not do: decide which fields a command exposes (each command builds
//! its rows), or truncate ids and humanize times (see [`human`]).
//!
//! Layout follows Podman (containers/common `pkg/report`): `\t` and `\n` typed literally are
//! escapes; with the `table` prefix a space in the text between actions separates columns as
//! a tab does, and every line goes through tabwriter-like alignment (minimum cell width 12,
//! padding 2), without it tabs stay tabs (as podman 4.3 prints them); `table` adds a header
//! row whose titles come
//! from the field names (`.CreatedAt` -> `CREATED AT`, with per-command overrides such as
//! `.ID` -> `CONTAINER ID`).

use std::fmt::Write as _;

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

/// What `--format` asked for.
#[derive(Debug)]
pub enum Format {
    /// `--format json`: a pretty JSON array.
    Json,
    /// A Go template; `table` is set when it began with `table`.
    Template(Template),
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        let t = s.trim_start_matches(NO_HEADING).trim();
        if t.eq_ignore_ascii_case("json") {
            return Ok(Format::Json);
        }
        Ok(Format::Template(Template::parse(s)?))
    }
}

/// One row of a listing: `json` is what `--format json` prints (Podman's JSON shape), `view`
/// is what templates see (display strings: short ids, "2 hours ago", "4.26 MB").
#[derive(Debug, Clone)]
pub struct Row {
    pub json: Value,
    pub view: Value,
}

/// Render a listing. `format` is the user's `--format` (None: `default_table`); `titles` maps
/// field names to header titles where Podman does not derive them from the name.
pub fn render_list(
    format: Option<&str>,
    default_table: &str,
    titles: &[(&str, &str)],
    rows: &[Row],
) -> Result<String> {
    // `--format table` alone asks for the default table, as in podman.
    let format = format.filter(|f| f.trim() != "table");
    let fmt = Format::parse(format.unwrap_or(default_table))?;
    match fmt {
        Format::Json => {
            let arr: Vec<&Value> = rows.iter().map(|r| &r.json).collect();
            Ok(pretty_json(&arr) + "\n")
        }
        Format::Template(t) => {
            let mut out = String::new();
            if t.table && t.heading {
                out.push_str(&t.header(titles));
                ensure_newline(&mut out);
            }
            for r in rows {
                out.push_str(&t.render(&r.view)?);
                ensure_newline(&mut out);
            }
            // Podman 4.3 aligns `table` output only; other templates keep their tabs.
            Ok(if t.table { align(&out) } else { out })
        }
    }
}

/// Marks a template given `--noheading`: a `table` still aligned, with no header row (as
/// podman 4.3 prints `images --noheading`). Not a character anyone types in a format.
const NO_HEADING: char = '\u{1}';

/// The format a listing uses with `--noheading`: the given or default template, marked so
/// that a `table` prints no header row.
pub fn without_heading(given: Option<&str>, default: &str, noheading: bool) -> Option<String> {
    if !noheading {
        return given.map(String::from);
    }
    let f = given.unwrap_or(default).trim_start();
    // `--format table` alone means the default table.
    let f = if f.trim() == "table" { default } else { f };
    Some(format!("{NO_HEADING}{f}"))
}

/// Render `inspect` output: a pretty JSON array by default or with `json`, else the template
/// once per object.
pub fn render_inspect(format: Option<&str>, items: &[Value]) -> Result<String> {
    let rows: Vec<Row> = items
        .iter()
        .map(|v| Row {
            json: v.clone(),
            view: v.clone(),
        })
        .collect();
    render_inspect_rows(format, &rows)
}

/// [`render_inspect`] of items whose templates see more than their JSON shows (Go's zero
/// values of fields the JSON omits).
pub fn render_inspect_rows(format: Option<&str>, rows: &[Row]) -> Result<String> {
    match format {
        None => {
            let items: Vec<&Value> = rows.iter().map(|r| &r.json).collect();
            Ok(pretty_json(&items) + "\n")
        }
        Some(f) => render_list(Some(f), "json", &[], rows),
    }
}

fn ensure_newline(s: &mut String) {
    if !s.ends_with('\n') {
        s.push('\n');
    }
}

/// JSON indented with four spaces, as Podman prints it.
pub fn pretty_json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    pretty_json_indented(v, b"    ")
}

/// JSON indented with `indent` (Podman's `mount --format json` uses one space).
pub fn pretty_json_indented<T: serde::Serialize + ?Sized>(v: &T, indent: &[u8]) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    // Serializing a `Value` or plain structs into memory cannot fail.
    if v.serialize(&mut ser).is_err() {
        return "null".into();
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Align tab-separated cells like Go's `tabwriter.NewWriter(w, 12, 2, 2, ' ', 0)` (Podman's
/// default): every cell that is followed by a tab is padded to the widest cell of its column
/// plus two, and to at least 12; the last cell of a line is left as is. Columns are aligned
/// across each run of consecutive lines that have that column, as tabwriter does.
pub fn align(text: &str) -> String {
    const MIN: usize = 12;
    const PAD: usize = 2;
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let ncols = lines
        .iter()
        .map(|c| c.len().saturating_sub(1))
        .max()
        .unwrap_or(0);
    // width[i][c]: the padded width of column c on line i (0 when the cell is the last one).
    let mut width = vec![vec![0usize; ncols]; lines.len()];
    for c in 0..ncols {
        let mut i = 0;
        while i < lines.len() {
            if lines[i].len() <= c + 1 {
                i += 1;
                continue;
            }
            let start = i;
            let mut w = 0;
            while i < lines.len() && lines[i].len() > c + 1 {
                w = w.max(lines[i][c].chars().count());
                i += 1;
            }
            let w = (w + PAD).max(MIN);
            for row in width.iter_mut().take(i).skip(start) {
                row[c] = w;
            }
        }
    }
    let mut out = String::with_capacity(text.len() * 2);
    for (i, cells) in lines.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in cells.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < cells.len() {
                let pad = width[i][c].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The template language.

/// A parsed Go template.
#[derive(Debug)]
pub struct Template {
    pub table: bool,
    /// False when the listing was given `--noheading` (see [`without_heading`]).
    heading: bool,
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
}

type Pipeline = Vec<Cmd>;
type Cmd = Vec<Arg>;

#[derive(Debug, Clone)]
enum Arg {
    /// `.A.B` relative to dot (`.` alone is an empty path).
    Field(Vec<String>),
    /// `$` or `$.A.B`: relative to the top-level object.
    Root(Vec<String>),
    Str(String),
    Num(f64),
    Bool(bool),
    Nil,
    Func(String),
    Sub(Pipeline, Vec<String>),
}

#[derive(Debug, PartialEq)]
enum Tok {
    Field(Vec<String>),
    Root(Vec<String>),
    Str(String),
    Num(f64),
    Ident(String),
    Pipe,
    Open,
    Close,
    /// `).A.B` after a parenthesized pipeline.
    CloseField(Vec<String>),
}

impl Template {
    /// Parse a template; `table ` at the start asks for a header row. `\t` and `\n` typed
    /// literally in the text become a tab and a newline.
    pub fn parse(src: &str) -> Result<Template> {
        let (heading, src) = match src.strip_prefix(NO_HEADING) {
            Some(rest) => (false, rest),
            None => (true, src),
        };
        let (table, body) = match src.trim_start().strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                (true, rest.trim_start())
            }
            _ => (false, src),
        };
        let mut items = split_actions(body)?;
        if table {
            // Podman's table layout: `table {{.A}} {{.B}}` is two columns
            for it in &mut items {
                if let Item::Text(t) = it {
                    *t = t.replace(' ', "\t");
                }
            }
        }
        let mut pos = 0;
        let (nodes, end) = parse_nodes(&items, &mut pos)?;
        if let Some(kw) = end {
            bail!("template: unexpected {{{{{kw}}}}}");
        }
        Ok(Template {
            table,
            heading,
            nodes,
        })
    }

    /// Evaluate over `v`.
    pub fn render(&self, v: &Value) -> Result<String> {
        let mut out = String::new();
        exec_nodes(&self.nodes, v, v, &mut out)?;
        Ok(out)
    }

    /// The header row of a `table` template: each action prints the title of the field it
    /// names, text between actions (tabs) is kept.
    pub fn header(&self, titles: &[(&str, &str)]) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p)
                | Node::If(p, _, _)
                | Node::Range(p, _, _)
                | Node::With(p, _, _) => {
                    if let Some(f) = first_field(p) {
                        out.push_str(&title_for(&f, titles));
                    }
                }
            }
        }
        out
    }
}

/// The title of a column for field `name`: an override, else the name split at its camel-case
/// humps and upper-cased (`CreatedAt` -> `CREATED AT`, `ID` -> `ID`).
pub fn title_for(name: &str, titles: &[(&str, &str)]) -> String {
    if let Some((_, t)) = titles.iter().find(|(k, _)| *k == name) {
        return t.to_string();
    }
    if let Some((_, t)) = titles.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
        return t.to_string();
    }
    split_camel(name).to_uppercase()
}

fn split_camel(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    for i in 0..c.len() {
        if i > 0 && c[i].is_uppercase() {
            let prev_lower = c[i - 1].is_lowercase() || c[i - 1].is_ascii_digit();
            let next_lower = c.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev_lower || (c[i - 1].is_uppercase() && next_lower) {
                out.push(' ');
            }
        }
        out.push(c[i]);
    }
    out
}

fn first_field(p: &Pipeline) -> Option<String> {
    for cmd in p {
        for a in cmd {
            match a {
                Arg::Field(path) | Arg::Root(path) if !path.is_empty() => {
                    return path.last().cloned()
                }
                Arg::Sub(inner, path) => {
                    if let Some(last) = path.last() {
                        return Some(last.clone());
                    }
                    if let Some(f) = first_field(inner) {
                        return Some(f);
                    }
                }
                _ => {}
            }
        }
    }
    None
}

enum Item {
    Text(String),
    Action(String),
}

/// Cut the source into text and `{{ }}` actions, handling `{{-` / `-}}` whitespace trimming
/// and the `\t` / `\n` escapes of the text.
fn split_actions(src: &str) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            let mut t = unescape(rest);
            if trim_next {
                t = t.trim_start().to_string();
            }
            items.push(Item::Text(t));
            break;
        };
        let mut text = unescape(&rest[..open]);
        if trim_next {
            text = text.trim_start().to_string();
        }
        let mut inner_start = open + 2;
        if rest[inner_start..].starts_with("- ") {
            text = text.trim_end().to_string();
            inner_start += 1;
        }
        if !text.is_empty() {
            items.push(Item::Text(text));
        }
        let close = find_close(&rest[inner_start..])
            .ok_or_else(|| anyhow!("template: unclosed action `{}`", &rest[open..]))?;
        let mut inner = &rest[inner_start..inner_start + close];
        trim_next = false;
        if inner.ends_with(" -") {
            inner = &inner[..inner.len() - 1];
            trim_next = true;
        }
        items.push(Item::Action(inner.trim().to_string()));
        rest = &rest[inner_start + close + 2..];
    }
    Ok(items)
}

/// The offset of the `}}` closing an action, skipping string literals.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

/// Parse nodes until `end` / `else` (returned) or the end of input.
fn parse_nodes(items: &[Item], pos: &mut usize) -> Result<(Vec<Node>, Option<String>)> {
    let mut nodes = Vec::new();
    while *pos < items.len() {
        let item = &items[*pos];
        *pos += 1;
        match item {
            Item::Text(t) => nodes.push(Node::Text(t.clone())),
            Item::Action(a) => {
                if a.starts_with("/*") {
                    continue; // a comment
                }
                let (kw, rest) = match a.split_once(char::is_whitespace) {
                    Some((k, r)) => (k, r.trim()),
                    None => (a.as_str(), ""),
                };
                match kw {
                    "end" | "else" if rest.is_empty() => return Ok((nodes, Some(kw.to_string()))),
                    "if" | "range" | "with" => {
                        if rest.is_empty() {
                            bail!("template: missing value for {kw}");
                        }
                        let p = parse_pipeline(rest)?;
                        let (body, end) = parse_nodes(items, pos)?;
                        let other = match end.as_deref() {
                            Some("else") => {
                                let (other, end2) = parse_nodes(items, pos)?;
                                if end2.as_deref() != Some("end") {
                                    bail!("template: missing {{{{end}}}} after {{{{else}}}}");
                                }
                                other
                            }
                            Some("end") => Vec::new(),
                            _ => bail!("template: missing {{{{end}}}} for {{{{{kw}}}}}"),
                        };
                        nodes.push(match kw {
                            "if" => Node::If(p, body, other),
                            "range" => Node::Range(p, body, other),
                            _ => Node::With(p, body, other),
                        });
                    }
                    _ => nodes.push(Node::Action(parse_pipeline(a)?)),
                }
            }
        }
    }
    Ok((nodes, None))
}

fn lex(src: &str) -> Result<Vec<Tok>> {
    let c: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let path = |i: &mut usize| -> Vec<String> {
        // At a '.', read `.A.B.C`; a lone '.' is the empty path.
        let mut segs = Vec::new();
        while *i < c.len() && c[*i] == '.' {
            *i += 1;
            let s = *i;
            while *i < c.len() && (c[*i].is_alphanumeric() || c[*i] == '_') {
                *i += 1;
            }
            if *i > s {
                segs.push(c[s..*i].iter().collect());
            } else {
                break;
            }
        }
        segs
    };
    while i < c.len() {
        let ch = c[i];
        match ch {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                toks.push(Tok::Open);
                i += 1;
            }
            ')' => {
                i += 1;
                if i < c.len() && c[i] == '.' {
                    toks.push(Tok::CloseField(path(&mut i)));
                } else {
                    toks.push(Tok::Close);
                }
            }
            '.' => toks.push(Tok::Field(path(&mut i))),
            '$' => {
                i += 1;
                toks.push(Tok::Root(path(&mut i)));
            }
            '"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    let Some(&ch) = c.get(i) else {
                        bail!("template: unterminated string in `{src}`")
                    };
                    i += 1;
                    match ch {
                        '"' => break,
                        '\\' => {
                            let e = c.get(i).copied().unwrap_or('\\');
                            i += 1;
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '0' => '\0',
                                other => other,
                            });
                        }
                        other => s.push(other),
                    }
                }
                toks.push(Tok::Str(s));
            }
            '`' => {
                i += 1;
                let s = i;
                while i < c.len() && c[i] != '`' {
                    i += 1;
                }
                if i >= c.len() {
                    bail!("template: unterminated raw string in `{src}`");
                }
                toks.push(Tok::Str(c[s..i].iter().collect()));
                i += 1;
            }
            _ if ch.is_ascii_digit()
                || (ch == '-' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let s = i;
                i += 1;
                while i < c.len() && (c[i].is_ascii_digit() || c[i] == '.' || c[i] == 'e') {
                    i += 1;
                }
                let t: String = c[s..i].iter().collect();
                let n = t
                    .parse::<f64>()
                    .map_err(|_| anyhow!("template: bad number `{t}`"))?;
                toks.push(Tok::Num(n));
            }
            _ if ch.is_alphabetic() || ch == '_' => {
                let s = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                toks.push(Tok::Ident(c[s..i].iter().collect()));
            }
            _ => bail!("template: unexpected `{ch}` in `{{{{{src}}}}}`"),
        }
    }
    Ok(toks)
}

fn parse_pipeline(src: &str) -> Result<Pipeline> {
    let toks = lex(src)?;
    let mut pos = 0;
    let p = parse_pipe_toks(&toks, &mut pos, src)?;
    if pos != toks.len() {
        bail!("template: unexpected `)` in `{{{{{src}}}}}`");
    }
    Ok(p)
}

fn parse_pipe_toks(toks: &[Tok], pos: &mut usize, src: &str) -> Result<Pipeline> {
    let mut pipe = Vec::new();
    let mut cmd: Cmd = Vec::new();
    while *pos < toks.len() {
        match &toks[*pos] {
            Tok::Close | Tok::CloseField(_) => break,
            Tok::Pipe => {
                *pos += 1;
                if cmd.is_empty() {
                    bail!("template: missing command before `|` in `{{{{{src}}}}}`");
                }
                pipe.push(std::mem::take(&mut cmd));
            }
            Tok::Open => {
                *pos += 1;
                let inner = parse_pipe_toks(toks, pos, src)?;
                let path = match toks.get(*pos) {
                    Some(Tok::Close) => Vec::new(),
                    Some(Tok::CloseField(p)) => p.clone(),
                    _ => bail!("template: unclosed `(` in `{{{{{src}}}}}`"),
                };
                *pos += 1;
                cmd.push(Arg::Sub(inner, path));
            }
            t => {
                *pos += 1;
                cmd.push(match t {
                    Tok::Field(p) => Arg::Field(p.clone()),
                    Tok::Root(p) => Arg::Root(p.clone()),
                    Tok::Str(s) => Arg::Str(s.clone()),
                    Tok::Num(n) => Arg::Num(*n),
                    Tok::Ident(id) => match id.as_str() {
                        "true" => Arg::Bool(true),
                        "false" => Arg::Bool(false),
                        "nil" => Arg::Nil,
                        f if FUNCS.contains(&f) => Arg::Func(f.to_string()),
                        f => bail!("template: function \"{f}\" not defined"),
                    },
                    _ => unreachable!("handled above"),
                });
            }
        }
    }
    if cmd.is_empty() {
        bail!("template: empty command in `{{{{{src}}}}}`");
    }
    pipe.push(cmd);
    Ok(pipe)
}

const FUNCS: &[&str] = &[
    "json",
    "index",
    "len",
    "upper",
    "lower",
    "title",
    "join",
    "split",
    "truncate",
    "printf",
    "print",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "not",
    "and",
    "or",
    "contains",
    "replace",
    "trimspace",
    "pad",
];

fn exec_nodes(nodes: &[Node], dot: &Value, root: &Value, out: &mut String) -> Result<()> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&to_text(&eval_pipe(p, dot, root)?)),
            Node::If(p, a, b) => {
                let v = eval_pipe(p, dot, root)?;
                exec_nodes(if truthy(&v) { a } else { b }, dot, root, out)?;
            }
            Node::With(p, a, b) => {
                let v = eval_pipe(p, dot, root)?;
                if truthy(&v) {
                    exec_nodes(a, &v, root, out)?;
                } else {
                    exec_nodes(b, dot, root, out)?;
                }
            }
            Node::Range(p, a, b) => {
                let v = eval_pipe(p, dot, root)?;
                let elems: Vec<Value> = match &v {
                    Value::Array(xs) => xs.clone(),
                    // Go ranges over a map's values in key order.
                    Value::Object(m) => {
                        let mut keys: Vec<&String> = m.keys().collect();
                        keys.sort();
                        keys.into_iter().map(|k| m[k].clone()).collect()
                    }
                    Value::Null => Vec::new(),
                    other => bail!("template: range can't iterate over {}", to_text(other)),
                };
                if elems.is_empty() {
                    exec_nodes(b, dot, root, out)?;
                }
                for e in &elems {
                    exec_nodes(a, e, root, out)?;
                }
            }
        }
    }
    Ok(())
}

fn eval_pipe(p: &Pipeline, dot: &Value, root: &Value) -> Result<Value> {
    let mut piped: Option<Value> = None;
    for cmd in p {
        piped = Some(eval_cmd(cmd, dot, root, piped)?);
    }
    Ok(piped.unwrap_or(Value::Null))
}

fn eval_cmd(cmd: &Cmd, dot: &Value, root: &Value, piped: Option<Value>) -> Result<Value> {
    if let Arg::Func(name) = &cmd[0] {
        let mut args = Vec::with_capacity(cmd.len());
        for a in &cmd[1..] {
            args.push(eval_arg(a, dot, root)?);
        }
        if let Some(p) = piped {
            args.push(p);
        }
        return call(name, &args);
    }
    if cmd.len() > 1 || piped.is_some() {
        bail!(
            "template: can't give argument to non-function {}",
            describe(&cmd[0])
        );
    }
    eval_arg(&cmd[0], dot, root)
}

fn describe(a: &Arg) -> String {
    match a {
        Arg::Field(p) => format!(".{}", p.join(".")),
        Arg::Root(p) => format!("$.{}", p.join(".")),
        Arg::Str(s) => format!("{s:?}"),
        Arg::Num(n) => n.to_string(),
        Arg::Bool(b) => b.to_string(),
        Arg::Nil => "nil".into(),
        Arg::Func(f) => f.clone(),
        Arg::Sub(..) => "(...)".into(),
    }
}

fn eval_arg(a: &Arg, dot: &Value, root: &Value) -> Result<Value> {
    Ok(match a {
        Arg::Field(p) => walk(dot, p)?,
        Arg::Root(p) => walk(root, p)?,
        Arg::Str(s) => Value::String(s.clone()),
        Arg::Num(n) => num(*n),
        Arg::Bool(b) => Value::Bool(*b),
        Arg::Nil => Value::Null,
        Arg::Func(f) => call(f, &[])?,
        Arg::Sub(p, path) => walk(&eval_pipe(p, dot, root)?, path)?,
    })
}

fn num(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// Follow a field path. Keys match exactly, else case-insensitively (so `.Id` and `.ID` both
/// work, as they do in Podman); a field that does not exist is an error naming it.
fn walk(v: &Value, path: &[String]) -> Result<Value> {
    let mut cur = v;
    for (i, seg) in path.iter().enumerate() {
        let next = match cur {
            Value::Object(m) => m.get(seg).or_else(|| {
                let mut it = m.iter().filter(|(k, _)| k.eq_ignore_ascii_case(seg));
                match (it.next(), it.next()) {
                    (Some((_, v)), None) => Some(v),
                    _ => None,
                }
            }),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => {
                let at = path[..=i].join(".");
                let what = match cur {
                    Value::Object(_) => "field",
                    Value::Null => {
                        return Err(anyhow!(
                            "template: can't evaluate field .{at}: its parent is empty"
                        ))
                    }
                    _ => "field of a non-object",
                };
                let hint = match cur {
                    Value::Object(m) => {
                        let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
                        keys.sort_unstable();
                        format!(" (known: {})", keys.join(", "))
                    }
                    _ => String::new(),
                };
                bail!("template: can't evaluate {what} .{at}{hint}");
            }
        }
    }
    Ok(cur.clone())
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Print a value as Go's `%v` prints the corresponding Go value.
pub fn to_text(v: &Value) -> String {
    let mut s = String::new();
    write_text(v, &mut s);
    s
}

fn write_text(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("<no value>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(f) = n.as_f64() {
                let _ = write!(out, "{f}");
            }
        }
        Value::String(s) => out.push_str(s),
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_text(e, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push_str("map[");
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_text(&m[k], out);
            }
            out.push(']');
        }
    }
}

fn want(name: &str, args: &[Value], n: usize) -> Result<()> {
    if args.len() != n {
        bail!(
            "template: wrong number of args for {name}: want {n} got {}",
            args.len()
        );
    }
    Ok(())
}

fn as_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => to_text(other),
    }
}

fn as_int(name: &str, v: &Value) -> Result<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| anyhow!("template: {name}: expected an integer, got {}", to_text(v)))
}

fn call(name: &str, args: &[Value]) -> Result<Value> {
    Ok(match name {
        "json" => {
            want(name, args, 1)?;
            Value::String(serde_json::to_string(&args[0])?)
        }
        "index" => {
            if args.is_empty() {
                bail!("template: index of nothing");
            }
            let mut cur = args[0].clone();
            for k in &args[1..] {
                cur = match (&cur, k) {
                    // Go's index on a map returns the zero value for a missing key.
                    (Value::Object(m), _) => m
                        .get(&as_str(k))
                        .cloned()
                        .unwrap_or(Value::String(String::new())),
                    (Value::Array(a), _) => {
                        let i = as_int(name, k)?;
                        a.get(usize::try_from(i).unwrap_or(usize::MAX))
                            .cloned()
                            .ok_or_else(|| anyhow!("template: index out of range: {i}"))?
                    }
                    (Value::Null, _) => Value::String(String::new()),
                    (other, _) => bail!("template: can't index item of type {}", kind(other)),
                };
            }
            cur
        }
        "len" => {
            want(name, args, 1)?;
            Value::from(match &args[0] {
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                Value::String(s) => s.len(),
                Value::Null => 0,
                other => bail!("template: len of {}", kind(other)),
            })
        }
        "upper" => {
            want(name, args, 1)?;
            Value::String(as_str(&args[0]).to_uppercase())
        }
        "lower" => {
            want(name, args, 1)?;
            Value::String(as_str(&args[0]).to_lowercase())
        }
        "title" => {
            want(name, args, 1)?;
            let s = as_str(&args[0]);
            let mut out = String::with_capacity(s.len());
            let mut start = true;
            for ch in s.chars() {
                if start && ch.is_alphabetic() {
                    out.extend(ch.to_uppercase());
                } else {
                    out.push(ch);
                }
                start = !ch.is_alphanumeric();
            }
            Value::String(out)
        }
        "trimspace" => {
            want(name, args, 1)?;
            Value::String(as_str(&args[0]).trim().to_string())
        }
        "join" => {
            want(name, args, 2)?;
            let sep = as_str(&args[1]);
            match &args[0] {
                Value::Array(a) => {
                    Value::String(a.iter().map(as_str).collect::<Vec<_>>().join(&sep))
                }
                Value::Null => Value::String(String::new()),
                other => Value::String(as_str(other)),
            }
        }
        "split" => {
            want(name, args, 2)?;
            let s = as_str(&args[0]);
            let sep = as_str(&args[1]);
            Value::Array(
                s.split(sep.as_str())
                    .map(|p| Value::String(p.into()))
                    .collect(),
            )
        }
        "contains" => {
            want(name, args, 2)?;
            Value::Bool(as_str(&args[0]).contains(&as_str(&args[1])))
        }
        "replace" => {
            want(name, args, 3)?;
            Value::String(as_str(&args[0]).replace(&as_str(&args[1]), &as_str(&args[2])))
        }
        "truncate" => {
            want(name, args, 2)?;
            let n = usize::try_from(as_int(name, &args[1])?).unwrap_or(0);
            Value::String(as_str(&args[0]).chars().take(n).collect())
        }
        "pad" => {
            // Podman's pad: pad s with n spaces on the given side.
            want(name, args, 3)?;
            let s = as_str(&args[0]);
            let n = usize::try_from(as_int(name, &args[1])?).unwrap_or(0);
            let side = as_str(&args[2]);
            let pad = " ".repeat(n);
            Value::String(if side == "left" { pad + &s } else { s + &pad })
        }
        "print" => Value::String(go_print(args, false)),
        "println" => Value::String(go_print(args, true) + "\n"),
        "printf" => {
            if args.is_empty() {
                bail!("template: printf needs a format");
            }
            Value::String(sprintf(&as_str(&args[0]), &args[1..])?)
        }
        "eq" => {
            if args.len() < 2 {
                bail!("template: eq needs two arguments");
            }
            Value::Bool(args[1..].iter().any(|b| loose_eq(&args[0], b)))
        }
        "ne" => {
            want(name, args, 2)?;
            Value::Bool(!loose_eq(&args[0], &args[1]))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(name, args, 2)?;
            let ord = compare(&args[0], &args[1])?;
            Value::Bool(match name {
                "lt" => ord.is_lt(),
                "le" => ord.is_le(),
                "gt" => ord.is_gt(),
                _ => ord.is_ge(),
            })
        }
        "not" => {
            want(name, args, 1)?;
            Value::Bool(!truthy(&args[0]))
        }
        "and" => {
            if args.is_empty() {
                bail!("template: and needs arguments");
            }
            args.iter()
                .find(|a| !truthy(a))
                .unwrap_or(&args[args.len() - 1])
                .clone()
        }
        "or" => {
            if args.is_empty() {
                bail!("template: or needs arguments");
            }
            args.iter()
                .find(|a| truthy(a))
                .unwrap_or(&args[args.len() - 1])
                .clone()
        }
        other => bail!("template: function \"{other}\" not defined"),
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .zip(y.as_f64())
            .and_then(|(x, y)| x.partial_cmp(&y))
            .ok_or_else(|| anyhow!("template: incomparable numbers")),
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => bail!("template: incompatible types for comparison"),
    }
}

/// Go's `fmt.Sprint`: spaces only between operands when neither is a string; `Sprintln`
/// always separates with spaces.
fn go_print(args: &[Value], ln: bool) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && (ln || (!a.is_string() && !args[i - 1].is_string())) {
            out.push(' ');
        }
        out.push_str(&to_text(a));
    }
    out
}

/// The part of Go's `fmt.Sprintf` templates use: `%v %s %d %q %t %x %%`, with `-`, `0` and a
/// width.
fn sprintf(fmt: &str, args: &[Value]) -> Result<String> {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut next = 0;
    while let Some(ch) = it.next() {
        if ch != '%' {
            out.push(ch);
            continue;
        }
        let mut left = false;
        let mut zero = false;
        while let Some(&f) = it.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' | ' ' | '#' => {}
                _ => break,
            }
            it.next();
        }
        let mut width = 0usize;
        while let Some(d) = it.peek().and_then(|c| c.to_digit(10)) {
            width = width * 10 + d as usize;
            it.next();
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let s = match verb {
            'v' | 's' | 'd' | 't' => to_text(arg),
            'q' => serde_json::to_string(&as_str(arg))?,
            'x' => match arg {
                Value::Number(n) if n.as_i64().is_some() => {
                    format!("{:x}", n.as_i64().unwrap_or(0))
                }
                other => as_str(other).bytes().map(|b| format!("{b:02x}")).collect(),
            },
            other => bail!("template: printf verb %{other} is not supported"),
        };
        let n = s.chars().count();
        if n >= width {
            out.push_str(&s);
        } else if left {
            out.push_str(&s);
            out.extend(std::iter::repeat_n(' ', width - n));
        } else {
            out.extend(std::iter::repeat_n(if zero { '0' } else { ' ' }, width - n));
            out.push_str(&s);
        }
    }
    if next < args.len() {
        let _ = write!(out, "%!(EXTRA {})", go_print(&args[next..], false));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Display helpers shared by the listing commands.

/// Human strings for times and sizes, as Podman prints them (go-units).
pub mod human {
    /// Seconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05.123456789Z`,
    /// `...+02:00`); None when it does not parse.
    pub fn parse_rfc3339(s: &str) -> Option<i64> {
        let s = s.trim();
        if s.len() < 19 {
            return None;
        }
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
        if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
            return None;
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let mut rest = &s[19..];
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            rest = &r[n..];
        }
        let off = match rest {
            "" | "Z" | "z" => 0,
            r if (r.starts_with('+') || r.starts_with('-')) && r.len() >= 6 => {
                let sign = if r.starts_with('-') { -1 } else { 1 };
                let oh: i64 = r.get(1..3)?.parse().ok()?;
                let om: i64 = r.get(4..6)?.parse().ok()?;
                sign * (oh * 3600 + om * 60)
            }
            _ => return None,
        };
        Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off)
    }

    /// RFC 3339 in UTC with no fraction: `2024-01-02T03:04:05Z`.
    pub fn rfc3339(secs: i64) -> String {
        let days = secs.div_euclid(86400);
        let rem = secs.rem_euclid(86400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }

    /// Podman's `CreatedAt` style: `2024-01-02 03:04:05 +0000 UTC`.
    pub fn go_time(secs: i64) -> String {
        let days = secs.div_euclid(86400);
        let rem = secs.rem_euclid(86400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }

    /// Podman's `CreatedAt` of an RFC 3339 time, as Go prints a time: its fraction of a
    /// second kept without trailing zeros (`2026-11-24 21:48:57.12345 +0000 UTC`), none when
    /// it is zero. The epoch when `t` is missing or does not parse (as a zero time).
    pub fn go_time_of(t: Option<&str>) -> String {
        let Some((t, secs)) = t.and_then(|t| Some((t, parse_rfc3339(t)?))) else {
            return go_time(0);
        };
        let whole = go_time(secs);
        let frac: String = t
            .trim()
            .get(19..)
            .and_then(|r| r.strip_prefix('.'))
            .map(|r| r.chars().take_while(char::is_ascii_digit).take(9).collect())
            .unwrap_or_default();
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            return whole;
        }
        // go_time's text is "YYYY-MM-DD HH:MM:SS +0000 UTC": the fraction goes after 19.
        format!("{}.{frac}{}", &whole[..19], &whole[19..])
    }

    // Howard Hinnant's civil calendar algorithms.
    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146097 + doe - 719468
    }

    fn civil_from_days(z: i64) -> (i64, i64, i64) {
        let z = z + 719468;
        let era = z.div_euclid(146097);
        let doe = z - era * 146097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        (y, m, d)
    }

    /// Now, in seconds since the epoch.
    pub fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    /// go-units `HumanDuration`: "Less than a second", "3 seconds", "About a minute",
    /// "2 hours", "3 weeks", "2 years".
    pub fn duration(secs: i64) -> String {
        let s = secs.max(0);
        let m = s / 60;
        let h = m / 60;
        let days = h / 24;
        if s < 1 {
            "Less than a second".into()
        } else if s == 1 {
            "1 second".into()
        } else if s < 60 {
            format!("{s} seconds")
        } else if m == 1 {
            "About a minute".into()
        } else if m < 60 {
            format!("{m} minutes")
        } else if h == 1 {
            "About an hour".into()
        } else if h < 48 {
            format!("{h} hours")
        } else if h < 24 * 7 * 2 {
            format!("{days} days")
        } else if h < 24 * 30 * 2 {
            format!("{} weeks", days / 7)
        } else if h < 24 * 365 * 2 {
            format!("{} months", days / 30)
        } else {
            format!("{} years", days / 365)
        }
    }

    /// "2 hours ago", relative to `now`.
    pub fn ago(then: i64, now: i64) -> String {
        format!("{} ago", duration(now - then))
    }

    /// go-units `HumanSizeWithPrecision(size, 3)`: decimal units, three significant digits,
    /// as Podman prints image sizes ("4.26 MB", "1.2 kB", "512 B").
    pub fn size(bytes: u64) -> String {
        const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
        let mut v = bytes as f64;
        let mut i = 0;
        while v >= 1000.0 && i < UNITS.len() - 1 {
            v /= 1000.0;
            i += 1;
        }
        format!("{} {}", g3(v), UNITS[i])
    }

    /// Go's `%.3g`: three significant digits, trailing zeros dropped.
    fn g3(v: f64) -> String {
        if v == 0.0 {
            return "0".into();
        }
        let digits = v.abs().log10().floor() as i32 + 1;
        let decimals = (3 - digits).max(0) as usize;
        let s = format!("{v:.decimals$}");
        // Rounding can carry into a fourth digit (999.5 -> "1000"), which %g prints as 1e+03.
        if s.len() > 3 && !s.contains('.') && s.parse::<f64>().is_ok_and(|x| x >= 1000.0) {
            return "1e+03".into();
        }
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v).unwrap()
    }

    fn err(t: &str, v: &Value) -> String {
        match Template::parse(t) {
            Err(e) => format!("{e:#}"),
            Ok(tp) => format!("{:#}", tp.render(v).unwrap_err()),
        }
    }

    fn ctr() -> Value {
        json!({
            "Id": "0123456789abcdef0123",
            "ID": "0123456789ab",
            "Names": "web",
            "Repository": "localhost/busybox",
            "Tag": "latest",
            "State": {"Status": "running", "Running": true, "Pid": 42, "ExitCode": 0},
            "Config": {"Env": ["PATH=/bin", "A=b"], "Cmd": ["sh"], "Entrypoint": null, "Labels": {"k": "v", "a": "1"}},
            "Labels": {"k": "v"},
            "Mounts": [{"Source": "/a", "Destination": "/b"}, {"Source": "/c", "Destination": "/d"}],
            "Size": 4260000,
            "Ratio": 1.5
        })
    }

    #[test]
    fn plain_fields() {
        let v = ctr();
        assert_eq!(r("{{.ID}}", &v), "0123456789ab");
        assert_eq!(r("{{.Names}}", &v), "web");
        assert_eq!(
            r("{{.Repository}}:{{.Tag}}", &v),
            "localhost/busybox:latest"
        );
        assert_eq!(r("id={{ .Id }}!", &v), "id=0123456789abcdef0123!");
        assert_eq!(r("{{.Size}} {{.Ratio}}", &v), "4260000 1.5");
    }

    #[test]
    fn case_insensitive_fallback() {
        let v = json!({"Id": "x", "names": "n"});
        assert_eq!(r("{{.ID}} {{.Names}}", &v), "x n");
        // Exact matches win over case-insensitive ones.
        assert_eq!(r("{{.ID}}", &ctr()), "0123456789ab");
    }

    #[test]
    fn nested_and_go_printing() {
        let v = ctr();
        assert_eq!(r("{{.State.Running}}", &v), "true");
        assert_eq!(r("{{.State.Pid}}", &v), "42");
        assert_eq!(r("{{.Config.Env}}", &v), "[PATH=/bin A=b]");
        assert_eq!(r("{{.Config.Labels}}", &v), "map[a:1 k:v]");
        assert_eq!(r("{{.Config.Entrypoint}}", &v), "<no value>");
        assert_eq!(
            r("{{.Mounts}}", &v),
            "[map[Destination:/b Source:/a] map[Destination:/d Source:/c]]"
        );
        assert_eq!(r("{{.}}", &json!("s")), "s");
    }

    #[test]
    fn json_function() {
        let v = ctr();
        assert_eq!(r("{{json .Config.Cmd}}", &v), r#"["sh"]"#);
        assert_eq!(r("{{json .State.Running}}", &v), "true");
        assert_eq!(r("{{json .Names}}", &v), r#""web""#);
        assert_eq!(r("{{.Config.Cmd | json}}", &v), r#"["sh"]"#);
        let cfg: Value = serde_json::from_str(&r("{{json .Config}}", &v)).unwrap();
        assert_eq!(cfg, v["Config"]);
    }

    #[test]
    fn index_function() {
        let v = ctr();
        assert_eq!(r(r#"{{index .Labels "k"}}"#, &v), "v");
        assert_eq!(r(r#"{{index .Labels "missing"}}"#, &v), "");
        assert_eq!(r(r#"{{index .Config.Env 1}}"#, &v), "A=b");
        assert_eq!(r(r#"{{index .Config.Labels `a`}}"#, &v), "1");
        assert_eq!(r(r#"{{(index .Mounts 1).Source}}"#, &v), "/c");
        assert!(err("{{index .Config.Env 5}}", &v).contains("out of range"));
    }

    #[test]
    fn string_functions() {
        let v = ctr();
        assert_eq!(r("{{upper .Names}}", &v), "WEB");
        assert_eq!(r("{{.Names | upper}}", &v), "WEB");
        assert_eq!(r("{{lower (upper .Names)}}", &v), "web");
        assert_eq!(r(r#"{{join .Config.Env ","}}"#, &v), "PATH=/bin,A=b");
        assert_eq!(r("{{len .Config.Env}}", &v), "2");
        assert_eq!(r("{{title .State.Status}}", &v), "Running");
        assert_eq!(r("{{truncate .Id 5}}", &v), "01234");
        assert_eq!(
            r(r#"{{printf "%-6s|%3d|%q" .Names .State.Pid .Tag}}"#, &v),
            "web   | 42|\"latest\""
        );
        assert_eq!(r(r#"{{split "a:b" ":"}}"#, &v), "[a b]");
        assert_eq!(r(r#"{{println "a" 1}}"#, &v), "a 1\n");
    }

    #[test]
    fn control_flow() {
        let v = ctr();
        assert_eq!(
            r("{{range .Mounts}}{{.Source}}->{{.Destination}} {{end}}", &v),
            "/a->/b /c->/d "
        );
        assert_eq!(
            r("{{range .Config.Env}}[{{.}}]{{end}}", &v),
            "[PATH=/bin][A=b]"
        );
        assert_eq!(
            r("{{range .Nope}}x{{else}}none{{end}}", &json!({"Nope": []})),
            "none"
        );
        assert_eq!(r("{{if .State.Running}}up{{else}}down{{end}}", &v), "up");
        assert_eq!(
            r(r#"{{if eq .State.Status "exited"}}x{{else}}y{{end}}"#, &v),
            "y"
        );
        assert_eq!(r("{{with .State}}{{.Pid}}{{end}}", &v), "42");
        assert_eq!(
            r("{{range .Mounts}}{{$.Names}}:{{.Source}} {{end}}", &v),
            "web:/a web:/c "
        );
        assert_eq!(
            r("{{if and .State.Running (gt .State.Pid 1)}}ok{{end}}", &v),
            "ok"
        );
        assert_eq!(r("{{if not .State.ExitCode}}zero{{end}}", &v), "zero");
        assert_eq!(r("a {{- /* c */ -}} b", &v), "ab");
        assert_eq!(r("x  {{- .Names -}}  y", &v), "xwebu".replace('u', "y"));
    }

    #[test]
    fn escapes() {
        let v = ctr();
        assert_eq!(r(r"{{.ID}}\t{{.Names}}\n", &v), "0123456789ab\tweb\n");
        // Escapes inside string literals are Go's, not re-applied.
        assert_eq!(r(r#"{{"a\tb"}}"#, &v), "a\tb");
    }

    #[test]
    fn unknown_field_is_an_error_not_a_panic() {
        let v = ctr();
        let e = err("{{.Nope}}", &v);
        assert!(e.contains(".Nope"), "{e}");
        assert!(e.contains("known:"), "{e}");
        let e = err("{{.State.Nope}}", &v);
        assert!(e.contains(".State.Nope"), "{e}");
        let e = err("{{.Names.X}}", &v);
        assert!(e.contains(".Names.X"), "{e}");
        let e = err("{{.Config.Entrypoint.X}}", &v);
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn parse_errors() {
        let v = ctr();
        assert!(err("{{.ID", &v).contains("unclosed"));
        assert!(err("{{nosuch .ID}}", &v).contains("not defined"));
        assert!(err("{{if .ID}}x", &v).contains("missing {{end}}"));
        assert!(err("{{end}}", &v).contains("unexpected"));
        assert!(err("{{.ID .Names}}", &v).contains("non-function"));
        assert!(
            err(r#"{{"abc}}"#, &v).contains("unclosed")
                || err(r#"{{"abc}}"#, &v).contains("unterminated")
        );
        assert!(err("{{}}", &v).contains("empty"));
        assert!(err("{{json}}", &v).contains("wrong number"));
        assert!(err("{{.ID | }}", &v).contains("empty"));
    }

    #[test]
    fn headers_follow_podman() {
        let titles = [("ID", "CONTAINER ID"), ("Names", "NAMES")];
        let t = Template::parse(
            r"table {{.ID}}\t{{.Image}}\t{{.CreatedAt}}\t{{upper .Names}}\t{{json .Config}}",
        )
        .unwrap();
        assert!(t.table);
        assert_eq!(
            t.header(&titles),
            "CONTAINER ID\tIMAGE\tCREATED AT\tNAMES\tCONFIG"
        );
        assert_eq!(title_for("ImageID", &[]), "IMAGE ID");
        assert_eq!(title_for("RunningFor", &[]), "RUNNING FOR");
        assert_eq!(title_for("ID", &[]), "ID");
        assert_eq!(title_for("id", &titles), "CONTAINER ID");
        assert_eq!(title_for("State", &[]), "STATE");
        // Nested fields are titled by their last part.
        assert_eq!(
            Template::parse("table {{.State.Running}}")
                .unwrap()
                .header(&[]),
            "RUNNING"
        );
        // "table" must be a word of its own.
        assert!(!Template::parse("tablex {{.ID}}").unwrap().table);
    }

    #[test]
    fn noheading_keeps_a_table_aligned_without_its_header() {
        let rows = vec![Row {
            json: json!({}),
            view: json!({"Tag": "latest", "ID": "0123456789ab"}),
        }];
        let def = r"table {{.Tag}}\t{{.ID}}";
        let f = without_heading(None, def, true);
        let out = render_list(f.as_deref(), def, &[], &rows).unwrap();
        assert_eq!(out, "latest      0123456789ab\n");
        let f = without_heading(Some(r"{{.Tag}}\t{{.ID}}"), def, true);
        let out = render_list(f.as_deref(), def, &[], &rows).unwrap();
        assert_eq!(out, "latest\t0123456789ab\n");
        let f = without_heading(Some("json"), def, true);
        let out = render_list(f.as_deref(), def, &[], &rows).unwrap();
        assert_eq!(out.trim(), "[\n    {}\n]");
        let f = without_heading(Some("table"), def, true);
        let out = render_list(f.as_deref(), def, &[], &rows).unwrap();
        assert_eq!(out, "latest      0123456789ab\n");
    }

    #[test]
    fn created_at_as_go_prints_a_time() {
        // podman 4.3: `ps -a --format '{{.CreatedAt}}'` -> 2026-11-24 22:04:16.250851028 +0000 UTC
        use super::human::go_time_of;
        assert_eq!(
            go_time_of(Some("2026-11-24T22:04:16.250851028Z")),
            "2026-11-24 22:04:16.250851028 +0000 UTC"
        );
        assert_eq!(
            go_time_of(Some("2026-11-24T22:04:16.250000000Z")),
            "2026-11-24 22:04:16.25 +0000 UTC"
        );
        assert_eq!(
            go_time_of(Some("2026-11-24T20:03:51Z")),
            "2026-11-24 20:03:51 +0000 UTC"
        );
        assert_eq!(
            go_time_of(Some("2026-11-24T23:03:51.5+01:00")),
            "2026-11-24 22:03:51.5 +0000 UTC"
        );
        assert_eq!(go_time_of(None), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(go_time_of(Some("junk")), "1970-01-01 00:00:00 +0000 UTC");
    }

    #[test]
    fn list_rendering_aligns_like_tabwriter() {
        let rows = vec![
            Row {
                json: json!({"Id": "a"}),
                view: json!({"Repository": "localhost/busybox", "Tag": "latest", "ID": "0123456789ab"}),
            },
            Row {
                json: json!({"Id": "b"}),
                view: json!({"Repository": "x", "Tag": "1", "ID": "ba9876543210"}),
            },
        ];
        let titles = [("ID", "IMAGE ID")];
        let out = render_list(
            None,
            r"table {{.Repository}}\t{{.Tag}}\t{{.ID}}",
            &titles,
            &rows,
        )
        .unwrap();
        let want = "\
REPOSITORY         TAG         IMAGE ID
localhost/busybox  latest      0123456789ab
x                  1           ba9876543210
";
        assert_eq!(out, want);
        // A non-table template prints no header and keeps its tabs (podman 4.3 printed
        // `latest\t63d8b78d3eb7` for `images --format '{{.Tag}}\t{{.ID}}'`).
        let out = render_list(Some(r"{{.Tag}}\t{{.ID}}"), "", &titles, &rows).unwrap();
        assert_eq!(out, "latest\t0123456789ab\n1\tba9876543210\n");
        // A newline is added after each row when the template has none.
        let out = render_list(Some("{{.Tag}}"), "", &titles, &rows).unwrap();
        assert_eq!(out, "latest\n1\n");
        let out = render_list(Some("json"), "", &titles, &rows).unwrap();
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back, json!([{"Id": "a"}, {"Id": "b"}]));
        assert!(out.contains("\n    {"), "four-space indent: {out}");
        let out = render_list(Some("table"), r"table {{.Tag}}", &titles, &rows).unwrap();
        assert_eq!(out, "TAG\nlatest\n1\n");
        let out = render_list(Some(" JSON "), "", &titles, &[]).unwrap();
        assert_eq!(out.trim(), "[]");
        assert!(render_list(Some("{{.Nope}}"), "", &titles, &rows).is_err());
    }

    #[test]
    fn inspect_rendering() {
        let items = vec![ctr(), json!({"State": {"Running": false}})];
        let out = render_inspect(None, &items).unwrap();
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back.as_array().unwrap().len(), 2);
        assert_eq!(
            render_inspect(Some("{{.State.Running}}"), &items).unwrap(),
            "true\nfalse\n"
        );
        assert_eq!(render_inspect(Some("json"), &items).unwrap(), out);
    }

    #[test]
    fn align_blocks() {
        // A line with fewer columns ends a column block, as in Go's tabwriter.
        let out = align("a\tb\tc\nlonger-than-twelve\tx\tc\nsolo\n");
        assert_eq!(
            out,
            "a                   b           c\nlonger-than-twelve  x           c\nsolo\n"
        );
        assert_eq!(align("no tabs\n"), "no tabs\n");
    }

    #[test]
    fn human_sizes() {
        use human::size;
        assert_eq!(size(0), "0 B");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1200), "1.2 kB");
        assert_eq!(size(4_260_000), "4.26 MB");
        assert_eq!(size(4_264_999), "4.26 MB");
        assert_eq!(size(77_800_000), "77.8 MB");
        assert_eq!(size(123_456_789), "123 MB");
        assert_eq!(size(1_000_000_000), "1 GB");
        assert_eq!(size(999_999), "1e+03 kB");
    }

    #[test]
    fn human_durations() {
        use human::{ago, duration};
        assert_eq!(duration(0), "Less than a second");
        assert_eq!(duration(1), "1 second");
        assert_eq!(duration(3), "3 seconds");
        assert_eq!(duration(61), "About a minute");
        assert_eq!(duration(150), "2 minutes");
        assert_eq!(duration(3600), "About an hour");
        assert_eq!(duration(7200), "2 hours");
        assert_eq!(duration(3 * 86400), "3 days");
        assert_eq!(duration(20 * 86400), "2 weeks");
        assert_eq!(duration(90 * 86400), "3 months");
        assert_eq!(duration(800 * 86400), "2 years");
        assert_eq!(ago(100, 7300), "2 hours ago");
    }

    #[test]
    fn times() {
        use human::{go_time, parse_rfc3339, rfc3339};
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:34:56.123456789Z"),
            Some(1709210096)
        );
        assert_eq!(parse_rfc3339("2024-02-29T14:34:56+02:00"), Some(1709210096));
        assert_eq!(parse_rfc3339("garbage"), None);
        assert_eq!(rfc3339(1709210096), "2024-02-29T12:34:56Z");
        assert_eq!(go_time(0), "1970-01-01 00:00:00 +0000 UTC");
        for t in [0, 1, 86399, 951782400, 4102444800] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
    }
}
