# The project's commands. `make dev` for a local cluster with the operator; `make test` for
# everything CI checks.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CARGO ?= cargo
# Evaluated once, when make starts: the start of `make test`.
START := $(shell date +%s)

banner = @printf '\n==> %s\n' "$(1)"

.NOTPARALLEL:
.PHONY: build crds control-plane dev test fmt-check clippy unit crd-check e2e bench bench-views bench-caches soak

## build: compile the operator.
build:
	$(CARGO) build

## crds: regenerate crds/ from the Rust types (commit the result).
crds:
	$(CARGO) run -q -- crd --write crds

## control-plane: build etcd, kube-apiserver, kube-controller-manager and helm once into the
## cache (~12 minutes the first time on 2 cores; afterwards it only says "cached").
control-plane:
	bash tests/control-plane/build.sh

## dev: a local control plane with the CRDs, the operator and examples/, until Ctrl-C.
## DEV_ARGS="--dir ..." etc. pass options (see `cargo run -- dev --help`).
dev:
	$(CARGO) run -- dev $(DEV_ARGS)

## test: format, lint, unit tests, CRD drift, then the end-to-end suite on a real control plane.
test: fmt-check clippy unit crd-check e2e
	@printf '\n==> make test: all checks passed in %ss\n' "$$(( $$(date +%s) - $(START) ))"

fmt-check:
	$(call banner,1/6 format: cargo fmt --check)
	$(CARGO) fmt --check

clippy:
	$(call banner,2/6 lint: cargo clippy --all-targets -- -D warnings)
	$(CARGO) clippy --all-targets -- -D warnings

unit:
	$(call banner,3/6 unit tests: cargo test --lib --bins)
	$(CARGO) test --lib --bins

crd-check:
	$(call banner,4/6 drift: crds/ must equal the generated CRDs, README.md's bench table what bench/*.json make)
	$(CARGO) run -q -- crd --check crds
	$(CARGO) run -q -- bench-table --results bench --check README.md

e2e:
	$(call banner,5/6 control-plane binaries (built once into the cache))
	bash tests/control-plane/build.sh >/dev/null
	@command -v kubectl >/dev/null || { echo "error: the end-to-end tests need kubectl on PATH" >&2; exit 1; }
	$(call banner,6/6 end-to-end: cargo test --test e2e (a fresh control plane))
	$(CARGO) test --test e2e

## bench: the release operator next to writing the same objects yourself, on a fresh control
## plane: BENCH_PROJECTS projects (default 200) with 3 memberships each, BENCH_IN_FLIGHT (default
## 20) at a time, (a) as plain objects and (b) through the operator to all Ready; prints the ratio,
## webhook p50/p99, writes and reconciles per project, RSS, CPU and quiet-window writes as one
## table and writes target/bench/operator.json (not part of `make test`); keeps it as
## bench/operator-<projects>-<in flight>.json and makes README.md's table again from bench/ (commit
## both to publish the figures; `make test` checks they agree). BENCH_SETTLE_SECONDS
## (default 0: not measured) waits that long after b and reports the operator's RSS then.
BENCH_PROJECTS ?= 200
BENCH_IN_FLIGHT ?= 20
BENCH_SETTLE_SECONDS ?= 0
bench:
	bash tests/control-plane/build.sh >/dev/null
	BENCH_PROJECTS=$(BENCH_PROJECTS) BENCH_IN_FLIGHT=$(BENCH_IN_FLIGHT) \
		BENCH_SETTLE_SECONDS=$(BENCH_SETTLE_SECONDS) \
		RUST_LOG=$${RUST_LOG:-info,tenancy_operator::controller::apply=debug} \
		$(CARGO) bench --bench operator

## bench-views: what `kubectl get myprojects` costs with BENCH_PROJECTS (default 10000) projects:
## the index in process, then p50/p99 through kube-apiserver with the release operator, and its
## memory with the views on and off (not part of `make test`; ~15 minutes on 2 cores).
bench-views:
	bash tests/control-plane/build.sh >/dev/null
	$(CARGO) bench --bench views

## bench-caches: what a project's own objects (the Project, its 3 memberships, its namespace) cost
## the operator's watch caches with BENCH_PROJECTS (default 10000) projects, kept whole in kube's
## Store and as compressed JSON, and what reading one back costs; in process, seconds (not part of
## `make test`).
bench-caches:
	$(CARGO) bench --bench caches

## soak: SOAK_MINUTES (default 30) of a seeded random workload (SOAK_SEED; default the time,
## printed) at SOAK_RATE operations a minute (default 30) on a fresh control plane: creations,
## memberships with roles changed, removed and expiring, moves, end dates, soft deletes and
## recoveries, against two release replicas with leader election, the leader SIGKILLed every
## SOAK_KILL_EVERY seconds (default 180; a third of a shorter run). Then the cluster must equal the model's prediction,
## the leader's RSS must be flat and a 30 s quiet window must see 0 writes; prints operations by
## kind, kills, invariant checks, RSS, CPU and reconcile errors as one table, writes
## target/bench/soak.json and fails on any mismatch (not part of `make test`).
SOAK_MINUTES ?= 30
SOAK_RATE ?= 30
soak:
	bash tests/control-plane/build.sh >/dev/null
	SOAK_MINUTES=$(SOAK_MINUTES) SOAK_RATE=$(SOAK_RATE) SOAK_SEED=$(SOAK_SEED) \
		SOAK_KILL_EVERY=$(SOAK_KILL_EVERY) $(CARGO) bench --bench soak
