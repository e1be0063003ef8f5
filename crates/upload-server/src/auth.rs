//! Who is asking. One small trait, so library users can plug in their own
//! sessions; bearer JWTs (HS256) and a development identity ship here.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use upload_core::key::MAX_OWNER_LEN;

use crate::AppState;
use crate::error::ApiError;

/// The owner of everything a request creates or reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner(pub String);

/// Turns request headers into an [`Owner`], or refuses with `unauthorized`.
pub trait Authenticate: Send + Sync + 'static {
    /// Identifies the caller.
    fn authenticate(&self, headers: &HeaderMap) -> Result<Owner, ApiError>;
}

/// Everyone is `anonymous`. Only for development: the server warns at start-up.
#[derive(Debug, Clone, Copy, Default)]
pub struct DevelopmentIdentity;

/// The owner every request gets in development mode.
pub const DEVELOPMENT_OWNER: &str = "anonymous";

impl Authenticate for DevelopmentIdentity {
    fn authenticate(&self, _headers: &HeaderMap) -> Result<Owner, ApiError> {
        Ok(Owner(DEVELOPMENT_OWNER.to_owned()))
    }
}

/// `Authorization: Bearer <JWT>`, HS256, with `sub` (the owner) and `exp`
/// required, `nbf` honoured when present, and `aud` checked when an audience
/// is configured ([`JwtIdentity::with_audience`]); without one, a token's
/// `aud` is not looked at.
pub struct JwtIdentity {
    key: DecodingKey,
    validation: Validation,
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

impl JwtIdentity {
    /// Verifies tokens signed with this secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        // jsonwebtoken ignores `nbf` unless told, and refuses every token
        // that has an `aud` unless an audience is set.
        validation.validate_nbf = true;
        validation.validate_aud = false;
        JwtIdentity { key: DecodingKey::from_secret(secret), validation }
    }

    /// Accepts only tokens whose `aud` names `audience` (a token without `aud` is refused).
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        self.validation.validate_aud = true;
        self
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::unauthorized(message)
}

impl Authenticate for JwtIdentity {
    fn authenticate(&self, headers: &HeaderMap) -> Result<Owner, ApiError> {
        let mut all = headers.get_all(axum::http::header::AUTHORIZATION).iter();
        let header = all.next().ok_or_else(|| unauthorized("missing Authorization: Bearer <token> header"))?;
        // Two are ambiguous: a proxy in front may have checked the other one.
        if all.next().is_some() {
            return Err(unauthorized("more than one Authorization header"));
        }
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => unauthorized("the token has expired"),
            ErrorKind::ImmatureSignature => unauthorized("the token is not valid yet (`nbf`)"),
            ErrorKind::InvalidAudience => unauthorized("the token's `aud` is not this server's audience"),
            ErrorKind::InvalidSignature => unauthorized("the token's signature is not valid"),
            ErrorKind::MissingRequiredClaim(claim) => unauthorized(&format!("the token has no `{claim}` claim")),
            _ => unauthorized("the token is malformed"),
        })?;
        let sub = data.claims.sub;
        if sub.is_empty() || sub.len() > MAX_OWNER_LEN {
            return Err(unauthorized(&format!("the token's `sub` must be 1 to {MAX_OWNER_LEN} bytes")));
        }
        Ok(Owner(sub))
    }
}

impl FromRequestParts<AppState> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // Whatever identity the app plugged in, a token for one upload
        // never acts as its owner anywhere else.
        if crate::upload_token::scoped_bearer(&parts.headers).is_some() {
            return Err(unauthorized(
                "an upload-scoped token is accepted only on its upload's routes (status, parts, complete, abort)",
            ));
        }
        let owner = state.auth().authenticate(&parts.headers)?;
        state.check_rate(&owner).await?;
        Ok(owner)
    }
}

#[cfg(test)]
mod tests {
    use upload_core::ErrorCode;

    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    fn token(secret: &str, claims: serde_json::Value) -> HeaderMap {
        let jwt =
            jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("authorization", format!("Bearer {jwt}").parse().unwrap());
        headers
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn jwt_cases() {
        let auth = JwtIdentity::new(b"s3cret");
        let ok = auth.authenticate(&token("s3cret", serde_json::json!({"sub": "alice", "exp": now() + 60}))).unwrap();
        assert_eq!(ok, Owner("alice".into()));
        let refused = [
            token("s3cret", serde_json::json!({"sub": "alice", "exp": now() - 600})),
            token("other", serde_json::json!({"sub": "alice", "exp": now() + 60})),
            token("s3cret", serde_json::json!({"sub": "alice"})),
            token("s3cret", serde_json::json!({"exp": now() + 60})),
            token("s3cret", serde_json::json!({"sub": "", "exp": now() + 60})),
            HeaderMap::new(),
        ];
        for headers in refused {
            assert_eq!(auth.authenticate(&headers).unwrap_err().code(), ErrorCode::Unauthorized);
        }
    }

    /// `nbf` is honoured (jsonwebtoken ignores it by default); a token with
    /// an `aud` is accepted when no audience is configured (jsonwebtoken
    /// refuses it by default), and checked when one is.
    #[test]
    fn nbf_and_aud() {
        let auth = JwtIdentity::new(b"s3cret");
        let later = token("s3cret", serde_json::json!({"sub": "alice", "exp": now() + 600, "nbf": now() + 300}));
        let message = auth.authenticate(&later).unwrap_err().message().to_owned();
        assert!(message.contains("nbf"), "{message}");
        let started = token("s3cret", serde_json::json!({"sub": "alice", "exp": now() + 600, "nbf": now() - 1}));
        assert_eq!(auth.authenticate(&started).unwrap(), Owner("alice".into()));
        let with_aud = token("s3cret", serde_json::json!({"sub": "alice", "exp": now() + 60, "aud": "uploads"}));
        assert_eq!(auth.authenticate(&with_aud).unwrap(), Owner("alice".into()));

        let strict = JwtIdentity::new(b"s3cret").with_audience("uploads");
        assert_eq!(strict.authenticate(&with_aud).unwrap(), Owner("alice".into()));
        let listed = token("s3cret", serde_json::json!({"sub": "bob", "exp": now() + 60, "aud": ["x", "uploads"]}));
        assert_eq!(strict.authenticate(&listed).unwrap(), Owner("bob".into()));
        let refused = [
            token("s3cret", serde_json::json!({"sub": "alice", "exp": now() + 60, "aud": "billing"})),
            token("s3cret", serde_json::json!({"sub": "alice", "exp": now() + 60})),
        ];
        for headers in refused {
            assert_eq!(strict.authenticate(&headers).unwrap_err().code(), ErrorCode::Unauthorized);
        }
    }
}
