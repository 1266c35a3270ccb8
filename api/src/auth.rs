//! API keys and the tenants they belong to.
//!
//! Keys are secrets: they never appear in error messages, `Debug` output or logs. Lookups compare
//! every configured key in full, so the time taken does not reveal how much of a guess matched.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

/// Keys mapped to tenants, parsed from `RUSTDB_API_KEYS` (`key:tenant,key2:tenant2`).
#[derive(Clone)]
pub struct KeyRing {
    entries: Vec<(String, String)>,
}

/// Why a key spec was rejected. Entries are numbered from 1 in the order they appear; the
/// messages name tenants but never keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    #[error("no API keys configured: expected \"key:tenant,key2:tenant2\"")]
    Empty,
    #[error("API key entry {entry} has no ':' (expected \"key:tenant\")")]
    MissingColon { entry: usize },
    #[error("API key entry {entry} has more than one ':' (expected \"key:tenant\")")]
    ExtraColon { entry: usize },
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
    /// Parses `key:tenant` items separated by commas. Whitespace around items, keys and tenants is
    /// ignored, and so are empty items (a trailing comma). At least one item is required; keys
    /// must be unique; a tenant may have several keys.
    pub fn parse(spec: &str) -> Result<KeyRing, KeyRingError> {
        let mut entries: Vec<(String, String)> = Vec::new();
        let mut first_entry: HashMap<&str, usize> = HashMap::new();
        for (index, item) in spec.split(',').enumerate() {
            let entry = index + 1;
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (key, tenant) = item
                .split_once(':')
                .ok_or(KeyRingError::MissingColon { entry })?;
            if tenant.contains(':') {
                return Err(KeyRingError::ExtraColon { entry });
            }
            let (key, tenant) = (key.trim(), tenant.trim());
            if key.is_empty() {
                return Err(KeyRingError::EmptyKey { entry });
            }
            if tenant.is_empty() {
                return Err(KeyRingError::EmptyTenant { entry });
            }
            if let Some(&first) = first_entry.get(key) {
                return Err(KeyRingError::DuplicateKey {
                    entry,
                    first,
                    tenant: tenant.to_owned(),
                });
            }
            first_entry.insert(key, entry);
            entries.push((key.to_owned(), tenant.to_owned()));
        }
        if entries.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(KeyRing { entries })
    }

    /// The tenant `key` belongs to. Every configured key is compared in full (no early exit on a
    /// mismatching byte or on a match), so timing does not depend on the keys' contents.
    pub fn tenant_for(&self, key: &str) -> Option<&str> {
        let mut found: Option<&str> = None;
        for (candidate, tenant) in &self.entries {
            if constant_time_eq(candidate.as_bytes(), key.as_bytes()) {
                found = Some(tenant);
            }
        }
        found
    }

    /// The distinct tenants, sorted.
    pub fn tenants(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(_, tenant)| tenant.clone())
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
    fn rejects_extra_colon() {
        assert_eq!(
            KeyRing::parse("a:t:u").unwrap_err(),
            KeyRingError::ExtraColon { entry: 1 }
        );
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
