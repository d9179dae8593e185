//! Plays the Lambda service for the shipped bootstrap: each function runs as its own process
//! of the one binary ([`BOOTSTRAP`]), the way Lambda runs a `bootstrap` in an execution
//! environment, with `_HANDLER` set to the function's handler (the template's `Handler`),
//! and talks to a small Runtime API on loopback (`/2018-06-01/runtime/invocation/next`,
//! `.../response`, `.../error`, `/runtime/init/error`). Events are handed to it one at a
//! time, as Lambda does for one environment; the process lives across invocations (warm
//! starts).
//!
//! The process's stdout (JSON logs and Embedded Metric Format lines) is kept for assertions;
//! its stderr goes to a log file.

use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// The Runtime API's path prefix (its version).
const API: &str = "/2018-06-01/runtime";

/// How an invocation failed, as the Lambda service reports it to a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionError {
    /// `errorType` from the function (e.g. `greenlight.Rejected`), or `Sandbox.Timedout` /
    /// `Runtime.ExitError` when the process did not answer.
    pub error_type: String,
    pub error_message: String,
}

impl std::fmt::Display for FunctionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.error_message)
    }
}

type Reply = oneshot::Sender<Result<Value, FunctionError>>;

/// One invocation waiting for the function to ask for it.
struct Pending {
    payload: Value,
    reply: Reply,
}

/// The Runtime API state of one function: the queue of invocations and those in flight.
struct RuntimeApi {
    function_arn: String,
    timeout: Duration,
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    /// Invocations handed to the function, with when they were handed over.
    in_flight: Mutex<HashMap<String, (Reply, Instant)>>,
    init_error: Mutex<Option<FunctionError>>,
    /// When the process first asked for an invocation (its init phase ended).
    first_poll_at: Mutex<Option<Instant>>,
    /// Each finished invocation's duration: handed to the function → its answer.
    durations: Mutex<Vec<Duration>>,
}

/// The Cargo binary every function runs (`functions/greenlight-lambda`; `make lambdas`
/// builds it as `target/lambda/greenlight-lambda/bootstrap`).
pub const BOOTSTRAP: &str = "greenlight-lambda";

/// What a function process needs besides its binary.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The function's name (also its log stream and, in tests, its access key id).
    pub name: String,
    /// Its handler, what Lambda sets `_HANDLER` to (the template's `Handler`): which
    /// function the bootstrap serves (`launch-green`, ...). None: `_HANDLER` unset.
    pub handler: Option<String>,
    pub binary: PathBuf,
    /// Environment variables, as the function's configuration would set them. The process
    /// gets these and the Lambda-defined ones, nothing from the parent.
    pub env: Vec<(String, String)>,
    /// The function's timeout.
    pub timeout: Duration,
    /// Where the process's stderr goes.
    pub stderr_log: Option<PathBuf>,
}

/// A running function: its process and the Runtime API it polls.
pub struct Function {
    pub name: String,
    /// The `_HANDLER` it was started with.
    pub handler: Option<String>,
    /// The executable it runs.
    pub binary: PathBuf,
    api: Arc<RuntimeApi>,
    invocations: mpsc::UnboundedSender<Pending>,
    stdout: Arc<Mutex<Vec<String>>>,
    child: Mutex<Child>,
    /// When the process was spawned.
    started_at: Instant,
}

impl Function {
    /// Starts the Runtime API on a free loopback port and the function's process against it.
    pub async fn start(spec: FunctionSpec) -> Result<Function, String> {
        if !spec.binary.exists() {
            return Err(format!(
                "{} not found: build the bootstrap first (`cargo build -p {BOOTSTRAP}`)",
                spec.binary.display()
            ));
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind the runtime API: {e}"))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let (invocations, queue) = mpsc::unbounded_channel();
        let api = Arc::new(RuntimeApi {
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{}", spec.name),
            timeout: spec.timeout,
            queue: tokio::sync::Mutex::new(queue),
            in_flight: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
            first_poll_at: Mutex::new(None),
            durations: Mutex::new(Vec::new()),
        });
        tokio::spawn(serve(listener, api.clone()));

        let stderr = match &spec.stderr_log {
            Some(path) => {
                Stdio::from(std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?)
            }
            None => Stdio::null(),
        };
        let mut command = Command::new(&spec.binary);
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &spec.name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", spec.name))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("local/[$LATEST]{}", spec.name))
            .envs(spec.handler.iter().map(|handler| ("_HANDLER", handler.as_str())))
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        let started_at = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", spec.binary.display()))?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().ok_or("the function has no stdout")?;
        let lines = stdout.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(out).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().unwrap().push(line);
            }
        });
        Ok(Function {
            name: spec.name,
            handler: spec.handler,
            binary: spec.binary,
            api,
            invocations,
            stdout,
            child: Mutex::new(child),
            started_at,
        })
    }

    /// Invokes the function with `payload` (a synchronous `Invoke`, as Step Functions'
    /// `lambda:invoke` does) and returns its response or its error.
    pub async fn invoke(&self, payload: &Value) -> Result<Value, FunctionError> {
        if let Some(error) = self.api.init_error.lock().unwrap().clone() {
            return Err(error);
        }
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            payload: payload.clone(),
            reply,
        };
        self.invocations.send(pending).map_err(|_| FunctionError {
            error_type: "Runtime.Unavailable".into(),
            error_message: format!("{}'s runtime API is gone", self.name),
        })?;
        // The deadline runs from when the function takes the event; waiting in the queue
        // for an earlier invocation is bounded too, so a dead process cannot hang a caller.
        match tokio::time::timeout(self.api.timeout * 3, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(FunctionError {
                error_type: "Runtime.Unavailable".into(),
                error_message: format!("{}'s runtime API dropped the invocation", self.name),
            }),
            Err(_) => Err(self.exit_or_timeout()),
        }
    }

    fn exit_or_timeout(&self) -> FunctionError {
        match self.child.lock().unwrap().try_wait() {
            Ok(Some(status)) => FunctionError {
                error_type: "Runtime.ExitError".into(),
                error_message: format!("{} exited: {status}", self.name),
            },
            _ => FunctionError {
                error_type: "Sandbox.Timedout".into(),
                error_message: format!("{} did not answer within {:?}", self.name, self.api.timeout),
            },
        }
    }

    /// Every line the process wrote to stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Whether the process has exited (an init error, a crash), with its status.
    pub fn exit_status(&self) -> Option<std::process::ExitStatus> {
        self.child.lock().unwrap().try_wait().ok().flatten()
    }

    /// The process id (for measurements).
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().id()
    }

    /// The init phase: process spawned → its first `/invocation/next` request (None while it
    /// has not asked yet).
    pub fn init_duration(&self) -> Option<Duration> {
        let first_poll_at = (*self.api.first_poll_at.lock().unwrap())?;
        Some(first_poll_at.saturating_duration_since(self.started_at))
    }

    /// Waits until the process asks for its first event (its init is done), at most `within`.
    /// False if it has not by then (an init error, or a slow start).
    pub async fn wait_for_init(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.init_duration().is_none() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        true
    }

    /// How long each finished invocation took, in order: event handed to the function → its
    /// response or error posted. The first is the cold one.
    pub fn invocation_durations(&self) -> Vec<Duration> {
        self.api.durations.lock().unwrap().clone()
    }

    /// The process's peak resident set size so far in KiB (`VmHWM` in `/proc/<pid>/status`;
    /// None where there is no procfs or the process is gone).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

/// Accepts the function's connections (the runtime keeps one alive and may open more).
async fn serve(listener: TcpListener, api: Arc<RuntimeApi>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(connection(stream, api.clone()));
    }
}

/// One HTTP/1.1 connection: requests one after the other until the peer closes it.
async fn connection(stream: TcpStream, api: Arc<RuntimeApi>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    while let Ok(Some(request)) = read_request(&mut reader).await {
        let (status, headers, body) = route(&api, request).await;
        let mut head = format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        if write.write_all(head.as_bytes()).await.is_err() || write.write_all(&body).await.is_err() {
            return;
        }
    }
}

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// Reads one request (Content-Length or chunked body); None when the peer closed.
async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let mut body = Vec::new();
    if headers.get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            line.clear();
            reader.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            if size == 0 {
                // Trailers (the runtime may send error trailers), then the blank line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await?;
            chunk.truncate(size);
            body.extend(chunk);
        }
    } else if let Some(length) = headers.get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(length, 0);
        reader.read_exact(&mut body).await?;
    }
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}

type Response = (&'static str, Vec<(&'static str, String)>, Vec<u8>);

fn accepted() -> Response {
    ("202 Accepted", vec![], br#"{"status":"OK"}"#.to_vec())
}

async fn route(api: &RuntimeApi, request: Request) -> Response {
    let Some(path) = request.path.strip_prefix(API) else {
        return ("404 Not Found", vec![], b"{}".to_vec());
    };
    match (request.method.as_str(), path) {
        ("GET", "/invocation/next") => next_invocation(api).await,
        ("POST", "/init/error") => {
            *api.init_error.lock().unwrap() = Some(function_error(&request, "Runtime.InitError"));
            accepted()
        }
        ("POST", path) => {
            let Some(rest) = path.strip_prefix("/invocation/") else {
                return ("404 Not Found", vec![], b"{}".to_vec());
            };
            let (id, outcome) = rest.rsplit_once('/').unwrap_or((rest, ""));
            let result = match outcome {
                "response" => serde_json::from_slice(&request.body).map_err(|e| FunctionError {
                    error_type: "Runtime.InvalidResponse".into(),
                    error_message: format!("response is not JSON: {e}"),
                }),
                "error" => Err(function_error(&request, "Runtime.Unknown")),
                _ => return ("404 Not Found", vec![], b"{}".to_vec()),
            };
            let finished = api.in_flight.lock().unwrap().remove(id);
            match finished {
                Some((reply, handed_over)) => {
                    api.durations.lock().unwrap().push(handed_over.elapsed());
                    let _ = reply.send(result);
                    accepted()
                }
                None => (
                    "400 Bad Request",
                    vec![],
                    br#"{"errorType":"InvalidRequestID","errorMessage":"unknown request id"}"#.to_vec(),
                ),
            }
        }
        _ => ("404 Not Found", vec![], b"{}".to_vec()),
    }
}

/// The long poll: waits for the next invocation and hands it over with its headers.
async fn next_invocation(api: &RuntimeApi) -> Response {
    api.first_poll_at.lock().unwrap().get_or_insert_with(Instant::now);
    let Some(pending) = api.queue.lock().await.recv().await else {
        return ("500 Internal Server Error", vec![], b"{}".to_vec());
    };
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = format!(
        "00000000-0000-4000-8000-{:012}",
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let deadline_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        + api.timeout.as_millis();
    api.in_flight
        .lock()
        .unwrap()
        .insert(id.clone(), (pending.reply, Instant::now()));
    let headers = vec![
        ("lambda-runtime-aws-request-id", id.clone()),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", api.function_arn.clone()),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
        ),
    ];
    ("200 OK", headers, pending.payload.to_string().into_bytes())
}

/// The error a function reported (`{"errorType", "errorMessage"}`).
fn function_error(request: &Request, default_type: &str) -> FunctionError {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
    FunctionError {
        error_type: body["errorType"]
            .as_str()
            .or_else(|| {
                request
                    .headers
                    .get("lambda-runtime-function-error-type")
                    .map(String::as_str)
            })
            .unwrap_or(default_type)
            .to_string(),
        error_message: body["errorMessage"].as_str().unwrap_or_default().to_string(),
    }
}

/// The environment variable naming the directory of the binaries (the bootstrap) to run
/// instead of those next to the running test or tool (the benchmarks point it at a release
/// build).
pub const BINARIES_DIR: &str = "GREENLIGHT_BINARIES_DIR";

/// Where `cargo build` put the binary `name` (next to the running test or tool), or where
/// [`BINARIES_DIR`] says.
pub fn built_binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(BINARIES_DIR) {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> or target/<profile>/<tool>
    let mut dir: &Path = exe.parent().unwrap_or(Path::new("."));
    if dir.ends_with("deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    dir.join(name)
}
