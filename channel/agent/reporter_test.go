package agent_test

import (
	tsync "tether.dev/tether/sync"

	"tether.dev/tether/channel/agent"
)

// The agent half takes the sync loop's reports, without importing sync.
var _ tsync.ReportSink = (*agent.Client)(nil)
