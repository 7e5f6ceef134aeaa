package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/logx"
)

// reloadOnChange calls reload on every SIGHUP and, with watch, every
// change of the config file's content from since (config.FileSum of what
// was loaded), one call at a time, until ctx ends. A directory that
// cannot be watched leaves SIGHUP, with a WARN.
func reloadOnChange(ctx context.Context, path string, since [32]byte, watch bool, hup <-chan os.Signal, log *slog.Logger, reload func()) {
	edited := make(chan struct{}, 1)
	go func() {
		if !watch {
			return
		}
		err := config.Watch(ctx, path, since, func() {
			select {
			case edited <- struct{}{}:
			default: // a reload is due already; it reads the newest file
			}
		})
		if err != nil {
			log.Warn("cannot watch the config file: only SIGHUP reloads it", "stage", "config", logx.Err(err))
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info("SIGHUP: reloading the config", "stage", "config", "file", path)
		case <-edited:
			log.Info("the config file changed: reloading it", "stage", "config", "file", path)
		}
		reload()
	}
}
