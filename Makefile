# mmd: set up, test, run and install.
#   make run      install what running needs and run the daemon in the foreground on the built-in
#                 default socket (group postfix where that group exists, so Postfix can connect)
#   make check    set everything up and run ruff, mypy --strict and the whole test suite
#   make test-fast only the unit tests (tests/unit: no container, network, Postfix or milters;
#                 no ruff, no mypy; as root like check), in about half a minute
#   make install DESTDIR=... PREFIX=/usr   put files where a distribution package would
#   make deb      build dist/milter-manager_<version>_<arch>.deb (DEB_VERSION=... for another version)
#   make check-vm only the SELinux-enforcing guest test (tests/vm; make check runs it too);
#                 artefacts in build/vm-artifacts, image cached in /var/cache/mmd-vm

VENV ?= .venv
PREFIX ?= /usr
DESTDIR ?=
PYTHON ?= /usr/bin/python3
PYTEST_ARGS ?=
DEB_VERSION ?=

.PHONY: deps deps-run venv run check check-vm lint test test-fast bench install deb

deps:
	./scripts/install-deps

deps-run:
	./scripts/install-deps --run

$(VENV)/.installed-run: pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.installed-run
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# The daemon's own configuration for `make run` (not /etc/milter-manager): the socket's group is
# postfix when that group exists ([manager] unix_socket_group), else it stays root's.
RUN_CONFIG = build/run

run: deps-run $(VENV)/.installed-run
	mkdir -p $(RUN_CONFIG)
	if getent group postfix >/dev/null; then \
	  printf '[manager]\nunix_socket_group = "postfix"\n'; fi >$(RUN_CONFIG)/milter-manager.toml
	$(VENV)/bin/milter-manager --verbose --config-dir $(RUN_CONFIG)

lint: venv
	$(VENV)/bin/ruff check mmd tests bench
	$(VENV)/bin/mypy

test: venv
	./scripts/reachable-checkout
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: venv
	./scripts/reachable-checkout
	$(VENV)/bin/pytest -q tests/unit $(PYTEST_ARGS)

check: deps venv lint test

check-vm: deps venv
	$(VENV)/bin/pytest -m vm tests/vm $(PYTEST_ARGS)

bench: venv
	$(VENV)/bin/python bench/sessions.py
	$(VENV)/bin/python bench/conditions.py
	$(VENV)/bin/python bench/dbus_control.py
	$(VENV)/bin/python bench/big_messages.py

install:
	./scripts/install-files "$(DESTDIR)" "$(PREFIX)"

deb:
	./packaging/build-deb $(DEB_VERSION)
