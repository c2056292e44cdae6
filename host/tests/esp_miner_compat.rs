//! The ESP-Miner-compatible surface, as the tools BM13xx owners run see it.
//!
//! `pyasic_finds_the_surface_and_nothing_without_it` installs the newest
//! pyasic from PyPI, unmodified, into a virtualenv under cargo's target
//! dir, and lets it look at the appliance inside a network namespace made
//! for the test (so port 80, where pyasic looks, is ours and tests may run
//! in parallel): the real `hashwatt` binary on a CPU with the surface on
//! and then off (only the panel on port 80), and an in-process appliance
//! with a simulated BM1370 chain that reports temperatures and fans.
//! It needs root (for the namespace), python3 and the package index.
//!
//! The other tests drive the surface's listener over loopback: writes
//! refused unless enabled, mapped to commands when they are, the
//! connection cap.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashwatt::app::{App, StartOptions};
use hashwatt::device::sim::SimDevice;
use hashwatt::device::{
    Control, Device, DeviceError, DeviceInfo, FanReading, SolutionSink, Task, Telemetry,
    TempReading,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------
// pyasic, for real.

/// A network namespace with its loopback up; deleted on drop.
struct Netns(String);

impl Netns {
    fn create() -> Netns {
        ensure_iproute2();
        let name = format!("hw-pyasic-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns(name);
        run_ok(&mut ns.exec(["ip", "link", "set", "lo", "up"]));
        ns
    }

    /// `cmd` run inside the namespace.
    fn exec<I, S>(&self, cmd: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(cmd);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The test makes a network namespace: it needs root and `ip`
/// (installed from Debian's iproute2 if missing).
fn ensure_iproute2() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "this test makes a network namespace (so pyasic can have port 80): run it as root"
    );
    if have("ip") {
        return;
    }
    eprintln!("`ip` is missing: installing iproute2");
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "iproute2"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok && have("ip"),
        "this test needs `ip` (Debian's iproute2) and could not install it"
    );
}

/// A virtualenv with the newest pyasic from PyPI; its python.
fn pyasic_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyasic-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run_ok(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    }
    let started = Instant::now();
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--upgrade",
            "pyasic",
        ])
        .output()
        .expect("pip runs");
    if out.status.success() {
        eprintln!("pyasic installed/upgraded in {:?}", started.elapsed());
        return python;
    }
    // No package index now: an earlier install still proves the point.
    let installed = Command::new(&python)
        .args(["-c", "import pyasic"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed,
        "cannot install pyasic from PyPI: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "pyasic could not be upgraded (using the installed one): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    python
}

/// Runs the probe inside `ns` against 127.0.0.1 and returns what pyasic
/// read (printed for the test log).
fn probe(ns: &Netns, python: &Path, what: &str, wait_hashing: bool) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pyasic_probe.py");
    let mut cmd = ns.exec([python.as_os_str(), script.as_os_str()]);
    cmd.args(["127.0.0.1", "--wait-port", "80", "--wait-secs", "60"]);
    if wait_hashing {
        cmd.arg("--wait-hashing");
    }
    let out = cmd.output().expect("the probe runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("pyasic, {what}:\n{stdout}");
    if !stderr.trim().is_empty() {
        println!("(probe stderr: {stderr})");
    }
    let last = stdout.lines().last().unwrap_or("");
    let v: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the probe printed no JSON ({e}): {stdout}{stderr}"));
    assert!(v.get("error").is_none(), "{what}: {v}");
    v
}

/// A child process killed (SIGTERM, then SIGKILL) on drop.
struct Child(std::process::Child, &'static str);

impl Child {
    fn spawn(mut cmd: Command, what: &'static str) -> Child {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Child(child, what)
    }

    /// Stops it; returns its log.
    fn stop(mut self) -> String {
        self.terminate();
        let mut log = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            let _ = e.read_to_string(&mut log);
        }
        log
    }

    fn terminate(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // `ip netns exec` execs the command: the pid is the program's.
            if let Ok(pid) = i32::try_from(self.0.id()) {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + Duration::from_secs(8);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("{} did not stop on SIGTERM", self.1);
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Runs the `hashwatt` binary in `ns` with `config` (TOML), with a devpool
/// of its own on 127.0.0.1:3333, while `f` runs.
fn with_binary<T>(ns: &Netns, config: &str, f: impl FnOnce() -> T) -> T {
    let bin = env!("CARGO_BIN_EXE_hashwatt");
    let dir = common::state_dir();
    std::fs::create_dir_all(&dir).expect("test dir");
    let path = dir.join("hashwatt.toml");
    let state = dir.join("state");
    std::fs::write(
        &path,
        format!("state_dir = {:?}\n{config}", state.display().to_string()),
    )
    .expect("config written");
    let pool = Child::spawn(
        ns.exec([bin, "devpool", "--listen", "127.0.0.1:3333"]),
        "devpool",
    );
    let mut run = ns.exec([bin, "run", "--config"]);
    run.arg(&path).env("RUST_LOG", "info");
    let app = Child::spawn(run, "hashwatt run");
    let out = f();
    let log = app.stop();
    drop(pool);
    if std::thread::panicking() {
        eprintln!("hashwatt log:\n{log}");
    }
    println!(
        "hashwatt log (last lines):\n{}",
        log.lines()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
    out
}

const CPU_POOL: &str = "\
threads = 1
[[pools]]
url = \"stratum+tcp://127.0.0.1:3333\"
user = \"probe.worker\"
password = \"x\"
";

/// A simulated chain that reports itself as one BM1370 with the sensors
/// a Bitaxe Gamma has: chip and regulator temperature, one fan, power.
struct Bm1370 {
    inner: Arc<SimDevice>,
    info: DeviceInfo,
}

impl Bm1370 {
    fn start() -> Arc<Bm1370> {
        let backend = hashwatt_hash::available()
            .into_iter()
            .next()
            .expect("a hash backend");
        let inner = SimDevice::start("bm1370-0", backend, 2);
        let mut info = inner.info().clone();
        info.kind = "asic";
        info.model = "BM1370 × 1 chip (simulated)".into();
        Arc::new(Bm1370 { inner, info })
    }
}

impl Device for Bm1370 {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn attach(&self, index: usize, sink: std::sync::Weak<dyn SolutionSink>) {
        self.inner.attach(index, sink)
    }
    fn assign(&self, task: Task, replace: bool) {
        self.inner.assign(task, replace)
    }
    fn idle(&self) {
        self.inner.idle()
    }
    fn control(&self, control: Control) -> Result<(), DeviceError> {
        self.inner.control(control)
    }
    fn telemetry(&self) -> Telemetry {
        let mut t = self.inner.telemetry();
        t.temperatures = vec![
            TempReading {
                label: "chip".into(),
                temp_c: 52.5,
            },
            TempReading {
                label: "vr".into(),
                temp_c: 61.0,
            },
        ];
        t.fans = vec![FanReading {
            label: "fan".into(),
            rpm: Some(4200),
            percent: Some(55.0),
        }];
        t.power_w = Some(14.8);
        t
    }
}

/// Runs an in-process appliance with a simulated BM1370 inside `ns`
/// (its listeners bind there) while `f` runs.
fn with_bm1370<T>(ns: &Netns, f: impl FnOnce() -> T) -> T {
    let path = format!("/run/netns/{}", ns.0);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        // This thread, and every thread it starts (the runtime's, the
        // device's), lives in the namespace.
        let file = std::fs::File::open(&path).expect("the namespace exists");
        // SAFETY: a valid namespace fd; only this thread changes namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            let _ = ready_tx.send(Err(format!("setns: {}", std::io::Error::last_os_error())));
            return;
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let pool = common::devpool(0.001).await;
            let mut config = common::config(&[pool.local_addr()], 1);
            config.pools[0].user = "bitaxe.worker".into();
            config.esp_miner.enabled = true;
            config.esp_miner.listen = "127.0.0.1:80".parse().unwrap();
            let device = Bm1370::start();
            let app = App::start_with(
                config,
                StartOptions {
                    config_path: None,
                    devices: Some(vec![device]),
                    record_dir: None,
                },
            )
            .await;
            let app = match app {
                Ok(a) => a,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("{e:#}")));
                    return;
                }
            };
            assert_eq!(app.esp_miner_addr(), Some("127.0.0.1:80".parse().unwrap()));
            let _ = ready_tx.send(Ok(()));
            let _ = stop_rx.await;
            app.shutdown().await;
            pool.shutdown().await;
        });
    });
    let ready = ready_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the appliance starts in time");
    if let Err(e) = ready {
        let _ = thread.join();
        panic!("the in-namespace appliance did not start: {e}");
    }
    let out = f();
    let _ = stop_tx.send(());
    thread.join().expect("the in-namespace appliance stops");
    out
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("pyasic read no {k}: {v}"))
}

fn pools(v: &Value) -> Vec<(String, String)> {
    v["pools"]
        .as_array()
        .unwrap_or_else(|| panic!("pyasic read no pools: {v}"))
        .iter()
        .map(|p| {
            (
                p["url"].as_str().unwrap_or("").to_string(),
                p["user"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn pyasic_finds_the_surface_and_nothing_without_it() {
    common::logs();
    let python = pyasic_python();
    let ns = Netns::create();

    // 1. The real binary on a CPU, the surface on.
    let cpu = with_binary(
        &ns,
        &format!(
            "{CPU_POOL}[web]\nlisten = \"\"\n[esp_miner]\nenabled = true\nlisten = \"127.0.0.1:80\"\n"
        ),
        || probe(&ns, &python, "the CPU appliance, surface on", true),
    );
    assert_eq!(cpu["found"], true, "{cpu}");
    // No BM13xx chip to name: pyasic's generic ESP-Miner class.
    assert_eq!(cpu["type"], "BitAxe", "{cpu}");
    assert!(num(&cpu, "hashrate_hs") > 0.0, "{cpu}");
    assert!(num(&cpu, "wattage") > 0.0, "{cpu}");
    assert!(num(&cpu, "uptime") >= 0.0, "{cpu}");
    assert!(
        cpu["fw_ver"]
            .as_str()
            .is_some_and(|v| v.starts_with("hashwatt/"))
    );
    assert_eq!(
        pools(&cpu),
        [(
            "stratum+tcp://127.0.0.1:3333".to_string(),
            "probe.worker".to_string()
        )]
    );

    // 2. The surface off, only the panel's listener on port 80: pyasic
    // must not take the appliance for another product.
    let off = with_binary(
        &ns,
        &format!("{CPU_POOL}[web]\nlisten = \"127.0.0.1:80\"\n"),
        || probe(&ns, &python, "the CPU appliance, surface off", false),
    );
    assert!(
        off["found"] == false || off["type"] == "UnknownMiner",
        "with the surface off pyasic must not claim another product: {off}"
    );

    // 3. A BM1370 chain (simulated) that reports its sensors: pyasic
    // names the board from the chip and reads temperatures and fans.
    let asic = with_bm1370(&ns, || {
        probe(&ns, &python, "a BM1370 appliance, surface on", true)
    });
    assert_eq!(asic["found"], true, "{asic}");
    assert_eq!(asic["type"], "BitAxeGamma", "{asic}");
    assert!(num(&asic, "hashrate_hs") > 0.0, "{asic}");
    // The board's own measurement (14.8 W), as ESP-Miner reports it.
    assert_eq!(asic["wattage"], 15, "{asic}");
    let board = &asic["hashboards"][0];
    assert_eq!(board["chip_temp"], 52.5, "{asic}");
    assert_eq!(board["temp"], 61.0, "{asic}");
    assert_eq!(asic["fans"], serde_json::json!([4200]), "{asic}");
    let (url, user) = pools(&asic).into_iter().next().expect("a pool");
    assert!(url.starts_with("stratum+tcp://127.0.0.1:"), "{asic}");
    assert_eq!(user, "bitaxe.worker");
}

// ---------------------------------------------------------------------------
// The listener over loopback.

/// One HTTP/1.1 request with `Connection: close`; status and body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("request sent");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("answered in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn json_body(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

async fn surface(
    writes: bool,
    tweak: impl FnOnce(&mut hashwatt::config::Config),
) -> (App, hashwatt_devpool::DevPool, SocketAddr) {
    let pool = common::devpool(0.001).await;
    let app = common::appliance_with(&[pool.local_addr()], 1, |c| {
        c.esp_miner.enabled = true;
        c.esp_miner.listen = "127.0.0.1:0".parse().unwrap();
        c.esp_miner.writes = writes;
        tweak(c);
    })
    .await;
    let addr = app.esp_miner_addr().expect("the surface listens");
    (app, pool, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_served_and_writes_refused_while_off() {
    common::bounded(Duration::from_secs(60), async {
        let (app, pool, addr) = surface(false, |_| {}).await;
        let (code, body) = http(addr, "GET", "/", "", "").await;
        assert_eq!(code, 200);
        assert!(
            body.contains("AxeOS") && body.contains("hashwatt"),
            "{body}"
        );
        let (code, body) = http(addr, "GET", "/api/system/info", "", "").await;
        assert_eq!(code, 200);
        let info = json_body(&body);
        assert_eq!(info["ASICModel"], "CPU", "{info}");
        assert_eq!(info["stratumURL"], "127.0.0.1", "{info}");
        assert_eq!(info["stratumPort"], pool.local_addr().port(), "{info}");
        assert_eq!(info["stratumUser"], "test.worker", "{info}");
        let (code, body) = http(addr, "GET", "/api/system/asic", "", "").await;
        assert_eq!(code, 200);
        assert_eq!(json_body(&body)["ASICModel"], "CPU");
        let (code, body) = http(
            addr,
            "GET",
            "/api/system/statistics?columns=power,hashrate",
            "",
            "",
        )
        .await;
        assert_eq!(code, 200);
        let st = json_body(&body);
        assert_eq!(
            st["labels"].as_array().map(|l| l.last().cloned()),
            Some(Some("timestamp".into())),
            "{st}"
        );

        for (method, path) in [
            ("PATCH", "/api/system"),
            ("POST", "/api/system/restart"),
            ("POST", "/api/system/pause"),
            ("POST", "/api/system/resume"),
        ] {
            let (code, body) = http(
                addr,
                method,
                path,
                "Content-Type: application/json\r\n",
                r#"{"stratumUser":"intruder"}"#,
            )
            .await;
            assert_eq!(code, 403, "{method} {path}: {body}");
        }
        assert_eq!(app.handle().config().pools[0].user, "test.worker");
        assert_eq!(
            http(addr, "DELETE", "/api/system/info", "", "").await.0,
            405
        );
        assert_eq!(http(addr, "GET", "/api/nothing", "", "").await.0, 404);

        // The ledger's kWh reach /metrics once the meter has sampled.
        assert!(
            common::wait_for(Duration::from_secs(10), || {
                hashwatt::web::metrics::MetricsExtra::from_handle(app.handle())
                    .energy_total_kwh
                    .is_some()
            })
            .await
        );
        let text = hashwatt::web::metrics::render(
            &app.handle().snapshot(),
            &hashwatt::web::metrics::MetricsExtra::from_handle(app.handle()),
        );
        assert!(
            text.contains("\nhashwatt_energy_kilowatt_hours_total "),
            "{text}"
        );
        app.shutdown().await;
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_when_on_go_through_the_command_path() {
    common::bounded(Duration::from_secs(90), async {
        let (app, pool, addr) = surface(true, |_| {}).await;
        let other = common::devpool(0.001).await;
        let json = "Content-Type: application/json\r\n";

        // A foreign web page cannot write, even with writes on.
        let (code, _) = http(
            addr,
            "POST",
            "/api/system/pause",
            "Origin: http://evil.example\r\n",
            "",
        )
        .await;
        assert_eq!(code, 403);

        // pyasic's send_config: a whole URL, user, password, fan settings.
        let patch = format!(
            r#"{{"stratumURL":"stratum+tcp://{}","stratumUser":"new.worker","stratumPassword":"pw","autoFanspeed":1}}"#,
            other.local_addr()
        );
        let (code, body) = http(addr, "PATCH", "/api/system", json, &patch).await;
        assert_eq!(code, 200, "{body}");
        let r = json_body(&body);
        assert_eq!(r["status"], "success");
        assert_eq!(r["applied"], true);
        assert_eq!(r["ignored"], serde_json::json!(["autoFanspeed"]));
        let config = app.handle().config();
        assert_eq!(config.pools[0].url.port, other.local_addr().port());
        assert_eq!(config.pools[0].user, "new.worker");
        assert_eq!(config.pools[0].password, "pw");
        // The same pool (by id) was edited, and it mines on the new one.
        assert!(
            common::wait_for(Duration::from_secs(30), || other.stats().connections >= 1).await,
            "the edited pool connects"
        );
        let info = json_body(&http(addr, "GET", "/api/system/info", "", "").await.1);
        assert_eq!(info["stratumPort"], other.local_addr().port());
        assert_eq!(info["stratumUser"], "new.worker");

        // ESP-Miner style: the port alone.
        let (code, body) = http(
            addr,
            "PATCH",
            "/api/system",
            json,
            &format!(r#"{{"stratumPort":{}}}"#, pool.local_addr().port()),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            app.handle().config().pools[0].url.port,
            pool.local_addr().port()
        );

        // Refused edits change nothing.
        for bad in [r#"{"stratumURL":"ftp://x:1"}"#, "not json", r#"{"stratumPort":0}"#] {
            let (code, body) = http(addr, "PATCH", "/api/system", json, bad).await;
            assert_eq!(code, 400, "{bad}: {body}");
        }
        assert_eq!(
            app.handle().config().pools[0].url.port,
            pool.local_addr().port()
        );

        let (code, _) = http(addr, "POST", "/api/system/pause", "", "").await;
        assert_eq!(code, 200);
        assert_eq!(app.verdict().mode, hashwatt::policy::Mode::Pause);
        let info = json_body(&http(addr, "GET", "/api/system/info", "", "").await.1);
        assert_eq!(info["miningPaused"], true);
        let (code, _) = http(addr, "POST", "/api/system/resume", "", "").await;
        assert_eq!(code, 200);
        assert_eq!(app.verdict().mode, hashwatt::policy::Mode::Run);

        let (code, body) = http(addr, "POST", "/api/system/restart", "", "").await;
        assert_eq!(code, 200);
        assert_eq!(json_body(&body)["message"], "System will restart shortly.");
        tokio::time::timeout(Duration::from_secs(1), app.handle().restart_requested())
            .await
            .expect("the restart command was given");

        app.shutdown().await;
        pool.shutdown().await;
        other.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once() {
    common::bounded(Duration::from_secs(60), async {
        let (app, pool, addr) = surface(false, |c| {
            c.web.max_connections = 4;
            c.web.max_connections_per_client = 1;
        })
        .await;
        let _held = tokio::net::TcpStream::connect(addr).await.expect("first");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut second = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
            .await
            .expect("closed at once, not left hanging");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        drop(_held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The slot is free again.
        assert_eq!(http(addr, "GET", "/api/system/info", "", "").await.0, 200);
        app.shutdown().await;
        pool.shutdown().await;
    })
    .await;
}
