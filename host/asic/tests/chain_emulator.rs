//! The chain driver against the emulator over a real pseudo-terminal.

mod common;

use std::time::{Duration, Instant};

use hashwatt_asic::chain::{Chain, ChainConfig, ChainError, ChainEvent, HardwareErrorReason, Work};
use hashwatt_asic::emulator::{Emulator, EmulatorConfig};
use hashwatt_asic::model::{self, Model};
use hashwatt_asic::protocol::{self, Command, Dest, ParseEvent, ReplyParser, reg};
use hashwatt_asic::serial::{SerialLink, TtyPort};
use hashwatt_work::Target;

/// Difficulty the emulated chips report at: 4096 hashes per nonce.
const DIFF: f64 = 1.0 / 1_048_576.0;
/// Whole-chain hashrate: about 150 nonces a second at DIFF.
const RATE: f64 = 4096.0 * 150.0;
/// Upper bound for any wait; generous so a loaded machine only slows tests.
const LIMIT: Duration = Duration::from_secs(120);

fn emulator(model: Model, chips: usize) -> Emulator {
    Emulator::spawn(EmulatorConfig {
        model,
        chips,
        hashrate_hs: RATE,
        difficulty: DIFF,
    })
    .unwrap()
}

fn config(model: Model, chips: Option<usize>) -> ChainConfig {
    ChainConfig {
        expected_chips: chips,
        min_nonce_difficulty: Some(DIFF),
        pll_step_delay: Duration::ZERO,
        ..ChainConfig::new(model)
    }
}

fn start(model: Model, chips: usize) -> (Emulator, Chain<TtyPort>) {
    let emu = emulator(model, chips);
    let port = TtyPort::open(emu.tty_path(), 115_200).unwrap();
    let chain = Chain::init(port, config(model, Some(chips))).unwrap();
    (emu, chain)
}

/// Bitcoin block 125552's header as work: BIP 9 version bits (so the
/// chips may roll), no nonce.
fn block_125552() -> [u8; 80] {
    let mut h = common::block_125552();
    h[0..4].copy_from_slice(&0x2000_0000u32.to_le_bytes());
    h[76..80].fill(0);
    h
}

fn work(tag: u64) -> Work {
    let mut h = block_125552();
    h[68..72].copy_from_slice(&(1_305_998_791u32 + tag as u32).to_le_bytes());
    Work::from_header(tag, &h, 0x1fff_e000)
}

/// Polls until `nonces` verified nonces arrived (or LIMIT), returning every event.
fn mine(chain: &mut Chain<TtyPort>, nonces: usize) -> Vec<ChainEvent> {
    let deadline = Instant::now() + LIMIT;
    let mut events = Vec::new();
    while events
        .iter()
        .filter(|e| matches!(e, ChainEvent::Nonce(_)))
        .count()
        < nonces
    {
        assert!(
            Instant::now() < deadline,
            "only {} events before the limit",
            events.len()
        );
        chain.poll(Duration::from_millis(50), &mut events).unwrap();
    }
    events
}

fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition not reached before the limit"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn chain_enumerates_one_and_four_chips_of_each_model() {
    for m in Model::ALL {
        // 6: a Hex board, whose addresses are not a power-of-two split.
        for n in [1usize, 4, 6] {
            let (emu, chain) = start(m, n);
            assert_eq!(chain.chips(), n, "{m}");
            assert_eq!(chain.model(), m);
            // The pty is asynchronous: wait until the emulator has taken the
            // last init writes (baud switch is the very last one).
            wait_for(|| emu.baud() == 1_000_000);
            for i in 0..n {
                assert_eq!(
                    emu.chip_address(i),
                    model::chip_address(i, n),
                    "{m} chip {i}"
                );
                let f = emu.chip_frequency_mhz(i).unwrap();
                let want = m.pll_for(m.default_frequency_mhz()).unwrap().actual_mhz;
                assert!((f - want).abs() < 0.01, "{m} chip {i}: {f} MHz");
                assert_eq!(emu.chip_register(i, reg::TICKET_MASK), Some(0xff));
                assert_eq!(
                    emu.chip_register(i, reg::VERSION_MASK),
                    Some(protocol::version_mask_value(0x1fff_e000))
                );
            }
            assert_eq!(emu.baud(), 1_000_000);
            assert_eq!(chain.link().baud(), 1_000_000);
            assert_eq!(emu.stats().frames_rejected, 0);
        }
    }
}

#[test]
fn chain_rejects_wrong_model_and_missing_chips() {
    let emu = emulator(Model::BM1368, 2);
    let port = TtyPort::open(emu.tty_path(), 115_200).unwrap();
    match Chain::init(port, config(Model::BM1366, None)) {
        Err(ChainError::WrongModel {
            expected,
            found,
            count,
        }) => {
            assert_eq!((expected, found, count), (Model::BM1366, 0x1368, 2));
        }
        other => panic!("{other:?}"),
    }
    let emu = emulator(Model::BM1370, 3);
    let port = TtyPort::open(emu.tty_path(), 115_200).unwrap();
    match Chain::init(port, config(Model::BM1370, Some(4))) {
        Err(ChainError::ChipCount {
            expected, found, ..
        }) => assert_eq!((expected, found), (4, 3)),
        other => panic!("{other:?}"),
    }
    let err = Chain::init(
        TtyPort::open(emulator(Model::BM1370, 1).tty_path(), 115_200).unwrap(),
        ChainConfig {
            frequency_mhz: 5000.0,
            ..config(Model::BM1370, None)
        },
    );
    assert!(matches!(err, Err(ChainError::Frequency { .. })));
}

#[test]
fn chain_known_header_returns_verified_nonce() {
    let (_emu, mut chain) = start(Model::BM1366, 4);
    let w = work(7);
    let id = chain.send_work(w.clone()).unwrap();
    let events = mine(&mut chain, 3);
    let target = Target::from_difficulty(DIFF).unwrap();
    let mut seen = 0;
    for e in &events {
        let ChainEvent::Nonce(n) = e else {
            panic!("unexpected {e:?}");
        };
        seen += 1;
        assert_eq!(n.tag, 7);
        assert_eq!(n.job_id, id);
        assert!(n.chip < 4);
        let hash = hashwatt_hash::sha256d(&n.header);
        assert!(target.is_met_by(&hash));
        assert!(n.difficulty >= DIFF * 0.999);
        // The header is the work's, with rolled bits only inside the mask.
        assert_eq!(&n.header[4..76], &block_125552_with_time(7)[4..76]);
        assert_eq!(n.version & !0x1fff_e000, 0x2000_0000);
        assert_eq!(
            u32::from_le_bytes(n.header[0..4].try_into().unwrap()),
            n.version
        );
        assert_eq!(
            u32::from_le_bytes(n.header[76..80].try_into().unwrap()),
            n.nonce
        );
        assert_eq!(
            model::chip_index(model::nonce_chip_address(n.nonce), 4),
            Some(n.chip)
        );
    }
    assert!(seen >= 3);
}

fn block_125552_with_time(tag: u32) -> [u8; 80] {
    let mut h = block_125552();
    h[68..72].copy_from_slice(&(1_305_998_791u32 + tag).to_le_bytes());
    h
}

#[test]
fn chain_mines_200_nonces_without_hardware_errors() {
    for m in [Model::BM1368, Model::BM1370] {
        let (emu, mut chain) = start(m, 4);
        chain.send_work(work(1)).unwrap();
        let mut events = mine(&mut chain, 100);
        chain.send_work(work(2)).unwrap();
        events.extend(mine(&mut chain, 100));
        let hw = events
            .iter()
            .filter(|e| matches!(e, ChainEvent::HardwareError { .. }))
            .count();
        assert_eq!(hw, 0, "{m}");
        let s = chain.stats();
        assert!(
            s.chips
                .iter()
                .all(|c| c.nonces > 0 && c.hardware_errors == 0),
            "{m} {s:?}"
        );
        let total: u64 = s.chips.iter().map(|c| c.nonces).sum();
        assert!(total >= 200);
        assert_eq!(s.crc_errors, 0);
        let hashes: f64 = s.chips.iter().map(|c| c.hashes).sum();
        assert!((hashes - total as f64 * DIFF * 4_294_967_296.0).abs() < 1.0);
        assert!(emu.stats().nonces.iter().sum::<u64>() >= total);
        // Both jobs' tags came back.
        let tags: std::collections::HashSet<u64> = events
            .iter()
            .filter_map(|e| match e {
                ChainEvent::Nonce(n) => Some(n.tag),
                _ => None,
            })
            .collect();
        assert!(tags.contains(&2));
    }
}

#[test]
fn chain_counts_injected_faults_and_resyncs() {
    let (emu, mut chain) = start(Model::BM1370, 2);
    chain.send_work(work(1)).unwrap();
    mine(&mut chain, 10);
    let faults = emu.faults();

    // Wrong nonces: valid frames whose nonce does not hash.
    faults.wrong_nonces(3);
    let mut events = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while chain
        .stats()
        .chips
        .iter()
        .map(|c| c.hardware_errors)
        .sum::<u64>()
        < 3
    {
        assert!(Instant::now() < deadline);
        chain.poll(Duration::from_millis(50), &mut events).unwrap();
    }
    let low = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                ChainEvent::HardwareError {
                    chip: Some(_),
                    reason: HardwareErrorReason::LowDifficulty { .. }
                }
            )
        })
        .count();
    assert_eq!(low, 3);
    assert_eq!(emu.stats().wrong_nonces, 3);

    // CRC errors.
    faults.corrupt_crc(4);
    let before = chain.stats().crc_errors;
    let deadline = Instant::now() + LIMIT;
    while chain.stats().crc_errors < before + 4 {
        assert!(Instant::now() < deadline);
        chain
            .poll(Duration::from_millis(50), &mut Vec::new())
            .unwrap();
    }
    assert_eq!(emu.stats().crc_corrupted, 4);
    mine(&mut chain, 10);

    // Dropped bytes shift a frame: a CRC error or a resync, then back in sync.
    let s0 = chain.stats();
    faults.drop_bytes(3);
    mine(&mut chain, 20);
    let s1 = chain.stats();
    assert_eq!(emu.stats().bytes_dropped, 3);
    assert!(s1.crc_errors + s1.resyncs > s0.crc_errors + s0.resyncs);

    // Garbled bytes.
    faults.garble_bytes(30);
    mine(&mut chain, 20);
    let s2 = chain.stats();
    assert_eq!(emu.stats().bytes_garbled, 30);
    assert!(s2.crc_errors + s2.resyncs > s1.crc_errors + s1.resyncs);
    assert_eq!(faults.pending(), (0, 0, 0, 0));
}

#[test]
fn chain_reports_dead_chip_while_others_hash() {
    let (emu, mut chain) = start(Model::BM1366, 4);
    chain.send_work(work(1)).unwrap();
    mine(&mut chain, 40);
    emu.faults().set_dead(2, true);
    // Let anything already on the wire arrive.
    let settle = Instant::now() + Duration::from_millis(300);
    while Instant::now() < settle {
        chain
            .poll(Duration::from_millis(20), &mut Vec::new())
            .unwrap();
    }
    let dead_count = chain.stats().chips[2].nonces;
    let dead_last = chain.stats().chips[2].last_nonce;
    let before: Vec<u64> = chain.stats().chips.iter().map(|c| c.nonces).collect();
    mine(&mut chain, 120);
    let s = chain.stats();
    assert_eq!(s.chips[2].nonces, dead_count, "dead chip kept answering");
    assert_eq!(s.chips[2].last_nonce, dead_last);
    for i in [0usize, 1, 3] {
        assert!(s.chips[i].nonces > before[i], "chip {i} stopped");
        assert!(s.chips[i].last_nonce > s.chips[2].last_nonce);
    }
    // A chip-id read now finds three chips.
    chain.read_register(None, reg::CHIP_ID).unwrap();
    let mut ids = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let mut ev = Vec::new();
        chain.poll(Duration::from_millis(50), &mut ev).unwrap();
        ids += ev
            .iter()
            .filter(|e| matches!(e, ChainEvent::Register { reg: 0, .. }))
            .count();
    }
    assert_eq!(ids, 3);
}

#[test]
fn chain_set_frequency_reaches_emulator_registers() {
    let (emu, mut chain) = start(Model::BM1368, 2);
    chain.set_frequency(400.0).unwrap();
    let want = Model::BM1368.pll_for(400.0).unwrap();
    wait_for(|| (0..2).all(|i| emu.chip_register(i, reg::PLL0) == Some(want.register_value())));
    assert!((emu.chip_frequency_mhz(1).unwrap() - 400.0).abs() < 0.5);
    assert!((chain.frequency_mhz() - want.actual_mhz).abs() < 1e-3);
    assert!(chain.set_frequency(2000.0).is_err());
    // Mining still works at the new clock.
    chain.send_work(work(3)).unwrap();
    mine(&mut chain, 10);
}

#[test]
fn chain_clear_work_turns_late_nonces_stale() {
    let (_emu, mut chain) = start(Model::BM1370, 1);
    chain.send_work(work(1)).unwrap();
    mine(&mut chain, 5);
    chain.clear_work();
    let deadline = Instant::now() + LIMIT;
    let mut events = Vec::new();
    while chain.stats().stale < 5 {
        assert!(Instant::now() < deadline);
        chain.poll(Duration::from_millis(50), &mut events).unwrap();
    }
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, ChainEvent::Nonce(_) | ChainEvent::HardwareError { .. }))
    );
    assert_eq!(chain.stats().chips[0].hardware_errors, 0);
}

#[test]
fn chain_baud_switch_to_3m_and_mismatch_garbles() {
    let emu = emulator(Model::BM1366, 1);
    let port = TtyPort::open(emu.tty_path(), 115_200).unwrap();
    let mut chain = Chain::init(
        port,
        ChainConfig {
            fast_baud: 3_000_000,
            ..config(Model::BM1366, Some(1))
        },
    )
    .unwrap();
    wait_for(|| emu.baud() == 3_125_000);
    assert_eq!(chain.link().baud(), 3_000_000);
    chain.send_work(work(1)).unwrap();
    mine(&mut chain, 5);
    drop(chain);

    // A host that switches the chips but not its own port reads garbage.
    let emu = emulator(Model::BM1366, 1);
    let mut port = TtyPort::open(emu.tty_path(), 115_200).unwrap();
    let fast = protocol::baud_setting(1_000_000).unwrap();
    port.write_all(
        Command::Write {
            dest: Dest::All,
            reg: fast.reg,
            value: fast.value,
        }
        .encode()
        .as_bytes(),
    )
    .unwrap();
    wait_for(|| emu.baud() == 1_000_000);
    port.write_all(
        Command::Read {
            dest: Dest::All,
            reg: reg::CHIP_ID,
        }
        .encode()
        .as_bytes(),
    )
    .unwrap();
    wait_for(|| emu.stats().garbled_by_baud >= 1);
    let mut parser = ReplyParser::new();
    let mut ev = Vec::new();
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        let n = port.read(&mut buf, Duration::from_millis(50)).unwrap();
        parser.push(&buf[..n], &mut ev);
    }
    assert!(
        !ev.iter().any(|e| matches!(e, ParseEvent::Reply(_))),
        "{ev:?}"
    );
}

/// Rate and CPU figures: `cargo test --release -p hashwatt-asic -- --ignored --nocapture`.
#[test]
#[ignore]
fn chain_rate_and_cpu_figures() {
    fn cpu_seconds() -> f64 {
        let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let after = s.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    }
    let chips = 4;
    let diff = 1.0 / 65_536.0;
    let rate = 65_536.0 * 400.0;
    let emu = Emulator::spawn(EmulatorConfig {
        model: Model::BM1370,
        chips,
        hashrate_hs: rate,
        difficulty: diff,
    })
    .unwrap();
    let port = TtyPort::open(emu.tty_path(), 115_200).unwrap();
    let mut chain = Chain::init(
        port,
        ChainConfig {
            min_nonce_difficulty: Some(diff),
            ..config(Model::BM1370, Some(chips))
        },
    )
    .unwrap();
    chain.send_work(work(1)).unwrap();
    mine(&mut chain, 20);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let n0: u64 = chain.stats().chips.iter().map(|c| c.nonces).sum();
    let events = mine(&mut chain, 2000);
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let n: u64 = chain.stats().chips.iter().map(|c| c.nonces).sum::<u64>() - n0;
    let hw = events
        .iter()
        .filter(|e| matches!(e, ChainEvent::HardwareError { .. }))
        .count();
    let achieved = n as f64 / secs;
    let configured = rate / (diff * 4_294_967_296.0);
    let es = emu.stats();
    println!(
        "nonces {n} in {secs:.2} s: {achieved:.1}/s vs configured {configured:.1}/s ({:.1} %)",
        100.0 * achieved / configured
    );
    println!(
        "emulated hashrate {:.3} MH/s vs configured {:.3} MH/s",
        achieved * diff * 4_294_967_296.0 / 1e6,
        rate / 1e6
    );
    println!(
        "process CPU {cpu:.2} s over {secs:.2} s wall ({:.1} % of one core); emulator hashed {} (×{:.2} the emulated work)",
        100.0 * cpu / secs,
        es.hashes_computed,
        es.hashes_computed as f64
            / (chain.stats().chips.iter().map(|c| c.nonces).sum::<u64>() as f64
                * diff
                * 4_294_967_296.0)
    );
    println!(
        "per-chip nonces {:?}, hardware errors {hw}",
        chain
            .stats()
            .chips
            .iter()
            .map(|c| c.nonces)
            .collect::<Vec<_>>()
    );
    assert_eq!(hw, 0);
}
