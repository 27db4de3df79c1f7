//go:build !amd64 || purego

package fec

const haveGFNI = false

func gfniMulAdd(mats []uint64, in [][]byte, out []byte) {
	panic("fec: no GFNI kernel on this platform")
}
