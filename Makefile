# The one entry point for people and CI. `make` alone prints the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEPS := pyproject.toml requirements/constraints.txt
PORT ?= 8888
# Tools installed with the environment (jupyter, nbgrader and the alembic it calls) come first on PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)
PYTEST_ARGS ?=
# The browser tests drive Debian's Chromium (apt-get install chromium) through Playwright.
CHROMIUM := $(or $(wildcard /usr/bin/chromium),$(shell command -v chromium 2>/dev/null))

.DEFAULT_GOAL := help
.PHONY: help env lab lab-instructor test test-fast test-browser lint bench gpu-check gpu-wheels clean assignments grade selftest site

help: ## Show this help
	@echo "Second-Order Methods: make targets"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): $(DEPS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -e '.[course,test,lint,site]'
	@touch $(STAMP)

env: $(STAMP) ## Create or update .venv/ (skipped in seconds when up to date)
	@echo "environment ready: $(VENV)"

# JupyterLab as students see it: deploy/jupyter/student, first on JUPYTER_CONFIG_PATH (nothing is written to
# ~/.jupyter), turns nbgrader's instructor tools off and keeps Validate.
lab: $(STAMP) ## Set up everything and open JupyterLab on the course as a student (loopback; Validate, no instructor tools)
	@echo "Opening JupyterLab at http://127.0.0.1:$(PORT)/lab (the URL with its token is printed below)"
	JUPYTER_CONFIG_PATH=$(CURDIR)/deploy/jupyter/student$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH} \
		$(VENV)/bin/jupyter lab --no-browser --ip 127.0.0.1 --port $(PORT) --notebook-dir . $(if $(filter 0,$(shell id -u)),--allow-root)

# The instructor's JupyterLab: deploy/jupyter/instructor turns nbgrader's tools (Create Assignment, the Nbgrader
# menu, the Formgrader) on, also over a hub's environment-wide "off". The server
# starts in the grading folder, so the Formgrader is that folder's course (its gradebook, its hand grading),
# never the repository's: releases come from `make assignments` only. A missing folder is made empty.
lab-instructor: $(STAMP) ## JupyterLab with nbgrader's instructor tools, the Formgrader on a grading folder [OUT=grading]
	@test -f "$(or $(OUT),grading)/nbgrader_config.py" || $(PY) -c "import sys, pathlib, autograder.course as c; \
		c.prepare(pathlib.Path(sys.argv[1]).resolve(), [])" "$(or $(OUT),grading)"
	@cd "$(or $(OUT),grading)" && here=$$(pwd -P) && repo=$$(cd "$(CURDIR)" && pwd -P) && \
	case "$$here/" in "$$repo/"*) root=$$repo ;; *) root=$$here ;; esac && \
	echo "Instructor JupyterLab on $$root, Formgrader on $$here: http://127.0.0.1:$(PORT)/lab" && \
	JUPYTER_CONFIG_PATH=$(CURDIR)/deploy/jupyter/instructor$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH} exec \
		"$(abspath $(VENV))/bin/jupyter" lab --no-browser --ip 127.0.0.1 --port $(PORT) \
		--ServerApp.root_dir="$$root" $(if $(filter 0,$(shell id -u)),--allow-root)

test: $(STAMP) ## Set up everything and run the whole test suite (the browser tests where Chromium is installed)
	@$(PY) -c "from autograder.sandbox import bwrap_available as b; raise SystemExit(not b())" || echo "skipped \
	sandbox isolation tests (test_autograder.py: hostile submissions stay in their folder): no bubblewrap \
	(apt-get install bubblewrap)"
	@if [ -n "$(CHROMIUM)" ] && $(PY) -c "import playwright" 2>/dev/null; then \
		$(PY) -m pytest $(PYTEST_ARGS); \
	else \
		echo "skipped browser tests: no Chromium (apt-get install chromium)"; \
		$(PY) -m pytest -m "not browser" $(PYTEST_ARGS); \
	fi

test-fast: $(STAMP) ## Everything but the slow tests (notebooks, grading runs, browser): for day-to-day work
	$(PY) -m pytest -m "not slow and not browser" -x -q $(PYTEST_ARGS)

test-browser: $(STAMP) ## The course in JupyterLab + Chromium; screenshots in browser-screenshots/
	@test -n "$(CHROMIUM)" || { echo "test-browser needs Chromium: apt-get install chromium"; exit 2; }
	$(PY) -m pytest -m browser tests/browser $(PYTEST_ARGS)

lint: $(STAMP) ## Ruff: style, imports and docstrings
	$(VENV)/bin/ruff check lib tests bench autograder

assignments: $(STAMP) ## Regenerate assignments/ (student release) and solutions/ from course/
	$(PY) -m autograder build $(SECTIONS)

site: $(STAMP) ## The course as a static site in build/site/ (the student releases, executed; no install to read it)
	$(PY) -m autograder.site --out build/site

grade: $(STAMP) ## Grade submissions: make grade SUBMISSIONS=export.zip [ROSTER=roster.csv] [OUT=grading] [ARGS=--force]
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=<folder or zip> [ROSTER=roster.csv] [OUT=grading]"; exit 2; }
	$(PY) -m autograder grade "$(SUBMISSIONS)" --out "$(or $(OUT),grading)" $(if $(ROSTER),--roster "$(ROSTER)") $(ARGS)

selftest: $(STAMP) ## Grade every section's solution, blank release and mutants; print the mutation score
	$(PY) -m autograder selftest $(SECTIONS)

bench: $(STAMP) ## Benchmarks: a table of ratios against anchors measured in the same run
	$(PY) -m bench

# A GPU machine may come with its own Python and CUDA torch but no package registries: copy .gpu-wheels/
# there (`make gpu-wheels` here) and run `make gpu-check NOENV=1 PY=python3`, or without make
# `PY=python3 bash bench/gpu_check.sh`. Rehearse it on a CPU with GPU_DEVICE=cpu GPU_MARKS="not slow".
gpu-check: $(if $(NOENV),,$(STAMP)) ## Device-marked tests and the GPU benchmark (needs CUDA); results in bench/results/gpu/
	PY="$(PY)" bash bench/gpu_check.sh

gpu-wheels: ## Download the benchmark's anchor (curvlinops) as wheels for a GPU machine without registries
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version $(or $(GPU_PYTHON),3.12) \
		--implementation cp --platform manylinux2014_x86_64 -d .gpu-wheels \
		curvlinops-for-pytorch==3.0.1 backpack-for-pytorch==1.7.1 einconv==0.1.0 unfoldNd==0.2.3

clean: ## Remove the environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache build lib/*.egg-info browser-screenshots
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
