//! Hostile input end to end:
//! - an event cannot point the smoke test at a host of its choosing: every URL probed is
//!   built from a green instance's own private address (read back from EC2), the
//!   registration's port and smoke path, whatever the event carries;
//! - no shell-outs in shipped code (shared/core, shared/adapters, shared/steps, functions/*):
//!   no process APIs in their sources, no process-running crate in their manifests;
//! - a shipped function binary at log level info writes neither its AWS secret nor the parts
//!   of an event it does not need to its stdout or stderr.

use async_trait::async_trait;
use greenlight_adapters::{Ports, Prober};
use greenlight_core::inbound::{IMAGE_PUBLISHED, SOURCE};
use greenlight_core::model::PhaseName;
use greenlight_e2e::{quick, sample_event, started, unique, App, Env};
use greenlight_local::emulator::repo_root;
use greenlight_local::fixture::alarm_name;
use greenlight_local::orchestrator::{Ending, LocalOrchestrator};
use greenlight_local::Local;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where hostile events would like the smoke test to go: the instance metadata service.
const METADATA: &str = "http://169.254.169.254/latest/meta-data/";

/// A prober that records every URL it is asked to GET, then asks the real one.
struct Recording {
    inner: Arc<dyn Prober>,
    urls: Mutex<Vec<String>>,
}

#[async_trait]
impl Prober for Recording {
    async fn get(&self, url: &str, header: Option<(&str, &str)>, timeout: Duration) -> Result<(u16, String), String> {
        self.urls.lock().unwrap().push(url.to_string());
        self.inner.get(url, header, timeout).await
    }
}

/// `http://<host>:<port><path>` → (host, port, path); anything else fails the test.
fn url_parts(url: &str) -> (String, u16, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{url}: not http://"));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    assert!(!authority.contains('@'), "{url}: userinfo in the authority");
    let (host, port) = authority.rsplit_once(':').unwrap_or_else(|| panic!("{url}: no port"));
    (host.to_string(), port.parse().expect("a port"), path.to_string())
}

#[tokio::test]
async fn an_event_cannot_point_the_smoke_test_at_another_host() {
    // The test's installation, with every smoke-test GET recorded.
    let env = Env::new("hostile-smoke", quick).await;
    let recording = Arc::new(Recording {
        inner: env.local.ports.prober.clone(),
        urls: Mutex::default(),
    });
    let orchestrator = Arc::new(LocalOrchestrator::new());
    let ports = Ports {
        prober: recording.clone(),
        orchestrator: orchestrator.clone(),
        ..env.local.ports.clone()
    };
    orchestrator.attach(ports.clone());
    let local = Local {
        ports,
        orchestrator,
        ..env.local.clone()
    };
    let env = Env { local, ..env };
    let ami = env.image("v2", App::Healthy).await;

    // Fields naming a host in the detail: the event is refused, nothing starts or is probed.
    let with_urls = json!({"service": env.service, "version": "v2", "ami": ami, "requested_by": "e2e",
                           "smoke_url": METADATA, "host": "169.254.169.254", "url": METADATA});
    env.publish_detail(&with_urls).await;
    let refused = env.deliver(1).await.remove(0).unwrap_err();
    assert!(refused.contains("unknown field"), "{refused}");
    assert!(env.local.ports.ledger.history(&env.service).await.unwrap().is_empty());
    assert!(recording.urls.lock().unwrap().is_empty());

    // An accepted event with the metadata URL wherever a publisher may put text: resources,
    // requested_by, reason. The deployment goes through the gates.
    let detail = json!({"service": env.service, "version": "v2", "ami": ami, "requested_by": METADATA,
                        "reason": format!("smoke_url={METADATA} host=169.254.169.254 url={METADATA}")});
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .source(SOURCE)
        .detail_type(IMAGE_PUBLISHED)
        .resources(METADATA)
        .detail(detail.to_string())
        .event_bus_name(&env.local.names.command_bus)
        .build();
    let out = aws_sdk_eventbridge::Client::new(&env.local.sdk)
        .put_events()
        .entries(entry)
        .send()
        .await
        .expect("put events");
    assert_eq!(out.failed_entry_count, 0, "{out:?}");
    let id = started(&env.deliver(1).await[0]);
    assert_eq!(env.wait(&id).await, Ending::Done(PhaseName::Succeeded));

    // Every URL probed: a green instance's private address as EC2 reports it, the
    // registration's port and smoke path; and every green instance was probed.
    let dep = env.deployment(&id).await;
    let green: BTreeSet<String> = env
        .local
        .ports
        .fleet
        .describe(&dep.green_instances)
        .await
        .expect("describe green")
        .into_iter()
        .filter_map(|i| i.private_ip)
        .collect();
    assert_eq!(
        green.len(),
        dep.green_instances.len(),
        "every green instance has an address"
    );
    let urls = recording.urls.lock().unwrap().clone();
    assert!(!urls.is_empty(), "the smoke test ran");
    let config = &env.world.config;
    let mut probed = BTreeSet::new();
    for url in &urls {
        let (host, port, path) = url_parts(url);
        assert!(
            green.contains(&host),
            "{url} is not a green instance's address {green:?}"
        );
        assert_eq!(
            (port, path.as_str()),
            (config.launch.port, config.health.smoke.path.as_str()),
            "{url}"
        );
        probed.insert(host);
    }
    assert_eq!(probed, green, "each green instance was smoke-tested");
}

/// What a shell-out looks like in Rust source.
const SHELL_OUTS: &[&str] = &[
    "std::process",
    "tokio::process",
    "async_process",
    "Command::new",
    "CommandExt",
    "libc::system",
    "libc::exec",
    "libc::fork",
    "libc::popen",
    "posix_spawn",
    "nix::unistd",
];

/// The `exec` family, as functions or methods (`CommandExt::exec`, `libc::execve`).
const EXECS: &[&str] = &[
    "exec", "execv", "execve", "execvp", "execvpe", "execl", "execlp", "execle", "fexecve",
];

/// Crates that run processes.
const PROCESS_CRATES: &[&str] = &["duct", "xshell", "subprocess", "cmd_lib", "async-process", "nix"];

/// True when a manifest's `line` depends on a crate that runs processes.
fn depends_on_process_crate(line: &str) -> bool {
    let name = line.split(['=', '.', ' ']).next().unwrap_or_default().trim_matches('"');
    PROCESS_CRATES.contains(&name)
}

/// True when `line` calls a function of the `exec` family: the word, then `(`.
fn calls_exec(line: &str) -> bool {
    let mut rest = line;
    while let Some(start) = rest.find(|c: char| c.is_alphanumeric() || c == '_') {
        let word_len = rest[start..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len() - start);
        let (word, after) = (&rest[start..start + word_len], &rest[start + word_len..]);
        if EXECS.contains(&word) && after.trim_start().starts_with('(') {
            return true;
        }
        rest = after;
    }
    false
}

/// The Rust sources and manifests under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() && path.file_name().is_some_and(|n| n != "target") {
            sources(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") || path.ends_with("Cargo.toml") {
            out.push(path);
        }
    }
}

#[test]
fn no_shell_outs_in_shipped_code() {
    let root = repo_root();
    let mut files = Vec::new();
    for dir in ["shared/core", "shared/adapters", "shared/steps", "functions"] {
        sources(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "the shipped sources: {files:?}");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            let shell_out = if file.ends_with("Cargo.toml") {
                depends_on_process_crate(line)
            } else {
                SHELL_OUTS.iter().any(|s| line.contains(s)) || calls_exec(line)
            };
            if shell_out {
                let shown = file.strip_prefix(&root).unwrap_or(file).display().to_string();
                found.push(format!("{shown}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "shipped code must not run processes:\n{}",
        found.join("\n")
    );
    // The detector itself.
    for shell_out in [
        "std::process::Command::new(\"sh\")",
        "cmd.exec();",
        "libc::execve(p, a, e)",
        "execv (x)",
        "nix::unistd::execvpe(f, a, e)",
    ] {
        assert!(
            SHELL_OUTS.iter().any(|s| shell_out.contains(s)) || calls_exec(shell_out),
            "{shell_out}"
        );
    }
    for fine in [
        "execution: deploy_id",
        "start_execution()",
        ".executions(x)",
        "execute(x)",
        "let exec = 1;",
    ] {
        assert!(!calls_exec(fine), "{fine}");
    }
    assert!(depends_on_process_crate("duct = \"0.13\"") && depends_on_process_crate("nix.workspace = true"));
    assert!(!depends_on_process_crate("tokio.workspace = true") && !depends_on_process_crate("[dependencies]"));
}

#[tokio::test(flavor = "multi_thread")]
async fn function_logs_at_info_carry_no_secret_and_no_unneeded_event_field() {
    let env = Env::new("hostile-logs", quick).await;
    greenlight_e2e::build_binaries();
    let marker = format!("MARKER{}", unique("m").replace('-', "x"));
    let secret = format!("wJalrXUtnFEMI/K7MDENG/bPxRfiCY{}", unique("s").replace('-', ""));
    let token = format!("IQoJb3JpZ2luX2VjE{}", unique("t").replace('-', ""));
    let local = &env.local;

    // A state machine for start-deployment to start executions of (not run here).
    let (state_machine_arn, _) = greenlight_e2e::create_state_machine(&env).await;

    let names = ["start-deployment", "revert-service", "steer-deployment", "launch-green"];
    let mut functions = Vec::new();
    let mut stderr_logs = Vec::new();
    for name in names {
        let (function, stderr_log) =
            greenlight_e2e::start_function(&env, name, &state_machine_arn, &secret, Some(&token)).await;
        functions.push(function);
        stderr_logs.push(stderr_log);
    }
    let invoke = |name: &str, event: Value| {
        let function = &functions[names.iter().position(|n| *n == name).unwrap()];
        async move { function.invoke(&event).await.map_err(|e| e.to_string()) }
    };

    // The envelope fields no handler needs, each carrying the marker.
    let marked = |mut event: Value| {
        event["account"] = json!(marker);
        event["region"] = json!(marker);
        event["resources"] = json!([format!("arn:aws:s3:::{marker}")]);
        event["marker"] = json!({ "nested": [marker] });
        event
    };
    let ami = env.image("v2", App::Healthy).await;

    // ImagePublished: a deployment starts.
    let published = marked(sample_event(
        "image-published.json",
        &[
            ("/detail/service", json!(env.service)),
            ("/detail/version", json!("v2")),
            ("/detail/ami", json!(ami)),
        ],
    ));
    let first = invoke("start-deployment", published).await.expect("start v2");
    let id = first["deploy_id"].as_str().expect("a deploy id").to_string();

    // The same image as an S3 release manifest, the marker in every field of the S3 detail
    // that greenlight does not read: the same deployment.
    let key = format!("releases/{}/v2.json", env.service);
    local
        .s3
        .put_object()
        .bucket(&local.names.bucket)
        .key(&key)
        .body(
            json!({"ami": ami, "requested_by": "release-bot"})
                .to_string()
                .into_bytes()
                .into(),
        )
        .send()
        .await
        .expect("put manifest");
    let manifest = marked(sample_event(
        "s3-release-manifest-created.json",
        &[
            ("/detail/bucket/name", json!(local.names.bucket)),
            ("/detail/object/key", json!(key)),
            ("/detail/object/etag", json!(marker)),
            ("/detail/object/sequencer", json!(marker)),
            ("/detail/object/version-id", json!(marker)),
            ("/detail/request-id", json!(marker)),
            ("/detail/requester", json!(marker)),
            ("/detail/source-ip-address", json!(marker)),
            ("/detail/reason", json!(marker)),
        ],
    ));
    let again = invoke("start-deployment", manifest).await.expect("manifest");
    assert_eq!(again["deploy_id"], json!(id), "{again}");

    // A refusal says what is wrong with the field it refuses (lambda_runtime logs it at
    // ERROR, quoted short and escaped), nothing of the rest of the event.
    let refused = marked(sample_event(
        "image-published.json",
        &[
            ("/detail/service", json!(env.service)),
            ("/detail/version", json!("latest")),
        ],
    ));
    let refusal = invoke("start-deployment", refused).await.unwrap_err();
    assert!(refusal.contains("invalid version \"latest\""), "{refusal}");

    // The alarm, with CloudWatch's configuration and data (not needed) marked: v2 is rolled
    // back (the reason CloudWatch gives is recorded and logged, so it carries no marker).
    let alarm = marked(sample_event(
        "cloudwatch-alarm-state-change-alarm.json",
        &[
            ("/detail/alarmName", json!(alarm_name(&env.service))),
            ("/time", json!(greenlight_e2e::now_rfc3339())),
            ("/detail/configuration/description", json!(marker)),
            ("/detail/configuration/metrics/0/id", json!(marker)),
            ("/detail/state/reasonData", json!(marker)),
            ("/detail/state/timestamp", json!(marker)),
            ("/detail/previousState/reason", json!(marker)),
            ("/detail/previousState/reasonData", json!(marker)),
        ],
    ));
    let reverted = invoke("revert-service", alarm).await.expect("revert");
    assert_eq!(reverted["deploy_id"], json!(id), "{reverted}");

    // An engineer's abort (parsed, then refused: the rollback ended the deployment), and a
    // step input with an extra field.
    let abort = marked(sample_event(
        "abort-requested.json",
        &[("/detail/service", json!(env.service))],
    ));
    let nothing = invoke("steer-deployment", abort).await.unwrap_err();
    assert!(nothing.contains("no deployment in flight"), "{nothing}");
    let step_input = json!({"service": env.service, "deploy_id": "d-00000000000000000000", "marker": marker});
    let step = invoke("launch-green", step_input).await.unwrap_err();
    assert!(step.contains("not in the ledger"), "{step}");

    // What the processes wrote: info lines, none with the marker or a credential.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut written: Vec<(String, String)> = Vec::new();
    for (function, stderr_log) in functions.iter().zip(&stderr_logs) {
        for line in function.stdout() {
            written.push((format!("{} stdout", function.name), line));
        }
        let stderr = std::fs::read_to_string(stderr_log).unwrap_or_default();
        for line in stderr.lines() {
            written.push((format!("{} stderr", function.name), line.to_string()));
        }
    }
    let info = written
        .iter()
        .filter(|(_, line)| line.contains("\"level\":\"INFO\""))
        .count();
    assert!(info >= 3, "the functions log at info: {written:#?}");
    assert!(
        written.iter().any(|(_, line)| line.contains("start-deployment done")),
        "{written:#?}"
    );
    for (what, needle) in [
        ("the event marker", &marker),
        ("the AWS secret key", &secret),
        ("the session token", &token),
    ] {
        let leaks: Vec<&(String, String)> = written
            .iter()
            .filter(|(_, line)| line.contains(needle.as_str()))
            .collect();
        assert!(leaks.is_empty(), "{what} appears in the logs: {leaks:#?}");
    }
}
