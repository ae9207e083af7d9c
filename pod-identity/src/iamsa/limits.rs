//! IAM's size limits on what planning writes, checked before anything is
//! changed: a limit IAM enforces half-way through a run would leave it
//! partly done.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::iam::RoleState;
use crate::plan::Change;
use crate::policy::trust;

/// Refuses a trust policy longer than IAM ever allows, before anything is
/// changed, and notes one over the default quota (which IAM would refuse
/// half-way through the run unless the account's quota was raised).
pub fn check_trust_lengths(
    roles: &BTreeMap<String, Option<RoleState>>,
    changes: &[Change],
    notes: &mut Vec<String>,
) -> Result<()> {
    let mut touched: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::CreateRole { name, .. } | Change::UpdateTrust { name, .. } => {
                Some(name.as_str())
            }
            _ => None,
        })
        .collect();
    touched.sort_unstable();
    touched.dedup();
    for name in touched {
        let Some(Some(role)) = roles.get(name) else {
            continue;
        };
        let len = trust::counted_len(&role.trust);
        let subjects = trust::all_subjects(&role.trust).len();
        if len > trust::MAX_LEN {
            return Err(Error::Refused(format!(
                "the trust policy of IAM role {name} would be {len} characters ({subjects} ServiceAccounts), over the {} IAM allows at most, so nothing was changed: bind some of these ServiceAccounts to another role (--role-name)",
                trust::MAX_LEN
            )));
        }
        if len > trust::DEFAULT_MAX_LEN {
            notes.push(format!(
                "the trust policy of IAM role {name} will be {len} characters ({subjects} ServiceAccounts), over IAM's default quota of {} (\"Role trust policy length\", adjustable up to {} in Service Quotas): unless the quota was raised, IAM refuses it with LimitExceeded; then raise the quota or bind some ServiceAccounts to another role",
                trust::DEFAULT_MAX_LEN,
                trust::MAX_LEN
            ));
        }
    }
    Ok(())
}

/// IAM's limit on the total size of a role's inline policies (characters,
/// whitespace not counted).
pub const MAX_INLINE_TOTAL: usize = 10_240;

/// Refuses, before any change, a role whose inline policies (attachPolicy
/// plus well-known sets) would add up to more than IAM allows.
pub fn check_inline_lengths(
    roles: &BTreeMap<String, Option<RoleState>>,
    changes: &[Change],
) -> Result<()> {
    for change in changes {
        let Change::PutInlinePolicy { role: name, .. } = change else {
            continue;
        };
        let Some(Some(role)) = roles.get(name) else {
            continue;
        };
        let total: usize = role.inline_documents.values().map(trust::counted_len).sum();
        if total > MAX_INLINE_TOTAL {
            return Err(Error::Refused(format!(
                "the inline policies of IAM role {name} ({}) would be {total} characters, over the {MAX_INLINE_TOTAL} IAM allows for a role, so nothing was changed: use managed policies (attachPolicyARNs) for some of them",
                role.inline_documents.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok(())
}
