package main

import (
	_ "github.com/hanwen/go-fuse/v2/fs"
	_ "github.com/willscott/go-nfs-client/nfs"
)

func main() {}
