//! `--log-level`: one global level for the `tracing` events of the binary, written one line
//! each on stderr as `Warning: ...` (`Debug: [rbox::runtime] ...` below info, where the module
//! helps), the level coloured only when stderr is a terminal. The monitor of a detached
//! container points its stderr at its own log file (see [`to_file`]); lines there carry a
//! timestamp and the pid, since nobody reads them as they happen.
//!
//! With `--syslog` the same events also go to the syslog daemon's socket, one datagram each
//! (`<PRI>rbox[PID]: message`, facility user, RFC 3164 without the optional timestamp and
//! host, which the daemon adds).
//!
//! Owns the level names and the line format; not what is logged (each module emits its own
//! events) nor the final `Error: ...` line of a failed command, which is the outcome
//! ([`crate::exit::report`]), printed whatever the level.

use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The names `--log-level` accepts, as the error for a wrong one lists them.
pub const LEVELS: &str = "trace, debug, info, warn, warning, error, fatal, panic";

/// Colour the level name (stderr is a terminal and `NO_COLOR` is unset).
static COLOR: AtomicBool = AtomicBool::new(false);
/// Lines go to a log file: timestamp and pid in front, no colour.
static TO_FILE: AtomicBool = AtomicBool::new(false);

/// Parses a `--log-level` value, case-insensitively; `warning` is taken for `warn`, `fatal`
/// and `panic` for `error` (Podman accepts all of them).
pub fn parse_level(s: &str) -> Result<LevelFilter, String> {
    match s.to_ascii_lowercase().as_str() {
        "error" | "fatal" | "panic" => Ok(LevelFilter::ERROR),
        "warn" | "warning" => Ok(LevelFilter::WARN),
        "info" => Ok(LevelFilter::INFO),
        "debug" => Ok(LevelFilter::DEBUG),
        "trace" => Ok(LevelFilter::TRACE),
        // Podman's words (podman 4.3), which scripts match.
        _ => Err(format!(
            "Log Level \"{s}\" is not supported, choose from: {LEVELS}"
        )),
    }
}

/// Installs the process-wide subscriber: events at `level` or above go to stderr, and with
/// `syslog` to the syslog daemon too.
pub fn init(level: &str, syslog: bool) -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    let level = parse_level(level).map_err(anyhow::Error::msg)?;
    let syslog = syslog.then(Syslog::connect).transpose()?;
    COLOR.store(
        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        Ordering::Relaxed,
    );
    let sub = tracing_subscriber::fmt()
        .with_max_level(level)
        .event_format(Line)
        .with_writer(std::io::stderr)
        .finish()
        .with(syslog);
    // Fails only when a subscriber is already set, which `main` does once.
    let _ = tracing::subscriber::set_global_default(sub);
    Ok(())
}

/// Where syslog(3) and Go's log/syslog look for the daemon, in their order.
const SYSLOG_SOCKETS: [&str; 3] = ["/dev/log", "/var/run/syslog", "/var/run/log"];

/// `--syslog`: a datagram socket connected to the syslog daemon.
struct Syslog(std::os::unix::net::UnixDatagram);

impl Syslog {
    fn connect() -> anyhow::Result<Syslog> {
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        if SYSLOG_SOCKETS.iter().any(|p| sock.connect(p).is_ok()) {
            // a daemon that does not keep up loses lines rather than stalls rbox
            sock.set_nonblocking(true)?;
            return Ok(Syslog(sock));
        }
        // Podman's words (its exit status is 1; rbox's for a refused flag is 125)
        anyhow::bail!(
            "Failed to initialize syslog hook: Unix syslog delivery error (no syslog daemon at {})",
            SYSLOG_SOCKETS.join(", ")
        )
    }
}

/// The syslog line of an event at `level` whose fields read `text`: facility user (1),
/// the level's severity.
fn syslog_line(level: &Level, text: &str) -> String {
    let severity = match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    };
    format!("<{}>rbox[{}]: {text}", 8 + severity, std::process::id())
}

/// An event's fields as the stderr line shows them: the message, then `key=value`.
#[derive(Default)]
struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        use fmt::Write;
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = if field.name() == "message" {
            write!(self.0, "{value:?}")
        } else {
            write!(self.0, "{}={value:?}", field.name())
        };
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for Syslog {
    fn on_event(&self, event: &Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        // a daemon that went away (or is behind) loses the line
        let _ = self
            .0
            .send(syslog_line(event.metadata().level(), &fields.0).as_bytes());
    }
}

/// From now on this process writes log lines for a file: its stderr is `file` (the caller
/// makes it so), lines carry a timestamp and the pid, and no colour.
pub fn to_file() {
    COLOR.store(false, Ordering::Relaxed);
    TO_FILE.store(true, Ordering::Relaxed);
}

/// The level as a line starts with it.
fn level_name(l: &Level) -> (&'static str, &'static str) {
    match *l {
        Level::ERROR => ("Error", "31"),
        Level::WARN => ("Warning", "33"),
        Level::INFO => ("Info", "32"),
        Level::DEBUG => ("Debug", "34"),
        Level::TRACE => ("Trace", "35"),
    }
}

/// `Warning: message key=value`; below info, the module in brackets after the level.
struct Line;

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if TO_FILE.load(Ordering::Relaxed) {
            let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
            write!(w, "{now} [{}] ", std::process::id())?;
        }
        let (name, color) = level_name(meta.level());
        if COLOR.load(Ordering::Relaxed) {
            write!(w, "\x1b[{color}m{name}\x1b[0m: ")?;
        } else {
            write!(w, "{name}: ")?;
        }
        if *meta.level() >= Level::DEBUG {
            write!(w, "[{}] ", meta.target())?;
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_case_insensitively() {
        assert_eq!(parse_level("error"), Ok(LevelFilter::ERROR));
        assert_eq!(parse_level("warn"), Ok(LevelFilter::WARN));
        assert_eq!(parse_level("Warning"), Ok(LevelFilter::WARN));
        assert_eq!(parse_level("INFO"), Ok(LevelFilter::INFO));
        assert_eq!(parse_level("debug"), Ok(LevelFilter::DEBUG));
        assert_eq!(parse_level("trace"), Ok(LevelFilter::TRACE));
    }

    #[test]
    fn a_wrong_level_is_one_line_naming_the_choices() {
        for bad in ["", "verbose", "warn ", "3"] {
            let e = parse_level(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
            assert!(e.contains(&format!("\"{bad}\"")), "{e}");
            assert!(e.ends_with(LEVELS), "{e}");
        }
    }

    #[test]
    fn syslog_lines_carry_the_severity() {
        let pid = std::process::id();
        assert_eq!(
            syslog_line(&Level::WARN, "limits ignored"),
            format!("<12>rbox[{pid}]: limits ignored")
        );
        assert!(syslog_line(&Level::DEBUG, "x").starts_with("<15>"));
        assert!(syslog_line(&Level::ERROR, "x").starts_with("<11>"));
    }

    #[test]
    fn levels_order_from_error_to_trace() {
        // The filter lets through events at or above the level: error passes everywhere.
        let order = ["error", "warn", "info", "debug", "trace"];
        for w in order.windows(2) {
            assert!(parse_level(w[0]).unwrap() < parse_level(w[1]).unwrap());
        }
    }
}
