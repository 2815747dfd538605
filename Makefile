# One entry point for people and CI. `make test` is what .ci/run runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build of torch; a bare `torch` would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
PACKAGES := -e ./client[test] -e ./ensemble[test] -e ./export[test,server]

.PHONY: install lint test export-demo serve demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python client/pyproject.toml ensemble/pyproject.toml export/pyproject.toml
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet $(PACKAGES)
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check client ensemble export tests

test: lint
	$(BIN)/python -m pytest

WEIGHTS := export/src/collat_export/weights
CPU_REPOSITORY := build/model_repository
HOST ?= 127.0.0.1
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002

# The CPU model repository: both tiny networks with the phantom-trained demo weights (ONNX Runtime in
# Triton's Python backend), the Python pre/post-processing steps and the three ensembles.
$(CPU_REPOSITORY)/stroke_triage/config.pbtxt: $(STAMP) $(WEIGHTS)/mrod_tiny/checkpoint.pt $(WEIGHTS)/hypo_tiny/checkpoint.pt
	rm -rf $(CPU_REPOSITORY)
	$(BIN)/collat-export repository --target python-onnx --out $(CPU_REPOSITORY) \
		--mrod-checkpoint $(WEIGHTS)/mrod_tiny/checkpoint.pt --hypo-checkpoint $(WEIGHTS)/hypo_tiny/checkpoint.pt

export-demo: $(CPU_REPOSITORY)/stroke_triage/config.pbtxt

# The README's first command: phantom case -> real tritonserver -> collat-client -> demo-output/.
demo: export-demo
	$(BIN)/collat-export demo --repository $(CPU_REPOSITORY) --out demo-output

# The real tritonserver (from the nvidia-pytriton wheel) on the CPU repository; loopback unless HOST says otherwise.
serve: export-demo
	$(BIN)/collat-export serve --repository $(CPU_REPOSITORY) --host $(HOST) \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

clean:
	rm -rf build $(VENV)
