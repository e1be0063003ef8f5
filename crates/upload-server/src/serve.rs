//! Serving the app over TCP with the limits `axum::serve` does not set: a
//! client must send its request headers within [`ServeLimits::header_read`]
//! (slowloris), a request body may stall no longer than
//! [`ServeLimits::body_idle`], and graceful shutdown waits at most
//! [`ServeLimits::shutdown_grace`] for requests in flight.
//!
//! `axum::serve` takes no timeouts, so this is its accept loop written out
//! with hyper's HTTP/1 connection builder (the same one it uses inside):
//! HTTP/1.1 only, as `axum::serve` is with axum's default features.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutBody;

/// Time limits on every connection.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// From the first byte of a request (or the end of the previous one on a
    /// kept-alive connection) to the end of its headers; then the connection is closed.
    pub header_read: Duration,
    /// Longest pause while a request body is read; the read then fails and
    /// the request is refused (uploads to the embedded store stream bodies
    /// of any length, so this bounds the silence, not the total).
    pub body_idle: Duration,
    /// How long shutdown waits for requests in flight before it gives up on them.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read: Duration::from_secs(30),
            body_idle: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests
/// in flight finish for at most `limits.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let body_idle = limits.body_idle;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let request = request.map(|body| Body::new(TimeoutBody::new(body_idle, body)));
            app.clone().oneshot(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace = ?limits.shutdown_grace, "shutting down with requests still in flight");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn start(limits: ServeLimits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .route("/echo", axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, limits, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Reads until the server closes the connection; what it sent.
    async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    const SHORT: ServeLimits = ServeLimits {
        header_read: Duration::from_secs(1),
        body_idle: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(1),
    };

    /// A client that starts a request and never finishes its headers is cut
    /// off; one that does gets its answer.
    #[tokio::test]
    async fn a_slow_header_client_is_cut_off() {
        let (addr, _stop) = start(SHORT).await;
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1").await.unwrap();
        // Without a header timeout this read never ends; the test's own
        // limit only turns such a hang into a failure.
        let closed = tokio::time::timeout(Duration::from_secs(30), read_to_close(&mut slow)).await;
        assert!(closed.is_ok(), "the connection was still open after 30 s of silence");

        let mut fine = tokio::net::TcpStream::connect(addr).await.unwrap();
        fine.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let answer = read_to_close(&mut fine).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
    }

    /// A body that stops arriving fails the request instead of holding it open.
    #[tokio::test]
    async fn a_stalled_body_is_refused() {
        let (addr, _stop) = start(SHORT).await;
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b").await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(30), read_to_close(&mut slow))
            .await
            .expect("the request was still waiting for its body after 30 s");
        assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    }

    /// Shutdown does not wait for ever on a connection that never finishes.
    #[tokio::test]
    async fn shutdown_waits_a_bounded_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/hang", axum::routing::get(|| async { std::future::pending::<&str>().await }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, SHORT, async move {
            let _ = stopped.await;
        }));
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client.write_all(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.send(()).unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(30), server).await;
        assert!(ended.is_ok(), "shutdown still waiting after 30 s");
    }
}
