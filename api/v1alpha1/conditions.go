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
	// ReasonServiceAccountRequired: a GitSync outside the agent's namespace
	// names no service account and the agent has no default one, so it
	// would apply with the agent's own rights; nothing is applied.
	ReasonServiceAccountRequired = "ServiceAccountRequired"
	// ReasonEmptyRender: the render has no objects while the inventory
	// holds some, and spec.allowEmpty is off; nothing is pruned.
	ReasonEmptyRender = "EmptyRender"
	// ReasonNamespaceKept (an event's reason): a Namespace that left Git
	// was not pruned because it holds objects the GitSync never applied.
	ReasonNamespaceKept = "NamespaceKept"
	// ReasonFinalizerAbandoned (an event's reason): the GitSync's own
	// namespace is being deleted and its prune on deletion failed, so the
	// finalizer lets go instead of holding the namespace forever.
	ReasonFinalizerAbandoned = "FinalizerAbandoned"
	// ReasonOwnershipConflict: an object in Git is already owned by
	// another GitSync; nothing of this sync was applied or taken over.
	ReasonOwnershipConflict = "OwnershipConflict"
)
