# make demo | make test | make bench: each creates .venv first if it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The constraint file pins torch to the local CPU wheel so pip never pulls a CUDA build.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: demo test test-all bench venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: venv
	$(VENV)/bin/neuralcodecs demo --out out/demo --force

test: venv
	$(PY) -m pytest -q

test-all: venv
	$(PY) -m pytest -q -m ''

bench: venv
	$(PY) benchmarks/codec_speed.py --data samples --out out/bench

clean:
	rm -rf $(VENV) out
