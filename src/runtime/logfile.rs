//! The container log (`ctr.log`) in Podman's `k8s-file` format, one record a line:
//! `2026-11-24T22:16:45.222252421+00:00 stdout F text` (`P` for a partial line, continued by
//! the next record of the stream). The monitor of a detached container and an attached `rbox
//! run` write it as they relay the container's output ([`Writer`]); `rbox logs` reads it
//! ([`read`]). Lines of logs written before the format (plain bytes) read as stdout records
//! without a time.

use std::fs::File;
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::time::SystemTime;

/// Which of the container's outputs a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends records to a container's log; `max_size` (`--log-opt max-size`) empties the file
/// when a write would take it past the size, as conmon does.
pub struct Writer {
    file: File,
    max_size: Option<u64>,
    size: u64,
    buf: Vec<u8>,
}

impl Writer {
    pub fn new(file: File, max_size: Option<u64>) -> Writer {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Writer {
            file,
            max_size,
            size,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Record `data` read from `stream`: one record per line, all stamped now, a last piece
    /// without its newline as a partial record. One write for all of it.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let ts = timestamp(SystemTime::now());
        self.buf.clear();
        let mut rest = data;
        while !rest.is_empty() {
            let (line, full) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            self.buf.extend_from_slice(ts.as_bytes());
            self.buf.push(b' ');
            self.buf.extend_from_slice(stream.as_str().as_bytes());
            self.buf
                .extend_from_slice(if full { b" F " } else { b" P " });
            self.buf.extend_from_slice(line);
            self.buf.push(b'\n');
            rest = &rest[(line.len() + usize::from(full)).min(rest.len())..];
        }
        if let Some(max) = self.max_size {
            if self.size + self.buf.len() as u64 > max {
                self.file.set_len(0)?;
                io::Seek::seek(&mut self.file, io::SeekFrom::Start(0))?;
                self.size = 0;
            }
        }
        self.file.write_all(&self.buf)?;
        self.size += self.buf.len() as u64;
        Ok(())
    }
}

/// `2026-11-24T22:16:45.222252421+00:00`, as conmon writes it.
fn timestamp(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_nanos(t).to_string();
    match s.strip_suffix('Z') {
        Some(s) => format!("{s}+00:00"),
        None => s,
    }
}

/// One record of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// None for a line of a log written before the format
    pub time: Option<SystemTime>,
    /// the time as written (RFC 3339)
    pub time_text: String,
    pub stream: Stream,
    /// false for a partial line (its newline comes with a later record)
    pub full: bool,
    pub text: Vec<u8>,
}

/// The records of the log at `path` (none when there is no log).
pub fn read(path: &Path) -> io::Result<Vec<Record>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in io::BufReader::new(f).split(b'\n') {
        out.push(parse(&line?));
    }
    Ok(out)
}

/// A line of the log as a record.
pub fn parse(line: &[u8]) -> Record {
    let plain = || Record {
        time: None,
        time_text: String::new(),
        stream: Stream::Stdout,
        full: true,
        text: line.to_vec(),
    };
    let mut parts = line.splitn(4, |&b| b == b' ');
    let (Some(ts), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return plain();
    };
    let text = parts.next().unwrap_or_default();
    let Ok(ts) = std::str::from_utf8(ts) else {
        return plain();
    };
    let Ok(time) = humantime::parse_rfc3339_weak(&ts.replace("+00:00", "Z")) else {
        return plain();
    };
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return plain(),
    };
    let full = match tag {
        b"F" => true,
        b"P" => false,
        _ => return plain(),
    };
    Record {
        time: Some(time),
        time_text: ts.replace("+00:00", "Z"),
        stream,
        full,
        text: text.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ctr.log");
        let mut w = Writer::new(File::create(&p).unwrap(), None);
        w.write(Stream::Stdout, b"out1\npartial").unwrap();
        w.write(Stream::Stderr, b"err1\n").unwrap();
        w.write(Stream::Stdout, b" rest\n").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].ends_with("+00:00 stdout F out1"), "{text}");
        assert!(lines[1].ends_with(" stdout P partial"), "{text}");
        assert!(lines[2].ends_with(" stderr F err1"), "{text}");
        let recs = read(&p).unwrap();
        assert_eq!(recs[1].text, b"partial");
        assert!(!recs[1].full);
        assert_eq!(recs[2].stream, Stream::Stderr);
        assert!(recs[0].time.is_some());
        assert!(recs[0].time_text.ends_with('Z'));
        // a plain line of an older log
        let old = parse(b"hello world");
        assert_eq!((old.time, old.text.as_slice()), (None, &b"hello world"[..]));
    }

    #[test]
    fn max_size_empties_the_log() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ctr.log");
        let mut w = Writer::new(File::create(&p).unwrap(), Some(100));
        for _ in 0..10 {
            w.write(Stream::Stdout, b"0123456789\n").unwrap();
        }
        assert!(std::fs::metadata(&p).unwrap().len() <= 100);
    }
}
