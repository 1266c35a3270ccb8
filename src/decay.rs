//! The pure stage rules: functions of (state, policy, now), no I/O. Stages: 0 hot, 1 warm,
//! 2 cold, 3 stub, 4 purged.

use crate::policy::Policy;

pub const PURGED: u8 = 4;

/// What the rules need to know about one object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecayState {
    pub stage: u8,
    pub created_at: i64,
    pub last_access_at: i64,
    /// When the object entered its current stage.
    pub stage_since: i64,
    pub pinned: bool,
    pub hold: bool,
    pub speed: f64,
    /// Forced-tick progress towards the next stage, in stages (0 <= progress < 1 between ticks).
    pub progress: f64,
}

/// Why an object does not decay now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    Purged,
    Hold,
    Pinned,
    MinRetention { until: i64 },
}

pub fn guard(s: &DecayState, p: &Policy, now: i64) -> Option<Guard> {
    if s.stage >= PURGED {
        Some(Guard::Purged)
    } else if s.hold {
        Some(Guard::Hold)
    } else if s.pinned {
        Some(Guard::Pinned)
    } else if now < s.created_at + p.min_retention_sec {
        Some(Guard::MinRetention {
            until: s.created_at + p.min_retention_sec,
        })
    } else {
        None
    }
}

fn speed(s: &DecayState) -> f64 {
    if s.speed.is_finite() && s.speed > 0.0 {
        s.speed
    } else {
        1.0
    }
}

/// When `target` is due on the wall clock: age thresholds are divided by speed, purge also
/// waits out the grace period at the stub stage, and nothing is due before min retention.
fn due_at(s: &DecayState, p: &Policy, target: u8) -> i64 {
    let scaled = (p.after_sec(target) as f64 / speed(s)).ceil() as i64;
    let mut at = s.last_access_at.saturating_add(scaled);
    if target == PURGED {
        at = at.max(s.stage_since.saturating_add(p.grace_delete_sec));
    }
    at.max(s.created_at.saturating_add(p.min_retention_sec))
}

/// The next time the object must be looked at, or None when nothing will happen by itself.
pub fn next_decay_at(s: &DecayState, p: &Policy) -> Option<i64> {
    if s.stage >= PURGED || s.hold || s.pinned {
        return None;
    }
    Some(due_at(s, p, s.stage + 1))
}

/// The stage the wall clock says the object should be at now (never lower than its stage).
/// A purge is reached only from the stub stage, so the stub lives out its grace period.
pub fn due_stage(s: &DecayState, p: &Policy, now: i64) -> u8 {
    if guard(s, p, now).is_some() {
        return s.stage;
    }
    let mut target = s.stage;
    while target < PURGED && now >= due_at(s, p, target + 1) {
        if target + 1 == PURGED && s.stage < 3 {
            break;
        }
        target += 1;
    }
    target
}

/// A forced tick: add speed to the progress counter; each whole unit is one stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForcedStep {
    pub target: u8,
    pub progress: f64,
}

pub fn forced_step(s: &DecayState, p: &Policy, now: i64) -> ForcedStep {
    if guard(s, p, now).is_some() {
        return ForcedStep {
            target: s.stage,
            progress: s.progress,
        };
    }
    let total = s.progress + speed(s);
    // Guard against float dust: 0.5 + 0.5 must be exactly one stage.
    let whole = (total + 1e-9).floor();
    let target = (s.stage as f64 + whole).min(PURGED as f64) as u8;
    let progress = if target == PURGED {
        0.0
    } else {
        (total - whole).max(0.0)
    };
    ForcedStep { target, progress }
}

/// Whether the bytes at `stage` of `kind` are the original's (so restore needs no kept copy).
pub fn stage_is_lossless(binary: bool, stage: u8) -> bool {
    stage == 0 || (binary && stage == 1)
}

/// The largest per-object decay speed.
pub const MAX_SPEED: f64 = 100.0;

/// A per-object speed must be a finite number in (0, MAX_SPEED].
pub fn check_speed(speed: f64) -> Result<(), String> {
    if speed.is_finite() && speed > 0.0 && speed <= MAX_SPEED {
        Ok(())
    } else {
        Err(format!(
            "speed must be a finite number greater than 0 and at most {MAX_SPEED}, got {speed}"
        ))
    }
}

/// Where an exact restore can come from, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreSource {
    /// Already at stage 0: nothing to do.
    Current,
    /// The current artifact decodes to the original (a lossless stage).
    Lossless,
    /// The kept original, inside its window.
    KeptOriginal,
    /// Nothing exact is left.
    None,
}

pub fn restore_source(
    stage: u8,
    lossless: bool,
    kept_original: bool,
    restore_until: Option<i64>,
    now: i64,
) -> RestoreSource {
    if stage == 0 {
        RestoreSource::Current
    } else if stage >= PURGED {
        RestoreSource::None
    } else if kept_original && restore_until.is_none_or(|u| now < u) {
        RestoreSource::KeptOriginal
    } else if lossless {
        RestoreSource::Lossless
    } else {
        RestoreSource::None
    }
}

/// Exponentially decayed heat at `now`.
pub fn heat_at(heat: f64, heat_time: i64, now: i64, half_life_sec: i64) -> f64 {
    if now <= heat_time || half_life_sec <= 0 {
        return heat;
    }
    heat * (0.5f64).powf((now - heat_time) as f64 / half_life_sec as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            stage_one_after_sec: 100,
            stage_two_after_sec: 200,
            stub_after_sec: 300,
            delete_after_sec: 400,
            min_retention_sec: 0,
            grace_delete_sec: 0,
            access_cooldown_sec: 0,
            restore_window_sec: 50,
            keep_original: false,
            heat_half_life_sec: 10,
        }
    }

    fn state(stage: u8) -> DecayState {
        DecayState {
            stage,
            created_at: 0,
            last_access_at: 0,
            stage_since: 0,
            pinned: false,
            hold: false,
            speed: 1.0,
            progress: 0.0,
        }
    }

    #[test]
    fn wall_clock_thresholds() {
        let p = policy();
        // (stage, now, expected stage)
        let table = [
            (0, 99, 0),
            (0, 100, 1),
            (0, 199, 1),
            (0, 200, 2),
            (0, 300, 3),
            (0, 10_000, 3), // purge only from the stub stage
            (3, 399, 3),
            (3, 400, 4),
            (2, 250, 2),
            (4, 10_000, 4),
        ];
        for (stage, now, want) in table {
            assert_eq!(
                due_stage(&state(stage), &p, now),
                want,
                "stage {stage} at {now}"
            );
        }
    }

    #[test]
    fn next_decay_follows_last_access_and_speed() {
        let p = policy();
        let mut s = state(1);
        s.last_access_at = 1_000;
        assert_eq!(next_decay_at(&s, &p), Some(1_200));
        s.speed = 2.0;
        assert_eq!(next_decay_at(&s, &p), Some(1_100));
        s.speed = 0.5;
        assert_eq!(next_decay_at(&s, &p), Some(1_400));
        s.stage = 4;
        assert_eq!(next_decay_at(&s, &p), None);
    }

    #[test]
    fn speed_divides_thresholds_on_the_wall_clock() {
        let p = policy();
        let mut s = state(0);
        s.speed = 2.0;
        assert_eq!(due_stage(&s, &p, 50), 1);
        assert_eq!(due_stage(&s, &p, 49), 0);
        s.speed = 0.5;
        assert_eq!(due_stage(&s, &p, 199), 0);
        assert_eq!(due_stage(&s, &p, 200), 1);
    }

    #[test]
    fn pin_hold_and_min_retention_block_everything() {
        let mut p = policy();
        let mut s = state(0);
        s.pinned = true;
        assert_eq!(due_stage(&s, &p, 10_000), 0);
        assert_eq!(forced_step(&s, &p, 10_000).target, 0);
        assert_eq!(next_decay_at(&s, &p), None);
        s.pinned = false;
        s.hold = true;
        assert_eq!(due_stage(&s, &p, 10_000), 0);
        assert_eq!(forced_step(&s, &p, 10_000).target, 0);
        s.hold = false;
        p.min_retention_sec = 500;
        assert_eq!(guard(&s, &p, 499), Some(Guard::MinRetention { until: 500 }));
        assert_eq!(forced_step(&s, &p, 499).target, 0);
        assert_eq!(due_stage(&s, &p, 499), 0);
        assert_eq!(due_stage(&s, &p, 500), 3);
        assert_eq!(next_decay_at(&s, &p), Some(500));
    }

    #[test]
    fn grace_delays_purge_after_the_stub() {
        let mut p = policy();
        p.grace_delete_sec = 1_000;
        let mut s = state(3);
        s.stage_since = 300;
        assert_eq!(due_stage(&s, &p, 1_299), 3);
        assert_eq!(due_stage(&s, &p, 1_300), 4);
        assert_eq!(next_decay_at(&s, &p), Some(1_300));
    }

    #[test]
    fn forced_ticks_follow_speed() {
        let p = policy();
        let mut s = state(0);
        s.speed = 0.5;
        let one = forced_step(&s, &p, 0);
        assert_eq!((one.target, one.progress), (0, 0.5));
        s.progress = one.progress;
        let two = forced_step(&s, &p, 0);
        assert_eq!((two.target, two.progress), (1, 0.0));

        let mut s = state(0);
        s.speed = 2.0;
        assert_eq!(forced_step(&s, &p, 0).target, 2);
        s.stage = 3;
        assert_eq!(forced_step(&s, &p, 0).target, 4);
        s.speed = 1.5;
        s.stage = 0;
        let a = forced_step(&s, &p, 0);
        assert_eq!((a.target, a.progress), (1, 0.5));
    }

    #[test]
    fn lossless_stages() {
        assert!(stage_is_lossless(false, 0));
        assert!(!stage_is_lossless(false, 1));
        assert!(stage_is_lossless(true, 1));
        assert!(!stage_is_lossless(true, 2));
    }

    #[test]
    fn speed_bounds() {
        for bad in [0.0, -1.0, 100.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(check_speed(bad).is_err(), "{bad} accepted");
        }
        for good in [0.01, 0.5, 1.0, 2.0, 100.0] {
            assert!(check_speed(good).is_ok(), "{good} rejected");
        }
    }

    #[test]
    fn restore_windows() {
        use RestoreSource as R;
        // (stage, lossless, kept, until, now, expected)
        let table = [
            (0, true, false, None, 10, R::Current),
            (1, false, true, Some(100), 99, R::KeptOriginal),
            (1, false, true, Some(100), 100, R::None),
            (2, false, false, None, 10, R::None),
            (1, true, false, None, 10, R::Lossless),
            (2, true, true, Some(5), 10, R::Lossless),
            (4, true, true, Some(100), 10, R::None),
        ];
        for (stage, lossless, kept, until, now, want) in table {
            assert_eq!(
                restore_source(stage, lossless, kept, until, now),
                want,
                "{stage} {lossless} {kept} {until:?} {now}"
            );
        }
    }

    #[test]
    fn heat_halves_per_half_life() {
        assert!((heat_at(8.0, 0, 10, 10) - 4.0).abs() < 1e-9);
        assert!((heat_at(8.0, 0, 30, 10) - 1.0).abs() < 1e-9);
        assert_eq!(heat_at(8.0, 50, 40, 10), 8.0);
    }
}
