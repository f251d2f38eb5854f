//! Who is calling: the principal, its role and organization, and the local server's tokens.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Issuer of the tokens the local server mints.
pub const LOCAL_ISSUER: &str = "keypool-local";

/// An organization's id, safe to embed in storage keys.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrgId(String);

impl OrgId {
    /// 1 to 64 characters of letters, digits, `-` and `_`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let ok = (1..=64).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(text.to_string()))
        } else {
            Err("an organization id has 1 to 64 letters, digits, '-' or '_'".into())
        }
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrgId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}
impl From<OrgId> for String {
    fn from(value: OrgId) -> Self {
        value.0
    }
}
impl fmt::Debug for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgId({})", self.0)
    }
}
impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user's subject (the token's `sub`), safe to embed in storage keys.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    /// 1 to 128 printable ASCII characters other than `#` and space.
    pub fn parse(text: &str) -> Result<Self, String> {
        let ok = (1..=128).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
        if ok {
            Ok(Self(text.to_string()))
        } else {
            Err("a subject has 1 to 128 printable ASCII characters, without '#'".into())
        }
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}
impl From<UserId> for String {
    fn from(value: UserId) -> Self {
        value.0
    }
}
impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0)
    }
}
impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages one organization's courses, pools, keys and everything else of it.
    Admin,
    /// Reads one organization's pools, keys, exports' status, invoices and activity; changes
    /// nothing, and exports or downloads no keys.
    Viewer,
    /// Reads one organization's invoices and activity.
    Finance,
    /// Redeems keys and uses assignments.
    Learner,
}

impl Role {
    /// Every role, as tokens name them.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Viewer, Role::Finance, Role::Learner];

    /// The role's name in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
            Role::Finance => "finance",
            Role::Learner => "learner",
        }
    }

    /// The role a token names, if KeyPool knows it.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Whether the role belongs to an organization's staff (every role but the learner's).
    pub fn is_staff(self) -> bool {
        self != Role::Learner
    }
}

/// The verified caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub sub: UserId,
    /// The organization; every admin has one.
    pub org: Option<OrgId>,
    /// What the user may do.
    pub role: Role,
}

impl Principal {
    /// The organization of a member of its staff (admin, viewer, finance). Which staff role
    /// may use a route is decided before its handler runs (`http::access`); this refuses
    /// learners all the same.
    pub fn org(&self) -> Result<&OrgId> {
        match (self.role.is_staff(), &self.org) {
            (true, Some(org)) => Ok(org),
            (true, None) => Err(Error::Unauthenticated(
                "the token names no organization".into(),
            )),
            (false, _) => Err(self.wrong_role(&[Role::Admin, Role::Viewer, Role::Finance])),
        }
    }

    /// The learner's id, or 403 for any other role.
    pub fn learner(&self) -> Result<&UserId> {
        match self.role {
            Role::Learner => Ok(&self.sub),
            _ => Err(self.wrong_role(&[Role::Learner])),
        }
    }

    /// The 403 of a route that admits only `allowed`.
    pub fn wrong_role(&self, allowed: &[Role]) -> Error {
        Error::WrongRole {
            allowed: allowed.iter().map(|r| r.as_str()).collect(),
            role: self.role.as_str(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    org: Option<String>,
    role: String,
    iss: String,
    exp: i64,
    iat: i64,
    /// Not before; tokens minted before it was added have none, and are checked without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
}

/// The longest a local token may live: a year.
pub const MAX_TOKEN_HOURS: i64 = 366 * 24;

/// Verifies and mints the local server's HS256 tokens.
#[derive(Clone)]
pub struct TokenAuthority {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenAuthority(HS256, secret redacted)")
    }
}

impl TokenAuthority {
    /// An authority over a shared secret (at least 32 bytes).
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[LOCAL_ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// The authority of a data folder's download links: its key is derived from the bearer
    /// tokens' secret, so neither kind of token verifies as the other even if the issuer
    /// check were lost.
    pub fn for_download_links(secret: &[u8]) -> Self {
        use hmac::{Hmac, Mac as _};
        // HMAC accepts a key of any length; `new_from_slice` cannot fail.
        let key = Hmac::<sha2::Sha256>::new_from_slice(secret)
            .map(|mac| {
                mac.chain_update(b"keypool download links v1")
                    .finalize()
                    .into_bytes()
            })
            .map(|bytes| bytes.to_vec())
            .unwrap_or_else(|_| secret.to_vec());
        Self::new(&key)
    }

    /// Mints a token valid for `ttl`, at most `MAX_TOKEN_HOURS`.
    pub fn mint(
        &self,
        sub: &UserId,
        org: Option<&OrgId>,
        role: Role,
        ttl: chrono::Duration,
    ) -> anyhow::Result<String> {
        anyhow::ensure!(
            ttl > chrono::Duration::zero() && ttl <= chrono::Duration::hours(MAX_TOKEN_HOURS),
            "a token lives from a second to {MAX_TOKEN_HOURS} hours"
        );
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: sub.as_str().to_string(),
            org: org.map(|o| o.as_str().to_string()),
            role: role.as_str().to_string(),
            iss: LOCAL_ISSUER.to_string(),
            iat: now,
            nbf: Some(now),
            exp: now + ttl.num_seconds(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verifies a bearer token and returns its principal.
    pub fn verify(&self, token: &str) -> Result<Principal> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                Error::Unauthenticated(match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                        "the token has expired".into()
                    }
                    _ => "the token is not valid".into(),
                })
            })?;
        principal_from_claims(
            &data.claims.sub,
            data.claims.org.as_deref(),
            &data.claims.role,
        )
    }
}

/// Issuer of download links, so that a link is never accepted as a bearer token nor the other
/// way round.
const LINK_ISSUER: &str = "keypool-local-download";

#[derive(Debug, Serialize, Deserialize)]
struct LinkClaims {
    /// The object key.
    sub: String,
    /// The name the download is saved as.
    name: String,
    iss: String,
    exp: i64,
}

impl TokenAuthority {
    /// Signs a download link for one object, valid for `ttl`.
    pub fn mint_download(
        &self,
        key: &str,
        file_name: &str,
        ttl: chrono::Duration,
    ) -> anyhow::Result<String> {
        let claims = LinkClaims {
            sub: key.to_string(),
            name: file_name.to_string(),
            iss: LINK_ISSUER.to_string(),
            exp: chrono::Utc::now().timestamp() + ttl.num_seconds(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The object key and file name of a download link that verifies and has not expired.
    pub fn verify_download(&self, token: &str) -> Option<(String, String)> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[LINK_ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = 0;
        jsonwebtoken::decode::<LinkClaims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| (data.claims.sub, data.claims.name))
    }
}

/// Builds a principal from verified claims, whichever verifier read them.
pub fn principal_from_claims(sub: &str, org: Option<&str>, role: &str) -> Result<Principal> {
    let bad =
        |what: String| Error::Unauthenticated(format!("the token's claims are not valid: {what}"));
    let sub = UserId::parse(sub).map_err(bad)?;
    let org = org.map(OrgId::parse).transpose().map_err(bad)?;
    let role = Role::parse(role).ok_or_else(|| bad(format!("unknown role {role:?}")))?;
    Ok(Principal { sub, org, role })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let authority = TokenAuthority::new(&[7u8; 32]);
        let sub = UserId::parse("alice").unwrap();
        let org = OrgId::parse("acme").unwrap();
        let token = authority
            .mint(&sub, Some(&org), Role::Admin, chrono::Duration::hours(1))
            .unwrap();
        let p = authority.verify(&token).unwrap();
        assert_eq!(p.sub, sub);
        assert_eq!(p.org, Some(org));
        assert_eq!(p.role, Role::Admin);

        let other = TokenAuthority::new(&[8u8; 32]);
        assert!(matches!(
            other.verify(&token),
            Err(Error::Unauthenticated(_))
        ));
        let now = chrono::Utc::now().timestamp();
        let expired = signed(&authority, now - 7200, now - 3600, None);
        assert!(
            matches!(authority.verify(&expired), Err(Error::Unauthenticated(m)) if m.contains("expired"))
        );
    }

    /// A learner token with the given times, signed as `authority` signs.
    fn signed(authority: &TokenAuthority, iat: i64, exp: i64, nbf: Option<i64>) -> String {
        let claims = Claims {
            sub: "alice".into(),
            org: None,
            role: "learner".into(),
            iss: LOCAL_ISSUER.into(),
            exp,
            iat,
            nbf,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &authority.encoding).unwrap()
    }

    #[test]
    fn tokens_not_yet_valid_are_refused_and_lifetimes_are_capped() {
        let authority = TokenAuthority::new(&[7u8; 32]);
        let now = chrono::Utc::now().timestamp();
        let later = signed(&authority, now, now + 7200, Some(now + 3600));
        assert!(matches!(
            authority.verify(&later),
            Err(Error::Unauthenticated(_))
        ));
        // Without `nbf` (tokens minted before it existed), and with one that has passed.
        assert!(
            authority
                .verify(&signed(&authority, now, now + 60, None))
                .is_ok()
        );
        assert!(
            authority
                .verify(&signed(&authority, now, now + 60, Some(now - 1)))
                .is_ok()
        );

        let sub = UserId::parse("alice").unwrap();
        for ttl in [
            chrono::Duration::hours(MAX_TOKEN_HOURS + 1),
            chrono::Duration::hours(-1),
            chrono::Duration::zero(),
        ] {
            assert!(
                authority.mint(&sub, None, Role::Learner, ttl).is_err(),
                "{ttl}"
            );
        }
        let longest = authority
            .mint(
                &sub,
                None,
                Role::Learner,
                chrono::Duration::hours(MAX_TOKEN_HOURS),
            )
            .unwrap();
        assert!(authority.verify(&longest).is_ok());
    }

    #[test]
    fn download_links_use_a_key_of_their_own() {
        let secret = [7u8; 32];
        let bearer = TokenAuthority::new(&secret);
        let links = TokenAuthority::for_download_links(&secret);
        let link = links
            .mint_download("exports/a.csv", "a.csv", chrono::Duration::minutes(5))
            .unwrap();
        assert_eq!(
            links.verify_download(&link),
            Some(("exports/a.csv".into(), "a.csv".into()))
        );
        assert_eq!(bearer.verify_download(&link), None);
        let forged = bearer
            .mint_download("token-secret", "x", chrono::Duration::minutes(5))
            .unwrap();
        assert_eq!(links.verify_download(&forged), None);
        let sub = UserId::parse("alice").unwrap();
        let token = bearer
            .mint(&sub, None, Role::Learner, chrono::Duration::hours(1))
            .unwrap();
        assert!(links.verify(&token).is_err());
    }

    #[test]
    fn ids_refuse_storage_key_separators() {
        assert!(OrgId::parse("acme-1").is_ok());
        assert!(OrgId::parse("ac#me").is_err());
        assert!(OrgId::parse("").is_err());
        assert!(UserId::parse("auth0|123@x.org").is_ok());
        assert!(UserId::parse("a#b").is_err());
        assert!(UserId::parse("a b").is_err());
    }
}
