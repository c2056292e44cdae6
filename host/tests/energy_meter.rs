//! The appliance's meter: a smart-plug signal is preferred while fresh;
//! without it the calibrated model (RAPL is absent in this test) is used.

mod common;

use std::time::Duration;

use hashwatt::config::SignalEntry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_meter_signal_is_preferred_and_the_model_takes_over_when_it_goes_stale() {
    common::bounded(Duration::from_secs(60), async {
        let pool = common::devpool(0.0005).await;
        let app = common::appliance_with(&[pool.local_addr()], 1, |c| {
            c.energy.powercap_root = "/nonexistent".into();
            c.energy.idle_w = 10.0;
            c.energy.full_load_w = 60.0;
            c.energy.meter_signal = Some("plug_w".into());
            c.signals = vec![SignalEntry {
                name: "plug_w".into(),
                ttl_secs: 3,
                min: Some(0.0),
                max: Some(5000.0),
                http: None,
                mqtt: None,
                file: None,
            }];
        })
        .await;
        // No plug reading yet: the model.
        assert!(
            common::wait_for(Duration::from_secs(10), || app.power().1 == "model").await,
            "{:?}",
            app.power()
        );
        // The plug reports 437 W: the external meter is used.
        let pushed = app.set_signal("plug_w", 437.0);
        assert!(pushed.is_ok());
        let ok = common::wait_for(Duration::from_secs(5), || {
            let (w, src) = app.power();
            src == "external" && w.is_some_and(|w| (w - 437.0).abs() < 1.0)
        })
        .await;
        assert!(ok, "{:?}", app.power());
        // The plug goes silent: its value turns stale and the model takes over.
        assert!(
            common::wait_for(Duration::from_secs(10), || app.power().1 == "model").await,
            "{:?}",
            app.power()
        );
        app.shutdown().await;
    })
    .await;
}
