//! `hashwatt run` under a service manager: the real binary with systemd's
//! notify socket (a datagram socket this test binds, as systemd does) says
//! READY once mining, pings the watchdog at half the period it was given,
//! and says STOPPING on SIGTERM before it exits cleanly.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Datagrams received until `until` holds for the collected text, or the
/// time limit passes.
fn collect(sock: &UnixDatagram, limit: Duration, until: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut got = Vec::new();
    let end = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < end && !until(&got) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_watchdog_and_stopping_reach_the_service_manager() {
    let pool = common::devpool(0.001).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hashwatt.toml");
    std::fs::write(
        &config,
        format!(
            "threads = 1\nstate_dir = \"{}\"\n[[pools]]\nurl = \"stratum+tcp://{}\"\nuser = \"svc.worker\"\n[web]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("state").display(),
            pool.local_addr()
        ),
    )
    .unwrap();
    let socket = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // systemd names the watched process in WATCHDOG_PID: the shell's pid
    // is the host's once it execs.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" run --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_hashwatt"))
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "600000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let pid = child.id();
    let sock2 = sock.try_clone().unwrap();
    let got = tokio::task::spawn_blocking(move || {
        collect(&sock2, Duration::from_secs(120), |g| {
            g.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3
        })
    })
    .await
    .unwrap();
    let ready = got.iter().position(|m| m.contains("READY=1"));
    assert!(ready.is_some(), "no READY=1 in {got:?}");
    assert!(got.iter().any(|m| m.contains("STATUS=mining")), "{got:?}");
    let pings = got.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(pings >= 3, "watchdog pings: {got:?}");
    assert!(
        got.iter().position(|m| m.contains("WATCHDOG=1")) > ready,
        "pings come after READY: {got:?}"
    );
    // The boot check's question: healthy, with each check's reason.
    let health = |wait: &str| {
        Command::new(env!("CARGO_BIN_EXE_hashwatt"))
            .args(["health", "--wait", wait, "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let out = health("60");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("healthy: panel ok (listening); devices ok (hashing"),
        "{text}"
    );
    assert!(
        text.contains("pool ok (connected to stratum+tcp://"),
        "{text}"
    );
    // SIGTERM: STOPPING=1, then a clean exit.
    nix_kill(pid);
    let got = tokio::task::spawn_blocking(move || {
        collect(&sock, Duration::from_secs(30), |g| {
            g.iter().any(|m| m.contains("STOPPING=1"))
        })
    })
    .await
    .unwrap();
    assert!(got.iter().any(|m| m.contains("STOPPING=1")), "{got:?}");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    // Stopped: no longer healthy.
    let out = health("0");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "healthy after stopping");
    assert!(
        err.contains("unhealthy") && err.contains("hashwatt stopped"),
        "{err}"
    );
}

fn nix_kill(pid: u32) {
    // SAFETY: sending a signal to our own child process.
    let r = unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert_eq!(r, 0, "kill failed");
}
