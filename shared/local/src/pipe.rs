//! Plays the EventBridge Pipe from the ledger's stream to greenlight's events bus (the
//! template's `DeploymentEventsPipe`): it reads the table's DynamoDB stream through the
//! DynamoDB Streams API (moto implements it: `ListStreams`, `DescribeStream`,
//! `GetShardIterator`, `GetRecords`), keeps the records the pipe's filter keeps
//! ([`greenlight_core::announce::passes_filter`]), hands them in batches of
//! [`BATCH_SIZE`] to the enrichment (announce-deployments: in-process, or the shipped
//! bootstrap's process) and puts each detail it answers on the events bus with `PutEvents`,
//! as the pipe's target parameters say (`source: greenlight`, `detail-type:
//! DeploymentStateChanged`). A batch whose enrichment or `PutEvents` fails is tried again,
//! at most [`MAX_RETRY_ATTEMPTS`] times, then dead-lettered (kept in [`Pipe::dead_letters`]),
//! as the pipe's `MaximumRetryAttempts` and `DeadLetterConfig` say.
//!
//! It starts at the stream's end (`LATEST`) when spawned: a test or the demo starts it
//! before anything it wants announced is written. (In AWS the pipe starts at `TRIM_HORIZON`
//! when the stack creates it, when nothing has been written yet either.)

use crate::lambda_service::Function;
use crate::Local;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use greenlight_core::announce::{passes_filter, DETAIL_TYPE, SOURCE};
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// Records per enrichment call (the template's `BatchSize`).
pub const BATCH_SIZE: usize = 10;

/// Attempts after the first before a batch is dead-lettered (the template's
/// `MaximumRetryAttempts`).
pub const MAX_RETRY_ATTEMPTS: u32 = 10;

/// How long the reader waits when the stream has nothing new.
const IDLE: Duration = Duration::from_millis(200);

/// What enriches the stream's records.
#[derive(Clone)]
pub enum Enrichment {
    /// `greenlight_steps::announce_deployments`, in this process.
    InProcess,
    /// The announce-deployments function: a process of the shipped bootstrap.
    Function(Arc<Function>),
}

/// A running pipe: its task (aborted when dropped), the details it put on the bus (also
/// sent on [`Pipe::subscribe`]'s channel) and the batches it gave up on.
pub struct Pipe {
    task: tokio::task::JoinHandle<()>,
    sent: broadcast::Sender<Value>,
    pub dead_letters: Arc<Mutex<Vec<(Value, String)>>>,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Pipe {
    /// Every detail put on the bus from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.sent.subscribe()
    }
}

/// Starts the pipe of `local`'s ledger table (created with its stream, `Names::ledger_stream`)
/// to `local`'s events bus, signing with `local`'s credentials (the pipe's role). Returns
/// once it holds an iterator at the stream's end: what is written afterwards is announced.
pub async fn spawn(local: &Local, enrichment: Enrichment) -> Result<Pipe, String> {
    let mut reader = StreamReader::latest(local).await?;
    let (sent, _) = broadcast::channel(1024);
    let dead_letters = Arc::new(Mutex::new(Vec::new()));
    // The pipe's target, its client built once.
    let target = Target {
        client: aws_sdk_eventbridge::Client::new(&local.sdk),
        bus: local.names.events_bus.clone(),
    };
    let (tx, dead) = (sent.clone(), dead_letters.clone());
    let task = tokio::spawn(async move {
        loop {
            let (kept, read) = match reader.next().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(why) => {
                    tracing::warn!(%why, "pipe: GetRecords failed; trying again");
                    tokio::time::sleep(IDLE).await;
                    continue;
                }
            };
            for batch in kept.chunks(BATCH_SIZE) {
                deliver(&target, &enrichment, batch, &tx, &dead).await;
            }
            if read == 0 {
                tokio::time::sleep(IDLE).await;
            }
        }
        tracing::warn!("pipe: the shard closed; the pipe stops");
    });
    Ok(Pipe {
        task,
        sent,
        dead_letters,
    })
}

/// Reads a ledger table's stream from a point on, as the pipe does.
pub struct StreamReader {
    streams: aws_sdk_dynamodbstreams::Client,
    iterator: String,
}

impl StreamReader {
    /// A reader at the end of `local`'s ledger table's stream: it reads what is written
    /// from now on.
    pub async fn latest(local: &Local) -> Result<StreamReader, String> {
        let streams = aws_sdk_dynamodbstreams::Client::new(&local.sdk);
        let iterator = latest_iterator(&streams, &local.names.table).await?;
        Ok(StreamReader { streams, iterator })
    }

    /// The next page of records: those (of at most 100 read, the second number) that pass
    /// the pipe's filter, as the pipe hands them to the enrichment; 0 read when nothing new
    /// was written; None once the shard closed. A failed call leaves the reader where it was.
    pub async fn next(&mut self) -> Result<Option<(Vec<Value>, usize)>, String> {
        let page = self
            .streams
            .get_records()
            .shard_iterator(&self.iterator)
            .limit(100)
            .send()
            .await
            .map_err(|e| format!("get records: {e:?}"))?;
        let records = page.records.unwrap_or_default();
        let kept = records.iter().map(record_json).filter(passes_filter).collect();
        match page.next_shard_iterator {
            Some(next) => {
                self.iterator = next;
                Ok(Some((kept, records.len())))
            }
            None => Ok(None),
        }
    }

    /// Every record written since the last read, up to now (pages until one is empty).
    pub async fn drain(&mut self) -> Result<Vec<Value>, String> {
        let mut all = Vec::new();
        while let Some((kept, read)) = self.next().await? {
            if read == 0 {
                break;
            }
            all.extend(kept);
        }
        Ok(all)
    }
}

/// An iterator at the end of `table`'s stream (its one shard: moto's tables have one).
async fn latest_iterator(streams: &aws_sdk_dynamodbstreams::Client, table: &str) -> Result<String, String> {
    let listed = streams
        .list_streams()
        .table_name(table)
        .send()
        .await
        .map_err(|e| format!("list streams of {table}: {e:?}"))?;
    let arn = listed
        .streams
        .unwrap_or_default()
        .into_iter()
        .find_map(|s| s.stream_arn)
        .ok_or_else(|| format!("table {table} has no stream (create it with Names::ledger_stream)"))?;
    let described = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .map_err(|e| format!("describe stream {arn}: {e:?}"))?;
    let shard = described
        .stream_description
        .and_then(|d| d.shards)
        .unwrap_or_default()
        .into_iter()
        .find_map(|s| s.shard_id)
        .ok_or_else(|| format!("stream {arn} has no shard"))?;
    streams
        .get_shard_iterator()
        .stream_arn(&arn)
        .shard_id(&shard)
        .shard_iterator_type(ShardIteratorType::Latest)
        .send()
        .await
        .map_err(|e| format!("shard iterator of {arn}: {e:?}"))?
        .shard_iterator
        .ok_or_else(|| format!("no shard iterator for {arn}"))
}

/// One batch: enriched, then its details put on the bus; retried, then dead-lettered.
async fn deliver(
    target: &Target,
    enrichment: &Enrichment,
    batch: &[Value],
    sent: &broadcast::Sender<Value>,
    dead_letters: &Mutex<Vec<(Value, String)>>,
) {
    let batch = Value::Array(batch.to_vec());
    let mut last_error = String::new();
    for attempt in 0..=MAX_RETRY_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
        }
        let details = match enrich(enrichment, &batch).await {
            Ok(details) => details,
            Err(e) => {
                last_error = format!("enrichment: {e}");
                continue;
            }
        };
        match put_events(target, &details).await {
            Ok(()) => {
                for detail in details {
                    let _ = sent.send(detail);
                }
                return;
            }
            Err(e) => last_error = e,
        }
    }
    tracing::warn!(error = %last_error, "pipe: a batch failed every attempt; dead-lettered");
    dead_letters.lock().unwrap().push((batch, last_error));
}

/// The enrichment's answer: the details to put on the bus (an empty answer puts nothing).
async fn enrich(enrichment: &Enrichment, batch: &Value) -> Result<Vec<Value>, String> {
    let answer = match enrichment {
        Enrichment::InProcess => greenlight_steps::announce_deployments(batch)
            .map(|events| serde_json::to_value(events).expect("details serialise"))
            .map_err(|e| e.to_string())?,
        Enrichment::Function(function) => function.invoke(batch).await.map_err(|e| e.to_string())?,
    };
    Ok(match answer {
        Value::Array(details) => details,
        Value::Null => Vec::new(),
        Value::Object(ref o) if o.is_empty() => Vec::new(),
        Value::String(ref s) if s.is_empty() => Vec::new(),
        other => vec![other],
    })
}

/// Where the pipe puts the details: the events bus, through a client of the pipe's role.
struct Target {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

/// `PutEvents` of `details` on the events bus, at most 10 entries a call (EventBridge's
/// limit); every entry must be accepted.
async fn put_events(target: &Target, details: &[Value]) -> Result<(), String> {
    for chunk in details.chunks(10) {
        let entries = chunk
            .iter()
            .map(|detail| {
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source(SOURCE)
                    .detail_type(DETAIL_TYPE)
                    .detail(detail.to_string())
                    .event_bus_name(&target.bus)
                    .build()
            })
            .collect();
        let out = target
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| format!("put events: {e:?}"))?;
        if out.failed_entry_count > 0 {
            return Err(format!("put events: {} entries failed", out.failed_entry_count));
        }
    }
    Ok(())
}

/// A stream record as EventBridge Pipes hands it to an enrichment (the shape a Lambda
/// event source mapping sends): the event fields and `dynamodb` with typed attribute values.
pub fn record_json(record: &Record) -> Value {
    let mut dynamodb = Map::new();
    if let Some(r) = &record.dynamodb {
        if let Some(at) = r.approximate_creation_date_time {
            dynamodb.insert("ApproximateCreationDateTime".into(), json!(at.secs()));
        }
        for (name, image) in [
            ("Keys", &r.keys),
            ("NewImage", &r.new_image),
            ("OldImage", &r.old_image),
        ] {
            if let Some(image) = image {
                dynamodb.insert(name.into(), item_json(image));
            }
        }
        if let Some(n) = &r.sequence_number {
            dynamodb.insert("SequenceNumber".into(), json!(n));
        }
        if let Some(n) = r.size_bytes {
            dynamodb.insert("SizeBytes".into(), json!(n));
        }
        if let Some(view) = &r.stream_view_type {
            dynamodb.insert("StreamViewType".into(), json!(view.as_str()));
        }
    }
    json!({
        "eventID": record.event_id,
        "eventName": record.event_name.as_ref().map(|n| n.as_str()),
        "eventVersion": record.event_version,
        "eventSource": record.event_source,
        "awsRegion": record.aws_region,
        "dynamodb": dynamodb,
    })
}

fn item_json(item: &std::collections::HashMap<String, AttributeValue>) -> Value {
    Value::Object(item.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect())
}

/// DynamoDB JSON (`{"S": "…"}`, `{"N": "…"}`, …) of one attribute value. The ledger writes
/// strings, numbers, booleans, maps and lists; binary values are shown by their length.
fn attribute_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        AttributeValue::Null(n) => json!({"NULL": n}),
        AttributeValue::Ss(v) => json!({"SS": v}),
        AttributeValue::Ns(v) => json!({"NS": v}),
        AttributeValue::M(m) => json!({"M": item_json(m)}),
        AttributeValue::L(l) => json!({"L": l.iter().map(attribute_json).collect::<Vec<_>>()}),
        AttributeValue::B(b) => json!({"B": format!("<{} bytes>", b.as_ref().len())}),
        AttributeValue::Bs(v) => {
            json!({"BS": v.iter().map(|b| format!("<{} bytes>", b.as_ref().len())).collect::<Vec<_>>()})
        }
        _ => json!({"NULL": true}),
    }
}
