//! The cgminer-compatible API over real loopback TCP against a real
//! appliance mining on a devpool: both request forms, joined commands,
//! cgminer's status codes, privileged commands (refused, then allowed and
//! seen through the control plane), hostile input and the connection cap.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use hashwatt::app::App;
use hashwatt::config::Config;
use hashwatt_devpool::DevPool;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Guards against a hang only; nothing asserts how fast anything is.
const LIMIT: Duration = Duration::from_secs(90);

async fn api(pools: usize, tweak: impl FnOnce(&mut Config)) -> (App, Vec<DevPool>, SocketAddr) {
    let mut devpools = Vec::new();
    for _ in 0..pools {
        devpools.push(common::devpool(0.001).await);
    }
    let addrs: Vec<SocketAddr> = devpools.iter().map(|p| p.local_addr()).collect();
    let app = common::appliance_with(&addrs, 1, |c| {
        c.cgminer.enabled = true;
        c.cgminer.listen = "127.0.0.1:0".parse().unwrap();
        tweak(c);
    })
    .await;
    let addr = app.cgminer_addr().expect("the cgminer API listens");
    (app, devpools, addr)
}

async fn stop(app: App, pools: Vec<DevPool>) {
    app.shutdown().await;
    for p in pools {
        p.shutdown().await;
    }
}

/// Sends `request`, reads until the server closes; the raw reply.
async fn raw(addr: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    exchange(addr, request, false).await
}

/// Like [`raw`], closing the sending side after the request.
async fn raw_closing(addr: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    exchange(addr, request, true).await
}

async fn exchange(addr: SocketAddr, request: &[u8], close: bool) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(request).await?;
    if close {
        s.shutdown().await?;
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(out)
}

/// The reply's text, checked for its NUL terminator (and nothing after it).
async fn ask(addr: SocketAddr, request: &str) -> String {
    let bytes = raw(addr, request.as_bytes()).await.expect("a reply");
    assert_eq!(bytes.last(), Some(&0), "NUL-terminated: {bytes:?}");
    let text = String::from_utf8(bytes[..bytes.len() - 1].to_vec()).expect("UTF-8");
    assert!(!text.contains('\0'), "{text:?}");
    text
}

async fn ask_json(addr: SocketAddr, command: &str, parameter: Option<Value>) -> Value {
    let mut req = serde_json::json!({ "command": command });
    if let Some(p) = parameter {
        req["parameter"] = p;
    }
    let text = ask(addr, &req.to_string()).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A plain reply's sections: each a list of `key=value` pairs (a bare
/// label such as `SUMMARY` as a key with no value), escapes undone.
fn plain_sections(text: &str) -> Vec<Vec<(String, Option<String>)>> {
    let mut sections = Vec::new();
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars();
    let field = |cur: &mut String, fields: &mut Vec<(String, Option<String>)>| {
        let raw = std::mem::take(cur);
        // The first unescaped '=' was marked as \u{1}.
        match raw.split_once('\u{1}') {
            Some((k, v)) => fields.push((k.to_string(), Some(v.to_string()))),
            None => fields.push((raw, None)),
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            '=' if !cur.contains('\u{1}') => cur.push('\u{1}'),
            ',' => field(&mut cur, &mut fields),
            '|' => {
                field(&mut cur, &mut fields);
                sections.push(std::mem::take(&mut fields));
            }
            _ => cur.push(c),
        }
    }
    assert!(cur.is_empty() && fields.is_empty(), "ends with '|': {text}");
    sections
}

fn get<'a>(section: &'a [(String, Option<String>)], key: &str) -> Option<&'a str> {
    section
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_deref())
}

fn description() -> String {
    format!("hashwatt {}", env!("CARGO_PKG_VERSION"))
}

/// Checks a JSON reply's status and returns it.
fn status(reply: &Value, code: i64, letter: &str) -> Value {
    let st = &reply["STATUS"][0];
    assert_eq!(st["Code"], code, "{reply}");
    assert_eq!(st["STATUS"], letter, "{reply}");
    assert!(st["When"].as_u64().is_some_and(|w| w > 0), "{reply}");
    assert_eq!(reply["id"], 1, "{reply}");
    st.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_answer_in_json_and_plain_with_cgminer_codes() {
    common::bounded(LIMIT, async {
        let (app, pools, addr) = api(1, |_| {}).await;
        let pool_url = format!("stratum+tcp://{}", pools[0].local_addr());
        // Shares flow before the numbers are read.
        assert!(
            common::wait_for(Duration::from_secs(60), || app.counters().accepted > 0).await,
            "no share accepted"
        );

        // version
        let v = ask_json(addr, "version", None).await;
        let st = status(&v, 22, "S");
        assert_eq!(st["Description"], description());
        let ver = v["VERSION"][0].as_object().unwrap();
        let keys: Vec<&str> = ver.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 2, "{v}");
        assert_eq!(ver["hashwatt"], env!("CARGO_PKG_VERSION"));
        assert_eq!(ver["API"], "3.7");
        let plain = plain_sections(&ask(addr, "version").await);
        assert_eq!(get(&plain[0], "STATUS"), Some("S"));
        assert_eq!(get(&plain[0], "Code"), Some("22"));
        assert_eq!(get(&plain[0], "Description"), Some(description().as_str()));
        assert_eq!(plain[1][0], ("VERSION".to_string(), None));
        assert_eq!(get(&plain[1], "API"), Some("3.7"));

        // summary
        let sum = ask_json(addr, "summary", None).await;
        status(&sum, 11, "S");
        let s = &sum["SUMMARY"][0];
        for k in [
            "Elapsed", "MHS av", "MHS 5s", "MHS 1m", "Total MH", "Utility",
        ] {
            assert!(s[k].is_number(), "{k}: {sum}");
        }
        assert!(s["Accepted"].as_u64().unwrap() >= 1, "{sum}");
        assert!(s["MHS av"].as_f64().unwrap() > 0.0, "{sum}");
        for k in ["Rejected", "Stale", "Hardware Errors", "Found Blocks"] {
            assert!(s[k].as_u64().is_some(), "{k}: {sum}");
        }
        // What the appliance does not count is left out, not claimed as 0.
        for k in ["Difficulty Accepted", "Best Share", "Getworks"] {
            assert!(s.get(k).is_none(), "{k}: {sum}");
        }
        let plain = plain_sections(&ask(addr, "summary").await);
        assert_eq!(get(&plain[0], "Code"), Some("11"));
        assert_eq!(get(&plain[0], "Msg"), Some("Summary"));
        assert_eq!(plain[1][0], ("SUMMARY".to_string(), None));
        assert!(get(&plain[1], "MHS av").is_some_and(|v| v.parse::<f64>().is_ok()));
        assert!(get(&plain[1], "Accepted").is_some_and(|v| v.parse::<u64>().unwrap() >= 1));

        // pools
        let p = ask_json(addr, "pools", None).await;
        let st = status(&p, 7, "S");
        assert_eq!(st["Msg"], "1 Pool(s)");
        let pool = &p["POOLS"][0];
        assert_eq!(pool["POOL"], 0);
        assert_eq!(pool["URL"], pool_url.as_str());
        assert_eq!(pool["User"], "test.worker");
        assert_eq!(pool["Status"], "Alive", "{p}");
        assert_eq!(pool["Priority"], 0);
        assert_eq!(pool["Stratum Active"], true);
        assert!(pool["Accepted"].as_u64().unwrap() >= 1);
        let plain = plain_sections(&ask(addr, "pools").await);
        assert_eq!(get(&plain[0], "Code"), Some("7"));
        assert_eq!(get(&plain[1], "POOL"), Some("0"));
        assert_eq!(get(&plain[1], "URL"), Some(pool_url.as_str()));
        assert_eq!(get(&plain[1], "Stratum Active"), Some("true"));

        // devs: one entry per device; a temperature only where one is read
        let snap = app.handle().snapshot();
        let d = ask_json(addr, "devs", None).await;
        status(&d, 9, "S");
        let devs = d["DEVS"].as_array().unwrap();
        assert_eq!(devs.len(), snap.devices.len(), "{d}");
        for (dev, s) in devs.iter().zip(&snap.devices) {
            assert_eq!(dev["Name"], s.info.name.as_str());
            assert_eq!(dev["CPU"], 0, "{d}");
            assert!(
                dev["MHS av"].is_number() && dev["MHS 10s"].is_number(),
                "{d}"
            );
            let hottest = s
                .telemetry
                .temperatures
                .iter()
                .map(|t| t.temp_c)
                .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
            match hottest {
                Some(t) => assert!((dev["Temperature"].as_f64().unwrap() - t).abs() < 5.0),
                None => assert!(dev.get("Temperature").is_none(), "{d}"),
            }
        }
        let plain = plain_sections(&ask(addr, "devs").await);
        assert_eq!(get(&plain[0], "Code"), Some("9"));
        assert_eq!(plain.len(), 1 + snap.devices.len());
        assert_eq!(get(&plain[1], "CPU"), Some("0"));

        // stats: devices, then pools
        let st = ask_json(addr, "stats", None).await;
        status(&st, 70, "S");
        let rows = st["STATS"].as_array().unwrap();
        assert_eq!(rows.len(), snap.devices.len() + 1, "{st}");
        assert_eq!(rows[0]["ID"], "CPU0");
        assert_eq!(rows.last().unwrap()["ID"], "POOL0");
        let plain = plain_sections(&ask(addr, "stats").await);
        assert_eq!(get(&plain[0], "Code"), Some("70"));
        assert_eq!(get(&plain[1], "STATS"), Some("0"));

        // config
        let c = ask_json(addr, "config", None).await;
        status(&c, 33, "S");
        let cfg = &c["CONFIG"][0];
        assert_eq!(cfg["Pool Count"], 1);
        assert_eq!(cfg["Strategy"], "Failover");
        assert_eq!(cfg["CPU Count"], snap.devices.len());
        let plain = plain_sections(&ask(addr, "config").await);
        assert_eq!(get(&plain[0], "Code"), Some("33"));
        assert_eq!(get(&plain[1], "Pool Count"), Some("1"));

        stop(app, pools).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_commands_reply_once_each_and_refuse_what_cannot_join() {
    common::bounded(LIMIT, async {
        let (app, pools, addr) = api(1, |c| {
            c.cgminer.privileged = vec!["127.0.0.1/32".into()];
        })
        .await;
        let j = ask_json(addr, "summary+pools", None).await;
        assert_eq!(j["id"], 1, "{j}");
        let obj = j.as_object().unwrap();
        assert_eq!(obj.len(), 3, "summary, pools, id: {j}");
        assert_eq!(j["summary"].as_array().unwrap().len(), 1);
        status(&j["summary"][0], 11, "S");
        assert!(j["summary"][0]["SUMMARY"][0]["Elapsed"].is_number());
        status(&j["pools"][0], 7, "S");
        assert_eq!(j["pools"][0]["POOLS"][0]["POOL"], 0);

        // Repeats once, unknown ones say so, non-joinable ones are denied
        // even to a privileged client (as cgminer does).
        let j = ask_json(addr, "version+version+nosuch+switchpool", Some("0".into())).await;
        status(&j["version"][0], 22, "S");
        status(&j["nosuch"][0], 14, "E");
        let st = status(&j["switchpool"][0], 45, "E");
        assert_eq!(st["Msg"], "Access denied to 'switchpool' command");

        let text = ask(addr, "summary+pools").await;
        assert!(text.starts_with("CMD=summary|STATUS=S,"), "{text}");
        assert!(text.contains("|CMD=pools|STATUS=S,"), "{text}");
        let plain = plain_sections(&text);
        assert!(
            plain
                .iter()
                .any(|s| s.first().is_some_and(|(k, _)| k == "SUMMARY"))
        );
        assert!(plain.iter().any(|s| get(s, "POOL") == Some("0")));
        stop(app, pools).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_cgminer_errors_and_hostile_bytes_change_nothing() {
    common::bounded(LIMIT, async {
        let (app, pools, addr) = api(1, |_| {}).await;
        let bad = ask_json(addr, "nosuch", None).await;
        let st = status(&bad, 14, "E");
        assert_eq!(st["Msg"], "Invalid command");
        // No description for random probes, as cgminer.
        assert!(st.get("Description").is_none(), "{bad}");
        let text = ask(addr, "nosuch").await;
        assert!(text.starts_with("STATUS=E,When="), "{text}");
        assert!(text.ends_with(",Code=14,Msg=Invalid command|"), "{text}");

        // An unfinished object ended by the client is invalid JSON.
        let bytes = raw_closing(addr, b"{\"command\":").await.unwrap();
        assert_eq!(bytes.last(), Some(&0));
        let v: Value = serde_json::from_slice(&bytes[..bytes.len() - 1]).unwrap();
        status(&v, 23, "E");
        let text = ask(addr, "{not json}").await;
        let v: Value = serde_json::from_str(&text).unwrap();
        status(&v, 23, "E");
        let v: Value = serde_json::from_str(&ask(addr, "{\"parameter\":1}").await).unwrap();
        status(&v, 24, "E");
        let v: Value = serde_json::from_str(&ask(addr, "{\"command\":[1]}").await).unwrap();
        status(&v, 14, "E");

        // Garbage: bytes of every value, broken UTF-8, NULs, deep nesting.
        let mut garbage: Vec<Vec<u8>> = vec![
            (0..=255u8).collect(),
            vec![0xff, 0xfe, b'|', 0xc3],
            b"\0\0\0".to_vec(),
            b"|||,,,===\\\\".to_vec(),
            format!("{}{}", "{\"a\":".repeat(5000), "1").into_bytes(),
            "[".repeat(10_000).into_bytes(),
            b"switchpool|99999999999999999999999999".to_vec(),
            b"summary+++++pools+".to_vec(),
        ];
        garbage.push(b"{\"command\":\"summary\"}{\"command\":\"pools\"}".to_vec());
        for g in &garbage {
            let reply = raw_closing(addr, g).await;
            if let Ok(bytes) = reply {
                assert!(bytes.is_empty() || bytes.last() == Some(&0), "{g:?}");
            }
        }
        // Over 64 KiB: an error status or a closed connection, never a hang.
        for big in [vec![b'a'; 100 * 1024], {
            let mut v = b"{\"command\":\"".to_vec();
            v.extend(vec![b'x'; 100 * 1024]);
            v
        }] {
            if let Ok(bytes) = raw(addr, &big).await
                && !bytes.is_empty()
            {
                assert_eq!(bytes.last(), Some(&0));
                let text = String::from_utf8_lossy(&bytes[..bytes.len() - 1]).to_string();
                assert!(
                    text.contains("Code=14") || text.contains("\"Code\":23"),
                    "{text}"
                );
            }
        }
        // Still serving, still mining on the same pool.
        status(&ask_json(addr, "version", None).await, 22, "S");
        assert_eq!(app.handle().pools().await.len(), 1);
        stop(app, pools).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_commands_are_refused_to_unlisted_addresses() {
    common::bounded(LIMIT, async {
        // 127.0.0.1 is not in the list; the list is not empty either.
        let (app, pools, addr) = api(2, |c| {
            c.cgminer.privileged = vec!["10.0.0.0/8".into(), "::1".into()];
        })
        .await;
        let before = app.handle().pools().await;
        for (cmd, param) in [
            ("switchpool", "1"),
            ("enablepool", "1"),
            ("disablepool", "0"),
            ("removepool", "1"),
            ("addpool", "stratum+tcp://127.0.0.1:1,u,p"),
            ("restart", ""),
            ("privileged", ""),
        ] {
            let v = ask_json(addr, cmd, Some(param.into())).await;
            let st = status(&v, 45, "E");
            assert_eq!(st["Msg"], format!("Access denied to '{cmd}' command"));
            assert_eq!(st["Description"], description());
            let text = ask(addr, &format!("{cmd}|{param}")).await;
            assert!(
                text.contains(&format!(",Code=45,Msg=Access denied to '{cmd}' command,")),
                "{text}"
            );
        }
        let after = app.handle().pools().await;
        assert_eq!(after.len(), before.len());
        for ((id_a, a), (id_b, b)) in before.iter().zip(&after) {
            assert_eq!(id_a, id_b);
            assert_eq!(a.url, b.url);
            assert_eq!(a.enabled, b.enabled);
        }
        // check says so without running anything.
        let v = ask_json(addr, "check", Some("switchpool".into())).await;
        status(&v, 72, "S");
        assert_eq!(v["CHECK"][0]["Exists"], "Y");
        assert_eq!(v["CHECK"][0]["Access"], "N");
        stop(app, pools).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_commands_from_listed_addresses_go_through_the_control_plane() {
    common::bounded(LIMIT, async {
        let (app, pools, addr) = api(2, |c| {
            c.cgminer.privileged = vec!["127.0.0.1/32".into()];
            // An hour's fail-back hold: switchpool still moves mining at
            // once, since the operator chose the pool.
            c.failback_secs = 3600;
        })
        .await;
        let h = app.handle().clone();
        let order = |p: &[(u64, hashwatt::config::PoolEntry)]| -> Vec<u64> {
            p.iter().map(|(id, _)| *id).collect()
        };
        let before = order(&h.pools().await);
        let second_url = h.pools().await[1].1.url.url.clone();

        status(&ask_json(addr, "privileged", None).await, 46, "S");
        status(&ask_json(addr, "switchpool", None).await, 25, "E");
        let v = ask_json(addr, "switchpool", Some(7.into())).await;
        let st = status(&v, 26, "E");
        assert_eq!(st["Msg"], "Invalid pool id 7 - range is 0 - 1");
        status(
            &ask_json(addr, "switchpool", Some((-1).into())).await,
            26,
            "E",
        );

        // switchpool 1: the second pool moves to the front.
        let v = ask_json(addr, "switchpool", Some(1.into())).await;
        let st = status(&v, 27, "S");
        assert_eq!(st["Msg"], format!("Switching to pool 1:'{second_url}'"));
        let after = order(&h.pools().await);
        assert_eq!(after, vec![before[1], before[0]]);
        let p = ask_json(addr, "pools", None).await;
        assert_eq!(p["POOLS"][0]["URL"], second_url.as_str(), "{p}");
        assert!(
            common::wait_for(Duration::from_secs(30), || {
                h.snapshot().shares.active_pool_id == Some(before[1])
            })
            .await,
            "mining moved to the switched-to pool"
        );

        // Plain form too: disable, disable again, enable.
        let text = ask(addr, "disablepool|1").await;
        assert!(text.contains(",Code=48,"), "{text}");
        assert!(!h.pools().await[1].1.enabled);
        let text = ask(addr, "disablepool|1").await;
        assert!(
            text.starts_with("STATUS=I,") && text.contains(",Code=50,"),
            "{text}"
        );
        let text = ask(addr, "disablepool|0").await;
        assert!(
            text.contains(",Code=51,"),
            "the last enabled pool stays: {text}"
        );
        let text = ask(addr, "enablepool|1").await;
        assert!(text.contains(",Code=47,"), "{text}");
        assert!(h.pools().await[1].1.enabled);
        let text = ask(addr, "enablepool|1").await;
        assert!(text.contains(",Code=49,"), "{text}");

        // addpool, then removepool of what was added.
        status(&ask_json(addr, "addpool", None).await, 52, "E");
        status(
            &ask_json(addr, "addpool", Some("h:1,user".into())).await,
            53,
            "E",
        );
        let v = ask_json(addr, "addpool", Some("127.0.0.1:9,extra.worker,x".into())).await;
        let st = status(&v, 55, "S");
        assert_eq!(st["Msg"], "Added pool 2: 'stratum+tcp://127.0.0.1:9'");
        let now = h.pools().await;
        assert_eq!(now.len(), 3);
        assert_eq!(now[2].1.user, "extra.worker");
        assert_eq!(now[2].1.password, "x");
        let v = ask_json(addr, "removepool", Some("2".into())).await;
        status(&v, 68, "S");
        assert_eq!(h.pools().await.len(), 2);

        // restart is acknowledged as cgminer does, with no status section.
        let text = ask(addr, "{\"command\":\"restart\"}").await;
        assert_eq!(text, "{\"STATUS\":\"RESTART\",\"id\":1}");
        stop(app, pools).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listens_by_default() {
    common::bounded(LIMIT, async {
        let pool = common::devpool(0.001).await;
        let app = common::appliance(&[pool.local_addr()], 1).await;
        assert!(!app.handle().config().cgminer.enabled);
        assert_eq!(app.cgminer_addr(), None);
        // The default port answers nothing.
        assert!(TcpStream::connect("127.0.0.1:4028").await.is_err());
        stop(app, vec![pool]).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_and_slots_come_back() {
    common::bounded(LIMIT, async {
        const CAP: usize = 8;
        let (app, pools, addr) = api(1, |c| {
            c.cgminer.max_connections = CAP;
            c.cgminer.max_connections_per_client = CAP;
        })
        .await;
        // Connections are accepted in order: these take every slot.
        let mut idle = Vec::new();
        for _ in 0..CAP {
            idle.push(TcpStream::connect(addr).await.expect("connects"));
        }
        for _ in 0..3 {
            let mut extra = TcpStream::connect(addr).await.expect("connects");
            let _ = extra.write_all(b"version").await;
            let mut buf = Vec::new();
            let n = extra.read_to_end(&mut buf).await;
            assert!(
                matches!(n, Ok(0) | Err(_)),
                "closed without a reply: {n:?} {buf:?}"
            );
        }
        // The idle ones get nothing and are closed once the client goes.
        drop(idle);
        let mut answered = false;
        for _ in 0..200 {
            if let Ok(bytes) = raw(addr, b"version").await
                && bytes.last() == Some(&0)
            {
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(answered, "the API answers again once the slots are free");
        stop(app, pools).await;
    })
    .await;
}
