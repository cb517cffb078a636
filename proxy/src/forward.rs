//! Transparent TCP forwarding of redirected connections: outbound to the
//! destination the app connected to, inbound to the app on localhost.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::metrics::{Direction, DirectionLabels, Metrics};
use crate::original_dst::original_dst;

/// How long connecting to a destination may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts on `listener` until `stop` turns true; each connection is
/// forwarded on its own task.
pub async fn serve(
    listener: TcpListener,
    direction: Direction,
    metrics: Arc<Metrics>,
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
            _ = stopped(&mut stop) => break,
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let labels = DirectionLabels::from(direction);
            metrics.tcp_opened.get_or_create(&labels).inc();
            metrics.tcp_active.inc();
            if let Err(error) = forward(stream, direction, own, &metrics).await {
                tracing::debug!(%error, %peer, direction = direction.as_str(), "connection failed");
            }
            metrics.tcp_active.dec();
            metrics.tcp_closed.get_or_create(&labels).inc();
        });
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Where a redirected connection goes.
pub fn target(
    direction: Direction,
    original: SocketAddr,
    own: Option<SocketAddr>,
) -> Option<SocketAddr> {
    match direction {
        // A connection made to the proxy's own port would loop.
        Direction::Outbound => (Some(original.port()) != own.map(|o| o.port())
            || !original.ip().is_loopback() && !original.ip().is_unspecified())
        .then_some(original),
        Direction::Inbound => (Some(original.port()) != own.map(|o| o.port()))
            .then(|| SocketAddr::from((Ipv4Addr::LOCALHOST, original.port()))),
    }
}

async fn forward(
    mut client: TcpStream,
    direction: Direction,
    own: Option<SocketAddr>,
    metrics: &Metrics,
) -> std::io::Result<()> {
    let labels = DirectionLabels::from(direction);
    let original = original_dst(&client)?;
    let Some(target) = target(direction, original, own) else {
        return Err(std::io::Error::other(format!(
            "{original} is the proxy itself"
        )));
    };
    client.set_nodelay(true)?;
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await;
    let mut server = match connected {
        Ok(Ok(server)) => server,
        Ok(Err(error)) => {
            metrics.tcp_connect_errors.get_or_create(&labels).inc();
            return Err(error);
        }
        Err(_) => {
            metrics.tcp_connect_errors.get_or_create(&labels).inc();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connecting to {target}"),
            ));
        }
    };
    server.set_nodelay(true)?;
    let result = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    if let Ok((sent, received)) = result {
        metrics.tcp_sent_bytes.get_or_create(&labels).inc_by(sent);
        metrics
            .tcp_received_bytes
            .get_or_create(&labels)
            .inc_by(received);
    }
    result.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let own = Some(SocketAddr::from(([0, 0, 0, 0], 4140)));
        let to = |s: &str| s.parse::<SocketAddr>().expect("address");
        assert_eq!(
            target(Direction::Outbound, to("198.19.0.10:80"), own),
            Some(to("198.19.0.10:80"))
        );
        assert_eq!(target(Direction::Outbound, to("127.0.0.1:4140"), own), None);
        let inbound = Some(SocketAddr::from(([0, 0, 0, 0], 4143)));
        assert_eq!(
            target(Direction::Inbound, to("198.18.0.7:8080"), inbound),
            Some(to("127.0.0.1:8080"))
        );
        assert_eq!(
            target(Direction::Inbound, to("198.18.0.7:4143"), inbound),
            None
        );
    }
}
