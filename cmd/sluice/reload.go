package main

import (
	"context"
	"log/slog"
	"maps"
	"os"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/logx"
)

// reloadOnChange calls reload on every SIGHUP and, with watch, every
// change of the config file's content from since (config.FileSum of what
// was loaded) or of a running pipeline's schema file from what its build
// read (schemas, asked again after each reload), one call at a time,
// until ctx ends. A directory that cannot be watched leaves SIGHUP, with
// a WARN.
func reloadOnChange(ctx context.Context, path string, since [32]byte, schemas func() map[string][32]byte, watch bool, hup <-chan os.Signal, log *slog.Logger, reload func()) {
	edited := make(chan []string, 1)
	rescan := make(chan struct{}, 1)
	go func() {
		if !watch {
			return
		}
		files := func() map[string][32]byte {
			m := maps.Clone(schemas())
			if m == nil {
				m = map[string][32]byte{}
			}
			m[path] = since
			return m
		}
		err := config.WatchFiles(ctx, files, rescan, func(paths []string) {
			select {
			case edited <- paths:
			default: // a reload is due already; it reads the newest files
			}
		})
		if err != nil {
			log.Warn("cannot watch the config file and the schema files: only SIGHUP reloads them", "stage", "config", logx.Err(err))
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info("SIGHUP: reloading the config", "stage", "config", "file", path)
		case paths := <-edited:
			log.Info("a watched file changed: reloading the config", "stage", "config", "file", path, "changed", paths)
		}
		reload()
		select {
		case rescan <- struct{}{}: // the reload may have named other schema files
		default:
		}
	}
}
