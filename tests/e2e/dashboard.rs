//! `greenlight dashboard` in a real browser: headless Chromium (Debian's `chromium`, driven
//! by Playwright through `tests/browser/driver.py`, both installed by `make test`) against
//! the built CLI serving a real canary on the emulator. What the page shows is read in the
//! browser; what its buttons did is read on the emulator (listener weights, the ledger), never
//! on the page. Screenshots of every page go to `target/artifacts/dashboard/`.

use crate::cli::{assert_reads_and_publishes_only, cli_calls, command, deliveries, MOTO_USER};
use greenlight_core::config::OnPauseTimeout;
use greenlight_core::inbound::SteerAction;
use greenlight_core::model::PhaseName;
use greenlight_e2e::{canary, started, App, Env};
use greenlight_local::emulator::repo_root;
use greenlight_local::fixture::Spec;
use greenlight_local::orchestrator::Ending;
use greenlight_local::pump::Outcome;
use greenlight_steps::RevertOutcome;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Where the screenshots go.
fn artifacts() -> PathBuf {
    let dir = repo_root().join("target/artifacts/dashboard");
    std::fs::create_dir_all(&dir).expect("the artefacts directory");
    dir
}

/// Chromium as `tests/browser/driver.py` starts it, driven by the pinned Playwright.
struct Browser {
    _child: Child,
    input: ChildStdin,
    output: Lines<BufReader<ChildStdout>>,
}

impl Browser {
    async fn start() -> Browser {
        let python = std::env::var_os("GREENLIGHT_BROWSER_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".venv-browser/bin/python"));
        let chromium = std::env::var("GREENLIGHT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            python.exists() && std::path::Path::new(&chromium).exists(),
            "the browser tests need Chromium at {chromium} and Playwright at {}: `make browser` installs both \
             (Debian's chromium package, Playwright pinned in tests/browser/requirements.txt)",
            python.display()
        );
        let mut child = tokio::process::Command::new(python)
            .arg(repo_root().join("tests/browser/driver.py"))
            .env("GREENLIGHT_CHROMIUM", chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the browser driver starts");
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut browser = Browser {
            _child: child,
            input,
            output,
        };
        let ready = browser.answer(Duration::from_secs(60)).await;
        assert_eq!(ready["ready"], true, "{ready}");
        browser
    }

    async fn answer(&mut self, within: Duration) -> Value {
        let line = tokio::time::timeout(within, self.output.next_line())
            .await
            .expect("the browser answers in time")
            .expect("read the browser")
            .expect("the browser driver is running");
        serde_json::from_str(&line).expect("one JSON answer per line")
    }

    /// Runs one command; panics with the browser's error when it fails.
    async fn run(&mut self, command: Value) -> Value {
        let answer = self.try_run(&command).await;
        assert_eq!(answer["ok"], true, "{command} failed: {answer}");
        answer
    }

    async fn try_run(&mut self, command: &Value) -> Value {
        let line = format!("{command}\n");
        self.input
            .write_all(line.as_bytes())
            .await
            .expect("write to the browser");
        self.answer(Duration::from_secs(90)).await
    }

    async fn goto(&mut self, url: &str) -> u64 {
        self.run(json!({"op": "goto", "url": url})).await["status"]
            .as_u64()
            .unwrap_or(0)
    }

    async fn text(&mut self, selector: &str) -> String {
        self.run(json!({"op": "text", "selector": selector})).await["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits (at most `secs`) for `selector`'s text to contain `text`.
    async fn wait_text(&mut self, selector: &str, text: &str, secs: u64) -> String {
        let command = json!({"op": "wait_text", "selector": selector, "contains": text, "timeout_ms": secs * 1000});
        let answer = self.try_run(&command).await;
        if answer["ok"] != true {
            let now = self.try_run(&json!({"op": "text", "selector": "main"})).await;
            panic!("{selector} never showed {text:?} within {secs} s: {answer}\nthe page shows: {now}");
        }
        answer["text"].as_str().unwrap_or_default().to_string()
    }

    async fn wait_attribute(&mut self, selector: &str, name: &str, value: &str, secs: u64) {
        let command = json!({"op": "wait_attribute", "selector": selector, "name": name, "value": value,
            "timeout_ms": secs * 1000});
        let answer = self.try_run(&command).await;
        if answer["ok"] != true {
            let now = self.try_run(&json!({"op": "text", "selector": "main"})).await;
            panic!("{selector}[{name}] never became {value:?} within {secs} s: {answer}\nthe page shows: {now}");
        }
    }

    async fn eval(&mut self, expression: &str) -> Value {
        self.run(json!({"op": "eval", "expression": expression})).await["value"].clone()
    }

    async fn screenshot(&mut self, name: &str) {
        let path = artifacts().join(name);
        self.run(json!({"op": "screenshot", "path": path})).await;
    }

    /// Fills the reason of `action`'s form and submits it; the message the page shows.
    async fn act(&mut self, action: &str, reason: &str) -> String {
        let form = format!("form[data-action={action}]");
        self.run(json!({"op": "fill", "selector": format!("{form} input[name=reason]"), "value": reason}))
            .await;
        self.eval("document.getElementById('message').textContent = ''").await;
        self.run(json!({"op": "click", "selector": format!("{form} button")}))
            .await;
        // The answer replaces "publishing…".
        for _ in 0..300 {
            let text = self.text("#message").await;
            if !text.is_empty() && text != "publishing…" {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the page showed no answer to {action} within 30 s");
    }
}

/// `greenlight dashboard --port 0` against `env`'s installation, as an engineer runs it.
struct Dashboard {
    _child: Child,
    url: String,
    printed: Arc<Mutex<Vec<String>>>,
}

impl Dashboard {
    async fn start(env: &Env, extra: &[&str]) -> Dashboard {
        let mut args = vec!["dashboard", "--port", "0"];
        args.extend_from_slice(extra);
        let mut child = command(env, &args).spawn().expect("greenlight dashboard starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the dashboard prints its URL within 30 s")
            .expect("read the dashboard")
            .unwrap_or_default();
        let url = first
            .strip_prefix("greenlight dashboard: ")
            .unwrap_or_else(|| panic!("the first line is the URL: {first:?}"))
            .trim_end_matches('/')
            .to_string();
        let printed = Arc::new(Mutex::new(vec![first]));
        let sink = printed.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Dashboard {
            _child: child,
            url,
            printed,
        }
    }

    fn printed(&self) -> String {
        self.printed.lock().unwrap().join("\n")
    }
}

/// Waits until the emulator's listener gives green (`b`) `weight` %.
async fn listener_at(env: &Env, weight: u8) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let want = if weight == 100 {
        vec![("b", 100)]
    } else {
        vec![("a", 100 - weight), ("b", weight)]
    };
    loop {
        let now = env.weights().await;
        if now == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener never reached {want:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_a_canary_live_and_its_buttons_steer_it_on_the_emulator() {
    // A canary that pauses at 10 % and at 50 %: it waits for the page's buttons.
    let env = Env::alone("dash", |s| Spec {
        pauses: vec![10, 50],
        pause_timeout_s: 900,
        on_pause_timeout: OnPauseTimeout::Abort,
        ..canary(s)
    })
    .await;
    let svc = env.service.clone();
    let dashboard = Dashboard::start(&env, &[]).await;
    let mut browser = Browser::start().await;

    // The services page lists the service, live on v1, and says what it reads.
    assert_eq!(browser.goto(&format!("{}/", dashboard.url)).await, 200);
    let row = browser.wait_text(&format!("tr[data-service='{svc}']"), "v1", 30).await;
    assert!(row.contains(&svc), "{row}");
    let context = browser.text("#context").await;
    assert!(
        context.contains("123456789012") && context.contains("us-east-1") && context.contains(&env.local.names.table),
        "{context}"
    );
    browser.screenshot("services.png").await;
    // The filter hides the rows that do not match, without a reload.
    browser
        .run(json!({"op": "fill", "selector": "#filter", "value": "no-such"}))
        .await;
    let hidden = browser
        .eval(&format!("document.querySelector(\"tr[data-service='{svc}']\").hidden"))
        .await;
    assert_eq!(hidden, true);

    // A deployment starts; the services page shows it without a reload.
    browser
        .run(json!({"op": "fill", "selector": "#filter", "value": ""}))
        .await;
    let ami = env.image("v2", App::Healthy).await;
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);
    browser.wait_text(&format!("tr[data-service='{svc}']"), &id, 30).await;

    // The service page follows the listener: 10 % (paused) ...
    assert_eq!(browser.goto(&format!("{}/services/{svc}", dashboard.url)).await, 200);
    listener_at(&env, 10).await;
    browser.wait_attribute("#weight", "data-weight", "10", 30).await;
    browser.wait_text("#deployment", "Paused at 10%", 30).await;
    browser.screenshot("service-canary-10.png").await;

    // ... its Promote button approves the pause (the event reaches steer-deployment) ...
    let message = browser.act("promote", "10 % looks clean").await;
    assert!(message.contains("published PromoteRequested"), "{message}");
    match env.deliver(1).await.remove(0) {
        Ok(Outcome::Steer(outcome)) => assert_eq!(
            (outcome.deploy_id.as_str(), outcome.action),
            (id.as_str(), SteerAction::Promote)
        ),
        other => panic!("expected steer-deployment to approve the pause, got {other:?}"),
    }
    // ... and the page moves to 50 % by itself, without a reload.
    listener_at(&env, 50).await;
    browser.wait_attribute("#weight", "data-weight", "50", 30).await;
    let updated = browser
        .eval("document.getElementById('live').dataset.updated !== undefined")
        .await;
    assert_eq!(
        updated, true,
        "the live part was swapped by the event stream, not a reload"
    );
    let points = browser.text("#switch-points").await;
    assert!(points.contains("50%"), "{points}");
    let timeline = browser.text("#timeline").await;
    assert!(timeline.contains("shifting") && timeline.contains("50%"), "{timeline}");
    browser.screenshot("service-canary-50.png").await;

    // Roll back from the page: the emulator's listener is back on blue.
    let message = browser.act("rollback", "p99 doubled").await;
    assert!(message.contains("published RollbackRequested"), "{message}");
    match env.deliver(1).await.remove(0) {
        Ok(Outcome::Revert(RevertOutcome::Reverted { deploy_id, .. })) => assert_eq!(deploy_id, id),
        other => panic!("expected revert-service to roll back, got {other:?}"),
    }
    assert_eq!(env.weights().await, [("a", 100)], "traffic back on v1");
    let revert = env
        .deployment(&id)
        .await
        .revert
        .expect("the ledger records the rollback");
    assert_eq!(
        (revert.requested_by.as_str(), revert.reason.as_str()),
        (MOTO_USER, "p99 doubled"),
        "the CLI's identity and the reason typed"
    );
    browser.wait_text("#deployment", "Rolled back to v1", 30).await;
    assert_eq!(
        env.wait(&format!("{id}-revert")).await,
        Ending::Done(PhaseName::Aborted)
    );

    // Nothing is in flight now: Abort is refused with the CLI's reason, and nothing is published.
    browser.wait_text("#deployment", "No deployment in flight", 30).await;
    let refusal = browser.act("abort", "just in case").await;
    assert!(refusal.contains("has no deployment in flight"), "{refusal}");
    assert_eq!(
        browser.eval("document.getElementById('message').className").await,
        "refused"
    );
    assert!(
        deliveries(&env, 1).await.is_empty(),
        "a refused action publishes nothing"
    );
    // The history shows the rollback and its time-to-revert trend.
    browser.wait_text("#history", "p99 doubled", 30).await;
    let trend = browser
        .eval("document.getElementById('ttr-trend').dataset.points")
        .await;
    assert_eq!(trend, "1", "one rollback on the trend");
    browser.screenshot("service-after-rollback.png").await;

    // At a phone's width nothing is wider than the screen.
    browser
        .run(json!({"op": "set_viewport", "width": 390, "height": 844}))
        .await;
    let overflow = browser
        .eval("document.documentElement.scrollWidth <= window.innerWidth")
        .await;
    assert_eq!(overflow, true, "the service page fits a phone's width");
    browser.screenshot("service-phone.png").await;
    // Keyboard: from the top of the services page, Tab reaches the home link, the filter,
    // then the service's link.
    assert_eq!(browser.goto(&format!("{}/", dashboard.url)).await, 200);
    let mut focus = Vec::new();
    for _ in 0..3 {
        browser.run(json!({"op": "press", "key": "Tab"})).await;
        let focused = browser.run(json!({"op": "focused"})).await;
        focus.push(focused["text"].as_str().unwrap_or_default().to_string());
    }
    assert!(
        focus[0].starts_with("<a class=\"brand\"")
            && focus[1].starts_with("<input id=\"filter\"")
            && focus[2].starts_with(&format!("<a href=\"/services/{svc}\"")),
        "{focus:#?}"
    );

    // An unknown service: a 404 page that names it.
    assert_eq!(
        browser
            .goto(&format!("{}/services/no-such-service", dashboard.url))
            .await,
        404
    );
    assert!(browser.text("#not-found").await.contains("no-such-service"));
    browser.screenshot("not-found.png").await;

    // No script error on any page; Chromium logs the two answers meant to fail (the refused
    // abort's 409 and the unknown service's 404) and nothing else.
    let errors = browser.run(json!({"op": "console_errors"})).await;
    assert_eq!(
        errors["errors"],
        json!([
            "Failed to load resource: the server responded with a status of 409 (Conflict)",
            "Failed to load resource: the server responded with a status of 404 (Not Found)"
        ]),
        "console errors"
    );
    let printed = dashboard.printed();
    assert!(
        printed.contains("dashboard: promote")
            && printed.contains("dashboard: rollback")
            && printed.contains("refused"),
        "the terminal shows each action: {printed}"
    );
    // The dashboard only read and published, with what the engineers' policy grants.
    assert_reads_and_publishes_only(&cli_calls(&env).await, &[]);
}

/// A raw HTTP/1.1 request to the dashboard: the status and the body.
async fn raw(url: &str, request: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the dashboard");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut answer))
        .await
        .expect("the dashboard answers")
        .unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

#[tokio::test]
async fn dashboard_actions_from_another_origin_or_without_its_token_are_refused_and_publish_nothing() {
    let env = Env::alone("dashrefuse", |s| Spec {
        step_wait_s: 600,
        ..canary(s)
    })
    .await;
    let dashboard = Dashboard::start(&env, &[]).await;
    let host = dashboard.url.trim_start_matches("http://").to_string();
    let (status, page) = raw(&dashboard.url, &format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
    assert_eq!(status, 200, "{page}");
    let token = page
        .split("name=\"greenlight-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries the token")
        .to_string();
    let post = |host: &str, origin: Option<&str>, token: Option<&str>| {
        let body = "reason=because";
        let mut request = format!(
            "POST /services/{}/abort HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/x-www-form-urlencoded\r\n\
             content-length: {}\r\n",
            env.service,
            body.len()
        );
        if let Some(origin) = origin {
            request.push_str(&format!("Origin: {origin}\r\n"));
        }
        if let Some(token) = token {
            request.push_str(&format!("x-greenlight-token: {token}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        request
    };
    let own = format!("http://{host}");
    let cases = [
        (
            "another origin",
            post(&host, Some("http://evil.example"), Some(&token)),
            "another origin",
        ),
        ("no origin", post(&host, None, Some(&token)), "no Origin"),
        ("no token", post(&host, Some(&own), None), "token"),
        (
            "a wrong token",
            post(&host, Some(&own), Some("00000000000000000000000000000000")),
            "token",
        ),
        (
            "a rebound host name",
            post("evil.example:80", Some("http://evil.example:80"), Some(&token)),
            "answers only to Host",
        ),
    ];
    for (what, request, why) in cases {
        let (status, answer) = raw(&dashboard.url, &request).await;
        assert_eq!(status, 403, "{what}: {answer}");
        assert!(answer.contains(why), "{what}: {answer}");
    }
    assert!(deliveries(&env, 2).await.is_empty(), "nothing was published");
    // The same request with the origin and the token is an action (refused by the ledger
    // here: nothing is in flight), proving the refusals above were the guards'.
    let (status, answer) = raw(&dashboard.url, &post(&host, Some(&own), Some(&token))).await;
    assert_eq!(status, 409, "{answer}");
    assert!(answer.contains("has no deployment in flight"), "{answer}");
    // Bad input: an unknown service is a 404 naming it; a huge head is refused.
    let (status, answer) = raw(
        &dashboard.url,
        &format!("GET /services/nobody-here HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 404);
    assert!(answer.contains("nobody-here"), "{answer}");
    let (status, _) = raw(
        &dashboard.url,
        &format!("GET / HTTP/1.1\r\nHost: {host}\r\nx: {}\r\n\r\n", "a".repeat(20_000)),
    )
    .await;
    assert_eq!(status, 431);

    // Bound beyond loopback, it says so loudly.
    let mut exposed = command(&env, &["dashboard", "--port", "0", "--bind", "0.0.0.0"])
        .spawn()
        .expect("greenlight dashboard starts");
    let mut stderr = BufReader::new(exposed.stderr.take().unwrap()).lines();
    let mut warning = String::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(30), stderr.next_line()).await {
        warning.push_str(&line);
        if line.contains("Bind 127.0.0.1") {
            break;
        }
    }
    assert!(
        warning.contains("WARNING") && warning.contains("not on loopback") && warning.contains("0.0.0.0"),
        "{warning}"
    );
    let _ = exposed.kill().await;
}
