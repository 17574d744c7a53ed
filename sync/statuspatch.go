package sync

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"tether.dev/tether/api/v1alpha1"
)

// statusPatch is the JSON merge patch (RFC 7386) that turns the status of
// before into that of after, guarded by before's resourceVersion (the
// optimistic lock). It is what controller-runtime's MergeFrom with
// MergeFromWithOptimisticLock sends, computed for less: MergeFrom encodes
// both whole objects and decodes them again into maps to compare them, so
// a write to a GitSync of thousands of inventory entries cost tens of
// milliseconds of the agent's CPU; here an unchanged inventory is not
// even encoded, and only the members that differ are decoded.
func statusPatch(before, after *v1alpha1.GitSync) ([]byte, error) {
	bs, as := before.Status, after.Status // shallow copies
	if reflect.DeepEqual(bs.Inventory, as.Inventory) {
		// Most writes leave it as it is: not even encoded then.
		bs.Inventory, as.Inventory = nil, nil
	}
	a, err := json.Marshal(&bs)
	if err != nil {
		return nil, fmt.Errorf("encode status: %w", err)
	}
	b, err := json.Marshal(&as)
	if err != nil {
		return nil, fmt.Errorf("encode status: %w", err)
	}
	diff, err := mergePatch(a, b)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"metadata": map[string]string{"resourceVersion": before.ResourceVersion},
		"status":   diff,
	})
}

// mergePatch returns the merge patch from the JSON object a to the JSON
// object b: members of b that differ from a's (objects compared member by
// member, anything else replaced whole, as RFC 7386 does), and null for
// members a has and b lacks.
func mergePatch(a, b []byte) (map[string]json.RawMessage, error) {
	var am, bm map[string]json.RawMessage
	if err := json.Unmarshal(a, &am); err != nil {
		return nil, fmt.Errorf("decode status: %w", err)
	}
	if err := json.Unmarshal(b, &bm); err != nil {
		return nil, fmt.Errorf("decode status: %w", err)
	}
	out := map[string]json.RawMessage{}
	for k, bv := range bm {
		av, ok := am[k]
		switch {
		case !ok:
			out[k] = bv
		case bytes.Equal(av, bv):
		case isObject(av) && isObject(bv):
			sub, err := mergePatch(av, bv)
			if err != nil {
				return nil, err
			}
			if len(sub) > 0 {
				raw, err := json.Marshal(sub)
				if err != nil {
					return nil, err
				}
				out[k] = raw
			}
		default:
			out[k] = bv
		}
	}
	for k := range am {
		if _, ok := bm[k]; !ok {
			out[k] = json.RawMessage("null")
		}
	}
	return out, nil
}

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}
