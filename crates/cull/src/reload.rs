//! `POST /api/rules/reload`: an operator asks the running pipeline to reload its rules
//! (see `cull_runtime::reload` for what a reload does).

use std::sync::Arc;

use cull_runtime::reload::Reloader;

/// Returns `POST /api/rules/reload` for operators: `200` with the new version, or
/// `422` with every error of the refused packs (which keep their running rules). A
/// client's operator reloads that client's pack only, and hears only of it.
pub fn router(reloader: Arc<Reloader>, tokens: Arc<crate::auth::Tokens>) -> axum::Router {
    let guard = crate::auth::Guard::new(tokens, crate::auth::Role::Operator);
    axum::Router::new()
        .route(
            "/api/rules/reload",
            axum::routing::post(
                |axum::extract::State(reloader): axum::extract::State<Arc<Reloader>>,
                 axum::extract::Extension(caller): axum::extract::Extension<crate::auth::Caller>| async move {
                    let cause = format!("the API ({})", caller.name);
                    match reloader.reload(&cause, &caller.scope).await {
                        Ok(reloaded) => crate::api::json(axum::http::StatusCode::OK, &reloaded),
                        Err(failed) => crate::api::json(
                            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                            &serde_json::json!({
                                "error": "rule packs have errors; they keep their running rules",
                                "errors": failed.errors,
                                "refused": failed.refused,
                                "reloaded": failed.reloaded,
                            }),
                        ),
                    }
                },
            ),
        )
        .route_layer(axum::middleware::from_fn_with_state(guard, crate::auth::require))
        .with_state(reloader)
}
