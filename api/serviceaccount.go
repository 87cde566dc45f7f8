package api

// KindServiceAccount is v1 ServiceAccount. chorus accepts and lists them
// (every namespace has "default") and pods name theirs; it mounts no token
// (a pod's automountServiceAccountToken is accepted, and no token is
// mounted either way).
const KindServiceAccount = "ServiceAccount"

// DefaultServiceAccount is the service account of a pod that names none.
const DefaultServiceAccount = "default"

// ServiceAccount is a v1 ServiceAccount.
type ServiceAccount struct {
	TypeMeta                     `json:",inline"`
	Metadata                     ObjectMeta             `json:"metadata"`
	Secrets                      []ObjectReference      `json:"secrets,omitempty"`
	ImagePullSecrets             []LocalObjectReference `json:"imagePullSecrets,omitempty"`
	AutomountServiceAccountToken *bool                  `json:"automountServiceAccountToken,omitempty"`
}

// LocalObjectReference names an object of the same namespace.
type LocalObjectReference struct {
	Name string `json:"name,omitempty"`
}

// GetKind returns KindServiceAccount.
func (*ServiceAccount) GetKind() string { return KindServiceAccount }

// Meta returns the service account's metadata.
func (o *ServiceAccount) Meta() *ObjectMeta { return &o.Metadata }

// SetTypeMeta sets apiVersion v1, kind ServiceAccount.
func (o *ServiceAccount) SetTypeMeta() {
	o.TypeMeta = TypeMeta{APIVersion: apiVersionV1, Kind: KindServiceAccount}
}
