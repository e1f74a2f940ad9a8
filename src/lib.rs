//! tenancy-operator: customers, projects and expiring memberships for any Kubernetes cluster.

pub mod admission;
pub mod api;
pub mod cli;
pub mod controller;
pub mod desired;
pub mod devcluster;
pub mod lifecycle;
