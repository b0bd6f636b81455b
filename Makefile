# DataJob — every command a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
# kubectl from the local control plane build (same version as the apiserver).
K8S_BIN = $(shell bash e2e/build.sh 2>/dev/null | tail -1)
# kubectl from the PATH, else the one built with the local control plane.
KUBECTL ?= $(or $(shell command -v kubectl 2>/dev/null),$(K8S_BIN)/kubectl)
CLUSTER_DIR ?= $(HOME)/.cache/datajob/cluster
KUBECONFIG_FILE = $(CLUSTER_DIR)/kubeconfig

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## build the operator, the kubectl plugin and crdgen
	$(CARGO) build --bins

.PHONY: fmt
fmt: ## format the code
	$(CARGO) fmt --all

.PHONY: lint
lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features datajob-e2e/e2e -- -D warnings

.PHONY: deny
deny: ## cargo deny: banned crates (serde_yaml, OpenSSL), licenses, sources (deny.toml); `bash e2e/cargo-deny.sh advisories` needs the network
	bash e2e/cargo-deny.sh

.PHONY: unit
unit: ## unit, property and doc tests of every crate, CRD drift check (no cluster)
	$(CARGO) test --workspace
	$(CARGO) test --release -p datajob-e2e --test prop_validation validating_a_datajob_at_the_crds_bounds_takes_under_50_ms && $(CARGO) test --release -p datajob-operator --lib a_maximal_review_is_answered_in_50_ms_with_one_list

.PHONY: shape
shape: ## the code's shape: functions of 80 lines or more, the biggest files, pub items per crate
	python3 e2e/code-shape.py

.PHONY: crds
crds: ## regenerate crds/, the charts' copies and docs/api.md from the Rust types
	$(CARGO) run -q --bin crdgen -- --write crds
	cp crds/*.yaml charts/datajob/crds/
	cp crds/*.yaml charts/datajob-crds/files/
	$(CARGO) run -q --bin crdgen -- --api-doc > docs/api.md

.PHONY: chart-readme
chart-readme: ## regenerate the charts' README.md from their Chart.yaml and values.yaml
	$(CARGO) run -q --bin crdgen -- --chart-readme charts/datajob > charts/datajob/README.md
	$(CARGO) run -q --bin crdgen -- --chart-readme charts/datajob-crds > charts/datajob-crds/README.md

.PHONY: k8s-build
k8s-build: ## build the local control plane from the Go module proxy (cached)
	bash e2e/build.sh

.PHONY: cluster-up
cluster-up: ## start etcd, kube-apiserver, controller-manager, scheduler and kwok on 127.0.0.1 (DATAJOB_KARPENTER=1: real Karpenter too)
	bash e2e/cluster.sh up

.PHONY: cluster-down
cluster-down: ## stop the local control plane and remove its data
	bash e2e/cluster.sh down

.PHONY: cluster-env
cluster-env: ## print `export KUBECONFIG=…` for the local control plane
	@bash e2e/cluster.sh env

.PHONY: install
install: ## apply the CRDs and the operator namespace to the current KUBECONFIG
	$(KUBECTL) apply --server-side --force-conflicts -f crds/
	$(KUBECTL) create namespace datajob-system --dry-run=client -o yaml | $(KUBECTL) apply -f -
	$(KUBECTL) wait --for condition=established --timeout=30s crd/datajobs.datajob.dev

.PHONY: run
run: build ## run the operator in the foreground against the current KUBECONFIG (Ctrl-C stops it)
	DATAJOB_ADMIN_ADDR=127.0.0.1:8080 DATAJOB_WEBHOOK_ADDR=127.0.0.1:9443 \
	DATAJOB_WEBHOOK_URL=https://127.0.0.1:9443 POD_NAMESPACE=datajob-system \
	target/debug/datajob-operator

.PHONY: e2e
e2e: ## end-to-end tests on a fresh local control plane with real Karpenter (brought down afterwards)
	$(CARGO) build --bins
	$(CARGO) test -p datajob-e2e --features e2e --test e2e --no-run
	bash e2e/s3.sh build >/dev/null
	DATAJOB_KARPENTER=$${DATAJOB_KARPENTER:-1} bash e2e/run-e2e.sh bash e2e/suites.sh

.PHONY: bench
bench: ## scaling benchmark: schedule-aware, fixed-wait, simulated Karpenter-like and Cluster-Autoscaler-like, real Karpenter alone and with DataJob's buffers, on one trace (~17 min; BENCH_HOURS=1 ~11 min)
	bash e2e/bench/scaling.sh

.PHONY: bench-backfill
bench-backfill: ## the Backfill planner: 50 Backfills x 10 000 times, time per pass, times looked at, heap (seconds; no cluster)
	cargo bench -p datajob-core --bench backfill

.PHONY: bench-webhook
bench-webhook: ## the webhook under 200 large reviews at once: answers, heap peak, /readyz latency (seconds; no cluster)
	cargo bench -p datajob-operator --bench webhook_load

.PHONY: bench-scale
bench-scale: ## N DataJobs beside N CronJobs: creation and status lag, misses, operator memory and CPU (long; not in make test)
	bash e2e/bench/scale.sh

.PHONY: chaos
chaos: ## operator kills, apiserver and etcd restarts, webhook outage mid-burst: the long run (~10 min; make test runs a 2-minute one)
	$(CARGO) build --bins
	$(CARGO) test -p datajob-e2e --features e2e --test e2e --no-run
	DATAJOB_CHAOS_SECONDS=$${DATAJOB_CHAOS_SECONDS:-480} bash e2e/run-e2e.sh bash -c \
	  'export DATAJOB_OPERATOR_KUBECONFIG=$$(bash e2e/chart-identity.sh | tail -n 1) && cargo test -p datajob-e2e --features e2e --test e2e -- --test-threads=1 --nocapture alone::chaos::'

.PHONY: fuzz
fuzz: ## the property tests of every parser and of the whole validation, long (PROPTEST_CASES, default 50000)
	PROPTEST_CASES=$${PROPTEST_CASES:-50000} $(CARGO) test --release -p datajob-e2e --test prop_parsers --test prop_validation

.PHONY: test
test: lint deny unit image e2e ## everything CI checks: fmt, clippy, cargo deny, unit tests, the image, end-to-end tests

.PHONY: krew
krew: ## the kubectl plugin's krew package: static release build, archive and manifest in target/krew, validated by krew
	CC_x86_64_unknown_linux_musl=musl-gcc $(CARGO) build --release --locked --target x86_64-unknown-linux-musl --bin kubectl-datajob
	bash e2e/krew.sh target/x86_64-unknown-linux-musl/release/kubectl-datajob

.PHONY: image
image: ## the operator's image as an OCI archive, no container daemon (target/image/datajob-operator.tar)
	bash e2e/operator-image.sh

.PHONY: demo
demo: ## set up what the demo needs (apt-get as root), start the local cluster and the operator, apply the examples, show their status
	bash e2e/demo.sh deps
	$(CARGO) build --bins
	bash e2e/demo.sh

.PHONY: demo-down
demo-down: ## stop what `make demo` started
	bash e2e/demo.sh down
