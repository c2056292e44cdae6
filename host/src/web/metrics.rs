//! Prometheus `/metrics`: the snapshot as an OpenMetrics text exposition,
//! so an existing Prometheus/Grafana setup scrapes the appliance like any
//! other exporter. Units are in the names, every series has its labels,
//! and a value the appliance does not know (power with no meter, a fan
//! without a tachometer) is absent, never reported as 0.
//!
//! Pure: [`render`] turns a [`Snapshot`] (plus the few figures the snapshot
//! does not carry, [`MetricsExtra`]) into text; mounting it, and who may
//! read it, is the panel's business.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::policy::Mode;
use crate::state::Snapshot;
use crate::status::{PoolState, PoolStatus};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Longest label value kept (longer ones are cut), so a pool's free-text
/// reject reason cannot blow up a scrape.
const MAX_LABEL_CHARS: usize = 128;
/// Reject reasons shown one by one; the rarer ones are summed as `other`,
/// so a pool inventing a new reason per share cannot explode cardinality.
const MAX_REASONS: usize = 20;

/// Figures `/metrics` shows that the [`Snapshot`] does not carry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsExtra {
    /// Energy the ledger counted since it was created, kWh; `None` before
    /// the meter's first sample (absent from the output, not 0).
    pub energy_total_kwh: Option<f64>,
}

impl MetricsExtra {
    /// Reads the extra figures from the running appliance.
    pub fn from_handle(handle: &crate::control::Appliance) -> Self {
        MetricsExtra {
            energy_total_kwh: handle.energy().counters().map(|c| c.total_kwh),
        }
    }
}

type Labels = Vec<(&'static str, String)>;

/// Escapes a label value for the text format (the encoder writes it as is)
/// and bounds its length.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_LABEL_CHARS) + 2);
    for c in value.chars().take(MAX_LABEL_CHARS) {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// One sample's value.
#[derive(Debug)]
enum Value {
    Gauge(f64),
    Flag(i64),
    Counter(u64),
    CounterF64(f64),
}

impl Value {
    fn encode(&self, e: MetricEncoder) -> std::fmt::Result {
        match *self {
            Value::Gauge(v) => ConstGauge::new(v).encode(e),
            Value::Flag(v) => ConstGauge::new(v).encode(e),
            Value::Counter(v) => ConstCounter::new(v).encode(e),
            Value::CounterF64(v) => ConstCounter::new(v).encode(e),
        }
    }
}

#[derive(Debug)]
struct Metric {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: MetricType,
    series: Vec<(Labels, Value)>,
}

/// The metrics of one scrape, encoded in the order they were added (and
/// their series in the snapshot's order); a metric without any known
/// series is left out altogether.
#[derive(Debug, Default)]
struct Scrape {
    metrics: Vec<Metric>,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        for m in &self.metrics {
            let mut e = encoder.encode_descriptor(m.name, m.help, m.unit.as_ref(), m.kind)?;
            match m.series.as_slice() {
                [(labels, v)] if labels.is_empty() => v.encode(e)?,
                series => {
                    for (labels, v) in series {
                        v.encode(e.encode_family(labels)?)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Scrape {
    fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        unit: Option<Unit>,
        kind: MetricType,
        series: Vec<(Labels, Value)>,
    ) {
        if !series.is_empty() {
            self.metrics.push(Metric {
                name,
                help,
                unit,
                kind,
                series,
            });
        }
    }

    fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        unit: Option<Unit>,
        series: Vec<(Labels, f64)>,
    ) {
        let series = series
            .into_iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(l, v)| (l, Value::Gauge(v)))
            .collect();
        self.add(name, help, unit, MetricType::Gauge, series);
    }

    /// A 0/1 (or small integer) gauge.
    fn flag(&mut self, name: &'static str, help: &'static str, series: Vec<(Labels, i64)>) {
        let series = series
            .into_iter()
            .map(|(l, v)| (l, Value::Flag(v)))
            .collect();
        self.add(name, help, None, MetricType::Gauge, series);
    }

    fn counter(&mut self, name: &'static str, help: &'static str, series: Vec<(Labels, u64)>) {
        let series = series
            .into_iter()
            .map(|(l, v)| (l, Value::Counter(v)))
            .collect();
        self.add(name, help, None, MetricType::Counter, series);
    }

    fn counter_f64(
        &mut self,
        name: &'static str,
        help: &'static str,
        unit: Unit,
        value: Option<f64>,
    ) {
        let series = value
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| (vec![], Value::CounterF64(v)))
            .into_iter()
            .collect();
        self.add(name, help, Some(unit), MetricType::Counter, series);
    }
}

fn pool_labels(p: &PoolStatus) -> Labels {
    vec![("pool", label(&p.url)), ("pool_id", p.id.to_string())]
}

fn state_name(s: PoolState) -> &'static str {
    match s {
        PoolState::Connecting => "connecting",
        PoolState::Healthy => "healthy",
        PoolState::Disabled => "disabled",
        PoolState::Off => "off",
    }
}

/// The snapshot as OpenMetrics text (ends with `# EOF`).
pub fn render(snapshot: &Snapshot, extra: &MetricsExtra) -> String {
    let mut registry = Registry::with_prefix("hashwatt");
    let mut s = Scrape::default();
    let c = &snapshot.shares;

    registry.register(
        "build",
        "The running hashwatt version",
        Info::new(vec![("version", label(snapshot.version))]),
    );
    s.gauge(
        "uptime",
        "Time since the appliance started",
        Some(Unit::Seconds),
        vec![(vec![], snapshot.uptime_secs as f64)],
    );

    // Hashing.
    let hs = || Some(Unit::Other("hashes_per_second".into()));
    s.gauge(
        "hashrate",
        "Total hashrate over the window",
        hs(),
        vec![
            (vec![("window", "10s".into())], snapshot.hashrate_10s_hs),
            (vec![("window", "1m".into())], snapshot.hashrate_1m_hs),
        ],
    );
    let dev = |name: &str| -> Labels { vec![("device", label(name))] };
    let devices = &snapshot.devices;
    s.gauge(
        "device_hashrate",
        "A device's hashrate over 10 s",
        hs(),
        devices
            .iter()
            .map(|d| (dev(&d.info.name), d.hashrate_10s_hs))
            .collect(),
    );
    s.counter(
        "device_solutions",
        "Solutions a device reported",
        devices
            .iter()
            .map(|d| (dev(&d.info.name), d.solutions))
            .collect(),
    );
    s.counter(
        "device_hardware_errors",
        "Solutions of a device that failed the host's re-check",
        devices
            .iter()
            .map(|d| (dev(&d.info.name), d.hardware_errors))
            .collect(),
    );
    s.flag(
        "device_paused",
        "1 while a device is paused",
        devices
            .iter()
            .map(|d| (dev(&d.info.name), i64::from(d.telemetry.paused)))
            .collect(),
    );
    s.gauge(
        "device_power",
        "Power a device measures itself drawing",
        Some(Unit::Other("watts".into())),
        devices
            .iter()
            .filter_map(|d| Some((dev(&d.info.name), d.telemetry.power_w?)))
            .collect(),
    );
    s.gauge(
        "device_power_limit",
        "The power limit in force on a device",
        Some(Unit::Other("watts".into())),
        devices
            .iter()
            .filter_map(|d| Some((dev(&d.info.name), d.telemetry.power_limit_w?)))
            .collect(),
    );
    s.gauge(
        "temperature",
        "A device's temperature sensor",
        Some(Unit::Celsius),
        devices
            .iter()
            .flat_map(|d| {
                d.telemetry.temperatures.iter().map(|t| {
                    (
                        vec![("device", label(&d.info.name)), ("sensor", label(&t.label))],
                        t.temp_c,
                    )
                })
            })
            .collect(),
    );
    let fan_series = |f: &dyn Fn(&crate::device::FanReading) -> Option<f64>| -> Vec<(Labels, f64)> {
        devices
            .iter()
            .flat_map(|d| {
                d.telemetry.fans.iter().filter_map(|fan| {
                    Some((
                        vec![("device", label(&d.info.name)), ("fan", label(&fan.label))],
                        f(fan)?,
                    ))
                })
            })
            .collect()
    };
    s.gauge(
        "fan_speed",
        "A fan's speed",
        Some(Unit::Other("rpm".into())),
        fan_series(&|f| f.rpm.map(f64::from)),
    );
    s.gauge(
        "fan_duty",
        "A fan's duty cycle",
        Some(Unit::Other("percent".into())),
        fan_series(&|f| f.percent),
    );

    // Energy.
    s.gauge(
        "power",
        "Power the appliance draws, by where the figure comes from",
        Some(Unit::Other("watts".into())),
        snapshot
            .power_w
            .map(|w| (vec![("source", label(snapshot.power_source))], w))
            .into_iter()
            .collect(),
    );
    s.counter_f64(
        "energy",
        "Energy counted by the ledger since it was created",
        Unit::Other("kilowatt_hours".into()),
        extra.energy_total_kwh,
    );
    let efficiency = snapshot
        .power_w
        .filter(|_| snapshot.hashrate_10s_hs > 0.0)
        .map(|w| w / (snapshot.hashrate_10s_hs / 1e12));
    s.gauge(
        "efficiency",
        "Energy per unit of work now: power over the 10 s hashrate",
        Some(Unit::Other("joules_per_terahash".into())),
        efficiency.map(|e| (vec![], e)).into_iter().collect(),
    );

    // Shares and pools.
    let mut shares = Vec::new();
    for p in &c.pools {
        for (result, n) in [
            ("accepted", p.accepted),
            ("rejected", p.rejected),
            ("stale", p.stale),
            ("throttled", p.throttled),
        ] {
            let mut l = pool_labels(p);
            l.push(("result", result.into()));
            shares.push((l, n));
        }
    }
    s.counter("shares", "Shares by pool and outcome", shares);
    let mut reasons: Vec<(&String, &u64)> = c.rejected.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let other: u64 = reasons.iter().skip(MAX_REASONS).map(|(_, n)| **n).sum();
    let mut by_reason: Vec<(Labels, u64)> = reasons
        .iter()
        .take(MAX_REASONS)
        .map(|(r, n)| (vec![("reason", label(r))], **n))
        .collect();
    if other > 0 {
        by_reason.push((vec![("reason", "other".into())], other));
    }
    s.counter(
        "shares_rejected",
        "Shares the pools rejected, by the reason they gave (all pools)",
        by_reason,
    );
    s.flag(
        "shares_in_flight",
        "Shares submitted and not yet answered",
        c.pools
            .iter()
            .map(|p| {
                (
                    pool_labels(p),
                    i64::try_from(p.in_flight).unwrap_or(i64::MAX),
                )
            })
            .collect(),
    );
    s.counter(
        "blocks_found",
        "Block candidates found (the hash met the network target)",
        vec![(vec![], c.blocks)],
    );
    s.counter(
        "jobs",
        "Jobs received from the pools",
        vec![(vec![], c.jobs)],
    );
    s.counter(
        "pool_connects",
        "Connections made to a pool",
        c.pools
            .iter()
            .map(|p| (pool_labels(p), p.connects))
            .collect(),
    );
    let mut states = Vec::new();
    for p in &c.pools {
        for st in [
            PoolState::Connecting,
            PoolState::Healthy,
            PoolState::Disabled,
            PoolState::Off,
        ] {
            let mut l = pool_labels(p);
            l.push(("plugin", label(&p.plugin)));
            l.push(("state", state_name(st).into()));
            states.push((l, i64::from(p.state == st)));
        }
    }
    s.flag(
        "pool_state",
        "1 for the state a pool and its plugin are in, 0 for the others",
        states,
    );
    s.flag(
        "pool_active",
        "1 for the pool mined on now",
        c.pools
            .iter()
            .map(|p| (pool_labels(p), i64::from(c.active_pool_id == Some(p.id))))
            .collect(),
    );
    s.flag(
        "pool_session_info",
        "1 per connected pool whose plugin reported what the session negotiated (protocol, channel, encryption, authority)",
        c.pools
            .iter()
            .filter_map(|p| {
                let session = p.session.as_ref()?;
                let mut l = pool_labels(p);
                l.push(("protocol", label(&session.protocol)));
                l.push(("channel", label(session.channel.as_deref().unwrap_or(""))));
                l.push(("encrypted", session.encrypted.to_string()));
                l.push(("authority", label(session.authority.as_deref().unwrap_or(""))));
                Some((l, 1))
            })
            .collect(),
    );
    s.counter(
        "plugin_restarts",
        "Times a pool's plugin instance was restarted after a failure",
        c.pools
            .iter()
            .map(|p| (pool_labels(p), p.plugin_restarts))
            .collect(),
    );
    s.counter(
        "plugin_refused_actions",
        "Plugin actions the host refused (invalid jobs, targets)",
        vec![(vec![], c.refused_actions)],
    );

    // Energy policies and the decision.
    let policies = &snapshot.energy.policies;
    let pol = |name: &str| -> Labels { vec![("policy", label(name))] };
    s.counter(
        "policy_failures",
        "A policy's failures: traps, timeouts, invalid decisions, failed restarts",
        policies
            .iter()
            .map(|p| (pol(&p.name), p.failures))
            .collect(),
    );
    s.flag(
        "policy_enabled",
        "1 while a policy takes part in arbitration",
        policies
            .iter()
            .map(|p| (pol(&p.name), i64::from(p.enabled)))
            .collect(),
    );
    s.flag(
        "policy_fail_safe",
        "1 while a policy's fail-safe applies instead of its own decision",
        policies
            .iter()
            .map(|p| (pol(&p.name), i64::from(p.fail_safe_active)))
            .collect(),
    );
    let verdict = &snapshot.energy.verdict;
    let mode = match verdict.mode {
        Mode::Run => "run",
        Mode::Limit(_) => "limit",
        Mode::Pause => "pause",
    };
    s.flag(
        "mining_decision",
        "1 for the mode that applies (and who decided), 0 for the others",
        ["run", "limit", "pause"]
            .into_iter()
            .map(|m| {
                (
                    vec![("mode", m.into()), ("by", label(&verdict.by))],
                    i64::from(m == mode),
                )
            })
            .collect(),
    );
    s.gauge(
        "mining_power_limit",
        "The power limit the decision sets (only while limited)",
        Some(Unit::Other("watts".into())),
        match verdict.mode {
            Mode::Limit(w) => vec![(vec![], w)],
            _ => vec![],
        },
    );
    s.flag(
        "manual_override",
        "1 while the operator's manual override is set",
        vec![(vec![], i64::from(snapshot.energy.manual.is_some()))],
    );

    registry.register_collector(Box::new(s));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::device::{DeviceInfo, FanReading, Telemetry, TempReading, UnitTelemetry};
    use crate::policy::arbiter::Verdict;
    use crate::policy::engine::{EngineStatus, PolicyStatus};
    use crate::state::DeviceSnapshot;
    use crate::status::Counters;

    fn device(name: &str, kind: &'static str) -> DeviceSnapshot {
        DeviceSnapshot {
            info: DeviceInfo {
                name: name.into(),
                kind,
                model: "test".into(),
                rolls_version: true,
                rolls_ntime: true,
                max_tasks: 1,
                min_difficulty: 0.001,
                power_limit: false,
            },
            hashrate_10s_hs: 0.0,
            unit_hashrates_10s_hs: vec![],
            telemetry: Telemetry {
                units: vec![UnitTelemetry {
                    name: "u0".into(),
                    hashes: 0,
                    hardware_errors: 0,
                }],
                temperatures: vec![],
                fans: vec![],
                power_w: None,
                paused: false,
                power_limit_w: None,
                tasks_in_flight: 0,
                problem: None,
            },
            solutions: 0,
            hardware_errors: 0,
        }
    }

    /// Two devices (one that knows nothing about itself), two pools, a
    /// policy that limits the power.
    pub(crate) fn fixture() -> Snapshot {
        let mut asic = device("bm1370-0", "asic");
        asic.info.model = "BM1370 × 1 chip".into();
        asic.hashrate_10s_hs = 1.2e12;
        asic.solutions = 40;
        asic.hardware_errors = 2;
        asic.telemetry.temperatures = vec![
            TempReading {
                label: "chip".into(),
                temp_c: 52.5,
            },
            TempReading {
                label: "vr \"main\"".into(),
                temp_c: 61.0,
            },
        ];
        asic.telemetry.fans = vec![FanReading {
            label: "fan0".into(),
            rpm: Some(4200),
            percent: None,
        }];
        asic.telemetry.power_w = Some(14.5);
        let mut cpu = device("cpu", "cpu");
        cpu.hashrate_10s_hs = 3.0e6;
        cpu.telemetry.paused = true;
        let mut rejected = BTreeMap::new();
        rejected.insert("Job not found".to_string(), 3);
        rejected.insert("duplicate".to_string(), 1);
        Snapshot {
            version: "9.8.7",
            at_ms: 1_764_700_000_000,
            uptime_secs: 3600,
            hashrate_10s_hs: 1.2e12 + 3.0e6,
            hashrate_1m_hs: 1.1e12,
            devices: vec![asic, cpu],
            shares: Counters {
                accepted: 30,
                rejected,
                stale: 2,
                blocks: 0,
                jobs: 12,
                refused_actions: 1,
                active_pool: Some(0),
                active_pool_id: Some(7),
                pools: vec![
                    PoolStatus {
                        id: 7,
                        url: "stratum+tcp://pool.example:3333".into(),
                        user: "me.worker".into(),
                        state: PoolState::Healthy,
                        accepted: 30,
                        rejected: 4,
                        stale: 2,
                        throttled: 0,
                        connects: 1,
                        plugin_restarts: 2,
                        plugin: "stratum-v1 (built in)".into(),
                        session: Some(crate::status::SessionInfo {
                            protocol: "Stratum V1".into(),
                            details: vec![("extranonce2".into(), "8 bytes".into())],
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    PoolStatus {
                        id: 9,
                        url: "stratum+tcp://backup.example:3333".into(),
                        state: PoolState::Off,
                        plugin: "stratum-v1 (built in)".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            energy: EngineStatus {
                verdict: Verdict {
                    mode: Mode::Limit(150.0),
                    by: "surplus".into(),
                    reason: "export 150 W".into(),
                    since_ms: 0,
                },
                manual: None,
                policies: vec![PolicyStatus {
                    name: "surplus".into(),
                    enabled: true,
                    running: true,
                    last_mode: Some(Mode::Limit(150.0)),
                    reason: "export 150 W".into(),
                    fail_safe_active: false,
                    failures: 3,
                    last_error: None,
                    last_eval_ms: None,
                }],
            },
            decision: "limited to 150 W by surplus: export 150 W".into(),
            power_w: Some(120.0),
            power_source: "rapl",
            efficiency_j_th: None,
        }
    }

    #[test]
    fn fixture_renders_every_metric_with_units_and_labels() {
        let text = render(
            &fixture(),
            &MetricsExtra {
                energy_total_kwh: Some(12.25),
            },
        );
        let expected = [
            "hashwatt_build_info{version=\"9.8.7\"} 1",
            "hashwatt_uptime_seconds 3600.0",
            "hashwatt_hashrate_hashes_per_second{window=\"1m\"} 1100000000000.0",
            "hashwatt_device_hashrate_hashes_per_second{device=\"bm1370-0\"} 1200000000000.0",
            "hashwatt_device_hashrate_hashes_per_second{device=\"cpu\"} 3000000.0",
            "hashwatt_device_solutions_total{device=\"bm1370-0\"} 40",
            "hashwatt_device_hardware_errors_total{device=\"bm1370-0\"} 2",
            "hashwatt_device_hardware_errors_total{device=\"cpu\"} 0",
            "hashwatt_device_paused{device=\"cpu\"} 1",
            "hashwatt_device_power_watts{device=\"bm1370-0\"} 14.5",
            "hashwatt_temperature_celsius{device=\"bm1370-0\",sensor=\"chip\"} 52.5",
            "hashwatt_temperature_celsius{device=\"bm1370-0\",sensor=\"vr \\\"main\\\"\"} 61.0",
            "hashwatt_fan_speed_rpm{device=\"bm1370-0\",fan=\"fan0\"} 4200.0",
            "hashwatt_power_watts{source=\"rapl\"} 120.0",
            "hashwatt_energy_kilowatt_hours_total 12.25",
            "hashwatt_efficiency_joules_per_terahash 99.999750000625",
            "hashwatt_shares_total{pool=\"stratum+tcp://pool.example:3333\",pool_id=\"7\",result=\"accepted\"} 30",
            "hashwatt_shares_total{pool=\"stratum+tcp://pool.example:3333\",pool_id=\"7\",result=\"rejected\"} 4",
            "hashwatt_shares_total{pool=\"stratum+tcp://pool.example:3333\",pool_id=\"7\",result=\"stale\"} 2",
            "hashwatt_shares_total{pool=\"stratum+tcp://pool.example:3333\",pool_id=\"7\",result=\"throttled\"} 0",
            "hashwatt_shares_rejected_total{reason=\"Job not found\"} 3",
            "hashwatt_shares_rejected_total{reason=\"duplicate\"} 1",
            "hashwatt_blocks_found_total 0",
            "hashwatt_jobs_total 12",
            "hashwatt_pool_state{pool=\"stratum+tcp://pool.example:3333\",pool_id=\"7\",plugin=\"stratum-v1 (built in)\",state=\"healthy\"} 1",
            "hashwatt_pool_state{pool=\"stratum+tcp://pool.example:3333\",pool_id=\"7\",plugin=\"stratum-v1 (built in)\",state=\"connecting\"} 0",
            "hashwatt_pool_state{pool=\"stratum+tcp://backup.example:3333\",pool_id=\"9\",plugin=\"stratum-v1 (built in)\",state=\"off\"} 1",
            "hashwatt_pool_active{pool=\"stratum+tcp://pool.example:3333\",pool_id=\"7\"} 1",
            "hashwatt_pool_active{pool=\"stratum+tcp://backup.example:3333\",pool_id=\"9\"} 0",
            "hashwatt_pool_session_info{pool=\"stratum+tcp://pool.example:3333\",pool_id=\"7\",protocol=\"Stratum V1\",channel=\"\",encrypted=\"false\",authority=\"\"} 1",
            "hashwatt_plugin_restarts_total{pool=\"stratum+tcp://pool.example:3333\",pool_id=\"7\"} 2",
            "hashwatt_plugin_refused_actions_total 1",
            "hashwatt_policy_failures_total{policy=\"surplus\"} 3",
            "hashwatt_policy_enabled{policy=\"surplus\"} 1",
            "hashwatt_policy_fail_safe{policy=\"surplus\"} 0",
            "hashwatt_mining_decision{mode=\"limit\",by=\"surplus\"} 1",
            "hashwatt_mining_decision{mode=\"run\",by=\"surplus\"} 0",
            "hashwatt_mining_decision{mode=\"pause\",by=\"surplus\"} 0",
            "hashwatt_mining_power_limit_watts 150.0",
            "hashwatt_manual_override 0",
            "# TYPE hashwatt_shares counter",
            "# UNIT hashwatt_temperature_celsius celsius",
            "# TYPE hashwatt_build info",
        ];
        let lines: Vec<&str> = text.lines().collect();
        for want in expected {
            assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
        }
        assert_eq!(lines.last(), Some(&"# EOF"));
        // Series come in the snapshot's order (pools by priority), so two
        // scrapes of the same state are the same text.
        let shares: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with("hashwatt_shares_total{"))
            .collect();
        assert!(shares[0].contains("pool_id=\"7\",result=\"accepted\""));
        assert!(shares[4].contains("pool_id=\"9\",result=\"accepted\""));
        assert_eq!(
            text,
            render(
                &fixture(),
                &MetricsExtra {
                    energy_total_kwh: Some(12.25)
                }
            )
        );
        // Every sample line is `name{labels} value` with a number.
        for l in lines.iter().filter(|l| !l.starts_with('#')) {
            let (name, value) = l.rsplit_once(' ').expect("sample line");
            assert!(name.starts_with("hashwatt_"), "{l}");
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn unknown_values_are_absent_not_zero() {
        let mut snap = fixture();
        snap.power_w = None;
        snap.energy.verdict.mode = Mode::Run;
        snap.devices[0].telemetry.power_w = None;
        snap.devices[0].telemetry.fans[0].rpm = None;
        let text = render(&snap, &MetricsExtra::default());
        for absent in [
            "hashwatt_power_watts",
            "hashwatt_device_power_watts",
            "hashwatt_energy_kilowatt_hours",
            "hashwatt_efficiency_joules_per_terahash",
            "hashwatt_fan_speed_rpm",
            "hashwatt_fan_duty_percent",
            "hashwatt_mining_power_limit_watts",
        ] {
            assert!(
                !text.lines().any(|l| l.starts_with(absent)),
                "{absent} is unknown and must be absent:\n{text}"
            );
        }
        // The CPU has no sensors: no temperature series for it.
        assert!(!text.contains("device=\"cpu\",sensor"), "{text}");
        assert!(text.contains("hashwatt_mining_decision{mode=\"run\",by=\"surplus\"} 1"));
    }

    #[test]
    fn rare_reject_reasons_are_summed_and_labels_bounded() {
        let mut snap = fixture();
        for i in 0..(MAX_REASONS + 5) {
            snap.shares
                .rejected
                .insert(format!("reason {i:02} {}", "x".repeat(300)), 1);
        }
        let text = render(&snap, &MetricsExtra::default());
        let n = text
            .lines()
            .filter(|l| l.starts_with("hashwatt_shares_rejected_total{"))
            .count();
        assert_eq!(n, MAX_REASONS + 1, "{text}");
        // 2 fixture reasons + 25 new ones, 20 kept: 7 ones in `other`.
        assert!(text.contains("hashwatt_shares_rejected_total{reason=\"other\"} 7"));
        assert!(text.lines().all(|l| l.len() < 600));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\\b\"c\nd\u{7}"), "a\\\\b\\\"c\\nd ");
    }
}
