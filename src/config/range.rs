//! The range checks every numeric key goes through, with the startup error each failure gives.

use std::fmt;
use std::time::Duration;

use super::ConfigError;

pub fn positive<T: PartialOrd + Default + fmt::Display>(
    key: &str,
    value: T,
) -> Result<T, ConfigError> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError(format!(
            "{key} must be greater than zero, got {value}"
        )))
    }
}

/// `value`, or `<key> must be between <min> and <max>` (TURNS §27's wording for every ranged key).
pub fn in_range<T: PartialOrd + fmt::Display>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    if value >= min && value <= max {
        Ok(value)
    } else {
        Err(ConfigError(format!(
            "{key} must be between {min} and {max}"
        )))
    }
}

/// A ranged number of seconds.
pub fn seconds(key: &str, value: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    in_range(key, value, min, max).map(Duration::from_secs)
}
