# Two entry points for a newcomer: `make demo` (set up, train the main job, print results)
# and `make test` (set up, run the tests). Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# What the tests import besides the demo's needs: serve (gradio), export (onnx), the browser
# tests (selenium), Hugging Face models and LoRA, t-SNE, Phonetisaurus (the peer G2P pipeline test).
# The demo does not wait for them.
TEST_EXTRAS := full,dev,demo,export,browser-test,hf,embeddings,peers

.PHONY: demo test test-slow lint bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: the CPU build of 2.13.0 is on this machine's disk.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[full,dev]"
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[$(TEST_EXTRAS)]"
	touch $(TEST_STAMP)

# The demo's model is small enough that a second thread buys nothing on a 2-core CPU (measured:
# 6.4 vs 6.5 steps/s), while one thread keeps it from slowing tenfold when another process is busy.
DEMO_THREADS ?= 1

demo: $(STAMP)
	OMP_NUM_THREADS=$(DEMO_THREADS) $(VENV)/bin/treadmill train examples/g2p.yaml --run-dir runs/g2p-demo

# The browser tests of `treadmill serve` drive Debian's headless Chromium through its driver.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		echo "installing chromium and chromium-driver for the browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver; \
	fi

test: $(TEST_STAMP) browser
	$(PY) -m ruff check treadmill tests
	$(PY) -m pytest -q

test-slow: $(TEST_STAMP) browser
	$(PY) -m pytest -q -m slow

lint: $(TEST_STAMP)
	$(PY) -m ruff check treadmill tests bench examples
	$(PY) -m mypy treadmill

clean:
	rm -rf $(VENV) runs .pytest_cache
