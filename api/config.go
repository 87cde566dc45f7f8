package api

import (
	"encoding/base64"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
)

// Kinds of configuration objects.
const (
	KindConfigMap = "ConfigMap"
	KindSecret    = "Secret"
)

// Secret types Kubernetes defines and chorus checks the keys of.
const (
	SecretTypeOpaque           = "Opaque"
	SecretTypeTLS              = "kubernetes.io/tls"
	SecretTypeDockerConfigJSON = "kubernetes.io/dockerconfigjson"
	SecretTypeDockerConfig     = "kubernetes.io/dockercfg"
	SecretTypeBasicAuth        = "kubernetes.io/basic-auth"
	SecretTypeSSHAuth          = "kubernetes.io/ssh-auth"
	SecretTypeServiceAccount   = "kubernetes.io/service-account-token"
)

// MaxConfigBytes is Kubernetes' limit on the data of one ConfigMap or
// Secret (its values, and for a ConfigMap its keys too): 1 MiB.
const MaxConfigBytes = 1 << 20

// configKeyRE is what a key of a ConfigMap or Secret may be (Kubernetes'
// IsConfigMapKey).
var configKeyRE = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// ConfigMap is a v1 ConfigMap.
type ConfigMap struct {
	TypeMeta  `json:",inline"`
	Metadata  ObjectMeta        `json:"metadata"`
	Immutable *bool             `json:"immutable,omitempty"`
	Data      map[string]string `json:"data,omitempty"`
	// BinaryData holds values as base64, as Kubernetes' JSON does.
	BinaryData map[string]string `json:"binaryData,omitempty"`
}

// Secret is a v1 Secret. Data holds values as base64, as Kubernetes' JSON
// does; StringData is write-only: SetDefaults folds it into Data.
type Secret struct {
	TypeMeta   `json:",inline"`
	Metadata   ObjectMeta        `json:"metadata"`
	Immutable  *bool             `json:"immutable,omitempty"`
	Data       map[string]string `json:"data,omitempty"`
	StringData map[string]string `json:"stringData,omitempty"`
	Type       string            `json:"type,omitempty"`
}

// GetKind returns KindConfigMap.
func (*ConfigMap) GetKind() string { return KindConfigMap }

// Meta returns the config map's metadata.
func (o *ConfigMap) Meta() *ObjectMeta { return &o.Metadata }

// SetTypeMeta sets apiVersion v1, kind ConfigMap.
func (o *ConfigMap) SetTypeMeta() {
	o.TypeMeta = TypeMeta{APIVersion: apiVersionV1, Kind: KindConfigMap}
}

// GetKind returns KindSecret.
func (*Secret) GetKind() string { return KindSecret }

// Meta returns the secret's metadata.
func (o *Secret) Meta() *ObjectMeta { return &o.Metadata }

// SetTypeMeta sets apiVersion v1, kind Secret.
func (o *Secret) SetTypeMeta() { o.TypeMeta = TypeMeta{APIVersion: apiVersionV1, Kind: KindSecret} }

// Values returns the config map's keys and values, binaryData included.
// Values of binaryData that are not base64 are left out (validation
// refuses them).
func (o *ConfigMap) Values() map[string][]byte {
	out := make(map[string][]byte, len(o.Data)+len(o.BinaryData))
	for k, v := range o.Data {
		out[k] = []byte(v)
	}
	for k, v := range o.BinaryData {
		if b, err := base64.StdEncoding.DecodeString(v); err == nil {
			out[k] = b
		}
	}
	return out
}

// Values returns the secret's keys and decoded values. Values that are not
// base64 are left out (validation refuses them).
func (o *Secret) Values() map[string][]byte {
	out := make(map[string][]byte, len(o.Data)+len(o.StringData))
	for k, v := range o.Data {
		if b, err := base64.StdEncoding.DecodeString(v); err == nil {
			out[k] = b
		}
	}
	for k, v := range o.StringData {
		out[k] = []byte(v)
	}
	return out
}

// defaultSecret folds stringData into data (stringData wins, as in
// Kubernetes) and sets the type to Opaque when none is given.
func defaultSecret(s *Secret) {
	if s.Type == "" {
		s.Type = SecretTypeOpaque
	}
	if len(s.StringData) > 0 {
		if s.Data == nil {
			s.Data = map[string]string{}
		}
		for k, v := range s.StringData {
			s.Data[k] = base64.StdEncoding.EncodeToString([]byte(v))
		}
		s.StringData = nil
	}
}

// checkConfigKey returns what is wrong with a key of a ConfigMap or Secret.
func checkConfigKey(k string) string {
	switch {
	case len(k) > 253:
		return fmt.Sprintf("must be at most 253 characters, got %d", len(k))
	case !configKeyRE.MatchString(k):
		return "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
	case k == "." || k == "..":
		return "must not be '.' or '..'"
	case len(k) >= 2 && k[:2] == "..":
		return "must not start with '..'"
	}
	return ""
}

func (v *validator) configMap(o *ConfigMap) {
	size := 0
	for _, k := range sortedKeys(o.Data) {
		p := keyPath("data", k)
		if msg := checkConfigKey(k); msg != "" {
			v.add(p, "invalid key %q: %s", k, msg)
		}
		size += len(k) + len(o.Data[k])
	}
	for _, k := range sortedKeys(o.BinaryData) {
		p := keyPath("binaryData", k)
		if msg := checkConfigKey(k); msg != "" {
			v.add(p, "invalid key %q: %s", k, msg)
		}
		if _, dup := o.Data[k]; dup {
			v.add(p, "duplicate of key %q in data", k)
		}
		b, err := base64.StdEncoding.DecodeString(o.BinaryData[k])
		if err != nil {
			v.add(p, "not valid base64: %v", err)
		}
		size += len(k) + len(b)
	}
	if size > MaxConfigBytes {
		v.add("", "the ConfigMap's data is %d bytes; the limit is %d (1 MiB)", size, MaxConfigBytes)
	}
}

// secretRequiredKeys lists, per type, the keys a Secret must hold (any one
// of a list of alternatives).
var secretRequiredKeys = map[string][][]string{
	SecretTypeTLS:              {{"tls.crt"}, {"tls.key"}},
	SecretTypeDockerConfigJSON: {{".dockerconfigjson"}},
	SecretTypeDockerConfig:     {{".dockercfg"}},
	SecretTypeSSHAuth:          {{"ssh-privatekey"}},
}

func (v *validator) secret(o *Secret) {
	size := 0
	for _, k := range sortedKeys(o.Data) {
		p := keyPath("data", k)
		if msg := checkConfigKey(k); msg != "" {
			v.add(p, "invalid key %q: %s", k, msg)
		}
		b, err := base64.StdEncoding.DecodeString(o.Data[k])
		if err != nil {
			v.add(p, "not valid base64 (use stringData for values in clear): %v", err)
		}
		size += len(b)
	}
	for _, k := range sortedKeys(o.StringData) {
		if msg := checkConfigKey(k); msg != "" {
			v.add(keyPath("stringData", k), "invalid key %q: %s", k, msg)
		}
		size += len(o.StringData[k])
	}
	if size > MaxConfigBytes {
		v.add("data", "the Secret's data is %d bytes; the limit is %d (1 MiB)", size, MaxConfigBytes)
	}
	vals := o.Values()
	switch o.Type {
	case SecretTypeBasicAuth:
		if _, u := vals["username"]; !u {
			if _, p := vals["password"]; !p {
				v.add("data", "a %s Secret needs a key \"username\" or \"password\"", o.Type)
			}
		}
	case SecretTypeServiceAccount:
		v.add("type", "%q is not supported: chorus has no service account tokens", o.Type)
	default:
		for _, alts := range secretRequiredKeys[o.Type] {
			if !slices.ContainsFunc(alts, func(k string) bool { _, ok := vals[k]; return ok }) {
				v.add(keyPath("data", alts[0]), "required for a Secret of type %s", o.Type)
			}
		}
	}
	if o.Type == "" {
		v.add("type", "required")
	} else if len(o.Type) > 253 {
		v.add("type", "must be at most 253 characters, got %d", len(o.Type))
	}
}

// ValidateUpdate returns what Kubernetes refuses in an update of old to
// next: the data of an immutable ConfigMap or Secret (or unsetting
// immutable), and a Secret's type.
func ValidateUpdate(old, next Object) []FieldError {
	v := &validator{kind: next.GetKind(), name: next.Meta().Name}
	immutable := func(b *bool) bool { return b != nil && *b }
	switch o := old.(type) {
	case *Pod:
		// A pod is bound once: its node never changes (spec.nodeName
		// stays as the first write set it).
		if n, ok := next.(*Pod); ok && o.Spec.NodeName != "" && n.Spec.NodeName != o.Spec.NodeName {
			v.add("spec.nodeName", "field is immutable once the pod is bound (was %q)", o.Spec.NodeName)
		}
	case *StatefulSet:
		n, ok := next.(*StatefulSet)
		if !ok {
			break
		}
		// As in Kubernetes: only replicas, the template, the update
		// strategy, minReadySeconds and the retention policy change.
		if !reflect.DeepEqual(o.Spec.VolumeClaimTemplates, n.Spec.VolumeClaimTemplates) {
			v.add("spec.volumeClaimTemplates", "field is immutable")
		}
		if o.Spec.ServiceName != n.Spec.ServiceName {
			v.add("spec.serviceName", "field is immutable")
		}
		if o.Spec.PodManagementPolicy != n.Spec.PodManagementPolicy {
			v.add("spec.podManagementPolicy", "field is immutable")
		}
		if !reflect.DeepEqual(o.Spec.Selector, n.Spec.Selector) {
			v.add("spec.selector", "field is immutable")
		}
	case *PersistentVolumeClaim:
		n, ok := next.(*PersistentVolumeClaim)
		if !ok {
			break
		}
		a, b := o.Spec, n.Spec
		a.Resources, b.Resources = VolumeResourceRequirements{}, VolumeResourceRequirements{}
		if !reflect.DeepEqual(a, b) {
			v.add("spec", "is immutable after creation except resources.requests")
		}
	case *Job:
		// As in Kubernetes: a job's pods are made from one template.
		n, ok := next.(*Job)
		if !ok {
			break
		}
		if TemplateHash(&o.Spec.Template) != TemplateHash(&n.Spec.Template) {
			v.add("spec.template", "field is immutable")
		}
		if o.Spec.CompletionMode != n.Spec.CompletionMode {
			v.add("spec.completionMode", "field is immutable")
		}
		if !reflect.DeepEqual(o.Spec.Selector, n.Spec.Selector) {
			v.add("spec.selector", "field is immutable")
		}
	case *ConfigMap:
		n, ok := next.(*ConfigMap)
		if !ok || !immutable(o.Immutable) {
			break
		}
		if !immutable(n.Immutable) {
			v.add("immutable", "field is immutable when `immutable` is set")
		}
		if !maps.Equal(o.Data, n.Data) {
			v.add("data", "field is immutable when `immutable` is set")
		}
		if !maps.Equal(o.BinaryData, n.BinaryData) {
			v.add("binaryData", "field is immutable when `immutable` is set")
		}
	case *Secret:
		n, ok := next.(*Secret)
		if !ok {
			break
		}
		if o.Type != n.Type {
			v.add("type", "field is immutable (was %q)", o.Type)
		}
		if !immutable(o.Immutable) {
			break
		}
		if !immutable(n.Immutable) {
			v.add("immutable", "field is immutable when `immutable` is set")
		}
		if !maps.Equal(o.Data, n.Data) {
			v.add("data", "field is immutable when `immutable` is set")
		}
	}
	return v.errs
}
