package drift

// OwnerOf returns the owner whose last apply included the object of this
// kind, namespace and name (namespace empty for a cluster-scoped object).
// It reads only what Record stored: no API request. The agent maps the
// Warning events of the cluster to GitSyncs with it.
func (t *Tracker) OwnerOf(kind, namespace, name string) (Owner, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for gvk, m := range t.mappings {
		if gvk.Kind != kind {
			continue
		}
		k := objKey{gvr: m.Resource, namespace: namespace, name: name}
		for o, st := range t.owners {
			if _, ok := st.entries[k]; ok {
				return o, true
			}
		}
	}
	return Owner{}, false
}
