//! A chip-chain emulator and an emulated board wired together, for demos
//! (`hashwatt run --demo --asic-chips N`), the tests and the bench: a
//! thread feeds the chips' clocks into the board's heat model and lets the
//! board's rail power the chips (off: silent; on again: from reset).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hashwatt_asic::board::emulated::{EmulatedBoard, EmulatedParams};
use hashwatt_asic::chain::ChainConfig;
use hashwatt_asic::emulator::{Emulator, EmulatorConfig};
use hashwatt_asic::model::Model;

use super::asic::{AsicDevice, AsicSettings};

/// How often the board model is advanced.
const STEP: Duration = Duration::from_millis(50);

/// An emulated chain on a pseudo-terminal with its emulated board.
pub struct EmulatedChain {
    /// The chips.
    pub emulator: Arc<Emulator>,
    /// Rail, sensors and fan, heated by the chips' clocks.
    pub board: EmulatedBoard,
    model: Model,
    chips: usize,
    stop: Arc<AtomicBool>,
    glue: Option<std::thread::JoinHandle<()>>,
}

impl EmulatedChain {
    /// Starts `chips` chips of `model` delivering `hashrate_hs` at the
    /// stock clock, reporting nonces at `difficulty`, on a board at 25 °C
    /// whose time runs `speed` times faster than the wall clock.
    pub fn start(
        model: Model,
        chips: usize,
        hashrate_hs: f64,
        difficulty: f64,
        params: EmulatedParams,
        speed: u32,
    ) -> std::io::Result<EmulatedChain> {
        let emulator = Arc::new(Emulator::spawn(EmulatorConfig {
            model,
            chips,
            hashrate_hs,
            difficulty,
        })?);
        let board = EmulatedBoard::with_params(chips, 25.0, params);
        let stop = Arc::new(AtomicBool::new(false));
        let glue = {
            let (emu, board, stop) = (emulator.clone(), board.clone(), stop.clone());
            std::thread::Builder::new()
                .name("asic-emulated-board".into())
                .spawn(move || {
                    let faults = emu.faults();
                    let mut powered = true;
                    while !stop.load(Ordering::Acquire) {
                        let on = board.rail_enabled();
                        if on != powered {
                            powered = on;
                            if on {
                                emu.power_cycle();
                            }
                            for c in 0..chips {
                                faults.set_dead(c, !on);
                            }
                        }
                        for c in 0..chips {
                            let f = if on {
                                emu.chip_frequency_mhz(c).unwrap_or(0.0)
                            } else {
                                0.0
                            };
                            let _ = board.set_chip_load(c, f64::from(f));
                        }
                        board.advance(STEP * speed.max(1));
                        std::thread::sleep(STEP);
                    }
                })?
        };
        Ok(EmulatedChain {
            emulator,
            board,
            model,
            chips,
            stop,
            glue: Some(glue),
        })
    }

    /// Driver settings for this chain: its port, the emulator's nonce
    /// difficulty, quick PLL steps; autotune off, results under `tune_dir`.
    pub fn settings(&self, name: &str, tune_dir: &Path) -> AsicSettings {
        AsicSettings {
            name: name.into(),
            port: self.emulator.tty_path().to_path_buf(),
            chain: ChainConfig {
                expected_chips: Some(self.chips),
                min_nonce_difficulty: Some(self.emulator.config().difficulty),
                pll_step_delay: Duration::from_millis(1),
                ..ChainConfig::new(self.model)
            },
            voltage_mv: None,
            thermal: Default::default(),
            autotune: None,
            tune_bounds: None,
            tune_settle: Duration::from_secs(2),
            tune_dir: tune_dir.to_path_buf(),
            job_interval: Duration::from_millis(500),
            dead_after: Duration::from_secs(4),
            retry: Duration::from_millis(500),
        }
    }

    /// The chain as a device, with `settings`, on this board.
    pub fn device(&self, settings: AsicSettings) -> Arc<AsicDevice> {
        AsicDevice::start(settings, self.board.board("emulated-board"))
    }
}

impl Drop for EmulatedChain {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(g) = self.glue.take() {
            let _ = g.join();
        }
    }
}
