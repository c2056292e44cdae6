//! MQTT subscriptions as signal sources: each topic's payload (a number, or
//! JSON with a pointer) becomes a signal value. Reconnects with back-off
//! and re-subscribes after every connection.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{SourceError, parse_payload};
use crate::policy::signal::SignalHub;

/// One topic mapped to one signal.
#[derive(Clone, Debug)]
pub struct MqttTopic {
    /// Topic filter to subscribe to (exact topics are matched by name).
    pub topic: String,
    /// Signal to write.
    pub signal: String,
    /// JSON pointer to the number (`None`: the payload is the number).
    pub pointer: Option<String>,
}

/// A connection to one broker.
#[derive(Clone, Debug)]
pub struct MqttSource {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id (unique per broker).
    pub client_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<MqttTopic>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
}

impl MqttSource {
    /// Starts the client task; it ends when `shutdown` turns true.
    pub fn spawn(
        self,
        hub: Arc<SignalHub>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<JoinHandle<()>, SourceError> {
        if self.topics.is_empty() {
            return Err(SourceError::Config("no topics".into()));
        }
        for t in &self.topics {
            if t.topic.is_empty() || t.topic.contains(['+', '#']) {
                return Err(SourceError::Config(format!(
                    "topic {:?} must be a plain topic name",
                    t.topic
                )));
            }
            super::require_defined(&hub, &t.signal)?;
        }
        if self.keep_alive < Duration::from_secs(1) {
            return Err(SourceError::Config("keep_alive must be >= 1 s".into()));
        }
        Ok(tokio::spawn(self.run(hub, shutdown)))
    }

    async fn run(self, hub: Arc<SignalHub>, mut shutdown: watch::Receiver<bool>) {
        let mut opts = MqttOptions::new(&self.client_id, &self.host, self.port);
        opts.set_keep_alive(self.keep_alive);
        opts.set_max_packet_size(super::MAX_PAYLOAD + 1024, super::MAX_PAYLOAD + 1024);
        let (client, mut events) = AsyncClient::new(opts, 64);
        let mut backoff = Duration::from_millis(100);
        loop {
            let event = tokio::select! {
                e = events.poll() => e,
                _ = shutdown.changed() => {
                    let _ = client.try_disconnect();
                    return;
                }
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(100);
                    tracing::info!(broker = %self.host, port = self.port, "mqtt source connected");
                    for t in &self.topics {
                        if let Err(e) = client.try_subscribe(t.topic.clone(), QoS::AtLeastOnce) {
                            tracing::warn!(topic = %t.topic, error = %e, "mqtt subscribe");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    for t in self.topics.iter().filter(|t| t.topic == p.topic) {
                        match parse_payload(&p.payload, t.pointer.as_deref()) {
                            Ok(v) => {
                                if let Err(e) = hub.set(&t.signal, v) {
                                    tracing::warn!(signal = %t.signal, error = %e, "mqtt source");
                                }
                            }
                            Err(e) => {
                                tracing::warn!(topic = %t.topic, error = %e, "mqtt payload")
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(broker = %self.host, port = self.port, error = %e, "mqtt source; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}
