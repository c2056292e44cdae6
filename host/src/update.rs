//! A/B updates through RAUC: what the slots hold, and installing a signed
//! bundle into the inactive one. RAUC does the verifying and the writing
//! (signature, verity, slot selection); the host adds what an appliance
//! needs on top: the bundle is checked before anything is written
//! (compatible with this appliance, signed — `rauc info` verifies — and not
//! a downgrade), and every answer is in the operator's words.
//!
//! The `rauc` program is found on `PATH`, or at `HASHWATT_RAUC` (tests put
//! a stand-in there).

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
}

/// What a bundle says it is (after RAUC verified its signature).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bundle {
    /// What it was built for.
    pub compatible: String,
    /// Its version.
    pub version: String,
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
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
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
                let version = s
                    .get("slot_status")
                    .and_then(|st| st.get("bundle"))
                    .and_then(|b| text(b, "version"));
                slots.push(Slot {
                    name: name.clone(),
                    bootname: text(s, "bootname"),
                    state: text(s, "state"),
                    boot_status: text(s, "boot_status"),
                    version,
                });
            }
        }
        Ok(Status {
            compatible: text(&v, "compatible").unwrap_or_default(),
            booted: text(&v, "booted"),
            primary: text(&v, "boot_primary"),
            slots,
        })
    }

    /// What `bundle` is, with its signature verified by RAUC.
    pub fn info(&self, bundle: &Path) -> Result<Bundle, UpdateError> {
        let out = self
            .run(&[
                "info".as_ref(),
                "--output-format=json".as_ref(),
                bundle.as_os_str(),
            ])
            .map_err(|(missing, e)| {
                if missing {
                    UpdateError::NotAnImage(e)
                } else {
                    UpdateError::Refused(e)
                }
            })?;
        let v: Value = serde_json::from_str(&out)
            .map_err(|e| UpdateError::Refused(format!("unreadable bundle information: {e}")))?;
        Ok(Bundle {
            compatible: text(&v, "compatible").unwrap_or_default(),
            version: text(&v, "version").unwrap_or_default(),
        })
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
        self.run(&["install".as_ref(), bundle.as_os_str()])
            .map_err(|(_, e)| UpdateError::Failed(e))?;
        Ok(format!(
            "installed {new} into the inactive slot; it boots once on trial at the next restart \
             and is kept only if the health check passes"
        ))
    }

    /// Marks the running slot good (the health check passed).
    pub fn mark_good(&self) -> Result<(), UpdateError> {
        self.run(&["status".as_ref(), "mark-good".as_ref(), "booted".as_ref()])
            .map(|_| ())
            .map_err(|(_, e)| UpdateError::Failed(e))
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
        Ok(())
    }
}
