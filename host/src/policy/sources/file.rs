//! A local file as a signal source (e.g. written by another daemon): it is
//! re-read as soon as it changes (checked every `poll`) and at least every
//! `refresh`, which also renews the value's receive time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{MAX_PAYLOAD, SourceError, parse_payload};
use crate::policy::signal::SignalHub;

/// One watched file.
#[derive(Clone, Debug)]
pub struct FileSource {
    /// Signal to write.
    pub signal: String,
    /// File holding a number, or JSON with `pointer`.
    pub path: PathBuf,
    /// JSON pointer to the number (`None`: the file is the number).
    pub pointer: Option<String>,
    /// How often to check for a change (modification time and size).
    pub poll: Duration,
    /// Re-read at least this often even without a change.
    pub refresh: Duration,
}

impl FileSource {
    /// Starts watching; the task ends when `shutdown` turns true.
    pub fn spawn(
        self,
        hub: Arc<SignalHub>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<JoinHandle<()>, SourceError> {
        if self.poll < Duration::from_millis(10) || self.refresh < self.poll {
            return Err(SourceError::Config(
                "poll must be >= 10 ms and refresh >= poll".into(),
            ));
        }
        super::require_defined(&hub, &self.signal)?;
        Ok(tokio::spawn(self.run(hub, shutdown)))
    }

    async fn run(self, hub: Arc<SignalHub>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen: Option<(SystemTime, u64)> = None;
        let mut last_read = tokio::time::Instant::now();
        let mut warned = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            let stamp = tokio::fs::metadata(&self.path)
                .await
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            let due = last_read.elapsed() >= self.refresh;
            if stamp.is_none() || (stamp == seen && !due) {
                continue;
            }
            seen = stamp;
            last_read = tokio::time::Instant::now();
            match self.read().await {
                Ok(v) => {
                    warned = false;
                    if let Err(e) = hub.set(&self.signal, v) {
                        tracing::warn!(signal = %self.signal, error = %e, "file source");
                    }
                }
                // A half-written file is normal; only say it once per streak.
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(signal = %self.signal, path = %self.path.display(), error = %e, "file source");
                }
                Err(_) => {}
            }
        }
    }

    async fn read(&self) -> Result<f64, SourceError> {
        let bytes = tokio::fs::read(&self.path)
            .await
            .map_err(|e| SourceError::Fetch(e.to_string()))?;
        if bytes.len() > MAX_PAYLOAD {
            return Err(SourceError::Parse("file too large".into()));
        }
        parse_payload(&bytes, self.pointer.as_deref())
    }
}
