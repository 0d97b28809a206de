//! Who may call the API: bearer tokens with roles and clients.
//!
//! Every token carries a client, whose data alone it sees, or `*` for the contact
//! center's own staff ([`cull_model::Scope`]). There is no default: a token that does
//! not say whose data it may see is refused when the tokens are loaded, since an
//! unscoped token in a multi-client deployment would see every client's mentions.
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
use cull_model::Scope;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use toml::Spanned;

/// What to say to a token entry without a client.
const NO_CLIENT: &str = "say whose data the token may see, a client's (`analyst@acme:…`, \
                         `client = \"acme\"`) or every client's for the contact center's staff \
                         (`analyst@*:…`, `client = \"*\"`)";

/// The environment variable with tokens: `role@client:token,role@*:token`.
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
    scope: Scope,
    digest: [u8; 32],
}

/// Who called: what the guard lets through to a handler, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name, for the logs.
    pub name: String,
    /// The token's role.
    pub role: Role,
    /// Whose data the caller may see.
    pub scope: Scope,
}

/// The tokens the API accepts.
#[derive(Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl fmt::Debug for Tokens {
    /// Names and roles only: a token never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|e| (&e.name, e.role, &e.scope))).finish()
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
    /// A client name or `*`.
    client: Option<Spanned<String>>,
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
            let Some(client) = raw.client else {
                return Err(invalid(start, format!("token {:?} needs `client`: {NO_CLIENT}", raw.name)));
            };
            let scope =
                Scope::parse(client.get_ref()).map_err(|message| invalid(client.span().start, message))?;
            let at = raw.token.span().start;
            self.add(raw.name, role, scope, raw.token.get_ref()).map_err(|message| invalid(at, message))?;
        }
        Ok(())
    }

    /// Adds a token, or says why it cannot be one: empty, shorter than
    /// [`MIN_TOKEN_CHARS`], or the same secret as another entry (one token under two
    /// roles would make its role depend on the order of the entries).
    fn add(&mut self, name: String, role: Role, scope: Scope, token: &str) -> Result<(), String> {
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
        self.entries.push(Entry { name, role, scope, digest });
        Ok(())
    }

    fn add_env(&mut self, value: &str) -> Result<(), TokensError> {
        for (index, item) in value.split(',').map(str::trim).enumerate().filter(|(_, i)| !i.is_empty()) {
            let invalid = |message: String| TokensError::Invalid {
                place: format!("{TOKENS_ENV} entry {}", index + 1),
                message,
            };
            let (who, token) =
                item.split_once(':').ok_or_else(|| invalid("expected role@client:token".to_string()))?;
            let (role, client) = who
                .split_once('@')
                .ok_or_else(|| invalid(format!("`{}` says no client: {NO_CLIENT}", who.trim())))?;
            let role = Role::parse(role.trim()).ok_or_else(|| {
                invalid(format!("unknown role {:?}; roles are {}", role.trim(), Role::NAMES))
            })?;
            let scope = Scope::parse(client.trim()).map_err(&invalid)?;
            self.add(format!("{TOKENS_ENV}#{}", index + 1), role, scope, token).map_err(invalid)?;
        }
        Ok(())
    }

    /// Returns the number of tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns who holds the token presented, comparing it with every token in
    /// constant time.
    fn authenticate(&self, presented: &str) -> Option<Caller> {
        let presented = digest(presented);
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&presented)) {
                found = Some(entry);
            }
        }
        found.map(|entry| Caller { name: entry.name.clone(), role: entry.role, scope: entry.scope.clone() })
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
    let Some(caller) = guard.tokens.authenticate(presented.trim()) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            Some(r#"Bearer realm="cull", error="invalid_token""#),
            "invalid bearer token".into(),
        );
    };
    if caller.role < guard.role {
        tracing::info!(
            caller = caller.name,
            role = caller.role.as_str(),
            "refused: needs the {} role",
            guard.role.as_str()
        );
        return refuse(
            StatusCode::FORBIDDEN,
            None,
            format!(
                "this needs the {} role; the token has the {} role",
                guard.role.as_str(),
                caller.role.as_str()
            ),
        );
    }
    tracing::debug!(caller = caller.name, client = %caller.scope, path = %request.uri().path(), "authorized");
    let mut request = request;
    request.extensions_mut().insert(caller);
    next.run(request).await.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_environment_tokens_carry_their_roles() {
        let mut tokens = Tokens::default();
        let file = "[[token]]\nname = \"ana\"\nrole = \"analyst\"\nclient = \"*\"\ntoken = \"a-secret-0123456789\"\n\n[[token]]\nname = \"ops\"\nrole = \"operator\"\nclient = \"acme\"\ntoken = \"o-secret-0123456789\"\n";
        tokens.add_file(Path::new("tokens.toml"), file).unwrap();
        tokens.add_env("analyst@*:env-a-0123456789, operator@*:env-o-0123456789").unwrap();
        assert_eq!(tokens.len(), 4);
        let caller = |name: &str, role, scope: &str| {
            Some(Caller { name: name.to_string(), role, scope: Scope::parse(scope).unwrap() })
        };
        assert_eq!(tokens.authenticate("a-secret-0123456789"), caller("ana", Role::Analyst, "*"));
        assert_eq!(tokens.authenticate("o-secret-0123456789"), caller("ops", Role::Operator, "acme"));
        assert_eq!(tokens.authenticate("env-o-0123456789"), caller("CULL_API_TOKENS#2", Role::Operator, "*"));
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
        let empty = "[[token]]\nname = \"x\"\nrole = \"analyst\"\nclient = \"*\"\ntoken = \"\"\n";
        let error = Tokens::default().add_file(Path::new("t.toml"), empty).unwrap_err().to_string();
        assert!(error.starts_with("t.toml:5: the token is empty"), "{error}");
        let unknown =
            "[[token]]\nname = \"x\"\nrole = \"analyst\"\nclient = \"*\"\ntoken = \"t\"\nexpires = 3\n";
        let error = Tokens::default().add_file(Path::new("t.toml"), unknown).unwrap_err().to_string();
        assert!(error.starts_with("t.toml:6:") && error.contains("expires"), "{error}");
        let error =
            Tokens::default().add_env("analyst@*:a-token-0123456789,root@*:b").unwrap_err().to_string();
        assert_eq!(error, "CULL_API_TOKENS entry 2: unknown role \"root\"; roles are analyst, operator");
        let error = Tokens::default().add_env("analyst@*:").unwrap_err().to_string();
        assert_eq!(error, "CULL_API_TOKENS entry 1: the token is empty");
    }

    #[test]
    fn a_token_must_say_whose_data_it_may_see() {
        let error = Tokens::default().add_env("analyst:a-token-0123456789").unwrap_err().to_string();
        assert!(
            error.starts_with("CULL_API_TOKENS entry 1: `analyst` says no client: say whose data"),
            "{error}"
        );
        let error = Tokens::default().add_env("analyst@Acme:a-token-0123456789").unwrap_err().to_string();
        assert!(error.contains("`Acme` is not a client name"), "{error}");
        let unscoped = "[[token]]\nname = \"ana\"\nrole = \"analyst\"\ntoken = \"a-secret-0123456789\"\n";
        let error = Tokens::default().add_file(Path::new("t.toml"), unscoped).unwrap_err().to_string();
        assert!(error.starts_with("t.toml:1: token \"ana\" needs `client`"), "{error}");
        let bad = "[[token]]\nname = \"ana\"\nrole = \"analyst\"\nclient = \"../globex\"\ntoken = \"a-secret-0123456789\"\n";
        let error = Tokens::default().add_file(Path::new("t.toml"), bad).unwrap_err().to_string();
        assert!(error.starts_with("t.toml:4: `../globex` is not a client name"), "{error}");
        let mut tokens = Tokens::default();
        tokens.add_env("analyst@acme:acme-token-0123456789").unwrap();
        let caller = tokens.authenticate("acme-token-0123456789").unwrap();
        assert_eq!(caller.scope, Scope::Client("acme".into()));
    }

    #[test]
    fn short_tokens_and_one_token_under_two_roles_are_refused() {
        let error = Tokens::default().add_env("analyst@*:try-me").unwrap_err().to_string();
        assert!(
            error.starts_with("CULL_API_TOKENS entry 1: the token has 6 characters; at least 16"),
            "{error}"
        );
        let twice = "analyst@*:shared-secret-0123456789,operator@*:shared-secret-0123456789";
        let error = Tokens::default().add_env(twice).unwrap_err().to_string();
        assert!(
            error.starts_with("CULL_API_TOKENS entry 2: the token is the same secret as token \"CULL_API_TOKENS#1\" (analyst)"),
            "{error}"
        );
        let file = "[[token]]\nname = \"ana\"\nrole = \"analyst\"\nclient = \"*\"\ntoken = \"shared-secret-0123456789\"\n";
        let mut tokens = Tokens::default();
        tokens.add_file(Path::new("t.toml"), file).unwrap();
        let error = tokens.add_env("operator@*:shared-secret-0123456789").unwrap_err().to_string();
        assert!(error.contains("same secret as token \"ana\" (analyst)"), "{error}");
        assert!(!error.contains("shared-secret"), "the secret is never in an error: {error}");
        assert!(Tokens::default().add_env("analyst@*:exactly-16-chars").is_ok());
    }

    #[tokio::test]
    async fn a_guard_refuses_a_lower_role_with_403() {
        use axum::body::Body;
        use tower::ServiceExt as _;

        let mut tokens = Tokens::default();
        tokens.add_env("analyst@*:a-token-0123456789,operator@*:o-token-0123456789").unwrap();
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
