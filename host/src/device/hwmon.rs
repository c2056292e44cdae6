//! CPU temperatures from Linux hwmon (`/sys/class/hwmon`): `k10temp`
//! (AMD), `coretemp` (Intel), `zenpower`, `cpu_thermal` (ARM boards).
//! Absent sensors (most VMs) give an empty list, never an error.

use std::path::{Path, PathBuf};

use super::TempReading;

/// hwmon drivers that measure the CPU package or cores.
const CPU_DRIVERS: &[&str] = &["k10temp", "coretemp", "zenpower", "cpu_thermal"];

/// The temperature inputs of the CPU's hwmon devices under `root`.
#[derive(Clone, Debug, Default)]
pub struct CpuSensors {
    inputs: Vec<(String, PathBuf)>,
}

impl CpuSensors {
    /// Finds the CPU sensors under `root` (normally `/sys/class/hwmon`).
    pub fn discover(root: &Path) -> CpuSensors {
        let mut inputs = Vec::new();
        let Ok(entries) = std::fs::read_dir(root) else {
            return CpuSensors { inputs };
        };
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs {
            let Ok(name) = std::fs::read_to_string(dir.join("name")) else {
                continue;
            };
            let name = name.trim().to_string();
            if !CPU_DRIVERS.contains(&name.as_str()) {
                continue;
            }
            let Ok(files) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut temps: Vec<PathBuf> = files
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|f| f.to_str())
                        .is_some_and(|f| f.starts_with("temp") && f.ends_with("_input"))
                })
                .collect();
            temps.sort();
            for input in temps {
                let label_file = input.with_file_name(
                    input
                        .file_name()
                        .and_then(|f| f.to_str())
                        .unwrap_or("")
                        .replace("_input", "_label"),
                );
                let label = std::fs::read_to_string(&label_file)
                    .map(|l| format!("{name} {}", l.trim()))
                    .unwrap_or_else(|_| name.clone());
                inputs.push((label, input));
            }
        }
        CpuSensors { inputs }
    }

    /// Current readings (sensors that fail to read are left out).
    pub fn read(&self) -> Vec<TempReading> {
        self.inputs
            .iter()
            .filter_map(|(label, path)| {
                let text = std::fs::read_to_string(path).ok()?;
                let milli: f64 = text.trim().parse().ok()?;
                let temp_c = milli / 1000.0;
                (temp_c.is_finite() && (-60.0..=200.0).contains(&temp_c)).then(|| TempReading {
                    label: label.clone(),
                    temp_c,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_k10temp_and_ignores_other_drivers() {
        let root = tempfile::tempdir().unwrap();
        let k = root.path().join("hwmon0");
        std::fs::create_dir(&k).unwrap();
        std::fs::write(k.join("name"), "k10temp\n").unwrap();
        std::fs::write(k.join("temp1_input"), "54250\n").unwrap();
        std::fs::write(k.join("temp1_label"), "Tctl\n").unwrap();
        let nvme = root.path().join("hwmon1");
        std::fs::create_dir(&nvme).unwrap();
        std::fs::write(nvme.join("name"), "nvme\n").unwrap();
        std::fs::write(nvme.join("temp1_input"), "30000\n").unwrap();
        let s = CpuSensors::discover(root.path());
        let r = s.read();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].label, "k10temp Tctl");
        assert!((r[0].temp_c - 54.25).abs() < 1e-9);
        assert!(
            CpuSensors::discover(Path::new("/nonexistent"))
                .read()
                .is_empty()
        );
    }
}
