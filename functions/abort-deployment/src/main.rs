//! The `abort-deployment` Lambda function: wiring only; the handler is in greenlight-steps.

use greenlight_core::plan::Step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    greenlight_steps::lambda::run(Step::AbortDeployment).await
}
