//! The appliance's energy meter: samples power every second (RAPL where the
//! kernel exposes it, else the calibrated model), keeps the kWh ledger with
//! time paused per policy, persists it at least every minute, and hands the
//! live readings to the policy engine. A failing checkpoint (full disk, no
//! file descriptors) is retried with back-off and logged at most once a
//! minute, with the number of failed attempts.
//!
//! The accounting itself lives in the `hashwatt-energy` crate; this module
//! only wires it to the running host.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hashwatt_energy::meter::{
    self, FallbackSource, MeterError, external::ExternalSource, model::ModelConfig,
};
use hashwatt_energy::store::Checkpoint;
use hashwatt_energy::{
    EnergyCounters, EnergyStore, Interval, LedgerConfig, Period, PowerSource, Report,
};
use tracing::{info, warn};

use crate::config::EnergySettings;
use crate::policy::clock::{Clock, SystemClock};
use crate::policy::engine::{HostReadings, InputProvider};
use crate::policy::signal::SignalHub;
use crate::policy::{Energy, Mode, SignalValue};

/// Where the energy ledger lives inside the state directory.
pub fn store_dir(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("energy")
}

/// What the last sample said.
#[derive(Clone, Debug, Default)]
struct Live {
    power_w: Option<f64>,
    hashrate_hs: f64,
    counters: Option<EnergyCounters>,
    source: &'static str,
    /// The devices' temperature sensors (hwmon on CPUs), for policies.
    temperatures: Vec<crate::policy::Temperature>,
}

/// The running meter.
pub struct EnergyMeter {
    store: Mutex<EnergyStore>,
    source: Mutex<Box<dyn PowerSource>>,
    /// What the devices measure themselves (an ASIC board's regulator),
    /// used while every device reports power and no external meter is set.
    devices: Mutex<ExternalSource>,
    prefer_devices: bool,
    live: Mutex<Live>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl EnergyMeter {
    /// Opens the ledger in `state_dir` and picks the power source: an
    /// external meter signal if configured (read from `hub`), else RAPL,
    /// else the model calibrated as `full_load_w` at `full_hashrate_hs`.
    pub fn open(
        settings: &EnergySettings,
        state_dir: &Path,
        backend: &str,
        full_hashrate_hs: f64,
        hub: &Arc<SignalHub>,
    ) -> anyhow::Result<Arc<Self>> {
        let mut ledger = LedgerConfig::new(&settings.time_zone);
        ledger.co2_g_per_kwh = settings.co2_g_per_kwh;
        let (store, corruption) = EnergyStore::open(&store_dir(state_dir), ledger)
            .context("cannot open the energy ledger")?;
        if let Some(c) = corruption {
            warn!("energy ledger was unreadable and restarted at zero: {c}");
        }
        let model = ModelConfig::single(
            backend,
            settings.idle_w,
            settings.full_load_w,
            full_hashrate_hs.max(1.0),
        )
        .capped_at(settings.full_load_w);
        let (source, why_not_rapl) =
            meter::auto(&settings.powercap_root, model, backend).context("invalid energy model")?;
        match why_not_rapl {
            None => info!("energy meter: RAPL (powercap), model as fallback"),
            Some(e) => info!("energy meter: calibrated model ({e})"),
        }
        let source: Box<dyn PowerSource> = match &settings.meter_signal {
            Some(name) => {
                info!(
                    signal = name,
                    "energy meter: external meter signal preferred while fresh"
                );
                Box::new(FallbackSource::new(
                    Box::new(SignalMeter {
                        hub: hub.clone(),
                        signal: name.clone(),
                        inner: ExternalSource::new(Duration::from_secs(2)),
                    }),
                    source,
                ))
            }
            None => source,
        };
        Ok(Arc::new(EnergyMeter {
            store: Mutex::new(store),
            source: Mutex::new(source),
            devices: Mutex::new(ExternalSource::new(Duration::from_secs(5))),
            prefer_devices: settings.meter_signal.is_none(),
            live: Mutex::new(Live::default()),
        }))
    }

    /// Takes one sample: `hashes` were done since the last one; `mode` and
    /// `by`/`reason` say what the policy engine applies (pauses are
    /// accounted to the policy that caused them). `device_power_w` is the
    /// sum of what the devices measure, when every one of them does: it is
    /// preferred to RAPL and the model (an external meter signal still
    /// comes first).
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &self,
        now: Instant,
        hashrate_hs: f64,
        device_power_w: Option<f64>,
        mode: &Mode,
        by: &str,
        reason: &str,
        temperatures: Vec<crate::policy::Temperature>,
    ) {
        let measured = match device_power_w.filter(|_| self.prefer_devices) {
            Some(w) => {
                let mut d = lock(&self.devices);
                d.push_watts(now, w)
                    .and_then(|()| d.sample(now, hashrate_hs))
                    .map(|mut s| {
                        s.source = "devices";
                        s
                    })
                    .ok()
            }
            None => None,
        };
        let sampled = match measured {
            Some(s) => Ok(s),
            None => lock(&self.source).sample(now, hashrate_hs),
        };
        let sample = match sampled {
            Ok(s) => s,
            Err(e) => {
                warn!("energy meter sample failed: {e}");
                return;
            }
        };
        let end = jiff::Timestamp::now();
        let mining = !matches!(mode, Mode::Pause);
        let mut store = lock(&self.store);
        if sample.interval > Duration::ZERO {
            let iv = Interval::from_sample(end, &sample, hashrate_hs, mining, None);
            if let Err(e) = store.ledger_mut().record(&iv) {
                warn!("cannot record energy: {e}");
            }
            if !mining && let Err(e) = store.ledger_mut().record_pause(end, iv.secs, by, reason) {
                warn!("cannot record pause: {e}");
            }
        }
        match store.checkpoint_if_due(now) {
            Checkpoint::Failed {
                error,
                retry_in,
                report: Some(failures),
            } => warn!(
                failures,
                retry_in_s = retry_in.as_secs(),
                "cannot save the energy ledger: {error}"
            ),
            Checkpoint::Written { after_failures } if after_failures > 0 => {
                info!(after_failures, "energy ledger saved again");
            }
            Checkpoint::Failed { report: None, .. }
            | Checkpoint::Written { .. }
            | Checkpoint::Skipped => {}
        }
        let counters = store.ledger().counters(end);
        *lock(&self.live) = Live {
            power_w: sample.watts,
            hashrate_hs,
            counters: Some(counters),
            source: sample.source,
            temperatures,
        };
    }

    /// Writes the ledger now (shutdown).
    pub fn checkpoint(&self) {
        if let Err(e) = lock(&self.store).checkpoint() {
            warn!("cannot save the energy ledger: {e}");
        }
    }

    /// Latest power reading and its source.
    pub fn power(&self) -> (Option<f64>, &'static str) {
        let live = lock(&self.live);
        (live.power_w, live.source)
    }

    /// The ledger's counters as of the last sample (`None` before the
    /// first), for `/metrics`: unknown stays distinguishable from 0 kWh.
    pub fn counters(&self) -> Option<EnergyCounters> {
        lock(&self.live).counters
    }

    /// A report for the day or month containing now.
    pub fn report(&self, period: Period) -> Report {
        lock(&self.store)
            .ledger()
            .report(period, jiff::Timestamp::now())
    }
}

impl InputProvider for EnergyMeter {
    fn readings(&self) -> HostReadings {
        let live = lock(&self.live).clone();
        let c = live.counters;
        HostReadings {
            power_w: live.power_w,
            energy: Energy {
                today_kwh: c.map(|c| c.today_kwh).unwrap_or(0.0),
                month_kwh: c.map(|c| c.month_kwh).unwrap_or(0.0),
                total_kwh: c.map(|c| c.total_kwh).unwrap_or(0.0),
            },
            hashrate_hs: live.hashrate_hs,
            temperatures: live.temperatures,
        }
    }
}

/// An external power meter whose readings arrive as a signal (watts).
struct SignalMeter {
    hub: Arc<SignalHub>,
    signal: String,
    inner: ExternalSource,
}

impl PowerSource for SignalMeter {
    fn name(&self) -> &'static str {
        "external"
    }

    fn sample(
        &mut self,
        now: Instant,
        hashrate_hs: f64,
    ) -> Result<hashwatt_energy::Sample, MeterError> {
        let reading = self.hub.get(&self.signal, SystemClock.now_utc_ms());
        if let SignalValue::Number(w) = reading.value {
            let at = now
                .checked_sub(Duration::from_millis(reading.age_ms))
                .unwrap_or(now);
            self.inner.push_watts(at, w)?;
        }
        self.inner.sample(now, hashrate_hs)
    }
}

/// Prints the report of the ledger in `state_dir` (for `hashwatt energy report`).
pub fn report_from_disk(
    settings: &EnergySettings,
    state_dir: &Path,
    period: Period,
) -> anyhow::Result<Report> {
    let mut ledger = LedgerConfig::new(&settings.time_zone);
    ledger.co2_g_per_kwh = settings.co2_g_per_kwh;
    let dir = store_dir(state_dir);
    if !dir.join(hashwatt_energy::store::FILE_NAME).exists() {
        anyhow::bail!(
            "no energy ledger in {} yet (has the appliance run?)",
            dir.display()
        );
    }
    let (store, corruption) =
        EnergyStore::open(&dir, ledger).context("cannot open the energy ledger")?;
    if let Some(c) = corruption {
        anyhow::bail!("the energy ledger is unreadable: {c}");
    }
    Ok(store.ledger().report(period, jiff::Timestamp::now()))
}
