package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
)

// protobufType is the media type client-go's typed clients (kubectl
// create namespace, create configmap...) send bodies in.
const protobufType = "application/vnd.kubernetes.protobuf"

// protobufDecoder decodes Kubernetes protobuf bodies of the served groups.
type protobufDecoder struct{ s *protobuf.Serializer }

func newProtobufDecoder() (*protobufDecoder, error) {
	sc := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, autoscalingv1.AddToScheme, autoscalingv2.AddToScheme, authorizationv1.AddToScheme, batchv1.AddToScheme, storagev1.AddToScheme, networkingv1.AddToScheme} {
		if err := add(sc); err != nil {
			return nil, fmt.Errorf("protobuf scheme: %w", err)
		}
	}
	return &protobufDecoder{s: protobuf.NewSerializer(sc, sc)}, nil
}

// toJSON decodes a protobuf body into the JSON of the same object.
func (d *protobufDecoder) toJSON(body []byte) ([]byte, error) {
	obj, gvk, err := d.s.Decode(body, nil, nil)
	if err != nil {
		return nil, apierrors.NewBadRequest("protobuf body: " + err.Error())
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["apiVersion"], m["kind"] = gvk.GroupVersion().String(), gvk.Kind
	return json.Marshal(m)
}

// handleOpenAPIV2 answers /openapi/v2 with an empty document, in protobuf
// when asked (kubectl asks), JSON otherwise. Clients use the per-group
// OpenAPI v3 documents; kubectl reads this one only to validate kinds the
// server does not serve, which then fail with "no matches for kind".
func (s *Server) handleOpenAPIV2(w http.ResponseWriter, r *http.Request) {
	doc := &openapi_v2.Document{Swagger: "2.0", Info: &openapi_v2.Info{Title: "chorus", Version: KubernetesVersion}}
	if strings.Contains(r.Header.Get("Accept"), "protobuf") {
		b, err := proto.Marshal(doc)
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
		_, _ = w.Write(b)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"swagger": "2.0", "info": map[string]string{"title": "chorus", "version": KubernetesVersion}, "paths": map[string]any{}})
}
