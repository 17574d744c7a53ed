package agent_test

import (
	tsync "tether.dev/tether/sync"

	"tether.dev/tether/channel/agent"
)

// The agent half is the sync loop's Reporter, without importing sync.
var _ tsync.Reporter = (*agent.Client)(nil)
