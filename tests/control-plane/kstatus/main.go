// kstatus reads Kubernetes objects (a JSON list, a JSON object with "items", or one object) on
// standard input and prints, for each, the status that sigs.k8s.io/cli-utils' kstatus computes:
// the library Flux (kustomize-controller's health checks, `wait: true`) and kubectl-based tools
// call. One JSON line per object: {"kind", "name", "namespace", "status", "message"}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type line struct {
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading stdin:", err)
		os.Exit(2)
	}
	var raw interface{}
	// Integers as int64, as the apiserver's own decoding gives them (kstatus reads generations so).
	if err := utiljson.Unmarshal(input, &raw); err != nil {
		fmt.Fprintln(os.Stderr, "stdin is not JSON:", err)
		os.Exit(2)
	}
	var objects []interface{}
	switch v := raw.(type) {
	case []interface{}:
		objects = v
	case map[string]interface{}:
		if items, ok := v["items"].([]interface{}); ok {
			objects = items
		} else {
			objects = []interface{}{v}
		}
	}
	out := json.NewEncoder(os.Stdout)
	for _, o := range objects {
		m, ok := o.(map[string]interface{})
		if !ok {
			fmt.Fprintln(os.Stderr, "not an object:", o)
			os.Exit(2)
		}
		u := &unstructured.Unstructured{Object: m}
		res, err := status.Compute(u)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s %s: %v\n", u.GetKind(), u.GetName(), err)
			os.Exit(1)
		}
		_ = out.Encode(line{Kind: u.GetKind(), Name: u.GetName(), Namespace: u.GetNamespace(), Status: res.Status.String(), Message: res.Message})
	}
}
