//! Fault points, for the crash-consistency tests only: named places right after a write of a
//! multi-step action. With `TENANCY_FAULT=<name>` in its environment the operator aborts (as a
//! SIGKILL would stop it: nothing unwinds, nothing is flushed) the first time it passes that
//! point; a restarted operator must then finish the action as if nothing had happened. Unset
//! (production), each point is one comparison with a value read once.

use std::sync::OnceLock;

/// Every fault point, in the order its action passes them.
pub const POINTS: &[&str] = &[
    // Soft delete: access first, then the archive, the freeze, the team, the ledger, the
    // finalizer.
    "soft-delete/cluster-roles-removed",
    "soft-delete/bindings-removed",
    "soft-delete/archived",
    "soft-delete/frozen",
    "soft-delete/membership-revoked",
    "soft-delete/ledger-released",
    // Recovery: the record, then the team.
    "recover/recorded",
    "recover/member-restored",
    // Move: memberships revoked, the previous customer's reservation released.
    "move/membership-revoked",
    "move/ledger-released",
    // End date (and credit) suspension: the plan stored, the workloads scaled; and back.
    "suspend/planned",
    "suspend/workload-scaled",
    "resume/workload-restored",
    // The purge of an archived namespace whose retention is over.
    "purge/namespace-deleted",
    // A quota ledger write: a reservation by the webhook before it admits the object, or a
    // release or correction by the operator.
    "ledger/written",
    // A month closed before the next one is opened.
    "usage/record-written",
];

static ARMED: OnceLock<Option<String>> = OnceLock::new();

/// Aborts the process here if `TENANCY_FAULT` names this point.
pub fn point(name: &'static str) {
    debug_assert!(POINTS.contains(&name), "unlisted fault point {name}");
    let armed = ARMED.get_or_init(|| {
        std::env::var("TENANCY_FAULT")
            .ok()
            .filter(|s| !s.is_empty())
    });
    if armed.as_deref() == Some(name) {
        eprintln!("TENANCY_FAULT: stopping dead at {name}");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    /// Every listed point is passed somewhere, and every point passed is listed.
    #[test]
    fn every_point_is_in_the_code_and_listed() {
        let code = [
            include_str!("controller/termination.rs"),
            include_str!("controller/project.rs"),
            include_str!("controller/expiry.rs"),
            include_str!("controller/archive.rs"),
            include_str!("controller/apply.rs"),
            include_str!("ledger.rs"),
        ]
        .concat();
        for p in super::POINTS {
            assert!(code.contains(&format!("\"{p}\"")), "{p} is passed nowhere");
        }
        let passed = code.matches("fault::point(").count();
        // Suspend and resume share one call.
        assert_eq!(
            passed + 1,
            super::POINTS.len(),
            "a point passed but not listed"
        );
    }
}
