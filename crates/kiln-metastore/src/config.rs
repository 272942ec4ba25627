//! When blocks are compacted and how long a worker holds a job: the compaction settings the
//! leader puts in every poll command, so that every node plans the same jobs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When the blocks of one level are compacted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelConfig {
    /// A job is planned once this many blocks of one (tenant, shard) wait; a job takes at most
    /// this many, oldest first.
    pub max_blocks: u32,
    /// A job is also planned once the oldest waiting block is this old (by the time in its id).
    pub max_age: Duration,
}

/// The compaction settings. They travel in the log's poll commands: a field added later must
/// take its default in older entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompactionConfig {
    /// One entry per compacted level, from level 0 (segments) up; blocks of level `levels.len()`
    /// are final and never compacted.
    pub levels: Vec<LevelConfig>,
    /// How long a job stays with its worker without a report.
    pub lease: Duration,
    /// Failures (reported, or leases that ended) after which a job is parked.
    pub max_failures: u32,
}

impl Default for CompactionConfig {
    /// Levels 0, 1 and 2 are compacted: 20 blocks or 30 s, 10 blocks or 10 min, 10 blocks or
    /// 3 h; level 3 is final. Leases of 15 s, parked after 3 failures.
    fn default() -> Self {
        let level = |max_blocks, secs| LevelConfig {
            max_blocks,
            max_age: Duration::from_secs(secs),
        };
        Self {
            levels: vec![level(20, 30), level(10, 600), level(10, 3 * 3_600)],
            lease: Duration::from_secs(15),
            max_failures: 3,
        }
    }
}

/// A `--compaction.levels` value that does not parse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LevelsError {
    /// No level at all.
    #[error(
        "compaction levels {0:?} are empty: expected count/age per level, such as 20/30s,10/10m,10/3h"
    )]
    Empty(String),
    /// A level without a `/`.
    #[error("compaction level {0:?} is not count/age, such as 20/30s")]
    NotCountAge(String),
    /// A count that is not a whole number of at least 1.
    #[error(
        "compaction level {level:?}: block count {count:?} is not a whole number of at least 1"
    )]
    Count {
        /// The level as written.
        level: String,
        /// The count as written.
        count: String,
    },
    /// An age that is not a duration.
    #[error(
        "compaction level {level:?}: age {age:?} is not a duration such as 500ms, 30s, 10m, 3h or 1d"
    )]
    Age {
        /// The level as written.
        level: String,
        /// The age as written.
        age: String,
    },
}

impl CompactionConfig {
    /// Parses levels written as `count/age` per level from level 0 up, separated by commas, as
    /// in `20/30s,10/10m,10/3h` (the default). Ages take `ms`, `s`, `m`, `h` or `d`.
    pub fn parse_levels(spec: &str) -> Result<Vec<LevelConfig>, LevelsError> {
        if spec.trim().is_empty() {
            return Err(LevelsError::Empty(spec.to_string()));
        }
        spec.split(',')
            .map(|level| {
                let level = level.trim();
                let (count, age) = level
                    .split_once('/')
                    .ok_or_else(|| LevelsError::NotCountAge(level.to_string()))?;
                let max_blocks = count
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| LevelsError::Count {
                        level: level.to_string(),
                        count: count.to_string(),
                    })?;
                let max_age = parse_age(age.trim()).ok_or_else(|| LevelsError::Age {
                    level: level.to_string(),
                    age: age.to_string(),
                })?;
                Ok(LevelConfig {
                    max_blocks,
                    max_age,
                })
            })
            .collect()
    }

    /// The settings of `level`, or `None` when its blocks are final.
    pub fn level(&self, level: u32) -> Option<&LevelConfig> {
        self.levels.get(level as usize)
    }

    /// The level of final blocks: one above the last compacted level.
    pub fn top_level(&self) -> u32 {
        self.levels.len() as u32
    }

    /// The lease duration in milliseconds.
    pub(crate) fn lease_millis(&self) -> i64 {
        self.lease.as_millis() as i64
    }
}

/// `500ms`, `30s`, `10m`, `3h`, `1d`: a whole number and a unit.
fn parse_age(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_levels_parse_to_the_default() {
        let levels = CompactionConfig::parse_levels("20/30s,10/10m,10/3h").unwrap();
        assert_eq!(levels, CompactionConfig::default().levels);
        assert_eq!(CompactionConfig::default().top_level(), 3);
        assert!(CompactionConfig::default().level(3).is_none());
    }

    #[test]
    fn tiny_levels_and_every_unit_parse() {
        let levels = CompactionConfig::parse_levels(" 2/0s , 3/250ms,1/2m,4/1h,5/1d").unwrap();
        let ages: Vec<u128> = levels.iter().map(|l| l.max_age.as_millis()).collect();
        assert_eq!(ages, [0, 250, 120_000, 3_600_000, 86_400_000]);
        let counts: Vec<u32> = levels.iter().map(|l| l.max_blocks).collect();
        assert_eq!(counts, [2, 3, 1, 4, 5]);
    }

    #[test]
    fn bad_levels_name_the_bad_part() {
        let error = |spec: &str| {
            CompactionConfig::parse_levels(spec)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error(""),
            "compaction levels \"\" are empty: expected count/age per level, such as \
             20/30s,10/10m,10/3h"
        );
        assert_eq!(
            error("20/30s,10"),
            "compaction level \"10\" is not count/age, such as 20/30s"
        );
        assert_eq!(
            error("0/30s"),
            "compaction level \"0/30s\": block count \"0\" is not a whole number of at least 1"
        );
        assert_eq!(
            error("x/30s"),
            "compaction level \"x/30s\": block count \"x\" is not a whole number of at least 1"
        );
        for age in ["30", "30x", "s", "1.5h", "-1s", ""] {
            assert_eq!(
                error(&format!("20/{age}")),
                format!(
                    "compaction level \"20/{age}\": age {age:?} is not a duration such as \
                     500ms, 30s, 10m, 3h or 1d"
                )
            );
        }
        assert!(error("20/30s,").contains("\"\" is not count/age"));
    }
}
