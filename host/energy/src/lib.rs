//! Energy accounting for a hashwatt appliance.
//!
//! Energy policies and operators need to know what the miner costs: how many
//! kilowatt-hours today and this month, at what efficiency, and why it was
//! paused. This crate is the host's energy meter and ledger. It is
//! synchronous and I/O-light so the host can call it from any thread:
//!
//! * [`meter`]: where power figures come from: the Linux powercap RAPL
//!   counters ([`meter::rapl::RaplSource`]), a calibrated hashrate model
//!   ([`meter::model::ModelSource`]) or an external meter pushed in by the
//!   host ([`meter::external::ExternalSource`]), all behind
//!   [`meter::PowerSource`], with [`meter::FallbackSource`] to degrade from
//!   a measured source to the model.
//! * [`ledger`]: kWh counters and per-day records in the operator's local
//!   time zone (DST-correct day and month rollover).
//! * [`store`]: crash-safe persistence of the ledger (atomic checkpoints).
//! * [`report`]: day and month reports as a table or CSV.
//!
//! Typical host loop (once a second):
//!
//! ```no_run
//! # use std::{path::Path, time::Instant};
//! # use hashwatt_energy::{ledger::{Interval, LedgerConfig}, meter::{self, PowerSource}, store::EnergyStore};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = meter::model::ModelConfig::single("cpu", 15.0, 40.0, 20.0e6);
//! let (mut source, why_not_rapl) = meter::auto(Path::new("/sys/class/powercap"), model, "cpu")?;
//! if let Some(e) = why_not_rapl { eprintln!("energy: RAPL not used: {e}"); }
//! let (mut store, reset) = EnergyStore::open(Path::new("/var/lib/hashwatt"), LedgerConfig::new("Europe/Berlin"))?;
//! if let Some(why) = reset { eprintln!("energy: {why}"); }
//! let s = source.sample(Instant::now(), 20.0e6)?;
//! store.ledger_mut().record(&Interval::from_sample(jiff::Timestamp::now(), &s, 20.0e6, true, None))?;
//! // When a policy paused the miner for the last second:
//! // store.ledger_mut().record_pause(now, 1.0, "surplus-only", &decision.reason)?;
//! let today = store.ledger().counters(jiff::Timestamp::now()).today_kwh;
//! # let _ = today;
//! if let hashwatt_energy::store::Checkpoint::Failed { error, report: Some(n), .. } =
//!     store.checkpoint_if_due(Instant::now()) // and store.checkpoint() on shutdown
//! {
//!     eprintln!("energy: cannot save the ledger ({n} failed attempts): {error}");
//! }
//! # Ok(()) }
//! ```

pub mod ledger;
pub mod meter;
pub mod report;
pub mod store;

pub use ledger::{EnergyCounters, EnergyLedger, Interval, LedgerConfig};
pub use meter::{PowerSource, Sample};
pub use report::{Period, Report};
pub use store::EnergyStore;

/// Joules in one kilowatt-hour, the unit operators are billed in.
pub const JOULES_PER_KWH: f64 = 3.6e6;
