// Package logx holds the slog helpers the stages share.
package logx

import (
	"context"
	"log/slog"
)

// AtLeast wraps h so that records below min are dropped: used to keep a
// chatty library's (franz-go's) info logs out while its warnings pass.
func AtLeast(h slog.Handler, min slog.Level) slog.Handler { return atLeast{h, min} }

type atLeast struct {
	slog.Handler
	min slog.Level
}

func (h atLeast) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h atLeast) WithAttrs(as []slog.Attr) slog.Handler {
	return atLeast{h.Handler.WithAttrs(as), h.min}
}

func (h atLeast) WithGroup(name string) slog.Handler {
	return atLeast{h.Handler.WithGroup(name), h.min}
}
