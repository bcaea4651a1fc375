# The two commands a newcomer needs. Each sets itself up (virtualenv, packages, chromium).
#   make demo   opens JupyterLab on notebooks/quickstart.ipynb
#   make test   runs the whole suite: ruff, mypy, pytest (unit, real kernel, nbval, browser)
.PHONY: demo test setup bench soak
PORT ?= 8888

setup:
	@scripts/setup.sh

demo: setup
	@PORT=$(PORT) scripts/demo.sh $(DEMO_FLAGS)

test: setup
	@scripts/test.sh

bench: setup
	.venv/bin/python benchmarks/run.py

soak: setup
	RUNSTOP_SOAK_CYCLES=500 .venv/bin/python -m pytest -m soak -s tests/test_soak.py
