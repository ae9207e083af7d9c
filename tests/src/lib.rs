//! End-to-end test harness: a real etcd and kube-apiserver on loopback, the
//! real `pod-identity-webhook` and `credential-agent` binaries, moto as the
//! STS server, and helpers to talk to them.

pub mod agent;
pub mod broker;
pub mod clients;
pub mod harness;
pub mod helm;
pub mod iam;
pub mod node;
pub mod sts_recorder;
