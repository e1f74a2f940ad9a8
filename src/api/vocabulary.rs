//! The label and annotation vocabulary: what the operator writes on what it makes, and what it
//! reads from users.

/// Label keys and values the operator puts on what it creates.
pub mod labels {
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGED_BY_VALUE: &str = "tenancy-operator";
    /// On a namespace and every child: the project it belongs to.
    pub const PROJECT: &str = "tenancy.dev/project";
    /// On a namespace: the UID of the project incarnation it was created for or adopted by. A
    /// namespace belongs to that one project: a later Project of the same name is not given it
    /// unless staff say so (annotation `tenancy.dev/adopt-namespace`).
    pub const PROJECT_UID: &str = "tenancy.dev/project-uid";
    /// On a namespace: the incarnation of the project it was created for or adopted by (the
    /// project's annotation `tenancy.dev/incarnation`). Unlike the UID it survives a backup and
    /// restore: a restored Project owns the restored namespace labelled with its incarnation.
    pub const INCARNATION: &str = "tenancy.dev/incarnation";
    /// On a namespace: the customer its project belongs to.
    pub const CUSTOMER: &str = "tenancy.dev/customer";
    /// On a namespace: `active` or `terminated` (soft-deleted).
    pub const STATE: &str = "tenancy.dev/state";
    /// On a namespace: `true` once the project's end date has passed.
    pub const FINISHED: &str = "tenancy.dev/finished";
    /// On a child: which part of the project it implements (quota, limits, membership, owner,
    /// support, access).
    pub const PART: &str = "tenancy.dev/part";
    /// On a membership's RoleBinding: the membership's name (or a token of it when too long).
    pub const MEMBERSHIP: &str = "tenancy.dev/membership";
    /// Selector of everything the operator manages.
    pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=tenancy-operator";
}

/// Annotation keys.
pub mod annotations {
    /// On a membership: who created it (recorded by the webhook).
    pub const CREATED_BY: &str = "tenancy.dev/created-by";
    /// On a project: who last changed its end date (recorded by the webhook).
    pub const END_DATE_REQUESTED_BY: &str = "tenancy.dev/end-date-requested-by";
    /// On a soft-deleted project's namespace: the archive record (JSON).
    pub const ARCHIVE: &str = "tenancy.dev/archive";
    /// On a membership, written by the operator only: `Pending` (an invitation not accepted yet)
    /// or `Revoked`, the phase its status holds. Status is not part of every backup: a membership
    /// restored without it keeps withholding access by this (tenants can neither set, change nor
    /// remove it: the webhook puts back what was there).
    pub const PHASE: &str = "tenancy.dev/phase";
    /// On a membership: the invited subject accepts the invitation with `"true"`.
    pub const ACCEPT: &str = "tenancy.dev/accept";
    /// On a project being deleted: who deleted it (recorded by the webhook).
    pub const DELETED_BY: &str = "tenancy.dev/deleted-by";
    /// On a project, set by staff only: adopt a namespace that this project incarnation did not
    /// create (an archive of another customer, or a namespace whose project vanished without its
    /// soft delete).
    pub const ADOPT_NAMESPACE: &str = "tenancy.dev/adopt-namespace";
    /// On a project: its incarnation, a random identity the webhook gives every Project created
    /// without one. Written on its namespace as a label, it ties the namespace to this project
    /// across a backup and restore (where the UID changes). Only staff (a restore runs as staff)
    /// may create a Project carrying one or change it: it would hand over an existing namespace.
    pub const INCARNATION: &str = "tenancy.dev/incarnation";
    /// On a project: who set spec.checklistReview, when, and a digest of the answers it covered
    /// (recorded by the webhook).
    pub const CHECKLIST_REVIEWED_BY: &str = "tenancy.dev/checklist-reviewed-by";
    pub const CHECKLIST_REVIEWED_AT: &str = "tenancy.dev/checklist-reviewed-at";
    pub const CHECKLIST_REVIEWED_ANSWERS: &str = "tenancy.dev/checklist-reviewed-answers";
    /// The annotations only the webhook writes (tenants can neither set nor change them).
    pub const AUDIT: [&str; 6] = [
        CREATED_BY,
        END_DATE_REQUESTED_BY,
        DELETED_BY,
        CHECKLIST_REVIEWED_BY,
        CHECKLIST_REVIEWED_AT,
        CHECKLIST_REVIEWED_ANSWERS,
    ];
}

/// The finalizer on every Project that turns a delete into a soft delete (DESIGN §3): the
/// mutating webhook gives it to a new project, the operator to one that arrived without it.
pub const SOFT_DELETE_FINALIZER: &str = "tenancy.dev/soft-delete";
