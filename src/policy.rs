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

    pub fn validate(&self) -> Result<(), String> {
        let ladder = [
            ("stage_one_after_sec", self.stage_one_after_sec),
            ("stage_two_after_sec", self.stage_two_after_sec),
            ("stub_after_sec", self.stub_after_sec),
            ("delete_after_sec", self.delete_after_sec),
        ];
        for (name, v) in ladder {
            if v < 0 {
                return Err(format!("{name} must not be negative"));
            }
        }
        for pair in ladder.windows(2) {
            if pair[1].1 < pair[0].1 {
                return Err(format!("{} must be at least {}", pair[1].0, pair[0].0));
            }
        }
        for (name, v) in [
            ("min_retention_sec", self.min_retention_sec),
            ("grace_delete_sec", self.grace_delete_sec),
            ("access_cooldown_sec", self.access_cooldown_sec),
            ("restore_window_sec", self.restore_window_sec),
        ] {
            if v < 0 {
                return Err(format!("{name} must not be negative"));
            }
        }
        if self.heat_half_life_sec <= 0 {
            return Err("heat_half_life_sec must be positive".into());
        }
        Ok(())
    }
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
