//go:build !unix

package server

import (
	"net"
	"syscall"

	"google.golang.org/grpc/mem"
)

func rawConnOf(net.Conn) syscall.RawConn { return nil }

func readOnReady(syscall.RawConn, int, mem.BufferPool) (*[]byte, int, error) {
	panic("unreachable: rawConnOf is nil here")
}
