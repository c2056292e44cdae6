//! The ASIC device on the device layer, end to end: the BM13xx chain driver
//! on a real pseudo-terminal to the chip-chain emulator, an emulated board
//! (rail, sensors, fan) whose heat follows the chips' clocks, and the whole
//! appliance mining through the stratum-v1 plugin to the devpool.

mod common;

use std::sync::Arc;
use std::time::Duration;

use hashwatt::app::{App, StartOptions};
use hashwatt::control::Command;
use hashwatt::device::Device;
use hashwatt::device::asic::{AsicDevice, AsicSettings};
use hashwatt::device::asic_emulated::EmulatedChain;
use hashwatt_asic::autotune::{self, TuneBounds, TuneGoal};
use hashwatt_asic::board::emulated::EmulatedParams;
use hashwatt_asic::emulator::{Emulator, EmulatorConfig};
use hashwatt_asic::model::Model;
use hashwatt_asic::thermal::ThermalConfig;

const LIMIT: Duration = Duration::from_secs(240);
/// Difficulty the emulated chips report at: 4096 hashes a nonce.
const REPORT: f64 = 1.0 / 1_048_576.0;
/// Emulated chain hashrate at the default clock: ~250 nonces/s.
const RATE: f64 = 1_000_000.0;
/// The devpool's share difficulty: one nonce in 16 is a share.
const SHARE: f64 = 1.0 / 65_536.0;
/// Emulated board time runs this much faster than the wall clock (the
/// thermal loop still sees several rounds per time constant).
const SPEED: u32 = 2;

/// The emulated chain and board of the library, with the tests' settings.
struct Rig(EmulatedChain);

impl std::ops::Deref for Rig {
    type Target = EmulatedChain;
    fn deref(&self) -> &EmulatedChain {
        &self.0
    }
}

impl Rig {
    fn new(model: Model, chips: usize, params: EmulatedParams) -> Rig {
        Rig(
            EmulatedChain::start(model, chips, RATE, REPORT, params, SPEED)
                .expect("emulator starts"),
        )
    }

    fn settings(&self, _model: Model, _chips: usize, tune_dir: &std::path::Path) -> AsicSettings {
        AsicSettings {
            thermal: ThermalConfig {
                throttle_interval: Duration::from_millis(500),
                ..ThermalConfig::default()
            },
            ..self.0.settings("asic0", tune_dir)
        }
    }
}

async fn appliance(pool: std::net::SocketAddr, device: Arc<AsicDevice>) -> App {
    App::start_with(
        common::config(&[pool], 1),
        StartOptions {
            config_path: None,
            devices: Some(vec![device]),
            record_dir: None,
        },
    )
    .await
    .expect("appliance starts")
}

fn problem(app: &App) -> Option<String> {
    app.handle().snapshot().devices[0].telemetry.problem.clone()
}

fn chip_hashes(app: &App) -> Vec<u64> {
    app.handle().snapshot().devices[0]
        .telemetry
        .units
        .iter()
        .map(|u| u.hashes)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_chips_mine_through_the_stack_with_nothing_rejected() {
    common::bounded(LIMIT, async {
        let pool = common::devpool(SHARE).await;
        let tmp = tempfile::tempdir().unwrap();
        let rig = Rig::new(Model::BM1370, 4, EmulatedParams::default());
        let dev = rig.device(rig.settings(Model::BM1370, 4, tmp.path()));
        let app = appliance(pool.local_addr(), dev.clone()).await;
        assert!(
            common::wait_for(Duration::from_secs(90), || pool.stats().accepted >= 30).await,
            "shares from the chain: {:?}; device: {:?}",
            pool.stats(),
            dev.telemetry()
        );
        let stats = pool.stats();
        assert!(stats.rejected.is_empty(), "{stats:?}");
        let snap = app.handle().snapshot();
        let d = &snap.devices[0];
        assert_eq!(d.info.kind, "asic");
        assert_eq!(d.telemetry.units.len(), 4, "one unit per chip");
        assert!(
            d.telemetry.units.iter().all(|u| u.hashes > 0),
            "{:?}",
            d.telemetry.units
        );
        assert_eq!(d.telemetry.temperatures.len(), 4, "a temperature per chip");
        assert!(d.telemetry.power_w.is_some_and(|w| w > 0.0));
        assert_eq!(d.hardware_errors, 0);
        assert_eq!(d.telemetry.problem, None);
        // The appliance's energy comes from the board's rail, not a model.
        assert!(
            common::wait_for(Duration::from_secs(10), || app
                .handle()
                .snapshot()
                .power_source
                == "devices")
            .await,
            "power source {}",
            app.handle().snapshot().power_source
        );
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_chip_is_reported_while_the_others_hash() {
    common::bounded(LIMIT, async {
        let pool = common::devpool(SHARE).await;
        let tmp = tempfile::tempdir().unwrap();
        let rig = Rig::new(Model::BM1366, 4, EmulatedParams::default());
        let app = appliance(
            pool.local_addr(),
            rig.device(rig.settings(Model::BM1366, 4, tmp.path())),
        )
        .await;
        assert!(common::wait_for(Duration::from_secs(90), || pool.stats().accepted >= 5).await);
        rig.emulator.faults().set_dead(2, true);
        assert!(
            common::wait_for(Duration::from_secs(60), || {
                problem(&app).is_some_and(|p| p.contains("chip 2 not answering"))
            })
            .await,
            "problem: {:?}",
            problem(&app)
        );
        let before = chip_hashes(&app);
        let accepted = pool.stats().accepted;
        assert!(
            common::wait_for(Duration::from_secs(60), || {
                let now = chip_hashes(&app);
                pool.stats().accepted > accepted + 3
                    && [0, 1, 3].iter().all(|&c| now[c] > before[c])
            })
            .await,
            "the other chips kept hashing"
        );
        assert_eq!(
            chip_hashes(&app)[2],
            before[2],
            "the dead chip found nothing"
        );
        assert!(pool.stats().rejected.is_empty());
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overheat_throttles_then_stops_with_the_reason_in_status() {
    common::bounded(LIMIT, async {
        let pool = common::devpool(SHARE).await;
        let tmp = tempfile::tempdir().unwrap();
        let rig = Rig::new(Model::BM1368, 4, EmulatedParams::default());
        let settings = rig.settings(Model::BM1368, 4, tmp.path());
        let nominal = settings.chain.frequency_mhz;
        let app = appliance(pool.local_addr(), rig.device(settings)).await;
        assert!(common::wait_for(Duration::from_secs(90), || pool.stats().accepted >= 3).await);
        // Chip 3 gets hot (~85 °C with the fan at full): the clock comes
        // down while the chain keeps hashing.
        rig.board.set_extra_heat(3, 35.0).unwrap();
        assert!(
            common::wait_for(Duration::from_secs(90), || {
                rig.board.rail_enabled()
                    && rig
                        .emulator
                        .chip_frequency_mhz(0)
                        .is_some_and(|f| f < nominal - 1.0)
            })
            .await,
            "no throttle: {:?} MHz, chip 3 at {:?} °C",
            rig.emulator.chip_frequency_mhz(0),
            rig.board.chip_temp_c(3)
        );
        eprintln!(
            "throttled to {:?} MHz at {:?} °C; problem {:?}",
            rig.emulator.chip_frequency_mhz(0),
            rig.board.chip_temp_c(3),
            problem(&app)
        );
        assert!(problem(&app).is_none_or(|p| !p.starts_with("stopped")));
        // Hotter still: a safe stop, with the reason.
        rig.board.set_extra_heat(3, 120.0).unwrap();
        assert!(
            common::wait_for(Duration::from_secs(90), || {
                problem(&app).is_some_and(|p| p.starts_with("stopped: chip 3"))
            })
            .await,
            "no stop: {:?}, chip 3 at {:?} °C",
            problem(&app),
            rig.board.chip_temp_c(3)
        );
        let reason = problem(&app).unwrap();
        eprintln!("status: {reason}");
        assert!(reason.contains("90 °C"), "{reason}");
        assert!(!rig.board.rail_enabled(), "the rail is off while stopped");
        // The status line carries it too.
        assert!(app.handle().snapshot().devices[0].hashrate_10s_hs >= 0.0);
        // Cooled down, the chain comes back and mines again.
        rig.board.set_extra_heat(3, 0.0).unwrap();
        let accepted = pool.stats().accepted;
        assert!(
            common::wait_for(Duration::from_secs(120), || {
                problem(&app).is_none() && pool.stats().accepted > accepted
            })
            .await,
            "no recovery: {:?}",
            problem(&app)
        );
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_power_limit_act_on_the_chain() {
    common::bounded(LIMIT, async {
        let pool = common::devpool(SHARE).await;
        let tmp = tempfile::tempdir().unwrap();
        let rig = Rig::new(Model::BM1370, 2, EmulatedParams::default());
        let settings = rig.settings(Model::BM1370, 2, tmp.path());
        let nominal = settings.chain.frequency_mhz;
        let dev = rig.device(settings);
        let app = appliance(pool.local_addr(), dev.clone()).await;
        assert!(common::wait_for(Duration::from_secs(90), || pool.stats().accepted >= 3).await);
        // A power limit under today's draw lowers the clock until it holds.
        let full = rig.board.total_power_w();
        let limit = full * 0.6;
        dev.control(hashwatt::device::Control::PowerLimit(Some(limit)))
            .unwrap();
        assert!(
            common::wait_for(Duration::from_secs(60), || {
                rig.board.total_power_w() <= limit
                    && rig
                        .emulator
                        .chip_frequency_mhz(0)
                        .is_some_and(|f| f < nominal)
            })
            .await,
            "draw {} W over the {limit} W limit",
            rig.board.total_power_w()
        );
        eprintln!(
            "limit {limit:.1} W (of {full:.1} W): {:.1} W at {:?} MHz",
            rig.board.total_power_w(),
            rig.emulator.chip_frequency_mhz(0)
        );
        dev.control(hashwatt::device::Control::PowerLimit(None))
            .unwrap();
        // The energy policies' pause reaches the chain: rail off, no shares.
        app.execute(Command::Pause { minutes: None }).await.unwrap();
        assert!(
            common::wait_for(Duration::from_secs(30), || !rig.board.rail_enabled()).await,
            "the rail stays on while paused"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let accepted = pool.stats().accepted;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(pool.stats().accepted, accepted, "shares while paused");
        assert!(dev.telemetry().paused);
        app.execute(Command::Resume).await.unwrap();
        assert!(
            common::wait_for(Duration::from_secs(60), || pool.stats().accepted > accepted).await,
            "no shares after resume: {:?}",
            dev.telemetry()
        );
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autotune_converges_and_its_result_survives_a_restart() {
    common::bounded(LIMIT, async {
        let pool = common::devpool(SHARE).await;
        let tmp = tempfile::tempdir().unwrap();
        let params = EmulatedParams {
            voltage_range_mv: None,
            ..EmulatedParams::default()
        };
        let rig = Rig::new(Model::BM1370, 1, params);
        let mut settings = rig.settings(Model::BM1370, 1, tmp.path());
        // ~15 W at 525 MHz for one chip: aim for 10 W.
        settings.autotune = Some(TuneGoal::PowerTarget(10.0));
        settings.tune_bounds = Some(TuneBounds {
            min_mhz: 200.0,
            max_mhz: 600.0,
            step_mhz: 50.0,
            voltage: None,
        });
        let app = appliance(pool.local_addr(), rig.device(settings.clone())).await;
        let saved = || autotune::load(tmp.path(), "emulated-board").ok().flatten();
        assert!(
            common::wait_for(Duration::from_secs(150), || saved().is_some()).await,
            "autotune never finished: {:?}",
            problem(&app)
        );
        let result = saved().unwrap();
        eprintln!("autotune result: {result:?}");
        assert!(result.power_w <= 10.0, "{result:?}");
        assert!(
            (200.0..=600.0).contains(&result.frequency_mhz) && result.frequency_mhz > 200.0,
            "{result:?}"
        );
        assert!(
            common::wait_for(Duration::from_secs(30), || {
                rig.emulator
                    .chip_frequency_mhz(0)
                    .is_some_and(|f| (f - result.frequency_mhz).abs() < 1.0)
            })
            .await
        );
        app.shutdown().await;

        // Restart: the saved result is applied at once, no new search.
        let before =
            std::fs::metadata(autotune::result_path(tmp.path(), "emulated-board").unwrap())
                .unwrap()
                .modified()
                .unwrap();
        let dev = rig.device(settings);
        let app = appliance(pool.local_addr(), dev.clone()).await;
        let accepted = pool.stats().accepted;
        assert!(
            common::wait_for(Duration::from_secs(60), || {
                pool.stats().accepted > accepted
                    && rig
                        .emulator
                        .chip_frequency_mhz(0)
                        .is_some_and(|f| (f - result.frequency_mhz).abs() < 1.0)
            })
            .await,
            "not mining at the saved clock: {:?} MHz; {:?}; pool {:?}",
            rig.emulator.chip_frequency_mhz(0),
            dev.telemetry(),
            pool.stats()
        );
        assert!(problem(&app).is_none_or(|p| !p.contains("autotuning")));
        let after = std::fs::metadata(autotune::result_path(tmp.path(), "emulated-board").unwrap())
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(
            before, after,
            "the saved result was re-used, not tuned again"
        );
        app.shutdown().await;
    })
    .await;
}

/// The chain configured in the file (`[[asic]]`), its board read from a
/// hwmon tree laid out as the kernel does, and no CPU mining.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_from_the_config_file_mines_without_the_cpu() {
    common::bounded(LIMIT, async {
        let pool = common::devpool(SHARE).await;
        let emu = Emulator::spawn(EmulatorConfig {
            model: Model::BM1366,
            chips: 2,
            hashrate_hs: RATE,
            difficulty: REPORT,
        })
        .unwrap();
        let hwmon = tempfile::tempdir().unwrap();
        let dev = hwmon.path().join("hwmon3");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("name"), "emc2101\n").unwrap();
        std::fs::write(dev.join("temp1_input"), "51250\n").unwrap();
        let text = format!(
            "[[pools]]\nurl = \"stratum+tcp://{}\"\nuser = \"test.worker\"\n\n\
             [[asic]]\nport = \"{}\"\nmodel = \"bm1366\"\nchips = 2\nmin_nonce_difficulty = {REPORT:e}\n\
             [asic.board]\nhwmon_root = \"{}\"\ntemp_sensor = \"emc2101\"\n",
            pool.local_addr(),
            emu.tty_path().display(),
            hwmon.path().display(),
        );
        let path = hwmon.path().join("hashwatt.toml");
        let mut config = hashwatt::config::Config::parse(&path, &text).expect("the file parses");
        config.state_dir = common::state_dir();
        let app = App::start(config).await.expect("appliance starts");
        assert!(
            common::wait_for(Duration::from_secs(90), || pool.stats().accepted >= 10).await,
            "{:?}",
            app.handle().snapshot().devices.iter().map(|d| d.telemetry.problem.clone()).collect::<Vec<_>>()
        );
        let snap = app.handle().snapshot();
        assert_eq!(snap.devices.len(), 1, "the chain only: no CPU device");
        let d = &snap.devices[0];
        assert_eq!((d.info.name.as_str(), d.info.kind), ("asic0", "asic"));
        assert_eq!(d.telemetry.units.len(), 2);
        let temps: Vec<f64> = d.telemetry.temperatures.iter().map(|t| t.temp_c).collect();
        assert_eq!(temps, [51.25, 51.25], "the board sensor stands for both chips");
        assert!(
            !d.info.power_limit,
            "no regulator configured: no power reading, so no power limit is offered"
        );
        assert!(pool.stats().rejected.is_empty());
        app.shutdown().await;

        // A chain without a temperature sensor is refused with the reason.
        let bad = text.replace("temp_sensor = \"emc2101\"\n", "");
        let e = hashwatt::config::Config::parse(&path, &bad).unwrap_err().to_string();
        assert!(e.contains("asic[0].board.temp_sensor") && e.contains("no temperature"), "{e}");
        let bad = text.replace("bm1366", "bm1397");
        let e = hashwatt::config::Config::parse(&path, &bad).unwrap_err().to_string();
        assert!(e.contains("asic[0].model") && e.contains("BM1366, BM1368 or BM1370"), "{e}");
    })
    .await;
}
