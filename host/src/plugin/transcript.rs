//! Pool session transcripts: what a pool plugin was given (connection
//! events, pool bytes, ticks, shares, with their times) and what it
//! answered, one JSON object per line. `hashwatt run --record DIR` writes
//! one per plugin instance; `hashwatt plugin test PLUGIN --transcript FILE`
//! feeds the inputs to a fresh instance offline and shows where its
//! actions differ — a real pool session becomes a regression test.
//!
//! The password is never written: the session line holds
//! [`REDACTED`] instead (an empty one stays empty), and wherever the plugin sent it (as a JSON string,
//! or verbatim when six characters or longer) the recorded bytes say
//! [`REDACTED`] too. A replay configures the plugin with that placeholder,
//! so a plugin that sends its password reproduces the redacted bytes.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::PluginError;
use super::pool::{CallOutput, LogLevel, PoolAction, PoolConfig, PoolPluginPre, ShareSubmission};

/// What stands in for the password.
pub const REDACTED: &str = "<redacted>";
/// Longest transcript replayed, bytes.
pub const MAX_TRANSCRIPT_BYTES: u64 = 256 << 20;

/// One line of a transcript.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// The first line: the pool as the plugin was told about it.
    Session {
        /// Plugin name, for the reader.
        plugin: String,
        /// Configured URL.
        url: String,
        /// Host part.
        host: String,
        /// Port part.
        port: u16,
        /// Worker name.
        user: String,
        /// Always [`REDACTED`] when recorded.
        password: String,
        /// User agent announced.
        user_agent: String,
        /// Whether the host could roll versions.
        version_rolling: bool,
        /// The pool's settings table.
        settings: serde_json::Map<String, serde_json::Value>,
    },
    /// A connection opened at `t` (ms on the session clock).
    Connected {
        /// Time, ms.
        t: u64,
    },
    /// Pool bytes arrived: `text` when UTF-8, else `hex`.
    Received {
        /// Time, ms.
        t: u64,
        /// The bytes as text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// The bytes in hex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hex: Option<String>,
    },
    /// The plugin's requested wake-up.
    Tick {
        /// Time, ms.
        t: u64,
    },
    /// The host found a share.
    Share {
        /// Time, ms.
        t: u64,
        /// Host-chosen id.
        id: u64,
        /// Job id.
        job_id: String,
        /// Extranonce2, hex.
        extranonce2: String,
        /// ntime.
        ntime: u32,
        /// Nonce.
        nonce: u32,
        /// Header version.
        version: u32,
    },
    /// The connection closed.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// What the plugin answered to the input on the line before.
    Out {
        /// Actions, rendered one per string (see [`render`]).
        actions: Vec<String>,
        /// The call failed (trap, limit) with this error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// Errors reading or replaying a transcript.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// Reading failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a transcript entry.
    #[error("transcript line {line}: {reason}")]
    Syntax {
        /// Line number, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The plugin could not be started with the recorded session.
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

fn redact(s: &str, password: &str) -> String {
    if password.is_empty() || password == REDACTED {
        return s.to_string();
    }
    let quoted = serde_json::to_string(password).unwrap_or_default();
    let mut out = s.replace(&quoted, &format!("\"{REDACTED}\""));
    if password.len() >= 6 {
        out = out.replace(password, REDACTED);
    }
    out
}

/// One action as a line a reader can diff.
pub fn render(action: &PoolAction, password: &str) -> String {
    match action {
        PoolAction::Send(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => format!("send {:?}", redact(text, password)),
            Err(_) => format!("send hex:{}", hex::encode(bytes)),
        },
        PoolAction::NewJob(job) => {
            // The coinbase and merkle root with an all-zero extranonce2 stand
            // for every part of the work (coinbase halves, extranonce1,
            // branches) in two fields.
            let en2 = vec![0u8; job.extranonce2_size()];
            let coinbase = job.coinbase(&en2).map(hex::encode).unwrap_or_default();
            let root = job.merkle_root(&en2).map(hex::encode).unwrap_or_default();
            format!(
                "new_job id={:?} clean={} version={:08x} mask={:08x} nbits={:08x} ntime={:08x} prev={} en2_size={} coinbase={coinbase} merkle_root={root}",
                job.id(),
                job.clean(),
                job.version(),
                job.version_mask(),
                job.nbits(),
                job.ntime(),
                hex::encode(job.prev_hash()),
                job.extranonce2_size()
            )
        }
        PoolAction::SetShareTarget(t) => {
            format!(
                "share_target {} (difficulty {})",
                hex::encode(t.as_be_bytes()),
                t.difficulty()
            )
        }
        PoolAction::ShareResult { id, outcome } => match outcome {
            Ok(()) => format!("share_result id={id} accepted"),
            Err(reason) => format!("share_result id={id} rejected: {reason}"),
        },
        PoolAction::Reconnect { host, port, after } => {
            format!("reconnect {host}:{port} after {} ms", after.as_millis())
        }
        PoolAction::Log { level, message } => {
            let level = match level {
                LogLevel::Trace => "trace",
                LogLevel::Debug => "debug",
                LogLevel::Info => "info",
                LogLevel::Warn => "warn",
                LogLevel::Error => "error",
            };
            format!("log {level}: {}", redact(message, password))
        }
        PoolAction::Fail(reason) => format!("fail: {}", redact(reason, password)),
        PoolAction::Session(info) => format!("session {}", redact(&info.to_string(), password)),
    }
}

fn out_entry(result: &Result<CallOutput, PluginError>, password: &str) -> Entry {
    match result {
        Ok(out) => {
            let mut actions: Vec<String> =
                out.actions.iter().map(|a| render(a, password)).collect();
            actions.extend(out.rejected.iter().map(|r| format!("refused: {r}")));
            if let Some(at) = out.wake_at_ms {
                actions.push(format!("wake_at {at}"));
            }
            Entry::Out {
                actions,
                error: None,
            }
        }
        Err(e) => Entry::Out {
            actions: Vec::new(),
            error: Some(e.to_string()),
        },
    }
}

fn received(t: u64, bytes: &[u8], password: &str) -> Entry {
    match std::str::from_utf8(bytes) {
        Ok(text) => Entry::Received {
            t,
            text: Some(redact(text, password)),
            hex: None,
        },
        Err(_) => Entry::Received {
            t,
            text: None,
            hex: Some(hex::encode(bytes)),
        },
    }
}

fn share(t: u64, s: &ShareSubmission) -> Entry {
    Entry::Share {
        t,
        id: s.id,
        job_id: s.job_id.clone(),
        extranonce2: hex::encode(&s.extranonce2),
        ntime: s.ntime,
        nonce: s.nonce,
        version: s.version,
    }
}

/// Writes one plugin instance's transcript, a line per input and answer,
/// flushed after each so a crash loses at most the call in progress.
pub struct Recorder {
    out: Option<BufWriter<File>>,
    path: PathBuf,
    password: String,
}

impl Recorder {
    /// Creates `dir/<pool>-<unix ms>.jsonl` with the session line.
    pub fn create(
        dir: &Path,
        pool: &str,
        plugin: &str,
        config: &PoolConfig,
    ) -> std::io::Result<Recorder> {
        std::fs::create_dir_all(dir)?;
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let safe: String = pool
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = dir.join(format!("{safe}-{ms}.jsonl"));
        let file = File::options().write(true).create_new(true).open(&path)?;
        let mut r = Recorder {
            out: Some(BufWriter::new(file)),
            path,
            password: config.password.clone(),
        };
        r.write(&Entry::Session {
            plugin: plugin.to_string(),
            url: config.url.clone(),
            host: config.host.clone(),
            port: config.port,
            user: config.user.clone(),
            // An empty password stays empty: there is nothing to hide, and
            // a replay must send what the plugin sent.
            password: if config.password.is_empty() {
                String::new()
            } else {
                REDACTED.to_string()
            },
            user_agent: config.user_agent.clone(),
            version_rolling: config.version_rolling,
            settings: config.settings.clone(),
        });
        Ok(r)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, entry: &Entry) {
        let Some(out) = self.out.as_mut() else { return };
        let ok = serde_json::to_writer(&mut *out, entry).is_ok()
            && out.write_all(b"\n").is_ok()
            && out.flush().is_ok();
        if !ok {
            tracing::warn!(path = %self.path.display(), "cannot write the transcript; recording stops");
            self.out = None;
        }
    }

    pub(crate) fn connected(&mut self, t: u64) {
        self.write(&Entry::Connected { t });
    }

    pub(crate) fn received(&mut self, t: u64, bytes: &[u8]) {
        let e = received(t, bytes, &self.password);
        self.write(&e);
    }

    pub(crate) fn tick(&mut self, t: u64) {
        self.write(&Entry::Tick { t });
    }

    pub(crate) fn share(&mut self, t: u64, s: &ShareSubmission) {
        self.write(&share(t, s));
    }

    pub(crate) fn disconnected(&mut self, reason: &str) {
        self.write(&Entry::Disconnected {
            reason: reason.to_string(),
        });
    }

    pub(crate) fn answered(&mut self, result: &Result<CallOutput, PluginError>) {
        let e = out_entry(result, &self.password);
        self.write(&e);
    }
}

/// One call whose answer differs from the recorded one.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// Line of the input in the transcript.
    pub line: usize,
    /// The input, briefly ("received at 1234 ms").
    pub input: String,
    /// Recorded answer.
    pub expected: Entry,
    /// The replayed plugin's answer.
    pub actual: Entry,
}

/// What a replay found.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Calls replayed.
    pub calls: usize,
    /// Calls whose answers differ.
    pub differences: Vec<Difference>,
}

fn parse(text: &str) -> Result<Vec<(usize, Entry)>, TranscriptError> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry: Entry = serde_json::from_str(line).map_err(|e| TranscriptError::Syntax {
            line: i + 1,
            reason: e.to_string(),
        })?;
        entries.push((i + 1, entry));
    }
    Ok(entries)
}

/// Reads a transcript file (at most [`MAX_TRANSCRIPT_BYTES`]).
pub fn read(path: &Path) -> Result<String, TranscriptError> {
    let io = |source| TranscriptError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_TRANSCRIPT_BYTES {
        return Err(TranscriptError::Syntax {
            line: 0,
            reason: format!("{len} bytes (at most {MAX_TRANSCRIPT_BYTES})"),
        });
    }
    std::fs::read_to_string(path).map_err(io)
}

/// Feeds the transcript's inputs to a fresh instance of `pre` and compares
/// every answer with the recorded one.
pub fn replay(
    pre: &PoolPluginPre,
    text: &str,
    limits: super::Limits,
) -> Result<Replay, TranscriptError> {
    let entries = parse(text)?;
    let Some((
        _,
        Entry::Session {
            url,
            host,
            port,
            user,
            password,
            user_agent,
            version_rolling,
            settings,
            ..
        },
    )) = entries.first().cloned()
    else {
        return Err(TranscriptError::Syntax {
            line: 1,
            reason: "the first line must be the session".into(),
        });
    };
    let config = PoolConfig {
        url,
        host,
        port,
        user,
        password: password.clone(),
        user_agent,
        version_rolling,
        settings,
    };
    let mut plugin = pre.instantiate(&config, limits)?;
    let mut replay = Replay::default();
    let mut i = 1;
    while i < entries.len() {
        let (line, input) = &entries[i];
        let syntax = |reason: String| TranscriptError::Syntax {
            line: *line,
            reason,
        };
        let (what, result) = match input {
            Entry::Connected { t } => (format!("connected at {t} ms"), plugin.connected(*t)),
            Entry::Received { t, text, hex } => {
                let bytes = match (text, hex) {
                    (Some(s), None) => s.as_bytes().to_vec(),
                    (None, Some(h)) => hex::decode(h).map_err(|e| syntax(e.to_string()))?,
                    _ => return Err(syntax("received needs text or hex".into())),
                };
                (format!("received at {t} ms"), plugin.received(*t, &bytes))
            }
            Entry::Tick { t } => (format!("tick at {t} ms"), plugin.tick(*t)),
            Entry::Share {
                t,
                id,
                job_id,
                extranonce2,
                ntime,
                nonce,
                version,
            } => {
                let s = ShareSubmission {
                    id: *id,
                    job_id: job_id.clone(),
                    extranonce2: hex::decode(extranonce2).map_err(|e| syntax(e.to_string()))?,
                    ntime: *ntime,
                    nonce: *nonce,
                    version: *version,
                };
                (format!("share {id} at {t} ms"), plugin.share_found(*t, &s))
            }
            Entry::Disconnected { reason } => {
                let _ = plugin.disconnected(reason);
                i += 1;
                continue;
            }
            Entry::Session { .. } => return Err(syntax("a second session line".into())),
            Entry::Out { .. } => return Err(syntax("an answer without an input".into())),
        };
        replay.calls += 1;
        let actual = out_entry(&result, &password);
        let expected = match entries.get(i + 1) {
            Some((_, e @ Entry::Out { .. })) => {
                i += 2;
                e.clone()
            }
            // The recording stopped mid-call (crash, kill): nothing to compare.
            _ => break,
        };
        if actual != expected {
            replay.differences.push(Difference {
                line: *line,
                input: what,
                expected,
                actual,
            });
        }
    }
    Ok(replay)
}

impl Replay {
    /// The readable report: identical, or each differing call as a diff of
    /// its recorded (`-`) and replayed (`+`) actions, equal ones unmarked.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if self.differences.is_empty() {
            let _ = writeln!(s, "{} calls replayed: every answer identical", self.calls);
            return s;
        }
        let _ = writeln!(
            s,
            "{} calls replayed: {} answered differently",
            self.calls,
            self.differences.len()
        );
        for d in &self.differences {
            let _ = writeln!(s, "\nline {}: {}", d.line, d.input);
            let lines = |e: &Entry| -> Vec<String> {
                match e {
                    Entry::Out { actions, error } => actions
                        .iter()
                        .cloned()
                        .chain(error.iter().map(|e| format!("error: {e}")))
                        .collect(),
                    _ => Vec::new(),
                }
            };
            let (want, got) = (lines(&d.expected), lines(&d.actual));
            let want: Vec<&str> = want.iter().map(String::as_str).collect();
            let got: Vec<&str> = got.iter().map(String::as_str).collect();
            // A line diff (Myers): an inserted action shows as one `+`,
            // not as every later action differing.
            for change in similar::TextDiff::from_slices(&want, &got).iter_all_changes() {
                let sign = match change.tag() {
                    similar::ChangeTag::Equal => ' ',
                    similar::ChangeTag::Delete => '-',
                    similar::ChangeTag::Insert => '+',
                };
                let _ = writeln!(s, "  {sign} {}", change.value());
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_as_json_strings_and_long_ones_anywhere() {
        let sent = r#"{"params":["w","x"],"method":"mining.authorize"}"#;
        assert_eq!(
            redact(sent, "x"),
            r#"{"params":["w","<redacted>"],"method":"mining.authorize"}"#
        );
        assert_eq!(redact("extranonce x", "x"), "extranonce x");
        assert_eq!(redact("pw=hunter22;", "hunter22"), "pw=<redacted>;");
        assert_eq!(redact("abc", ""), "abc");
    }

    #[test]
    fn an_inserted_action_shows_as_one_plus_line() {
        let out = |actions: &[&str]| Entry::Out {
            actions: actions.iter().map(|a| a.to_string()).collect(),
            error: None,
        };
        let replay = Replay {
            calls: 1,
            differences: vec![Difference {
                line: 2,
                input: "connected at 0 ms".into(),
                expected: out(&["send a", "send b", "wake_at 5"]),
                actual: out(&["send x", "send a", "send b", "wake_at 5"]),
            }],
        };
        let text = replay.render();
        assert!(text.contains("line 2: connected at 0 ms"), "{text}");
        assert!(
            text.contains("  + send x\n    send a\n    send b\n    wake_at 5\n"),
            "{text}"
        );
        assert!(!text.contains("  - "), "{text}");
    }

    #[test]
    fn entries_round_trip_as_one_line_each() {
        let e = Entry::Received {
            t: 5,
            text: Some("{\"id\":1}\n".into()),
            hex: None,
        };
        let line = serde_json::to_string(&e).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Entry>(&line).unwrap(), e);
        assert!(parse("{\"nope\":1}\n").is_err());
    }
}
