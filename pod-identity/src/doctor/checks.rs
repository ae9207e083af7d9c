//! The checklist, pure: [`Facts`] in, one [`Check`] per step out, in the
//! order a user would debug by hand. A check whose input an earlier check
//! found missing is skipped, so one fault fails exactly one check.
//! Long because all ten checks live here in their order, each with its fix
//! text: the skip rules between them only stay right when read together.

use contract::annotations::{
    is_near_miss, AUDIENCE, CREDENTIAL_MODE, ROLE_ARN, SERVICE_ACCOUNT_NAMES, SKIP_CONTAINERS,
    STS_REGIONAL_ENDPOINTS,
};
use contract::injected::{self, Injected};
use contract::mode::{CredentialMode, FailurePolicy};
use contract::RoleArn;

use super::association_checks;
use super::cert;
use super::facts::{Facts, Lookup, PodFacts, ServingCert, WebhookFacts};
use super::report::{Check, Status};
use super::selector;
use crate::policy::evaluate::{evaluate, Decision, Request};
use crate::policy::{provider_arn_for, service_account_subject, STS_AUDIENCE};

/// Warn when the serving certificate expires sooner than this.
const CERT_WARN_DAYS: i64 = 30;

/// All checks, in order.
pub fn run(f: &Facts) -> Vec<Check> {
    let (sa_check, role) = service_account(f);
    let webhook = webhook(f);
    let mutation = mutation(f, role.as_ref());
    let audience = audience(f);
    let token = token(f, &mutation, &audience);
    let pod_identity = eks_pod_identity(f, role.as_ref());
    let ours = f.associations.as_ref().filter(|_| pod_identity);
    let (provider, role_check, exchange) = if let Some(a) = ours {
        (
            association_checks::association(f, a),
            association_checks::broker_trust(f, a),
            association_checks::broker(f, a),
        )
    } else if pod_identity {
        let why = "EKS Pod Identity: the role comes from a Pod Identity association and the EKS Auth API, not from an IAM OIDC provider and a trust policy";
        (
            Check::skip("provider", why),
            Check::skip("role", why),
            Check::skip("exchange", why),
        )
    } else {
        (
            provider(f, &audience),
            role_trust(f, role.as_ref(), &audience),
            exchange(f, role.as_ref()),
        )
    };
    let mut agent = agent(f, &mutation);
    if ours.is_some() && agent.status == Status::Pass {
        if let Some(backend) = association_checks::agent_backend(f) {
            agent = backend;
        }
    }
    let sdk = sdk(f);
    let region = region(f, &mutation);
    vec![
        sa_check, webhook, mutation, token, provider, role_check, exchange, agent, sdk, region,
    ]
}

/// A pod of EKS Pod Identity: container credentials injected, a token for
/// the Pod Identity audience, and no role named by annotation or ConfigMap
/// (the association names it).
fn eks_pod_identity(f: &Facts, role: Option<&RoleArn>) -> bool {
    let Some(p) = &f.pod else {
        return false;
    };
    role.is_none()
        && p.containers
            .iter()
            .any(|c| injection_of(c) == Injected::ContainerCredentials)
        && p.token_volumes
            .iter()
            .any(|v| v.audience.as_deref() == Some(injected::POD_IDENTITY_AUDIENCE))
}

fn key(f: &Facts, name: &str) -> String {
    format!("{}/{name}", f.prefix)
}

fn sa_ref(f: &Facts) -> String {
    format!("{}/{}", f.namespace, f.service_account_name)
}

/// 1. The ServiceAccount and its role annotation.
fn service_account(f: &Facts) -> (Check, Option<RoleArn>) {
    const ID: &str = "serviceaccount";
    if f.namespace_labels.is_none() {
        return (
            Check::fail(
                ID,
                format!("namespace {} does not exist", f.namespace),
                "create the namespace",
            ),
            None,
        );
    }
    let Some(sa) = &f.service_account else {
        return (
            Check::fail(
                ID,
                format!("ServiceAccount {} does not exist", sa_ref(f)),
                format!(
                    "pod-identity iamserviceaccount create --namespace {} --name {} --approve",
                    f.namespace, f.service_account_name
                ),
            ),
            None,
        );
    };
    let near: Vec<&String> = sa
        .annotations
        .keys()
        .filter(|k| is_near_miss(k, &f.prefix, SERVICE_ACCOUNT_NAMES))
        .collect();
    let near_text = near
        .iter()
        .map(|k| format!("{k:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let role_key = key(f, ROLE_ARN);
    match sa.annotations.get(&role_key) {
        None if f.config_map.is_some() => {
            let cm = f.config_map.as_ref().expect("checked");
            match RoleArn::parse(cm.role_arn.trim()) {
                Ok(arn) => (
                    Check::pass(ID, format!("ServiceAccount {} gets {arn} from the webhook's ConfigMap {} (--watch-config-map)", sa_ref(f), cm.source)),
                    Some(arn),
                ),
                Err(e) => (
                    Check::fail(ID, format!("the webhook's ConfigMap {} gives {} RoleARN {:?}, not a role ARN: {e}", cm.source, sa_ref(f), cm.role_arn), "set RoleARN to arn:aws:iam::<account>:role/<name>"),
                    None,
                ),
            }
        }
        None if eks_pod_identity(f, None) => (
            Check::pass(ID, format!("ServiceAccount {} has no {role_key}: the pod uses EKS Pod Identity (container credentials, audience {}), whose association names the role", sa_ref(f), injected::POD_IDENTITY_AUDIENCE)),
            None,
        ),
        None if !near.is_empty() => (
            Check::fail(
                ID,
                format!("ServiceAccount {} has no {role_key}, but {near_text} looks like a typo of it", sa_ref(f)),
                format!("rename the annotation to {role_key}"),
            ),
            None,
        ),
        None => (
            Check::fail(
                ID,
                format!("ServiceAccount {} has no annotation {role_key}", sa_ref(f)),
                format!("pod-identity iamserviceaccount create --namespace {} --name {} --approve (or annotate it with the role ARN)", f.namespace, f.service_account_name),
            ),
            None,
        ),
        Some(v) => match RoleArn::parse(v.trim()) {
            Err(e) => (
                Check::fail(ID, format!("{role_key}={v:?} is not a role ARN: {e}"), "set it to arn:aws:iam::<account>:role/<name>"),
                None,
            ),
            Ok(arn) if !near.is_empty() => (
                Check::warn(ID, format!("{role_key}={arn}; {near_text} looks like a mistyped annotation and is ignored"), format!("rename it under {}/", f.prefix)),
                Some(arn),
            ),
            Ok(arn) => (Check::pass(ID, format!("ServiceAccount {} has {role_key}={arn}", sa_ref(f))), Some(arn)),
        },
    }
}

/// Why a webhook would not mutate this pod (or a pod of this namespace).
fn excluded(f: &Facts, w: &WebhookFacts, pod: Option<&PodFacts>) -> Option<String> {
    let ns_labels = f.namespace_labels.clone().unwrap_or_default();
    if let Err(r) = selector::matches(w.namespace_selector.as_ref(), &ns_labels) {
        return Some(format!(
            "namespace {} is excluded by the namespaceSelector of {} ({r})",
            f.namespace, w.configuration
        ));
    }
    if let Some(p) = pod {
        if let Err(r) = selector::matches(w.object_selector.as_ref(), &p.labels) {
            return Some(format!(
                "the pod is excluded by the objectSelector of {} ({r})",
                w.configuration
            ));
        }
    }
    None
}

/// 2. The webhook configuration, its selectors, failure policy and certificate.
fn webhook(f: &Facts) -> Check {
    webhook_check(f, true)
}

/// The webhook's configuration and certificate health, for the cluster
/// audit (no namespace or pod to select).
pub fn webhook_health(f: &Facts) -> Check {
    webhook_check(f, false)
}

fn webhook_check(f: &Facts, selectors: bool) -> Check {
    const ID: &str = "webhook";
    let Some(w) = f.webhooks.first() else {
        return Check::fail(
            ID,
            "no MutatingWebhookConfiguration has a pod-identity webhook for pods CREATE",
            "install the webhook (helm install pod-identity charts/pod-identity) or restore its MutatingWebhookConfiguration",
        );
    };
    if let Some(why) = excluded(f, w, f.pod.as_ref()).filter(|_| selectors) {
        return Check::fail(
            ID,
            why,
            "remove the opt-out label, or the namespace from the chart's excludeNamespaces",
        );
    }
    let name = &w.server_name;
    let (chain, source) = match &w.cert {
        ServingCert::NotFound(why) => {
            return Check::fail(
                ID,
                format!("{}: serving certificate not found: {why}", w.configuration),
                "check the webhook's TLS Secret or that the webhook is running",
            );
        }
        ServingCert::ControlPlane { url } => {
            return Check::pass(
                ID,
                format!(
                    "{} (webhook {}): failurePolicy {}, served by the control plane at {url} (a managed webhook, as on EKS): its certificate is not reachable from here and was not checked",
                    w.configuration, w.name, w.failure_policy
                ),
            );
        }
        ServingCert::Served { url, chain } => (chain, format!("served at {url}")),
        ServingCert::Secret { name, chain } => (chain, format!("in Secret {name}")),
    };
    let verdict = cert::verify(chain, &w.ca_bundle, name, f.now);
    if let Err(why) = verdict.result {
        return Check::fail(
            ID,
            format!("{}: {why} (certificate {source}, name {name})", w.configuration),
            "re-issue the serving certificate and the caBundle together (helm upgrade, or let cert-manager renew it)",
        );
    }
    let days = verdict
        .not_after
        .map(|t| (t - f.now) / 86_400)
        .unwrap_or(i64::MAX);
    let selected = if selectors {
        format!("namespace {} selected, ", f.namespace)
    } else {
        String::new()
    };
    let evidence = format!(
        "{} (webhook {}): {selected}failurePolicy {}, serving certificate for {name} {source} verified by the caBundle, expires in {days} days",
        w.configuration, w.name, w.failure_policy
    );
    if days < CERT_WARN_DAYS {
        return Check::warn(
            ID,
            evidence,
            "renew the serving certificate before it expires",
        );
    }
    if w.failure_policy == FailurePolicy::Ignore {
        return Check::warn(
            ID,
            evidence,
            "with failurePolicy Ignore, pods created while the webhook is unavailable start without credentials and without an error: run `pod-identity doctor cluster` to find them",
        );
    }
    Check::pass(ID, evidence)
}

/// The credential mode asked for by annotations (pod, then ServiceAccount),
/// else the webhook's default.
fn asked_mode(f: &Facts) -> CredentialMode {
    let k = key(f, CREDENTIAL_MODE);
    f.pod
        .as_ref()
        .and_then(|p| p.annotations.get(&k))
        .or_else(|| {
            f.service_account
                .as_ref()
                .and_then(|s| s.annotations.get(&k))
        })
        .and_then(|v| CredentialMode::parse(v))
        .unwrap_or(f.default_mode)
}

fn skip_list(f: &Facts, p: &PodFacts) -> Vec<String> {
    p.annotations
        .get(&key(f, SKIP_CONTAINERS))
        .map(|s| {
            s.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Why a pod that asks for a role was not injected, and the fix. Shared
/// with the cluster audit.
pub fn why_not_injected(f: &Facts, p: &PodFacts) -> (String, String) {
    let restart = "delete the pod so that its controller recreates it (kubectl rollout restart for a Deployment)";
    let Some(w) = f.webhooks.first() else {
        return (
            "no pod-identity webhook is registered".into(),
            format!("install the webhook, then {restart}"),
        );
    };
    if let Some(why) = excluded(f, w, Some(p)) {
        return (
            why,
            "remove the opt-out label if this pod needs AWS credentials".into(),
        );
    }
    if let (Some(created), Some(annotated)) = (
        p.created,
        f.service_account.as_ref().and_then(|s| s.role_annotated_at),
    ) {
        if annotated > created {
            return (
                "the pod was created before its ServiceAccount got the role annotation".into(),
                restart.into(),
            );
        }
    }
    if p.host_network && asked_mode(f) == CredentialMode::Sidecar {
        return (
            "hostNetwork pod in sidecar mode: the webhook does not add a credential sidecar to the host's network".into(),
            "use the agent or web-identity mode for this pod (annotation credential-mode)".into(),
        );
    }
    let why = if w.failure_policy == FailurePolicy::Ignore {
        "the pod was created while the webhook was unavailable (failurePolicy Ignore admits pods unmutated) or not yet registered".to_string()
    } else {
        format!("the pod was created while the webhook was not registered (with failurePolicy {} an unavailable webhook rejects pods instead of admitting them unmutated)", w.failure_policy)
    };
    (why, restart.into())
}

/// Whether the mutation check found the pod mutated (a warning about the
/// role it runs with still means it was).
fn mutated(mutation: &Check) -> bool {
    matches!(mutation.status, Status::Pass | Status::Warn)
}

fn injection_of(c: &super::facts::ContainerFacts) -> Injected {
    injected::container(c.env.iter().map(String::as_str))
}

/// 3. The pod got the variables, mount and volume of its credential mode.
fn mutation(f: &Facts, role: Option<&RoleArn>) -> Check {
    const ID: &str = "mutation";
    let Some(p) = &f.pod else {
        return Check::skip(ID, "applies to pods (doctor pod)");
    };
    if role.is_none() && !eks_pod_identity(f, None) {
        return Check::skip(ID, "the ServiceAccount asks for no (valid) role");
    }
    let skip = skip_list(f, p);
    let skip_refs: Vec<&str> = skip.iter().map(String::as_str).collect();
    let containers: Vec<&super::facts::ContainerFacts> = p
        .containers
        .iter()
        .filter(|c| !skip_refs.contains(&c.name.as_str()) && c.name != f.sidecar_name)
        .collect();
    if containers.is_empty() {
        return Check::skip(ID, "every container is listed in skip-containers");
    }
    let lacking: Vec<&str> = containers
        .iter()
        .filter(|c| injection_of(c) == Injected::Nothing)
        .map(|c| c.name.as_str())
        .collect();
    if lacking.len() == containers.len() {
        let (why, fix) = why_not_injected(f, p);
        return Check::fail(
            ID,
            format!("no container has AWS credentials variables: {why}"),
            fix,
        );
    }
    let mut problems = Vec::new();
    if !lacking.is_empty() {
        problems.push(format!(
            "containers without credentials variables: {}",
            lacking.join(", ")
        ));
    }
    let token_volumes: Vec<&str> = p.token_volumes.iter().map(|v| v.name.as_str()).collect();
    for c in containers
        .iter()
        .filter(|c| injection_of(c) != Injected::Nothing)
    {
        if !c
            .mounts
            .iter()
            .any(|(v, _)| token_volumes.contains(&v.as_str()))
        {
            problems.push(format!(
                "container {} has the variables but no projected token volume mounted",
                c.name
            ));
        }
    }
    if !problems.is_empty() {
        return Check::fail(
            ID,
            problems.join("; "),
            "delete the pod so that it is recreated and mutated whole",
        );
    }
    // The role the running pod got against the one its ServiceAccount
    // names now (right after --override-existing-serviceaccounts).
    if let Some(role) = role {
        let stale: Vec<String> = containers
            .iter()
            .filter_map(|c| {
                let got = c.role_arn.as_deref()?;
                (!crate::iamsa::plan::same_role(got, role.as_str()))
                    .then(|| format!("{} has AWS_ROLE_ARN={got}", c.name))
            })
            .collect();
        if !stale.is_empty() {
            let annotated_after = matches!(
                (p.created, f.service_account.as_ref().and_then(|s| s.role_annotated_at)),
                (Some(created), Some(annotated)) if annotated > created
            );
            let evidence = format!(
                "{}, but ServiceAccount {} names {role} now",
                stale.join(", "),
                sa_ref(f)
            );
            return if annotated_after {
                Check::fail(
                    ID,
                    format!("{evidence}: the annotation changed after the pod was created, so the pod still runs with the old role"),
                    "restart the pod (kubectl rollout restart for a Deployment) so that it gets the new role",
                )
            } else {
                Check::warn(
                    ID,
                    evidence,
                    "if the container sets AWS_ROLE_ARN itself this is on purpose; otherwise restart the pod",
                )
            };
        }
    }
    let kinds: Vec<String> = containers
        .iter()
        .map(|c| match injection_of(c) {
            Injected::WebIdentity => format!("{} (web identity)", c.name),
            _ => format!("{} (container credentials)", c.name),
        })
        .collect();
    Check::pass(
        ID,
        format!(
            "credentials variables and token mount in {}; volume {}",
            kinds.join(", "),
            token_volumes.join(", ")
        ),
    )
}

/// The token volume the webhook injected: by the names the webhook (and
/// EKS) give it, else the one an injected container mounts under an
/// `eks.amazonaws.com` path. Never just the first: a service mesh's token
/// (`istio-token`, audience `istio-ca`) may come before it.
fn injected_volume(p: &PodFacts) -> Option<&super::facts::TokenVolume> {
    let by_name = p.token_volumes.iter().find(|v| {
        v.name == injected::WEB_IDENTITY_VOLUME || v.name == injected::CONTAINER_CREDENTIALS_VOLUME
    });
    by_name.or_else(|| {
        p.token_volumes.iter().find(|v| {
            p.containers.iter().any(|c| {
                injection_of(c) != Injected::Nothing
                    && c.mounts
                        .iter()
                        .any(|(name, path)| *name == v.name && path.contains("eks.amazonaws.com"))
            })
        })
    })
}

/// The token audience STS will see.
fn audience(f: &Facts) -> String {
    if let Some(a) = f
        .pod
        .as_ref()
        .and_then(injected_volume)
        .and_then(|v| v.audience.clone())
    {
        return a;
    }
    f.service_account
        .as_ref()
        .and_then(|s| s.annotations.get(&key(f, AUDIENCE)))
        .cloned()
        .or_else(|| f.config_map.as_ref().and_then(|c| c.audience.clone()))
        .unwrap_or_else(|| STS_AUDIENCE.to_string())
}

/// 4. The projected token: audience and lifetime.
fn token(f: &Facts, mutation: &Check, audience: &str) -> Check {
    const ID: &str = "token";
    match &f.pod {
        None => Check::pass(
            ID,
            format!("pods of {} get tokens with audience {audience}", sa_ref(f)),
        ),
        Some(_) if !mutated(mutation) => Check::skip(ID, "the pod has no injected token"),
        Some(p) => {
            let Some(v) = injected_volume(p) else {
                return Check::skip(ID, "the pod has no injected projected token volume");
            };
            let lifetime = v
                .expiration_seconds
                .map(|s| format!("{s} s"))
                .unwrap_or_else(|| "the default (1 h)".into());
            Check::pass(ID, format!("volume {}: audience {audience}, lifetime {lifetime}, refreshed by the kubelet at 80%", v.name))
        }
    }
}

/// 5. The cluster issuer has an IAM OIDC provider with the audience as a client id.
fn provider(f: &Facts, audience: &str) -> Check {
    const ID: &str = "provider";
    let issuer = match &f.issuer {
        Ok(i) => i,
        Err(e) => {
            return Check::fail(
                ID,
                format!("cannot read the cluster's issuer: {e}"),
                "check access to /.well-known/openid-configuration",
            )
        }
    };
    match &f.provider {
        Lookup::Missing => Check::fail(
            ID,
            format!("issuer {issuer} has no IAM OIDC provider, so STS rejects every token of this cluster"),
            "pod-identity oidc associate --approve",
        ),
        Lookup::Unreadable(e) => Check::warn(ID, format!("cannot read the IAM OIDC providers: {e}"), "grant iam:ListOpenIDConnectProviders and iam:GetOpenIDConnectProvider"),
        Lookup::NotAsked => Check::skip(ID, "not checked"),
        Lookup::Found(p) if !p.client_ids.iter().any(|c| c == audience) => Check::fail(
            ID,
            format!("{} does not list the token audience {audience} among its client ids ({})", p.arn, p.client_ids.join(", ")),
            format!("pod-identity oidc associate --approve (or add the client id {audience})"),
        ),
        Lookup::Found(p) => Check::pass(ID, format!("{} for issuer {issuer}, client ids {}", p.arn, p.client_ids.join(", "))),
    }
}

/// 6. The role exists and trusts this provider, subject and audience.
fn role_trust(f: &Facts, role: Option<&RoleArn>, audience: &str) -> Check {
    const ID: &str = "role";
    let Some(role) = role else {
        return Check::skip(ID, "no role to check");
    };
    let Ok(issuer) = &f.issuer else {
        return Check::skip(ID, "the issuer is unknown");
    };
    let state = match &f.role {
        Lookup::Found(r) => r,
        Lookup::Missing => {
            return Check::fail(
                ID,
                format!("role {role} does not exist"),
                format!("pod-identity iamserviceaccount create --namespace {} --name {} --approve, or fix the annotation", f.namespace, f.service_account_name),
            )
        }
        Lookup::Unreadable(e) => return Check::warn(ID, format!("cannot read role {role}: {e}"), "grant iam:GetRole, or check the role from its account"),
        Lookup::NotAsked => return Check::skip(ID, "not checked"),
    };
    let provider_arn = match &f.provider {
        Lookup::Found(p) => p.arn.clone(),
        _ => provider_arn_for(role.partition(), role.account(), issuer),
    };
    let sub = service_account_subject(&f.namespace, &f.service_account_name);
    match evaluate(&state.trust, &Request::web_identity(&provider_arn, issuer, &sub, audience)) {
        Decision::Allowed { statement } => Check::pass(ID, format!("{role}: trust statement {statement} allows {sub} with audience {audience} from {provider_arn}")),
        Decision::Denied { statement } => Check::fail(ID, format!("{role}: trust statement {statement} denies {sub}"), "remove the Deny statement"),
        Decision::Unknown { allow, deny, reason } => Check::warn(
            ID,
            format!("{role}: unknown: trust statement {allow} allows {sub}, but Deny statement {deny} may apply and cannot be read here ({reason})"),
            "check the Deny statement by hand, or run doctor with --exchange to let STS decide",
        ),
        Decision::NotAllowed { reasons } => Check::fail(
            ID,
            format!("{role}: the trust policy does not let {sub} (audience {audience}) assume it: {}", reasons.join("; ")),
            format!(
                "pod-identity iamserviceaccount create --namespace {} --name {} --role-name {} --approve adds it (for a role pod-identity owns; --adopt-role otherwise)",
                f.namespace,
                f.service_account_name,
                role.as_str().rsplit('/').next().unwrap_or_default()
            ),
        ),
    }
}

/// 7. `--exchange`: a real token exchanged with STS.
fn exchange(f: &Facts, role: Option<&RoleArn>) -> Check {
    const ID: &str = "exchange";
    match (&f.exchange, role) {
        (_, None) => Check::skip(ID, "no role to assume"),
        (None, _) => Check::skip(ID, "not tried (--exchange mints a token with TokenRequest and calls STS AssumeRoleWithWebIdentity)"),
        (Some(Ok(arn)), _) => Check::pass(ID, format!("STS AssumeRoleWithWebIdentity returned {arn}")),
        (Some(Err(e)), _) => Check::fail(ID, format!("STS refused the ServiceAccount's token: {e}"), "see the checks above; STS errors name the failing condition"),
    }
}

/// 8. The credential agent on the pod's node, or the pod's sidecar.
fn agent(f: &Facts, mutation: &Check) -> Check {
    const ID: &str = "agent";
    let Some(p) = &f.pod else {
        return Check::skip(ID, "applies to pods (doctor pod)");
    };
    if !mutated(mutation) {
        return Check::skip(ID, "the pod is not mutated");
    }
    let container_credentials = p
        .containers
        .iter()
        .any(|c| injection_of(c) == Injected::ContainerCredentials);
    if !container_credentials {
        return Check::skip(
            ID,
            "web-identity mode: the SDK calls STS itself, no agent involved",
        );
    }
    if let Some(sidecar) = p.containers.iter().find(|c| c.name == f.sidecar_name) {
        return match sidecar.ready {
            Some(true) => Check::pass(ID, format!("sidecar {} is ready", sidecar.name)),
            _ => Check::fail(
                ID,
                format!("sidecar {} is not ready", sidecar.name),
                format!(
                    "kubectl logs -n {} {} -c {}",
                    f.namespace,
                    f.pod_name.as_deref().unwrap_or(""),
                    sidecar.name
                ),
            ),
        };
    }
    let node = p.node.as_deref().unwrap_or("");
    let pods = f.agent.as_ref().map(|a| a.pods.clone()).unwrap_or_default();
    if node.is_empty() {
        return Check::warn(
            ID,
            "agent mode, but the pod is not scheduled on a node yet",
            "wait for scheduling",
        );
    }
    match pods.iter().find(|(_, ready)| *ready) {
        Some((name, _)) => Check::pass(ID, format!("credential agent {name} on node {node} is ready")),
        None if pods.is_empty() => Check::fail(ID, format!("no credential agent pod runs on node {node}"), "install the agent (chart value agent.enabled=true) and check its DaemonSet tolerations"),
        None => Check::fail(ID, format!("the credential agent on node {node} is not ready"), "kubectl logs of the agent pod on that node"),
    }
}

/// 9. Which AWS SDK versions the credential mode in use needs.
fn sdk(f: &Facts) -> Check {
    const ID: &str = "sdk";
    let observed = f.pod.as_ref().and_then(|p| {
        p.containers
            .iter()
            .map(injection_of)
            .find(|i| *i != Injected::Nothing)
    });
    let container = match observed {
        Some(i) => i == Injected::ContainerCredentials,
        None => asked_mode(f) != CredentialMode::WebIdentity,
    };
    if container {
        Check::pass(ID, "container credentials with AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE need (per AWS's EKS Pod Identity list): boto3/botocore 1.34.41, AWS CLI 1.32.41 / 2.15.0, Java v2 2.21.30, Java v1 1.12.746, Go v2 release-2023-11-14, Go v1 1.47.11, JS v3 3.458.0, JS v2 2.1550.0, .NET 3.7.734.0, Ruby 3.188.0, PHP 3.287.1, Rust release-2024-03-13")
    } else {
        Check::pass(ID, "web identity needs: boto3 1.9.220 / botocore 1.12.200, AWS CLI 1.16.232 (any v2), Java v2 2.10.11, Java v1 1.11.704, Go v1 1.23.13 (any v2), JS v2 2.525.0 (any v3), .NET 3.3.659.1, Ruby 3.79.0, PHP 3.110.7, any Rust SDK")
    }
}

/// Check 10, region and STS endpoint: the annotation's value, and that a
/// pod sent to a regional STS endpoint knows its region.
fn region(f: &Facts, mutation: &Check) -> Check {
    const ID: &str = "region";
    let k = key(f, STS_REGIONAL_ENDPOINTS);
    let annotation = f
        .service_account
        .as_ref()
        .and_then(|s| s.annotations.get(&k));
    if let Some(v) = annotation {
        if v != "true" && v != "false" {
            return Check::warn(
                ID,
                format!("{k}={v:?} is neither \"true\" nor \"false\"; the webhook uses its --sts-regional-endpoint default"),
                format!("set {k} to \"true\" (regional STS endpoint) or \"false\" (global)"),
            );
        }
    }
    let Some(p) = &f.pod else {
        return match annotation {
            Some(v) => Check::pass(ID, format!("{k}={v}")),
            None => Check::skip(
                ID,
                format!("no {k} annotation: the webhook's --sts-regional-endpoint applies"),
            ),
        };
    };
    if !mutated(mutation) {
        return Check::skip(ID, "the pod is not mutated");
    }
    let web_identity: Vec<&super::facts::ContainerFacts> = p
        .containers
        .iter()
        .filter(|c| injection_of(c) == Injected::WebIdentity)
        .collect();
    if web_identity.is_empty() {
        return Check::skip(
            ID,
            "container credentials: the agent calls STS, not the pod",
        );
    }
    let has = |c: &super::facts::ContainerFacts, v: &str| c.env.iter().any(|e| e == v);
    let regional = web_identity
        .iter()
        .any(|c| has(c, "AWS_STS_REGIONAL_ENDPOINTS"));
    let no_region: Vec<&str> = web_identity
        .iter()
        .filter(|c| !has(c, "AWS_REGION") && !has(c, "AWS_DEFAULT_REGION"))
        .map(|c| c.name.as_str())
        .collect();
    if regional && !no_region.is_empty() {
        return Check::warn(
            ID,
            format!(
                "AWS_STS_REGIONAL_ENDPOINTS is set but {} has neither AWS_REGION nor AWS_DEFAULT_REGION: an SDK without a region from elsewhere (profile, IMDS) cannot pick the regional STS endpoint",
                no_region.join(", ")
            ),
            "start the webhook with --aws-default-region, or set AWS_REGION in the container",
        );
    }
    let with_region: Vec<&str> = web_identity
        .iter()
        .filter(|c| !no_region.contains(&c.name.as_str()))
        .map(|c| c.name.as_str())
        .collect();
    let regions = if with_region.is_empty() {
        "no AWS_REGION / AWS_DEFAULT_REGION injected (the SDK takes its region from its own configuration)".to_string()
    } else {
        format!(
            "AWS_REGION / AWS_DEFAULT_REGION in {}",
            with_region.join(", ")
        )
    };
    let endpoint = if regional {
        "regional STS endpoint (AWS_STS_REGIONAL_ENDPOINTS)"
    } else {
        "the SDK's default STS endpoint (no AWS_STS_REGIONAL_ENDPOINTS)"
    };
    Check::pass(ID, format!("{endpoint}; {regions}"))
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
