package api

import (
	"strings"
	"testing"
)

func TestConfigObjectsValidation(t *testing.T) {
	big := strings.Repeat("x", MaxConfigBytes)
	cases := []struct {
		name, manifest, want string // want: "" for valid, else a substring of the error
	}{
		{"configmap", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a.b_c-1: x}\nbinaryData: {bin: AAEC}\n", ""},
		{"bad key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {\"a/b\": x}\n", `data[a/b]: invalid key "a/b"`},
		{"dotdot key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {\"..a\": x}\n", `must not start with '..'`},
		{"binary not base64", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nbinaryData: {b: \"!!\"}\n", "binaryData.b: not valid base64"},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {b: x}\nbinaryData: {b: AAEC}\n", `duplicate of key "b" in data`},
		{"too big", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: " + big + "}\n", "the limit is 1048576"},
		{"secret", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {p: cQ==}\n", ""},
		{"secret data not base64", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {p: q}\n", "data.p: not valid base64"},
		{"tls keys", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\nstringData: {tls.crt: x}\n", "data[tls.key]: required for a Secret of type kubernetes.io/tls"},
		{"dockerconfigjson", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/dockerconfigjson\ndata: {}\n", "data[.dockerconfigjson]: required"},
		{"basic-auth", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/basic-auth\nstringData: {user: x}\n", `needs a key "username" or "password"`},
		{"basic-auth ok", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/basic-auth\nstringData: {password: x}\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := Decode([]byte(c.manifest), "t.yaml")
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestSecretStringDataFoldsIntoData(t *testing.T) {
	objs, _, err := Decode([]byte("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {a: eA==, b: eA==}\nstringData: {b: why, c: zed}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	s := objs[0].(*Secret)
	if s.StringData != nil || s.Type != SecretTypeOpaque {
		t.Fatalf("got %+v", s)
	}
	v := s.Values()
	if string(v["a"]) != "x" || string(v["b"]) != "why" || string(v["c"]) != "zed" {
		t.Fatalf("values %q", v)
	}
}

func TestValidateUpdateImmutable(t *testing.T) {
	yes := true
	old := &Secret{Metadata: ObjectMeta{Name: "s"}, Immutable: &yes, Type: SecretTypeOpaque, Data: map[string]string{"a": "eA=="}}
	next := DeepCopy(*old)
	if errs := ValidateUpdate(old, &next); len(errs) != 0 {
		t.Fatalf("same secret: %v", errs)
	}
	next.Data["a"] = "eQ=="
	next.Type = SecretTypeBasicAuth
	next.Immutable = nil
	errs := ValidateUpdate(old, &next)
	var fields []string
	for _, e := range errs {
		fields = append(fields, e.Field)
	}
	if strings.Join(fields, ",") != "type,immutable,data" {
		t.Fatalf("errors %v", errs)
	}
}

func TestPodEnvAndVolumeValidation(t *testing.T) {
	const head = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w}\nspec:\n  selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w}}\n    spec:\n"
	cases := []struct{ name, spec, want string }{
		{"ok", `      volumes:
      - {name: cfg, configMap: {name: c, items: [{key: a, path: dir/a, mode: 0400}]}}
      - {name: tmp, emptyDir: {medium: Memory, sizeLimit: 64Mi}}
      - name: all
        projected: {sources: [{secret: {name: s}}, {downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}]}
      containers:
      - name: app
        image: web:1
        env:
        - {name: A, valueFrom: {configMapKeyRef: {name: c, key: a}}}
        - {name: B, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
        - {name: C, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
        envFrom: [{prefix: CFG_, configMapRef: {name: c}}]
        volumeMounts: [{name: cfg, mountPath: /etc/cfg}, {name: tmp, mountPath: /tmp, subPath: x}]
`, ""},
		{"two sources", "      containers:\n      - name: app\n        image: web:1\n        env: [{name: A, valueFrom: {configMapKeyRef: {name: c, key: a}, secretKeyRef: {name: s, key: a}}}]\n",
			"spec.template.spec.containers[0].env[0].valueFrom: must specify exactly one"},
		{"bad fieldPath", "      containers:\n      - name: app\n        image: web:1\n        env: [{name: A, valueFrom: {fieldRef: {fieldPath: spec.host}}}]\n",
			`env[0].valueFrom.fieldRef.fieldPath: unsupported value "spec.host"`},
		{"missing volume", "      containers:\n      - name: app\n        image: web:1\n        volumeMounts: [{name: nope, mountPath: /x}]\n",
			`volumeMounts[0].name: not found: no volume "nope"`},
		{"relative mount", "      volumes: [{name: v, emptyDir: {}}]\n      containers:\n      - name: app\n        image: web:1\n        volumeMounts: [{name: v, mountPath: x}]\n",
			`volumeMounts[0].mountPath: "x" must be an absolute path`},
		{"escaping subPath", "      volumes: [{name: v, emptyDir: {}}]\n      containers:\n      - name: app\n        image: web:1\n        volumeMounts: [{name: v, mountPath: /x, subPath: ../etc}]\n",
			`subPath: "../etc" must not contain '..'`},
		{"escaping item", "      volumes: [{name: v, configMap: {name: c, items: [{key: a, path: /etc/passwd}]}}]\n      containers: [{name: app, image: web:1}]\n",
			`volumes[0].configMap.items[0].path: "/etc/passwd" must be a relative path`},
		{"hostPath", "      volumes: [{name: v, hostPath: {path: etc}}]\n      containers: [{name: app, image: web:1}]\n",
			`volumes[0].hostPath.path: "etc" must be an absolute path`},
		{"hostPath type", "      volumes: [{name: v, hostPath: {path: /x, type: Fifo}}]\n      containers: [{name: app, image: web:1}]\n",
			`volumes[0].hostPath.type: unsupported value "Fifo"`},
		{"bad mode", "      volumes: [{name: v, secret: {secretName: s, defaultMode: 4095}}]\n      containers: [{name: app, image: web:1}]\n",
			`secret.defaultMode: must be a number between 0 and 0777`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := Decode([]byte(head+c.spec), "t.yaml")
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}
