//! The command line: every verb, its options, and help text that teaches what each verb does
//! in AWS (which calls it makes, which event it publishes, what greenlight's functions do
//! with it) with an example.
//!
//! Values that reach an event or the ledger are checked here, with greenlight-core's own
//! rules (`ids::check_service`, `ids::check_ami`, `version::Version::parse`), so a bad value
//! is a usage error (exit 2) before any AWS call.

use clap::{Args, Parser, Subcommand, ValueEnum};
use greenlight_core::ids::{check_ami, check_service, DeployId};
use greenlight_core::version::Version;

const LONG_ABOUT: &str = "greenlight runs blue/green and canary deployments of EC2 fleets behind an Application \
Load Balancer, as small Lambda functions driven by EventBridge events, with a DynamoDB ledger as the source of truth.

This CLI is how an engineer looks at and steers it. The CLI NEVER changes fleets or listeners: it reads the ledger \
and AWS (DynamoDB, ELB Describe*, STS) and acts only by publishing events (plus `service register`, which writes \
the registration to the ledger through Ledger::register_service). greenlight's functions receive those events and do \
the work: launch green, check its health, move the listener, roll back.

Like the AWS CLI, it uses your AWS configuration: --profile, --region and --endpoint-url (or AWS_PROFILE, \
AWS_REGION / AWS_DEFAULT_REGION, AWS_ENDPOINT_URL), and credentials from the usual chain (environment, SSO, \
~/.aws). Events carry who asked (requested_by): your identity from STS GetCallerIdentity (the role session name for \
an assumed role, else the IAM user name, else the ARN), or --requested-by.";

const AFTER_HELP: &str = "Examples:
  greenlight services
  greenlight status checkout --watch
  greenlight deploy checkout --ami ami-0a1b2c3d4e5f60718 --version v2.4.0 --watch
  greenlight rollback checkout --reason \"p99 doubled\"
  greenlight history checkout -o json | jq '.[0]'

Exit codes: 0 ok; 1 refused or failed (service not registered, invalid registration, nothing in flight, AWS error, \
a watched deployment aborted, a drill that did not revert); 2 usage (bad arguments or values).

Environment: GREENLIGHT_TABLE (ledger table, default greenlight), GREENLIGHT_EVENT_BUS (greenlight's command bus, default greenlight), \
AWS_PROFILE, AWS_REGION, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, and the AWS credential variables.";

/// `greenlight`: the engineer's view of greenlight, and its steering wheel.
#[derive(Parser, Debug)]
#[command(
    name = "greenlight",
    version,
    about = "Look at and steer greenlight's blue/green and canary deployments of EC2 fleets",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    max_term_width = 120
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every verb takes, like the AWS CLI's.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The AWS profile (from ~/.aws/config) to use.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "AWS_PROFILE",
        value_name = "NAME"
    )]
    pub profile: Option<String>,
    /// The AWS region (AWS_DEFAULT_REGION and the profile's region apply when unset).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "AWS_REGION",
        value_name = "REGION"
    )]
    pub region: Option<String>,
    /// Send every AWS call to this endpoint instead of AWS's (e.g. a local emulator).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "AWS_ENDPOINT_URL",
        value_name = "URL"
    )]
    pub endpoint_url: Option<String>,
    /// The ledger's DynamoDB table (the stack's `LedgerTable` output).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "GREENLIGHT_TABLE",
        default_value = "greenlight",
        value_name = "TABLE"
    )]
    pub table: String,
    /// greenlight's command bus (the stack's `CommandBusName` output), where deploy, rollback,
    /// abort, promote and drill publish. Only it routes greenlight's commands, and its policy
    /// says who may publish each one; a command published on the default bus changes nothing.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "GREENLIGHT_EVENT_BUS",
        default_value = "greenlight",
        value_name = "BUS"
    )]
    pub event_bus: String,
    /// How to print results: a table for people, or one JSON document on stdout for scripts
    /// (progress then goes to stderr).
    #[arg(short, long, global = true, help_heading = "Global options", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Output format.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List registered services with their live and warm versions and the deployment in flight.
    #[command(
        long_about = "List the services registered in the ledger, with the version each one serves (live), the \
previous version kept warm during a bake window (warm), the deployment in flight with its phase, and whether \
greenlight stopped and needs a human (attention).

In AWS: one DynamoDB Scan of the ledger table for registrations, then a BatchGetItem per service. Read-only.",
        after_help = "Example:\n  greenlight services\n  greenlight services -o json | jq -r '.[].service'"
    )]
    Services,

    /// Register a service, or show its registration.
    #[command(subcommand)]
    Service(ServiceCommand),

    /// Show a service: live and warm versions, the deployment in flight, target health, listener weights.
    #[command(
        long_about = "Show where a service is: the live version, the warm (previous) version and until when it \
stays warm, the deployment in flight (its phase, canary weight and time in that phase, from the ledger's \
timeline), the health of every target in green's and blue's target groups as the load balancer reports it, the \
switch point's (listener or rule) forward weights, and `attention` if greenlight stopped and needs a human.

A deployment held by a failure (`on_failure: hold`) shows HELD: the weight it froze at, what failed and why, \
since when, and the commands that end the hold (promote, rollback, abort). Earlier holds and how they ended follow.

With canary analysis, the deployment shows green's weight being judged and since when, the next evaluation due (or \
the step held, waiting for promote, rollback or abort), each metric's tolerance, and the last evaluation: per \
metric green's and blue's bad/total counts and rates, both e-values against their thresholds, and the verdict with \
what greenlight did about it (`history --verdicts` lists them all).

In AWS: DynamoDB BatchGetItem on the ledger; ELB DescribeTargetHealth for both target groups; \
DescribeListeners or DescribeRules for the weights. Read-only.

With --watch it redraws every second, with a progress bar for the canary weight and the bake time left, until the \
deployment in flight ends (or Ctrl-C); when stdout is not a terminal it prints one line per change instead. It \
then exits 0 if the deployment succeeded, 1 if it was aborted or rolled back.",
        after_help = "Examples:\n  greenlight status checkout\n  greenlight status checkout --watch\n  \
greenlight status checkout -o json | jq .deployment.phase"
    )]
    Status(StatusArgs),

    /// List a service's deployments, newest first: outcome, who and why, time-to-healthy, time-to-revert.
    #[command(
        long_about = "List a service's deployments from the ledger, newest first: deploy id, version, AMI, when it \
started and finished, its outcome (or phase, if in flight), who asked and why, time-to-healthy (from start to \
every green target healthy and smoke-tested) and, for a rollback, time-to-revert (from the rollback event to \
traffic back on the previous version), and, with canary analysis, its outcome in a few words (ANALYSIS: \
`regressed at 10% (error_rate)`, `no worse at 10%, 50%`, `inconclusive at 10%: held`).

With --verdicts <DEPLOY_ID> it prints every analysis evaluation of that deployment instead, oldest first: when, \
green's weight, the window judged, the verdict and what greenlight did (wait, hold, next step, revert, abort), \
then one line per metric: green's and blue's bad/total counts and rates, the tolerance, both e-values against \
their thresholds, and the explanation.

In AWS: one DynamoDB Query on the service's partition (--verdicts: one BatchGetItem). Read-only.",
        after_help = "Examples:\n  greenlight history checkout --limit 5\n  \
greenlight history checkout --verdicts d-3f2a9c41b07e5d18a6c4\n  \
greenlight history checkout -o json | jq '.[] | select(.outcome == \"aborted\")'"
    )]
    History(HistoryArgs),

    /// Deploy an AMI as a new version: publish ImagePublished, as the build pipeline would.
    #[command(
        long_about = "Deploy an image: publish on EventBridge exactly the event the build pipeline would \
(source `greenlight`, detail-type `ImagePublished`, detail {service, version, ami, requested_by, reason, on_failure?}).

greenlight's start-deployment function receives it, checks the image (owner, tags, state) and the version (never \
older than live), records the deployment in the ledger and starts its state machine: green is launched from the \
AMI into the idle target group, must be healthy in the load balancer and pass the smoke test, then takes traffic \
in the service's canary steps; the previous fleet stays warm for the bake window, then is retired.

Before publishing, the CLI checks locally: the service is registered, the version is not older than live, and \
this image was not deployed already (pass --attempt to deploy it again after an abort). It prints the event id \
and the deployment id the event will start. With --watch it then follows the deployment like `status --watch` \
and exits 0 if it succeeds, 1 if it is aborted, rolled back or held (on_failure: hold) for you to decide.

In AWS: STS GetCallerIdentity, DynamoDB reads, EventBridge PutEvents.",
        after_help = "Examples:\n  greenlight deploy checkout --ami ami-0a1b2c3d4e5f60718 --version v2.4.0 --watch\n  \
greenlight deploy checkout --ami ami-0a1b2c3d4e5f60718 --version v2.4.0 --reason \"fix\"\n  \
greenlight deploy checkout --ami ami-0a1b2c3d4e5f60718 --version v2.5.0 --on-failure hold   # a schema change: freeze, never revert"
    )]
    Deploy(DeployArgs),

    /// Roll a service back to the previous version: publish RollbackRequested.
    #[command(
        long_about = "Roll a service back: publish `RollbackRequested` (source `greenlight`, detail {service, \
reason, requested_by, to_version?}).

greenlight's revert-service function receives it. While the previous fleet is warm (a canary in progress, or the \
bake window) this is the fast path: two AWS calls from the event to traffic back (one conditional DynamoDB \
UpdateItem claiming the revert plan, one listener change); the bad fleet is then drained and terminated. Once the \
previous fleet is retired, the previous version's image (or --to's, which the ledger must have recorded live) is \
deployed again through the health gates. The ledger records who, why and the time-to-revert.

With --watch it follows the rollback until traffic is back and the rolled-back deployment has ended (or the \
redeployment has), and exits 0 if the service was rolled back, 1 otherwise.

In AWS: STS GetCallerIdentity, DynamoDB reads, EventBridge PutEvents.",
        after_help = "Examples:\n  greenlight rollback checkout --reason \"p99 doubled\" --watch\n  \
greenlight rollback checkout --to v2.3.1 --reason \"bad migration in v2.4\""
    )]
    Rollback(RollbackArgs),

    /// Stop the deployment in flight: publish AbortRequested.
    #[command(
        long_about = "Abort the deployment in flight: publish `AbortRequested` (source `greenlight`, detail \
{service, reason, requested_by}).

greenlight's steer-deployment function receives it: traffic goes back to the previous version if green ever had \
any, and green is drained and terminated at once, whatever the deployment was waiting for. The ledger records who \
and why.

Refused (exit 1, nothing published) when the ledger shows no deployment in flight.

In AWS: STS GetCallerIdentity, DynamoDB reads, EventBridge PutEvents.",
        after_help = "Example:\n  greenlight abort checkout --reason \"wrong build\""
    )]
    Abort(SteerArgs),

    /// Approve a paused canary, release a held deployment, or finish the one in flight now (PromoteRequested).
    #[command(
        long_about = "Promote the deployment in flight: publish `PromoteRequested` (source `greenlight`, detail \
{service, reason, requested_by}).

greenlight's steer-deployment function receives it:
- while green waits in an approval pause (`\"pause\"` in the registration's `canary_steps`; `greenlight \
status` shows PAUSED), it approves that pause: green goes on to its next step and the rest of the canary \
(further steps, pauses and analysis) still applies;
- while the deployment is held (a failed gate, analysis or alarm with `on_failure: hold`; `greenlight status` \
shows HELD), it releases the hold: you judged the failure acceptable, so the deployment goes on as promoted below \
(a gate that still fails holds it again). `greenlight rollback` or `greenlight abort` end a hold the other way;
- otherwise the remaining canary steps and the bake window are skipped (green goes to 100 %, then the \
previous fleet is retired). The health gates still apply. Promote again after an approval to skip the rest.

Refused (exit 1, nothing published) when the ledger shows no deployment in flight.

In AWS: STS GetCallerIdentity, DynamoDB reads, EventBridge PutEvents.",
        after_help = "Example:\n  greenlight promote checkout --reason \"canary metrics clean for an hour\""
    )]
    Promote(SteerArgs),

    /// Rehearse a rollback on the deployment in flight and measure time-to-revert.
    #[command(
        long_about = "Run a rollback drill: publish `RollbackRequested` with the reason \"drill: ...\" on the \
deployment in flight, wait for the ledger to record the rollback with traffic back, read the switch point to \
confirm traffic is on the previous target group, and report time-to-revert (event → traffic back) and \
receipt → traffic back (greenlight's own share).

This is a real rollback: the deployment in flight ends rolled back. A drill needs a deployment in flight with the \
previous fleet warm (a canary in progress, or the bake window), where the fast path applies; --allow-slow also \
drills the slow path (the previous version redeployed through the health gates).

Exits 0 if traffic was back within --timeout, 1 otherwise.

In AWS: STS GetCallerIdentity, DynamoDB reads, EventBridge PutEvents, ELB DescribeListeners/DescribeRules.",
        after_help = "Example:\n  greenlight drill checkout --reason \"quarterly game day\" --timeout 120"
    )]
    Drill(DrillArgs),

    /// Serve a live web dashboard of every service and deployment on 127.0.0.1, with rollback, promote and abort.
    #[command(
        long_about = "Serve a web dashboard on this machine (http://127.0.0.1:8577/ by default) that reads the \
ledger and the load balancers with YOUR AWS credentials, exactly like the other verbs: there is no server in AWS \
and nothing new to authenticate. Ctrl-C stops it.

Pages:
- Services (/): one row per service: live and warm versions, the deployment in flight with its phase, canary \
weight and time in that phase, attention flags, the last outcome; a filter box.
- A service (/services/NAME): the deployment in flight drawn as a timeline (green's weight over time, every \
phase change, pause, hold and analysis verdict as the ledger records them), every switch point with its forward \
weights, green's and blue's targets with their health, and the history with a time-to-revert trend.

Both pages update by themselves (server-sent events) within a second of the ledger or the listeners changing.

Actions: rollback (optionally to a named version), promote and abort, each with a reason. They publish the same \
event as `greenlight rollback|promote|abort`, with the same identity (STS GetCallerIdentity, or --requested-by), \
and are refused with the same reasons; the page shows the refusal. Nothing else writes. An action needs the token \
this process made when it started (it is in the page it serves) and a request from the dashboard's own origin: \
another web site open in your browser cannot act through it.

It binds 127.0.0.1 unless --bind says otherwise; any other address lets everyone who can reach this machine use \
your AWS credentials through it, and the dashboard says so loudly when it starts.

In AWS, per open page, twice a second (the services page: once a second, per service): DynamoDB \
BatchGetItem on the ledger; ELB DescribeTargetHealth, DescribeListeners or DescribeRules. A DynamoDB Query of a \
service's history when its deployment or releases change. STS GetCallerIdentity once at start, and per action; \
EventBridge PutEvents per action.",
        after_help = "Examples:\n  greenlight dashboard\n  greenlight dashboard --port 9000 --open\n  \
greenlight --endpoint-url http://127.0.0.1:4599 dashboard   # against `greenlight-local up`"
    )]
    Dashboard(DashboardArgs),

    /// Print a shell completion script.
    #[command(
        long_about = "Print a completion script for your shell on stdout. Makes no AWS call.",
        after_help = "Examples:\n  greenlight completions bash > ~/.local/share/bash-completion/completions/greenlight\n  \
greenlight completions zsh > \"${fpath[1]}/_greenlight\"\n  \
greenlight completions fish > ~/.config/fish/completions/greenlight.fish"
    )]
    Completions(CompletionsArgs),
}

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Register (or update) a service from a JSON file.
    #[command(
        long_about = "Register a service, or update its registration, from a JSON document: the registration \
shown in README.md (\"Registering a service\"), plus an optional top-level \"live\" release to adopt as what serves \
today: {\"version\", \"ami\", \"target_group\", \"instance_ids\"} (used only the first time; the ledger tracks what \
is live from then on).

\"switch\" is one switch point, {\"listener_arn\", \"rule_arn\"} (rule_arn null for the listener's default \
action), or a list of up to 10 of them (listeners' default actions and/or listener rules, on one or several load \
balancers): every traffic change moves all of them to the same weights. Of each point greenlight owns only the \
forward action's target groups and weights; authentication actions before it (authenticate-oidc, \
authenticate-cognito) and the forward's stickiness are kept as they are (with stickiness on, a user stays on the \
version they got: the weights apply to new sessions). A point must forward to the service's \
target groups only, as its last action, with nothing but authentication before it: a redirect or fixed-response, \
several forwards, or a target group of another service is refused.

\"analysis\" (optional) turns on canary analysis: green judged against blue on real traffic between canary steps \
and through the bake window, per metric (error_rate, latency, or a custom CloudWatch rate) with its tolerance, \
plus alpha, min_requests, period_s, lag_s, max_step_s, inconclusive (abort, continue, hold) and baseline_s \
(README.md, \"Canary analysis\").

Everything is checked first and every problem is listed at once; if there is any, nothing is written (exit 1): \
the document, then every switch point as the load balancer has it now (it must exist and be one greenlight can \
own).

In AWS: ELB DescribeListeners / DescribeRules (each switch point), DynamoDB GetItem, then one conditional PutItem \
or TransactWriteItems (the registration, the service's pointer record, and its Image Builder and alarm aliases). \
This is the one verb that writes to the ledger.",
        after_help = "Examples:\n  greenlight service register checkout.json\n  \
greenlight service show checkout -o json > checkout.json && $EDITOR checkout.json && \
greenlight service register checkout.json"
    )]
    Register(RegisterArgs),

    /// Show a service's registration.
    #[command(
        long_about = "Show a service's registration as the ledger has it. With -o json it prints the registration \
document itself, which `service register` takes back after editing.

In AWS: DynamoDB BatchGetItem. Read-only.",
        after_help = "Example:\n  greenlight service show checkout"
    )]
    Show(ServiceArg),
}

#[derive(Args, Debug)]
pub struct ServiceArg {
    /// The service's name.
    #[arg(value_parser = service_name)]
    pub service: String,
}

#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// The registration document (JSON); `-` reads it from stdin.
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The service's name.
    #[arg(value_parser = service_name)]
    pub service: String,
    /// Redraw every second until the deployment in flight ends (one line per change when not a terminal).
    #[arg(short, long)]
    pub watch: bool,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// The service's name.
    #[arg(value_parser = service_name)]
    pub service: String,
    /// Show the newest N deployments (0: all).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub limit: usize,
    /// Instead of the list, every canary analysis evaluation of this deployment, oldest first:
    /// time, weight, window, verdict, action, and each metric's numbers and explanation.
    #[arg(long, value_name = "DEPLOY_ID", value_parser = deploy_id, conflicts_with = "limit")]
    pub verdicts: Option<String>,
}

/// Who asks, for the verbs that publish.
#[derive(Args, Debug)]
pub struct Who {
    /// Who the event says asked (default: your identity from STS GetCallerIdentity).
    #[arg(long, value_name = "NAME", value_parser = requested_by)]
    pub requested_by: Option<String>,
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// The service's name.
    #[arg(value_parser = service_name)]
    pub service: String,
    /// The AMI to deploy (ami- followed by 8 or 17 hex digits).
    #[arg(long, value_parser = ami_id, value_name = "AMI")]
    pub ami: String,
    /// The version this AMI is (e.g. v2.4.0; never older than live).
    #[arg(long, value_parser = version, value_name = "VERSION")]
    pub version: String,
    /// Why (recorded in the ledger with the deployment).
    #[arg(long, value_parser = reason, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Deploy this image again after an aborted attempt (the first deployment of an image is attempt 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000), value_name = "N")]
    pub attempt: Option<u32>,
    /// What a failed gate, analysis or alarm does to this release: `revert` (traffic back on the
    /// previous version) or `hold` (freeze where it is until you promote, roll back or abort).
    /// Default: the service's registration (`rollout.on_failure`).
    #[arg(long, value_parser = on_failure, value_name = "revert|hold")]
    pub on_failure: Option<greenlight_core::config::OnFailure>,
    /// Follow the deployment until it ends (like `status --watch`).
    #[arg(short, long)]
    pub watch: bool,
    #[command(flatten)]
    pub who: Who,
}

/// `--on-failure`'s value.
fn on_failure(word: &str) -> Result<greenlight_core::config::OnFailure, String> {
    match word {
        "revert" => Ok(greenlight_core::config::OnFailure::Revert),
        "hold" => Ok(greenlight_core::config::OnFailure::Hold),
        _ => Err(format!("{word:?} is neither `revert` nor `hold`")),
    }
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// The service's name.
    #[arg(value_parser = service_name)]
    pub service: String,
    /// Roll back to this version (one the ledger recorded live) instead of the previous one.
    #[arg(long = "to", value_parser = version, value_name = "VERSION")]
    pub to_version: Option<String>,
    /// Why (required; recorded in the ledger).
    #[arg(long, value_parser = reason, value_name = "TEXT")]
    pub reason: String,
    /// Follow the rollback until it has ended.
    #[arg(short, long)]
    pub watch: bool,
    #[command(flatten)]
    pub who: Who,
}

#[derive(Args, Debug)]
pub struct SteerArgs {
    /// The service's name.
    #[arg(value_parser = service_name)]
    pub service: String,
    /// Why (required; recorded in the ledger).
    #[arg(long, value_parser = reason, value_name = "TEXT")]
    pub reason: String,
    #[command(flatten)]
    pub who: Who,
}

#[derive(Args, Debug)]
pub struct DashboardArgs {
    /// The port to serve on (0: any free port; the URL printed says which).
    #[arg(long, default_value_t = 8577, value_name = "PORT")]
    pub port: u16,
    /// The address to bind. Anything but a loopback address exposes your AWS credentials' power to the network.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDRESS")]
    pub bind: std::net::IpAddr,
    /// Open the dashboard in your web browser (xdg-open, or open on macOS).
    #[arg(long)]
    pub open: bool,
    #[command(flatten)]
    pub who: Who,
}

#[derive(Args, Debug)]
pub struct DrillArgs {
    /// The service's name.
    #[arg(value_parser = service_name)]
    pub service: String,
    /// Why (the event's reason is "drill: <TEXT>").
    #[arg(long, value_parser = reason, default_value = "rollback drill", value_name = "TEXT")]
    pub reason: String,
    /// Give up (exit 1) if traffic is not back within this many seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600), value_name = "SECONDS")]
    pub timeout: u64,
    /// Also drill when no fleet is warm: the previous version is redeployed through the health gates.
    #[arg(long)]
    pub allow_slow: bool,
    #[command(flatten)]
    pub who: Who,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub(crate) fn service_name(text: &str) -> Result<String, String> {
    check_service(text).map(|_| text.to_string()).map_err(|e| e.to_string())
}

fn deploy_id(text: &str) -> Result<String, String> {
    DeployId::parse(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

fn ami_id(text: &str) -> Result<String, String> {
    check_ami(text).map(|_| text.to_string()).map_err(|e| e.to_string())
}

pub(crate) fn version(text: &str) -> Result<String, String> {
    Version::parse(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

/// Free text that goes into an event: what greenlight's parser accepts.
fn bounded(text: &str, what: &str, max: usize) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if text.len() > max || text.chars().any(char::is_control) {
        return Err(format!(
            "{what} must be at most {max} characters with no control characters"
        ));
    }
    Ok(text.to_string())
}

pub(crate) fn reason(text: &str) -> Result<String, String> {
    bounded(text, "a reason", 500)
}

/// The limit greenlight's event parser puts on `requested_by`.
pub const MAX_REQUESTED_BY: usize = 128;

fn requested_by(text: &str) -> Result<String, String> {
    bounded(text, "--requested-by", MAX_REQUESTED_BY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_help_keeps_the_promise() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("The CLI NEVER changes fleets or listeners"), "{help}");
    }

    #[test]
    fn history_takes_a_deployment_for_its_verdicts() {
        let cli = Cli::try_parse_from([
            "greenlight",
            "history",
            "checkout",
            "--verdicts",
            "d-0123456789abcdef0123",
        ])
        .unwrap();
        let Command::History(args) = cli.command else {
            panic!("history")
        };
        assert_eq!(args.verdicts.as_deref(), Some("d-0123456789abcdef0123"));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let table: &[&[&str]] = &[
            &["greenlight", "status", "Check Out"],
            &[
                "greenlight",
                "deploy",
                "checkout",
                "--ami",
                "ami-xyz",
                "--version",
                "v2",
            ],
            &[
                "greenlight",
                "deploy",
                "checkout",
                "--ami",
                "ami-0123456789abcdef0",
                "--version",
                "latest",
            ],
            &["greenlight", "rollback", "checkout"],
            &["greenlight", "abort", "checkout", "--reason", " "],
            &["greenlight", "history", "checkout", "--verdicts", "d-nope"],
        ];
        for args in table {
            let err = Cli::try_parse_from(*args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }
}
