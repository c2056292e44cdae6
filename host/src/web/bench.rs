//! `hashwatt bench api`: what the panel and the APIs cost on this machine.
//! A real appliance mines against the devpool on loopback while the bench
//! loads the panel, hammers `/api/v1/status` from many keep-alive clients,
//! renders `/metrics`, and holds many live event streams open — and prints
//! the figures with the goals beside them.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::app::App;
use crate::config::Config;

/// How often each polling client asks: a dashboard or fleet script
/// refreshing 20 times a second is already an eager one.
const POLL: Duration = Duration::from_millis(50);

/// Runs the benchmark: `clients` concurrent REST clients and event
/// streams, hashrate compared over `seconds` with and without the streams.
pub fn run(clients: usize, requests: usize, seconds: f64) -> anyhow::Result<String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench(clients, requests, Duration::from_secs_f64(seconds)))
}

/// One keep-alive HTTP/1.1 client.
struct Conn {
    stream: BufReader<TcpStream>,
    addr: SocketAddr,
    token: String,
}

impl Conn {
    async fn open(addr: SocketAddr, token: &str) -> anyhow::Result<Conn> {
        Ok(Conn {
            stream: BufReader::new(TcpStream::connect(addr).await?),
            addr,
            token: token.to_string(),
        })
    }

    /// GETs `path`; the body.
    async fn get(&mut self, path: &str) -> anyhow::Result<Vec<u8>> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
            self.addr, self.token
        );
        self.stream.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        let mut length = None;
        let mut status = 0;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                anyhow::bail!("GET {path}: connection closed");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(code) = l.strip_prefix("HTTP/1.1 ") {
                status = code.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let n = length.context("no Content-Length")?;
        let mut body = vec![0; n];
        self.stream.read_exact(&mut body).await?;
        anyhow::ensure!(status == 200, "{path}: HTTP {status}");
        Ok(body)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn hashrate_over(app: &App, window: Duration) -> f64 {
    let h0 = app.handle().hashes();
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    (app.handle().hashes() - h0) as f64 / t0.elapsed().as_secs_f64()
}

async fn bench(clients: usize, requests: usize, window: Duration) -> anyhow::Result<String> {
    let pool = hashwatt_devpool::start(hashwatt_devpool::DevPoolConfig::default()).await?;
    let state = std::env::temp_dir().join(format!("hashwatt-bench-api-{}", std::process::id()));
    let text = format!(
        "state_dir = {state:?}\n[[pools]]\nurl = \"stratum+tcp://{}\"\nuser = \"bench.worker\"\n",
        pool.local_addr()
    );
    let mut config = Config::parse(std::path::Path::new("(bench)"), &text)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    config.web.listen = Some("127.0.0.1:0".parse()?);
    // Every bench client comes from 127.0.0.1: let them all in.
    config.web.max_connections_per_client = (2 * clients + 8).max(32);
    config.web.max_connections = config.web.max_connections.max(2 * clients + 8);
    let app = App::start(config).await?;
    let result = measure(&app, clients, requests, window).await;
    app.shutdown().await;
    let _ = std::fs::remove_dir_all(&state);
    result
}

async fn measure(
    app: &App,
    clients: usize,
    requests: usize,
    window: Duration,
) -> anyhow::Result<String> {
    let addr = app.api_addr().context("panel not listening")?;
    let auth = app.web_auth().context("no accounts")?;
    let (_, token) = auth
        .create_token("bench", super::auth::Scope::Read, 0)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = String::new();
    writeln!(out, "hashwatt bench api — {clients} clients, on {addr}")?;
    eprint!("{out}");

    // Dashboard: every file the browser loads, plus its first API calls.
    let mut c = Conn::open(addr, &token).await?;
    let mut bytes = 0;
    for path in [
        "/",
        "/assets/app.js",
        "/assets/style.css",
        "/assets/uplot.iife.min.js",
        "/assets/uplot.min.css",
        "/assets/favicon.svg",
        "/api/v1/session",
        "/api/v1/status",
        "/api/v1/history",
    ] {
        bytes += match c.get(path).await {
            Ok(b) => b.len(),
            // A bearer token has no session: the panel gets a 401 here.
            Err(_) if path == "/api/v1/session" => 0,
            Err(e) => return Err(e),
        };
    }
    writeln!(
        out,
        "dashboard transfer      {:>9.1} KB   (goal < 300 KB; uncompressed)",
        bytes as f64 / 1000.0
    )?;

    // Warm up before the hashrate figures.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // REST: `clients` keep-alive clients polling `/api/v1/status` every
    // POLL (staggered), then the same clients asking back to back
    // (saturation: latency there is mostly queueing behind the others).
    for (label, pace) in [("polling every 50 ms", Some(POLL)), ("back to back", None)] {
        let mut tasks = Vec::new();
        for i in 0..clients {
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = Conn::open(addr, &token).await?;
                let mut times = Vec::with_capacity(requests);
                let mut tick = pace.map(|p| {
                    let start = tokio::time::Instant::now() + p * i as u32 / clients.max(1) as u32;
                    tokio::time::interval_at(start, p)
                });
                for _ in 0..requests {
                    if let Some(t) = tick.as_mut() {
                        t.tick().await;
                    }
                    let t = Instant::now();
                    c.get("/api/v1/status").await?;
                    times.push(t.elapsed());
                }
                anyhow::Ok(times)
            }));
        }
        let t0 = Instant::now();
        let mut times = Vec::new();
        for t in tasks {
            times.extend(t.await??);
        }
        let wall = t0.elapsed();
        times.sort();
        writeln!(
            out,
            "GET /api/v1/status      p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms  ({} requests, {:.0}/s, {label}){}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(percentile(&times, 1.0)),
            times.len(),
            times.len() as f64 / wall.as_secs_f64(),
            if pace.is_some() {
                "   (goal p99 < 5 ms)"
            } else {
                ""
            },
        )?;
    }

    // /metrics: the render alone, and over HTTP.
    let extra = super::metrics::MetricsExtra::from_handle(app.handle());
    let snap = app.handle().snapshot();
    let mut render = Vec::new();
    let mut size = 0;
    for _ in 0..1000 {
        let t = Instant::now();
        size = super::metrics::render(&snap, &extra).len();
        render.push(t.elapsed());
    }
    render.sort();
    // A fresh connection: idle keep-alive sockets close after 10 s.
    let mut c = Conn::open(addr, &token).await?;
    let mut http = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        c.get("/metrics").await?;
        http.push(t.elapsed());
    }
    http.sort();
    writeln!(
        out,
        "/metrics render         p50 {:>6.3} ms  p99 {:>6.3} ms  ({size} bytes); over HTTP p99 {:.2} ms   (goal < 5 ms)",
        ms(percentile(&render, 0.5)),
        ms(percentile(&render, 0.99)),
        ms(percentile(&http, 0.99)),
    )?;

    // Live event streams held open while mining: hashrate alone and with
    // them, alternated three times so drift (turbo, neighbours) cancels.
    let (mut alone, mut with) = (0.0, 0.0);
    for _ in 0..3 {
        alone += hashrate_over(app, window).await;
        let mut streams = Vec::new();
        for _ in 0..clients {
            let mut s = TcpStream::connect(addr).await?;
            s.write_all(
                format!(
                    "GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
                )
                .as_bytes(),
            )
            .await?;
            streams.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        with += hashrate_over(app, window).await;
        for s in &streams {
            s.abort();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let cost = (alone - with) / alone * 100.0;
    writeln!(
        out,
        "hashrate                {:>9.2} MH/s alone, {:.2} MH/s with {clients} event streams: {cost:.2} % lower   (goal < 2 %)",
        alone / 3e6,
        with / 3e6,
    )?;
    Ok(out)
}
