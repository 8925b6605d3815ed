//! The `{id}` of a page's or a form's path, read so that who asks is answered first.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

/// A path's `{id}` as text, or empty (which names nothing: no employee ID, rule or file
/// is empty) when it is not UTF-8 once percent-decoded. Axum's `Path<String>` had answered
/// such a path 400 before sign-in was looked at, to callers not signed in and to viewers
/// posting a change (who then went unlogged); the handler now answers who asks first, then
/// that nothing is found.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let id = Path::<String>::from_request_parts(parts, state).await;
        Ok(PathId(id.map(|Path(id)| id).unwrap_or_default()))
    }
}
