package drift

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// slimMark starts the generateName of the watch cache's copy of an object
// (see slim), which holds the object's signature and owner. It is never
// written to the cluster, and no object from the API server can carry it:
// a space is not allowed in a generateName. So an object with it was
// slimmed already (client-go may call a transform more than once on one
// object), and nobody can plant a fake signature.
const slimMark = "tether drift "

// statusSubresource is the managedFields subresource of status writes.
const statusSubresource = "status"

// signature fingerprints everything of an object's metadata that any
// change a re-apply could undo leaves behind: its generation, labels and
// annotations, whether it is being deleted, and every managedFields entry
// except those of the status subresource. A write to status only (a
// controller reporting progress, ten times a second) leaves it unchanged;
// a change of spec, data, labels or annotations by any manager changes it,
// because the server records who owns which field in managedFields (a new
// manager, a changed field set, or a new time of the manager's entry).
// Entries are sorted first: the server orders them partly by time, so
// status writes can reorder them.
func signature(o metav1.Object) string {
	h := sha256.New()
	write := func(parts ...string) {
		for _, p := range parts {
			h.Write([]byte(strconv.Itoa(len(p))))
			h.Write([]byte{':'})
			h.Write([]byte(p))
		}
	}
	write("generation", strconv.FormatInt(o.GetGeneration(), 10))
	write("deleting", strconv.FormatBool(o.GetDeletionTimestamp() != nil))
	writeMap := func(name string, m map[string]string) {
		write(name, strconv.Itoa(len(m)))
		for _, k := range sortedKeys(m) {
			write(k, m[k])
		}
	}
	writeMap("labels", o.GetLabels())
	writeMap("annotations", o.GetAnnotations())

	var entries []string
	for _, f := range o.GetManagedFields() {
		if f.Subresource == statusSubresource {
			continue
		}
		var t, fields string
		if f.Time != nil {
			t = f.Time.UTC().Format("2006-01-02T15:04:05Z")
		}
		if f.FieldsV1 != nil {
			fields = canonicalJSON(f.FieldsV1.Raw)
		}
		e := sha256.Sum256([]byte(strconv.Quote(f.Manager) + " " + strconv.Quote(string(f.Operation)) + " " +
			strconv.Quote(f.APIVersion) + " " + strconv.Quote(f.Subresource) + " " + t + " " +
			strconv.Quote(f.FieldsType) + " " + fields))
		entries = append(entries, string(e[:]))
	}
	sort.Strings(entries)
	write("managedFields", strconv.Itoa(len(entries)))
	write(entries...)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// canonicalJSON re-encodes raw with sorted keys: the watch cache's copy
// and a GET of the same object need not spell fieldsV1 alike.
func canonicalJSON(raw []byte) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	out, err := json.Marshal(v)
	if err != nil {
		return string(raw)
	}
	return string(out)
}

// cachedSignature is the signature slim stored in a watch cache object.
func cachedSignature(m *metav1.PartialObjectMetadata) string {
	sig, _ := slimmed(m)
	return sig
}
