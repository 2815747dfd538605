# One entry point for people and CI. `make test` is what .ci/run runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build of torch; a bare `torch` would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
PACKAGES := -e ./client[test] -e ./ensemble[test] -e ./export[test]

.PHONY: install lint test export-demo clean

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

# Export both tiny networks with the phantom-trained demo weights into a CPU Triton repository under build/.
export-demo: install
	$(BIN)/collat-export info
	$(BIN)/collat-export repository --target python-onnx --out build/model_repository \
		--mrod-checkpoint $(WEIGHTS)/mrod_tiny/checkpoint.pt --hypo-checkpoint $(WEIGHTS)/hypo_tiny/checkpoint.pt

clean:
	rm -rf build $(VENV)
