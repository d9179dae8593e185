//! AWS REST calls signed here with SigV4 (`aws-sigv4`, which the SDK links anyway) and sent on
//! the SDK's own HTTP connector (hyper, rustls on ring): for the few calls greenlight makes to
//! a service whose SDK client would cost hundreds of kilobytes of the one bootstrap (its 6 MiB
//! budget, BENCHMARKS.md): S3's `GetObject`/`PutObject` (`s3.rs`; the SDK's S3 client links
//! every CRC table of `crc-fast` for its flexible checksums, about 0.8 MB), Lambda's `Invoke`
//! and Secrets Manager's `GetSecretValue` (`hooks.rs`). Also plain HTTPS (a webhook).

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use std::time::{Duration, SystemTime};

/// Sends requests with the process's credentials, to `AWS_ENDPOINT_URL` if set.
#[derive(Clone)]
pub struct SignedHttp {
    connector: SharedHttpConnector,
    credentials: Option<SharedCredentialsProvider>,
    /// `AWS_ENDPOINT_URL` (the local emulator) instead of each service's regional endpoint.
    endpoint: Option<String>,
    /// The configuration's region.
    pub region: String,
}

impl std::fmt::Debug for SignedHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedHttp")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish()
    }
}

/// How a request is signed: the service's signing name, the region, and S3's variant of
/// SigV4 (the path taken as encoded once, not normalised; the payload's SHA-256 in
/// `x-amz-content-sha256`).
#[derive(Debug, Clone, Copy)]
pub struct Signing<'a> {
    pub service: &'a str,
    pub region: &'a str,
    pub s3: bool,
}

impl<'a> Signing<'a> {
    pub fn service(service: &'a str, region: &'a str) -> Self {
        Signing {
            service,
            region,
            s3: false,
        }
    }
}

/// A response: its status, its headers (names in lower case), its body (bounded).
pub struct Answer {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

/// The most of a response body read (bytes); a longer one is cut here.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

impl SignedHttp {
    /// Requests with `sdk`'s credentials, endpoint, region and TLS stack.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
        let connector = aws_smithy_http_client::ConnectorBuilder::default()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build();
        SignedHttp {
            connector: SharedHttpConnector::new(connector),
            credentials: sdk.credentials_provider(),
            endpoint: sdk.endpoint_url().map(|e| e.trim_end_matches('/').to_string()),
            region: sdk.region().map_or_else(|| "us-east-1".to_string(), |r| r.to_string()),
        }
    }

    /// `service`'s endpoint in `region` (or the configured one).
    pub fn endpoint_of(&self, service: &str, region: &str) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("https://{service}.{region}.amazonaws.com"))
    }

    /// Sends `method url` with `headers` and `body` within `timeout`, signed as `sign` says
    /// (None: unsigned). Ok(None): no answer in time; Err: no answer at all (why).
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
        sign: Option<Signing<'_>>,
        timeout: Duration,
    ) -> Result<Option<Answer>, String> {
        let mut all: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let host = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', '?']).next())
            .unwrap_or("")
            .to_string();
        all.push(("host".into(), host));
        if let Some(signing) = sign {
            all.extend(self.signature(method, url, &all, body, signing).await?);
        }
        let mut request = HttpRequest::new(SdkBody::from(body.to_vec()));
        request.set_uri(url).map_err(|e| format!("bad URL {url}: {e}"))?;
        request.set_method(method).map_err(|e| e.to_string())?;
        for (name, value) in &all {
            request
                .headers_mut()
                .try_insert(name.clone(), value.clone())
                .map_err(|e| format!("bad header {name}: {e}"))?;
        }
        let call = async {
            let response = self.connector.call(request).await.map_err(|e| format!("{e}"))?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect();
            let mut stream = aws_smithy_types::byte_stream::ByteStream::new(response.into_body());
            let mut body = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| format!("reading the answer: {e}"))?;
                body.extend_from_slice(&chunk[..chunk.len().min(MAX_BODY_BYTES - body.len())]);
                if body.len() >= MAX_BODY_BYTES {
                    break;
                }
            }
            Ok::<_, String>(Answer { status, headers, body })
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(answer) => answer.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The SigV4 headers of `method url` with `headers` and `body`.
    async fn signature(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
        signing: Signing<'_>,
    ) -> Result<Vec<(String, String)>, String> {
        use aws_sigv4::http_request::{
            sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
            UriPathNormalizationMode,
        };
        let provider = self
            .credentials
            .as_ref()
            .ok_or("no AWS credentials configured".to_string())?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| format!("no AWS credentials: {e}"))?;
        let identity = credentials.into();
        let mut settings = SigningSettings::default();
        if signing.s3 {
            // As the SDK signs for S3.
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        }
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(signing.region)
            .name(signing.service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params).map_err(|e| e.to_string())?.into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }
}

/// `text` percent-encoded as a URI path (RFC 3986: unreserved characters and `/` kept).
pub fn encode_path(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_unreserved_characters_and_slashes_only() {
        assert_eq!(
            encode_path("releases/checkout/v2.7.0+build.5.json"),
            "releases/checkout/v2.7.0%2Bbuild.5.json"
        );
        assert_eq!(encode_path("a b/ü"), "a%20b/%C3%BC");
    }
}
