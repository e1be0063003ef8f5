//! Upload-scoped tokens: what the browser holds instead of its user's token.
//!
//! `POST /uploads` answers with a token that authorises one upload only (its
//! part URLs, status, completion and abort) until it expires, so an app's
//! server can create the upload with its user's token and hand the answer to
//! the browser unchanged. The token is a JWT (HS256), told apart from user
//! tokens by its header (`typ: upload+jwt`) and signed with a key derived
//! from the server's secret, so it can never pass as a user token, nor a user
//! token as it. The signature is checked by `jsonwebtoken`, which compares
//! HMACs in constant time.

use axum::extract::{FromRequestParts, Path};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use hmac::{Hmac, Mac};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sha2::Sha256;

use crate::AppState;
use crate::auth::Owner;
use crate::error::ApiError;

/// The JWT header `typ` that marks an upload-scoped token.
pub const TOKEN_TYPE: &str = "upload+jwt";

/// What the derived signing key is bound to; a new version gets a new label.
const KEY_LABEL: &[u8] = b"direct-upload upload-scoped token v1";

/// Seconds of clock skew tolerated on `exp`, as for user tokens.
const LEEWAY_SECS: u64 = 5;

/// Issues and checks upload-scoped tokens.
pub struct UploadTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    /// The owner the upload belongs to.
    sub: String,
    /// The one upload this token authorises.
    upload: String,
    /// Expiry, Unix seconds.
    exp: u64,
}

/// Why a token was refused. Every case answers 401 `unauthorized` but
/// [`TokenError::OtherUpload`], which answers 404 `not_found` exactly as an
/// upload of another owner does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Past its `exp`.
    #[error("the upload token has expired; ask the app for a new upload")]
    Expired,
    /// Not signed by this server, altered, or not a token at all.
    #[error("the upload token is not valid")]
    Invalid,
    /// Valid, but for another upload.
    #[error("no such upload")]
    OtherUpload,
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::OtherUpload => ApiError::not_found("upload"),
            TokenError::Expired | TokenError::Invalid => ApiError::unauthorized(e.to_string()),
        }
    }
}

impl UploadTokens {
    /// Tokens signed with a key derived from the server's `secret`
    /// (HMAC-SHA256 of a fixed label), so every instance sharing the secret
    /// accepts them. Without a secret (development identity) the key is
    /// random: tokens then hold only for this process.
    pub fn new(secret: Option<&[u8]>) -> Self {
        let mut key = [0u8; 32];
        match secret {
            Some(secret) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
                mac.update(KEY_LABEL);
                key.copy_from_slice(&mac.finalize().into_bytes());
            }
            // Without randomness the process could not sign anything safely.
            None => getrandom::fill(&mut key).expect("the operating system's random source"),
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = LEEWAY_SECS;
        UploadTokens { encoding: EncodingKey::from_secret(&key), decoding: DecodingKey::from_secret(&key), validation }
    }

    /// A token for `upload_id` of `owner`, valid until `expires_at` (Unix ms).
    pub fn issue(&self, upload_id: &str, owner: &str, expires_at_ms: i64) -> String {
        let header = Header { typ: Some(TOKEN_TYPE.to_owned()), ..Header::new(Algorithm::HS256) };
        let claims =
            Claims { sub: owner.to_owned(), upload: upload_id.to_owned(), exp: (expires_at_ms.max(0) / 1000) as u64 };
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("HS256 signing of plain claims cannot fail")
    }

    /// The owner of `upload_id` when `token` authorises it.
    pub fn verify(&self, token: &str, upload_id: &str) -> Result<Owner, TokenError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        if data.header.typ.as_deref() != Some(TOKEN_TYPE) {
            return Err(TokenError::Invalid);
        }
        if data.claims.upload != upload_id {
            return Err(TokenError::OtherUpload);
        }
        Ok(Owner(data.claims.sub))
    }
}

/// The bearer token of `headers` when it is an upload-scoped one (by its
/// header; nothing is verified here).
pub fn scoped_bearer(headers: &HeaderMap) -> Option<&str> {
    // Two Authorization headers are the user-identity check's to refuse.
    if headers.get_all(axum::http::header::AUTHORIZATION).iter().nth(1).is_some() {
        return None;
    }
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?.trim();
    let header = jsonwebtoken::decode_header(token).ok()?;
    (header.typ.as_deref() == Some(TOKEN_TYPE)).then_some(token)
}

/// Who may act on the upload named in the path: its owner by their own
/// identity, or anyone holding that upload's scoped token.
pub struct UploadAccess(pub Owner);

impl FromRequestParts<AppState> for UploadAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(token) = scoped_bearer(&parts.headers) else {
            return Owner::from_request_parts(parts, state).await.map(UploadAccess);
        };
        let token = token.to_owned();
        let Path(id) =
            Path::<String>::from_request_parts(parts, state).await.map_err(|_| ApiError::not_found("upload"))?;
        let owner = state.upload_tokens().verify(&token, &id)?;
        state.check_rate(&owner).await?;
        Ok(UploadAccess(owner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_ms() -> i64 {
        crate::time_util::now_ms()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        headers
    }

    #[test]
    fn a_token_authorises_its_upload_only() {
        let tokens = UploadTokens::new(Some(b"server secret".as_slice()));
        let token = tokens.issue("01UPLOAD", "alice", now_ms() + 60_000);
        assert_eq!(tokens.verify(&token, "01UPLOAD"), Ok(Owner("alice".into())));
        assert_eq!(tokens.verify(&token, "01OTHER"), Err(TokenError::OtherUpload));
        assert_eq!(scoped_bearer(&bearer(&token)), Some(token.as_str()));
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let tokens = UploadTokens::new(Some(b"server secret".as_slice()));
        let expired = tokens.issue("01UPLOAD", "alice", now_ms() - 60_000);
        assert_eq!(tokens.verify(&expired, "01UPLOAD"), Err(TokenError::Expired));

        let token = tokens.issue("01UPLOAD", "alice", now_ms() + 60_000);
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let tampered_signature = format!("{signed}.{flipped}{}", &signature[1..]);
        assert_eq!(tokens.verify(&tampered_signature, "01UPLOAD"), Err(TokenError::Invalid));
        // The claims of another upload under the first one's signature.
        let other = tokens.issue("01OTHER", "alice", now_ms() + 60_000);
        let (other_signed, _) = other.rsplit_once('.').unwrap();
        assert_eq!(tokens.verify(&format!("{other_signed}.{signature}"), "01OTHER"), Err(TokenError::Invalid));

        let elsewhere =
            UploadTokens::new(Some(b"another server".as_slice())).issue("01UPLOAD", "alice", now_ms() + 60_000);
        assert_eq!(tokens.verify(&elsewhere, "01UPLOAD"), Err(TokenError::Invalid));
        assert_eq!(tokens.verify("not a token", "01UPLOAD"), Err(TokenError::Invalid));
    }

    #[test]
    fn user_tokens_and_scoped_tokens_never_pass_for_each_other() {
        let secret: &[u8] = b"server secret";
        // A user JWT signed with the secret itself is not a scoped token...
        let exp = (now_ms() / 1000 + 60) as u64;
        let user = jsonwebtoken::encode(
            &Header::default(),
            &Claims { sub: "alice".into(), upload: "01UPLOAD".into(), exp },
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        assert_eq!(scoped_bearer(&bearer(&user)), None);
        let tokens = UploadTokens::new(Some(secret));
        assert_eq!(tokens.verify(&user, "01UPLOAD"), Err(TokenError::Invalid));
        // ...even with the scoped `typ` forged onto it: the key differs.
        let forged = jsonwebtoken::encode(
            &Header { typ: Some(TOKEN_TYPE.into()), ..Header::default() },
            &Claims { sub: "alice".into(), upload: "01UPLOAD".into(), exp },
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        assert_eq!(tokens.verify(&forged, "01UPLOAD"), Err(TokenError::Invalid));
        // ...and a scoped token fails as a user token.
        let scoped = tokens.issue("01UPLOAD", "alice", now_ms() + 60_000);
        let user_identity = crate::auth::JwtIdentity::new(secret);
        use crate::auth::Authenticate as _;
        assert!(user_identity.authenticate(&bearer(&scoped)).is_err());
    }

    #[test]
    fn development_keys_are_random_per_process() {
        let a = UploadTokens::new(None);
        let b = UploadTokens::new(None);
        let token = a.issue("01UPLOAD", "anonymous", now_ms() + 60_000);
        assert!(a.verify(&token, "01UPLOAD").is_ok());
        assert_eq!(b.verify(&token, "01UPLOAD"), Err(TokenError::Invalid));
    }
}
