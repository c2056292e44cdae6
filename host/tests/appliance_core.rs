//! The appliance core over real loopback TCP with the real Stratum V1 wasm
//! plugin: a second kind of device (simulated, several tasks in flight,
//! rolling version and ntime itself) mines without any device-specific code
//! in the miner or the pool driver; commands change pools and policies while
//! mining and are persisted; regtest work and hostile pools cannot make the
//! host flood anyone.

mod common;

use std::time::{Duration, Instant};

use hashwatt::app::{App, StartOptions};
use hashwatt::config::{Config, PolicyEntry, PoolEntry};
use hashwatt::control::Command;
use hashwatt::device::sim::SimDevice;
use hashwatt_devpool::DevPoolConfig;

async fn devpool_with(f: impl FnOnce(&mut DevPoolConfig)) -> hashwatt_devpool::DevPool {
    common::logs();
    let mut c = DevPoolConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    f(&mut c);
    hashwatt_devpool::start(c).await.expect("devpool starts")
}

fn pool_entry(addr: std::net::SocketAddr) -> PoolEntry {
    PoolEntry {
        url: format!("stratum+tcp://{addr}").parse().unwrap(),
        user: "test.worker".into(),
        password: "x".into(),
        plugin: None,
        enabled: true,
        settings: Default::default(),
    }
}

fn best_backend() -> std::sync::Arc<dyn hashwatt_hash::Backend> {
    hashwatt_hash::available()
        .into_iter()
        .next()
        .expect("a backend")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_multi_task_device_mines_with_rolled_version_and_ntime() {
    common::bounded(Duration::from_secs(120), async {
        // New (non-clean) jobs every 500 ms keep several tasks in flight.
        let pool = devpool_with(|c| {
            c.difficulty = 0.0005;
            c.job_interval = Duration::from_millis(500);
        })
        .await;
        let sim = SimDevice::start("sim0", best_backend(), 4);
        let config = common::config(&[pool.local_addr()], 1);
        let app = App::start_with(
            config,
            StartOptions {
                config_path: None,
                devices: Some(vec![sim.clone()]),
                record_dir: None,
            },
        )
        .await
        .expect("appliance starts");
        let mut most_in_flight = 0;
        let ok = common::wait_for(Duration::from_secs(60), || {
            most_in_flight = most_in_flight.max(
                hashwatt::device::Device::telemetry(&*sim).tasks_in_flight,
            );
            let s = pool.stats();
            s.accepted >= 15 && s.accepted_ntime_rolled >= 1 && s.accepted_version_rolled >= 1
        })
        .await;
        let stats = pool.stats();
        let c = app.counters();
        assert!(ok, "pool stats {stats:?}, host {c:?}");
        assert_eq!(stats.rejected_total, 0, "{stats:?}");
        assert_eq!(c.rejected_total(), 0);
        assert_eq!(c.hardware_errors, 0);
        assert!(most_in_flight > 1, "the device kept {most_in_flight} task(s) in flight");
        let snap = app.handle().snapshot();
        assert_eq!(snap.devices.len(), 1);
        assert_eq!(snap.devices[0].info.kind, "simulated");
        assert!(snap.devices[0].solutions >= 15);
        assert_eq!(snap.shares.pools[0].accepted, c.accepted);
        eprintln!(
            "sim device: {} accepted ({} ntime-rolled, {} version-rolled), up to {most_in_flight} tasks in flight",
            stats.accepted, stats.accepted_ntime_rolled, stats.accepted_version_rolled
        );
        app.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regtest_work_submits_only_shares_meeting_the_share_target() {
    common::bounded(Duration::from_secs(120), async {
        // Regtest nbits: nearly every other hash meets the block target.
        let pool = devpool_with(|c| {
            c.difficulty = 0.001;
            c.nbits = 0x207f_ffff;
        })
        .await;
        let app = common::appliance(&[pool.local_addr()], 0).await;
        let ok = common::wait_for(Duration::from_secs(60), || {
            pool.stats().accepted >= 20 && app.counters().accepted >= 20
        })
        .await;
        let stats = pool.stats();
        let c = app.counters();
        assert!(ok, "pool {stats:?} host {c:?}");
        // The devpool rejects anything below its share target ("low difficulty").
        assert_eq!(stats.rejected_total, 0, "{stats:?}");
        assert_eq!(stats.connections, 1, "the pool never dropped us");
        assert!(c.blocks >= 20, "every regtest share is a block candidate");
        assert_eq!(c.throttled, 0);
        app.shutdown().await;
    })
    .await;
}

/// Resident set size of this process, bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_difficulties_keep_submits_under_the_rate_limit_and_memory_flat() {
    common::bounded(Duration::from_secs(120), async {
        // Regtest work at a difficulty just above the CPU's minimum: even a
        // slow or loaded machine finds hundreds of shares a second.
        let pool = devpool_with(|c| {
            c.difficulty = 2e-6;
            c.nbits = 0x207f_ffff;
        })
        .await;
        let app = common::appliance(&[pool.local_addr()], 0).await;
        assert!(common::wait_for(Duration::from_secs(30), || pool.stats().accepted >= 1).await);
        // An absurd difficulty is refused: the previous one stays.
        pool.set_difficulty(1e-300);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss0 = rss();
        let s0 = pool.stats();
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(8)).await;
        let secs = t0.elapsed().as_secs_f64();
        let s1 = pool.stats();
        let submits = (s1.accepted + s1.rejected_total) - (s0.accepted + s0.rejected_total);
        let c = app.counters();
        let limit = hashwatt::miner::SUBMIT_RATE * secs + hashwatt::miner::SUBMIT_BURST;
        eprintln!(
            "{submits} submits in {secs:.1} s (limit {limit:.0}); throttled {}; refused actions {}; RSS {} → {} MiB",
            c.throttled,
            c.refused_actions,
            rss0 >> 20,
            rss() >> 20
        );
        assert!(submits as f64 <= limit, "{submits} submits in {secs:.1} s");
        assert!(c.throttled > 0, "the CPU finds more shares than the limit lets through");
        assert!(c.refused_actions >= 1, "difficulty 1e-300 was refused");
        assert!(
            rss() < rss0 + (64 << 20),
            "RSS grew from {} to {} MiB",
            rss0 >> 20,
            rss() >> 20
        );
        assert_eq!(s1.connections, 1);
        app.shutdown().await;
    })
    .await;
}

/// On tokio's paused clock: the six seconds are virtual, so the count of
/// connections depends only on the back-off, not on the machine's load.
#[tokio::test(start_paused = true)]
async fn a_pool_that_always_asks_to_reconnect_is_retried_with_back_off() {
    common::bounded(Duration::from_secs(60), async {
        common::logs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let line = format!(
                    "{{\"id\":null,\"method\":\"client.reconnect\",\"params\":[\"127.0.0.1\",{},0]}}\n",
                    addr.port()
                );
                let _ = socket.write_all(line.as_bytes()).await;
            }
        });
        let app = common::appliance(&[addr], 1).await;
        let t0 = tokio::time::Instant::now();
        while connections.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep_until(t0 + Duration::from_secs(6)).await;
        let n = connections.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("{n} connections in 6 s of virtual time");
        // Back-off from 250 ms doubling (±25 % jitter): connections at about
        // 0, 0.25, 0.75, 1.75, 3.75 s — 4 to 6 in 6 s (22–29 a second
        // without it).
        assert!((4..=6).contains(&n), "{n} connections in 6 s");
        app.shutdown().await;
    })
    .await;
}

fn write_config(path: &std::path::Path, config: &Config) {
    std::fs::write(path, config.to_toml().unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_and_policies_change_while_mining_and_are_persisted() {
    common::bounded(Duration::from_secs(180), async {
        let a = common::devpool(0.0005).await;
        let b = common::devpool(0.0005).await;
        let mut config = common::config(&[a.local_addr()], 1);
        config.failback_secs = 0;
        config.signals.push(common::pushed_signal("dr", 3600));
        let mut policy_config = toml::Table::new();
        policy_config.insert("signal".into(), "dr".into());
        policy_config.insert("release_delay_s".into(), 0.into());
        policy_config.insert("on_unknown".into(), "run".into());
        config.policies.push(PolicyEntry {
            name: "grid-emergency".into(),
            plugin: "grid-emergency".into(),
            enabled: false,
            fail_safe: hashwatt::policy::engine::FailSafe::Pause,
            config: policy_config,
        });
        std::fs::create_dir_all(&config.state_dir).unwrap();
        let path = config.state_dir.join("hashwatt.toml");
        write_config(&path, &config);
        let app = App::start_with(
            Config::load(&path).unwrap(),
            StartOptions {
                config_path: Some(path.clone()),
                devices: None,
                record_dir: None,
            },
        )
        .await
        .expect("appliance starts");
        assert!(common::wait_for(Duration::from_secs(30), || a.stats().accepted >= 2).await);
        // Add pool B (last): it connects within 1 s and is in the file.
        let t = Instant::now();
        app.execute(Command::AddPool {
            pool: pool_entry(b.local_addr()),
            position: None,
        })
        .await
        .expect("add pool");
        assert!(
            common::wait_for(Duration::from_secs(1), || b.stats().connections >= 1).await,
            "pool B not connected within 1 s"
        );
        let saved = Config::load(&path).expect("persisted config is valid");
        assert_eq!(saved.pools.len(), 2);
        eprintln!("add: {:?}", t.elapsed());

        // Move B first: mining moves to B within 1 s (no fail-back hold).
        let b_id = app.counters().pools[1].id;
        let t = Instant::now();
        app.execute(Command::MovePool {
            id: b_id,
            position: 0,
        })
        .await
        .expect("move");
        assert!(
            common::wait_for(Duration::from_secs(1), || {
                app.counters().active_pool_id == Some(b_id)
            })
            .await,
            "mining did not move to B within 1 s: {:?}",
            app.counters()
        );
        let saved = Config::load(&path).unwrap();
        assert_eq!(saved.pools[0].url.port, b.local_addr().port());
        eprintln!("move: {:?}", t.elapsed());

        // Remove A: its connection closes within 1 s; gone from the file.
        let a_id = app.counters().pools[1].id;
        let t = Instant::now();
        app.execute(Command::RemovePool { id: a_id })
            .await
            .expect("remove");
        assert!(
            common::wait_for(Duration::from_secs(1), || a.stats().active_connections == 0).await,
            "pool A still connected"
        );
        let saved = Config::load(&path).unwrap();
        assert_eq!(saved.pools.len(), 1);
        assert_eq!(app.counters().pools.len(), 1);
        eprintln!("remove: {:?}", t.elapsed());

        // Enable the grid-emergency policy and raise the signal: paused within 1 s.
        let t = Instant::now();
        app.execute(Command::SetPolicyEnabled {
            name: "grid-emergency".into(),
            enabled: true,
        })
        .await
        .expect("enable policy");
        app.execute(Command::SetSignal {
            name: "dr".into(),
            value: 1.0,
        })
        .await
        .expect("signal");
        assert!(
            common::wait_for(Duration::from_secs(1), || {
                app.verdict()
                    .to_string()
                    .starts_with("paused by grid-emergency")
            })
            .await,
            "verdict: {}",
            app.verdict()
        );
        let saved = Config::load(&path).unwrap();
        assert!(saved.policies[0].enabled);
        eprintln!("policy: {:?}", t.elapsed());

        // A refused command changes nothing, neither running nor on disk.
        let before = std::fs::read_to_string(&path).unwrap();
        let mut bad = pool_entry(b.local_addr());
        bad.user = " ".into();
        assert!(
            app.execute(Command::AddPool {
                pool: bad,
                position: None
            })
            .await
            .is_err()
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        assert_eq!(app.counters().pools.len(), 1);

        // Per-pool counters follow their pool through the moves.
        let c = app.counters();
        assert_eq!(c.pools[0].id, b_id);
        assert!(c.pools[0].accepted <= b.stats().accepted);
        assert_eq!(c.pools[0].rejected, 0);
        app.shutdown().await;
    })
    .await;
}

/// Child side of the kill -9 test: rewrites the config file forever,
/// alternating two valid versions.
#[test]
fn config_writer_child() {
    let Ok(path) = std::env::var("HASHWATT_TEST_CONFIG_WRITER") else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    let a = std::fs::read(path.with_extension("a")).unwrap();
    let b = std::fs::read(path.with_extension("b")).unwrap();
    loop {
        hashwatt_state::atomic_write(&path, &a).unwrap();
        hashwatt_state::atomic_write(&path, &b).unwrap();
    }
}

#[test]
fn kill_9_during_config_writes_leaves_the_old_or_the_new_file() {
    let dir = common::state_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hashwatt.toml");
    let mut a = common::config(&["127.0.0.1:3333".parse().unwrap()], 1);
    // Big enough that a torn write would be likely without the rename.
    a.signals = (0..2000)
        .map(|i| common::pushed_signal(format!("signal_{i}"), 60))
        .collect();
    let mut b = a.clone();
    b.pools.push(pool_entry("127.0.0.1:4444".parse().unwrap()));
    let (ta, tb) = (a.to_toml().unwrap(), b.to_toml().unwrap());
    std::fs::write(path.with_extension("a"), &ta).unwrap();
    std::fs::write(path.with_extension("b"), &tb).unwrap();
    std::fs::write(&path, &ta).unwrap();
    let mut seen = [0usize; 2];
    for round in 0..25u64 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "config_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HASHWATT_TEST_CONFIG_WRITER", &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // A pseudo-random moment, 20–120 ms into the writes.
        std::thread::sleep(Duration::from_millis(20 + (round * 37) % 100));
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = Config::parse(&path, &text).expect("a valid config after kill -9");
        assert!(
            text == ta || text == tb,
            "round {round}: neither old nor new"
        );
        seen[usize::from(parsed.pools.len() == 2)] += 1;
    }
    eprintln!("after 25 kills: {} old, {} new", seen[0], seen[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_sigterm_stops_cleanly_with_the_energy_checkpoint_on_disk() {
    common::bounded(Duration::from_secs(120), async {
        let pool = common::devpool(0.0005).await;
        let mut config = common::config(&[pool.local_addr()], 1);
        config.web.listen = None;
        std::fs::create_dir_all(&config.state_dir).unwrap();
        let path = config.state_dir.join("hashwatt.toml");
        write_config(&path, &config);
        let energy = config.state_dir.join("energy").join("energy.json");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hashwatt"))
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .expect("hashwatt starts");
        assert!(
            common::wait_for(Duration::from_secs(60), || pool.stats().accepted >= 2).await,
            "the appliance mines"
        );
        // SIGHUP re-reads the file: a pool added there connects, no restart.
        let second = common::devpool(0.0005).await;
        config.pools.push(pool_entry(second.local_addr()));
        write_config(&path, &config);
        let pid = child.id().expect("running") as i32;
        // SAFETY: kill only reads its integer arguments.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
        assert!(
            common::wait_for(Duration::from_secs(20), || second.stats().connections >= 1).await,
            "the pool added to the file did not connect after SIGHUP"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "SIGHUP must not stop it"
        );
        let before = std::fs::metadata(&energy)
            .ok()
            .and_then(|m| m.modified().ok());
        // SAFETY: kill only reads its integer arguments.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let t = Instant::now();
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        let took = t.elapsed();
        eprintln!("SIGTERM → exit {status} in {took:?}");
        assert!(status.success(), "exit status {status}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
        let after = std::fs::metadata(&energy)
            .ok()
            .and_then(|m| m.modified().ok());
        assert!(
            after.is_some() && after != before,
            "energy checkpoint written at shutdown"
        );
        // The pool saw the connection closed, not left hanging.
        assert!(
            common::wait_for(Duration::from_secs(2), || pool.stats().active_connections
                == 0)
            .await
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_pool_and_per_device_counters_are_right() {
    common::bounded(Duration::from_secs(120), async {
        // The primary refuses every other valid share; the secondary none.
        let primary = devpool_with(|c| {
            c.difficulty = 0.0005;
            c.reject_every = Some(2);
        })
        .await;
        let secondary = common::devpool(0.0005).await;
        // No fail-back hold: whichever pool is healthy first, mining is on
        // the primary as soon as it is.
        let app = common::appliance_with(&[primary.local_addr(), secondary.local_addr()], 1, |c| {
            c.failback_secs = 0
        })
        .await;
        assert!(
            common::wait_for(Duration::from_secs(60), || primary.stats().rejected_total
                >= 4)
            .await
        );
        // Fail over: kill the primary, shares go on at the secondary.
        primary.clone().shutdown().await;
        assert!(
            common::wait_for(Duration::from_secs(60), || secondary.stats().accepted >= 4
                && app.counters().pools[1].accepted >= 4)
            .await
        );
        let (p, s) = (primary.stats(), secondary.stats());
        let c = app.counters();
        eprintln!("primary {p:?}\nsecondary {s:?}\nhost {c:?}");
        // Every verdict the pools gave is counted once, on the right pool.
        assert!(c.pools[0].rejected >= 4);
        assert!(c.pools[0].rejected <= p.rejected_total);
        assert!(c.pools[0].accepted <= p.accepted);
        assert_eq!(c.pools[1].rejected, 0);
        assert!(c.pools[1].accepted <= s.accepted);
        assert_eq!(
            c.rejected_total(),
            c.pools[0].rejected + c.pools[1].rejected
        );
        assert_eq!(c.accepted, c.pools[0].accepted + c.pools[1].accepted);
        // One pool's disconnect does not reset another's in-flight count.
        assert_eq!(
            c.in_flight,
            c.pools.iter().map(|p| p.in_flight).sum::<u64>()
        );
        assert_eq!(
            c.pools[0].in_flight, 0,
            "the dead pool has nothing in flight"
        );
        // The device reported at least every share the pools judged.
        assert_eq!(c.devices.len(), 1);
        assert!(c.devices[0].solutions >= c.accepted + c.rejected_total());
        assert_eq!(c.devices[0].hardware_errors, 0);
        let snap = app.handle().snapshot();
        assert_eq!(snap.devices[0].telemetry.units.len(), 1, "one thread");
        assert_eq!(snap.devices[0].unit_hashrates_10s_hs.len(), 1);
        app.shutdown().await;
    })
    .await;
}

/// Plugin restart back-off on tokio's paused clock: the driver's sleeps
/// take no real time, and the virtual time they add up to is exact, so the
/// assertion does not depend on the machine's speed or load.
#[tokio::test(start_paused = true)]
async fn plugin_restarts_back_off_and_disable_on_virtual_time() {
    let pool = common::devpool(0.0005).await;
    let app = common::appliance_with(&[pool.local_addr()], 1, |c| {
        c.allow_unsigned_plugins = true;
        c.pools[0].plugin = Some(env!("HASHWATT_HOSTILE_WASM").to_string());
        // Loops in `connected` until the call budget stops it, every time.
        c.pools[0].password = "loop@connected".into();
        c.plugin_limits.call_timeout_ms = 10;
    })
    .await;
    let t0 = tokio::time::Instant::now();
    let real = Instant::now();
    while app.counters().pools[0].state != hashwatt::status::PoolState::Disabled {
        assert!(real.elapsed() < Duration::from_secs(60), "never disabled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let virtual_elapsed = t0.elapsed();
    let pool_status = app.counters().pools[0].clone();
    eprintln!(
        "disabled after {virtual_elapsed:?} of virtual time ({:?} real): {:?}",
        real.elapsed(),
        pool_status.disabled
    );
    assert_eq!(pool_status.plugin_restarts, 4);
    // Four restarts 100, 200, 400, 800 ms apart (±25 % jitter): 1.125–1.875 s.
    assert!(
        virtual_elapsed >= Duration::from_millis(1125)
            && virtual_elapsed <= Duration::from_millis(1875) + Duration::from_millis(200),
        "{virtual_elapsed:?}"
    );
    app.shutdown().await;
}
