//! `DeploymentStateChanged`: what greenlight tells the world when a deployment's state
//! changes, for notifications (chat, e-mail, paging) and other tools.
//!
//! The events come from the ledger itself (change data capture), never from a handler's
//! word: the table's stream (`NEW_AND_OLD_IMAGES`) feeds an EventBridge Pipe whose enrichment,
//! the `announce-deployments` function, hands each stream record of a deployment item to
//! [`enrich`], and the pipe puts what it returns on greenlight's events bus. A stream holds
//! each committed write exactly once and in order per item, so a phase change is announced
//! once whatever happened around it: a handler that crashed right after its commit, a
//! redelivered step, a retried write that lost its condition (no write, no record).
//!
//! A deployment's *status* is its phase and what it waits for, if anything (an approval, an
//! engineer's decision on a hold): a write announces when the status it leaves differs from
//! the one it enters ([`state_changed`]). Writes that change nothing a reader would act on
//! (a poll count, a lease, an evaluation that waits) announce nothing.
//!
//! The pipe may deliver an event twice after a partial failure of its target (EventBridge
//! Pipes retries a batch): `deploy_id` and `gen` (the item's generation, bumped by every
//! write) are the event's identity, for consumers that must not act twice.

use crate::analysis::Verdict;
use crate::ids::{quote, sanitize};
use crate::model::{Deployment, PhaseName, Trigger};
use crate::Epoch;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The events' `source` and `detail-type` (the pipe's target parameters set them).
pub const SOURCE: &str = "greenlight";
pub const DETAIL_TYPE: &str = "DeploymentStateChanged";

/// The deployment items' sort-key prefix (`SVC#<service>` / `DEPLOY#<deploy id>`).
pub const DEPLOY_PREFIX: &str = "DEPLOY#";

/// At most this many stream records in one enrichment call (the pipe's `BatchSize` is 10).
pub const MAX_BATCH: usize = 100;

/// What a deployment waits for: an engineer has to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Waiting {
    /// An approval pause (`"pause"` in `canary_steps`): `greenlight promote` moves it on.
    Approval,
    /// A failure held instead of reverted (`on_failure: hold`): promote, rollback or abort.
    Hold,
    /// An inconclusive analysed step held (`inconclusive: hold`): promote, rollback or abort.
    Inconclusive,
}

/// A deployment's status: what [`state_changed`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub phase: PhaseName,
    pub waiting: Option<Waiting>,
}

/// The status of `dep`, read from the deployment alone (the enrichment has nothing else).
pub fn status(dep: &Deployment) -> Status {
    let phase = dep.phase.kind();
    let waiting = if phase.is_terminal() {
        None
    } else if dep.held().is_some() {
        Some(Waiting::Hold)
    } else if dep.analysis.as_ref().is_some_and(|a| a.held_since.is_some()) {
        Some(Waiting::Inconclusive)
    } else {
        match dep.phase {
            crate::Phase::Verifying { weight, .. } | crate::Phase::Verified { weight }
                if dep.waiting_pause(weight).is_some() =>
            {
                Some(Waiting::Approval)
            }
            _ => None,
        }
    };
    Status { phase, waiting }
}

/// One metric's verdict at the last evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricVerdict {
    pub metric: String,
    pub verdict: Verdict,
    /// Why, in a sentence (the counts and the e-value against its threshold).
    pub explanation: String,
}

/// The `detail` of a `DeploymentStateChanged` event (`events/deployment-state-changed.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentStateChanged {
    pub service: String,
    pub deploy_id: String,
    /// The deployment item's generation after the write: with `deploy_id`, the identity of
    /// this event (a consumer that must not act twice keeps the last one it saw).
    pub gen: u64,
    /// The release being deployed (green).
    pub version: String,
    /// The release live when it started (blue), if any.
    pub previous_version: Option<String>,
    /// True for a rollback's redeployment of an earlier release (the slow path).
    pub rollback: bool,
    pub phase: PhaseName,
    /// The phase it left; None when the deployment was just created.
    pub previous_phase: Option<PhaseName>,
    /// What the deployment waits for, if an engineer has to act.
    pub waiting: Option<Waiting>,
    /// Green's share of the traffic the phase asks for (%).
    pub green_weight: u8,
    /// Who started it (a pipeline, an engineer, `alarm:<name>` for a rollback's redeployment).
    pub requested_by: String,
    /// What reverted it, once it was reverted: `engineer`, `alarm` or `analysis`.
    pub trigger: Option<Trigger>,
    /// Why it is where it is: the abort's or the revert's reason, the hold's, else the
    /// deployment's own (the publisher's reason), if any.
    pub reason: Option<String>,
    /// What happened, in a sentence (the timeline's last mark).
    pub note: String,
    /// Canary analysis: each metric's verdict at the last evaluation (empty without one).
    pub verdicts: Vec<MetricVerdict>,
    /// Seconds from the start to green passing its gates, once it has.
    pub time_to_healthy_s: Option<u64>,
    /// A revert's event time → traffic back on the previous release (ms), once back.
    pub time_to_revert_ms: Option<u64>,
    /// When the write happened (the deployment's `updated_at`), RFC 3339.
    pub time: String,
}

/// The event a committed write of a deployment announces: `old` is the item before the
/// write (None for the write that created it), `new` after. None when the status did not
/// change.
pub fn state_changed(old: Option<&Deployment>, new: &Deployment) -> Option<DeploymentStateChanged> {
    let before = old.map(status);
    let after = status(new);
    if before == Some(after) {
        return None;
    }
    let reason = match &new.phase {
        crate::Phase::Aborting { reason, .. } | crate::Phase::Aborted { reason } => Some(reason.clone()),
        _ => None,
    }
    .or_else(|| new.held().map(|h| h.reason.clone()))
    .or_else(|| new.revert.as_ref().map(|r| r.reason.clone()))
    .or_else(|| new.reason.clone());
    let verdicts = new
        .analysis
        .as_ref()
        .and_then(|a| a.evaluations.iter().rev().find(|e| !e.metrics.is_empty()))
        .map(|e| {
            e.metrics
                .iter()
                .map(|m| MetricVerdict {
                    metric: m.metric.clone(),
                    verdict: m.verdict,
                    explanation: m.explanation.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(DeploymentStateChanged {
        service: new.service.clone(),
        deploy_id: new.deploy_id.clone(),
        gen: new.gen,
        version: new.version.clone(),
        previous_version: new.blue.as_ref().map(|b| b.version.clone()),
        rollback: new.rollback,
        phase: after.phase,
        previous_phase: before.map(|b| b.phase),
        waiting: after.waiting,
        green_weight: new.phase.green_weight(),
        requested_by: new.requested_by.clone(),
        trigger: new.revert.as_ref().map(|r| r.trigger),
        reason,
        note: new.timeline.last().map(|m| m.note.clone()).unwrap_or_default(),
        verdicts,
        time_to_healthy_s: new.healthy_at.map(|at: Epoch| at.saturating_sub(new.created_at)),
        time_to_revert_ms: new.revert.as_ref().and_then(|r| r.time_to_revert_ms()),
        time: crate::rfc3339::format(new.updated_at),
    })
}

/// The pipe's filter (the template's `FilterCriteria`): inserts and modifications of
/// deployment items. [`passes_filter`] is the same test in code.
pub fn pipe_filter() -> Value {
    serde_json::json!({
        "eventName": ["INSERT", "MODIFY"],
        "dynamodb": {"Keys": {"sk": {"S": [{"prefix": DEPLOY_PREFIX}]}}}
    })
}

/// True when `record` passes [`pipe_filter`]: an insert or a modification of a deployment
/// item.
pub fn passes_filter(record: &Value) -> bool {
    matches!(record["eventName"].as_str(), Some("INSERT" | "MODIFY"))
        && record["dynamodb"]["Keys"]["sk"]["S"]
            .as_str()
            .is_some_and(|sk| sk.starts_with(DEPLOY_PREFIX))
}

/// The pattern of a rule on the events bus that takes every `DeploymentStateChanged`
/// (the template's `DeploymentEventsToTopicRule`).
pub fn rule_pattern() -> Value {
    serde_json::json!({"source": [SOURCE], "detail-type": [DETAIL_TYPE]})
}

/// I38 on one deployment's events, in the order of its writes (by `gen`): the first is its
/// creation, each leaves the phase the one before entered, generations grow, and no status
/// is announced twice in a row. What the simulator checks after every step and the tests
/// check of what reached the events bus.
pub fn check_sequence(events: &[DeploymentStateChanged]) -> Result<(), String> {
    let first = events.first().ok_or("no event")?;
    if let Some(before) = first.previous_phase {
        return Err(format!(
            "the first event leaves {before}: not the deployment's creation"
        ));
    }
    for (i, pair) in events.windows(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        if b.previous_phase != Some(a.phase) {
            return Err(format!(
                "event {} leaves {:?} but the one before entered {}",
                i + 1,
                b.previous_phase,
                a.phase
            ));
        }
        if b.gen <= a.gen {
            return Err(format!("event {} has generation {} after {}", i + 1, b.gen, a.gen));
        }
        if (a.phase, a.waiting) == (b.phase, b.waiting) {
            return Err(format!("event {} announces {} ({:?}) again", i + 1, b.phase, b.waiting));
        }
    }
    Ok(())
}

/// Why a batch of stream records could not be read. The pipe retries the batch, then sends
/// it to its dead-letter queue: a deployment item greenlight cannot read back is a bug to
/// look at, never an event to guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichError(pub String);

impl std::fmt::Display for EnrichError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EnrichError {}

/// The pipe's enrichment: a batch of DynamoDB stream records (a JSON array, as EventBridge
/// Pipes sends it) → the details to put on the bus, in the records' order. Records that are
/// not an insert or a modification of a deployment item are skipped (the pipe's filter
/// already drops them; a removal, e.g. by TTL, announces nothing), and so are writes that
/// did not change the deployment's status.
pub fn enrich(batch: &Value) -> Result<Vec<DeploymentStateChanged>, EnrichError> {
    let records = batch.as_array().ok_or_else(|| {
        EnrichError(format!(
            "expected a batch of DynamoDB stream records (a JSON array), got {}",
            kind_of(batch)
        ))
    })?;
    if records.len() > MAX_BATCH {
        return Err(EnrichError(format!(
            "{} records in one batch; at most {MAX_BATCH} (the pipe's BatchSize is 10)",
            records.len()
        )));
    }
    let mut events = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let at = |why: String| EnrichError(format!("record {index} ({}): {why}", event_id(record)));
        if !passes_filter(record) {
            continue;
        }
        let image = &record["dynamodb"];
        let new = deployment_of(&image["NewImage"])
            .map_err(|why| at(format!("NewImage: {why}")))?
            .ok_or_else(|| {
                at("an insert or modification without its NewImage (the stream must be NEW_AND_OLD_IMAGES)".into())
            })?;
        let old = match record["eventName"].as_str() {
            Some("MODIFY") => Some(
                deployment_of(&image["OldImage"])
                    .map_err(|why| at(format!("OldImage: {why}")))?
                    .ok_or_else(|| {
                        at("a modification without its OldImage (the stream must be NEW_AND_OLD_IMAGES)".into())
                    })?,
            ),
            _ => None,
        };
        events.extend(state_changed(old.as_ref(), &new));
    }
    Ok(events)
}

/// The deployment an item image holds (its `body`, JSON, and `gen`, as the ledger writes
/// them); None when the record has no such image.
fn deployment_of(image: &Value) -> Result<Option<Deployment>, String> {
    if image.is_null() {
        return Ok(None);
    }
    let body = image["body"]["S"].as_str().ok_or("no body (a string attribute)")?;
    let mut dep: Deployment = serde_json::from_str(body)
        .map_err(|e| format!("its body is not a deployment: {}", sanitize(&e.to_string())))?;
    // The item's `gen` attribute is the generation (the body's copy may lag it by one).
    if let Some(gen) = image["gen"]["N"].as_str() {
        dep.gen = gen.parse().map_err(|_| format!("gen {} is not a number", quote(gen)))?;
    }
    Ok(Some(dep))
}

/// The record's `eventID`, quoted for a message.
fn event_id(record: &Value) -> String {
    record["eventID"]
        .as_str()
        .map_or_else(|| "no eventID".to_string(), quote)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HoldCause, HoldRecord, PauseRecord, Phase, RevertRecord};
    use serde_json::json;

    fn deployment() -> Deployment {
        serde_json::from_value(json!({
            "deploy_id": "d-1", "service": "web", "version": "v2", "ami": "ami-1", "gen": 1,
            "source": "greenlight", "requested_by": "ci", "reason": "weekly release",
            "blue": {"version": "v1", "ami": "ami-0", "target_group": "tg-a", "instance_ids": ["i-1"]},
            "green_tg": "tg-b", "green_instances": [], "phase": {"phase": "launching"}, "max_weight": 0,
            "created_at": 1000, "updated_at": 1000, "healthy_at": null, "revert": null, "rollback": false,
            "timeline": [{"at": 1000, "phase": "launching", "weight": 0, "note": "deployment started"}]
        }))
        .expect("a deployment")
    }

    /// `dep` moved to `phase` at `at`, as a committed write leaves it (generation bumped).
    fn moved(dep: &Deployment, phase: Phase, at: Epoch, note: &str) -> Deployment {
        let mut next = dep.clone();
        next.enter(phase, at, note);
        next.gen += 1;
        next
    }

    /// A new deployment, then green launched, then one more health poll (no new status).
    fn launched_then_polled() -> (Deployment, Deployment, Deployment) {
        let launching = deployment();
        let verifying = moved(
            &launching,
            Phase::Verifying { weight: 0, polls: 0 },
            1010,
            "green launched",
        );
        let mut polled = verifying.clone();
        polled.phase = Phase::Verifying { weight: 0, polls: 3 };
        polled.gen += 1;
        (launching, verifying, polled)
    }

    /// A stream record of the deployment item, as DynamoDB Streams writes it.
    fn record(name: &str, old: Option<&Deployment>, new: Option<&Deployment>) -> Value {
        let image = |d: &Deployment| {
            json!({
                "pk": {"S": format!("SVC#{}", d.service)}, "sk": {"S": format!("DEPLOY#{}", d.deploy_id)},
                "gen": {"N": d.gen.to_string()}, "phase": {"S": d.phase.name()},
                "body": {"S": serde_json::to_string(d).unwrap()}
            })
        };
        let any = old.or(new).unwrap();
        let mut dynamodb = json!({
            "Keys": {"pk": {"S": format!("SVC#{}", any.service)}, "sk": {"S": format!("DEPLOY#{}", any.deploy_id)}},
            "SequenceNumber": "1", "SizeBytes": 1, "StreamViewType": "NEW_AND_OLD_IMAGES"
        });
        if let Some(old) = old {
            dynamodb["OldImage"] = image(old);
        }
        if let Some(new) = new {
            dynamodb["NewImage"] = image(new);
        }
        json!({"eventID": "e-1", "eventName": name, "eventSource": "aws:dynamodb", "dynamodb": dynamodb})
    }

    #[test]
    fn the_write_that_creates_a_deployment_announces_it_with_no_previous_phase() {
        let dep = deployment();
        let event = state_changed(None, &dep).expect("created");
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({
                "service": "web", "deploy_id": "d-1", "gen": 1, "version": "v2", "previous_version": "v1",
                "rollback": false, "phase": "launching", "previous_phase": null, "waiting": null,
                "green_weight": 0, "requested_by": "ci", "trigger": null, "reason": "weekly release",
                "note": "deployment started", "verdicts": [], "time_to_healthy_s": null,
                "time_to_revert_ms": null, "time": "1970-01-01T00:16:40Z"
            })
        );
    }

    #[test]
    fn only_a_change_of_phase_or_of_what_it_waits_for_is_announced() {
        let (launching, verifying, polled) = launched_then_polled();
        let verified = moved(&polled, Phase::Verified { weight: 0 }, 1020, "green passed its gates");
        type Change = Option<(PhaseName, Option<PhaseName>)>;
        let cases: [(&str, &Deployment, &Deployment, Change); 4] = [
            (
                "a new phase",
                &launching,
                &verifying,
                Some((PhaseName::Verifying, Some(PhaseName::Launching))),
            ),
            ("a poll in the same phase", &verifying, &polled, None),
            ("the same write read again", &polled, &polled, None),
            (
                "the next phase",
                &polled,
                &verified,
                Some((PhaseName::Verified, Some(PhaseName::Verifying))),
            ),
        ];
        for (what, old, new, expected) in cases {
            let got = state_changed(Some(old), new).map(|e| (e.phase, e.previous_phase));
            assert_eq!(got, expected, "{what}");
        }
    }

    #[test]
    fn a_pause_a_hold_and_their_ends_are_each_announced_once() {
        let verified = moved(
            &deployment(),
            Phase::Verified { weight: 10 },
            1020,
            "green passed its gates at 10 %",
        );
        let mut paused = verified.clone();
        paused.pauses.push(PauseRecord {
            weight: 10,
            since: 1020,
            until: 4620,
            ended: None,
        });
        paused.gen += 1;
        let event = state_changed(Some(&verified), &paused).expect("the pause begins");
        assert_eq!(
            (event.phase, event.waiting, event.green_weight),
            (PhaseName::Verified, Some(Waiting::Approval), 10)
        );
        assert_eq!(state_changed(Some(&paused), &paused), None, "still waiting");
        let shifting = moved(&paused, Phase::Shifting { from: 10, to: 50 }, 1030, "approved");
        let mut approved = shifting.clone();
        approved.pauses[0].ended = Some(crate::model::PauseEnd::TimedOut {
            at: 1030,
            action: crate::config::OnPauseTimeout::Continue,
        });
        let event = state_changed(Some(&paused), &approved).expect("moved on");
        assert_eq!((event.phase, event.waiting), (PhaseName::Shifting, None));

        let mut held = verified.clone();
        held.holds.push(HoldRecord {
            since: 1040,
            weight: 10,
            cause: HoldCause::Alarm,
            reason: "alarm web-5xx went to ALARM".into(),
            ended: None,
        });
        held.gen += 1;
        let event = state_changed(Some(&verified), &held).expect("the hold begins");
        assert_eq!(event.waiting, Some(Waiting::Hold));
        assert_eq!(event.reason.as_deref(), Some("alarm web-5xx went to ALARM"));
    }

    #[test]
    fn a_revert_says_what_triggered_it_why_and_how_fast_traffic_came_back() {
        let baking = moved(&deployment(), Phase::Baking { until: 5000 }, 1100, "green is live");
        let mut aborting = moved(
            &baking,
            Phase::Aborting {
                reason: "alarm web-5xx".into(),
                drain_until: 2000,
            },
            1200,
            "rolled back by alarm",
        );
        aborting.revert = Some(RevertRecord {
            trigger: Trigger::Alarm,
            requested_by: "alarm:web-5xx".into(),
            reason: "5xx over 1 %".into(),
            event_id: "e-9".into(),
            event_time_ms: 1_199_000,
            received_at_ms: 1_199_500,
            back_to: "v1".into(),
            traffic_back_at_ms: Some(1_200_100),
        });
        let event = state_changed(Some(&baking), &aborting).expect("reverted");
        assert_eq!(event.trigger, Some(Trigger::Alarm));
        assert_eq!(event.reason.as_deref(), Some("alarm web-5xx"));
        assert_eq!((event.time_to_revert_ms, event.green_weight), (Some(1100), 0));
        assert_eq!(event.previous_phase, Some(PhaseName::Baking));
        // Terminal: nothing to wait for, even with a hold left open in the record.
        let mut aborted = moved(
            &aborting,
            Phase::Aborted {
                reason: "alarm web-5xx".into(),
            },
            1300,
            "cleaned up",
        );
        aborted.holds.push(HoldRecord {
            since: 1,
            weight: 0,
            cause: HoldCause::Gate,
            reason: "r".into(),
            ended: None,
        });
        assert_eq!(state_changed(Some(&aborting), &aborted).unwrap().waiting, None);
    }

    #[test]
    fn a_batch_of_stream_records_becomes_the_events_of_its_status_changes_in_order() {
        let (launching, verifying, polled) = launched_then_polled();
        let mut pointers = record("MODIFY", Some(&launching), Some(&verifying));
        pointers["dynamodb"]["Keys"]["sk"]["S"] = json!("STATE");
        let batch = json!([
            record("INSERT", None, Some(&launching)),
            pointers,
            record("MODIFY", Some(&launching), Some(&verifying)),
            record("MODIFY", Some(&verifying), Some(&polled)),
            record("REMOVE", Some(&polled), None),
        ]);
        let events = enrich(&batch).expect("a valid batch");
        let got: Vec<(PhaseName, u64)> = events.iter().map(|e| (e.phase, e.gen)).collect();
        assert_eq!(got, vec![(PhaseName::Launching, 1), (PhaseName::Verifying, 2)]);
        assert_eq!(enrich(&json!([])).unwrap(), vec![]);
    }

    #[test]
    fn a_sequence_of_events_is_each_change_once_in_order_or_says_what_is_wrong() {
        let (launching, verifying, polled) = launched_then_polled();
        let verified = moved(&polled, Phase::Verified { weight: 0 }, 1020, "green passed its gates");
        let created = state_changed(None, &launching).unwrap();
        let launched = state_changed(Some(&launching), &verifying).unwrap();
        let passed = state_changed(Some(&polled), &verified).unwrap();
        assert_eq!(
            check_sequence(&[created.clone(), launched.clone(), passed.clone()]),
            Ok(())
        );
        let mut again = passed.clone();
        again.previous_phase = Some(PhaseName::Verified);
        again.gen += 1;
        let cases = [
            (vec![], "no event"),
            (vec![launched.clone()], "the first event leaves launching"),
            (
                vec![created.clone(), passed.clone()],
                "event 1 leaves Some(Verifying) but the one before entered launching",
            ),
            (
                vec![created.clone(), launched.clone(), launched.clone()],
                "event 2 leaves Some(Launching)",
            ),
            (
                vec![created.clone(), launched.clone(), passed.clone(), again],
                "event 3 announces verified (None) again",
            ),
        ];
        for (events, expected) in cases {
            let error = check_sequence(&events).unwrap_err();
            assert!(error.starts_with(expected), "{error}");
        }
        let mut stale = passed;
        stale.gen = launched.gen;
        assert_eq!(
            check_sequence(&[created, launched, stale]),
            Err("event 2 has generation 2 after 2".into())
        );
    }

    #[test]
    fn a_batch_greenlight_cannot_read_is_an_error_naming_the_record() {
        let dep = deployment();
        let mut no_body = record("INSERT", None, Some(&dep));
        no_body["dynamodb"]["NewImage"]["body"] = json!({"N": "1"});
        let mut keys_only = record("MODIFY", Some(&dep), Some(&dep));
        keys_only["dynamodb"].as_object_mut().unwrap().remove("OldImage");
        let mut bad_body = record("INSERT", None, Some(&dep));
        bad_body["dynamodb"]["NewImage"]["body"] = json!({"S": "{\"service\": 1}"});
        let too_many = Value::Array(vec![record("INSERT", None, Some(&dep)); MAX_BATCH + 1]);
        let cases = [
            (
                json!({"Records": []}),
                "expected a batch of DynamoDB stream records (a JSON array), got an object",
            ),
            (
                json!([no_body]),
                "record 0 (\"e-1\"): NewImage: no body (a string attribute)",
            ),
            (
                json!([keys_only]),
                "record 0 (\"e-1\"): a modification without its OldImage",
            ),
            (
                json!([bad_body]),
                "record 0 (\"e-1\"): NewImage: its body is not a deployment",
            ),
            (too_many, "101 records in one batch; at most 100"),
        ];
        for (batch, expected) in cases {
            let error = enrich(&batch).unwrap_err().0;
            assert!(error.starts_with(expected), "{error}");
        }
    }
}
