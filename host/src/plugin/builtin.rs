//! First-party plugins embedded in the host binary at build time (see
//! `host/build.rs`), so an appliance always has a working pool protocol.

/// The Stratum V1 pool plugin component (`plugins/stratum-v1`).
pub const STRATUM_V1: &[u8] = include_bytes!(env!("HASHWATT_STRATUM_V1_WASM"));

/// The accounting key ([`super::Runtime::stats_for`]) of the built-in
/// Stratum V1 plugin, apart from any installed package named `stratum-v1`.
pub(crate) const STRATUM_V1_STATS_KEY: &str = "pool-builtin:stratum-v1";

/// The first-party energy policies (`plugins/<name>`), by the name a
/// `[[policies]]` entry uses in `plugin = "…"`.
pub const POLICIES: &[(&str, &[u8])] = &[
    (
        "surplus-only",
        include_bytes!(env!("HASHWATT_POLICY_SURPLUS_ONLY_WASM")),
    ),
    ("price", include_bytes!(env!("HASHWATT_POLICY_PRICE_WASM"))),
    ("quota", include_bytes!(env!("HASHWATT_POLICY_QUOTA_WASM"))),
    (
        "schedule",
        include_bytes!(env!("HASHWATT_POLICY_SCHEDULE_WASM")),
    ),
    (
        "heater",
        include_bytes!(env!("HASHWATT_POLICY_HEATER_WASM")),
    ),
    (
        "grid-emergency",
        include_bytes!(env!("HASHWATT_POLICY_GRID_EMERGENCY_WASM")),
    ),
];

/// The embedded first-party policy called `name`.
pub fn policy(name: &str) -> Option<&'static [u8]> {
    POLICIES.iter().find(|(n, _)| *n == name).map(|(_, w)| *w)
}
