//! `/rot/...`: ticks, state and history, restore, controls and policies.

use axum::extract::State;
use axum::http::Uri;
use axum::Json;

use crate::backend::{
    Control, ObjectState, PolicyChange, PolicyDocument, PolicyPatch, TickReport, TickRequest,
};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{on_backend, query_flags, Admin, JsonBody, ObjectId, Tenant};
use crate::AppState;

/// `POST /rot/run` with a [`TickRequest`] body (empty means defaults).
#[utoipa::path(post, path = "/rot/run", tag = "rot",
    request_body(content = Option<TickRequest>, description = "Empty means a wall-clock tick"),
    responses(
        (status = 200, body = TickReport),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "A reader key"),
        (status = 422, body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn run_tick(
    State(state): State<AppState>,
    Admin(tenant): Admin,
    JsonBody(request): JsonBody<TickRequest>,
) -> Result<Json<TickReport>, ApiError> {
    request.validate().map_err(ApiError::Invalid)?;
    on_backend(&state, move |b| b.run_tick(&tenant, &request))
        .await
        .map(Json)
}

/// `GET /rot/state/{id}`: state and the whole history, tombstones included.
#[utoipa::path(get, path = "/rot/state/{id}", tag = "rot",
    params(("id" = u64, Path, description = "Object id")),
    responses(
        (status = 200, body = ObjectState),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn object_state(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ObjectId(id): ObjectId,
) -> Result<Json<ObjectState>, ApiError> {
    on_backend(&state, move |b| b.object_state(&tenant, id))
        .await
        .map(Json)
}

/// `POST /rot/restore/{id}`
#[utoipa::path(post, path = "/rot/restore/{id}", tag = "rot",
    params(("id" = u64, Path, description = "Object id")),
    responses(
        (status = 200, body = ObjectState, description = "Back at stage 0, hash verified"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "A reader key"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "No exact original is left; says what is"),
    ),
    security(("api_key" = [])))]
pub async fn restore(
    State(state): State<AppState>,
    Admin(tenant): Admin,
    ObjectId(id): ObjectId,
) -> Result<Json<ObjectState>, ApiError> {
    on_backend(&state, move |b| b.restore(&tenant, id))
        .await
        .map(Json)
}

/// `POST /rot/control/{id}` with a [`Control`] body; validated here before the backend sees it.
#[utoipa::path(post, path = "/rot/control/{id}", tag = "rot",
    params(("id" = u64, Path, description = "Object id")),
    request_body = Control,
    responses(
        (status = 200, body = ObjectState),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "A reader key"),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "No control given, or speed out of range"),
    ),
    security(("api_key" = [])))]
pub async fn control(
    State(state): State<AppState>,
    Admin(tenant): Admin,
    ObjectId(id): ObjectId,
    JsonBody(control): JsonBody<Control>,
) -> Result<Json<ObjectState>, ApiError> {
    control.validate().map_err(ApiError::Invalid)?;
    on_backend(&state, move |b| b.control(&tenant, id, &control))
        .await
        .map(Json)
}

/// `GET /rot/policies`: the current version and every earlier one.
#[utoipa::path(get, path = "/rot/policies", tag = "rot",
    responses((status = 200, body = PolicyDocument), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_policies(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<PolicyDocument>, ApiError> {
    on_backend(&state, move |b| b.policies(&tenant))
        .await
        .map(Json)
}

/// `PUT /rot/policies[?dry_run=true]` with a [`PolicyPatch`]: a new version, or what it would
/// change.
#[utoipa::path(put, path = "/rot/policies", tag = "rot",
    params(("dry_run" = Option<bool>, Query,
        description = "Store nothing; report what a tick under the new version would change now")),
    request_body = PolicyPatch,
    responses(
        (status = 200, body = PolicyChange),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "A reader key"),
        (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "A bad value; `field` names it"),
    ),
    security(("api_key" = [])))]
pub async fn put_policies(
    State(state): State<AppState>,
    Admin(tenant): Admin,
    uri: Uri,
    JsonBody(patch): JsonBody<PolicyPatch>,
) -> Result<Json<PolicyChange>, ApiError> {
    let dry_run = query_flags(&uri, &["dry_run"])?.contains(&"dry_run");
    if patch.is_empty() {
        return Err(ApiError::InvalidField {
            field: String::new(),
            reason: "no kind given: set at least one of image, text, spreadsheet, document, \
                     binary"
                .into(),
        });
    }
    on_backend(&state, move |b| b.set_policies(&tenant, &patch, dry_run))
        .await
        .map(Json)
}
