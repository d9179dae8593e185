//! A load generator for the emulator's ALB data plane (`greenlight-local load`): a steady
//! rate of `GET` requests to a listener's loopback URL, open loop (a request is sent on
//! schedule whether or not the earlier ones have been answered), concurrent with a bound on
//! the requests in flight (a request due while the bound is reached is skipped and counted).
//! It tallies, per second and for the whole run, the answers by status, by app version (the
//! stand-in app's body says `ok version=<v>`), the 5xx answers, the requests with no HTTP
//! answer, and the latency percentiles. Plain HTTP/1.1 over tokio's `TcpStream`, one
//! connection per request (`Connection: close`): no HTTP client crate.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::MissedTickBehavior;

/// The most requests in flight unless told otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// How long one request may take before it counts as failed, unless told otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Answers are read up to this size (the stand-in app's are a few bytes).
const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// What to send.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    /// `host:port` connected to.
    pub authority: String,
    /// Path and query of every request (`/` when the URL has none).
    pub path: String,
    /// Requests per second.
    pub rps: u32,
    /// How long requests are sent for.
    pub duration: Duration,
    /// Extra request headers (e.g. greenlight's test-route header).
    pub headers: Vec<(String, String)>,
    pub max_in_flight: usize,
    pub request_timeout: Duration,
}

impl LoadSpec {
    /// `rps` requests per second to `url` (`http://host:port[/path]`) for `duration`.
    pub fn new(url: &str, rps: u32, duration: Duration) -> Result<LoadSpec, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: an http:// URL is required"))?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        if rps == 0 {
            return Err("the rate must be at least 1 request per second".into());
        }
        Ok(LoadSpec {
            authority: authority.to_string(),
            path: path.to_string(),
            rps,
            duration,
            headers: Vec::new(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// The same, with `name: value` on every request.
    pub fn header(mut self, name: &str, value: &str) -> LoadSpec {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Requests the run sends (or skips): the rate times the duration.
    pub fn total_requests(&self) -> u64 {
        (f64::from(self.rps) * self.duration.as_secs_f64()).round() as u64
    }
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Answered {
        status: u16,
        version: Option<String>,
        latency: Duration,
    },
    /// Refused, reset, malformed or timed out: no HTTP answer.
    Failed,
}

/// Counts over a second or over the whole run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Requests due (sent or skipped) in this span.
    pub due: u64,
    /// Requests not sent because `max_in_flight` were in flight.
    pub skipped: u64,
    /// HTTP answers received, by status.
    pub by_status: BTreeMap<u16, u64>,
    /// HTTP answers whose body names a version (`version=<v>`), by version.
    pub by_version: BTreeMap<String, u64>,
    /// Requests that got no HTTP answer.
    pub failed: u64,
    latencies: Vec<Duration>,
}

impl Tally {
    fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Answered {
                status,
                version,
                latency,
            } => {
                *self.by_status.entry(*status).or_default() += 1;
                if let Some(v) = version {
                    *self.by_version.entry(v.clone()).or_default() += 1;
                }
                self.latencies.push(*latency);
            }
            Outcome::Failed => self.failed += 1,
        }
    }

    /// HTTP answers received.
    pub fn answered(&self) -> u64 {
        self.by_status.values().sum()
    }

    /// Answers with a 5xx status (the target's or the load balancer's own).
    pub fn server_errors(&self) -> u64 {
        self.by_status.range(500..600).map(|(_, n)| n).sum()
    }

    /// The latency percentile `p` (0–100, nearest rank) of the answers; None without one.
    pub fn latency_percentile(&self, p: f64) -> Option<Duration> {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
        sorted.get(rank.min(sorted.len()).checked_sub(1)?).copied()
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "requests {:>5}  answered {:>5}", self.due, self.answered())?;
        for (version, n) in &self.by_version {
            write!(f, "  {version} {n}")?;
        }
        write!(f, "  5xx {}", self.server_errors())?;
        if self.failed > 0 {
            write!(f, "  failed {}", self.failed)?;
        }
        if self.skipped > 0 {
            write!(f, "  skipped {}", self.skipped)?;
        }
        match self.latency_percentile(99.0) {
            Some(p99) => write!(f, "  p99 {:.1} ms", p99.as_secs_f64() * 1000.0),
            None => write!(f, "  p99 -"),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSummary {
    pub elapsed: Duration,
    pub total: Tally,
}

impl fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |p: f64| {
            self.total
                .latency_percentile(p)
                .map_or("-".to_string(), |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
        };
        let statuses: Vec<String> = self.total.by_status.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        write!(
            f,
            "total in {:.1} s: {}\n  statuses {{{}}}  p50 {}  p90 {}  p99 {}",
            self.elapsed.as_secs_f64(),
            self.total,
            statuses.join(", "),
            ms(50.0),
            ms(90.0),
            ms(99.0)
        )
    }
}

/// Sends `spec`'s load and calls `each_second(n, tally)` for every second of the run (1, 2,
/// ...: the requests due and the answers received in that second), then once more for the
/// answers that came after the last whole second, if any. Returns the whole run's tally.
pub async fn run_load(spec: &LoadSpec, mut each_second: impl FnMut(u64, &Tally)) -> LoadSummary {
    let total = spec.total_requests();
    let spec = Arc::new(spec.clone());
    let in_flight = Arc::new(Semaphore::new(spec.max_in_flight.max(1)));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Outcome>();
    let started = Instant::now();
    let mut schedule = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(spec.rps)));
    schedule.set_missed_tick_behavior(MissedTickBehavior::Burst); // open loop: catch up
    let mut next_second = tokio::time::Instant::from_std(started) + Duration::from_secs(1);
    let (mut second, mut due, mut finished) = (1u64, 0u64, 0u64);
    let mut this_second = Tally::default();
    let mut whole = Tally::default();
    while finished < total {
        tokio::select! {
            _ = schedule.tick(), if due < total => {
                due += 1;
                this_second.due += 1;
                whole.due += 1;
                match in_flight.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (spec, done_tx) = (spec.clone(), done_tx.clone());
                        tokio::spawn(async move {
                            let outcome = send_one(&spec).await;
                            drop(permit);
                            let _ = done_tx.send(outcome);
                        });
                    }
                    Err(_) => {
                        this_second.skipped += 1;
                        whole.skipped += 1;
                        finished += 1;
                    }
                }
            }
            Some(outcome) = done_rx.recv() => {
                this_second.add(&outcome);
                whole.add(&outcome);
                finished += 1;
            }
            _ = tokio::time::sleep_until(next_second) => {
                each_second(second, &this_second);
                this_second = Tally::default();
                second += 1;
                next_second += Duration::from_secs(1);
            }
        }
    }
    if this_second != Tally::default() {
        each_second(second, &this_second);
    }
    LoadSummary {
        elapsed: started.elapsed(),
        total: whole,
    }
}

/// One `GET`; its status, the version its body names, and how long it took.
async fn send_one(spec: &LoadSpec) -> Outcome {
    let started = Instant::now();
    let exchange = async {
        let mut stream = TcpStream::connect(&spec.authority).await.ok()?;
        let mut head = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: greenlight-load\r\nConnection: close\r\n",
            spec.path, spec.authority
        );
        for (name, value) in &spec.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.take(MAX_ANSWER_BYTES).read_to_end(&mut raw).await.ok()?;
        Some(raw)
    };
    let Ok(Some(raw)) = tokio::time::timeout(spec.request_timeout, exchange).await else {
        return Outcome::Failed;
    };
    let latency = started.elapsed();
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Outcome::Failed;
    };
    let Some(status) = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()) else {
        return Outcome::Failed;
    };
    Outcome::Answered {
        status,
        version: body_version(body),
        latency,
    }
}

/// `v2` of a body such as `ok version=v2`.
fn body_version(body: &str) -> Option<String> {
    let at = body.find("version=")? + "version=".len();
    let version: String = body[at..].chars().take_while(|c| !c.is_whitespace()).collect();
    (!version.is_empty()).then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_rates_and_versions() {
        let spec = LoadSpec::new("http://127.0.0.1:8080", 50, Duration::from_secs(3)).unwrap();
        assert_eq!((spec.authority.as_str(), spec.path.as_str()), ("127.0.0.1:8080", "/"));
        assert_eq!(spec.total_requests(), 150);
        let spec = LoadSpec::new("http://127.0.0.1:81/shop/x?y=1", 1, Duration::from_secs(1)).unwrap();
        assert_eq!(spec.path, "/shop/x?y=1");
        assert!(LoadSpec::new("https://example.com", 1, Duration::from_secs(1)).is_err());
        assert!(LoadSpec::new("http://127.0.0.1:1", 0, Duration::from_secs(1)).is_err());
        assert_eq!(body_version("ok version=v2"), Some("v2".into()));
        assert_eq!(body_version("internal error version=v3\n"), Some("v3".into()));
        assert_eq!(body_version("ok"), None);
    }

    #[test]
    fn tallies_percentiles_and_errors() {
        let mut tally = Tally::default();
        for ms in 1..=100u64 {
            tally.add(&Outcome::Answered {
                status: if ms % 20 == 0 { 503 } else { 200 },
                version: Some("v1".into()),
                latency: Duration::from_millis(ms),
            });
        }
        tally.add(&Outcome::Failed);
        assert_eq!((tally.answered(), tally.server_errors(), tally.failed), (100, 5, 1));
        assert_eq!(tally.latency_percentile(99.0), Some(Duration::from_millis(99)));
        assert_eq!(tally.latency_percentile(50.0), Some(Duration::from_millis(50)));
        assert_eq!(Tally::default().latency_percentile(99.0), None);
    }

    #[tokio::test]
    async fn a_refused_port_fails_every_request_without_hanging() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let spec = LoadSpec::new(&format!("http://127.0.0.1:{port}"), 20, Duration::from_millis(500)).unwrap();
        let mut seconds = 0;
        let summary = run_load(&spec, |_, _| seconds += 1).await;
        assert_eq!((summary.total.due, summary.total.failed), (10, 10));
        assert!(seconds >= 1);
    }
}
