//! Linux powercap RAPL package energy counters.
//!
//! Intel CPUs (and AMD Zen CPUs with the kernel's RAPL support) expose a
//! cumulative energy counter per CPU package under
//! `/sys/class/powercap/intel-rapl:N/energy_uj` (`amd-rapl:N` on some
//! kernels). It is the cheapest real measurement available on a PC-class
//! appliance. The counter wraps at `max_energy_range_uj`, so deltas are
//! taken modulo that range. Since Linux 5.10 `energy_uj` is readable by root
//! only; without access [`RaplSource::discover`] fails and the host falls
//! back to the model.

use std::{
    fs,
    io::ErrorKind,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{MeterError, PowerSource, Sample, avg_watts, elapsed};

const NAME: &str = "rapl";

/// Above this average power one package cannot be; a larger delta means
/// the counter was reset (driver reload), not that it wrapped.
const MAX_PLAUSIBLE_W_PER_ZONE: f64 = 5_000.0;

/// Longest content of a counter file we quote back in an error.
const MAX_QUOTED: usize = 40;

/// One package zone.
#[derive(Debug)]
struct Zone {
    label: String,
    energy: PathBuf,
    max_range_uj: u64,
    prev_uj: Option<u64>,
}

/// Sums the energy counters of all CPU package zones.
#[derive(Debug)]
pub struct RaplSource {
    zones: Vec<Zone>,
    last: Option<Instant>,
}

/// Whether a powercap directory name is a top-level RAPL zone such as
/// `intel-rapl:0` (sub-zones look like `intel-rapl:0:1` and are skipped
/// because the package already includes them).
fn is_top_level_zone(name: &str) -> bool {
    let Some((prefix, index)) = name.split_once(':') else {
        return false;
    };
    matches!(prefix, "intel-rapl" | "amd-rapl")
        && !index.is_empty()
        && index.bytes().all(|b| b.is_ascii_digit())
}

fn quote(content: &str) -> String {
    content.trim().chars().take(MAX_QUOTED).collect()
}

fn read_u64(path: &Path) -> Result<u64, MeterError> {
    let text = fs::read_to_string(path).map_err(|err| MeterError::Io {
        path: path.display().to_string(),
        err,
    })?;
    text.trim().parse().map_err(|_| MeterError::BadCounter {
        path: path.display().to_string(),
        content: quote(&text),
    })
}

/// Energy between two readings of a counter that wraps at `max_range`.
///
/// `now < prev` means the counter wrapped once: the delta is
/// `(now + max_range - prev) mod max_range`.
pub fn wrapping_delta(prev: u64, now: u64, max_range: u64) -> u64 {
    if now >= prev {
        now - prev
    } else if max_range == 0 {
        0
    } else {
        let d =
            (u128::from(now) + u128::from(max_range) - u128::from(prev)) % u128::from(max_range);
        // `d < max_range <= u64::MAX`, so this never saturates.
        u64::try_from(d).unwrap_or(u64::MAX)
    }
}

impl RaplSource {
    /// Finds the package zones under `root` (normally
    /// `/sys/class/powercap`; tests pass a fake tree) and checks that their
    /// counters can be read.
    ///
    /// Fails with [`MeterError::Unavailable`] when there is no powercap
    /// tree, no package zone, or a counter is not readable (the reason says
    /// which and why, for the operator).
    pub fn discover(root: &Path) -> Result<Self, MeterError> {
        let unavailable = |reason: String| MeterError::Unavailable {
            source_name: NAME,
            reason,
        };
        let entries = fs::read_dir(root).map_err(|e| {
            unavailable(if e.kind() == ErrorKind::NotFound {
                format!(
                    "{} does not exist (kernel without powercap, or a VM/container without RAPL)",
                    root.display()
                )
            } else {
                format!("cannot list {}: {e}", root.display())
            })
        })?;
        let mut dirs: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                is_top_level_zone(&name).then(|| (name, e.path()))
            })
            .collect();
        dirs.sort();
        let mut zones = Vec::new();
        for (dir_name, dir) in dirs {
            // A top-level zone may also be `psys` (whole platform) on some
            // laptops; only packages are summed, to avoid double counting.
            let label = fs::read_to_string(dir.join("name"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| dir_name.clone());
            if !label.starts_with("package") && label != dir_name {
                continue;
            }
            let energy = dir.join("energy_uj");
            let max_path = dir.join("max_energy_range_uj");
            let max_range_uj = read_u64(&max_path).map_err(|e| unavailable(access_reason(&e)))?;
            if max_range_uj == 0 {
                return Err(unavailable(format!("{} is zero", max_path.display())));
            }
            read_u64(&energy).map_err(|e| unavailable(access_reason(&e)))?;
            zones.push(Zone {
                label: format!("{dir_name} ({label})"),
                energy,
                max_range_uj,
                prev_uj: None,
            });
        }
        if zones.is_empty() {
            return Err(unavailable(format!(
                "no RAPL package zone (intel-rapl:N / amd-rapl:N) under {}",
                root.display()
            )));
        }
        Ok(Self { zones, last: None })
    }

    /// The zones being summed, e.g. `intel-rapl:0 (package-0)`, for logs.
    pub fn zones(&self) -> Vec<String> {
        self.zones.iter().map(|z| z.label.clone()).collect()
    }

    /// Forgets all baselines so the next sample starts a new interval.
    fn rebaseline(&mut self) {
        self.last = None;
        for z in &mut self.zones {
            z.prev_uj = None;
        }
    }
}

fn access_reason(e: &MeterError) -> String {
    match e {
        MeterError::Io { path, err } if err.kind() == ErrorKind::PermissionDenied => format!(
            "permission denied reading {path} (root-only since Linux 5.10; run as root or grant read access with a udev rule)"
        ),
        other => other.to_string(),
    }
}

impl PowerSource for RaplSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn sample(&mut self, now: Instant, _hashrate_hs: f64) -> Result<Sample, MeterError> {
        // Read everything first so a failure leaves no zone half-updated.
        let mut readings = Vec::with_capacity(self.zones.len());
        for z in &self.zones {
            match read_u64(&z.energy) {
                Ok(v) if v <= z.max_range_uj => readings.push(v),
                Ok(v) => {
                    let path = z.energy.display().to_string();
                    self.rebaseline();
                    return Err(MeterError::BadCounter {
                        path,
                        content: format!("{v} > max_energy_range_uj"),
                    });
                }
                Err(e) => {
                    // The interval until recovery is covered by the fallback;
                    // restart from a fresh baseline to avoid counting it twice.
                    self.rebaseline();
                    return Err(e);
                }
            }
        }
        let interval = elapsed(self.last, now);
        let secs = interval.as_secs_f64();
        let mut joules = 0.0;
        let mut implausible = None;
        for (z, &now_uj) in self.zones.iter().zip(&readings) {
            if let Some(prev) = z.prev_uj {
                let j = wrapping_delta(prev, now_uj, z.max_range_uj) as f64 / 1e6;
                if secs > 0.0 && j / secs > MAX_PLAUSIBLE_W_PER_ZONE {
                    implausible = Some(z.energy.display().to_string());
                }
                joules += j;
            }
        }
        for (z, now_uj) in self.zones.iter_mut().zip(readings) {
            z.prev_uj = Some(now_uj);
        }
        let had_baseline = self.last.is_some();
        self.last = Some(now);
        if let Some(path) = implausible {
            // Most likely a counter reset; the new readings are the baseline.
            return Err(MeterError::BadCounter {
                path,
                content: format!("jump of {:.0} J in {secs:.1} s (counter reset?)", joules),
            });
        }
        let interval = if had_baseline {
            interval
        } else {
            Duration::ZERO
        };
        Ok(Sample {
            watts: avg_watts(joules, interval),
            joules,
            interval,
            source: NAME,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names() {
        assert!(is_top_level_zone("intel-rapl:0"));
        assert!(is_top_level_zone("intel-rapl:12"));
        assert!(is_top_level_zone("amd-rapl:1"));
        assert!(!is_top_level_zone("intel-rapl"));
        assert!(!is_top_level_zone("intel-rapl:0:1"));
        assert!(!is_top_level_zone("intel-rapl-mmio:0"));
        assert!(!is_top_level_zone("intel-rapl:"));
    }

    #[test]
    fn wrapping_delta_arithmetic() {
        assert_eq!(wrapping_delta(100, 250, 1000), 150);
        assert_eq!(wrapping_delta(900, 100, 1000), 200);
        assert_eq!(wrapping_delta(999, 0, 1000), 1);
        assert_eq!(wrapping_delta(u64::MAX - 1, 3, u64::MAX), 4);
    }
}
