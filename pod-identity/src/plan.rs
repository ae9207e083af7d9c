//! What a command would change, as data: every command first reads the
//! current state and computes a [`Plan`] (pure), prints it with the exact
//! documents, and only with `--approve` carries it out (execute.rs).

use serde_json::Value;

/// One change to AWS or to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    CreateOidcProvider {
        url: String,
        client_ids: Vec<String>,
        thumbprints: Vec<String>,
        tags: Vec<(String, String)>,
    },
    AddClientId {
        provider_arn: String,
        client_id: String,
    },
    UpdateThumbprints {
        provider_arn: String,
        thumbprints: Vec<String>,
    },
    PutObject {
        bucket: String,
        key: String,
        body: Value,
    },
    CreateRole {
        name: String,
        arn: String,
        trust: Value,
        tags: Vec<(String, String)>,
        permissions_boundary: Option<String>,
    },
    TagRole {
        name: String,
        tags: Vec<(String, String)>,
    },
    UpdateTrust {
        name: String,
        trust: Value,
    },
    AttachPolicy {
        role: String,
        policy_arn: String,
    },
    PutInlinePolicy {
        role: String,
        policy_name: String,
        document: Value,
    },
    PutPermissionsBoundary {
        role: String,
        policy_arn: String,
    },
    DeletePermissionsBoundary {
        role: String,
        policy_arn: String,
    },
    DetachPolicy {
        role: String,
        policy_arn: String,
    },
    DeleteInlinePolicy {
        role: String,
        policy_name: String,
    },
    DeleteRole {
        name: String,
    },
    CreateNamespace {
        name: String,
    },
    ApplyServiceAccount {
        namespace: String,
        name: String,
        annotation: (String, String),
        /// Further annotations (ClusterConfig metadata), merged with what
        /// the ServiceAccount has.
        extra_annotations: Vec<(String, String)>,
        labels: Vec<(String, String)>,
        create: bool,
        force: bool,
    },
    RemoveAnnotation {
        namespace: String,
        name: String,
        key: String,
        value: String,
    },
    DeleteServiceAccount {
        namespace: String,
        name: String,
    },
    /// A ServiceAccount without annotations (Pod Identity needs none).
    CreateServiceAccount {
        namespace: String,
        name: String,
    },
    /// A PodIdentityAssociation object, by server-side apply.
    ApplyAssociation {
        name: String,
        spec: Value,
    },
    DeleteAssociation {
        name: String,
    },
}

fn pretty(v: &Value, indent: &str) -> String {
    serde_json::to_string_pretty(v)
        .unwrap_or_default()
        .lines()
        .map(|l| format!("{indent}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn tags(t: &[(String, String)]) -> String {
    t.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Change {
    /// One line (or a few, with the document) saying what the change does.
    pub fn describe(&self) -> String {
        match self {
            Change::CreateOidcProvider { url, client_ids, thumbprints, tags: t } => format!(
                "+ create IAM OIDC provider {url}\n    client ids: {}\n    thumbprints: {}\n    tags: {}",
                client_ids.join(", "),
                thumbprints.join(", "),
                tags(t)
            ),
            Change::AddClientId { provider_arn, client_id } => {
                format!("~ add client id {client_id} to IAM OIDC provider {provider_arn}")
            }
            Change::UpdateThumbprints { provider_arn, thumbprints } => format!(
                "~ set the thumbprints of IAM OIDC provider {provider_arn} to {}",
                thumbprints.join(", ")
            ),
            Change::PutObject { bucket, key, body } => {
                format!("+ write s3://{bucket}/{key}:\n{}", pretty(body, "    "))
            }
            Change::CreateRole { name, arn, trust, tags: t, permissions_boundary } => {
                let mut s = format!("+ create IAM role {name} ({arn})\n    tags: {}", tags(t));
                if let Some(b) = permissions_boundary {
                    s.push_str(&format!("\n    permissions boundary: {b}"));
                }
                s.push_str(&format!("\n    trust policy:\n{}", pretty(trust, "      ")));
                s
            }
            Change::TagRole { name, tags: t } => format!("~ tag IAM role {name}: {}", tags(t)),
            Change::UpdateTrust { name, trust } => format!(
                "~ replace the trust policy of IAM role {name} with:\n{}",
                pretty(trust, "      ")
            ),
            Change::AttachPolicy { role, policy_arn } => {
                format!("+ attach policy {policy_arn} to IAM role {role}")
            }
            Change::PutInlinePolicy { role, policy_name, document } => format!(
                "+ put inline policy {policy_name} on IAM role {role}:\n{}",
                pretty(document, "      ")
            ),
            Change::PutPermissionsBoundary { role, policy_arn } => {
                format!("~ set the permissions boundary of IAM role {role} to {policy_arn}")
            }
            Change::DeletePermissionsBoundary { role, policy_arn } => {
                format!("- remove the permissions boundary {policy_arn} of IAM role {role}")
            }
            Change::DetachPolicy { role, policy_arn } => {
                format!("- detach policy {policy_arn} from IAM role {role}")
            }
            Change::DeleteInlinePolicy { role, policy_name } => {
                format!("- delete inline policy {policy_name} of IAM role {role}")
            }
            Change::DeleteRole { name } => format!("- delete IAM role {name}"),
            Change::CreateNamespace { name } => format!("+ create namespace {name}"),
            Change::ApplyServiceAccount { namespace, name, annotation, extra_annotations, labels, create, force } => {
                let verb = if *create { "+ create ServiceAccount" } else { "~ annotate ServiceAccount" };
                let forced = if *force { " (taking the annotation over: --override-existing-serviceaccounts)" } else { "" };
                let mut s = format!("{verb} {namespace}/{name} with {}={}{forced}", annotation.0, annotation.1);
                if !labels.is_empty() {
                    s.push_str(&format!("\n    labels: {}", tags(labels)));
                }
                if !extra_annotations.is_empty() {
                    s.push_str(&format!("\n    annotations: {}", tags(extra_annotations)));
                }
                s
            }
            Change::RemoveAnnotation { namespace, name, key, .. } => {
                format!("- remove annotation {key} from ServiceAccount {namespace}/{name}")
            }
            Change::DeleteServiceAccount { namespace, name } => {
                format!("- delete ServiceAccount {namespace}/{name}")
            }
            Change::CreateServiceAccount { namespace, name } => {
                format!("+ create ServiceAccount {namespace}/{name}")
            }
            Change::ApplyAssociation { name, spec } => format!(
                "+ apply PodIdentityAssociation {name}:\n{}",
                pretty(spec, "    ")
            ),
            Change::DeleteAssociation { name } => {
                format!("- delete PodIdentityAssociation {name}")
            }
        }
    }
}

/// The changes of one command, in the order they are made, with notes on
/// what is deliberately left alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub notes: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The plan as printed without `--approve`.
    pub fn render(&self, subject: &str) -> String {
        let mut out = String::new();
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        if self.changes.is_empty() {
            out.push_str(&format!(
                "{subject}: no changes; everything is already in place.\n"
            ));
            return out;
        }
        out.push_str(&format!("{subject}: {} change(s):\n", self.changes.len()));
        for c in &self.changes {
            out.push_str(&c.describe());
            out.push('\n');
        }
        out
    }
}
