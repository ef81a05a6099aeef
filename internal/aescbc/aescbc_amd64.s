// AES-CBC for amd64: AES-NI with VEX encoding (xmm), and VAES on ymm
// (AVX2) and zmm (AVX-512) registers for decryption.
//
// Round keys are laid out as Key.enc and Key.dec (16 bytes per round, in
// the byte order of the FIPS 197 key schedule). Every function takes n, a
// positive multiple of the block size its loop consumes, and updates *iv to
// the last ciphertext block. dst and src are equal or do not overlap: each
// batch of blocks is loaded (and the ciphertext needed for chaining read)
// before any of it is stored.

//go:build amd64 && !purego

#include "textflag.h"

// func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL eaxArg+0(FP), AX
	MOVL ecxArg+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func subWord(w uint32) uint32
//
// SubWord of FIPS 197 in constant time: with the word in all four columns,
// ShiftRows moves nothing, so AESENCLAST with a zero round key leaves the
// S-box of each byte in every column.
TEXT ·subWord(SB), NOSPLIT, $0-12
	MOVL       w+0(FP), AX
	MOVQ       AX, X0
	PSHUFD     $0, X0, X0
	PXOR       X1, X1
	AESENCLAST X1, X0
	MOVQ       X0, AX
	MOVL       AX, ret+8(FP)
	RET

// func invMixColumns(dst, src *byte)
TEXT ·invMixColumns(SB), NOSPLIT, $0-16
	MOVQ   dst+0(FP), DI
	MOVQ   src+8(FP), SI
	MOVUPS (SI), X0
	AESIMC X0, X0
	MOVUPS X0, (DI)
	RET

// Encryption is serial: block i+1 needs ciphertext block i. The loop keeps
// the round keys in registers and takes one XOR off the chain: the last
// round key of block i is combined beforehand with the first round key and
// the next plaintext block, so that AESENCLAST yields the whitened input of
// block i+1 directly (C[i]^P[i+1]^K[0]); C[i] is recovered beside the chain.
// Key.enc holds K[nr]^K[0] after the nr+1 round keys.

#define ENC_ROUNDS_128 \
	VAESENC X1, X0, X0 \
	VAESENC X2, X0, X0 \
	VAESENC X3, X0, X0 \
	VAESENC X4, X0, X0 \
	VAESENC X5, X0, X0 \
	VAESENC X6, X0, X0 \
	VAESENC X7, X0, X0 \
	VAESENC X8, X0, X0 \
	VAESENC X9, X0, X0

#define ENC_ROUNDS_192 \
	ENC_ROUNDS_128 \
	VAESENC X10, X0, X0 \
	VAESENC X11, X0, X0

#define ENC_ROUNDS_256 \
	ENC_ROUNDS_192 \
	VAESENC X12, X0, X0 \
	VAESENC X13, X0, X0

// ENC_LOOP encrypts CX bytes (at least one block) from SI to DI; X0 holds
// the whitened first block. last is the offset of K[nr] in AX; K[nr]^K[0]
// follows it.
#define ENC_LOOP(rounds, last, loop, done) \
	SUBQ        $16, CX \
	JZ          done \
loop: \
	VMOVDQU     16(SI), X14 \
	VPXOR       last+16(AX), X14, X15 \
	VPXOR       (AX), X14, X14 \
	rounds \
	VAESENCLAST X15, X0, X0 \
	VPXOR       X14, X0, X15 \
	VMOVDQU     X15, (DI) \
	ADDQ        $16, SI \
	ADDQ        $16, DI \
	SUBQ        $16, CX \
	JNZ         loop \
done: \
	rounds \
	VAESENCLAST last(AX), X0, X0 \
	VMOVDQU     X0, (DI) \
	VMOVDQU     X0, (BX) \
	RET

// func encryptCBCAVX(nr int, xk *byte, iv *byte, dst *byte, src *byte, n int)
// Requires: AES, AVX
TEXT ·encryptCBCAVX(SB), NOSPLIT, $0-48
	MOVQ    nr+0(FP), DX
	MOVQ    xk+8(FP), AX
	MOVQ    iv+16(FP), BX
	MOVQ    dst+24(FP), DI
	MOVQ    src+32(FP), SI
	MOVQ    n+40(FP), CX
	VMOVDQU (BX), X0
	VMOVDQU (SI), X15
	VPXOR   (AX), X15, X15
	VPXOR   X15, X0, X0
	VMOVDQU 16(AX), X1
	VMOVDQU 32(AX), X2
	VMOVDQU 48(AX), X3
	VMOVDQU 64(AX), X4
	VMOVDQU 80(AX), X5
	VMOVDQU 96(AX), X6
	VMOVDQU 112(AX), X7
	VMOVDQU 128(AX), X8
	VMOVDQU 144(AX), X9
	CMPQ    DX, $12
	JB      enc128
	VMOVDQU 160(AX), X10
	VMOVDQU 176(AX), X11
	JE      enc192
	VMOVDQU 192(AX), X12
	VMOVDQU 208(AX), X13
	ENC_LOOP(ENC_ROUNDS_256, 224, enc256_loop, enc256_last)

enc192:
	ENC_LOOP(ENC_ROUNDS_192, 192, enc192_loop, enc192_last)

enc128:
	ENC_LOOP(ENC_ROUNDS_128, 160, enc128_loop, enc128_last)

// Decryption is parallel: block i needs only ciphertext blocks i and i-1.

// DEC8 runs one decryption round on X0-X7 with the round key at m.
#define DEC8(m) \
	VMOVDQU m, X8 \
	VAESDEC X8, X0, X0 \
	VAESDEC X8, X1, X1 \
	VAESDEC X8, X2, X2 \
	VAESDEC X8, X3, X3 \
	VAESDEC X8, X4, X4 \
	VAESDEC X8, X5, X5 \
	VAESDEC X8, X6, X6 \
	VAESDEC X8, X7, X7

#define DEC8LAST(m) \
	VMOVDQU     m, X8 \
	VAESDECLAST X8, X0, X0 \
	VAESDECLAST X8, X1, X1 \
	VAESDECLAST X8, X2, X2 \
	VAESDECLAST X8, X3, X3 \
	VAESDECLAST X8, X4, X4 \
	VAESDECLAST X8, X5, X5 \
	VAESDECLAST X8, X6, X6 \
	VAESDECLAST X8, X7, X7

#define DEC1(m) \
	VAESDEC m, X0, X0

// func decryptCBCAVX(nr int, xk *byte, iv *byte, dst *byte, src *byte, n int)
// Requires: AES, AVX
//
// Eight blocks at a time (the round key reloaded once per round for all
// eight), then one at a time. AX holds the decryption keys; R8 points so
// that the last nine rounds and the final one are at 16(R8)..160(R8) for
// every key size; the first nr-10 rounds are taken from AX.
TEXT ·decryptCBCAVX(SB), NOSPLIT, $0-48
	MOVQ    nr+0(FP), DX
	MOVQ    xk+8(FP), AX
	MOVQ    iv+16(FP), BX
	MOVQ    dst+24(FP), DI
	MOVQ    src+32(FP), SI
	MOVQ    n+40(FP), CX
	MOVQ    DX, R8
	SHLQ    $4, R8
	LEAQ    -160(AX)(R8*1), R8
	VMOVDQU (BX), X9
	CMPQ    CX, $128
	JB      dec1

dec8:
	VMOVDQU (SI), X0
	VMOVDQU 16(SI), X1
	VMOVDQU 32(SI), X2
	VMOVDQU 48(SI), X3
	VMOVDQU 64(SI), X4
	VMOVDQU 80(SI), X5
	VMOVDQU 96(SI), X6
	VMOVDQU 112(SI), X7
	VMOVDQU (AX), X8
	VPXOR   X8, X0, X0
	VPXOR   X8, X1, X1
	VPXOR   X8, X2, X2
	VPXOR   X8, X3, X3
	VPXOR   X8, X4, X4
	VPXOR   X8, X5, X5
	VPXOR   X8, X6, X6
	VPXOR   X8, X7, X7
	CMPQ    DX, $12
	JB      dec8_tail
	DEC8(16(AX))
	DEC8(32(AX))
	JE      dec8_tail
	DEC8(48(AX))
	DEC8(64(AX))

dec8_tail:
	DEC8(16(R8))
	DEC8(32(R8))
	DEC8(48(R8))
	DEC8(64(R8))
	DEC8(80(R8))
	DEC8(96(R8))
	DEC8(112(R8))
	DEC8(128(R8))
	DEC8(144(R8))
	DEC8LAST(160(R8))
	VPXOR   X9, X0, X0
	VPXOR   (SI), X1, X1
	VPXOR   16(SI), X2, X2
	VPXOR   32(SI), X3, X3
	VPXOR   48(SI), X4, X4
	VPXOR   64(SI), X5, X5
	VPXOR   80(SI), X6, X6
	VPXOR   96(SI), X7, X7
	VMOVDQU 112(SI), X9
	VMOVDQU X0, (DI)
	VMOVDQU X1, 16(DI)
	VMOVDQU X2, 32(DI)
	VMOVDQU X3, 48(DI)
	VMOVDQU X4, 64(DI)
	VMOVDQU X5, 80(DI)
	VMOVDQU X6, 96(DI)
	VMOVDQU X7, 112(DI)
	ADDQ    $128, SI
	ADDQ    $128, DI
	SUBQ    $128, CX
	CMPQ    CX, $128
	JAE     dec8

dec1:
	TESTQ CX, CX
	JZ    dec_done

dec1_loop:
	VMOVDQU (SI), X10
	VPXOR   (AX), X10, X0
	CMPQ    DX, $12
	JB      dec1_tail
	DEC1(16(AX))
	DEC1(32(AX))
	JE      dec1_tail
	DEC1(48(AX))
	DEC1(64(AX))

dec1_tail:
	DEC1(16(R8))
	DEC1(32(R8))
	DEC1(48(R8))
	DEC1(64(R8))
	DEC1(80(R8))
	DEC1(96(R8))
	DEC1(112(R8))
	DEC1(128(R8))
	DEC1(144(R8))
	VAESDECLAST 160(R8), X0, X0
	VPXOR       X9, X0, X0
	VMOVDQA     X10, X9
	VMOVDQU     X0, (DI)
	ADDQ        $16, SI
	ADDQ        $16, DI
	SUBQ        $16, CX
	JNZ         dec1_loop

dec_done:
	VMOVDQU X9, (BX)
	RET

// DECY runs one decryption round on Y0-Y7 (16 blocks) with the round key
// at m, broadcast to both lanes.
#define DECY(m) \
	VBROADCASTI128 m, Y8 \
	VAESDEC        Y8, Y0, Y0 \
	VAESDEC        Y8, Y1, Y1 \
	VAESDEC        Y8, Y2, Y2 \
	VAESDEC        Y8, Y3, Y3 \
	VAESDEC        Y8, Y4, Y4 \
	VAESDEC        Y8, Y5, Y5 \
	VAESDEC        Y8, Y6, Y6 \
	VAESDEC        Y8, Y7, Y7

// func decryptCBCVAES256(nr int, xk *byte, iv *byte, dst *byte, src *byte, n int)
// Requires: AES, AVX2, VAES. n is a multiple of 256.
TEXT ·decryptCBCVAES256(SB), NOSPLIT, $0-48
	MOVQ    nr+0(FP), DX
	MOVQ    xk+8(FP), AX
	MOVQ    iv+16(FP), BX
	MOVQ    dst+24(FP), DI
	MOVQ    src+32(FP), SI
	MOVQ    n+40(FP), CX
	MOVQ    DX, R8
	SHLQ    $4, R8
	LEAQ    -160(AX)(R8*1), R8
	VMOVDQU (BX), X9

decy:
	VMOVDQU        (SI), Y0
	VMOVDQU        32(SI), Y1
	VMOVDQU        64(SI), Y2
	VMOVDQU        96(SI), Y3
	VMOVDQU        128(SI), Y4
	VMOVDQU        160(SI), Y5
	VMOVDQU        192(SI), Y6
	VMOVDQU        224(SI), Y7
	VINSERTI128    $1, X0, Y9, Y10 // chaining input of Y0: previous block, block 0
	VMOVDQU        240(SI), X9
	VBROADCASTI128 (AX), Y8
	VPXOR          Y8, Y0, Y0
	VPXOR          Y8, Y1, Y1
	VPXOR          Y8, Y2, Y2
	VPXOR          Y8, Y3, Y3
	VPXOR          Y8, Y4, Y4
	VPXOR          Y8, Y5, Y5
	VPXOR          Y8, Y6, Y6
	VPXOR          Y8, Y7, Y7
	CMPQ           DX, $12
	JB             decy_tail
	DECY(16(AX))
	DECY(32(AX))
	JE             decy_tail
	DECY(48(AX))
	DECY(64(AX))

decy_tail:
	DECY(16(R8))
	DECY(32(R8))
	DECY(48(R8))
	DECY(64(R8))
	DECY(80(R8))
	DECY(96(R8))
	DECY(112(R8))
	DECY(128(R8))
	DECY(144(R8))
	VBROADCASTI128 160(R8), Y8
	VAESDECLAST    Y8, Y0, Y0
	VAESDECLAST    Y8, Y1, Y1
	VAESDECLAST    Y8, Y2, Y2
	VAESDECLAST    Y8, Y3, Y3
	VAESDECLAST    Y8, Y4, Y4
	VAESDECLAST    Y8, Y5, Y5
	VAESDECLAST    Y8, Y6, Y6
	VAESDECLAST    Y8, Y7, Y7
	VPXOR          Y10, Y0, Y0
	VPXOR          16(SI), Y1, Y1
	VPXOR          48(SI), Y2, Y2
	VPXOR          80(SI), Y3, Y3
	VPXOR          112(SI), Y4, Y4
	VPXOR          144(SI), Y5, Y5
	VPXOR          176(SI), Y6, Y6
	VPXOR          208(SI), Y7, Y7
	VMOVDQU        Y0, (DI)
	VMOVDQU        Y1, 32(DI)
	VMOVDQU        Y2, 64(DI)
	VMOVDQU        Y3, 96(DI)
	VMOVDQU        Y4, 128(DI)
	VMOVDQU        Y5, 160(DI)
	VMOVDQU        Y6, 192(DI)
	VMOVDQU        Y7, 224(DI)
	ADDQ           $256, SI
	ADDQ           $256, DI
	SUBQ           $256, CX
	JNZ            decy
	VMOVDQU        X9, (BX)
	VZEROUPPER
	RET

// DECZ runs one decryption round on Z0-Z7 (32 blocks) with round key k.
#define DECZ(k) \
	VAESDEC k, Z0, Z0 \
	VAESDEC k, Z1, Z1 \
	VAESDEC k, Z2, Z2 \
	VAESDEC k, Z3, Z3 \
	VAESDEC k, Z4, Z4 \
	VAESDEC k, Z5, Z5 \
	VAESDEC k, Z6, Z6 \
	VAESDEC k, Z7, Z7

#define DECZLAST(k) \
	VAESDECLAST k, Z0, Z0 \
	VAESDECLAST k, Z1, Z1 \
	VAESDECLAST k, Z2, Z2 \
	VAESDECLAST k, Z3, Z3 \
	VAESDECLAST k, Z4, Z4 \
	VAESDECLAST k, Z5, Z5 \
	VAESDECLAST k, Z6, Z6 \
	VAESDECLAST k, Z7, Z7

#define DECZ_128 \
	DECZ(Z17) \
	DECZ(Z18) \
	DECZ(Z19) \
	DECZ(Z20) \
	DECZ(Z21) \
	DECZ(Z22) \
	DECZ(Z23) \
	DECZ(Z24) \
	DECZ(Z25)

#define DECZ_192 \
	DECZ_128 \
	DECZ(Z26) \
	DECZ(Z27)

#define DECZ_256 \
	DECZ_192 \
	DECZ(Z28) \
	DECZ(Z29)

// func decryptCBCVAES512(nr int, xk *byte, iv *byte, dst *byte, src *byte, n int)
// Requires: AES, AVX512F, AVX512VL, VAES. n is a multiple of 512.
//
// All round keys stay in Z16-Z30, each broadcast to the four lanes. Z9
// carries the previous ciphertext block in its top lane; VALIGNQ shifts it
// in front of the first three blocks of Z0.
TEXT ·decryptCBCVAES512(SB), NOSPLIT, $0-48
	MOVQ            nr+0(FP), DX
	MOVQ            xk+8(FP), AX
	MOVQ            iv+16(FP), BX
	MOVQ            dst+24(FP), DI
	MOVQ            src+32(FP), SI
	MOVQ            n+40(FP), CX
	VBROADCASTI32X4 (AX), Z16
	VBROADCASTI32X4 16(AX), Z17
	VBROADCASTI32X4 32(AX), Z18
	VBROADCASTI32X4 48(AX), Z19
	VBROADCASTI32X4 64(AX), Z20
	VBROADCASTI32X4 80(AX), Z21
	VBROADCASTI32X4 96(AX), Z22
	VBROADCASTI32X4 112(AX), Z23
	VBROADCASTI32X4 128(AX), Z24
	VBROADCASTI32X4 144(AX), Z25
	VBROADCASTI32X4 160(AX), Z26
	CMPQ            DX, $12
	JB              decz_keys
	VBROADCASTI32X4 176(AX), Z27
	VBROADCASTI32X4 192(AX), Z28
	JE              decz_keys
	VBROADCASTI32X4 208(AX), Z29
	VBROADCASTI32X4 224(AX), Z30

decz_keys:
	VBROADCASTI32X4 (BX), Z9

decz:
	VMOVDQU64 (SI), Z0
	VMOVDQU64 64(SI), Z1
	VMOVDQU64 128(SI), Z2
	VMOVDQU64 192(SI), Z3
	VMOVDQU64 256(SI), Z4
	VMOVDQU64 320(SI), Z5
	VMOVDQU64 384(SI), Z6
	VMOVDQU64 448(SI), Z7
	VALIGNQ   $6, Z9, Z0, Z10 // chaining input of Z0: previous block, blocks 0-2
	VMOVDQA64 Z7, Z9
	VPXORQ    Z16, Z0, Z0
	VPXORQ    Z16, Z1, Z1
	VPXORQ    Z16, Z2, Z2
	VPXORQ    Z16, Z3, Z3
	VPXORQ    Z16, Z4, Z4
	VPXORQ    Z16, Z5, Z5
	VPXORQ    Z16, Z6, Z6
	VPXORQ    Z16, Z7, Z7
	CMPQ      DX, $12
	JB        decz128
	JE        decz192
	DECZ_256
	DECZLAST(Z30)
	JMP       decz_out

decz192:
	DECZ_192
	DECZLAST(Z28)
	JMP decz_out

decz128:
	DECZ_128
	DECZLAST(Z26)

decz_out:
	VPXORQ    Z10, Z0, Z0
	VPXORQ    48(SI), Z1, Z1
	VPXORQ    112(SI), Z2, Z2
	VPXORQ    176(SI), Z3, Z3
	VPXORQ    240(SI), Z4, Z4
	VPXORQ    304(SI), Z5, Z5
	VPXORQ    368(SI), Z6, Z6
	VPXORQ    432(SI), Z7, Z7
	VMOVDQU64 Z0, (DI)
	VMOVDQU64 Z1, 64(DI)
	VMOVDQU64 Z2, 128(DI)
	VMOVDQU64 Z3, 192(DI)
	VMOVDQU64 Z4, 256(DI)
	VMOVDQU64 Z5, 320(DI)
	VMOVDQU64 Z6, 384(DI)
	VMOVDQU64 Z7, 448(DI)
	ADDQ      $512, SI
	ADDQ      $512, DI
	SUBQ      $512, CX
	JNZ       decz

	VEXTRACTI32X4 $3, Z9, X9
	VMOVDQU       X9, (BX)
	VZEROUPPER
	RET
