PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp
PACKAGE_STAMP := $(VENV)/.installed-package-stamp

.PHONY: run test test-slow lint bench soak screenshots package clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the project metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP) $@

$(PACKAGE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[package]'
	touch $(STAMP) $@

run: $(STAMP)
	$(BIN)/gsmc-desktop

# the suite without the tests marked slow (each over ~15 s: real training runs, exports,
# subprocesses, a soak), about 11 minutes on 2 idle cores; CI runs both
test: $(TEST_STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m "not slow"

test-slow: $(TEST_STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m slow --durations=10

# docs/screenshots/{live,images,training}.png, offscreen; CHECKPOINT=path/to/model.pt to show
# another model than the shipped default
screenshots: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python scripts/screenshots.py $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT))

# dist/gsmc-desktop/ (one folder, PyInstaller); check it with dist/gsmc-desktop/gsmc-desktop --self-test
package: $(PACKAGE_STAMP)
	$(BIN)/pyinstaller --noconfirm --log-level WARN build.spec

# speed benchmark (1 and 4 faces) and the quick version of the label-noise study (10-12 minutes):
# a pipeline check that every method trains and is scored, not a result (docs/results.md)
FERPLUS ?= ../shared/data/ferplus
bench: $(STAMP)
	$(BIN)/gsmc bench
	$(BIN)/gsmc bench --faces 4
	rm -rf runs/noise_study_quick
	$(BIN)/python scripts/noise_study.py run ce_sym30_s0 eac_sym30_s0 gsmc_sym30_s0 \
		--data-root $(FERPLUS) --out runs/noise_study_quick --epochs 2 --limit-train 500 --limit-eval 500
	$(BIN)/python scripts/noise_study.py summary --data-root $(FERPLUS) --out runs/noise_study_quick \
		--epochs 2 --limit-train 500

# the real window offscreen plays a 190 s real video with recording on; exit 0 when it ran to the
# end and the recording is whole (figures in runs/soak/soak.json). SOAK_EXE=dist/gsmc-desktop/gsmc-desktop
# soaks the packaged executable instead.
SOAK_EXE ?= $(BIN)/gsmc-desktop
SOAK_SECONDS ?= 190
soak: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(SOAK_EXE) --soak runs/soak --soak-seconds $(SOAK_SECONDS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check gsmc_core gsmc_desktop tests scripts

clean:
	rm -rf build dist .pytest_cache
