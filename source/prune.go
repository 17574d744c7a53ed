package source

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// prune removes checkouts beyond Options.KeepRevisions, newest hand-out
// first, but never keep (the one just handed out) nor any handed out within
// the grace period: a sync may still be rendering it. Leftover temporary
// trees of crashed writes go too once they are older than the grace period.
func (f *Fetcher) prune(dir, keep string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type checkout struct {
		name string
		used time.Time
	}
	var all []checkout
	now := f.now()
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !e.IsDir() {
			continue
		}
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if now.Sub(info.ModTime()) > f.grace {
				f.remove(filepath.Join(dir, e.Name()))
			}
			continue
		}
		all = append(all, checkout{e.Name(), info.ModTime()})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].used.After(all[j].used) })
	for i, c := range all {
		if i < f.opts.KeepRevisions || c.name == keep || now.Sub(c.used) < f.grace {
			continue
		}
		f.remove(filepath.Join(dir, c.name))
	}
}

func (f *Fetcher) remove(path string) {
	if err := os.RemoveAll(path); err != nil {
		f.log.Warn("remove old checkout", "dir", path, "error", err)
		return
	}
	f.log.Debug("removed old checkout", "dir", path)
}
