//! The artifact store on S3: release manifests in, deployment reports out.

use super::error::aws_error;
use crate::{AdapterError, AdapterResult, ArtifactStore};
use async_trait::async_trait;

/// Release manifests in, reports out (`<report prefix><service>/<deploy id>.json`).
pub struct S3Store {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    pub report_prefix: String,
}

/// Largest release manifest read (they are a few hundred bytes).
const MAX_MANIFEST_BYTES: i64 = 64 * 1024;

#[async_trait]
impl ArtifactStore for S3Store {
    async fn get(&self, bucket: &str, key: &str) -> AdapterResult<Vec<u8>> {
        let out = self.client.get_object().bucket(bucket).key(key).send().await;
        let out = match out {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(AdapterError::NotFound(format!("s3://{bucket}/{key}")))
            }
            Err(e) => return Err(aws_error("s3", "GetObject", e)),
        };
        if out.content_length().unwrap_or(0) > MAX_MANIFEST_BYTES {
            return Err(AdapterError::Invalid(format!(
                "s3://{bucket}/{key} is larger than {MAX_MANIFEST_BYTES} bytes; a release manifest names one AMI"
            )));
        }
        let body = out.body.collect().await.map_err(|e| AdapterError::Aws {
            service: "s3",
            operation: "GetObject",
            message: format!("reading the body: {e}"),
            retryable: true,
        })?;
        Ok(body.into_bytes().to_vec())
    }

    async fn put_report(&self, service: &str, deploy_id: &str, body: &[u8]) -> AdapterResult<String> {
        let key = format!("{}{service}/{deploy_id}.json", self.report_prefix);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(body.to_vec().into())
            .send()
            .await
            .map_err(|e| aws_error("s3", "PutObject", e))?;
        Ok(key)
    }
}
