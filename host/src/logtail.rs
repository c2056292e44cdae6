//! The log's last lines for the panel's live tail: a `tracing` layer that
//! keeps the newest lines in a bounded ring and hands each new one to
//! whoever listens (the event stream), dropping lines for a listener that
//! falls behind rather than holding the logger up.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

/// Lines kept for a newly opened tail.
pub const KEPT: usize = 1_000;

/// Longest line kept, bytes (longer ones are cut).
const MAX_LINE: usize = 2_048;

/// One log line.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LogLine {
    /// When, UTC ms.
    pub at_ms: i64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: &'static str,
    /// The module that logged it.
    pub target: String,
    /// The message and its fields.
    pub message: String,
}

struct Tail {
    lines: Mutex<VecDeque<LogLine>>,
    tx: broadcast::Sender<LogLine>,
}

fn tail() -> &'static Tail {
    static TAIL: OnceLock<Tail> = OnceLock::new();
    TAIL.get_or_init(|| Tail {
        lines: Mutex::new(VecDeque::with_capacity(KEPT)),
        tx: broadcast::channel(256).0,
    })
}

/// The newest `n` lines, oldest first.
pub fn last(n: usize) -> Vec<LogLine> {
    let lines = tail().lines.lock().unwrap_or_else(|p| p.into_inner());
    let skip = lines.len().saturating_sub(n);
    lines.iter().skip(skip).cloned().collect()
}

/// New lines as they are logged.
pub fn subscribe() -> broadcast::Receiver<LogLine> {
    tail().tx.subscribe()
}

fn push(line: LogLine) {
    let t = tail();
    {
        let mut lines = t.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == KEPT {
            lines.pop_front();
        }
        lines.push_back(line.clone());
    }
    let _ = t.tx.send(line);
}

/// The layer to add to the subscriber.
pub struct TailLayer;

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.0.len() >= MAX_LINE {
            return;
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TailLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut msg = Message(String::new());
        event.record(&mut msg);
        let mut message = msg.0;
        if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        push(LogLine {
            at_ms,
            level: meta.level().as_str(),
            target: meta.target().to_string(),
            message,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn keeps_lines_and_streams_new_ones() {
        let mut rx = subscribe();
        let subscriber = tracing_subscriber::registry().with(TailLayer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(pool = 3, "pool down: {}", "timeout");
        });
        let line = rx.try_recv().unwrap();
        assert_eq!(line.level, "WARN");
        assert_eq!(line.message, "pool down: timeout pool=3");
        assert!(last(KEPT).iter().any(|l| l.message == line.message));
    }
}
