//! Bitmain BM13xx ASIC chains (BM1366, BM1368, BM1370) for hashwatt.
//!
//! Layers, bottom up, each replaceable and testable on its own:
//! - [`crc`], [`protocol`] and [`model`]: the chips' wire format (command
//!   frames with CRC-5, full-header job frames with CRC-16, 9- and 11-byte
//!   replies) and what differs per model; pure functions, no I/O.
//! - [`serial`]: a raw 8N1 serial port opened with termios (a USB-CDC or
//!   UART device, or a pseudo-terminal), with the baud switch.
//! - [`chain`]: the chain driver: reset, enumeration, addressing, PLL and
//!   baud, job dispatch and nonce parsing, every nonce mapped back to its
//!   work and re-checked with the host's SHA-256d.
//! - [`emulator`]: a chip chain on a real pseudo-terminal that answers the
//!   same frames and returns real nonces, with fault injection.
//! - [`board`], [`thermal`] and [`autotune`]: the power rail, temperature
//!   sensors and fan of a board (Linux hwmon/sysfs, or emulated), the fan
//!   and overheat control loop, and the frequency/voltage search.

pub mod autotune;
pub mod board;
pub mod chain;
pub mod crc;
pub mod emulator;
pub mod model;
pub mod protocol;
pub mod serial;
pub mod thermal;
