//! `greenlight dashboard`: a web page on this machine that shows every service and its
//! deployment in flight, live, and steers them with the CLI's own verbs.
//!
//! It is the CLI behind a browser, not a server in AWS: it reads with the engineer's
//! credentials (`Aws`, the ledger and the load balancers, exactly what `status` and `history`
//! read) and acts only through `publish::publish_rollback` / `publish_steer`, so its events,
//! identity and refusals are the CLI's.
//!
//! - `GET /`, `GET /services/<name>`: complete HTML pages (`page.rs`).
//! - `GET /events`, `GET /services/<name>/events`: server-sent events. Each stream re-reads
//!   AWS every [`POLL`] and sends the page's live part when it changed.
//! - `POST /services/<name>/{rollback,promote,abort}`: an action. Refused (403) without the
//!   token this process drew at start (it is in the pages it serves), from another origin, or
//!   for a `Host` that is not the dashboard's (a DNS-rebinding page).
//! - `GET /assets/dashboard.{js,css}`: embedded in the binary; no build step.

mod http;
mod page;

use crate::aws::Aws;
use crate::cli::DashboardArgs;
use crate::error::{CliError, CliResult};
use crate::publish::{publish_rollback, publish_steer};
use crate::view::{self, now_s, HistoryRow};
use greenlight_core::inbound::{ABORT_REQUESTED, PROMOTE_REQUESTED};
use greenlight_core::model::Deployment;
use http::{BadRequest, Method, Request, Response};
use page::{Context, Summary};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// How often a service page's stream re-reads AWS: a change shows within a second.
pub const POLL: Duration = Duration::from_millis(500);
/// How often the services page's stream re-reads the ledger (a few reads per service).
pub const POLL_SERVICES: Duration = Duration::from_secs(1);
/// A stream with nothing new sends a comment this often, to notice a page that went away.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// At most this many connections are served at once (each open page holds one stream).
const MAX_CONNECTIONS: usize = 64;

const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");

/// What every request handler shares.
struct Dashboard {
    aws: Aws,
    ctx: Context,
    /// The `Host` values a request may carry (the bound address, and `localhost` on loopback).
    hosts: Vec<String>,
    /// `--requested-by`, else the STS identity (resolved per action, as the CLI does).
    requested_by: Option<String>,
    /// The last read failure printed to the terminal (a failure repeated every poll is
    /// printed once).
    last_error: std::sync::Mutex<Option<String>>,
}

impl Dashboard {
    /// A failure to read AWS: printed to the terminal as the CLI prints errors (once while it
    /// repeats), and drawn for the page.
    fn read_failed(&self, what: &str, e: &CliError) -> String {
        let message = format!("reading {what} failed: {e}");
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref() != Some(message.as_str()) {
            eprintln!("greenlight dashboard: {message}");
            *last = Some(message);
        }
        page::read_error(&e.to_string())
    }
}

/// With this variable set, the dashboard exits when its stdin closes: `greenlight-local`
/// starts it with a pipe it never writes, so the dashboard ends with the process that
/// started it, even one killed outright.
pub const EXIT_WITH_STDIN: &str = "GREENLIGHT_DASHBOARD_EXIT_WITH_STDIN";

/// Serves until Ctrl-C (or, with [`EXIT_WITH_STDIN`], until stdin closes).
pub async fn serve(aws: &Aws, args: &DashboardArgs) -> CliResult<()> {
    if std::env::var_os(EXIT_WITH_STDIN).is_some() {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    let listener = TcpListener::bind(SocketAddr::new(args.bind, args.port))
        .await
        .map_err(|e| {
            CliError::failed(format!(
                "cannot listen on {}:{}: {e} (pick another with --port, or --port 0 for any free one)",
                args.bind, args.port
            ))
        })?;
    let addr = listener.local_addr().map_err(|e| CliError::failed(e.to_string()))?;
    let account = aws.account().await?;
    let url = match addr {
        SocketAddr::V6(a) => format!("http://[{}]:{}/", a.ip(), a.port()),
        SocketAddr::V4(a) => format!("http://{a}/"),
    };
    let mut hosts = vec![url.trim_start_matches("http://").trim_end_matches('/').to_string()];
    if addr.ip().is_loopback() {
        hosts.push(format!("localhost:{}", addr.port()));
    } else {
        eprintln!(
            "\n!!! WARNING: greenlight dashboard listens on {addr}, not on loopback.\n!!! Anyone who can reach this \
             address sees your services and, with the page's token, can roll back, promote and abort with YOUR AWS \
             credentials.\n!!! Bind 127.0.0.1 (the default) unless you mean it.\n"
        );
    }
    let dashboard = Arc::new(Dashboard {
        aws: aws.clone(),
        ctx: Context {
            account: account.clone(),
            region: aws.region.clone(),
            table: aws.table.clone(),
            bus: aws.bus.clone(),
            token: draw_token()?,
        },
        hosts,
        requested_by: args.who.requested_by.clone(),
        last_error: Default::default(),
    });
    // The first line is the URL alone: scripts (and the tests) read it.
    println!("greenlight dashboard: {url}");
    println!(
        "  reads table {} in {} (account {account}) with your AWS credentials; actions publish on bus {}",
        aws.table, aws.region, aws.bus
    );
    println!("  Ctrl-C stops it");
    if args.open {
        open_browser(&url);
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    // Until Ctrl-C: SIGINT ends the process (nothing here needs cleaning up).
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Over the limit: refuse at once rather than queue.
            tokio::spawn(refuse_busy(stream));
            continue;
        };
        let dashboard = dashboard.clone();
        tokio::spawn(async move {
            connection(&dashboard, stream).await;
            drop(permit);
        });
    }
}

/// 128 random bits from the operating system, in hex: the actions' token.
fn draw_token() -> CliResult<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| CliError::failed(format!("cannot draw the dashboard's token from /dev/urandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    if let Err(e) = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        eprintln!("greenlight dashboard: could not run {opener} ({e}): open {url} yourself");
    }
}

async fn refuse_busy(mut stream: TcpStream) {
    let answer = Response::text(503, "the dashboard serves 64 connections at most: close a tab");
    let _ = stream.write_all(&answer.to_bytes()).await;
}

/// One connection: one request, one answer (or a stream), then close.
async fn connection(dashboard: &Dashboard, mut stream: TcpStream) {
    let request = match http::read_request(&mut stream).await {
        Ok(request) => request,
        Err(BadRequest::Closed) => return,
        Err(bad) => {
            let (status, why) = bad.status();
            let _ = stream.write_all(&Response::text(status, why).to_bytes()).await;
            return;
        }
    };
    if !dashboard
        .hosts
        .iter()
        .any(|h| Some(h.as_str()) == request.header("host"))
    {
        let answer = Response::text(
            403,
            format!(
                "this dashboard answers only to Host {}: another name pointing here is refused",
                dashboard.hosts.join(" or ")
            ),
        );
        let _ = stream.write_all(&answer.to_bytes()).await;
        return;
    }
    let path = request.path.clone();
    let answer = match (request.method, path.as_str()) {
        (Method::Get, "/") => {
            let filter = query_value(&request.query, "q").unwrap_or_default();
            let rows = summaries(&dashboard.aws, &mut Default::default()).await;
            match rows {
                Ok(rows) => Response::html(200, page::services_page(&dashboard.ctx, &rows, &filter)),
                Err(e) => Response::html(502, dashboard.read_failed("the services", &e)),
            }
        }
        (Method::Get, "/events") => return services_stream(dashboard, stream).await,
        (Method::Get, "/assets/dashboard.js") => Response::new(200, "text/javascript; charset=utf-8", SCRIPT),
        (Method::Get, "/assets/dashboard.css") => Response::new(200, "text/css; charset=utf-8", STYLE),
        (Method::Get, "/favicon.ico") => Response::new(204, "image/x-icon", ""),
        (method, path) => match path
            .strip_prefix("/services/")
            .map(|rest| rest.split_once('/').unwrap_or((rest, "")))
        {
            Some((name, rest)) => {
                let Ok(service) = http::decode(name) else {
                    return send(stream, Response::text(400, "the service name is not a valid escape")).await;
                };
                match (method, rest) {
                    (Method::Get, "") => service_page(dashboard, &service).await,
                    (Method::Get, "events") => return service_stream(dashboard, stream, service).await,
                    (Method::Post, verb @ ("rollback" | "promote" | "abort")) => {
                        act(dashboard, &request, &service, verb).await
                    }
                    (_, "" | "events" | "rollback" | "promote" | "abort") => {
                        Response::text(405, "method not allowed").with_header("allow", "GET, POST")
                    }
                    _ => Response::html(404, page::not_found(&dashboard.ctx, &service)),
                }
            }
            None => Response::text(404, format!("nothing at {path}: the services are at /")),
        },
    };
    send(stream, answer).await;
}

async fn send(mut stream: TcpStream, answer: Response) {
    let _ = stream.write_all(&answer.to_bytes()).await;
    let _ = stream.shutdown().await;
}

fn query_value(query: &str, name: &str) -> Option<String> {
    http::parse_form(query)?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// The last outcome of each service, kept per stream while its row stays the same (a
/// deployment ending changes it), so history is queried only when it can differ.
type OutcomeCache = std::collections::HashMap<String, (String, Option<String>)>;

/// Every service's row.
async fn summaries(aws: &Aws, cache: &mut OutcomeCache) -> CliResult<Vec<Summary>> {
    let names = aws.ledger.services().await.map_err(|e| aws.error(e))?;
    let mut rows = Vec::with_capacity(names.len());
    for name in names {
        rows.push(summary(aws, name, cache).await);
    }
    Ok(rows)
}

async fn summary(aws: &Aws, service: String, cache: &mut OutcomeCache) -> Summary {
    let row = view::service_row(aws, service.clone()).await;
    // History is read again only when the row changed (a deployment started, moved or ended).
    let signature = format!(
        "{:?}",
        (
            &row.live,
            &row.warm,
            row.deployment.as_ref().map(|d| (&d.deploy_id, d.phase))
        )
    );
    let last_outcome = match cache.get(&service) {
        Some((seen, outcome)) if *seen == signature => outcome.clone(),
        _ => {
            let outcome = aws.ledger.history(&service).await.ok().and_then(|h| last_outcome(&h));
            cache.insert(service, (signature, outcome.clone()));
            outcome
        }
    };
    Summary { row, last_outcome }
}

/// The newest deployment that ended, in a few words.
fn last_outcome(history: &[Deployment]) -> Option<String> {
    let dep = history
        .iter()
        .filter(|d| d.phase.is_terminal())
        .max_by_key(|d| d.updated_at)?;
    let row = HistoryRow::from(dep);
    Some(match (&row.reverted_by, &row.abort_reason) {
        (Some(by), _) => format!("{} rolled back by {by}", row.version),
        (None, Some(reason)) => format!("{} aborted: {reason}", row.version),
        _ => format!("{} {}", row.version, row.outcome.as_str()),
    })
}

/// A service's history rows, kept per stream with what they were read for.
type HistoryCache = Option<(String, Vec<HistoryRow>)>;

/// A service's live part: its status, the deployment in flight (or the last one shown by
/// `status`) for the timeline, and its history. The history is queried again only when
/// the deployment shown, its phase, or the live or warm release changed (`cache`).
async fn service_live(aws: &Aws, service: &str, cache: &mut HistoryCache) -> CliResult<String> {
    let (status, deployment) = view::status_and_deployment(aws, service, None).await?;
    let signature = format!(
        "{:?}",
        (
            status
                .deployment
                .as_ref()
                .map(|d| (&d.deploy_id, d.phase, d.revert.is_some())),
            status.live.as_ref().map(|r| &r.version),
            status.warm.as_ref().map(|w| &w.release.version),
        )
    );
    let rows = match cache {
        Some((seen, rows)) if *seen == signature => rows.clone(),
        _ => {
            let mut history = aws.ledger.history(service).await.map_err(|e| aws.error(e))?;
            history.reverse();
            let rows: Vec<HistoryRow> = history.iter().take(page::HISTORY_ROWS).map(HistoryRow::from).collect();
            *cache = Some((signature, rows.clone()));
            rows
        }
    };
    Ok(page::service_live(&status, deployment.as_ref(), &rows, now_s()))
}

/// True when the ledger has the service; `Err` when the ledger could not be read.
async fn registered(aws: &Aws, service: &str) -> CliResult<bool> {
    if crate::cli::service_name(service).is_err() {
        return Ok(false);
    }
    Ok(aws
        .ledger
        .load(service, None)
        .await
        .map_err(|e| aws.error(e))?
        .is_some())
}

async fn service_page(dashboard: &Dashboard, service: &str) -> Response {
    match registered(&dashboard.aws, service).await {
        Ok(false) => return Response::html(404, page::not_found(&dashboard.ctx, service)),
        Err(e) => return Response::html(502, dashboard.read_failed(service, &e)),
        Ok(true) => {}
    }
    let live = service_live(&dashboard.aws, service, &mut None)
        .await
        .unwrap_or_else(|e| dashboard.read_failed(service, &e));
    Response::html(200, page::service_page(&dashboard.ctx, service, &live))
}

/// Streams `render`'s output as `live` events: at once, then whenever it changes.
async fn stream<F, Fut>(mut stream: TcpStream, every: Duration, mut render: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    if stream.write_all(&http::event_stream_head()).await.is_err() {
        return;
    }
    let mut last = String::new();
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        let html = render().await;
        let sent = if html != last {
            quiet_since = tokio::time::Instant::now();
            let sent = stream.write_all(&http::event("live", &html)).await;
            last = html;
            sent
        } else if quiet_since.elapsed() >= KEEPALIVE {
            quiet_since = tokio::time::Instant::now();
            stream.write_all(b": still here\n\n").await
        } else {
            Ok(())
        };
        if sent.is_err() {
            return;
        }
        tokio::time::sleep(every).await;
    }
}

async fn services_stream(dashboard: &Dashboard, tcp: TcpStream) {
    let cache = tokio::sync::Mutex::new(OutcomeCache::new());
    stream(tcp, POLL_SERVICES, || async {
        let mut cache = cache.lock().await;
        match summaries(&dashboard.aws, &mut cache).await {
            Ok(rows) => page::services_table(&rows, ""),
            Err(e) => dashboard.read_failed("the services", &e),
        }
    })
    .await
}

async fn service_stream(dashboard: &Dashboard, tcp: TcpStream, service: String) {
    if !matches!(registered(&dashboard.aws, &service).await, Ok(true)) {
        return send(tcp, Response::html(404, page::not_found(&dashboard.ctx, &service))).await;
    }
    let cache = tokio::sync::Mutex::new(HistoryCache::None);
    stream(tcp, POLL, || async {
        let mut cache = cache.lock().await;
        service_live(&dashboard.aws, &service, &mut cache)
            .await
            .unwrap_or_else(|e| dashboard.read_failed(&service, &e))
    })
    .await
}

/// Constant-time comparison of the token sent with the one drawn.
fn same_token(sent: &str, token: &str) -> bool {
    sent.len() == token.len() && sent.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Why an action is refused before anything is read or published (403), if it is.
fn forbidden(request: &Request, form: &[(String, String)], token: &str) -> Option<&'static str> {
    let host = request.header("host").unwrap_or_default();
    match request.header("origin") {
        Some(origin) if origin == format!("http://{host}") => {}
        Some(_) => return Some("refused: the request comes from another origin than the dashboard's own page"),
        None => return Some("refused: the request carries no Origin (send actions from the dashboard's page)"),
    }
    let sent = request
        .header("x-greenlight-token")
        .or_else(|| form.iter().find(|(n, _)| n == "token").map(|(_, v)| v.as_str()));
    match sent {
        Some(sent) if same_token(sent, token) => None,
        _ => Some(
            "refused: the action lacks this dashboard's token (reload the page: a restarted dashboard draws a new one)",
        ),
    }
}

/// `POST /services/<name>/<verb>`: publishes the verb's event, as the CLI does.
async fn act(dashboard: &Dashboard, request: &Request, service: &str, verb: &str) -> Response {
    let from_script = request.header("x-greenlight-token").is_some();
    let answer = |status: u16, ok: bool, message: String| {
        if from_script {
            Response::json(status, &json!({ "ok": ok, "message": message }))
        } else {
            Response::html(status, page::action_result(&dashboard.ctx, service, ok, &message))
        }
    };
    let form = std::str::from_utf8(&request.body).ok().and_then(http::parse_form);
    let Some(form) = form else {
        return answer(400, false, "the form could not be decoded".into());
    };
    if let Some(why) = forbidden(request, &form, &dashboard.ctx.token) {
        eprintln!("dashboard: {verb} {service} {why}");
        return answer(403, false, why.into());
    }
    let field = |name: &str| {
        form.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let checked = (|| {
        crate::cli::service_name(service)?;
        let reason = crate::cli::reason(&field("reason").unwrap_or_default())?;
        let to_version = field("to_version").map(|v| crate::cli::version(&v)).transpose()?;
        Ok::<_, String>((reason, to_version))
    })();
    let (reason, to_version) = match checked {
        Ok(values) => values,
        Err(why) => return answer(400, false, why),
    };
    let aws = &dashboard.aws;
    let outcome = async {
        let requested_by = aws.requested_by(dashboard.requested_by.as_deref()).await?;
        match verb {
            "rollback" => publish_rollback(aws, service, to_version, reason, requested_by).await,
            "abort" => publish_steer(aws, service, &reason, requested_by, ABORT_REQUESTED, "abort").await,
            _ => publish_steer(aws, service, &reason, requested_by, PROMOTE_REQUESTED, "promote").await,
        }
    }
    .await;
    match outcome {
        Ok((published, next)) => {
            let message = format!(
                "published {} event {} (requested by {}): {next}",
                published.detail_type, published.event_id, published.requested_by
            );
            println!("dashboard: {verb} {service}: {message}");
            answer(200, true, message)
        }
        Err(e) => {
            let message = e.to_string();
            println!("dashboard: {verb} {service} refused: {message}");
            answer(409, false, message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(headers: &[(&str, &str)]) -> Request {
        Request {
            method: Method::Post,
            path: "/services/checkout/rollback".into(),
            query: String::new(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: Vec::new(),
        }
    }

    #[test]
    fn an_action_needs_the_dashboards_origin_and_token() {
        let token = "0123456789abcdef0123456789abcdef";
        let host = ("host", "127.0.0.1:8577");
        let origin = ("origin", "http://127.0.0.1:8577");
        let good = ("x-greenlight-token", token);
        assert_eq!(forbidden(&post(&[host, origin, good]), &[], token), None);
        let in_form = vec![("token".to_string(), token.to_string())];
        assert_eq!(
            forbidden(&post(&[host, origin]), &in_form, token),
            None,
            "a form without script"
        );
        let refused: &[(&[(&str, &str)], &str)] = &[
            (&[host, ("origin", "http://evil.example"), good], "another origin"),
            (&[host, ("origin", "http://localhost:8577"), good], "another origin"),
            (&[host, good], "no Origin"),
            (&[host, origin], "lacks this dashboard's token"),
            (
                &[host, origin, ("x-greenlight-token", "0123456789abcdef0123456789abcdee")],
                "token",
            ),
            (&[host, origin, ("x-greenlight-token", "")], "token"),
        ];
        for (headers, why) in refused {
            let refusal = forbidden(&post(headers), &[], token).unwrap_or_default();
            assert!(refusal.contains(why), "{headers:?}: {refusal:?}");
        }
    }

    #[test]
    fn tokens_are_128_random_bits_in_hex() {
        let (a, b) = (draw_token().unwrap(), draw_token().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(same_token(&a, &a.clone()));
        assert!(!same_token(&a, &b));
        assert!(!same_token(&a, &a[..31]));
    }
}
