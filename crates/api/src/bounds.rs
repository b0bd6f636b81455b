//! How many items a list or map of a spec may hold and how long its strings may be: the
//! one source of the bounds that the CRD schemas state (`maxItems`, `maxProperties`,
//! `maxLength`) and that validation enforces again, for `kubectl datajob plan` and for
//! objects stored before a schema had the bound.
//!
//! Why bounds at all (issue 25, "expensive input"): an unbounded list makes every check of
//! it a cost the writer chooses, and a review that takes too long is, under the webhook's
//! `failurePolicy: Ignore`, admitted without validation. Each bound is far above what a
//! real spec holds and far below what would make a check slow. Lengths count characters,
//! as `maxLength` does.

// ---- DataJob ------------------------------------------------------------------------

/// `spec.command` items. Kubernetes bounds a container's command only by the object's
/// size; an entrypoint with more than a few words is a script, which belongs in the image.
pub const MAX_COMMAND_ITEMS: usize = 64;
/// `spec.args` items: room for long generated argument lists (Kubernetes: unbounded).
pub const MAX_ARGS_ITEMS: usize = 256;
/// One `spec.command` or `spec.args` item: as long as one `spec.env[].value`
/// (configuration beyond this belongs in a ConfigMap).
pub const MAX_ARG_LEN: usize = 32 << 10;
/// `spec.env` items. Kubernetes allows any number on a container; the operator adds about
/// ten of its own and one per input, and 256 is more than any job we have seen.
pub const MAX_ENV_ITEMS: usize = 256;
/// `spec.inputs` items: a run waits for each, and each adds a variable and perhaps a
/// volume to its pod. 64 upstreams is a wide fan-in.
pub const MAX_INPUTS: usize = 64;
/// One `spec.inputs` item: a DataJob name (see [`crate::datajob::MAX_NAME_LEN`]).
pub const MAX_INPUT_LEN: usize = crate::datajob::MAX_NAME_LEN;
/// `spec.podAnnotations` entries. Kubernetes bounds a pod's annotations by size only
/// (256 KiB); tools that read annotations use a handful each.
pub const MAX_POD_ANNOTATIONS: usize = 64;
/// `spec.params` entries: a trigger's `--arg` names; related settings go in one parameter.
pub const MAX_PARAMS: usize = 32;
/// `spec.image`: the reference grammar's limit (github.com/distribution/reference).
pub const MAX_IMAGE_LEN: usize = 255;
/// `spec.schedule`: five cron fields with lists and steps fit in far less.
pub const MAX_SCHEDULE_LEN: usize = 128;
/// `spec.timeZone`: the longest IANA name has 32 characters.
pub const MAX_TIME_ZONE_LEN: usize = 64;
/// A duration (`deadline`, `pendingTimeout`, `expectBy`, a NodeGroup's times).
pub const MAX_DURATION_LEN: usize = 32;
/// `spec.serviceAccountName` and other object names: a DNS subdomain.
pub const MAX_OBJECT_NAME_LEN: usize = 253;
/// `spec.output`: an object store key may have 1024 bytes, with room for the scheme and
/// bucket.
pub const MAX_OUTPUT_LEN: usize = 1100;
/// `spec.owner`: a label value of metrics and alerts.
pub const MAX_OWNER_LEN: usize = 128;

// ---- NodeGroup ------------------------------------------------------------------------

/// `spec.labels` entries: a node carries a few dozen labels at most.
pub const MAX_NODE_LABELS: usize = 64;
/// `spec.taints` items: each becomes a toleration of every run placed on the group.
pub const MAX_TAINTS: usize = 32;
/// `spec.namespaces` items: the namespaces a group serves.
pub const MAX_NAMESPACES: usize = 256;
/// A namespace name: a DNS label.
pub const MAX_NAMESPACE_LEN: usize = 63;
/// A label or taint key: `[prefix/]name`, a 253-character prefix and a 63-character name.
pub const MAX_KEY_LEN: usize = 317;
/// A label or taint value.
pub const MAX_LABEL_VALUE_LEN: usize = 63;
/// Short words and numbers: a taint's effect, a price, a Cluster API kind.
pub const MAX_WORD_LEN: usize = 64;
