//! A client for the emulator's usage accounting (`/_greenlight/usage`, see
//! `tests/emulator/README.md`), for benchmarks: per access key id, the AWS calls made (per IAM
//! `service:Action`, including those that met an injected fault), the DynamoDB capacity units
//! they consumed as AWS computes them (item sizes before and after each request, rounded up to
//! 4 KB for reads and 1 KB for writes, half for eventually consistent reads, twice in
//! transactions, charged also when a condition fails), and the conditional-write conflicts
//! they met. Give each scenario its own key ([`crate::Local::with_access_key`]), then read
//! [`usage`] for that key, and [`reset`] it between runs.

use crate::faults::request;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The usage accounting's path on the emulator's endpoint.
pub const USAGE_PATH: &str = "/_greenlight/usage";

/// DynamoDB consumption of one access key.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct DynamoUsage {
    /// Read capacity units (0.5 per eventually consistent 4 KB, 1 strongly consistent, 2
    /// transactional).
    pub read_units: f64,
    /// Write capacity units (1 per KB, 2 transactional).
    pub write_units: f64,
    /// `ConditionalCheckFailedException` answers, and cancelled transactions with a
    /// `ConditionalCheckFailed` reason.
    pub conditional_check_failures: u64,
    /// `TransactionConflictException` answers, and cancelled transactions with a
    /// `TransactionConflict` reason.
    pub transaction_conflicts: u64,
}

impl DynamoUsage {
    /// Adds `other`'s units and counts to these.
    pub fn add(&mut self, other: &DynamoUsage) {
        self.read_units += other.read_units;
        self.write_units += other.write_units;
        self.conditional_check_failures += other.conditional_check_failures;
        self.transaction_conflicts += other.transaction_conflicts;
    }
}

/// What one access key used.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct KeyUsage {
    /// Requests per IAM action (`ec2:RunInstances`, `dynamodb:PutItem`, ...).
    pub calls: BTreeMap<String, u64>,
    pub dynamodb: DynamoUsage,
}

impl KeyUsage {
    /// Requests of every action.
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    /// Adds `other`'s calls, units and counts to these (e.g. to total several keys).
    pub fn add(&mut self, other: &KeyUsage) {
        for (action, n) in &other.calls {
            *self.calls.entry(action.clone()).or_default() += n;
        }
        self.dynamodb.add(&other.dynamodb);
    }
}

/// The usage of `access_key` (a key that made no call: zeros), or of every key that made
/// one (`None`), by access key id.
pub async fn usage(endpoint: &str, access_key: Option<&str>) -> Result<BTreeMap<String, KeyUsage>, String> {
    exchange(endpoint, "GET", access_key).await
}

/// Forgets the usage of `access_key` (or of every key: `None`) so that it counts from zero
/// again; returns what it was.
pub async fn reset(endpoint: &str, access_key: Option<&str>) -> Result<BTreeMap<String, KeyUsage>, String> {
    exchange(endpoint, "DELETE", access_key).await
}

async fn exchange(
    endpoint: &str,
    method: &str,
    access_key: Option<&str>,
) -> Result<BTreeMap<String, KeyUsage>, String> {
    let path = match access_key {
        Some(key) => format!("{USAGE_PATH}?access_key={}", query_escape(key)),
        None => USAGE_PATH.to_string(),
    };
    let hint = || {
        format!(
            "is the emulator running at {endpoint}, from this checkout? Start it with \
             `.venv/bin/python tests/emulator/greenlight_emulator.py --host 127.0.0.1 --port 0` \
             (or greenlight_local::emulator::Emulator::start)"
        )
    };
    let (status, body) = request(endpoint, method, &path, b"")
        .await
        .map_err(|e| format!("usage: {e}; {}", hint()))?;
    usage_from(status, body).map_err(|e| format!("{e}; {}", hint()))
}

fn usage_from(status: u16, body: Value) -> Result<BTreeMap<String, KeyUsage>, String> {
    if status != 200 {
        return Err(format!("usage accounting answered {status}: {body}"));
    }
    serde_json::from_value(body).map_err(|e| format!("usage accounting's answer: {e}"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_documented_shape_and_defaults_missing_fields() {
        let body = json!({
            "AKID1": {"calls": {"ec2:RunInstances": 3, "dynamodb:PutItem": 2},
                      "dynamodb": {"read_units": 12.5, "write_units": 40.0,
                                   "conditional_check_failures": 2, "transaction_conflicts": 0}},
            "AKID2": {"calls": {"ec2:RunInstances": 1}},
        });
        let usage = usage_from(200, body).unwrap();
        let first = &usage["AKID1"];
        assert_eq!(first.total_calls(), 5);
        assert_eq!(first.dynamodb.read_units, 12.5);
        assert_eq!(first.dynamodb.conditional_check_failures, 2);
        assert_eq!(usage["AKID2"].dynamodb, DynamoUsage::default());

        let mut total = KeyUsage::default();
        total.add(first);
        total.add(&usage["AKID2"]);
        assert_eq!(total.calls["ec2:RunInstances"], 4);
        assert_eq!(total.total_calls(), 6);
        assert_eq!(total.dynamodb.write_units, 40.0);

        let err = usage_from(405, json!({"error": "GET or DELETE"})).unwrap_err();
        assert!(err.contains("405"), "{err}");
    }

    #[test]
    fn access_keys_are_escaped_in_the_query() {
        assert_eq!(query_escape("AKID_1-x.y~z"), "AKID_1-x.y~z");
        assert_eq!(query_escape("a b&c=d"), "a%20b%26c%3Dd");
    }

    #[tokio::test]
    async fn an_unreachable_emulator_says_how_to_start_one() {
        let err = usage("http://127.0.0.1:1", None).await.unwrap_err();
        assert!(err.contains("is the emulator running"), "{err}");
    }

    /// Against a real emulator (skipped without the venv's Python): a put signed with its own
    /// key is counted and charged, the answer carries the same ConsumedCapacity, and reset
    /// starts the key from zero.
    #[tokio::test]
    async fn counts_and_charges_one_keys_calls() {
        if !crate::emulator::python().exists() {
            eprintln!("skipped: no {} (run `make setup`)", crate::emulator::python().display());
            return;
        }
        let emulator = crate::emulator::Emulator::start(None).unwrap();
        let endpoint = emulator.endpoint.as_str();
        let key = "AKIDUSAGECLIENT";
        let fixture = aws_sdk_dynamodb::Client::new(&crate::sdk_config(endpoint).await);
        fixture
            .create_table()
            .table_name("usage")
            .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
            .key_schema(
                aws_sdk_dynamodb::types::KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .attribute_definitions(
                aws_sdk_dynamodb::types::AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let client = aws_sdk_dynamodb::Client::new(&crate::sdk_config_as(endpoint, key).await);
        let big = aws_sdk_dynamodb::types::AttributeValue::S("x".repeat(1500));
        let out = client
            .put_item()
            .table_name("usage")
            .item("pk", aws_sdk_dynamodb::types::AttributeValue::S("a".into()))
            .item("data", big)
            .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total)
            .send()
            .await
            .unwrap();
        assert_eq!(out.consumed_capacity().and_then(|c| c.capacity_units()), Some(2.0));

        let seen = usage(endpoint, Some(key)).await.unwrap();
        let expected = KeyUsage {
            calls: BTreeMap::from([("dynamodb:PutItem".to_string(), 1)]),
            dynamodb: DynamoUsage {
                write_units: 2.0,
                ..DynamoUsage::default()
            },
        };
        assert_eq!(seen, BTreeMap::from([(key.to_string(), expected.clone())]));
        assert_eq!(usage(endpoint, None).await.unwrap()[key], expected);
        assert_eq!(reset(endpoint, Some(key)).await.unwrap()[key], expected);
        assert_eq!(usage(endpoint, Some(key)).await.unwrap()[key], KeyUsage::default());
    }
}
