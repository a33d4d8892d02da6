// gitops-check judges objects the way GitOps tools do, with their own code:
// kstatus (sigs.k8s.io/cli-utils, as Flux and kpt use it) and an Argo CD
// health.lua run in gopher-lua (the Lua VM Argo CD embeds, with obj set as
// Argo CD sets it). It reads a JSON array of objects on stdin and prints one
// JSON line per object: {"name", "kstatus", "kstatusMessage", "health", "healthMessage"}.
//
//	gitops-check HEALTH_LUA < objects.json
package main

import (
	"encoding/json"
	"fmt"
	"os"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Name           string `json:"name"`
	KStatus        string `json:"kstatus"`
	KStatusMessage string `json:"kstatusMessage"`
	Health         string `json:"health"`
	HealthMessage  string `json:"healthMessage"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gitops-check HEALTH_LUA < objects.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	var objects []json.RawMessage
	if err := json.NewDecoder(os.Stdin).Decode(&objects); err != nil {
		fail(fmt.Errorf("stdin must be a JSON array of objects: %w", err))
	}
	out := json.NewEncoder(os.Stdout)
	for _, raw := range objects {
		// As the API machinery decodes it (integers stay int64).
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			fail(fmt.Errorf("not a Kubernetes object: %w", err))
		}
		object := u.Object
		result, err := status.Compute(u)
		if err != nil {
			fail(fmt.Errorf("kstatus %s: %w", u.GetName(), err))
		}
		health, message, err := argoHealth(string(script), object)
		if err != nil {
			fail(fmt.Errorf("health.lua %s: %w", u.GetName(), err))
		}
		if err := out.Encode(verdict{u.GetName(), result.Status.String(), result.Message, health, message}); err != nil {
			fail(err)
		}
	}
}

// argoHealth runs a health.lua as Argo CD does: obj is the object as a Lua
// table, the script returns a table with status and message.
func argoHealth(script string, object map[string]interface{}) (string, string, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: false})
	defer L.Close()
	L.SetGlobal("obj", toLua(L, object))
	if err := L.DoString(script); err != nil {
		return "", "", err
	}
	table, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("the script did not return a table")
	}
	return lua.LVAsString(table.RawGetString("status")), lua.LVAsString(table.RawGetString("message")), nil
}

func toLua(L *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []interface{}:
		t := L.NewTable()
		for _, item := range v {
			t.Append(toLua(L, item))
		}
		return t
	case map[string]interface{}:
		t := L.NewTable()
		for key, item := range v {
			t.RawSetString(key, toLua(L, item))
		}
		return t
	default:
		return lua.LString(fmt.Sprint(v))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gitops-check:", err)
	os.Exit(1)
}
