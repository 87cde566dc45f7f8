package state

import (
	"crypto/rand"
	"encoding/hex"
	"strings"

	"github.com/chorus-sh/chorus/api"
)

// Keys of the replicated state are "<kind>/<namespace>/<name>", the
// namespace empty for cluster-scoped kinds and for this package's own
// bookkeeping kept per peer.

// Key is the key of the object kind/ns/name (ns ignored for a
// cluster-scoped kind).
func Key(kind, ns, name string) string {
	if !api.Namespaced(kind) {
		ns = ""
	}
	return kind + "/" + ns + "/" + name
}

// SplitKey is the inverse of Key.
func SplitKey(key string) (kind, ns, name string) {
	kind, rest, _ := strings.Cut(key, "/")
	ns, name, _ = strings.Cut(rest, "/")
	return kind, ns, name
}

// GroupResource names a kind as Kubernetes' messages do: "deployments.apps".
func GroupResource(kind string) string {
	switch kind {
	case api.KindDeployment, api.KindDaemonSet:
		return strings.ToLower(kind) + "s.apps"
	case api.KindIngress, api.KindIngressClass:
		return strings.ToLower(kind) + "es.networking.k8s.io"
	case api.KindHorizontalPodAutoscaler:
		return "horizontalpodautoscalers.autoscaling"
	case api.KindJob, api.KindCronJob:
		return strings.ToLower(kind) + "s.batch"
	case api.KindStatefulSet:
		return "statefulsets.apps"
	}
	return strings.ToLower(kind) + "s"
}

// The controllers' progress, kept in the replicated state next to the
// object it is of (and deleted with it, see cascade): a Job's ended pods,
// a CronJob's last runs, an autoscaler's last scalings.
const (
	KindJobProgress  = "JobProgress"
	KindCronProgress = "CronJobProgress"
	KindHPAProgress  = "HPAProgress"
)

// JobProgressKey is the key of the progress of the Job ns/name.
func JobProgressKey(ns, name string) string { return KindJobProgress + "/" + ns + "/" + name }

// CronProgressKey is the key of the progress of the CronJob ns/name.
func CronProgressKey(ns, name string) string { return KindCronProgress + "/" + ns + "/" + name }

// HPAProgressKey is the key of the progress of the autoscaler ns/name.
func HPAProgressKey(ns, name string) string { return KindHPAProgress + "/" + ns + "/" + name }

// OwnedBy reports whether m names the object of kind and uid as its
// controller.
func OwnedBy(m *api.ObjectMeta, kind, uid string) bool {
	for _, r := range m.OwnerReferences {
		if r.Kind == kind && r.UID == uid && uid != "" {
			return true
		}
	}
	return false
}

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
