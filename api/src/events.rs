//! `GET /events`: lifecycle events as server-sent events, from the catalog's history. Each event's
//! SSE id is its history sequence number, so a client that reconnects with `Last-Event-ID` (or
//! `?after=`) gets exactly the events after the last one it saw, even across restarts.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};

use crate::backend::{EventQuery, EventRecord};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{
    on_backend, parse_flag, parse_kind, parse_path_prefix, parse_stage, query_pairs,
    reject_repeats, Tenant,
};
use crate::AppState;

/// Events fetched from the backend per round.
const BATCH: usize = 256;

/// Parsed query of `GET /events`.
#[derive(Debug, Clone, Default)]
struct EventParams {
    query: EventQuery,
    after: u64,
    /// Keep the stream open and send new events as they happen (default), or end after the
    /// backlog.
    follow: bool,
}

fn parse_params(uri: &Uri, headers: &HeaderMap) -> Result<EventParams, ApiError> {
    let mut params = EventParams {
        follow: true,
        ..EventParams::default()
    };
    let pairs = query_pairs(uri)?;
    reject_repeats(&pairs)?;
    for (name, value) in pairs {
        if value.is_empty() {
            continue;
        }
        match name.as_str() {
            "kind" => params.query.kind = Some(parse_kind(&value)?),
            "stage" => params.query.stage = Some(parse_stage(&value)?),
            "path" => params.query.path = Some(parse_path_prefix(&value)?),
            "after" => params.after = parse_event_id("after", &value)?,
            "follow" => params.follow = parse_flag("follow", &value)?,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {name:?}; expected kind, stage, path, after, follow"
                )))
            }
        }
    }
    if let Some(last) = headers.get("last-event-id") {
        let last = last
            .to_str()
            .map_err(|_| ApiError::BadRequest("Last-Event-ID must be an event id".into()))?;
        params.after = params
            .after
            .max(parse_event_id("Last-Event-ID", last.trim())?);
    }
    Ok(params)
}

fn parse_event_id(name: &str, value: &str) -> Result<u64, ApiError> {
    value.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "{name} must be an event id (a non-negative integer), got {value:?}"
        ))
    })
}

/// `GET /events?kind=&stage=&path=&after=&follow=`
#[utoipa::path(get, path = "/events", tag = "events",
    params(
        ("kind" = Option<String>, Query, description = "Only objects of this kind"),
        ("stage" = Option<u8>, Query, description = "Only events whose stage before or after is this"),
        ("path" = Option<String>, Query, description = "Only objects at or below this path"),
        ("after" = Option<u64>, Query, description = "Only events after this id"),
        ("follow" = Option<bool>, Query,
            description = "Keep streaming new events (default true); false ends after the backlog"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = EventRecord,
            description = "Server-sent events: `id` is the event id, `event` its type, `data` an \
                EventRecord as JSON"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn events(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = parse_params(&uri, &headers)?;
    let follow = params.follow;
    let stream = event_stream(state, tenant, params);
    let sse = Sse::new(stream);
    Ok(if follow {
        sse.keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response()
    } else {
        sse.into_response()
    })
}

struct Cursor {
    state: AppState,
    tenant: String,
    params: EventParams,
    pending: std::collections::VecDeque<EventRecord>,
    changes: tokio::sync::watch::Receiver<u64>,
    done: bool,
}

fn event_stream(
    state: AppState,
    tenant: String,
    params: EventParams,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let changes = state.backend.subscribe_events();
    let cursor = Cursor {
        state,
        tenant,
        params,
        pending: Default::default(),
        changes,
        done: false,
    };
    stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(record) = c.pending.pop_front() {
                return Some((Ok(sse_event(&record)), c));
            }
            if c.done {
                return None;
            }
            // Mark the current change as seen before reading, so a commit after the read wakes
            // the wait below.
            c.changes.borrow_and_update();
            let (tenant, after, query) = (c.tenant.clone(), c.params.after, c.params.query.clone());
            let batch =
                on_backend(&c.state, move |b| b.events(&tenant, after, &query, BATCH)).await;
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "event stream ended: the backend failed");
                    return None;
                }
            };
            let more = batch.last_seen > c.params.after && batch.events.len() >= BATCH;
            c.params.after = c.params.after.max(batch.last_seen);
            c.pending.extend(batch.events);
            if more || !c.pending.is_empty() {
                continue;
            }
            if !c.params.follow {
                c.done = true;
                continue;
            }
            if c.changes.changed().await.is_err() {
                return None;
            }
        }
    })
}

fn sse_event(record: &EventRecord) -> Event {
    Event::default()
        .id(record.id.to_string())
        .event(record.event.clone())
        .json_data(record)
        .unwrap_or_else(|_| Event::default().comment("unserializable event"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_id_and_after_take_the_later() {
        let uri: Uri = "/events?after=5&kind=text&stage=2&path=/docs"
            .parse()
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", "9".parse().unwrap());
        let p = parse_params(&uri, &headers).unwrap();
        assert_eq!(p.after, 9);
        assert_eq!(p.query.kind.as_deref(), Some("text"));
        assert_eq!(p.query.stage, Some(2));
        assert!(p.follow);
        for bad in [
            "/events?kind=x",
            "/events?stage=7",
            "/events?path=x",
            "/events?x=1",
        ] {
            let uri: Uri = bad.parse().unwrap();
            assert!(parse_params(&uri, &HeaderMap::new()).is_err(), "{bad}");
        }
    }
}
