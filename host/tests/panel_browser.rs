//! The panel in a real headless Chromium (driven over WebDriver by
//! chromedriver, both Debian packages that `.ci/test` installs) against the
//! real appliance on loopback: first-start setup with the console's token,
//! every page rendered with live data, a change made through a form, the
//! keyboard path, the dark theme and a phone-sized window. A screenshot of
//! every page lands in `target/panel-screenshots/` for a person to look at.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hashwatt::config::PolicyEntry;
use hashwatt::policy::engine::FailSafe;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

/// Waits until the element's text contains `needle`; its text.
async fn wait_text(c: &Client, css: &str, needle: &str) -> String {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
        {
            if t.contains(needle) {
                return t;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never showed {needle:?}; last text: {last:?}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_in_a_real_browser() {
    common::bounded(Duration::from_secs(240), async {
        let pool = common::devpool(0.0005).await;
        let app = common::appliance_with(&[pool.local_addr()], 1, |c| {
            c.web.listen = Some("127.0.0.1:0".parse().unwrap());
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
        assert!(common::wait_for(Duration::from_secs(30), || pool.stats().accepted >= 1).await);
        app.execute(hashwatt::control::Command::SetSignal { name: "grid_export_kw".into(), value: 0.4 })
            .await
            .unwrap();
        let base = format!("http://{}", app.api_addr().unwrap());
        let (_driver, c) = browser().await;

        // First start: the setup form, with the token from the console.
        c.goto(&base).await.unwrap();
        let token = app.web_auth().unwrap().setup_token().unwrap();
        c.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css("#setup-token")).await.unwrap();
        shot(&c, "00-setup").await;
        c.find(Locator::Css("#setup-token")).await.unwrap().send_keys(&token).await.unwrap();
        for id in ["#setup-password", "#setup-password2"] {
            c.find(Locator::Css(id)).await.unwrap().send_keys("correct horse battery").await.unwrap();
        }
        c.find(Locator::Css("#setup-submit")).await.unwrap().click().await.unwrap();

        // Dashboard: the decision first, with who made it and why, live.
        let decision = wait_text(&c, "#decision", "Paused by surplus").await;
        eprintln!("dashboard decision: {decision}");
        let main = wait_text(&c, "#main", "H/s").await;
        assert!(main.to_lowercase().contains("accepted"), "{main}");
        shot(&c, "01-dashboard").await;

        // Every page renders with its data.
        for (page, needle) in [
            ("pools", "127.0.0.1"),
            ("plugins", "stratum-v1"),
            ("energy", "surplus"),
            ("system", env!("CARGO_PKG_VERSION")),
            ("account", "token"),
        ] {
            c.goto(&format!("{base}/#/{page}")).await.unwrap();
            wait_text(&c, "#main", needle).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            shot(&c, &format!("02-{page}")).await;
        }

        // A change through a form lands in the control plane: pause.
        c.goto(&format!("{base}/#/energy")).await.unwrap();
        wait_text(&c, "#main", "surplus").await;
        let paused_by_panel = c
            .execute(
                "const b=[...document.querySelectorAll('#main button')].find(b=>/^Pause/.test(b.textContent.trim()));\
                 if(!b) return false; b.click(); return true;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(paused_by_panel, serde_json::Value::Bool(true), "a Pause button on the Energy page");
        assert!(
            common::wait_for(Duration::from_secs(10), || app.verdict().by == "manual override").await,
            "the panel's pause reached the control plane"
        );
        shot(&c, "03-energy-paused").await;

        // Keyboard: after a fresh load the first Tab reaches the skip link;
        // Tab on to the Pools link and Enter opens that page.
        c.goto(&format!("{base}/#/dashboard")).await.unwrap();
        c.refresh().await.unwrap();
        wait_text(&c, "#decision", "manual").await;
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
        wait_text(&c, "#decision", "manual").await;
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

        c.close().await.unwrap();
        app.shutdown().await;
    })
    .await;
}
