//! The Step Functions definition in `infra/` is the one generated from the Rust plan.

use greenlight_core::plan::state_machine_definition;
use serde_json::Value;

#[test]
fn committed_state_machine_matches_the_plan() {
    let path = greenlight_local::emulator::repo_root().join("infra/statemachine.asl.json");
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        committed,
        state_machine_definition(),
        "infra/statemachine.asl.json is stale: run `make asl`"
    );
}
