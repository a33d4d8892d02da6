// Command smtpc-node is the node half of the local cluster: a kubelet, a
// kube-proxy and a kube-scheduler from the Kubernetes release the control plane (hack/testenv)
// is built from, in one multi-call binary built from the Go module proxy
// (build.sh). Each runs in a process of its own: `smtpc-node kubelet ...`.
package main

import (
	"context"
	"fmt"
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/version"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"

	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: smtpc-node kubelet|kube-proxy|kube-scheduler|version [flags]")
		os.Exit(2)
	}
	name, args := os.Args[1], os.Args[2:]
	// The component commands read os.Args themselves; show them their own argv.
	os.Args = append([]string{name}, args...)
	switch name {
	case "kubelet":
		command := kubelet.NewKubeletCommand(context.Background())
		command.SetArgs(args)
		os.Exit(cli.Run(command))
	case "kube-proxy":
		command := proxy.NewProxyCommand()
		command.SetArgs(args)
		os.Exit(cli.Run(command))
	case "kube-scheduler":
		command := scheduler.NewSchedulerCommand()
		command.SetArgs(args)
		os.Exit(cli.Run(command))
	case "version":
		fmt.Println(version.Get().GitVersion)
	default:
		fmt.Fprintf(os.Stderr, "smtpc-node: unknown command %q\n", name)
		os.Exit(2)
	}
}
