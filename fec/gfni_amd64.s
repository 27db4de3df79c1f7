//go:build !purego

#include "textflag.h"

// func gfniMulAdd(mats []uint64, in [][]byte, out []byte)
//
// out = sum over i < len(mats) of mats[i]·in[i][:len(out)], each mats[i]
// the 8×8 bit matrix of a multiplication in GF(2^8) (gfniMatrix), applied
// with VGF2P8AFFINEQB to 64 bytes at a time. len(out) is a multiple of
// 64, len(mats) >= 1, len(in) >= len(mats), and every in[i] holds at least
// len(out) bytes: the Go side (mulAdd) checks.
TEXT ·gfniMulAdd(SB), NOSPLIT, $0-72
	MOVQ mats_base+0(FP), R8
	MOVQ mats_len+8(FP), R9
	MOVQ in_base+24(FP), R10
	MOVQ out_base+48(FP), DI
	MOVQ out_len+56(FP), CX
	XORQ DX, DX

loop128:
	// 128 bytes of out per pass over the inputs: two accumulators.
	MOVQ CX, AX
	SUBQ DX, AX
	CMPQ AX, $128
	JB   tail64
	VPXORQ Z0, Z0, Z0
	VPXORQ Z1, Z1, Z1
	MOVQ R10, SI
	MOVQ R8, BX
	MOVQ R9, R11

in128:
	MOVQ         (SI), R12
	VPBROADCASTQ (BX), Z4
	VMOVDQU64    (R12)(DX*1), Z2
	VMOVDQU64    64(R12)(DX*1), Z3
	VGF2P8AFFINEQB $0, Z4, Z2, Z2
	VGF2P8AFFINEQB $0, Z4, Z3, Z3
	VPXORQ       Z2, Z0, Z0
	VPXORQ       Z3, Z1, Z1
	ADDQ         $24, SI
	ADDQ         $8, BX
	DECQ         R11
	JNZ          in128
	VMOVDQU64 Z0, (DI)(DX*1)
	VMOVDQU64 Z1, 64(DI)(DX*1)
	ADDQ      $128, DX
	JMP       loop128

tail64:
	CMPQ DX, CX
	JAE  done
	VPXORQ Z0, Z0, Z0
	MOVQ R10, SI
	MOVQ R8, BX
	MOVQ R9, R11

in64:
	MOVQ         (SI), R12
	VPBROADCASTQ (BX), Z4
	VMOVDQU64    (R12)(DX*1), Z2
	VGF2P8AFFINEQB $0, Z4, Z2, Z2
	VPXORQ       Z2, Z0, Z0
	ADDQ         $24, SI
	ADDQ         $8, BX
	DECQ         R11
	JNZ          in64
	VMOVDQU64 Z0, (DI)(DX*1)
	ADDQ      $64, DX
	JMP       tail64

done:
	VZEROUPPER
	RET
