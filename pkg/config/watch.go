package config

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchSettle is how long the config file's directory must be quiet after
// an event before the file is read: an editor's save (truncate, write,
// rename, chmod) and a Kubernetes ConfigMap update (a new ..data symlink)
// are several events, and a file read between them may be half written.
const WatchSettle = 300 * time.Millisecond

// WatchFiles calls changed with the files whose content differs from what
// it was when they were read (the digests files gives for them, FileSum's)
// or when changed last named them, until ctx ends. files is the set to
// watch, asked at the start and again on each receive from rescan (a
// reload may name other files: a pipeline's new schema file); a file new
// to the set is compared with the digest files gives, so an edit between
// its read and the rescan is seen, and one that left the set is
// forgotten. It watches the files' directories, not the files: editors
// and Kubernetes replace a file (a rename, a symlink swap), which ends a
// watch on the file itself. Any event in a watched directory schedules a
// read after WatchSettle of quiet; the digests decide, so events of other
// files, or a save without a change, call nothing. A file that cannot be
// read is passed over (changed names it once it can, if its content
// differs). changed runs on WatchFiles' goroutine, one call at a time.
// WatchFiles returns nil when ctx ends, or an error when a directory
// cannot be watched.
func WatchFiles(ctx context.Context, files func() map[string][32]byte, rescan <-chan struct{}, changed func([]string)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("config: watch: %w", err)
	}
	defer w.Close()
	dirs := map[string]bool{}
	last := map[string][32]byte{}
	// refresh takes files' set: new directories watched, new files
	// compared from their read digest on, gone ones dropped.
	refresh := func() error {
		next := map[string][32]byte{}
		for path, read := range files() {
			if sum, ok := last[path]; ok {
				next[path] = sum
			} else {
				next[path] = read
			}
			dir := filepath.Dir(path)
			if dirs[dir] {
				continue
			}
			if err := w.Add(dir); err != nil {
				return fmt.Errorf("config: watch %s: %w", dir, err)
			}
			dirs[dir] = true
		}
		last = next
		return nil
	}
	if err := refresh(); err != nil {
		return err
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
			// the files to be sure.
			settle.Reset(WatchSettle)
		case <-rescan:
			if err := refresh(); err != nil {
				return err
			}
			settle.Reset(WatchSettle)
		case <-settle.C:
			var edited []string
			for path, was := range last {
				sum := FileSum(path)
				if sum == ([32]byte{}) || sum == was { // unreadable, or unchanged
					continue
				}
				last[path] = sum
				edited = append(edited, path)
			}
			if len(edited) > 0 {
				slices.Sort(edited)
				changed(edited)
			}
		}
	}
}
