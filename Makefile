# `make run` / `make test` set up .venv on first use (Python 3.11 and pip; torch comes from this machine's disk).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test setup clean syslibs dist dist-check

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Qt's xcb plugin needs system libraries pip cannot bring: say which (one apt-get line)
# before minutes of setup, instead of Qt's "could not load the Qt platform plugin xcb".
syslibs:
	@$(PYTHON) engine/syslibs.py 2>/dev/null || python3 engine/syslibs.py

run: syslibs $(STAMP)
	$(PY) main.py

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

# The offline installer for Linux x86-64: dist/inspect-line-VERSION-linux-x86_64/ (+ .tar).
dist: $(STAMP)
	packaging/linux/build.sh

# Installs that artifact into a fresh folder with the package index disabled, then runs
# `main.py --quit-after` offscreen and `score` on an image (minutes: the torch wheels).
dist-check: dist
	packaging/linux/check_dist.sh

clean:
	rm -rf $(VENV) *.egg-info
