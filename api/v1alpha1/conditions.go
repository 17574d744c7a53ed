package v1alpha1

// Condition types, kstatus style.
const (
	// ReadyCondition is True when the last attempted revision is applied.
	ReadyCondition = "Ready"
	// ReconcilingCondition is True while a sync is in progress.
	ReconcilingCondition = "Reconciling"
	// StalledCondition is True when a user error stops progress until the
	// spec or the repository changes.
	StalledCondition = "Stalled"
	// DriftedCondition is True while objects differ from what was applied.
	DriftedCondition = "Drifted"
	// BlockedCondition is True while a schedule or a sync window keeps a
	// pending revision (or drift correction) from being applied.
	BlockedCondition = "Blocked"
)

// Condition reasons.
const (
	ReasonSucceeded          = "Succeeded"
	ReasonProgressing        = "Progressing"
	ReasonFetchFailed        = "FetchFailed"
	ReasonRenderFailed       = "RenderFailed"
	ReasonApplyFailed        = "ApplyFailed"
	ReasonPruneFailed        = "PruneFailed"
	ReasonInvalidSpec        = "InvalidSpec"
	ReasonNamespaceDenied    = "NamespaceNotAllowed"
	ReasonSuspended          = "Suspended"
	ReasonDriftDetected      = "DriftDetected"
	ReasonDriftCorrected     = "DriftCorrected"
	ReasonNoDrift            = "NoDrift"
	ReasonDriftCheckFailed   = "DriftCheckFailed"
	ReasonHealthCheckFailed  = "HealthCheckFailed"
	ReasonDependencyNotReady = "DependencyNotReady"
	ReasonDependencyCycle    = "DependencyCycle"
	ReasonSyncWindowClosed   = "SyncWindowClosed"
	ReasonNotScheduled       = "NotScheduled"
	ReasonNotBlocked         = "NotBlocked"
)
