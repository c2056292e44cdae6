//! The serial link to a chip chain: a trait the driver is generic over, and
//! a raw 8N1 termios port for UARTs, USB-CDC bridges and pseudo-terminals.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::Mode;
use nix::sys::termios::{
    BaudRate, ControlFlags, FlushArg, SetArg, SpecialCharacterIndices, Termios, cfmakeraw,
    cfsetspeed, tcflush, tcgetattr, tcsetattr,
};

/// Errors of the serial link.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    /// Opening the device failed.
    #[error("cannot open {path}: {source}")]
    Open {
        /// Device path.
        path: PathBuf,
        /// Cause.
        source: Errno,
    },
    /// Configuring termios failed.
    #[error("cannot configure the port: {0}")]
    Config(Errno),
    /// The platform has no termios constant for this rate.
    #[error("baud rate {0} is not supported by this platform")]
    UnsupportedBaud(u32),
    /// A read or write failed.
    #[error("serial I/O error: {0}")]
    Io(Errno),
    /// The other end went away (USB unplugged, emulator stopped).
    #[error("serial device disconnected")]
    Disconnected,
    /// A write could not complete in time.
    #[error("serial write timed out")]
    WriteTimeout,
}

/// A byte link to a chain. Implemented by [`TtyPort`]; tests can supply
/// their own.
pub trait SerialLink: Send {
    /// Writes every byte (blocking until the OS accepted them).
    fn write_all(&mut self, b: &[u8]) -> Result<(), SerialError>;
    /// Reads what is available, waiting up to `timeout` for the first byte;
    /// `Ok(0)` on timeout.
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, SerialError>;
    /// Drains pending output, then switches the host side to `baud`.
    fn set_baud(&mut self, baud: u32) -> Result<(), SerialError>;
    /// The host side's current rate.
    fn baud(&self) -> u32;
    /// Discards bytes received but not read yet (what arrived while the
    /// two ends switched rates is noise).
    fn clear_input(&mut self) -> Result<(), SerialError> {
        Ok(())
    }
}

/// The termios constant for `baud`, for the rates boards use.
pub fn baud_constant(baud: u32) -> Option<BaudRate> {
    Some(match baud {
        9600 => BaudRate::B9600,
        19200 => BaudRate::B19200,
        38400 => BaudRate::B38400,
        57600 => BaudRate::B57600,
        115_200 => BaudRate::B115200,
        230_400 => BaudRate::B230400,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        460_800 => BaudRate::B460800,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        921_600 => BaudRate::B921600,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        1_000_000 => BaudRate::B1000000,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        1_500_000 => BaudRate::B1500000,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        2_000_000 => BaudRate::B2000000,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        3_000_000 => BaudRate::B3000000,
        _ => return None,
    })
}

/// The rate a termios constant stands for (0 if unknown).
pub fn baud_value(rate: BaudRate) -> u32 {
    for b in [
        9600, 19200, 38400, 57600, 115_200, 230_400, 460_800, 921_600, 1_000_000, 1_500_000,
        2_000_000, 3_000_000,
    ] {
        if baud_constant(b) == Some(rate) {
            return b;
        }
    }
    0
}

/// The standard host rate closest to a chip rate within 5 % (the chips'
/// dividers give 115 740 for 115 200 and 3 125 000 for 3 000 000).
pub fn host_baud_for(chip_baud: u32) -> Option<u32> {
    [
        115_200u32, 230_400, 460_800, 921_600, 1_000_000, 1_500_000, 2_000_000, 3_000_000,
    ]
    .into_iter()
    .filter(|b| (f64::from(*b) - f64::from(chip_baud)).abs() / f64::from(chip_baud) <= 0.05)
    .min_by_key(|b| b.abs_diff(chip_baud))
}

/// A raw 8N1 serial port without flow control, opened with `O_NOCTTY` so it
/// never becomes the controlling terminal.
#[derive(Debug)]
pub struct TtyPort {
    fd: OwnedFd,
    baud: u32,
    path: PathBuf,
}

fn raw_termios(fd: &OwnedFd, baud: u32) -> Result<Termios, SerialError> {
    let rate = baud_constant(baud).ok_or(SerialError::UnsupportedBaud(baud))?;
    let mut t = tcgetattr(fd.as_fd()).map_err(SerialError::Config)?;
    cfmakeraw(&mut t);
    t.control_flags |= ControlFlags::CLOCAL | ControlFlags::CREAD | ControlFlags::CS8;
    t.control_flags &= !(ControlFlags::CSTOPB | ControlFlags::PARENB | ControlFlags::CRTSCTS);
    t.input_flags &= !(nix::sys::termios::InputFlags::IXON
        | nix::sys::termios::InputFlags::IXOFF
        | nix::sys::termios::InputFlags::IXANY);
    // Reads return what is there; waiting is done with poll.
    t.control_chars[SpecialCharacterIndices::VMIN as usize] = 0;
    t.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
    cfsetspeed(&mut t, rate).map_err(SerialError::Config)?;
    Ok(t)
}

impl TtyPort {
    /// Opens `path` raw at `baud` and discards anything already buffered.
    pub fn open(path: impl AsRef<Path>, baud: u32) -> Result<TtyPort, SerialError> {
        let path = path.as_ref().to_path_buf();
        let fd = open(
            &path,
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| SerialError::Open {
            path: path.clone(),
            source,
        })?;
        let t = raw_termios(&fd, baud)?;
        tcsetattr(fd.as_fd(), SetArg::TCSANOW, &t).map_err(SerialError::Config)?;
        let _ = tcflush(fd.as_fd(), FlushArg::TCIOFLUSH);
        tracing::debug!(path = %path.display(), baud, "serial port open");
        Ok(TtyPort { fd, baud, path })
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn wait(&self, flags: PollFlags, timeout: Duration) -> Result<PollFlags, SerialError> {
        let ms = timeout.as_millis().min(u128::from(u16::MAX)) as u16;
        let mut fds = [PollFd::new(self.fd.as_fd(), flags)];
        loop {
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => return Ok(PollFlags::empty()),
                Ok(_) => return Ok(fds[0].revents().unwrap_or(PollFlags::empty())),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(SerialError::Io(e)),
            }
        }
    }
}

impl SerialLink for TtyPort {
    fn write_all(&mut self, mut b: &[u8]) -> Result<(), SerialError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !b.is_empty() {
            match nix::unistd::write(&self.fd, b) {
                Ok(0) => return Err(SerialError::Disconnected),
                Ok(n) => b = &b[n..],
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(SerialError::WriteTimeout);
                    }
                    let r = self.wait(PollFlags::POLLOUT, deadline - now)?;
                    if r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                        return Err(SerialError::Disconnected);
                    }
                }
                Err(Errno::EIO) => return Err(SerialError::Disconnected),
                Err(e) => return Err(SerialError::Io(e)),
            }
        }
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, SerialError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let r = self.wait(PollFlags::POLLIN, timeout)?;
        if r.is_empty() {
            return Ok(0);
        }
        match nix::unistd::read(&self.fd, buf) {
            Ok(0) if r.contains(PollFlags::POLLHUP) => Err(SerialError::Disconnected),
            Ok(n) => Ok(n),
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => Ok(0),
            Err(Errno::EIO) => Err(SerialError::Disconnected),
            Err(e) => Err(SerialError::Io(e)),
        }
    }

    fn set_baud(&mut self, baud: u32) -> Result<(), SerialError> {
        let t = raw_termios(&self.fd, baud)?;
        // TCSADRAIN: bytes already queued leave at the old rate first.
        tcsetattr(self.fd.as_fd(), SetArg::TCSADRAIN, &t).map_err(SerialError::Config)?;
        tracing::debug!(path = %self.path.display(), baud, "host baud switched");
        self.baud = baud;
        Ok(())
    }

    fn baud(&self) -> u32 {
        self.baud
    }

    fn clear_input(&mut self) -> Result<(), SerialError> {
        nix::sys::termios::tcflush(self.fd.as_fd(), nix::sys::termios::FlushArg::TCIFLUSH)
            .map_err(SerialError::Config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baud_tables() {
        assert_eq!(baud_value(baud_constant(115_200).unwrap()), 115_200);
        assert_eq!(baud_value(baud_constant(3_000_000).unwrap()), 3_000_000);
        assert!(baud_constant(123).is_none());
        assert_eq!(host_baud_for(115_741), Some(115_200));
        assert_eq!(host_baud_for(3_125_000), Some(3_000_000));
        assert_eq!(host_baud_for(1_000_000), Some(1_000_000));
        assert_eq!(host_baud_for(700_000), None);
    }

    #[test]
    fn pty_round_trip() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let name = nix::unistd::ttyname(&pty.slave).unwrap();
        let mut port = TtyPort::open(&name, 115_200).unwrap();
        port.write_all(b"\x55\xaa\x53").unwrap();
        let mut buf = [0u8; 8];
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 3 && Instant::now() < deadline {
            let mut fds = [PollFd::new(pty.master.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(100u16));
            if let Ok(n) = nix::unistd::read(&pty.master, &mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        assert_eq!(got, b"\x55\xaa\x53");
        nix::unistd::write(&pty.master, b"\xaa\x55").unwrap();
        let mut got = Vec::new();
        while got.len() < 2 && Instant::now() < deadline {
            let n = port.read(&mut buf, Duration::from_millis(100)).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"\xaa\x55");
        assert_eq!(port.read(&mut buf, Duration::from_millis(10)).unwrap(), 0);
        port.set_baud(1_000_000).unwrap();
        assert_eq!(port.baud(), 1_000_000);
        let t = tcgetattr(pty.slave.as_fd()).unwrap();
        assert_eq!(baud_value(nix::sys::termios::cfgetospeed(&t)), 1_000_000);
        assert!(matches!(
            port.set_baud(12345),
            Err(SerialError::UnsupportedBaud(12345))
        ));
    }
}
