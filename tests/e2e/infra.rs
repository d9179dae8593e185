//! The deployable stack in `infra/` agrees with the code: the Step Functions definition is
//! the one generated from the plan; every function of the SAM template runs the one bootstrap
//! (built with cargo-lambda for arm64) with its own `Handler`; the template routes exactly the
//! events greenlight parses, its commands only from the command bus whose policy names who
//! may publish each (the default bus only logs them), substitutes every task of the
//! definition, and gives each
//! function its own role with no wildcard action, no unscoped write and destructive actions
//! only on resources tagged `managed-by=greenlight`. (That each role grants what its function
//! really calls is checked in `contract`.)

use greenlight_core::inbound::{
    event_patterns, ignored_commands_pattern, revert_patterns, steer_patterns, RuleBus, COMMANDS, IMAGE_PUBLISHED,
    RECONCILE_SCHEDULE, SOURCE,
};
use greenlight_core::plan::{state_machine_definition, RECONCILE_INTERVAL_S};
use greenlight_e2e::stack::FUNCTIONS;
use greenlight_e2e::template::{as_list, function_id, Template};
use greenlight_local::emulator::repo_root;
use greenlight_local::lambda_service::BOOTSTRAP;
use greenlight_steps::lambda::Function;
use serde_json::{json, Value};
use std::collections::BTreeSet;

#[test]
fn committed_state_machine_matches_the_plan() {
    let path = repo_root().join("infra/statemachine.asl.json");
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        committed,
        state_machine_definition(),
        "infra/statemachine.asl.json is stale: run `make asl`"
    );
}

/// The functions of an installation, by handler name (what the bootstrap serves).
fn functions() -> Vec<String> {
    Function::ALL.iter().map(|f| f.name().to_string()).collect()
}

/// A function's properties with the template's `Globals.Function` under them.
fn function_properties(template: &Template, function: &str) -> Value {
    let mut properties = template.doc["Globals"]["Function"].clone();
    let own = template.function(function)["Properties"].as_object().unwrap().clone();
    for (key, value) in own {
        match (properties.get_mut(&key), value) {
            (Some(Value::Object(global)), Value::Object(local)) if key == "Environment" => {
                let variables = global["Variables"].as_object_mut().unwrap();
                variables.extend(local["Variables"].as_object().cloned().unwrap_or_default());
            }
            (_, value) => properties[&key] = value,
        }
    }
    properties
}

#[test]
fn every_function_runs_the_one_bootstrap_built_with_cargo_lambda_for_arm64_with_its_own_role() {
    // One package under functions/, whose binary is the bootstrap.
    let packages: Vec<String> = std::fs::read_dir(repo_root().join("functions"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        packages,
        vec![BOOTSTRAP.to_string()],
        "functions/ holds the one bootstrap"
    );
    let manifest = std::fs::read_to_string(repo_root().join("functions").join(BOOTSTRAP).join("Cargo.toml")).unwrap();
    assert!(manifest.contains(&format!("name = \"{BOOTSTRAP}\"")), "{manifest}");
    // The functions the stack runs are the ones the bootstrap serves.
    let names = functions();
    assert_eq!(names.len(), 11, "{names:?}");
    assert_eq!(FUNCTIONS.map(|(name, _)| name.to_string()).to_vec(), names);

    let template = Template::load();
    let resources: BTreeSet<String> = template.resources_of("AWS::Serverless::Function").into_iter().collect();
    let expected: BTreeSet<String> = names.iter().map(|f| function_id(f)).collect();
    assert_eq!(
        resources, expected,
        "one template function per greenlight_steps::lambda::Function"
    );
    let (mut roles, mut handlers) = (BTreeSet::new(), BTreeSet::new());
    for function in &names {
        let resource = template.function(function);
        assert_eq!(resource["Metadata"]["BuildMethod"], "rust-cargolambda", "{function}");
        assert_eq!(
            resource["Metadata"]["BuildProperties"]["Binary"],
            json!(BOOTSTRAP),
            "{function} runs the one bootstrap"
        );
        let properties = function_properties(&template, function);
        // Lambda sets _HANDLER from it; the bootstrap serves the function it names.
        assert_eq!(properties["Handler"], json!(function), "{function}");
        assert_eq!(function.parse::<Function>().map(|f| f.name()), Ok(function.as_str()));
        assert!(handlers.insert(properties["Handler"].to_string()));
        assert_eq!(properties["CodeUri"], "..", "{function}: the workspace root");
        assert_eq!(properties["Runtime"], "provided.al2023", "{function}");
        assert_eq!(properties["Architectures"], json!(["arm64"]), "{function}");
        assert_eq!(properties["MemorySize"], 128, "{function}");
        let timeout = properties["Timeout"].as_u64().unwrap_or(3);
        assert!((10..=120).contains(&timeout), "{function}'s timeout {timeout} s");
        // What greenlight_steps::lambda::ports_from_env reads.
        let variables = &properties["Environment"]["Variables"];
        for name in [
            "GREENLIGHT_TABLE",
            "GREENLIGHT_BUCKET",
            "GREENLIGHT_STATE_MACHINE_ARN",
            "GREENLIGHT_MANIFEST_PREFIX",
            "GREENLIGHT_REPORT_PREFIX",
            "GREENLIGHT_DEFAULT_BAKE_WINDOW_S",
        ] {
            assert!(!variables[name].is_null(), "{function} lacks {name}");
        }
        let role = template.role_of(function);
        let trust = &template.resource(&role)["Properties"]["AssumeRolePolicyDocument"]["Statement"];
        let principals: Vec<Value> = as_list(trust)
            .iter()
            .map(|s| s["Principal"]["Service"].clone())
            .collect();
        assert_eq!(principals, vec![json!("lambda.amazonaws.com")], "{role}");
        assert!(roles.insert(role.clone()), "{role} is shared by two functions");
    }
}

/// A template rule's logical id: `greenlight-image-published` → `ImagePublishedRule`.
fn rule_id(name: &str) -> String {
    let name = name.trim_start_matches("greenlight-");
    function_id(name).replace("Function", "Rule")
}

#[test]
fn rules_route_exactly_the_events_greenlight_parses() {
    let template = Template::load();
    let routed: Vec<(&str, Value, &str)> = event_patterns("BUCKET", "PREFIX")
        .into_iter()
        .map(|(name, pattern)| (name, pattern, "start-deployment"))
        .chain(
            revert_patterns()
                .into_iter()
                .map(|(name, pattern)| (name, pattern, "revert-service")),
        )
        .chain(
            steer_patterns()
                .into_iter()
                .map(|(name, pattern)| (name, pattern, "steer-deployment")),
        )
        .collect();
    // Plus the default bus's rule that only logs greenlight's commands published there (the
    // reconcile's schedule has no pattern: `reconcile_services_runs_on_its_schedule_and_only_from_it`).
    // (Rules on the events bus route greenlight's own announcements to a team's targets:
    // `deployment_events_flow_from_the_ledger_stream_through_the_pipe_to_the_events_bus`.)
    let patterned: Vec<String> = template
        .resources_of("AWS::Events::Rule")
        .into_iter()
        .filter(|id| !template.resource(id)["Properties"]["EventPattern"].is_null())
        .filter(|id| !on_events_bus(&template, id))
        .collect();
    assert_eq!(patterned.len(), routed.len() + 1, "{patterned:?}");
    for (name, pattern, target) in routed {
        let rule = &template.resource(&rule_id(name))["Properties"];
        // The bus the local runner puts it on, too.
        let bus = match RuleBus::of(&pattern) {
            RuleBus::Command => json!({"Ref": "CommandBus"}),
            RuleBus::Default => Value::Null,
        };
        assert_eq!(rule["EventBusName"], bus, "{name}");
        // The template names the bucket and prefix by reference.
        let expected: Value = serde_json::from_str(
            &pattern
                .to_string()
                .replace(r#""BUCKET""#, r#"{"Ref":"ArtifactBucket"}"#)
                .replace(r#""PREFIX""#, r#"{"Ref":"ManifestPrefix"}"#),
        )
        .unwrap();
        assert_eq!(rule["EventPattern"], expected, "{name}");
        let targets = as_list(&rule["Targets"]);
        assert_eq!(targets.len(), 1, "{name}");
        assert_eq!(
            targets[0]["Arn"],
            json!({"Fn::GetAtt": [function_id(target), "Arn"]}),
            "{name}"
        );
        assert!(
            targets[0]["DeadLetterConfig"]["Arn"].is_object(),
            "{name} has no dead-letter queue"
        );
    }
}

/// The one rule without a pattern: EventBridge runs reconcile-services on the schedule the
/// core names, with a dead-letter queue like every other rule, and may invoke it only from
/// that rule.
#[test]
fn reconcile_services_runs_on_its_schedule_and_only_from_it() {
    let template = Template::load();
    let scheduled: Vec<String> = template
        .resources_of("AWS::Events::Rule")
        .into_iter()
        .filter(|id| template.resource(id)["Properties"]["EventPattern"].is_null())
        .collect();
    assert_eq!(scheduled, vec!["ReconcileScheduleRule".to_string()]);
    let rule = &template.resource("ReconcileScheduleRule")["Properties"];
    assert_eq!(rule["ScheduleExpression"], RECONCILE_SCHEDULE);
    assert_eq!(
        RECONCILE_SCHEDULE,
        format!("rate({} minutes)", RECONCILE_INTERVAL_S / 60)
    );
    let targets = as_list(&rule["Targets"]);
    assert_eq!(targets.len(), 1);
    assert_eq!(
        targets[0]["Arn"],
        json!({"Fn::GetAtt": [function_id("reconcile-services"), "Arn"]})
    );
    assert!(targets[0]["DeadLetterConfig"]["Arn"].is_object());
    let permissions: Vec<Value> = template
        .resources_of("AWS::Lambda::Permission")
        .into_iter()
        .map(|id| template.resource(&id)["Properties"].clone())
        .filter(|p| p["FunctionName"] == json!({"Ref": function_id("reconcile-services")}))
        .collect();
    assert_eq!(permissions.len(), 1, "{permissions:?}");
    assert_eq!(permissions[0]["Principal"], "events.amazonaws.com");
    assert_eq!(
        permissions[0]["SourceArn"],
        json!({"Fn::GetAtt": ["ReconcileScheduleRule", "Arn"]})
    );
    // It lists the registrations: the one function allowed to Scan the ledger.
    let scans: Vec<String> = functions()
        .into_iter()
        .filter(|f| {
            template
                .statements(&template.role_of(f))
                .iter()
                .any(|s| strings(&s["Action"]).iter().any(|a| a == "dynamodb:Scan"))
        })
        .collect();
    assert_eq!(scans, vec!["reconcile-services".to_string()]);
}

/// The sources a rule's pattern matches.
fn sources(rule: &Value) -> Vec<String> {
    strings(&rule["Properties"]["EventPattern"]["source"])
}

#[test]
fn every_command_rule_is_on_the_command_bus_and_every_aws_rule_on_the_default_bus() {
    let template = Template::load();
    let (ignored_name, ignored_pattern) = ignored_commands_pattern();
    let ignored_id = rule_id(ignored_name);
    for id in template.resources_of("AWS::Events::Rule") {
        let rule = template.resource(&id);
        let sources = sources(rule);
        let bus = &rule["Properties"]["EventBusName"];
        if id == ignored_id {
            continue;
        }
        if on_events_bus(&template, &id) {
            // greenlight's announcements, to a team's targets: never to a function of ours.
            for target in as_list(&rule["Properties"]["Targets"]) {
                let arn = target["Arn"].to_string();
                assert!(!arn.contains("Function"), "{id} sends deployment events to {arn}");
            }
            continue;
        }
        if rule["Properties"]["EventPattern"].is_null() {
            // A schedule (the reconcile's): EventBridge's own events, on the default bus.
            assert!(bus.is_null(), "{id} on {bus}");
            continue;
        }
        if sources.iter().all(|s| s.starts_with("aws.")) && !sources.is_empty() {
            // AWS services send their events to the default bus; no one else can publish an
            // `aws.` source.
            assert!(bus.is_null() || *bus == json!("default"), "{id} on {bus}");
        } else {
            assert_eq!(sources, [SOURCE], "{id}: greenlight's own source, or AWS's only");
            assert_eq!(
                *bus,
                json!({"Ref": "CommandBus"}),
                "{id}: a command rule off the command bus"
            );
        }
    }
    // On the default bus, greenlight's commands reach no function: one rule catches them and
    // writes them to a log group EventBridge may write to.
    let ignored = &template.resource(&ignored_id)["Properties"];
    assert!(
        ignored["EventBusName"].is_null(),
        "{ignored_id} listens on the default bus"
    );
    assert_eq!(ignored["EventPattern"], ignored_pattern);
    let targets = as_list(&ignored["Targets"]);
    assert_eq!(targets.len(), 1, "{ignored_id}");
    let arn = targets[0]["Arn"]["Fn::Sub"].as_str().unwrap_or_default();
    assert!(
        arn.ends_with(":log-group:${IgnoredCommandsLogGroup}"),
        "{ignored_id} targets {arn}"
    );
    let log_group = &template.resource("IgnoredCommandsLogGroup")["Properties"];
    assert_eq!(log_group["RetentionInDays"], json!({"Ref": "LogRetentionDays"}));
    let policy = template.resource("IgnoredCommandsLogGroupPolicy");
    assert_eq!(policy["Type"], "AWS::Logs::ResourcePolicy");
    let document = policy["Properties"]["PolicyDocument"]["Fn::Sub"][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        document.contains("events.amazonaws.com") && document.contains("logs:PutLogEvents"),
        "{document}"
    );
    // Nothing on the default bus routes greenlight's source to a function.
    for id in template.resources_of("AWS::Events::Rule") {
        let rule = template.resource(&id);
        if rule["Properties"]["EventBusName"].is_null() {
            for target in as_list(&rule["Properties"]["Targets"]) {
                let function = target["Arn"]["Fn::GetAtt"][0].as_str().unwrap_or_default();
                assert!(
                    !(function.ends_with("Function") && sources(rule).contains(&SOURCE.to_string())),
                    "{id} sends greenlight's commands from the default bus to {function}"
                );
            }
        }
    }
}

/// True when rule `id` listens on greenlight's events bus.
fn on_events_bus(template: &Template, id: &str) -> bool {
    template.resource(id)["Properties"]["EventBusName"] == json!({"Ref": "EventsBus"})
}

#[test]
fn deployment_events_flow_from_the_ledger_stream_through_the_pipe_to_the_events_bus() {
    use greenlight_core::announce;
    use greenlight_local::pipe;
    let template = Template::load();
    let table = &template.resource("LedgerTable")["Properties"];
    assert_eq!(table["StreamSpecification"]["StreamViewType"], "NEW_AND_OLD_IMAGES");

    // The pipe: the stream, filtered as the local pipe filters, through announce-deployments,
    // to the events bus with greenlight's source and detail-type.
    let pipes = template.resources_of("AWS::Pipes::Pipe");
    assert_eq!(pipes, vec!["DeploymentEventsPipe".to_string()]);
    let pipe_properties = &template.resource("DeploymentEventsPipe")["Properties"];
    assert_eq!(
        pipe_properties["Source"],
        json!({"Fn::GetAtt": ["LedgerTable", "StreamArn"]})
    );
    assert_eq!(
        pipe_properties["Enrichment"],
        json!({"Fn::GetAtt": [function_id("announce-deployments"), "Arn"]})
    );
    assert_eq!(pipe_properties["Target"], json!({"Fn::GetAtt": ["EventsBus", "Arn"]}));
    let target = &pipe_properties["TargetParameters"]["EventBridgeEventBusParameters"];
    assert_eq!(
        (target["Source"].as_str(), target["DetailType"].as_str()),
        (Some(announce::SOURCE), Some(announce::DETAIL_TYPE))
    );
    let source = &pipe_properties["SourceParameters"];
    let filters = as_list(&source["FilterCriteria"]["Filters"]);
    assert_eq!(filters.len(), 1);
    let filter: Value = serde_json::from_str(filters[0]["Pattern"].as_str().unwrap()).unwrap();
    assert_eq!(
        filter,
        announce::pipe_filter(),
        "the local pipe filters as the template's"
    );
    let stream = &source["DynamoDBStreamParameters"];
    assert_eq!(stream["BatchSize"], json!(pipe::BATCH_SIZE));
    assert_eq!(stream["MaximumRetryAttempts"], json!(pipe::MAX_RETRY_ATTEMPTS));
    assert_eq!(stream["ParallelizationFactor"], 1, "one reader per shard: in order");
    assert_eq!(
        stream["DeadLetterConfig"]["Arn"],
        json!({"Fn::GetAtt": ["DeploymentEventsDeadLetterQueue", "Arn"]})
    );

    // The pipe's role: exactly the stream's reads, the enrichment, the bus, the dead letters.
    let role = pipe_properties["RoleArn"]["Fn::GetAtt"][0]
        .as_str()
        .unwrap()
        .to_string();
    let trust = &template.resource(&role)["Properties"]["AssumeRolePolicyDocument"]["Statement"];
    assert_eq!(as_list(trust)[0]["Principal"]["Service"], "pipes.amazonaws.com");
    let mut grants: Vec<(String, Value)> = template
        .statements(&role)
        .iter()
        .flat_map(|s| {
            strings(&s["Action"])
                .into_iter()
                .map(move |a| (a, s["Resource"].clone()))
        })
        .collect();
    grants.sort_by(|a, b| a.0.cmp(&b.0));
    let stream_arn = json!([{"Fn::GetAtt": ["LedgerTable", "StreamArn"]}]);
    let bus_arn = json!([{"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventsBusName}"}]);
    assert_eq!(
        grants,
        vec![
            ("dynamodb:DescribeStream".to_string(), stream_arn.clone()),
            ("dynamodb:GetRecords".to_string(), stream_arn.clone()),
            ("dynamodb:GetShardIterator".to_string(), stream_arn.clone()),
            ("dynamodb:ListStreams".to_string(), stream_arn),
            ("events:PutEvents".to_string(), bus_arn),
            (
                "lambda:InvokeFunction".to_string(),
                json!([{"Fn::GetAtt": [function_id("announce-deployments"), "Arn"]}])
            ),
            (
                "sqs:SendMessage".to_string(),
                json!([{"Fn::GetAtt": ["DeploymentEventsDeadLetterQueue", "Arn"]}])
            ),
        ]
    );
    // announce-deployments calls no AWS API: its role writes its logs and traces, nothing else.
    let announce_actions: BTreeSet<String> = template
        .statements(&template.role_of("announce-deployments"))
        .iter()
        .flat_map(|s| strings(&s["Action"]))
        .collect();
    let expected: BTreeSet<String> = [
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    ]
    .map(String::from)
    .into();
    assert_eq!(announce_actions, expected);

    // Only the pipe's role may put events on the events bus.
    let bus = &template.resource("EventsBus")["Properties"];
    assert_eq!(bus["Name"], json!({"Ref": "EventsBusName"}));
    let statements = as_list(&bus["Policy"]["Statement"]);
    assert_eq!(statements.len(), 1, "{statements:?}");
    let deny = &statements[0];
    assert_eq!(
        (
            deny["Effect"].as_str(),
            deny["Principal"].as_str(),
            deny["Action"].as_str()
        ),
        (Some("Deny"), Some("*"), Some("events:PutEvents"))
    );
    assert_eq!(
        deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"],
        json!({"Fn::GetAtt": [role, "Arn"]})
    );

    // The optional topic: every DeploymentStateChanged on the events bus, published by that
    // rule only.
    let rule = template.resource("DeploymentEventsToTopicRule");
    assert_eq!(rule["Condition"], "CreatesNotificationTopic");
    assert!(on_events_bus(&template, "DeploymentEventsToTopicRule"));
    assert_eq!(rule["Properties"]["EventPattern"], announce::rule_pattern());
    let targets = as_list(&rule["Properties"]["Targets"]);
    assert_eq!(targets[0]["Arn"], json!({"Ref": "DeploymentEventsTopic"}));
    assert!(targets[0]["DeadLetterConfig"]["Arn"].is_object());
    let topic_policy = &template.resource("DeploymentEventsTopicPolicy")["Properties"]["PolicyDocument"]["Statement"];
    let allow = &as_list(topic_policy)[0];
    assert_eq!(allow["Principal"]["Service"], "events.amazonaws.com");
    assert_eq!(
        allow["Condition"]["ArnEquals"]["aws:SourceArn"],
        json!({"Fn::GetAtt": ["DeploymentEventsToTopicRule", "Arn"]})
    );
    for id in [
        "DeploymentEventsTopic",
        "DeploymentEventsTopicPolicy",
        "DeploymentEventsDeadLetterQueuePolicy",
    ] {
        assert_eq!(template.resource(id)["Condition"], "CreatesNotificationTopic", "{id}");
    }
}

#[test]
fn only_the_named_principals_may_publish_each_command_on_the_command_bus() {
    let template = Template::load();
    let bus = &template.resource("CommandBus")["Properties"];
    assert_eq!(bus["Name"], json!({"Ref": "CommandBusName"}));
    let statements = as_list(&bus["Policy"]["Statement"]);
    let bus_arn =
        json!({"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${CommandBusName}"});
    for statement in &statements {
        assert_eq!(statement["Action"], "events:PutEvents", "{statement}");
        assert_eq!(statement["Resource"], bus_arn, "{statement}");
    }
    let (allows, denies): (Vec<&Value>, Vec<&Value>) = statements.iter().partition(|s| s["Effect"] == "Allow");
    // Who may publish each command: the deploy-time parameter naming them.
    for command in COMMANDS {
        let publishers = json!({"Ref": if command == IMAGE_PUBLISHED { "ImagePublisherArns" } else { "OperatorArns" }});
        let covers =
            |s: &&&Value| strings(&s["Condition"]["StringEquals"]["events:detail-type"]).contains(&command.to_string());
        // Allowed to the named roles of this account, with greenlight's source only.
        let allowed: Vec<&&Value> = allows.iter().filter(covers).collect();
        assert_eq!(allowed.len(), 1, "{command}: {allowed:?}");
        let allow = allowed[0];
        assert_eq!(
            allow["Principal"],
            json!({"AWS": {"Ref": "AWS::AccountId"}}),
            "{command}"
        );
        assert_eq!(
            allow["Condition"]["ArnLike"]["aws:PrincipalArn"], publishers,
            "{command}"
        );
        assert_eq!(
            strings(&allow["Condition"]["ForAllValues:StringEquals"]["events:source"]),
            [SOURCE]
        );
        // Denied to everyone else, whatever their identity policies allow.
        let denied: Vec<&&Value> = denies.iter().filter(covers).collect();
        assert_eq!(denied.len(), 1, "{command}: {denied:?}");
        let deny = denied[0];
        assert_eq!(deny["Principal"], "*", "{command}");
        assert_eq!(
            deny["Condition"]["ArnNotLike"]["aws:PrincipalArn"], publishers,
            "{command}"
        );
        assert_eq!(deny["Condition"].as_object().unwrap().len(), 2, "{command}: {deny}");
    }
    // Any other source or detail-type is denied to everyone.
    let other_source = denies
        .iter()
        .find(|s| strings(&s["Condition"]["ForAnyValue:StringNotEquals"]["events:source"]) == [SOURCE]);
    assert!(other_source.is_some_and(|s| s["Condition"].as_object().unwrap().len() == 1 && s["Principal"] == "*"));
    let other_types = denies
        .iter()
        .find(|s| !s["Condition"]["StringNotEquals"]["events:detail-type"].is_null());
    let mut types = strings(
        &other_types.expect("a deny of other detail-types")["Condition"]["StringNotEquals"]["events:detail-type"],
    );
    types.sort();
    let mut commands: Vec<String> = COMMANDS.iter().map(|c| c.to_string()).collect();
    commands.sort();
    assert_eq!(types, commands);
    assert_eq!(denies.len(), 4, "{denies:?}");
    // What engineers and CI are granted to publish is the command bus only.
    for policy in ["CliPolicy", "PublishImagesPolicy"] {
        let puts: Vec<Value> = template
            .policy_statements(policy)
            .into_iter()
            .filter(|s| strings(&s["Action"]).contains(&"events:PutEvents".to_string()))
            .collect();
        assert_eq!(puts.len(), 1, "{policy}");
        assert_eq!(
            as_list(&puts[0]["Resource"]),
            [json!({"Fn::GetAtt": ["CommandBus", "Arn"]})],
            "{policy}"
        );
    }
}

#[test]
fn the_state_machine_is_the_generated_definition_with_every_task_substituted() {
    let template = Template::load();
    let machines = template.resources_of("AWS::Serverless::StateMachine");
    assert_eq!(machines.len(), 1);
    let properties = &template.resource(&machines[0])["Properties"];
    assert_eq!(properties["DefinitionUri"], "statemachine.asl.json");
    let definition = std::fs::read_to_string(repo_root().join("infra/statemachine.asl.json")).unwrap();
    let variables: BTreeSet<String> = definition
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
        .collect();
    let substitutions = properties["DefinitionSubstitutions"].as_object().unwrap();
    assert_eq!(substitutions.keys().cloned().collect::<BTreeSet<_>>(), variables);
    for (variable, value) in substitutions {
        let function = variable.trim_end_matches("Arn");
        assert_eq!(value, &json!({"Fn::GetAtt": [function, "Arn"]}), "{variable}");
    }
}

/// Every statement of every function role (inline and attached managed policies).
fn role_statements(template: &Template) -> Vec<(String, Value)> {
    functions()
        .iter()
        .map(|f| template.role_of(f))
        .flat_map(|role| template.statements(&role).into_iter().map(move |s| (role.clone(), s)))
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    as_list(value)
        .iter()
        .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
        .collect()
}

/// Writes IAM grants only on `Resource: "*"` (they have no resource type): what Lambda's
/// active tracing sends with the function's role.
const WRITES_ONLY_ON_EVERY_RESOURCE: [&str; 2] = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"];

#[test]
fn no_role_allows_a_wildcard_action_or_a_write_on_every_resource() {
    let template = Template::load();
    let statements = role_statements(&template);
    assert!(statements.len() > 8);
    for (role, statement) in statements {
        let actions = strings(&statement["Action"]);
        assert!(!actions.is_empty(), "{role}: {statement}");
        assert!(statement["NotAction"].is_null(), "{role}: NotAction: {statement}");
        for action in &actions {
            assert!(!action.contains('*'), "{role} allows the wildcard action {action}");
        }
        if strings(&statement["Resource"]).iter().any(|r| r == "*") {
            for action in &actions {
                let verb = action.split(':').nth(1).unwrap_or_default();
                assert!(
                    ["Describe", "Get", "List"].iter().any(|read| verb.starts_with(read))
                        || WRITES_ONLY_ON_EVERY_RESOURCE.contains(&action.as_str()),
                    "{role} allows {action} on every resource"
                );
            }
        }
    }
}

#[test]
fn destructive_actions_need_the_managed_by_tag_and_pass_role_only_goes_to_ec2() {
    let template = Template::load();
    let mut seen = BTreeSet::new();
    for (role, statement) in role_statements(&template) {
        let actions = strings(&statement["Action"]);
        let condition = &statement["Condition"]["StringEquals"];
        for action in &actions {
            let needed = match action.as_str() {
                "ec2:TerminateInstances"
                | "elasticloadbalancing:DeregisterTargets"
                | "elasticloadbalancing:RegisterTargets"
                | "elasticloadbalancing:DeleteRule" => ("aws:ResourceTag/managed-by", "greenlight"),
                "elasticloadbalancing:CreateRule" => ("aws:RequestTag/managed-by", "greenlight"),
                "ec2:CreateTags" => ("ec2:CreateAction", "RunInstances"),
                "elasticloadbalancing:AddTags" => ("elasticloadbalancing:CreateAction", "CreateRule"),
                "iam:PassRole" => ("iam:PassedToService", "ec2.amazonaws.com"),
                _ => continue,
            };
            assert_eq!(condition[needed.0], needed.1, "{role}: {action} without {needed:?}");
            seen.insert(action.clone());
        }
    }
    assert_eq!(seen.len(), 8, "the checks above must have found each action: {seen:?}");
}

/// The functions EventBridge invokes (asynchronously), with the queue of each, and Lambda's
/// retries and event age: the event-driven ones retry twice within the hour; the scheduled
/// reconcile once within 10 minutes (the next run, 5 minutes later, looks again anyway).
const ASYNC_FUNCTIONS: [(&str, &str, u64, u64); 4] = [
    ("start-deployment", "StartDeploymentDeadLetterQueue", 2, 3600),
    ("revert-service", "RevertServiceDeadLetterQueue", 2, 3600),
    ("steer-deployment", "SteerDeploymentDeadLetterQueue", 2, 3600),
    ("reconcile-services", "ReconcileServicesDeadLetterQueue", 1, 600),
];

#[test]
fn asynchronous_functions_retry_a_bounded_number_of_times_then_record_the_failure_in_their_own_queue() {
    let template = Template::load();
    let configs = template.resources_of("AWS::Lambda::EventInvokeConfig");
    assert_eq!(configs.len(), ASYNC_FUNCTIONS.len(), "{configs:?}");
    for (function, queue, retries, age_s) in ASYNC_FUNCTIONS {
        let id = function_id(function);
        let config = configs
            .iter()
            .map(|c| &template.resource(c)["Properties"])
            .find(|p| p["FunctionName"] == json!({"Ref": id}))
            .unwrap_or_else(|| panic!("{function} has no EventInvokeConfig"));
        assert_eq!(config["Qualifier"], "$LATEST", "{function}");
        assert_eq!(config["MaximumRetryAttempts"], retries, "{function}");
        assert_eq!(config["MaximumEventAgeInSeconds"], age_s, "{function}");
        assert_eq!(
            config["DestinationConfig"]["OnFailure"]["Destination"],
            json!({"Fn::GetAtt": [queue, "Arn"]}),
            "{function}"
        );
        // Lambda sends the record with the function's role.
        let sends: Vec<Value> = template
            .statements(&template.role_of(function))
            .into_iter()
            .filter(|s| strings(&s["Action"]).iter().any(|a| a == "sqs:SendMessage"))
            .flat_map(|s| as_list(&s["Resource"]))
            .collect();
        assert_eq!(sends, vec![json!({"Fn::GetAtt": [queue, "Arn"]})], "{function}");
    }
}

#[test]
fn every_function_is_traced_and_every_linter_suppression_says_why() {
    let template = Template::load();
    assert_eq!(template.doc["Globals"]["Function"]["Tracing"], "Active");
    let resources = template.doc["Resources"].as_object().unwrap();
    let mut suppressed = 0;
    for (id, resource) in resources {
        let metadata = &resource["Metadata"];
        for skip in as_list(&metadata["checkov"]["skip"]) {
            let reason = skip["comment"].as_str().unwrap_or_default();
            assert!(reason.len() > 20, "{id}: checkov {} without a reason", skip["id"]);
            suppressed += 1;
        }
        let ignored = as_list(&metadata["cfn-lint"]["config"]["ignore_checks"]);
        if !ignored.is_empty() {
            let reason = metadata["cfn-lint"]["comment"].as_str().unwrap_or_default();
            assert!(reason.len() > 20, "{id}: cfn-lint {ignored:?} without a reason");
            suppressed += ignored.len();
        }
    }
    assert!(suppressed > 0);
}

/// I26's premise: the stale-write fence waits `max_invocation_s` (default Lambda's maximum,
/// 900 s) after an abort for every run that read the ledger before it to have ended, so no
/// function of the stack may be allowed to run that long.
#[test]
fn every_function_times_out_before_the_default_stale_write_fence() {
    let template = Template::load();
    let fence = greenlight_core::config::LAMBDA_MAX_RUNTIME_S;
    for function in functions() {
        let timeout = function_properties(&template, &function)["Timeout"]
            .as_u64()
            .unwrap_or_else(|| panic!("{function} sets no Timeout (Lambda's default is 3 s; say it)"));
        assert!(
            timeout < fence,
            "{function}'s Timeout {timeout} s must stay below max_invocation_s' default {fence} s (I26)"
        );
    }
}
