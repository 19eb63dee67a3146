//go:build tools

// Package binaries pins the commands that scripts/build-binaries builds.
package binaries

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
