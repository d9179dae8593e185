//! Hostile variations of real-shaped inputs, for the parser tests: structural mutations of
//! the JSON samples in `events/` (drop a field, change its type, replace a string with a
//! hostile one — empty, huge, unicode look-alikes, `../`, `%2F`, control characters —,
//! numbers out of range, nested junk, fields of one event grafted onto another) and of raw
//! bytes. Every choice comes from an [`Entropy`]: a seeded [`Rng`] (SplitMix64) in the stable
//! property test (`shared/core/tests/parsers.rs`, which includes this file), the fuzzer's
//! input bytes ([`ByteEntropy`]) in the `inbound_structured` fuzz target.

use greenlight_core::rng::Rng;
use serde_json::{json, Map, Value};

/// Where the random choices come from.
pub trait Entropy {
    /// 64 random bits.
    fn next_u64(&mut self) -> u64;

    /// A number below `n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True once in `n` times.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Picks one of `items` (which must not be empty).
pub fn pick<'a, T>(e: &mut impl Entropy, items: &'a [T]) -> &'a T {
    &items[e.below(items.len())]
}

/// greenlight's seeded PRNG (SplitMix64): the same sequence on every machine.
impl Entropy for Rng {
    fn next_u64(&mut self) -> u64 {
        Rng::next_u64(self)
    }
}

/// Choices read from a fuzzer's input, one byte per small choice; zeros once it runs out.
pub struct ByteEntropy<'a> {
    data: &'a [u8],
}

impl<'a> ByteEntropy<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        ByteEntropy { data }
    }

    /// True once every byte was used.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn take(&mut self, n: usize) -> u64 {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b))
    }
}

impl Entropy for ByteEntropy<'_> {
    fn next_u64(&mut self) -> u64 {
        self.take(8)
    }

    fn below(&mut self, n: usize) -> usize {
        match n {
            0 => 0,
            1..=256 => self.take(1) as usize % n,
            _ => self.take(4) as usize % n,
        }
    }
}

/// Strings that have broken parsers before: path tricks, encodings, look-alikes, control
/// characters, out-of-range numbers as text, and the valid values they imitate.
pub const HOSTILE: &[&str] = &[
    "",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\u{0}",
    "\u{7}",
    "\u{7f}",
    "\u{1b}[2J\u{1b}[31m",
    "\u{85}",
    "\u{2028}",
    "\u{202e}",
    "\u{200b}",
    "\u{feff}",
    "..",
    "../",
    "..\\",
    "./",
    "/",
    "//",
    "\\",
    "%2F",
    "%2f",
    "..%2F",
    "%2e%2e/",
    "%2e%2e%2f",
    "%00",
    "%",
    "?x=1",
    "#",
    "@",
    ":",
    "*",
    "~",
    "releases/",
    "releases",
    "releases-evil/",
    "/releases/",
    "releases//",
    "releases/../",
    "reports/",
    "checkout",
    "Checkout",
    "CHECKOUT",
    "check out",
    "check\tout",
    "ch\u{0435}ckout",
    "\u{ff43}\u{ff48}\u{ff45}\u{ff43}\u{ff4b}\u{ff4f}\u{ff55}\u{ff54}",
    "checkout\u{301}",
    "-checkout",
    "1checkout",
    "checkout/",
    "checkout.",
    "ami-",
    "ami-0a1b2c3d4e5f60718",
    "ami-12345678",
    "AMI-12345678",
    "ami-1234567",
    "ami-123456789",
    "ami-0A1B2C3D4E5F60718",
    "ami-ghijklmn",
    "ami-\u{ff11}\u{ff12}\u{ff13}\u{ff14}\u{ff15}\u{ff16}\u{ff17}\u{ff18}",
    "ami_12345678",
    " ami-12345678",
    "ami-12345678\n",
    "v2.4.0",
    "2.5.0",
    "v",
    "vv1",
    "1..2",
    "1.2.3.4.5",
    "2.0.0-rc.1",
    "2.0.0-",
    "1.0-a b",
    "999999999",
    "9999999999",
    "18446744073709551616",
    "v1.2.3/../../x",
    "v\u{663}",
    "d-3b9f2c41a7e05d6c8e12",
    "d-3B9F2C41A7E05D6C8E12",
    "d-",
    "arn:aws:imagebuilder:us-east-1:123456789012:image/checkout/2.5.0/1",
    "arn:aws:imagebuilder:::image/checkout/2.5.0/",
    "arn:aws:imagebuilder:us-east-1:123456789012:image/../2.5.0/1",
    "arn:aws:imagebuilder:us-east-1:123456789012:image/checkout/2.5.0/1/extra",
    "arn:aws:s3:::greenlight-artifacts",
    "arn:",
    "2026-11-24T10:00:00Z",
    "2026-11-24T10:00:00.999999999Z",
    "9999-12-31T23:59:60.999Z",
    "1969-12-31T23:59:59Z",
    "2026-02-31T00:00:00Z",
    "2026-11-24T10:00:00+00:00",
    "2026-11-24T10:00:00-00:00",
    "2026-11-24T24:00:00Z",
    "2026-11-24 10:00:00Z",
    "greenlight",
    "aws.s3",
    "aws.imagebuilder",
    "aws.cloudwatch",
    "ImagePublished",
    "RollbackRequested",
    "AbortRequested",
    "PromoteRequested",
    "Object Created",
    "CloudWatch Alarm State Change",
    "EC2 Image Builder Image State Change",
    "ALARM",
    "OK",
    "INSUFFICIENT_DATA",
    "AVAILABLE",
    "FAILED",
    "http://169.254.169.254/latest/meta-data/",
    "169.254.169.254",
    "localhost",
    "file:///etc/passwd",
    "$(reboot)",
    "`id`",
    "; rm -rf /",
    "${jndi:ldap://x}",
    "\u{1f980}",
    "\u{e9}",
    "\u{10ffff}",
    "\u{fffd}",
    "subnet-0123",
    "/smoke",
    "/smoke/../admin",
    "/ smoke",
    "/smoke\u{1}",
    "/@169.254.169.254/",
    "//169.254.169.254/",
    "greenlight-artifacts",
    "a",
    "xn--",
];

/// Pieces of S3 keys, for keys that try to leave the manifest prefix.
pub const KEY_PARTS: &[&str] = &[
    "releases/",
    "releases",
    "releases-evil/",
    "releases.evil/",
    "/",
    "//",
    "./",
    "..",
    "../",
    "..%2F",
    "%2F",
    "%2f",
    "%2e%2e/",
    "%2e%2e%2f",
    "%5C",
    "\\",
    "..\\",
    "%00",
    "\u{0}",
    "\u{ff0f}",
    "\u{2215}",
    "checkout",
    "checkout/",
    "Checkout/",
    "ch\u{0435}ckout/",
    "check out/",
    "-/",
    "reports/",
    "config/",
    "v2.6.0",
    "v2.6.0.json",
    "2.0.0-rc.1.json",
    ".json",
    ".json.json",
    "v1",
    "1..2",
    " ",
    "\n",
    "?versionId=1",
    "#",
];

/// Numbers at and beyond the edges of what the parsers accept.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "100",
    "101",
    "255",
    "256",
    "1000",
    "1001",
    "65535",
    "65536",
    "86400",
    "86401",
    "60000",
    "60001",
    "4294967295",
    "4294967296",
    "-4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "1.5",
    "-0.0",
    "1e308",
    "2.5e-308",
];

/// Field names the parsers look for, and a few they should never honour.
pub const FIELDS: &[&str] = &[
    "service",
    "version",
    "ami",
    "requested_by",
    "reason",
    "attempt",
    "to_version",
    "alarmName",
    "state",
    "value",
    "previousState",
    "status",
    "bucket",
    "name",
    "object",
    "key",
    "resources",
    "id",
    "time",
    "source",
    "detail-type",
    "detail",
    "deploy_id",
    "error",
    "smoke_url",
    "host",
    "url",
    "path",
    "port",
    "listener_arn",
];

/// The event kinds greenlight parses, as (source, detail-type), and one it does not.
pub const KINDS: &[(&str, &str)] = &[
    ("greenlight", "ImagePublished"),
    ("greenlight", "RollbackRequested"),
    ("greenlight", "AbortRequested"),
    ("greenlight", "PromoteRequested"),
    ("aws.cloudwatch", "CloudWatch Alarm State Change"),
    ("aws.imagebuilder", "EC2 Image Builder Image State Change"),
    ("aws.s3", "Object Created"),
    ("aws.ec2", "EC2 Instance State-change Notification"),
];

/// A hostile string: a known one, several glued together, random code points, or a huge one.
pub fn hostile_string(e: &mut impl Entropy) -> String {
    match e.below(20) {
        0 => {
            let unit = pick(e, &["a", "../", "\u{e9}", "\u{0}", "9", "%2F", "\u{1f980}"]);
            unit.repeat(1 + e.below(60_000 / unit.len()))
        }
        1..=5 => (0..2 + e.below(4)).map(|_| *pick(e, HOSTILE)).collect(),
        6..=7 => (0..e.below(24))
            .filter_map(|_| {
                let ranges: [(u32, u32); 6] = [
                    (0, 0x20),
                    (0x20, 0x7f),
                    (0x7f, 0x100),
                    (0x300, 0x370),
                    (0x2000, 0x2070),
                    (0x1_f300, 0x1_f9ff),
                ];
                let (lo, hi) = *pick(e, &ranges);
                char::from_u32(lo + e.below((hi - lo) as usize) as u32)
            })
            .collect(),
        _ => pick(e, HOSTILE).to_string(),
    }
}

/// A hostile number (as JSON, which may not fit any Rust integer).
fn hostile_number(e: &mut impl Entropy) -> Value {
    let number: &&str = pick(e, NUMBERS);
    serde_json::from_str(number).unwrap_or(Value::Null)
}

/// A hostile JSON value of any type, nested at most `depth` more levels.
pub fn hostile_value(e: &mut impl Entropy, depth: usize) -> Value {
    match e.below(if depth == 0 { 6 } else { 10 }) {
        0 => Value::Null,
        1 => Value::Bool(e.one_in(2)),
        2 => hostile_number(e),
        3..=5 => Value::String(hostile_string(e)),
        6 => Value::Array((0..e.below(4)).map(|_| hostile_value(e, depth - 1)).collect()),
        7 => {
            let mut map = Map::new();
            for _ in 0..e.below(4) {
                let key = if e.one_in(2) {
                    pick(e, FIELDS).to_string()
                } else {
                    hostile_string(e)
                };
                map.insert(key, hostile_value(e, depth - 1));
            }
            Value::Object(map)
        }
        8 => {
            // Nested junk, within what a JSON parser with a recursion limit still reads.
            let mut v = hostile_value(e, 0);
            for _ in 0..1 + e.below(100) {
                v = if e.one_in(2) {
                    json!([v])
                } else {
                    json!({ "detail": v })
                };
            }
            v
        }
        _ => json!({ "value": hostile_string(e), "status": hostile_string(e), "name": hostile_string(e) }),
    }
}

/// The longest string a mutation makes: an EventBridge event is at most 256 KB. (Without a
/// bound, repeated repetitions grew a string to gigabytes: the fuzzer ran out of memory.)
pub const MAX_TEXT: usize = 256 * 1024;

/// The longest prefix of `s` of at most `max` bytes that ends at a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    let at = (0..=max.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[..at]
}

/// `s` cut to [`MAX_TEXT`] bytes.
fn capped(s: String) -> String {
    if s.len() > MAX_TEXT {
        prefix(&s, MAX_TEXT).to_string()
    } else {
        s
    }
}

/// `s` with one hostile edit at a character boundary (at most [`MAX_TEXT`] bytes).
pub fn mutate_string(e: &mut impl Entropy, s: &str) -> String {
    let s = prefix(s, MAX_TEXT);
    let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
    let at = *pick(e, &bounds);
    let fragment = pick(e, HOSTILE);
    capped(match e.below(9) {
        0 => format!("{}{fragment}{}", &s[..at], &s[at..]),
        1 => s[..at].to_string(),
        2 => {
            let next = bounds.iter().copied().find(|&b| b > at).unwrap_or(s.len());
            format!("{}{fragment}{}", &s[..at], &s[next..])
        }
        3 => format!("{s}{fragment}"),
        4 => format!("{fragment}{s}"),
        5 => s.to_uppercase(),
        6 => s.repeat((2 + e.below(40)).min(1 + MAX_TEXT / s.len().max(1))),
        7 => s[at..].to_string(),
        _ => hostile_string(e),
    })
}

/// One step of a path into a JSON value.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Every path in `v` (the root is the empty path).
fn paths(v: &Value, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(here.clone());
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                here.push(Seg::Key(k.clone()));
                paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                here.push(Seg::Index(i));
                paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn node_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |node, seg| match seg {
        Seg::Key(k) => node.get_mut(k.as_str()),
        Seg::Index(i) => node.get_mut(*i),
    })
}

/// Some subtree of `v`.
fn subtree(e: &mut impl Entropy, v: &Value) -> Value {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    let path = pick(e, &all).clone();
    let mut copy = v.clone();
    node_mut(&mut copy, &path).map(|n| n.take()).unwrap_or(Value::Null)
}

/// Applies one structural mutation to `value`; `donors` lend subtrees (other samples).
pub fn mutate(e: &mut impl Entropy, value: &mut Value, donors: &[Value]) {
    let mut all = Vec::new();
    paths(value, &mut Vec::new(), &mut all);
    let path = pick(e, &all).clone();
    match e.below(12) {
        // Drop the field or element.
        0 | 1 => {
            if let Some((last, parent)) = path.split_last() {
                match (node_mut(value, parent), last) {
                    (Some(Value::Object(map)), Seg::Key(k)) => {
                        map.remove(k);
                    }
                    (Some(Value::Array(items)), Seg::Index(i)) if *i < items.len() => {
                        items.remove(*i);
                    }
                    _ => {}
                }
            }
        }
        2 => set(value, &path, hostile_value(e, 3)),
        3 | 4 => {
            let new = match node_mut(value, &path) {
                Some(Value::String(s)) => mutate_string(e, s),
                _ => hostile_string(e),
            };
            set(value, &path, Value::String(new));
        }
        // Same content, another type.
        5 => {
            if let Some(node) = node_mut(value, &path) {
                *node = match node.take() {
                    Value::String(s) => match e.below(3) {
                        0 => json!([s]),
                        1 => json!({ "value": s }),
                        _ => s.parse::<f64>().map(Value::from).unwrap_or(Value::Null),
                    },
                    Value::Number(n) => Value::String(n.to_string()),
                    Value::Bool(b) => Value::String(b.to_string()),
                    Value::Array(items) => items.into_iter().next().unwrap_or(Value::Null),
                    Value::Object(map) => Value::Array(map.into_iter().map(|(_, v)| v).collect()),
                    Value::Null => Value::String(String::new()),
                };
            }
        }
        // An extra field, named like a real one or not: here if this is an object, else
        // in the detail.
        6 => {
            let key = if e.one_in(3) {
                hostile_string(e)
            } else {
                pick(e, FIELDS).to_string()
            };
            let extra = hostile_value(e, 2);
            let here = node_mut(value, &path).is_some_and(|n| n.is_object());
            let target = if here {
                node_mut(value, &path)
            } else {
                value.get_mut("detail")
            };
            if let Some(Value::Object(map)) = target {
                map.insert(key, extra);
            }
        }
        // A subtree of another sample grafted here.
        7 if !donors.is_empty() => {
            let donor = pick(e, donors);
            let graft = subtree(e, donor);
            set(value, &path, graft);
        }
        // Another kind of event around the same detail.
        8 => {
            let (source, detail_type) = *pick(e, KINDS);
            if let Value::Object(root) = value {
                root.insert("source".into(), source.into());
                root.insert("detail-type".into(), detail_type.into());
            }
        }
        9 => {
            if let Some(node) = node_mut(value, &path) {
                *node = if e.one_in(2) {
                    json!([node.take()])
                } else {
                    json!({ "value": node.take() })
                };
            }
        }
        // A field the parser reads, set to something hostile, in the detail or here.
        10 => {
            let key = *pick(e, FIELDS);
            let hostile = if e.one_in(3) {
                hostile_value(e, 1)
            } else {
                Value::String(hostile_string(e))
            };
            let in_detail = e.one_in(2) && value.get("detail").is_some_and(Value::is_object);
            match value.get_mut("detail") {
                Some(Value::Object(detail)) if in_detail => {
                    detail.insert(key.into(), hostile);
                }
                _ => set(value, &path, hostile),
            }
        }
        // Now and then, the whole input replaced by junk.
        _ => {
            if e.one_in(4) {
                *value = hostile_value(e, 3);
            }
        }
    }
}

fn set(value: &mut Value, path: &[Seg], new: Value) {
    if let Some(node) = node_mut(value, path) {
        *node = new;
    }
}

/// An S3 key glued from [`KEY_PARTS`], often starting at the manifest prefix.
pub fn manifest_key(e: &mut impl Entropy) -> String {
    if e.one_in(3) {
        // A valid key, or a near miss: one hostile edit of it.
        let service: &&str = pick(e, &["checkout", "a", "a-1", "web-api-2"]);
        let version: &&str = pick(e, &["v2.6.0", "1.2", "2.0.0-rc.1", "v1.0.0-alpha-1"]);
        let key = format!("releases/{service}/{version}.json");
        return if e.one_in(2) { key } else { mutate_string(e, &key) };
    }
    let mut key = String::new();
    if e.one_in(2) {
        key.push_str("releases/");
    }
    for _ in 0..1 + e.below(7) {
        let part: &&str = pick(e, KEY_PARTS);
        key.push_str(part);
    }
    key
}

/// `key` form-encoded as S3 writes it in an event notification, or nearly: each byte kept,
/// percent-encoded (either case of hex digit) or, for a space, `+`; now and then a broken
/// escape or a `+` that is really a plus.
pub fn form_encode(e: &mut impl Entropy, key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        let must = !(b.is_ascii_alphanumeric() || b"/.-_".contains(&b));
        match e.below(8) {
            _ if b == b' ' && e.one_in(2) => out.push('+'),
            0..=2 if !must => out.push(b as char),
            3 => out.push_str(&format!("%{b:02x}")),
            7 if e.one_in(8) => {
                let junk: &&str = pick(e, &["%", "%2", "%G1", "+", "%2B", "%25"]);
                out.push_str(junk);
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Applies one byte-level mutation to `bytes`.
pub fn mutate_bytes(e: &mut impl Entropy, bytes: &mut Vec<u8>) {
    let at = e.below(bytes.len() + 1);
    match e.below(6) {
        0 if at < bytes.len() => bytes[at] ^= 1 << e.below(8),
        1 => bytes.insert(at, *pick(e, b"{}[]\":,\\0123456789eE.-+ \ntfn\x00\xff")),
        2 => {
            let end = (at + 1 + e.below(16)).min(bytes.len());
            bytes.drain(at.min(end)..end);
        }
        3 => {
            let end = (at + 1 + e.below(32)).min(bytes.len());
            let copy = bytes[at.min(end)..end].to_vec();
            bytes.splice(at..at, copy);
        }
        4 => {
            let fragment = pick(e, HOSTILE).as_bytes().to_vec();
            bytes.splice(at..at, fragment);
        }
        _ => bytes.truncate(at),
    }
}

/// Random bytes, biased towards JSON punctuation.
pub fn random_bytes(e: &mut impl Entropy) -> Vec<u8> {
    (0..e.below(256))
        .map(|_| {
            if e.one_in(2) {
                *pick(e, b"{}[]\":,0123456789 aeflnrstu\\")
            } else {
                e.below(256) as u8
            }
        })
        .collect()
}
