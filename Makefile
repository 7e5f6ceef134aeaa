# Sluice — the two commands a new user needs:
#   make demo   start Kafka + ClickHouse, create tables, generate events, run Sluice
#   make test   unit tests + integration tests against the real services
SHELL := /bin/bash
GO    ?= go
BIN   := bin
PKGS  := ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build test test-unit test-integration bench bench-offsets bench-e2e bench-memory bench-scale demo up down up-cluster down-cluster test-cluster deps lint fmt clean

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
	$(GO) test -tags integration -count=1 -timeout 20m -v ./integration/... 2>&1 | tee $(BIN)/integration.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+(_test|sluicerun)\.go)' ; exit $${PIPESTATUS[0]}

## bench: benchmarks; performance figures (README, DESIGN budget) come from here, never from
## timed tests. First issue 8's side-by-side suite (bench/sidebyside_bench_test.go): 3M orders
## produced once, then Sluice on JSON and on Avro with every transform, ClickHouse's own Kafka
## engine, the insert-only and consume-only limits and a 20,000 events/s latency case; it prints
## one table with the targets' ratios and writes bin/bench.json, printing the previous run's
## figures beside the new ones (~4½ minutes on 2 cores). Then the unit benchmarks (no services)
## and the integration ones: the sink into ENGINE = Null and the engine on kfake into ClickHouse
## (~1½ minutes). ~6 minutes in all (5:41 measured on 2026-12-02). Slower ones are run on purpose: `make bench-offsets` (the
## offset lookups on a 50M-row table, built once in database sluice_bench) and `make bench-e2e`
## (`sluice run` loading 1M orders, JSON, Avro and Avro enriched). Results also go to
## bin/bench.txt (benchstat-friendly). `make test` never runs benchmarks (no -bench there).
## Another stack: SLUICE_STATE_DIR=/tmp/s CLICKHOUSE_TCP_PORT=19000 CLICKHOUSE_HTTP_PORT=18123
## KAFKA_PORT=19092 KAFKA_CONTROLLER_PORT=19093 make bench (the addresses follow the ports).
BENCH_OUT := $(BIN)/bench.txt
BENCH_ENV := SLUICE_KAFKA_BROKERS=$${SLUICE_KAFKA_BROKERS:-127.0.0.1:$${KAFKA_PORT:-9092}} \
	SLUICE_CLICKHOUSE_ADDR=$${SLUICE_CLICKHOUSE_ADDR:-127.0.0.1:$${CLICKHOUSE_TCP_PORT:-9000}}
bench: up
	@mkdir -p $(BIN); : > $(BENCH_OUT)
	set -o pipefail; $(BENCH_ENV) $(GO) test -tags integration -run '^$$' -bench 'SideBySide' -benchtime 1x -count 1 -timeout 30m ./bench/ 2>&1 | tee -a $(BENCH_OUT)
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchmem -count 1 -timeout 20m ./pkg/... 2>&1 | tee -a $(BENCH_OUT)
	set -o pipefail; $(BENCH_ENV) $(GO) test -tags integration -run '^$$' -bench 'SinkInsertNull' -benchmem -count 1 -timeout 10m ./pkg/sink/ 2>&1 | tee -a $(BENCH_OUT)
	set -o pipefail; $(BENCH_ENV) $(GO) test -tags integration -run '^$$' -bench 'PipelineOrders' -benchtime 1x -benchmem -count 1 -timeout 20m ./pkg/pipeline/ 2>&1 | tee -a $(BENCH_OUT)
	@echo "bench: results in $(BENCH_OUT) and $(BIN)/bench.json (machine shared with other sessions: rerun and compare before quoting)"

## bench-offsets: the highest-loaded-offset lookups on a 50M-row table (the first run builds it, ~1 minute)
bench-offsets: up
	@mkdir -p $(BIN)
	set -o pipefail; $(BENCH_ENV) $(GO) test -tags integration -run '^$$' -bench 'MaxOffsetLookup50M|StoredRead50M' -benchmem -count 1 -timeout 30m ./bench/ 2>&1 | tee $(BIN)/bench-offsets.txt

## bench-memory: issue 8's point 4: one `sluice run` at the default limits drains a backlog of
## 10,000,000 JSON orders over 12 partitions (SLUICE_MEMORY_ORDERS, SLUICE_MEMORY_FORMAT=avro);
## peak RSS against the bound `sluice check` prints, and the largest RSS in each tenth of the drain
bench-memory: up
	@mkdir -p $(BIN)
	set -o pipefail; $(BENCH_ENV) $(GO) test -tags integration -run '^$$' -bench 'MemoryDrain' -benchtime 1x -count 1 -timeout 60m ./bench/ 2>&1 | tee $(BIN)/bench-memory.txt

## bench-e2e: `sluice run` loading 1M orders from the real Kafka, JSON, Avro and Avro enriched
bench-e2e: up
	@mkdir -p $(BIN)
	set -o pipefail; $(BENCH_ENV) $(GO) test -tags integration -run '^$$' -bench 'E2E' -benchtime 1x -count 1 -timeout 15m ./bench/ 2>&1 | tee $(BIN)/bench-e2e.txt

## bench-scale: issue 10's scaling curve on the cluster bed (bench/scale_bench_test.go, build tag
## cluster): 800,000 JSON orders produced once to a 12-partition topic (RF 3), then 1, 2 and 3
## `bin/sluice run` processes in one group, three rounds (5m23s measured on 2026-12-02), each N with a fresh group and fresh tables migrated ON
## CLUSTER; rows/s, loader, ClickHouse and Kafka CPU per row, peak RSS, parts; fails unless every
## run loaded exactly once. One table and bin/bench-scale.json (docs/capacity.md reads it).
## SLUICE_SCALE_ORDERS and SLUICE_SCALE_PROCS change the sizes.
bench-scale: up-cluster build
	@mkdir -p $(BIN)
	set -o pipefail; set -a; . "$${SLUICE_STATE_DIR:-$(CURDIR)/.state}/cluster/env"; set +a; \
	SLUICE_SCALE_BIN=$(CURDIR)/$(BIN)/sluice $(GO) test -tags cluster -run '^$$' -bench 'Scale' -benchtime 1x -count 1 -timeout 30m ./bench/ 2>&1 | tee $(BIN)/bench-scale.txt

## demo: start the stack, create tables, generate events, run Sluice, show where to look
demo: deps up build
	@integration/demo.sh

## up / down: start or stop the real Kafka and ClickHouse (idempotent)
up:
	@integration/up.sh
down:
	@integration/down.sh

## up-cluster / down-cluster: the cluster test bed (issue 10; integration/cluster.sh, ports and
## layout in docs/DESIGN.md, "Cluster test bed"): one ZooKeeper, three KRaft brokers, ClickHouse
## 2 shards x 2 replicas, all on 127.0.0.1 beside `make up`'s stack. Idempotent, by pid file.
## `make deps` fetches the ZooKeeper jars; without it the first up-cluster does.
up-cluster:
	@integration/cluster.sh start
down-cluster:
	@integration/cluster.sh stop

## test-cluster: the tests on the cluster bed (build tag cluster, integration/cluster) after
## up-cluster: the bed's smoke test, exactly once into replicated and sharded tables (a lagging
## replica, a writing replica killed), Kafka cluster faults (the leaders' broker killed, the
## group's coordinator killed, a reassignment) and TestClusterChaos; ~7 minutes here. Not part of `make test` (its 20-minute
## budget); .ci/run runs it after `make test`.
test-cluster: up-cluster
	@mkdir -p $(BIN)
	set -a; . "$${SLUICE_STATE_DIR:-$(CURDIR)/.state}/cluster/env"; set +a; \
	$(GO) test -tags cluster -count=1 -timeout 30m -v ./integration/cluster/... 2>&1 | tee $(BIN)/cluster.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+(_test|sluicerun)\.go)' ; exit $${PIPESTATUS[0]}

## lint: go vet (also with the integration tag), gofmt, and the Helm chart checked offline:
## deploy/helm is its own module in the workspace deploy/helm/go.work (Helm as a library stays
## out of go.mod); its test lints, renders and validates deploy/helm/sluice and loads the config
## each rendered pod would run with Sluice's loader (README, "Kubernetes"). The first run builds
## Helm's packages (about a minute here), later runs take seconds.
lint:
	$(GO) vet $(PKGS)
	$(GO) vet -tags integration ./...
	$(GO) vet -tags cluster ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	cd deploy/helm && $(GO) vet ./... && $(GO) test -count=1 ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
