package channelpb

import (
	"fmt"
)

// Limits of WarningEvents: the agent batches at most MaxEventsPerBatch and
// cuts messages to MaxEventMessage bytes; the hub refuses more.
const (
	MaxEventsPerBatch = 100
	MaxEventMessage   = 1024
)

// Validate checks a batch of Warning events: bounded, each naming a
// GitSync and an object, with a positive count and bounded texts.
func (b *WarningEvents) Validate() error {
	if b == nil {
		return fmt.Errorf("events: empty: %w", ErrInvalid)
	}
	if err := checkCount("events", "events", len(b.GetEvents()), MaxEventsPerBatch); err != nil {
		return err
	}
	for i, e := range b.GetEvents() {
		id := fmt.Sprintf("event %d", i)
		if err := checkName(id+": gitsync_namespace", e.GetGitsyncNamespace()); err != nil {
			return err
		}
		if err := checkName(id+": gitsync_name", e.GetGitsyncName()); err != nil {
			return err
		}
		id = fmt.Sprintf("event %d of %s/%s", i, e.GetGitsyncNamespace(), e.GetGitsyncName())
		if err := checkTexts(id, map[string]string{
			"kind": e.GetKind(), "namespace": e.GetNamespace(), "name": e.GetName(), "reason": e.GetReason(),
		}, MaxNameLength); err != nil {
			return err
		}
		if err := checkTexts(id, map[string]string{"message": e.GetMessage()}, MaxEventMessage); err != nil {
			return err
		}
		if e.GetCount() < 1 || e.GetFirstUnixMs() < 0 || e.GetLastUnixMs() < e.GetFirstUnixMs() {
			return fmt.Errorf("%s: count %d, first %d, last %d: %w", id, e.GetCount(), e.GetFirstUnixMs(), e.GetLastUnixMs(), ErrInvalid)
		}
	}
	return nil
}
