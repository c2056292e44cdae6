//! `hashwatt update` with the real `rauc info` and `veritysetup` checking
//! real signed bundles made here with `rauc bundle` (a wrapper at
//! `HASHWATT_RAUC` answers `status` from a file and records `install`, as
//! there are no slots on a build machine): every bad bundle is refused
//! before anything is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const STATUS: &str = r#"{"compatible":"hashwatt-x86_64","variant":"","booted":"A","boot_primary":"rootfs.0","slots":[{"rootfs.0":{"class":"rootfs","device":"/dev/vda2","type":"raw","bootname":"A","state":"booted","parent":null,"mountpoint":"/","boot_status":"good","slot_status":{"bundle":{"compatible":"hashwatt-x86_64","version":"0.1.0"},"installed":{"timestamp":"2026-12-01T10:00:00Z","count":1},"status":"ok"}}},{"rootfs.1":{"class":"rootfs","device":"/dev/vda3","type":"raw","bootname":"B","state":"inactive","parent":null,"mountpoint":null,"boot_status":"bad"}},{"verity.0":{"class":"verity","device":"/dev/vda3","type":"raw","bootname":null,"state":"booted"}}]}"#;

/// Slot B holds a newer install that the boot loader gave up on.
const ROLLED_BACK: &str = r#"{"compatible":"hashwatt-x86_64","booted":"A","boot_primary":"rootfs.0","slots":[{"rootfs.0":{"class":"rootfs","bootname":"A","state":"booted","boot_status":"good","slot_status":{"bundle":{"version":"0.1.0"},"installed":{"timestamp":"2026-12-01T10:00:00Z"}}}},{"rootfs.1":{"class":"rootfs","bootname":"B","state":"inactive","boot_status":"bad","slot_status":{"bundle":{"version":"0.3.0"},"installed":{"timestamp":"2026-12-03T09:00:00Z"}}}}]}"#;

/// The `rauc` wrapper: `status` prints status.json, `info` is the real
/// `rauc info` with the test's keyring, `install` records the file.
fn fake_rauc(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("status.json"), STATUS).unwrap();
    let script = dir.join("rauc");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nd='{}'\ncase \"$1\" in\n  status) cat \"$d/status.json\" ;;\n  info) exec rauc --keyring \"$d/cert.pem\" info \"$2\" ;;\n  install) echo \"$2\" >> \"$d/installed\" ;;\n  *) exit 2 ;;\nesac\n",
            dir.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn run(cmd: &mut Command) {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?}: {}", out(&o));
}

/// A self-signed signing key and certificate as `NAME.key.pem`, `NAME.pem`.
fn signing_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (key, cert) = (
        dir.join(format!("{name}.key.pem")),
        dir.join(format!("{name}.pem")),
    );
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "30",
            "-subj",
        ])
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    (key, cert)
}

/// A signed RAUC bundle with a 256 KiB root image.
fn bundle(
    dir: &Path,
    name: &str,
    compatible: &str,
    version: &str,
    format: &str,
    key: &(PathBuf, PathBuf),
) -> PathBuf {
    let content = dir.join(format!("{name}.d"));
    std::fs::create_dir_all(&content).unwrap();
    let root: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(content.join("root.img"), root).unwrap();
    std::fs::write(
        content.join("manifest.raucm"),
        format!("[update]\ncompatible={compatible}\nversion={version}\n\n[bundle]\nformat={format}\n\n[image.rootfs]\nfilename=root.img\n"),
    )
    .unwrap();
    let path = dir.join(name);
    run(Command::new("rauc")
        .arg("bundle")
        .arg("--cert")
        .arg(&key.1)
        .arg("--key")
        .arg(&key.0)
        .arg(&content)
        .arg(&path));
    path
}

fn hashwatt(rauc: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hashwatt"))
        .args(args)
        .env("HASHWATT_RAUC", rauc)
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn status_and_install_check_the_bundle_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rauc = fake_rauc(d);
    // SAFETY: the only test in this binary, and no thread has started yet.
    unsafe { std::env::set_var("HASHWATT_RAUC", &rauc) };
    let installed = || std::fs::read_to_string(d.join("installed")).unwrap_or_default();
    let ours = signing_key(d, "cert");
    let theirs = signing_key(d, "stranger");

    let o = hashwatt(&rauc, &["update", "status"]);
    assert!(o.status.success(), "{}", out(&o));
    let text = out(&o);
    assert!(text.contains("compatible: hashwatt-x86_64"), "{text}");
    assert!(text.contains("* rootfs.0  slot A  version 0.1.0"), "{text}");
    assert!(
        text.contains("  rootfs.1  slot B  version unknown"),
        "{text}"
    );
    assert!(!text.contains("verity.0"), "only root slots: {text}");
    assert!(!text.contains("rolled back"), "{text}");

    // A newer, compatible, signed bundle with an intact payload goes to RAUC.
    let good = bundle(d, "good.raucb", "hashwatt-x86_64", "0.2.0", "verity", &ours);
    let o = hashwatt(&rauc, &["update", "install", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("installed 0.2.0 into the inactive slot"),
        "{}",
        out(&o)
    );
    assert_eq!(installed().trim(), good.display().to_string());

    // Refused before anything is written.
    let bytes = std::fs::read(&good).unwrap();
    let mut flipped = bytes.clone();
    flipped[200] ^= 0x40; // in the payload: the signature still verifies
    let corrupt = d.join("corrupt.raucb");
    std::fs::write(&corrupt, flipped).unwrap();
    let truncated = d.join("truncated.raucb");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let junk = d.join("junk.raucb");
    std::fs::write(&junk, "not a bundle").unwrap();
    let cases = [
        (
            bundle(d, "old.raucb", "hashwatt-x86_64", "0.0.9", "verity", &ours),
            "downgrades are refused",
        ),
        (
            bundle(d, "arm.raucb", "hashwatt-arm64", "0.3.0", "verity", &ours),
            "built for \"hashwatt-arm64\"",
        ),
        (
            bundle(
                d,
                "stranger.raucb",
                "hashwatt-x86_64",
                "0.3.0",
                "verity",
                &theirs,
            ),
            "signature",
        ),
        (
            bundle(d, "plain.raucb", "hashwatt-x86_64", "0.3.0", "plain", &ours),
            "only verity bundles",
        ),
        (
            bundle(d, "nover.raucb", "hashwatt-x86_64", "soon", "verity", &ours),
            "is not a version",
        ),
        (corrupt, "do not match the signed hash"),
        (truncated, "bundle refused"),
        (junk, "bundle refused"),
    ];
    for (f, why) in &cases {
        let o = hashwatt(&rauc, &["update", "install", f.to_str().unwrap()]);
        let text = out(&o);
        assert!(!o.status.success(), "{} was accepted: {text}", f.display());
        assert!(
            text.contains("bundle refused, nothing written") && text.contains(why),
            "{}: {text}",
            f.display()
        );
    }
    assert_eq!(
        installed().lines().count(),
        1,
        "only the good bundle reached rauc install"
    );

    // A rolled-back update is reported with the recorded reason.
    std::fs::write(d.join("status.json"), ROLLED_BACK).unwrap();
    let state = d.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        hashwatt::update::boot_failures_path(&state),
        "2026-12-03T09:05:00Z\tslot B\tversion 0.3.0\thashwatt-b+1-2.conf\thashwatt kept failing at start\n",
    )
    .unwrap();
    let cfg = d.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = {:?}\n[[pools]]\nurl = \"stratum+tcp://127.0.0.1:3333\"\nuser = \"u\"\n",
            state
        ),
    )
    .unwrap();
    let o = hashwatt(
        &rauc,
        &["update", "status", "--config", cfg.to_str().unwrap()],
    );
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("rolled back: the update to 0.3.0 in slot B did not pass its trial boots")
            && text.contains("slot A (0.1.0) runs again")
            && text.contains("Last failure: 2026-12-03T09:05:00Z  slot B  version 0.3.0"),
        "{text}"
    );
    std::fs::write(d.join("status.json"), STATUS).unwrap();

    // Not on the image: a clear reason.
    let o = hashwatt(&d.join("no-such-rauc"), &["update", "status"]);
    assert!(!o.status.success());
    assert!(
        out(&o).contains("updates need the appliance image"),
        "{}",
        out(&o)
    );

    std::fs::remove_file(d.join("installed")).unwrap();
    let newer = bundle(
        d,
        "newer.raucb",
        "hashwatt-x86_64",
        "9.0.0",
        "verity",
        &ours,
    );
    let older = bundle(
        d,
        "older.raucb",
        "hashwatt-x86_64",
        "0.0.1",
        "verity",
        &ours,
    );
    the_rest_api_uploads_bundles_through_the_command_path(d, &newer, &older);
}

mod common;

/// The same checks through the REST API (what the panel's System page
/// uses): the slots, a good bundle installed, a downgrade refused with 400.
/// Called from the one test of this binary, whose first act is to set
/// `HASHWATT_RAUC` for the appliance in this process.
fn the_rest_api_uploads_bundles_through_the_command_path(dir: &Path, newer: &Path, older: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = common::devpool(0.01).await;
        let app = common::appliance_with(&[pool.local_addr()], 1, |c| {
            c.web.listen = Some("127.0.0.1:0".parse().unwrap());
        })
        .await;
        let token = app
            .web_auth()
            .unwrap()
            .create_token("test", hashwatt::web::auth::Scope::Admin, 0)
            .unwrap()
            .1;
        let base = format!("http://{}/api/v1/system/update", app.api_addr().unwrap());
        let auth = format!("Bearer {token}");
        let (status, slots) = {
            let (b, a) = (base.clone(), auth.clone());
            tokio::task::spawn_blocking(move || {
                let r = ureq::get(&b).set("Authorization", &a).call().unwrap();
                (r.status(), r.into_string().unwrap())
            })
            .await
            .unwrap()
        };
        assert_eq!(status, 200, "{slots}");
        let v: serde_json::Value = serde_json::from_str(&slots).unwrap();
        assert_eq!(v["booted"], "A");
        assert_eq!(v["slots"].as_array().unwrap().len(), 2, "{v}");
        let post = |file: &Path| {
            let (b, a) = (base.clone(), auth.clone());
            let body = std::fs::read(file).unwrap();
            tokio::task::spawn_blocking(move || {
                match ureq::post(&b)
                    .set("Authorization", &a)
                    .set("Content-Type", "application/octet-stream")
                    .send_bytes(&body)
                {
                    Ok(r) => (r.status(), r.into_string().unwrap()),
                    Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
                    Err(e) => panic!("{e}"),
                }
            })
        };
        let (code, body) = post(newer).await.unwrap();
        assert_eq!(code, 201, "{body}");
        assert!(
            body.contains("installed 9.0.0 into the inactive slot"),
            "{body}"
        );
        let (code, body) = post(older).await.unwrap();
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("downgrades are refused"), "{body}");
        let installed = std::fs::read_to_string(dir.join("installed")).unwrap();
        assert_eq!(
            installed.lines().count(),
            1,
            "only the good bundle was installed"
        );
        // The upload is not left on the data partition.
        let left: Vec<_> = std::fs::read_dir(app.handle().config().state_dir.join("update"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
        app.shutdown().await;
    });
}
