//go:build !purego

package fec

import "golang.org/x/sys/cpu"

// haveGFNI: the CPU and OS run AVX-512 with GFNI (gfniMulAdd).
var haveGFNI = cpu.X86.HasAVX512F && cpu.X86.HasAVX512GFNI

//go:noescape
func gfniMulAdd(mats []uint64, in [][]byte, out []byte)
