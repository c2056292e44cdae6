//! A BM13xx chip chain on a real pseudo-terminal.
//!
//! [`Emulator::spawn`] opens a pty pair; the driver opens [`Emulator::tty_path`]
//! like any serial device. A thread on the master side answers the same
//! frames real chips do: chip-id reads per chip, chain inactive and address
//! assignment, register writes (PLL, baud, version mask), job frames (CRC-16
//! checked), and it returns *real* nonces: the job's header is hashed with
//! `hashwatt-hash` at a scaled-down difficulty, each nonce attributed to the
//! chip whose address slice owns it, rolling version bits within the mask,
//! and paced so the chain delivers the configured hashrate (a nonce at
//! difficulty d stands for d·2^32 hashes). If the host's port speed does not
//! match the chips' baud, replies arrive garbled, as on real hardware.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hashwatt_work::Target;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{SetArg, cfgetospeed, cfmakeraw, cfsetspeed, tcgetattr, tcsetattr};
use rand::Rng;

use crate::model::{self, Model, Pll};
use crate::protocol::{
    Command, Dest, HostEvent, HostFrameParser, JobFrame, NonceReply, RegisterReply, Reply,
    baud_from_write, chip_id_value, reg, version_mask_from_value,
};
use crate::serial::baud_value;

/// What to emulate.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatorConfig {
    /// Chip model (its chip id, job-id encoding and registers).
    pub model: Model,
    /// Chips on the chain.
    pub chips: usize,
    /// Whole-chain hashrate at the model's default clock, hashes/s; each
    /// chip's share scales with its PLL clock.
    pub hashrate_hs: f64,
    /// Difficulty the emulated chips report nonces at (scaled down so a CPU
    /// can find them, e.g. 1/65536).
    pub difficulty: f64,
}

/// Fault injection, shared with the emulator thread. Counters are "the
/// next N": each injected fault decrements them.
#[derive(Debug)]
pub struct Faults {
    corrupt_crc: AtomicU32,
    drop_bytes: AtomicU32,
    garble_bytes: AtomicU32,
    wrong_nonces: AtomicU32,
    dead: Mutex<Vec<bool>>,
}

fn take_one(a: &AtomicU32) -> bool {
    a.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

impl Faults {
    /// The next `n` replies get a wrong CRC.
    pub fn corrupt_crc(&self, n: u32) {
        self.corrupt_crc.fetch_add(n, Ordering::SeqCst);
    }

    /// The next `n` output bytes are lost on the wire.
    pub fn drop_bytes(&self, n: u32) {
        self.drop_bytes.fetch_add(n, Ordering::SeqCst);
    }

    /// The next `n` output bytes are flipped to random values.
    pub fn garble_bytes(&self, n: u32) {
        self.garble_bytes.fetch_add(n, Ordering::SeqCst);
    }

    /// The next `n` nonce replies are well-formed but carry a nonce that
    /// does not hash to the difficulty.
    pub fn wrong_nonces(&self, n: u32) {
        self.wrong_nonces.fetch_add(n, Ordering::SeqCst);
    }

    /// Makes `chip` stop answering (no replies, no nonces) or revives it.
    pub fn set_dead(&self, chip: usize, dead: bool) {
        let mut d = lock(&self.dead);
        if let Some(slot) = d.get_mut(chip) {
            *slot = dead;
        }
    }

    /// Whether `chip` is dead.
    pub fn is_dead(&self, chip: usize) -> bool {
        lock(&self.dead).get(chip).copied().unwrap_or(false)
    }

    /// Faults still waiting to be injected (CRC, dropped, garbled, wrong).
    pub fn pending(&self) -> (u32, u32, u32, u32) {
        (
            self.corrupt_crc.load(Ordering::SeqCst),
            self.drop_bytes.load(Ordering::SeqCst),
            self.garble_bytes.load(Ordering::SeqCst),
            self.wrong_nonces.load(Ordering::SeqCst),
        )
    }
}

/// Emulator counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmulatorStats {
    /// Nonce replies sent, per chip (including injected wrong ones).
    pub nonces: Vec<u64>,
    /// Command frames accepted.
    pub commands: u64,
    /// Job frames accepted.
    pub jobs: u64,
    /// Frames rejected (bad CRC or undecodable), as a chip ignores them.
    pub frames_rejected: u64,
    /// Bytes between frames that were not a preamble.
    pub garbage_bytes: u64,
    /// Replies sent while host and chip baud disagreed (sent garbled).
    pub garbled_by_baud: u64,
    /// Replies sent with an injected CRC error.
    pub crc_corrupted: u64,
    /// Bytes dropped by injection.
    pub bytes_dropped: u64,
    /// Bytes garbled by injection.
    pub bytes_garbled: u64,
    /// Wrong nonces injected.
    pub wrong_nonces: u64,
    /// Output dropped because the host was not reading (pty buffer full).
    pub overflow_bytes: u64,
    /// Hashes the emulator's CPU actually computed.
    pub hashes_computed: u64,
}

#[derive(Debug, Clone)]
struct Chip {
    address: u8,
    addressed: bool,
    regs: Box<[u32; 256]>,
}

impl Chip {
    fn frequency(&self, model: Model) -> f32 {
        Pll::frequency_from_register(self.regs[usize::from(reg::PLL0)])
            .unwrap_or(model.reset_frequency_mhz())
    }
}

#[derive(Debug)]
struct Shared {
    chips: Vec<Chip>,
    baud: u32,
    stats: EmulatorStats,
    /// A power cycle the worker has still to apply to its own state.
    reset: bool,
    /// When the latest nonces went out on the wire (for latency figures).
    sent: VecDeque<(u32, Instant)>,
}

/// Nonces whose send time is remembered.
const SENT_MEMORY: usize = 8192;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running emulated chain. Dropping it stops the thread.
pub struct Emulator {
    cfg: EmulatorConfig,
    path: PathBuf,
    shared: Arc<Mutex<Shared>>,
    faults: Arc<Faults>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _slave: OwnedFd,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("cfg", &self.cfg)
            .field("path", &self.path)
            .finish()
    }
}

fn invalid(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg.to_string())
}

impl Emulator {
    /// Opens a pty pair and starts the chain on its master side.
    pub fn spawn(cfg: EmulatorConfig) -> std::io::Result<Emulator> {
        if cfg.chips == 0 || cfg.chips > 256 {
            return Err(invalid("chips must be 1..=256"));
        }
        if !(cfg.difficulty.is_finite() && cfg.difficulty > 0.0) {
            return Err(invalid("difficulty must be finite and > 0"));
        }
        if !(cfg.hashrate_hs.is_finite() && cfg.hashrate_hs > 0.0) {
            return Err(invalid("hashrate must be finite and > 0"));
        }
        let pty = nix::pty::openpty(None, None)?;
        let path = nix::unistd::ttyname(&pty.slave)?;
        // Raw from the start so nothing is echoed before the driver opens it.
        let mut t = tcgetattr(pty.slave.as_fd())?;
        cfmakeraw(&mut t);
        cfsetspeed(&mut t, nix::sys::termios::BaudRate::B115200)?;
        tcsetattr(pty.slave.as_fd(), SetArg::TCSANOW, &t)?;
        let flags = fcntl(&pty.master, FcntlArg::F_GETFL)?;
        fcntl(
            &pty.master,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )?;
        let chips = (0..cfg.chips)
            .map(|_| Chip {
                address: 0,
                addressed: false,
                regs: Box::new([0u32; 256]),
            })
            .collect();
        let shared = Arc::new(Mutex::new(Shared {
            chips,
            baud: 115_740,
            stats: EmulatorStats {
                nonces: vec![0; cfg.chips],
                ..EmulatorStats::default()
            },
            reset: false,
            sent: VecDeque::new(),
        }));
        let faults = Arc::new(Faults {
            corrupt_crc: AtomicU32::new(0),
            drop_bytes: AtomicU32::new(0),
            garble_bytes: AtomicU32::new(0),
            wrong_nonces: AtomicU32::new(0),
            dead: Mutex::new(vec![false; cfg.chips]),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let slave_for_thread = pty.slave.try_clone()?;
        let (wc, ws, wf, wstop) = (cfg.clone(), shared.clone(), faults.clone(), stop.clone());
        let master = pty.master;
        let thread = std::thread::Builder::new()
            .name("asic-emulator".into())
            .spawn(move || Worker::new(wc, master, slave_for_thread, ws, wf, wstop).run())?;
        Ok(Emulator {
            cfg,
            path,
            shared,
            faults,
            stop,
            thread: Some(thread),
            _slave: pty.slave,
        })
    }

    /// The pty slave the driver opens.
    pub fn tty_path(&self) -> &Path {
        &self.path
    }

    /// The emulated configuration.
    pub fn config(&self) -> &EmulatorConfig {
        &self.cfg
    }

    /// The fault-injection handle.
    pub fn faults(&self) -> Arc<Faults> {
        self.faults.clone()
    }

    /// Chip `chip`'s clock from its PLL register, MHz (for a board model's
    /// heat estimate); `None` past the end of the chain.
    pub fn chip_frequency_mhz(&self, chip: usize) -> Option<f32> {
        lock(&self.shared)
            .chips
            .get(chip)
            .map(|c| c.frequency(self.cfg.model))
    }

    /// A register of chip `chip` as last written.
    pub fn chip_register(&self, chip: usize, reg_addr: u8) -> Option<u32> {
        lock(&self.shared)
            .chips
            .get(chip)
            .map(|c| c.regs[usize::from(reg_addr)])
    }

    /// The address chip `chip` was given, if any.
    pub fn chip_address(&self, chip: usize) -> Option<u8> {
        lock(&self.shared)
            .chips
            .get(chip)
            .and_then(|c| c.addressed.then_some(c.address))
    }

    /// The chips' UART rate.
    pub fn baud(&self) -> u32 {
        lock(&self.shared).baud
    }

    /// Power-cycles the chips, as a board does when its rail goes off and
    /// on or its reset line is pulsed: addresses, registers, the job and
    /// the baud rate return to their reset state (the counters stay).
    pub fn power_cycle(&self) {
        let mut sh = lock(&self.shared);
        for c in &mut sh.chips {
            c.address = 0;
            c.addressed = false;
            c.regs.fill(0);
        }
        sh.baud = 115_740;
        sh.reset = true;
    }

    /// When the reply carrying `nonce` was written to the wire, for the
    /// latest few thousand nonces (measuring nonce-to-share latency).
    pub fn sent_at(&self, nonce: u32) -> Option<Instant> {
        lock(&self.shared)
            .sent
            .iter()
            .rev()
            .find(|(n, _)| *n == nonce)
            .map(|(_, t)| *t)
    }

    /// Counters so far.
    pub fn stats(&self) -> EmulatorStats {
        lock(&self.shared).stats.clone()
    }

    /// Stops the thread (also done on drop).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, Clone, Copy)]
struct Found {
    pos: u64,
    chip: usize,
    nonce: u32,
    version: u32,
}

struct ActiveJob {
    frame: JobFrame,
    mask: u32,
    scan_pos: u64,
    chip_pos: Vec<f64>,
    queue: VecDeque<Found>,
    exhausted: bool,
}

struct Worker {
    cfg: EmulatorConfig,
    master: OwnedFd,
    slave: OwnedFd,
    shared: Arc<Mutex<Shared>>,
    faults: Arc<Faults>,
    stop: Arc<AtomicBool>,
    parser: HostFrameParser,
    events: Vec<HostEvent>,
    out: Vec<u8>,
    /// Nonces in `out`, not yet written.
    queued: Vec<u32>,
    job: Option<ActiveJob>,
    inactive: bool,
    target: Target,
    backend: Arc<dyn hashwatt_hash::Backend>,
    rng: rand::rngs::ThreadRng,
}

/// Hashes per scan call: small enough to keep the pty responsive.
const SCAN_CHUNK: u64 = 1 << 16;

/// Spreads the low bits of `k` over the set bits of `mask`.
fn deposit(mut k: u64, mask: u32) -> u32 {
    let mut out = 0u32;
    for bit in 0..32 {
        if mask & (1 << bit) != 0 {
            if k & 1 != 0 {
                out |= 1 << bit;
            }
            k >>= 1;
        }
    }
    out
}

impl Worker {
    fn new(
        cfg: EmulatorConfig,
        master: OwnedFd,
        slave: OwnedFd,
        shared: Arc<Mutex<Shared>>,
        faults: Arc<Faults>,
        stop: Arc<AtomicBool>,
    ) -> Worker {
        let target = Target::from_difficulty(cfg.difficulty).unwrap_or(Target::MAX);
        let backend = hashwatt_hash::available()
            .into_iter()
            .next()
            .unwrap_or_else(|| Arc::new(hashwatt_hash::scalar::Scalar));
        Worker {
            cfg,
            master,
            slave,
            shared,
            faults,
            stop,
            parser: HostFrameParser::new(),
            events: Vec::new(),
            out: Vec::new(),
            queued: Vec::new(),
            job: None,
            inactive: false,
            target,
            backend,
            rng: rand::rng(),
        }
    }

    fn run(&mut self) {
        let mut buf = [0u8; 4096];
        let mut last = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            if std::mem::take(&mut lock(&self.shared).reset) {
                self.job = None;
                self.inactive = false;
                self.parser = HostFrameParser::new();
                self.out.clear();
            }
            let wait: u16 = if self.job.is_some() { 1 } else { 20 };
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            let ready = poll(&mut fds, PollTimeout::from(wait)).unwrap_or(0);
            if ready > 0 {
                match nix::unistd::read(&self.master, &mut buf) {
                    Ok(n) if n > 0 => {
                        self.events.clear();
                        self.parser.push(&buf[..n], &mut self.events);
                        let events = std::mem::take(&mut self.events);
                        for ev in &events {
                            self.handle(ev);
                        }
                        self.events = events;
                    }
                    Ok(_) | Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            let now = Instant::now();
            let dt = now.duration_since(last).as_secs_f64();
            last = now;
            self.mine(dt);
            self.flush();
        }
    }

    fn handle(&mut self, ev: &HostEvent) {
        match *ev {
            HostEvent::Garbage { bytes } => {
                lock(&self.shared).stats.garbage_bytes += bytes as u64;
            }
            HostEvent::Rejected(e) => {
                tracing::debug!(error = %e, "emulator ignored a frame");
                lock(&self.shared).stats.frames_rejected += 1;
            }
            HostEvent::Job(frame) => {
                let mut sh = lock(&self.shared);
                sh.stats.jobs += 1;
                let mask = sh
                    .chips
                    .first()
                    .map(|c| version_mask_from_value(c.regs[usize::from(reg::VERSION_MASK)]))
                    .unwrap_or(0);
                drop(sh);
                self.job = Some(ActiveJob {
                    frame,
                    mask,
                    scan_pos: 0,
                    chip_pos: vec![0.0; self.cfg.chips],
                    queue: VecDeque::new(),
                    exhausted: false,
                });
            }
            HostEvent::Command(cmd) => self.command(cmd),
        }
    }

    fn command(&mut self, cmd: Command) {
        let model = self.cfg.model;
        let dead: Vec<bool> = lock(&self.faults.dead).clone();
        let mut sh = lock(&self.shared);
        sh.stats.commands += 1;
        match cmd {
            Command::ChainInactive => {
                self.inactive = true;
            }
            Command::SetAddress(a) => {
                if let Some(c) = sh.chips.iter_mut().find(|c| !c.addressed) {
                    c.address = a;
                    c.addressed = true;
                }
            }
            Command::Write {
                dest,
                reg: r,
                value,
            } => {
                for c in sh.chips.iter_mut() {
                    if dest == Dest::All || dest == Dest::Chip(c.address) {
                        c.regs[usize::from(r)] = value;
                    }
                }
                if dest == Dest::All
                    && let Some(b) = baud_from_write(r, value)
                {
                    sh.baud = b;
                }
                if r == reg::VERSION_MASK
                    && let Some(job) = self.job.as_mut()
                {
                    job.mask = version_mask_from_value(value);
                }
            }
            Command::Read { dest, reg: r } => {
                for (i, c) in sh.chips.iter().enumerate() {
                    if dead[i] {
                        continue;
                    }
                    if dest == Dest::All || dest == Dest::Chip(c.address) {
                        let value = if r == reg::CHIP_ID {
                            chip_id_value(model, c.address)
                        } else {
                            c.regs[usize::from(r)]
                        };
                        let reply = Reply::Register(RegisterReply {
                            value,
                            chip_address: c.address,
                            reg: r,
                        });
                        self.out.extend_from_slice(&reply.encode());
                    }
                }
            }
        }
    }

    fn mine(&mut self, dt: f64) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        let model = self.cfg.model;
        let chips = self.cfg.chips;
        let chips_up = chips.next_power_of_two() as f64;
        let dead: Vec<bool> = lock(&self.faults.dead).clone();
        let freqs: Vec<f32> = lock(&self.shared)
            .chips
            .iter()
            .map(|c| c.frequency(model))
            .collect();
        let per_chip = self.cfg.hashrate_hs / chips as f64;
        let f_def = f64::from(model.default_frequency_mhz());
        let mut fastest = 0.0f64;
        for (i, pos) in job.chip_pos.iter_mut().enumerate() {
            let rate = per_chip * f64::from(freqs[i]) / f_def;
            // Never let a chip run more than a second ahead of the scan.
            *pos = (*pos + dt.min(0.25) * rate).min(job.scan_pos as f64 / chips_up + rate);
            fastest = fastest.max(rate);
        }
        // Scan ahead of the fastest chip by ~20 ms of its work.
        let max_pos = job.chip_pos.iter().copied().fold(0.0, f64::max);
        let want = ((max_pos + fastest * 0.02) * chips_up) as u64;
        let budget = Instant::now() + Duration::from_millis(5);
        while !job.exhausted && job.scan_pos < want && Instant::now() < budget {
            let roll = job.scan_pos >> 32;
            let bits = job.mask.count_ones();
            if bits < 64 && roll >= (1u64 << bits) {
                job.exhausted = true;
                break;
            }
            let version = (job.frame.version & !job.mask) | deposit(roll, job.mask);
            let start = (job.scan_pos & 0xffff_ffff) as u32;
            let count = SCAN_CHUNK.min((1u64 << 32) - u64::from(start));
            let header = job.frame.header(version, 0);
            let found = hashwatt_hash::scan(
                &*self.backend,
                &header,
                self.target.as_be_bytes(),
                start,
                count,
            );
            for nonce in found {
                let Some(chip) = model::chip_index(model::nonce_chip_address(nonce), chips) else {
                    continue;
                };
                if dead[chip] {
                    continue;
                }
                job.queue.push_back(Found {
                    pos: (roll << 32) | u64::from(nonce),
                    chip,
                    nonce,
                    version,
                });
            }
            job.scan_pos += count;
            lock(&self.shared).stats.hashes_computed += count;
        }
        // Emit every nonce whose chip has reached it.
        let mut due = Vec::new();
        job.queue.retain(|f| {
            if dead[f.chip] {
                return false;
            }
            if f.pos as f64 / chips_up <= job.chip_pos[f.chip] {
                due.push(*f);
                false
            } else {
                true
            }
        });
        let frame = job.frame;
        let mask = job.mask;
        for f in due {
            self.emit(&frame, mask, f);
        }
    }

    fn emit(&mut self, frame: &JobFrame, mask: u32, f: Found) {
        let model = self.cfg.model;
        let mut nonce = f.nonce;
        let mut wrong = false;
        if take_one(&self.faults.wrong_nonces) {
            wrong = true;
            // Flip low bits of the big-endian view (keeps chip and core
            // fields) until the header no longer meets the difficulty.
            for bit in 24..32 {
                let candidate = f.nonce ^ (1u32 << bit);
                let hash = hashwatt_hash::sha256d(&frame.header(f.version, candidate));
                if !self.target.is_met_by(&hash) {
                    nonce = candidate;
                    break;
                }
            }
        }
        let address = lock(&self.shared).chips[f.chip].address;
        let small_core = ((f.nonce >> 8) & 0xff) as u8;
        let reply = Reply::Nonce(NonceReply {
            nonce,
            midstate: address,
            id_byte: model.reply_id_byte(frame.job_id, small_core),
            version_bits: model::version_field(f.version, mask),
        });
        let mut bytes = reply.encode();
        let mut sh = lock(&self.shared);
        if take_one(&self.faults.corrupt_crc) {
            bytes[10] ^= 0x01;
            sh.stats.crc_corrupted += 1;
        }
        if wrong {
            sh.stats.wrong_nonces += 1;
        }
        sh.stats.nonces[f.chip] += 1;
        drop(sh);
        self.out.extend_from_slice(&bytes);
        self.queued.push(nonce);
    }

    fn host_baud(&self) -> u32 {
        tcgetattr(self.slave.as_fd())
            .map(|t| baud_value(cfgetospeed(&t)))
            .unwrap_or(0)
    }

    fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let chip_baud = lock(&self.shared).baud;
        let host = self.host_baud();
        let mismatch = (f64::from(host) - f64::from(chip_baud)).abs() / f64::from(chip_baud) > 0.05;
        let mut wire = Vec::with_capacity(self.out.len());
        let (mut dropped, mut garbled) = (0u64, 0u64);
        for &b in &self.out {
            if take_one(&self.faults.drop_bytes) {
                dropped += 1;
                continue;
            }
            if mismatch {
                wire.push(self.rng.random::<u8>());
            } else if take_one(&self.faults.garble_bytes) {
                garbled += 1;
                wire.push(b ^ self.rng.random_range(1..=255u8));
            } else {
                wire.push(b);
            }
        }
        {
            let mut sh = lock(&self.shared);
            sh.stats.bytes_dropped += dropped;
            sh.stats.bytes_garbled += garbled;
            if mismatch {
                sh.stats.garbled_by_baud += (self.out.len() / crate::protocol::REPLY_LEN) as u64;
            }
        }
        self.out.clear();
        // Stamped before the write: the driver may read the reply before
        // this thread runs again.
        let now = Instant::now();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            match nix::unistd::write(&self.master, rest) {
                Ok(n) => rest = &rest[n..],
                Err(Errno::EINTR) => {}
                Err(_) => {
                    lock(&self.shared).stats.overflow_bytes += rest.len() as u64;
                    break;
                }
            }
        }
        let mut sh = lock(&self.shared);
        for n in self.queued.drain(..) {
            if sh.sent.len() == SENT_MEMORY {
                sh.sent.pop_front();
            }
            sh.sent.push_back((n, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposit_spreads_bits() {
        assert_eq!(deposit(0b11, 0x1fff_e000), 0x6000);
        assert_eq!(deposit(1, 0), 0);
        assert_eq!(deposit(0xffff, 0x1fff_e000), 0x1fff_e000);
    }
}
