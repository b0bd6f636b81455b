//! Tests of [`super`].
use super::*;
use crate::decide::nodegroup::fixtures::*;

#[test]
fn cheapest_fit_and_gpu_only_for_gpu_work() {
    let g = groups();
    assert_eq!(place(&req(2, 8, 0), &g).unwrap().name, "small");
    assert_eq!(
        place(&req(16, 100, 0), &g).unwrap().name,
        "large",
        "cheap GPU nodes are kept for GPU work"
    );
    assert_eq!(place(&req(2, 8, 1), &g).unwrap().name, "cheap-gpu");
    assert_eq!(place(&req(2, 8, 2), &g).unwrap().name, "cheap-gpu");
    assert!(place(&req(2, 8, 3), &g).is_none());
}

#[test]
fn admission_names_the_largest_group() {
    let g = groups();
    let p = admission_problem(&req(4, 500, 0), &g).unwrap();
    assert_eq!(p.field, "spec.resources.memory");
    assert_eq!(
        p.to_string(),
        "spec.resources.memory \"500Gi\" is more than any node group offers (largest: large, 248Gi allocatable); ask for at most 248Gi, or ask your platform team for a bigger node group"
    );
    assert_eq!(
        admission_problem(&req(64, 1, 0), &g).unwrap().field,
        "spec.resources.cpu"
    );
    assert_eq!(
        admission_problem(&req(1, 1, 8), &g).unwrap().field,
        "spec.resources.gpu"
    );
    // Each dimension fits some group, but no single one.
    assert_eq!(
        admission_problem(&req(30, 200, 2), &g).unwrap().field,
        "spec.resources"
    );
    assert!(
        admission_problem(&req(4, 500, 0), &[]).is_none(),
        "no groups: admission does not guess"
    );
}

#[test]
fn cost_is_the_share_of_the_node() {
    let g = group("small", req(4, 16, 0), 0.4, 3);
    let c = run_cost(&req(2, 4, 0), &g, Duration::from_secs(3600));
    assert!((c - 0.2).abs() < 1e-9);
}
