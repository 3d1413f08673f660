# mmd: set up, test, run and install.
#   make run      set everything up and run the daemon in the foreground on the built-in default
#   make check    set everything up and run ruff, mypy --strict and the whole test suite
#   make install DESTDIR=... PREFIX=/usr   put files where a distribution package would

VENV ?= .venv
PREFIX ?= /usr
DESTDIR ?=
PYTHON ?= /usr/bin/python3
PYTEST_ARGS ?=

.PHONY: deps venv run check lint test bench install

deps:
	./scripts/install-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

run: deps venv
	$(VENV)/bin/milter-manager --verbose

lint: venv
	$(VENV)/bin/ruff check mmd tests bench
	$(VENV)/bin/mypy

test: venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

check: deps venv lint test

bench: venv
	$(VENV)/bin/python bench/sessions.py
	$(VENV)/bin/python bench/conditions.py
	$(VENV)/bin/python bench/dbus_control.py
	$(VENV)/bin/python bench/big_messages.py

install:
	./scripts/install-files "$(DESTDIR)" "$(PREFIX)"
