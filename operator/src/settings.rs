//! The Mesh's certificate settings, converted once at the edge and validated.

use std::time::Duration;

use plexus_crds::mesh::MeshSpec;

/// Shortest certificate lifetime accepted (tests use two minutes).
pub const MIN_TTL: Duration = Duration::from_secs(60);

/// What the certificate authority needs from the Mesh.
#[derive(Debug, Clone, PartialEq)]
pub struct CaSettings {
    /// Trust domain of SPIFFE IDs.
    pub trust_domain: String,
    /// Lifetime of workload (and webhook) certificates.
    pub workload_ttl: Duration,
    /// Share of a workload certificate's life after which it is renewed.
    pub workload_renewal_fraction: f64,
    /// Lifetime of generated roots.
    pub root_ttl: Duration,
    /// Share of a root's life after which it is rotated.
    pub root_renewal_fraction: f64,
}

impl Default for CaSettings {
    fn default() -> Self {
        Self::try_from(&MeshSpec::default())
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

impl TryFrom<&MeshSpec> for CaSettings {
    type Error = String;

    /// Fails with a message naming the field.
    fn try_from(spec: &MeshSpec) -> Result<Self, String> {
        let certificates = &spec.certificates;
        let ttl = |field: &str, value: &plexus_crds::common::Duration| {
            let ttl = value
                .parse()
                .map_err(|e| format!("spec.certificates.{field}: {e}"))?;
            if ttl < MIN_TTL {
                return Err(format!(
                    "spec.certificates.{field}: {value} is shorter than the minimum of 1m"
                ));
            }
            Ok(ttl)
        };
        let fraction = |field: &str, value: f64| {
            if value > 0.0 && value < 1.0 {
                Ok(value)
            } else {
                Err(format!(
                    "spec.certificates.{field}: {value} is not between 0 and 1 (exclusive)"
                ))
            }
        };
        let trust_domain = spec.trust_domain.trim();
        let valid_domain = !trust_domain.is_empty()
            && trust_domain.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-' || c == '_'
            });
        if !valid_domain {
            return Err(format!(
                "spec.trustDomain: {:?} is not a trust domain (lower-case letters, digits, '.', '-' and '_')",
                spec.trust_domain
            ));
        }
        let settings = Self {
            trust_domain: trust_domain.to_owned(),
            workload_ttl: ttl("workloadTtl", &certificates.workload_ttl)?,
            workload_renewal_fraction: fraction(
                "workloadRenewalFraction",
                certificates.workload_renewal_fraction,
            )?,
            root_ttl: ttl("rootTtl", &certificates.root_ttl)?,
            root_renewal_fraction: fraction(
                "rootRenewalFraction",
                certificates.root_renewal_fraction,
            )?,
        };
        if settings.root_ttl <= settings.workload_ttl {
            return Err(format!(
                "spec.certificates.rootTtl: {} must be longer than workloadTtl ({})",
                certificates.root_ttl, certificates.workload_ttl
            ));
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_day_and_a_year() {
        let settings = CaSettings::default();
        assert_eq!(settings.trust_domain, "cluster.local");
        assert_eq!(settings.workload_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(settings.root_ttl, Duration::from_secs(8760 * 3600));
    }

    #[test]
    fn invalid_settings_name_their_field() {
        let mut spec = MeshSpec::default();
        spec.certificates.workload_ttl = "2x".into();
        assert!(
            CaSettings::try_from(&spec)
                .expect_err("bad ttl")
                .starts_with("spec.certificates.workloadTtl")
        );
        let mut spec = MeshSpec::default();
        spec.certificates.workload_ttl = "30s".into();
        assert!(
            CaSettings::try_from(&spec)
                .expect_err("short")
                .contains("minimum")
        );
        let mut spec = MeshSpec::default();
        spec.certificates.root_renewal_fraction = 1.5;
        assert!(
            CaSettings::try_from(&spec)
                .expect_err("fraction")
                .starts_with("spec.certificates.rootRenewalFraction")
        );
        let spec = MeshSpec {
            trust_domain: "Bad/Domain".into(),
            ..Default::default()
        };
        assert!(
            CaSettings::try_from(&spec)
                .expect_err("domain")
                .starts_with("spec.trustDomain")
        );
        let mut spec = MeshSpec::default();
        spec.certificates.root_ttl = "1h".into();
        spec.certificates.workload_ttl = "2h".into();
        assert!(
            CaSettings::try_from(&spec)
                .expect_err("order")
                .contains("longer than workloadTtl")
        );
    }

    #[test]
    fn two_minute_certificates_for_tests() {
        let mut spec = MeshSpec::default();
        spec.certificates.workload_ttl = "2m".into();
        assert_eq!(
            CaSettings::try_from(&spec).expect("valid").workload_ttl,
            Duration::from_secs(120)
        );
    }
}
