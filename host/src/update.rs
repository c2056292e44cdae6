//! A/B updates through RAUC: what the slots hold, and installing a signed
//! bundle into the inactive one. RAUC does the verifying and the writing
//! (signature, verity, slot selection); the host adds what an appliance
//! needs on top: the bundle is checked before anything is written
//! (compatible with this appliance, signed — `rauc info` verifies — and not
//! a downgrade), and every answer is in the operator's words.
//!
//! RAUC's own check of a verity bundle covers its signature and manifest;
//! the payload is checked lazily, block by block, while it is written. So a
//! corrupt payload would only be noticed half-way through writing the
//! inactive slot. The host therefore checks the whole payload against the
//! signed root hash first (`veritysetup verify`), and nothing is written
//! for a bundle that fails.
//!
//! The `rauc` program is found on `PATH`, or at `HASHWATT_RAUC` (tests put
//! a wrapper there); `veritysetup` on `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use serde_json::Value;

/// Why an update command could not be done.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Not running from an A/B image (no RAUC, or it has no slots here).
    #[error("updates need the appliance image: {0}")]
    NotAnImage(String),
    /// The bundle was refused before anything was written.
    #[error("bundle refused, nothing written: {0}")]
    Refused(String),
    /// RAUC failed while installing.
    #[error("update failed: {0}")]
    Failed(String),
}

/// One slot as the panel shows it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Slot {
    /// RAUC's name (`rootfs.0`).
    pub name: String,
    /// The boot loader's name (`A`, `B`).
    pub bootname: Option<String>,
    /// `booted`, `active` or `inactive`.
    pub state: Option<String>,
    /// `good` or `bad`, as the boot loader sees it.
    pub boot_status: Option<String>,
    /// Version of the bundle installed in it, if known.
    pub version: Option<String>,
    /// When that bundle was installed (RFC 3339, RAUC's clock), if known.
    pub installed: Option<String>,
}

/// Both slots and which one runs.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// What bundles must be built for.
    pub compatible: String,
    /// Boot name of the running slot.
    pub booted: Option<String>,
    /// RAUC's name of the slot booted next.
    pub primary: Option<String>,
    /// The root slots.
    pub slots: Vec<Slot>,
    /// Set when the newest installed update did not stay: it failed its
    /// trial boots and the boot loader went back to the running slot.
    pub rollback: Option<String>,
    /// Trial boots that failed the health check, newest last (at most 10):
    /// time, slot, version, boot entry and reason.
    pub failed_boots: Vec<String>,
}

/// Where the boot health check records a failed trial boot (one line each).
pub fn boot_failures_path(state_dir: &Path) -> PathBuf {
    state_dir.join("boot-failures.log")
}

/// What a bundle says it is (after RAUC verified its signature).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bundle {
    /// What it was built for.
    pub compatible: String,
    /// Its version.
    pub version: String,
    /// `verity` (the only format installed), `plain` or `crypt`.
    pub format: String,
    /// The signed dm-verity parameters of the payload (verity format).
    pub verity: Option<Verity>,
}

/// The signed dm-verity parameters of a bundle's payload.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verity {
    /// Root hash (hex).
    pub hash: String,
    /// Salt (hex).
    pub salt: String,
    /// Size of the hash tree in bytes.
    pub size: u64,
}

/// The parts of `rauc info`'s text answer the host needs. (Its JSON
/// answer in RAUC 1.8 leaves out the verity parameters.)
fn parse_info(text: &str) -> Result<Bundle, String> {
    let mut fields = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim().trim_matches('\'');
            fields.entry(k.trim().to_string()).or_insert(v.to_string());
        }
    }
    let get = |k: &str| fields.get(k).cloned();
    let compatible = get("Compatible").ok_or("no Compatible in the bundle information")?;
    let version = get("Version").ok_or("no Version in the bundle information")?;
    let format = get("Bundle Format").unwrap_or_else(|| "plain".into());
    let verity = match (get("Verity Hash"), get("Verity Salt"), get("Verity Size")) {
        (Some(hash), Some(salt), Some(size)) => Some(Verity {
            hash,
            salt,
            size: size
                .parse()
                .map_err(|_| format!("verity size {size:?} is not a number"))?,
        }),
        _ => None,
    };
    Ok(Bundle {
        compatible,
        version,
        format,
        verity,
    })
}

/// Checks every block of `bundle`'s payload against its signed root hash.
fn verify_payload(bundle: &Path, verity: &Verity) -> Result<(), UpdateError> {
    use std::io::{Read, Seek, SeekFrom};
    let refuse = |m: String| UpdateError::Refused(m);
    let mut f = std::fs::File::open(bundle)
        .map_err(|e| refuse(format!("cannot read {}: {e}", bundle.display())))?;
    let total = f
        .metadata()
        .map_err(|e| refuse(format!("cannot read {}: {e}", bundle.display())))?
        .len();
    // Layout: payload, hash tree, CMS signature, signature size (u64, BE).
    let mut trailer = [0u8; 8];
    f.seek(SeekFrom::End(-8))
        .and_then(|_| f.read_exact(&mut trailer))
        .map_err(|_| refuse("the bundle is truncated".into()))?;
    let sig = u64::from_be_bytes(trailer);
    let payload = total
        .checked_sub(8)
        .and_then(|t| t.checked_sub(sig))
        .and_then(|t| t.checked_sub(verity.size))
        .filter(|p| *p > 0 && p % 4096 == 0)
        .ok_or_else(|| refuse("the bundle is truncated or its layout is damaged".into()))?;
    let out = Command::new("veritysetup")
        .arg("verify")
        .arg(bundle)
        .arg(bundle)
        .arg(&verity.hash)
        .args([
            "--no-superblock",
            "--format=1",
            "--hash=sha256",
            "--data-block-size=4096",
            "--hash-block-size=4096",
        ])
        .arg(format!("--data-blocks={}", payload / 4096))
        .arg(format!("--hash-offset={payload}"))
        .arg(format!("--salt={}", verity.salt))
        .output()
        .map_err(|e| UpdateError::NotAnImage(format!("cannot run veritysetup: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Err(refuse(format!(
        "its contents do not match the signed hash (corrupt or altered): {why}"
    )))
}

/// The RAUC command line.
#[derive(Clone, Debug)]
pub struct Rauc {
    program: PathBuf,
}

impl Default for Rauc {
    fn default() -> Self {
        Rauc {
            program: std::env::var_os("HASHWATT_RAUC")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("rauc")),
        }
    }
}

/// The lines of a failed `rauc` run that say why, without RAUC's
/// informational messages and their time stamps.
fn reason(stdout: &[u8], stderr: &[u8]) -> String {
    let mut lines = Vec::new();
    for line in String::from_utf8_lossy(stdout)
        .lines()
        .chain(String::from_utf8_lossy(stderr).lines())
    {
        let line = line.trim();
        // "rauc-Message: 05:20:02.965: Reading bundle: …" and the like.
        if line.is_empty() || line.starts_with("rauc-Message:") {
            continue;
        }
        let line = line
            .strip_prefix("rauc-WARNING **: ")
            .or_else(|| line.strip_prefix("rauc-CRITICAL **: "))
            .unwrap_or(line);
        // Strip a leading "HH:MM:SS.mmm: " time stamp.
        let line = match line.split_once(": ") {
            Some((t, rest))
                if t.len() == 12
                    && t.chars()
                        .all(|c| c.is_ascii_digit() || c == ':' || c == '.') =>
            {
                rest
            }
            _ => line,
        };
        if !lines.iter().any(|l: &String| l == line) {
            lines.push(line.to_string());
        }
    }
    lines.join("; ")
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

impl Rauc {
    fn run(&self, args: &[&std::ffi::OsStr]) -> Result<String, (bool, String)> {
        let out = Command::new(&self.program)
            .args(args)
            .output()
            .map_err(|e| (true, format!("cannot run {}: {e}", self.program.display())))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            // RAUC reports progress on stdout and the reason (with
            // informational lines around it) on stderr: keep what says why.
            let err = reason(&out.stdout, &out.stderr);
            let err = if err.is_empty() {
                format!("{} exited with {}", self.program.display(), out.status)
            } else {
                err
            };
            Err((false, err))
        }
    }

    /// Both slots, from `rauc status`.
    pub fn status(&self) -> Result<Status, UpdateError> {
        let out = self
            .run(&[
                "status".as_ref(),
                "--detailed".as_ref(),
                "--output-format=json".as_ref(),
            ])
            .map_err(|(_, e)| UpdateError::NotAnImage(e))?;
        let v: Value = serde_json::from_str(&out)
            .map_err(|e| UpdateError::NotAnImage(format!("unreadable rauc status: {e}")))?;
        let mut slots = Vec::new();
        for entry in v
            .get("slots")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(map) = entry.as_object() else {
                continue;
            };
            for (name, s) in map {
                if s.get("class").and_then(Value::as_str) != Some("rootfs") {
                    continue;
                }
                let slot_status = s.get("slot_status");
                let version = slot_status
                    .and_then(|st| st.get("bundle"))
                    .and_then(|b| text(b, "version"));
                let installed = slot_status
                    .and_then(|st| st.get("installed"))
                    .and_then(|i| text(i, "timestamp"));
                slots.push(Slot {
                    name: name.clone(),
                    bootname: text(s, "bootname"),
                    state: text(s, "state"),
                    boot_status: text(s, "boot_status"),
                    version,
                    installed,
                });
            }
        }
        let mut status = Status {
            compatible: text(&v, "compatible").unwrap_or_default(),
            booted: text(&v, "booted"),
            primary: text(&v, "boot_primary"),
            slots,
            rollback: None,
            failed_boots: Vec::new(),
        };
        status.rollback = status.rolled_back(None);
        Ok(status)
    }

    /// [`Rauc::status`] with the failed trial boots recorded in `state_dir`.
    pub fn status_with_history(&self, state_dir: &Path) -> Result<Status, UpdateError> {
        let mut status = self.status()?;
        let log = std::fs::read_to_string(boot_failures_path(state_dir)).unwrap_or_default();
        let lines: Vec<String> = log
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.replace('\t', "  "))
            .collect();
        status.failed_boots = lines[lines.len().saturating_sub(10)..].to_vec();
        status.rollback = status.rolled_back(status.failed_boots.last().map(String::as_str));
        Ok(status)
    }

    /// What `bundle` is, with its signature verified by RAUC.
    pub fn info(&self, bundle: &Path) -> Result<Bundle, UpdateError> {
        let out = self
            .run(&["info".as_ref(), bundle.as_os_str()])
            .map_err(|(missing, e)| {
                if missing {
                    UpdateError::NotAnImage(e)
                } else {
                    UpdateError::Refused(e)
                }
            })?;
        parse_info(&out)
            .map_err(|e| UpdateError::Refused(format!("unreadable bundle information: {e}")))
    }

    /// Checks `bundle` against this appliance and installs it into the
    /// inactive slot, to be booted once on trial. `running` is the version
    /// of the running host; an older bundle is refused.
    pub fn install(&self, bundle: &Path, running: &str) -> Result<String, UpdateError> {
        let status = self.status()?;
        let info = self.info(bundle)?;
        if info.compatible != status.compatible {
            return Err(UpdateError::Refused(format!(
                "built for {:?}, this appliance is {:?}",
                info.compatible, status.compatible
            )));
        }
        let new = semver::Version::parse(&info.version).map_err(|e| {
            UpdateError::Refused(format!("version {:?} is not a version: {e}", info.version))
        })?;
        if let Ok(current) = semver::Version::parse(running)
            && new < current
        {
            return Err(UpdateError::Refused(format!(
                "{new} is older than the running {current} (downgrades are refused)"
            )));
        }
        let Some(verity) = info.verity.as_ref().filter(|_| info.format == "verity") else {
            return Err(UpdateError::Refused(format!(
                "a {} bundle; only verity bundles are installed (their payload is checked)",
                info.format
            )));
        };
        verify_payload(bundle, verity)?;
        self.run(&["install".as_ref(), bundle.as_os_str()])
            .map_err(|(_, e)| UpdateError::Failed(e))?;
        Ok(format!(
            "installed {new} into the inactive slot; reboot to start it on trial \
             (it is kept only if it passes the health check, else the old slot comes back)"
        ))
    }

    /// Marks the running slot good (the health check passed).
    pub fn mark_good(&self) -> Result<(), UpdateError> {
        self.run(&["status".as_ref(), "mark-good".as_ref(), "booted".as_ref()])
            .map(|_| ())
            .map_err(|(_, e)| UpdateError::Failed(e))
    }
}

impl Status {
    /// A sentence when the other slot holds a newer install that the boot
    /// loader gave up on (it is bad and not booted): the update was rolled
    /// back. `last_failure` is the newest failed trial boot, if recorded.
    fn rolled_back(&self, last_failure: Option<&str>) -> Option<String> {
        let booted = self.booted.as_deref()?;
        let running = self
            .slots
            .iter()
            .find(|s| s.bootname.as_deref() == Some(booted))?;
        let other = self
            .slots
            .iter()
            .find(|s| s.bootname.is_some() && s.bootname.as_deref() != Some(booted))?;
        let newer = match (&other.installed, &running.installed) {
            (Some(o), Some(r)) => o > r,
            (Some(_), None) => true,
            _ => false,
        };
        if other.boot_status.as_deref() != Some("bad") || !newer {
            return None;
        }
        let mut m = format!(
            "the update to {} in slot {} did not pass its trial boots and was rolled back; \
             slot {booted} ({}) runs again",
            other.version.as_deref().unwrap_or("an unknown version"),
            other.bootname.as_deref().unwrap_or("?"),
            running.version.as_deref().unwrap_or("factory image"),
        );
        if let Some(f) = last_failure {
            m.push_str(&format!(". Last failure: {f}"));
        }
        Some(m)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "compatible: {}", self.compatible)?;
        for s in &self.slots {
            let booted = s.bootname.is_some() && s.bootname == self.booted;
            writeln!(
                f,
                "{} {:<9} slot {:<2} version {:<10} {} {}",
                if booted { "*" } else { " " },
                s.name,
                s.bootname.as_deref().unwrap_or("?"),
                s.version.as_deref().unwrap_or("unknown"),
                s.boot_status.as_deref().unwrap_or("?"),
                s.state.as_deref().unwrap_or(""),
            )?;
        }
        if let Some(r) = &self.rollback {
            writeln!(f, "rolled back: {r}")?;
        }
        for b in &self.failed_boots {
            writeln!(f, "failed trial boot: {b}")?;
        }
        Ok(())
    }
}
