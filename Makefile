# expense-mesh: `make up` runs the whole mesh, `make test` runs the suite.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: up test gen lint buf bench clean-data vendor

$(STAMP): pyproject.toml package.json
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	npm install --no-audit --no-fund --silent
	@touch $(STAMP)

up: $(STAMP)
	$(VPY) -m services.launcher up

test: $(STAMP)
	$(VPY) -m pytest $(PYTEST_ARGS)

# Also writes gen/openapi/ (needs protoc-gen-swagger: apt-get install golang-grpc-gateway).
gen: $(STAMP)
	PY=$(VPY) tools/gen.sh gen

lint: $(STAMP)
	$(VENV)/bin/ruff check services tests bench tools
	$(VENV)/bin/ruff format --check services tests bench tools
	npx --no-install buf lint

# The dashboard's third-party assets, copied from the pinned npm packages (commit the result).
vendor: $(STAMP)
	$(VPY) tools/vendor_web.py

bench: $(STAMP)
	$(VPY) -m bench

clean-data:
	rm -rf .expense-mesh
