//! Decay policies: per kind, every number a setting. Names follow the seed system.

use serde::{Deserialize, Serialize};

use crate::transform::Kind;

pub const DAY: i64 = 86_400;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Ages since last access at which each stage is reached.
    pub stage_one_after_sec: i64,
    pub stage_two_after_sec: i64,
    pub stub_after_sec: i64,
    pub delete_after_sec: i64,
    /// Nothing decays before it is this old (since creation), forced ticks included.
    pub min_retention_sec: i64,
    /// Least time a stub is kept before it is purged.
    pub grace_delete_sec: i64,
    /// An open within this long of the last access moves the timer but adds no heat.
    pub access_cooldown_sec: i64,
    /// How long a kept original survives after the first lossy stage.
    pub restore_window_sec: i64,
    /// Keep the original at the first lossy stage unless the object says otherwise.
    pub keep_original: bool,
    /// Heat halves over this many seconds without opens.
    pub heat_half_life_sec: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            stage_one_after_sec: DAY,
            stage_two_after_sec: 7 * DAY,
            stub_after_sec: 30 * DAY,
            delete_after_sec: 90 * DAY,
            min_retention_sec: 0,
            grace_delete_sec: 0,
            access_cooldown_sec: 0,
            restore_window_sec: 7 * DAY,
            keep_original: false,
            heat_half_life_sec: DAY,
        }
    }
}

impl Policy {
    /// Age since last access at which `target` (1 to 4) is due.
    pub fn after_sec(&self, target: u8) -> i64 {
        match target {
            0 => 0,
            1 => self.stage_one_after_sec,
            2 => self.stage_two_after_sec,
            3 => self.stub_after_sec,
            _ => self.delete_after_sec,
        }
    }

    /// Checks the value rules; the error names the first field that breaks one.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |field: &'static str, reason: String| Err(PolicyError { field, reason });
        let ladder = [
            ("stage_one_after_sec", self.stage_one_after_sec),
            ("stage_two_after_sec", self.stage_two_after_sec),
            ("stub_after_sec", self.stub_after_sec),
            ("delete_after_sec", self.delete_after_sec),
        ];
        for (name, v) in ladder {
            if v < 0 {
                return bad(name, format!("must not be negative, got {v}"));
            }
        }
        for pair in ladder.windows(2) {
            if pair[1].1 < pair[0].1 {
                return bad(
                    pair[1].0,
                    format!(
                        "must be at least {} ({}), got {}",
                        pair[0].0, pair[0].1, pair[1].1
                    ),
                );
            }
        }
        for (name, v) in [
            ("min_retention_sec", self.min_retention_sec),
            ("grace_delete_sec", self.grace_delete_sec),
            ("access_cooldown_sec", self.access_cooldown_sec),
            ("restore_window_sec", self.restore_window_sec),
        ] {
            if v < 0 {
                return bad(name, format!("must not be negative, got {v}"));
            }
        }
        if self.heat_half_life_sec <= 0 {
            return bad(
                "heat_half_life_sec",
                format!("must be positive, got {}", self.heat_half_life_sec),
            );
        }
        Ok(())
    }
}

/// A policy value that breaks a rule: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PolicyError {
    pub field: &'static str,
    pub reason: String,
}

/// A [`PolicySet`] check that failed, naming the field as `kind.field` (e.g. `text.stub_after_sec`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PolicySetError {
    pub field: String,
    pub reason: String,
}

/// One policy per kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicySet {
    pub image: Policy,
    pub text: Policy,
    pub spreadsheet: Policy,
    pub document: Policy,
    pub binary: Policy,
}

impl PolicySet {
    pub fn for_kind(&self, kind: Kind) -> &Policy {
        match kind {
            Kind::Image => &self.image,
            Kind::Text => &self.text,
            Kind::Spreadsheet => &self.spreadsheet,
            Kind::Document => &self.document,
            Kind::Binary => &self.binary,
        }
    }

    pub fn kinds(&self) -> [(Kind, &Policy); 5] {
        [
            (Kind::Image, &self.image),
            (Kind::Text, &self.text),
            (Kind::Spreadsheet, &self.spreadsheet),
            (Kind::Document, &self.document),
            (Kind::Binary, &self.binary),
        ]
    }

    /// Checks every kind's policy.
    pub fn validate(&self) -> Result<(), PolicySetError> {
        for (kind, policy) in self.kinds() {
            policy.validate().map_err(|e| PolicySetError {
                field: format!("{}.{}", kind.as_str(), e.field),
                reason: e.reason,
            })?;
        }
        Ok(())
    }

    /// This set with `patch` laid over it: `patch` is a JSON object of kinds, each an object of
    /// the fields to change. The result is checked, so a patch cannot make an invalid set.
    pub fn patched(&self, patch: &serde_json::Value) -> Result<PolicySet, PolicySetError> {
        let mut merged = serde_json::to_value(self).expect("a policy set serializes");
        let invalid = |field: String, reason: &str| PolicySetError {
            field,
            reason: reason.to_owned(),
        };
        let kinds = patch
            .as_object()
            .ok_or_else(|| invalid(String::new(), "expected an object of kinds"))?;
        for (kind, fields) in kinds {
            let target = merged
                .get_mut(kind)
                .and_then(|v| v.as_object_mut())
                .ok_or_else(|| {
                    invalid(
                        kind.clone(),
                        "unknown kind; expected image, text, spreadsheet, document or binary",
                    )
                })?;
            let fields = fields
                .as_object()
                .ok_or_else(|| invalid(kind.clone(), "expected an object of policy fields"))?;
            for (name, value) in fields {
                let slot = target
                    .get_mut(name)
                    .ok_or_else(|| invalid(format!("{kind}.{name}"), "unknown policy field"))?;
                let same_type =
                    (slot.is_boolean() && value.is_boolean()) || (slot.is_i64() && value.is_i64());
                if !same_type {
                    let expected = if slot.is_boolean() {
                        "expected true or false"
                    } else {
                        "expected a whole number of seconds"
                    };
                    return Err(invalid(format!("{kind}.{name}"), expected));
                }
                *slot = value.clone();
            }
        }
        let set: PolicySet =
            serde_json::from_value(merged).map_err(|e| invalid(String::new(), &e.to_string()))?;
        set.validate()?;
        Ok(set)
    }

    pub fn uniform(policy: Policy) -> Self {
        PolicySet {
            image: policy.clone(),
            text: policy.clone(),
            spreadsheet: policy.clone(),
            document: policy.clone(),
            binary: policy,
        }
    }
}

/// One stored version of a tenant's policies. Versions count from 1 per tenant; every history
/// entry that a policy decided names the version.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyVersion {
    pub version: u64,
    pub created_at: i64,
    /// Who or what made this version, e.g. "built-in defaults" or a note given with the change.
    pub note: String,
    pub set: PolicySet,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let set = PolicySet::default();
        let patched = set
            .patched(&json!({"text": {"stage_one_after_sec": 60, "keep_original": true}}))
            .unwrap();
        assert_eq!(patched.text.stage_one_after_sec, 60);
        assert!(patched.text.keep_original);
        assert_eq!(patched.image, set.image);
        assert_eq!(patched.text.stub_after_sec, set.text.stub_after_sec);
    }

    #[test]
    fn patch_errors_name_the_field() {
        let set = PolicySet::default();
        let cases = [
            (json!({"video": {}}), "video"),
            (
                json!({"text": {"stage_one_after": 1}}),
                "text.stage_one_after",
            ),
            (
                json!({"text": {"stage_one_after_sec": "soon"}}),
                "text.stage_one_after_sec",
            ),
            (json!({"text": {"keep_original": 1}}), "text.keep_original"),
            (
                json!({"text": {"stage_one_after_sec": -5}}),
                "text.stage_one_after_sec",
            ),
            (
                json!({"image": {"stub_after_sec": 100_000, "stage_two_after_sec": 200_000}}),
                "image.stub_after_sec",
            ),
            (
                json!({"binary": {"heat_half_life_sec": 0}}),
                "binary.heat_half_life_sec",
            ),
            (json!({"text": 5}), "text"),
        ];
        for (patch, field) in cases {
            let err = set.patched(&patch).unwrap_err();
            assert_eq!(err.field, field, "{patch}: {err}");
            assert!(!err.reason.is_empty());
        }
    }
}
