# `make run`: set up and serve the chat example (daphne, SQLite, in-memory layer).
# `make test`: install missing system packages when it can (`make deps`), then run lint,
# types, import contracts, the documentation build (`make docs`) and the whole test suite.
# `make docs`: build the documentation site into docs/_build/html (warnings fail it).
# `make bench-scale`: the connection sweep, written to bench/results/scale.{json,md,png}.
# `make screenshots`: rewrite docs/*.png from the browser tests (other runs leave them alone).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run superuser deps test lint docs screenshots bench bench-quick bench-scale clean

$(BIN)/activate: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(BIN)/activate

# Development: DEBUG on and a development SECRET_KEY (project/settings.py).
run superuser bench bench-quick bench-scale: export DJANGO_DEVELOPMENT ?= 1
run: $(BIN)/activate
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/daphne -b $(HOST) -p $(PORT) project.asgi:application

# A staff login for `make run`'s site (/admin/, members-only rooms); asks for a name and password.
superuser: $(BIN)/activate
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py createsuperuser

lint: $(BIN)/activate
	$(BIN)/ruff check nexios_compat chat project tests bench devservers docs
	$(BIN)/ruff format --check nexios_compat tests bench devservers docs/conf.py docs/conftest.py docs/_ext
	$(BIN)/mypy nexios_compat tests bench devservers
	$(BIN)/lint-imports

# System packages the suite needs (redis-server, PostgreSQL, chromium, nginx, iproute2, python3.11-venv);
# the list lives in .ci/deps.
deps:
	bash .ci/deps

test: deps
	$(MAKE) lint
	$(MAKE) docs
	$(BIN)/pytest

# Rewrite the tracked docs/*.png; ordinary test runs write them to a temporary directory.
screenshots: $(BIN)/activate
	NEXIOS_SCREENSHOTS=1 $(BIN)/pytest tests/browser/test_browser.py -q -k test_docs_screenshots -p no:cacheprovider

bench: $(BIN)/activate
	$(BIN)/python -m bench.run

bench-quick: $(BIN)/activate
	$(BIN)/python -m bench.run --quick

# The connection sweep (10k..100k sockets on 4 daphnes; at most ~25 min): bench/results/scale.*
bench-scale: $(BIN)/activate
	$(BIN)/python -m bench.scenarios.scale

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache .mypy_cache .ruff_cache

# The documentation site (Sphinx + MyST): warnings and unresolved references fail the build.
docs: $(BIN)/activate
	$(BIN)/sphinx-build -n -W --keep-going -b html docs docs/_build/html
