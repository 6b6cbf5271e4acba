//! Authentication: which token a call carries, and what that token may do.
//!
//! A server has either one token (`-t` / `OPENDUCK_TOKEN`) that may use every database, or a
//! tokens file that maps tokens to the databases they may use and whether they are read-only,
//! or both. Tokens are compared in constant time. The Basic-auth handshake accepts any user name
//! with the token as the password and answers with that token as the bearer token.

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine as _;
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use tonic::Status;

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The databases the token may use; `None` means all of them.
    pub databases: Option<BTreeSet<String>>,
    /// Whether the token may only read.
    pub read_only: bool,
    /// Which configured token this is (its place in the configuration): the handles a token
    /// makes (prepared statements, transactions, results) are its own.
    pub owner: u64,
}

impl Grant {
    /// A grant for every database, read-write.
    pub fn all() -> Self {
        Grant { databases: None, read_only: false, owner: 0 }
    }

    /// Whether this grant covers `database`.
    pub fn allows(&self, database: &str) -> bool {
        self.databases.as_ref().is_none_or(|set| set.contains(database))
    }
}

/// Errors while loading the token configuration.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// The tokens file could not be read.
    #[error("cannot read tokens file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The tokens file is not valid.
    #[error("invalid tokens file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// No token was configured at all.
    #[error("no token configured: pass --token, set OPENDUCK_TOKEN, or pass --tokens-file")]
    NoToken,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: String,
    #[serde(default)]
    databases: Option<Vec<String>>,
    #[serde(default)]
    read_only: bool,
}

/// The configured tokens and their grants.
#[derive(Debug, Clone)]
pub struct Authenticator {
    tokens: Vec<(Vec<u8>, Grant)>,
}

impl Authenticator {
    /// Builds an authenticator from a single all-powerful token and/or a tokens file.
    ///
    /// The tokens file is JSON:
    /// `{"tokens": [{"token": "…", "databases": ["sales"], "read_only": true}]}`;
    /// `databases` omitted means every database.
    pub fn new(token: Option<&str>, tokens_file: Option<&Path>) -> Result<Self, AuthConfigError> {
        let mut tokens = Vec::new();
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            tokens.push((t.as_bytes().to_vec(), Grant::all()));
        }
        if let Some(path) = tokens_file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read { path: shown.clone(), source })?;
            let file: TokensFile =
                serde_json::from_str(&text).map_err(|e| AuthConfigError::Invalid { path: shown.clone(), message: e.to_string() })?;
            for entry in file.tokens {
                if entry.token.is_empty() {
                    return Err(AuthConfigError::Invalid { path: shown, message: "empty token".into() });
                }
                let databases = entry.databases.map(|d| d.into_iter().collect());
                tokens.push((entry.token.into_bytes(), Grant { databases, read_only: entry.read_only, owner: tokens.len() as u64 }));
            }
        }
        if tokens.is_empty() {
            return Err(AuthConfigError::NoToken);
        }
        Ok(Authenticator { tokens })
    }

    /// The grant of `presented`, comparing against every configured token in constant time.
    pub fn check(&self, presented: &str) -> Option<Grant> {
        let presented = presented.as_bytes();
        let mut found = None;
        for (token, grant) in &self.tokens {
            // `ct_eq` on slices of different lengths returns false without early exit on content.
            if bool::from(token.as_slice().ct_eq(presented)) && found.is_none() {
                found = Some(grant.clone());
            }
        }
        found
    }

    /// Authenticates a call from its `authorization: Bearer …` header.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Grant, Status> {
        let value = metadata
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing 'authorization: Bearer <token>' header"))?
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization header is not valid ASCII"))?;
        let token =
            strip_scheme(value, "bearer").ok_or_else(|| Status::unauthenticated("authorization header must be 'Bearer <token>'"))?;
        self.check(token).ok_or_else(|| Status::unauthenticated("invalid token"))
    }

    /// Checks a Basic-auth header (any user, password = token) and returns the token.
    pub fn handshake(&self, metadata: &MetadataMap) -> Result<String, Status> {
        let value = metadata
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("handshake needs 'authorization: Basic …' (password = token)"))?
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization header is not valid ASCII"))?;
        if let Some(token) = strip_scheme(value, "bearer") {
            self.check(token).ok_or_else(|| Status::unauthenticated("invalid token"))?;
            return Ok(token.to_string());
        }
        let encoded =
            strip_scheme(value, "basic").ok_or_else(|| Status::unauthenticated("authorization header must be 'Basic …' or 'Bearer …'"))?;
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
        let encoded = encoded.trim();
        let decoded = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(encoded).ok())
            .ok_or_else(|| Status::unauthenticated("Basic credentials are not valid base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| Status::unauthenticated("Basic credentials are not valid UTF-8"))?;
        let (_user, password) =
            decoded.split_once(':').ok_or_else(|| Status::unauthenticated("Basic credentials must be 'user:password'"))?;
        self.check(password).ok_or_else(|| Status::unauthenticated("invalid token (password)"))?;
        Ok(password.to_string())
    }
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.trim().split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn single_token() {
        let a = Authenticator::new(Some("s3cret"), None).unwrap();
        assert_eq!(a.authenticate(&meta("Bearer s3cret")).unwrap(), Grant::all());
        assert_eq!(a.authenticate(&meta("bearer  s3cret ")).unwrap(), Grant::all());
        let e = a.authenticate(&meta("Bearer s3cre")).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(a.authenticate(&MetadataMap::new()).unwrap_err().message().contains("missing"));
        assert!(a.check("").is_none());
    }

    #[test]
    fn basic_handshake() {
        let a = Authenticator::new(Some("tok"), None).unwrap();
        let good = base64::engine::general_purpose::STANDARD.encode("anyone:tok");
        assert_eq!(a.handshake(&meta(&format!("Basic {good}"))).unwrap(), "tok");
        let bad = base64::engine::general_purpose::STANDARD.encode("anyone:nope");
        assert!(a.handshake(&meta(&format!("Basic {bad}"))).is_err());
        assert!(a.handshake(&meta("Basic !!!")).is_err());
    }

    #[test]
    fn tokens_file_grants() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        std::fs::write(&path, r#"{"tokens":[{"token":"reader","databases":["sales"],"read_only":true},{"token":"admin"}]}"#).unwrap();
        let a = Authenticator::new(None, Some(&path)).unwrap();
        let r = a.check("reader").unwrap();
        assert!(r.read_only && r.allows("sales") && !r.allows("hr"));
        assert!(a.check("admin").unwrap().allows("hr"));
        std::fs::write(&path, r#"{"tokens":[{"tokn":"x"}]}"#).unwrap();
        assert!(matches!(Authenticator::new(None, Some(&path)), Err(AuthConfigError::Invalid { .. })));
        assert!(matches!(Authenticator::new(None, None), Err(AuthConfigError::NoToken)));
    }
}
