# statefulwebapp-operator: every command a developer or CI needs. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TOOLS_BIN = $(shell hack/tools/build.sh --dir)
KUBECONFIG_PATH := $(CURDIR)/.cluster/kubeconfig
KUBECTL = $(TOOLS_BIN)/kubectl --kubeconfig $(KUBECONFIG_PATH)
PYTEST_ARGS ?=
RESULTS := .test-results
# Each suite writes its JUnit file (every test's duration) to $(RESULTS) and prints its slowest
# 25. A hung test fails after E2E_TIMEOUT seconds, and a run stops after MAXFAIL failures: a
# broken operator fails the run in minutes, not at CI's limit.
E2E_TIMEOUT ?= 1200
MAXFAIL ?= 5
PYTEST_E2E = --timeout=$(E2E_TIMEOUT) --maxfail=$(MAXFAIL) -rs --durations=25

.PHONY: help
help: ## List the targets with what they do
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) is missing: install Python 3.11 or newer."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with the operator and its dev dependencies

.PHONY: tools
tools: ## Build the pinned cluster tools (kube, etcd, kwok, CoreDNS, helm, crictl); install the Debian packages
	@hack/tools/packages.sh
	@hack/tools/build.sh >/dev/null

.PHONY: tools-kwok
tools-kwok: ## Build only what the kwok-only cluster of make demo runs (kube, etcd, kwok, CoreDNS): no Debian package, no root
	@hack/tools/build.sh kube etcd kwok kwokctl coredns >/dev/null

.PHONY: image
image: tools ## Build the operator image and the real node's images with podman, no registry needed
	@hack/images/build.sh

REAL_NODE ?= 0
.PHONY: cluster-up
cluster-up: $(if $(filter 1,$(REAL_NODE)),tools,tools-kwok) ## Start the local cluster (idempotent; REAL_NODE=1 adds a real kubelet node and a loopback NFS server); prints the kubeconfig path
	@REAL_NODE=$(REAL_NODE) hack/cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local cluster, CoreDNS, the real node and the NFS server; fails if a process, mount, device or iptables chain is left
	@hack/cluster/down.sh

.PHONY: nfs-export
nfs-export: ## Print, as one line of JSON, the test NFS export's spec.storage.nfs (server, path, mountOptions)
	@hack/cluster/nfs.sh export

.PHONY: kind-image
kind-image: tools image ## Build the kind node image with podman and no registry (kubeadm, flannel, local-path, the images kubeadm asks for); prints its name
	@hack/kind/node-image.sh

.PHONY: kind-up
kind-up: kind-image ## Create the kind cluster of tests/e2e/kind.yaml (1 tainted control plane, 3 workers) on podman, load the images, start its NFS server; prints the kubeconfig path
	@hack/kind/kind.sh up

.PHONY: kind-down
kind-down: ## Delete the kind cluster, its NFS server and network; fails naming any container, volume, network or iptables rule left
	@hack/kind/kind.sh down

.PHONY: kind-nfs-export
kind-nfs-export: ## Print, as one line of JSON, the kind cluster's test NFS export (as nfs-export does)
	@hack/kind/kind.sh nfs-export

.PHONY: e2e-kind
e2e-kind: venv kind-image ## E2E tests on the kind cluster through pytest-kind (created if missing, left running)
	@mkdir -p $(RESULTS)
	$(PY) -m pytest tests/e2e --cluster=kind $(PYTEST_E2E) --junitxml=$(RESULTS)/e2e-kind.xml \
	  $(PYTEST_ARGS)

.PHONY: kubeconfig
kubeconfig: ## Print the local cluster's kubeconfig path
	@echo $(KUBECONFIG_PATH)

LINT_PY := operator tests bench hack/durations.py hack/render-sample.py hack/lint
.PHONY: lint
lint: venv lint-k8s ## ruff on the operator, the tests, the benchmark and the scripts; mypy --strict on the operator, the tests and the benchmark; lint-k8s
	$(VENV)/bin/ruff check $(LINT_PY)
	$(VENV)/bin/ruff format --check $(LINT_PY)
	@# What mypy checks is pyproject.toml's [tool.mypy] packages: statefulwebapp, tests, bench.
	$(VENV)/bin/mypy

# Needs Go (as `make tools` does): it builds helm and kube-score into the tools cache when
# missing, so on a fresh clone `make test`, which lints first, builds them there.
.PHONY: lint-k8s
lint-k8s: venv ## kube-score on the chart and on the sample app's renderings; findings not in hack/lint/allow.yaml fail
	@hack/tools/build.sh helm kube-score >/dev/null
	$(PY) hack/lint/kube_score.py

.PHONY: unit
unit: venv ## Unit tests: no cluster, no Go tools (the chart's tests need helm: make test runs them)
	@hack/tools/packages.sh busybox iptables prometheus
	@mkdir -p $(RESULTS)
	$(PY) -m pytest tests/unit -m "not helm" --timeout=120 --durations=25 \
	  --junitxml=$(RESULTS)/unit.xml $(PYTEST_ARGS)

.PHONY: durations
durations: venv ## Per-module tests and seconds of the last make test, from the JUnit files in .test-results/
	@$(PY) hack/durations.py $(RESULTS)/*.xml

.PHONY: e2e
e2e: venv tools ## E2E tests on the local cluster with its real node (left running)
	@REAL_NODE=1 hack/cluster/up.sh >/dev/null
	@mkdir -p $(RESULTS)
	$(PY) -m pytest tests/e2e $(PYTEST_E2E) --junitxml=$(RESULTS)/e2e-local.xml $(PYTEST_ARGS)

.PHONY: test
test: venv lint unit tools kind-image ## Everything CI runs: lint, unit tests, then e2e on a fresh local cluster with a real node and on a fresh kind cluster, both torn down after; durations in .test-results/
	@rm -f $(RESULTS)/e2e-*.xml $(RESULTS)/unit-helm.xml
	$(PY) -m pytest tests/unit -m helm --timeout=120 --junitxml=$(RESULTS)/unit-helm.xml $(PYTEST_ARGS)
	@hack/cluster/down.sh >/dev/null 2>&1 || true
	@hack/kind/kind.sh down >/dev/null 2>&1 || true
	@# Each teardown's own check (nothing left running, mounted or configured) fails the run too,
	@# and so does a foreign chain, cgroup, namespace or bridge it removed (neighbours.sh).
	@# The local cluster is stopped before kind starts: two cores do not hold both at once.
	@trap 'status=$$?; hack/cluster/down.sh || status=1; hack/cluster/neighbours.sh remove; hack/kind/kind.sh down || status=1; $(PY) hack/durations.py $(RESULTS)/*.xml || true; exit $$status' EXIT; \
	  hack/cluster/neighbours.sh plant && REAL_NODE=1 hack/cluster/up.sh >/dev/null \
	  && $(PY) -m pytest tests/e2e $(PYTEST_E2E) --junitxml=$(RESULTS)/e2e-local.xml $(PYTEST_ARGS) \
	  && hack/cluster/down.sh && hack/cluster/neighbours.sh check \
	  && $(PY) -m pytest tests/e2e --cluster=kind $(PYTEST_E2E) --junitxml=$(RESULTS)/e2e-kind.xml \
	    $(PYTEST_ARGS)

.PHONY: crd
crd: cluster-up ## Install the CRDs (StatefulWebApp, StatefulWebAppRestore) into the local cluster
	$(KUBECTL) apply --server-side -f crds/
	$(KUBECTL) wait --for=condition=Established crd/statefulwebapps.apps.k8slab.io crd/statefulwebapprestores.apps.k8slab.io --timeout=60s

.PHONY: run
run: venv crd ## Run the operator in the foreground (a standby if the chart's operator leads)
	@$(KUBECTL) create namespace swa-system >/dev/null 2>&1 || true
	KUBECONFIG=$(KUBECONFIG_PATH) $(VENV)/bin/statefulwebapp-operator --health none

.PHONY: demo
demo: venv tools-kwok ## Local cluster + CRD + operator + the sample app, waits until Ready and shows it
	@hack/demo.sh

.PHONY: demo-kind
demo-kind: venv kind-image ## The sample on real pods: kind cluster, the chart's operator, the test NFS export; shows each replica's page (make kind-down ends it)
	@hack/demo-kind.sh

BENCH_ARGS ?=
.PHONY: bench
bench: venv tools ## Fleet benchmark, each side on a freshly started audited cluster (BENCH_ARGS="--n 1,100 --soak 60"); writes bench/results/
	$(VENV)/bin/pip install --quiet -e '.[dev,bench]'
	@# bench.fleet starts (and stops) a fresh cluster for each side of each run.
	@trap 'hack/cluster/down.sh' EXIT; $(PY) -m bench.fleet $(BENCH_ARGS)

FAULTS_ARGS ?=
.PHONY: faults
faults: venv tools ## Fault suite on a fresh cluster (kill -9, outages, watch gap, upgrade, failover, bad input); writes bench/results/faults.json
	@hack/cluster/down.sh >/dev/null 2>&1 || true
	@trap 'hack/cluster/down.sh' EXIT; hack/cluster/up.sh >/dev/null && \
	  $(PY) -m bench.faults $(FAULTS_ARGS)

.PHONY: clean
clean: cluster-down kind-down ## Remove the venv and caches in the clone (the tool cache stays)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(RESULTS)
