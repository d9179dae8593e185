//! Starts the local AWS emulator: `tests/emulator/greenlight_emulator.py` (moto in server
//! mode plus the AWS behaviour moto lacks) with the venv's Python, on a free loopback port.
//! The process exits when we drop it, and by itself if we die. Its ALB metrics are published
//! every [`LOCAL_METRIC_PERIOD_S`] seconds instead of AWS's 60 (`GREENLIGHT_METRIC_PERIOD_S`
//! overrides it), so that tests and the demo see traffic in CloudWatch within a second.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

/// The publication period of the local emulator's `AWS/ApplicationELB` metrics, seconds.
pub const LOCAL_METRIC_PERIOD_S: u32 = 1;

/// The environment variable that overrides [`LOCAL_METRIC_PERIOD_S`].
pub const METRIC_PERIOD_ENV: &str = "GREENLIGHT_METRIC_PERIOD_S";

/// The metric publication period the emulator is started with.
pub fn metric_period_s() -> u32 {
    std::env::var(METRIC_PERIOD_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(LOCAL_METRIC_PERIOD_S)
}

/// A running emulator. Dropping it stops it.
pub struct Emulator {
    /// `http://127.0.0.1:<port>`: set as `AWS_ENDPOINT_URL` for SDK clients.
    pub endpoint: String,
    child: Child,
    _stdin: Option<ChildStdin>,
}

/// The repository root (where `tests/emulator` lives).
pub fn repo_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// The Python that has the pinned moto: `GREENLIGHT_PYTHON`, or `.venv/bin/python` in the
/// repository (created by `make setup`).
pub fn python() -> PathBuf {
    std::env::var_os("GREENLIGHT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

impl Emulator {
    /// Starts the emulator on a free loopback port and waits for its `READY <endpoint>` line.
    /// Its log goes to `log` (stderr of the emulator).
    pub fn start(log: Option<PathBuf>) -> Result<Emulator, String> {
        Emulator::start_on(log, 0)
    }

    /// [`Emulator::start`] on loopback port `port` (0: any free one).
    pub fn start_on(log: Option<PathBuf>, port: u16) -> Result<Emulator, String> {
        let python = python();
        if !python.exists() {
            return Err(format!(
                "{} not found: run `make setup` (creates .venv with the pinned moto) or set GREENLIGHT_PYTHON",
                python.display()
            ));
        }
        let script = repo_root().join("tests/emulator/greenlight_emulator.py");
        let stderr = match log {
            Some(path) => {
                Stdio::from(std::fs::File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?)
            }
            None => Stdio::null(),
        };
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--metric-period-s", &metric_period_s().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {} {}: {e}", python.display(), script.display()))?;
        let stdout = child.stdout.take().ok_or("emulator has no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("emulator did not start: {e}"))?;
        let endpoint = line
            .trim()
            .strip_prefix("READY ")
            .ok_or_else(|| format!("emulator did not start (said {line:?}); see its log"))?
            .to_string();
        let stdin = child.stdin.take();
        Ok(Emulator {
            endpoint,
            child,
            _stdin: stdin,
        })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
