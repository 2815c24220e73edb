# Two commands do everything on a fresh machine (each creates or reuses .venv by itself):
#   make book   -> executes every notebook and builds the HTML book under _build/html
#   make test   -> unit tests, then every notebook under nbval in the smoke profile
#   make student -> the student edition (notebooks without solutions) in _build/student
#   make rehearsal -> every notebook with the full profile's sizes, training capped (CI's proof of `full`)
#   make lint   -> ruff over the library, tests and notebooks
#   make browser -> the built book (_build/html) in headless Chromium: console, figures, explorers, links
# Data: $UNET_BOOK_DATA if set; else ../shared/data when it exists (the course's shared copy);
# else ./data, downloaded from the datasets' official homes on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
export UNET_BOOK_DATA ?= $(if $(wildcard ../shared/data/kvasir-seg),$(abspath ../shared/data),$(CURDIR)/data)

.PHONY: book test unit notebooks student rehearsal lint browser data venv clean

venv: $(VENV)/.installed

# CPU torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pip install -q "ruff>=0.6,<1"
	touch $@

data: venv
	$(BIN)/python data_scripts/download.py all

book: data
	$(BIN)/jupyter-book build .
	@test -f _build/html/index.html && echo "book: open _build/html/index.html"

unit: venv
	$(BIN)/python -m pytest tests

notebooks: data
	UNET_BOOK_PROFILE=smoke $(BIN)/python -m pytest --nbval-lax notebooks/

test: unit notebooks

# the `full` profile's image sizes, widths, tiles, deep supervision, CGM and workers, with training capped
# at a couple of steps (config.PROFILES["rehearsal"]), executed by the GPU reference run's own script: a
# full-profile path that breaks fails here, and so does the script (notebooks/tools/reference_run.py)
rehearsal: data
	$(BIN)/python notebooks/tools/reference_run.py all --profile rehearsal --allow-cpu --timeout 600 --out _build/reference-rehearsal

lint: venv
	$(BIN)/ruff check .

# the built book in a real browser (tests/browser_check.py): run after `make book`; screenshots of every
# chapter's first screen go to _build/screenshots/. Needs Debian's chromium and chromium-driver.
browser: venv
	@$(BIN)/python -c "import selenium" 2>/dev/null || $(BIN)/python -m pip install -q "selenium>=4.15"
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        apt-get update -q && apt-get install -y --no-install-recommends chromium chromium-driver; \
	    else \
	        echo "browser: chromium and chromedriver are not on PATH; install them with" >&2; \
	        echo "    sudo apt-get install -y --no-install-recommends chromium chromium-driver" >&2; \
	        exit 1; \
	    fi; \
	fi
	@test -f _build/html/index.html || { echo "browser: no book in _build/html: run make book first" >&2; exit 1; }
	$(BIN)/python tests/browser_check.py _build/html

# every chapter without its solution cells and outputs (unet_lib/exercises/student.py; book/instructors.md)
student: venv
	rm -rf _build/student
	$(BIN)/python -m unet_lib.exercises.student --out _build/student

clean:
	rm -rf _build .pytest_cache results
