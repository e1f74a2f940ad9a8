//! Building `status.conditions` the way kstatus (Argo CD, Flux) reads them.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Collects conditions for one status, keeping the transition time of any condition whose
/// status did not change (so an unchanged status serializes identically and is not written).
pub struct Conditions<'a> {
    previous: &'a [Condition],
    generation: Option<i64>,
    now: Timestamp,
    out: Vec<Condition>,
}

impl<'a> Conditions<'a> {
    pub fn new(previous: &'a [Condition], generation: Option<i64>, now: Timestamp) -> Self {
        Conditions {
            previous,
            generation,
            now,
            out: Vec::new(),
        }
    }

    pub fn set(
        &mut self,
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> &mut Self {
        let status = if status { "True" } else { "False" };
        let last_transition_time = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(self.now));
        self.out.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: self.generation,
            last_transition_time,
        });
        self
    }

    /// Whether a condition set so far is True.
    pub fn is_true(&self, type_: &str) -> bool {
        self.out
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    }

    pub fn finish(mut self) -> Vec<Condition> {
        self.out.sort_by(|a, b| a.type_.cmp(&b.type_));
        self.out
    }
}

/// Whether status `next` differs from `previous` only in figures: the two are equal once
/// `figures` has cleared the figures of each and the wording (`message`) of the conditions it
/// hands back. A change of type, status or reason of a condition is not a figure.
pub fn differs_only_in_figures<S: Clone + PartialEq>(
    previous: &S,
    next: &S,
    figures: impl Fn(&mut S) -> &mut Vec<Condition>,
) -> bool {
    let bare = |s: &S| {
        let mut s = s.clone();
        for c in figures(&mut s) {
            c.message.clear();
        }
        s
    };
    previous != next && bare(previous) == bare(next)
}

/// Whether a condition in a list is True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// What kstatus (sigs.k8s.io/cli-utils, read by Flux) makes of a status whose generation was
/// observed: `Failed` with Stalled=True, `InProgress` with Reconciling=True or Ready=False, else
/// `Current`. For unit tests of the conditions each plan writes; the e2e suite asks the library
/// itself.
#[cfg(test)]
pub fn kstatus(conditions: &[Condition]) -> &'static str {
    let has = |t: &str, s: &str| conditions.iter().any(|c| c.type_ == t && c.status == s);
    if has("Reconciling", "True") {
        "InProgress"
    } else if has("Stalled", "True") {
        "Failed"
    } else if has("Ready", "False") {
        "InProgress"
    } else {
        "Current"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let t0: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2027-01-02T00:00:00Z".parse().unwrap();
        let mut first = Conditions::new(&[], Some(1), t0);
        first.set("Ready", true, "Ready", "ok");
        let first = first.finish();
        let mut again = Conditions::new(&first, Some(1), t1);
        again
            .set("Ready", true, "Ready", "ok")
            .set("QuotaReady", false, "Waiting", "x");
        let again = again.finish();
        assert_eq!(
            again
                .iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
                .last_transition_time
                .0,
            t0
        );
        assert_eq!(
            again
                .iter()
                .find(|c| c.type_ == "QuotaReady")
                .unwrap()
                .last_transition_time
                .0,
            t1
        );
        assert!(is_true(&again, "Ready"));
    }
}
