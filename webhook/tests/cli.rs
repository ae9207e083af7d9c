//! The `mutate` dry run as a user runs it: the real binary on the shipped examples.

// These tests wait for real processes on real sockets.
#![allow(clippy::disallowed_methods)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pod-identity-webhook"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    c
}

fn run(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const SAS: &str = "--service-accounts=examples/serviceaccounts.yaml";

#[test]
fn yaml_output_keeps_field_order_and_injects() {
    let (code, out, err) = run(&["mutate", SAS, "examples/pod.yaml"], None);
    assert_eq!(code, 0, "{err}");
    let pod: Value = serde_yaml::from_str(&out).unwrap();
    let env = pod["spec"]["containers"][0]["env"].as_array().unwrap();
    let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "AWS_REGION",
            "AWS_STS_REGIONAL_ENDPOINTS",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE"
        ]
    );
    assert_eq!(pod["spec"]["initContainers"][0]["restartPolicy"], "Always");
    assert!(
        pod["spec"]["initContainers"][0]["env"].is_array(),
        "native sidecar injected"
    );
    assert!(
        out.starts_with("apiVersion: v1\nkind: Pod\n"),
        "field order kept: {out}"
    );
}

#[test]
fn json_and_patch_outputs_and_stdin() {
    let pod = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/pod.yaml"))
        .unwrap();
    let (code, out, err) = run(&["mutate", SAS, "--output=json", "-"], Some(&pod));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["spec"]["volumes"][0]["name"], "aws-iam-token");

    let (code, out, _) = run(&["mutate", SAS, "-o", "patch", "examples/pod.yaml"], None);
    assert_eq!(code, 0);
    let ops: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(ops.iter().all(|op| op["op"] == "add"));
    assert!(
        ops.iter()
            .any(|op| op["path"] == "/spec/containers/0/env/-"),
        "{out}"
    );
}

#[test]
fn container_credentials_mode_from_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let pod = dir.path().join("pod.yaml");
    std::fs::write(&pod, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  serviceAccountName: short-lived\n  containers: [{name: a, image: x}]\n").unwrap();
    let (code, out, err) = run(
        &[
            "mutate",
            SAS,
            "--watch-container-credentials-config=examples/container-credentials.json",
            "-o",
            "json",
            pod.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["metadata"]["labels"]["eks.amazonaws.com/pod-identity"],
        "enabled"
    );
    let env = v["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI"), "{env}");
    assert!(!env.contains("AWS_ROLE_ARN"), "{env}");
    assert_eq!(
        v["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]
            ["expirationSeconds"],
        3600
    );
}

#[test]
fn typo_warns_on_stderr_and_changes_nothing() {
    let (code, out, err) = run(
        &["mutate", SAS, "-o", "patch", "examples/pod-typo.yaml"],
        None,
    );
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "[]");
    assert!(
        err.contains("mistyped \"eks.amazonaws.com/role-arn\""),
        "{err}"
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let cases: &[(&[&str], Option<&str>, &str)] = &[
        (
            &["mutate", SAS, "/nonexistent/pod.yaml"],
            None,
            "/nonexistent/pod.yaml",
        ),
        (
            &[
                "mutate",
                "--service-accounts=/nonexistent/sa.yaml",
                "examples/pod.yaml",
            ],
            None,
            "/nonexistent/sa.yaml",
        ),
        (
            &["mutate", SAS, "-"],
            Some("kind: Deployment\n"),
            "expected Pod",
        ),
        (&["mutate", SAS, "-"], Some(": : :"), "document 1"),
        (
            &["mutate", SAS, "-"],
            Some("kind: Pod\nmetadata: {name: a}\n---\nkind: Pod\n"),
            "exactly one Pod",
        ),
        (
            &[
                "mutate",
                SAS,
                "--token-mount-path=relative",
                "examples/pod.yaml",
            ],
            None,
            "absolute path",
        ),
    ];
    for (args, stdin, needle) in cases {
        let (code, out, err) = run(args, *stdin);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?} printed {out}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn serve_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), key.serialize_pem()).unwrap();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = bin()
        .args([
            "serve",
            "--bind-address=127.0.0.1",
            "--port=0",
            &format!("--metrics-port={metrics_port}"),
            &format!("--tls-cert={}", dir.path().join("tls.crt").display()),
            &format!("--tls-key={}", dir.path().join("tls.key").display()),
            SAS,
            "--log-format=json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", metrics_port)) {
            use std::io::Read;
            s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut resp = String::new();
            let _ = s.read_to_string(&mut resp);
            if resp.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "not ready");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    let logs = String::from_utf8_lossy(&out.stderr);
    let last: Value = serde_json::from_str(logs.lines().last().unwrap()).expect("JSON log lines");
    assert_eq!(last["fields"]["message"], "stopped", "{logs}");
}

/// `mutate` with `args` on `stdin`, which must succeed; the pod it prints.
fn dry_run_json(args: &[&str], stdin: Option<&str>) -> Value {
    let (code, out, err) = run(args, stdin);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn dry_run_covers_the_three_credential_modes() {
    let pod_of = |sa: &str, annotation: Option<&str>| {
        let annotations = annotation
            .map(|m| format!("  annotations: {{eks.amazonaws.com/credential-mode: {m}}}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n{annotations}spec:\n  serviceAccountName: {sa}\n  containers:\n  - name: app\n    image: app\n"
        )
    };
    let env_names = |pod: &Value| -> Vec<String> {
        pod["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    // From the ServiceAccount annotations.
    let pod = dry_run_json(
        &["mutate", SAS, "-o", "json", "-"],
        Some(&pod_of("via-agent", None)),
    );
    assert!(env_names(&pod).contains(&"AWS_CONTAINER_CREDENTIALS_FULL_URI".to_string()));
    assert!(!env_names(&pod).contains(&"AWS_ROLE_ARN".to_string()));
    assert_eq!(
        pod["metadata"]["labels"]["eks.amazonaws.com/pod-identity"],
        "enabled"
    );

    let pod = dry_run_json(
        &["mutate", SAS, "-o", "json", "-"],
        Some(&pod_of("via-sidecar", None)),
    );
    assert_eq!(
        pod["spec"]["initContainers"][0]["name"],
        "aws-credential-agent"
    );
    assert_eq!(
        pod["spec"]["initContainers"][0]["image"],
        "credential-agent:0.1.0"
    );

    // From the flag, and the pod's annotation over it.
    let pod = dry_run_json(
        &[
            "mutate",
            SAS,
            "-o",
            "json",
            "--credential-mode=sidecar",
            "--sidecar-image=registry.example/agent:1",
            "-",
        ],
        Some(&pod_of("s3-reader", None)),
    );
    assert_eq!(
        pod["spec"]["initContainers"][0]["image"],
        "registry.example/agent:1"
    );
    let pod = dry_run_json(
        &[
            "mutate",
            SAS,
            "-o",
            "json",
            "--credential-mode=sidecar",
            "-",
        ],
        Some(&pod_of("s3-reader", Some("web-identity"))),
    );
    assert!(env_names(&pod).contains(&"AWS_ROLE_ARN".to_string()));
    assert!(pod["spec"]["initContainers"].is_null());

    // A bad flag value is a clear error.
    let (code, _, err) = run(
        &[
            "mutate",
            SAS,
            "--credential-mode=magic",
            "examples/pod.yaml",
        ],
        None,
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("magic") && err.contains("web-identity"),
        "{err}"
    );
    let (code, _, err) = run(
        &["mutate", SAS, "--agent-url=ftp://x", "examples/pod.yaml"],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("--agent-url"), "{err}");
}
