//! Parsing of the events that start deployments, from their EventBridge envelopes:
//! - our own `ImagePublished` (`source: greenlight`);
//! - EC2 Image Builder `Image State Change` with state `AVAILABLE`;
//! - S3 `Object Created` for a release manifest `<prefix><service>/<version>.json`.
//!
//! Every field that reaches AWS is validated here; a rejected event changes nothing.

use crate::decide::ImageRequest;
use crate::ids::{check_ami, check_service};
use crate::version::Version;
use serde::Deserialize;
use serde_json::Value;

/// Our own event source.
pub const SOURCE: &str = "greenlight";
/// Detail-type of our image-published event.
pub const IMAGE_PUBLISHED: &str = "ImagePublished";
/// Detail-type of EC2 Image Builder state changes.
pub const IMAGE_BUILDER_STATE_CHANGE: &str = "EC2 Image Builder Image State Change";
/// Default key prefix of release manifests in the artifact bucket.
pub const MANIFEST_PREFIX: &str = "releases/";

/// A parsed inbound event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Deploy this image (our own event).
    Image(ImageRequest),
    /// An Image Builder image became AVAILABLE; its AMI is looked up by the image ARN.
    ImageBuilder {
        image_arn: String,
        image_name: String,
        version: String,
    },
    /// A release manifest was uploaded; its body names the AMI.
    Manifest {
        bucket: String,
        key: String,
        service: String,
        version: String,
    },
    /// A well-formed event that needs no action (e.g. an image that failed to build).
    Ignored(String),
}

/// Why an inbound event was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error("unsupported event: source {event_source:?}, detail-type {detail_type:?}; greenlight accepts ImagePublished (source greenlight), EC2 Image Builder Image State Change and S3 Object Created")]
    Unsupported { event_source: String, detail_type: String },
    #[error("invalid event: {0}")]
    Invalid(String),
}

fn text<'a>(value: &'a Value, pointer: &str) -> Result<&'a str, InboundError> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| InboundError::Malformed(format!("missing string field {pointer}")))
}

fn bounded(field: &str, value: &str, max: usize) -> Result<(), InboundError> {
    if value.len() > max || value.chars().any(char::is_control) {
        return Err(InboundError::Invalid(format!(
            "{field} must be at most {max} characters with no control characters"
        )));
    }
    Ok(())
}

/// The `detail` of our `ImagePublished` event.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImagePublishedDetail {
    service: String,
    version: String,
    ami: String,
    #[serde(default)]
    requested_by: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    attempt: Option<u32>,
}

/// Parses one EventBridge event.
pub fn parse(event: &Value, manifest_prefix: &str) -> Result<Inbound, InboundError> {
    if !event.is_object() {
        return Err(InboundError::Malformed(
            "expected a JSON object (an EventBridge event)".into(),
        ));
    }
    let source = text(event, "/source")?;
    let detail_type = text(event, "/detail-type")?;
    let detail = event
        .get("detail")
        .filter(|d| d.is_object())
        .ok_or_else(|| InboundError::Malformed("missing object field detail".into()))?;
    match (source, detail_type) {
        (SOURCE, IMAGE_PUBLISHED) => {
            let d: ImagePublishedDetail = serde_json::from_value(detail.clone())
                .map_err(|e| InboundError::Malformed(format!("ImagePublished detail: {e}")))?;
            check_service(&d.service).map_err(|e| InboundError::Invalid(e.to_string()))?;
            check_ami(&d.ami).map_err(|e| InboundError::Invalid(e.to_string()))?;
            Version::parse(&d.version).map_err(|e| InboundError::Invalid(e.to_string()))?;
            let requested_by = d.requested_by.unwrap_or_else(|| "unknown".into());
            bounded("requested_by", &requested_by, 128)?;
            if let Some(reason) = &d.reason {
                bounded("reason", reason, 512)?;
            }
            let attempt = d.attempt.unwrap_or(1);
            if !(1..=1000).contains(&attempt) {
                return Err(InboundError::Invalid("attempt must be between 1 and 1000".into()));
            }
            Ok(Inbound::Image(ImageRequest {
                service: d.service,
                version: d.version,
                ami: d.ami,
                source: SOURCE.into(),
                requested_by,
                reason: d.reason,
                attempt,
            }))
        }
        ("aws.imagebuilder", IMAGE_BUILDER_STATE_CHANGE) => {
            let status = text(detail, "/state/status")?;
            let image_arn = event
                .pointer("/resources/0")
                .and_then(Value::as_str)
                .ok_or_else(|| InboundError::Malformed("missing resources[0] (the image ARN)".into()))?;
            if status != "AVAILABLE" {
                return Ok(Inbound::Ignored(format!(
                    "image {image_arn} is {status}, not AVAILABLE"
                )));
            }
            let (image_name, version) = parse_image_arn(image_arn)?;
            Ok(Inbound::ImageBuilder {
                image_arn: image_arn.to_string(),
                image_name,
                version,
            })
        }
        ("aws.s3", "Object Created") => {
            let bucket = text(detail, "/bucket/name")?;
            let key = text(detail, "/object/key")?;
            let (service, version) = parse_manifest_key(key, manifest_prefix)?;
            Ok(Inbound::Manifest {
                bucket: bucket.to_string(),
                key: key.to_string(),
                service,
                version,
            })
        }
        _ => Err(InboundError::Unsupported {
            event_source: source.chars().take(64).collect(),
            detail_type: detail_type.chars().take(64).collect(),
        }),
    }
}

/// The EventBridge rules that route image-published events to start-deployment, as
/// `(rule name, event pattern)`; used by the local runner and the infrastructure template.
pub fn event_patterns(manifest_bucket: &str, manifest_prefix: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "greenlight-image-published",
            serde_json::json!({ "source": [SOURCE], "detail-type": [IMAGE_PUBLISHED] }),
        ),
        (
            "greenlight-image-builder-available",
            serde_json::json!({
                "source": ["aws.imagebuilder"],
                "detail-type": [IMAGE_BUILDER_STATE_CHANGE],
                "detail": { "state": { "status": ["AVAILABLE"] } }
            }),
        ),
        (
            "greenlight-release-manifest",
            serde_json::json!({
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {
                    "bucket": { "name": [manifest_bucket] },
                    "object": { "key": [{ "prefix": manifest_prefix }] }
                }
            }),
        ),
    ]
}

/// `arn:aws:imagebuilder:<region>:<account>:image/<name>/<version>/<build>` → (name, version).
pub fn parse_image_arn(arn: &str) -> Result<(String, String), InboundError> {
    let bad = || {
        InboundError::Invalid(format!(
            "{arn:?} is not an Image Builder image ARN (arn:aws:imagebuilder:REGION:ACCOUNT:image/NAME/VERSION/BUILD)"
        ))
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "imagebuilder" {
        return Err(bad());
    }
    let resource: Vec<&str> = parts[5].split('/').collect();
    match resource.as_slice() {
        ["image", name, version, build] if !name.is_empty() && !build.is_empty() && Version::parse(version).is_ok() => {
            bounded("image name", name, 128)?;
            Ok((name.to_string(), version.to_string()))
        }
        _ => Err(bad()),
    }
}

/// `<prefix><service>/<version>.json` → (service, version). Keys that could escape the
/// prefix or be read two ways (`..`, `//`, `%`, `\`) are refused.
pub fn parse_manifest_key(key: &str, prefix: &str) -> Result<(String, String), InboundError> {
    let bad = |why: &str| {
        InboundError::Invalid(format!(
            "manifest key {key:?} {why}; expected {prefix}<service>/<version>.json"
        ))
    };
    if key.contains("..") || key.contains("//") || key.contains('%') || key.contains('\\') {
        return Err(bad("is not a plain path"));
    }
    let rest = key
        .strip_prefix(prefix)
        .ok_or_else(|| bad("is outside the manifest prefix"))?;
    let (service, file) = rest.split_once('/').ok_or_else(|| bad("has no service folder"))?;
    let version = file.strip_suffix(".json").ok_or_else(|| bad("is not a .json file"))?;
    check_service(service).map_err(|e| InboundError::Invalid(e.to_string()))?;
    Version::parse(version).map_err(|e| InboundError::Invalid(e.to_string()))?;
    Ok((service.to_string(), version.to_string()))
}

/// A release manifest's body.
#[derive(Debug, Deserialize)]
struct ManifestBody {
    ami: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    requested_by: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// Turns a manifest body into a deployment request. The key decides service and version;
/// a `version` in the body must agree with it.
pub fn parse_manifest(body: &[u8], service: &str, version: &str) -> Result<ImageRequest, InboundError> {
    let m: ManifestBody = serde_json::from_slice(body)
        .map_err(|e| InboundError::Malformed(format!("manifest is not valid JSON: {e}")))?;
    check_ami(&m.ami).map_err(|e| InboundError::Invalid(e.to_string()))?;
    if let Some(v) = &m.version {
        if v != version {
            return Err(InboundError::Invalid(format!(
                "manifest says version {v:?} but its key says {version:?}"
            )));
        }
    }
    let requested_by = m.requested_by.unwrap_or_else(|| "s3-manifest".into());
    bounded("requested_by", &requested_by, 128)?;
    if let Some(reason) = &m.reason {
        bounded("reason", reason, 512)?;
    }
    Ok(ImageRequest {
        service: service.to_string(),
        version: version.to_string(),
        ami: m.ami,
        source: "s3-manifest".into(),
        requested_by,
        reason: m.reason,
        attempt: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(source: &str, detail_type: &str, detail: Value) -> Value {
        json!({"version": "0", "id": "e1", "detail-type": detail_type, "source": source,
               "account": "123456789012", "time": "2026-11-24T10:00:00Z", "region": "us-east-1",
               "resources": ["arn:aws:imagebuilder:us-east-1:123456789012:image/checkout/2.1.0/1"],
               "detail": detail})
    }

    #[test]
    fn parses_each_source() {
        let e = envelope(
            SOURCE,
            IMAGE_PUBLISHED,
            json!({"service": "checkout", "version": "v2", "ami": "ami-0123456789abcdef0"}),
        );
        assert!(
            matches!(parse(&e, MANIFEST_PREFIX).unwrap(), Inbound::Image(r) if r.version == "v2" && r.attempt == 1)
        );
        let e = envelope(
            "aws.imagebuilder",
            IMAGE_BUILDER_STATE_CHANGE,
            json!({"state": {"status": "AVAILABLE"}}),
        );
        assert!(
            matches!(parse(&e, MANIFEST_PREFIX).unwrap(), Inbound::ImageBuilder { image_name, version, .. } if image_name == "checkout" && version == "2.1.0")
        );
        let e = envelope(
            "aws.imagebuilder",
            IMAGE_BUILDER_STATE_CHANGE,
            json!({"state": {"status": "FAILED"}}),
        );
        assert!(matches!(parse(&e, MANIFEST_PREFIX).unwrap(), Inbound::Ignored(_)));
        let e = envelope(
            "aws.s3",
            "Object Created",
            json!({"bucket": {"name": "b"}, "object": {"key": "releases/checkout/v3.json"}}),
        );
        assert!(
            matches!(parse(&e, MANIFEST_PREFIX).unwrap(), Inbound::Manifest { service, version, .. } if service == "checkout" && version == "v3")
        );
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        let table: Vec<(Value, &str)> = vec![
            (json!([1, 2]), "JSON object"),
            (json!({"source": "greenlight"}), "detail-type"),
            (
                envelope(SOURCE, IMAGE_PUBLISHED, json!({"service": "checkout", "version": "v2"})),
                "ami",
            ),
            (
                envelope(
                    SOURCE,
                    IMAGE_PUBLISHED,
                    json!({"service": "Check Out", "version": "v2", "ami": "ami-12345678"}),
                ),
                "service name",
            ),
            (
                envelope(
                    SOURCE,
                    IMAGE_PUBLISHED,
                    json!({"service": "checkout", "version": "latest", "ami": "ami-12345678"}),
                ),
                "invalid version",
            ),
            (
                envelope(
                    SOURCE,
                    IMAGE_PUBLISHED,
                    json!({"service": "checkout", "version": "v2", "ami": "ami-12345678", "extra": 1}),
                ),
                "unknown field",
            ),
            (
                envelope("aws.ec2", "EC2 Instance State-change Notification", json!({})),
                "unsupported",
            ),
            (
                envelope(
                    "aws.s3",
                    "Object Created",
                    json!({"bucket": {"name": "b"}, "object": {"key": "releases/../secrets/v1.json"}}),
                ),
                "plain path",
            ),
            (
                envelope(
                    "aws.s3",
                    "Object Created",
                    json!({"bucket": {"name": "b"}, "object": {"key": "releases/checkout%2F..%2Fx/v1.json"}}),
                ),
                "plain path",
            ),
            (
                envelope(
                    "aws.s3",
                    "Object Created",
                    json!({"bucket": {"name": "b"}, "object": {"key": "other/checkout/v1.json"}}),
                ),
                "outside",
            ),
        ];
        for (event, want) in table {
            let err = parse(&event, MANIFEST_PREFIX).unwrap_err().to_string();
            assert!(err.contains(want), "{event}: {err:?} should mention {want:?}");
        }
    }

    #[test]
    fn manifest_body_must_agree_with_its_key() {
        let ok = parse_manifest(br#"{"ami": "ami-12345678"}"#, "checkout", "v3").unwrap();
        assert_eq!(ok.ami, "ami-12345678");
        assert!(parse_manifest(br#"{"ami": "ami-12345678", "version": "v4"}"#, "checkout", "v3").is_err());
        assert!(parse_manifest(b"not json", "checkout", "v3").is_err());
        assert!(parse_manifest(br#"{"ami": "ami-zz"}"#, "checkout", "v3").is_err());
    }
}
