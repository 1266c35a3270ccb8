//! API keys, the tenants they belong to and the role they give.
//!
//! Keys are secrets: they never appear in error messages, `Debug` output or logs. Only their
//! SHA-256 is kept, so a key may be configured as `sha256:<hex>` and no plain key need sit in a
//! config. Lookups hash the presented key and compare it with every configured hash in full, so
//! the time taken does not reveal how much of a guess matched.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// List and read: objects, state, policies, metrics, events.
    Reader,
    /// Everything a reader may, and change: uploads, ticks, restores, controls, policies.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Admin => "admin",
        }
    }
}

/// One configured key.
#[derive(Clone)]
struct Entry {
    digest: [u8; 32],
    tenant: String,
    role: Role,
}

/// Keys mapped to tenants and roles, parsed from `RUSTDB_API_KEYS`
/// (`key:tenant[:admin|reader],...`; a key may be `sha256:<64 hex digits>`).
#[derive(Clone)]
pub struct KeyRing {
    entries: Vec<Entry>,
}

/// Why a key spec was rejected. Entries are numbered from 1 in the order they appear; the
/// messages name tenants but never keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    #[error("no API keys configured: expected \"key:tenant,key2:tenant2\"")]
    Empty,
    #[error("API key entry {entry} has no ':' (expected \"key:tenant[:admin|reader]\")")]
    MissingColon { entry: usize },
    #[error(
        "API key entry {entry} has too many ':' (expected \"key:tenant[:admin|reader]\", \
         where key may be \"sha256:<hex>\")"
    )]
    ExtraColon { entry: usize },
    #[error("API key entry {entry} has role {role:?}; expected admin or reader")]
    BadRole { entry: usize, role: String },
    #[error("API key entry {entry} has a sha256: key that is not 64 hex digits")]
    BadDigest { entry: usize },
    #[error("API key entry {entry} has an empty key")]
    EmptyKey { entry: usize },
    #[error("API key entry {entry} has an empty tenant")]
    EmptyTenant { entry: usize },
    #[error(
        "API key entry {entry} (tenant \"{tenant}\") repeats the key of entry {first}; \
         every key must be unique"
    )]
    DuplicateKey {
        entry: usize,
        first: usize,
        tenant: String,
    },
}

impl KeyRing {
    /// Parses `key:tenant[:role]` items separated by commas. Whitespace around items and parts is
    /// ignored, and so are empty items (a trailing comma). At least one item is required; keys
    /// must be unique; a tenant may have several keys. The role is `admin` (the default, as in
    /// the seed system, whose keys had none) or `reader`.
    pub fn parse(spec: &str) -> Result<KeyRing, KeyRingError> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut first_entry: HashMap<[u8; 32], usize> = HashMap::new();
        for (index, item) in spec.split(',').enumerate() {
            let entry = index + 1;
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let mut parts: Vec<&str> = item.split(':').map(str::trim).collect();
            // `sha256:<hex>` is one key, not two parts.
            let hashed = parts.len() > 2 && parts[0] == "sha256";
            if hashed {
                let hex_part = parts.remove(1);
                parts[0] = hex_part;
            }
            let (key, tenant, role) = match parts.as_slice() {
                [_] => return Err(KeyRingError::MissingColon { entry }),
                [key, tenant] => (*key, *tenant, Role::Admin),
                [key, tenant, role] => {
                    let role = match *role {
                        "admin" => Role::Admin,
                        "reader" => Role::Reader,
                        other => {
                            return Err(KeyRingError::BadRole {
                                entry,
                                role: other.to_owned(),
                            })
                        }
                    };
                    (*key, *tenant, role)
                }
                _ => return Err(KeyRingError::ExtraColon { entry }),
            };
            if key.is_empty() {
                return Err(KeyRingError::EmptyKey { entry });
            }
            if tenant.is_empty() {
                return Err(KeyRingError::EmptyTenant { entry });
            }
            let digest = if hashed {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(key, &mut digest)
                    .map_err(|_| KeyRingError::BadDigest { entry })?;
                digest
            } else {
                sha256(key)
            };
            if let Some(&first) = first_entry.get(&digest) {
                return Err(KeyRingError::DuplicateKey {
                    entry,
                    first,
                    tenant: tenant.to_owned(),
                });
            }
            first_entry.insert(digest, entry);
            entries.push(Entry {
                digest,
                tenant: tenant.to_owned(),
                role,
            });
        }
        if entries.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(KeyRing { entries })
    }

    /// The tenant and role `key` belongs to. The key's hash is compared with every configured
    /// hash in full (no early exit on a mismatching byte or on a match), so timing does not
    /// depend on the keys' contents.
    pub fn lookup(&self, key: &str) -> Option<(&str, Role)> {
        let presented = sha256(key);
        let mut found = None;
        for entry in &self.entries {
            if constant_time_eq(&entry.digest, &presented) {
                found = Some((entry.tenant.as_str(), entry.role));
            }
        }
        found
    }

    /// The tenant `key` belongs to.
    pub fn tenant_for(&self, key: &str) -> Option<&str> {
        self.lookup(key).map(|(tenant, _)| tenant)
    }

    /// The distinct tenants, sorted.
    pub fn tenants(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| e.tenant.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false for a parsed ring (parsing rejects an empty spec).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl FromStr for KeyRing {
    type Err = KeyRingError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        KeyRing::parse(spec)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.entries.len())
            .field("tenants", &self.tenants())
            .finish()
    }
}

/// The SHA-256 of a key, as configured with `sha256:` (`printf %s KEY | sha256sum`).
pub fn sha256(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Equality whose running time depends only on the length of `presented` (which the caller
/// already knows), never on where the bytes first differ. A length difference is folded into the
/// result rather than returned early.
fn constant_time_eq(stored: &[u8], presented: &[u8]) -> bool {
    let mut diff = u8::from(stored.len() != presented.len());
    for (i, &byte) in presented.iter().enumerate() {
        let other = stored.get(i).copied().unwrap_or(!byte);
        diff |= byte ^ other;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_good_spec() {
        let ring = KeyRing::parse(" k1:alpha , k2:beta,k3 : alpha ,").unwrap();
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.tenant_for("k1"), Some("alpha"));
        assert_eq!(ring.tenant_for("k2"), Some("beta"));
        assert_eq!(ring.tenant_for("k3"), Some("alpha"));
        assert_eq!(ring.tenants(), vec!["alpha".to_owned(), "beta".to_owned()]);
    }

    #[test]
    fn unknown_keys_and_prefixes_do_not_match() {
        let ring = KeyRing::parse("secret:t").unwrap();
        for guess in ["", "s", "secre", "secret ", "secrets", "Secret", "xsecret"] {
            assert_eq!(ring.tenant_for(guess), None, "{guess:?} matched");
        }
    }

    #[test]
    fn rejects_empty_specs() {
        assert_eq!(KeyRing::parse("").unwrap_err(), KeyRingError::Empty);
        assert_eq!(KeyRing::parse("  , ,").unwrap_err(), KeyRingError::Empty);
    }

    #[test]
    fn rejects_missing_colon() {
        assert_eq!(
            KeyRing::parse("a:t,justakey").unwrap_err(),
            KeyRingError::MissingColon { entry: 2 }
        );
    }

    #[test]
    fn rejects_extra_colon_and_bad_roles() {
        assert_eq!(
            KeyRing::parse("a:t:admin:x").unwrap_err(),
            KeyRingError::ExtraColon { entry: 1 }
        );
        assert_eq!(
            KeyRing::parse("a:t:u").unwrap_err(),
            KeyRingError::BadRole {
                entry: 1,
                role: "u".into()
            }
        );
    }

    #[test]
    fn roles_default_to_admin() {
        let ring = KeyRing::parse("w:t, r:t:reader, a:u:admin").unwrap();
        assert_eq!(ring.lookup("w"), Some(("t", Role::Admin)));
        assert_eq!(ring.lookup("r"), Some(("t", Role::Reader)));
        assert_eq!(ring.lookup("a"), Some(("u", Role::Admin)));
    }

    #[test]
    fn hashed_keys_match_their_plain_key() {
        let digest = hex::encode(sha256("s3cret"));
        let ring = KeyRing::parse(&format!("sha256:{digest}:team:reader")).unwrap();
        assert_eq!(ring.lookup("s3cret"), Some(("team", Role::Reader)));
        assert_eq!(ring.lookup(&format!("sha256:{digest}")), None);
        assert_eq!(ring.lookup(&digest), None);
        assert_eq!(
            KeyRing::parse("sha256:abc:t").unwrap_err(),
            KeyRingError::BadDigest { entry: 1 }
        );
        // The same key given plain and hashed is a duplicate.
        let err = KeyRing::parse(&format!("s3cret:a,sha256:{digest}:b")).unwrap_err();
        assert!(matches!(
            err,
            KeyRingError::DuplicateKey {
                entry: 2,
                first: 1,
                ..
            }
        ));
    }

    #[test]
    fn rejects_empty_key_or_tenant() {
        assert_eq!(
            KeyRing::parse(" :t").unwrap_err(),
            KeyRingError::EmptyKey { entry: 1 }
        );
        assert_eq!(
            KeyRing::parse("a:t,b: ").unwrap_err(),
            KeyRingError::EmptyTenant { entry: 2 }
        );
    }

    #[test]
    fn rejects_duplicate_keys_without_naming_them() {
        let err = KeyRing::parse("same:t1,other:t2, same :t3").unwrap_err();
        assert_eq!(
            err,
            KeyRingError::DuplicateKey {
                entry: 3,
                first: 1,
                tenant: "t3".into()
            }
        );
        let message = err.to_string();
        assert!(message.contains("entry 3") && message.contains("entry 1"));
        assert!(!message.contains("same"), "key leaked: {message}");
    }

    #[test]
    fn debug_hides_keys() {
        let ring = KeyRing::parse("hunter2:t").unwrap();
        let shown = format!("{ring:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains('t'));
    }

    #[test]
    fn from_str_matches_parse() {
        let ring: KeyRing = "k:t".parse().unwrap();
        assert_eq!(ring.tenant_for("k"), Some("t"));
    }

    #[test]
    fn constant_time_eq_basics() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b""));
    }
}
