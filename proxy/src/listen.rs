//! The accept loops of the inbound and outbound ports: a task per
//! connection, counted while it is open.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::ctx::Ctx;
use crate::server::stopped;
use crate::telemetry::Direction;
use crate::telemetry::metrics::DirectionLabels;
use crate::{inbound, outbound};

/// Accepts on `listener` until `stop` turns true; each connection is
/// handled on its own task.
pub async fn serve(
    listener: TcpListener,
    direction: Direction,
    ctx: Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
) {
    let own = listener.local_addr().ok();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, direction = direction.as_str(), "accepting");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let ctx = ctx.clone();
        let stop = stop.clone();
        let span = tracing::debug_span!("connection", direction = direction.as_str(), %peer);
        let task = async move {
            let metrics = ctx.metrics();
            let labels = DirectionLabels::from(direction);
            metrics.tcp_opened.get_or_create(&labels).inc();
            metrics.tcp_active.inc();
            let result = match direction {
                Direction::Outbound => outbound::connection(&ctx, stream, own, stop).await,
                Direction::Inbound => inbound::connection(&ctx, stream, own, stop).await,
            };
            if let Err(error) = result {
                tracing::debug!(%error, %peer, direction = direction.as_str(), "connection failed");
            }
            metrics.tcp_active.dec();
            metrics.tcp_closed.get_or_create(&labels).inc();
        };
        tokio::spawn(task.instrument(span));
    }
}
