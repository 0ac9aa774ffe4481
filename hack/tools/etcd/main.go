// Command etcd is etcd's own server main, built through a wrapper module because
// go.etcd.io/etcd/server/v3 carries relative replace directives that defeat `go install`.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
