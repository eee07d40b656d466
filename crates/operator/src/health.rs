//! `/healthz` and `/readyz` for the kubelet's probes: a minimal HTTP/1.1 responder (one
//! request per connection, no body read), as upstream's controller-runtime ping checks.
//! `/healthz` answers 200 while the process runs; `/readyz` 200 once the gRPC listener
//! is bound, 503 before and after.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The largest request head read; probes send a few hundred bytes.
const MAX_HEAD: usize = 8192;

/// Answers probes on `listener` forever.
pub async fn serve(listener: TcpListener, ready: Arc<AtomicBool>) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer(conn, &ready)).await;
        });
    }
}

/// The status line and body for a request target.
pub fn route(target: &str, ready: bool) -> (u16, &'static str) {
    match target.split('?').next().unwrap_or_default() {
        "/healthz" => (200, "ok"),
        "/readyz" if ready => (200, "ok"),
        "/readyz" => (503, "the gRPC listener is not up"),
        _ => (404, "not found"),
    }
}

async fn answer(mut conn: TcpStream, ready: &AtomicBool) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let target = text.split_whitespace().nth(1).unwrap_or_default();
    let (code, body) = route(target, ready.load(Ordering::SeqCst));
    let reason = match code {
        200 => "OK",
        503 => "Service Unavailable",
        _ => "Not Found",
    };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(response.as_bytes()).await?;
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::route;

    #[test]
    fn probes_route() {
        assert_eq!(route("/healthz", false).0, 200);
        assert_eq!(route("/readyz", false).0, 503);
        assert_eq!(route("/readyz?verbose", true).0, 200);
        assert_eq!(route("/metrics", true).0, 404);
    }
}
