//! Parsing `openduck:` connection strings.
//!
//! `openduck:mydb?endpoint=http://host:7878&token=…` (or the alias `od:mydb`). The endpoint and
//! token fall back to `OPENDUCK_ENDPOINT` / `OPENDUCK_TOKEN`, then to `http://localhost:7878`
//! and no token. Query values are percent-decoded.

use crate::ClientError;

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// Remote database name (the Flight SQL catalog).
    pub database: String,
    /// gRPC endpoint, `http://host:port`.
    pub endpoint: String,
    /// Bearer token, if any.
    pub token: Option<String>,
    /// Seconds to wait for the connection.
    pub connect_timeout_secs: u64,
    /// Read this snapshot of the database (read-only) instead of its head.
    pub snapshot: Option<i64>,
}

/// Decodes a query value as forms encode it: `%XX` escapes, and `+` for a space.
fn percent_decode(s: &str) -> Result<String, ClientError> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| ClientError::Config(format!("'{s}' does not decode to UTF-8")))
}

/// Parses a connection string, reading defaults with `env`.
pub fn parse(path: &str, env: impl Fn(&str) -> Option<String>) -> Result<ConnInfo, ClientError> {
    let rest = path
        .strip_prefix("openduck:")
        .or_else(|| path.strip_prefix("od:"))
        .ok_or_else(|| ClientError::Config(format!("'{path}' is not an openduck: connection string")))?;
    let (db, query) = rest.split_once('?').unwrap_or((rest, ""));
    let db = db.trim_start_matches('/');
    if db.is_empty() {
        return Err(ClientError::Config("connection string names no database: use openduck:<database>".into()));
    }
    let mut info = ConnInfo {
        database: percent_decode(db)?,
        endpoint: env("OPENDUCK_ENDPOINT").filter(|s| !s.is_empty()).unwrap_or_else(|| "http://localhost:7878".into()),
        token: env("OPENDUCK_TOKEN").filter(|s| !s.is_empty()),
        connect_timeout_secs: 5,
        snapshot: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v)?;
        match k {
            "endpoint" => info.endpoint = v,
            "token" => info.token = Some(v).filter(|s| !s.is_empty()),
            "connect_timeout" => {
                info.connect_timeout_secs =
                    v.parse().map_err(|_| ClientError::Config(format!("connect_timeout must be seconds, got '{v}'")))?
            }
            "snapshot" => {
                info.snapshot =
                    Some(v.parse().map_err(|_| ClientError::Config(format!("snapshot must be a snapshot id (an integer), got '{v}'")))?)
            }
            other => return Err(ClientError::Config(format!("unknown option '{other}' in connection string"))),
        }
    }
    if !info.endpoint.contains("://") {
        info.endpoint = format!("http://{}", info.endpoint);
    }
    Ok(info)
}

/// Parses `path` and picks its token, most specific first: the ATTACH `TOKEN` option, the
/// connection string's `token=`, a DuckDB secret of type `openduck` whose scope matches the path,
/// then `OPENDUCK_TOKEN`. Empty tokens count as none.
pub fn resolve(
    path: &str,
    option_token: Option<&str>,
    secret_token: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ConnInfo, ClientError> {
    let mut info = parse(path, |k| if k == "OPENDUCK_TOKEN" { None } else { env(k) })?;
    let given = |t: Option<&str>| t.filter(|t| !t.is_empty()).map(str::to_string);
    info.token =
        given(option_token).or(info.token).or_else(|| given(secret_token)).or_else(|| env("OPENDUCK_TOKEN").filter(|t| !t.is_empty()));
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn token_precedence() {
        let env = |k: &str| (k == "OPENDUCK_TOKEN").then(|| "from-env".to_string());
        let token = |path: &str, option, secret| resolve(path, option, secret, env).unwrap().token;
        assert_eq!(token("od:x?token=in-path", Some("option"), Some("secret")), Some("option".into()));
        assert_eq!(token("od:x?token=in-path", None, Some("secret")), Some("in-path".into()));
        assert_eq!(token("od:x", Some(""), Some("secret")), Some("secret".into()));
        assert_eq!(token("od:x", None, None), Some("from-env".into()));
        assert_eq!(resolve("od:x", None, None, no_env).unwrap().token, None);
    }

    #[test]
    fn full_and_alias_forms() {
        let i = parse("openduck:mydb?endpoint=http://h:1&token=a%2Bb", no_env).unwrap();
        assert_eq!((i.database.as_str(), i.endpoint.as_str(), i.token.as_deref()), ("mydb", "http://h:1", Some("a+b")));
        let env = |k: &str| match k {
            "OPENDUCK_ENDPOINT" => Some("h2:9".to_string()),
            "OPENDUCK_TOKEN" => Some("t".to_string()),
            _ => None,
        };
        let i = parse("od:sales", env).unwrap();
        assert_eq!((i.database.as_str(), i.endpoint.as_str(), i.token.as_deref()), ("sales", "http://h2:9", Some("t")));
        assert!(parse("openduck:", no_env).is_err());
        assert!(parse("md:x", no_env).is_err());
        assert!(parse("openduck:x?bogus=1", no_env).unwrap_err().to_string().contains("bogus"));
        assert_eq!(parse("openduck:x?snapshot=42", no_env).unwrap().snapshot, Some(42));
        assert!(parse("openduck:x?snapshot=new", no_env).unwrap_err().to_string().contains("snapshot id"));
        assert_eq!(parse("openduck:x?token=a+b%20c", no_env).unwrap().token.as_deref(), Some("a b c"));
        assert!(parse("openduck:x?token=%FF", no_env).unwrap_err().to_string().contains("UTF-8"));
    }
}
