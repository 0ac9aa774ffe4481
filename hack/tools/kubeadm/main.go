// Command kubeadm is kubeadm of the pinned Kubernetes release, for the kind node image built
// here (hack/kind/node-image.sh). It is its own binary, not a case of the multi-call `kube`,
// so that adding it left that binary's cache (the longest build of the project) valid; the Go
// build cache shares every package the two have in common.
package main

import (
	"os"

	"k8s.io/kubernetes/cmd/kubeadm/app"
)

func main() {
	if err := app.Run(); err != nil {
		os.Exit(1)
	}
}
