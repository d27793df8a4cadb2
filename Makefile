# nlbench: every user-facing job is a make target; see README.md.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0

.PHONY: install test test-unit test-integration test-slow test-sweeps bench model-zoo clean ablation-table2 reproduce

# Pinned CPU torch goes in first: an unpinned torch pulled in by a dependency would be a CUDA build.
# The `peers` extra (tests/test_peers.py) goes in with --no-deps, its list read from pyproject.toml.
install:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install "$(TORCH)"
	$(BIN)/python -m pip install -e ".[dev]"
	$(BIN)/python -m pip install --no-deps $$($(BIN)/python -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['peers']))")
	$(BIN)/python -m pip install -e ".[sweeps]" && $(BIN)/python -m pip install --no-deps "sweeps==0.3.0"

# Unit and integration tests together (the markers split them: pyproject.toml, README "Install and test").
test:
	$(BIN)/python -m pytest -q -m "not slow" -n 2 tests

test-unit:
	$(BIN)/python -m pytest -q -m "not slow and not integration" -n 2 tests

test-integration:
	$(BIN)/python -m pytest -q -m "integration and not slow" -n 2 tests

test-slow:
	$(BIN)/python -m pytest -q -m slow tests

# Sweeps killed anywhere and resumed (real smoke runs, 2 workers), two sweeps at once, and two "machines" on a
# throwaway PostgreSQL (initdb + pg_ctl; as root the server runs as the postgres user). About 20 min on a busy
# 2-core machine (each of the 17 restarts imports torch in 3 processes), less on a quiet one.
# CI sets NLBENCH_REQUIRE_POSTGRES=1: missing server binaries are then an error, not a skip.
test-sweeps:
	$(BIN)/python -m pytest -q -s tests/test_sweep_crash.py tests/test_sweep_postgres.py

# Benchmarks, figures in reports/performance.md. Two suites, each re-runnable alone (ZOO=0 or PATHS=0 skips one):
# impl="auto" against both exact paths at every non-local block of the model zoo (results/bench/zoo.json), and
# the fast paths against the naive one at three paper shapes (results/bench/bench.json). About 6 + 12 minutes
# on a quiet 2-core CPU (naive fwd+bwd at res3 8x28x28 takes 10-25 s a call).
ZOO   ?= 1
PATHS ?= 1
bench:
	mkdir -p results/bench reports
	if [ "$(ZOO)" = 1 ]; then $(BIN)/python -m pytest -q benchmarks/test_zoo_dispatch.py --benchmark-only \
		--benchmark-json=results/bench/zoo.json --benchmark-columns=median,min,max,rounds; fi
	if [ "$(PATHS)" = 1 ]; then $(BIN)/python -m pytest -q benchmarks/test_nonlocal_block.py --benchmark-only \
		--benchmark-json=results/bench/bench.json --benchmark-columns=median,min,max,rounds; fi
	$(BIN)/python -m nlbench.report.performance results/bench/zoo.json results/bench/bench.json reports/performance.md

clean:
	rm -rf .pytest_cache .benchmarks build *.egg-info

# Params, GFLOPs, CPU latency and peak memory of every Table 2 model at paper scale (about 15 min on a quiet 2-core CPU).
model-zoo:
	$(BIN)/nlbench zoo --out reports/model_zoo.md --csv results/model_zoo.csv

# Every Table 2 ablation and the bottleneck and successors tables (ablations/*.yaml) at PROFILE (smoke: CI, about 2 min; tiny: the default, about 5 h on 2 cores; paper:
# needs DATA=ROOT), then the reports. Resumable: run it again after an interruption.
# WORKERS: runs in parallel; the small profiles run one thread per run, so one worker per core.
# RESULTS / REPORTS: where the runs go and the reports are written (make reproduce sets both).
PROFILE ?= tiny
DATA    ?=
WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
RESULTS ?= results
REPORTS ?= reports
ablation-table2:
	$(BIN)/nlbench sweep ablations/*.yaml --profile $(PROFILE) --workers $(WORKERS) --results $(RESULTS) $(if $(DATA),--data $(DATA))
	$(BIN)/nlbench report --profile $(PROFILE) --results $(RESULTS) --out $(REPORTS)

# The main job again, from nothing, into repro/ (ignored): every run of PROFILE trained anew, then compared with the
# committed reference (results/): runs bit for bit, rows within the reference's CI, claims' verdicts
# (repro/results/<profile>/reproduction.md). As long as the main job itself.
reproduce:
	$(MAKE) ablation-table2 RESULTS=repro/results REPORTS=repro/reports
	$(BIN)/nlbench compare results repro/results --profile $(PROFILE)
