//! tenancy-operator: customers, projects and expiring memberships for any Kubernetes cluster.

pub mod api;
pub mod cli;
pub mod controller;
pub mod desired;
pub mod lifecycle;
pub mod devcluster;
