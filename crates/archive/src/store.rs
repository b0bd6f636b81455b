//! The store's client: S3 requests signed by `rusty-s3` (SigV4, presigned, path-style
//! addressing, which every S3-compatible server takes), sent by reqwest, each bounded by
//! [`REQUEST_TIMEOUT`].
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusty_s3::actions::ListObjectsV2;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use url::Url;

use crate::retention::Object;

/// The longest one request to the store may take; a store that does not answer is
/// given up on after this, and never holds a run or a clean-up for longer than the
/// caller's own bound.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a signed URL is valid: long enough for one request.
const SIGNED_FOR: Duration = Duration::from_secs(300);

/// Where the archive is and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The store's URL, e.g. `https://s3.eu-west-1.amazonaws.com` or
    /// `http://127.0.0.1:9000`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Put before every key, e.g. `datajob/`; empty for none.
    pub prefix: String,
    pub access_key: String,
    pub secret_key: String,
}

impl Settings {
    /// `s3://bucket/prefix at endpoint`, for messages.
    pub fn describe(&self) -> String {
        format!("s3://{}/{} at {}", self.bucket, self.prefix, self.endpoint)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the log archive's endpoint {endpoint:?} is not a URL the store can be reached at ({reason}); set it to e.g. http://127.0.0.1:9000 or https://s3.REGION.amazonaws.com"
    )]
    Endpoint { endpoint: String, reason: String },
    #[error("the log archive at {endpoint} did not answer {op} {key}: {source}")]
    Unreachable {
        endpoint: String,
        op: &'static str,
        key: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the log archive at {endpoint} refused {op} {key}: HTTP {status}: {body}")]
    Refused {
        endpoint: String,
        op: &'static str,
        key: String,
        status: u16,
        body: String,
    },
    #[error("the log archive at {endpoint} answered a listing that is not S3's: {reason}")]
    Listing { endpoint: String, reason: String },
}

/// A client of one bucket.
#[derive(Clone, Debug)]
pub struct Store {
    settings: Settings,
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
}

impl Store {
    pub fn new(settings: Settings) -> Result<Self, StoreError> {
        let bad = |reason: String| StoreError::Endpoint {
            endpoint: settings.endpoint.clone(),
            reason,
        };
        // reqwest takes the process's TLS crypto; the binaries install ring at start,
        // and this makes a library caller (a test) work the same.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = Url::parse(&settings.endpoint).map_err(|e| bad(e.to_string()))?;
        let bucket = Bucket::new(
            url,
            UrlStyle::Path,
            settings.bucket.clone(),
            settings.region.clone(),
        )
        .map_err(|e| bad(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let credentials =
            Credentials::new(settings.access_key.clone(), settings.secret_key.clone());
        Ok(Store {
            settings,
            bucket,
            credentials,
            http,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The key prefix every object of the archive is under.
    pub fn prefix(&self) -> &str {
        &self.settings.prefix
    }

    fn unreachable(&self, op: &'static str, key: &str, source: reqwest::Error) -> StoreError {
        StoreError::Unreachable {
            endpoint: self.settings.endpoint.clone(),
            op,
            key: key.to_string(),
            source,
        }
    }

    async fn refused(&self, op: &'static str, key: &str, r: reqwest::Response) -> StoreError {
        let status = r.status().as_u16();
        let mut body = r.text().await.unwrap_or_default();
        body.truncate(300);
        StoreError::Refused {
            endpoint: self.settings.endpoint.clone(),
            op,
            key: key.to_string(),
            status,
            body,
        }
    }

    /// Sends one request for `op` on `key`; `Ok(None)` for a 404, an error for any other
    /// answer that is not a success.
    async fn send(
        &self,
        op: &'static str,
        key: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Option<reqwest::Response>, StoreError> {
        let r = request
            .send()
            .await
            .map_err(|e| self.unreachable(op, key, e))?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(self.refused(op, key, r).await);
        }
        Ok(Some(r))
    }

    /// Writes one object whole: a copy made again replaces it, never appends to it.
    pub async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        let url = self
            .bucket
            .put_object(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        let request = self
            .http
            .put(url)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body);
        match self.send("PUT", key, request).await? {
            Some(_) => Ok(()),
            // The bucket is not there: say so as the refusal it is.
            None => Err(StoreError::Refused {
                endpoint: self.settings.endpoint.clone(),
                op: "PUT",
                key: key.to_string(),
                status: 404,
                body: format!("no bucket {:?}: create it first", self.settings.bucket),
            }),
        }
    }

    /// Reads one object; `None` when there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        let Some(r) = self.send("GET", key, self.http.get(url)).await? else {
            return Ok(None);
        };
        let bytes = r
            .bytes()
            .await
            .map_err(|e| self.unreachable("GET", key, e))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Deletes one object; one that is not there is already deleted.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        self.send("DELETE", key, self.http.delete(url)).await?;
        Ok(())
    }

    /// Every object under `prefix`, page by page.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Object>, StoreError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
            action.with_prefix(prefix);
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(SIGNED_FOR);
            let Some(r) = self.send("LIST", prefix, self.http.get(url)).await? else {
                return Err(StoreError::Listing {
                    endpoint: self.settings.endpoint.clone(),
                    reason: format!("no bucket {:?}", self.settings.bucket),
                });
            };
            let text = r
                .text()
                .await
                .map_err(|e| self.unreachable("LIST", prefix, e))?;
            let page = ListObjectsV2::parse_response(&text).map_err(|e| StoreError::Listing {
                endpoint: self.settings.endpoint.clone(),
                reason: e.to_string(),
            })?;
            for c in page.contents {
                let last_modified = c
                    .last_modified
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map_or(DateTime::<Utc>::UNIX_EPOCH, |t| t.with_timezone(&Utc));
                out.push(Object {
                    key: c.key,
                    size: c.size.unwrap_or(0),
                    last_modified,
                });
            }
            match page.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: &str) -> Settings {
        Settings {
            endpoint: endpoint.into(),
            bucket: "logs".into(),
            region: "us-east-1".into(),
            prefix: String::new(),
            access_key: "k".into(),
            secret_key: "s".into(),
        }
    }

    #[test]
    fn an_endpoint_that_is_not_a_url_names_itself_and_the_fix() {
        let e = Store::new(settings("127.0.0.1:9000"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"127.0.0.1:9000\""), "{e}");
        assert!(e.contains("http://127.0.0.1:9000"), "{e}");
        let e = Store::new(settings("ftp://host")).unwrap_err().to_string();
        assert!(e.contains("ftp://host"), "{e}");
    }

    #[tokio::test]
    async fn a_store_that_does_not_listen_is_unreachable_at_once() {
        // Port 9 (discard) on loopback: nothing listens, the connection is refused.
        let store = Store::new(settings("http://127.0.0.1:9")).unwrap();
        let e = store.put("k", b"x".to_vec()).await.unwrap_err();
        assert!(
            matches!(e, StoreError::Unreachable { op: "PUT", .. }),
            "{e}"
        );
    }
}
