//! Who may call the API: bearer tokens with roles.
//!
//! Tokens come from a TOML file (`--tokens FILE`) and from the environment variable
//! [`TOKENS_ENV`], so that a deployment can keep them in a secret store rather than
//! on disk. Only a SHA-256 digest of each token is kept, and a presented token is
//! compared against every digest in constant time ([`subtle`]) without stopping at
//! the first match, so neither the content of a token nor which entry it matched can
//! be learnt from response times.
//!
//! With no token configured every API request is refused, saying why: an API open to
//! anyone by accident is worse than one that is closed by accident.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use toml::Spanned;

/// The environment variable with tokens: `role:token,role:token`.
pub const TOKENS_ENV: &str = "CULL_API_TOKENS";

/// The shortest token accepted, in characters: a short token is guessed by anyone who
/// can send requests (16 random characters of base64 are 96 bits).
pub const MIN_TOKEN_CHARS: usize = 16;

/// What a token allows. Ordered: a role can do all that the roles before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Search, read mentions, backtest draft rules.
    Analyst,
    /// All an analyst can, and change what the service runs (reload rules).
    Operator,
}

impl Role {
    const NAMES: &'static str = "analyst, operator";

    fn parse(name: &str) -> Option<Role> {
        match name {
            "analyst" => Some(Role::Analyst),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Role::Analyst => "analyst",
            Role::Operator => "operator",
        }
    }
}

/// A token file or variable that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// The file cannot be read.
    #[error("cannot read the tokens file {} (--tokens): {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A place in the file or the variable is wrong.
    #[error("{place}: {message}")]
    Invalid {
        /// `file:line` or the variable and the entry's position in it.
        place: String,
        /// What is wrong.
        message: String,
    },
}

struct Entry {
    name: String,
    role: Role,
    digest: [u8; 32],
}

/// The tokens the API accepts.
#[derive(Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl fmt::Debug for Tokens {
    /// Names and roles only: a token never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|e| (&e.name, e.role))).finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<Spanned<RawToken>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    role: Spanned<String>,
    token: Spanned<String>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Tokens {
    /// Loads the tokens of `file`, if any, and of `env` (the value of [`TOKENS_ENV`]),
    /// if set.
    pub fn load(file: Option<&Path>, env: Option<&str>) -> Result<Tokens, TokensError> {
        let mut tokens = Tokens::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| TokensError::Read { path: path.to_path_buf(), source })?;
            tokens.add_file(path, &text)?;
        }
        if let Some(value) = env {
            tokens.add_env(value)?;
        }
        Ok(tokens)
    }

    fn add_file(&mut self, path: &Path, text: &str) -> Result<(), TokensError> {
        let invalid = |offset: usize, message: String| TokensError::Invalid {
            place: format!("{}:{}", path.display(), line_of(text, offset)),
            message,
        };
        let parsed: TokenFile = toml::from_str(text).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            invalid(offset, error.message().to_string())
        })?;
        for entry in parsed.token {
            let start = entry.span().start;
            let raw = entry.into_inner();
            let role = Role::parse(raw.role.get_ref()).ok_or_else(|| {
                invalid(
                    raw.role.span().start,
                    format!("unknown role {:?}; roles are {}", raw.role.get_ref(), Role::NAMES),
                )
            })?;
            if raw.name.trim().is_empty() {
                return Err(invalid(start, "a token needs a name (for the logs)".into()));
            }
            let at = raw.token.span().start;
            self.add(raw.name, role, raw.token.get_ref()).map_err(|message| invalid(at, message))?;
        }
        Ok(())
    }

    /// Adds a token, or says why it cannot be one: empty, shorter than
    /// [`MIN_TOKEN_CHARS`], or the same secret as another entry (one token under two
    /// roles would make its role depend on the order of the entries).
    fn add(&mut self, name: String, role: Role, token: &str) -> Result<(), String> {
        let length = token.trim().chars().count();
        if length == 0 {
            return Err("the token is empty".to_string());
        }
        if length < MIN_TOKEN_CHARS {
            return Err(format!(
                "the token has {length} characters; at least {MIN_TOKEN_CHARS} are needed (e.g. `openssl rand -base64 24`)"
            ));
        }
        let digest = digest(token.trim());
        if let Some(other) = self.entries.iter().find(|e| e.digest == digest) {
            return Err(format!(
                "the token is the same secret as token {:?} ({}): give every entry its own token",
                other.name,
                other.role.as_str()
            ));
        }
        self.entries.push(Entry { name, role, digest });
        Ok(())
    }

    fn add_env(&mut self, value: &str) -> Result<(), TokensError> {
        for (index, item) in value.split(',').map(str::trim).enumerate().filter(|(_, i)| !i.is_empty()) {
            let invalid = |message: String| TokensError::Invalid {
                place: format!("{TOKENS_ENV} entry {}", index + 1),
                message,
            };
            let (role, token) =
                item.split_once(':').ok_or_else(|| invalid("expected role:token".to_string()))?;
            let role = Role::parse(role.trim()).ok_or_else(|| {
                invalid(format!("unknown role {:?}; roles are {}", role.trim(), Role::NAMES))
            })?;
            self.add(format!("{TOKENS_ENV}#{}", index + 1), role, token).map_err(invalid)?;
        }
        Ok(())
    }

    /// Returns the number of tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns the name and role of the token presented, comparing it with every
    /// token in constant time.
    fn authenticate(&self, presented: &str) -> Option<(&str, Role)> {
        let presented = digest(presented);
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&presented)) {
                found = Some((entry.name.as_str(), entry.role));
            }
        }
        found
    }
}

/// The state of [`require`]: the tokens and the role a group of routes needs.
#[derive(Debug, Clone)]
pub struct Guard {
    tokens: Arc<Tokens>,
    role: Role,
}

impl Guard {
    /// Requires `role` (or a higher one) of the callers of the routes it guards.
    pub fn new(tokens: Arc<Tokens>, role: Role) -> Guard {
        Guard { tokens, role }
    }
}

fn refuse(status: StatusCode, challenge: Option<&'static str>, message: String) -> Response {
    let mut response = crate::api::error(status, message);
    if let Some(challenge) = challenge {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    response
}

/// The middleware that lets a request through only with a bearer token of the
/// guard's role or higher: 401 without a valid token, 403 with a token of a lower
/// role. Use it as
/// `router.route_layer(axum::middleware::from_fn_with_state(Guard::new(tokens, role), require))`.
pub async fn require(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    if guard.tokens.entries.is_empty() {
        return refuse(
            StatusCode::UNAUTHORIZED,
            Some(r#"Bearer realm="cull""#),
            format!("no API tokens are configured: start cull with --tokens FILE or set {TOKENS_ENV}"),
        );
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")));
    let Some(presented) = presented else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            Some(r#"Bearer realm="cull""#),
            "missing bearer token: send Authorization: Bearer <token>".into(),
        );
    };
    let Some((name, role)) = guard.tokens.authenticate(presented.trim()) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            Some(r#"Bearer realm="cull", error="invalid_token""#),
            "invalid bearer token".into(),
        );
    };
    if role < guard.role {
        tracing::info!(
            caller = name,
            role = role.as_str(),
            "refused: needs the {} role",
            guard.role.as_str()
        );
        return refuse(
            StatusCode::FORBIDDEN,
            None,
            format!("this needs the {} role; the token has the {} role", guard.role.as_str(), role.as_str()),
        );
    }
    tracing::debug!(caller = name, path = %request.uri().path(), "authorized");
    next.run(request).await.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_environment_tokens_carry_their_roles() {
        let mut tokens = Tokens::default();
        let file = "[[token]]\nname = \"ana\"\nrole = \"analyst\"\ntoken = \"a-secret-0123456789\"\n\n[[token]]\nname = \"ops\"\nrole = \"operator\"\ntoken = \"o-secret-0123456789\"\n";
        tokens.add_file(Path::new("tokens.toml"), file).unwrap();
        tokens.add_env("analyst:env-a-0123456789, operator:env-o-0123456789").unwrap();
        assert_eq!(tokens.len(), 4);
        assert_eq!(tokens.authenticate("a-secret-0123456789"), Some(("ana", Role::Analyst)));
        assert_eq!(tokens.authenticate("o-secret-0123456789"), Some(("ops", Role::Operator)));
        assert_eq!(tokens.authenticate("env-o-0123456789"), Some(("CULL_API_TOKENS#2", Role::Operator)));
        assert_eq!(tokens.authenticate("a-secret-012345678"), None);
        assert_eq!(tokens.authenticate(""), None);
        assert!(Role::Operator > Role::Analyst);
        assert!(!format!("{tokens:?}").contains("secret"), "{tokens:?}");
    }

    #[test]
    fn bad_entries_are_refused_with_their_place() {
        let bad_role = "[[token]]\nname = \"x\"\n\nrole = \"admin\"\ntoken = \"t\"\n";
        let error = Tokens::default().add_file(Path::new("t.toml"), bad_role).unwrap_err().to_string();
        assert!(error.starts_with("t.toml:4: unknown role \"admin\""), "{error}");
        let empty = "[[token]]\nname = \"x\"\nrole = \"analyst\"\ntoken = \"\"\n";
        let error = Tokens::default().add_file(Path::new("t.toml"), empty).unwrap_err().to_string();
        assert!(error.starts_with("t.toml:4: the token is empty"), "{error}");
        let unknown = "[[token]]\nname = \"x\"\nrole = \"analyst\"\ntoken = \"t\"\nexpires = 3\n";
        let error = Tokens::default().add_file(Path::new("t.toml"), unknown).unwrap_err().to_string();
        assert!(error.starts_with("t.toml:5:") && error.contains("expires"), "{error}");
        let error = Tokens::default().add_env("analyst:a-token-0123456789,root:b").unwrap_err().to_string();
        assert_eq!(error, "CULL_API_TOKENS entry 2: unknown role \"root\"; roles are analyst, operator");
        let error = Tokens::default().add_env("analyst:").unwrap_err().to_string();
        assert_eq!(error, "CULL_API_TOKENS entry 1: the token is empty");
    }

    #[test]
    fn short_tokens_and_one_token_under_two_roles_are_refused() {
        let error = Tokens::default().add_env("analyst:try-me").unwrap_err().to_string();
        assert!(
            error.starts_with("CULL_API_TOKENS entry 1: the token has 6 characters; at least 16"),
            "{error}"
        );
        let twice = "analyst:shared-secret-0123456789,operator:shared-secret-0123456789";
        let error = Tokens::default().add_env(twice).unwrap_err().to_string();
        assert!(
            error.starts_with("CULL_API_TOKENS entry 2: the token is the same secret as token \"CULL_API_TOKENS#1\" (analyst)"),
            "{error}"
        );
        let file = "[[token]]\nname = \"ana\"\nrole = \"analyst\"\ntoken = \"shared-secret-0123456789\"\n";
        let mut tokens = Tokens::default();
        tokens.add_file(Path::new("t.toml"), file).unwrap();
        let error = tokens.add_env("operator:shared-secret-0123456789").unwrap_err().to_string();
        assert!(error.contains("same secret as token \"ana\" (analyst)"), "{error}");
        assert!(!error.contains("shared-secret"), "the secret is never in an error: {error}");
        assert!(Tokens::default().add_env("analyst:exactly-16-chars").is_ok());
    }

    #[tokio::test]
    async fn a_guard_refuses_a_lower_role_with_403() {
        use axum::body::Body;
        use tower::ServiceExt as _;

        let mut tokens = Tokens::default();
        tokens.add_env("analyst:a-token-0123456789,operator:o-token-0123456789").unwrap();
        let guard = Guard::new(Arc::new(tokens), Role::Operator);
        let app = axum::Router::new()
            .route("/operator", axum::routing::post(|| async { "done" }))
            .route_layer(axum::middleware::from_fn_with_state(guard, require));
        let call = |token: &str| {
            let request = axum::http::Request::post("/operator")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            app.clone().oneshot(request)
        };
        let refused = call("a-token-0123456789").await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(refused.headers().get(header::WWW_AUTHENTICATE).is_none());
        assert_eq!(call("o-token-0123456789").await.unwrap().status(), StatusCode::OK);
        assert_eq!(call("x-token").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
}
