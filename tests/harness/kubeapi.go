package harness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/chorus-sh/chorus/apiserver"
)

// Manifests go to a peer through its Kubernetes API, one object at a time,
// as kubectl sends them.

// Apply applies every object of a YAML or JSON manifest (documents
// separated by ---) through the peer's Kubernetes API, as `kubectl apply
// --server-side` does: a PATCH of type application/apply-patch+yaml per
// object, which creates it when it does not exist. It stops at the first
// object refused.
func (p *Peer) Apply(manifest []byte) error {
	return p.eachObject(manifest, func(path string, doc []byte) (*http.Request, error) {
		req, err := p.Request(http.MethodPatch, path+"?fieldManager=harness&force=true", bytes.NewReader(doc))
		if err == nil {
			req.Header.Set("Content-Type", "application/apply-patch+yaml")
		}
		return req, err
	}, false)
}

// DeleteManifest deletes every object of a manifest through the peer's
// Kubernetes API; an object that does not exist is no error.
func (p *Peer) DeleteManifest(manifest []byte) error {
	return p.eachObject(manifest, func(path string, _ []byte) (*http.Request, error) {
		return p.Request(http.MethodDelete, path, nil)
	}, true)
}

// eachObject sends, for each object of manifest, the request req makes
// for the object's path.
func (p *Peer) eachObject(manifest []byte, req func(path string, doc []byte) (*http.Request, error), notFoundOK bool) error {
	c := p.HTTPClient(time.Minute)
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for i := 1; ; i++ {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
		if obj == nil {
			continue
		}
		path, err := ObjectPath(obj)
		if err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
		doc, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		r, err := req(path, doc)
		if err != nil {
			return err
		}
		resp, err := c.Do(r)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 && !(notFoundOK && resp.StatusCode == http.StatusNotFound) {
			var st struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(b, &st) == nil && st.Message != "" {
				return fmt.Errorf("%s %s: %s: %s", r.Method, path, resp.Status, st.Message)
			}
			return fmt.Errorf("%s %s: %s: %s", r.Method, path, resp.Status, b)
		}
	}
}

// ObjectPath is the path of an object (apiVersion, kind, metadata.name,
// metadata.namespace: "default" when namespaced and not given) in the
// Kubernetes API every peer serves.
func ObjectPath(obj map[string]any) (string, error) {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	ns, _ := meta["namespace"].(string)
	if name == "" {
		return "", fmt.Errorf("%s %s has no name", apiVersion, kind)
	}
	for _, r := range apiserver.Resources() {
		if r.APIVersion() != apiVersion || r.Kind != kind {
			continue
		}
		base := "/apis/" + apiVersion
		if r.Group == "" {
			base = "/api/" + apiVersion
		}
		if r.Namespaced {
			if ns == "" {
				ns = "default"
			}
			base += "/namespaces/" + url.PathEscape(ns)
		}
		return base + "/" + r.Plural + "/" + url.PathEscape(name), nil
	}
	return "", fmt.Errorf("no resource of kind %s in %s is served", kind, apiVersion)
}
