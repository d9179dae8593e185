//! The local EventBridge → Lambda link, on two buses as in AWS: greenlight's command bus
//! carries the rules for its own commands, a stand-in for the account's default bus the rules
//! for AWS's events (`greenlight_core::inbound::RuleBus`); each test gets its own pair. The
//! rules from `greenlight_core::inbound::event_patterns`, `revert_patterns` and
//! `steer_patterns` send matching events to an SQS queue (in AWS they target the
//! start-deployment, revert-service and steer-deployment functions directly); the pump
//! receives each message and delivers it in-process to the function its rule targets. A
//! greenlight command published on the default bus reaches no function: the default bus's
//! `ignored_commands_pattern` rule sends it to a queue nothing delivers from (in AWS, a log
//! group). A delivery that fails for a transient reason is left in the
//! queue and redelivered after the visibility timeout, like Lambda's asynchronous invocation
//! retries: at most [`MAX_RETRIES`] times (the message's `ApproximateReceiveCount` says which
//! attempt it is), then it is dropped with a warning, where AWS would send it to the
//! function's on-failure destination or dead-letter queue. greenlight's events bus gets a
//! rule too, sending every `DeploymentStateChanged` (put there by [`crate::pipe`]) to a
//! queue a test reads ([`announced`]).

use crate::Local;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use greenlight_core::inbound::RuleBus;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::broadcast;

pub use greenlight_steps::{deliver, Outcome};

/// How many times a delivery that failed for a transient reason is retried: Lambda's default
/// for asynchronous invocations (`MaximumRetryAttempts`).
pub const MAX_RETRIES: u32 = 2;

/// How long a received message stays invisible: the wait before a retry.
const VISIBILITY_TIMEOUT_S: i32 = 5;

/// One event delivered to its function and what came of it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: Value,
    pub result: Result<Outcome, String>,
    /// Which attempt this was (1 = the first delivery).
    pub attempt: u32,
    /// The delivery failed for a transient reason and the event stays queued: it will be
    /// delivered again after the visibility timeout.
    pub retrying: bool,
    /// The delivery failed for a transient reason on its last attempt: the event was dropped.
    pub dropped: bool,
}

/// Creates the queues, the two buses and the rules (idempotent): greenlight's command rules
/// on its command bus and the rules for AWS's events on the default-bus stand-in, all routing
/// to the delivery queue, as the template places them ([`RuleBus::of`]); and on the default
/// bus the rule that catches greenlight's commands published there, routing them to the
/// ignored-commands queue (in AWS a log group), which nothing delivers from.
pub async fn install(local: &Local) -> Result<(), String> {
    let events = aws_sdk_eventbridge::Client::new(&local.sdk);
    let delivery = create_queue(local, &local.names.queue).await?;
    let ignored = create_queue(local, &local.names.ignored_queue).await?;
    for bus in [&local.names.command_bus, &local.names.default_bus] {
        create_bus(&events, bus).await?;
    }
    let patterns =
        greenlight_core::inbound::event_patterns(&local.names.bucket, greenlight_core::inbound::MANIFEST_PREFIX)
            .into_iter()
            .chain(greenlight_core::inbound::revert_patterns())
            .chain(greenlight_core::inbound::steer_patterns());
    for (rule, pattern) in patterns {
        let target = greenlight_core::inbound::EventTarget::of(&pattern_example(&pattern));
        let bus = bus_name(local, RuleBus::of(&pattern));
        put_rule(&events, bus, rule, &pattern, target.function_name(), &delivery).await?;
    }
    // greenlight's events bus, and a rule sending every DeploymentStateChanged to the events
    // queue (in AWS a team's own target, e.g. the optional SNS topic).
    create_bus(&events, &local.names.events_bus).await?;
    let announced = create_queue(local, &local.names.events_queue).await?;
    put_rule(
        &events,
        &local.names.events_bus,
        "greenlight-deployment-events",
        &greenlight_core::announce::rule_pattern(),
        "deployment-events",
        &announced,
    )
    .await?;
    let (rule, pattern) = greenlight_core::inbound::ignored_commands_pattern();
    put_rule(
        &events,
        &local.names.default_bus,
        rule,
        &pattern,
        "ignored-commands",
        &ignored,
    )
    .await?;
    Ok(())
}

/// An event a pattern matches, enough for [`greenlight_core::inbound::EventTarget::of`]
/// (its first source and detail-type).
fn pattern_example(pattern: &Value) -> Value {
    serde_json::json!({
        "source": pattern["source"][0],
        "detail-type": pattern["detail-type"][0],
    })
}

/// The local name of `bus`.
pub fn bus_name(local: &Local, bus: RuleBus) -> &str {
    match bus {
        RuleBus::Command => &local.names.command_bus,
        RuleBus::Default => &local.names.default_bus,
    }
}

/// Creates queue `name` (idempotent); returns its ARN.
async fn create_queue(local: &Local, name: &str) -> Result<String, String> {
    let sqs = aws_sdk_sqs::Client::new(&local.sdk);
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| format!("create queue {name}: {e:?}"))?
        .queue_url
        .ok_or("create queue returned no URL")?;
    sqs.get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| format!("queue attributes: {e:?}"))?
        .attributes
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| format!("queue {name} has no ARN"))
}

/// Creates event bus `bus` unless it is the account's `default` (idempotent).
async fn create_bus(events: &aws_sdk_eventbridge::Client, bus: &str) -> Result<(), String> {
    if bus == "default" {
        return Ok(());
    }
    match events.create_event_bus().name(bus).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_already_exists_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(format!("create event bus {bus}: {e:?}")),
    }
}

/// Puts rule `rule` with `pattern` on `bus`, targeting the queue `queue_arn` (target id
/// `target_id`, the function it stands for).
async fn put_rule(
    events: &aws_sdk_eventbridge::Client,
    bus: &str,
    rule: &str,
    pattern: &Value,
    target_id: &str,
    queue_arn: &str,
) -> Result<(), String> {
    events
        .put_rule()
        .name(rule)
        .event_bus_name(bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .map_err(|e| format!("put rule {rule} on {bus}: {e:?}"))?;
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id(target_id)
        .arn(queue_arn)
        .build()
        .map_err(|e| e.to_string())?;
    events
        .put_targets()
        .rule(rule)
        .event_bus_name(bus)
        .targets(target)
        .send()
        .await
        .map_err(|e| format!("put targets {rule} on {bus}: {e:?}"))?;
    Ok(())
}

/// Publishes an event where its publisher would: an AWS service's (source `aws.`) on the
/// default bus, anything else (greenlight's commands, from a pipeline or an engineer) on the
/// command bus.
pub async fn publish(local: &Local, source: &str, detail_type: &str, detail: &Value) -> Result<String, String> {
    let bus = if source.starts_with("aws.") {
        RuleBus::Default
    } else {
        RuleBus::Command
    };
    publish_on(local, bus, source, detail_type, detail).await
}

/// Publishes an event on `bus`, whoever would; returns EventBridge's event id.
pub async fn publish_on(
    local: &Local,
    bus: RuleBus,
    source: &str,
    detail_type: &str,
    detail: &Value,
) -> Result<String, String> {
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .source(source)
        .detail_type(detail_type)
        .detail(detail.to_string())
        .event_bus_name(bus_name(local, bus))
        .build();
    let out = aws_sdk_eventbridge::Client::new(&local.sdk)
        .put_events()
        .entries(entry)
        .send()
        .await
        .map_err(|e| format!("put events: {e:?}"))?;
    let first = out.entries.unwrap_or_default().into_iter().next();
    match first {
        Some(e) if e.error_code.is_none() => Ok(e.event_id.unwrap_or_default()),
        Some(e) => Err(format!("put events: {:?} {:?}", e.error_code, e.error_message)),
        None => Err("put events returned no entry".into()),
    }
}

/// The events the default bus's rule for greenlight's commands caught (waiting up to `wait`
/// for the first): in AWS the lines of its log group. Each is received once.
pub async fn ignored_commands(local: &Local, wait: Duration) -> Result<Vec<Value>, String> {
    take_events(local, &local.names.ignored_queue, wait).await
}

/// The `DeploymentStateChanged` events the events bus's rule sent to the events queue
/// (waiting up to `wait` for the first; at most 10 a call), whole EventBridge events. Each is
/// received once.
pub async fn announced(local: &Local, wait: Duration) -> Result<Vec<Value>, String> {
    take_events(local, &local.names.events_queue, wait).await
}

/// Up to 10 events from queue `name` (waiting up to `wait` for the first), each deleted once
/// received.
async fn take_events(local: &Local, name: &str, wait: Duration) -> Result<Vec<Value>, String> {
    let sqs = aws_sdk_sqs::Client::new(&local.sdk);
    let url = queue_url(&sqs, name).await?;
    let received = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait.as_secs().min(20) as i32)
        .send()
        .await
        .map_err(|e| format!("receive: {e:?}"))?;
    let mut events = Vec::new();
    for message in received.messages.unwrap_or_default() {
        let body = message.body().unwrap_or_default().to_string();
        events.push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
        delete(&sqs, &url, &message).await?;
    }
    Ok(events)
}

/// Deletes a received message (it was handled: no redelivery).
async fn delete(sqs: &aws_sdk_sqs::Client, url: &str, message: &aws_sdk_sqs::types::Message) -> Result<(), String> {
    if let Some(handle) = &message.receipt_handle {
        sqs.delete_message()
            .queue_url(url)
            .receipt_handle(handle)
            .send()
            .await
            .map_err(|e| format!("delete: {e:?}"))?;
    }
    Ok(())
}

/// The URL of queue `name`.
async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, String> {
    Ok(sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| format!("queue url {name}: {e:?}"))?
        .queue_url
        .unwrap_or_default())
}

/// An SQS client and the installation's queue URL.
async fn queue(local: &Local) -> Result<(aws_sdk_sqs::Client, String), String> {
    let sqs = aws_sdk_sqs::Client::new(&local.sdk);
    let url = queue_url(&sqs, &local.names.queue).await?;
    Ok((sqs, url))
}

/// The queue's depth: (messages waiting, messages received and not yet deleted).
pub async fn queue_depth(local: &Local) -> Result<(u64, u64), String> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let (sqs, url) = queue(local).await?;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| format!("queue attributes: {e:?}"))?
        .attributes
        .unwrap_or_default();
    let count = |name: QueueAttributeName| {
        attributes
            .get(&name)
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| format!("queue attribute {name:?} missing"))
    };
    Ok((
        count(QueueAttributeName::ApproximateNumberOfMessages)?,
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
    ))
}

/// Receives what is in the queue (waiting up to `wait`) and delivers each message.
pub async fn pump_once(local: &Local, wait: Duration) -> Result<Vec<Delivery>, String> {
    receive_each(local, wait, |event, attempt| async move {
        let result = deliver(&local.ports, &event).await;
        let retryable = matches!(&result, Err(e) if e.is_retryable());
        let dropped = retryable && attempt > MAX_RETRIES;
        if dropped {
            tracing::warn!(
                attempt,
                error = %result.as_ref().err().map(ToString::to_string).unwrap_or_default(),
                event = %event,
                "pump: delivery failed on its last attempt; event dropped (in AWS: the on-failure destination)"
            );
        }
        let delivery = Delivery {
            event,
            result: result.map_err(|e| e.to_string()),
            attempt,
            retrying: retryable && !dropped,
            dropped,
        };
        let keep = delivery.retrying;
        (delivery, keep)
    })
    .await
}

/// Receives what is in `local`'s queue (waiting up to `wait`) and hands each message's event
/// and attempt number (1 = first delivery) to `deliver`, which answers what it made of it and
/// whether the message stays queued (to be delivered again after the visibility timeout);
/// the others are deleted. The Lambda service's event source mapping, for any kind of
/// function: in-process handlers ([`pump_once`]) or function processes.
pub async fn receive_each<T, F, Fut>(local: &Local, wait: Duration, mut deliver: F) -> Result<Vec<T>, String>
where
    F: FnMut(Value, u32) -> Fut,
    Fut: std::future::Future<Output = (T, bool)>,
{
    let (sqs, url) = queue(local).await?;
    let received = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait.as_secs().min(20) as i32)
        .visibility_timeout(VISIBILITY_TIMEOUT_S)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .map_err(|e| format!("receive: {e:?}"))?;
    let mut delivered = Vec::new();
    for message in received.messages.unwrap_or_default() {
        let attempt = message
            .attributes
            .as_ref()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(1);
        let body = message.body().unwrap_or_default().to_string();
        let event: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        let (outcome, keep) = deliver(event, attempt).await;
        if !keep {
            delete(&sqs, &url, &message).await?;
        }
        delivered.push(outcome);
    }
    Ok(delivered)
}

/// Pumps in the background until the returned handle is aborted; every delivery is sent
/// on the channel.
pub fn spawn(local: Local) -> (tokio::task::JoinHandle<()>, broadcast::Receiver<Delivery>) {
    let (tx, rx) = broadcast::channel(256);
    let handle = tokio::spawn(async move {
        loop {
            match pump_once(&local, Duration::from_secs(1)).await {
                Ok(deliveries) => {
                    for d in deliveries {
                        let _ = tx.send(d);
                    }
                }
                Err(why) => {
                    tracing::warn!(%why, "pump: receive failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    (handle, rx)
}
