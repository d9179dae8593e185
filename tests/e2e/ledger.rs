//! The ledger's conditional writes against DynamoDB: a write based on a stale read is refused
//! and changes nothing; history is queryable per service.

use greenlight_adapters::AdapterError;
use greenlight_core::model::PhaseName;
use greenlight_e2e::{impatient, quick, App, Env};
use greenlight_local::orchestrator::Ending;

#[tokio::test]
async fn a_write_based_on_a_stale_read_is_refused_and_changes_nothing() {
    let env = Env::new("stale", quick).await;
    let ledger = &env.local.ports.ledger;
    let read = env.ledger(None).await;

    let mut first = read.clone();
    first.service.active = Some("d-00000000000000000001".into());
    let committed = ledger.commit(&read, &first).await.expect("the first writer wins");
    assert_eq!(committed.service.gen, read.service.gen + 1);

    // A second writer that read the same generation loses, whatever it wanted to write.
    let mut second = read.clone();
    second.service.live = None;
    let err = ledger
        .commit(&read, &second)
        .await
        .expect_err("a stale write must be refused");
    assert!(matches!(err, AdapterError::Conflict(_)), "{err}");
    assert_eq!(
        env.ledger(None).await.service,
        committed.service,
        "the refused write changed nothing"
    );
}

#[tokio::test]
async fn history_lists_every_deployment_of_the_service_oldest_first() {
    let env = Env::new("history", impatient).await;
    let v2 = env.image("v2", App::Unhealthy).await;
    let (aborted, ending) = env.deploy("v2", &v2).await;
    assert_eq!(ending, Ending::Done(PhaseName::Aborted));
    let v3 = env.image("v3", App::Healthy).await;
    let (succeeded, ending) = env.deploy("v3", &v3).await;
    assert_eq!(ending, Ending::Done(PhaseName::Succeeded));

    let history = env.local.ports.ledger.history(&env.service).await.unwrap();
    let rows: Vec<(&str, &str, &str)> = history
        .iter()
        .map(|d| (d.deploy_id.as_str(), d.version.as_str(), d.phase.name()))
        .collect();
    assert_eq!(
        rows,
        [
            (aborted.as_str(), "v2", "aborted"),
            (succeeded.as_str(), "v3", "succeeded")
        ]
    );
    assert!(history
        .iter()
        .all(|d| d.service == env.service && d.requested_by == "e2e"));
    assert_eq!(env.ledger(None).await.service.live.unwrap().version, "v3");
}

#[tokio::test]
async fn a_registration_written_without_a_bake_window_gets_the_installation_default() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use greenlight_adapters::aws::DynamoLedger;
    use greenlight_adapters::Ledger;

    let env = Env::new("bake-default", quick).await;
    let dynamodb = &env.local.clients.dynamodb;
    let table = &env.local.names.table;
    // An operator wrote the registration by hand and left the bake window out.
    let item = env
        .ledger_item(&format!("SVC#{}", env.service), "CONFIG")
        .await
        .expect("the registration item");
    let mut body: serde_json::Value = serde_json::from_str(item["body"].as_s().unwrap()).unwrap();
    body.as_object_mut().unwrap().remove("bake_window_s");
    let mut edited = item.clone();
    edited.insert("body".into(), AttributeValue::S(body.to_string()));
    dynamodb
        .put_item()
        .table_name(table)
        .set_item(Some(edited))
        .send()
        .await
        .unwrap();

    let ledger = |default_bake_window_s| DynamoLedger {
        client: dynamodb.clone(),
        table: table.clone(),
        default_bake_window_s,
    };
    for default in [1800, 7200] {
        let state = ledger(default).load(&env.service, None).await.unwrap().unwrap();
        assert_eq!(state.config.bake_window_s, default);
    }
}

/// steer-deployment and revert-service learn the deployment in flight from the pointers:
/// `load_active` gives the same state as the two loads it replaces, reading the
/// registration and the pointers once (3 items, not 5), in the same 2 calls.
#[tokio::test]
async fn load_active_reads_the_deployment_in_flight_without_reading_the_pointers_twice() {
    use greenlight_adapters::aws::DynamoLedger;
    use greenlight_adapters::Ledger;
    use greenlight_core::model::Phase;
    use greenlight_e2e::{endpoint, started, unique};
    use greenlight_local::fixture::Spec;

    let env = Env::new("load-active", |s| Spec {
        bake_window_s: 120,
        ..quick(s)
    })
    .await;
    let access_key = unique("AKIDLOADACTIVE");
    let ledger = DynamoLedger {
        client: aws_sdk_dynamodb::Client::new(&greenlight_local::sdk_config_as(endpoint(), &access_key).await),
        table: env.local.names.table.clone(),
        default_bake_window_s: 1800,
    };
    let idle = ledger.load_active(&env.service).await.unwrap().expect("registered");
    assert_eq!(idle.deployment, None, "no deployment in flight yet");
    assert_eq!(idle, env.ledger(None).await);

    let ami = env.image("v2", App::Healthy).await;
    env.publish("v2", &ami).await;
    let id = started(&env.deliver(1).await[0]);
    env.wait_for_phase(&id, |p| matches!(p, Phase::Baking { .. })).await;
    greenlight_local::usage::reset(endpoint(), Some(&access_key))
        .await
        .unwrap();
    let in_flight = ledger.load_active(&env.service).await.unwrap().expect("registered");
    assert_eq!(in_flight.service.active.as_deref(), Some(id.as_str()));
    assert_eq!(in_flight, env.ledger(Some(&id)).await, "the same as the two loads");

    let usage = greenlight_local::usage::usage(endpoint(), Some(&access_key))
        .await
        .unwrap();
    let reads = &usage[&access_key];
    assert_eq!(reads.calls.get("dynamodb:BatchGetItem"), Some(&2), "{reads:?}");
    assert_eq!(reads.total_calls(), 2, "{reads:?}");
    assert_eq!(
        reads.dynamodb.read_units, 3.0,
        "3 items of at most 4 KB, read once each: {reads:?}"
    );
}
