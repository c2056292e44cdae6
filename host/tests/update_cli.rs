//! `hashwatt update` against a stand-in for RAUC (a script at
//! `HASHWATT_RAUC` that answers as `rauc` does and records installs): the
//! bundle is checked before anything is written.

use std::path::Path;
use std::process::{Command, Output};

const STATUS: &str = r#"{"compatible":"hashwatt-x86_64","variant":"","booted":"A","boot_primary":"rootfs.0","slots":[{"rootfs.0":{"class":"rootfs","device":"/dev/vda2","type":"raw","bootname":"A","state":"booted","parent":null,"mountpoint":"/","boot_status":"good","slot_status":{"bundle":{"compatible":"hashwatt-x86_64","version":"0.1.0"},"status":"ok"}}},{"rootfs.1":{"class":"rootfs","device":"/dev/vda3","type":"raw","bootname":"B","state":"inactive","parent":null,"mountpoint":null,"boot_status":"bad"}},{"efi.0":{"class":"efi","device":"/dev/vda1","type":"vfat","bootname":null,"state":"inactive"}}]}"#;

/// A stand-in `rauc`: `status` prints STATUS, `info` prints the bundle
/// file (or fails like a bad signature), `install` records the file.
fn fake_rauc(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("status.json"), STATUS).unwrap();
    let script = dir.join("rauc");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nd='{}'\ncase \"$1\" in\n  status) cat \"$d/status.json\" ;;\n  info) f=\"$3\"; if grep -q corrupt \"$f\"; then echo 'signature verification failed: bad signature' >&2; exit 1; fi; cat \"$f\" ;;\n  install) echo \"$2\" >> \"$d/installed\" ;;\n  *) exit 2 ;;\nesac\n",
            dir.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
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
    let rauc = fake_rauc(dir.path());
    // SAFETY: the only test in this binary, and no thread has started yet.
    unsafe { std::env::set_var("HASHWATT_RAUC", &rauc) };
    let installed = || std::fs::read_to_string(dir.path().join("installed")).unwrap_or_default();

    let o = hashwatt(&rauc, &["update", "status"]);
    assert!(o.status.success(), "{}", out(&o));
    let text = out(&o);
    assert!(text.contains("compatible: hashwatt-x86_64"), "{text}");
    assert!(text.contains("* rootfs.0  slot A  version 0.1.0"), "{text}");
    assert!(
        text.contains("  rootfs.1  slot B  version unknown"),
        "{text}"
    );
    assert!(!text.contains("efi.0"), "only root slots: {text}");

    let bundle = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    // A newer, compatible, signed bundle goes to RAUC.
    let good = bundle(
        "good.raucb",
        r#"{"compatible":"hashwatt-x86_64","version":"0.2.0"}"#,
    );
    let o = hashwatt(&rauc, &["update", "install", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("installed 0.2.0 into the inactive slot"),
        "{}",
        out(&o)
    );
    assert_eq!(installed().trim(), good.display().to_string());

    // Refused before anything is written: older, foreign, unsigned, garbage.
    for (name, body, why) in [
        (
            "old.raucb",
            r#"{"compatible":"hashwatt-x86_64","version":"0.0.9"}"#,
            "downgrades are refused",
        ),
        (
            "arm.raucb",
            r#"{"compatible":"hashwatt-arm64","version":"0.3.0"}"#,
            "built for \"hashwatt-arm64\"",
        ),
        ("bad.raucb", "corrupt", "signature verification failed"),
        ("junk.raucb", "not json", "unreadable bundle information"),
        (
            "nover.raucb",
            r#"{"compatible":"hashwatt-x86_64","version":"soon"}"#,
            "is not a version",
        ),
    ] {
        let f = bundle(name, body);
        let o = hashwatt(&rauc, &["update", "install", f.to_str().unwrap()]);
        assert!(!o.status.success(), "{name} was accepted");
        let text = out(&o);
        assert!(
            text.contains("bundle refused, nothing written") && text.contains(why),
            "{name}: {text}"
        );
    }
    assert_eq!(
        installed().lines().count(),
        1,
        "only the good bundle reached rauc install"
    );

    // Not on the image: a clear reason.
    let o = hashwatt(&dir.path().join("no-such-rauc"), &["update", "status"]);
    assert!(!o.status.success());
    assert!(
        out(&o).contains("updates need the appliance image"),
        "{}",
        out(&o)
    );

    std::fs::remove_file(dir.path().join("installed")).unwrap();
    the_rest_api_uploads_bundles_through_the_command_path(dir.path());
}

mod common;

/// The same checks through the REST API (what the panel's System page
/// uses): the slots, a good bundle installed, a downgrade refused with 400.
/// Called from the one test of this binary, whose first act is to set
/// `HASHWATT_RAUC` for the appliance in this process.
fn the_rest_api_uploads_bundles_through_the_command_path(dir: &Path) {
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
        let post = |body: &'static str| {
            let (b, a) = (base.clone(), auth.clone());
            tokio::task::spawn_blocking(move || {
                match ureq::post(&b)
                    .set("Authorization", &a)
                    .set("Content-Type", "application/octet-stream")
                    .send_bytes(body.as_bytes())
                {
                    Ok(r) => (r.status(), r.into_string().unwrap()),
                    Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
                    Err(e) => panic!("{e}"),
                }
            })
        };
        let (code, body) = post(r#"{"compatible":"hashwatt-x86_64","version":"9.0.0"}"#)
            .await
            .unwrap();
        assert_eq!(code, 201, "{body}");
        assert!(
            body.contains("installed 9.0.0 into the inactive slot"),
            "{body}"
        );
        let (code, body) = post(r#"{"compatible":"hashwatt-x86_64","version":"0.0.1"}"#)
            .await
            .unwrap();
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
