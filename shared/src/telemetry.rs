//! Structured logging for every function.
//!
//! Lambda's JSON log format is what an operator queries in CloudWatch Logs Insights, so every
//! function logs JSON lines through `tracing`, one event per decision with fields, not prose.

/// Installs the process-wide JSON subscriber. `RUST_LOG` (or the function's `AWS_LAMBDA_LOG_LEVEL`)
/// sets the level; the default is `info`. Safe to call more than once: later calls do nothing.
/// Metric lines ([`crate::metrics`]) go to stdout from then on too.
pub fn init() {
    crate::metrics::write_to_stdout();
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok())
        .map(|level| EnvFilter::new(level.to_lowercase()))
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .try_init();
}
