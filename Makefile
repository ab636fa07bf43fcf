# Two commands for a fresh machine: `make demo` (the whole pipeline on bundled sample photos) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= output
WEIGHTS ?=
MODEL ?= resnet18

.PHONY: demo test gifs quality clean

# The project in editable mode with its dev extra (tests, benchmarks, browser driver, sample photos);
# installed again whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m photomap_tools.sample $(OUT)/sample_photos
	$(PY) process_photos.py -d $(OUT)/sample_photos -o $(OUT)/torch_thumbs -s 224 \
		-l $(OUT)/torch_thumbs.meta | tee -a $(OUT)/torch_thumbs.meta > /dev/null
	find $(OUT)/torch_thumbs -name \*.jpg | $(PY) embeddings.py -o $(OUT)/features_$(MODEL) \
		-m $(MODEL) $(if $(WEIGHTS),--weights $(WEIGHTS)) - \
		|| { echo "demo: stage 2 stopped (see above); without internet: make demo WEIGHTS=/path/to/$(MODEL)-weights.pth" >&2; exit 1; }
	$(PY) visualize.py --meta $(OUT)/torch_thumbs.meta --thumbs $(OUT)/torch_thumbs \
		--features $(OUT)/features_$(MODEL) -o $(OUT)/map_$(MODEL).html

test: $(VENV)/.installed
	$(PY) -m pytest -q -ra tests

gifs: demo
	$(PY) gifs/record.py --page $(OUT)/map_$(MODEL).html --dest gifs

quality: $(VENV)/.installed
	$(PY) -m photomap_tools.sample $(OUT)/sample_photos
	$(PY) bench/quality.py $(OUT)/sample_photos -m $(MODEL) $(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(PRECISION),--precision $(PRECISION))

clean:
	rm -rf $(OUT)
