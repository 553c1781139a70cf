//go:build amd64 && !purego

#include "textflag.h"

// func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL sub+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func xgetbv0() (eax, edx uint32)
TEXT ·xgetbv0(SB), NOSPLIT, $0-8
	MOVL $0, CX
	XGETBV
	MOVL AX, eax+0(FP)
	MOVL DX, edx+4(FP)
	RET

// func kernel6x16(kc int, a, b, c *float32, ldc int)
//
// Twelve YMM accumulators hold the 6x16 tile (Y4..Y15: row r in Y(4+2r)
// and Y(5+2r)); each step loads one 16-wide row of B into Y0/Y1 and
// broadcasts the six A values of that step in turn.
TEXT ·kernel6x16(SB), NOSPLIT, $0-40
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8

	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15

loop:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VBROADCASTSS (SI), Y2
	VFMADD231PS Y0, Y2, Y4
	VFMADD231PS Y1, Y2, Y5
	VBROADCASTSS 4(SI), Y3
	VFMADD231PS Y0, Y3, Y6
	VFMADD231PS Y1, Y3, Y7
	VBROADCASTSS 8(SI), Y2
	VFMADD231PS Y0, Y2, Y8
	VFMADD231PS Y1, Y2, Y9
	VBROADCASTSS 12(SI), Y3
	VFMADD231PS Y0, Y3, Y10
	VFMADD231PS Y1, Y3, Y11
	VBROADCASTSS 16(SI), Y2
	VFMADD231PS Y0, Y2, Y12
	VFMADD231PS Y1, Y2, Y13
	VBROADCASTSS 20(SI), Y3
	VFMADD231PS Y0, Y3, Y14
	VFMADD231PS Y1, Y3, Y15
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  loop

	VADDPS (DX), Y4, Y4
	VMOVUPS Y4, (DX)
	VADDPS 32(DX), Y5, Y5
	VMOVUPS Y5, 32(DX)
	ADDQ R8, DX
	VADDPS (DX), Y6, Y6
	VMOVUPS Y6, (DX)
	VADDPS 32(DX), Y7, Y7
	VMOVUPS Y7, 32(DX)
	ADDQ R8, DX
	VADDPS (DX), Y8, Y8
	VMOVUPS Y8, (DX)
	VADDPS 32(DX), Y9, Y9
	VMOVUPS Y9, 32(DX)
	ADDQ R8, DX
	VADDPS (DX), Y10, Y10
	VMOVUPS Y10, (DX)
	VADDPS 32(DX), Y11, Y11
	VMOVUPS Y11, 32(DX)
	ADDQ R8, DX
	VADDPS (DX), Y12, Y12
	VMOVUPS Y12, (DX)
	VADDPS 32(DX), Y13, Y13
	VMOVUPS Y13, 32(DX)
	ADDQ R8, DX
	VADDPS (DX), Y14, Y14
	VMOVUPS Y14, (DX)
	VADDPS 32(DX), Y15, Y15
	VMOVUPS Y15, 32(DX)
	VZEROUPPER
	RET

// func kernel12x32(kc int, a, b, c *float32, ldc int)
//
// AVX-512F. Twenty-four ZMM accumulators hold the 12x32 tile (row r in
// Z(8+2r) and Z(9+2r)); each step loads one 32-wide row of B into Z0/Z1
// and broadcasts the twelve A values of that step in turn (rotating
// through Z2-Z7), so a step is 14 loads for 24 FMAs: broadcasting once per
// A value rather than folding it into both FMAs keeps the two load ports
// from becoming the bottleneck. VPXORD rather than VXORPS zeroes: the
// 512-bit VXORPS needs AVX512DQ, and this kernel asks for AVX512F only.
TEXT ·kernel12x32(SB), NOSPLIT, $0-40
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8

	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	VPXORD Z24, Z24, Z24
	VPXORD Z25, Z25, Z25
	VPXORD Z26, Z26, Z26
	VPXORD Z27, Z27, Z27
	VPXORD Z28, Z28, Z28
	VPXORD Z29, Z29, Z29
	VPXORD Z30, Z30, Z30
	VPXORD Z31, Z31, Z31

loop512:
	VMOVUPS (DI), Z0
	VMOVUPS 64(DI), Z1
	VBROADCASTSS (SI), Z2
	VFMADD231PS Z0, Z2, Z8
	VFMADD231PS Z1, Z2, Z9
	VBROADCASTSS 4(SI), Z3
	VFMADD231PS Z0, Z3, Z10
	VFMADD231PS Z1, Z3, Z11
	VBROADCASTSS 8(SI), Z4
	VFMADD231PS Z0, Z4, Z12
	VFMADD231PS Z1, Z4, Z13
	VBROADCASTSS 12(SI), Z5
	VFMADD231PS Z0, Z5, Z14
	VFMADD231PS Z1, Z5, Z15
	VBROADCASTSS 16(SI), Z6
	VFMADD231PS Z0, Z6, Z16
	VFMADD231PS Z1, Z6, Z17
	VBROADCASTSS 20(SI), Z7
	VFMADD231PS Z0, Z7, Z18
	VFMADD231PS Z1, Z7, Z19
	VBROADCASTSS 24(SI), Z2
	VFMADD231PS Z0, Z2, Z20
	VFMADD231PS Z1, Z2, Z21
	VBROADCASTSS 28(SI), Z3
	VFMADD231PS Z0, Z3, Z22
	VFMADD231PS Z1, Z3, Z23
	VBROADCASTSS 32(SI), Z4
	VFMADD231PS Z0, Z4, Z24
	VFMADD231PS Z1, Z4, Z25
	VBROADCASTSS 36(SI), Z5
	VFMADD231PS Z0, Z5, Z26
	VFMADD231PS Z1, Z5, Z27
	VBROADCASTSS 40(SI), Z6
	VFMADD231PS Z0, Z6, Z28
	VFMADD231PS Z1, Z6, Z29
	VBROADCASTSS 44(SI), Z7
	VFMADD231PS Z0, Z7, Z30
	VFMADD231PS Z1, Z7, Z31
	ADDQ $48, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  loop512

	VADDPS (DX), Z8, Z8
	VMOVUPS Z8, (DX)
	VADDPS 64(DX), Z9, Z9
	VMOVUPS Z9, 64(DX)
	ADDQ R8, DX
	VADDPS (DX), Z10, Z10
	VMOVUPS Z10, (DX)
	VADDPS 64(DX), Z11, Z11
	VMOVUPS Z11, 64(DX)
	ADDQ R8, DX
	VADDPS (DX), Z12, Z12
	VMOVUPS Z12, (DX)
	VADDPS 64(DX), Z13, Z13
	VMOVUPS Z13, 64(DX)
	ADDQ R8, DX
	VADDPS (DX), Z14, Z14
	VMOVUPS Z14, (DX)
	VADDPS 64(DX), Z15, Z15
	VMOVUPS Z15, 64(DX)
	ADDQ R8, DX
	VADDPS (DX), Z16, Z16
	VMOVUPS Z16, (DX)
	VADDPS 64(DX), Z17, Z17
	VMOVUPS Z17, 64(DX)
	ADDQ R8, DX
	VADDPS (DX), Z18, Z18
	VMOVUPS Z18, (DX)
	VADDPS 64(DX), Z19, Z19
	VMOVUPS Z19, 64(DX)
	ADDQ R8, DX
	VADDPS (DX), Z20, Z20
	VMOVUPS Z20, (DX)
	VADDPS 64(DX), Z21, Z21
	VMOVUPS Z21, 64(DX)
	ADDQ R8, DX
	VADDPS (DX), Z22, Z22
	VMOVUPS Z22, (DX)
	VADDPS 64(DX), Z23, Z23
	VMOVUPS Z23, 64(DX)
	ADDQ R8, DX
	VADDPS (DX), Z24, Z24
	VMOVUPS Z24, (DX)
	VADDPS 64(DX), Z25, Z25
	VMOVUPS Z25, 64(DX)
	ADDQ R8, DX
	VADDPS (DX), Z26, Z26
	VMOVUPS Z26, (DX)
	VADDPS 64(DX), Z27, Z27
	VMOVUPS Z27, 64(DX)
	ADDQ R8, DX
	VADDPS (DX), Z28, Z28
	VMOVUPS Z28, (DX)
	VADDPS 64(DX), Z29, Z29
	VMOVUPS Z29, 64(DX)
	ADDQ R8, DX
	VADDPS (DX), Z30, Z30
	VMOVUPS Z30, (DX)
	VADDPS 64(DX), Z31, Z31
	VMOVUPS Z31, 64(DX)
	VZEROUPPER
	RET

// func dotAVX2(a, b *float32, n int) float32
//
// Four 8-wide accumulators over 32 elements per step, then 8 at a time,
// then a scalar tail; n may be 0.
TEXT ·dotAVX2(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

dot32:
	CMPQ CX, $32
	JLT  dot8
	VMOVUPS (SI), Y4
	VMOVUPS 32(SI), Y5
	VMOVUPS 64(SI), Y6
	VMOVUPS 96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP  dot32

dot8:
	CMPQ CX, $8
	JLT  dotreduce
	VMOVUPS (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  dot8

dotreduce:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0

dottail:
	TESTQ CX, CX
	JZ    dotdone
	VMOVSS (SI), X4
	VFMADD231SS (DI), X4, X0
	ADDQ $4, SI
	ADDQ $4, DI
	DECQ CX
	JMP  dottail

dotdone:
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func axpyAVX2(y, x *float32, n int, alpha float32)
//
// y[i] += alpha·x[i], 32 elements per step, then 8, then scalar.
TEXT ·axpyAVX2(SB), NOSPLIT, $0-28
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS alpha+24(FP), Y0

axpy32:
	CMPQ CX, $32
	JLT  axpy8
	VMOVUPS (DI), Y4
	VMOVUPS 32(DI), Y5
	VMOVUPS 64(DI), Y6
	VMOVUPS 96(DI), Y7
	VFMADD231PS (SI), Y0, Y4
	VFMADD231PS 32(SI), Y0, Y5
	VFMADD231PS 64(SI), Y0, Y6
	VFMADD231PS 96(SI), Y0, Y7
	VMOVUPS Y4, (DI)
	VMOVUPS Y5, 32(DI)
	VMOVUPS Y6, 64(DI)
	VMOVUPS Y7, 96(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP  axpy32

axpy8:
	CMPQ CX, $8
	JLT  axpytail
	VMOVUPS (DI), Y4
	VFMADD231PS (SI), Y0, Y4
	VMOVUPS Y4, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  axpy8

axpytail:
	TESTQ CX, CX
	JZ    axpydone
	VMOVSS (DI), X4
	VFMADD231SS (SI), X0, X4
	VMOVSS X4, (DI)
	ADDQ $4, SI
	ADDQ $4, DI
	DECQ CX
	JMP  axpytail

axpydone:
	VZEROUPPER
	RET

// Constants of expAVX2, each repeated across the eight lanes.
DATA expLog2e<>+0(SB)/4, $0x3fb8aa3b
DATA expLog2e<>+4(SB)/4, $0x3fb8aa3b
DATA expLog2e<>+8(SB)/4, $0x3fb8aa3b
DATA expLog2e<>+12(SB)/4, $0x3fb8aa3b
DATA expLog2e<>+16(SB)/4, $0x3fb8aa3b
DATA expLog2e<>+20(SB)/4, $0x3fb8aa3b
DATA expLog2e<>+24(SB)/4, $0x3fb8aa3b
DATA expLog2e<>+28(SB)/4, $0x3fb8aa3b
GLOBL expLog2e<>(SB), RODATA|NOPTR, $32

DATA expLn2hi<>+0(SB)/4, $0x3f318000
DATA expLn2hi<>+4(SB)/4, $0x3f318000
DATA expLn2hi<>+8(SB)/4, $0x3f318000
DATA expLn2hi<>+12(SB)/4, $0x3f318000
DATA expLn2hi<>+16(SB)/4, $0x3f318000
DATA expLn2hi<>+20(SB)/4, $0x3f318000
DATA expLn2hi<>+24(SB)/4, $0x3f318000
DATA expLn2hi<>+28(SB)/4, $0x3f318000
GLOBL expLn2hi<>(SB), RODATA|NOPTR, $32

DATA expLn2lo<>+0(SB)/4, $0xb95e8083
DATA expLn2lo<>+4(SB)/4, $0xb95e8083
DATA expLn2lo<>+8(SB)/4, $0xb95e8083
DATA expLn2lo<>+12(SB)/4, $0xb95e8083
DATA expLn2lo<>+16(SB)/4, $0xb95e8083
DATA expLn2lo<>+20(SB)/4, $0xb95e8083
DATA expLn2lo<>+24(SB)/4, $0xb95e8083
DATA expLn2lo<>+28(SB)/4, $0xb95e8083
GLOBL expLn2lo<>(SB), RODATA|NOPTR, $32

DATA expC7<>+0(SB)/4, $0x39500d01
DATA expC7<>+4(SB)/4, $0x39500d01
DATA expC7<>+8(SB)/4, $0x39500d01
DATA expC7<>+12(SB)/4, $0x39500d01
DATA expC7<>+16(SB)/4, $0x39500d01
DATA expC7<>+20(SB)/4, $0x39500d01
DATA expC7<>+24(SB)/4, $0x39500d01
DATA expC7<>+28(SB)/4, $0x39500d01
GLOBL expC7<>(SB), RODATA|NOPTR, $32

DATA expC6<>+0(SB)/4, $0x3ab60b61
DATA expC6<>+4(SB)/4, $0x3ab60b61
DATA expC6<>+8(SB)/4, $0x3ab60b61
DATA expC6<>+12(SB)/4, $0x3ab60b61
DATA expC6<>+16(SB)/4, $0x3ab60b61
DATA expC6<>+20(SB)/4, $0x3ab60b61
DATA expC6<>+24(SB)/4, $0x3ab60b61
DATA expC6<>+28(SB)/4, $0x3ab60b61
GLOBL expC6<>(SB), RODATA|NOPTR, $32

DATA expC5<>+0(SB)/4, $0x3c088889
DATA expC5<>+4(SB)/4, $0x3c088889
DATA expC5<>+8(SB)/4, $0x3c088889
DATA expC5<>+12(SB)/4, $0x3c088889
DATA expC5<>+16(SB)/4, $0x3c088889
DATA expC5<>+20(SB)/4, $0x3c088889
DATA expC5<>+24(SB)/4, $0x3c088889
DATA expC5<>+28(SB)/4, $0x3c088889
GLOBL expC5<>(SB), RODATA|NOPTR, $32

DATA expC4<>+0(SB)/4, $0x3d2aaaab
DATA expC4<>+4(SB)/4, $0x3d2aaaab
DATA expC4<>+8(SB)/4, $0x3d2aaaab
DATA expC4<>+12(SB)/4, $0x3d2aaaab
DATA expC4<>+16(SB)/4, $0x3d2aaaab
DATA expC4<>+20(SB)/4, $0x3d2aaaab
DATA expC4<>+24(SB)/4, $0x3d2aaaab
DATA expC4<>+28(SB)/4, $0x3d2aaaab
GLOBL expC4<>(SB), RODATA|NOPTR, $32

DATA expC3<>+0(SB)/4, $0x3e2aaaab
DATA expC3<>+4(SB)/4, $0x3e2aaaab
DATA expC3<>+8(SB)/4, $0x3e2aaaab
DATA expC3<>+12(SB)/4, $0x3e2aaaab
DATA expC3<>+16(SB)/4, $0x3e2aaaab
DATA expC3<>+20(SB)/4, $0x3e2aaaab
DATA expC3<>+24(SB)/4, $0x3e2aaaab
DATA expC3<>+28(SB)/4, $0x3e2aaaab
GLOBL expC3<>(SB), RODATA|NOPTR, $32

DATA expC2<>+0(SB)/4, $0x3f000000
DATA expC2<>+4(SB)/4, $0x3f000000
DATA expC2<>+8(SB)/4, $0x3f000000
DATA expC2<>+12(SB)/4, $0x3f000000
DATA expC2<>+16(SB)/4, $0x3f000000
DATA expC2<>+20(SB)/4, $0x3f000000
DATA expC2<>+24(SB)/4, $0x3f000000
DATA expC2<>+28(SB)/4, $0x3f000000
GLOBL expC2<>(SB), RODATA|NOPTR, $32

DATA expOne<>+0(SB)/4, $0x3f800000
DATA expOne<>+4(SB)/4, $0x3f800000
DATA expOne<>+8(SB)/4, $0x3f800000
DATA expOne<>+12(SB)/4, $0x3f800000
DATA expOne<>+16(SB)/4, $0x3f800000
DATA expOne<>+20(SB)/4, $0x3f800000
DATA expOne<>+24(SB)/4, $0x3f800000
DATA expOne<>+28(SB)/4, $0x3f800000
GLOBL expOne<>(SB), RODATA|NOPTR, $32

DATA expLo<>+0(SB)/4, $0xc2aeac4f
DATA expLo<>+4(SB)/4, $0xc2aeac4f
DATA expLo<>+8(SB)/4, $0xc2aeac4f
DATA expLo<>+12(SB)/4, $0xc2aeac4f
DATA expLo<>+16(SB)/4, $0xc2aeac4f
DATA expLo<>+20(SB)/4, $0xc2aeac4f
DATA expLo<>+24(SB)/4, $0xc2aeac4f
DATA expLo<>+28(SB)/4, $0xc2aeac4f
GLOBL expLo<>(SB), RODATA|NOPTR, $32

DATA expHi<>+0(SB)/4, $0x42b00000
DATA expHi<>+4(SB)/4, $0x42b00000
DATA expHi<>+8(SB)/4, $0x42b00000
DATA expHi<>+12(SB)/4, $0x42b00000
DATA expHi<>+16(SB)/4, $0x42b00000
DATA expHi<>+20(SB)/4, $0x42b00000
DATA expHi<>+24(SB)/4, $0x42b00000
DATA expHi<>+28(SB)/4, $0x42b00000
GLOBL expHi<>(SB), RODATA|NOPTR, $32

DATA expInf<>+0(SB)/4, $0x7f800000
DATA expInf<>+4(SB)/4, $0x7f800000
DATA expInf<>+8(SB)/4, $0x7f800000
DATA expInf<>+12(SB)/4, $0x7f800000
DATA expInf<>+16(SB)/4, $0x7f800000
DATA expInf<>+20(SB)/4, $0x7f800000
DATA expInf<>+24(SB)/4, $0x7f800000
DATA expInf<>+28(SB)/4, $0x7f800000
GLOBL expInf<>(SB), RODATA|NOPTR, $32

DATA expBias<>+0(SB)/4, $0x0000007f
DATA expBias<>+4(SB)/4, $0x0000007f
DATA expBias<>+8(SB)/4, $0x0000007f
DATA expBias<>+12(SB)/4, $0x0000007f
DATA expBias<>+16(SB)/4, $0x0000007f
DATA expBias<>+20(SB)/4, $0x0000007f
DATA expBias<>+24(SB)/4, $0x0000007f
DATA expBias<>+28(SB)/4, $0x0000007f
GLOBL expBias<>(SB), RODATA|NOPTR, $32

// func expAVX2(x *float32, n int)
//
// x[i] = e^x[i] in place for the first n&^7 elements, eight at a time:
// n = round(x·log2e), r = x − n·ln2 (ln2 split in two so n·ln2hi is
// exact), e^r by a degree-7 Taylor polynomial in Horner form, times 2^n
// built in the exponent bits. x < -87.33654 gives 0, x > 88 gives +Inf,
// NaN stays NaN — the same contract as the scalar expf.
TEXT ·expAVX2(SB), NOSPLIT, $0-16
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHRQ $3, CX
	JZ   expdone

exploop:
	VMOVUPS (SI), Y0
	VMULPS  expLog2e<>(SB), Y0, Y1
	VROUNDPS $0, Y1, Y1
	VMOVAPS Y0, Y2
	VFNMADD231PS expLn2hi<>(SB), Y1, Y2
	VFNMADD231PS expLn2lo<>(SB), Y1, Y2
	VMOVUPS expC7<>(SB), Y3
	VFMADD213PS expC6<>(SB), Y2, Y3
	VFMADD213PS expC5<>(SB), Y2, Y3
	VFMADD213PS expC4<>(SB), Y2, Y3
	VFMADD213PS expC3<>(SB), Y2, Y3
	VFMADD213PS expC2<>(SB), Y2, Y3
	VFMADD213PS expOne<>(SB), Y2, Y3
	VFMADD213PS expOne<>(SB), Y2, Y3
	VCVTPS2DQ Y1, Y4
	VPADDD  expBias<>(SB), Y4, Y4
	VPSLLD  $23, Y4, Y4
	VMULPS  Y4, Y3, Y3
	VCMPPS  $1, expLo<>(SB), Y0, Y5
	VANDNPS Y3, Y5, Y3
	VCMPPS  $14, expHi<>(SB), Y0, Y5
	VBLENDVPS Y5, expInf<>(SB), Y3, Y3
	VCMPPS  $3, Y0, Y0, Y5
	VBLENDVPS Y5, Y0, Y3, Y3
	VMOVUPS Y3, (SI)
	ADDQ $32, SI
	DECQ CX
	JNZ  exploop

expdone:
	VZEROUPPER
	RET

// Constants of the GELU-tanh kernels, each repeated across the eight lanes.
DATA geluCst<>+0(SB)/4, $0x3f4c422a
DATA geluCst<>+4(SB)/4, $0x3f4c422a
DATA geluCst<>+8(SB)/4, $0x3f4c422a
DATA geluCst<>+12(SB)/4, $0x3f4c422a
DATA geluCst<>+16(SB)/4, $0x3f4c422a
DATA geluCst<>+20(SB)/4, $0x3f4c422a
DATA geluCst<>+24(SB)/4, $0x3f4c422a
DATA geluCst<>+28(SB)/4, $0x3f4c422a
GLOBL geluCst<>(SB), RODATA|NOPTR, $32

DATA geluAcst<>+0(SB)/4, $0x3d372713
DATA geluAcst<>+4(SB)/4, $0x3d372713
DATA geluAcst<>+8(SB)/4, $0x3d372713
DATA geluAcst<>+12(SB)/4, $0x3d372713
DATA geluAcst<>+16(SB)/4, $0x3d372713
DATA geluAcst<>+20(SB)/4, $0x3d372713
DATA geluAcst<>+24(SB)/4, $0x3d372713
DATA geluAcst<>+28(SB)/4, $0x3d372713
GLOBL geluAcst<>(SB), RODATA|NOPTR, $32

DATA gelu3A<>+0(SB)/4, $0x3e095d4f
DATA gelu3A<>+4(SB)/4, $0x3e095d4f
DATA gelu3A<>+8(SB)/4, $0x3e095d4f
DATA gelu3A<>+12(SB)/4, $0x3e095d4f
DATA gelu3A<>+16(SB)/4, $0x3e095d4f
DATA gelu3A<>+20(SB)/4, $0x3e095d4f
DATA gelu3A<>+24(SB)/4, $0x3e095d4f
DATA gelu3A<>+28(SB)/4, $0x3e095d4f
GLOBL gelu3A<>(SB), RODATA|NOPTR, $32

DATA geluHalf<>+0(SB)/4, $0x3f000000
DATA geluHalf<>+4(SB)/4, $0x3f000000
DATA geluHalf<>+8(SB)/4, $0x3f000000
DATA geluHalf<>+12(SB)/4, $0x3f000000
DATA geluHalf<>+16(SB)/4, $0x3f000000
DATA geluHalf<>+20(SB)/4, $0x3f000000
DATA geluHalf<>+24(SB)/4, $0x3f000000
DATA geluHalf<>+28(SB)/4, $0x3f000000
GLOBL geluHalf<>(SB), RODATA|NOPTR, $32

DATA geluM2<>+0(SB)/4, $0xc0000000
DATA geluM2<>+4(SB)/4, $0xc0000000
DATA geluM2<>+8(SB)/4, $0xc0000000
DATA geluM2<>+12(SB)/4, $0xc0000000
DATA geluM2<>+16(SB)/4, $0xc0000000
DATA geluM2<>+20(SB)/4, $0xc0000000
DATA geluM2<>+24(SB)/4, $0xc0000000
DATA geluM2<>+28(SB)/4, $0xc0000000
GLOBL geluM2<>(SB), RODATA|NOPTR, $32

DATA absMask<>+0(SB)/4, $0x7fffffff
DATA absMask<>+4(SB)/4, $0x7fffffff
DATA absMask<>+8(SB)/4, $0x7fffffff
DATA absMask<>+12(SB)/4, $0x7fffffff
DATA absMask<>+16(SB)/4, $0x7fffffff
DATA absMask<>+20(SB)/4, $0x7fffffff
DATA absMask<>+24(SB)/4, $0x7fffffff
DATA absMask<>+28(SB)/4, $0x7fffffff
GLOBL absMask<>(SB), RODATA|NOPTR, $32

DATA signMask<>+0(SB)/4, $0x80000000
DATA signMask<>+4(SB)/4, $0x80000000
DATA signMask<>+8(SB)/4, $0x80000000
DATA signMask<>+12(SB)/4, $0x80000000
DATA signMask<>+16(SB)/4, $0x80000000
DATA signMask<>+20(SB)/4, $0x80000000
DATA signMask<>+24(SB)/4, $0x80000000
DATA signMask<>+28(SB)/4, $0x80000000
GLOBL signMask<>(SB), RODATA|NOPTR, $32

// GELU_T computes, for x in Y0, x² in Y1, u = √(2/π)(x+0.044715x³) in Y2
// and t = tanh(u) in Y8, via e = exp(−2|u|) (Y3 argument, Y4 result, Y5-Y7
// scratch) and t = sign(u)·(1−e)/(1+e). e never overflows: −2|u| <= 0.
#define GELU_T \
	VMULPS  Y0, Y0, Y1; \
	VMULPS  geluAcst<>(SB), Y1, Y2; \
	VFMADD213PS Y0, Y0, Y2; \
	VMULPS  geluCst<>(SB), Y2, Y2; \
	VANDPS  absMask<>(SB), Y2, Y3; \
	VMULPS  geluM2<>(SB), Y3, Y3; \
	VMULPS  expLog2e<>(SB), Y3, Y5; \
	VROUNDPS $0, Y5, Y5; \
	VMOVAPS Y3, Y6; \
	VFNMADD231PS expLn2hi<>(SB), Y5, Y6; \
	VFNMADD231PS expLn2lo<>(SB), Y5, Y6; \
	VMOVUPS expC7<>(SB), Y4; \
	VFMADD213PS expC6<>(SB), Y6, Y4; \
	VFMADD213PS expC5<>(SB), Y6, Y4; \
	VFMADD213PS expC4<>(SB), Y6, Y4; \
	VFMADD213PS expC3<>(SB), Y6, Y4; \
	VFMADD213PS expC2<>(SB), Y6, Y4; \
	VFMADD213PS expOne<>(SB), Y6, Y4; \
	VFMADD213PS expOne<>(SB), Y6, Y4; \
	VCVTPS2DQ Y5, Y7; \
	VPADDD  expBias<>(SB), Y7, Y7; \
	VPSLLD  $23, Y7, Y7; \
	VMULPS  Y7, Y4, Y4; \
	VCMPPS  $1, expLo<>(SB), Y3, Y7; \
	VANDNPS Y4, Y7, Y4; \
	VMOVUPS expOne<>(SB), Y8; \
	VSUBPS  Y4, Y8, Y8; \
	VADDPS  expOne<>(SB), Y4, Y9; \
	VDIVPS  Y9, Y8, Y8; \
	VANDPS  signMask<>(SB), Y2, Y9; \
	VORPS   Y9, Y8, Y8

// func geluFwdAVX2(o, x *float32, n int)
//
// o[i] = 0.5·x·(1+tanh(u)) for the first n&^7 elements (o may equal x).
TEXT ·geluFwdAVX2(SB), NOSPLIT, $0-24
	MOVQ o+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   gfdone

gfloop:
	VMOVUPS (SI), Y0
	GELU_T
	VADDPS  expOne<>(SB), Y8, Y9
	VMULPS  Y0, Y9, Y9
	VMULPS  geluHalf<>(SB), Y9, Y9
	VMOVUPS Y9, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  gfloop

gfdone:
	VZEROUPPER
	RET

// func geluBwdAVX2(dx, grad, x *float32, n int)
//
// dx[i] += grad[i]·(0.5(1+t) + 0.5·x·(1−t²)·√(2/π)·(1+3·0.044715x²)) for the
// first n&^7 elements.
TEXT ·geluBwdAVX2(SB), NOSPLIT, $0-32
	MOVQ dx+0(FP), DI
	MOVQ grad+8(FP), DX
	MOVQ x+16(FP), SI
	MOVQ n+24(FP), CX
	SHRQ $3, CX
	JZ   gbdone

gbloop:
	VMOVUPS (SI), Y0
	GELU_T
	VADDPS  expOne<>(SB), Y8, Y9
	VMOVUPS expOne<>(SB), Y10
	VFNMADD231PS Y8, Y8, Y10
	VMOVUPS expOne<>(SB), Y11
	VFMADD231PS gelu3A<>(SB), Y1, Y11
	VMULPS  Y11, Y10, Y10
	VMULPS  Y0, Y10, Y10
	VMULPS  geluCst<>(SB), Y10, Y10
	VADDPS  Y10, Y9, Y9
	VMULPS  geluHalf<>(SB), Y9, Y9
	VMOVUPS (DI), Y13
	VFMADD231PS (DX), Y9, Y13
	VMOVUPS Y13, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	DECQ CX
	JNZ  gbloop

gbdone:
	VZEROUPPER
	RET
