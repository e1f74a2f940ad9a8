//! tenancy-operator: customers, projects and expiring memberships for any Kubernetes cluster.

pub mod admission;
pub mod api;
pub mod cli;
pub mod controller;
pub mod desired;
pub mod devcluster;
pub mod fault;
pub mod https;
pub mod ledger;
pub mod lifecycle;
pub mod metrics;
pub mod run;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod views;
pub mod watch;
