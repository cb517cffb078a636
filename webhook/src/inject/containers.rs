//! What injection adds to a pod: the init container, the proxy container
//! and their volumes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, DownwardAPIVolumeFile,
    DownwardAPIVolumeSource, EnvVar, EnvVarSource, ExecAction, HTTPGetAction, Lifecycle,
    LifecycleHandler, ObjectFieldSelector, Probe, ResourceRequirements, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use plexus_config::AppProbe;
use plexus_config::sidecar::*;
use plexus_crds::keys::identity_secret_name;

use super::annotations::Redirect;
use super::ops::to_value;
use super::{INIT_CONTAINER, InjectConfig, PROXY_CONTAINER};

const CONFIG_VOLUME: &str = "plexus-config";
const IDENTITY_VOLUME: &str = "plexus-identity";
const PODINFO_VOLUME: &str = "plexus-podinfo";

pub fn volumes(service_account: &str) -> Vec<Volume> {
    vec![
        // Optional, so that a pod never waits on them: the proxy is not
        // ready until both are there, and picks them up when they are.
        Volume {
            name: CONFIG_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: plexus_config::CONFIGMAP_NAME.into(),
                optional: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: IDENTITY_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(identity_secret_name(service_account)),
                optional: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: PODINFO_VOLUME.into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: PODINFO_LABELS.into(),
                    field_ref: Some(field("metadata.labels")),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
    ]
}

fn field(path: &str) -> ObjectFieldSelector {
    ObjectFieldSelector {
        field_path: path.into(),
        ..Default::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(field(path)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn capabilities(add: &[&str]) -> Capabilities {
    Capabilities {
        add: (!add.is_empty()).then(|| add.iter().map(|c| (*c).to_owned()).collect()),
        drop: Some(vec!["ALL".into()]),
    }
}

pub fn init_container(config: &InjectConfig, redirect: &Redirect) -> Container {
    let ports = &config.ports;
    let mut args = vec![
        "init".to_owned(),
        "--proxy-uid".into(),
        PROXY_UID.to_string(),
        "--inbound-port".into(),
        ports.inbound.to_string(),
        "--outbound-port".into(),
        ports.outbound.to_string(),
        "--skip-inbound-ports".into(),
        redirect.skip_inbound_ports.join(","),
    ];
    if !redirect.skip_outbound_ports.is_empty() {
        args.extend([
            "--skip-outbound-ports".into(),
            redirect.skip_outbound_ports.join(","),
        ]);
    }
    if !redirect.skip_outbound_cidrs.is_empty() {
        args.extend([
            "--skip-outbound-cidrs".into(),
            redirect.skip_outbound_cidrs.join(","),
        ]);
    }
    Container {
        name: INIT_CONTAINER.into(),
        image: Some(config.proxy.image.clone()),
        image_pull_policy: config.proxy.image_pull_policy.clone(),
        args: Some(args),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "10m"), ("memory", "10Mi")])),
            limits: Some(quantities(&[("cpu", "100m"), ("memory", "50Mi")])),
            ..Default::default()
        }),
        // Root inside the pod's network namespace, with only the two
        // capabilities that programming nftables needs.
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            privileged: Some(false),
            capabilities: Some(capabilities(&["NET_ADMIN", "NET_RAW"])),
            ..Default::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

/// The proxy container of a pod running as `service_account`.
pub fn proxy_container(
    config: &InjectConfig,
    resources: &ResourceRequirements,
    app_probes: &BTreeMap<String, AppProbe>,
    exit_with_app: bool,
    service_account: &str,
) -> Container {
    let ports = &config.ports;
    let admin_get = |path: &str| HTTPGetAction {
        path: Some(path.into()),
        port: IntOrString::Int(i32::from(ports.admin)),
        scheme: Some("HTTP".into()),
        ..Default::default()
    };
    let mut env_vars = vec![
        env_field(ENV_POD_NAMESPACE, "metadata.namespace"),
        env_field(ENV_SERVICE_ACCOUNT, "spec.serviceAccountName"),
        env(ENV_LOG, config.proxy.log_level.clone()),
        env(ENV_INBOUND_PORT, ports.inbound.to_string()),
        env(ENV_OUTBOUND_PORT, ports.outbound.to_string()),
        env(ENV_ADMIN_PORT, ports.admin.to_string()),
        env(ENV_CONFIG_DIR, CONFIG_DIR),
        env(ENV_IDENTITY_DIR, IDENTITY_DIR),
        env(ENV_PODINFO_DIR, PODINFO_DIR),
        env(ENV_IDENTITY_SECRET, identity_secret_name(service_account)),
    ];
    if !app_probes.is_empty() {
        env_vars.push(env(ENV_APP_PROBES, to_value(app_probes).to_string()));
    }
    if exit_with_app {
        env_vars.push(env(ENV_EXIT_WITH_APP, "true"));
    }
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    };
    let mut container = Container {
        name: PROXY_CONTAINER.into(),
        image: Some(config.proxy.image.clone()),
        image_pull_policy: config.proxy.image_pull_policy.clone(),
        args: Some(vec!["run".into()]),
        env: Some(env_vars),
        ports: Some(vec![
            ContainerPort {
                name: Some("plexus-admin".into()),
                container_port: i32::from(ports.admin),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("plexus-inbound".into()),
                container_port: i32::from(ports.inbound),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        readiness_probe: Some(Probe {
            http_get: Some(admin_get(READY_PATH)),
            period_seconds: Some(2),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        liveness_probe: Some(Probe {
            http_get: Some(admin_get(LIVE_PATH)),
            initial_delay_seconds: Some(10),
            period_seconds: Some(10),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        resources: Some(resources.clone()),
        security_context: Some(SecurityContext {
            run_as_user: Some(i64::from(PROXY_UID)),
            run_as_group: Some(i64::from(PROXY_UID)),
            run_as_non_root: Some(true),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            privileged: Some(false),
            capabilities: Some(capabilities(&[])),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            mount(CONFIG_VOLUME, CONFIG_DIR),
            mount(IDENTITY_VOLUME, IDENTITY_DIR),
            mount(PODINFO_VOLUME, PODINFO_DIR),
        ]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    if config.native_sidecars {
        // The kubelet starts the next container once this probe passes.
        container.restart_policy = Some("Always".into());
        container.startup_probe = Some(Probe {
            http_get: Some(admin_get(READY_PATH)),
            period_seconds: Some(1),
            failure_threshold: Some(120),
            ..Default::default()
        });
    } else {
        // The kubelet starts the next container only once postStart
        // returns: the app starts after the proxy is ready.
        container.lifecycle = Some(Lifecycle {
            post_start: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec![
                        PROXY_BINARY.into(),
                        "wait-ready".into(),
                        "--timeout".into(),
                        "120s".into(),
                    ]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    container
}
