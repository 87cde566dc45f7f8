package agent

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/runtime"
	"github.com/chorus-sh/chorus/state"
)

// PersistentVolumeClaims are provisioned as k3s' local-path does, with
// volumeBindingMode WaitForFirstConsumer: a claim stays Pending until a
// pod that uses it is bound to a peer; the claim is then bound to that
// peer (annotation volume.kubernetes.io/selected-node), its data is a
// directory of that peer (runtime.ClaimDir), and every later pod that uses
// it is bound to that peer only. Deleting the claim deletes the directory
// (reclaim policy Delete), once no pod of the peer uses it.

// claimNames returns the claims p's volumes use.
func claimNames(p *api.Pod) []string {
	var out []string
	for _, v := range p.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			out = append(out, v.PersistentVolumeClaim.ClaimName)
		}
	}
	return out
}

// claimNode returns the peer the claims of p are bound to ("" when none
// is), looking first among fresh (claims about to be stored with p); it
// fails when they are bound to different peers.
func (a *Agent) claimNode(p *api.Pod, fresh map[string]*api.PersistentVolumeClaim) (string, error) {
	node := ""
	for _, name := range claimNames(p) {
		c, ok := fresh[name]
		if !ok {
			o, found := a.store.Get(state.Key(api.KindPersistentVolumeClaim, p.Metadata.Namespace, name))
			if !found {
				continue // Pending until the claim exists
			}
			c = o.(*api.PersistentVolumeClaim)
		}
		n := c.Metadata.Annotations[api.AnnotationSelectedNode]
		switch {
		case n == "":
		case node == "":
			node = n
		case n != node:
			return "", fmt.Errorf("its claims are bound to different peers (%s and %s)", node, n)
		}
	}
	return node, nil
}

// bindClaims binds the unbound claims of p to node: those in fresh in
// place (they are stored with p), the stored ones by a write.
func (a *Agent) bindClaims(p *api.Pod, node string, fresh map[string]*api.PersistentVolumeClaim) {
	for _, name := range claimNames(p) {
		if c, ok := fresh[name]; ok {
			if c.Metadata.Annotations[api.AnnotationSelectedNode] == "" {
				if c.Metadata.Annotations == nil {
					c.Metadata.Annotations = map[string]string{}
				}
				c.Metadata.Annotations[api.AnnotationSelectedNode] = node
			}
			continue
		}
		key := state.Key(api.KindPersistentVolumeClaim, p.Metadata.Namespace, name)
		if err := a.store.BindClaim(key, node); err != nil {
			a.log.Warn("bind claim", "claim", key, "node", node, "err", err)
		}
	}
}

// claimStatus fills in the status of a claim as the API shows it.
func claimStatus(c *api.PersistentVolumeClaim) {
	c.Status = api.PersistentVolumeClaimStatus{Phase: "Pending"}
	if c.Metadata.Annotations[api.AnnotationSelectedNode] == "" {
		return
	}
	c.Spec.VolumeName = "pvc-" + c.Metadata.UID
	c.Status = api.PersistentVolumeClaimStatus{Phase: "Bound", AccessModes: c.Spec.AccessModes,
		Capacity: map[string]string{"storage": c.Spec.Resources.Requests["storage"]}}
}

// persistentVolumes returns the volumes of the bound claims, as the
// v1 PersistentVolumes a local-path provisioner creates.
func (a *Agent) persistentVolumes() []map[string]any {
	var out []map[string]any
	for _, o := range a.store.List(api.KindPersistentVolumeClaim, "") {
		c := o.(*api.PersistentVolumeClaim)
		node := c.Metadata.Annotations[api.AnnotationSelectedNode]
		if node == "" {
			continue
		}
		claimStatus(c)
		meta := map[string]any{"name": c.Spec.VolumeName, "uid": uidFrom(c.Metadata.UID, "pv"),
			"annotations": map[string]string{"pv.kubernetes.io/provisioned-by": "chorus.io/local-path", "local.path.provisioner/selected-node": node}}
		if c.Metadata.CreationTimestamp != nil {
			meta["creationTimestamp"] = c.Metadata.CreationTimestamp.UTC().Format(time.RFC3339)
		}
		out = append(out, map[string]any{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta,
			"spec": map[string]any{
				"capacity":                      c.Status.Capacity,
				"accessModes":                   c.Spec.AccessModes,
				"persistentVolumeReclaimPolicy": "Delete",
				"storageClassName":              api.StorageClassLocalPath,
				"volumeMode":                    "Filesystem",
				"claimRef": map[string]any{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": c.Metadata.Namespace,
					"name": c.Metadata.Name, "uid": c.Metadata.UID},
				"hostPath": map[string]any{"path": claimPath(c), "type": "DirectoryOrCreate"},
				"nodeAffinity": map[string]any{"required": map[string]any{"nodeSelectorTerms": []any{map[string]any{
					"matchExpressions": []any{map[string]any{"key": "kubernetes.io/hostname", "operator": "In", "values": []string{node}}}}}}},
			},
			"status": map[string]any{"phase": "Bound"}})
	}
	return out
}

// claimPath is where a claim's data lives on its peer, relative to the
// peer's data directory (runtime.ClaimDir).
func claimPath(c *api.PersistentVolumeClaim) string {
	return "pods/claims/" + c.Metadata.Namespace + "_" + c.Metadata.Name + "_" + c.Metadata.UID
}

// storageClasses returns the one storage class chorus provides.
func storageClasses() []map[string]any {
	return []map[string]any{{"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
		"metadata": map[string]any{"name": api.StorageClassLocalPath, "uid": uidFrom(api.StorageClassLocalPath, "sc"),
			"annotations": map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}},
		"provisioner": "chorus.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer",
		"allowVolumeExpansion": false}}
}

// claimPruneInterval is how often a peer deletes the data of its claims
// that were deleted.
const claimPruneInterval = 30 * time.Second

// pruneClaims deletes the directories of this peer's deleted claims.
func (a *Agent) pruneClaims() {
	if a.pods == nil {
		return
	}
	keep := map[string]bool{}
	for _, o := range a.store.List(api.KindPersistentVolumeClaim, "") {
		c := o.(*api.PersistentVolumeClaim)
		if c.Metadata.Annotations[api.AnnotationSelectedNode] == a.cfg.Name {
			keep[runtime.ClaimDir(filepath.Join(a.cfg.DataDir, "pods"), c)] = true
		}
	}
	removed, err := a.pods.PruneClaims(func(dir string) bool { return keep[dir] })
	if err != nil {
		a.log.Warn("delete the data of deleted claims", "err", err)
	}
	for _, dir := range removed {
		a.log.Info("deleted the data of a deleted claim", "dir", dir)
	}
}

// claimNodes maps every bound claim ("namespace/name") to its peer.
func (a *Agent) claimNodes() map[string]string {
	out := map[string]string{}
	for _, o := range a.store.List(api.KindPersistentVolumeClaim, "") {
		if n := o.Meta().Annotations[api.AnnotationSelectedNode]; n != "" {
			out[o.Meta().Namespace+"/"+o.Meta().Name] = n
		}
	}
	return out
}
