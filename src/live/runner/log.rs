//! The runner's log (`LIVE.md` §6): `tracing` events, written as readable lines by default or
//! one JSON object a line (`trailstop live --log-format json`) for log shippers.
//!
//! Every decision that touches the exchange is exactly one event with the fields `symbol`,
//! `position`, `what`, `why`, `client_id` and `result` ([`decision`]); everything else is a
//! plain message ([`note`], [`warn`]). Nothing here ever sees a key: the lines are built from
//! commands, prices and answers, and the REST client cuts the key out of every answer first.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// How the lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-02T10:00:00.123456Z  INFO what="place stop 16950" why="initial stop" …`
    #[default]
    Text,
    /// `{"timestamp":"…","level":"INFO","what":"place stop 16950","why":"initial stop",…}`
    Json,
}

/// Where the lines go, and how they look.
pub struct LogSink {
    pub format: LogFormat,
    writer: BoxMakeWriter,
}

impl LogSink {
    /// Standard error (the command's).
    pub fn stderr(format: LogFormat) -> LogSink {
        LogSink::to(format, std::io::stderr)
    }

    /// Any writer.
    pub fn to<W>(format: LogFormat, writer: W) -> LogSink
    where
        W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
    {
        LogSink {
            format,
            writer: BoxMakeWriter::new(writer),
        }
    }

    /// Lines kept in memory (tests read them with [`Capture::lines`]).
    pub fn capture(format: LogFormat) -> (LogSink, Capture) {
        let c = Capture::default();
        (LogSink::to(format, c.clone()), c)
    }

    /// The subscriber that writes the lines (the runner runs under it).
    pub fn into_dispatch(self) -> Dispatch {
        let builder = tracing_subscriber::fmt()
            .with_writer(self.writer)
            .with_target(false);
        match self.format {
            LogFormat::Text => Dispatch::new(builder.finish()),
            LogFormat::Json => Dispatch::new(
                builder
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .finish(),
            ),
        }
    }
}

/// Lines written to memory.
#[derive(Debug, Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(String::from).collect()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// One decision that touched the exchange (a request sent, or simulated in a dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    pub symbol: &'a str,
    pub position: u64,
    /// What was sent: `place stop 16950`, `move stop to 16990`, `close at market, reduce-only`.
    pub what: &'a str,
    /// Why it was sent: `initial stop`, `trailing`, `the stop would trigger now`…
    pub why: &'a str,
    /// The order's client id (`ts-<position>-<seq>`); `-` for a close at market.
    pub client_id: &'a str,
    /// What came of it: `accepted`, `rejected (…)`, `retry 1 after 120 ms (…)`…
    pub result: &'a str,
}

/// Logs `d` as one event.
pub fn decision(d: &Decision) {
    tracing::info!(
        symbol = d.symbol,
        position = d.position,
        what = d.what,
        why = d.why,
        client_id = d.client_id,
        result = d.result,
    );
}

/// A line about the run (start, reconciliation, streams).
pub fn note(line: &str) {
    tracing::info!("{line}");
}

/// A line about something wrong that the run survives (a stream lost, stale prices).
pub fn warn(line: &str) {
    tracing::warn!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Decision<'static> {
        Decision {
            symbol: "BTCUSDT",
            position: 3,
            what: "move stop to 16990.5",
            why: "trailing",
            client_id: "ts-3-4",
            result: "accepted",
        }
    }

    #[test]
    fn a_decision_is_one_readable_line() {
        let (sink, lines) = LogSink::capture(LogFormat::Text);
        tracing::dispatcher::with_default(&sink.into_dispatch(), || {
            decision(&sample());
            note("reconciled: running");
        });
        let got = lines.lines();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].ends_with(
                r#" INFO symbol="BTCUSDT" position=3 what="move stop to 16990.5" why="trailing" client_id="ts-3-4" result="accepted""#
            ),
            "{}",
            got[0]
        );
        assert!(got[1].ends_with(" INFO reconciled: running"), "{}", got[1]);
    }

    #[test]
    fn json_lines_carry_the_fields() {
        let (sink, lines) = LogSink::capture(LogFormat::Json);
        tracing::dispatcher::with_default(&sink.into_dispatch(), || {
            decision(&sample());
            warn("BTCUSDT: no price for 10 s: stale");
        });
        let got: Vec<serde_json::Value> = lines
            .lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        assert_eq!(got.len(), 2);
        for (k, v) in [
            ("level", "INFO"),
            ("symbol", "BTCUSDT"),
            ("what", "move stop to 16990.5"),
            ("why", "trailing"),
            ("client_id", "ts-3-4"),
            ("result", "accepted"),
        ] {
            assert_eq!(got[0][k], v, "{k}: {}", got[0]);
        }
        assert_eq!(got[0]["position"], 3);
        assert!(got[0]["timestamp"].is_string());
        assert_eq!(got[1]["level"], "WARN");
        assert_eq!(got[1]["message"], "BTCUSDT: no price for 10 s: stale");
    }
}
