package apiserver

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/chorus-sh/chorus/api"
)

// tableOptions are the Table parameters of a request.
type tableOptions struct {
	includeObject string // None, Metadata (default) or Object
}

// tableRequested reports whether the client asked for a Table (kubectl get
// does: Accept: application/json;as=Table;v=v1;g=meta.k8s.io).
func tableRequested(r *http.Request) (tableOptions, bool) {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		if strings.Contains(part, "as=Table") {
			o := tableOptions{includeObject: r.URL.Query().Get("includeObject")}
			if o.includeObject == "" {
				o.includeObject = "Metadata"
			}
			return o, true
		}
	}
	return tableOptions{}, false
}

type column struct {
	name     string
	typ      string // string, integer, date
	priority int32  // 1: shown only with -o wide
	desc     string
	cell     func(obj map[string]any, now time.Time) any
}

func (s *Server) table(res *Resource, objs []map[string]any, o tableOptions, rv string, headers bool) map[string]any {
	cols := columnsOf(res.Kind)
	now := s.opts.Now()
	var defs []metav1.TableColumnDefinition
	if headers {
		for _, c := range cols {
			format := ""
			if c.name == "Name" {
				format = "name"
			}
			defs = append(defs, metav1.TableColumnDefinition{Name: c.name, Type: c.typ, Format: format, Description: c.desc, Priority: c.priority})
		}
	}
	rows := []map[string]any{}
	for _, obj := range objs {
		cells := make([]any, len(cols))
		for i, c := range cols {
			cells[i] = c.cell(obj, now)
		}
		row := map[string]any{"cells": cells}
		switch o.includeObject {
		case "Object":
			row["object"] = obj
		case "Metadata":
			row["object"] = map[string]any{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
		}
		rows = append(rows, row)
	}
	t := map[string]any{"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": map[string]any{"resourceVersion": rv}, "rows": rows}
	if headers {
		t["columnDefinitions"] = defs
	} else {
		t["columnDefinitions"] = []any{}
	}
	return t
}

// path reads a nested value.
func path(obj map[string]any, p ...string) any {
	var cur any = obj
	for _, k := range p {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

func str(obj map[string]any, p ...string) string {
	s, _ := path(obj, p...).(string)
	return s
}

func num(obj map[string]any, p ...string) int64 {
	f, _ := path(obj, p...).(float64)
	return int64(f)
}

func list(obj map[string]any, p ...string) []any {
	l, _ := path(obj, p...).([]any)
	return l
}

func age(ts string, now time.Time) string {
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

var nameCol = column{name: "Name", typ: "string", desc: "Name must be unique within a namespace.", cell: func(o map[string]any, _ time.Time) any { return str(o, "metadata", "name") }}
var ageCol = column{name: "Age", typ: "string", desc: "CreationTimestamp is the time the object was created.", cell: func(o map[string]any, now time.Time) any {
	return age(str(o, "metadata", "creationTimestamp"), now)
}}

func containersCols(p ...string) []column {
	names := func(o map[string]any, field string) string {
		var out []string
		for _, c := range list(o, append(p, "containers")...) {
			m, _ := c.(map[string]any)
			s, _ := m[field].(string)
			out = append(out, s)
		}
		return strings.Join(out, ",")
	}
	return []column{
		{name: "Containers", typ: "string", priority: 1, cell: func(o map[string]any, _ time.Time) any { return names(o, "name") }},
		{name: "Images", typ: "string", priority: 1, cell: func(o map[string]any, _ time.Time) any { return names(o, "image") }},
	}
}

var selectorCol = column{name: "Selector", typ: "string", priority: 1, cell: func(o map[string]any, _ time.Time) any {
	return labelSelectorString(path(o, "spec", "selector"))
}}

func labelSelectorString(v any) string {
	m, _ := v.(map[string]any)
	ml, _ := m["matchLabels"].(map[string]any)
	var parts []string
	for k, v := range ml {
		parts = append(parts, fmt.Sprintf("%s=%v", k, v))
	}
	sort.Strings(parts)
	for _, e := range list(m, "matchExpressions") {
		em, _ := e.(map[string]any)
		var vals []string
		for _, v := range list(em, "values") {
			vals = append(vals, fmt.Sprint(v))
		}
		parts = append(parts, fmt.Sprintf("%v %s (%s)", em["key"], strings.ToLower(fmt.Sprint(em["operator"])), strings.Join(vals, ",")))
	}
	return orNone(strings.Join(parts, ","))
}

func mapString(v any) string {
	m, _ := v.(map[string]any)
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%v", k, v))
	}
	sort.Strings(parts)
	return orNone(strings.Join(parts, ","))
}

func intCol(name string, p ...string) column {
	return column{name: name, typ: "integer", cell: func(o map[string]any, _ time.Time) any { return num(o, p...) }}
}

// columnsOf returns the columns kubectl shows for a kind on a real cluster.
func columnsOf(kind string) []column {
	switch kind {
	case "Pod":
		return []column{nameCol,
			{name: "Ready", typ: "string", desc: "The aggregate readiness state of this pod for accepting traffic.", cell: podReady},
			{name: "Status", typ: "string", desc: "The aggregate status of the containers in this pod.", cell: podStatus},
			{name: "Restarts", typ: "string", desc: "The number of times the containers in this pod have been restarted.", cell: podRestarts},
			ageCol,
			{name: "IP", typ: "string", priority: 1, cell: func(o map[string]any, _ time.Time) any { return orNone(str(o, "status", "podIP")) }},
			{name: "Node", typ: "string", priority: 1, cell: func(o map[string]any, _ time.Time) any { return orNone(str(o, "spec", "nodeName")) }},
			{name: "Nominated Node", typ: "string", priority: 1, cell: func(o map[string]any, _ time.Time) any { return "<none>" }},
			{name: "Readiness Gates", typ: "string", priority: 1, cell: func(o map[string]any, _ time.Time) any { return "<none>" }},
		}
	case "Deployment":
		return append([]column{nameCol,
			{name: "Ready", typ: "string", cell: func(o map[string]any, _ time.Time) any {
				return fmt.Sprintf("%d/%d", num(o, "status", "readyReplicas"), num(o, "spec", "replicas"))
			}},
			intCol("Up-to-date", "status", "updatedReplicas"),
			intCol("Available", "status", "availableReplicas"),
			ageCol}, append(containersCols("spec", "template", "spec"), selectorCol)...)
	case "SecretRotation":
		return []column{nameCol,
			{name: "From", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "status", "from") }},
			{name: "To", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "status", "id") }},
			{name: "Phase", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "status", "phase") }},
			{name: "Peers Done", typ: "string", cell: func(o map[string]any, _ time.Time) any {
				return fmt.Sprintf("%d/%d", num(o, "status", "done"), num(o, "status", "total"))
			}},
			{name: "Complete", typ: "boolean", cell: func(o map[string]any, _ time.Time) any { return path(o, "status", "complete") == true }},
			{name: "Elapsed", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "status", "elapsed") }}}
	case "ControllerRevision":
		return []column{nameCol,
			{name: "Controller", typ: "string", cell: func(o map[string]any, _ time.Time) any {
				refs, _ := path(o, "metadata", "ownerReferences").([]any)
				for _, r := range refs {
					if m, ok := r.(map[string]any); ok && m["controller"] == true {
						return strings.ToLower(fmt.Sprint(m["kind"])) + ".apps/" + fmt.Sprint(m["name"])
					}
				}
				return "<none>"
			}},
			intCol("Revision", "revision"), ageCol}
	case "ReplicaSet":
		return append([]column{nameCol, intCol("Desired", "spec", "replicas"), intCol("Current", "status", "replicas"),
			intCol("Ready", "status", "readyReplicas"), ageCol}, append(containersCols("spec", "template", "spec"), selectorCol)...)
	case "DaemonSet":
		return append([]column{nameCol, intCol("Desired", "status", "desiredNumberScheduled"), intCol("Current", "status", "currentNumberScheduled"),
			intCol("Ready", "status", "numberReady"), intCol("Up-to-date", "status", "updatedNumberScheduled"),
			intCol("Available", "status", "numberAvailable"),
			{name: "Node Selector", typ: "string", cell: func(o map[string]any, _ time.Time) any {
				return mapString(path(o, "spec", "template", "spec", "nodeSelector"))
			}},
			ageCol}, append(containersCols("spec", "template", "spec"), selectorCol)...)
	case "Service":
		return []column{nameCol,
			{name: "Type", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "spec", "type") }},
			{name: "Cluster-IP", typ: "string", cell: func(o map[string]any, _ time.Time) any { return orNone(str(o, "spec", "clusterIP")) }},
			{name: "External-IP", typ: "string", cell: serviceExternalIP},
			{name: "Port(s)", typ: "string", cell: servicePorts},
			ageCol,
			{name: "Selector", typ: "string", priority: 1, cell: func(o map[string]any, _ time.Time) any { return mapString(path(o, "spec", "selector")) }},
		}
	case "Node":
		info := func(k string) func(map[string]any, time.Time) any {
			return func(o map[string]any, _ time.Time) any { return str(o, "status", "nodeInfo", k) }
		}
		return []column{nameCol,
			{name: "Status", typ: "string", cell: nodeStatus},
			{name: "Roles", typ: "string", cell: func(o map[string]any, _ time.Time) any { return "<none>" }},
			ageCol,
			{name: "Version", typ: "string", cell: info("kubeletVersion")},
			{name: "Internal-IP", typ: "string", priority: 1, cell: func(o map[string]any, _ time.Time) any { return nodeAddress(o, "InternalIP") }},
			{name: "External-IP", typ: "string", priority: 1, cell: func(o map[string]any, _ time.Time) any { return nodeAddress(o, "ExternalIP") }},
			{name: "OS-Image", typ: "string", priority: 1, cell: info("osImage")},
			{name: "Kernel-Version", typ: "string", priority: 1, cell: info("kernelVersion")},
			{name: "Container-Runtime", typ: "string", priority: 1, cell: info("containerRuntimeVersion")},
		}
	case "Namespace":
		return []column{nameCol, {name: "Status", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "status", "phase") }}, ageCol}
	case "Event":
		return []column{
			{name: "Last Seen", typ: "string", cell: func(o map[string]any, now time.Time) any { return age(str(o, "lastTimestamp"), now) }},
			{name: "Type", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "type") }},
			{name: "Reason", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "reason") }},
			{name: "Object", typ: "string", cell: func(o map[string]any, _ time.Time) any {
				return strings.ToLower(str(o, "involvedObject", "kind")) + "/" + str(o, "involvedObject", "name")
			}},
			{name: "Message", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "message") }},
		}
	case "Endpoints":
		return []column{nameCol, {name: "Endpoints", typ: "string", cell: endpoints}, ageCol}
	case "Ingress":
		return []column{nameCol,
			{name: "Class", typ: "string", desc: "The name of the IngressClass.", cell: func(o map[string]any, _ time.Time) any {
				return orNone(str(o, "spec", "ingressClassName"))
			}},
			{name: "Hosts", typ: "string", desc: "The hosts of the rules.", cell: ingressHosts},
			{name: "Address", typ: "string", desc: "The addresses serving the Ingress.", cell: func(o map[string]any, _ time.Time) any {
				return lbAddresses(o)
			}},
			{name: "Ports", typ: "string", desc: "The ports served.", cell: func(o map[string]any, _ time.Time) any {
				if len(list(o, "spec", "tls")) > 0 {
					return "80, 443"
				}
				return "80"
			}},
			ageCol}
	case "IngressClass":
		return []column{nameCol,
			{name: "Controller", typ: "string", desc: "The controller that serves the class.", cell: func(o map[string]any, _ time.Time) any {
				return str(o, "spec", "controller")
			}},
			{name: "Parameters", typ: "string", desc: "The class's parameters.", cell: func(o map[string]any, _ time.Time) any { return "<none>" }},
			ageCol}
	case "NodeMetrics":
		return []column{nameCol,
			{name: "CPU", typ: "string", desc: "CPU usage over the window.", cell: func(o map[string]any, _ time.Time) any { return str(o, "usage", "cpu") }},
			{name: "Memory", typ: "string", desc: "Memory working set.", cell: func(o map[string]any, _ time.Time) any { return str(o, "usage", "memory") }},
			{name: "Window", typ: "string", desc: "The window the CPU rate is measured over.", cell: func(o map[string]any, _ time.Time) any { return str(o, "window") }}}
	case "PodMetrics":
		return []column{nameCol,
			{name: "Containers", typ: "integer", desc: "Containers measured.", cell: func(o map[string]any, _ time.Time) any { return int64(len(list(o, "containers"))) }},
			{name: "Window", typ: "string", desc: "The window the CPU rate is measured over.", cell: func(o map[string]any, _ time.Time) any { return str(o, "window") }}}
	case api.KindImage:
		size := func(field string) func(map[string]any, time.Time) any {
			return func(o map[string]any, _ time.Time) any {
				if n := num(o, field); n > 0 {
					return api.HumanSize(n)
				}
				return "<unknown>"
			}
		}
		return []column{nameCol,
			{name: "Digest", typ: "string", desc: "The manifest digest of the current content.", cell: func(o map[string]any, _ time.Time) any { return api.ShortDigest(str(o, "digest")) }},
			{name: "Size", typ: "string", desc: "The size of the image's blobs.", cell: size("size")},
			{name: "Unpacked", typ: "string", desc: "What the unpacked image takes on disk.", cell: size("unpacked")},
			{name: "Peers", typ: "integer", desc: "Alive peers holding the current content.", cell: func(o map[string]any, _ time.Time) any { return num(o, "peers") }},
			{name: "Reference", typ: "string", priority: 1, desc: "The image reference.", cell: func(o map[string]any, _ time.Time) any { return str(o, "reference") }},
		}
	case api.KindPeer:
		repl := func(field string) func(map[string]any, time.Time) any {
			return func(o map[string]any, _ time.Time) any {
				if path(o, "status", "replication") == nil {
					return "<unknown>"
				}
				return fmt.Sprint(num(o, "status", "replication", field))
			}
		}
		return []column{nameCol,
			{name: "Status", typ: "string", desc: "Membership status: Alive, Suspect, Dead or Left.", cell: func(o map[string]any, _ time.Time) any {
				st := str(o, "status", "phase")
				if path(o, "spec", "unschedulable") == true {
					st += ",SchedulingDisabled"
				}
				return st
			}},
			{name: "Version", typ: "string", desc: "The peer's chorus version.", cell: func(o map[string]any, _ time.Time) any { return orNone(str(o, "status", "version")) }},
			{name: "Pods", typ: "integer", desc: "Pods the peer runs.", cell: func(o map[string]any, _ time.Time) any { return num(o, "status", "pods") }},
			{name: "Objects", typ: "string", desc: "Deployments, services and namespaces the peer holds.", cell: repl("objects")},
			{name: "Deltas", typ: "string", desc: "Deltas merged since the peer started.", cell: repl("deltasMerged")},
			ageCol,
			{name: "API", typ: "string", priority: 1, desc: "The address of the peer's API.", cell: func(o map[string]any, _ time.Time) any { return orNone(str(o, "status", "api")) }},
			{name: "Rejected", typ: "string", priority: 1, desc: "Deltas refused since the peer started.", cell: repl("deltasRejected")},
			{name: "Anti-Entropy", typ: "string", priority: 1, desc: "Anti-entropy rounds since the peer started.", cell: repl("antiEntropyRounds")},
			{name: "Pending", typ: "string", priority: 1, desc: "Replicas no peer can take.", cell: repl("pendingReplicas")},
			{name: "Serving", typ: "boolean", priority: 1, desc: "Whether this peer answered the request.", cell: func(o map[string]any, _ time.Time) any { return path(o, "status", "serving") == true }},
		}
	case api.KindPeerUsage:
		return []column{nameCol,
			{name: "CPU(cores)", typ: "string", desc: "The machine's CPU usage over the window.", cell: func(o map[string]any, _ time.Time) any {
				if m, err := api.Quantity(str(o, "node", "usage", "cpu")).MilliCPU(); err == nil {
					return fmt.Sprintf("%dm", m)
				}
				return "<unknown>"
			}},
			{name: "Memory(bytes)", typ: "string", desc: "The machine's memory working set.", cell: func(o map[string]any, _ time.Time) any {
				if b, err := api.Quantity(str(o, "node", "usage", "memory")).Bytes(); err == nil {
					return fmt.Sprintf("%dMi", b>>20)
				}
				return "<unknown>"
			}},
			{name: "Pods", typ: "integer", desc: "Pods measured on the peer.", cell: func(o map[string]any, _ time.Time) any { return int64(len(list(o, "pods"))) }},
		}
	case "ConfigMap":
		return []column{nameCol, {name: "Data", typ: "integer", desc: "The number of keys of the ConfigMap.", cell: func(o map[string]any, _ time.Time) any {
			return int64(len(mapOf(o, "data")) + len(mapOf(o, "binaryData")))
		}}, ageCol}
	case "Secret":
		return []column{nameCol,
			{name: "Type", typ: "string", desc: "The type of the Secret.", cell: func(o map[string]any, _ time.Time) any { return str(o, "type") }},
			{name: "Data", typ: "integer", desc: "The number of keys of the Secret.", cell: func(o map[string]any, _ time.Time) any { return int64(len(mapOf(o, "data"))) }},
			ageCol}
	case "ServiceAccount":
		return []column{nameCol, {name: "Secrets", typ: "integer", cell: func(o map[string]any, _ time.Time) any { return int64(len(list(o, "secrets"))) }}, ageCol}
	case "StatefulSet":
		return append([]column{nameCol,
			{name: "Ready", typ: "string", desc: "Number of the pod with ready state", cell: func(o map[string]any, _ time.Time) any {
				return fmt.Sprintf("%d/%d", num(o, "status", "readyReplicas"), num(o, "spec", "replicas"))
			}},
			ageCol}, containersCols("spec", "template", "spec")...)
	case "PersistentVolumeClaim":
		return []column{nameCol,
			{name: "Status", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "status", "phase") }},
			{name: "Volume", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "spec", "volumeName") }},
			{name: "Capacity", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "status", "capacity", "storage") }},
			{name: "Access Modes", typ: "string", cell: func(o map[string]any, _ time.Time) any { return accessModes(list(o, "status", "accessModes")) }},
			{name: "StorageClass", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "spec", "storageClassName") }},
			{name: "VolumeAttributesClass", typ: "string", cell: func(o map[string]any, _ time.Time) any { return "<unset>" }},
			ageCol,
			{name: "VolumeMode", typ: "string", priority: 1, cell: func(o map[string]any, _ time.Time) any { return str(o, "spec", "volumeMode") }},
		}
	case "PersistentVolume":
		return []column{nameCol,
			{name: "Capacity", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "spec", "capacity", "storage") }},
			{name: "Access Modes", typ: "string", cell: func(o map[string]any, _ time.Time) any { return accessModes(list(o, "spec", "accessModes")) }},
			{name: "Reclaim Policy", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "spec", "persistentVolumeReclaimPolicy") }},
			{name: "Status", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "status", "phase") }},
			{name: "Claim", typ: "string", cell: func(o map[string]any, _ time.Time) any {
				return str(o, "spec", "claimRef", "namespace") + "/" + str(o, "spec", "claimRef", "name")
			}},
			{name: "StorageClass", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "spec", "storageClassName") }},
			{name: "VolumeAttributesClass", typ: "string", cell: func(o map[string]any, _ time.Time) any { return "<unset>" }},
			{name: "Reason", typ: "string", cell: func(o map[string]any, _ time.Time) any { return "" }},
			ageCol,
		}
	case "StorageClass":
		return []column{
			{name: "Name", typ: "string", cell: func(o map[string]any, _ time.Time) any {
				if str(o, "metadata", "annotations", "storageclass.kubernetes.io/is-default-class") == "true" {
					return str(o, "metadata", "name") + " (default)"
				}
				return str(o, "metadata", "name")
			}},
			{name: "Provisioner", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "provisioner") }},
			{name: "ReclaimPolicy", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "reclaimPolicy") }},
			{name: "VolumeBindingMode", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "volumeBindingMode") }},
			{name: "AllowVolumeExpansion", typ: "string", cell: func(o map[string]any, _ time.Time) any { return fmt.Sprint(path(o, "allowVolumeExpansion") == true) }},
			ageCol,
		}
	case "HorizontalPodAutoscaler":
		return hpaColumns()
	case "Job":
		return append([]column{nameCol,
			{name: "Status", typ: "string", desc: "Status of the job.", cell: jobStatus},
			{name: "Completions", typ: "string", desc: "The completion status of the job.", cell: jobCompletions},
			{name: "Duration", typ: "string", desc: "Time required to complete the job.", cell: jobDuration},
			ageCol}, append(containersCols("spec", "template", "spec"), selectorCol)...)
	case "CronJob":
		return append([]column{nameCol,
			{name: "Schedule", typ: "string", cell: func(o map[string]any, _ time.Time) any { return str(o, "spec", "schedule") }},
			{name: "Timezone", typ: "string", cell: func(o map[string]any, _ time.Time) any { return orNone(str(o, "spec", "timeZone")) }},
			{name: "Suspend", typ: "boolean", cell: func(o map[string]any, _ time.Time) any { return path(o, "spec", "suspend") == true }},
			{name: "Active", typ: "integer", cell: func(o map[string]any, _ time.Time) any { return int64(len(list(o, "status", "active"))) }},
			{name: "Last Schedule", typ: "string", cell: func(o map[string]any, now time.Time) any {
				if t := str(o, "status", "lastScheduleTime"); t != "" {
					return age(t, now)
				}
				return "<none>"
			}},
			ageCol}, append(containersCols("spec", "jobTemplate", "spec", "template", "spec"),
			column{name: "Selector", typ: "string", priority: 1, cell: func(o map[string]any, _ time.Time) any {
				return labelSelectorString(path(o, "spec", "jobTemplate", "spec", "selector"))
			}})...)
	}
	return []column{nameCol, ageCol}
}

// jobStatus is the Status column of a job, as kubectl 1.32 shows it.
func jobStatus(o map[string]any, _ time.Time) any {
	status := "Running"
	for _, c := range list(o, "status", "conditions") {
		m, _ := c.(map[string]any)
		if m["status"] != "True" {
			continue
		}
		switch t, _ := m["type"].(string); t {
		case "Complete", "Failed", "Suspended":
			return t
		case "FailureTarget":
			status = "FailureTarget"
		case "SuccessCriteriaMet":
			status = "SuccessCriteriaMet"
		}
	}
	return status
}

// jobCompletions is the Completions column: succeeded/completions, or
// succeeded/1 of parallelism for a work queue.
func jobCompletions(o map[string]any, _ time.Time) any {
	succeeded := num(o, "status", "succeeded")
	if path(o, "spec", "completions") != nil {
		return fmt.Sprintf("%d/%d", succeeded, num(o, "spec", "completions"))
	}
	if p := num(o, "spec", "parallelism"); p > 1 {
		return fmt.Sprintf("%d/1 of %d", succeeded, p)
	}
	return fmt.Sprintf("%d/1", succeeded)
}

// jobDuration is the Duration column: from start to completion, or to now.
func jobDuration(o map[string]any, now time.Time) any {
	start, err := time.Parse(time.RFC3339, str(o, "status", "startTime"))
	if err != nil {
		return ""
	}
	end := now
	if t, err := time.Parse(time.RFC3339, str(o, "status", "completionTime")); err == nil {
		end = t
	}
	return duration.HumanDuration(end.Sub(start))
}

// mapOf reads a nested object.
func mapOf(obj map[string]any, p ...string) map[string]any {
	m, _ := path(obj, p...).(map[string]any)
	return m
}

// podReady is READY as kubectl prints it: ready containers over all
// containers, sidecars (init containers with restartPolicy Always) counted.
func podReady(o map[string]any, _ time.Time) any {
	total, ready := len(list(o, "spec", "containers")), 0
	sidecars := map[string]bool{}
	for _, c := range list(o, "spec", "initContainers") {
		if m, _ := c.(map[string]any); str(m, "restartPolicy") == "Always" {
			sidecars[str(m, "name")] = true
			total++
		}
	}
	for _, c := range list(o, "status", "initContainerStatuses") {
		if m, _ := c.(map[string]any); sidecars[str(m, "name")] && m["ready"] == true {
			ready++
		}
	}
	for _, c := range list(o, "status", "containerStatuses") {
		if m, _ := c.(map[string]any); m["ready"] == true {
			ready++
		}
	}
	return fmt.Sprintf("%d/%d", ready, total)
}

// podStatus is the STATUS kubectl prints (its printPod): Init:N/M,
// Init:<reason> or Init:ExitCode:N while init containers run, else the
// reason of a waiting or terminated container, Terminating, or the phase.
func podStatus(o map[string]any, _ time.Time) any {
	reason := str(o, "status", "phase")
	if r := str(o, "status", "reason"); r != "" {
		reason = r
	}
	inits := list(o, "spec", "initContainers")
	sidecars := map[string]bool{}
	for _, c := range inits {
		if m, _ := c.(map[string]any); str(m, "restartPolicy") == "Always" {
			sidecars[str(m, "name")] = true
		}
	}
	initializing := false
	for i, c := range list(o, "status", "initContainerStatuses") {
		m, _ := c.(map[string]any)
		term := mapOf(m, "state", "terminated")
		switch {
		case term != nil && num(term, "exitCode") == 0:
			continue
		case sidecars[str(m, "name")] && m["started"] == true:
			continue
		case term != nil:
			switch {
			case str(term, "reason") != "":
				reason = "Init:" + str(term, "reason")
			case num(term, "signal") != 0:
				reason = fmt.Sprintf("Init:Signal:%d", num(term, "signal"))
			default:
				reason = fmt.Sprintf("Init:ExitCode:%d", num(term, "exitCode"))
			}
		case str(m, "state", "waiting", "reason") != "" && str(m, "state", "waiting", "reason") != "PodInitializing":
			reason = "Init:" + str(m, "state", "waiting", "reason")
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(inits))
		}
		initializing = true
		break
	}
	if !initializing || podCondition(o, "Initialized") {
		hasRunning := false
		cs := list(o, "status", "containerStatuses")
		for i := len(cs) - 1; i >= 0; i-- {
			m, _ := cs[i].(map[string]any)
			term := mapOf(m, "state", "terminated")
			switch {
			case str(m, "state", "waiting", "reason") != "":
				reason = str(m, "state", "waiting", "reason")
			case term != nil && str(term, "reason") != "":
				reason = str(term, "reason")
			case term != nil && num(term, "signal") != 0:
				reason = fmt.Sprintf("Signal:%d", num(term, "signal"))
			case term != nil:
				reason = fmt.Sprintf("ExitCode:%d", num(term, "exitCode"))
			case m["ready"] == true && mapOf(m, "state", "running") != nil:
				hasRunning = true
			}
		}
		if reason == "Completed" && hasRunning {
			reason = "NotReady"
			if podCondition(o, "Ready") {
				reason = "Running"
			}
		}
	}
	if str(o, "metadata", "deletionTimestamp") != "" {
		return "Terminating"
	}
	return reason
}

// podCondition reports whether the pod's condition typ is True.
func podCondition(o map[string]any, typ string) bool {
	for _, c := range list(o, "status", "conditions") {
		if m, _ := c.(map[string]any); str(m, "type") == typ {
			return str(m, "status") == "True"
		}
	}
	return false
}

func podRestarts(o map[string]any, now time.Time) any {
	var n int64
	last := ""
	for _, c := range append(list(o, "status", "initContainerStatuses"), list(o, "status", "containerStatuses")...) {
		m, _ := c.(map[string]any)
		n += num(m, "restartCount")
		if f := str(m, "lastState", "terminated", "finishedAt"); f > last {
			last = f
		}
	}
	if n > 0 && last != "" {
		return fmt.Sprintf("%d (%s ago)", n, age(last, now))
	}
	return fmt.Sprint(n)
}

func servicePorts(o map[string]any, _ time.Time) any {
	var out []string
	for _, p := range list(o, "spec", "ports") {
		m, _ := p.(map[string]any)
		proto := str(m, "protocol")
		if proto == "" {
			proto = "TCP"
		}
		s := fmt.Sprint(num(m, "port"))
		if np := num(m, "nodePort"); np != 0 {
			s += fmt.Sprintf(":%d", np)
		}
		out = append(out, s+"/"+proto)
	}
	return orNone(strings.Join(out, ","))
}

// lbAddresses joins the IPs (or host names) of status.loadBalancer.ingress,
// as kubectl shows them.
func lbAddresses(o map[string]any) string {
	var out []string
	for _, in := range list(o, "status", "loadBalancer", "ingress") {
		m, _ := in.(map[string]any)
		if ip := str(m, "ip"); ip != "" {
			out = append(out, ip)
		} else if h := str(m, "hostname"); h != "" {
			out = append(out, h)
		}
	}
	return strings.Join(out, ",")
}

// serviceExternalIP is kubectl's EXTERNAL-IP: a LoadBalancer's addresses
// (<pending> while it has none), else <none>.
func serviceExternalIP(o map[string]any, _ time.Time) any {
	if str(o, "spec", "type") != "LoadBalancer" {
		return "<none>"
	}
	if a := lbAddresses(o); a != "" {
		return a
	}
	return "<pending>"
}

// ingressHosts is kubectl's HOSTS: the rules' hosts ("*" for a rule
// without one), at most three and a count of the others.
func ingressHosts(o map[string]any, _ time.Time) any {
	var hosts []string
	for _, r := range list(o, "spec", "rules") {
		m, _ := r.(map[string]any)
		h := str(m, "host")
		if h == "" {
			h = "*"
		}
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		return "*"
	}
	if len(hosts) > 3 {
		return fmt.Sprintf("%s + %d more...", strings.Join(hosts[:3], ","), len(hosts)-3)
	}
	return strings.Join(hosts, ",")
}

func nodeStatus(o map[string]any, _ time.Time) any {
	st := "Unknown"
	for _, c := range list(o, "status", "conditions") {
		m, _ := c.(map[string]any)
		if m["type"] == "Ready" {
			if m["status"] == "True" {
				st = "Ready"
			} else {
				st = "NotReady"
			}
		}
	}
	if path(o, "spec", "unschedulable") == true {
		st += ",SchedulingDisabled"
	}
	return st
}

func nodeAddress(o map[string]any, typ string) string {
	for _, a := range list(o, "status", "addresses") {
		m, _ := a.(map[string]any)
		if m["type"] == typ {
			return fmt.Sprint(m["address"])
		}
	}
	return "<none>"
}

func endpoints(o map[string]any, _ time.Time) any {
	var out []string
	for _, s := range list(o, "subsets") {
		m, _ := s.(map[string]any)
		for _, a := range list(m, "addresses") {
			am, _ := a.(map[string]any)
			for _, p := range list(m, "ports") {
				pm, _ := p.(map[string]any)
				out = append(out, fmt.Sprintf("%v:%d", am["ip"], num(pm, "port")))
			}
		}
	}
	if len(out) > 3 {
		return strings.Join(out[:3], ",") + fmt.Sprintf(" + %d more...", len(out)-3)
	}
	return orNone(strings.Join(out, ","))
}

// accessModes abbreviates access modes as kubectl does: RWO, ROX, RWX, RWOP.
func accessModes(modes []any) string {
	short := map[string]string{"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}
	var out []string
	for _, m := range modes {
		s, _ := m.(string)
		if a, ok := short[s]; ok {
			out = append(out, a)
		}
	}
	return strings.Join(out, ",")
}
