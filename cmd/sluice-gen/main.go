// Command sluice-gen produces realistic, referentially consistent
// e-commerce data (customers, fx rates, orders, payments, shipments) to
// Kafka, at a given count and rate, with progress on stderr: the events in
// any format a Sluice pipeline reads (plain Avro by default, Confluent-framed
// Avro, JSON), the reference data as plain Avro. It is wiring only: flags,
// Kafka clients, topic creation and schema registration here, the data,
// its encodings and the producing loop in pkg/gen.
//
// Files: main.go (entry, exit codes), cmd.go (flags and the run),
// format.go (--format and --registry), topics.go (topic creation with
// kadm), progress.go (progress bar / lines).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, isTerminal(os.Stderr))
	stop()
	os.Exit(code)
}
