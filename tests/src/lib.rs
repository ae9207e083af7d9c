//! End-to-end test harness: a real etcd and kube-apiserver on loopback, the
//! real `pod-identity-webhook` binary, and helpers to talk to the API server.

pub mod harness;
