//! The panel in a real headless Chromium (driven over WebDriver by
//! chromedriver, both Debian packages that `.ci/test` installs) against the
//! real appliance on loopback: first-start setup with the console's token,
//! logout and login, live figures without reloads, a pool added through the
//! form, a manual pause that stops the shares at the pool and a resume that
//! brings them back, a signed plugin package uploaded, a policy backtested
//! from the Energy page, every page rendered,
//! the keyboard path, the dark theme and a phone-sized window. A screenshot
//! of every page lands in `target/panel-screenshots/` for a person to look
//! at.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{ChildGuard as Driver, free_port};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use fantoccini::{Client, ClientBuilder, Locator};
use hashwatt::config::PolicyEntry;
use hashwatt::plugin::package::{self, MANIFEST_FILE, WASM_FILE};
use hashwatt::plugin::{archive, builtin};
use hashwatt::policy::engine::FailSafe;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

async fn browser() -> (Driver, Client) {
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
        "the panel test needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/test installs them)"
    );
    // Two TLS backends are linked (ring for the panel, aws-lc via the
    // WebDriver client); pick one for the process.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver(child);
    let profile = tempfile::tempdir().unwrap().keep();
    let caps: serde_json::Map<String, serde_json::Value> =
        serde_json::from_value(serde_json::json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }))
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    loop {
        match ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => return (driver, c),
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start a Chromium session: {e}"),
        }
    }
}

/// Waits until the element's text satisfies `ok`; its text.
async fn wait_until(c: &Client, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(30) {
        last = text_of(c, css).await;
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never showed {what}; last text: {last:?}");
}

/// Waits until the element's text contains `needle`; its text.
async fn wait_text(c: &Client, css: &str, needle: &str) -> String {
    wait_until(c, css, &format!("{needle:?}"), |t| t.contains(needle)).await
}

/// Waits until the element's text differs from `before` (a live update,
/// since nothing reloads the page).
async fn wait_change(c: &Client, css: &str, before: &str) -> String {
    wait_until(c, css, &format!("a change from {before:?}"), |t| {
        !t.is_empty() && t != before
    })
    .await
}

/// Text of the element at `css`, or empty while it is not there.
async fn text_of(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// One key press through the WebDriver actions API (a real key event).
async fn press(c: &Client, key: char) {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    c.perform_actions(keys).await.unwrap();
}

fn shots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/panel-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(shots_dir().join(format!("{name}.png")), png).unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn type_into(c: &Client, css: &str, text: &str) {
    let e = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// Accepted shares at both pools.
fn accepted(pools: &[&hashwatt_devpool::DevPool]) -> u64 {
    pools.iter().map(|p| p.stats().accepted).sum()
}

/// True once no share reaches any pool for a whole three-second window
/// (shares already in flight when the pause began are let through first).
async fn pool_side_silent(pools: &[&hashwatt_devpool::DevPool]) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(45) {
        let before = accepted(pools);
        tokio::time::sleep(Duration::from_secs(3)).await;
        if accepted(pools) == before {
            return true;
        }
    }
    false
}

/// A signed `.hwpkg` (the Stratum V1 component under another name) on disk.
fn signed_hwpkg(dir: &std::path::Path, key: &SigningKey) -> PathBuf {
    let src = dir.join("uploaded-pool");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(WASM_FILE), builtin::STRATUM_V1).unwrap();
    std::fs::write(
        src.join(MANIFEST_FILE),
        "name = \"uploaded-pool\"\nversion = \"3.2.1\"\nkind = \"pool\"\nworld = \"hashwatt:pool/pool-plugin\"\nworld_version = \"0.2.1\"\n\n[capabilities]\npool_endpoints = [\"*\"]\n",
    )
    .unwrap();
    package::sign_package(&src, key).unwrap();
    let file = dir.join("uploaded-pool.hwpkg");
    std::fs::write(&file, archive::pack(&src).unwrap().bytes).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_in_a_real_browser() {
    common::bounded(Duration::from_secs(420), async {
        let pool = common::devpool(0.0005).await;
        let second = common::devpool(0.0005).await;
        let key = SigningKey::from_bytes(&[42; 32]);
        let public = package::public_key_hex(&key.verifying_key());
        let app = common::appliance_with(&[pool.local_addr()], 1, |c| {
            c.web.listen = Some("127.0.0.1:0".parse().unwrap());
            c.trusted_keys = vec![public.clone()];
            c.signals = vec![common::pushed_signal("grid_export_kw", 3600)];
            c.policies = vec![PolicyEntry {
                name: "surplus".into(),
                plugin: "surplus-only".into(),
                enabled: true,
                fail_safe: FailSafe::Pause,
                config: toml::toml! { signal = "grid_export_kw" label = "grid export" threshold_kw = 1.0 on_unknown = "run" min_on_s = 0 min_off_s = 0 },
            }];
        })
        .await;
        app.execute(hashwatt::control::Command::SetSignal { name: "grid_export_kw".into(), value: 3.0 })
            .await
            .unwrap();
        assert!(common::wait_for(Duration::from_secs(30), || pool.stats().accepted >= 1).await);
        let base = format!("http://{}", app.api_addr().unwrap());
        let (_driver, c) = browser().await;

        // First start: the setup form, with the token from the console.
        c.goto(&base).await.unwrap();
        let token = app.web_auth().unwrap().setup_token().unwrap();
        c.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css("#setup-token")).await.unwrap();
        shot(&c, "00-setup").await;
        type_into(&c, "#setup-token", &token).await;
        for id in ["#setup-password", "#setup-password2"] {
            type_into(&c, id, "correct horse battery").await;
        }
        click(&c, "#setup-submit").await;
        wait_text(&c, "#decision", "surplus").await;

        // Log out, then log in with the new password.
        click(&c, "#logout").await;
        c.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css("#login-password")).await.unwrap();
        type_into(&c, "#login-password", "not the password").await;
        click(&c, "#login-submit").await;
        let refused = wait_text(&c, "#login-error", "rong").await;
        eprintln!("wrong password: {refused}");
        shot(&c, "00-login").await;
        type_into(&c, "#login-password", "correct horse battery").await;
        click(&c, "#login-submit").await;

        // Dashboard: the decision first, with who made it and why; the
        // figures move without a reload.
        let decision = wait_text(&c, "#decision", "by surplus").await;
        eprintln!("dashboard decision: {decision}; engine: {:?}", app.verdict());
        let main = wait_text(&c, "#main", "H/s").await;
        assert!(main.to_lowercase().contains("accepted"), "{main}");
        let shares = wait_change(&c, "#shares-accepted", "\u{2014}").await;
        let hashrate = wait_until(&c, "#hashrate-total", "a hashrate above 0", |t| {
            t.contains("H/s") && !t.starts_with("0 ")
        })
        .await;
        let later_shares = wait_change(&c, "#shares-accepted", &shares).await;
        let later_hashrate = wait_change(&c, "#hashrate-total", &hashrate).await;
        eprintln!("live: shares {shares} -> {later_shares}, hashrate {hashrate} -> {later_hashrate}");
        shot(&c, "01-dashboard").await;

        // Pools: test a connection, then add the pool through the form.
        c.goto(&format!("{base}/#/pools")).await.unwrap();
        wait_text(&c, "#pools-table", "127.0.0.1").await;
        // What the connection negotiated, as the plugin reported it.
        wait_text(&c, "#pools-table", "Stratum V1 · unencrypted").await;
        let url = format!("stratum+tcp://{}", second.local_addr());
        type_into(&c, "#pool-url", &url).await;
        type_into(&c, "#pool-user", "panel.worker").await;
        click(&c, "#pool-test").await;
        let tested = wait_text(&c, "#pool-test-result", "Connection works").await;
        eprintln!("test connection: {tested}");
        wait_text(&c, "#pool-test-result", "Stratum V1 · unencrypted").await;
        click(&c, "#pool-add").await;
        wait_text(&c, "#pools-table", &second.local_addr().port().to_string()).await;
        let enabled_again = c
            .execute("return document.getElementById('pool-enabled').checked", vec![])
            .await
            .unwrap();
        assert_eq!(enabled_again, serde_json::json!(true), "the add form resets to its defaults");
        let pools = app.handle().pools().await;
        assert_eq!(pools.len(), 2, "the form's pool reached the control plane");
        assert_eq!(pools[1].1.url.port, second.local_addr().port(), "{:?}", pools[1].1.url);
        tokio::time::sleep(Duration::from_millis(500)).await;
        shot(&c, "02-pools").await;

        // Manual pause from the Energy page: the reason shows and no more
        // shares reach either pool.
        c.goto(&format!("{base}/#/energy")).await.unwrap();
        wait_text(&c, "#main", "surplus").await;
        click(&c, "#pause-button").await;
        assert!(
            common::wait_for(Duration::from_secs(10), || app.verdict().by == "manual override").await,
            "the panel's pause reached the control plane"
        );
        let paused = wait_text(&c, "#energy-decision", "manual").await;
        eprintln!("energy page after pause: {paused}");
        assert!(pool_side_silent(&[&pool, &second]).await, "shares kept arriving at the pool while paused");
        wait_text(&c, "#main", "Manual override").await;
        shot(&c, "03-energy-paused").await;
        c.goto(&format!("{base}/#/dashboard")).await.unwrap();
        wait_text(&c, "#decision", "manual").await;
        wait_text(&c, "#hashrate-total", "0 H/s").await;
        shot(&c, "01-dashboard-paused").await;

        // Resume: shares flow again.
        c.goto(&format!("{base}/#/energy")).await.unwrap();
        wait_text(&c, "#energy-decision", "manual").await;
        let before = accepted(&[&pool, &second]);
        click(&c, "#resume-button").await;
        assert!(
            common::wait_for(Duration::from_secs(30), || accepted(&[&pool, &second]) > before).await,
            "no share after resume"
        );
        wait_text(&c, "#energy-decision", "surplus").await;

        // A surplus-only pause, as the operator sees it.
        app.execute(hashwatt::control::Command::SetSignal { name: "grid_export_kw".into(), value: 0.4 })
            .await
            .unwrap();
        c.goto(&format!("{base}/#/dashboard")).await.unwrap();
        let surplus = wait_text(&c, "#decision", "Paused by surplus").await;
        eprintln!("surplus decision: {surplus}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        shot(&c, "01-dashboard-surplus").await;

        // Upload a signed plugin package.
        let tmp = tempfile::tempdir().unwrap();
        let file = signed_hwpkg(tmp.path(), &key);
        c.goto(&format!("{base}/#/plugins")).await.unwrap();
        wait_text(&c, "#plugins-table", "stratum-v1").await;
        c.find(Locator::Css("#plugin-file"))
            .await
            .unwrap()
            .send_keys(&file.display().to_string())
            .await
            .unwrap();
        click(&c, "#plugin-upload").await;
        let result = wait_until(&c, "#plugin-upload-result", "the install result", |t| {
            t.contains("uploaded-pool") && !t.starts_with("Uploading")
        })
        .await;
        eprintln!("upload: {result}");
        let row = wait_text(&c, "#plugins-table", "uploaded-pool").await;
        assert!(row.contains("3.2.1") && row.contains("signed by"), "{row}");
        let listed = app.handle().plugins().await;
        assert!(
            listed.iter().any(|p| p.name == "uploaded-pool" && p.signed && !p.built_in),
            "{listed:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        shot(&c, "02-plugins").await;

        // The other pages render with their data (System: the version and
        // the live log tail).
        let pages: [(&str, &[&str]); 3] = [
            ("energy", &["surplus"]),
            ("system", &[env!("CARGO_PKG_VERSION"), "share accepted"]),
            ("account", &["token"]),
        ];
        for (page, needles) in pages {
            c.goto(&format!("{base}/#/{page}")).await.unwrap();
            for needle in needles {
                wait_text(&c, "#main", needle).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            shot(&c, &format!("02-{page}")).await;
        }

        // A week of hourly prices backtested from the Energy page through
        // the price plugin with a ceiling typed into the form; the hours it
        // would have mined are the hand count, the chart shows.
        let prices: Vec<f64> = (0..168).map(|h| 100.0 + ((h * 37) % 100) as f64 + 0.25).collect();
        let mut series = String::from("time,price\n");
        for (h, p) in prices.iter().enumerate() {
            series.push_str(&format!("{},{p}\n", 1_735_689_600 + 3600 * h as i64));
        }
        let csv = tmp.path().join("week-prices.csv");
        std::fs::write(&csv, series).unwrap();
        let mined = prices.iter().filter(|p| **p <= 150.0).count();
        c.goto(&format!("{base}/#/energy")).await.unwrap();
        wait_until(&c, "#bt-policy", "the policies", |t| t.contains("price (plugin)")).await;
        c.execute(
            "const s = document.getElementById('bt-policy'); s.value = 'plugin:price'; s.dispatchEvent(new Event('change'));
             document.getElementById('bt-unit').value = 'per-mwh';",
            vec![],
        )
        .await
        .unwrap();
        for (css, value) in [
            ("#bt-watts", "1000"),
            ("#bt-terahash", "2"),
            ("#bt-hashprice", "0.05"),
        ] {
            c.find(Locator::Css(css)).await.unwrap().send_keys(value).await.unwrap();
        }
        let settings = c.find(Locator::Css("#bt-config")).await.unwrap();
        settings.clear().await.unwrap();
        settings
            .send_keys(r#"{"signal": "price", "unit": "EUR/MWh", "max_price": 150}"#)
            .await
            .unwrap();
        c.find(Locator::Css("#bt-file"))
            .await
            .unwrap()
            .send_keys(&csv.display().to_string())
            .await
            .unwrap();
        click(&c, "#bt-run").await;
        let done = wait_text(&c, "#bt-msg", "Replayed 168 rows").await;
        eprintln!("backtest: {done}");
        let result = wait_text(&c, "#bt-result", &format!("{mined}.0 h")).await;
        assert!(result.contains("of 168.0 h"), "{result}");
        assert!(result.contains("price N EUR/MWh > max N EUR/MWh"), "pause causes: {result}");
        let chart = c
            .execute(
                "const i = document.getElementById('bt-chart'); return i && i.complete && i.naturalWidth > 0;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(chart, serde_json::json!(true), "the chart image renders");
        c.execute("document.getElementById('bt-chart').scrollIntoView({ block: 'center' })", vec![])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        shot(&c, "03-energy-backtest").await;
        // Bad settings are caught before anything is sent.
        settings.clear().await.unwrap();
        settings.send_keys("{max_price: 150").await.unwrap();
        click(&c, "#bt-run").await;
        wait_text(&c, "#bt-msg", "not valid JSON").await;

        // Keyboard: after a fresh load the first Tab reaches the skip link;
        // Tab on to the Pools link and Enter opens that page.
        c.goto(&format!("{base}/#/dashboard")).await.unwrap();
        c.refresh().await.unwrap();
        wait_text(&c, "#decision", "surplus").await;
        let focused = || async {
            c.execute("return document.activeElement && document.activeElement.id", vec![])
                .await
                .unwrap()
        };
        press(&c, '\u{E004}').await;
        assert_eq!(focused().await, serde_json::json!("skip-link"));
        let mut tabs = 0;
        while focused().await != serde_json::json!("nav-pools") {
            press(&c, '\u{E004}').await;
            tabs += 1;
            assert!(tabs < 20, "Tab never reached the Pools link");
        }
        press(&c, '\u{E007}').await;
        wait_text(&c, "#main h1", "Pools").await;

        // Dark theme and a phone-sized window.
        c.goto(&format!("{base}/#/dashboard")).await.unwrap();
        c.execute("localStorage.setItem('hashwatt-theme','dark');", vec![]).await.unwrap();
        c.refresh().await.unwrap();
        wait_text(&c, "#decision", "surplus").await;
        let theme = c.execute("return document.documentElement.getAttribute('data-theme')", vec![]).await.unwrap();
        assert_eq!(theme, serde_json::json!("dark"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        shot(&c, "04-dashboard-dark").await;
        c.set_window_size(390, 844).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let overflow = c
            .execute("return document.documentElement.scrollWidth > window.innerWidth + 1", vec![])
            .await
            .unwrap();
        shot(&c, "05-dashboard-phone").await;
        assert_eq!(overflow, serde_json::json!(false), "no horizontal scrolling on a phone");

        // Log out: the login screen, and the old session no longer reads.
        c.set_window_size(1280, 900).await.unwrap();
        click(&c, "#logout").await;
        wait_text(&c, "#login-error", "logged out").await;
        let status = c
            .execute_async(
                "const done=arguments[arguments.length-1]; fetch('/api/v1/status').then(r=>done(r.status));",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(status, serde_json::json!(401), "the session ended with the logout");
        shot(&c, "06-logged-out").await;

        c.close().await.unwrap();
        app.shutdown().await;
    })
    .await;
}
