//! The HTTP port: `/healthz` (process alive), `/readyz` (recovered and serving), `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::context::BrokerContext;

/// What the HTTP handlers can see. `ctx` is set once recovery finished.
#[derive(Debug, Default)]
pub struct HttpState {
    pub ready: AtomicBool,
    pub ctx: OnceLock<Arc<BrokerContext>>,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(st): State<Arc<HttpState>>) -> impl IntoResponse {
    if st.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "recovering\n")
    }
}

async fn metrics(State(st): State<Arc<HttpState>>) -> impl IntoResponse {
    let Some(ctx) = st.ctx.get().cloned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain")],
            String::from("recovering\n"),
        );
    };
    // Walking every partition may touch the file system: keep it off the async workers.
    let body = tokio::task::spawn_blocking(move || {
        let topic_name = |id| crate::handlers::catalog::topic_by_id(&ctx, id).map(|meta| meta.name);
        ctx.metrics
            .render(&ctx.logs, &ctx.groups, &ctx.shares, &topic_name)
    })
    .await
    .unwrap_or_default();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// The router, separate from the listener so tests can drive it directly.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, shutdown: CancellationToken) {
    let result = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server failed");
    }
}
