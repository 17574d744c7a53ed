// Package drift detects drift of the objects each GitSync manages: which
// objects and which fields differ from what Tether last applied, and which
// field manager changed them.
//
// Drift never writes to the cluster: no apply, no delete, no status. It
// keeps a watch cache of exactly the objects each GitSync manages (one
// metadata-only informer per kind, shared by every GitSync, filtered by the
// owner labels tether.dev/name and tether.dev/namespace) and remembers, per
// object, what was applied and the resourceVersion that apply produced.
//
// The work is split so that nothing costs a request while nothing changed:
//
//   - Record, after each successful apply, stores the applied objects and
//     their live resourceVersions, and starts watches for new kinds.
//   - Suspects compares the watch cache with the record: an object whose
//     resourceVersion moved past the recorded one, or that is gone. It
//     makes no API request. A move that only wrote status is no suspect:
//     the watch cache keeps a signature of each object's generation,
//     labels, annotations and managedFields without the entries of the
//     status subresource, and a controller reporting status leaves it
//     unchanged, while an edit of anything else by any manager changes
//     it. So status churn costs no GET and no dry-run.
//   - Check decides, for suspects only, whether the change is drift: a GET
//     and a server-side dry-run apply of the recorded object under Tether's
//     field manager, compared with the live object by fluxcd/pkg/ssa's
//     jsondiff, the one compare path that Diff (`tether diff`) uses too.
//     Status-only changes and ignored paths are not drift. Reports carry
//     JSON pointer paths and field manager names, never values, so Secret
//     data cannot leak.
//   - Unchanged tells apply which planned objects are exactly as the last
//     apply left them (same fingerprint, same resourceVersion in the watch
//     cache), so that a forced resync with nothing changed sends nothing.
//   - Update records a drift correction (only the re-applied objects)
//     without fingerprinting the whole set again.
//   - Options.OnChange tells the caller (the sync loop) as soon as a watch
//     event makes an object of a GitSync a suspect.
package drift
