//! The BM1366/BM1368/BM1370 wire format: pure encoders and decoders.
//!
//! Host → chips: every frame starts `55 AA`, then a header byte (type,
//! broadcast flag, command), a length byte counting everything after the
//! preamble, the payload and a checksum: CRC-5 in a whole byte for command
//! frames, CRC-16 big-endian for job frames.
//!
//! Chips → host: fixed 11-byte replies `AA 55`, eight data bytes and a last
//! byte whose top bit says "nonce reply" and whose low five bits are a CRC-5
//! over everything after the preamble (including the flag bits).

use crate::crc::{crc5, crc5_bits, crc16_false};
use crate::model::{Model, REF_CLOCK_MHZ, VERSION_FIELD_MASK};

/// Preamble of host → chip frames.
pub const HOST_PREAMBLE: [u8; 2] = [0x55, 0xAA];
/// Preamble of chip → host replies.
pub const REPLY_PREAMBLE: [u8; 2] = [0xAA, 0x55];
/// Length of every reply on these models.
pub const REPLY_LEN: usize = 11;
/// Length of a full-header job frame (one midstate slot, as these models use).
pub const JOB_FRAME_LEN: usize = 88;
/// Longest command frame (a register write).
pub const MAX_COMMAND_LEN: usize = 11;

/// Header type bits: a job frame.
pub const TYPE_JOB: u8 = 0x20;
/// Header type bits: a command frame.
pub const TYPE_CMD: u8 = 0x40;
/// Header flag: the command goes to every chip.
pub const GROUP_ALL: u8 = 0x10;
/// Command: give the next unaddressed chip an address.
pub const CMD_SET_ADDRESS: u8 = 0x00;
/// Command: write a register.
pub const CMD_WRITE: u8 = 0x01;
/// Command: read a register.
pub const CMD_READ: u8 = 0x02;
/// Command: chain inactive (chips stop forwarding address assignment).
pub const CMD_INACTIVE: u8 = 0x03;

/// Register addresses the driver and emulator use.
pub mod reg {
    /// Chip id (top 16 bits), core count byte, address byte.
    pub const CHIP_ID: u8 = 0x00;
    /// PLL0 parameters: the hashing clock.
    pub const PLL0: u8 = 0x08;
    /// Hash counting number: nonces per core per version step.
    pub const HASH_COUNTING: u8 = 0x10;
    /// Ticket mask: the difficulty at which nonces are reported.
    pub const TICKET_MASK: u8 = 0x14;
    /// Misc control, including the CLKI baud divider.
    pub const MISC_CONTROL: u8 = 0x18;
    /// Fast UART configuration (the PLL3-derived high baud clock).
    pub const FAST_UART: u8 = 0x28;
    /// Undocumented register ESP-Miner writes on chip 0 of BM1366 chains.
    pub const REG_2C: u8 = 0x2C;
    /// Core register control (indirect writes into the cores).
    pub const CORE_REGISTER: u8 = 0x3C;
    /// Hardware error counter.
    pub const ERROR_COUNT: u8 = 0x4C;
    /// Analog mux control (temperature diode routing).
    pub const ANALOG_MUX: u8 = 0x54;
    /// IO driver strength.
    pub const IO_DRIVER: u8 = 0x58;
    /// Total nonce counter.
    pub const TOTAL_COUNT: u8 = 0x8C;
    /// Version rolling mask.
    pub const VERSION_MASK: u8 = 0xA4;
    /// Undocumented init register (clock gating, per the vendor dumps).
    pub const REG_A8: u8 = 0xA8;
    /// Undocumented BM1370 init register.
    pub const REG_B9: u8 = 0xB9;
}

/// Errors decoding frames or computing register values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Fewer or more bytes than the frame type needs.
    #[error("frame length {got}, expected {expected}")]
    Length {
        /// Bytes given.
        got: usize,
        /// Bytes the frame needs.
        expected: usize,
    },
    /// The frame does not start with the expected preamble.
    #[error("bad preamble {0:02x?}")]
    Preamble([u8; 2]),
    /// Checksum mismatch.
    #[error("CRC mismatch")]
    Crc,
    /// A header byte no command uses.
    #[error("unknown header byte {0:#04x}")]
    Header(u8),
    /// A baud rate the chips cannot produce within tolerance.
    #[error("baud rate {0} cannot be produced by the chips")]
    Baud(u32),
    /// A ticket difficulty that is not a power of two ≥ 1.
    #[error("ticket difficulty {0} is not a power of two")]
    TicketDifficulty(u32),
}

/// Which chips a command addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Every chip on the chain.
    All,
    /// The chip with this address.
    Chip(u8),
}

/// A command frame's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Give the first unaddressed chip this address (after chain inactive).
    SetAddress(u8),
    /// Write a 32-bit register.
    Write {
        /// Addressed chips.
        dest: Dest,
        /// Register address.
        reg: u8,
        /// Value, sent big-endian.
        value: u32,
    },
    /// Read a 32-bit register; each addressed chip answers with one reply.
    Read {
        /// Addressed chips.
        dest: Dest,
        /// Register address.
        reg: u8,
    },
    /// Chain inactive: chips stop relaying and wait for addresses.
    ChainInactive,
}

/// An encoded command frame (at most 11 bytes, kept inline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandFrame {
    buf: [u8; MAX_COMMAND_LEN],
    len: u8,
}

impl CommandFrame {
    /// The bytes to write to the port.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

fn dest_parts(dest: Dest) -> (u8, u8) {
    match dest {
        Dest::All => (GROUP_ALL, 0),
        Dest::Chip(a) => (0, a),
    }
}

impl Command {
    /// Encodes the frame: preamble, header, length, payload, CRC-5.
    pub fn encode(&self) -> CommandFrame {
        let mut buf = [0u8; MAX_COMMAND_LEN];
        buf[..2].copy_from_slice(&HOST_PREAMBLE);
        let payload_len = match *self {
            Command::SetAddress(addr) => {
                buf[2] = TYPE_CMD | CMD_SET_ADDRESS;
                buf[4] = addr;
                buf[5] = 0;
                2
            }
            Command::ChainInactive => {
                buf[2] = TYPE_CMD | GROUP_ALL | CMD_INACTIVE;
                2
            }
            Command::Read { dest, reg } => {
                let (group, addr) = dest_parts(dest);
                buf[2] = TYPE_CMD | group | CMD_READ;
                buf[4] = addr;
                buf[5] = reg;
                2
            }
            Command::Write { dest, reg, value } => {
                let (group, addr) = dest_parts(dest);
                buf[2] = TYPE_CMD | group | CMD_WRITE;
                buf[4] = addr;
                buf[5] = reg;
                buf[6..10].copy_from_slice(&value.to_be_bytes());
                6
            }
        };
        // Length counts header, length, payload and CRC.
        buf[3] = (payload_len + 3) as u8;
        let crc_at = 4 + payload_len;
        buf[crc_at] = crc5(&buf[2..crc_at]);
        CommandFrame {
            buf,
            len: (crc_at + 1) as u8,
        }
    }

    /// Decodes a whole command frame (with preamble and CRC).
    pub fn decode(frame: &[u8]) -> Result<Command, ProtocolError> {
        if frame.len() < 7 {
            return Err(ProtocolError::Length {
                got: frame.len(),
                expected: 7,
            });
        }
        if frame[..2] != HOST_PREAMBLE {
            return Err(ProtocolError::Preamble([frame[0], frame[1]]));
        }
        let header = frame[2];
        let expected = usize::from(frame[3]) + 2;
        if frame.len() != expected {
            return Err(ProtocolError::Length {
                got: frame.len(),
                expected,
            });
        }
        if crc5(&frame[2..frame.len() - 1]) != frame[frame.len() - 1] {
            return Err(ProtocolError::Crc);
        }
        if header & 0xe0 != TYPE_CMD {
            return Err(ProtocolError::Header(header));
        }
        let all = header & GROUP_ALL != 0;
        let dest = if all { Dest::All } else { Dest::Chip(frame[4]) };
        let need = |n: usize| -> Result<(), ProtocolError> {
            if frame.len() == n {
                Ok(())
            } else {
                Err(ProtocolError::Length {
                    got: frame.len(),
                    expected: n,
                })
            }
        };
        match header & 0x0f {
            CMD_SET_ADDRESS if !all => {
                need(7)?;
                Ok(Command::SetAddress(frame[4]))
            }
            CMD_INACTIVE if all => {
                need(7)?;
                Ok(Command::ChainInactive)
            }
            CMD_READ => {
                need(7)?;
                Ok(Command::Read {
                    dest,
                    reg: frame[5],
                })
            }
            CMD_WRITE => {
                need(11)?;
                let value = u32::from_be_bytes([frame[6], frame[7], frame[8], frame[9]]);
                Ok(Command::Write {
                    dest,
                    reg: frame[5],
                    value,
                })
            }
            _ => Err(ProtocolError::Header(header)),
        }
    }
}

/// A full-header job as the chips take it. Hashes are given in block
/// header byte order (the bytes at header offsets 4..36 and 36..68); the
/// encoder reorders them for the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobFrame {
    /// Job id (a multiple of 8 below 128, from the model's sequence).
    pub job_id: u8,
    /// First nonce to try (the chips split the space themselves; 0).
    pub starting_nonce: u32,
    /// Compact network target.
    pub nbits: u32,
    /// Block time.
    pub ntime: u32,
    /// Merkle root, header byte order.
    pub merkle_root: [u8; 32],
    /// Previous block hash, header byte order.
    pub prev_hash: [u8; 32],
    /// Block version (the chips roll bits within the version mask register).
    pub version: u32,
}

/// The chips want each 32-byte hash as eight 4-byte words in reverse order
/// (each word's bytes unchanged); the same operation undoes itself.
fn reverse_words(src: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for i in 0..8 {
        out[i * 4..i * 4 + 4].copy_from_slice(&src[(7 - i) * 4..(7 - i) * 4 + 4]);
    }
    out
}

impl JobFrame {
    /// The job built from an 80-byte header (its nonce is ignored).
    pub fn from_header(job_id: u8, header: &[u8; 80]) -> JobFrame {
        let word = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let mut prev_hash = [0u8; 32];
        prev_hash.copy_from_slice(&header[4..36]);
        let mut merkle_root = [0u8; 32];
        merkle_root.copy_from_slice(&header[36..68]);
        JobFrame {
            job_id,
            starting_nonce: 0,
            nbits: word(72),
            ntime: word(68),
            merkle_root,
            prev_hash,
            version: word(0),
        }
    }

    /// The 80-byte header this job hashes with `version` and `nonce`.
    pub fn header(&self, version: u32, nonce: u32) -> [u8; 80] {
        let mut h = [0u8; 80];
        h[0..4].copy_from_slice(&version.to_le_bytes());
        h[4..36].copy_from_slice(&self.prev_hash);
        h[36..68].copy_from_slice(&self.merkle_root);
        h[68..72].copy_from_slice(&self.ntime.to_le_bytes());
        h[72..76].copy_from_slice(&self.nbits.to_le_bytes());
        h[76..80].copy_from_slice(&nonce.to_le_bytes());
        h
    }

    /// Encodes the 88-byte frame: `55 AA 21 56`, job id, midstate count 1,
    /// starting nonce, nbits, ntime (all little-endian as in the header),
    /// merkle root and previous hash (word-reversed), version, CRC-16 BE.
    pub fn encode(&self) -> [u8; JOB_FRAME_LEN] {
        let mut f = [0u8; JOB_FRAME_LEN];
        f[..2].copy_from_slice(&HOST_PREAMBLE);
        f[2] = TYPE_JOB | CMD_WRITE;
        f[3] = (JOB_FRAME_LEN - 2) as u8;
        f[4] = self.job_id;
        f[5] = 0x01;
        f[6..10].copy_from_slice(&self.starting_nonce.to_le_bytes());
        f[10..14].copy_from_slice(&self.nbits.to_le_bytes());
        f[14..18].copy_from_slice(&self.ntime.to_le_bytes());
        f[18..50].copy_from_slice(&reverse_words(&self.merkle_root));
        f[50..82].copy_from_slice(&reverse_words(&self.prev_hash));
        f[82..86].copy_from_slice(&self.version.to_le_bytes());
        let crc = crc16_false(&f[2..86]);
        f[86..88].copy_from_slice(&crc.to_be_bytes());
        f
    }

    /// Decodes a whole job frame, checking its CRC-16.
    pub fn decode(f: &[u8]) -> Result<JobFrame, ProtocolError> {
        if f.len() != JOB_FRAME_LEN {
            return Err(ProtocolError::Length {
                got: f.len(),
                expected: JOB_FRAME_LEN,
            });
        }
        if f[..2] != HOST_PREAMBLE {
            return Err(ProtocolError::Preamble([f[0], f[1]]));
        }
        if f[2] != TYPE_JOB | CMD_WRITE || usize::from(f[3]) != JOB_FRAME_LEN - 2 {
            return Err(ProtocolError::Header(f[2]));
        }
        if crc16_false(&f[2..86]).to_be_bytes() != [f[86], f[87]] {
            return Err(ProtocolError::Crc);
        }
        let word = |at: usize| u32::from_le_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]]);
        let mut mr = [0u8; 32];
        mr.copy_from_slice(&f[18..50]);
        let mut ph = [0u8; 32];
        ph.copy_from_slice(&f[50..82]);
        Ok(JobFrame {
            job_id: f[4],
            starting_nonce: word(6),
            nbits: word(10),
            ntime: word(14),
            merkle_root: reverse_words(&mr),
            prev_hash: reverse_words(&ph),
            version: word(82),
        })
    }
}

/// A nonce reply's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceReply {
    /// The nonce as it goes into the header (bytes 2..6 are header bytes
    /// 76..80). Chip address and core id live inside it, see
    /// [`crate::model::nonce_chip_address`].
    pub nonce: u32,
    /// Byte 6: informational (the emulator puts the chip address here);
    /// the driver does not rely on it.
    pub midstate: u8,
    /// Byte 7: job id bits and small core, per model.
    pub id_byte: u8,
    /// Rolled version bits 13..=28, shifted down by 13.
    pub version_bits: u16,
}

/// A register-read reply's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterReply {
    /// Register value (big-endian on the wire).
    pub value: u32,
    /// Address of the answering chip.
    pub chip_address: u8,
    /// Register that was read.
    pub reg: u8,
}

/// One decoded 11-byte reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A nonce found by a core.
    Nonce(NonceReply),
    /// A register value.
    Register(RegisterReply),
}

impl Reply {
    /// Encodes the 11 bytes a chip sends (the emulator's side).
    pub fn encode(&self) -> [u8; REPLY_LEN] {
        let mut r = [0u8; REPLY_LEN];
        r[..2].copy_from_slice(&REPLY_PREAMBLE);
        let flags = match *self {
            Reply::Nonce(n) => {
                r[2..6].copy_from_slice(&n.nonce.to_le_bytes());
                r[6] = n.midstate;
                r[7] = n.id_byte;
                r[8..10].copy_from_slice(&n.version_bits.to_be_bytes());
                0x80
            }
            Reply::Register(g) => {
                r[2..6].copy_from_slice(&g.value.to_be_bytes());
                r[6] = g.chip_address;
                r[7] = g.reg;
                0x00
            }
        };
        r[10] = flags;
        r[10] = flags | crc5_bits(&r[2..11], 8 * 8 + 3);
        r
    }

    /// Decodes one reply, checking preamble and CRC.
    pub fn decode(r: &[u8; REPLY_LEN]) -> Result<Reply, ProtocolError> {
        if r[..2] != REPLY_PREAMBLE {
            return Err(ProtocolError::Preamble([r[0], r[1]]));
        }
        if crc5(&r[2..]) != 0 {
            return Err(ProtocolError::Crc);
        }
        Ok(if r[10] & 0x80 != 0 {
            Reply::Nonce(NonceReply {
                nonce: u32::from_le_bytes([r[2], r[3], r[4], r[5]]),
                midstate: r[6],
                id_byte: r[7],
                version_bits: u16::from_be_bytes([r[8], r[9]]),
            })
        } else {
            Reply::Register(RegisterReply {
                value: u32::from_be_bytes([r[2], r[3], r[4], r[5]]),
                chip_address: r[6],
                reg: r[7],
            })
        })
    }
}

/// What the reply parser found in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseEvent {
    /// A reply whose CRC checked.
    Reply(Reply),
    /// Eleven bytes started with the preamble but failed the CRC (the raw
    /// bytes, for logs); the parser resynchronised after its preamble.
    CrcError([u8; REPLY_LEN]),
    /// This many bytes were skipped looking for a preamble.
    Garbage {
        /// Bytes skipped.
        bytes: usize,
    },
}

/// Streaming parser for chip replies: feed it whatever the port returned,
/// in any chunking, and it yields complete replies. It keeps one reply's
/// worth of state, resynchronises on `AA 55`, re-scans a failed frame for a
/// later preamble (a dropped byte shifts the real frame), and never panics
/// or allocates except to grow the caller's output vector.
#[derive(Debug, Clone, Default)]
pub struct ReplyParser {
    buf: [u8; REPLY_LEN],
    len: usize,
    garbage: usize,
}

impl ReplyParser {
    /// A parser at the start of a stream.
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// Forgets a partial reply (after a baud switch, say).
    pub fn reset(&mut self) {
        self.len = 0;
        self.garbage = 0;
    }

    /// Bytes of a partial reply held over to the next push.
    pub fn pending(&self) -> usize {
        self.len
    }

    /// Parses `input`, appending events to `out`. Skipped bytes are reported
    /// as one `Garbage` event per run (at the next preamble or the end of
    /// this push).
    pub fn push(&mut self, input: &[u8], out: &mut Vec<ParseEvent>) {
        for &b in input {
            self.feed(b, true, out);
        }
        self.flush_garbage(out);
    }

    fn flush_garbage(&mut self, out: &mut Vec<ParseEvent>) {
        if self.garbage > 0 {
            out.push(ParseEvent::Garbage {
                bytes: self.garbage,
            });
            self.garbage = 0;
        }
    }

    fn feed(&mut self, b: u8, count: bool, out: &mut Vec<ParseEvent>) {
        match self.len {
            0 => {
                if b == REPLY_PREAMBLE[0] {
                    self.buf[0] = b;
                    self.len = 1;
                } else if count {
                    self.garbage += 1;
                }
            }
            1 => {
                if b == REPLY_PREAMBLE[1] {
                    self.buf[1] = b;
                    self.len = 2;
                    self.flush_garbage(out);
                } else if b == REPLY_PREAMBLE[0] {
                    // The previous AA was noise; this one may start a reply.
                    if count {
                        self.garbage += 1;
                    }
                } else {
                    if count {
                        self.garbage += 2;
                    }
                    self.len = 0;
                }
            }
            _ => {
                self.buf[self.len] = b;
                self.len += 1;
                if self.len == REPLY_LEN {
                    self.len = 0;
                    match Reply::decode(&self.buf) {
                        Ok(r) => out.push(ParseEvent::Reply(r)),
                        Err(_) => {
                            out.push(ParseEvent::CrcError(self.buf));
                            // Look for a real reply starting inside the bad one.
                            let tail = self.buf;
                            for &t in &tail[2..] {
                                self.feed(t, false, out);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What the host-frame parser (the chips' side) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostEvent {
    /// A command frame with a good CRC-5.
    Command(Command),
    /// A job frame with a good CRC-16.
    Job(JobFrame),
    /// A frame that failed its checksum or could not be decoded; a chip
    /// ignores it.
    Rejected(ProtocolError),
    /// Bytes skipped looking for a preamble.
    Garbage {
        /// Bytes skipped.
        bytes: usize,
    },
}

/// Streaming parser for host → chip frames (the emulator's receiver). The
/// length byte gives each frame's size; unknown lengths resynchronise.
#[derive(Debug, Clone)]
pub struct HostFrameParser {
    buf: [u8; JOB_FRAME_LEN],
    len: usize,
    want: usize,
    garbage: usize,
}

impl Default for HostFrameParser {
    fn default() -> Self {
        HostFrameParser {
            buf: [0; JOB_FRAME_LEN],
            len: 0,
            want: 0,
            garbage: 0,
        }
    }
}

impl HostFrameParser {
    /// A parser at the start of a stream.
    pub fn new() -> HostFrameParser {
        HostFrameParser::default()
    }

    /// Parses `input`, appending events to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<HostEvent>) {
        for &b in input {
            match self.len {
                0 => {
                    if b == HOST_PREAMBLE[0] {
                        self.buf[0] = b;
                        self.len = 1;
                    } else {
                        self.garbage += 1;
                    }
                }
                1 => {
                    if b == HOST_PREAMBLE[1] {
                        self.buf[1] = b;
                        self.len = 2;
                    } else if b != HOST_PREAMBLE[0] {
                        self.garbage += 2;
                        self.len = 0;
                    } else {
                        self.garbage += 1;
                    }
                }
                2 => {
                    self.buf[2] = b;
                    self.len = 3;
                }
                3 => {
                    let total = usize::from(b) + 2;
                    let ok = if self.buf[2] & TYPE_JOB != 0 {
                        total == JOB_FRAME_LEN
                    } else {
                        total == 7 || total == 11
                    };
                    if ok {
                        self.buf[3] = b;
                        self.len = 4;
                        self.want = total;
                    } else {
                        self.garbage += 4;
                        self.len = 0;
                    }
                }
                _ => {
                    self.buf[self.len] = b;
                    self.len += 1;
                    if self.len == self.want {
                        self.len = 0;
                        if self.garbage > 0 {
                            out.push(HostEvent::Garbage {
                                bytes: self.garbage,
                            });
                            self.garbage = 0;
                        }
                        let frame = &self.buf[..self.want];
                        let ev = if frame[2] & TYPE_JOB != 0 {
                            JobFrame::decode(frame).map(HostEvent::Job)
                        } else {
                            Command::decode(frame).map(HostEvent::Command)
                        };
                        out.push(ev.unwrap_or_else(HostEvent::Rejected));
                    }
                }
            }
        }
        if self.garbage > 0 {
            out.push(HostEvent::Garbage {
                bytes: self.garbage,
            });
            self.garbage = 0;
        }
    }
}

/// The ticket mask register value for a ticket difficulty: the mask is
/// `difficulty - 1` (a power of two keeps it hole-free), each byte's bits
/// reversed as the chips expect.
pub fn ticket_mask_value(difficulty: u32) -> Result<u32, ProtocolError> {
    if difficulty == 0 || !difficulty.is_power_of_two() {
        return Err(ProtocolError::TicketDifficulty(difficulty));
    }
    let mask = difficulty - 1;
    let b = mask.to_be_bytes();
    Ok(u32::from_be_bytes([
        b[0].reverse_bits(),
        b[1].reverse_bits(),
        b[2].reverse_bits(),
        b[3].reverse_bits(),
    ]))
}

/// The ticket difficulty a mask register value stands for (the emulator's
/// side of [`ticket_mask_value`]).
pub fn ticket_difficulty_from_mask(value: u32) -> u64 {
    let b = value.to_be_bytes();
    let mask = u32::from_be_bytes([
        b[0].reverse_bits(),
        b[1].reverse_bits(),
        b[2].reverse_bits(),
        b[3].reverse_bits(),
    ]);
    u64::from(mask) + 1
}

/// The version mask register value: a fixed enable pattern in the top half,
/// the rollable bits (13..=28) shifted down in the low half.
pub fn version_mask_value(mask: u32) -> u32 {
    0x9000_0000 | ((mask & VERSION_FIELD_MASK) >> 13)
}

/// The version mask a register value enables (emulator side).
pub fn version_mask_from_value(value: u32) -> u32 {
    ((value & 0xffff) << 13) & VERSION_FIELD_MASK
}

/// The fast-UART value public drivers write to reach 1 Mbaud (a PLL3
/// derived UART clock).
pub const FAST_UART_1M: u32 = 0x1130_0200;

/// The misc-control bits outside the baud divider, as the public default
/// baud write (divider 26, 115 740 baud) carries them.
pub const MISC_BAUD_BASE: u32 = 0x0000_6031;
/// Misc-control bits holding the CLKI baud divider.
pub const MISC_BAUD_DIV_MASK: u32 = 0x0000_1f00;

/// How to switch the chips to a baud rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaudSetting {
    /// Register to write (misc control or fast UART).
    pub reg: u8,
    /// Value to broadcast.
    pub value: u32,
    /// The rate the chips will actually run at.
    pub chip_baud: u32,
}

/// The register write that puts the chips at `baud`: 1 Mbaud through the
/// fast-UART clock as the public drivers do, anything else through the
/// 25 MHz divider (`25 MHz / ((div + 1) · 8)`, 5-bit divider) if the result
/// is within 5 % of the request.
pub fn baud_setting(baud: u32) -> Result<BaudSetting, ProtocolError> {
    if baud == 1_000_000 {
        return Ok(BaudSetting {
            reg: reg::FAST_UART,
            value: FAST_UART_1M,
            chip_baud: 1_000_000,
        });
    }
    if baud == 0 {
        return Err(ProtocolError::Baud(baud));
    }
    let clk = f64::from(REF_CLOCK_MHZ) * 1e6 / 8.0;
    let div = (clk / f64::from(baud)).round() - 1.0;
    if !(0.0..=31.0).contains(&div) {
        return Err(ProtocolError::Baud(baud));
    }
    let chip = clk / (div + 1.0);
    if (chip - f64::from(baud)).abs() / f64::from(baud) > 0.05 {
        return Err(ProtocolError::Baud(baud));
    }
    Ok(BaudSetting {
        reg: reg::MISC_CONTROL,
        value: MISC_BAUD_BASE | ((div as u32) << 8),
        chip_baud: chip.round() as u32,
    })
}

/// The baud a register write switches the chips to, if it is a baud write
/// in the form [`baud_setting`] produces (init writes to misc control that
/// carry other bits leave the baud alone).
pub fn baud_from_write(reg_addr: u8, value: u32) -> Option<u32> {
    match reg_addr {
        reg::FAST_UART if value == FAST_UART_1M => Some(1_000_000),
        reg::MISC_CONTROL if value & !MISC_BAUD_DIV_MASK == MISC_BAUD_BASE => {
            let div = (value & MISC_BAUD_DIV_MASK) >> 8;
            Some((f64::from(REF_CLOCK_MHZ) * 1e6 / 8.0 / f64::from(div + 1)).round() as u32)
        }
        _ => None,
    }
}

/// The chip-id register value a chip of `model` at `address` returns.
pub fn chip_id_value(model: Model, address: u8) -> u32 {
    u32::from(model.chip_id()) << 16 | u32::from(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_frames_match_public_bytes() {
        assert_eq!(
            Command::ChainInactive.encode().as_bytes(),
            &[0x55, 0xAA, 0x53, 0x05, 0x00, 0x00, 0x03]
        );
        assert_eq!(
            Command::Read {
                dest: Dest::All,
                reg: reg::CHIP_ID
            }
            .encode()
            .as_bytes(),
            &[0x55, 0xAA, 0x52, 0x05, 0x00, 0x00, 0x0A]
        );
        assert_eq!(
            Command::SetAddress(0).encode().as_bytes(),
            &[0x55, 0xAA, 0x40, 0x05, 0x00, 0x00, 0x1C]
        );
        let w = Command::Write {
            dest: Dest::All,
            reg: reg::FAST_UART,
            value: FAST_UART_1M,
        };
        assert_eq!(
            w.encode().as_bytes(),
            &[
                0x55, 0xAA, 0x51, 0x09, 0x00, 0x28, 0x11, 0x30, 0x02, 0x00, 0x03
            ]
        );
        let w = Command::Write {
            dest: Dest::Chip(0),
            reg: reg::REG_2C,
            value: 0x007C_0003,
        };
        assert_eq!(
            w.encode().as_bytes(),
            &[
                0x55, 0xAA, 0x41, 0x09, 0x00, 0x2C, 0x00, 0x7C, 0x00, 0x03, 0x03
            ]
        );
        let vm = Command::Write {
            dest: Dest::All,
            reg: reg::VERSION_MASK,
            value: version_mask_value(0x1fff_e000),
        };
        assert_eq!(
            vm.encode().as_bytes(),
            &[
                0x55, 0xAA, 0x51, 0x09, 0x00, 0xA4, 0x90, 0x00, 0xFF, 0xFF, 0x1C
            ]
        );
        for c in [w, vm, Command::ChainInactive, Command::SetAddress(0x40)] {
            assert_eq!(Command::decode(c.encode().as_bytes()), Ok(c));
        }
        let mut bad = vm.encode().as_bytes().to_vec();
        bad[7] ^= 1;
        assert_eq!(Command::decode(&bad), Err(ProtocolError::Crc));
    }

    #[test]
    fn register_values() {
        assert_eq!(ticket_mask_value(256).unwrap(), 0x0000_00FF);
        assert_eq!(ticket_mask_value(512).unwrap(), 0x0000_80FF);
        assert_eq!(ticket_difficulty_from_mask(0x0000_80FF), 512);
        assert!(ticket_mask_value(300).is_err());
        assert!(ticket_mask_value(0).is_err());
        let b = baud_setting(115_200).unwrap();
        // The public default-baud write: 00 00 7A 31.
        assert_eq!((b.reg, b.value), (reg::MISC_CONTROL, 0x0000_7A31));
        assert_eq!(baud_from_write(b.reg, b.value), Some(b.chip_baud));
        assert_eq!(baud_setting(1_000_000).unwrap().reg, reg::FAST_UART);
        assert_eq!(baud_setting(3_000_000).unwrap().chip_baud, 3_125_000);
        assert!(baud_setting(9600).is_err());
        assert!(baud_setting(2_000_000).is_err());
        // Init writes to misc control are not baud changes.
        assert_eq!(baud_from_write(reg::MISC_CONTROL, 0xF000_C100), None);
        assert_eq!(version_mask_from_value(0x9000_FFFF), 0x1fff_e000);
    }

    #[test]
    fn replies_round_trip_and_match_public_chip_id_reply() {
        // A BM1370 chip-id reply as dumps show it: AA 55 13 70 00 00 00 00 00 00 + CRC.
        let r = Reply::Register(RegisterReply {
            value: chip_id_value(Model::BM1370, 0),
            chip_address: 0,
            reg: 0,
        });
        let bytes = r.encode();
        assert_eq!(&bytes[..10], &[0xAA, 0x55, 0x13, 0x70, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes[10] & 0xe0, 0);
        assert_eq!(Reply::decode(&bytes), Ok(r));
        let n = Reply::Nonce(NonceReply {
            nonce: 0x9546_a142,
            midstate: 0,
            id_byte: 0x35,
            version_bits: 0x1234,
        });
        let b = n.encode();
        assert_eq!(&b[2..6], &[0x42, 0xa1, 0x46, 0x95]);
        assert_eq!(b[7], 0x35);
        assert_eq!(&b[8..10], &[0x12, 0x34]);
        assert_eq!(b[10] & 0x80, 0x80);
        assert_eq!(Reply::decode(&b), Ok(n));
        let mut c = b;
        c[4] ^= 0x40;
        assert_eq!(Reply::decode(&c), Err(ProtocolError::Crc));
    }

    #[test]
    fn parser_resyncs_and_handles_chunks() {
        let a = Reply::Nonce(NonceReply {
            nonce: 0xAA55_AA55,
            midstate: 0xAA,
            id_byte: 0x55,
            version_bits: 0xAA55,
        });
        let b = Reply::Register(RegisterReply {
            value: 0x1366_0000,
            chip_address: 0x40,
            reg: 0,
        });
        let mut stream = vec![0x00, 0xAA, 0x13];
        stream.extend_from_slice(&a.encode());
        // A reply with one byte dropped, then a good one.
        let mut short = b.encode().to_vec();
        short.remove(5);
        stream.extend_from_slice(&short);
        stream.extend_from_slice(&b.encode());
        stream.extend_from_slice(&a.encode());
        for chunk in 1..=stream.len() {
            let mut p = ReplyParser::new();
            let mut out = Vec::new();
            for c in stream.chunks(chunk) {
                p.push(c, &mut out);
            }
            let replies: Vec<Reply> = out
                .iter()
                .filter_map(|e| match e {
                    ParseEvent::Reply(r) => Some(*r),
                    _ => None,
                })
                .collect();
            assert_eq!(replies, vec![a, b, a], "chunk {chunk}");
            assert!(out.iter().any(|e| matches!(e, ParseEvent::CrcError(_))));
            assert!(out.iter().any(|e| matches!(e, ParseEvent::Garbage { .. })));
        }
    }

    #[test]
    fn host_parser_decodes_and_rejects() {
        let job = JobFrame::from_header(0x18, &[7u8; 80]);
        let mut stream = vec![1, 2, 3];
        stream.extend_from_slice(Command::ChainInactive.encode().as_bytes());
        stream.extend_from_slice(&job.encode());
        let mut bad = job.encode();
        bad[40] ^= 1;
        stream.extend_from_slice(&bad);
        let mut p = HostFrameParser::new();
        let mut out = Vec::new();
        for c in stream.chunks(5) {
            p.push(c, &mut out);
        }
        let frames: Vec<_> = out
            .into_iter()
            .filter(|e| !matches!(e, HostEvent::Garbage { .. }))
            .collect();
        assert_eq!(
            frames,
            vec![
                HostEvent::Command(Command::ChainInactive),
                HostEvent::Job(job),
                HostEvent::Rejected(ProtocolError::Crc)
            ]
        );
    }
}
