//! The chain driver: enumeration, addressing, register init, PLL ramp and
//! baud switch, job dispatch, and nonce replies mapped back to their work
//! and re-checked with the host's SHA-256d.
//!
//! Generic over [`SerialLink`] so it runs on a real UART, a USB bridge, or
//! the [`crate::emulator`] pseudo-terminal.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hashwatt_work::{Target, hash_difficulty};

use crate::model::{self, Model, Pll, apply_version_bits};
use crate::protocol::{
    Command, Dest, JobFrame, ParseEvent, ProtocolError, Reply, ReplyParser, baud_setting, reg,
    ticket_mask_value, version_mask_value,
};
use crate::serial::{SerialError, SerialLink, host_baud_for};

/// Frequency step of the PLL ramp, MHz (large jumps can brown out a board).
pub const RAMP_STEP_MHZ: f32 = 6.25;

/// Jobs kept in flight; older ones are evicted and their late nonces count
/// as stale. Below the 16 ids of every model's sequence, so an id is never
/// reused while its work is still live.
pub const MAX_IN_FLIGHT: usize = 8;

/// Chip-id replies: how long the chain may stay silent before enumeration
/// is considered complete.
const ENUM_QUIET: Duration = Duration::from_millis(400);
/// Chip-id replies: the longest wait for the first reply.
const ENUM_FIRST: Duration = Duration::from_millis(1500);

/// Driver configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainConfig {
    /// Chip model on the chain (a different chip id is an error).
    pub model: Model,
    /// Chips the board has; fewer (or more) answering is an error. `None`
    /// accepts whatever answers.
    pub expected_chips: Option<usize>,
    /// Target core clock, MHz.
    pub frequency_mhz: f32,
    /// Baud to switch to after init (115 200 stays at the reset rate).
    pub fast_baud: u32,
    /// Ticket difficulty programmed into the chips (a power of two).
    pub ticket_difficulty: u32,
    /// Nonces below this difficulty are hardware errors; `None` means the
    /// ticket difficulty. Set it lower when the chips report at a scaled
    /// difficulty (the emulator does).
    pub min_nonce_difficulty: Option<f64>,
    /// Version bits the chips may roll (ANDed with each job's mask).
    pub version_mask: u32,
    /// Pause between PLL ramp steps (the public drivers wait 100 ms).
    pub pll_step_delay: Duration,
}

impl ChainConfig {
    /// The stock settings for `model`: default clock, 1 Mbaud, ticket
    /// difficulty 256, the BIP 320 version mask, 100 ms ramp steps.
    pub fn new(model: Model) -> ChainConfig {
        ChainConfig {
            model,
            expected_chips: None,
            frequency_mhz: model.default_frequency_mhz(),
            fast_baud: 1_000_000,
            ticket_difficulty: model.default_ticket_difficulty(),
            min_nonce_difficulty: None,
            version_mask: model::VERSION_FIELD_MASK,
            pll_step_delay: Duration::from_millis(100),
        }
    }

    /// The difficulty every reported nonce must reach, and the difficulty
    /// one reported nonce stands for in hash estimates.
    pub fn report_difficulty(&self) -> f64 {
        self.min_nonce_difficulty
            .unwrap_or(f64::from(self.ticket_difficulty))
    }
}

/// Errors of the chain driver.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The serial link failed.
    #[error(transparent)]
    Serial(#[from] SerialError),
    /// A register value could not be built.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// No chip answered the chip-id read.
    #[error("no {model} chip answered the chip-id read")]
    NoChips {
        /// Model asked for.
        model: Model,
    },
    /// Chips of another kind answered.
    #[error("expected {expected} chips, found chip id {found:#06x} ({count} replies)")]
    WrongModel {
        /// Model configured.
        expected: Model,
        /// Chip id that answered.
        found: u16,
        /// Replies with that id.
        count: usize,
    },
    /// A different number of chips than the board has answered.
    #[error("expected {expected} {model} chips, found {found}")]
    ChipCount {
        /// Model.
        model: Model,
        /// Chips configured.
        expected: usize,
        /// Chips that answered.
        found: usize,
    },
    /// More chips than an 8-bit address space holds.
    #[error("{found} chips answered; at most 256 can be addressed")]
    TooManyChips {
        /// Chips that answered.
        found: usize,
    },
    /// A clock outside the model's permitted range.
    #[error("{mhz} MHz is outside the {model} range {min}..={max} MHz")]
    Frequency {
        /// Model.
        model: Model,
        /// Requested clock.
        mhz: f32,
        /// Lowest permitted.
        min: f32,
        /// Highest permitted.
        max: f32,
    },
    /// The host cannot follow the chips to this baud.
    #[error("no host baud rate matches chip baud {0}")]
    HostBaud(u32),
}

/// One unit of work: a block header template without its nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Work {
    /// Caller's tag, handed back with every nonce for this work.
    pub tag: u64,
    /// Block version.
    pub version: u32,
    /// Version bits the pool lets us roll.
    pub version_mask: u32,
    /// Previous block hash in header byte order (header bytes 4..36).
    pub prev_hash: [u8; 32],
    /// Merkle root in header byte order (header bytes 36..68).
    pub merkle_root: [u8; 32],
    /// Block time.
    pub ntime: u32,
    /// Compact network target.
    pub nbits: u32,
}

impl Work {
    /// The work an 80-byte header describes (its nonce ignored).
    pub fn from_header(tag: u64, header: &[u8; 80], version_mask: u32) -> Work {
        let j = JobFrame::from_header(0, header);
        Work {
            tag,
            version: j.version,
            version_mask,
            prev_hash: j.prev_hash,
            merkle_root: j.merkle_root,
            ntime: j.ntime,
            nbits: j.nbits,
        }
    }

    /// The job frame for this work under `job_id`.
    pub fn job_frame(&self, job_id: u8) -> JobFrame {
        JobFrame {
            job_id,
            starting_nonce: 0,
            nbits: self.nbits,
            ntime: self.ntime,
            merkle_root: self.merkle_root,
            prev_hash: self.prev_hash,
            version: self.version,
        }
    }
}

/// A nonce that re-hashed correctly on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundNonce {
    /// The work's tag.
    pub tag: u64,
    /// Chip index on the chain (0 = nearest the host).
    pub chip: usize,
    /// Big core that found it.
    pub core: u8,
    /// Small core within it (from the reply's id byte).
    pub small_core: u8,
    /// Job id the chip reported.
    pub job_id: u8,
    /// The rolled version the nonce hashes with.
    pub version: u32,
    /// Block time.
    pub ntime: u32,
    /// The nonce (as in the header).
    pub nonce: u32,
    /// Difficulty the hash reaches.
    pub difficulty: f64,
    /// The full header, ready for share submission.
    pub header: [u8; 80],
}

/// Why a reply counted as a hardware error.
#[derive(Debug, Clone, PartialEq)]
pub enum HardwareErrorReason {
    /// The rebuilt header hashes below the minimum difficulty.
    LowDifficulty {
        /// Difficulty reached.
        difficulty: f64,
    },
    /// The job id was never issued.
    UnknownJob {
        /// Id reported.
        job_id: u8,
    },
    /// The chip address inside the nonce belongs to no chip.
    BadChipAddress {
        /// Address field.
        address: u8,
    },
}

/// What [`Chain::poll`] produces.
#[derive(Debug, Clone, PartialEq)]
pub enum ChainEvent {
    /// A verified nonce.
    Nonce(FoundNonce),
    /// A reply that did not verify.
    HardwareError {
        /// Chip index, when the address maps to one.
        chip: Option<usize>,
        /// What was wrong.
        reason: HardwareErrorReason,
    },
    /// A nonce for work that was cleared or evicted.
    Stale {
        /// Chip index, when the address maps to one.
        chip: Option<usize>,
        /// Job id reported.
        job_id: u8,
    },
    /// A register-read reply.
    Register {
        /// Chip index, when the address maps to one.
        chip: Option<usize>,
        /// Register.
        reg: u8,
        /// Value.
        value: u32,
    },
}

/// Per-chip counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChipStats {
    /// Verified nonces.
    pub nonces: u64,
    /// Hardware errors.
    pub hardware_errors: u64,
    /// Estimated hashes: nonces × report difficulty × 2^32.
    pub hashes: f64,
    /// When the last verified nonce arrived (a dead chip's ages).
    pub last_nonce: Option<Instant>,
}

/// Chain counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChainStats {
    /// One entry per chip, in chain order.
    pub chips: Vec<ChipStats>,
    /// Replies that failed their CRC.
    pub crc_errors: u64,
    /// Times the parser skipped bytes to find a preamble.
    pub resyncs: u64,
    /// Bytes skipped.
    pub garbage_bytes: u64,
    /// Nonces for cleared or evicted work.
    pub stale: u64,
    /// Hardware errors not attributable to a chip.
    pub unattributed_errors: u64,
}

#[derive(Debug, Clone)]
struct InFlight {
    work: Work,
    mask: u32,
    target: Target,
}

#[derive(Debug, Clone)]
enum Slot {
    Empty,
    Live(Box<InFlight>),
    Retired,
}

/// Logs at most once a second, counting what it swallowed.
#[derive(Debug, Default)]
struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < Duration::from_secs(1) => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The PLL ramp from `from` to `to` MHz: every multiple of
/// [`RAMP_STEP_MHZ`] strictly between them, then `to` itself.
pub fn ramp_steps(from: f32, to: f32) -> Vec<f32> {
    let mut v = Vec::new();
    if (from - to).abs() < 1e-4 {
        return v;
    }
    // A change smaller than one step is written at once.
    if (to - from).abs() < RAMP_STEP_MHZ {
        v.push(to);
        return v;
    }
    if to > from {
        let mut k = (from / RAMP_STEP_MHZ).floor() as i64 + 1;
        while (k as f32) * RAMP_STEP_MHZ < to - 1e-4 {
            v.push(k as f32 * RAMP_STEP_MHZ);
            k += 1;
        }
    } else {
        let mut k = (from / RAMP_STEP_MHZ).ceil() as i64 - 1;
        while (k as f32) * RAMP_STEP_MHZ > to + 1e-4 {
            v.push(k as f32 * RAMP_STEP_MHZ);
            k -= 1;
        }
    }
    v.push(to);
    v
}

fn write_all(dest: Dest, reg: u8, value: u32) -> Command {
    Command::Write { dest, reg, value }
}

/// The register writes between enumeration and the PLL ramp, per model, in
/// the order the public drivers send them (chain inactive, addresses, core
/// and misc registers, ticket mask).
pub fn init_commands(
    model: Model,
    chips: usize,
    ticket_difficulty: u32,
    version_mask: u32,
) -> Result<Vec<Command>, ChainError> {
    let ticket = write_all(
        Dest::All,
        reg::TICKET_MASK,
        ticket_mask_value(ticket_difficulty)?,
    );
    let vmask = write_all(
        Dest::All,
        reg::VERSION_MASK,
        version_mask_value(version_mask),
    );
    let addrs: Vec<u8> = (0..chips)
        .map(|i| model::chip_address(i, chips).ok_or(ChainError::TooManyChips { found: chips }))
        .collect::<Result<_, _>>()?;
    let core_pair: [u32; 2] = match model {
        Model::BM1366 => [0x8000_8540, 0x8000_8020],
        Model::BM1368 => [0x8000_8B00, 0x8000_8018],
        Model::BM1370 => [0x8000_8B00, 0x8000_800C],
    };
    let mut v = Vec::new();
    let per_chip = |v: &mut Vec<Command>| {
        for &a in &addrs {
            let d = Dest::Chip(a);
            v.push(write_all(d, reg::REG_A8, 0x0007_01F0));
            v.push(write_all(d, reg::MISC_CONTROL, 0xF000_C100));
            v.push(write_all(d, reg::CORE_REGISTER, core_pair[0]));
            v.push(write_all(d, reg::CORE_REGISTER, core_pair[1]));
            v.push(write_all(d, reg::CORE_REGISTER, 0x8000_82AA));
        }
    };
    match model {
        Model::BM1366 => {
            v.push(write_all(Dest::All, reg::REG_A8, 0x0007_0000));
            v.push(write_all(Dest::All, reg::MISC_CONTROL, 0xFF0F_C100));
            v.push(Command::ChainInactive);
            v.extend(addrs.iter().map(|&a| Command::SetAddress(a)));
            v.push(write_all(Dest::All, reg::CORE_REGISTER, core_pair[0]));
            v.push(write_all(Dest::All, reg::CORE_REGISTER, core_pair[1]));
            v.push(ticket);
            v.push(write_all(Dest::All, reg::ANALOG_MUX, 0x0000_0003));
            v.push(write_all(Dest::All, reg::IO_DRIVER, 0x0211_1111));
            v.push(write_all(Dest::Chip(0), reg::REG_2C, 0x007C_0003));
            per_chip(&mut v);
        }
        Model::BM1368 => {
            v.push(Command::ChainInactive);
            v.push(write_all(Dest::All, reg::REG_A8, 0x0007_0000));
            v.push(write_all(Dest::All, reg::MISC_CONTROL, 0xFF0F_C100));
            v.push(write_all(Dest::All, reg::CORE_REGISTER, core_pair[0]));
            v.push(write_all(Dest::All, reg::CORE_REGISTER, core_pair[1]));
            v.push(write_all(Dest::All, reg::TICKET_MASK, 0x0000_00FF));
            v.push(write_all(Dest::All, reg::ANALOG_MUX, 0x0000_0003));
            v.push(write_all(Dest::All, reg::IO_DRIVER, 0x0211_1111));
            v.extend(addrs.iter().map(|&a| Command::SetAddress(a)));
            per_chip(&mut v);
            v.push(ticket);
        }
        Model::BM1370 => {
            v.push(vmask);
            v.push(write_all(Dest::All, reg::REG_A8, 0x0007_0000));
            v.push(write_all(Dest::All, reg::MISC_CONTROL, 0xF000_C100));
            v.push(Command::ChainInactive);
            v.extend(addrs.iter().map(|&a| Command::SetAddress(a)));
            v.push(write_all(Dest::All, reg::CORE_REGISTER, core_pair[0]));
            v.push(write_all(Dest::All, reg::CORE_REGISTER, core_pair[1]));
            v.push(ticket);
            v.push(write_all(Dest::All, reg::IO_DRIVER, 0x0001_1111));
            per_chip(&mut v);
            v.push(write_all(Dest::All, reg::REG_B9, 0x0000_4480));
            v.push(write_all(Dest::All, reg::ANALOG_MUX, 0x0000_0002));
            v.push(write_all(Dest::All, reg::REG_B9, 0x0000_4480));
            v.push(write_all(Dest::All, reg::CORE_REGISTER, 0x8000_8DEE));
        }
    }
    Ok(v)
}

/// A running chip chain.
pub struct Chain<L: SerialLink> {
    link: L,
    cfg: ChainConfig,
    chips: usize,
    parser: ReplyParser,
    events: Vec<ParseEvent>,
    slots: Vec<Slot>,
    order: VecDeque<u8>,
    last_id: u8,
    chip_mask: u32,
    frequency: f32,
    stats: ChainStats,
    read_buf: Vec<u8>,
    log_hw: RateLimit,
    log_crc: RateLimit,
    log_stale: RateLimit,
}

impl<L: SerialLink> std::fmt::Debug for Chain<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("model", &self.cfg.model)
            .field("chips", &self.chips)
            .field("frequency", &self.frequency)
            .finish()
    }
}

impl<L: SerialLink> Chain<L> {
    /// Brings up the chain: reads chip ids, checks model and count, assigns
    /// addresses, programs the init registers, version and ticket masks,
    /// ramps the PLL to the configured clock and switches to the fast baud
    /// (chips first, then the host port).
    pub fn init(link: L, cfg: ChainConfig) -> Result<Chain<L>, ChainError> {
        let model = cfg.model;
        check_frequency(model, cfg.frequency_mhz)?;
        ticket_mask_value(cfg.ticket_difficulty)?;
        let mut chain = Chain {
            link,
            chips: 0,
            parser: ReplyParser::new(),
            events: Vec::with_capacity(64),
            slots: vec![Slot::Empty; 128],
            order: VecDeque::with_capacity(MAX_IN_FLIGHT + 1),
            last_id: 0,
            chip_mask: cfg.version_mask & model::VERSION_FIELD_MASK,
            frequency: model.reset_frequency_mhz(),
            stats: ChainStats::default(),
            read_buf: vec![0u8; 4096],
            log_hw: RateLimit::default(),
            log_crc: RateLimit::default(),
            log_stale: RateLimit::default(),
            cfg,
        };
        let vmask = Command::Write {
            dest: Dest::All,
            reg: reg::VERSION_MASK,
            value: version_mask_value(chain.chip_mask),
        };
        // The public driver writes the mask three times (four on BM1368)
        // before anything else, to get every chip's UART in step.
        let repeats = if model == Model::BM1368 { 4 } else { 3 };
        for _ in 0..repeats {
            chain.send(vmask)?;
        }
        chain.send(Command::Read {
            dest: Dest::All,
            reg: reg::CHIP_ID,
        })?;
        let found = chain.enumerate()?;
        if found > 256 {
            return Err(ChainError::TooManyChips { found });
        }
        if let Some(expected) = chain.cfg.expected_chips
            && expected != found
        {
            return Err(ChainError::ChipCount {
                model,
                expected,
                found,
            });
        }
        chain.chips = found;
        chain.stats.chips = vec![ChipStats::default(); found];
        tracing::info!(%model, chips = found, "chain enumerated");
        for c in init_commands(model, found, chain.cfg.ticket_difficulty, chain.chip_mask)? {
            chain.send(c)?;
        }
        let target = chain.cfg.frequency_mhz;
        chain.ramp_to(target)?;
        // BM1366 and BM1368 get the mask once more after the clock ramp;
        // the BM1370 sequence ends with the hash counting number.
        if model != Model::BM1370 {
            chain.send(vmask)?;
        }
        let fast = chain.cfg.fast_baud;
        if fast != chain.link.baud() {
            chain.switch_baud(fast)?;
        }
        Ok(chain)
    }

    fn send(&mut self, c: Command) -> Result<(), ChainError> {
        self.link.write_all(c.encode().as_bytes())?;
        Ok(())
    }

    fn enumerate(&mut self) -> Result<usize, ChainError> {
        let model = self.cfg.model;
        let mut count = 0usize;
        let mut wrong: Option<(u16, usize)> = None;
        let start = Instant::now();
        let mut last = None::<Instant>;
        let hard_stop = start + Duration::from_secs(10);
        loop {
            let now = Instant::now();
            let quiet_for = match last {
                Some(t) => ENUM_QUIET.saturating_sub(now - t),
                None => ENUM_FIRST.saturating_sub(now - start),
            };
            if quiet_for.is_zero() || now >= hard_stop {
                break;
            }
            let n = self.link.read(
                &mut self.read_buf,
                quiet_for.min(Duration::from_millis(100)),
            )?;
            if n == 0 {
                continue;
            }
            last = Some(Instant::now());
            self.events.clear();
            self.parser.push(&self.read_buf[..n], &mut self.events);
            for ev in self.events.drain(..) {
                match ev {
                    ParseEvent::Reply(Reply::Register(r)) if r.reg == reg::CHIP_ID => {
                        let id = (r.value >> 16) as u16;
                        if id == model.chip_id() {
                            count += 1;
                        } else {
                            tracing::warn!(id = format_args!("{id:#06x}"), "unexpected chip id");
                            let w = wrong.get_or_insert((id, 0));
                            if w.0 == id {
                                w.1 += 1;
                            }
                        }
                    }
                    ParseEvent::CrcError(raw) => {
                        self.stats.crc_errors += 1;
                        tracing::warn!(raw = ?raw, "chip-id reply failed its CRC");
                    }
                    ParseEvent::Garbage { bytes } => {
                        self.stats.resyncs += 1;
                        self.stats.garbage_bytes += bytes as u64;
                    }
                    ParseEvent::Reply(other) => {
                        tracing::debug!(?other, "ignored reply during enumeration");
                    }
                }
            }
        }
        if let Some((found, n)) = wrong {
            return Err(ChainError::WrongModel {
                expected: model,
                found,
                count: n,
            });
        }
        if count == 0 {
            return Err(ChainError::NoChips { model });
        }
        Ok(count)
    }

    fn write_pll(&mut self, mhz: f32) -> Result<f32, ChainError> {
        let model = self.cfg.model;
        let pll: Pll = model.pll_for(mhz).ok_or(ChainError::Frequency {
            model,
            mhz,
            min: *model.frequency_range_mhz().start(),
            max: *model.frequency_range_mhz().end(),
        })?;
        self.send(Command::Write {
            dest: Dest::All,
            reg: reg::PLL0,
            value: pll.register_value(),
        })?;
        Ok(pll.actual_mhz)
    }

    fn ramp_to(&mut self, target: f32) -> Result<(), ChainError> {
        let steps = ramp_steps(self.frequency, target);
        let n = steps.len();
        for (i, f) in steps.into_iter().enumerate() {
            self.frequency = self.write_pll(f)?;
            if i + 1 < n && !self.cfg.pll_step_delay.is_zero() {
                std::thread::sleep(self.cfg.pll_step_delay);
            }
        }
        let hcn = self
            .cfg
            .model
            .hash_counting_number(self.frequency, self.chips);
        self.send(Command::Write {
            dest: Dest::All,
            reg: reg::HASH_COUNTING,
            value: hcn,
        })?;
        tracing::info!(mhz = self.frequency, "chain clock set");
        Ok(())
    }

    fn switch_baud(&mut self, baud: u32) -> Result<(), ChainError> {
        let s = baud_setting(baud)?;
        let host = host_baud_for(s.chip_baud).ok_or(ChainError::HostBaud(s.chip_baud))?;
        self.send(Command::Write {
            dest: Dest::All,
            reg: s.reg,
            value: s.value,
        })?;
        // The link drains the frame at the old rate before switching.
        self.link.set_baud(host)?;
        // Whatever arrived while the two ends disagreed is noise.
        self.link.clear_input()?;
        self.parser.reset();
        tracing::info!(chip_baud = s.chip_baud, host_baud = host, "baud switched");
        Ok(())
    }

    /// Ramps the PLL to `mhz` in [`RAMP_STEP_MHZ`] steps and updates the
    /// hash counting number for the new clock.
    pub fn set_frequency(&mut self, mhz: f32) -> Result<(), ChainError> {
        check_frequency(self.cfg.model, mhz)?;
        self.ramp_to(mhz)
    }

    /// The clock the chips run at now, MHz (what the PLL produces).
    pub fn frequency_mhz(&self) -> f32 {
        self.frequency
    }

    /// Sends work to every chip and returns the job id it went out under.
    /// The oldest in-flight job is evicted beyond [`MAX_IN_FLIGHT`].
    pub fn send_work(&mut self, work: Work) -> Result<u8, ChainError> {
        let mask = work.version_mask & self.cfg.version_mask & model::VERSION_FIELD_MASK;
        if mask != self.chip_mask {
            self.send(Command::Write {
                dest: Dest::All,
                reg: reg::VERSION_MASK,
                value: version_mask_value(mask),
            })?;
            self.chip_mask = mask;
        }
        let id = self.cfg.model.next_job_id(self.last_id);
        self.last_id = id;
        while self.order.len() >= MAX_IN_FLIGHT {
            if let Some(old) = self.order.pop_front() {
                self.slots[usize::from(old)] = Slot::Retired;
            }
        }
        self.order.retain(|&x| x != id);
        let target = Target::from_difficulty(self.cfg.report_difficulty()).unwrap_or(Target::MAX);
        let frame = work.job_frame(id).encode();
        self.slots[usize::from(id)] = Slot::Live(Box::new(InFlight { work, mask, target }));
        self.order.push_back(id);
        self.link.write_all(&frame)?;
        Ok(id)
    }

    /// Voids every job in flight (a clean job from the pool): their late
    /// nonces are counted as stale.
    pub fn clear_work(&mut self) {
        for id in self.order.drain(..) {
            self.slots[usize::from(id)] = Slot::Retired;
        }
    }

    /// Waits up to `timeout` for replies, then drains what is buffered,
    /// appending one event per reply to `out`.
    pub fn poll(&mut self, timeout: Duration, out: &mut Vec<ChainEvent>) -> Result<(), ChainError> {
        let mut wait = timeout;
        for _ in 0..16 {
            let n = self.link.read(&mut self.read_buf, wait)?;
            if n == 0 {
                break;
            }
            wait = Duration::ZERO;
            self.events.clear();
            self.parser.push(&self.read_buf[..n], &mut self.events);
            let events = std::mem::take(&mut self.events);
            for ev in &events {
                self.handle(ev, out);
            }
            self.events = events;
        }
        Ok(())
    }

    fn chip_of_address(&self, address: u8) -> Option<usize> {
        model::chip_index(address, self.chips)
    }

    fn hw_error(
        &mut self,
        chip: Option<usize>,
        reason: HardwareErrorReason,
        out: &mut Vec<ChainEvent>,
    ) {
        match chip.and_then(|c| self.stats.chips.get_mut(c)) {
            Some(s) => s.hardware_errors += 1,
            None => self.stats.unattributed_errors += 1,
        }
        if let Some(suppressed) = self.log_hw.allow() {
            tracing::warn!(?chip, ?reason, suppressed, "hardware error");
        }
        out.push(ChainEvent::HardwareError { chip, reason });
    }

    fn handle(&mut self, ev: &ParseEvent, out: &mut Vec<ChainEvent>) {
        match *ev {
            ParseEvent::Garbage { bytes } => {
                self.stats.resyncs += 1;
                self.stats.garbage_bytes += bytes as u64;
            }
            ParseEvent::CrcError(raw) => {
                self.stats.crc_errors += 1;
                if let Some(suppressed) = self.log_crc.allow() {
                    tracing::warn!(raw = ?raw, suppressed, "reply failed its CRC");
                }
            }
            ParseEvent::Reply(Reply::Register(r)) => out.push(ChainEvent::Register {
                chip: self.chip_of_address(r.chip_address),
                reg: r.reg,
                value: r.value,
            }),
            ParseEvent::Reply(Reply::Nonce(n)) => {
                let model = self.cfg.model;
                let address = model::nonce_chip_address(n.nonce);
                let chip = self.chip_of_address(address);
                let job_id = model.job_id_from_reply(n.id_byte);
                let entry = match &self.slots[usize::from(job_id)] {
                    Slot::Live(e) => e,
                    Slot::Retired => {
                        self.stats.stale += 1;
                        if let Some(suppressed) = self.log_stale.allow() {
                            tracing::debug!(job_id, suppressed, "stale nonce");
                        }
                        out.push(ChainEvent::Stale { chip, job_id });
                        return;
                    }
                    Slot::Empty => {
                        self.hw_error(chip, HardwareErrorReason::UnknownJob { job_id }, out);
                        return;
                    }
                };
                let Some(chip_idx) = chip else {
                    self.hw_error(None, HardwareErrorReason::BadChipAddress { address }, out);
                    return;
                };
                let version = apply_version_bits(entry.work.version, entry.mask, n.version_bits);
                let header = entry.work.job_frame(job_id).header(version, n.nonce);
                let hash = hashwatt_hash::sha256d(&header);
                let difficulty = hash_difficulty(&hash);
                if !entry.target.is_met_by(&hash) {
                    self.hw_error(
                        Some(chip_idx),
                        HardwareErrorReason::LowDifficulty { difficulty },
                        out,
                    );
                    return;
                }
                let found = FoundNonce {
                    tag: entry.work.tag,
                    chip: chip_idx,
                    core: model::nonce_core_id(n.nonce),
                    small_core: model.small_core_from_reply(n.id_byte),
                    job_id,
                    version,
                    ntime: entry.work.ntime,
                    nonce: n.nonce,
                    difficulty,
                    header,
                };
                let per_nonce = self.cfg.report_difficulty() * 4_294_967_296.0;
                let s = &mut self.stats.chips[chip_idx];
                s.nonces += 1;
                s.hashes += per_nonce;
                s.last_nonce = Some(Instant::now());
                out.push(ChainEvent::Nonce(found));
            }
        }
    }

    /// Sends a register read (to one chip or all); answers arrive through
    /// [`Chain::poll`] as [`ChainEvent::Register`].
    pub fn read_register(&mut self, chip: Option<usize>, reg_addr: u8) -> Result<(), ChainError> {
        let dest = match chip {
            None => Dest::All,
            Some(i) => Dest::Chip(
                model::chip_address(i, self.chips).ok_or(ChainError::TooManyChips { found: i })?,
            ),
        };
        self.send(Command::Read {
            dest,
            reg: reg_addr,
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> ChainStats {
        self.stats.clone()
    }

    /// Chips on the chain.
    pub fn chips(&self) -> usize {
        self.chips
    }

    /// The chip model.
    pub fn model(&self) -> Model {
        self.cfg.model
    }

    /// The configuration in force.
    pub fn config(&self) -> &ChainConfig {
        &self.cfg
    }

    /// The serial link (for its baud, say).
    pub fn link(&self) -> &L {
        &self.link
    }

    /// Ends the driver and hands the link back.
    pub fn into_link(self) -> L {
        self.link
    }
}

fn check_frequency(model: Model, mhz: f32) -> Result<(), ChainError> {
    let r = model.frequency_range_mhz();
    if !r.contains(&mhz) {
        return Err(ChainError::Frequency {
            model,
            mhz,
            min: *r.start(),
            max: *r.end(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_steps_walk_the_grid() {
        assert_eq!(ramp_steps(50.0, 62.5), vec![56.25, 62.5]);
        assert_eq!(ramp_steps(50.0, 60.0), vec![56.25, 60.0]);
        assert_eq!(ramp_steps(60.0, 50.0), vec![56.25, 50.0]);
        assert_eq!(ramp_steps(485.0, 485.0), Vec::<f32>::new());
        // Less than a step: written at once, as the public driver does.
        assert_eq!(ramp_steps(485.0, 490.0), vec![490.0]);
        assert_eq!(ramp_steps(490.0, 485.0), vec![485.0]);
        let up = ramp_steps(50.0, 485.0);
        assert_eq!(*up.last().unwrap(), 485.0);
        assert!(
            up.windows(2)
                .all(|w| w[1] > w[0] && w[1] - w[0] <= RAMP_STEP_MHZ + 1e-3)
        );
    }

    #[test]
    fn init_commands_address_every_chip_once() {
        for m in Model::ALL {
            let v = init_commands(m, 4, 256, 0x1fff_e000).unwrap();
            let addrs: Vec<u8> = v
                .iter()
                .filter_map(|c| match c {
                    Command::SetAddress(a) => Some(*a),
                    _ => None,
                })
                .collect();
            assert_eq!(addrs, vec![0, 64, 128, 192], "{m}");
            let inactive = v.iter().position(|c| *c == Command::ChainInactive).unwrap();
            let first_addr = v
                .iter()
                .position(|c| matches!(c, Command::SetAddress(_)))
                .unwrap();
            assert!(inactive < first_addr);
            assert!(v.contains(&Command::Write {
                dest: Dest::All,
                reg: reg::TICKET_MASK,
                value: 0xff
            }));
        }
        assert!(init_commands(Model::BM1366, 1, 300, 0).is_err());
    }
}
