//! `greenlight-local up` as a newcomer runs it: the stack comes up and prints what to export,
//! and the README's own "Publishing an image" and "Rolling back" commands, run as written with
//! the real AWS CLI (pinned in `tests/awscli-requirements.txt`, installed by `make test`),
//! deploy v2.4.0 and roll it back. Asserted on the emulator: the listener, the ledger, the
//! instances.

use greenlight_core::config::Switch;
use greenlight_core::model::{PhaseName, State};
use greenlight_e2e::build_binaries;
use greenlight_local::emulator::repo_root;
use greenlight_local::lambda_service::built_binary;
use greenlight_local::up::{GOOD_AMI, GOOD_VERSION, READY_LINE, SERVICE};
use greenlight_local::{Local, Names};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The AWS CLI: `GREENLIGHT_AWS_CLI`, or `.venv-awscli/bin/aws` (`make test` creates it).
fn aws_cli() -> PathBuf {
    let path = std::env::var_os("GREENLIGHT_AWS_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-awscli/bin/aws"));
    assert!(
        path.exists(),
        "{} not found: `make test` installs the AWS CLI pinned in tests/awscli-requirements.txt \
         into .venv-awscli (or set GREENLIGHT_AWS_CLI)",
        path.display()
    );
    path
}

/// The first ```sh block after `heading` in the README.
fn readme_command(heading: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let section = &readme[readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"))..];
    let block = &section[section.find("```sh\n").expect("a sh block") + "```sh\n".len()..];
    block[..block.find("```").expect("the block ends")].trim().to_string()
}

/// `greenlight-local up` running, its output so far, and the environment it said to export.
struct Up {
    child: tokio::process::Child,
    output: Arc<Mutex<Vec<String>>>,
    env: Vec<(String, String)>,
}

impl Up {
    async fn start() -> Up {
        let mut child = tokio::process::Command::new(built_binary("greenlight-local"))
            .arg("up")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("greenlight-local up starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let output = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        loop {
            let line = tokio::time::timeout(
                Duration::from_secs(120).saturating_sub(started.elapsed()),
                lines.next_line(),
            )
            .await
            .unwrap_or_else(|_| panic!("not ready within 120 s:\n{}", output.lock().unwrap().join("\n")))
            .expect("read stdout")
            .unwrap_or_else(|| panic!("up ended before it was ready:\n{}", output.lock().unwrap().join("\n")));
            let ready = line.starts_with(READY_LINE);
            output.lock().unwrap().push(line);
            if ready {
                break;
            }
        }
        // Keep reading: a full pipe would block the stack's printing.
        let sink = output.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let env = output
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Up { child, output, env }
    }

    fn var(&self, key: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("up printed no `export {key}=`: {:?}", self.env))
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// Runs `command` (a README block) in bash with the AWS CLI first on PATH and only the
    /// environment `up` printed (plus PATH and HOME): its stdout.
    async fn shell(&self, command: &str) -> String {
        let bin = aws_cli().parent().expect("a directory").to_path_buf();
        let path = format!("{}:/usr/bin:/bin", bin.display());
        let out = tokio::process::Command::new("bash")
            .args(["-c", command])
            .env_clear()
            .env("PATH", path)
            .env("HOME", std::env::temp_dir())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .await
            .expect("bash runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{command}\nfailed ({}): {stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

/// Polls the service's ledger state until `done` accepts it (120 s at most).
async fn until(local: &Local, up: &Up, what: &str, done: impl Fn(&State) -> bool) -> State {
    let started = Instant::now();
    loop {
        if let Ok(Some(state)) = local.ports.ledger.load(SERVICE, None).await {
            if done(&state) {
                return state;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{what}: not within 120 s; up printed:\n{}",
            up.output()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The switch point's target groups that get traffic, with their weights.
async fn weighted(local: &Local, switch: &Switch) -> Vec<(String, u8)> {
    let weights = local.ports.lb.traffic(switch).await.expect("the listener reads");
    weights.into_iter().filter(|(_, w)| *w > 0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_put_events_commands_deploy_and_roll_back_on_greenlight_local_up() {
    build_binaries();
    let _ = aws_cli();
    let mut up = Up::start().await;
    let local = Local::connect(up.var("AWS_ENDPOINT_URL"), Names::default())
        .await
        .expect("the stack's emulator answers");
    let registered = until(&local, &up, "checkout registered on v1", |s| {
        s.service.live.as_ref().is_some_and(|l| l.version == "v1")
    })
    .await;
    let v1_group = registered.service.live.clone().unwrap().target_group;
    let switch = registered.config.switch.points()[0].clone();

    // "Publishing an image", as written: v2.4.0 goes live through the canary steps.
    let publish = readme_command("## Publishing an image");
    assert!(
        publish.starts_with("aws events put-events") && publish.contains(GOOD_AMI),
        "{publish}"
    );
    let answer = up.shell(&publish).await;
    assert!(answer.contains("\"FailedEntryCount\": 0"), "{answer}");
    let live = until(&local, &up, "v2.4.0 live", |s| {
        s.service.live.as_ref().is_some_and(|l| l.version == GOOD_VERSION)
    })
    .await;
    let deploy_id = live
        .service
        .live
        .clone()
        .unwrap()
        .deploy_id
        .expect("deployed by greenlight");
    let green = live.service.live.clone().unwrap().target_group;
    assert_eq!(
        weighted(&local, &switch).await,
        vec![(green, 100)],
        "all traffic on v2.4.0"
    );
    let state = local
        .ports
        .ledger
        .load(SERVICE, Some(&deploy_id))
        .await
        .unwrap()
        .unwrap();
    let deployment = state.deployment.expect("the deployment is recorded");
    assert_eq!(deployment.ami, GOOD_AMI);
    assert_eq!(deployment.requested_by, "ci", "the README's requested_by");

    // "Rolling back", as written, during the bake window: traffic back on v1 at once.
    let rollback = readme_command("## Rolling back");
    assert!(rollback.contains("RollbackRequested"), "{rollback}");
    let answer = up.shell(&rollback).await;
    assert!(answer.contains("\"FailedEntryCount\": 0"), "{answer}");
    until(&local, &up, "v1 live again", |s| {
        s.service.live.as_ref().is_some_and(|l| l.version == "v1")
    })
    .await;
    assert_eq!(
        weighted(&local, &switch).await,
        vec![(v1_group, 100)],
        "all traffic back on v1"
    );
    let state = until(&local, &up, "the rolled-back deployment ends", |s| {
        s.service.active.is_none()
    })
    .await;
    let rolled_back = local
        .ports
        .ledger
        .load(SERVICE, Some(&deploy_id))
        .await
        .unwrap()
        .unwrap()
        .deployment
        .unwrap();
    assert_eq!(rolled_back.phase.kind(), PhaseName::Aborted, "{:?}", rolled_back.phase);
    let record = rolled_back.revert.expect("the rollback is recorded");
    assert_eq!(
        (record.requested_by.as_str(), record.reason.as_str()),
        ("alice", "p99 doubled")
    );
    assert!(state.service.warm.is_none());
    let v2_fleet = local.ports.fleet.instances_of(&deploy_id).await.unwrap();
    assert!(v2_fleet.is_empty(), "v2.4.0's fleet terminated: {v2_fleet:?}");
    let printed = up.output();
    assert!(
        printed.contains("[event] ImagePublished → deployment") && printed.contains("[event] RollbackRequested →"),
        "up shows each event it delivered:\n{printed}"
    );

    // up serves the dashboard on the stack: its services page lists checkout ...
    let url = printed
        .lines()
        .find_map(|l| l.strip_prefix("the dashboard: "))
        .unwrap_or_else(|| panic!("up prints the dashboard's URL:\n{printed}"))
        .to_string();
    let page = greenlight_e2e::http_get(&url).await;
    assert!(page.contains("data-service=\"checkout\""), "{page}");
    // ... and the dashboard ends with up, even when up is killed outright (it once outlived
    // it, holding the test's output open).
    up.child.kill().await.expect("kill up");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        use greenlight_adapters::Prober;
        let answer = greenlight_adapters::http::HttpProber
            .get(&url, None, Duration::from_secs(2))
            .await;
        if answer.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard still answers after up was killed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
