//! Parsing of every event greenlight receives, in the three shapes AWS delivers them
//! ([`parse`] tells them apart; a payload that is none of them is refused naming all three):
//! - an **EventBridge event** (`source`, `detail-type`, `detail`): our own `ImagePublished`,
//!   `RollbackRequested`, `AbortRequested` and `PromoteRequested` (`source: greenlight`);
//!   EC2 Image Builder `Image State Change` with state `AVAILABLE`; EC2 `AMI State Change`
//!   with state `available` (the AMI's tags name service and version); S3 `Object Created`
//!   for a release manifest `<prefix><service>/<version>.json`; CloudWatch `Alarm State
//!   Change`;
//! - an **S3 event notification** (`Records`, S3 → Lambda or SQS directly): each
//!   `ObjectCreated:*` record a release manifest, its form-encoded key decoded
//!   ([`crate::form`]) and then held to the same rules as the EventBridge key;
//! - a **CloudWatch alarm's Lambda action** (`source: aws.cloudwatch`, `alarmData`, no
//!   envelope): the same [`AlarmChange`] as its EventBridge form, with the same identity.
//!
//! Every field that reaches AWS is validated here; a rejected event changes nothing. The
//! EventBridge rules that route these events are here too, with the bus each listens on
//! ([`RuleBus`]: greenlight's commands only on its command bus, AWS's events on the default
//! bus, where greenlight's source is only logged, [`ignored_commands_pattern`]).

use crate::detail;
use crate::ids::{check_ami, check_service, quote, sanitize};
use crate::model::{ImageSource, Trigger};
use crate::request::{ImageRequest, RevertRequest};
use crate::version::Version;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Our own event source.
pub const SOURCE: &str = "greenlight";
/// Detail-type of our image-published event.
pub const IMAGE_PUBLISHED: &str = "ImagePublished";
/// Detail-type of EC2 Image Builder state changes.
pub const IMAGE_BUILDER_STATE_CHANGE: &str = "EC2 Image Builder Image State Change";
/// Default key prefix of release manifests in the artifact bucket.
pub const MANIFEST_PREFIX: &str = "releases/";
/// Detail-type of our rollback request (an engineer, the CLI, a runbook).
pub const ROLLBACK_REQUESTED: &str = "RollbackRequested";
/// Detail-type of our request to stop the deployment in flight (an engineer, the CLI).
pub const ABORT_REQUESTED: &str = "AbortRequested";
/// Detail-type of our request to skip the remaining canary steps and the bake window.
pub const PROMOTE_REQUESTED: &str = "PromoteRequested";
/// Detail-type of CloudWatch alarm state changes.
pub const ALARM_STATE_CHANGE: &str = "CloudWatch Alarm State Change";
/// Detail-type of EC2 AMI state changes (`source: aws.ec2`).
pub const AMI_STATE_CHANGE: &str = "EC2 AMI State Change";
/// The AMI tag naming the service an image is a release of (an `EC2 AMI State Change` deploys
/// it); greenlight also tags the instances it launches with it.
pub const SERVICE_TAG: &str = "greenlight:service";
/// The AMI tag naming the version an image is (and the instances greenlight launches).
pub const VERSION_TAG: &str = "greenlight:version";
/// The most records one S3 event notification may carry (S3 sends one per notification).
pub const MAX_RECORDS: usize = 100;
/// The three shapes [`parse`] tries, for a payload that is none of them.
const SHAPES: &str = "an EventBridge event (source, detail-type, detail), an S3 event notification (Records) or a CloudWatch alarm's Lambda action (source aws.cloudwatch, alarmData)";

/// Source of EventBridge's scheduled rules' events.
pub const SCHEDULE_SOURCE: &str = "aws.events";
/// Detail-type of EventBridge's scheduled rules' events (the reconcile's tick).
pub const SCHEDULED_EVENT: &str = "Scheduled Event";
/// The schedule of `reconcile-services` (the template's `ScheduleExpression`), every
/// [`crate::plan::RECONCILE_INTERVAL_S`].
pub const RECONCILE_SCHEDULE: &str = "rate(5 minutes)";

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
    /// An S3 event notification's records (S3 → Lambda or SQS directly), each a release
    /// manifest or the reason it is refused; every record is handled on its own, and at
    /// least one is a manifest (a notification with none is refused whole).
    Manifests(Vec<Result<ManifestObject, InboundError>>),
    /// An EC2 AMI became available; its tags name the service and version
    /// ([`ami_request`]), read by start-deployment before anything else.
    Ami { ami: String },
    /// An engineer asked to roll a service back.
    Rollback(RevertRequest),
    /// A CloudWatch alarm changed state; the service is found by the alarm's name.
    Alarm(AlarmChange),
    /// An engineer asked to abort or promote the deployment in flight.
    Steer(SteerRequest),
    /// A well-formed event that needs no action (e.g. an image that failed to build).
    Ignored(String),
}

/// A release manifest an S3 event notification's record names (its key decoded and checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestObject {
    pub bucket: String,
    pub key: String,
    pub service: String,
    pub version: String,
}

/// What an engineer asks of the deployment in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SteerAction {
    /// Stop it: traffic back on the previous version, green terminated (`AbortRequested`).
    Abort,
    /// Skip its remaining canary steps and bake window (`PromoteRequested`).
    Promote,
}

impl SteerAction {
    /// `abort` or `promote`.
    pub fn as_str(self) -> &'static str {
        match self {
            SteerAction::Abort => "abort",
            SteerAction::Promote => "promote",
        }
    }
}

impl std::fmt::Display for SteerAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `AbortRequested` or `PromoteRequested` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteerRequest {
    pub service: String,
    pub action: SteerAction,
    pub requested_by: String,
    pub reason: String,
    pub event_id: String,
}

/// A CloudWatch alarm's state, as CloudWatch spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

impl AlarmState {
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }

    /// The state CloudWatch names `text`, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        [AlarmState::Ok, AlarmState::Alarm, AlarmState::InsufficientData]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for AlarmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CloudWatch alarm state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmChange {
    pub alarm_name: String,
    pub state: AlarmState,
    /// The state before, when the event says (and names one of the three).
    pub previous_state: Option<AlarmState>,
    /// CloudWatch's words for the change.
    pub reason: String,
    pub event_id: String,
    pub event_time_ms: u64,
}

impl AlarmChange {
    /// The rollback this alarm asks of `service` (only meaningful in `ALARM`).
    pub fn revert_request(&self, service: &str) -> RevertRequest {
        let reason: String = self.reason.chars().take(300).collect();
        RevertRequest {
            service: service.to_string(),
            trigger: Trigger::Alarm,
            requested_by: format!("alarm:{}", self.alarm_name),
            reason: format!("alarm {} in ALARM: {reason}", self.alarm_name),
            to_version: None,
            event_id: self.event_id.clone(),
            event_time_ms: self.event_time_ms,
        }
    }
}

/// Why an inbound event was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error("unsupported event: source {event_source:?}, detail-type {detail_type:?}; greenlight accepts ImagePublished, RollbackRequested, AbortRequested and PromoteRequested (source greenlight), EC2 Image Builder Image State Change, EC2 AMI State Change, S3 Object Created and CloudWatch Alarm State Change, S3 event notifications (Records) and a CloudWatch alarm's Lambda action (alarmData)")]
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

/// An engineer's request must say who asked and why, within bounds (the ledger records both).
fn who_and_why(what: &str, requested_by: &str, reason: &str) -> Result<(), InboundError> {
    bounded("requested_by", requested_by, 128)?;
    bounded("reason", reason, 512)?;
    if requested_by.trim().is_empty() || reason.trim().is_empty() {
        return Err(InboundError::Invalid(format!(
            "{what} needs who asked (requested_by) and why (reason)"
        )));
    }
    Ok(())
}

/// The envelope's `id` and `time` (milliseconds since the epoch), which reverts record.
fn id_and_time(event: &Value) -> Result<(String, u64), InboundError> {
    let id = text(event, "/id")?;
    bounded("id", id, 128)?;
    let time = text(event, "/time")?;
    Ok((id.to_string(), parse_time_ms(time)?))
}

/// The shape of a payload a function receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An EventBridge event (a rule's target).
    EventBridge,
    /// An S3 event notification (`Records`), delivered by S3 directly.
    S3Notification,
    /// S3's `s3:TestEvent`, sent once when a notification is configured.
    S3TestEvent,
    /// A CloudWatch alarm's Lambda action (`alarmData`), invoked by CloudWatch directly.
    AlarmAction,
}

impl Shape {
    /// The shape `event` has (anything that is not a direct payload is read as an
    /// EventBridge event, whose parse says what is missing).
    pub fn of(event: &Value) -> Self {
        if event.get("Records").is_some() {
            Shape::S3Notification
        } else if event.get("alarmData").is_some() {
            Shape::AlarmAction
        } else if event.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
            Shape::S3TestEvent
        } else {
            Shape::EventBridge
        }
    }
}

/// Parses one payload: an EventBridge event, an S3 event notification or a CloudWatch
/// alarm's Lambda action.
pub fn parse(event: &Value, manifest_prefix: &str) -> Result<Inbound, InboundError> {
    if !event.is_object() {
        return Err(InboundError::Malformed(format!("expected a JSON object: {SHAPES}")));
    }
    match Shape::of(event) {
        Shape::EventBridge => parse_eventbridge(event, manifest_prefix),
        Shape::S3Notification => parse_s3_notification(event, manifest_prefix),
        Shape::AlarmAction => parse_alarm_action(event),
        Shape::S3TestEvent => Ok(Inbound::Ignored(
            "S3 test event (sent when a bucket notification is configured)".into(),
        )),
    }
}

/// An envelope field the EventBridge shape needs; missing, the payload is none of the shapes.
fn envelope_text<'a>(event: &'a Value, pointer: &str) -> Result<&'a str, InboundError> {
    text(event, pointer).map_err(|e| InboundError::Malformed(format!("{e}: expected {SHAPES}")))
}

/// Parses one EventBridge event.
fn parse_eventbridge(event: &Value, manifest_prefix: &str) -> Result<Inbound, InboundError> {
    let source = envelope_text(event, "/source")?;
    let detail_type = envelope_text(event, "/detail-type")?;
    let detail = event
        .get("detail")
        .filter(|d| d.is_object())
        .ok_or_else(|| InboundError::Malformed(format!("missing object field detail: expected {SHAPES}")))?;
    match (source, detail_type) {
        (SOURCE, IMAGE_PUBLISHED) => {
            let d: detail::ImagePublished = serde_json::from_value(detail.clone())
                .map_err(|e| InboundError::Malformed(format!("ImagePublished detail: {}", sanitize(&e.to_string()))))?;
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
                source: ImageSource::Greenlight,
                requested_by,
                reason: d.reason,
                attempt,
                rollback_of: None,
                repave_of: None,
                on_failure: d.on_failure,
            }))
        }
        (SOURCE, ROLLBACK_REQUESTED) => {
            let d: detail::RollbackRequested = serde_json::from_value(detail.clone()).map_err(|e| {
                InboundError::Malformed(format!("RollbackRequested detail: {}", sanitize(&e.to_string())))
            })?;
            check_service(&d.service).map_err(|e| InboundError::Invalid(e.to_string()))?;
            if let Some(v) = &d.to_version {
                Version::parse(v).map_err(|e| InboundError::Invalid(format!("to_version: {e}")))?;
            }
            who_and_why("a rollback", &d.requested_by, &d.reason)?;
            let (event_id, event_time_ms) = id_and_time(event)?;
            Ok(Inbound::Rollback(RevertRequest {
                service: d.service,
                trigger: Trigger::Engineer,
                requested_by: d.requested_by,
                reason: d.reason,
                to_version: d.to_version,
                event_id,
                event_time_ms,
            }))
        }
        (SOURCE, detail_type @ (ABORT_REQUESTED | PROMOTE_REQUESTED)) => {
            let d: detail::SteerRequested = serde_json::from_value(detail.clone())
                .map_err(|e| InboundError::Malformed(format!("{detail_type} detail: {}", sanitize(&e.to_string()))))?;
            check_service(&d.service).map_err(|e| InboundError::Invalid(e.to_string()))?;
            who_and_why(detail_type, &d.requested_by, &d.reason)?;
            let (event_id, _) = id_and_time(event)?;
            Ok(Inbound::Steer(SteerRequest {
                service: d.service,
                action: if detail_type == ABORT_REQUESTED {
                    SteerAction::Abort
                } else {
                    SteerAction::Promote
                },
                requested_by: d.requested_by,
                reason: d.reason,
                event_id,
            }))
        }
        ("aws.cloudwatch", ALARM_STATE_CHANGE) => {
            let (envelope_id, event_time_ms) = id_and_time(event)?;
            // The transition's identity when CloudWatch says when it happened (it always
            // does), so that its direct Lambda action is the same request; else the envelope's.
            let at_ms = detail
                .pointer("/state/timestamp")
                .and_then(Value::as_str)
                .and_then(|t| crate::rfc3339::parse_ms(t).ok());
            alarm_change(detail, at_ms.ok_or(envelope_id), event_time_ms).map(Inbound::Alarm)
        }
        ("aws.ec2", AMI_STATE_CHANGE) => {
            let ami = text(detail, "/ImageId")?;
            check_ami(ami).map_err(|e| InboundError::Invalid(e.to_string()))?;
            let state = text(detail, "/State")?;
            if state != "available" {
                let error = detail
                    .get("ErrorMessage")
                    .and_then(Value::as_str)
                    .filter(|m| !m.is_empty())
                    .map(|m| format!(" ({})", sanitize(m)))
                    .unwrap_or_default();
                return Ok(Inbound::Ignored(format!(
                    "AMI {ami} is {}, not available{error}",
                    sanitize(state)
                )));
            }
            Ok(Inbound::Ami { ami: ami.to_string() })
        }
        ("aws.imagebuilder", IMAGE_BUILDER_STATE_CHANGE) => {
            let status = text(detail, "/state/status")?;
            let image_arn = event
                .pointer("/resources/0")
                .and_then(Value::as_str)
                .ok_or_else(|| InboundError::Malformed("missing resources[0] (the image ARN)".into()))?;
            if status != "AVAILABLE" {
                return Ok(Inbound::Ignored(format!(
                    "image {} is {}, not AVAILABLE",
                    sanitize(image_arn),
                    sanitize(status)
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
            // EventBridge's `detail.object.key` is the key itself: S3's EventBridge message
            // structure documents it as plain (`"key": "example-key"`) and, unlike the event
            // notification structure (`Records`, "the object key name value is URL encoded"),
            // says nothing of encoding. It is not decoded; a `%` in it is refused anyway
            // ([`parse_manifest_key`]), so a key could never be read two ways.
            let bucket = text(detail, "/bucket/name")?;
            check_bucket(bucket)?;
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

/// One CloudWatch alarm transition, from the EventBridge event's `detail` or the Lambda
/// action's `alarmData` (the same fields): its identity is the transition's
/// ([`crate::ids::alarm_transition_id`], from when the state was entered) or, when that is
/// not known, the envelope's id.
fn alarm_change(alarm: &Value, identity: Result<u64, String>, event_time_ms: u64) -> Result<AlarmChange, InboundError> {
    let alarm_name = text(alarm, "/alarmName")?;
    bounded("alarmName", alarm_name, 255)?;
    let state_text = text(alarm, "/state/value")?;
    let state = AlarmState::parse(state_text)
        .ok_or_else(|| InboundError::Invalid(format!("unknown alarm state {}", quote(state_text))))?;
    let event_id = match identity {
        Ok(at_ms) => crate::ids::alarm_transition_id(alarm_name, state.as_str(), at_ms),
        Err(envelope_id) => envelope_id,
    };
    Ok(AlarmChange {
        alarm_name: alarm_name.to_string(),
        state,
        previous_state: alarm
            .pointer("/previousState/value")
            .and_then(Value::as_str)
            .and_then(AlarmState::parse),
        // CloudWatch's words, recorded with a revert: no control characters, bounded.
        reason: sanitize(
            alarm
                .pointer("/state/reason")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ),
        event_id,
        event_time_ms,
    })
}

/// A CloudWatch alarm's Lambda action: `{source: aws.cloudwatch, alarmArn, accountId, time,
/// region, alarmData: {alarmName, state: {value, reason, timestamp}, previousState,
/// configuration}}`, times like `2026-11-24T10:41:40.985+0000`. No envelope id: the identity
/// is the transition's (`alarmData.state.timestamp`, required), as in the EventBridge form.
fn parse_alarm_action(event: &Value) -> Result<Inbound, InboundError> {
    let source = event.get("source").and_then(Value::as_str).unwrap_or_default();
    if source != "aws.cloudwatch" {
        return Err(InboundError::Malformed(format!(
            "a payload with alarmData is a CloudWatch alarm's Lambda action, whose source is aws.cloudwatch, not {}",
            quote(source)
        )));
    }
    let alarm = event
        .get("alarmData")
        .filter(|d| d.is_object())
        .ok_or_else(|| InboundError::Malformed("missing object field alarmData".into()))?;
    let at = text(alarm, "/state/timestamp")?;
    let at_ms = parse_time_ms(at).map_err(|e| InboundError::Invalid(format!("alarmData.state.timestamp: {e}")))?;
    let time = text(event, "/time")?;
    let event_time_ms = parse_time_ms(time)?;
    alarm_change(alarm, Ok(at_ms), event_time_ms).map(Inbound::Alarm)
}

/// An S3 event notification (S3 → Lambda or SQS directly): `{Records: [{eventSource: aws:s3,
/// eventName: ObjectCreated:Put, s3: {bucket: {name}, object: {key, size, eTag, sequencer}},
/// eventTime, ...}]}`. Each record is decided on its own (one refused record does not hide the
/// others); the notification is refused whole when none is a release manifest.
fn parse_s3_notification(event: &Value, manifest_prefix: &str) -> Result<Inbound, InboundError> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| InboundError::Malformed("an S3 event notification needs a non-empty Records array".into()))?;
    if records.len() > MAX_RECORDS {
        return Err(InboundError::Invalid(format!(
            "an S3 event notification with {} records (at most {MAX_RECORDS})",
            records.len()
        )));
    }
    let each: Vec<Result<ManifestObject, InboundError>> = records
        .iter()
        .map(|record| s3_record(record, manifest_prefix))
        .collect();
    if each.iter().all(Result::is_err) {
        let mut reasons = each.into_iter().filter_map(Result::err);
        return Err(match (reasons.next(), records.len()) {
            (Some(only), 1) => only,
            (first, n) => InboundError::Invalid(format!(
                "none of the {n} records of the S3 event notification is a release manifest; the first: {}",
                first.map(|e| e.to_string()).unwrap_or_default()
            )),
        });
    }
    Ok(Inbound::Manifests(each))
}

/// One record of an S3 event notification: an object created under the manifest prefix.
fn s3_record(record: &Value, manifest_prefix: &str) -> Result<ManifestObject, InboundError> {
    if !record.is_object() {
        return Err(InboundError::Malformed("an S3 record must be a JSON object".into()));
    }
    let source = text(record, "/eventSource")?;
    if source != "aws:s3" {
        return Err(InboundError::Invalid(format!(
            "record eventSource {} is not aws:s3",
            quote(source)
        )));
    }
    let name = text(record, "/eventName")?;
    if !name.starts_with("ObjectCreated:") {
        return Err(InboundError::Invalid(format!(
            "record eventName {} is not ObjectCreated:*; notify start-deployment of s3:ObjectCreated:* only",
            quote(name)
        )));
    }
    let bucket = text(record, "/s3/bucket/name")?;
    check_bucket(bucket)?;
    let encoded = text(record, "/s3/object/key")?;
    // "The object key name value is URL encoded" (form encoding: `+` is a space): decoded
    // first, then held to the very rules of the EventBridge key.
    let key = crate::form::decode(encoded).map_err(|e| InboundError::Invalid(format!("object key: {e}")))?;
    let (service, version) = parse_manifest_key(&key, manifest_prefix)
        .map_err(|e| InboundError::Invalid(format!("{e} (decoded from {})", quote(encoded))))?;
    Ok(ManifestObject {
        bucket: bucket.to_string(),
        key,
        service,
        version,
    })
}

/// The deployment an available AMI asks for, from its tags ([`SERVICE_TAG`],
/// [`VERSION_TAG`]): None when it has not both (an AMI that is no greenlight release;
/// ignored), an error when they name no valid service or version.
pub fn ami_request(
    ami: &str,
    tags: &std::collections::BTreeMap<String, String>,
) -> Result<Option<ImageRequest>, InboundError> {
    let (Some(service), Some(version)) = (tags.get(SERVICE_TAG), tags.get(VERSION_TAG)) else {
        return Ok(None);
    };
    check_ami(ami).map_err(|e| InboundError::Invalid(e.to_string()))?;
    check_service(service).map_err(|e| InboundError::Invalid(format!("AMI {ami} tag {SERVICE_TAG}: {e}")))?;
    Version::parse(version).map_err(|e| InboundError::Invalid(format!("AMI {ami} tag {VERSION_TAG}: {e}")))?;
    Ok(Some(ImageRequest {
        service: service.clone(),
        version: version.clone(),
        ami: ami.to_string(),
        source: ImageSource::Ec2Ami,
        requested_by: "ec2-ami-state-change".into(),
        reason: Some(format!("AMI {ami} available")),
        attempt: 1,
        rollback_of: None,
        repave_of: None,
        on_failure: None,
    }))
}

/// The function an event goes to: for EventBridge events the routing the template's rules
/// ([`event_patterns`], [`revert_patterns`], [`steer_patterns`]) and the local pump share;
/// for the direct shapes the function their sender is configured to invoke (an S3 event
/// notification: start-deployment; an alarm's Lambda action: revert-service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventTarget {
    /// Image-published events (ours, Image Builder's, EC2 AMIs', S3 manifests through
    /// EventBridge or notified directly), and anything else.
    StartDeployment,
    /// Rollback requests and alarm state changes (through EventBridge, or an alarm's action).
    RevertService,
    /// Abort and promote requests.
    SteerDeployment,
    /// The reconcile's schedule (EventBridge's `Scheduled Event`).
    ReconcileServices,
}

impl EventTarget {
    /// The function `event`'s rule targets (an event no rule matches goes to
    /// start-deployment, which rejects it with a reason).
    pub fn of(event: &Value) -> Self {
        match Shape::of(event) {
            Shape::AlarmAction => return EventTarget::RevertService,
            Shape::S3Notification | Shape::S3TestEvent => return EventTarget::StartDeployment,
            Shape::EventBridge => {}
        }
        let source = event["source"].as_str().unwrap_or_default();
        let detail_type = event["detail-type"].as_str().unwrap_or_default();
        match (source, detail_type) {
            (SOURCE, ROLLBACK_REQUESTED) | ("aws.cloudwatch", ALARM_STATE_CHANGE) => EventTarget::RevertService,
            (SOURCE, ABORT_REQUESTED | PROMOTE_REQUESTED) => EventTarget::SteerDeployment,
            (SCHEDULE_SOURCE, SCHEDULED_EVENT) => EventTarget::ReconcileServices,
            _ => EventTarget::StartDeployment,
        }
    }

    /// The Lambda function's name (`start-deployment`, `revert-service`, `steer-deployment`).
    pub fn function_name(self) -> &'static str {
        match self {
            EventTarget::StartDeployment => "start-deployment",
            EventTarget::RevertService => "revert-service",
            EventTarget::SteerDeployment => "steer-deployment",
            EventTarget::ReconcileServices => "reconcile-services",
        }
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
            "greenlight-ami-available",
            serde_json::json!({
                "source": ["aws.ec2"],
                "detail-type": [AMI_STATE_CHANGE],
                "detail": { "State": ["available"] }
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

/// The EventBridge rules that route revert triggers to revert-service, as
/// `(rule name, event pattern)`: our rollback requests and alarms going to ALARM.
pub fn revert_patterns() -> Vec<(&'static str, Value)> {
    vec![
        (
            "greenlight-rollback-requested",
            serde_json::json!({ "source": [SOURCE], "detail-type": [ROLLBACK_REQUESTED] }),
        ),
        (
            "greenlight-alarm-state-change",
            serde_json::json!({
                "source": ["aws.cloudwatch"],
                "detail-type": [ALARM_STATE_CHANGE],
                "detail": { "state": { "value": ["ALARM"] } }
            }),
        ),
    ]
}

/// The EventBridge rule that routes engineers' requests about the deployment in flight
/// (abort, promote) to steer-deployment, as `(rule name, event pattern)`.
pub fn steer_patterns() -> Vec<(&'static str, Value)> {
    vec![(
        "greenlight-steer-requested",
        serde_json::json!({ "source": [SOURCE], "detail-type": [ABORT_REQUESTED, PROMOTE_REQUESTED] }),
    )]
}

/// One run of the reconcile's schedule: EventBridge's `Scheduled Event` (`source:
/// aws.events`, an empty `detail`, the rule's ARN in `resources`). The run decides on its own
/// clock, not on `time` (a retried delivery is late).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledRun {
    pub event_id: String,
    /// The rule that fired (for the logs).
    pub rule: String,
}

/// Parses the reconcile's tick; anything else is refused naming what it expected.
pub fn parse_scheduled(event: &Value) -> Result<ScheduledRun, InboundError> {
    let source = text(event, "/source")?;
    let detail_type = text(event, "/detail-type")?;
    if (source, detail_type) != (SCHEDULE_SOURCE, SCHEDULED_EVENT) {
        return Err(InboundError::Invalid(format!(
            "reconcile-services runs on its EventBridge schedule ({RECONCILE_SCHEDULE}): expected source {SCHEDULE_SOURCE:?}, detail-type {SCHEDULED_EVENT:?}; got {}, {}",
            quote(source),
            quote(detail_type)
        )));
    }
    let event_id = text(event, "/id")?;
    bounded("id", event_id, 128)?;
    let rule = event["resources"][0].as_str().unwrap_or_default();
    bounded("resources", rule, 512)?;
    Ok(ScheduledRun {
        event_id: event_id.to_string(),
        rule: rule.to_string(),
    })
}

/// The EventBridge bus a rule of greenlight listens on.
///
/// greenlight's own commands (source [`SOURCE`]) are accepted only from greenlight's command
/// bus, whose resource policy names who may publish each of them; anyone allowed to call
/// PutEvents on the account's default bus could otherwise deploy or roll back. AWS's events
/// (sources beginning `aws.`) stay on the default bus, where AWS services send them and where
/// no customer can publish an `aws.` source (EventBridge's event structure reference:
/// customer-generated events may have any source "as long as it doesn't begin with aws.").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleBus {
    /// greenlight's command bus (the stack's `CommandBus`).
    Command,
    /// The account's default bus.
    Default,
}

impl RuleBus {
    /// The bus of the rule with `pattern`: the default bus when every source it matches
    /// begins with `aws.`, else the command bus.
    pub fn of(pattern: &Value) -> RuleBus {
        let sources = pattern["source"].as_array().into_iter().flatten();
        let mut sources = sources.map(|s| s.as_str().unwrap_or_default()).peekable();
        if sources.peek().is_some() && sources.all(|s| s.starts_with("aws.")) {
            RuleBus::Default
        } else {
            RuleBus::Command
        }
    }
}

/// The detail-types of greenlight's commands: what only the command bus routes.
pub const COMMANDS: [&str; 4] = [IMAGE_PUBLISHED, ROLLBACK_REQUESTED, ABORT_REQUESTED, PROMOTE_REQUESTED];

/// The rule on the default bus that catches greenlight's commands published there, as
/// `(rule name, event pattern)`: it targets a log group (in AWS) so each one leaves an audit
/// line, and no function; nothing deploys or reverts from the default bus.
pub fn ignored_commands_pattern() -> (&'static str, Value) {
    (
        "greenlight-commands-on-default-bus",
        serde_json::json!({ "source": [SOURCE] }),
    )
}

/// An RFC 3339 UTC time as AWS writes it in events, in milliseconds since the epoch
/// ([`crate::rfc3339::parse_ms`]).
pub fn parse_time_ms(text: &str) -> Result<u64, InboundError> {
    crate::rfc3339::parse_ms(text).map_err(|e| InboundError::Invalid(e.to_string()))
}

pub use crate::rfc3339::format as format_time;

/// `arn:aws:imagebuilder:<region>:<account>:image/<name>/<version>/<build>` → (name,
/// `<version>/<build>`): the build number is part of the release, so a rebuild of the same
/// recipe version (a patched base image) is a newer release than the build that is live.
pub fn parse_image_arn(arn: &str) -> Result<(String, String), InboundError> {
    let bad = || {
        InboundError::Invalid(format!(
            "{} is not an Image Builder image ARN (arn:aws:imagebuilder:REGION:ACCOUNT:image/NAME/VERSION/BUILD)",
            quote(arn)
        ))
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "imagebuilder" {
        return Err(bad());
    }
    let resource: Vec<&str> = parts[5].split('/').collect();
    match resource.as_slice() {
        ["image", name, version, build] if !name.is_empty() => {
            let release = Version::image_builder(version, build).map_err(|_| bad())?;
            bounded("image name", name, 128)?;
            Ok((name.to_string(), release.to_string()))
        }
        _ => Err(bad()),
    }
}

/// An S3 bucket name (3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a
/// letter or digit): the bucket an S3 event names is read from.
fn check_bucket(name: &str) -> Result<(), InboundError> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok = (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge(name.chars().next())
        && edge(name.chars().last());
    if ok {
        Ok(())
    } else {
        Err(InboundError::Invalid(format!(
            "bucket name {} is not an S3 bucket name",
            quote(name)
        )))
    }
}

/// `<prefix><service>/<version>.json` → (service, version). Keys that could escape the
/// prefix or be read two ways (`..`, `//`, `%`, `\`) are refused.
pub fn parse_manifest_key(key: &str, prefix: &str) -> Result<(String, String), InboundError> {
    let bad = |why: &str| {
        InboundError::Invalid(format!(
            "manifest key {} {why}; expected {prefix}<service>/<version>.json",
            quote(key)
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
    /// The release's own `on_failure` (`revert` or `hold`).
    #[serde(default)]
    on_failure: Option<crate::config::OnFailure>,
}

/// Turns a manifest body into a deployment request. The key decides service and version;
/// a `version` in the body must agree with it.
pub fn parse_manifest(body: &[u8], service: &str, version: &str) -> Result<ImageRequest, InboundError> {
    let m: ManifestBody = serde_json::from_slice(body)
        .map_err(|e| InboundError::Malformed(format!("manifest is not valid JSON: {}", sanitize(&e.to_string()))))?;
    check_ami(&m.ami).map_err(|e| InboundError::Invalid(e.to_string()))?;
    if let Some(v) = &m.version {
        if v != version {
            return Err(InboundError::Invalid(format!(
                "manifest says version {} but its key says {version:?}",
                quote(v)
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
        source: ImageSource::S3Manifest,
        requested_by,
        reason: m.reason,
        attempt: 1,
        rollback_of: None,
        repave_of: None,
        on_failure: m.on_failure,
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
    fn commands_are_routed_on_the_command_bus_and_aws_events_on_the_default_bus() {
        let rules: Vec<(&str, Value)> = event_patterns("b", "releases/")
            .into_iter()
            .chain(revert_patterns())
            .chain(steer_patterns())
            .collect();
        for (name, pattern) in &rules {
            let sources: Vec<&str> = pattern["source"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let want = if sources == [SOURCE] {
                RuleBus::Command
            } else {
                RuleBus::Default
            };
            assert!(
                sources == [SOURCE] || sources.iter().all(|s| s.starts_with("aws.")),
                "{name}"
            );
            assert_eq!(RuleBus::of(pattern), want, "{name}");
        }
        // Every command is routed, and only on the command bus.
        for command in COMMANDS {
            let routed: Vec<&str> = rules
                .iter()
                .filter(|(_, p)| p["detail-type"].as_array().unwrap().iter().any(|d| d == command))
                .map(|(name, p)| {
                    assert_eq!(RuleBus::of(p), RuleBus::Command, "{name}");
                    *name
                })
                .collect();
            assert_eq!(routed.len(), 1, "{command}: {routed:?}");
        }
        // The default bus's catch-all for commands is not a command rule.
        let (_, ignored) = ignored_commands_pattern();
        assert_eq!(ignored, json!({"source": [SOURCE]}));
        assert_eq!(RuleBus::of(&json!({})), RuleBus::Command);
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
            matches!(parse(&e, MANIFEST_PREFIX).unwrap(), Inbound::ImageBuilder { image_name, version, .. } if image_name == "checkout" && version == "2.1.0/1")
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
            json!({"bucket": {"name": "greenlight-artifacts"}, "object": {"key": "releases/checkout/v3.json"}}),
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
                    json!({"bucket": {"name": "greenlight-artifacts"}, "object": {"key": "releases/../secrets/v1.json"}}),
                ),
                "plain path",
            ),
            (
                envelope(
                    "aws.s3",
                    "Object Created",
                    json!({"bucket": {"name": "greenlight-artifacts"}, "object": {"key": "releases/checkout%2F..%2Fx/v1.json"}}),
                ),
                "plain path",
            ),
            (
                envelope(
                    "aws.s3",
                    "Object Created",
                    json!({"bucket": {"name": "greenlight-artifacts"}, "object": {"key": "other/checkout/v1.json"}}),
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
    fn parses_abort_and_promote_requests_with_who_and_why() {
        for (detail_type, action) in [
            (ABORT_REQUESTED, SteerAction::Abort),
            (PROMOTE_REQUESTED, SteerAction::Promote),
        ] {
            let e = envelope(
                SOURCE,
                detail_type,
                json!({"service": "checkout", "reason": "looks good", "requested_by": "alice"}),
            );
            match parse(&e, MANIFEST_PREFIX).unwrap() {
                Inbound::Steer(r) => {
                    assert_eq!(
                        (r.service.as_str(), r.action, r.event_id.as_str()),
                        ("checkout", action, "e1")
                    );
                    assert_eq!((r.requested_by.as_str(), r.reason.as_str()), ("alice", "looks good"));
                }
                other => panic!("{other:?}"),
            }
            for (detail, says) in [
                (json!({"service": "checkout", "reason": "x"}), "requested_by"),
                (
                    json!({"service": "checkout", "reason": " ", "requested_by": "a"}),
                    "who asked",
                ),
                (
                    json!({"service": "checkout", "reason": "x", "requested_by": "a", "to": "v1"}),
                    "unknown field",
                ),
                (
                    json!({"service": "no such/svc", "reason": "x", "requested_by": "a"}),
                    "service",
                ),
            ] {
                let err = parse(&envelope(SOURCE, detail_type, detail), MANIFEST_PREFIX).unwrap_err();
                assert!(err.to_string().contains(says), "{err}");
            }
        }
    }

    #[test]
    fn parses_rollbacks_and_alarms() {
        let e = envelope(
            SOURCE,
            ROLLBACK_REQUESTED,
            json!({"service": "checkout", "reason": "errors up", "requested_by": "alice"}),
        );
        match parse(&e, MANIFEST_PREFIX).unwrap() {
            Inbound::Rollback(r) => {
                assert_eq!(
                    (r.service.as_str(), r.trigger.as_str(), r.event_id.as_str()),
                    ("checkout", "engineer", "e1")
                );
                assert_eq!(r.event_time_ms, 1_795_514_400_000);
            }
            other => panic!("{other:?}"),
        }
        let alarm = |state: &str| {
            envelope(
                "aws.cloudwatch",
                ALARM_STATE_CHANGE,
                json!({"alarmName": "checkout-5xx", "state": {"value": state, "reason": "Threshold Crossed"},
                       "previousState": {"value": "OK"}}),
            )
        };
        match parse(&alarm("ALARM"), MANIFEST_PREFIX).unwrap() {
            Inbound::Alarm(a) => {
                let r = a.revert_request("checkout");
                assert_eq!(
                    (r.trigger.as_str(), r.requested_by.as_str()),
                    ("alarm", "alarm:checkout-5xx")
                );
                assert!(r.reason.contains("Threshold Crossed"), "{}", r.reason);
            }
            other => panic!("{other:?}"),
        }
        let table: Vec<(Value, &str)> = vec![
            (alarm("MAYBE"), "unknown alarm state"),
            (
                envelope(
                    SOURCE,
                    ROLLBACK_REQUESTED,
                    json!({"service": "checkout", "reason": "x"}),
                ),
                "requested_by",
            ),
            (
                envelope(
                    SOURCE,
                    ROLLBACK_REQUESTED,
                    json!({"service": "checkout", "reason": " ", "requested_by": "a"}),
                ),
                "who asked",
            ),
            (
                envelope(
                    SOURCE,
                    ROLLBACK_REQUESTED,
                    json!({"service": "checkout", "reason": "x", "requested_by": "a", "to_version": "latest"}),
                ),
                "to_version",
            ),
        ];
        for (event, want) in table {
            let err = parse(&event, MANIFEST_PREFIX).unwrap_err().to_string();
            assert!(err.contains(want), "{event}: {err:?} should mention {want:?}");
        }
        let mut no_time = alarm("ALARM");
        no_time.as_object_mut().unwrap().remove("time");
        assert!(parse(&no_time, MANIFEST_PREFIX)
            .unwrap_err()
            .to_string()
            .contains("/time"));
    }

    fn s3_event(bucket: &str, key: &str) -> Value {
        envelope(
            "aws.s3",
            "Object Created",
            json!({"bucket": {"name": bucket}, "object": {"key": key}}),
        )
    }

    #[test]
    fn manifest_keys_cannot_escape_the_prefix() {
        let table = [
            "releases/../config/checkout.json",
            "releases/checkout/../v1.json",
            "releases/..%2Fconfig/v1.json",
            "releases/%2e%2e/config/v1.json",
            "releases/%2E%2E%2Fconfig/v1.json",
            "releases/checkout%2Fv1.json",
            "releases/checkout%2fv1.json",
            "releases\\checkout\\v1.json",
            "releases/checkout\\..\\v1.json",
            "releases//checkout/v1.json",
            "releases/checkout//v1.json",
            "releases/./checkout/v1.json",
            "releases/checkout/./v1.json",
            "/releases/checkout/v1.json",
            "/etc/passwd",
            "releases/",
            "releases",
            "",
            "releases-evil/checkout/v1.json",
            "releases.evil/checkout/v1.json",
            "releasescheckout/v1.json",
            "reports/checkout/v1.json",
            "releases/checkout/v1.json/",
            "releases/checkout/sub/v1.json",
            "releases/checkout/v1",
            "releases/checkout/v1.JSON",
            "releases/checkout/.json",
            "releases/checkout/v1.json\u{0}",
            "releases/Checkout/v1.json",
            "releases/ch\u{0435}ckout/v1.json",
            "releases/checkout\u{ff0f}v1.json",
            "releases/ checkout/v1.json",
            "releases/checkout/v1.json?versionId=2",
        ];
        for key in table {
            let err = parse_manifest_key(key, MANIFEST_PREFIX).unwrap_err();
            assert!(matches!(err, InboundError::Invalid(_)), "{key:?}: {err}");
            let event = s3_event("greenlight-artifacts", key);
            let err = parse(&event, MANIFEST_PREFIX).unwrap_err();
            assert!(matches!(err, InboundError::Invalid(_)), "{key:?}: {err}");
            assert!(!err.to_string().contains(char::is_control), "{err}");
        }
        for (key, service, version) in [
            ("releases/checkout/v2.6.0.json", "checkout", "v2.6.0"),
            ("releases/a-1/2.0.0-rc.1.json", "a-1", "2.0.0-rc.1"),
        ] {
            assert_eq!(
                parse_manifest_key(key, MANIFEST_PREFIX).unwrap(),
                (service.to_string(), version.to_string())
            );
        }
    }

    #[test]
    fn s3_events_must_name_a_real_bucket() {
        let key = "releases/checkout/v2.6.0.json";
        let long = "b".repeat(64);
        for bad in [
            "",
            "b",
            "ab",
            "Greenlight",
            "a/b",
            "../x",
            "a b",
            "-abc",
            "abc-",
            "abc\n",
            "\u{e9}t\u{e9}",
            &long,
        ] {
            let err = parse(&s3_event(bad, key), MANIFEST_PREFIX).unwrap_err();
            assert!(err.to_string().contains("bucket name"), "{bad:?}: {err}");
        }
        for good in ["greenlight-artifacts", "my.bucket-1", "abc"] {
            assert!(parse(&s3_event(good, key), MANIFEST_PREFIX).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn what_events_say_comes_back_escaped_and_bounded() {
        // serde repeats an unknown field's name raw; the rejection escapes it.
        let detail = json!({"service": "checkout", "version": "v2", "ami": "ami-12345678", "\u{1b}[2J": 1});
        let err = parse(&envelope(SOURCE, IMAGE_PUBLISHED, detail), MANIFEST_PREFIX).unwrap_err();
        assert!(
            err.to_string().contains("\\u{1b}[2J") && !err.to_string().contains('\u{1b}'),
            "{err}"
        );
        // A huge hostile key is quoted shortened.
        let key = format!("releases/{}", "../".repeat(50_000));
        let err = parse(&s3_event("greenlight-artifacts", &key), MANIFEST_PREFIX).unwrap_err();
        assert!(err.to_string().len() < 400, "{err}");
        // CloudWatch's words, recorded with a revert: no control characters, bounded.
        let reason = format!("Threshold Crossed\n\u{1b}[31m{}", "x".repeat(10_000));
        let alarm = envelope(
            "aws.cloudwatch",
            ALARM_STATE_CHANGE,
            json!({"alarmName": "checkout-5xx", "state": {"value": "ALARM", "reason": reason},
                   "previousState": {"value": "OK\r\n"}}),
        );
        let Inbound::Alarm(a) = parse(&alarm, MANIFEST_PREFIX).unwrap() else {
            panic!("an alarm")
        };
        let r = a.revert_request("checkout");
        assert!(
            !r.reason.contains(char::is_control) && r.reason.chars().count() < 400,
            "{}",
            r.reason
        );
        assert!(r.reason.contains("Threshold Crossed\\n"), "{}", r.reason);
        assert_eq!(
            a.previous_state, None,
            "a previous state CloudWatch does not have is dropped"
        );
        // An ignored image's note is logged: escaped too.
        let mut failed = envelope(
            "aws.imagebuilder",
            IMAGE_BUILDER_STATE_CHANGE,
            json!({"state": {"status": "FAILED\n"}}),
        );
        failed["resources"] = json!(["arn:aws:imagebuilder:us-east-1:1:image/x/1.0.0/1\u{1b}[2J"]);
        let Inbound::Ignored(note) = parse(&failed, MANIFEST_PREFIX).unwrap() else {
            panic!("ignored")
        };
        assert!(!note.contains(char::is_control), "{note}");
    }

    #[test]
    fn parses_ami_state_changes_and_reads_service_and_version_from_the_tags() {
        let ami = |state: &str, extra: Value| {
            let mut detail = json!({"RequestId": "r-1", "ImageId": "ami-0123456789abcdef0", "State": state});
            detail
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            envelope("aws.ec2", AMI_STATE_CHANGE, detail)
        };
        assert_eq!(
            parse(&ami("available", json!({"ErrorMessage": ""})), MANIFEST_PREFIX).unwrap(),
            Inbound::Ami {
                ami: "ami-0123456789abcdef0".into()
            }
        );
        for (state, says) in [
            ("failed", "is failed, not available (Snapshot failed)"),
            ("deregistered", "is deregistered"),
            ("disabled", "is disabled"),
            ("pending\n", "pending\\n"),
        ] {
            let event = ami(state, json!({"ErrorMessage": "Snapshot failed"}));
            match parse(&event, MANIFEST_PREFIX).unwrap() {
                Inbound::Ignored(why) => assert!(why.contains(says), "{state}: {why}"),
                other => panic!("{state}: {other:?}"),
            }
        }
        let mut bad = ami("available", json!({}));
        bad["detail"]["ImageId"] = json!("ami-zz; rm -rf");
        assert!(parse(&bad, MANIFEST_PREFIX)
            .unwrap_err()
            .to_string()
            .contains("invalid AMI id"));
        bad["detail"].as_object_mut().unwrap().remove("ImageId");
        assert!(parse(&bad, MANIFEST_PREFIX)
            .unwrap_err()
            .to_string()
            .contains("/ImageId"));

        let tags = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let ok = ami_request(
            "ami-12345678",
            &tags(&[(SERVICE_TAG, "checkout"), (VERSION_TAG, "v2.7.0"), ("Name", "x")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (ok.service.as_str(), ok.version.as_str(), ok.source, ok.attempt),
            ("checkout", "v2.7.0", ImageSource::Ec2Ami, 1)
        );
        for missing in [
            tags(&[]),
            tags(&[(VERSION_TAG, "v2.7.0")]),
            tags(&[(SERVICE_TAG, "checkout")]),
            tags(&[("greenlight:Service", "checkout"), (VERSION_TAG, "v2.7.0")]),
        ] {
            assert_eq!(ami_request("ami-12345678", &missing), Ok(None), "{missing:?}");
        }
        for (bad, says) in [
            (
                tags(&[(SERVICE_TAG, "Check Out"), (VERSION_TAG, "v2")]),
                "greenlight:service",
            ),
            (
                tags(&[(SERVICE_TAG, "checkout"), (VERSION_TAG, "latest")]),
                "greenlight:version",
            ),
        ] {
            let err = ami_request("ami-12345678", &bad).unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
        }
    }

    fn s3_notification(records: &[(&str, &str)]) -> Value {
        let records: Vec<Value> = records
            .iter()
            .map(|(name, key)| {
                json!({"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                       "eventTime": "2026-11-24T10:00:00.000Z", "eventName": name,
                       "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "greenlight-artifacts"},
                              "object": {"key": key, "size": 64, "eTag": "0123", "sequencer": "0A1B"}}})
            })
            .collect();
        json!({ "Records": records })
    }

    #[test]
    fn s3_notifications_decode_each_key_then_hold_it_to_the_prefix() {
        let put = "ObjectCreated:Put";
        let manifests = |event: &Value| match parse(event, MANIFEST_PREFIX) {
            Ok(Inbound::Manifests(each)) => each,
            other => panic!("{event}: {other:?}"),
        };
        let each = manifests(&s3_notification(&[(put, "releases/checkout/v2.7.0%2Bbuild.5.json")]));
        assert_eq!(
            each,
            vec![Ok(ManifestObject {
                bucket: "greenlight-artifacts".into(),
                key: "releases/checkout/v2.7.0+build.5.json".into(),
                service: "checkout".into(),
                version: "v2.7.0+build.5".into(),
            })]
        );
        // Refused once decoded, however they are spelt encoded (a single record: the error).
        for key in [
            "releases/%2E%2E/other+team/v1.json",
            "releases/%2e%2e/config/v1.json",
            "releases/checkout%2F..%2Fx/v1.json",
            "releases/checkout%2Fv1.json%2F..%2F..%2Fx.json",
            "releases%2F..%2Fsecrets/checkout/v1.json",
            "releases/checkout/v1+.json",
            "releases/check+out/v1.json",
            "releases/checkout/v1.json%00",
            "releases/checkout/v1%2525.json",
            "releases/checkout/%5C..%5Cv1.json",
            "releases/checkout/v1.json%",
            "releases/checkout/v1%C3.json",
            "other/checkout/v1.json",
        ] {
            let err = parse(&s3_notification(&[(put, key)]), MANIFEST_PREFIX).unwrap_err();
            assert!(matches!(err, InboundError::Invalid(_)), "{key:?}: {err}");
            assert!(!err.to_string().contains(char::is_control), "{err}");
        }
        let escape = parse(
            &s3_notification(&[(put, "releases/%2E%2E/other+team/v1.json")]),
            MANIFEST_PREFIX,
        )
        .unwrap_err();
        assert!(
            escape.to_string().contains("not a plain path") && escape.to_string().contains("%2E%2E"),
            "{escape}"
        );
        // Several records: each on its own; refused ones keep their reason.
        let each = manifests(&s3_notification(&[
            (put, "releases/checkout/v3.json"),
            ("ObjectRemoved:Delete", "releases/checkout/v2.json"),
            ("ObjectCreated:CompleteMultipartUpload", "releases/%2E%2E/v1.json"),
            ("ObjectCreated:Copy", "releases/payments/1.0.0.json"),
        ]));
        assert_eq!(each.len(), 4);
        assert_eq!(each[0].as_ref().unwrap().version, "v3");
        assert!(each[1].as_ref().unwrap_err().to_string().contains("ObjectCreated"));
        assert!(each[2].as_ref().unwrap_err().to_string().contains("not a plain path"));
        assert_eq!(each[3].as_ref().unwrap().service, "payments");
        let none = parse(
            &s3_notification(&[("ObjectRemoved:Delete", "a"), (put, "releases/../x")]),
            MANIFEST_PREFIX,
        )
        .unwrap_err();
        assert!(none.to_string().contains("none of the 2 records"), "{none}");
        // The notification itself.
        for (event, says) in [
            (json!({"Records": []}), "non-empty Records"),
            (json!({"Records": {"s3": {}}}), "non-empty Records"),
            (json!({"Records": [1]}), "JSON object"),
            (
                json!({"Records": [{"eventSource": "aws:sqs", "eventName": put}]}),
                "aws:s3",
            ),
            (
                s3_notification(&vec![(put, "releases/checkout/v1.json"); 101]),
                "at most 100",
            ),
        ] {
            let err = parse(&event, MANIFEST_PREFIX).unwrap_err().to_string();
            assert!(err.contains(says), "{event}: {err}");
        }
        let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-24T10:00:00.000Z",
                                "Bucket": "greenlight-artifacts", "RequestId": "r", "HostId": "h"});
        assert!(matches!(parse(&test_event, MANIFEST_PREFIX), Ok(Inbound::Ignored(_))));
        assert_eq!(EventTarget::of(&test_event), EventTarget::StartDeployment);
    }

    fn alarm_action(state: &str, at: &str) -> Value {
        json!({"source": "aws.cloudwatch",
               "alarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:checkout-5xx",
               "accountId": "123456789012", "time": at, "region": "us-east-1",
               "alarmData": {"alarmName": "checkout-5xx",
                             "state": {"value": state, "reason": "Threshold Crossed", "timestamp": at},
                             "previousState": {"value": "OK", "reason": "ok", "timestamp": "2026-11-24T10:40:40.985+0000"},
                             "configuration": {"description": "5xx", "metrics": []}}})
    }

    #[test]
    fn an_alarms_lambda_action_is_the_same_request_as_its_eventbridge_form() {
        let at = "2026-11-24T10:41:40.985+0000";
        let Inbound::Alarm(direct) = parse(&alarm_action("ALARM", at), MANIFEST_PREFIX).unwrap() else {
            panic!("an alarm")
        };
        let mut bridged = envelope(
            "aws.cloudwatch",
            ALARM_STATE_CHANGE,
            json!({"alarmName": "checkout-5xx", "state": {"value": "ALARM", "reason": "Threshold Crossed", "timestamp": at},
                   "previousState": {"value": "OK"}}),
        );
        bridged["time"] = json!("2026-11-24T10:41:41Z");
        let Inbound::Alarm(via_eventbridge) = parse(&bridged, MANIFEST_PREFIX).unwrap() else {
            panic!("an alarm")
        };
        assert_eq!(direct.event_id, via_eventbridge.event_id);
        assert!(direct.event_id.starts_with("alarm-"), "{}", direct.event_id);
        assert_eq!(
            direct.revert_request("checkout"),
            RevertRequest {
                event_time_ms: 1_795_516_900_985,
                ..via_eventbridge.revert_request("checkout")
            }
        );
        assert_eq!(
            (direct.state, direct.previous_state),
            (AlarmState::Alarm, Some(AlarmState::Ok))
        );
        assert_eq!(EventTarget::of(&alarm_action("ALARM", at)), EventTarget::RevertService);
        // Another transition of the same alarm is another request.
        let Inbound::Alarm(later) =
            parse(&alarm_action("ALARM", "2026-11-24T11:00:00.000+0000"), MANIFEST_PREFIX).unwrap()
        else {
            panic!("an alarm")
        };
        assert_ne!(later.event_id, direct.event_id);
        let Inbound::Alarm(ok) = parse(&alarm_action("OK", at), MANIFEST_PREFIX).unwrap() else {
            panic!("an alarm")
        };
        assert_ne!(ok.event_id, direct.event_id);
        // Without the transition's time, the EventBridge form keeps its envelope id.
        bridged["detail"]["state"]["timestamp"] = json!("not a time");
        let Inbound::Alarm(enveloped) = parse(&bridged, MANIFEST_PREFIX).unwrap() else {
            panic!("an alarm")
        };
        assert_eq!(enveloped.event_id, "e1");

        let mut no_timestamp = alarm_action("ALARM", at);
        no_timestamp["alarmData"]["state"]
            .as_object_mut()
            .unwrap()
            .remove("timestamp");
        let mut foreign = alarm_action("ALARM", at);
        foreign["source"] = json!("aws.events");
        let mut colon_less_z = alarm_action("ALARM", at);
        colon_less_z["time"] = json!("2026-11-24T10:41:40.985+0100");
        for (event, says) in [
            (no_timestamp, "/state/timestamp"),
            (foreign, "source is aws.cloudwatch"),
            (colon_less_z, "RFC 3339"),
            (alarm_action("MAYBE", at), "unknown alarm state"),
            (json!({"alarmData": "x", "source": "aws.cloudwatch"}), "alarmData"),
            (json!({"detail": {}}), "S3 event notification (Records)"),
            (
                json!({"hello": "world"}),
                "CloudWatch alarm's Lambda action (source aws.cloudwatch, alarmData)",
            ),
            (json!("text"), "an EventBridge event"),
        ] {
            let err = parse(&event, MANIFEST_PREFIX).unwrap_err().to_string();
            assert!(err.contains(says), "{event}: {err}");
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
