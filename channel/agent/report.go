package agent

import (
	"tether.dev/tether/channel/channelpb"
)

// Send hands over the newest report of one GitSync, ready as the sync loop
// builds it (sync.BuildReport: redacted, within the protocol's limits),
// and keeps only the newest report per GitSync until the hub acknowledges
// it. It stamps the state_version and the Warning event count, and takes
// r over: the caller must not change it afterwards. It never blocks.
//
// sourceURL is the GitSync's source URL as the cluster spells it: when it
// carries credentials the report's URL is redacted, and the agent keeps
// the original in memory so that a "sync now" for the redacted URL, all
// the hub knows, still names it exactly.
func (c *Client) Send(r *channelpb.SyncReport, sourceURL string) {
	if r == nil || r.GetName() == "" {
		return
	}
	c.sources.remember(r.GetSourceUrl(), sourceURL)
	// Both spellings of phase and ref, whoever built r: a hub from before
	// the typed fields reads only the strings.
	r.Normalize()
	if w := c.warnings.Load(); w != nil && !r.GetDeleted() {
		r.WarningEvents = (*w).Count(r.GetNamespace(), r.GetName())
	}
	c.buf.put(r)
}
