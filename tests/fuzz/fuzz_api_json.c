/* fuzz_api_json.c — libFuzzer target: the HTTP API's JSON parsers (host/api_json.h) on any body. The first byte
 * picks the parser (% 6: chat, completion, Ollama generate, Ollama chat, tokenize, detokenize; bit 7: the small
 * limits of a strict server), the rest is the body; every answer must keep api_contract.h. Built with -DQN_FUZZ=ON
 * and clang; seeds in tests/fuzz/corpus_api/ (also replayed, with mutations, by tests/host/test_api_json.c). */
#include <stddef.h>
#include <stdint.h>

#include "tests/fuzz/api_contract.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int rc;
    if (qn_api_contract_run(data, size, &rc)) __builtin_trap(); /* the contract broke: libFuzzer saves the input */
    return 0;
}
