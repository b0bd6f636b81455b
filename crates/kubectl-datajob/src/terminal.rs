//! How the plugin talks: aligned tables, relative times, colour only on a terminal,
//! JSON/YAML for scripts, and a one-line progress indicator while waiting.
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::error::{CliError, Result};
use datajob_api::DataJob;

/// `-o`: human text (default) or a machine format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Aligned text for people (the default).
    #[default]
    Human,
    Json,
    Yaml,
    /// `resource/name` per object, as `kubectl get -o name` (status, runs, trigger,
    /// backfill).
    Name,
}

/// The commands that take `-o name`.
pub(crate) const NAME_COMMANDS: &str = "status, runs, trigger and backfill";

/// Refuses `-o name` for a command that prints no objects.
pub(crate) fn no_names(format: Format, command: &str) -> Result<()> {
    if format == Format::Name {
        return Err(CliError::Usage(format!(
            "-o name is for the commands that list or start objects ({NAME_COMMANDS}); {command} takes -o json or -o yaml"
        )));
    }
    Ok(())
}

/// Prints `kind/name` per line, as `kubectl get -o name`.
pub(crate) fn print_names<'a>(kind: &str, names: impl IntoIterator<Item = &'a str>) {
    for n in names {
        println!("{kind}/{n}");
    }
}

/// How `-o name` names a DataJob, a run's Job and a Backfill.
pub(crate) const DATAJOB_KIND: &str = "datajob.datajob.dev";
pub(crate) const JOB_KIND: &str = "job.batch";
pub(crate) const BACKFILL_KIND: &str = "backfill.datajob.dev";

/// Prints `value` as JSON or YAML on stdout.
pub(crate) fn print_data<T: Serialize>(format: Format, value: &T) -> Result<()> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| CliError::Encode(e.to_string()))?,
        Format::Name => return no_names(format, "this command"),
        Format::Yaml | Format::Human => {
            serde_saphyr::to_string(value).map_err(|e| CliError::Encode(e.to_string()))?
        }
    };
    print!("{text}");
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Color {
    Green,
    Red,
    Yellow,
    Cyan,
    Dim,
    Bold,
}

/// Colours, when the stream they go to is a terminal and `NO_COLOR` is not set.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Style {
    pub color: bool,
}

impl Style {
    fn wanted(is_terminal: bool) -> bool {
        is_terminal
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::env::var("TERM").map_or(true, |t| t != "dumb")
    }

    pub(crate) fn stdout() -> Style {
        Style {
            color: Self::wanted(std::io::stdout().is_terminal()),
        }
    }

    pub(crate) fn stderr() -> Style {
        Style {
            color: Self::wanted(std::io::stderr().is_terminal()),
        }
    }

    pub(crate) fn paint(&self, text: &str, color: Color) -> String {
        if !self.color || text.is_empty() {
            return text.to_string();
        }
        let code = match color {
            Color::Green => "32",
            Color::Red => "31",
            Color::Yellow => "33",
            Color::Cyan => "36",
            Color::Dim => "2",
            Color::Bold => "1",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// The colour a state word gets.
pub(crate) fn state_color(state: &str) -> Option<Color> {
    match state {
        "Succeeded" => Some(Color::Green),
        "Failed" | "Invalid" => Some(Color::Red),
        "Running" | "Pending" | "Waiting" => Some(Color::Yellow),
        "Suspended" => Some(Color::Dim),
        _ => None,
    }
}

/// Columns aligned on the widest cell, two spaces apart, the last one unpadded.
pub(crate) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<(String, Option<Color>)>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<(String, Option<Color>)>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self, style: Style) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, (cell, _)) in row.iter().enumerate().take(n) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: Vec<(String, Option<Color>)>| {
            let mut out = String::new();
            let count = cells.len().min(n);
            for (i, (cell, color)) in cells.into_iter().take(n).enumerate() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                let painted = match color {
                    Some(c) => style.paint(&cell, c),
                    None => cell,
                };
                out.push_str(&painted);
                if i + 1 < count {
                    out.push_str(&" ".repeat(pad + 2));
                }
            }
            out.trim_end().to_string()
        };
        let mut out = line(self.headers.iter().map(|h| (h.clone(), None)).collect());
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row.clone()));
            out.push('\n');
        }
        out
    }
}

/// A short duration the way people say it: `42s`, `3m12s`, `2h5m`, `3d4h`.
pub(crate) fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 if s.is_multiple_of(60) => format!("{}m", s / 60),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 if (s % 3600) < 60 => format!("{}h", s / 3600),
        3600..86_400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ if (s % 86_400) < 3600 => format!("{}d", s / 86_400),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `5m ago`, `in 3h`, `just now`: `t` relative to `now`, coarse (one unit).
pub(crate) fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let a = secs.unsigned_abs();
    if a < 5 {
        return "just now".into();
    }
    let amount = match a {
        0..60 => format!("{a}s"),
        60..3600 => format!("{}m", a / 60),
        3600..172_800 => format!("{}h", a / 3600),
        _ => format!("{}d", a / 86_400),
    };
    if secs < 0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// `2026-11-26 03:00 GMT` in the given time zone.
pub(crate) fn local_time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// `Thu 2026-11-26 03:00 GMT` in the given time zone.
pub(crate) fn local_time_with_day(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("%a %Y-%m-%d %H:%M %Z")
        .to_string()
}

/// An RFC 3339 time from the status as `2026-11-25 03:00 UTC (7h ago)`, or as written
/// when it does not parse.
pub(crate) fn status_time(s: &str, tz: Tz, now: DateTime<Utc>) -> String {
    match datajob_core::labels::parse_rfc3339(s) {
        Some(t) => format!("{} ({})", local_time(t, tz), relative(t, now)),
        None => s.to_string(),
    }
}

/// A command line as a shell would need it written: `sh -c 'echo hi'`.
pub(crate) fn shell_words(words: &[String]) -> String {
    let safe = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    };
    words
        .iter()
        .map(|w| {
            if safe(w) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// A single status line at the bottom of a terminal (stderr), redrawn in place, that
/// output from a running job flows above. Does nothing when stderr is not a terminal.
pub(crate) struct Progress {
    enabled: bool,
    state: Mutex<ProgressState>,
}

struct ProgressState {
    text: String,
    drawn: bool,
    /// Whether the last byte written by the job was a newline: the status line is only
    /// drawn at the start of a line, never in the middle of the job's own output.
    at_line_start: bool,
    frame: usize,
}

impl Progress {
    pub fn new() -> Progress {
        Self::with(std::io::stderr().is_terminal())
    }

    pub(crate) fn with(enabled: bool) -> Progress {
        Progress {
            enabled,
            state: Mutex::new(ProgressState {
                text: String::new(),
                drawn: false,
                at_line_start: true,
                frame: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn erase(s: &mut ProgressState, err: &mut impl Write) {
        if s.drawn {
            let _ = write!(err, "\r\x1b[2K");
            s.drawn = false;
        }
    }

    fn draw(&self, s: &mut ProgressState, err: &mut impl Write) {
        if !self.enabled || s.text.is_empty() || !s.at_line_start {
            return;
        }
        let _ = write!(
            err,
            "\r\x1b[2K{} {}",
            SPINNER[s.frame % SPINNER.len()],
            s.text
        );
        let _ = err.flush();
        s.drawn = true;
    }

    /// Sets the status text and redraws it, the spinner one step on.
    pub(crate) fn set(&self, text: impl Into<String>) {
        let mut s = self.lock();
        s.text = text.into();
        s.frame = s.frame.wrapping_add(1);
        let mut err = std::io::stderr().lock();
        Self::erase(&mut s, &mut err);
        self.draw(&mut s, &mut err);
    }

    /// Writes a chunk of a job's output (to stdout or stderr) above the status line.
    pub(crate) fn write(&self, to_stderr: bool, bytes: &[u8]) {
        let mut s = self.lock();
        let mut err = std::io::stderr().lock();
        Self::erase(&mut s, &mut err);
        let _ = err.flush();
        if to_stderr {
            let _ = err.write_all(bytes);
            let _ = err.flush();
        } else {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(bytes);
            let _ = out.flush();
        }
        if let Some(last) = bytes.last() {
            s.at_line_start = *last == b'\n';
        }
        self.draw(&mut s, &mut err);
    }

    /// Prints one line of our own on stderr, above the status line.
    pub(crate) fn say(&self, line: &str) {
        let mut s = self.lock();
        let mut err = std::io::stderr().lock();
        Self::erase(&mut s, &mut err);
        if !s.at_line_start {
            let _ = writeln!(err);
            s.at_line_start = true;
        }
        let _ = writeln!(err, "{line}");
        self.draw(&mut s, &mut err);
    }

    /// Removes the status line for good.
    pub(crate) fn finish(&self) {
        let mut s = self.lock();
        s.text.clear();
        let mut err = std::io::stderr().lock();
        Self::erase(&mut s, &mut err);
        let _ = err.flush();
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// The DataJob's time zone (UTC when unset or unknown).
pub(crate) fn zone_of(dj: &DataJob) -> Tz {
    dj.spec
        .time_zone
        .as_deref()
        .and_then(|z| z.parse().ok())
        .unwrap_or(Tz::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        datajob_core::labels::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn relative_times_read_naturally() {
        let now = at("2026-11-25T10:00:00Z");
        assert_eq!(relative(at("2026-11-25T09:55:00Z"), now), "5m ago");
        assert_eq!(relative(at("2026-11-25T13:00:00Z"), now), "in 3h");
        assert_eq!(relative(at("2026-11-25T09:59:58Z"), now), "just now");
        assert_eq!(relative(at("2026-11-20T10:00:00Z"), now), "5d ago");
        assert_eq!(relative(at("2026-11-25T10:00:42Z"), now), "in 42s");
    }

    #[test]
    fn short_durations() {
        assert_eq!(short_duration(Duration::from_secs(42)), "42s");
        assert_eq!(short_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(short_duration(Duration::from_secs(120)), "2m");
        assert_eq!(short_duration(Duration::from_secs(7500)), "2h5m");
        assert_eq!(short_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(
            short_duration(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d4h"
        );
    }

    #[test]
    fn tables_align_on_plain_width_even_with_colour() {
        let mut t = Table::new(&["NAME", "STATE", "REASON"]);
        t.row(vec![
            ("churn-features".into(), None),
            ("Failed".into(), Some(Color::Red)),
            ("ImageNotFound".into(), None),
        ]);
        t.row(vec![
            ("a".into(), None),
            ("Succeeded".into(), None),
            ("".into(), None),
        ]);
        let plain = t.render(Style { color: false });
        assert_eq!(
            plain,
            "NAME            STATE      REASON\n\
             churn-features  Failed     ImageNotFound\n\
             a               Succeeded\n"
        );
        let coloured = t.render(Style { color: true });
        assert!(coloured.contains("\x1b[31mFailed\x1b[0m     ImageNotFound"));
    }

    #[test]
    fn shell_quoting() {
        let w = |v: &[&str]| shell_words(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            w(&["python", "-m", "churn.features"]),
            "python -m churn.features"
        );
        assert_eq!(w(&["sh", "-c", "echo it's $X"]), r"sh -c 'echo it'\''s $X'");
    }

    #[test]
    fn times_in_the_jobs_zone() {
        let t = at("2026-07-02T02:00:00Z");
        assert_eq!(
            local_time(t, chrono_tz::Europe::London),
            "2026-07-02 03:00 BST"
        );
        assert_eq!(
            local_time_with_day(t, chrono_tz::UTC),
            "Thu 2026-07-02 02:00 UTC"
        );
    }
}
