// Package apply applies rendered objects to a cluster with server-side apply
// through github.com/fluxcd/pkg/ssa, under the field manager "tether".
//
// It owns four verbs, one file each: Plan normalises and validates a set of
// objects without writing anything; Apply applies a plan in stages (cluster
// definitions first, then the rest grouped per namespace), refusing the
// whole set when another GitSync owns one of its objects, and sending
// nothing for the objects Options.Skip accepts; the inventory
// functions record what was applied; Prune deletes what left Git, and only
// what the inventory and the owner labels say this GitSync owns.
//
// The package returns change sets, inventories and errors. It never writes
// any GitSync status itself: that is the sync loop's job.
package apply
