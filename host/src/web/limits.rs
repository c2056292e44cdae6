//! Caps on open connections, in all and per client address, shared by
//! every listener (panel, redirect, cgminer API, ESP-Miner surface), so a
//! client holding thousands of idle sockets cannot exhaust the host's file
//! descriptors.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts open connections; hands out a [`ConnPermit`] per accepted one.
#[derive(Clone, Debug)]
pub struct ConnLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max_total: usize,
    max_per_client: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Every slot is taken.
    #[error("too many open connections in all")]
    Total,
    /// This client holds its share already.
    #[error("too many open connections from this client")]
    PerClient,
}

/// One open connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnPermit {
    inner: Arc<Inner>,
    client: IpAddr,
}

impl ConnLimiter {
    /// At most `max_total` connections, `max_per_client` from one address.
    pub fn new(max_total: usize, max_per_client: usize) -> Self {
        ConnLimiter {
            inner: Arc::new(Inner {
                max_total: max_total.max(1),
                max_per_client: max_per_client.max(1),
                open: Mutex::new(Open::default()),
            }),
        }
    }

    /// Takes a slot for a connection from `client`, if one is free.
    pub fn try_acquire(&self, client: IpAddr) -> Result<ConnPermit, Refused> {
        let client = canonical(client);
        let mut open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.inner.max_total {
            return Err(Refused::Total);
        }
        let n = open.by_client.entry(client).or_default();
        if *n >= self.inner.max_per_client {
            return Err(Refused::PerClient);
        }
        *n += 1;
        open.total += 1;
        Ok(ConnPermit {
            inner: self.inner.clone(),
            client,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .total
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.by_client.remove(&self.client);
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses count as their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_client_and_in_all_and_frees_on_drop() {
        let l = ConnLimiter::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        let a1 = l.try_acquire(a).unwrap();
        let _a2 = l.try_acquire(a).unwrap();
        assert_eq!(l.try_acquire(a).unwrap_err(), Refused::PerClient);
        let _b1 = l.try_acquire(b).unwrap();
        assert_eq!(
            l.try_acquire("10.0.0.3".parse().unwrap()).unwrap_err(),
            Refused::Total
        );
        drop(a1);
        assert_eq!(l.open(), 2);
        l.try_acquire(a).unwrap();
    }
}
