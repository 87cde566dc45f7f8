package crdt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Metadata keys Split leaves out: the name and namespace are in the key,
// the resource version and generation are derived by the agent.
var serverSetMetadata = map[string]bool{
	"name": true, "namespace": true, "resourceVersion": true, "generation": true,
}

// Split cuts a JSON object document into fields (see the package
// documentation): "spec.<key>" for every key of spec, "metadata.<key>" for
// every key of metadata but name, namespace, resourceVersion and
// generation, and every other top-level key but status as itself. Values are
// compacted. Split fails if doc is not a JSON object, if spec or metadata is
// not an object (null is taken as empty), or if a top-level key is empty or
// starts with "spec." or "metadata." (it could not be told from a nested
// field).
//
// To replace an object, pass Split's result to Put, which writes null in
// every field the object has and the new document lacks.
func Split(doc []byte) (map[string]json.RawMessage, error) {
	top, err := jsonObject(doc)
	if err == nil && top == nil {
		err = errors.New("null")
	}
	if err != nil {
		return nil, fmt.Errorf("crdt: split: document: %w", err)
	}
	fields := make(map[string]json.RawMessage, len(top)+8)
	for k, v := range top {
		switch {
		case k == "status":
		case k == "metadata" || k == "spec":
			sub, err := jsonObject(v)
			if err != nil {
				return nil, fmt.Errorf("crdt: split: %s: %w", k, err)
			}
			for sk, sv := range sub {
				if k == "metadata" && serverSetMetadata[sk] {
					continue
				}
				c, err := compact(sv)
				if err != nil {
					return nil, fmt.Errorf("crdt: split: %s.%s: %w", k, sk, err)
				}
				fields[k+"."+sk] = c
			}
		case k == "":
			return nil, errors.New("crdt: split: empty top-level key")
		case strings.HasPrefix(k, "spec.") || strings.HasPrefix(k, "metadata."):
			return nil, fmt.Errorf("crdt: split: top-level key %q is ambiguous", k)
		default:
			c, err := compact(v)
			if err != nil {
				return nil, fmt.Errorf("crdt: split: %s: %w", k, err)
			}
			fields[k] = c
		}
	}
	return fields, nil
}

// jsonObject decodes a JSON object, or null as an empty one.
func jsonObject(b []byte) (map[string]json.RawMessage, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, errors.New("empty")
	}
	if b[0] != '{' && !bytes.Equal(b, jsonNull) {
		return nil, errors.New("not a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func compact(v json.RawMessage) (json.RawMessage, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// SplitKey splits "Kind/namespace/name" into its parts. It fails if the key
// has fewer than two slashes or an empty kind or name; the name is what
// follows the second slash.
func SplitKey(key string) (kind, namespace, name string, err error) {
	kind, rest, ok1 := strings.Cut(key, "/")
	namespace, name, ok2 := strings.Cut(rest, "/")
	if !ok1 || !ok2 || kind == "" || name == "" {
		return "", "", "", fmt.Errorf("crdt: key %q is not Kind/namespace/name", key)
	}
	return kind, namespace, name, nil
}

// Join rebuilds an object's JSON document from its key and fields (as Get
// returns them): metadata.name and metadata.namespace (if not empty) from
// the key, "metadata.<key>" and "spec.<key>" fields nested in metadata and
// spec, other fields at the top level, and kind from the key if no field
// sets it. Fields holding null and the existence field "" are left out, and
// spec is left out if no field is in it. Object keys come out sorted. Join
// fails on a malformed key, a value that is not valid JSON, or a field named
// "metadata" or "spec".
func Join(key string, fields map[string]json.RawMessage) ([]byte, error) {
	kind, ns, name, err := SplitKey(key)
	if err != nil {
		return nil, err
	}
	top := map[string]json.RawMessage{}
	meta := map[string]json.RawMessage{}
	spec := map[string]json.RawMessage{}
	for f, v := range fields {
		v = bytes.TrimSpace(v)
		if f == ExistsField || len(v) == 0 || bytes.Equal(v, jsonNull) {
			continue
		}
		if !json.Valid(v) {
			return nil, fmt.Errorf("crdt: join %s: field %s is not valid JSON", key, f)
		}
		if rest, ok := strings.CutPrefix(f, "metadata."); ok {
			meta[rest] = v
		} else if rest, ok := strings.CutPrefix(f, "spec."); ok {
			spec[rest] = v
		} else if f == "metadata" || f == "spec" {
			return nil, fmt.Errorf("crdt: join %s: field %q would replace the nested fields", key, f)
		} else {
			top[f] = v
		}
	}
	meta["name"], _ = json.Marshal(name)
	if ns != "" {
		meta["namespace"], _ = json.Marshal(ns)
	} else {
		delete(meta, "namespace")
	}
	if top["metadata"], err = json.Marshal(meta); err != nil {
		return nil, fmt.Errorf("crdt: join %s: %w", key, err)
	}
	if len(spec) > 0 {
		if top["spec"], err = json.Marshal(spec); err != nil {
			return nil, fmt.Errorf("crdt: join %s: %w", key, err)
		}
	}
	if _, ok := top["kind"]; !ok {
		top["kind"], _ = json.Marshal(kind)
	}
	b, err := json.Marshal(top)
	if err != nil {
		return nil, fmt.Errorf("crdt: join %s: %w", key, err)
	}
	return b, nil
}
