# nic-sandbox: two commands on a fresh machine, `make demo` and `make test`.
# Each creates .venv and installs the project on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench scale fuzz mutants lab lab-shell lab-test lab-test-noiommu clean

# The install also compiles the seven accelerators ring/cbuild.py declares (setup.py): reinstall when a C source,
# a header or the build changes (generated cffi sources, named _*.c, are not sources).
FASTPATH := setup.py ring/cbuild.py $(foreach f,$(wildcard */*.[ch] */*/*.[ch]),$(if $(filter _%,$(notdir $(f))),,$(f)))

$(STAMP): pyproject.toml $(FASTPATH)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,plot]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nic-sandbox demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q --durations=20

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench

# The auditor at scale (docs/auditing.md, "At scale"): a 10,000,000-record log (~6.2 GB in SCALE_DIR, written once
# and reused; DuckDB spills about half that into TMPDIR), each audit tool run on it in a fresh process: records/s
# and peak RSS against the 500 MB bound.
SCALE_DIR ?= out/scale
scale: $(STAMP)
	$(BIN)/python -m bench.audit_scale --records 10000000 --dir $(SCALE_DIR)

# A long campaign against the default protection; exits 1 if anything got through.
fuzz: $(STAMP)
	$(BIN)/nic-sandbox fuzz --protection verifier --seconds 300 --out out/fuzz

# Mutation testing of the verifier (docs/fuzzing.md, "Measuring the fuzzer's teeth"): every mutant of the
# security rules fuzzed 30 s, 2 at a time, survivors run against tests/verifier; prints the table and the
# two percentages, and exits 1 while a goal (>= 95% by the fuzzer alone, 100% with the tests) is missed.
mutants: $(STAMP)
	$(BIN)/nic-sandbox mutants --out out/mutants

# The lab VM (docs/lab.md): a Debian guest under QEMU with a VT-d IOMMU, an e1000e under vfio-pci and
# soft-RoCE.  The image is built on first use and cached in ~/.cache/nic-sandbox/lab.
lab: $(STAMP)
	$(BIN)/python -m lab demo

lab-shell: $(STAMP)
	$(BIN)/python -m lab shell

lab-test: $(STAMP)
	$(BIN)/python -m lab test

# The seed's scenario on a real kernel: no IOMMU, vfio.ko rebuilt with CONFIG_VFIO_NOIOMMU.
lab-test-noiommu: $(STAMP)
	$(BIN)/python -m lab test --noiommu

clean:
	-[ -x $(BIN)/python ] && $(BIN)/python -m lab clean
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache verifier/rules/_fastpath*.so device/_fastdev*.so driver/tenant/_pmd*.so verifier/audit/_encode*.so
