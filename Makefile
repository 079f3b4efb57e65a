# The two commands of the README:
#   make serve   set up and start the server on SQLite in ./var at http://127.0.0.1:8000
#                (make serve PORT=8001: another port)
#   make test    install what the tests need, run the checks (make lint), then the whole suite
# the inner loop: make check (the checks, then the unit tests alone: no server, under a minute)
# and the suite with coverage: make coverage
# and the benchmark:
#   make bench
#   make bench BENCH_ARGS=--issue-14   (only the parts issue 14's targets are measured by, ~2 min)
# and the two distributions as wheels in dist/: make dist

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# The server and client alone (make serve), and with the test extras on top (make test, bench).
RUNTIME_STAMP := $(VENV)/.runtime
STAMP := $(VENV)/.installed
OIDC_DIR := tests/support/oidc
NUXEO_CLI_DIR := tests/support/nuxeo-cli
# schemathesis, which fuzzes the API from its OpenAPI schema in the tests, in an environment
# of its own: its dependencies are not the server's.
FUZZ_VENV := .venv-schemathesis
FUZZ_STAMP := $(FUZZ_VENV)/.installed
SCHEMATHESIS := schemathesis>=4.32,<5

.PHONY: serve test check lint coverage bench dist system-packages oidc-provider nuxeo-cli clean

$(RUNTIME_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(RUNTIME_STAMP)

# The test extras (pytest, Playwright, keyrings.alt...) never come with `make serve`.
$(STAMP): $(RUNTIME_STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# PORT only from make's command line: a PORT in the environment (a PaaS sets one) is not a request.
serve: $(RUNTIME_STAMP)
	$(VENV)/bin/tokensmith serve$(if $(filter command line,$(origin PORT)), --port $(PORT))

# Debian packages the tests drive for real: chromium (pages), PostgreSQL (the PostgreSQL
# path), git, Maven with the dependency plugin (central is not reachable: Debian's
# /usr/share/maven-repo stands in for it), Node.js for the OpenID Connect provider, D-Bus and
# GNOME Keyring (a real system keyring for the client), nginx (the proxy in front of several
# instances); wrk (load in the scale-out tests, and the benchmark); fcgiwrap (git http-backend
# as CGI behind nginx: the floor the benchmark holds git over HTTP to); Patroni and etcd (the
# PostgreSQL failover the suite runs, tests/system/test_failover.py).
# Installed only when missing. (The provider needs Node 20.18 or later, which
# the machines come with; Debian 12's own nodejs is 18: there the provider fails at its start.)
system-packages:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium chromium-driver"; \
	{ command -v node >/dev/null && command -v npm >/dev/null; } || missing="$$missing nodejs npm"; \
	command -v git >/dev/null || missing="$$missing git"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v patroni >/dev/null || missing="$$missing patroni"; \
	command -v etcd >/dev/null || missing="$$missing etcd-server"; \
	{ command -v fcgiwrap >/dev/null || [ -x /usr/sbin/fcgiwrap ]; } || missing="$$missing fcgiwrap"; \
	{ command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } || missing="$$missing nginx"; \
	{ command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	{ command -v dbus-daemon >/dev/null && command -v dbus-send >/dev/null; } || missing="$$missing dbus"; \
	command -v gnome-keyring-daemon >/dev/null || missing="$$missing gnome-keyring"; \
	[ -d /usr/share/maven-repo/org/apache/maven/plugins/maven-dependency-plugin ] || missing="$$missing libmaven-dependency-plugin-java junit4"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "Missing Debian packages:$$missing (run as root, or install them)"; exit 1; fi; \
	fi

# The OpenID Connect provider the sign-in tests run (node-oidc-provider), from its lock file.
oidc-provider: system-packages
	@[ -d $(OIDC_DIR)/node_modules/oidc-provider ] || npm ci --no-audit --no-fund --prefix $(OIDC_DIR)

# The reference's own command-line tool (npm nuxeo-cli 3.0.5), which the compatibility tests drive
# at its prompts, from its lock file; its install scripts are not needed.
nuxeo-cli: system-packages
	@[ -x $(NUXEO_CLI_DIR)/node_modules/.bin/nuxeo ] || npm ci --no-audit --no-fund --ignore-scripts --prefix $(NUXEO_CLI_DIR)

$(FUZZ_STAMP): Makefile
	test -x $(FUZZ_VENV)/bin/python || python3 -m venv $(FUZZ_VENV)
	$(FUZZ_VENV)/bin/python -m pip install --quiet '$(SCHEMATHESIS)'
	touch $(FUZZ_STAMP)

# The checks, configured in pyproject.toml, a few seconds once mypy's cache is warm: ruff's lint
# (import order too) and format, mypy (strict, on src/tokensmith), and import-linter's contracts
# (the layers; the client importing nothing of the server). Any finding fails the target.
lint: $(STAMP)
	$(VENV)/bin/ruff check --quiet
	$(VENV)/bin/ruff format --check --quiet
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The checks first (a finding fails the run before any server starts), then the whole suite:
# on two workers (pytest-xdist; a test file stays on one worker, so its module's servers are
# shared; files are handed out in the order tests/conftest.py gives, the long ones first), then, alone, the tests marked serial (their timing must not share the two cores).
# pytest's status 5 is "no test selected": PYTEST_ARGS may name files with none marked serial.
PYTEST := TOKENSMITH_TEST_REQUIRE_ALL=1 $(PY) -m pytest
test: $(STAMP) $(FUZZ_STAMP) system-packages oidc-provider nuxeo-cli lint
	$(PYTEST) -n 2 --dist loadfile --no-loadscope-reorder -m "not serial" $(PYTEST_ARGS)
	$(PYTEST) -m serial $(PYTEST_ARGS) || [ $$? = 5 ]

# The inner loop: the checks, then the unit tests, those that start no server (tests/conftest.py
# marks the rest slow; here any test that starts a process other than git, or listens on a
# port, fails and says to mark it).
check: lint
	TOKENSMITH_TEST_UNITS_ONLY=1 $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The same suite, measured: coverage follows every server and command the tests start (a fifth
# slower, which is why `make test` does without).
coverage: $(STAMP) $(FUZZ_STAMP) system-packages oidc-provider nuxeo-cli
	$(PYTEST) --cov --cov-report=term $(PYTEST_ARGS)

bench: $(STAMP) system-packages
	$(PY) bench/run.py $(BENCH_ARGS)

# tokensmith (the server, with the client: the one `tokensmith` command) and tokensmith-client
# (the client alone, for laptops and CI; distributions/client/), as wheels in dist/. Only pip is
# needed: the virtual environment is made if missing, nothing is installed into it.
dist:
	test -x $(PY) || python3 -m venv $(VENV)
	rm -rf dist
	$(PY) -m pip wheel --quiet --no-deps -w dist . ./distributions/client

clean:
	rm -rf $(VENV) $(FUZZ_VENV) var dist .coverage* .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
