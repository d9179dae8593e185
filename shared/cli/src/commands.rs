//! The verbs. Each reads the ledger (and the load balancer) first and refuses with a reason
//! before publishing anything; the publishing verbs then put exactly one greenlight event on
//! EventBridge and print its id. Only `service register` writes to the ledger.

use crate::aws::Aws;
use crate::cli::{
    Cli, Command, CompletionsArgs, DeployArgs, DrillArgs, HistoryArgs, Output, RegisterArgs, RollbackArgs,
    ServiceCommand, StatusArgs, SteerArgs,
};
use crate::error::{CliError, CliResult};
use crate::publish::{publish_rollback, publish_steer, to_detail, Published};
use crate::render;
use crate::view::{self, now_ms, now_s, tg_name, HistoryRow, Status, VerdictsView, Weight};
use crate::watch::{self, Watcher};
use greenlight_core::decide::check_version;
use greenlight_core::detail;
use greenlight_core::ids::{check_ami, DeployId};
use greenlight_core::inbound::{ABORT_REQUESTED, IMAGE_PUBLISHED, PROMOTE_REQUESTED, ROLLBACK_REQUESTED};
use greenlight_core::model::{Phase, PhaseName, Release};
use greenlight_core::version::Version;
use greenlight_core::{Refusal, ServiceConfig};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// How long a published event may take to show in the ledger before a watch gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> CliResult<()> {
    let out = cli.global.output;
    if let Command::Completions(args) = &cli.command {
        completions(args);
        return Ok(());
    }
    let aws = Aws::connect(&cli.global).await?;
    match cli.command {
        Command::Services => services(&aws, out).await,
        Command::Service(ServiceCommand::Register(args)) => register(&aws, &args, out).await,
        Command::Service(ServiceCommand::Show(args)) => show(&aws, &args.service, out).await,
        Command::Status(args) => status(&aws, &args, out).await,
        Command::History(args) => history(&aws, &args, out).await,
        Command::Deploy(args) => deploy(&aws, &args, out).await,
        Command::Rollback(args) => rollback(&aws, &args, out).await,
        Command::Abort(args) => steer(&aws, &args, ABORT_REQUESTED, "abort", out).await,
        Command::Promote(args) => steer(&aws, &args, PROMOTE_REQUESTED, "promote", out).await,
        Command::Drill(args) => drill(&aws, &args, out).await,
        Command::Dashboard(args) => crate::dashboard::serve(&aws, &args).await,
        Command::Completions(_) => unreachable!("handled above"),
    }
}

fn completions(args: &CompletionsArgs) {
    use clap::CommandFactory;
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "greenlight", &mut std::io::stdout());
}

async fn services(aws: &Aws, out: Output) -> CliResult<()> {
    let names = aws.ledger.services().await.map_err(|e| aws.error(e))?;
    let mut rows = Vec::with_capacity(names.len());
    // A few services at a time: one or two ledger reads each.
    for chunk in names.chunks(16) {
        let mut set = tokio::task::JoinSet::new();
        for (i, name) in chunk.iter().enumerate() {
            let (aws, name) = (aws.clone(), name.clone());
            set.spawn(async move { (i, view::service_row(&aws, name).await) });
        }
        let mut batch: Vec<_> = set.join_all().await;
        batch.sort_by_key(|(i, _)| *i);
        rows.extend(batch.into_iter().map(|(_, row)| row));
    }
    match out {
        Output::Json => render::json(&rows),
        Output::Table => print!("{}", render::services(&rows)),
    }
    Ok(())
}

/// What `service register` did.
#[derive(Serialize)]
struct Registered {
    service: String,
    /// `created` or `updated`.
    action: &'static str,
    /// The live version adopted (a new service registered with `live`).
    live: Option<String>,
    /// True when the file's `live` was ignored (the ledger already tracks what is live).
    live_ignored: bool,
}

/// Parses a registration document: the registration plus an optional `live` release.
/// Every problem is returned at once.
pub fn parse_registration(text: &str) -> Result<(ServiceConfig, Option<Release>), Vec<String>> {
    let mut value: Value = serde_json::from_str(text).map_err(|e| vec![format!("not valid JSON: {e}")])?;
    let fields = value
        .as_object_mut()
        .ok_or_else(|| vec!["must be a JSON object (see README.md, \"Registering a service\")".to_string()])?;
    let live = fields.remove("live");
    let mut problems = Vec::new();
    let config: Option<ServiceConfig> = serde_json::from_value(value)
        .map_err(|e| problems.push(e.to_string()))
        .ok();
    if let Some(config) = &config {
        if let Err(e) = config.validate() {
            problems.extend(e.0);
        }
    }
    let live: Option<Release> = match live {
        None | Some(Value::Null) => None,
        Some(v) => serde_json::from_value(v)
            .map_err(|e| {
                problems.push(format!(
                    "live: {e} (expected {{\"version\", \"ami\", \"target_group\", \"instance_ids\"}})"
                ))
            })
            .ok(),
    };
    if let Some(live) = &live {
        if let Err(e) = Version::parse(&live.version) {
            problems.push(format!("live.version: {e}"));
        }
        if let Err(e) = check_ami(&live.ami) {
            problems.push(format!("live.ami: {e}"));
        }
        if live.instance_ids.is_empty() || live.instance_ids.iter().any(|i| !i.starts_with("i-")) {
            problems.push("live.instance_ids must list the instances serving today (i-...)".into());
        }
        if let Some(config) = &config {
            if !config.target_groups.contains(&live.target_group) {
                problems.push("live.target_group must be one of target_groups (the one serving today)".into());
            }
        }
    }
    match config {
        Some(config) if problems.is_empty() => Ok((config, live)),
        _ => Err(problems),
    }
}

async fn register(aws: &Aws, args: &RegisterArgs, out: Output) -> CliResult<()> {
    let path = &args.file;
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?
    } else {
        std::fs::read_to_string(path).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?
    };
    let (config, mut live) = parse_registration(&text).map_err(|problems| {
        CliError::failed(format!(
            "{} is not a valid registration ({} problem(s)); nothing was written:\n  - {}",
            path.display(),
            problems.len(),
            problems.join("\n  - ")
        ))
    })?;
    // The adopted fleet's age counts from now unless the file says when it was launched
    // (`live.launched_at`, seconds since the epoch): what a phoenix re-pave counts from.
    if let Some(live) = live.as_mut() {
        live.launched_at.get_or_insert_with(now_s);
    }
    let problems = switch_problems(aws, &config).await?;
    if !problems.is_empty() {
        return Err(CliError::failed(format!(
            "{} names switch points greenlight cannot own ({} problem(s)); nothing was written:\n  - {}",
            path.display(),
            problems.len(),
            problems.join("\n  - ")
        )));
    }
    let existing = aws.ledger.load(&config.service, None).await.map_err(|e| aws.error(e))?;
    aws.ledger
        .register_service(&config, live.clone())
        .await
        .map_err(|e| match e {
            greenlight_adapters::AdapterError::Invalid(why) => CliError::failed(format!(
                "the ledger refused the registration: {why}; nothing was written"
            )),
            greenlight_adapters::AdapterError::Conflict(_) => CliError::failed(format!(
                "{} was registered by someone else while this ran; nothing was written: check `greenlight service \
                 show {}` and run again",
                config.service, config.service
            )),
            other => aws.error(other),
        })?;
    let result = Registered {
        service: config.service.clone(),
        action: if existing.is_some() { "updated" } else { "created" },
        live: existing
            .as_ref()
            .map_or(live.as_ref().map(|l| l.version.clone()), |_| None),
        live_ignored: existing.is_some() && live.is_some(),
    };
    match out {
        Output::Json => render::json(&result),
        Output::Table => {
            match (&result.live, existing.is_some()) {
                (_, true) => println!("updated the registration of {}", result.service),
                (Some(v), false) => println!("registered {} (new), adopting {v} as live", result.service),
                (None, false) => println!("registered {} (new), nothing live yet", result.service),
            }
            if result.live_ignored {
                println!("(\"live\" ignored: the ledger already tracks what is live)");
            }
            println!("see it with `greenlight service show {}`", result.service);
        }
    }
    Ok(())
}

/// Why greenlight could not switch traffic on the registration's switch points, as they are
/// now: each point is read (DescribeListeners / DescribeRules) and must exist and be one
/// greenlight can own (a forward over the service's target groups only, last, with nothing but
/// authentication actions before it), or launch-green would abort every deployment. One line
/// per point that fails; an AWS failure other than "not found" is an error.
async fn switch_problems(aws: &Aws, config: &ServiceConfig) -> CliResult<Vec<String>> {
    let mut problems = Vec::new();
    for (i, point) in config.switch.points().iter().enumerate() {
        let arn = point.arn();
        if let Some(rule) = &point.rule_arn {
            if !rule_of_listener(rule, &point.listener_arn) {
                problems.push(format!(
                    "switch[{i}]: rule {rule} is not a rule of listener {}",
                    point.listener_arn
                ));
                continue;
            }
        }
        let actions = match aws.lb.switch_point(point).await {
            Ok(actions) => actions,
            Err(e) if is_not_found(&e) => {
                let kind = if point.rule_arn.is_some() {
                    "listener rule"
                } else {
                    "listener"
                };
                problems.push(format!("switch[{i}]: no {kind} {arn} in this account and region"));
                continue;
            }
            Err(e) => {
                return Err(CliError::failed(format!(
                    "cannot read switch[{i}] {arn}; nothing was written: {}",
                    aws.error(e)
                )))
            }
        };
        if let Err(why) = greenlight_core::switch::own(point, &actions, &config.target_groups) {
            problems.push(format!("switch[{i}]: {why}"));
        }
    }
    Ok(problems)
}

/// Whether a listener rule's ARN names it as a rule of the listener's
/// (`…:listener-rule/app/<lb>/<lb id>/<listener id>/<rule id>` of `…:listener/app/<lb>/<lb id>/<listener id>`).
fn rule_of_listener(rule: &str, listener: &str) -> bool {
    rule.contains(":listener-rule/")
        && rule
            .replacen(":listener-rule/", ":listener/", 1)
            .strip_prefix(listener)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A listener or rule that does not exist, as the adapter or ELBv2 says it.
fn is_not_found(e: &greenlight_adapters::AdapterError) -> bool {
    match e {
        greenlight_adapters::AdapterError::NotFound(_) => true,
        greenlight_adapters::AdapterError::Aws { message, .. } => {
            message.starts_with("ListenerNotFound") || message.starts_with("RuleNotFound")
        }
        _ => false,
    }
}

async fn show(aws: &Aws, service: &str, out: Output) -> CliResult<()> {
    let state = aws.load(service, None).await?;
    match out {
        Output::Json => render::json(&state.config),
        Output::Table => print!("{}", render::registration(&state.config)),
    }
    Ok(())
}

/// Prints a status (table or JSON).
fn print_status(status: &Status, out: Output) {
    match out {
        Output::Json => render::json(status),
        Output::Table => print!("{}", render::status(status)),
    }
}

/// Ends a watch: the final document in JSON mode (or `extra` merged with it), a sentence in
/// table mode; exit 1 if the deployment did not succeed.
fn finish_watch(watcher: &Watcher, last: &Status, out: Output, extra: Option<Value>) -> CliResult<()> {
    let sentence = watch::ending(last);
    match (out, extra) {
        (Output::Json, Some(mut extra)) => {
            extra["status"] = serde_json::to_value(last).expect("status serializes");
            render::json(&extra);
        }
        (Output::Json, None) => render::json(last),
        (Output::Table, _) => watcher.note(&sentence),
    }
    match &last.deployment {
        Some(d) if d.phase == PhaseName::Succeeded => Ok(()),
        _ => Err(CliError::failed(sentence)),
    }
}

async fn status(aws: &Aws, args: &StatusArgs, out: Output) -> CliResult<()> {
    let status = view::status(aws, &args.service, None).await?;
    let in_flight = status.deployment.as_ref().map(|d| d.deploy_id.clone());
    let (true, Some(deploy_id)) = (args.watch, in_flight) else {
        print_status(&status, out);
        if args.watch {
            eprintln!("{} has no deployment in flight: nothing to watch", args.service);
        }
        return Ok(());
    };
    let mut watcher = Watcher::new(out);
    let last = watch::follow(
        aws,
        &args.service,
        &deploy_id,
        &mut watcher,
        START_TIMEOUT,
        watch::Until::EndedOrHeld,
    )
    .await?;
    finish_watch(&watcher, &last, out, None)
}

async fn history(aws: &Aws, args: &HistoryArgs, out: Output) -> CliResult<()> {
    if let Some(deploy_id) = &args.verdicts {
        return verdicts(aws, &args.service, deploy_id, out).await;
    }
    aws.load(&args.service, None).await?;
    let deployments = aws.ledger.history(&args.service).await.map_err(|e| aws.error(e))?;
    let limit = if args.limit == 0 { usize::MAX } else { args.limit };
    let rows: Vec<HistoryRow> = deployments.iter().rev().take(limit).map(HistoryRow::from).collect();
    match out {
        Output::Json => render::json(&rows),
        Output::Table => print!("{}", render::history(&rows)),
    }
    Ok(())
}

/// `history --verdicts`: every analysis evaluation of one deployment, oldest first.
async fn verdicts(aws: &Aws, service: &str, deploy_id: &str, out: Output) -> CliResult<()> {
    let state = aws.load(service, Some(deploy_id)).await?;
    let Some(dep) = state.deployment.as_ref() else {
        return Err(CliError::failed(format!(
            "{service} has no deployment {deploy_id}: see `greenlight history {service}`"
        )));
    };
    let view = VerdictsView::new(dep, &state.config);
    match out {
        Output::Json => render::json(&view),
        Output::Table => print!("{}", render::verdicts(&view)),
    }
    Ok(())
}

async fn deploy(aws: &Aws, args: &DeployArgs, out: Output) -> CliResult<()> {
    let service = &args.service;
    let requested_by = aws.requested_by(args.who.requested_by.as_deref()).await?;
    let state = aws.load(service, None).await?;
    let attempt = args.attempt.unwrap_or(1);
    let deploy_id = DeployId::derive(service, &args.version, &args.ami, attempt).to_string();
    if let Some(existing) = aws.load(service, Some(&deploy_id)).await?.deployment {
        let phase = existing.phase.name();
        return Err(CliError::failed(if existing.phase.is_terminal() {
            format!(
                "{service} {} ({}) was deployed already as {deploy_id} ({phase}); to deploy this image again, pass \
                 --attempt {}",
                args.version,
                args.ami,
                attempt + 1
            )
        } else {
            format!(
                "deployment {deploy_id} of this image is already in flight ({phase}); follow it with `greenlight \
                 status {service} --watch`"
            )
        }));
    }
    // The same version rules start-deployment applies, checked before anything is published.
    if let Err(refusal) = check_version(service, state.service.live.as_ref(), &args.version, &args.ami, false) {
        let hint = match refusal {
            Refusal::Downgrade { .. } => format!(" (`greenlight rollback {service} --to {}`)", args.version),
            _ => String::new(),
        };
        return Err(CliError::failed(format!("{refusal}{hint}; nothing was published")));
    }
    if let Some(active) = &state.service.active {
        let policy = state.config.on_new_image;
        let what = match policy {
            greenlight_core::config::NewImagePolicy::Supersede => "it will be aborted cleanly, then this one starts",
            greenlight_core::config::NewImagePolicy::Queue => "this one starts when it ends",
            greenlight_core::config::NewImagePolicy::Reject => "start-deployment will refuse this image",
        };
        eprintln!(
            "note: deployment {active} is in flight and {service}'s on_new_image policy is {}: {what}",
            policy.name()
        );
    }
    let detail = to_detail(&detail::ImagePublished {
        service: service.clone(),
        version: args.version.clone(),
        ami: args.ami.clone(),
        requested_by: Some(requested_by.clone()),
        reason: args.reason.clone(),
        attempt: args.attempt,
        on_failure: args.on_failure,
    });
    let event_id = aws.publish(IMAGE_PUBLISHED, &detail).await?;
    let published = Published {
        event_id,
        detail_type: IMAGE_PUBLISHED,
        event_bus: aws.bus.clone(),
        service: service.clone(),
        deploy_id: Some(deploy_id.clone()),
        requested_by,
        detail,
    };
    if !args.watch {
        published.print(
            out,
            &format!("deployment {deploy_id} starts when start-deployment receives it; follow it with `greenlight status {service} --watch`"),
        );
        return Ok(());
    }
    let mut watcher = Watcher::new(out);
    if out == Output::Table {
        published.print(out, &format!("following deployment {deploy_id}"));
    }
    let last = watch::follow(
        aws,
        service,
        &deploy_id,
        &mut watcher,
        START_TIMEOUT,
        watch::Until::EndedOrHeld,
    )
    .await?;
    finish_watch(&watcher, &last, out, Some(published.value()))
}

async fn rollback(aws: &Aws, args: &RollbackArgs, out: Output) -> CliResult<()> {
    let service = &args.service;
    let requested_by = aws.requested_by(args.who.requested_by.as_deref()).await?;
    let (published, next) =
        publish_rollback(aws, service, args.to_version.clone(), args.reason.clone(), requested_by).await?;
    let (event_id, in_flight) = (published.event_id.clone(), published.deploy_id.clone());
    if !args.watch {
        published.print(
            out,
            &format!("{next}; follow it with `greenlight status {service} --watch`"),
        );
        return Ok(());
    }
    let mut watcher = Watcher::new(out);
    if out == Output::Table {
        published.print(out, &next);
    }
    let (target, is_redeploy) = find_rollback(aws, service, &event_id, in_flight.as_deref(), &watcher).await?;
    let last = watch::follow(aws, service, &target, &mut watcher, START_TIMEOUT, watch::Until::Ended).await?;
    let rolled_back = match &last.deployment {
        Some(d) if is_redeploy => d.phase == PhaseName::Succeeded,
        Some(d) => d.revert.is_some(),
        None => false,
    };
    let sentence = watch::ending(&last);
    match out {
        Output::Json => {
            let mut doc = published.value();
            doc["rolled_back"] = rolled_back.into();
            doc["status"] = serde_json::to_value(&last).expect("status serializes");
            render::json(&doc);
        }
        Output::Table => watcher.note(&sentence),
    }
    if rolled_back {
        Ok(())
    } else {
        Err(CliError::failed(format!("the rollback did not complete: {sentence}")))
    }
}

/// Waits for the ledger to show what rollback event `event_id` did: the deployment in flight
/// rolled back (fast path), or a redeployment of the earlier version started (slow path).
/// Returns the deployment to follow and whether it is a redeployment.
async fn find_rollback(
    aws: &Aws,
    service: &str,
    event_id: &str,
    in_flight: Option<&str>,
    watcher: &Watcher,
) -> CliResult<(String, bool)> {
    let mut deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut said_queued = false;
    loop {
        if let Some(rolled) = rollback_effect(aws, service, event_id, in_flight).await? {
            return Ok(rolled);
        }
        let state = aws.load(service, None).await?;
        if let Some(queued) = state
            .service
            .queued
            .as_ref()
            .filter(|q| q.rollback_of.as_deref() == Some(event_id))
        {
            if !said_queued {
                watcher.note(&format!(
                    "the rollback to {} is queued behind the deployment in flight",
                    queued.version
                ));
                said_queued = true;
            }
            deadline = tokio::time::Instant::now() + START_TIMEOUT;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(CliError::failed(format!(
                "RollbackRequested {event_id} was published, but within {}s the ledger shows no rollback: \
                 revert-service refused it or has not received it (e.g. --to names a version the ledger never \
                 recorded live, or the service needs attention); see `greenlight status {service}`",
                START_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The ledger's trace of rollback event `event_id`: the deployment it rolled back (false),
/// or the redeployment it started (true).
async fn rollback_effect(
    aws: &Aws,
    service: &str,
    event_id: &str,
    in_flight: Option<&str>,
) -> CliResult<Option<(String, bool)>> {
    if let Some(id) = in_flight {
        let dep = aws.load(service, Some(id)).await?.deployment;
        if dep.is_some_and(|d| d.revert.is_some_and(|r| r.event_id == event_id)) {
            return Ok(Some((id.to_string(), false)));
        }
    }
    let active = aws.load_active(service).await?.deployment;
    if let Some(dep) = active.filter(|d| Some(d.deploy_id.as_str()) != in_flight) {
        let ours = DeployId::derive_rollback(service, &dep.version, &dep.ami, event_id);
        if dep.rollback && ours.as_str() == dep.deploy_id {
            return Ok(Some((dep.deploy_id, true)));
        }
    }
    Ok(None)
}

async fn steer(aws: &Aws, args: &SteerArgs, detail_type: &'static str, verb: &str, out: Output) -> CliResult<()> {
    let requested_by = aws.requested_by(args.who.requested_by.as_deref()).await?;
    let (published, next) = publish_steer(aws, &args.service, &args.reason, requested_by, detail_type, verb).await?;
    published.print(
        out,
        &format!("{next}; follow it with `greenlight status {} --watch`", args.service),
    );
    Ok(())
}

/// A drill's result.
#[derive(Serialize)]
struct DrillReport {
    service: String,
    event_id: String,
    /// `fast` (one listener change, the previous fleet warm) or `slow` (redeployment).
    path: &'static str,
    /// The deployment rolled back (fast) or the redeployment (slow).
    deploy_id: Option<String>,
    from_version: Option<String>,
    back_to: Option<String>,
    reverted: bool,
    /// The rollback event's time → traffic back (ms).
    time_to_revert_ms: Option<u64>,
    /// revert-service's receipt of the event → traffic back (ms; fast path).
    receipt_to_revert_ms: Option<u64>,
    /// The target group traffic must be back on, and the switch point's weights as read.
    back_on_target_group: Option<String>,
    traffic: Vec<Weight>,
    requested_by: String,
    reason: String,
    /// Why the drill failed.
    why: Option<String>,
}

/// What the drill is waiting for.
enum Reverted {
    Fast {
        deploy_id: String,
        from: String,
        back_to: String,
        tg: String,
        ttr: Option<u64>,
        receipt: Option<u64>,
    },
    Slow {
        deploy_id: String,
        from: Option<String>,
        back_to: String,
        tg: String,
        ttr: Option<u64>,
    },
}

async fn drill(aws: &Aws, args: &DrillArgs, out: Output) -> CliResult<()> {
    let service = &args.service;
    let requested_by = aws.requested_by(args.who.requested_by.as_deref()).await?;
    let state = aws.load(service, None).await?;
    let active = state.service.active.clone();
    let fast = state
        .service
        .revert_plan
        .clone()
        .filter(|p| active.as_deref() == Some(p.deploy_id.as_str()));
    if fast.is_none() && !args.allow_slow {
        let now = match &active {
            Some(id) => {
                let phase = aws
                    .load(service, Some(id))
                    .await?
                    .deployment
                    .map_or("starting".to_string(), |d| d.phase.name().to_string());
                format!("deployment {id} is {phase}")
            }
            None => "no deployment is in flight".to_string(),
        };
        return Err(CliError::failed(format!(
            "nothing to drill on {service}: {now}. A drill needs a deployment in flight with the previous fleet warm \
             and green taking traffic (a canary step, or the bake window), where a rollback is one listener change; \
             run it then, or pass --allow-slow to drill the slow path (the previous version redeployed through the \
             health gates). Nothing was published"
        )));
    }
    let reason = format!("drill: {}", args.reason);
    let detail = to_detail(&detail::RollbackRequested {
        service: service.clone(),
        to_version: None,
        reason: reason.clone(),
        requested_by: requested_by.clone(),
    });
    let published_ms = now_ms();
    let event_id = aws.publish(ROLLBACK_REQUESTED, &detail).await?;
    eprintln!(
        "drill: published RollbackRequested {event_id} for {service}; waiting up to {}s for traffic back{}",
        args.timeout,
        fast.as_ref().map_or(String::new(), |p| format!(" on {}", p.back_to))
    );
    let mut report = DrillReport {
        service: service.clone(),
        event_id: event_id.clone(),
        path: if fast.is_some() { "fast" } else { "slow" },
        deploy_id: active.clone(),
        from_version: fast.as_ref().map(|p| p.from.clone()),
        back_to: fast.as_ref().map(|p| p.back_to.clone()),
        reverted: false,
        time_to_revert_ms: None,
        receipt_to_revert_ms: None,
        back_on_target_group: None,
        traffic: vec![],
        requested_by,
        reason,
        why: None,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let result = loop {
        match drill_progress(aws, service, &event_id, active.as_deref(), published_ms).await {
            Ok(Some(done)) => break Ok(done),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        if tokio::time::Instant::now() > deadline {
            break Err(CliError::failed(format!(
                "{service} was not rolled back within {}s of the drill's event {event_id}: check `greenlight status \
                 {service}` and revert-service's logs",
                args.timeout
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let done = match result {
        Ok(done) => done,
        Err(e) => return drill_failed(report, e, out),
    };
    let tg = match done {
        Reverted::Fast {
            deploy_id,
            from,
            back_to,
            tg,
            ttr,
            receipt,
        } => {
            report.deploy_id = Some(deploy_id);
            report.from_version = Some(from);
            report.back_to = Some(back_to);
            report.time_to_revert_ms = ttr;
            report.receipt_to_revert_ms = receipt;
            tg
        }
        Reverted::Slow {
            deploy_id,
            from,
            back_to,
            tg,
            ttr,
        } => {
            report.path = "slow";
            report.deploy_id = Some(deploy_id);
            report.from_version = from;
            report.back_to = Some(back_to);
            report.time_to_revert_ms = ttr;
            tg
        }
    };
    // The ledger says traffic is back: the switch point must agree.
    let mut weights = Vec::new();
    for point in state.config.switch.points() {
        let on_point = aws.lb.traffic(point).await.map_err(|e| aws.error(e))?;
        if !on_point.iter().any(|(arn, w)| *arn == tg && *w == 100) {
            let e = CliError::failed(format!(
                "the ledger records the rollback, but {} does not forward all traffic to {}: {:?}",
                point.arn(),
                tg_name(&tg),
                on_point
            ));
            return drill_failed(report, e, out);
        }
        weights = on_point;
    }
    report.traffic = weights
        .iter()
        .map(|(arn, w)| Weight {
            target_group: arn.clone(),
            name: tg_name(arn),
            weight: *w,
        })
        .collect();
    report.back_on_target_group = Some(tg.clone());
    let on_previous = weights.iter().any(|(arn, w)| *arn == tg && *w == 100);
    if !on_previous {
        let e = CliError::failed(format!(
            "the ledger records the rollback, but the switch point does not forward all traffic to {}: {:?}",
            tg_name(&tg),
            weights
        ));
        return drill_failed(report, e, out);
    }
    report.reverted = true;
    match out {
        Output::Json => render::json(&report),
        Output::Table => {
            println!(
                "drill on {service}: traffic back on {} ({}) by the {} path",
                report.back_to.as_deref().unwrap_or("-"),
                tg_name(&tg),
                report.path
            );
            if let Some(ms) = report.time_to_revert_ms {
                println!(
                    "  {:<44}{}",
                    "time-to-revert (event → traffic back)",
                    render::duration_ms(ms)
                );
            }
            if let Some(ms) = report.receipt_to_revert_ms {
                println!(
                    "  {:<44}{}",
                    "receipt → traffic back (greenlight's share)",
                    render::duration_ms(ms)
                );
            }
            println!(
                "  rolled back {} ({}); see `greenlight history {service}`",
                report.deploy_id.as_deref().unwrap_or("-"),
                report.from_version.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(())
}

fn drill_failed(mut report: DrillReport, e: CliError, out: Output) -> CliResult<()> {
    if out == Output::Json {
        report.why = Some(e.to_string());
        render::json(&report);
    }
    Err(e)
}

/// One look at the ledger for the drill's rollback; Some once traffic is back.
async fn drill_progress(
    aws: &Aws,
    service: &str,
    event_id: &str,
    in_flight: Option<&str>,
    published_ms: u64,
) -> CliResult<Option<Reverted>> {
    if let Some(id) = in_flight {
        let dep = aws.load(service, Some(id)).await?.deployment;
        if let Some((dep, revert)) = dep.and_then(|d| d.revert.clone().map(|r| (d, r))) {
            if revert.event_id != event_id {
                return Err(CliError::failed(format!(
                    "{id} was rolled back by another trigger first ({} by {}: {}); the drill measured nothing",
                    revert.trigger, revert.requested_by, revert.reason
                )));
            }
            if revert.traffic_back_at_ms.is_some() {
                let tg = dep.blue.as_ref().map(|b| b.target_group.clone()).unwrap_or_default();
                return Ok(Some(Reverted::Fast {
                    deploy_id: dep.deploy_id.clone(),
                    from: dep.version.clone(),
                    back_to: revert.back_to.clone(),
                    tg,
                    ttr: revert.time_to_revert_ms(),
                    receipt: revert.receipt_to_revert_ms(),
                }));
            }
        }
    }
    if let Some((id, true)) = rollback_effect(aws, service, event_id, in_flight).await? {
        let Some(dep) = aws.load(service, Some(&id)).await?.deployment else {
            return Ok(None);
        };
        match &dep.phase {
            Phase::Baking { .. } | Phase::Retiring { .. } | Phase::Succeeded => {
                let live_at = dep.timeline.iter().find(|m| m.phase == PhaseName::Baking).map(|m| m.at);
                return Ok(Some(Reverted::Slow {
                    deploy_id: dep.deploy_id.clone(),
                    from: dep.blue.as_ref().map(|b| b.version.clone()),
                    back_to: dep.version.clone(),
                    tg: dep.green_tg.clone(),
                    ttr: live_at.map(|s| (s * 1000).saturating_sub(published_ms)),
                }));
            }
            Phase::Aborting { reason, .. } | Phase::Aborted { reason } => {
                return Err(CliError::failed(format!(
                    "the redeployment of {} ({}) failed: {reason}",
                    dep.version, dep.deploy_id
                )))
            }
            _ => {}
        }
    }
    Ok(None)
}

/// The JSON `detail` of a greenlight event, from the typed detail inbound parses.
#[cfg(test)]
mod tests {
    use super::{parse_registration, rule_of_listener};
    use serde_json::json;

    #[test]
    fn a_rule_belongs_to_the_listener_its_arn_names() {
        let listener = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/web/50dc/f2f7";
        assert!(rule_of_listener(
            "arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/web/50dc/f2f7/9683",
            listener
        ));
        for other in [
            "arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/web/50dc/f2f70/9683",
            "arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/api/50dc/f2f7/9683",
            "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/web/50dc/f2f7/9683",
        ] {
            assert!(!rule_of_listener(other, listener), "{other}");
        }
    }

    fn document() -> serde_json::Value {
        json!({
            "service": "checkout",
            "switch": {"listener_arn": "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/web/1/2", "rule_arn": null},
            "target_groups": ["arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/a/1",
                              "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/b/2"],
            "launch": {"instance_type": "t3.micro", "subnet_id": "subnet-0123", "count": 2, "port": 8080},
            "health": {"poll_interval_s": 10, "max_polls": 30, "smoke": {"path": "/smoke"}},
            "bake_window_s": 3600,
            "live": {"version": "v1", "ami": "ami-0123abcd", "target_group": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/a/1",
                     "instance_ids": ["i-1", "i-2"]}
        })
    }

    #[test]
    fn a_registration_with_live_parses_and_every_problem_is_listed() {
        let (config, live) = parse_registration(&document().to_string()).unwrap();
        assert_eq!(
            (config.service.as_str(), live.unwrap().version.as_str()),
            ("checkout", "v1")
        );
        let mut bad = document();
        bad["launch"]["count"] = 0.into();
        bad["rollout"] = json!({"canary_steps": [50, 10]});
        bad["live"]["ami"] = "ami-nope".into();
        bad["live"]["target_group"] = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/c/3".into();
        let problems = parse_registration(&bad.to_string()).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        let mut typo = document();
        typo["bake_window"] = 1.into();
        let problems = parse_registration(&typo.to_string()).unwrap_err();
        assert!(problems[0].contains("unknown field `bake_window`"), "{problems:?}");
        assert!(parse_registration("[]").is_err() && parse_registration("{").is_err());
    }
}
