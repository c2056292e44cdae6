//! Transcripts of real pool sessions: `hashwatt run --record` against the
//! devpool over loopback TCP writes one (password redacted), `hashwatt
//! plugin test` replays it identically through the Stratum V1 plugin, and
//! a plugin that answers differently shows a readable diff.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const PASSWORD: &str = "s3cret-pass";

fn transcripts(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn replay(plugin: &str, transcript: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hashwatt"))
        .args(["plugin", "test", plugin, "--transcript"])
        .arg(transcript)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_devpool_session_replays_identically_and_a_change_shows_as_a_diff() {
    let pool = common::devpool(0.0005).await;
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("transcripts");
    let config = dir.path().join("hashwatt.toml");
    std::fs::write(
        &config,
        format!(
            "threads = 1\nstate_dir = \"{}\"\n[[pools]]\nurl = \"stratum+tcp://{}\"\nuser = \"rec.worker\"\npassword = \"{PASSWORD}\"\n[web]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("state").display(),
            pool.local_addr()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hashwatt"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--record")
        .arg(&record)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Until the pool has answered a few shares (bounded: 120 s).
    let answered = |text: &str| text.matches("share_result id=").count();
    let found = common::wait_for(Duration::from_secs(120), || {
        transcripts(&record)
            .first()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .is_some_and(|t| answered(&t) >= 3)
    })
    .await;
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    assert!(
        found,
        "no transcript with 3 share results in {}",
        record.display()
    );
    let files = transcripts(&record);
    assert_eq!(files.len(), 1, "{files:?}");
    let path = &files[0];
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.starts_with("{\"session\":"), "{text}");
    assert!(
        !text.contains(PASSWORD),
        "the password was recorded:\n{text}"
    );
    assert!(text.contains("<redacted>"), "{text}");
    assert!(text.contains("\"received\""), "{text}");
    assert!(text.contains("\"share\""), "{text}");

    let (ok, report) = replay("stratum-v1", path);
    assert!(ok, "{report}");
    assert!(report.contains("every answer identical"), "{report}");

    // A plugin that answers one share differently: the recorded answer is
    // what the changed plugin would have said; the replay shows both.
    let first_accept = text
        .lines()
        .position(|l| l.contains("share_result id=") && l.contains("accepted"))
        .expect("an accepted share");
    let changed: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == first_accept {
                l.replacen("accepted", "rejected: stale", 1)
            } else {
                l.to_string()
            }
        })
        .collect();
    let changed_path = dir.path().join("changed.jsonl");
    std::fs::write(&changed_path, changed.join("\n") + "\n").unwrap();
    let (ok, report) = replay("stratum-v1", &changed_path);
    assert!(!ok, "a difference must fail the replay: {report}");
    assert!(report.contains("1 answered differently"), "{report}");
    assert!(
        report.contains(&format!("line {first_accept}: received at")),
        "{report}"
    );
    assert!(
        report.contains("  - share_result id=") && report.contains("rejected: stale"),
        "{report}"
    );
    assert!(
        report.contains("  + share_result id=") && report.contains("accepted"),
        "{report}"
    );

    // Input that is not a transcript: a clear error with the line.
    std::fs::write(&changed_path, "{\"session\":{}}\n").unwrap();
    let (ok, report) = replay("stratum-v1", &changed_path);
    assert!(!ok && report.contains("line 1"), "{report}");
}
