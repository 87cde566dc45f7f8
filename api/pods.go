package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"strconv"
)

// TemplateHash returns 10 lowercase hex characters identifying t: the start of
// the SHA-256 of t's JSON encoding (fields in declaration order, map keys
// sorted), so equal templates hash alike in every process and every version
// that keeps the types. Hash a defaulted template (SetDefaults), so that a
// manifest spelling out a default and one leaving it out hash alike.
func TemplateHash(t *PodTemplateSpec) string {
	b, err := json.Marshal(t)
	if err != nil {
		panic("api.TemplateHash: " + err.Error()) // cannot happen for PodTemplateSpec
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:5])
}

// PodName returns the name of a deployment's pod: "<deployment>-<hash>-<ordinal>".
func PodName(deployment, hash string, ordinal int) string {
	return deployment + "-" + hash + "-" + strconv.Itoa(ordinal)
}

// PodsForDeployment returns the pods d wants: spec.replicas of them (1 if
// unset), named PodName(d's name, TemplateHash(template), 0..replicas-1), in
// d's namespace, labelled with the template's labels plus LabelTemplateHash
// and LabelDeployment, annotated with the template's annotations, and with a
// copy of the template's spec, one copy for all of them: a caller that
// changes what a pod's spec holds (a slice's element, a map) clones that
// pod's spec first. Their status is empty. d should be defaulted.
func PodsForDeployment(d *Deployment) []Pod {
	n := 1
	if d.Spec.Replicas != nil {
		n = max(int(*d.Spec.Replicas), 0)
	}
	hash := TemplateHash(&d.Spec.Template)
	ns := d.Metadata.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	spec := Clone(d.Spec.Template.Spec)
	pods := make([]Pod, n)
	for i := range pods {
		p := &pods[i]
		p.SetTypeMeta()
		p.Metadata.Name = PodName(d.Metadata.Name, hash, i)
		p.Metadata.Namespace = ns
		p.Metadata.Labels = maps.Clone(d.Spec.Template.Metadata.Labels)
		if p.Metadata.Labels == nil {
			p.Metadata.Labels = map[string]string{}
		}
		p.Metadata.Labels[LabelTemplateHash] = hash
		p.Metadata.Labels[LabelDeployment] = d.Metadata.Name
		p.Metadata.Annotations = maps.Clone(d.Spec.Template.Metadata.Annotations)
		// Shared: a peer runs few of a deployment's replicas, and copying
		// every replica's spec at every reconcile pass was a tenth of all
		// CPU at 40 peers and 200 pods (tests/scale).
		p.Spec = spec
	}
	return pods
}

// PodRequests returns the CPU (millicores) and memory (bytes) a pod
// requests, as Kubernetes' scheduler counts them: the larger of what its
// app containers and sidecars request together, and what each init
// container requests while it runs (itself plus the sidecars started
// before it). Quantities that do not parse count as 0.
func PodRequests(s *PodSpec) (cpuMilli, memBytes int64) {
	req := func(c *Container) (int64, int64) {
		var cpu, mem int64
		if q, ok := c.Resources.Requests[ResourceCPU]; ok {
			cpu, _ = ParseCPU(q)
		}
		if q, ok := c.Resources.Requests[ResourceMemory]; ok {
			mem, _ = ParseMemory(q)
		}
		return cpu, mem
	}
	var sideCPU, sideMem, initCPU, initMem int64
	for i := range s.InitContainers {
		c := &s.InitContainers[i]
		cpu, mem := req(c)
		if c.IsSidecar() {
			sideCPU, sideMem = sideCPU+cpu, sideMem+mem
			cpu, mem = 0, 0
		}
		initCPU, initMem = max(initCPU, sideCPU+cpu), max(initMem, sideMem+mem)
	}
	cpuMilli, memBytes = sideCPU, sideMem
	for i := range s.Containers {
		cpu, mem := req(&s.Containers[i])
		cpuMilli, memBytes = cpuMilli+cpu, memBytes+mem
	}
	return max(cpuMilli, initCPU), max(memBytes, initMem)
}
