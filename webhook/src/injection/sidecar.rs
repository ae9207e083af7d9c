//! The credential-agent as a native sidecar: an init container with
//! `restartPolicy: Always` whose startup probe holds the app containers back
//! until it serves; unprivileged, read-only, no capabilities. Its command
//! line, ports and environment are the agent's contract
//! (`contract::agent`).

use contract::agent::{ENV_REGION, ENV_ROLE_ARN, ENV_TOKEN_FILE};
use contract::RoleArn;
use serde_json::{json, Value};

use super::config::InjectionConfig;

/// The sidecar container for `role_arn`, reading the token at `token_file`
/// from the volume mounted at `mount_path`.
pub fn sidecar_container(
    cfg: &InjectionConfig,
    role_arn: &RoleArn,
    token_file: &str,
    mount_path: &str,
) -> Value {
    let sc = &cfg.sidecar;
    let mut env = vec![
        json!({"name": ENV_ROLE_ARN, "value": role_arn.as_str()}),
        json!({"name": ENV_TOKEN_FILE, "value": token_file}),
    ];
    if let Some(r) = &cfg.region {
        env.push(json!({"name": ENV_REGION, "value": r}));
    }
    json!({
        "name": sc.name,
        "image": sc.image,
        "imagePullPolicy": sc.image_pull_policy,
        "restartPolicy": "Always",
        "args": sc.ports.args(),
        "env": env,
        "ports": [{"name": "agent-metrics", "containerPort": sc.ports.metrics, "protocol": "TCP"}],
        "startupProbe": {
            "httpGet": {"path": "/readyz", "port": sc.ports.health},
            "periodSeconds": 1,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": sc.ports.health},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": {"cpu": sc.cpu_request, "memory": sc.memory_request},
            "limits": {"memory": sc.memory_limit},
        },
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": cfg.container_credentials.volume_name, "readOnly": true, "mountPath": mount_path}],
    })
}
