// Command testenv is the project's local Kubernetes control plane: a real etcd,
// kube-apiserver and kube-controller-manager, plus a matching kubectl, in one
// binary built from the Go module proxy (see build.sh).
//
// It is a multi-call binary. Every Kubernetes component runs in a process of
// its own because the component commands install process-wide signal handlers
// that panic when set up twice.
package main

import (
	"fmt"
	"os"
	"path/filepath"
)

const usage = `usage: testenv <command> [flags]

commands:
  up --dir DIR [--port N]       start etcd, kube-apiserver and kube-controller-manager;
     [--node]                   writes DIR/kubeconfig (admin); stops all on SIGTERM/SIGINT;
                                --node: ready for a node (hack/node) to run pods
  kubectl ARGS...               kubectl built from the same Kubernetes release
  sa-kubeconfig FLAGS           mint a kubeconfig holding a ServiceAccount token
  version                       print the Kubernetes version this binary was built from

internal (started by up): etcd, kube-apiserver, kube-controller-manager
`

func main() {
	// Called through a symlink named after a command (e.g. "kubectl"): act as it.
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if name != "testenv" && commands[name] != nil {
		os.Exit(commands[name](args))
	}
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	run, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "testenv: unknown command %q\n\n%s", args[0], usage)
		os.Exit(2)
	}
	// Component commands read os.Args themselves; show them their own argv.
	os.Args = append([]string{args[0]}, args[1:]...)
	os.Exit(run(args[1:]))
}

var commands = map[string]func(args []string) int{
	"up":                      runUp,
	"kubectl":                 runKubectl,
	"sa-kubeconfig":           runSAKubeconfig,
	"etcd":                    runEtcd,
	"kube-apiserver":          runAPIServer,
	"kube-controller-manager": runControllerManager,
	"version":                 runVersion,
}
