package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations and labels that are part of the user contract.
const (
	// ResyncAnnotation forces one full sync whenever its value changes; the
	// value is echoed into status.lastHandledResyncAt.
	ResyncAnnotation = "tether.dev/resync-at"
	// PruneAnnotation set to "disabled" on an object keeps it in the cluster
	// when it leaves Git.
	PruneAnnotation = "tether.dev/prune"
	// ForceAnnotation set to "enabled" on an object lets Tether delete and
	// recreate it when an immutable field changed.
	ForceAnnotation = "tether.dev/force"
	// NameLabel and NamespaceLabel mark every applied object with the GitSync
	// that owns it; prune never deletes an object without both.
	NameLabel      = "tether.dev/name"
	NamespaceLabel = "tether.dev/namespace"
	// FieldManager is the server-side apply field manager Tether applies
	// with; drift tells Tether's fields from other managers' by it.
	FieldManager = "tether"
	// Disabled and Enabled are the values of the annotations above.
	Disabled = "disabled"
	Enabled  = "enabled"
)

// GitSyncSpec is what a user asks for: which Git revision, which folder in it,
// and how to apply it.
type GitSyncSpec struct {
	// Source is the Git repository and the ref to follow.
	Source GitSource `json:"source"`

	// Path is the folder inside the repository to render, relative to its
	// root. A folder without kustomization.yaml is rendered as all its YAML.
	// +optional
	Path string `json:"path,omitempty"`

	// Interval is how often the source is polled and the cluster reconciled.
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +optional
	Interval metav1.Duration `json:"interval,omitempty"`

	// RetryInterval is how soon a failed sync is retried; failures back off
	// exponentially from it up to Interval. Defaults to 10s.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +optional
	RetryInterval *metav1.Duration `json:"retryInterval,omitempty"`

	// Timeout bounds one sync's fetch, render and apply. Defaults to 5m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Prune deletes objects that left Git since the last applied revision.
	// +optional
	Prune bool `json:"prune,omitempty"`

	// TargetNamespace is given to namespaced objects that name no namespace.
	// Defaults to the GitSync's own namespace.
	// +optional
	TargetNamespace string `json:"targetNamespace,omitempty"`

	// AllowedNamespaces, when set, is the complete list of namespaces this
	// GitSync may write to; an object outside it fails the whole sync before
	// anything is written. With a list set, the only cluster-scoped objects
	// allowed are the Namespaces named in it.
	// +optional
	AllowedNamespaces []string `json:"allowedNamespaces,omitempty"`

	// Suspend stops all syncing until it is set back to false.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// Substitute replaces ${var} and ${var:=default} in the rendered objects.
	// +optional
	Substitute map[string]string `json:"substitute,omitempty"`

	// AllowRemoteBases lets kustomizations load remote bases. Off by default:
	// a render reads nothing outside the repository.
	// +optional
	AllowRemoteBases bool `json:"allowRemoteBases,omitempty"`

	// AllowEmpty lets a render with no objects prune everything the GitSync
	// applied. Off by default: an empty render (resources: [], a wrong path)
	// while the inventory holds objects is refused with reason EmptyRender
	// and nothing is pruned.
	// +optional
	AllowEmpty bool `json:"allowEmpty,omitempty"`

	// Drift says what to do when the cluster is changed behind Git's back.
	// +optional
	Drift DriftSpec `json:"drift,omitempty"`

	// Wait makes a sync wait until every applied object is Current (by
	// kstatus) before it reports Ready, up to Timeout.
	// +optional
	Wait bool `json:"wait,omitempty"`

	// Schedule (cron, 5 fields or @daily and the like) makes new revisions
	// apply only at these times instead of as soon as they are seen; they
	// show as status.pendingRevision meanwhile.
	// +optional
	Schedule string `json:"schedule,omitempty"`

	// TimeZone of Schedule and Windows (IANA name); default UTC.
	// +optional
	TimeZone string `json:"timeZone,omitempty"`

	// Windows allow or deny applying at times, as Argo CD's sync windows:
	// outside every allow window, or inside any deny window, nothing is
	// applied (deny wins); drift is still detected and reported.
	// +optional
	Windows []SyncWindow `json:"windows,omitempty"`

	// DependsOn lists GitSyncs that must be Ready at their latest revision
	// before this one applies.
	// +optional
	DependsOn []DependencyReference `json:"dependsOn,omitempty"`

	// ServiceAccountName makes the sync apply and prune as this service
	// account of the GitSync's namespace (impersonation), so it can do only
	// what that account's RBAC allows. It is a name, never a namespace: a
	// GitSync cannot act as an account of another namespace. Outside the
	// agent's own namespace a GitSync that names none uses the agent's
	// --default-service-account, and is refused when there is none.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern="^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
}

// SyncWindow is a recurring period in which applying is allowed or denied.
type SyncWindow struct {
	// Kind is allow or deny.
	// +kubebuilder:validation:Enum=allow;deny
	Kind string `json:"kind"`
	// Schedule (cron) says when the window opens.
	// +kubebuilder:validation:MinLength=1
	Schedule string `json:"schedule"`
	// Duration the window stays open, e.g. 1h30m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	Duration metav1.Duration `json:"duration"`
	// ManualSync lets the resync annotation through while this window
	// blocks.
	// +optional
	ManualSync bool `json:"manualSync,omitempty"`
}

// DependencyReference names a GitSync; the namespace defaults to the
// dependent's own.
type DependencyReference struct {
	Name string `json:"name"`
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// Drift modes.
const (
	// DriftCorrect re-applies drifted objects as soon as drift is seen.
	DriftCorrect = "correct"
	// DriftDetect only reports drift; the next sync of a new revision (or a
	// resync) applies Git again.
	DriftDetect = "detect"
)

// DriftSpec configures drift detection.
type DriftSpec struct {
	// Mode is correct (the default) or detect.
	// +kubebuilder:validation:Enum=correct;detect
	// +optional
	Mode string `json:"mode,omitempty"`

	// Ignore lists fields (or whole objects) that are not drift, such as
	// /spec/replicas of a Deployment scaled by an HPA.
	// +optional
	Ignore []DriftIgnoreRule `json:"ignore,omitempty"`
}

// DriftIgnoreRule selects objects (empty selector fields match any) and the
// JSON pointers in them to ignore; no paths ignores the whole object.
type DriftIgnoreRule struct {
	// +optional
	Group string `json:"group,omitempty"`
	// +optional
	Kind string `json:"kind,omitempty"`
	// +optional
	Name string `json:"name,omitempty"`
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Paths are JSON pointers such as /spec/replicas; a * segment matches
	// any key or index.
	// +optional
	Paths []string `json:"paths,omitempty"`
}

// GitSource names a repository, the ref to follow in it and its credentials.
type GitSource struct {
	// URL of the repository: https://, http:// or ssh://.
	// +kubebuilder:validation:Pattern="^(https?|ssh)://.*$"
	URL string `json:"url"`

	// Ref selects what to deploy. Defaults to the branch main.
	// +optional
	Ref GitRef `json:"ref,omitempty"`

	// SecretRef names a Secret in the GitSync's namespace with the
	// credentials: username and password, bearerToken, identity and
	// known_hosts for SSH, ca.crt for a custom CA.
	// +optional
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`
}

// GitRef selects a revision: exactly one of its fields is set.
type GitRef struct {
	// Branch to follow.
	// +optional
	Branch string `json:"branch,omitempty"`
	// Tag to deploy.
	// +optional
	Tag string `json:"tag,omitempty"`
	// Semver range over the repository's tags; the newest match is deployed.
	// +optional
	Semver string `json:"semver,omitempty"`
	// Commit is an exact 40-hex commit SHA.
	// +kubebuilder:validation:Pattern="^[0-9a-f]{40}$"
	// +optional
	Commit string `json:"commit,omitempty"`
}

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// Name of the object, in the GitSync's own namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern="^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
	Name string `json:"name"`
}

// GitSyncStatus is what Tether observed and did.
type GitSyncStatus struct {
	// ObservedGeneration is the generation of the spec last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Reconciling, Stalled.
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// LastAppliedRevision is the revision last applied successfully, as
	// <ref>@sha1:<40 hex>.
	// +optional
	LastAppliedRevision string `json:"lastAppliedRevision,omitempty"`

	// LastAttemptedRevision is the revision of the last sync attempt.
	// +optional
	LastAttemptedRevision string `json:"lastAttemptedRevision,omitempty"`

	// LastHandledResyncAt echoes the last tether.dev/resync-at value acted on.
	// +optional
	LastHandledResyncAt string `json:"lastHandledResyncAt,omitempty"`

	// LastAppliedHash is the content hash of the last applied render.
	// +optional
	LastAppliedHash string `json:"lastAppliedHash,omitempty"`

	// LastSyncTime is when the last full sync (render and apply) finished.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`

	// ShortRevision is the first 7 characters of the applied commit, for
	// kubectl's REVISION column.
	// +optional
	ShortRevision string `json:"shortRevision,omitempty"`

	// Inventory lists the objects applied from the last applied revision.
	// +optional
	Inventory *ResourceInventory `json:"inventory,omitempty"`

	// Namespaces counts applied objects per namespace ("" for cluster scope).
	// +optional
	Namespaces []NamespaceCount `json:"namespaces,omitempty"`

	// Drift summarises the last drift seen.
	// +optional
	Drift *DriftStatus `json:"drift,omitempty"`

	// PendingRevision is a newer revision seen in Git that a schedule, a
	// sync window or a dependency keeps from being applied yet.
	// +optional
	PendingRevision string `json:"pendingRevision,omitempty"`

	// NextSyncTime is when the schedule or the windows next let it apply.
	// +optional
	NextSyncTime *metav1.Time `json:"nextSyncTime,omitempty"`

	// LastScheduledTime is the schedule time of the last scheduled sync.
	// +optional
	LastScheduledTime *metav1.Time `json:"lastScheduledTime,omitempty"`
}

// MaxDriftedObjects is how many drifted objects the status lists.
const MaxDriftedObjects = 10

// DriftStatus summarises drift: how many objects differ from Git now and,
// for the first few seen last, what differs and who changed it.
type DriftStatus struct {
	// Count is the number of objects that differ from Git now.
	Count int `json:"count"`
	// Objects are the first MaxDriftedObjects objects of the last detection.
	// +optional
	Objects []DriftedObject `json:"objects,omitempty"`
	// LastDetectedTime is when drift was last seen.
	// +optional
	LastDetectedTime *metav1.Time `json:"lastDetectedTime,omitempty"`
	// LastCorrectedTime is when drift was last corrected.
	// +optional
	LastCorrectedTime *metav1.Time `json:"lastCorrectedTime,omitempty"`
}

// DriftedObject is one object that differed from Git. Values are never
// shown, only paths, so Secret data cannot leak.
type DriftedObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// +optional
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Paths are the JSON pointers that differ.
	// +optional
	Paths []string `json:"paths,omitempty"`
	// Managers are the field managers that own those paths now.
	// +optional
	Managers []string `json:"managers,omitempty"`
	// Deleted says the object was deleted.
	// +optional
	Deleted bool `json:"deleted,omitempty"`
	// Corrected says Tether re-applied it.
	// +optional
	Corrected bool `json:"corrected,omitempty"`
	// DetectedTime is when the change was seen.
	DetectedTime metav1.Time `json:"detectedTime"`
}

// ResourceInventory is the set of objects a GitSync applied.
type ResourceInventory struct {
	// Entries, one per object.
	Entries []ResourceRef `json:"entries"`
}

// ResourceRef identifies one applied object.
type ResourceRef struct {
	// ID is <namespace>_<name>_<group>_<kind>.
	ID string `json:"id"`
	// Version is the API version the object was applied with.
	Version string `json:"v"`
}

// NamespaceCount is the number of objects applied into one namespace.
type NamespaceCount struct {
	// Namespace, empty for cluster-scoped objects.
	Namespace string `json:"namespace"`
	// Objects applied there.
	Objects int `json:"objects"`
}

// GitSync deploys a folder of a Git repository into the cluster and keeps it
// there.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=gs
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.status.shortRevision`
// +kubebuilder:printcolumn:name="Drift",type=integer,JSONPath=`.status.drift.count`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type GitSync struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   GitSyncSpec   `json:"spec,omitempty"`
	Status GitSyncStatus `json:"status,omitempty"`
}

// GitSyncList is a list of GitSyncs.
//
// +kubebuilder:object:root=true
type GitSyncList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GitSync `json:"items"`
}

func init() {
	SchemeBuilder.Register(&GitSync{}, &GitSyncList{})
}
