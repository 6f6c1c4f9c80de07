//! Client authentication at the handshake: a client certificate under
//! `auth.client_ca`, or a token `USER:SECRET` whose secret matches one of
//! the user's argon2 hashes (`[[auth.users]] token_hashes`).
//!
//! A token, when the hello carries one, decides (a wrong token is refused
//! even if a valid certificate came with it); otherwise the certificate
//! does. Without `[auth]` (development mode) every client is let in,
//! unauthenticated. Secrets are compared only through argon2 (in a blocking
//! thread, at most `auth.max_concurrent_verifications` at once) and never
//! logged: refusals say only which kind of credential failed.

use std::collections::HashMap;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use meshcast_config::{AuthConfig, CertName};
use meshcast_transport::Secret;
use tokio::sync::Semaphore;

/// Who a session belongs to, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's name.
    pub user: String,
    /// Its roles (`[[auth.users]] roles`; none for a certificate user
    /// without an entry).
    pub roles: Vec<String>,
    /// How it proved it.
    pub method: Method,
}

/// How a client authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A client certificate under `auth.client_ca`.
    Certificate,
    /// A token matching one of the user's hashes.
    Token,
}

impl Method {
    /// For logs.
    pub fn name(self) -> &'static str {
        match self {
            Method::Certificate => "certificate",
            Method::Token => "token",
        }
    }
}

/// Why a client was refused (the text goes to the client and the log, and
/// never contains the secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Neither a token nor a client certificate.
    #[error(
        "authentication required: this broker accepts {accepts}, and the client presented none"
    )]
    NoCredentials {
        /// What the broker accepts.
        accepts: &'static str,
    },
    /// The token is not `USER:SECRET`.
    #[error("authentication failed: the token is not of the form USER:SECRET")]
    MalformedToken,
    /// Unknown user or wrong secret (not told apart, on purpose).
    #[error("authentication failed: unknown user or wrong token")]
    BadToken,
    /// Tokens are not accepted by this broker (no `[[auth.users]]` has a hash).
    #[error("authentication failed: this broker accepts no tokens (only client certificates)")]
    TokensNotAccepted,
    /// The certificate carries no usable name.
    #[error("authentication failed: the client certificate has no {0}")]
    NoCertName(&'static str),
}

struct User {
    roles: Vec<String>,
    hashes: Vec<String>,
}

/// The broker's authentication settings, built once at start.
pub struct Authenticator {
    enabled: bool,
    certs: bool,
    tokens: bool,
    cert_name: CertName,
    users: HashMap<String, User>,
    verifications: Arc<Semaphore>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("enabled", &self.enabled)
            .field("certs", &self.certs)
            .field("tokens", &self.tokens)
            .field("users", &self.users.len())
            .finish()
    }
}

/// A hash verified when the user is unknown, so that an unknown user costs
/// the same time as a wrong secret (argon2id, default parameters, of an
/// arbitrary string).
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$bWVzaGNhc3RkdW1teQ$0N3FiMhrmPhhXDQwXTFRp6Ra7MfsfG9C1BRk5m3fBOM";

impl Authenticator {
    /// From `[auth]`.
    pub fn new(auth: &AuthConfig) -> Authenticator {
        let users = auth
            .users
            .iter()
            .map(|u| {
                let user = User {
                    roles: u.roles.clone(),
                    hashes: u
                        .token_hashes
                        .iter()
                        .map(|h| h.as_str().to_string())
                        .collect(),
                };
                (u.name.clone(), user)
            })
            .collect::<HashMap<_, _>>();
        Authenticator {
            enabled: auth.enabled(),
            certs: auth.client_ca.is_some(),
            tokens: users.values().any(|u| !u.hashes.is_empty()),
            cert_name: auth.cert_name,
            users,
            verifications: Arc::new(Semaphore::new(auth.max_concurrent_verifications.max(1))),
        }
    }

    /// Whether clients must authenticate (else: development mode).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// What the broker accepts, for messages.
    fn accepts(&self) -> &'static str {
        match (self.certs, self.tokens) {
            (true, true) => "a client certificate or a token",
            (true, false) => "a client certificate",
            _ => "a token",
        }
    }

    /// Authenticates a client from its hello's token and the certificate
    /// chain it presented in TLS (already verified against
    /// `auth.client_ca` by rustls). `Ok(None)` in development mode.
    pub async fn authenticate(
        &self,
        token: Option<&Secret>,
        peer_certs: Option<&[rustls_pki_types::CertificateDer<'static>]>,
    ) -> Result<Option<Principal>, AuthError> {
        if !self.enabled {
            return Ok(None);
        }
        if let Some(token) = token {
            return self.verify_token(token).await.map(Some);
        }
        match peer_certs.and_then(|c| c.first()) {
            Some(leaf) if self.certs => {
                let user = cert_user(leaf, self.cert_name)?;
                let roles = self
                    .users
                    .get(&user)
                    .map(|u| u.roles.clone())
                    .unwrap_or_default();
                Ok(Some(Principal {
                    user,
                    roles,
                    method: Method::Certificate,
                }))
            }
            _ => Err(AuthError::NoCredentials {
                accepts: self.accepts(),
            }),
        }
    }

    async fn verify_token(&self, token: &Secret) -> Result<Principal, AuthError> {
        if !self.tokens {
            return Err(AuthError::TokensNotAccepted);
        }
        let (user, secret) = token
            .expose()
            .split_once(':')
            .ok_or(AuthError::MalformedToken)?;
        let known = self.users.get(user);
        let hashes: Vec<String> = match known {
            Some(u) if !u.hashes.is_empty() => u.hashes.clone(),
            _ => vec![DUMMY_HASH.to_string()],
        };
        let secret = Secret::new(secret);
        let permit = self
            .verifications
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AuthError::BadToken)?;
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hashes.iter().any(|h| {
                PasswordHash::new(h).is_ok_and(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(secret.expose().as_bytes(), &parsed)
                        .is_ok()
                })
            })
        })
        .await
        .unwrap_or(false);
        match known {
            Some(u) if matched && !u.hashes.is_empty() => Ok(Principal {
                user: user.to_string(),
                roles: u.roles.clone(),
                method: Method::Token,
            }),
            _ => Err(AuthError::BadToken),
        }
    }

    /// The user name a token claims, if that user is configured (for the
    /// log line of a refusal; an unknown name is not logged, in case it is
    /// a secret typed in the wrong place).
    pub fn known_user<'a>(&self, token: &'a Secret) -> Option<&'a str> {
        let (user, _) = token.expose().split_once(':')?;
        self.users.contains_key(user).then_some(user)
    }
}

/// The user name a client certificate carries: its subject's common name,
/// or its first DNS subject alternative name.
pub fn cert_user(
    leaf: &rustls_pki_types::CertificateDer<'_>,
    which: CertName,
) -> Result<String, AuthError> {
    let what = match which {
        CertName::Cn => "subject common name (CN)",
        CertName::Dns => "DNS subject alternative name",
    };
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|_| AuthError::NoCertName(what))?;
    let name = match which {
        CertName::Cn => cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        CertName::Dns => cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .and_then(|san| {
                san.value.general_names.iter().find_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
            }),
    };
    name.filter(|n| !n.is_empty() && !n.chars().any(char::is_control))
        .ok_or(AuthError::NoCertName(what))
}

/// The certificate chain a QUIC client presented, if any.
pub fn peer_certs(
    conn: &quinn::Connection,
) -> Option<Vec<rustls_pki_types::CertificateDer<'static>>> {
    conn.peer_identity()?
        .downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
        .ok()
        .map(|b| *b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshcast_config::{TokenHash, UserConfig};

    fn hash(secret: &str) -> String {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"test salt 16 by").unwrap();
        argon2::Argon2::default()
            .hash_password(secret.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    fn auth() -> Authenticator {
        Authenticator::new(&AuthConfig {
            users: vec![UserConfig {
                name: "alice".into(),
                roles: vec!["ops".into()],
                token_hashes: vec![TokenHash(hash("old")), TokenHash(hash("new"))],
            }],
            ..AuthConfig::default()
        })
    }

    #[tokio::test]
    async fn tokens_are_checked_against_every_hash_of_the_user() {
        let a = auth();
        for secret in ["old", "new"] {
            let p = a
                .authenticate(Some(&Secret::new(format!("alice:{secret}"))), None)
                .await
                .unwrap()
                .unwrap();
            assert_eq!((p.user.as_str(), p.method), ("alice", Method::Token));
            assert_eq!(p.roles, ["ops"]);
        }
        for bad in ["alice:wrong", "bob:new", "alice:"] {
            let err = a.authenticate(Some(&Secret::new(bad)), None).await;
            assert_eq!(err, Err(AuthError::BadToken), "{bad}");
        }
        let err = a.authenticate(Some(&Secret::new("nocolon")), None).await;
        assert_eq!(err, Err(AuthError::MalformedToken));
        let err = a.authenticate(None, None).await.unwrap_err();
        assert!(err.to_string().contains("a token"), "{err}");
    }

    #[test]
    fn the_dummy_hash_is_an_argon2id_phc_string() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[tokio::test]
    async fn development_mode_lets_everyone_in() {
        let a = Authenticator::new(&AuthConfig::default());
        assert!(!a.enabled());
        assert_eq!(a.authenticate(None, None).await, Ok(None));
    }
}
