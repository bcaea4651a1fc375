# The two commands a newcomer needs:
#   make demo         opens JupyterLab on notebooks/quickstart.ipynb (sets up .venv first)
#   make setup test   installs what the tests need, then runs the whole suite, as CI does
# The inner loop, for working on runstop_nb:
#   make check        ruff + mypy (strict, package and tests): seconds
#   make unit         tests without kernels, browsers, soak, race trials, agent CLIs, Ray or heavy fuzzing: under a minute
#   make e2e          the real-browser tests (JupyterLab 4 and Notebook 7)
#   make soak         the long soak; make bench: the benchmarks; make demo-agents: the agent CLIs side by side
#   make ray          the Ray tests against a local head, in a network namespace of their own (root);
#                     make ray-bench: start and stop latency, local vs Ray, in the same namespace
.PHONY: demo demo-agents setup venv check unit e2e test bench soak ray ray-bench
PORT ?= 8888
UNIT = not kernel and not e2e and not soak and not races and not clis and not ray and not heavy

setup:
	@scripts/setup.sh

venv:
	@scripts/setup.sh --python

demo: venv
	@PORT=$(PORT) scripts/demo.sh $(DEMO_FLAGS)

demo-agents: setup
	@PORT=$(PORT) scripts/demo.sh --agents $(DEMO_FLAGS)

check: venv
	@.venv/bin/ruff check runstop_nb tests benchmarks
	@.venv/bin/mypy

unit: venv
	@.venv/bin/python -m pytest -q -n 4 -m "$(UNIT)"

e2e: setup
	@scripts/test.sh -m e2e tests/e2e

test:
	@scripts/test.sh

bench: venv
	.venv/bin/python benchmarks/run.py

soak: setup
	RUNSTOP_SOAK_CYCLES=500 .venv/bin/python -m pytest -m soak -s tests/test_soak.py

ray:
	@scripts/test-ray.sh

ray-bench:
	@scripts/test-ray.sh --run .venv/bin/python benchmarks/ray.py
