// Package events is the agent's half of "events pushed back": it watches
// the cluster's Warning events (core/v1, field selector type=Warning),
// keeps those of objects a GitSync manages (Owners says which;
// Controllers extends it from what a GitSync applied to the ReplicaSets
// and Pods those objects make), folds
// repeats (the same object, reason and message count up instead of
// repeating), and hands them to the hub in batches at a bounded rate.
//
// It only reads the cluster. What it holds is bounded whatever the
// cluster does: at most Options.MaxPending folded events wait to be sent,
// and a flood beyond the rate is counted, not queued.
package events
