package config

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchSettle is how long the config file's directory must be quiet after
// an event before the file is read: an editor's save (truncate, write,
// rename, chmod) and a Kubernetes ConfigMap update (a new ..data symlink)
// are several events, and a file read between them may be half written.
const WatchSettle = 300 * time.Millisecond

// Watch calls changed each time the content of the file at path differs
// from since (its FileSum when it was last read, so an edit made before
// Watch started is seen; the zero sum: the content when Watch starts) or
// from what it was when changed was last called, until ctx ends. It watches the file's directory, not the file: editors
// and Kubernetes replace the file (a rename, a symlink swap), which ends a
// watch on the file itself. Any event in the directory schedules a read
// after WatchSettle of quiet; the content's digest decides, so events of
// other files, or a save without a change, call nothing. A file that
// cannot be read is passed over (changed is called once it can, if its
// content differs). changed runs on Watch's goroutine, one call at a
// time. Watch returns nil when ctx ends, or an error when the directory
// cannot be watched.
func Watch(ctx context.Context, path string, since [32]byte, changed func()) error {
	dir := filepath.Dir(path)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("config: watch %s: %w", path, err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("config: watch %s: %w", dir, err)
	}
	last := since
	if last == ([32]byte{}) {
		last = FileSum(path)
	}
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-w.Events:
			if !ok {
				return nil
			}
			settle.Reset(WatchSettle)
		case _, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// An overflow of the kernel's queue loses events: read
			// the file to be sure.
			settle.Reset(WatchSettle)
		case <-settle.C:
			sum := FileSum(path)
			if sum == ([32]byte{}) || sum == last { // unreadable, or unchanged
				continue
			}
			last = sum
			changed()
		}
	}
}
