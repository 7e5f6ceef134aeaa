# Sluice — the two commands a new user needs:
#   make demo   start Kafka + ClickHouse, create tables, generate events, run Sluice
#   make test   unit tests + integration tests against the real services
SHELL := /bin/bash
GO    ?= go
BIN   := bin
PKGS  := ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build test test-unit test-integration bench demo up down deps lint fmt clean

all: build

## deps: install what the build and the services need (idempotent)
deps:
	@integration/deps.sh

## build: compile sluice and sluice-gen into bin/
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/sluice ./cmd/sluice
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/sluice-gen ./cmd/sluice-gen

## test: everything — unit tests, then integration tests on real Kafka and ClickHouse
test: deps up test-unit test-integration

## test-unit: unit and component tests (kfake, no services needed)
test-unit:
	$(GO) test -race -count=1 -timeout 10m $(PKGS)

## test-integration: tests tagged integration, against the services `make up` starts
test-integration: up
	@mkdir -p $(BIN)
	$(GO) test -tags integration -count=1 -timeout 20m -v ./integration/... 2>&1 | tee $(BIN)/integration.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test\.go)' ; exit $${PIPESTATUS[0]}

## bench: benchmarks; performance figures (README, DESIGN budget) come from here, never from
## timed tests. Unit benchmarks first (no services), then the integration ones against the
## services `make up` starts: sink into ENGINE = Null, the engine on kfake into ClickHouse,
## `sluice run` loading 1M orders from the real Kafka, and the offset lookups on a 50M-row
## table (built once in database sluice_bench, then reused). ~5 minutes on 2 cores; the
## first run builds the 50M-row table (~1 minute more). Results also go to bin/bench.txt
## (benchstat-friendly). `make test` never runs benchmarks (no -bench there).
BENCH_OUT := $(BIN)/bench.txt
bench: up
	@mkdir -p $(BIN); : > $(BENCH_OUT)
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchmem -count 1 -timeout 20m ./pkg/... 2>&1 | tee -a $(BENCH_OUT)
	set -o pipefail; $(GO) test -tags integration -run '^$$' -bench 'SinkInsertNull' -benchmem -count 1 -timeout 10m ./pkg/sink/ 2>&1 | tee -a $(BENCH_OUT)
	set -o pipefail; $(GO) test -tags integration -run '^$$' -bench 'PipelineOrders' -benchtime 1x -benchmem -count 1 -timeout 20m ./pkg/pipeline/ 2>&1 | tee -a $(BENCH_OUT)
	set -o pipefail; $(GO) test -tags integration -run '^$$' -bench 'MaxOffsetLookup50M|StoredRead50M' -benchmem -count 1 -timeout 30m ./bench/ 2>&1 | tee -a $(BENCH_OUT)
	set -o pipefail; $(GO) test -tags integration -run '^$$' -bench 'E2E' -benchtime 1x -count 1 -timeout 15m ./bench/ 2>&1 | tee -a $(BENCH_OUT)
	@echo "bench: results in $(BENCH_OUT) (machine shared with other sessions: rerun and compare before quoting)"

## demo: start the stack, create tables, generate events, run Sluice, show where to look
demo: deps up build
	@integration/demo.sh

## up / down: start or stop the real Kafka and ClickHouse (idempotent)
up:
	@integration/up.sh
down:
	@integration/down.sh

lint:
	$(GO) vet $(PKGS)
	$(GO) vet -tags integration ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
