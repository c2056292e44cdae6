//! The `hashwatt` binary as an operator uses it.

use std::process::{Command, Output};

const BLOCK_125552: &str = "0100000081cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000e320b6c2fffc8d750423db8b1eb942ae710e951ed797f7affc8892b0f1fc122bc7f5d74df2b9441a42a14695";

fn hashwatt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hashwatt"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn hash_header_prints_block_125552_hash() {
    let out = hashwatt(&["hash", "header", BLOCK_125552]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d"
    );
}

#[test]
fn hash_scan_finds_the_block_nonce() {
    // The real nonce 0x9546a142; the target is the block's own hash, so it is
    // the only nonce in the range that meets it.
    let start = (0x9546a142u32 - 1000).to_string();
    let target = "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d";
    for backend in [None, Some("scalar")] {
        let mut args = vec![
            "hash",
            "scan",
            "--header",
            BLOCK_125552,
            "--start",
            &start,
            "--count",
            "5000",
            "--target",
            target,
        ];
        if let Some(b) = backend {
            args.extend(["--backend", b]);
        }
        let out = hashwatt(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "9546a142", "backend {backend:?}");
    }
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let out = hashwatt(&["hash", "header", "zz"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not valid hex"), "{}", stderr(&out));
    let out = hashwatt(&["hash", "header", "00"]);
    assert!(
        stderr(&out).contains("must be 80 bytes"),
        "{}",
        stderr(&out)
    );
    let out = hashwatt(&[
        "hash",
        "scan",
        "--header",
        BLOCK_125552,
        "--start",
        "4294967295",
        "--count",
        "2",
        "--target",
        &"f".repeat(64),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("runs past the last nonce"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"));
}

#[test]
fn bad_config_exits_2_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hashwatt.toml");
    std::fs::write(
        &path,
        "threads = 1\n\n[[pools]]\nurl = \"stratum+tcp://pool.example.com\"\nuser = \"w\"\n",
    )
    .unwrap();
    let out = hashwatt(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:4", path.display())), "{err}");
    assert!(
        err.contains("pools[0].url") && err.contains("no port"),
        "{err}"
    );

    let out = hashwatt(&[
        "run",
        "--config",
        dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read config file"),
        "{}",
        stderr(&out)
    );
}
