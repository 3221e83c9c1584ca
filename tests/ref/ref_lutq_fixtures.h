/* ref_lutq_fixtures.h — the peer-packed GPTQ/AWQ/bnb fixtures (tests/fixtures/quant/{gptq,awq,bnb}.safetensors, written by
 * tests/kernels/peer_quantize.py) bound and repacked into the lutq layout, one callback per weight; shared by
 * the tests of the lutq CPU kernels and of the GPU block formats. */
#ifndef QN_REF_LUTQ_FIXTURES_H
#define QN_REF_LUTQ_FIXTURES_H

#include "harness.h"
#include "kernels/quant/lutq.h"

/* name: the fixture's tensor prefix ("gptq.b4.g128.sym.noact.v1.", "awq.gemm.g64.", "bnb.fp4.plain.f16." ...);
 * w: valid during the call. */
typedef void (*qn_ref_lutq_fixture_fn)(void *user, const char *name, const qn_lutq_weight *w);

/* GPTQ 2/3/4/8-bit (sym/asym, v1/v2, group 32/64/128/-1, act-order), AWQ GEMM g64 and GEMV g128, bnb NF4 with
 * double quant (bf16) and FP4 plain (f16). Fails the calling cmocka test on a load error. */
void qn_ref_lutq_fixtures_each(qn_ref_lutq_fixture_fn fn, void *user);

#endif
