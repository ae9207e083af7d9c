//! A checklist and how it is printed.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// Not run: what it needs is missing (an earlier check says why) or it
    /// does not apply.
    Skip,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable id: serviceaccount, webhook, mutation, token, provider, role,
    /// exchange, agent, sdk.
    pub id: &'static str,
    pub status: Status,
    /// What was found.
    pub evidence: String,
    /// What to do, when something is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(id: &'static str, evidence: impl Into<String>) -> Check {
        Check {
            id,
            status: Status::Pass,
            evidence: evidence.into(),
            fix: None,
        }
    }
    pub fn skip(id: &'static str, evidence: impl Into<String>) -> Check {
        Check {
            id,
            status: Status::Skip,
            evidence: evidence.into(),
            fix: None,
        }
    }
    pub fn fail(id: &'static str, evidence: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            id,
            status: Status::Fail,
            evidence: evidence.into(),
            fix: Some(fix.into()),
        }
    }
    pub fn warn(id: &'static str, evidence: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            id,
            status: Status::Warn,
            evidence: evidence.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The checklist of one pod or ServiceAccount.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `pod app/web` or `serviceaccount app/reader`.
    pub target: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    }
    pub fn warnings(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Warn)
            .count()
    }

    pub fn render(&self) -> String {
        let mut out = format!("doctor {}\n", self.target);
        for (i, c) in self.checks.iter().enumerate() {
            out.push_str(&format!(
                "{:>2}. {} {:<14} {}\n",
                i + 1,
                c.status.label(),
                c.id,
                c.evidence
            ));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("{:>24}fix: {fix}\n", ""));
            }
        }
        out.push_str(&format!(
            "{} failed, {} warning(s)\n",
            self.failed(),
            self.warnings()
        ));
        out
    }
}
