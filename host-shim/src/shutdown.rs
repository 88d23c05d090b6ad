//! One place that turns SIGINT/SIGTERM into a cancellation every server task can watch. Tests
//! and process supervisors stop the shim with SIGTERM; in-flight requests (including ones that
//! deliberately stall) must end promptly instead of holding the process open.

use tokio_util::sync::CancellationToken;

/// Returns a token that is cancelled on the first SIGINT or SIGTERM.
pub fn on_signal() -> anyhow::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
        cancel.cancel();
    });
    Ok(token)
}
