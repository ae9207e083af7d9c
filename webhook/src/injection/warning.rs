//! Problems worth telling the user about in the AdmissionResponse `warnings`
//! (kubectl prints them), each counted by kind in a metric.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WarningKind {
    InvalidRoleArn,
    NearMissAnnotation,
    InvalidAnnotationValue,
    SidecarNotInjected,
}

impl WarningKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WarningKind::InvalidRoleArn => "invalid_role_arn",
            WarningKind::NearMissAnnotation => "near_miss_annotation",
            WarningKind::InvalidAnnotationValue => "invalid_annotation_value",
            WarningKind::SidecarNotInjected => "sidecar_not_injected",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub kind: WarningKind,
    pub message: String,
}

impl Warning {
    pub fn new(kind: WarningKind, message: impl Into<String>) -> Self {
        Warning {
            kind,
            message: message.into(),
        }
    }
}
