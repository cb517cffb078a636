//! What a verdict says in a resource's status: `Accepted` (valid, and what
//! of it the proxy does not enforce) and `Programmed` (what is in force, in
//! how many configurations and proxies). What is enforced comes from the
//! proxy's capability list alone; a security resource the proxies cannot
//! fully enforce is never `Programmed`.

use std::collections::BTreeMap;

use plexus_config::capability;

use super::Verdict;

/// A condition's status, reason and message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConditionParts {
    /// True or false.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// For humans; names fields.
    pub message: String,
}

/// Reason of `Programmed=False` when what is not enforced keeps the
/// resource (or all of it) out of force.
pub const NOT_ENFORCED: &str = "NotEnforced";
/// Reason of `Programmed=False` when a RequestAuthentication's keys could
/// not be fetched: its tokens are refused until they are.
pub const KEYS_UNAVAILABLE: &str = "KeysUnavailable";

impl Verdict {
    /// The `Accepted` condition.
    pub fn accepted(&self) -> ConditionParts {
        match &self.acceptance {
            Err(rejection) => ConditionParts {
                status: false,
                reason: rejection.reason.into(),
                message: rejection.message.clone(),
            },
            Ok(accepted) => {
                let mut message = if accepted.unenforced.is_empty() {
                    "Valid; the proxy enforces every field it sets.".to_owned()
                } else {
                    format!(
                        "Valid; not enforced by the proxy yet: {}.",
                        accepted.unenforced.join(", ")
                    )
                };
                for note in &accepted.notes {
                    message.push_str(&format!(" Note: {note}."));
                }
                ConditionParts {
                    status: true,
                    reason: if accepted.unenforced.is_empty() {
                        "Accepted".into()
                    } else {
                        "UnimplementedFields".into()
                    },
                    message,
                }
            }
        }
    }

    /// Whether the status should warn that a security resource is not
    /// enforced (a Warning Event goes with it).
    pub fn not_enforced_security(&self) -> bool {
        capability::of(self.kind.as_str()).security
            && self
                .acceptance
                .as_ref()
                .is_ok_and(|a| !a.unenforced.is_empty())
    }

    /// The `Programmed` condition, given the proxies per namespace.
    pub fn programmed(&self, proxies: &BTreeMap<String, usize>) -> ConditionParts {
        let accepted = match &self.acceptance {
            Err(_) => {
                return ConditionParts {
                    status: false,
                    reason: "NotAccepted".into(),
                    message: "Not part of any proxy configuration: see Accepted.".into(),
                };
            }
            Ok(accepted) => accepted,
        };
        let missing = accepted.unenforced.join(", ");
        let meanwhile = accepted
            .meanwhile
            .as_ref()
            .map(|m| format!(" {m}"))
            .unwrap_or_default();
        let not_enforced = |message: String| ConditionParts {
            status: false,
            reason: NOT_ENFORCED.into(),
            message,
        };
        if let Some(why) = &accepted.unavailable {
            return ConditionParts {
                status: false,
                reason: KEYS_UNAVAILABLE.into(),
                message: why.clone(),
            };
        }
        if self.not_enforced_security() {
            return not_enforced(format!(
                "Not enforced: the proxies cannot enforce {missing} yet.{meanwhile}"
            ));
        }
        if !accepted.enforced_any && !accepted.unenforced.is_empty() {
            return not_enforced(format!(
                "Not in force: no proxy acts on {missing} yet.{meanwhile}"
            ));
        }
        if self.programmed.is_empty() {
            if !accepted.unenforced.is_empty() {
                return not_enforced(format!(
                    "Not in force: no proxy configuration includes it, and the proxy does not enforce {missing} yet.{meanwhile}"
                ));
            }
            return ConditionParts {
                status: false,
                reason: "NoProxies".into(),
                message: "No proxy configuration includes it: no namespace it applies to has injection enabled, or a resource in force takes precedence.".into(),
            };
        }
        let count: usize = self
            .programmed
            .iter()
            .filter_map(|ns| proxies.get(ns))
            .sum();
        let namespaces: Vec<&str> = self.programmed.iter().map(String::as_str).collect();
        let mut message = format!(
            "In the configuration of {} ConfigMap(s) ({}), read by {count} proxies",
            namespaces.len(),
            namespaces.join(", ")
        );
        if accepted.unenforced.is_empty() {
            message.push('.');
        } else {
            message.push_str(&format!("; not in force: {missing}."));
        }
        ConditionParts {
            status: true,
            reason: "Programmed".into(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::{Accepted, Kind};
    use super::*;

    fn verdict(
        kind: Kind,
        unenforced: &[&str],
        enforced_any: bool,
        programmed: &[&str],
    ) -> Verdict {
        Verdict {
            kind,
            generation: Some(1),
            acceptance: Ok(Accepted {
                unenforced: unenforced.iter().map(|s| (*s).to_owned()).collect(),
                enforced_any,
                meanwhile: None,
                notes: Vec::new(),
                unavailable: None,
            }),
            programmed: programmed
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<BTreeSet<_>>(),
        }
    }

    #[test]
    fn status_claims_only_what_is_enforced() {
        let proxies = BTreeMap::from([("demo".to_owned(), 3)]);
        let full = verdict(Kind::VirtualService, &[], true, &["demo"]);
        assert_eq!(full.accepted().reason, "Accepted");
        assert_eq!(
            full.programmed(&proxies).message,
            "In the configuration of 1 ConfigMap(s) (demo), read by 3 proxies."
        );
        let partial = verdict(
            Kind::DestinationRule,
            &["spec.trafficPolicy.connectionPool"],
            true,
            &["demo"],
        );
        assert_eq!(partial.accepted().reason, "UnimplementedFields");
        let programmed = partial.programmed(&proxies);
        assert!(programmed.status);
        assert!(
            programmed
                .message
                .ends_with("; not in force: spec.trafficPolicy.connectionPool."),
            "{}",
            programmed.message
        );
        // A security resource: all or nothing.
        let policy = verdict(Kind::AuthorizationPolicy, &["spec.rules"], true, &["demo"]);
        let programmed = policy.programmed(&proxies);
        assert_eq!(
            (programmed.status, programmed.reason.as_str()),
            (false, NOT_ENFORCED)
        );
        assert!(policy.not_enforced_security());
        // Nothing of it in force.
        let telemetry = verdict(Kind::Telemetry, &["spec.tracing"], false, &["demo"]);
        assert_eq!(telemetry.programmed(&proxies).reason, NOT_ENFORCED);
        assert!(!telemetry.not_enforced_security());
    }
}
