//! Any S3-compatible object store.
//!
//! `s3://bucket/prefix`, path-style addressing, credentials from the usual AWS environment
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL` for a non-AWS endpoint). Puts are conditional (`If-None-Match: *`), so an
//! object is never overwritten. Failed requests (5xx, timeouts, connection errors) are retried
//! with exponential backoff before a clear error is returned.

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use super::{ObjectInfo, ObjectStore, StoreError};

/// Where and how to reach an S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Endpoint URL (`http://127.0.0.1:9000`); AWS's for the region when `None`.
    pub endpoint: Option<String>,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`).
    pub prefix: String,
    /// Region.
    pub region: String,
    /// Access key id, secret and optional session token.
    pub credentials: Option<(String, String, Option<String>)>,
    /// Attempts per request (first try included).
    pub max_attempts: u32,
}

impl S3Config {
    /// Parses `s3://bucket[/prefix]`, taking the rest from the environment via `env`.
    pub fn from_url(url: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, StoreError> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| StoreError::InvalidKey(format!("{url} (expected s3://bucket/prefix)")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::InvalidKey(format!("{url} (no bucket)")));
        }
        let credentials = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Some((id, secret, env("AWS_SESSION_TOKEN"))),
            _ => None,
        };
        Ok(S3Config {
            endpoint: env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            region: env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into()),
            credentials,
            max_attempts: 4,
        })
    }
}

/// Objects in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

fn remote<E: std::error::Error + 'static, R: std::fmt::Debug>(op: &'static str, key: &str, e: SdkError<E, R>) -> StoreError {
    StoreError::Remote { op, key: key.to_string(), message: DisplayErrorContext(&e).to_string() }
}

fn status<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

impl S3Store {
    /// A store for `config`.
    pub fn new(config: S3Config) -> Self {
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region))
            .force_path_style(true)
            .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts).with_initial_backoff(Duration::from_millis(100)))
            .timeout_config(
                TimeoutConfig::builder().connect_timeout(Duration::from_secs(5)).operation_attempt_timeout(Duration::from_secs(60)).build(),
            );
        if let Some(endpoint) = config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        if let Some((id, secret, token)) = config.credentials {
            builder = builder.credentials_provider(Credentials::new(id, secret, token, None, "openduck-environment"));
        }
        S3Store { client: aws_sdk_s3::Client::from_conf(builder.build()), bucket: config.bucket, prefix: config.prefix }
    }

    fn full(&self, key: &str) -> Result<String, StoreError> {
        if key.is_empty() || key.starts_with('/') || key.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            return Err(StoreError::InvalidKey(key.to_string()));
        }
        Ok(if self.prefix.is_empty() { key.to_string() } else { format!("{}/{key}", self.prefix) })
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    async fn put_if_absent(&self, key: &str, data: bytes::Bytes) -> Result<(), StoreError> {
        let full = self.full(key)?;
        let result = self.client.put_object().bucket(&self.bucket).key(&full).if_none_match("*").body(ByteStream::from(data)).send().await;
        match result {
            Ok(_) => Ok(()),
            // 412: the object exists; 409: a concurrent conditional write won.
            Err(e) if matches!(status(&e), Some(412) | Some(409)) => Err(StoreError::AlreadyExists(key.to_string())),
            Err(e) => Err(remote("put", key, e)),
        }
    }

    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, StoreError> {
        let full = self.full(key)?;
        if range.end <= range.start {
            return Ok(Vec::new());
        }
        let result =
            self.client.get_object().bucket(&self.bucket).key(&full).range(format!("bytes={}-{}", range.start, range.end - 1)).send().await;
        match result {
            Ok(out) => {
                let body =
                    out.body.collect().await.map_err(|e| StoreError::Remote { op: "get", key: key.to_string(), message: e.to_string() })?;
                Ok(body.into_bytes().to_vec())
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) || status(&e) == Some(404) => {
                Err(StoreError::NotFound(key.to_string()))
            }
            // A range starting at or past the end.
            Err(e) if status(&e) == Some(416) => Ok(Vec::new()),
            Err(e) => Err(remote("get", key, e)),
        }
    }

    async fn size(&self, key: &str) -> Result<u64, StoreError> {
        let full = self.full(key)?;
        match self.client.head_object().bucket(&self.bucket).key(&full).send().await {
            Ok(out) => Ok(out.content_length().unwrap_or(0).max(0) as u64),
            Err(e) if status(&e) == Some(404) => Err(StoreError::NotFound(key.to_string())),
            Err(e) => Err(remote("head", key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let full_prefix = if self.prefix.is_empty() { prefix.to_string() } else { format!("{}/{prefix}", self.prefix) };
        let strip = if self.prefix.is_empty() { 0 } else { self.prefix.len() + 1 };
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| remote("list", prefix, e))?;
            for object in page.contents() {
                let Some(key) = object.key().and_then(|k| k.get(strip..)) else {
                    continue;
                };
                let modified =
                    object.last_modified().and_then(|t| std::time::SystemTime::try_from(*t).ok()).unwrap_or(std::time::UNIX_EPOCH);
                out.push(ObjectInfo { key: key.to_string(), modified });
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let full = self.full(key)?;
        match self.client.delete_object().bucket(&self.bucket).key(&full).send().await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(remote("delete", key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_environment() {
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("id".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".to_string()),
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:9000".to_string()),
            _ => None,
        };
        let c = S3Config::from_url("s3://bucket/some/prefix/", env).unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str(), c.region.as_str()), ("bucket", "some/prefix", "us-east-1"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(c.credentials.is_some());
        assert!(S3Config::from_url("file:///x", env).is_err());
        assert!(S3Config::from_url("s3:///x", env).is_err());
    }
}
