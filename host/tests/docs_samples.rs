//! The author docs under `docs/` are run, so they cannot rot: each page's
//! code blocks are played in order in an empty directory, with the real
//! `hashwatt` binary first on `PATH`.
//!
//! - ```` ```LANG file=PATH ```` writes the block to `PATH` (a crate's
//!   `src/lib.rs`, a series, settings);
//! - ```` ```sh ```` runs the block with `bash -eu`;
//! - ```` ```text output ```` lists lines the `sh` block before it must
//!   print (stdout and stderr, runs of spaces counted as one);
//! - a `toml` or `csv` block without `file=` must parse; a `rust` block
//!   must be a file (so it is compiled); other blocks are illustrations.
//!
//! Crates made by `hashwatt plugin new` get the workspace's lock file and
//! the template target directory, so the test builds with the versions CI
//! knows and compiles little on a second run.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};

/// One fenced block of a page.
#[derive(Debug)]
struct Block {
    /// First word of the info string (`sh`, `rust`, `text`…).
    lang: String,
    /// The rest of the info string (`file=…`, `output`).
    attrs: Vec<String>,
    /// Line of the page where the block starts.
    line: usize,
    text: String,
}

fn blocks(page: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for (event, range) in Parser::new(page).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                let mut words = info.split_whitespace().map(str::to_string);
                current = Some(Block {
                    lang: words.next().unwrap_or_default(),
                    attrs: words.collect(),
                    line: page[..range.start].lines().count() + 1,
                    text: String::new(),
                });
            }
            Event::Text(t) => {
                if let Some(b) = &mut current {
                    b.text.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => out.extend(current.take()),
            _ => {}
        }
    }
    out
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs a shell block in `dir`, killing whatever it started when it ends
/// or after `limit`; its combined output and whether it succeeded.
fn run_sh(script: &str, dir: &Path, bin: &Path, limit: Duration) -> (bool, String) {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .args(["-eu", "-c", &format!("exec 2>&1\n{script}")])
        .current_dir(dir)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", common::template_target_dir())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("bash starts");
    let pgid = child.id() as i32;
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let ok = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if start.elapsed() > limit {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Background processes (a devpool) end with the block.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
    let mut out = reader.join().unwrap_or_default();
    if start.elapsed() > limit {
        out.push_str(&format!("\n[killed after {} s]", limit.as_secs()));
    }
    (ok, out)
}

/// Gives crates `plugin new` made the workspace's lock file.
fn lock_new_crates(dir: &Path) {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.join("Cargo.toml").exists() && !p.join("Cargo.lock").exists() {
            std::fs::copy(&lock, p.join("Cargo.lock")).unwrap();
        }
    }
}

fn play(page: &Path, bin: &Path) {
    let name = page.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(page).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut last: Option<(usize, String)> = None;
    let started = Instant::now();
    let mut ran = 0;
    for b in blocks(&text) {
        let at = format!("{name}:{}", b.line);
        let file = b.attrs.iter().find_map(|a| a.strip_prefix("file="));
        if let Some(file) = file {
            assert!(
                !file.starts_with('/') && !file.split('/').any(|c| c == ".."),
                "{at}: file= must be a relative path inside the directory"
            );
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &b.text).unwrap();
            continue;
        }
        match (b.lang.as_str(), b.attrs.first().map(String::as_str)) {
            ("sh", _) => {
                let t = Instant::now();
                let (ok, out) = run_sh(&b.text, dir.path(), bin, Duration::from_secs(900));
                lock_new_crates(dir.path());
                assert!(
                    ok,
                    "{at}: the block failed:\n{}\n--- its output:\n{out}",
                    b.text
                );
                eprintln!("{at}: ran in {:.1} s", t.elapsed().as_secs_f64());
                last = Some((b.line, out));
                ran += 1;
            }
            ("text", Some("output")) => {
                let (line, out) = last
                    .take()
                    .unwrap_or_else(|| panic!("{at}: an output block must follow a sh block"));
                let got = squash(&out);
                for want in b.text.lines().map(squash).filter(|l| !l.is_empty()) {
                    assert!(
                        got.contains(&want),
                        "{at}: the block at line {line} did not print {want:?}; it printed:\n{out}"
                    );
                }
            }
            ("rust", _) => panic!("{at}: a rust sample must be a file= block, so it is compiled"),
            ("toml", _) => {
                if let Err(e) = b.text.parse::<toml::Table>() {
                    panic!("{at}: not valid TOML: {e}");
                }
            }
            ("csv", _) => {
                if let Err(e) = hashwatt::policy::backtest::Series::parse(&b.text, "UTC") {
                    panic!("{at}: not a valid series: {e}");
                }
            }
            _ => {}
        }
    }
    eprintln!(
        "{name}: {ran} shell blocks in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The real binary under the name the docs use.
fn bin_dir() -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_hashwatt"), dir.join("hashwatt")).unwrap();
    dir
}

#[test]
fn every_sample_in_the_author_docs_runs() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&docs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    assert!(pages.len() >= 4, "{pages:?}");
    let bin = bin_dir();
    for page in &pages {
        play(page, &bin);
    }
}

#[test]
fn the_runner_catches_a_wrong_sample() {
    let bin = bin_dir();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("wrong.md");
    std::fs::write(
        &page,
        "```sh\nhashwatt plugin keygen --out k.key\n```\n\n```text output\nno such line\n```\n",
    )
    .unwrap();
    let err = std::panic::catch_unwind(|| play(&page, &bin)).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("did not print \"no such line\""), "{msg}");
    std::fs::write(&page, "```sh\nhashwatt no-such-command\n```\n").unwrap();
    let err = std::panic::catch_unwind(|| play(&page, &bin)).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("the block failed"), "{msg}");
}
