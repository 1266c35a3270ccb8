//! Metrics: `GET /rot/metrics` (JSON) and `GET /metrics` (Prometheus text) for the caller's
//! tenant, and the middleware that traces every request and counts answers per route and status.
//! Metric names are the constants below; `packaging/grafana/rustdb.json` uses them.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::Instrument;

use crate::backend::{HttpCount, TenantMetrics};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{caller, on_backend, Tenant};
use crate::AppState;

pub const OBJECTS: &str = "rustdb_objects";
pub const LOGICAL_BYTES: &str = "rustdb_logical_bytes";
pub const PHYSICAL_BYTES: &str = "rustdb_physical_bytes";
pub const BYTES_SAVED: &str = "rustdb_bytes_saved";
/// Counters get `_total` appended by the encoder.
pub const TRANSITIONS: &str = "rustdb_transitions";
pub const RESTORES: &str = "rustdb_restores";
pub const PURGES: &str = "rustdb_purges";
pub const DELETES: &str = "rustdb_deletes";
pub const TRANSFORM_FAILURES: &str = "rustdb_transform_failures";
pub const ACCESSES: &str = "rustdb_accesses";
pub const TICKS: &str = "rustdb_ticks";
pub const TICK_SECONDS: &str = "rustdb_tick_seconds";
pub const TICK_SECONDS_MAX: &str = "rustdb_tick_seconds_max";
pub const HTTP_REQUESTS: &str = "rustdb_http_requests";

/// Answers per (tenant, method, route, status) since the process started.
#[derive(Default)]
pub struct HttpCounters {
    counts: Mutex<BTreeMap<(String, String, String, u16), u64>>,
}

impl HttpCounters {
    fn record(&self, tenant: &str, method: &str, route: &str, status: u16) {
        let mut counts = self.counts.lock().expect("not poisoned");
        *counts
            .entry((
                tenant.to_owned(),
                method.to_owned(),
                route.to_owned(),
                status,
            ))
            .or_default() += 1;
    }

    /// The counts of one tenant.
    pub fn of(&self, tenant: &str) -> Vec<HttpCount> {
        let counts = self.counts.lock().expect("not poisoned");
        counts
            .iter()
            .filter(|((t, ..), _)| t == tenant)
            .map(|((_, method, route, status), count)| HttpCount {
                method: method.clone(),
                route: route.clone(),
                status: *status,
                count: *count,
            })
            .collect()
    }
}

/// One span per request (method, path, and the tenant once authenticated) and one event when it
/// completes: server errors at `warn`, client errors at `info`, the rest at `debug`. Answers to
/// authenticated requests are counted per route and status.
pub async fn observe_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        path = %request.uri().path(),
        tenant = tracing::field::Empty,
    );
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let (parts, body) = request.into_parts();
    let tenant = caller(&parts, &state).ok().map(|(tenant, _)| tenant);
    let request = Request::from_parts(parts, body);
    let started = Instant::now();
    async move {
        let response = next.run(request).await;
        let status = response.status();
        if let Some(tenant) = &tenant {
            state.http.record(tenant, &method, &route, status.as_u16());
        }
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), elapsed_ms, "request failed");
        } else if status.is_client_error() {
            tracing::info!(status = status.as_u16(), elapsed_ms, "request rejected");
        } else {
            tracing::debug!(status = status.as_u16(), elapsed_ms, "request served");
        }
        response
    }
    .instrument(span)
    .await
}

async fn tenant_metrics(state: &AppState, tenant: String) -> Result<TenantMetrics, ApiError> {
    let http = state.http.of(&tenant);
    let mut metrics = on_backend(state, move |b| b.metrics(&tenant)).await?;
    metrics.http_requests = http;
    Ok(metrics)
}

/// `GET /rot/metrics`
#[utoipa::path(get, path = "/rot/metrics", tag = "metrics",
    responses((status = 200, body = TenantMetrics), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn metrics_json(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<TenantMetrics>, ApiError> {
    tenant_metrics(&state, tenant).await.map(Json)
}

/// `GET /metrics`: the same figures as Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses(
        (status = 200, content_type = "text/plain; version=0.0.4", body = String,
            description = "Prometheus text exposition"),
        (status = 401, body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn metrics_prometheus(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Response, ApiError> {
    let metrics = tenant_metrics(&state, tenant).await?;
    let text = prometheus_text(&metrics)
        .map_err(|e| ApiError::Internal(format!("cannot encode metrics: {e}")))?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn gauge_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

fn seconds_family(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> Family<Labels, Gauge<f64, AtomicU64>> {
    let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    registry.register(name, help, family.clone());
    family
}

fn counter_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

/// Renders one tenant's figures in the Prometheus text format.
pub fn prometheus_text(m: &TenantMetrics) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    let t = || ("tenant", m.tenant.clone());
    let objects = gauge_family(&mut registry, OBJECTS, "Live objects by stage and kind");
    let logical = gauge_family(
        &mut registry,
        LOGICAL_BYTES,
        "Original bytes of live objects",
    );
    let physical = gauge_family(
        &mut registry,
        PHYSICAL_BYTES,
        "Bytes on disk of live objects",
    );
    for cell in &m.by_stage_kind {
        let l = labels(&[
            t(),
            ("stage", cell.stage.to_string()),
            ("kind", cell.kind.clone()),
        ]);
        objects.get_or_create(&l).set(cell.objects as i64);
        logical.get_or_create(&l).set(cell.logical_bytes as i64);
        physical.get_or_create(&l).set(cell.physical_bytes as i64);
    }
    gauge_family(&mut registry, BYTES_SAVED, "Logical minus physical bytes")
        .get_or_create(&labels(&[t()]))
        .set(m.bytes_saved);
    let transitions = counter_family(
        &mut registry,
        TRANSITIONS,
        "History events by type, kind and stages",
    );
    for c in &m.transitions {
        let l = labels(&[
            t(),
            ("event", c.event.clone()),
            ("kind", c.kind.clone()),
            ("from_stage", c.from_stage.to_string()),
            ("to_stage", c.to_stage.to_string()),
        ]);
        transitions.get_or_create(&l).inc_by(c.count);
    }
    for (name, help, value) in [
        (RESTORES, "Restores to the original", m.restores),
        (PURGES, "Objects purged by decay", m.purges),
        (DELETES, "Objects deleted by users", m.deletes),
        (
            TRANSFORM_FAILURES,
            "Transforms that failed",
            m.transform_failures,
        ),
        (
            TICKS,
            "Ticks that examined this tenant since start",
            m.ticks.count,
        ),
    ] {
        counter_family(&mut registry, name, help)
            .get_or_create(&labels(&[t()]))
            .inc_by(value);
    }
    let accesses = counter_family(
        &mut registry,
        ACCESSES,
        "Opens since start; counted=false for ignored processes",
    );
    accesses
        .get_or_create(&labels(&[t(), ("counted", "true".into())]))
        .inc_by(m.accesses_counted);
    accesses
        .get_or_create(&labels(&[t(), ("counted", "false".into())]))
        .inc_by(m.accesses_ignored);
    seconds_family(
        &mut registry,
        TICK_SECONDS,
        "Seconds spent in ticks since start",
    )
    .get_or_create(&labels(&[t()]))
    .set(m.ticks.seconds_total);
    seconds_family(
        &mut registry,
        TICK_SECONDS_MAX,
        "Longest tick since start, seconds",
    )
    .get_or_create(&labels(&[t()]))
    .set(m.ticks.seconds_max);
    let http = counter_family(
        &mut registry,
        HTTP_REQUESTS,
        "API answers since start by route and status",
    );
    for h in &m.http_requests {
        let l = labels(&[
            t(),
            ("method", h.method.clone()),
            ("route", h.route.clone()),
            ("status", h.status.to_string()),
        ]);
        http.get_or_create(&l).inc_by(h.count);
    }
    let mut out = String::new();
    encode(&mut out, &registry)?;
    Ok(out)
}
