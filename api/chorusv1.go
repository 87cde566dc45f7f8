package api

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The chorus.sh/v1 API group: what chorus has and Kubernetes has no kind
// for (images, peers with their replication figures, resource usage
// history). Every peer serves it next to the Kubernetes groups, and the
// same types below are what the server encodes and every client (the CLI,
// another peer) decodes.
const (
	GroupChorus      = "chorus.sh"
	APIVersionChorus = "chorus.sh/v1"

	KindImage     = "Image"
	KindPeer      = "Peer"
	KindPeerUsage = "PeerUsage"

	KindSecretRotation = "SecretRotation"
	// SecretRotationName names the one SecretRotation object.
	SecretRotationName = "cluster-secret"

	// PathChorusV1 is the group-version's path on every peer.
	PathChorusV1 = "/apis/chorus.sh/v1"
)

// Image is an image of the cluster at its current content (the newest
// load of its name that an alive peer holds). Its name is its reference
// with each "/" written "~" (ImageObjectName), so that it can be a path
// segment: docker.io~example~web:1.
type Image struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Reference is the normalized image reference: docker.io/example/web:1.
	Reference string `json:"reference"`
	// Digest is the manifest digest of the current content.
	Digest string `json:"digest"`
	// Size is the size of the archive's blobs; Unpacked what the
	// snapshots take on disk (0: not measured).
	Size     int64 `json:"size"`
	Unpacked int64 `json:"unpacked,omitempty"`
	// Peers counts the alive peers holding the current content.
	Peers int32 `json:"peers,omitempty"`
	// RemovedFrom names the peer a copy was removed from, in the answers
	// of a removal or a prune.
	RemovedFrom string `json:"removedFrom,omitempty"`
}

// ImageList is a list of Images.
type ImageList = ObjectList[Image]

// ObjectList is a list of objects of the group, in Kubernetes' shape
// (kind ImageList, PeerList, ...).
type ObjectList[T any] struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []T `json:"items"`
}

// ImageObjectName is the object name of an image reference: the reference
// with each "/" written "~" (no reference holds a "~").
func ImageObjectName(ref string) string { return strings.ReplaceAll(ref, "/", "~") }

// ImageReference is the reference an image object name stands for; it
// accepts the reference itself too.
func ImageReference(name string) string { return strings.ReplaceAll(name, "~", "/") }

// NewImage returns an Image object of the reference ref.
func NewImage(ref, digest string, size, unpacked int64, peers int32) Image {
	return Image{TypeMeta: metav1.TypeMeta{APIVersion: APIVersionChorus, Kind: KindImage},
		ObjectMeta: metav1.ObjectMeta{Name: ImageObjectName(ref)},
		Reference:  ref, Digest: digest, Size: size, Unpacked: unpacked, Peers: peers}
}

// Peer is a member of the cluster as every peer sees it, with the
// replication and gossip figures the peer itself reports (Replication is
// nil when it did not answer in time, or is not alive).
type Peer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              PeerSpec   `json:"spec"`
	Status            PeerStatus `json:"status"`
}

// PeerSpec is what may be set about a peer.
type PeerSpec struct {
	// Unschedulable peers take no new replicas (kubectl cordon).
	Unschedulable bool `json:"unschedulable,omitempty"`
}

// Phases of a peer: its membership status.
const (
	PeerAlive   = "Alive"
	PeerSuspect = "Suspect"
	PeerDead    = "Dead"
	PeerLeft    = "Left"
)

// PeerStatus is a peer's membership and its own figures.
type PeerStatus struct {
	// Phase is Alive, Suspect, Dead or Left.
	Phase string `json:"phase"`
	// Serving marks the peer that answered the request.
	Serving   bool                 `json:"serving,omitempty"`
	Version   string               `json:"version,omitempty"`
	Addresses []corev1.NodeAddress `json:"addresses,omitempty"`
	// API is the address of the peer's API (host:port).
	API string `json:"api,omitempty"`
	// Pods counts the pods the peer runs.
	Pods        int32            `json:"pods"`
	Replication *PeerReplication `json:"replication,omitempty"`
}

// PeerReplication is what a peer counts of the replicated state and of
// the gossip since it started.
type PeerReplication struct {
	// Objects counts the deployments, services and namespaces held.
	Objects           int32 `json:"objects"`
	DeltasMerged      int64 `json:"deltasMerged"`
	DeltasRejected    int64 `json:"deltasRejected"`
	MalformedMessages int64 `json:"malformedMessages"`
	AntiEntropyRounds int64 `json:"antiEntropyRounds"`
	BytesOut          int64 `json:"bytesOut"`
	BytesIn           int64 `json:"bytesIn"`
	// Gossip counts what the membership and data planes refused.
	GossipRejected  uint64 `json:"gossipRejected"`
	PubsubRejected  uint64 `json:"pubsubRejected"`
	StreamsRejected uint64 `json:"streamsRejected"`
	DeltasDropped   uint64 `json:"deltasDropped"`
	EventsDropped   uint64 `json:"eventsDropped"`
	// InvalidObjects are the replicated objects no write accepts, left
	// out of everything until replaced or deleted.
	InvalidObjects []InvalidObject `json:"invalidObjects,omitempty"`
	// StateFileSetAside says what the peer did with a state file it could
	// not read at start ("" when it read it).
	StateFileSetAside string `json:"stateFileSetAside,omitempty"`
	// PendingReplicas counts replicas no peer can take.
	PendingReplicas int32 `json:"pendingReplicas"`
}

// InvalidObject is a replicated object a peer leaves out.
type InvalidObject struct {
	Key     string `json:"key"`
	Version string `json:"version"`
	Writer  string `json:"writer"`
	Reason  string `json:"reason"`
}

// PeerList is a list of Peers.
type PeerList = ObjectList[Peer]

// PeerUsage is the resource usage one peer measured: its machine's and its
// pods' latest figures and, when asked (history=true), its points of the
// last minutes.
type PeerUsage struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Node              *NodeMetrics  `json:"node,omitempty"` // none before the second sample
	Pods              []PodMetrics  `json:"pods"`
	History           *UsageHistory `json:"history,omitempty"`
}

// PeerUsageList is a list of PeerUsages.
type PeerUsageList = ObjectList[PeerUsage]

// UsageHistory is a peer's usage over the last minutes, for graphs: the
// node's and each pod's (the sum of its containers), oldest first.
type UsageHistory struct {
	Node []UsagePoint            `json:"node"`
	Pods map[string][]UsagePoint `json:"pods"` // by "namespace/name"
}

// UsagePoint is one point of a graph.
type UsagePoint struct {
	T   int64 `json:"t"`   // Unix seconds
	CPU int64 `json:"cpu"` // millicores
	Mem int64 `json:"mem"` // bytes
}

// HumanSize renders a byte count with decimal units and 4 significant
// digits, as docker does: 12.35kB, 5.1MB, 266MB.
func HumanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	size := float64(n)
	i := 0
	for size >= 1000 && i < len(units)-1 {
		size /= 1000
		i++
	}
	return fmt.Sprintf("%.4g%s", size, units[i])
}

// ShortDigest shortens "sha256:<64 hex>" to "sha256:<12 hex>".
func ShortDigest(d string) string {
	algo, hex, ok := strings.Cut(d, ":")
	if !ok {
		algo, hex = "", d
	}
	if len(hex) > 12 {
		hex = hex[:12]
	}
	if algo == "" {
		return hex
	}
	return algo + ":" + hex
}

// SecretRotation is the last rotation of the cluster secret (chorus
// cluster rotate-secret): one object, named cluster-secret, created to
// start a rotation (POST .../secretrotations) and read for its progress.
type SecretRotation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Status            SecretRotationStatus `json:"status"`
}

// SecretRotationStatus says how far a rotation is.
type SecretRotationStatus struct {
	// ID and From are the cluster ids of the new and the old secret.
	ID   string `json:"id"`
	From string `json:"from"`
	// Started is when it was asked for, By through which peer.
	Started time.Time `json:"started"`
	By      string    `json:"by,omitempty"`
	// Phase is the phase every alive peer reached (pending, installed,
	// using, retired); Done of Total alive peers are past it.
	Phase    string `json:"phase"`
	Done     int    `json:"done"`
	Total    int    `json:"total"`
	Complete bool   `json:"complete"`
	// Resealed: the stored Secrets are sealed under the new key.
	Resealed bool `json:"resealed"`
	// Peers holds each peer's phase.
	Peers   map[string]string `json:"peers"`
	Elapsed string            `json:"elapsed"`
}

// NewSecretRotation returns the SecretRotation object with status st.
func NewSecretRotation(st SecretRotationStatus) SecretRotation {
	return SecretRotation{TypeMeta: metav1.TypeMeta{APIVersion: APIVersionChorus, Kind: KindSecretRotation},
		ObjectMeta: metav1.ObjectMeta{Name: SecretRotationName}, Status: st}
}
