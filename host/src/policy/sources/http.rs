//! HTTP(S) JSON polling: fetches an allow-listed URL every interval and
//! stores the number a JSON pointer selects.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{AllowList, MAX_PAYLOAD, SourceError, parse_payload};
use crate::policy::signal::SignalHub;

/// One polled HTTP feed.
#[derive(Clone, Debug)]
pub struct HttpSource {
    /// Signal to write.
    pub signal: String,
    /// URL to GET (http or https).
    pub url: String,
    /// JSON pointer to the number (`None`: the body is the number).
    pub pointer: Option<String>,
    /// Time between polls.
    pub interval: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl HttpSource {
    /// Checks the URL against `allow` and starts polling; the task ends
    /// when `shutdown` turns true.
    pub fn spawn(
        self,
        hub: Arc<SignalHub>,
        allow: &AllowList,
        shutdown: watch::Receiver<bool>,
    ) -> Result<JoinHandle<()>, SourceError> {
        allow.check(&self.url)?;
        if self.interval < Duration::from_millis(100) {
            return Err(SourceError::Config("interval must be >= 100 ms".into()));
        }
        super::require_defined(&hub, &self.signal)?;
        Ok(tokio::spawn(self.run(hub, shutdown)))
    }

    async fn run(self, hub: Arc<SignalHub>, mut shutdown: watch::Receiver<bool>) {
        let agent = ureq::AgentBuilder::new()
            .timeout(self.timeout)
            .redirects(0)
            .build();
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            let agent = agent.clone();
            let url = self.url.clone();
            let pointer = self.pointer.clone();
            let fetched =
                tokio::task::spawn_blocking(move || fetch(&agent, &url, pointer.as_deref()))
                    .await
                    .unwrap_or_else(|e| Err(SourceError::Fetch(e.to_string())));
            match fetched {
                Ok(v) => {
                    if let Err(e) = hub.set(&self.signal, v) {
                        tracing::warn!(signal = %self.signal, error = %e, "http source");
                    }
                }
                Err(e) => {
                    tracing::warn!(signal = %self.signal, url = %self.url, error = %e, "http source")
                }
            }
        }
    }
}

/// One GET of `url`, body limited to [`MAX_PAYLOAD`].
pub fn fetch(agent: &ureq::Agent, url: &str, pointer: Option<&str>) -> Result<f64, SourceError> {
    let resp = agent
        .get(url)
        .call()
        .map_err(|e| SourceError::Fetch(e.to_string()))?;
    let mut body = Vec::new();
    resp.into_reader()
        .take(MAX_PAYLOAD as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| SourceError::Fetch(e.to_string()))?;
    parse_payload(&body, pointer)
}
