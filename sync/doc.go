// Package sync is Tether's orchestrator. One reconcile per GitSync runs its
// whole pipeline synchronously, readable top to bottom in Reconcile: source
// (resolve the ref) → decide → dependencies and time gates → sync (checkout
// → render → plan → apply → prune → health → status, events and report),
// or, when nothing is new, the drift stage (check and correct drift the
// watch cache saw). controller-runtime's workers are the only concurrency
// limit and its work queue the only scheduler: the next poll, the backoff
// after a failure (computed from the status) and rate-limited retries of
// failed API requests. "Latest wins": newer work for a GitSync that is
// mid-sync (a spec or resync change, "sync now", a new commit) cancels that
// reconcile, which then never prunes and records what it did apply.
//
// Stages is the library entry point for "what would a sync apply" that
// `tether diff` and `tether render` call as the loop does.
//
// It talks to source, render, apply and drift through the small interfaces
// declared in interfaces.go, never to the cluster objects it deploys
// directly. It is the only package that writes GitSync status, always
// with an optimistic lock, so that every decision taken on the status is
// taken on the newest one.
package sync
