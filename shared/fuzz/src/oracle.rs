//! The oracle for greenlight-core's parsers: what they must do with any input, checked the
//! same way by the libFuzzer targets (`shared/fuzz/fuzz_targets`) and the stable property
//! test (`shared/core/tests/parsers.rs`, which includes this file).
//!
//! - No panic: a panic anywhere below is the failure itself.
//! - A rejection says why: its message is not blank, has no control characters besides
//!   line breaks, and no line longer than [`MAX_LINE_CHARS`] (a hostile input is quoted
//!   escaped and cut short, never pasted raw into logs and error responses).
//! - An acceptance is valid: what a parser lets through passes the validators (`ids`,
//!   `version`, `ServiceConfig::validate`) and the invariants below (e.g. a manifest key
//!   lies under the manifest prefix and is exactly `<prefix><service>/<version>.json`).
//!
//! Each check returns `Ok(true)` for an accepted input, `Ok(false)` for a well-rejected one
//! and `Err(violation)` otherwise; callers panic on a violation (libFuzzer) or collect them.

use greenlight_core::config::ServiceConfig;
use greenlight_core::ids::{check_ami, check_service, DeployId};
use greenlight_core::inbound::{self, Inbound};
use greenlight_core::model::{ImageSource, Trigger};
use greenlight_core::plan::StepInput;
use greenlight_core::version::Version;
use serde_json::Value;

/// The longest line a rejection message may have.
pub const MAX_LINE_CHARS: usize = 2048;

/// Accepted (`true`), rejected with a readable reason (`false`), or a violation.
pub type Verdict = Result<bool, String>;

/// The start of `text`, escaped, with its length: how a violation quotes an input.
pub fn preview(text: &str) -> String {
    let head: String = text.chars().take(160).collect();
    if head.len() == text.len() {
        format!("{head:?}")
    } else {
        format!("{head:?}… ({} bytes)", text.len())
    }
}

/// A rejection message must say something readable.
pub fn readable(what: &str, message: &str) -> Result<(), String> {
    if message.trim().is_empty() {
        return Err(format!("{what}: the rejection has an empty message"));
    }
    if let Some(c) = message.chars().find(|c| c.is_control() && *c != '\n') {
        return Err(format!(
            "{what}: the rejection message has the raw control character {c:?}: {}",
            preview(message)
        ));
    }
    if let Some(line) = message.lines().find(|l| l.chars().count() > MAX_LINE_CHARS) {
        return Err(format!(
            "{what}: a line of the rejection message has {} characters (at most {MAX_LINE_CHARS}): {}",
            line.chars().count(),
            preview(line)
        ));
    }
    Ok(())
}

/// A free-text field that reaches the ledger: bounded, no control characters.
fn text(what: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max || value.chars().any(char::is_control) {
        return Err(format!(
            "accepted {what} {} (at most {max} bytes, no control characters)",
            preview(value)
        ));
    }
    Ok(())
}

/// Who asked and why: as [`text`], and not blank.
fn who_and_why(requested_by: &str, reason: &str) -> Result<(), String> {
    text("requested_by", requested_by, 128)?;
    text("reason", reason, 512)?;
    if requested_by.trim().is_empty() || reason.trim().is_empty() {
        return Err(format!(
            "accepted a blank requested_by {} or reason {}",
            preview(requested_by),
            preview(reason)
        ));
    }
    Ok(())
}

/// A service name, checked against the rules written out independently of `ids.rs`.
fn service(name: &str) -> Result<(), String> {
    let ok = (1..=48).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok || check_service(name).is_err() {
        return Err(format!("accepted the service name {}", preview(name)));
    }
    Ok(())
}

/// An AMI id: `ami-` and 8 or 17 lowercase hex digits.
fn ami(id: &str) -> Result<(), String> {
    let ok = id.strip_prefix("ami-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if !ok || check_ami(id).is_err() {
        return Err(format!("accepted the AMI id {}", preview(id)));
    }
    Ok(())
}

/// A version: parses, is at most 64 ASCII characters with no path or URL syntax (a `/` only
/// before an Image Builder build number: digits to the end), and its canonical form parses
/// back to the same version.
fn version(text: &str) -> Result<(), String> {
    let parsed = Version::parse(text).map_err(|_| format!("accepted the version {}", preview(text)))?;
    let image_build_ok = match text.split_once('/') {
        None => true,
        Some((_, build)) => build
            .split('+')
            .next()
            .is_some_and(|b| !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit())),
    };
    let plain = text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b".-+/".contains(&b))
        && !text.contains("..")
        && image_build_ok;
    if !plain || Version::parse(&parsed.to_string()) != Ok(parsed) {
        return Err(format!("accepted the version {}", preview(text)));
    }
    Ok(())
}

/// An event id or time as reverts record them.
fn event_id(id: &str) -> Result<(), String> {
    text("event id", id, 128)
}

/// An S3 bucket name: 3-63 characters of a-z, 0-9, '.', '-', starting and ending with a
/// letter or digit.
fn bucket(name: &str) -> Result<(), String> {
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && edge(name.bytes().next())
        && edge(name.bytes().last());
    if !ok {
        return Err(format!("accepted the bucket name {}", preview(name)));
    }
    Ok(())
}

/// A manifest key accepted under `prefix` names exactly `<prefix><service>/<version>.json`
/// and, for a prefix that is a folder (ends with `/`, as the template requires), lies in
/// that folder with no segment that could be read another way.
fn manifest_key_invariants(key: &str, prefix: &str, svc: &str, ver: &str) -> Result<(), String> {
    service(svc)?;
    version(ver)?;
    if key != format!("{prefix}{svc}/{ver}.json") {
        return Err(format!(
            "manifest key {} accepted as service {svc:?} version {ver:?} under {prefix:?}",
            preview(key)
        ));
    }
    if prefix.is_empty() || prefix.ends_with('/') {
        let rest = key
            .strip_prefix(prefix)
            .ok_or_else(|| format!("manifest key {} escapes the prefix {prefix:?}", preview(key)))?;
        let segments: Vec<&str> = rest.split('/').collect();
        let odd = |s: &&str| s.is_empty() || *s == "." || *s == ".." || s.contains(['%', '\\']);
        if segments.len() != 2 || segments.iter().any(odd) {
            return Err(format!("manifest key {} escapes the prefix {prefix:?}", preview(key)));
        }
    }
    Ok(())
}

/// What `inbound::parse` accepted must be valid.
fn accepted(inbound: &Inbound, prefix: &str) -> Result<(), String> {
    match inbound {
        Inbound::Image(r) => {
            service(&r.service)?;
            ami(&r.ami)?;
            version(&r.version)?;
            text("requested_by", &r.requested_by, 128)?;
            if let Some(reason) = &r.reason {
                text("reason", reason, 512)?;
            }
            if !(1..=1000).contains(&r.attempt) || r.rollback_of.is_some() || r.source != ImageSource::Greenlight {
                return Err(format!("accepted an image request {r:?}"));
            }
        }
        Inbound::ImageBuilder {
            image_arn,
            image_name,
            version: ver,
        } => {
            version(ver)?;
            text("image name", image_name, 128)?;
            if image_name.is_empty() || image_name.contains('/') {
                return Err(format!("accepted the image name {}", preview(image_name)));
            }
            match inbound::parse_image_arn(image_arn) {
                Ok((name, v)) if &name == image_name && &v == ver => {}
                other => return Err(format!("image ARN {} parsed as {other:?}", preview(image_arn))),
            }
        }
        Inbound::Manifest {
            bucket: b,
            key,
            service: svc,
            version: ver,
        } => {
            bucket(b)?;
            manifest_key_invariants(key, prefix, svc, ver)?;
        }
        Inbound::Manifests(records) => {
            if !records.iter().any(Result::is_ok) {
                return Err(format!("accepted an S3 notification with no manifest: {records:?}"));
            }
            for record in records {
                match record {
                    // The decoded key: under the prefix exactly as an EventBridge key must be.
                    Ok(m) => {
                        bucket(&m.bucket)?;
                        manifest_key_invariants(&m.key, prefix, &m.service, &m.version)?;
                    }
                    Err(e) => readable("an S3 record's refusal", &e.to_string())?,
                }
            }
        }
        Inbound::Ami { ami: id } => ami(id)?,
        Inbound::Rollback(r) => {
            service(&r.service)?;
            if let Some(v) = &r.to_version {
                version(v)?;
            }
            who_and_why(&r.requested_by, &r.reason)?;
            event_id(&r.event_id)?;
            if r.trigger != Trigger::Engineer {
                return Err(format!("accepted a rollback with trigger {:?}", r.trigger));
            }
        }
        Inbound::Steer(r) => {
            service(&r.service)?;
            who_and_why(&r.requested_by, &r.reason)?;
            event_id(&r.event_id)?;
        }
        Inbound::Alarm(a) => {
            text("alarm name", &a.alarm_name, 255)?;
            event_id(&a.event_id)?;
            // What a revert records of the alarm: bounded however long CloudWatch's words are.
            let r = a.revert_request("checkout");
            if r.reason.chars().count() > 600 || r.reason.contains(char::is_control) {
                return Err(format!("an alarm's revert reason {}", preview(&r.reason)));
            }
        }
        Inbound::Ignored(why) => readable("an ignored event's note", why)?,
    }
    Ok(())
}

/// `inbound::parse(event, prefix)`.
pub fn inbound_event(event: &Value, prefix: &str) -> Verdict {
    match inbound::parse(event, prefix) {
        Ok(parsed) => accepted(&parsed, prefix).map(|()| true),
        Err(e) => readable("inbound::parse", &e.to_string()).map(|()| false),
    }
}

/// An S3 event notification whose one record's key is `encoded`: accepted exactly when the
/// key it decodes to is accepted as an EventBridge `Object Created` key, as the same release.
pub fn s3_notification_key(encoded: &str, prefix: &str) -> Verdict {
    let event = serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "eventTime": "2026-11-24T10:00:00.000Z",
        "s3": {"bucket": {"name": "greenlight-artifacts"}, "object": {"key": encoded, "size": 1}}}]});
    let verdict = inbound_event(&event, prefix)?;
    let decoded = greenlight_core::form::decode(encoded).ok();
    let bridged = decoded.as_deref().map(|key| inbound::parse_manifest_key(key, prefix));
    match (inbound::parse(&event, prefix), bridged) {
        (Ok(Inbound::Manifests(records)), Some(Ok((svc, ver)))) => match records.as_slice() {
            [Ok(m)] if Some(&m.key) == decoded.as_ref() && m.service == svc && m.version == ver => Ok(verdict),
            other => Err(format!(
                "S3 key {} (decoded {decoded:?}) accepted as {other:?}, the EventBridge key as {svc}/{ver}",
                preview(encoded)
            )),
        },
        (Err(_), None | Some(Err(_))) => Ok(verdict),
        (parsed, bridged) => Err(format!(
            "S3 key {} (decoded {decoded:?}) parsed as {parsed:?} but as an EventBridge key as {bridged:?}",
            preview(encoded)
        )),
    }
}

/// `inbound::ami_request(ami, tags)`: an accepted AMI's tags name a valid service and version.
pub fn ami_tags(id: &str, tags: &std::collections::BTreeMap<String, String>) -> Verdict {
    match inbound::ami_request(id, tags) {
        Ok(Some(r)) => {
            ami(&r.ami)?;
            service(&r.service)?;
            version(&r.version)?;
            let tagged = tags.get(inbound::SERVICE_TAG) == Some(&r.service)
                && tags.get(inbound::VERSION_TAG) == Some(&r.version);
            if !tagged || r.ami != id || r.source != ImageSource::Ec2Ami || r.attempt != 1 || r.rollback_of.is_some() {
                return Err(format!("AMI {} with tags {tags:?} accepted as {r:?}", preview(id)));
            }
            Ok(true)
        }
        Ok(None) if tags.contains_key(inbound::SERVICE_TAG) && tags.contains_key(inbound::VERSION_TAG) => {
            Err(format!("AMI {} tagged with both {tags:?} ignored", preview(id)))
        }
        Ok(None) => Ok(false),
        Err(e) => readable("inbound::ami_request", &e.to_string()).map(|()| false),
    }
}

/// `form::decode(text)`: text without `%` or `+` decodes to itself; a decoded value is never
/// longer than its encoding.
pub fn form_value(text_in: &str) -> Verdict {
    match greenlight_core::form::decode(text_in) {
        Ok(decoded) => {
            let plain = !text_in.contains(['%', '+']);
            if (plain && decoded != text_in) || decoded.len() > text_in.len() {
                return Err(format!("{} decoded as {}", preview(text_in), preview(&decoded)));
            }
            Ok(true)
        }
        Err(e) => readable("form::decode", &e.to_string()).map(|()| false),
    }
}

/// `inbound::parse_manifest_key(key, prefix)`.
pub fn manifest_key(key: &str, prefix: &str) -> Verdict {
    match inbound::parse_manifest_key(key, prefix) {
        Ok((svc, ver)) => manifest_key_invariants(key, prefix, &svc, &ver).map(|()| true),
        Err(e) => readable("inbound::parse_manifest_key", &e.to_string()).map(|()| false),
    }
}

/// `inbound::parse_manifest(body, service, version)` for a service and version a key gave.
pub fn manifest_body(body: &[u8], svc: &str, ver: &str) -> Verdict {
    match inbound::parse_manifest(body, svc, ver) {
        Ok(r) => {
            ami(&r.ami)?;
            text("requested_by", &r.requested_by, 128)?;
            if let Some(reason) = &r.reason {
                text("reason", reason, 512)?;
            }
            if r.service != svc || r.version != ver || r.attempt != 1 || r.rollback_of.is_some() {
                return Err(format!("manifest accepted as {r:?}"));
            }
            Ok(true)
        }
        Err(e) => readable("inbound::parse_manifest", &e.to_string()).map(|()| false),
    }
}

/// A step function's input as `run_step` takes it: deserialised, then the service name and
/// the deployment id checked before anything reads the ledger.
pub fn step_input(input: Result<StepInput, serde_json::Error>) -> Verdict {
    let input = match input {
        Ok(input) => input,
        // serde_json's own words, which greenlight-steps wraps (`lambda::handle`): not
        // blank, no raw control characters (serde escapes the strings it quotes); their
        // length is serde's (it quotes a mistyped string whole).
        Err(e) => {
            let message = e.to_string();
            return readable("StepInput", &message.chars().take(MAX_LINE_CHARS).collect::<String>()).map(|()| false);
        }
    };
    if let Err(e) = check_service(&input.service) {
        return readable("check_service", &e.to_string()).map(|()| false);
    }
    if let Err(e) = DeployId::parse(&input.deploy_id) {
        return readable("DeployId::parse", &e.to_string()).map(|()| false);
    }
    service(&input.service)?;
    let hex = input.deploy_id.strip_prefix("d-").unwrap_or_default();
    if hex.len() != 20 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(format!("accepted the deployment id {}", preview(&input.deploy_id)));
    }
    Ok(true)
}

/// `announce::enrich(batch)`, the deployment events pipe's enrichment of ledger stream
/// records: at most one event per record, each for a deployment item of the batch, and each
/// reads back as the `DeploymentStateChanged` it is (what the events bus's consumers parse).
pub fn stream_batch(batch: &Value) -> Verdict {
    use greenlight_core::announce::{enrich, DeploymentStateChanged};
    let events = match enrich(batch) {
        Ok(events) => events,
        Err(e) => return readable("announce::enrich", &e.to_string()).map(|()| false),
    };
    let records = batch.as_array().map_or(0, Vec::len);
    if events.len() > records {
        return Err(format!("{} events from {records} records", events.len()));
    }
    for event in &events {
        let key = format!("DEPLOY#{}", event.deploy_id);
        let from_batch = batch
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["dynamodb"]["Keys"]["sk"]["S"].as_str() == Some(key.as_str()));
        if !from_batch {
            return Err(format!(
                "an event for {} of no record's item",
                preview(&event.deploy_id)
            ));
        }
        let value = serde_json::to_value(event).map_err(|e| format!("unserialisable event: {e}"))?;
        let back: DeploymentStateChanged =
            serde_json::from_value(value).map_err(|e| format!("an event that does not read back: {e}"))?;
        if &back != event {
            return Err(format!("an event that reads back different: {event:?}"));
        }
    }
    Ok(!events.is_empty())
}

/// `ServiceConfig::from_json(text)`: what it accepts is a registration greenlight can run.
pub fn registration(text_in: &str) -> Verdict {
    let config = match ServiceConfig::from_json(text_in) {
        Ok(config) => config,
        Err(e) => return readable("ServiceConfig::from_json", &e.to_string()).map(|()| false),
    };
    service(&config.service)?;
    if let Err(e) = config.validate() {
        return Err(format!("from_json accepted what validate refuses: {e}"));
    }
    let [a, b] = &config.target_groups;
    let steps = &config.rollout.canary_steps;
    let smoke = &config.health.smoke;
    let problems = [
        (
            a == b || !a.starts_with("arn:") || !b.starts_with("arn:"),
            "target groups",
        ),
        (
            steps.is_empty() || steps[0] == 0 || steps.last() != Some(&100) || steps.windows(2).any(|w| w[0] >= w[1]),
            "canary steps",
        ),
        (
            !smoke.path.starts_with('/')
                || smoke.path.contains("..")
                || smoke.path.contains(|c: char| c.is_whitespace() || c.is_control()),
            "smoke path",
        ),
        (
            config
                .alarms
                .iter()
                .any(|n| n.is_empty() || n.len() > 255 || n.starts_with("arn:") || n.contains(char::is_control)),
            "alarm names",
        ),
        (
            !(1..=100).contains(&config.launch.count) || config.launch.port == 0,
            "launch",
        ),
    ];
    if let Some((_, what)) = problems.iter().find(|(bad, _)| *bad) {
        return Err(format!("accepted a registration with invalid {what}: {config:?}"));
    }
    // What the ledger stores is read back as the same registration.
    let stored = serde_json::to_string(&config).map_err(|e| format!("cannot serialise {config:?}: {e}"))?;
    match ServiceConfig::from_json(&stored) {
        Ok(again) if again == config => Ok(true),
        other => Err(format!("a stored registration reads back as {other:?}")),
    }
}

/// The name and time parsers on one piece of text: service names, AMI ids, versions,
/// deployment ids, form-encoded values, event times, Image Builder ARNs and manifest keys.
pub fn names(text_in: &str) -> Verdict {
    let mut any = false;
    let mut each = |verdict: Verdict| -> Result<(), String> {
        any |= verdict?;
        Ok(())
    };
    each(match check_service(text_in) {
        Ok(()) => service(text_in).map(|()| true),
        Err(e) => readable("check_service", &e.to_string()).map(|()| false),
    })?;
    each(match check_ami(text_in) {
        Ok(()) => ami(text_in).map(|()| true),
        Err(e) => readable("check_ami", &e.to_string()).map(|()| false),
    })?;
    each(match Version::parse(text_in) {
        Ok(_) => version(text_in).map(|()| true),
        Err(e) => readable("Version::parse", &e.to_string()).map(|()| false),
    })?;
    each(match DeployId::parse(text_in) {
        Ok(id) if id.as_str() == text_in && text_in.len() == 22 => Ok(true),
        Ok(id) => Err(format!("deployment id {} parsed as {id}", preview(text_in))),
        Err(e) => readable("DeployId::parse", &e.to_string()).map(|()| false),
    })?;
    each(form_value(text_in))?;
    each(match inbound::parse_time_ms(text_in) {
        Ok(ms) => {
            // A real calendar time in 1970..=9999 (a leap second may end the year 9999): the
            // second it names formats as the same date and time (a leap second as the next
            // second), which parses back.
            let formatted = inbound::format_time(ms / 1000);
            let again = inbound::parse_time_ms(&formatted);
            let leap_second = text_in.get(17..19) == Some("60");
            let same = leap_second || text_in.get(..19) == formatted.get(..19);
            let before_10000 = ms < 253_402_300_800_000;
            if ms > 253_402_300_800_999 || !same || (before_10000 && again != Ok(ms / 1000 * 1000)) {
                Err(format!(
                    "time {} parsed as {ms} ms, which is {formatted} (reads back as {again:?})",
                    preview(text_in)
                ))
            } else {
                Ok(true)
            }
        }
        Err(e) => readable("parse_time_ms", &e.to_string()).map(|()| false),
    })?;
    each(match inbound::parse_image_arn(text_in) {
        Ok((name, ver)) => {
            version(&ver)?;
            text("image name", &name, 128)?;
            if name.is_empty() || name.contains('/') || !text_in.starts_with("arn:") {
                Err(format!("image ARN {} parsed as ({name:?}, {ver:?})", preview(text_in)))
            } else {
                Ok(true)
            }
        }
        Err(e) => readable("parse_image_arn", &e.to_string()).map(|()| false),
    })?;
    for prefix in [inbound::MANIFEST_PREFIX, "a/b/", ""] {
        each(manifest_key(text_in, prefix))?;
    }
    Ok(any)
}
