package drift

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	ssajsondiff "github.com/fluxcd/pkg/ssa/jsondiff"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Change says how a field differs from what Tether applied.
type Change string

const (
	// Changed: a re-apply would change the field (its value differs from
	// Git, it was removed, or it is set and Git does not set it).
	Changed Change = "Changed"
	// Added: another manager set a field Git does not set, inside an object
	// Tether owns; a re-apply keeps it (flux2#2099).
	Added Change = "Added"
	// TakenOver: Git sets the field, and another manager now owns it with
	// the value Git has; a later change by that manager would win over Git
	// silently (kustomize-controller#870).
	TakenOver Change = "TakenOver"
)

// Field is one drifted field. It carries no value, so Secret data cannot
// leak through a report.
type Field struct {
	// Path is a JSON pointer (RFC 6901) into the live object, e.g.
	// /spec/replicas or /data/password.
	Path string
	// Change says how the field differs.
	Change Change
	// Managers are the field managers that own the field now (from
	// managedFields), or, for a field nobody owns any more (removed), the
	// managers that updated the object last.
	Managers []string
}

// Object is one drifted object.
type Object struct {
	// ID is the inventory ID, <namespace>_<name>_<group>_<kind>.
	ID         string
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	// Deleted says the object is gone; Fields is then empty.
	Deleted bool
	// Fields that differ, sorted by path.
	Fields []Field
	// Paths and Managers summarise Fields: every path, and every manager
	// named, each sorted.
	Paths    []string
	Managers []string
	// DetectedAt is when a watch event first showed the change.
	DetectedAt time.Time
	// ResourceVersion is the live version checked; "" when deleted.
	ResourceVersion string
}

// Report is the drift of one owner.
type Report struct {
	// Drifted objects, sorted by ID.
	Drifted []Object
	// Count is len(Drifted).
	Count int
	// Suspects is how many objects the watch cache flagged; Requests is
	// how many API requests Check made for them (0 when nothing changed,
	// or when every suspect was checked before at the same version).
	Suspects int
	Requests int
}

// checkJob is a snapshot of one suspect's entry, taken under the lock.
type checkJob struct {
	e       *entry
	suspect Suspect
	cached  *Object // a previous Check's answer that is still valid
	result  *Object // nil: no drift
	liveRV  string
	liveSig string
	err     error
	reqs    int
}

// Check decides which of owner's suspects drifted. For each suspect not
// already checked at its current version it makes a GET and a server-side
// dry-run apply of the recorded object under Tether's field manager, and
// compares the dry-run result with the live object, as Diff does (one
// path for both, on fluxcd/pkg/ssa's jsondiff): status and server-set
// metadata are not compared, and paths matched by ignore are
// dropped, as is the replicas field of objects an applied autoscaler
// scales (see Scaled). It also reports fields other managers added to or took over in
// the object (see Added and TakenOver), except those of trusted managers.
//
// Check writes nothing to the cluster. A suspect found without drift is
// accepted: its live version becomes the recorded one. With no suspects
// Check makes no API request. On errors the report holds the objects that
// could be checked, and the error names the others.
func (t *Tracker) Check(ctx context.Context, owner Owner, ignore []IgnoreRule) (*Report, error) {
	rules, err := compileIgnore(ignore)
	if err != nil {
		return nil, err
	}
	var jobs []*checkJob
	var scaled ignoreRules
	t.mu.Lock()
	st, ok := t.owners[owner]
	if ok {
		// The replicas an applied autoscaler owns belong to the record,
		// not to the caller's rules: a difference there alone is no
		// drift, and the live version is accepted.
		for _, s := range st.scaled {
			scaled = append(scaled, s.rule().compile())
		}
		for _, s := range t.suspectsLocked(st, time.Now()) {
			e := st.entries[s.key]
			if e == nil || rules.wholeObject(e) {
				continue
			}
			j := &checkJob{e: e, suspect: s}
			if e.checked != nil && !s.Deleted && (e.checkedRV == s.ResourceVersion || (e.checkedSig != "" && e.checkedSig == s.sig)) {
				j.cached = e.checked
			}
			jobs = append(jobs, j)
		}
	}
	t.mu.Unlock()

	sem := make(chan struct{}, t.opts.Concurrency)
	var wg sync.WaitGroup
	for _, j := range jobs {
		if j.cached != nil {
			j.result = j.cached
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			j.result, j.liveRV, j.liveSig, j.reqs, j.err = t.checkObject(ctx, j.e, j.suspect)
			j.result = scaled.filter(j.e, j.result)
		})
	}
	wg.Wait()

	rep := &Report{Suspects: len(jobs)}
	var errs []error
	t.mu.Lock()
	for _, j := range jobs {
		rep.Requests += j.reqs
		if j.err != nil {
			errs = append(errs, j.err)
			continue
		}
		if j.cached == nil {
			t.acceptLocked(owner, j)
		}
		if o := rules.filter(j.e, j.result); o != nil {
			rep.Drifted = append(rep.Drifted, *o)
		}
	}
	t.mu.Unlock()
	sort.Slice(rep.Drifted, func(i, j int) bool { return rep.Drifted[i].ID < rep.Drifted[j].ID })
	rep.Count = len(rep.Drifted)
	return rep, errors.Join(errs...)
}

// acceptLocked stores a Check's answer in the entry, if the entry is still
// the owner's: no drift makes the live version the recorded one; drift is
// cached against the live version.
func (t *Tracker) acceptLocked(owner Owner, j *checkJob) {
	st, ok := t.owners[owner]
	if !ok || st.entries[j.e.key] != j.e {
		return // a Record or Forget replaced it meanwhile
	}
	e := j.e
	if j.result == nil {
		e.rv, e.sig, e.changedAt = j.liveRV, j.liveSig, time.Time{}
		e.checkedRV, e.checkedSig, e.checked = "", "", nil
		return
	}
	if !j.result.Deleted {
		e.checkedRV, e.checkedSig, e.checked = j.liveRV, j.liveSig, j.result
	}
}

// checkObject compares one recorded object with the cluster (see
// compare). It returns nil when nothing differs, the live resourceVersion
// and signature, and the number of requests made.
func (t *Tracker) checkObject(ctx context.Context, e *entry, s Suspect) (*Object, string, string, int, error) {
	out := &Object{
		ID: e.id, APIVersion: e.gvk.GroupVersion().String(), Kind: e.gvk.Kind,
		Namespace: e.key.namespace, Name: e.key.name, DetectedAt: s.Since,
	}
	applied := &unstructured.Unstructured{}
	if err := json.Unmarshal(e.applied, &applied.Object); err != nil {
		return nil, "", "", 0, fmt.Errorf("%s drift check: %w", e.id, err)
	}
	d, err := compare(ctx, t.client, applied, t.opts.FieldManager, nil)
	switch {
	case apierrors.IsNotFound(err):
		// The dry-run found no namespace to create the object in.
		out.Deleted = true
		return out, "", "", requestsPerCompare, nil
	case err != nil:
		return nil, "", "", requestsPerCompare, fmt.Errorf("%s drift check: %w", e.id, err)
	case d.Type == ssajsondiff.DiffTypeCreate:
		out.Deleted = true
		return out, "", "", requestsPerCompare, nil
	}
	live, ok := d.ClusterObject.(*unstructured.Unstructured)
	if !ok {
		return nil, "", "", requestsPerCompare, fmt.Errorf("%s drift check: no live object to compare", e.id)
	}
	out.Fields = t.fields(applied.Object, patchPaths(d), live)
	out.ResourceVersion = live.GetResourceVersion()
	sig := signature(live)
	if len(out.Fields) == 0 {
		return nil, out.ResourceVersion, sig, requestsPerCompare, nil
	}
	return out, out.ResourceVersion, sig, requestsPerCompare, nil
}

// fields lists the changed paths (those a re-apply would change) with the
// managers that own them now, then what other managers added or took
// over.
func (t *Tracker) fields(applied map[string]any, changed []string, live *unstructured.Unstructured) []Field {
	owned := ownedPaths(live)
	var out []Field
	for _, p := range changed {
		out = append(out, Field{Path: p, Change: Changed, Managers: owned.managersOf(p, t.opts.FieldManager)})
	}
	for _, f := range owned.foreign(t.opts.FieldManager, t.trusted) {
		if underAny(f.Path, changed) {
			continue
		}
		f.Change = Added
		if hasPath(applied, f.Path) {
			f.Change = TakenOver
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}
