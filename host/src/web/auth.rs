//! Who may use the panel and the API: one admin account whose password is
//! set on first start (guarded by a one-time setup token printed on the
//! console), browser sessions with a CSRF token each, bearer API tokens
//! with a read-only or admin scope, and login attempts rate-limited per
//! client.
//!
//! Passwords are stored as argon2id hashes; API tokens as SHA-256 of
//! their 256 random bits (no slow hash is needed for that much entropy).
//! The file (`<state_dir>/web/auth.json`, mode 0600) is rewritten
//! atomically, so a power cut leaves the old or the new accounts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ratelimit::TokenBucket;

/// The one account's name.
pub const ADMIN: &str = "admin";

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Longest password accepted (argon2 takes any length; this bounds work).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Most API tokens kept.
pub const MAX_TOKENS: usize = 64;

/// Most browser sessions at once; the least recently used goes first.
const MAX_SESSIONS: usize = 64;

/// A session unused this long ends.
const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);

/// Login attempts per client: a burst of 5, then one every 12 s.
const LOGIN_BURST: f64 = 5.0;
const LOGIN_RATE: f64 = 1.0 / 12.0;

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read everything, change nothing.
    Read,
    /// Read and change everything.
    Admin,
}

/// Who is calling, as established from a cookie or a bearer token.
#[derive(Clone, Debug)]
pub struct Principal {
    /// What they may do.
    pub scope: Scope,
    /// The session's CSRF token; `None` for bearer tokens (not sent by
    /// browsers on their own, so not forgeable cross-site).
    pub csrf: Option<String>,
    /// The session id, for logout.
    pub session: Option<String>,
}

/// A new browser session.
#[derive(Clone, Debug)]
pub struct Issued {
    /// Cookie value.
    pub id: String,
    /// CSRF token the panel sends back in `X-CSRF-Token`.
    pub csrf: String,
}

/// An API token as listed (never its secret).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Identifier for revoking.
    pub id: String,
    /// The operator's label.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// When it was made, UTC ms.
    pub created_ms: i64,
}

/// Why an authentication step was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong setup token, user or password.
    #[error("{0}")]
    Denied(&'static str),
    /// Too many attempts from this client.
    #[error("too many login attempts; try again in {0} s")]
    Limited(u64),
    /// Bad input (password too short, name too long…).
    #[error("{0}")]
    Invalid(String),
    /// Setup was done already, or not yet.
    #[error("{0}")]
    State(&'static str),
    /// The accounts file could not be written.
    #[error("cannot save the accounts: {0}")]
    Io(String),
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Stored {
    /// argon2id PHC string of the admin password.
    admin_hash: Option<String>,
    tokens: Vec<StoredToken>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredToken {
    #[serde(flatten)]
    info: TokenInfo,
    /// SHA-256 of the token, hex.
    sha256: String,
}

struct Session {
    csrf: String,
    last_used: Instant,
}

/// The accounts, sessions and login limits of one appliance.
pub struct Auth {
    path: Option<PathBuf>,
    stored: Mutex<Stored>,
    setup_token: Mutex<Option<String>>,
    sessions: Mutex<HashMap<String, Session>>,
    logins: Mutex<HashMap<IpAddr, TokenBucket>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Equal-time comparison, so a token is not guessed byte by byte.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let salt = SaltString::encode_b64(&bytes)
        .map_err(|e| AuthError::Invalid(format!("cannot make a salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Invalid(format!("cannot hash the password: {e}")))
}

fn check_password_rules(password: &str) -> Result<(), AuthError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AuthError::Invalid(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::Invalid(format!(
            "the password must have at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

impl Auth {
    /// Loads the accounts from `<state_dir>/web/auth.json` (none: first
    /// start, with a fresh setup token). `None` keeps them in memory only.
    pub fn load(state_dir: Option<&Path>) -> anyhow::Result<Auth> {
        let path = state_dir.map(|d| d.join("web").join("auth.json"));
        let stored = match &path {
            Some(p) => match std::fs::read(p) {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                    anyhow::anyhow!(
                        "{} is damaged ({e}); move it away to set a new admin password",
                        p.display()
                    )
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
                Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", p.display())),
            },
            None => Stored::default(),
        };
        let setup_token = stored.admin_hash.is_none().then(|| random_hex(16));
        Ok(Auth {
            path,
            stored: Mutex::new(stored),
            setup_token: Mutex::new(setup_token),
            sessions: Mutex::new(HashMap::new()),
            logins: Mutex::new(HashMap::new()),
        })
    }

    /// The one-time setup token while no admin password is set.
    pub fn setup_token(&self) -> Option<String> {
        lock(&self.setup_token).clone()
    }

    /// Whether the admin password still has to be set.
    pub fn needs_setup(&self) -> bool {
        lock(&self.stored).admin_hash.is_none()
    }

    fn save(&self, stored: &Stored) -> Result<(), AuthError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| AuthError::Io(e.to_string()))?;
        let bytes = serde_json::to_vec_pretty(stored).map_err(|e| AuthError::Io(e.to_string()))?;
        hashwatt_state::atomic_write_with_mode(path, &bytes, 0o600)
            .map_err(|e| AuthError::Io(format!("{}: {e}", path.display())))
    }

    /// Sets the admin password with the setup token (once), and opens a session.
    pub fn setup(&self, token: &str, password: &str) -> Result<Issued, AuthError> {
        check_password_rules(password)?;
        let mut setup = lock(&self.setup_token);
        let Some(expected) = setup.as_deref() else {
            return Err(AuthError::State(
                "the admin password is set already; log in instead",
            ));
        };
        if !same(expected.as_bytes(), token.trim().as_bytes()) {
            return Err(AuthError::Denied("wrong setup token"));
        }
        let hash = hash_password(password)?;
        let mut stored = lock(&self.stored).clone();
        stored.admin_hash = Some(hash);
        self.save(&stored)?;
        *lock(&self.stored) = stored;
        *setup = None;
        tracing::info!("admin password set; the setup token is used up");
        Ok(self.open_session())
    }

    fn open_session(&self) -> Issued {
        let issued = Issued {
            id: random_hex(32),
            csrf: random_hex(32),
        };
        let mut sessions = lock(&self.sessions);
        let now = Instant::now();
        sessions.retain(|_, s| now.duration_since(s.last_used) < SESSION_IDLE);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            issued.id.clone(),
            Session {
                csrf: issued.csrf.clone(),
                last_used: now,
            },
        );
        issued
    }

    /// Takes one login attempt from `client`, or says how long to wait.
    pub fn attempt(&self, client: IpAddr, now: Instant) -> Result<(), AuthError> {
        let mut logins = lock(&self.logins);
        if logins.len() > 10_000 {
            logins.clear();
        }
        logins
            .entry(client)
            .or_insert_with(|| TokenBucket::new(LOGIN_RATE, LOGIN_BURST))
            .take(now)
            .map_err(|wait| AuthError::Limited(wait.as_secs().max(1)))
    }

    /// Checks the admin's password (slow: argon2id).
    pub fn verify_password(&self, password: &str) -> bool {
        let Some(hash) = lock(&self.stored).admin_hash.clone() else {
            return false;
        };
        if password.len() > MAX_PASSWORD_BYTES {
            return false;
        }
        PasswordHash::new(&hash).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
    }

    /// Logs in (after [`Auth::attempt`] allowed the try).
    pub fn login(&self, user: &str, password: &str) -> Result<Issued, AuthError> {
        if self.needs_setup() {
            return Err(AuthError::State(
                "no admin password is set yet: finish the setup first",
            ));
        }
        // Check the password even for a wrong user name, so both take as long.
        let ok = self.verify_password(password);
        if !ok || user != ADMIN {
            return Err(AuthError::Denied("wrong user name or password"));
        }
        Ok(self.open_session())
    }

    /// The session behind a cookie value.
    pub fn session(&self, id: &str) -> Option<Principal> {
        let mut sessions = lock(&self.sessions);
        let now = Instant::now();
        let s = sessions.get_mut(id)?;
        if now.duration_since(s.last_used) >= SESSION_IDLE {
            sessions.remove(id);
            return None;
        }
        s.last_used = now;
        Some(Principal {
            scope: Scope::Admin,
            csrf: Some(s.csrf.clone()),
            session: Some(id.to_string()),
        })
    }

    /// Ends a session.
    pub fn logout(&self, id: &str) {
        lock(&self.sessions).remove(id);
    }

    /// The API token's principal.
    pub fn bearer(&self, token: &str) -> Option<Principal> {
        let digest = sha256_hex(token.trim());
        let stored = lock(&self.stored);
        stored
            .tokens
            .iter()
            .find(|t| same(t.sha256.as_bytes(), digest.as_bytes()))
            .map(|t| Principal {
                scope: t.info.scope,
                csrf: None,
                session: None,
            })
    }

    /// Changes the admin password; every other session ends.
    pub fn change_password(
        &self,
        current: &str,
        new: &str,
        keep_session: Option<&str>,
    ) -> Result<(), AuthError> {
        if !self.verify_password(current) {
            return Err(AuthError::Denied("the current password is wrong"));
        }
        check_password_rules(new)?;
        let hash = hash_password(new)?;
        let mut stored = lock(&self.stored).clone();
        stored.admin_hash = Some(hash);
        self.save(&stored)?;
        *lock(&self.stored) = stored;
        lock(&self.sessions).retain(|id, _| Some(id.as_str()) == keep_session);
        tracing::info!("admin password changed; other sessions ended");
        Ok(())
    }

    /// The API tokens.
    pub fn tokens(&self) -> Vec<TokenInfo> {
        lock(&self.stored)
            .tokens
            .iter()
            .map(|t| t.info.clone())
            .collect()
    }

    /// Makes an API token; its secret is returned this once.
    pub fn create_token(
        &self,
        name: &str,
        scope: Scope,
        now_ms: i64,
    ) -> Result<(TokenInfo, String), AuthError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(AuthError::Invalid(
                "a token's name must have 1 to 64 characters, none of them control characters"
                    .into(),
            ));
        }
        let mut stored = lock(&self.stored).clone();
        if stored.tokens.len() >= MAX_TOKENS {
            return Err(AuthError::Invalid(format!(
                "at most {MAX_TOKENS} tokens; revoke one first"
            )));
        }
        let secret = format!("hw_{}", random_hex(32));
        let info = TokenInfo {
            id: random_hex(8),
            name: name.to_string(),
            scope,
            created_ms: now_ms,
        };
        stored.tokens.push(StoredToken {
            info: info.clone(),
            sha256: sha256_hex(&secret),
        });
        self.save(&stored)?;
        *lock(&self.stored) = stored;
        tracing::info!(token = %info.id, scope = ?scope, "API token created");
        Ok((info, secret))
    }

    /// Revokes an API token; false if there is none with that id.
    pub fn revoke(&self, id: &str) -> Result<bool, AuthError> {
        let mut stored = lock(&self.stored).clone();
        let before = stored.tokens.len();
        stored.tokens.retain(|t| t.info.id != id);
        if stored.tokens.len() == before {
            return Ok(false);
        }
        self.save(&stored)?;
        *lock(&self.stored) = stored;
        tracing::info!(token = %id, "API token revoked");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_once_then_login_sessions_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::load(Some(dir.path())).unwrap();
        assert!(auth.needs_setup());
        let token = auth.setup_token().unwrap();
        assert!(matches!(
            auth.setup(&token, "short"),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            auth.setup("nope", "long enough pw"),
            Err(AuthError::Denied(_))
        ));
        let s = auth.setup(&token, "long enough pw").unwrap();
        assert!(auth.session(&s.id).is_some());
        assert!(matches!(
            auth.setup(&token, "long enough pw"),
            Err(AuthError::State(_))
        ));
        assert!(auth.login("admin", "wrong password").is_err());
        assert!(auth.login("root", "long enough pw").is_err());
        let s2 = auth.login("admin", "long enough pw").unwrap();
        auth.logout(&s2.id);
        assert!(auth.session(&s2.id).is_none());

        let (info, secret) = auth.create_token("ci", Scope::Read, 1).unwrap();
        assert_eq!(auth.bearer(&secret).unwrap().scope, Scope::Read);
        assert!(auth.bearer("hw_00").is_none());

        // Persisted with mode 0600, and reloaded without a setup token.
        let path = dir.path().join("web/auth.json");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = Auth::load(Some(dir.path())).unwrap();
        assert!(!again.needs_setup() && again.setup_token().is_none());
        assert!(again.bearer(&secret).is_some());
        assert!(again.revoke(&info.id).unwrap());
        assert!(again.bearer(&secret).is_none());
        // Sessions do not survive a restart.
        assert!(again.session(&s.id).is_none());
    }

    #[test]
    fn login_attempts_are_limited_per_client() {
        let auth = Auth::load(None).unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            auth.attempt(a, t0).unwrap();
        }
        assert!(matches!(auth.attempt(a, t0), Err(AuthError::Limited(s)) if s >= 1));
        auth.attempt(b, t0).unwrap();
        auth.attempt(a, t0 + Duration::from_secs(13)).unwrap();
    }
}
