package api

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// EnvVarSource is where an environment variable's value comes from: one of
// its members.
type EnvVarSource struct {
	FieldRef         *ObjectFieldSelector   `json:"fieldRef,omitempty"`
	ResourceFieldRef *ResourceFieldSelector `json:"resourceFieldRef,omitempty"`
	ConfigMapKeyRef  *ConfigMapKeySelector  `json:"configMapKeyRef,omitempty"`
	SecretKeyRef     *SecretKeySelector     `json:"secretKeyRef,omitempty"`
}

// ObjectFieldSelector selects a field of the pod (the downward API).
type ObjectFieldSelector struct {
	APIVersion string `json:"apiVersion,omitempty"`
	FieldPath  string `json:"fieldPath"`
}

// ResourceFieldSelector selects a container's limit or request, in units
// of Divisor (1 by default).
type ResourceFieldSelector struct {
	ContainerName string `json:"containerName,omitempty"`
	Resource      string `json:"resource"`
	Divisor       string `json:"divisor,omitempty"`
}

// ConfigMapKeySelector selects a key of a ConfigMap.
type ConfigMapKeySelector struct {
	Name     string `json:"name"`
	Key      string `json:"key"`
	Optional *bool  `json:"optional,omitempty"`
}

// SecretKeySelector selects a key of a Secret.
type SecretKeySelector struct {
	Name     string `json:"name"`
	Key      string `json:"key"`
	Optional *bool  `json:"optional,omitempty"`
}

// EnvFromSource makes every key of a ConfigMap or Secret a variable.
type EnvFromSource struct {
	Prefix       string              `json:"prefix,omitempty"`
	ConfigMapRef *ConfigMapEnvSource `json:"configMapRef,omitempty"`
	SecretRef    *SecretEnvSource    `json:"secretRef,omitempty"`
}

// ConfigMapEnvSource names a ConfigMap for envFrom.
type ConfigMapEnvSource struct {
	Name     string `json:"name"`
	Optional *bool  `json:"optional,omitempty"`
}

// SecretEnvSource names a Secret for envFrom.
type SecretEnvSource struct {
	Name     string `json:"name"`
	Optional *bool  `json:"optional,omitempty"`
}

// Volume is a pod volume; exactly one source is set.
type Volume struct {
	Name        string                   `json:"name"`
	EmptyDir    *EmptyDirVolumeSource    `json:"emptyDir,omitempty"`
	ConfigMap   *ConfigMapVolumeSource   `json:"configMap,omitempty"`
	Secret      *SecretVolumeSource      `json:"secret,omitempty"`
	DownwardAPI *DownwardAPIVolumeSource `json:"downwardAPI,omitempty"`
	Projected   *ProjectedVolumeSource   `json:"projected,omitempty"`
	// PersistentVolumeClaim mounts a claim's directory on the peer the
	// claim is bound to.
	PersistentVolumeClaim *PersistentVolumeClaimVolumeSource `json:"persistentVolumeClaim,omitempty"`
	// HostPath mounts a file or directory of the peer; a peer mounts only
	// paths under the prefixes its --allow-host-path names.
	HostPath *HostPathVolumeSource `json:"hostPath,omitempty"`
}

// HostPathVolumeSource is a path of the peer the pod runs on.
type HostPathVolumeSource struct {
	Path string  `json:"path"`
	Type *string `json:"type,omitempty"`
}

// HostPath types, as Kubernetes names them.
var hostPathTypes = []string{"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"}

// HostPathAllowed reports whether path is under one of the prefixes.
func HostPathAllowed(hostPath string, prefixes []string) bool {
	clean := path.Clean(hostPath)
	for _, p := range prefixes {
		p = path.Clean(p)
		if clean == p || p == "/" || strings.HasPrefix(clean, p+"/") {
			return true
		}
	}
	return false
}

// EmptyDirVolumeSource is a directory that lives as long as the pod; with
// medium Memory it is a tmpfs.
type EmptyDirVolumeSource struct {
	Medium    string `json:"medium,omitempty"` // "" or Memory
	SizeLimit string `json:"sizeLimit,omitempty"`
}

// KeyToPath puts one key at a path of the volume.
type KeyToPath struct {
	Key  string `json:"key"`
	Path string `json:"path"`
	Mode *int32 `json:"mode,omitempty"`
}

// ConfigMapVolumeSource makes a ConfigMap's keys files.
type ConfigMapVolumeSource struct {
	Name        string      `json:"name"`
	Items       []KeyToPath `json:"items,omitempty"`
	DefaultMode *int32      `json:"defaultMode,omitempty"`
	Optional    *bool       `json:"optional,omitempty"`
}

// SecretVolumeSource makes a Secret's keys files.
type SecretVolumeSource struct {
	SecretName  string      `json:"secretName"`
	Items       []KeyToPath `json:"items,omitempty"`
	DefaultMode *int32      `json:"defaultMode,omitempty"`
	Optional    *bool       `json:"optional,omitempty"`
}

// DownwardAPIVolumeSource makes fields of the pod files.
type DownwardAPIVolumeSource struct {
	Items       []DownwardAPIVolumeFile `json:"items,omitempty"`
	DefaultMode *int32                  `json:"defaultMode,omitempty"`
}

// DownwardAPIVolumeFile is one file of a downwardAPI volume.
type DownwardAPIVolumeFile struct {
	Path             string                 `json:"path"`
	FieldRef         *ObjectFieldSelector   `json:"fieldRef,omitempty"`
	ResourceFieldRef *ResourceFieldSelector `json:"resourceFieldRef,omitempty"`
	Mode             *int32                 `json:"mode,omitempty"`
}

// ProjectedVolumeSource combines several sources in one directory.
type ProjectedVolumeSource struct {
	Sources     []VolumeProjection `json:"sources"`
	DefaultMode *int32             `json:"defaultMode,omitempty"`
}

// VolumeProjection is one source of a projected volume.
type VolumeProjection struct {
	ConfigMap   *ConfigMapProjection   `json:"configMap,omitempty"`
	Secret      *SecretProjection      `json:"secret,omitempty"`
	DownwardAPI *DownwardAPIProjection `json:"downwardAPI,omitempty"`
}

// ConfigMapProjection is a ConfigMap in a projected volume.
type ConfigMapProjection struct {
	Name     string      `json:"name"`
	Items    []KeyToPath `json:"items,omitempty"`
	Optional *bool       `json:"optional,omitempty"`
}

// SecretProjection is a Secret in a projected volume.
type SecretProjection struct {
	Name     string      `json:"name"`
	Items    []KeyToPath `json:"items,omitempty"`
	Optional *bool       `json:"optional,omitempty"`
}

// DownwardAPIProjection is pod fields in a projected volume.
type DownwardAPIProjection struct {
	Items []DownwardAPIVolumeFile `json:"items,omitempty"`
}

// VolumeMount mounts a volume (or one path in it: subPath) in a container.
type VolumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
	SubPath   string `json:"subPath,omitempty"`
}

// DefaultVolumeMode is the mode of files in configMap, secret, downwardAPI
// and projected volumes when none is given (0644, as in Kubernetes).
const DefaultVolumeMode = 0o644

// MediumMemory is the emptyDir medium of a tmpfs.
const MediumMemory = "Memory"

// Field paths the downward API resolves (fieldRef): those of env, and
// those of volumes, where status and spec fields are not served.
var (
	envFieldPaths    = []string{"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.podIP", "status.hostIP"}
	volumeFieldPaths = []string{"metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels", "metadata.annotations"}
	// ResourceFieldNames are what resourceFieldRef may select.
	resourceFieldNames = []string{"limits.cpu", "limits.memory", "requests.cpu", "requests.memory"}
	subscriptRE        = regexp.MustCompile(`^metadata\.(labels|annotations)\['([^']*)'\]$`)
)

// ParseFieldSubscript splits metadata.labels['k'] and
// metadata.annotations['k'] into the map's name and the key.
func ParseFieldSubscript(fieldPath string) (field, key string, ok bool) {
	m := subscriptRE.FindStringSubmatch(fieldPath)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

func (v *validator) fieldRef(f *ObjectFieldSelector, p string, allowed []string) {
	if f.APIVersion != "" && f.APIVersion != "v1" {
		v.add(child(p, "apiVersion"), "unsupported value %q: supported values: v1", f.APIVersion)
	}
	fp := child(p, "fieldPath")
	if f.FieldPath == "" {
		v.add(fp, "required")
		return
	}
	if field, key, ok := ParseFieldSubscript(f.FieldPath); ok {
		label := "label"
		if field == "annotations" {
			label = "annotation"
		}
		if msg := checkQualifiedName(key); msg != "" {
			v.add(fp, "%q is not a valid %s key: %s", key, label, msg)
		}
		return
	}
	for _, a := range allowed {
		if f.FieldPath == a {
			return
		}
	}
	v.add(fp, "unsupported value %q: supported values: %s, metadata.labels['KEY'], metadata.annotations['KEY']", f.FieldPath, strings.Join(allowed, ", "))
}

func (v *validator) resourceFieldRef(r *ResourceFieldSelector, p string, containers []string) {
	switch {
	case r.Resource == "":
		v.add(child(p, "resource"), "required")
	case !contains(resourceFieldNames, r.Resource):
		v.add(child(p, "resource"), "unsupported value %q: supported values: %s", r.Resource, strings.Join(resourceFieldNames, ", "))
	}
	if r.ContainerName != "" && !contains(containers, r.ContainerName) {
		v.add(child(p, "containerName"), "no container %q in this pod", r.ContainerName)
	}
	if r.Divisor != "" {
		var err error
		if strings.HasSuffix(r.Resource, ".cpu") {
			var m int64
			if m, err = ParseCPU(r.Divisor); err == nil && m <= 0 {
				err = fmt.Errorf("must be greater than 0")
			}
		} else {
			var b int64
			if b, err = ParseMemory(r.Divisor); err == nil && b <= 0 {
				err = fmt.Errorf("must be greater than 0")
			}
		}
		if err != nil {
			v.add(child(p, "divisor"), "%q: %v", r.Divisor, err)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// objectRefName checks the name of a referenced ConfigMap or Secret.
func (v *validator) objectRefName(name, p string) {
	if name == "" {
		v.add(p, "required")
	} else if msg := checkDNS1123Subdomain(name); msg != "" {
		v.add(p, "%q is not a valid name: %s", name, msg)
	}
}

func (v *validator) configKeyRef(key, p string) {
	if key == "" {
		v.add(p, "required")
	} else if msg := checkConfigKey(key); msg != "" {
		v.add(p, "invalid key %q: %s", key, msg)
	}
}

// env validates a container's env and envFrom.
func (v *validator) env(c *Container, p string, containers []string) {
	for i, e := range c.Env {
		ep := index(child(p, "env"), i)
		switch {
		case e.Name == "":
			v.add(child(ep, "name"), "required")
		case !envNameRE.MatchString(e.Name):
			v.add(child(ep, "name"), "%q is not a valid environment variable name: must consist of letters, digits, '_', '-' or '.', and not start with a digit", e.Name)
		}
		s := e.ValueFrom
		if s == nil {
			continue
		}
		sp := child(ep, "valueFrom")
		if e.Value != "" {
			v.add(sp, "may not be specified when `value` is not empty")
		}
		n := 0
		if s.FieldRef != nil {
			n++
			v.fieldRef(s.FieldRef, child(sp, "fieldRef"), envFieldPaths)
		}
		if s.ResourceFieldRef != nil {
			n++
			v.resourceFieldRef(s.ResourceFieldRef, child(sp, "resourceFieldRef"), containers)
		}
		if r := s.ConfigMapKeyRef; r != nil {
			n++
			v.objectRefName(r.Name, child(child(sp, "configMapKeyRef"), "name"))
			v.configKeyRef(r.Key, child(child(sp, "configMapKeyRef"), "key"))
		}
		if r := s.SecretKeyRef; r != nil {
			n++
			v.objectRefName(r.Name, child(child(sp, "secretKeyRef"), "name"))
			v.configKeyRef(r.Key, child(child(sp, "secretKeyRef"), "key"))
		}
		if n != 1 {
			v.add(sp, "must specify exactly one of fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef, got %d", n)
		}
	}
	for i, f := range c.EnvFrom {
		fp := index(child(p, "envFrom"), i)
		if f.Prefix != "" && !envNameRE.MatchString(f.Prefix) {
			v.add(child(fp, "prefix"), "%q is not a valid environment variable name prefix", f.Prefix)
		}
		n := 0
		if f.ConfigMapRef != nil {
			n++
			v.objectRefName(f.ConfigMapRef.Name, child(child(fp, "configMapRef"), "name"))
		}
		if f.SecretRef != nil {
			n++
			v.objectRefName(f.SecretRef.Name, child(child(fp, "secretRef"), "name"))
		}
		if n != 1 {
			v.add(fp, "must specify exactly one of configMapRef or secretRef, got %d", n)
		}
	}
}

func (v *validator) mode(m *int32, p string) {
	if m != nil && (*m < 0 || *m > 0o777) {
		v.add(p, "must be a number between 0 and 0777 (octal), both inclusive, got %d", *m)
	}
}

// relPath checks a path inside a volume: relative, no '..' element.
func (v *validator) relPath(s, p string, required bool) {
	switch {
	case s == "":
		if required {
			v.add(p, "required")
		}
	case path.IsAbs(s):
		v.add(p, "%q must be a relative path", s)
	case contains(strings.Split(s, "/"), ".."):
		v.add(p, "%q must not contain '..'", s)
	case strings.HasPrefix(s, ".."):
		v.add(p, "%q must not start with '..'", s)
	case len(s) > 4096:
		v.add(p, "must be at most 4096 characters, got %d", len(s))
	}
}

func (v *validator) items(items []KeyToPath, p string) {
	for i, it := range items {
		ip := index(p, i)
		v.configKeyRef(it.Key, child(ip, "key"))
		v.relPath(it.Path, child(ip, "path"), true)
		v.mode(it.Mode, child(ip, "mode"))
	}
}

func (v *validator) downwardItems(items []DownwardAPIVolumeFile, p string, containers []string) {
	for i, it := range items {
		ip := index(p, i)
		v.relPath(it.Path, child(ip, "path"), true)
		v.mode(it.Mode, child(ip, "mode"))
		switch {
		case it.FieldRef != nil && it.ResourceFieldRef != nil:
			v.add(ip, "fieldRef and resourceFieldRef may not both be specified")
		case it.FieldRef != nil:
			v.fieldRef(it.FieldRef, child(ip, "fieldRef"), volumeFieldPaths)
		case it.ResourceFieldRef != nil:
			v.resourceFieldRef(it.ResourceFieldRef, child(ip, "resourceFieldRef"), containers)
			if it.ResourceFieldRef.ContainerName == "" {
				v.add(child(child(ip, "resourceFieldRef"), "containerName"), "required in a volume")
			}
		default:
			v.add(ip, "must specify fieldRef or resourceFieldRef")
		}
	}
}

// volumes validates a pod's volumes and returns their names.
func (v *validator) volumes(s *PodSpec, p string) map[string]bool {
	names := map[string]bool{}
	var containers []string
	for _, c := range s.allContainers(p) {
		containers = append(containers, c.ctr.Name)
	}
	for i := range s.Volumes {
		vol := &s.Volumes[i]
		vp := index(child(p, "volumes"), i)
		switch {
		case vol.Name == "":
			v.add(child(vp, "name"), "required")
		case checkDNS1123Label(vol.Name) != "":
			v.add(child(vp, "name"), "%q is not a valid volume name: %s", vol.Name, checkDNS1123Label(vol.Name))
		case names[vol.Name]:
			v.add(child(vp, "name"), "duplicate volume name %q", vol.Name)
		}
		names[vol.Name] = true
		n := 0
		if e := vol.EmptyDir; e != nil {
			n++
			if e.Medium != "" && e.Medium != MediumMemory {
				v.add(child(vp, "emptyDir.medium"), "unsupported value %q: supported values: \"\" (the peer's disk), Memory", e.Medium)
			}
			if e.SizeLimit != "" {
				if b, err := ParseMemory(e.SizeLimit); err != nil || b <= 0 {
					v.add(child(vp, "emptyDir.sizeLimit"), "%q is not a positive quantity", e.SizeLimit)
				}
			}
		}
		if c := vol.ConfigMap; c != nil {
			n++
			v.objectRefName(c.Name, child(vp, "configMap.name"))
			v.items(c.Items, child(vp, "configMap.items"))
			v.mode(c.DefaultMode, child(vp, "configMap.defaultMode"))
		}
		if c := vol.Secret; c != nil {
			n++
			v.objectRefName(c.SecretName, child(vp, "secret.secretName"))
			v.items(c.Items, child(vp, "secret.items"))
			v.mode(c.DefaultMode, child(vp, "secret.defaultMode"))
		}
		if d := vol.DownwardAPI; d != nil {
			n++
			v.downwardItems(d.Items, child(vp, "downwardAPI.items"), containers)
			v.mode(d.DefaultMode, child(vp, "downwardAPI.defaultMode"))
		}
		if pr := vol.Projected; pr != nil {
			n++
			v.mode(pr.DefaultMode, child(vp, "projected.defaultMode"))
			for j, src := range pr.Sources {
				sp := index(child(vp, "projected.sources"), j)
				k := 0
				if c := src.ConfigMap; c != nil {
					k++
					v.objectRefName(c.Name, child(sp, "configMap.name"))
					v.items(c.Items, child(sp, "configMap.items"))
				}
				if c := src.Secret; c != nil {
					k++
					v.objectRefName(c.Name, child(sp, "secret.name"))
					v.items(c.Items, child(sp, "secret.items"))
				}
				if d := src.DownwardAPI; d != nil {
					k++
					v.downwardItems(d.Items, child(sp, "downwardAPI.items"), containers)
				}
				if k != 1 {
					v.add(sp, "must specify exactly one of configMap, secret or downwardAPI, got %d (chorus has no serviceAccountToken or clusterTrustBundle projections)", k)
				}
			}
		}
		if h := vol.HostPath; h != nil {
			n++
			switch {
			case !path.IsAbs(h.Path):
				v.add(child(vp, "hostPath.path"), "%q must be an absolute path", h.Path)
			case contains(strings.Split(h.Path, "/"), ".."):
				v.add(child(vp, "hostPath.path"), "%q must not contain '..'", h.Path)
			}
			if h.Type != nil && !contains(hostPathTypes, *h.Type) {
				v.add(child(vp, "hostPath.type"), "unsupported value %q: supported values: %s", *h.Type, strings.Join(hostPathTypes[1:], ", "))
			}
		}
		if c := vol.PersistentVolumeClaim; c != nil {
			n++
			v.objectRefName(c.ClaimName, child(vp, "persistentVolumeClaim.claimName"))
		}
		if n != 1 {
			v.add(vp, "must specify exactly one volume source of emptyDir, configMap, secret, downwardAPI, projected, persistentVolumeClaim or hostPath, got %d (chorus supports no other kind yet)", n)
		}
	}
	return names
}

// volumeMounts validates a container's volume mounts.
func (v *validator) volumeMounts(c *Container, p string, volumes map[string]bool) {
	seen := map[string]string{}
	for i, m := range c.VolumeMounts {
		mp := index(child(p, "volumeMounts"), i)
		switch {
		case m.Name == "":
			v.add(child(mp, "name"), "required")
		case !volumes[m.Name]:
			v.add(child(mp, "name"), "not found: no volume %q in the pod's volumes", m.Name)
		}
		switch {
		case m.MountPath == "":
			v.add(child(mp, "mountPath"), "required")
		case !path.IsAbs(m.MountPath):
			v.add(child(mp, "mountPath"), "%q must be an absolute path", m.MountPath)
		case contains(strings.Split(m.MountPath, "/"), ".."):
			v.add(child(mp, "mountPath"), "%q must not contain '..'", m.MountPath)
		default:
			clean := path.Clean(m.MountPath)
			if other, dup := seen[clean]; dup {
				v.add(child(mp, "mountPath"), "%q is also mounted by %s", m.MountPath, other)
			}
			seen[clean] = mp
		}
		v.relPath(m.SubPath, child(mp, "subPath"), false)
	}
}

// PodSpecOf is a pod spec an object holds, with its field path.
type PodSpecOf struct {
	Path string
	Spec *PodSpec
}

// PodSpecsOf returns the pod specs of o: its own (a Pod) or its
// template's.
func PodSpecsOf(o Object) []PodSpecOf {
	switch o := o.(type) {
	case *Pod:
		return []PodSpecOf{{"spec", &o.Spec}}
	case *Deployment:
		return []PodSpecOf{{"spec.template.spec", &o.Spec.Template.Spec}}
	case *DaemonSet:
		return []PodSpecOf{{"spec.template.spec", &o.Spec.Template.Spec}}
	case *StatefulSet:
		return []PodSpecOf{{"spec.template.spec", &o.Spec.Template.Spec}}
	case *Job:
		return []PodSpecOf{{"spec.template.spec", &o.Spec.Template.Spec}}
	case *CronJob:
		return []PodSpecOf{{"spec.jobTemplate.spec.template.spec", &o.Spec.JobTemplate.Spec.Template.Spec}}
	}
	return nil
}
