# make demo | make test | make bench: each creates .venv first if it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The constraint file pins torch to the local CPU wheel so pip never pulls a CUDA build.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: demo test test-all bench venv clean gpu-wheels gpu-data gpu-dry-run gpu-slim gpu-restore

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,ray]'
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

# The GPU plan (gpu/plan.py): wheels the device lacks and the compact training patches, made here and carried.
gpu-wheels:
	mkdir -p .whl && python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl constriction==0.5.0

gpu-data: venv
	$(PY) gpu/make_data.py ../shared/data/train ../shared/data/saliency/nus-scene500/stimuli --out gpu-data/patches.npz

# before the device call: what the device does not need leaves the working tree (64 MiB travel); after: back
gpu-slim:
	python3 gpu/travel.py slim

gpu-restore:
	python3 gpu/travel.py restore

gpu-dry-run: venv
	$(PY) gpu/plan.py --dry-run --data samples --out out/gpu-dry-run --work out/gpu-dry-run-work
