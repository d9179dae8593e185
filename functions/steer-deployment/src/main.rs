//! The `steer-deployment` Lambda function: wiring only; the handler is in greenlight-steps.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    greenlight_steps::lambda::run_steer_deployment().await
}
