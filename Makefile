# One entry point for people and CI. `make test` is what .ci/run runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build of torch; a bare `torch` would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
PACKAGES := -e ./contract -e ./client[test,dicom,web] -e ./ensemble[test,server] -e ./export[test,int8]

.PHONY: install lint test test-fast pacs-peers export-demo serve demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python contract/pyproject.toml client/pyproject.toml ensemble/pyproject.toml export/pyproject.toml
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet $(PACKAGES)
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check contract client ensemble export tests benchmarks

# Real DICOM peers for the PACS tests: Orthanc (with DICOMweb), dcmtk's dcmdump and dsr2html, dicom3tools' dciodvfy
# (the standard's validator), and Chromium with its driver for the node page's browser test, from Debian's packages
# when this runs as root; elsewhere those tests are skipped and say why.
PEER_PACKAGES := dcmtk orthanc orthanc-dicomweb dicom3tools chromium chromium-driver
pacs-peers:
	@if command -v Orthanc >/dev/null && command -v dcmdump >/dev/null && command -v dciodvfy >/dev/null && \
		command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q --no-install-recommends $(PEER_PACKAGES) >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $(PEER_PACKAGES) >/dev/null; } || \
		echo "warning: could not install $(PEER_PACKAGES): the PACS and browser tests will be skipped"; \
	else echo "note: not installed (apt-get install $(PEER_PACKAGES)): PACS, conformance and browser tests skip"; fi

test: lint pacs-peers
	$(BIN)/python -m pytest

# The quick loop: unit and contract tests (no server, no training, nothing marked slow), under 2 minutes on 2 cores.
test-fast: install
	$(BIN)/python -m pytest -q -m "not serving and not training and not slow" --durations=10

WEIGHTS := export/src/collat_export/weights
# The served 3D-MROD-Net: the fine demo weights (maps on the input's 128x128x20 grid), or
# MROD_CHECKPOINT=$(WEIGHTS)/mrod_tiny/checkpoint.pt for the 10x faster tiny one (a repository built from the other
# one is rebuilt: it says which it holds).
MROD_CHECKPOINT ?= $(WEIGHTS)/mrod_fine/checkpoint.pt
# A network trained elsewhere, described by a network card (docs/network-card.md), served instead of the demo
# weights for its role: make serve HYPO_CARD=my_unet.yaml (MROD_CARD for the collateral role).
MROD_CARD ?=
HYPO_CARD ?=
MROD_SOURCE = $(if $(MROD_CARD),--mrod-card $(MROD_CARD),--mrod-checkpoint $(MROD_CHECKPOINT))
HYPO_SOURCE = $(if $(HYPO_CARD),--hypo-card $(HYPO_CARD),--hypo-checkpoint $(WEIGHTS)/hypo_tiny/checkpoint.pt)
RECIPE = $(MROD_SOURCE) $(HYPO_SOURCE)
CPU_REPOSITORY := build/model_repository
HOST ?= 127.0.0.1
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002

# The CPU model repository: both tiny networks with the phantom-trained demo weights (ONNX Runtime in
# Triton's Python backend), the Python pre/post-processing steps and the three ensembles.
# The networks' model.py is copied in (it must not import the project), and the registration template is built in,
# so a change to either, or to the steps' layout, rebuilds the repository. The model cards travel into model.json
# (modalities, lesion calibration, training domain), so a changed card rebuilds it too.
$(CPU_REPOSITORY)/stroke_triage/config.pbtxt: $(STAMP) $(MROD_CHECKPOINT) $(WEIGHTS)/hypo_tiny/checkpoint.pt \
		$(dir $(MROD_CHECKPOINT))model_card.json $(WEIGHTS)/hypo_tiny/model_card.json $(MROD_CARD) $(HYPO_CARD) \
		ensemble/src/collat_ensemble/server/network_model.py ensemble/src/collat_ensemble/server/pipelines.py \
		ensemble/src/collat_ensemble/template.py contract/src/collat_contract/tensors.py
	rm -rf $(CPU_REPOSITORY)
	$(BIN)/collat-export repository --target python-onnx --out $(CPU_REPOSITORY) $(MROD_SOURCE) $(HYPO_SOURCE)
	echo "$(RECIPE)" > $(CPU_REPOSITORY)/.recipe

# A repository built from other networks than the ones asked for now (checkpoint or cards) is rebuilt.
export-demo:
	@[ "$$(cat $(CPU_REPOSITORY)/.recipe 2>/dev/null)" = "$(RECIPE)" ] || rm -rf $(CPU_REPOSITORY)
	@$(MAKE) --no-print-directory $(CPU_REPOSITORY)/stroke_triage/config.pbtxt

# The README's first command: phantom case -> real tritonserver -> collat-client -> demo-output/.
demo: export-demo
	$(BIN)/collat-server demo --repository $(CPU_REPOSITORY) --out demo-output

# Benchmarks (not part of make test): writes benchmarks/RESULTS.md. perf_analyzer from the tritonclient wheel
# needs Debian's libb64-0d and libcudart from the nvidia-cuda-runtime-cu12 wheel; py-spy profiles the Python steps.
bench: export-demo
	$(BIN)/python -m pip install --quiet "nvidia-cuda-runtime-cu12>=12,<13" "py-spy>=0.3"
	@/sbin/ldconfig -p | grep -q libb64.so.0d || apt-get install -y -q libb64-0d >/dev/null || \
		{ echo "perf_analyzer needs libb64-0d: sudo apt-get install libb64-0d"; exit 1; }
	$(BIN)/python -m benchmarks.run

# The real tritonserver (from the nvidia-pytriton wheel) on the CPU repository; loopback unless HOST says otherwise.
serve: export-demo
	$(BIN)/collat-server serve --repository $(CPU_REPOSITORY) --host $(HOST) \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

clean:
	rm -rf build $(VENV)
