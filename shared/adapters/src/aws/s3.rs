//! The artifact store on S3: release manifests in, deployment reports out. Two REST calls
//! (`GetObject`, `PutObject`, path-style) signed here ([`SignedHttp`]), not the SDK's S3
//! client: that client links every CRC table of its flexible checksums (`crc-fast`, about
//! 0.8 MB of the arm64 bootstrap; BENCHMARKS.md), and greenlight reads a manifest of a few
//! hundred bytes and writes a report.

use super::signed::{encode_path, SignedHttp, Signing};
use crate::{AdapterError, AdapterResult, ArtifactStore};
use async_trait::async_trait;
use std::time::Duration;

/// Release manifests in, reports out (`<report prefix><service>/<deploy id>.json`).
pub struct S3Store {
    pub http: SignedHttp,
    pub bucket: String,
    pub report_prefix: String,
}

/// Largest release manifest read (they are a few hundred bytes).
const MAX_MANIFEST_BYTES: usize = 64 * 1024;
/// The longest one S3 call may take.
const TIMEOUT: Duration = Duration::from_secs(10);

impl S3Store {
    /// `method` on `s3://bucket/key`: the answer, or the adapter's error for S3's.
    async fn call(
        &self,
        operation: &'static str,
        method: &str,
        (bucket, key): (&str, &str),
        headers: &[(&str, String)],
        body: &[u8],
    ) -> AdapterResult<super::signed::Answer> {
        let region = self.http.region.clone();
        let url = format!(
            "{}/{}/{}",
            self.http.endpoint_of("s3", &region),
            encode_path(bucket),
            encode_path(key)
        );
        let failed = |message: String, retryable: bool| AdapterError::Aws {
            service: "s3",
            operation,
            message,
            retryable,
        };
        let signing = Signing {
            service: "s3",
            region: &region,
            s3: true,
        };
        let answer = self
            .http
            .send(method, &url, headers, body, Some(signing), TIMEOUT)
            .await
            .map_err(|why| failed(why, true))?
            .ok_or_else(|| failed(format!("no answer within {}s", TIMEOUT.as_secs()), true))?;
        match answer.status {
            200..=299 => Ok(answer),
            404 => Err(AdapterError::NotFound(format!("s3://{bucket}/{key}"))),
            status => {
                // S3's error document: <Error><Code>SlowDown</Code><Message>...</Message>.
                let text = String::from_utf8_lossy(&answer.body);
                let code = text
                    .split("<Code>")
                    .nth(1)
                    .and_then(|rest| rest.split("</Code>").next())
                    .unwrap_or("");
                let retryable = status >= 500 || status == 429 || matches!(code, "SlowDown" | "RequestTimeout");
                Err(failed(format!("HTTP {status} {code}"), retryable))
            }
        }
    }
}

#[async_trait]
impl ArtifactStore for S3Store {
    async fn get(&self, bucket: &str, key: &str) -> AdapterResult<Vec<u8>> {
        let answer = self.call("GetObject", "GET", (bucket, key), &[], &[]).await?;
        if answer.body.len() > MAX_MANIFEST_BYTES {
            return Err(AdapterError::Invalid(format!(
                "s3://{bucket}/{key} is larger than {MAX_MANIFEST_BYTES} bytes; a release manifest names one AMI"
            )));
        }
        Ok(answer.body)
    }

    async fn put_report(&self, service: &str, deploy_id: &str, body: &[u8]) -> AdapterResult<String> {
        let key = format!("{}{service}/{deploy_id}.json", self.report_prefix);
        let headers = [("content-type", "application/json".to_string())];
        self.call("PutObject", "PUT", (&self.bucket, &key), &headers, body)
            .await?;
        Ok(key)
    }
}
