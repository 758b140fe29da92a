//! What a chain may do in degraded mode.

use std::time::Duration;

use crate::{DegradedConfig, Tier};

/// The degraded-mode verdict for one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Evaluate the chain on the cached data; `tier` decided (the strictest
    /// tier in the chain), and goes into the decision record.
    Evaluate { tier: Tier },
    /// Deny without evaluating.
    Deny { tier: Tier, reason: String },
}

impl Verdict {
    pub fn tier(&self) -> Tier {
        match self {
            Self::Evaluate { tier } | Self::Deny { tier, .. } => *tier,
        }
    }
}

/// Strictness order: whitelist < rbac < admin < two_person < complex.
fn rank(t: Tier) -> u8 {
    match t {
        Tier::Whitelist => 0,
        Tier::Rbac => 1,
        Tier::Admin => 2,
        Tier::TwoPerson => 3,
        Tier::Complex => 4,
    }
}

/// The verdict for a chain of `(policy name, tier)` steps when the cached
/// data is `data_age` old (`None`: nothing was ever synced).
pub fn verdict(
    steps: &[(&str, Tier)],
    data_age: Option<Duration>,
    cfg: &DegradedConfig,
) -> Verdict {
    let Some(&(policy, tier)) = steps.iter().max_by_key(|(_, t)| rank(*t)) else {
        // An empty chain allows; it reads no data.
        return Verdict::Evaluate {
            tier: Tier::Whitelist,
        };
    };
    match tier {
        Tier::TwoPerson => {
            return Verdict::Deny {
                tier,
                reason: format!(
                    "degraded mode: policy `{policy}` needs a two-person approval, which cannot be verified while the journal is unreachable"
                ),
            };
        }
        Tier::Complex => {
            return Verdict::Deny {
                tier,
                reason: format!(
                    "degraded mode: policy `{policy}` (tier complex) does not run on cached data while the journal is unreachable"
                ),
            };
        }
        Tier::Whitelist | Tier::Rbac | Tier::Admin => {}
    }
    // Every tier in the chain must be within its own age limit.
    for &(policy, t) in steps {
        let Some(limit) = cfg.max_age(t) else {
            continue;
        };
        match data_age {
            None => {
                return Verdict::Deny {
                    tier: t,
                    reason: format!(
                        "degraded mode: policy `{policy}` (tier {}) needs cached data, and none was ever synced from the journal",
                        t.as_str()
                    ),
                };
            }
            Some(age) if age > limit => {
                return Verdict::Deny {
                    tier: t,
                    reason: format!(
                        "degraded mode: cached data is {} s old, over the {} s limit of tier {} (policy `{policy}`)",
                        age.as_secs(),
                        limit.as_secs(),
                        t.as_str()
                    ),
                };
            }
            Some(_) => {}
        }
    }
    Verdict::Evaluate { tier }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DegradedConfig {
        DegradedConfig {
            max_age_whitelist: Duration::from_secs(100),
            max_age_rbac: Duration::from_secs(50),
            max_age_admin: Duration::from_secs(10),
            ..DegradedConfig::default()
        }
    }

    const FRESH: Option<Duration> = Some(Duration::from_secs(1));

    #[test]
    fn the_table_of_adr_011() {
        let c = cfg();
        let ev = |steps: &[(&str, Tier)]| verdict(steps, FRESH, &c);
        assert_eq!(
            ev(&[("allowAll", Tier::Whitelist)]),
            Verdict::Evaluate {
                tier: Tier::Whitelist
            }
        );
        assert_eq!(
            ev(&[("apiKeyAuth", Tier::Rbac), ("rateLimit", Tier::Whitelist)]),
            Verdict::Evaluate { tier: Tier::Rbac }
        );
        assert_eq!(
            ev(&[("roleCheck", Tier::Rbac), ("platformAdmin", Tier::Admin)]),
            Verdict::Evaluate { tier: Tier::Admin }
        );
        let two = ev(&[
            ("apiKeyAuth", Tier::Rbac),
            ("twoPersonApproval", Tier::TwoPerson),
        ]);
        assert_eq!(two.tier(), Tier::TwoPerson);
        assert!(
            matches!(&two, Verdict::Deny { reason, .. } if reason.contains("twoPersonApproval"))
        );
        let complex = ev(&[
            ("custom", Tier::Complex),
            ("twoPersonApproval", Tier::TwoPerson),
        ]);
        assert_eq!(complex.tier(), Tier::Complex);
        assert!(matches!(&complex, Verdict::Deny { reason, .. } if reason.contains("`custom`")));
        assert_eq!(
            ev(&[]),
            Verdict::Evaluate {
                tier: Tier::Whitelist
            }
        );
    }

    #[test]
    fn each_tier_denies_past_its_own_maximum_age() {
        let c = cfg();
        let steps = [("apiKeyAuth", Tier::Rbac), ("rateLimit", Tier::Whitelist)];
        assert_eq!(
            verdict(&steps, Some(Duration::from_secs(50)), &c),
            Verdict::Evaluate { tier: Tier::Rbac }
        );
        let old = verdict(&steps, Some(Duration::from_secs(51)), &c);
        assert!(
            matches!(&old, Verdict::Deny { tier: Tier::Rbac, reason } if reason.contains("51 s old")),
            "{old:?}"
        );
        // Whitelist alone still runs at that age.
        assert_eq!(
            verdict(&steps[1..], Some(Duration::from_secs(51)), &c),
            Verdict::Evaluate {
                tier: Tier::Whitelist
            }
        );
        let never = verdict(&steps[1..], None, &c);
        assert!(
            matches!(&never, Verdict::Deny { tier: Tier::Whitelist, reason } if reason.contains("ever synced"))
        );
    }
}
