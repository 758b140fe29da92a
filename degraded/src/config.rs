//! The agent's `degraded:` settings.
//!
//! ```yaml
//! degraded:
//!   enter_after_ms: 3000     # partitioned this long -> degraded
//!   exit_after_ms: 5000      # connected this long -> normal again
//!   max_age_s:               # cached data older than this: the tier denies
//!     whitelist: 86400
//!     rbac: 3600
//!     admin: 900
//!   emergency:               # break-glass; absent: not available
//!     token_sha256: "<64 hex>"
//!     max_ttl_s: 3600
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::Tier;

/// Degraded-mode settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DegradedConfig {
    /// How long the journal must be unreachable before the agent degrades
    /// (a blip shorter than this changes nothing).
    pub enter_after: Duration,
    /// How long the journal must be reachable again before the agent leaves
    /// degraded mode.
    pub exit_after: Duration,
    /// Maximum age of the cached data per tier that may run degraded.
    pub max_age_whitelist: Duration,
    pub max_age_rbac: Duration,
    pub max_age_admin: Duration,
    /// Break-glass settings; `None`: emergency mode cannot be enabled.
    pub emergency: Option<EmergencyConfig>,
}

/// Who may enable emergency mode, and for how long at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencyConfig {
    /// SHA-256 of the emergency token (32 bytes).
    pub token_sha256: [u8; 32],
    pub max_ttl: Duration,
}

impl Default for DegradedConfig {
    fn default() -> Self {
        Self {
            enter_after: Duration::from_secs(3),
            exit_after: Duration::from_secs(5),
            max_age_whitelist: Duration::from_secs(24 * 3600),
            max_age_rbac: Duration::from_secs(3600),
            max_age_admin: Duration::from_secs(900),
            emergency: None,
        }
    }
}

impl DegradedConfig {
    /// The maximum data age for `tier`; `None` for the tiers that never run
    /// degraded.
    pub fn max_age(&self, tier: Tier) -> Option<Duration> {
        match tier {
            Tier::Whitelist => Some(self.max_age_whitelist),
            Tier::Rbac => Some(self.max_age_rbac),
            Tier::Admin => Some(self.max_age_admin),
            Tier::TwoPerson | Tier::Complex => None,
        }
    }
}

/// The YAML form; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDegradedConfig {
    pub enter_after_ms: Option<u64>,
    pub exit_after_ms: Option<u64>,
    #[serde(default)]
    pub max_age_s: RawMaxAge,
    #[serde(default)]
    pub emergency: Option<RawEmergency>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmergency {
    pub token_sha256: String,
    #[serde(default = "default_max_ttl")]
    pub max_ttl_s: u64,
}

const fn default_max_ttl() -> u64 {
    3600
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaxAge {
    pub whitelist: Option<u64>,
    pub rbac: Option<u64>,
    pub admin: Option<u64>,
}

impl TryFrom<RawDegradedConfig> for DegradedConfig {
    type Error = String;

    fn try_from(raw: RawDegradedConfig) -> Result<Self, String> {
        let d = Self::default();
        let ms = |v: Option<u64>, default: Duration, name: &str| match v {
            Some(0) => Err(format!("degraded.{name} must be > 0")),
            Some(v) => Ok(Duration::from_millis(v)),
            None => Ok(default),
        };
        let s = |v: Option<u64>, default: Duration, name: &str| match v {
            Some(0) => Err(format!("degraded.max_age_s.{name} must be > 0")),
            Some(v) => Ok(Duration::from_secs(v)),
            None => Ok(default),
        };
        Ok(Self {
            enter_after: ms(raw.enter_after_ms, d.enter_after, "enter_after_ms")?,
            exit_after: ms(raw.exit_after_ms, d.exit_after, "exit_after_ms")?,
            max_age_whitelist: s(raw.max_age_s.whitelist, d.max_age_whitelist, "whitelist")?,
            max_age_rbac: s(raw.max_age_s.rbac, d.max_age_rbac, "rbac")?,
            max_age_admin: s(raw.max_age_s.admin, d.max_age_admin, "admin")?,
            emergency: match raw.emergency {
                None => None,
                Some(e) => {
                    let bytes = decode_hex32(&e.token_sha256).ok_or_else(|| {
                        "degraded.emergency.token_sha256 must be 64 hex digits (the SHA-256 of the token)"
                            .to_string()
                    })?;
                    if e.max_ttl_s == 0 || e.max_ttl_s > 7 * 24 * 3600 {
                        return Err(
                            "degraded.emergency.max_ttl_s must be between 1 and 604800".into()
                        );
                    }
                    Some(EmergencyConfig {
                        token_sha256: bytes,
                        max_ttl: Duration::from_secs(e.max_ttl_s),
                    })
                }
            },
        })
    }
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let raw: RawDegradedConfig =
            from_json(r#"{"enter_after_ms": 100, "max_age_s": {"rbac": 60}}"#);
        let c = DegradedConfig::try_from(raw).unwrap();
        assert_eq!(c.enter_after, Duration::from_millis(100));
        assert_eq!(c.exit_after, DegradedConfig::default().exit_after);
        assert_eq!(c.max_age(Tier::Rbac), Some(Duration::from_secs(60)));
        assert_eq!(c.max_age(Tier::Complex), None);
        assert_eq!(c.max_age(Tier::TwoPerson), None);
    }

    #[test]
    fn emergency_settings() {
        let hex = "ab".repeat(32);
        let raw: RawDegradedConfig = from_json(&format!(
            r#"{{"emergency": {{"token_sha256": "{hex}", "max_ttl_s": 60}}}}"#
        ));
        let e = DegradedConfig::try_from(raw).unwrap().emergency.unwrap();
        assert_eq!(e.token_sha256, [0xab; 32]);
        assert_eq!(e.max_ttl, Duration::from_secs(60));
        for bad in [
            r#"{"emergency": {"token_sha256": "abc"}}"#,
            r#"{"emergency": {"token_sha256": "zz"}}"#,
        ] {
            let raw: RawDegradedConfig = from_json(bad);
            assert!(
                DegradedConfig::try_from(raw)
                    .unwrap_err()
                    .contains("token_sha256")
            );
        }
        let raw: RawDegradedConfig = from_json(&format!(
            r#"{{"emergency": {{"token_sha256": "{hex}", "max_ttl_s": 0}}}}"#
        ));
        assert!(
            DegradedConfig::try_from(raw)
                .unwrap_err()
                .contains("max_ttl_s")
        );
    }

    #[test]
    fn zero_and_unknown_fields_are_refused() {
        let raw: RawDegradedConfig = from_json(r#"{"exit_after_ms": 0}"#);
        assert!(
            DegradedConfig::try_from(raw)
                .unwrap_err()
                .contains("exit_after_ms")
        );
        let raw: RawDegradedConfig = from_json(r#"{"max_age_s": {"admin": 0}}"#);
        assert!(DegradedConfig::try_from(raw).unwrap_err().contains("admin"));
        assert!(serde_json::from_str::<RawDegradedConfig>(r#"{"enter_after": 1}"#).is_err());
        assert!(
            serde_json::from_str::<RawDegradedConfig>(r#"{"max_age_s": {"complex": 1}}"#).is_err()
        );
    }

    #[allow(clippy::unwrap_used)]
    fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }
}
